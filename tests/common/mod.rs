//! A small game module shared by the end-to-end tests.
#![allow(dead_code)]

pub mod gate;
pub mod raw;
pub mod wsv2;

use std::time::Duration;

use tidings::actors::client::WireProtocol;
use tidings::{
    ConnectOptions, DbConnection, Identity, Module, Protocol, ReducerContext, Tidings, table,
};

/// A chat message: persistent.
#[table(name = "message", public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    #[index(btree)]
    pub sender: Identity,
    pub text: String,
}

/// Damage dealt: an event table.
#[table(name = "damage", public, event)]
#[derive(Clone, Debug, PartialEq)]
pub struct Damage {
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    #[index(btree)]
    pub target: Identity,
    pub amount: u32,
}

/// A player: persistent, keyed by identity.
#[table(name = "player", public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Player {
    #[primary_key]
    pub identity: Identity,
    #[unique]
    pub name: String,
    #[index(btree)]
    pub zone: u32,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Inserts a message from the caller (shared by the reducers below).
fn insert_message(ctx: &mut ReducerContext<'_>, text: String) -> Result<(), String> {
    let sender = ctx.sender;
    ctx.db
        .table::<Message>()
        .map_err(err)?
        .insert(Message {
            id: 0,
            sender,
            text,
        })
        .map_err(err)?;
    Ok(())
}

pub fn module() -> Module {
    Module::new()
        .table::<Message>()
        .table::<Damage>()
        .table::<Player>()
        .reducer(
            "send_message",
            |ctx: &mut ReducerContext<'_>, (text,): (String,)| {
                insert_message(ctx, text)?;
                Ok(())
            },
        )
        .reducer(
            "join",
            |ctx: &mut ReducerContext<'_>, (name, zone): (String, u32)| {
                let identity = ctx.sender;
                ctx.db
                    .table::<Player>()
                    .map_err(err)?
                    .insert(Player {
                        identity,
                        name,
                        zone,
                    })
                    .map_err(err)?;
                Ok(())
            },
        )
        .reducer("move", |ctx: &mut ReducerContext<'_>, (zone,): (u32,)| {
            let identity = ctx.sender;
            let mut players = ctx.db.table::<Player>().map_err(err)?;
            let mut p = players
                .find("identity", identity)
                .map_err(err)?
                .ok_or("not joined")?;
            p.zone = zone;
            players.update(p).map_err(err)?;
            Ok(())
        })
        .reducer(
            "deal",
            |ctx: &mut ReducerContext<'_>, amounts: Vec<(Identity, u32)>| {
                let mut t = ctx.db.table::<Damage>().map_err(err)?;
                let mut ids = Vec::new();
                for (target, amount) in amounts {
                    ids.push(
                        t.insert(Damage {
                            id: 0,
                            target,
                            amount,
                        })
                        .map_err(err)?
                        .id,
                    );
                }
                Ok(ids)
            },
        )
        .reducer("noop", |_: &mut ReducerContext<'_>, (): ()| Ok(()))
        .reducer(
            "fail_after_insert",
            |ctx: &mut ReducerContext<'_>, (text,): (String,)| {
                insert_message(ctx, text)?;
                Err::<(), _>("refused on purpose".to_string())
            },
        )
        .reducer(
            "panic_after_insert",
            |ctx: &mut ReducerContext<'_>, (text,): (String,)| {
                insert_message(ctx, text)?;
                if ctx.sender != Identity::ZERO {
                    panic!("boom");
                }
                Ok(())
            },
        )
}

pub fn start() -> Tidings {
    Tidings::builder(module())
        .arbiters(2)
        .start()
        .expect("tidings starts")
}

pub const WAIT: Duration = Duration::from_secs(20);

/// Processes `conn`'s messages until `cond` holds, failing the test after a deadline.
pub fn wait_for(conn: &DbConnection, what: &str, mut cond: impl FnMut(&DbConnection) -> bool) {
    assert!(
        conn.run_until(WAIT, |c| cond(c)),
        "timed out waiting for {what}"
    );
}

