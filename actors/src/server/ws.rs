//! The WebSocket session actor: one per connection.
//!
//! It owns no delivery state: its hub appends to the session's queue and wakes this actor
//! when the queue goes from empty to non-empty; the actor drains it, encodes each message
//! with the session's [`Codec`] (v2 MessagePack, v1 MessagePack or v1 JSON in text frames)
//! and writes it to the socket. Incoming frames are decoded and forwarded
//! in order into the transaction actor's FIFO. A malformed frame is answered with an error
//! naming what was wrong; it never closes other sessions or stops the server.
//!
//! A commit reaches every session of the same query set as one shared
//! `Arc<ServerMessage>` (the hub builds it once); v2 sessions on one worker thread turn
//! it into one shared frame (see `SharedFrames`), so a commit's frame is encoded once
//! per worker, not once per session.
//!
//! Everything that touches actix-web-actors (deprecated upstream in favour of actix-ws)
//! stays in this file, so a swap is local.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web_actors::ws;

use crate::messages::{ClientMessage, Envelope, ReducerOutcome, ServerMessage};
use crate::metrics::Metrics;
use crate::server::watchdog::Registration;
use crate::session::Session;
use crate::system::TidingsError;
use crate::wire::v2::{self, Compression};
use crate::wire::{Codec, Frame, FrameType};

/// Limits of one WebSocket session.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    /// Largest incoming message, in bytes.
    pub message_bytes_max: usize,
    /// Heartbeat ping interval.
    pub heartbeat: Duration,
    /// A client silent (no frame, no pong) this long is closed.
    pub idle_timeout: Duration,
    /// Messages written per wake-up before yielding to other sessions on the arbiter.
    pub drain_batch: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            message_bytes_max: 1 << 20,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            drain_batch: 256,
        }
    }
}

/// What one WebSocket session costs Tidings, in bytes, by owner (see
/// [`approx_session_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionFootprint {
    /// The session actor and the request path it owns (its in-flight counter).
    pub actor: usize,
    /// Its outbound queue: the shared queue, its first ring buffer and its wake hook.
    pub queue: usize,
    /// Its hub's entries for it.
    pub hub: usize,
    /// The subscription manager's entry for it.
    pub manager: usize,
    /// The watchdog's entry for it and the duplicate socket handle it keeps.
    pub watchdog: usize,
}

impl SessionFootprint {
    /// All of it.
    pub fn total(&self) -> usize {
        self.actor + self.queue + self.hub + self.manager + self.watchdog
    }
}

/// Approximate bytes of Tidings-owned state per WebSocket session subscribed to one query
/// set of one query, after its first delivery: `size_of` of the structs involved plus
/// the heap blocks they hold (each `Arc` with its two counters; hash-map entries charged
/// as after a table doubled). What actix and actix-web own per connection (the mailbox,
/// the WebSocket context and codec buffers, the HTTP dispatcher) is not included; the
/// `ws_fanout` example's `--memory` mode measures everything by RSS.
pub fn approx_session_bytes() -> SessionFootprint {
    use std::mem::size_of;
    let arc = |inner: usize| 2 * size_of::<usize>() + inner;
    SessionFootprint {
        actor: size_of::<WsSession>() + arc(size_of::<std::sync::atomic::AtomicUsize>()),
        queue: arc(size_of::<crate::queue::SessionQueue>())
            // `VecDeque`'s first allocation holds 4 elements; it is kept once drained.
            + 4 * size_of::<(Envelope, usize)>()
            // The boxed wake hook captures the actor's address.
            + size_of::<Addr<WsSession>>(),
        hub: crate::hub::session_bytes(),
        manager: crate::manager::client_bytes(),
        watchdog: super::watchdog::entry_bytes(),
    }
}

/// The session actor.
pub struct WsSession {
    session: Session,
    codec: Codec,
    limits: WsLimits,
    last_heard: Instant,
    /// The outside watchdog's view of this session (see [`super::watchdog`]).
    registration: Registration,
    /// A message waiting for its commit to become durable before it may be sent.
    held: Option<Envelope>,
}

