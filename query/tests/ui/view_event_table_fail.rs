//! A view cannot name an event table, through its context or joined in from elsewhere.
mod tables;

use tables::{Hit, Message};
use tidings_query::builder::prelude::*;
use tidings_query::view::ViewDef;

fn main() {
    let _ = ViewDef::new("hits", |ctx| ctx.from::<Hit>());
    let _ = ViewDef::new("message_hits", |ctx| {
        ctx.from::<Message>()
            .right_semijoin(Hit::query(), |m, h| (m.id, h.target))
    });
}
