//! Join columns must be indexed: `text` and `name` are not.
mod tables;

use tables::{Message, User};
use tidings_query::builder::prelude::*;

fn main() {
    let _ = Message::query().left_semijoin(User::query(), |m, u| (m.text, u.name));
}
