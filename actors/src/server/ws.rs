//! The WebSocket session actor: one per connection.
//!
//! It owns no delivery state: its hub appends to the session's queue and wakes this actor
//! when the queue goes from empty to non-empty; the actor drains it, encodes each message
//! with the session's [`Codec`] (v2 MessagePack, v1 MessagePack or v1 JSON in text frames)
//! and writes it to the socket. Incoming frames are decoded and forwarded
//! in order into the transaction actor's FIFO. A malformed frame is answered with an error
//! naming what was wrong; it never closes other sessions or stops the server.
//!
//! Everything that touches actix-web-actors (deprecated upstream in favour of actix-ws)
//! stays in this file, so a swap is local.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;

use crate::messages::{ClientMessage, Envelope, ReducerOutcome, ServerMessage};
use crate::server::watchdog::Registration;
use crate::session::Session;
use crate::system::TidingsError;
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
                msg => {
                    if let Some(frame) = self.codec.encode(msg) {
                        self.session.tidings().metrics().bytes_sent.fetch_add(
                            frame.as_bytes().len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        write(ctx, frame);
                    }
                }
            }
        }
        // More may be queued: continue after other actors on this arbiter had a turn.
        ctx.notify(Drain);
    }

    fn reply_error(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: String) {
        let msg = ServerMessage::SubscriptionError {
            request_id: None,
            query_set_id: None,
            error,
        };
        if let Some(frame) = self.codec.encode(&msg) {
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
        if let Some(frame) = self.codec.encode(&msg) {
            write(ctx, frame);
        }
    }
}

fn write(ctx: &mut ws::WebsocketContext<WsSession>, frame: Frame) {
    match frame {
        Frame::Binary(b) => ctx.binary(b),
        Frame::Text(t) => ctx.text(t),
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
        ctx.run_interval(self.limits.heartbeat, |act, ctx| {
            if act.last_heard.elapsed() > act.limits.idle_timeout {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some(format!(
                        "idle for more than {:?} (no frames, no pongs)",
                        act.limits.idle_timeout
                    )),
                }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.session.close();
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
