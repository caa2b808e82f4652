//! An event table cannot be the lookup (left) side of `right_semijoin`.
mod tables;

use tables::{Hit, Message};
use tidings_query::builder::prelude::*;

fn main() {
    let _ = Hit::query().right_semijoin(Message::query(), |h, m| (h.target, m.id));
}
