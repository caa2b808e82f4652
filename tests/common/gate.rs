//! A gate a reducer can wait on, so tests can hold the transaction actor mid-call and
//! pile requests up behind it deterministically.

use std::sync::{Condvar, Mutex};

use tidings::{ReducerContext, demo};

/// Open or shut; `hold` waits while shut.
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub const fn new() -> Self {
        Gate {
            open: Mutex::new(true),
            cv: Condvar::new(),
        }
    }

    pub fn set(&self, open: bool) {
        *self.open.lock().expect("gate") = open;
        self.cv.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.cv.wait(open).expect("gate");
        }
    }
}

/// The demo chat module plus `hold(text)`, which waits for `gate` and then inserts a
/// message `text` (so a test can tell whether the held call committed).
pub fn module(gate: &'static Gate) -> tidings::Module {
    demo::chat_module().reducer(
        "hold",
        move |ctx: &mut ReducerContext<'_>, (text,): (String,)| {
            gate.wait();
            let (sender, sent) = (ctx.sender, ctx.timestamp);
            ctx.db
                .table::<demo::Message>()
                .map_err(|e| e.to_string())?
                .insert(demo::Message {
                    id: 0,
                    sender,
                    sent,
                    text,
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        },
    )
}
