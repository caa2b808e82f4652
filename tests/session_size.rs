//! Per-session memory budget: what Tidings itself holds for one WebSocket session.
//!
//! The all-in figure (RSS per idle session, actix-web's buffers included; target 24 KiB)
//! needs thousands of sockets and is measured by `cargo run --release --example
//! ws_fanout -- --memory`. This test only checks Tidings' own share, by size arithmetic,
//! so it is fast and does not depend on the machine.

use tidings::actors::server::ws::approx_session_bytes;

/// Tidings-owned bytes allowed per WebSocket session.
const SESSION_BYTES_MAX: usize = 4 * 1024;

#[test]
fn tidings_state_per_websocket_session_fits_in_4_kib() {
    let f = approx_session_bytes();
    for (part, bytes) in [
        ("session actor", f.actor),
        ("queue", f.queue),
        ("hub entry", f.hub),
        ("manager entry", f.manager),
    ] {
        assert!(bytes > 0, "the {part} of a session is counted");
    }
    assert!(
        f.total() <= SESSION_BYTES_MAX,
        "Tidings-owned state per WebSocket session is {} bytes ({f:?}); expected at most {SESSION_BYTES_MAX}",
        f.total()
    );
    println!(
        "Tidings-owned bytes per WebSocket session: {} ({f:?})",
        f.total()
    );
}
