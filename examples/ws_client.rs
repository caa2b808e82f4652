//! Chat from other processes: `DbConnection` over a WebSocket.
//!
//! `cargo run --example ws_client` starts the demo chat server in this process on a free
//! port and connects two WebSocket clients to it; `cargo run --example ws_client --
//! ws://127.0.0.1:3000` talks to a running `tidings serve` instead. The clients use the
//! same API as in-process ones (`examples/chat.rs`): typed tables, callbacks,
//! `reducer_then`. One of them then drops its socket, misses a message, and reconnects
//! with its token: same identity, its subscription re-applied, the missed message in its
//! cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::{Server, ws::WsLimits};
use tidings::demo::{Message, Typing, chat_module, print_screen};
use tidings::{DbConnection, Tidings};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

/// A server in this process: the demo module on 127.0.0.1, a free port.
struct LocalServer {
    tidings: Tidings,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<()>,
    uri: String,
}

impl LocalServer {
    fn start() -> Res<Self> {
        let tidings = Tidings::builder(chat_module()).start()?;
        let key = TokenKey::random()?;
        let server = Server::new(tidings.clone(), key, WsLimits::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                match server.bind("127.0.0.1:0") {
                    Ok((running, addrs)) => {
                        let _ = tx.send(Ok((addrs[0], running.handle())));
                        let _ = running.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, handle) = rx.recv_timeout(WAIT)??;
        Ok(LocalServer {
            tidings,
            handle,
            thread,
            uri: format!("ws://{addr}"),
        })
    }

    fn stop(self) {
        futures::executor::block_on(self.handle.stop(true));
        let _ = self.thread.join();
        self.tidings.shutdown();
    }
}

/// Calls `reducer` and processes messages until its own result is in.
fn call<A: serde::Serialize>(conn: &DbConnection, reducer: &str, args: &A) -> Res<()> {
    let outcome: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    let o = outcome.clone();
    conn.reducer_then(reducer, args, move |_, r| {
        *o.lock() = Some(r.map(|_| ()).map_err(|e| format!("{e:?}")));
    })?;
    if !conn.run_until(WAIT, |_| outcome.lock().is_some()) {
        return Err(format!("`{reducer}` got no result").into());
    }
    match outcome.lock().take() {
        Some(Err(e)) => Err(format!("`{reducer}` failed: {e}").into()),
        _ => Ok(()),
    }
}

/// Prints what `me` sees and subscribes to everything, waiting for the initial rows.
fn watch(me: &'static str, conn: &DbConnection) -> Res<()> {
    print_screen(me, conn);
    let applied = Arc::new(AtomicBool::new(false));
    let a = applied.clone();
    conn.subscription_builder()
        .on_applied(move |ctx| {
            println!(
                "{me} subscribed; {} messages in history",
                ctx.conn.table::<Message>().count()
            );
            a.store(true, Ordering::SeqCst);
        })
        .subscribe_to_all_tables()?;
    if !conn.run_until(WAIT, |_| applied.load(Ordering::SeqCst)) {
        return Err(format!("{me}'s subscription was not applied in time").into());
    }
    Ok(())
}

fn main() -> Res<()> {
    let local = match std::env::args().nth(1) {
        Some(_) => None,
        None => Some(LocalServer::start()?),
    };
    let uri = match (&local, std::env::args().nth(1)) {
        (Some(s), _) => s.uri.clone(),
        (None, Some(uri)) => uri,
        (None, None) => return Err("no server".into()),
    };
    println!("connecting to {uri}");
    let connect = || {
        DbConnection::builder()
            .uri(&uri)
            .module(&chat_module())
            .timeout(WAIT)
            .connect()
    };
    let ann = connect()?;
    let ben = connect()?;
    watch("ann", &ann)?;
    watch("ben", &ben)?;
    call(&ann, "set_name", &("ann",))?;
    call(&ben, "set_name", &("ben",))?;

    call(&ann, "start_typing", &())?;
    call(&ann, "send_message", &("hello over a socket",))?;
    ben.run_until(WAIT, |c| c.last_offset() >= ann.last_offset());
    call(&ben, "send_message", &("same API as in process",))?;
    ann.run_until(WAIT, |c| c.last_offset() >= ben.last_offset());

    let identity = ann.identity();
    println!("ann drops her socket");
    ann.disconnect();
    call(&ben, "send_message", &("ann, you missed this",))?;
    ann.reconnect()?;
    println!(
        "ann reconnected with her token: same identity: {}",
        ann.identity() == identity
    );
    ann.run_until(WAIT, |c| c.last_offset() >= ben.last_offset());
    for (name, c) in [("ann", &ann), ("ben", &ben)] {
        println!(
            "{name}: {} messages cached, {} typing notices cached",
            c.table::<Message>().count(),
            c.table::<Typing>().count()
        );
    }
    ann.disconnect();
    ben.disconnect();
    if let Some(s) = local {
        s.stop();
    }
    Ok(())
}
