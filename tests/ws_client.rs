//! The WebSocket transport of `DbConnection`, over real loopback sockets: ordering against
//! other clients, reducer results, reconnecting with the token, and typed errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::actors::client::{ConnectError, SendError, WireProtocol};
use tidings::actors::wire::v2::Compression;
use tidings::{DbConnection, Event, Identity, Protocol, ReducerError, TidingsError};

/// Calls `reducer` on `conn` and waits for its own result.
fn call_and_wait<A: serde::Serialize>(conn: &DbConnection, reducer: &str, args: &A) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let r = reducer.to_string();
    conn.reducer_then(reducer, args, move |_, res| {
        res.unwrap_or_else(|e| panic!("`{r}` fails: {e:?}"));
        d.store(true, Ordering::SeqCst);
    })
    .expect("call");
    wait_for(conn, reducer, |_| done.load(Ordering::SeqCst));
}

#[test]
fn two_websocket_clients_and_an_in_process_client_see_the_same_commits_in_order() {
    let h = Harness::start(Transport::WebSocket);
    let uri = h.server.as_ref().expect("server").uri();
    let a = connect_ws(&uri);
    let b = DbConnection::builder()
        .uri(&uri)
        .module(&module())
        .compression(Compression::Gzip)
        .timeout(WAIT)
        .connect()
        .expect("gzip client connects");
    let local = h.tidings.connect();
    assert!(a.is_remote() && b.is_remote() && !local.is_remote());
    let clients = [&a, &b, &local];
    // Per client: (offset applied, message text), in callback order.
    type Log = Arc<Mutex<Vec<(u64, String)>>>;
    let seen: Vec<Log> = (0..3).map(|_| Log::default()).collect();
    for (c, log) in clients.iter().zip(&seen) {
        let log = log.clone();
        c.table::<Message>().on_insert(move |ctx, m| {
            log.lock().push((ctx.conn.last_offset(), m.text.clone()));
        });
        subscribe_and_wait(c, &["SELECT * FROM message"]);
    }
    // Interleaved calls from all three, none awaited before the next.
    for i in 0..10 {
        for (name, c) in ["a", "b", "local"].iter().zip(clients) {
            c.call("send_message", &(format!("{name}{i}"),))
                .expect("call");
        }
    }
    for (c, log) in clients.iter().zip(&seen) {
        wait_for(c, "all 30 messages", |_| log.lock().len() == 30);
    }
    let logs: Vec<Vec<(u64, String)>> = seen.iter().map(|l| l.lock().clone()).collect();
    assert_eq!(logs[0], logs[2], "WebSocket client a and in-process client");
    assert_eq!(
        logs[1], logs[2],
        "gzip WebSocket client b and in-process client"
    );
    let offsets: Vec<u64> = logs[2].iter().map(|(o, _)| *o).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "one commit per message, in offset order: {offsets:?}"
    );
    for c in clients {
        assert_eq!(c.table::<Message>().count(), 30);
    }
    h.shutdown();
}

#[test]
fn reducer_then_over_websocket_gets_its_own_result() {
    let h = Harness::start(Transport::WebSocket);
    let a = h.connect();
    let b = h.connect();
    type Got = Arc<Mutex<Vec<(u32, Event, Result<Vec<u8>, ReducerError>)>>>;
    let got: [Got; 2] = [Got::default(), Got::default()];
    let mut ids = Vec::new();
    for ((c, got), n) in [&a, &b].iter().zip(&got).zip([2usize, 1]) {
        let amounts: Vec<(Identity, u32)> = (0..n).map(|i| (c.identity(), i as u32)).collect();
        let g = got.clone();
        let id = c
            .reducer_then("deal", &amounts, move |ctx, r| {
                let Event::Reducer { request_id, .. } = &ctx.event else {
                    panic!("a reducer event: {:?}", ctx.event);
                };
                g.lock().push((*request_id, ctx.event.clone(), r));
            })
            .expect("deal");
        let g = got.clone();
        let failing = c
            .reducer_then("fail_after_insert", &("x",), move |ctx, r| {
                g.lock().push((0, ctx.event.clone(), r));
            })
            .expect("failing call");
        ids.push((id, failing));
    }
    for (c, got) in [&a, &b].iter().zip(&got) {
        wait_for(c, "both results", |_| got.lock().len() == 2);
    }
    for ((got, (id, _)), n) in got.iter().zip(&ids).zip([2usize, 1]) {
        let got = got.lock();
        let (request_id, event, result) = &got[0];
        assert_eq!(
            request_id, id,
            "the callback's event carries its own request id"
        );
        assert!(
            matches!(event, Event::Reducer { reducer, .. } if reducer == "deal"),
            "{event:?}"
        );
        let bytes = result.as_ref().expect("deal succeeds");
        let dealt: Vec<u64> = rmp_serde::from_slice(bytes).expect("ids decode");
        assert_eq!(dealt.len(), n, "this caller's own result: {dealt:?}");
        assert_eq!(
            got[1].2,
            Err(ReducerError::User("refused on purpose".into())),
            "the failing call's own error"
        );
    }
    h.shutdown();
}

