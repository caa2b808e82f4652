//! The demo module: a small chat. Messages persist; "typing" notices are events.
//!
//! The `chat` and `ws_client` examples and the server binary's compiled-in module use
//! it; the examples' clients print what they see with [`print_screen`].

use crate::engine::{Identity, Timestamp};
use crate::{DbConnection, Module, ReducerContext, table};

/// A chat user.
#[table(name = "user", public)]
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Who.
    #[primary_key]
    pub identity: Identity,
    /// Display name, unique.
    #[unique]
    pub name: String,
}

/// A chat message (persistent).
#[table(name = "message", public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Message id.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Author.
    #[index(btree)]
    pub sender: Identity,
    /// When it was sent.
    pub sent: Timestamp,
    /// What it says.
    pub text: String,
}

/// "Someone is typing" (an event: delivered once, never stored).
#[table(name = "typing", public, event)]
#[derive(Clone, Debug, PartialEq)]
pub struct Typing {
    /// Event id (so repeated notices stay distinct).
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Who is typing.
    #[index(btree)]
    pub sender: Identity,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The chat module: tables `user`, `message`, `typing`; reducers `set_name`,
/// `send_message`, `start_typing`.
pub fn chat_module() -> Module {
    Module::new()
        .table::<User>()
        .table::<Message>()
        .table::<Typing>()
        .reducer(
            "set_name",
            |ctx: &mut ReducerContext<'_>, (name,): (String,)| {
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err("names must not be empty".to_string());
                }
                let identity = ctx.sender;
                let mut users = ctx.db.table::<User>().map_err(err)?;
                let user = User { identity, name };
                if users.find("identity", identity).map_err(err)?.is_some() {
                    users.update(user).map_err(err)?;
                } else {
                    users.insert(user).map_err(err)?;
                }
                Ok(())
            },
        )
        .reducer(
            "send_message",
            |ctx: &mut ReducerContext<'_>, (text,): (String,)| {
                if text.trim().is_empty() {
                    return Err("messages must not be empty".to_string());
                }
                let (sender, sent) = (ctx.sender, ctx.timestamp);
                let m = ctx
                    .db
                    .table::<Message>()
                    .map_err(err)?
                    .insert(Message {
                        id: 0,
                        sender,
                        sent,
                        text,
                    })
                    .map_err(err)?;
                Ok(m.id)
            },
        )
        .reducer("start_typing", |ctx: &mut ReducerContext<'_>, (): ()| {
            let sender = ctx.sender;
            ctx.db
                .table::<Typing>()
                .map_err(err)?
                .insert(Typing { id: 0, sender })
                .map_err(err)?;
            Ok(())
        })
        .arg_names("set_name", &["name"])
        .arg_names("send_message", &["text"])
        .arg_names("start_typing", &[])
}

/// The display name of `id` as `conn` knows it from its cache: the user's name, or the
/// identity's first hex digits before the user has set one.
pub fn display_name(conn: &DbConnection, id: Identity) -> String {
    conn.table::<User>()
        .find("identity", id)
        .map_or_else(|| format!("{}..", &id.to_hex()[..8]), |u| u.name)
}

/// Prints, as `me`'s screen, every message `conn` receives and every typing notice from
/// someone else.
pub fn print_screen(me: &'static str, conn: &DbConnection) {
    conn.table::<Message>().on_insert(move |ctx, m| {
        println!(
            "  [{me}'s screen] {}: {}",
            display_name(&ctx.conn, m.sender),
            m.text
        );
    });
    conn.table::<Typing>().on_insert(move |ctx, t| {
        if t.sender != ctx.conn.identity() {
            println!(
                "  [{me}'s screen] {} is typing...",
                display_name(&ctx.conn, t.sender)
            );
        }
    });
}
