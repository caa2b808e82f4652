//! An event table may be the returned side of a semijoin, in either direction.
mod tables;

use tables::{Hit, Message};
use tidings_query::builder::prelude::*;
use tidings_query::builder::{Joined, Query};

fn main() {
    let _: Query<Hit, Joined<Message>> =
        Hit::query().left_semijoin(Message::query(), |h, m| (h.target, m.id));
    let _: Query<Hit, Joined<Message>> = Message::query()
        .filter(|m| m.sender.eq(Sender))
        .right_semijoin(Hit::query(), |m, h| (m.id, h.target));
}