impl WsSession {
    /// A session actor over `session`, speaking `codec`'s subprotocol.
    pub fn new(
        session: Session,
        codec: Codec,
        limits: WsLimits,
        registration: Registration,
    ) -> Self {
        WsSession {
            session,
            codec,
            limits,
            last_heard: Instant::now(),
            registration,
            held: None,
        }
    }

    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        for _ in 0..self.limits.drain_batch {
            let Some(env) = self.held.take().or_else(|| self.session.queue().try_pop()) else {
                return;
            };
            if let Some(d) = &env.durable
                && !d.is_durable()
            {
                // Acknowledge only once durable; never block the arbiter on fsync.
                self.held = Some(env);
                ctx.run_later(Duration::from_millis(1), |act, ctx| act.drain(ctx));
                return;
            }
            match &*env.message {
                ServerMessage::Disconnected { reason, going_away } => {
                    ctx.close(Some(ws::CloseReason {
                        code: if *going_away {
                            ws::CloseCode::Away
                        } else {
                            ws::CloseCode::Policy
                        },
                        description: Some(reason.clone()),
                    }));
                    ctx.stop();
                    return;
                }
                _ => {
                    if let Some(frame) = self.frame(&env.message) {
                        self.session
                            .tidings()
                            .metrics()
                            .bytes_sent
                            .fetch_add(frame.len() as u64, Ordering::Relaxed);
                        write(ctx, frame);
                    }
                }
            }
        }
        // More may be queued: continue after other actors on this arbiter had a turn.
        ctx.notify(Drain);
    }

    /// The frame for a queued message: a v2 transaction update from the frames shared
    /// on this thread, anything else encoded for this session alone.
    fn frame(&mut self, message: &Arc<ServerMessage>) -> Option<Out> {
        let metrics = self.session.tidings().metrics();
        match (&self.codec, &**message) {
            (Codec::V2 { compression }, ServerMessage::TransactionUpdate(_)) => {
                let compression = *compression;
                SHARED_FRAMES.with_borrow_mut(|f| f.frame(message, compression, metrics))
            }
            _ => self.encode_own(message).map(Out::Own),
        }
    }

    /// `msg` encoded for this session alone.
    fn encode_own(&mut self, msg: &ServerMessage) -> Option<Frame> {
        let frame = self.codec.encode(msg)?;
        count_encoded(self.session.tidings().metrics(), frame.as_bytes().len());
        Some(frame)
    }

    fn reply_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: String) {
        let msg = ServerMessage::SubscriptionError {
            request_id: None,
            query_set_id: None,
            error,
        };
        if let Some(frame) = self.encode_own(&msg) {
            write(ctx, frame);
        }
    }

    fn incoming(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: FrameType, payload: &[u8]) {
        if payload.len() > self.limits.message_bytes_max {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Size,
                description: Some(format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    payload.len(),
                    self.limits.message_bytes_max
                )),
            }));
            ctx.stop();
            return;
        }
        match self.codec.decode(frame, payload) {
            Ok(m) => self.request(ctx, m),
            Err(e) => self.reply_error(ctx, format!("malformed message: {e}")),
        }
    }

    fn request(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: ClientMessage) {
        let request_id = message.request_id();
        let is_call = matches!(
            message,
            ClientMessage::CallReducer { .. } | ClientMessage::V1CallReducer { .. }
        );
        let Err(e) = self.session.send(message) else {
            return;
        };
        let error = match e {
            TidingsError::Overloaded(_) => {
                format!("too many requests: request {request_id} was not accepted; retry later")
            }
            TidingsError::TooManyInFlight(max) => format!(
                "request {request_id} was not accepted: this connection has {max} requests in flight, the most allowed; wait for answers before sending more"
            ),
            other => format!("request {request_id} failed: {other}"),
        };
        // A refused call is answered as a call, so the caller's callback for it fires.
        let msg = if is_call {
            ServerMessage::ReducerResult {
                request_id,
                tx_offset: None,
                timestamp: tidings_engine::Timestamp::now(),
                outcome: ReducerOutcome::InternalError(error),
            }
        } else {
            ServerMessage::SubscriptionError {
                request_id: Some(request_id),
                query_set_id: None,
                error,
            }
        };
        if let Some(frame) = self.encode_own(&msg) {
            write(ctx, frame);
        }
    }
}

