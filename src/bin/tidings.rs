//! `tidings serve`: serves a data directory over WebSocket and HTTP with the demo chat
//! module compiled in.
//!
//! ```text
//! tidings serve [--data-dir DIR] [--listen ADDR:PORT]
//! ```
//! Defaults: `./tidings-data` (created if absent) on `127.0.0.1:3000`. Ctrl-C (or
//! SIGTERM) shuts down gracefully: stop accepting connections, let the transaction in
//! progress finish, answer queued calls with an error, flush the log, close every session
//! with close code 1001 and a reason, then exit 0.

use std::process::ExitCode;

use tidings::actors::server::token::TokenKey;
use tidings::actors::server::{Server, ws::WsLimits};
use tidings::{Tidings, demo};

struct Args {
    data_dir: String,
    listen: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") => {}
        Some(other) => return Err(format!("unknown command `{other}`; try `tidings serve`")),
        None => return Err("usage: tidings serve [--data-dir DIR] [--listen ADDR:PORT]".into()),
    }
    let mut out = Args {
        data_dir: "./tidings-data".into(),
        listen: "127.0.0.1:3000".into(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => out.data_dir = value,
            "--listen" => out.listen = value,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(out)
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            let ctrl_c = std::pin::pin!(actix_web::rt::signal::ctrl_c());
            let term = std::pin::pin!(term.recv());
            futures::future::select(ctrl_c, term).await;
            return;
        }
    }
    let _ = actix_web::rt::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let tidings = Tidings::builder(demo::chat_module())
            .data_dir(&args.data_dir)
            .start()
            .map_err(|e| {
                format!(
                    "cannot start: {e} ({:?})",
                    std::error::Error::source(&e).map(|s| s.to_string())
                )
            })?;
        let key = TokenKey::load_or_create(std::path::Path::new(&args.data_dir))
            .map_err(|e| format!("cannot read the identity key in {}: {e}", args.data_dir))?;
        let server = Server::new(tidings.clone(), key, WsLimits::default());
        let owner = server.owner_token();
        let (running, addrs) = server
            .bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        eprintln!(
            "tidings serving {} on {:?}; owner token: {owner}",
            args.data_dir, addrs
        );
        let handle = running.handle();
        let serving = actix_web::rt::spawn(running);
        stop_signal().await;
        eprintln!("tidings shutting down");
        handle.pause().await;
        tidings
            .shutdown_gracefully("the server is shutting down")
            .await;
        // Let sessions write what is queued for them and their close frames; a client
        // that does not read is not waited for past the deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tidings
            .metrics()
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && std::time::Instant::now() < deadline
        {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        handle.stop(true).await;
        let _ = serving.await;
        tidings.shutdown();
        eprintln!("tidings stopped; log flushed");
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
