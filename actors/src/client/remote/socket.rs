//! One WebSocket, served by a thread of its own with its own actix `System` and an awc
//! client.
//!
//! The thread checks the schema (`GET /schema`), opens the socket, waits for
//! `InitialConnection` and reports it to [`open`]'s caller; from then on it pumps both
//! ways: frames in are decoded and pushed, as [`Envelope`]s, onto the connection's
//! [`SessionQueue`] (the same kind of queue an in-process connection reads); frames out
//! come from a channel the application's threads fill. It answers pings itself. When the
//! socket ends, the last thing it pushes is `Disconnected` with the close frame's reason;
//! when the connection drops its sender (disconnect, reconnect or drop), it sends a close
//! frame and ends.
//!
//! The queue keeps its bound: an application that stops processing messages passes it,
//! the queue drops the connection with a reason, and the thread closes the socket rather
//! than buffering without limit.

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::future::{Either, select};
use futures::{SinkExt, StreamExt};
use tidings_engine::Identity;

use super::codec::{Decoder, OutFrame};
use super::schema_check;
use super::{ConnectError, RemoteConfig, TransportError};
use crate::messages::{ConnectionId, Envelope, ServerMessage};
use crate::queue::{Pushed, SessionQueue};

/// Largest `GET /schema` body accepted.
const SCHEMA_BYTES_MAX: usize = 8 << 20;

/// What `InitialConnection` said.
pub(crate) struct Hello {
    pub(crate) identity: Identity,
    pub(crate) connection_id: ConnectionId,
    pub(crate) token: Option<String>,
}

/// A connected socket, as the connection holds it.
pub(crate) struct Opened {
    pub(crate) hello: Hello,
    pub(crate) queue: Arc<SessionQueue>,
    pub(crate) out: UnboundedSender<OutFrame>,
}

/// Opens a socket and returns once `InitialConnection` arrived, or with why it did not.
pub(crate) fn open(
    config: &Arc<RemoteConfig>,
    token: Option<String>,
) -> Result<Opened, ConnectError> {
    let queue = Arc::new(SessionQueue::new(config.queue_limits));
    let (out, rx) = unbounded();
    let (ready, hello) = sync_channel(1);
    let thread = {
        let config = config.clone();
        let queue = queue.clone();
        std::thread::Builder::new()
            .name("tidings-ws-client".into())
            .spawn(move || {
                actix_rt::System::new().block_on(run(config, token, queue, rx, ready));
            })
            .map_err(ConnectError::Thread)?
    };
    // The thread keeps the same deadline; the grace only covers its last report.
    match hello.recv_timeout(config.timeout + Duration::from_secs(1)) {
        Ok(Ok(hello)) => Ok(Opened { hello, queue, out }),
        Ok(Err(e)) => {
            // It reported and is ending: joining reclaims it promptly.
            let _ = thread.join();
            Err(e)
        }
        Err(RecvTimeoutError::Timeout) => Err(ConnectError::Timeout {
            waiting_for: "the connection's thread",
            timeout: config.timeout,
        }),
        Err(RecvTimeoutError::Disconnected) => Err(ConnectError::ThreadStopped),
    }
}

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;
type Ready = SyncSender<Result<Hello, ConnectError>>;

