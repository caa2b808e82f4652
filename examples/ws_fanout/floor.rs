//! The floor: a bare actix-web WebSocket endpoint with no engine behind it.
//!
//! Built like the real server (actix-web, one worker, one actix-web-actors session actor
//! per connection), it broadcasts the bytes it is handed to every connected session: one
//! `do_send` of a shared `Bytes` per session, the session writes it as a binary frame.
//! Nothing is evaluated, encoded, queued or metered, so the time from the broadcast to
//! the last client is what the sockets, the actor mailboxes and the single worker cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_web_actors::ws;

use super::Res;

type Registry = Arc<Mutex<HashMap<u64, Addr<FloorSession>>>>;

/// A running floor server.
pub struct Floor {
    /// Where it listens.
    pub addr: SocketAddr,
    registry: Registry,
    handle: actix_web::dev::ServerHandle,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    /// Starts the server on its own actix system (one HTTP worker, like Tidings').
    pub fn start() -> Res<Self> {
        let registry: Registry = Arc::default();
        let (send, recv) = std::sync::mpsc::channel();
        let reg = registry.clone();
        let thread = std::thread::Builder::new()
            .name("floor-system".into())
            .spawn(move || {
                let sys = actix_rt::System::new();
                let ok = sys.block_on(async move {
                    let next_id = Arc::new(AtomicU64::new(0));
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(web::Data::new((reg.clone(), next_id.clone())))
                            .route("/subscribe", web::get().to(subscribe))
                    })
                    .workers(1)
                    .disable_signals()
                    .bind("127.0.0.1:0");
                    match bound {
                        Ok(server) => {
                            let addr = server.addrs()[0];
                            let running = server.run();
                            let handle = running.handle();
                            actix_rt::spawn(running);
                            send.send(Ok((addr, handle, actix_rt::System::current())))
                                .is_ok()
                        }
                        Err(e) => {
                            let _ = send.send(Err(e.to_string()));
                            false
                        }
                    }
                });
                if ok {
                    let _ = sys.run();
                }
            })?;
        let (addr, handle, system) = recv.recv()??;
        Ok(Floor {
            addr,
            registry,
            handle,
            system,
            thread: Some(thread),
        })
    }

    /// Sessions connected now.
    pub fn sessions(&self) -> Vec<Addr<FloorSession>> {
        self.registry
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `payload` to every session in `sessions`.
pub fn broadcast(sessions: &[Addr<FloorSession>], payload: &Bytes) {
    for s in sessions {
        s.do_send(Deliver(payload.clone()));
    }
}

async fn subscribe(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<(Registry, Arc<AtomicU64>)>,
) -> Result<HttpResponse, actix_web::Error> {
    let session = FloorSession {
        id: state.1.fetch_add(1, Ordering::Relaxed),
        registry: state.0.clone(),
    };
    ws::start(session, &req, stream)
}

/// One floor connection.
pub struct FloorSession {
    id: u64,
    registry: Registry,
}

/// Bytes to write to one session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(Bytes);

impl Actor for FloorSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Ok(mut r) = self.registry.lock() {
            r.insert(self.id, ctx.address());
        }
        // The client counts frames only after this one, so it knows it is registered.
        ctx.binary(Bytes::from_static(b"\0hello"));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Ok(mut r) = self.registry.lock() {
            r.remove(&self.id);
        }
    }
}

impl Handler<Deliver> for FloorSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        ctx.binary(msg.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for FloorSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}
