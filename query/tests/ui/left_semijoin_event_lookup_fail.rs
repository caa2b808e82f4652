//! An event table cannot be the lookup side of `left_semijoin`.
mod tables;

use tables::{Hit, Message};
use tidings_query::builder::prelude::*;

fn main() {
    let _ = Message::query().left_semijoin(Hit::query(), |m, h| (m.id, h.target));
}
