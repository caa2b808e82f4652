//! A multi-user chat: messages persist, "typing" notices are events.
//!
//! `cargo run --example chat` plays a short conversation between three in-process users
//! and prints what each of them sees. Pass `--data-dir DIR` to keep the history: run it
//! twice and the second run starts with the first run's messages in every cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::demo::{Message, Typing, chat_module, print_screen};
use tidings::{DbConnection, Identity, Tidings};

fn call<A: serde::Serialize>(
    conn: &DbConnection,
    reducer: &str,
    args: &A,
) -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let (d, f) = (done.clone(), failure.clone());
    conn.reducer_then(reducer, args, move |_, r| {
        if let Err(e) = r {
            *f.lock() = Some(format!("{e:?}"));
        }
        d.store(true, Ordering::SeqCst);
    })?;
    if !conn.run_until(Duration::from_secs(5), |_| done.load(Ordering::SeqCst)) {
        return Err(format!("`{reducer}` got no result").into());
    }
    if let Some(e) = failure.lock().take() {
        println!("  ({reducer} refused: {e})");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Tidings::builder(chat_module());
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--data-dir") {
        builder = builder.data_dir(args.get(i + 1).ok_or("--data-dir needs a directory")?);
    }
    let tidings = builder.start()?;
    let names = ["alice", "bob", "carol"];
    let users: Vec<DbConnection> = names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            tidings.connect_with(tidings::ConnectOptions {
                identity: Some(Identity::from_u64(i as u64 + 1)),
                ..Default::default()
            })
        })
        .collect();
    for (name, conn) in names.iter().zip(&users) {
        let me = *name;
        print_screen(me, conn);
        let applied = Arc::new(AtomicBool::new(false));
        let a = applied.clone();
        conn.subscription_builder()
            .on_applied(move |ctx| {
                println!(
                    "{me} connected; {} messages in history",
                    ctx.conn.table::<Message>().count()
                );
                a.store(true, Ordering::SeqCst);
            })
            .subscribe(&[
                "SELECT * FROM user",
                "SELECT * FROM message",
                "SELECT * FROM typing",
            ])?;
        conn.run_until(Duration::from_secs(5), |_| applied.load(Ordering::SeqCst));
        call(conn, "set_name", &(me,))?;
    }
    let script: [(usize, &str); 4] = [
        (0, "hi all"),
        (1, "hey alice"),
        (2, "morning!"),
        (0, "typing notices are events: nobody's cache keeps them"),
    ];
    for (who, text) in script {
        println!("{} types and sends {text:?}", names[who]);
        call(&users[who], "start_typing", &())?;
        call(&users[who], "send_message", &(text,))?;
        for u in &users {
            u.frame_tick();
        }
    }
    call(&users[1], "send_message", &("   ",))?;
    for (name, u) in names.iter().zip(&users) {
        u.run_until(Duration::from_secs(5), |c| {
            c.last_offset() >= tidings.datastore().read().offset()
        });
        println!(
            "{name}: {} messages cached, {} typing notices cached",
            u.table::<Message>().count(),
            u.table::<Typing>().count()
        );
    }
    tidings.shutdown();
    Ok(())
}