#[test]
fn reconnect_with_the_token_keeps_the_identity_and_reapplies_subscriptions() {
    let h = Harness::start(Transport::WebSocket);
    let players: Vec<DbConnection> = (0..4).map(|_| h.tidings.connect()).collect();
    for p in &players[..3] {
        call_and_wait(p, "join", &(format!("p{}", p.identity().to_hex()), 1u32));
    }
    let watcher = h.connect();
    let inserted: Arc<Mutex<Vec<Player>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<Player>>> = Arc::default();
    let (i, d) = (inserted.clone(), deleted.clone());
    watcher
        .table::<Player>()
        .on_insert(move |_, p| i.lock().push(p.clone()));
    watcher
        .table::<Player>()
        .on_delete(move |_, p| d.lock().push(p.clone()));
    subscribe_and_wait(&watcher, &["SELECT * FROM player WHERE zone = 1"]);
    subscribe_and_wait(&watcher, &["SELECT * FROM message"]);
    assert_eq!(watcher.table::<Player>().count(), 3);
    inserted.lock().clear();

    let identity = watcher.identity();
    let token = watcher.token().expect("the server issued a token");
    let first_connection = watcher.connection_id();
    watcher.disconnect();
    assert!(matches!(
        watcher.call("send_message", &("while away",)),
        Err(TidingsError::Remote(SendError::Closed))
    ));

    // While it is away: one player leaves zone 1, one joins it, one message is sent.
    call_and_wait(&players[0], "move", &(2u32,));
    call_and_wait(
        &players[3],
        "join",
        &(format!("p{}", players[3].identity().to_hex()), 1u32),
    );
    call_and_wait(&players[1], "send_message", &("missed",));

    watcher.reconnect().expect("reconnects with its token");
    assert_eq!(watcher.identity(), identity, "same identity");
    assert_ne!(
        watcher.connection_id(),
        first_connection,
        "a new connection"
    );
    assert!(watcher.token().is_some());
    wait_for(&watcher, "both sets re-applied", |c| {
        c.table::<Message>().count() == 1
            && !deleted.lock().is_empty()
            && !inserted.lock().is_empty()
    });
    assert_eq!(watcher.table::<Player>().count(), 3);
    let mut now: Vec<Identity> = watcher
        .table::<Player>()
        .iter()
        .iter()
        .map(|p| p.identity)
        .collect();
    now.sort();
    let mut expected: Vec<Identity> = players[1..].iter().map(|p| p.identity()).collect();
    expected.sort();
    assert_eq!(now, expected, "exactly the rows in force now, none twice");
    assert_eq!(
        deleted
            .lock()
            .iter()
            .map(|p| p.identity)
            .collect::<Vec<_>>(),
        vec![players[0].identity()],
        "the player who left fires on_delete"
    );
    assert_eq!(
        inserted
            .lock()
            .iter()
            .map(|p| p.identity)
            .collect::<Vec<_>>(),
        vec![players[3].identity()],
        "only the new player fires on_insert"
    );

    // The sets are live on the new socket, and calls act as the same identity.
    call_and_wait(&players[1], "move", &(3u32,));
    wait_for(&watcher, "live delete after reconnect", |_| {
        deleted.lock().len() == 2
    });
    call_and_wait(&watcher, "send_message", &("back",));
    let back = watcher
        .table::<Message>()
        .iter()
        .into_iter()
        .find(|m| m.text == "back")
        .expect("own message in the cache");
    assert_eq!(
        back.sender, identity,
        "the reducer ran as the restored identity"
    );

    // A new connection given the token comes back as the same identity too.
    let again = DbConnection::builder()
        .uri(h.server.as_ref().expect("server").uri())
        .module(&module())
        .token(token)
        .timeout(WAIT)
        .connect()
        .expect("connects with the token");
    assert_eq!(again.identity(), identity);
    h.shutdown();
}

