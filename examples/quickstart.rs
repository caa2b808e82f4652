//! Quickstart: a persistent table, an event table, reducers, and two clients.
//!
//! Run with `cargo run --example quickstart` (in memory), or add
//! `-- --data-dir ./tidings-data` to keep committed state on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidings::{DbConnection, Event, Identity, Module, ReducerContext, Tidings, table};

/// A player: a persistent row, cached by every subscriber.
#[table(name = "player", public)]
#[derive(Clone, Debug)]
struct Player {
    #[primary_key]
    identity: Identity,
    #[unique]
    name: String,
    hp: u32,
}

/// A hit: an event row. Subscribers see it once; nothing keeps it.
#[table(name = "hit", public, event)]
#[derive(Clone, Debug)]
struct Hit {
    #[primary_key]
    #[auto_inc]
    id: u64,
    #[index(btree)]
    target: Identity,
    damage: u32,
}

fn module() -> Module {
    Module::new()
        .table::<Player>()
        .table::<Hit>()
        .reducer(
            "join",
            |ctx: &mut ReducerContext<'_>, (name,): (String,)| {
                let identity = ctx.sender;
                let mut players = ctx.db.table::<Player>().map_err(|e| e.to_string())?;
                players
                    .insert(Player {
                        identity,
                        name,
                        hp: 100,
                    })
                    .map_err(|e| e.to_string())?;
                Ok(())
            },
        )
        .reducer(
            "attack",
            |ctx: &mut ReducerContext<'_>, (target, damage): (Identity, u32)| {
                let mut players = ctx.db.table::<Player>().map_err(|e| e.to_string())?;
                let mut victim = players
                    .find("identity", target)
                    .map_err(|e| e.to_string())?
                    .ok_or("no such player")?;
                victim.hp = victim.hp.saturating_sub(damage);
                players.update(victim).map_err(|e| e.to_string())?;
                ctx.db
                    .table::<Hit>()
                    .map_err(|e| e.to_string())?
                    .insert(Hit {
                        id: 0,
                        target,
                        damage,
                    })
                    .map_err(|e| e.to_string())?;
                Ok(())
            },
        )
}

/// Calls `reducer` on `conn` and processes messages until its own result arrives.
fn call<A: serde::Serialize>(
    conn: &DbConnection,
    who: &'static str,
    reducer: &'static str,
    args: &A,
) -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    conn.reducer_then(reducer, args, move |_, result| {
        match result {
            Ok(_) => println!("[{who}] `{reducer}` committed"),
            Err(e) => println!("[{who}] `{reducer}` failed: {e:?}"),
        }
        d.store(true, Ordering::SeqCst);
    })?;
    if !conn.run_until(Duration::from_secs(5), |_| done.load(Ordering::SeqCst)) {
        return Err(format!("no result for `{reducer}` within 5 s").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Tidings::builder(module());
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--data-dir") {
        let dir = args.get(i + 1).ok_or("--data-dir needs a directory")?;
        builder = builder.data_dir(dir);
    }
    let tidings = builder.start()?;

    let alice = tidings.connect();
    let bob = tidings.connect();
    for (who, conn) in [("alice", &alice), ("bob", &bob)] {
        conn.table::<Player>()
            .on_insert(move |_, p| println!("[{who}] player joined: {} ({} hp)", p.name, p.hp));
        conn.table::<Player>().on_update(move |_, old, new| {
            println!("[{who}] {} hp {} -> {}", new.name, old.hp, new.hp)
        });
        let alice_id = alice.identity();
        conn.table::<Hit>().on_insert(move |ctx, h| {
            let by = match &ctx.event {
                Event::Reducer { reducer, .. } => format!("my own `{reducer}` call"),
                _ => "someone else's call".to_string(),
            };
            let target = if h.target == alice_id { "alice" } else { "bob" };
            println!(
                "[{who}] hit event: {target} takes {} (from {by}); cached hits: {}",
                h.damage,
                ctx.conn.table::<Hit>().count()
            );
        });
        conn.subscribe(&["SELECT * FROM player", "SELECT * FROM hit"])?;
    }

    call(&alice, "alice", "join", &("alice",))?;
    call(&bob, "bob", "join", &("bob",))?;
    call(&alice, "alice", "attack", &(bob.identity(), 30u32))?;
    call(&bob, "bob", "attack", &(Identity::from_u64(404), 1u32))?;

    // Let both clients apply everything that has arrived.
    for conn in [&alice, &bob] {
        conn.run_until(Duration::from_secs(5), |c| c.last_offset() >= 3);
    }
    println!(
        "alice caches {} players and {} hits; bob caches {} players and {} hits",
        alice.table::<Player>().count(),
        alice.table::<Hit>().count(),
        bob.table::<Player>().count(),
        bob.table::<Hit>().count()
    );
    tidings.shutdown();
    Ok(())
}
