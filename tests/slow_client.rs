//! A client whose socket never reads: its hub drops it when its queue passes the bound
//! (releasing the backlog), the watchdog outside the session reclaims the socket actix
//! no longer polls, and a client that does read receives every commit meanwhile.
//! Also: a silent but polled client is closed at the idle timeout with a reason.

mod common;

use common::raw;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use awc::ws::{CloseCode, Frame};
use futures::StreamExt;
use tidings::actors::queue::QueueLimits;
use tidings::actors::server::Server;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::wire::v2::{self, ClientMessageWire, ServerMessageWire};
use tidings::{DbConnection, Tidings};

const WAIT: Duration = Duration::from_secs(30);

/// Serves `tidings` on 127.0.0.1:0 on a thread of its own; the server and its address.
fn serve(tidings: &Tidings, limits: WsLimits) -> (Server, std::net::SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tidings = tidings.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = Server::new(tidings, TokenKey::random().expect("key"), limits);
            let (running, addrs) = server.clone().bind("127.0.0.1:0").expect("bind");
            tx.send((server, addrs[0])).expect("report");
            let _ = running.await;
        });
    });
    rx.recv_timeout(WAIT).expect("server starts")
}

/// A WebSocket client that completes the handshake, subscribes, and never reads again;
/// its receive buffer is small so that the server's writes back up quickly.
fn never_reading_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = raw::handshake(addr, None, Some(4096));
    let payload = v2::encode_client(&ClientMessageWire::Subscribe {
        request_id: 1,
        query_set_id: 1,
        queries: vec!["SELECT * FROM message".into()],
    });
    raw::write_frame(&mut stream, raw::OP_BINARY, &payload);
    // Read up to the subscription's confirmation, then never again.
    loop {
        let (_, payload) = raw::read_frame(&mut stream);
        if matches!(
            v2::decode_server(&payload),
            Ok(ServerMessageWire::SubscribeApplied { .. })
        ) {
            return stream;
        }
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_and_reclaimed_while_others_get_every_commit() {
    let tidings = Tidings::builder(common::module())
        .queue_limits(QueueLimits {
            messages_max: 64,
            bytes_max: 256 * 1024,
        })
        .start()
        .expect("start");
    let limits = WsLimits {
        heartbeat: Duration::from_millis(100),
        ..WsLimits::default()
    };
    let (server, addr) = serve(&tidings, limits);
    let reader: DbConnection = common::connect_ws(&format!("ws://{addr}"));
    common::subscribe_and_wait(&reader, &["SELECT * FROM message"]);
    let stuck = never_reading_client(addr);
    assert_eq!(server.ws_sessions(), 2);
    let dropped_before = dropped_for_queue(&tidings);

    // Commit until the stuck client's queue passes its bound.
    let text = "x".repeat(4096);
    let mut commits = 0u64;
    while dropped_for_queue(&tidings) == dropped_before {
        assert!(commits < 10_000, "the stuck client was never dropped");
        tidings
            .call_blocking("send_message", &(text.clone(),))
            .expect("call")
            .outcome
            .expect("commits");
        commits += 1;
        // The reader keeps up, as a live client does, so only the stuck one falls behind.
        if commits.is_multiple_of(16) {
            common::wait_for(&reader, "the reader to keep up", |c| {
                c.count("message") as u64 == commits
            });
        }
    }
    // A few more after the drop: the reader still gets them.
    for _ in 0..10 {
        tidings
            .call_blocking("send_message", &(text.clone(),))
            .expect("call")
            .outcome
            .expect("commits");
        commits += 1;
    }
    common::wait_for(&reader, "every commit", |c| {
        c.count("message") as u64 == commits
    });

    // The watchdog shuts the stuck socket; the session is forgotten everywhere.
    let deadline = Instant::now() + WAIT;
    while server.ws_sessions() > 1 || tidings.metrics().sessions.load(Ordering::Relaxed) > 1 {
        assert!(
            Instant::now() < deadline,
            "the stuck session was never reclaimed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Its peer sees the connection end once it reads what was in flight.
    let mut stuck = stuck;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match stuck.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(
        reader.disconnected().is_none(),
        "the reader stays connected"
    );
    tidings.shutdown();
}

fn dropped_for_queue(tidings: &Tidings) -> u64 {
    tidings
        .metrics()
        .dropped
        .lock()
        .iter()
        .filter(|(reason, _)| reason.starts_with("outbound queue bound passed"))
        .map(|(_, n)| *n)
        .sum()
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout_with_a_reason() {
    let tidings = Tidings::builder(common::module()).start().expect("start");
    let limits = WsLimits {
        heartbeat: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(300),
        ..WsLimits::default()
    };
    let (_server, addr) = serve(&tidings, limits);
    actix_rt::System::new().block_on(async {
        let (_, mut silent) = awc::Client::new()
            .ws(format!("ws://{addr}/subscribe"))
            .connect()
            .await
            .expect("connects");
        // Reads (so actix keeps polling its session) but never answers a ping.
        let close = loop {
            let frame = actix_rt::time::timeout(WAIT, silent.next())
                .await
                .expect("closed in time");
            match frame {
                Some(Ok(Frame::Close(reason))) => break reason,
                Some(Ok(_)) => {}
                other => panic!("ended without a close frame: {other:?}"),
            }
        };
        let close = close.expect("a reason");
        assert_eq!(close.code, CloseCode::Away);
        let text = close.description.unwrap_or_default();
        assert!(text.contains("idle for more than 300ms"), "{text}");
    });
    tidings.shutdown();
}