async fn run(
    config: Arc<RemoteConfig>,
    token: Option<String>,
    queue: Arc<SessionQueue>,
    rx: UnboundedReceiver<OutFrame>,
    ready: Ready,
) {
    let deadline = Instant::now() + config.timeout;
    let mut decoder = config.codec.decoder();
    match handshake(&config, &mut *decoder, token, &queue, deadline).await {
        Ok((socket, hello)) => {
            // Nobody waits any more (the caller's deadline passed): leave quietly.
            if ready.send(Ok(hello)).is_ok() {
                pump(socket, &mut *decoder, &queue, rx).await;
            }
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// Runs `f` until `deadline`, or reports what it was waiting for.
async fn by<F: std::future::Future>(
    deadline: Instant,
    config: &RemoteConfig,
    waiting_for: &'static str,
    f: F,
) -> Result<F::Output, ConnectError> {
    let left = deadline.saturating_duration_since(Instant::now());
    actix_rt::time::timeout(left, f)
        .await
        .map_err(|_| ConnectError::Timeout {
            waiting_for,
            timeout: config.timeout,
        })
}

async fn handshake(
    config: &RemoteConfig,
    decoder: &mut dyn Decoder,
    token: Option<String>,
    queue: &SessionQueue,
    deadline: Instant,
) -> Result<(Socket, Hello), ConnectError> {
    let client = awc::Client::builder().timeout(config.timeout).finish();
    if config.verify_schema {
        let url = &config.endpoint.schema_url;
        let mut resp = by(deadline, config, "GET /schema", client.get(url).send())
            .await?
            .map_err(|e| ConnectError::Unreachable {
                url: url.clone(),
                source: TransportError::of(e),
            })?;
        if !resp.status().is_success() {
            return Err(ConnectError::SchemaFetch {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let body = by(
            deadline,
            config,
            "GET /schema",
            resp.body().limit(SCHEMA_BYTES_MAX),
        )
        .await?
        .map_err(|e| ConnectError::Unreachable {
            url: url.clone(),
            source: TransportError::of(e),
        })?;
        let differences = schema_check::differences(&config.schema, &body).map_err(|source| {
            ConnectError::SchemaResponse {
                url: url.clone(),
                source,
            }
        })?;
        if !differences.is_empty() {
            return Err(ConnectError::SchemaMismatch { differences });
        }
    }
    let url = config.endpoint.ws_url(config.compression);
    let mut request = client
        .ws(&url)
        .protocols([config.protocol.subprotocol()])
        .max_frame_size(config.frame_bytes_max);
    if let Some(t) = &token {
        request = request.bearer_auth(t);
    }
    let (_, mut socket) = by(
        deadline,
        config,
        "the WebSocket handshake",
        request.connect(),
    )
    .await?
    .map_err(|e| match e {
        awc::error::WsClientError::InvalidResponseStatus(s) if s.as_u16() == 401 => {
            ConnectError::Unauthorized
        }
        awc::error::WsClientError::InvalidResponseStatus(s) => ConnectError::Rejected {
            url: url.clone(),
            status: s.as_u16(),
        },
        awc::error::WsClientError::SendRequest(e) => ConnectError::Unreachable {
            url: url.clone(),
            source: TransportError::of(e),
        },
        other => ConnectError::Handshake {
            url: url.clone(),
            source: TransportError::of(other),
        },
    })?;
    loop {
        let frame = by(deadline, config, "InitialConnection", socket.next()).await?;
        let mut decoded = Vec::with_capacity(1);
        let reason = match frame {
            Some(Ok(Frame::Binary(b))) => {
                decoder
                    .decode_binary(&b, &mut decoded)
                    .map_err(ConnectError::Decode)?;
                return hello(decoded, queue).map(|hello| (socket, hello));
            }
            Some(Ok(Frame::Text(t))) => {
                let t = std::str::from_utf8(&t).map_err(|_| ConnectError::NotInitialConnection)?;
                decoder
                    .decode_text(t, &mut decoded)
                    .map_err(ConnectError::Decode)?;
                return hello(decoded, queue).map(|hello| (socket, hello));
            }
            Some(Ok(Frame::Ping(p))) => {
                let _ = socket.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Frame::Close(r))) => close_reason(r),
            Some(Ok(_)) => return Err(ConnectError::NotInitialConnection),
            Some(Err(e)) => format!("connection lost: {e}"),
            None => "connection lost before InitialConnection".to_string(),
        };
        return Err(ConnectError::Closed { reason });
    }
}

/// The connection's first message, queued as an in-process connection's is.
fn hello(mut decoded: Vec<ServerMessage>, queue: &SessionQueue) -> Result<Hello, ConnectError> {
    let (Some(message), true) = (decoded.pop(), decoded.is_empty()) else {
        return Err(ConnectError::NotInitialConnection);
    };
    let ServerMessage::InitialConnection {
        identity,
        connection_id,
        token,
    } = &message
    else {
        return Err(ConnectError::NotInitialConnection);
    };
    let hello = Hello {
        identity: *identity,
        connection_id: *connection_id,
        token: token.clone(),
    };
    queue.push(Envelope::now(message));
    Ok(hello)
}

fn close_reason(r: Option<CloseReason>) -> String {
    match r {
        Some(CloseReason {
            description: Some(d),
            ..
        }) if !d.is_empty() => d,
        Some(CloseReason { code, .. }) => {
            format!("closed by the server (code {})", u16::from(code))
        }
        None => "closed by the server".to_string(),
    }
}

/// Whether the queue took `message`; when not, the socket must close.
fn deliver(queue: &SessionQueue, message: ServerMessage) -> bool {
    matches!(
        queue.push(Envelope::now(message)),
        Pushed::Queued | Pushed::QueuedWasEmpty
    )
}

async fn pump(
    mut socket: Socket,
    decoder: &mut dyn Decoder,
    queue: &SessionQueue,
    mut rx: UnboundedReceiver<OutFrame>,
) {
    let mut going_away = false;
    // Reused for every frame: most frames are one message.
    let mut messages = Vec::with_capacity(2);
    let reason = loop {
        match select(socket.next(), rx.next()).await {
            Either::Left((frame, _)) => {
                let decoded = match frame {
                    Some(Ok(Frame::Binary(b))) => decoder.decode_binary(&b, &mut messages),
                    Some(Ok(Frame::Text(t))) => match std::str::from_utf8(&t) {
                        Ok(t) => decoder.decode_text(t, &mut messages),
                        Err(_) => break "the server sent a text frame that is not UTF-8".into(),
                    },
                    Some(Ok(Frame::Ping(p))) => {
                        if let Err(e) = socket.send(Message::Pong(p)).await {
                            break format!("connection lost: {e}");
                        }
                        continue;
                    }
                    Some(Ok(Frame::Pong(_))) => continue,
                    Some(Ok(Frame::Continuation(_))) => {
                        break "the server sent a fragmented message, which the protocol does not use".into();
                    }
                    Some(Ok(Frame::Close(r))) => {
                        let _ = socket.send(Message::Close(r.clone())).await;
                        going_away = r.as_ref().is_some_and(|r| r.code == CloseCode::Away);
                        break close_reason(r);
                    }
                    Some(Err(e)) => break format!("connection lost: {e}"),
                    None => break "connection lost: the socket ended without a close frame".into(),
                };
                match decoded {
                    Ok(()) => {
                        if !messages.drain(..).all(|m| deliver(queue, m)) {
                            // Passed the bound (the queue holds the reason) or disconnected.
                            let _ = socket
                                .send(Message::Close(Some(CloseCode::Policy.into())))
                                .await;
                            return;
                        }
                    }
                    Err(e) => {
                        let reason = format!("undecodable message from the server: {e}");
                        tracing::warn!(error = %e, "closing: undecodable message from the server");
                        let _ = socket
                            .send(Message::Close(Some(CloseReason {
                                code: CloseCode::Protocol,
                                description: Some(reason.clone()),
                            })))
                            .await;
                        break reason;
                    }
                }
            }
            Either::Right((out, _)) => {
                let sent = match out {
                    Some(OutFrame::Binary(b)) => socket.send(Message::Binary(Bytes::from(b))).await,
                    Some(OutFrame::Text(t)) => socket.send(Message::Text(t.into())).await,
                    None => {
                        // The connection let go of this socket.
                        let _ = socket
                            .send(Message::Close(Some(CloseCode::Normal.into())))
                            .await;
                        return;
                    }
                };
                if let Err(e) = sent {
                    break format!("connection lost: {e}");
                }
            }
        }
    };
    // Refuse sends before anyone can see the disconnect: a request accepted after it
    // would silently go nowhere.
    drop(rx);
    deliver(queue, ServerMessage::Disconnected { reason, going_away });
}
