//! Tables shared by the ui cases.
#![allow(dead_code)]

use tidings_engine::Identity;
use tidings_macros::table;

#[table(name = "message", public)]
pub struct Message {
    #[primary_key]
    pub id: u64,
    #[index(btree)]
    pub sender: Identity,
    pub text: String,
}

#[table(name = "user", public)]
pub struct User {
    #[primary_key]
    pub identity: Identity,
    pub name: String,
}

#[table(name = "hit", public, event)]
pub struct Hit {
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    #[index(btree)]
    pub target: u64,
}