fn write(ctx: &mut ws::WebsocketContext<WsSession>, frame: impl Into<Out>) {
    match frame.into() {
        Out::Own(Frame::Binary(b)) => ctx.binary(b),
        Out::Own(Frame::Text(t)) => ctx.text(t),
        Out::Shared(b) => ctx.binary(b),
    }
}

fn count_encoded(metrics: &Metrics, bytes: usize) {
    metrics.frames_encoded.fetch_add(1, Ordering::Relaxed);
    metrics
        .frame_bytes_encoded
        .fetch_add(bytes as u64, Ordering::Relaxed);
}

/// A frame to write: this session's own, or one shared with other sessions.
enum Out {
    Own(Frame),
    Shared(Bytes),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Own(f) => f.as_bytes().len(),
            Out::Shared(b) => b.len(),
        }
    }
}

impl From<Frame> for Out {
    fn from(f: Frame) -> Self {
        Out::Own(f)
    }
}

/// Entries kept per thread: a session that drains late may still be on the previous
/// commits while the others are on the next one.
const SHARED_FRAMES_MAX: usize = 4;

thread_local! {
    static SHARED_FRAMES: RefCell<SharedFrames> = const { RefCell::new(SharedFrames::new()) };
}

/// The v2 frames most recently encoded on this thread, keyed by the message they encode.
///
/// The v2 encoding of a message depends only on the message and the compression, and
/// the hub hands every session with the same share of a commit the same `Arc`; so
/// sessions on one worker thread can write the same bytes. The key is a `Weak`: it keeps
/// the message's allocation (not its rows) alive, so while an entry exists no other
/// message can be allocated at the same address and be mistaken for it.
struct SharedFrames {
    entries: [Option<(Weak<ServerMessage>, Compression, Bytes)>; SHARED_FRAMES_MAX],
    next: usize,
}

impl SharedFrames {
    const fn new() -> Self {
        SharedFrames {
            entries: [const { None }; SHARED_FRAMES_MAX],
            next: 0,
        }
    }

    fn frame(
        &mut self,
        message: &Arc<ServerMessage>,
        compression: Compression,
        metrics: &Metrics,
    ) -> Option<Out> {
        let key = Arc::downgrade(message);
        let hit = self
            .entries
            .iter()
            .flatten()
            .find(|(m, c, _)| *c == compression && Weak::ptr_eq(m, &key));
        if let Some((_, _, bytes)) = hit {
            return Some(Out::Shared(bytes.clone()));
        }
        let bytes = Bytes::from(v2::encode_server(message, compression)?);
        count_encoded(metrics, bytes.len());
        self.entries[self.next] = Some((key, compression, bytes.clone()));
        self.next = (self.next + 1) % SHARED_FRAMES_MAX;
        Some(Out::Shared(bytes))
    }
}

/// Wakes a session actor to drain its queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        let addr = ctx.address();
        self.session
            .queue()
            .set_on_ready(move || addr.do_send(Drain));
        ctx.notify(Drain);
        // Sessions that connected together would otherwise ping together, every
        // interval, in one burst on their worker thread. Each session starts its
        // heartbeat at its own offset within the interval, spread evenly by connection id.
        let interval = self.limits.heartbeat;
        let spread = self.session.id().0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54;
        let offset = interval.mul_f64(spread as f64 / 1024.0);
        ctx.run_later(offset, move |_, ctx| {
            ctx.run_interval(interval, |act, ctx| act.heartbeat(ctx));
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.session.close();
    }
}

impl WsSession {
    /// Closes an idle session with its reason, or pings it.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.last_heard.elapsed() > self.limits.idle_timeout {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Away,
                description: Some(format!(
                    "idle for more than {:?} (no frames, no pongs)",
                    self.limits.idle_timeout
                )),
            }));
            ctx.stop();
            return;
        }
        ctx.ping(b"");
    }
}

impl Handler<Drain> for WsSession {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        self.drain(ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        self.registration.heard();
        match item {
            Ok(ws::Message::Binary(bytes)) => self.incoming(ctx, FrameType::Binary, &bytes),
            Ok(ws::Message::Text(text)) => self.incoming(ctx, FrameType::Text, text.as_bytes()),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(_)) => self.reply_error(
                ctx,
                "malformed message: fragmented messages are not supported".into(),
            ),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Protocol,
                    description: Some(format!("protocol error: {e}")),
                }));
                ctx.stop();
            }
        }
    }
}