/// A v1 connection reconnects like a v2 one, in both v1 encodings: its `SubscribeSingle`,
/// `SubscribeMulti` and legacy `Subscribe` sets are sent again as they were, and the new
/// session's legacy set, single and multi sets then behave as before.
#[test]
fn v1_reconnect_resends_single_multi_and_legacy_sets() {
    for path in [V1Path::WebSocketMsgPack, V1Path::WebSocketJson] {
        eprintln!("v1 path: {path:?}");
        let h = Harness::start_v1(path);
        v1_reconnect_on(&h);
        h.shutdown();
    }
}

fn v1_reconnect_on(h: &Harness) {
    let players: Vec<DbConnection> = (0..4).map(|_| h.tidings.connect()).collect();
    for p in &players[..3] {
        call_and_wait(p, "join", &(format!("p{}", p.identity().to_hex()), 1u32));
    }
    call_and_wait(&players[0], "send_message", &("before",));
    let watcher = h.connect_v1();
    let applied = Arc::new(AtomicUsize::new(0));
    let on_applied = || {
        let a = applied.clone();
        move |_: &tidings::EventContext| {
            a.fetch_add(1, Ordering::SeqCst);
        }
    };
    let single = watcher
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_single("SELECT * FROM message")
        .expect("single");
    watcher
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe(&["SELECT * FROM player WHERE zone = 1"])
        .expect("multi");
    watcher
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_legacy(&["SELECT * FROM player WHERE zone = 2"])
        .expect("legacy");
    wait_for(&watcher, "three sets applied", |_| {
        applied.load(Ordering::SeqCst) == 3
    });
    assert_eq!(
        (
            watcher.table::<Message>().count(),
            watcher.table::<Player>().count()
        ),
        (1, 3)
    );
    let identity = watcher.identity();
    watcher.disconnect();

    // While it is away: player 0 moves from the multi set's zone to the legacy set's, a
    // fourth player joins zone 1, and a message is sent.
    call_and_wait(&players[0], "move", &(2u32,));
    call_and_wait(
        &players[3],
        "join",
        &(format!("p{}", players[3].identity().to_hex()), 1u32),
    );
    call_and_wait(&players[1], "send_message", &("missed",));

    watcher.reconnect().expect("reconnects with its token");
    assert_eq!(watcher.identity(), identity, "same identity");
    // `on_applied` ran once per set already: the cache tells the re-applied snapshots.
    wait_for(&watcher, "the three sets re-applied", |c| {
        c.table::<Message>().count() == 2 && c.table::<Player>().count() == 4
    });
    let zone_of = |c: &DbConnection, who: Identity| {
        c.table::<Player>()
            .iter()
            .into_iter()
            .find(|p| p.identity == who)
            .map(|p| p.zone)
    };
    assert_eq!(zone_of(&watcher, players[0].identity()), Some(2));
    assert_eq!(zone_of(&watcher, players[3].identity()), Some(1));

    // The new session's legacy set replaces like the old one's: only zone 1 players stay
    // (the multi set's), and messages from the single set.
    watcher
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_legacy(&["SELECT * FROM message WHERE text = 'missed'"])
        .expect("legacy replace");
    wait_for(&watcher, "legacy replaced", |_| {
        applied.load(Ordering::SeqCst) == 4
    });
    assert_eq!(
        (
            watcher.table::<Message>().count(),
            watcher.table::<Player>().count()
        ),
        (2, 3)
    );
    // The single set still ends with its own unsubscribe; the legacy set keeps `missed`.
    let ended = Arc::new(AtomicBool::new(false));
    let e = ended.clone();
    single
        .unsubscribe_then(move |_| e.store(true, Ordering::SeqCst))
        .expect("unsubscribe");
    wait_for(&watcher, "single unsubscribed", |_| {
        ended.load(Ordering::SeqCst)
    });
    let texts: Vec<String> = watcher
        .table::<Message>()
        .iter()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["missed".to_string()]);
    // Live on the new socket, and calls act as the same identity.
    call_and_wait(&players[1], "move", &(3u32,));
    wait_for(&watcher, "live delete after reconnect", |c| {
        c.table::<Player>().count() == 2
    });
    call_and_wait(&watcher, "join", &("watcher".to_string(), 1u32));
    assert_eq!(zone_of(&watcher, identity), Some(1));
    assert!(
        watcher.subscription_errors().is_empty(),
        "{:?}",
        watcher.subscription_errors()
    );
}

