//! `tidings serve`: serves a data directory over WebSocket and HTTP with the demo chat
//! module compiled in.
//!
//! ```text
//! tidings serve [--data-dir DIR] [--listen ADDR:PORT]
//! ```
//! Defaults: `./tidings-data` (created if absent) on `127.0.0.1:3000`. Ctrl-C stops
//! accepting, lets the in-flight transaction finish, flushes the log and closes sessions.

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
        running.await.map_err(|e| e.to_string())?;
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