/// Subscribes `conn` to `queries` as one query set and waits until it is applied.
pub fn subscribe_and_wait(conn: &DbConnection, queries: &[&str]) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let applied = Arc::new(AtomicBool::new(false));
    let a = applied.clone();
    let error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let e = error.clone();
    conn.subscription_builder()
        .on_applied(move |_| a.store(true, Ordering::SeqCst))
        .on_error(move |_, m| *e.lock() = Some(m.to_string()))
        .subscribe(queries)
        .expect("subscribe");
    wait_for(conn, "subscription applied", |_| {
        applied.load(Ordering::SeqCst) || error.lock().is_some()
    });
    assert!(error.lock().is_none(), "{queries:?}: {:?}", error.lock());
}

/// How a test's clients reach Tidings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `Tidings::connect`: a session in this process.
    InProcess,
    /// `DbConnection::builder()`: a WebSocket to a server on 127.0.0.1, port 0.
    WebSocket,
}

impl Transport {
    /// Both, in-process first.
    pub const ALL: [Transport; 2] = [Transport::InProcess, Transport::WebSocket];
}

/// How a test's v1 clients reach Tidings: the three ways a v1 client can be connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Path {
    /// `Tidings::connect_with` with `Protocol::V1`.
    InProcess,
    /// A WebSocket speaking `v1.msgpack.tidings` (binary frames).
    WebSocketMsgPack,
    /// A WebSocket speaking `v1.json.tidings` (text frames).
    WebSocketJson,
}

impl V1Path {
    /// All three, in-process first.
    pub const ALL: [V1Path; 3] = [
        V1Path::InProcess,
        V1Path::WebSocketMsgPack,
        V1Path::WebSocketJson,
    ];

    /// The transport under it (v2 clients of the same test use it too).
    pub fn transport(self) -> Transport {
        match self {
            V1Path::InProcess => Transport::InProcess,
            V1Path::WebSocketMsgPack | V1Path::WebSocketJson => Transport::WebSocket,
        }
    }

    /// The WebSocket protocol, if it is one.
    pub fn wire(self) -> Option<WireProtocol> {
        match self {
            V1Path::InProcess => None,
            V1Path::WebSocketMsgPack => Some(WireProtocol::V1MsgPack),
            V1Path::WebSocketJson => Some(WireProtocol::V1Json),
        }
    }
}

/// A WebSocket server over a `Tidings`, on its own thread and actix system.
pub struct WsServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The owner's token.
    pub owner_token: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WsServer {
    /// Serves `tidings` on 127.0.0.1, port 0.
    pub fn start(tidings: &Tidings) -> Self {
        use tidings::actors::server::{Server, token::TokenKey, ws::WsLimits};
        let (tx, rx) = std::sync::mpsc::channel();
        let tidings = tidings.clone();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = Server::new(
                    tidings,
                    TokenKey::random().expect("token key"),
                    WsLimits::default(),
                );
                let owner = server.owner_token();
                let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
                tx.send((addrs[0], owner, running.handle()))
                    .expect("report the address");
                let _ = running.await;
            });
        });
        let (addr, owner_token, handle) = rx.recv_timeout(WAIT).expect("server starts");
        WsServer {
            addr,
            owner_token,
            handle,
            thread: Some(thread),
        }
    }

    /// `ws://127.0.0.1:port`.
    pub fn uri(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops listening and drops every socket.
    pub fn stop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread ends");
        }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test module's Tidings and, for WebSocket runs, a server in front of it.
pub struct Harness {
    /// The engine.
    pub tidings: Tidings,
    /// How `connect` connects.
    pub transport: Transport,
    /// The server (WebSocket runs only).
    pub server: Option<WsServer>,
    /// How `connect_v1` connects.
    pub v1: V1Path,
}

impl Harness {
    /// Starts the test module, and a server when `transport` needs one.
    pub fn start(transport: Transport) -> Self {
        Self::start_v1(match transport {
            Transport::InProcess => V1Path::InProcess,
            Transport::WebSocket => V1Path::WebSocketMsgPack,
        })
    }