#[test]
fn bad_addresses_and_a_gone_server_are_typed_errors() {
    let connect = |uri: &str| {
        DbConnection::builder()
            .uri(uri)
            .module(&module())
            .timeout(WAIT)
            .connect()
    };
    assert!(matches!(
        connect("not a url"),
        Err(ConnectError::InvalidUri { .. })
    ));
    assert!(matches!(
        connect("wss://127.0.0.1:1"),
        Err(ConnectError::InvalidUri { .. })
    ));
    assert!(matches!(
        DbConnection::builder().uri("ws://127.0.0.1:1").connect(),
        Err(ConnectError::MissingSchema)
    ));
    assert_eq!(
        WireProtocol::from(Protocol::V2).subprotocol(),
        "v2.msgpack.tidings"
    );
    assert_eq!(
        WireProtocol::from(Protocol::V1).subprotocol(),
        "v1.msgpack.tidings"
    );
    assert_eq!(WireProtocol::V1Json.subprotocol(), "v1.json.tidings");
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let err = connect(&format!("ws://127.0.0.1:{port}")).expect_err("nothing listens");
    assert!(
        matches!(err, ConnectError::Unreachable { .. }),
        "{err:?}: {err}"
    );

    let mut h = Harness::start(Transport::WebSocket);
    let uri = h.server.as_ref().expect("server").uri();
    let forged = format!("{}.{}", "ab".repeat(32), "cd".repeat(32));
    let err = DbConnection::builder()
        .uri(&uri)
        .module(&module())
        .token(forged)
        .timeout(WAIT)
        .connect()
        .expect_err("forged token");
    assert!(matches!(err, ConnectError::Unauthorized), "{err:?}");
    let err = DbConnection::builder()
        .uri(&uri)
        .module(&tidings::demo::chat_module())
        .timeout(WAIT)
        .connect()
        .expect_err("another module's tables");
    let ConnectError::SchemaMismatch { differences } = &err else {
        panic!("a schema mismatch: {err:?}");
    };
    let text = err.to_string();
    assert!(
        text.contains("table `user` does not exist on the server")
            && text.contains("table `message` has 3 columns on the server and 4 in the client"),
        "{text}"
    );
    assert!(differences.len() >= 3, "every difference: {differences:?}");
    let conn = connect_ws(&uri);
    assert!(
        matches!(conn.reconnect(), Ok(())),
        "reconnect to a live server"
    );
    let local = h.tidings.connect();
    assert!(matches!(local.reconnect(), Err(ConnectError::InProcess)));

    // The server goes away: the close surfaces through `disconnected()`, then sends and
    // reconnects fail with typed errors.
    subscribe_and_wait(&conn, &["SELECT * FROM message"]);
    let results = Arc::new(AtomicUsize::new(0));
    h.server.as_mut().expect("server").stop();
    wait_for(&conn, "the disconnect", |c| c.disconnected().is_some());
    let r = results.clone();
    assert!(matches!(
        conn.reducer_then("send_message", &("late",), move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
        }),
        Err(TidingsError::Remote(SendError::Closed))
    ));
    assert_eq!(
        results.load(Ordering::SeqCst),
        0,
        "an unsent call has no callback"
    );
    let err = conn.reconnect().expect_err("the server is gone");
    assert!(
        matches!(err, ConnectError::Unreachable { .. }),
        "{err:?}: {err}"
    );
    h.shutdown();
}

#[test]
fn one_off_queries_over_websocket_return_decoded_rows() {
    let h = Harness::start(Transport::WebSocket);
    let conn = h.connect();
    call_and_wait(&conn, "send_message", &("kept",));
    check_one_off_queries(&conn, conn.identity());
    h.shutdown();
}

#[test]
fn a_close_frame_reason_surfaces_and_unanswered_calls_get_an_error() {
    let h = Harness::start(Transport::WebSocket);
    let conn = h.connect();
    type Slot = Arc<Mutex<Option<Result<Vec<u8>, ReducerError>>>>;
    let result = Slot::default();
    let r = result.clone();
    // Larger than the server's message limit (1 MiB): the server closes this socket.
    conn.reducer_then("send_message", &("x".repeat(2 << 20),), move |_, res| {
        *r.lock() = Some(res);
    })
    .expect("sent");
    wait_for(&conn, "the close", |c| c.disconnected().is_some());
    let reason = conn.disconnected().expect("a reason");
    assert!(
        reason.contains("limit") || reason.contains("protocol error"),
        "the server's close reason: {reason}"
    );
    let result = result.lock().take().expect("the call's callback ran");
    assert!(
        matches!(&result, Err(ReducerError::Internal(m)) if m.contains(&reason)),
        "{result:?}"
    );
    h.shutdown();
}