    /// Starts the test module, with a server when `v1` is a WebSocket path; v2 clients
    /// use the same transport.
    pub fn start_v1(v1: V1Path) -> Self {
        let tidings = start();
        let transport = v1.transport();
        let server = (transport == Transport::WebSocket).then(|| WsServer::start(&tidings));
        Harness {
            tidings,
            transport,
            server,
            v1,
        }
    }

    /// A new v2 client with a fresh identity, over the harness's transport.
    pub fn connect(&self) -> DbConnection {
        match &self.server {
            None => self.tidings.connect(),
            Some(s) => connect_ws(&s.uri()),
        }
    }

    /// A new v1 client with a fresh identity, over the harness's v1 path.
    pub fn connect_v1(&self) -> DbConnection {
        match (&self.server, self.v1.wire()) {
            (Some(s), Some(wire)) => connect_ws_as(&s.uri(), wire),
            _ => self.tidings.connect_with(ConnectOptions {
                protocol: Protocol::V1,
                ..ConnectOptions::default()
            }),
        }
    }

    /// Stops the server (if any) and Tidings.
    pub fn shutdown(mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        self.tidings.shutdown();
    }
}

/// A WebSocket client of the test module at `uri`.
pub fn connect_ws(uri: &str) -> DbConnection {
    connect_ws_as(uri, WireProtocol::V2MsgPack)
}

/// A WebSocket client of the test module at `uri`, speaking `protocol`.
pub fn connect_ws_as(uri: &str, protocol: WireProtocol) -> DbConnection {
    let conn = DbConnection::builder()
        .uri(uri)
        .module(&module())
        .protocol(protocol)
        .timeout(WAIT)
        .connect()
        .unwrap_or_else(|e| panic!("connects over WebSocket with {protocol:?}: {e}"));
    assert_eq!(conn.protocol(), protocol.version());
    conn
}

/// Runs `scenario` once per transport, each on a fresh harness.
pub fn on_each_transport(scenario: impl Fn(&Harness)) {
    for transport in Transport::ALL {
        // Shown with the failure, to tell the runs apart.
        eprintln!("transport: {transport:?}");
        let h = Harness::start(transport);
        scenario(&h);
        h.shutdown();
    }
}

/// Runs `scenario` once per v1 path, each on a fresh harness.
pub fn on_each_v1_path(scenario: impl Fn(&Harness)) {
    for path in V1Path::ALL {
        eprintln!("v1 path: {path:?}");
        let h = Harness::start_v1(path);
        scenario(&h);
        h.shutdown();
    }
}

/// A flag and an `on_applied` callback that raises it.
pub fn applied_flag() -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    impl FnOnce(&tidings::EventContext) + Send + 'static,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    (flag, move |_: &tidings::EventContext| {
        f.store(true, Ordering::SeqCst)
    })
}

/// Asks `conn` two one-off queries at once, `SELECT * FROM message` and one on a table
/// that does not exist, and checks both answers: the one message `sender` sent, with the
/// text "kept", and an error that names the missing table.
pub fn check_one_off_queries(conn: &DbConnection, sender: Identity) {
    type Rows = std::sync::Arc<parking_lot::Mutex<Option<tidings::actors::messages::OneOffRows>>>;
    let got: [Rows; 2] = [Rows::default(), Rows::default()];
    for (query, slot) in ["SELECT * FROM message", "SELECT * FROM nowhere"]
        .iter()
        .zip(&got)
    {
        let slot = slot.clone();
        conn.one_off_query(query, move |rows| *slot.lock() = Some(rows))
            .expect("one-off query");
    }
    wait_for(conn, "both answers", |_| {
        got.iter().all(|g| g.lock().is_some())
    });
    let rows = got[0].lock().take().expect("answered").expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(&*rows[0].0, "message");
    let m = <Message as tidings::engine::TableType>::from_row(rows[0].1[0].clone())
        .expect("a message row");
    assert_eq!((m.text.as_str(), m.sender), ("kept", sender));
    let err = got[1]
        .lock()
        .take()
        .expect("answered")
        .expect_err("an unknown table is the query's error");
    assert!(err.contains("nowhere"), "{err}");
}
