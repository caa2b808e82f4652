//! Row-level security: rule validation, query expansion, and "a client sees exactly the
//! rows some rule admits" checked against SQLite with the rules written out by hand.
//!
//! A client's result is the *set* union of its fragments' results (see the `rls` module
//! doc), so results are compared as sets of primary keys; a primary key determines its
//! row, so equal key sets mean equal row sets.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use rusqlite::Connection;
use tidings_engine::{
    AlgebraicType as T, Datastore, Identity, Schema, TableId, TableSchema, TxData, Value, row,
};
use tidings_query::rls::{
    ClientQuery, JoinLimitCause, RlsCompileError, RlsError, RlsRules, Rule, compile_for,
    union_events,
};
use tidings_query::{Caller, compile, evaluate_delta, evaluate_rows};

const ROOM: TableId = TableId(0);
const MEMBER: TableId = TableId(1);
const MSG: TableId = TableId(2);
const SECRET: TableId = TableId(3);
const NOTICE: TableId = TableId(4);

/// A chat: public `room`, private `member` and `msg`, a private `secret` that no rule
/// guards, and an event table `notice`.
fn schema() -> Schema {
    Schema::new([
        TableSchema::builder("room")
            .column("id", T::U32)
            .column("open", T::Bool)
            .primary_key("id")
            .public()
            .build()
            .expect("room"),
        TableSchema::builder("member")
            .column("id", T::U64)
            .column("room", T::U32)
            .column("user", T::Identity)
            .column("admin", T::Bool)
            .primary_key("id")
            .index(&["room"])
            .index(&["user"])
            .build()
            .expect("member"),
        TableSchema::builder("msg")
            .column("id", T::U64)
            .column("room", T::U32)
            .column("author", T::Identity)
            .column("kind", T::U8)
            .primary_key("id")
            .index(&["room"])
            .index(&["author"])
            .build()
            .expect("msg"),
        TableSchema::builder("secret")
            .column("id", T::U64)
            .column("room", T::U32)
            .primary_key("id")
            .index(&["room"])
            .build()
            .expect("secret"),
        TableSchema::builder("notice")
            .column("room", T::U32)
            .column("recipient", T::Identity)
            .column("body", T::U8)
            .index(&["room"])
            .event()
            .build()
            .expect("notice"),
    ])
    .expect("schema")
}

/// You see your own memberships.
const M_OWN: (&str, &str) = ("member", "SELECT * FROM member WHERE user = :sender");
/// Everyone sees who is in the lobby (room 0).
const M_LOBBY: (&str, &str) = ("member", "SELECT * FROM member WHERE room = 0");
/// You see the messages of rooms you are a member of.
const R_ROOMS: (&str, &str) = (
    "msg",
    "SELECT msg.* FROM msg JOIN member ON msg.room = member.room WHERE member.user = :sender",
);
/// You see the messages you wrote.
const R_AUTHOR: (&str, &str) = ("msg", "SELECT * FROM msg WHERE author = :sender");
/// You see announcements (kind 1) of rooms with an admin you can see.
const R_ANNOUNCE: (&str, &str) = (
    "msg",
    "SELECT msg.* FROM msg JOIN member ON msg.room = member.room \
     WHERE member.admin = TRUE AND msg.kind = 1",
);
/// You receive the notices addressed to you.
const N_OWN: (&str, &str) = ("notice", "SELECT * FROM notice WHERE recipient = :sender");
/// You receive body-0 notices of rooms you are a member of.
const N_ROOMS: (&str, &str) = (
    "notice",
    "SELECT notice.* FROM notice JOIN member ON notice.room = member.room \
     WHERE member.user = :sender AND notice.body = 0",
);

/// Every rule above: the rule set of the property test.
const ALL_RULES: &[(&str, &str)] = &[
    M_OWN, M_LOBBY, R_ROOMS, R_AUTHOR, R_ANNOUNCE, N_OWN, N_ROOMS,
];

fn rules(list: &[(&str, &str)]) -> RlsRules {
    try_rules(list).expect("valid rules")
}

fn try_rules(list: &[(&str, &str)]) -> Result<RlsRules, RlsError> {
    RlsRules::new(&schema(), list.iter().map(|(t, sql)| Rule::new(t, sql)))
}

/// Client `n`'s identity (clients 0..3; 3 is a stranger no client uses).
fn ident(n: usize) -> Identity {
    Identity::from_u64(100 + n as u64)
}

fn client(n: usize) -> Caller {
    Caller {
        identity: ident(n),
        is_owner: false,
    }
}

fn owner() -> Caller {
    Caller {
        identity: Identity::from_u64(999),
        is_owner: true,
    }
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;

/// Rooms 0 (open), 1 (open), 2 (closed). A is in 0 and 1 (admin of 1), B in 1, C in 2
/// (admin). Messages: 10 in 0 by C; 11, 12 (kind 1) in 1 by B; 13 in 2 by A; 14 (kind 1)
/// in 2 by C.
fn chat() -> Datastore {
    let ds = Datastore::in_memory(schema());
    let mut tx = ds.begin_mut_tx();
    for (id, open) in [(0u32, true), (1, true), (2, false)] {
        tx.insert(ROOM, row![id, open]).expect("room");
    }
    for (id, room, user, admin) in [
        (1u64, 0u32, A, false),
        (2, 1, A, true),
        (3, 1, B, false),
        (4, 2, C, true),
    ] {
        tx.insert(MEMBER, row![id, room, ident(user), admin])
            .expect("member");
    }
    for (id, room, author, kind) in [
        (10u64, 0u32, C, 0u8),
        (11, 1, B, 0),
        (12, 1, B, 1),
        (13, 2, A, 0),
        (14, 2, C, 1),
    ] {
        tx.insert(MSG, row![id, room, ident(author), kind])
            .expect("msg");
    }
    tx.insert(SECRET, row![1u64, 0u32]).expect("secret");
    tx.commit().expect("commit");
    ds
}

/// The one client query `sql` compiles to.
fn one(sql: &str, rules: &RlsRules, caller: Caller) -> ClientQuery {
    let mut qs = compile_for(sql, &schema(), rules, 1, caller).expect(sql);
    assert_eq!(qs.len(), 1, "{sql}");
    qs.remove(0)
}

/// The primary keys of the rows a client sees: the union of its fragments' rows.
fn seen(ds: &Datastore, q: &ClientQuery) -> BTreeSet<u64> {
    let state = ds.read();
    q.fragments
        .iter()
        .flat_map(|p| evaluate_rows(p, &state))
        .map(|r| match &r[0] {
            Value::U32(v) => u64::from(*v),
            Value::U64(v) => *v,
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn owner_bypasses_rules_with_exactly_the_plain_plans() {
    let ds = chat();
    let rules = rules(ALL_RULES);
    for sql in [
        "SELECT * FROM msg",
        "SELECT * FROM secret",
        "SELECT * FROM member WHERE user = :sender",
        "SELECT room.* FROM room JOIN msg ON room.id = msg.room",
        "SELECT * FROM *",
    ] {
        let plain = compile(sql, &schema(), 1, owner()).expect(sql);
        let qs = compile_for(sql, &schema(), &rules, 1, owner()).expect(sql);
        assert_eq!(qs.len(), plain.len(), "{sql}");
        for (q, p) in qs.iter().zip(&plain) {
            assert_eq!(q.fragments.len(), 1, "{sql}");
            assert_eq!(q.fragments[0].key(), p.key(), "{sql}");
            assert_eq!(q.returned_table, p.returned_table());
        }
    }
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, owner())),
        set(&[10, 11, 12, 13, 14])
    );
}

#[test]
fn private_table_without_rules_is_invisible_to_clients() {
    let rules = rules(ALL_RULES);
    let err = compile_for("SELECT * FROM secret", &schema(), &rules, 1, client(A))
        .expect_err("secret has no rules");
    assert_eq!(
        err.to_string(),
        "table `secret` is private (line 1, column 15)"
    );
    let err = compile_for(
        "SELECT room.* FROM room JOIN secret ON room.id = secret.room",
        &schema(),
        &rules,
        1,
        client(A),
    )
    .expect_err("secret as a lookup table");
    assert_eq!(
        err.to_string(),
        "table `secret` is private (line 1, column 30)"
    );
    // Without rules, the private chat tables are as invisible as `secret`.
    let none = self::rules(&[]);
    let err = compile_for("SELECT * FROM msg", &schema(), &none, 1, client(A))
        .expect_err("msg without rules");
    assert_eq!(
        err.to_string(),
        "table `msg` is private (line 1, column 15)"
    );
    let names = |r: &RlsRules| -> Vec<String> {
        compile_for("SELECT * FROM *", &schema(), r, 1, client(A))
            .expect("FROM *")
            .iter()
            .map(|q| q.returned_table_name.to_string())
            .collect()
    };
    assert_eq!(names(&none), ["room"]);
    assert_eq!(names(&rules), ["room", "member", "msg"]);
}

#[test]
fn public_table_without_rules_is_fully_visible() {
    let ds = chat();
    let rules = rules(ALL_RULES);
    let q = one("SELECT * FROM room", &rules, client(D));
    let plain = compile("SELECT * FROM room", &schema(), 1, client(D)).expect("plain");
    assert_eq!(q.fragments.len(), 1);
    assert_eq!(q.fragments[0].key(), plain[0].key());
    assert_eq!(seen(&ds, &q), set(&[0, 1, 2]));
}

#[test]
fn single_table_rule_binds_sender_per_client() {
    let ds = chat();
    let rules = rules(&[M_OWN]);
    let a = one("SELECT * FROM member", &rules, client(A));
    let b = one("SELECT * FROM member", &rules, client(B));
    assert_eq!(seen(&ds, &a), set(&[1, 2]));
    assert_eq!(seen(&ds, &b), set(&[3]));
    assert_eq!(
        seen(
            &ds,
            &one("SELECT * FROM member WHERE room = 1", &rules, client(A))
        ),
        set(&[2])
    );
    assert!(seen(&ds, &one("SELECT * FROM member", &rules, client(D))).is_empty());
    // The key holds the bound identity: clients differ, one client shares with itself.
    assert_ne!(a.fragments[0].key(), b.fragments[0].key());
    let again = one("select * from member", &rules, client(A));
    assert_eq!(a.fragments[0].key(), again.fragments[0].key());
}

#[test]
fn join_rule_admits_the_rows_of_the_clients_rooms() {
    let ds = chat();
    // `member` has no rules here: the rule reads it in full although it is private.
    let rules = rules(&[R_ROOMS]);
    let a = one("SELECT * FROM msg", &rules, client(A));
    assert_eq!(a.fragments.len(), 1);
    assert!(
        a.fragments[0].join.is_some(),
        "the fragment is the rule's semijoin"
    );
    assert_eq!(seen(&ds, &a), set(&[10, 11, 12]));
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(B))),
        set(&[11, 12])
    );
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(C))),
        set(&[13, 14])
    );
    assert_eq!(
        seen(
            &ds,
            &one("SELECT * FROM msg WHERE kind = 1", &rules, client(A))
        ),
        set(&[12])
    );
    assert!(seen(&ds, &one("SELECT * FROM msg", &rules, client(D))).is_empty());
}

#[test]
fn join_rule_only_counts_lookup_rows_the_client_may_see() {
    let ds = chat();
    // Only lobby memberships are visible, so A's membership of room 1 cannot admit the
    // messages of room 1 even though it is A's.
    let rules = rules(&[R_ROOMS, M_LOBBY]);
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(A))),
        set(&[10])
    );
    assert!(seen(&ds, &one("SELECT * FROM msg", &rules, client(B))).is_empty());
    // Announcements need a visible admin: A sees room 1's through its own admin row.
    let rules = self::rules(&[R_ANNOUNCE, M_OWN]);
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(A))),
        set(&[12])
    );
    assert!(seen(&ds, &one("SELECT * FROM msg", &rules, client(B))).is_empty());
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(C))),
        set(&[14])
    );
}

#[test]
fn rules_guard_the_lookup_side_of_a_clients_join() {
    let ds = chat();
    let rules = rules(&[M_OWN]);
    let sql = "SELECT room.* FROM room JOIN member ON room.id = member.room";
    let a = one(sql, &rules, client(A));
    assert_eq!(a.fragments.len(), 1);
    assert_eq!(seen(&ds, &a), set(&[0, 1]));
    assert_eq!(seen(&ds, &one(sql, &rules, client(B))), set(&[1]));
    assert!(seen(&ds, &one(sql, &rules, client(D))).is_empty());
    // And the returned side of a join.
    let sql =
        "SELECT member.* FROM member JOIN room ON member.room = room.id WHERE room.open = TRUE";
    assert_eq!(seen(&ds, &one(sql, &rules, client(A))), set(&[1, 2]));
    assert!(seen(&ds, &one(sql, &rules, client(C))).is_empty());
}

#[test]
fn rules_of_one_table_are_ored() {
    let ds = chat();
    let rules = rules(&[R_ROOMS, R_AUTHOR]);
    let a = one("SELECT * FROM msg", &rules, client(A));
    assert_eq!(a.fragments.len(), 2);
    assert_eq!(seen(&ds, &a), set(&[10, 11, 12, 13]));
    assert_eq!(
        seen(&ds, &one("SELECT * FROM msg", &rules, client(C))),
        set(&[10, 13, 14])
    );
    assert!(seen(&ds, &one("SELECT * FROM msg", &rules, client(D))).is_empty());
    // Both sides of a self-join carry both rules: 2 × 2 fragments.
    let rules = self::rules(&[M_OWN, M_LOBBY]);
    let mates = one(
        "SELECT member.* FROM member JOIN member AS m2 ON member.room = m2.room",
        &rules,
        client(B),
    );
    assert_eq!(mates.fragments.len(), 4);
    // B sees its own membership (3) and the lobby one (1); each matches a visible row.
    assert_eq!(seen(&ds, &mates), set(&[1, 3]));
}

#[test]
fn join_rule_under_a_clients_join_names_the_rule() {
    let rules = rules(&[R_AUTHOR, R_ROOMS]);
    let sql = "SELECT room.* FROM room JOIN msg ON room.id = msg.room";
    let err = compile_for(sql, &schema(), &rules, 1, client(A)).expect_err("two joins");
    let RlsCompileError::Rule(RlsError::JoinLimit { rule, cause }) = &err else {
        panic!("expected a join-limit error, got {err:?}");
    };
    assert_eq!((&*rule.table, rule.index), ("msg", 1));
    assert!(matches!(cause, JoinLimitCause::ClientJoin { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "rule 1 of `msg` (`{}`) exceeds the limit of one join per query: the query \
             already joins `room` with `msg`, and a join rule would need a second join",
            R_ROOMS.1
        )
    );
    // The owner is not subject to rules.
    assert!(compile_for(sql, &schema(), &rules, 1, owner()).is_ok());
}

#[test]
fn invalid_rules_are_schema_errors_naming_the_rule() {
    let err = try_rules(&[
        R_AUTHOR,
        (
            "msg",
            "SELECT msg.* FROM msg JOIN notice ON msg.room = notice.room",
        ),
    ])
    .expect_err("event lookup");
    assert!(
        matches!(&err, RlsError::EventLookup { rule, lookup } if &*rule.table == "msg" && rule.index == 1 && &**lookup == "notice"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "rule 1 of `msg` (`SELECT msg.* FROM msg JOIN notice ON msg.room = notice.room`): \
         event table `notice` cannot be the lookup side of a rule"
    );

    let to_rooms = (
        "member",
        "SELECT member.* FROM member JOIN room ON member.room = room.id WHERE room.open = TRUE",
    );
    let from_rooms = (
        "room",
        "SELECT room.* FROM room JOIN member ON room.id = member.room WHERE member.user = :sender",
    );
    let err = try_rules(&[to_rooms, from_rooms]).expect_err("cycle");
    assert!(
        matches!(&err, RlsError::Cycle { rule, .. } if &*rule.table == "member" && rule.index == 0),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "rule 0 of `member` (`{}`): rules form a cycle (`member` -> `room` -> `member`)",
            to_rooms.1
        )
    );
    let self_join = (
        "member",
        "SELECT member.* FROM member JOIN member AS m ON member.room = m.room WHERE m.user = :sender",
    );
    let err = try_rules(&[M_OWN, self_join]).expect_err("self cycle");
    assert!(
        matches!(&err, RlsError::Cycle { rule, path } if rule.index == 1 && path == "`member` -> `member`"),
        "{err:?}"
    );

    // R_ROOMS reads `member`, whose rule is a join: a fragment would need two joins.
    let err = try_rules(&[R_ROOMS, to_rooms]).expect_err("join limit");
    let RlsError::JoinLimit { rule, cause } = &err else {
        panic!("expected a join-limit error, got {err:?}");
    };
    assert_eq!((&*rule.table, rule.index), ("msg", 0));
    assert!(
        matches!(cause, JoinLimitCause::LookupRule(inner) if &*inner.table == "member" && inner.index == 0)
    );
    assert!(
        err.to_string()
            .starts_with(&format!("rule 0 of `msg` (`{}`)", R_ROOMS.1))
    );

    let err = try_rules(&[("msg", "SELECT * FROM member WHERE user = :sender")])
        .expect_err("wrong table");
    assert!(
        matches!(&err, RlsError::WrongTable { rule, returned } if &*rule.table == "msg" && &**returned == "member"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "rule 0 of `msg` (`SELECT * FROM member WHERE user = :sender`): it returns rows of \
         `member`, not of `msg`"
    );

    // Text that does not parse or check, or an unknown table, is named the same way.
    let err = try_rules(&[M_OWN, ("member", "SELECT * FROM member WHERE")]).expect_err("parse");
    assert!(
        matches!(&err, RlsError::Parse { rule, .. } if rule.index == 1),
        "{err:?}"
    );
    let err = try_rules(&[("msg", "SELECT * FROM msg WHERE nope = 1")]).expect_err("check");
    assert!(matches!(&err, RlsError::Check { .. }), "{err:?}");
    assert!(err.to_string().starts_with("rule 0 of `msg`"), "{err}");
    let err = try_rules(&[("nope", "SELECT * FROM nope")]).expect_err("unknown table");
    assert!(matches!(&err, RlsError::UnknownTable { .. }), "{err:?}");
    let err = try_rules(&[("msg", "SELECT * FROM *")]).expect_err("FROM *");
    assert!(matches!(&err, RlsError::AllTables { .. }), "{err:?}");
}

#[test]
fn rules_validated_for_another_schema_are_refused() {
    let rules = rules(&[M_OWN]);
    let mut tables: Vec<TableSchema> = schema().tables().iter().map(|t| (**t).clone()).collect();
    tables.push(
        TableSchema::builder("extra")
            .column("id", T::U64)
            .build()
            .expect("extra"),
    );
    let other = Schema::new(tables).expect("schema");
    let err =
        compile_for("SELECT * FROM member", &other, &rules, 2, client(A)).expect_err("stale rules");
    assert_eq!(err, RlsCompileError::StaleRules);
}

/// Commits `notices` (room, recipient, body) and returns the commit's TxData.
fn send(ds: &Datastore, notices: &[(u32, usize, u8)]) -> Arc<TxData> {
    let mut tx = ds.begin_mut_tx();
    for (room, to, body) in notices {
        tx.insert(NOTICE, row![*room, ident(*to), *body])
            .expect("notice");
    }
    tx.commit().expect("commit").tx_data.expect("TxData")
}

/// The events of one commit a client receives: every fragment's delta, deduplicated.
fn received(ds: &Datastore, q: &ClientQuery, tx: &TxData) -> (usize, BTreeSet<(u32, usize, u8)>) {
    assert!(q.returns_event_table);
    let state = ds.read();
    let deltas: Vec<_> = q
        .fragments
        .iter()
        .map(|p| evaluate_delta(p, &state, tx))
        .collect();
    let raw = deltas.iter().map(|d| d.inserts.len()).sum();
    let union = union_events(&deltas);
    assert_eq!(union.len(), union.iter().collect::<BTreeSet<_>>().len());
    let events = union
        .iter()
        .map(|r| {
            let (Value::U32(room), Value::Identity(to), Value::U8(body)) = (&r[0], &r[1], &r[2])
            else {
                panic!("bad notice {r:?}");
            };
            let to = (0..4).find(|n| ident(*n) == **to).expect("known identity");
            (*room, to, *body)
        })
        .collect();
    (raw, events)
}

#[test]
fn event_table_rules_deliver_each_admitted_event_once() {
    let ds = chat();
    let notices = [(0u32, A, 0u8), (1, B, 0), (1, A, 1), (2, D, 0), (1, C, 0)];
    let evs =
        |ids: &[usize]| -> BTreeSet<(u32, usize, u8)> { ids.iter().map(|i| notices[*i]).collect() };

    // One rule: each client gets exactly the notices addressed to it.
    let own = rules(&[N_OWN]);
    let queries: Vec<_> = (0..4)
        .map(|n| one("SELECT * FROM notice", &own, client(n)))
        .collect();
    let tx = send(&ds, &notices);
    for (n, q) in queries.iter().enumerate() {
        let (_, got) = received(&ds, q, &tx);
        let want = notices
            .iter()
            .copied()
            .filter(|(_, to, _)| *to == n)
            .collect();
        assert_eq!(got, want, "client {n}");
    }
    assert!(ds.read().rows(NOTICE).is_empty(), "events are not stored");

    // Two overlapping rules: notice 0 is A's and in A's room; A receives it once.
    let both = rules(&[N_OWN, N_ROOMS, M_OWN]);
    let queries: Vec<_> = (0..4)
        .map(|n| one("SELECT * FROM notice", &both, client(n)))
        .collect();
    let tx = send(&ds, &notices);
    let (raw, a) = received(&ds, &queries[A], &tx);
    assert_eq!(a, evs(&[0, 1, 2, 4]));
    assert_eq!(raw, 5, "notice 0 came from both fragments");
    assert_eq!(received(&ds, &queries[B], &tx).1, evs(&[1, 4]));
    assert_eq!(received(&ds, &queries[C], &tx).1, evs(&[3, 4]));
    assert_eq!(received(&ds, &queries[D], &tx).1, evs(&[3]));
    // A user filter narrows every fragment.
    let q = one("SELECT * FROM notice WHERE room = 1", &both, client(A));
    assert_eq!(received(&ds, &q, &tx).1, evs(&[1, 2, 4]));
}

// ---------------------------------------------------------------------------------------
// Property test: the union of the fragments equals SQLite with the rules inlined.
// ---------------------------------------------------------------------------------------

/// A literal of a generated predicate.
#[derive(Clone, Copy, Debug)]
enum Lit {
    Int(u64),
    Bool(bool),
    Id(usize),
    Sender,
}

/// `qual.col op lit`.
#[derive(Clone, Debug)]
struct Atom {
    qual: &'static str,
    col: &'static str,
    op: &'static str,
    lit: Lit,
}

impl Atom {
    fn render(&self, sender: Identity, sqlite: bool) -> String {
        let hex = |i: Identity| format!("X'{}'", i.to_hex());
        let lit = match self.lit {
            Lit::Int(n) => n.to_string(),
            Lit::Bool(b) if sqlite => u8::from(b).to_string(),
            Lit::Bool(b) => b.to_string().to_uppercase(),
            Lit::Id(n) => hex(ident(n)),
            Lit::Sender if sqlite => hex(sender),
            Lit::Sender => ":sender".into(),
        };
        format!("{}.{} {} {}", self.qual, self.col, self.op, lit)
    }
}

#[derive(Clone, Debug)]
enum Filter {
    All,
    One(Atom),
    And(Atom, Atom),
    Or(Atom, Atom),
}

impl Filter {
    fn render(&self, sender: Identity, sqlite: bool) -> Option<String> {
        let r = |a: &Atom| a.render(sender, sqlite);
        match self {
            Filter::All => None,
            Filter::One(a) => Some(r(a)),
            Filter::And(a, b) => Some(format!("{} AND {}", r(a), r(b))),
            Filter::Or(a, b) => Some(format!("({} OR {})", r(a), r(b))),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Tbl {
    Room,
    Member,
    Msg,
}

impl Tbl {
    fn name(self) -> &'static str {
        match self {
            Tbl::Room => "room",
            Tbl::Member => "member",
            Tbl::Msg => "msg",
        }
    }
}

fn atom(t: Tbl, qual: &'static str) -> BoxedStrategy<Atom> {
    let int = |col: &'static str, max: u64| {
        (prop::sample::select(vec!["=", "!=", "<", ">="]), 0..max).prop_map(move |(op, n)| Atom {
            qual,
            col,
            op,
            lit: Lit::Int(n),
        })
    };
    let boolean = |col: &'static str| {
        any::<bool>().prop_map(move |b| Atom {
            qual,
            col,
            op: "=",
            lit: Lit::Bool(b),
        })
    };
    let identity = |col: &'static str| {
        (
            prop::sample::select(vec!["=", "!="]),
            prop_oneof![(0usize..4).prop_map(Lit::Id), Just(Lit::Sender)],
        )
            .prop_map(move |(op, lit)| Atom { qual, col, op, lit })
    };
    match t {
        Tbl::Room => prop_oneof![int("id", 3), boolean("open")].boxed(),
        Tbl::Member => prop_oneof![
            int("id", 8),
            int("room", 3),
            identity("user"),
            boolean("admin")
        ]
        .boxed(),
        Tbl::Msg => prop_oneof![
            int("id", 10),
            int("room", 3),
            identity("author"),
            int("kind", 2)
        ]
        .boxed(),
    }
}

fn filter(atoms: BoxedStrategy<Atom>) -> impl Strategy<Value = Filter> {
    prop_oneof![
        Just(Filter::All),
        atoms.clone().prop_map(Filter::One),
        (atoms.clone(), atoms.clone()).prop_map(|(a, b)| Filter::And(a, b)),
        (atoms.clone(), atoms).prop_map(|(a, b)| Filter::Or(a, b)),
    ]
}

/// A client's query over the chat tables.
#[derive(Clone, Debug)]
enum UserQuery {
    /// `SELECT * FROM t WHERE f`.
    Single(Tbl, Filter),
    /// `room ⋉ member`: member's rules guard the lookup side.
    RoomsOfMembers(Filter),
    /// `member ⋉ room`: member's rules guard the returned side.
    MembersOfRooms(Filter),
    /// `member ⋉ member AS m2`: member's rules guard both sides.
    RoomMates(Filter),
    /// `room ⋉ msg`: msg has join rules, so clients get a join-limit error.
    RoomsOfMsgs(Filter),
    /// `SELECT * FROM *`.
    All,
}

fn user_query() -> impl Strategy<Value = UserQuery> {
    let either = |a: BoxedStrategy<Atom>, b: BoxedStrategy<Atom>| prop_oneof![a, b].boxed();
    prop_oneof![
        3 => prop_oneof![Just(Tbl::Room), Just(Tbl::Member), Just(Tbl::Msg)]
            .prop_flat_map(|t| filter(atom(t, t.name())).prop_map(move |f| UserQuery::Single(t, f))),
        1 => filter(either(atom(Tbl::Room, "room"), atom(Tbl::Member, "member")))
            .prop_map(UserQuery::RoomsOfMembers),
        1 => filter(either(atom(Tbl::Member, "member"), atom(Tbl::Room, "room")))
            .prop_map(UserQuery::MembersOfRooms),
        1 => filter(either(atom(Tbl::Member, "member"), atom(Tbl::Member, "m2")))
            .prop_map(UserQuery::RoomMates),
        1 => filter(either(atom(Tbl::Room, "room"), atom(Tbl::Msg, "msg")))
            .prop_map(UserQuery::RoomsOfMsgs),
        1 => Just(UserQuery::All),
    ]
}

/// What each caller may see of table `t` under alias `q`: [`ALL_RULES`] written out by
/// hand as SQLite conditions (`:sender` is the caller's identity), or nothing for the
/// owner.
fn visible(t: Tbl, q: &str, caller: Caller) -> String {
    if caller.is_owner {
        return "1".into();
    }
    let s = format!("X'{}'", caller.identity.to_hex());
    // A member row the caller may see through M_OWN or M_LOBBY.
    let member = |m: &str| format!("({m}.user = {s} OR {m}.room = 0)");
    match t {
        Tbl::Room => "1".into(),
        Tbl::Member => member(q),
        Tbl::Msg => format!(
            "(EXISTS (SELECT 1 FROM member mm WHERE mm.room = {q}.room AND mm.user = {s} AND {vm}) \
             OR {q}.author = {s} \
             OR EXISTS (SELECT 1 FROM member mm WHERE mm.room = {q}.room AND mm.admin = 1 \
                        AND {q}.kind = 1 AND {vm}))",
            vm = member("mm"),
        ),
    }
}

/// Our SQL for `uq`, and SQLite queries of the expected primary keys, one per expected
/// client query (named by table), or `None` when a join-limit error is expected.
fn render(uq: &UserQuery, caller: Caller) -> (String, Option<Vec<(&'static str, String)>>) {
    let ours = |head: &str, f: &Filter| match f.render(caller.identity, false) {
        Some(w) => format!("{head} WHERE {w}"),
        None => head.to_string(),
    };
    let theirs = |select: &str, from: &str, f: &Filter, vis: &[String]| {
        let mut conds: Vec<String> = f.render(caller.identity, true).into_iter().collect();
        conds.extend(vis.iter().cloned());
        format!(
            "SELECT DISTINCT {select} FROM {from} WHERE {}",
            conds.join(" AND ")
        )
    };
    let join = |ret: Tbl, ret_q: &'static str, look: Tbl, look_q: &str, on: &str, f: &Filter| {
        let from = if look_q == look.name() {
            format!("{} JOIN {} ON {on}", ret.name(), look.name())
        } else {
            format!("{} JOIN {} AS {look_q} ON {on}", ret.name(), look.name())
        };
        let sql = ours(&format!("SELECT {ret_q}.* FROM {from}"), f);
        let vis = [visible(ret, ret_q, caller), visible(look, look_q, caller)];
        let expected = theirs(&format!("{ret_q}.id"), &from, f, &vis);
        (sql, Some(vec![(ret.name(), expected)]))
    };
    match uq {
        UserQuery::Single(t, f) => {
            let n = t.name();
            let sql = ours(&format!("SELECT * FROM {n}"), f);
            let expected = theirs(&format!("{n}.id"), n, f, &[visible(*t, n, caller)]);
            (sql, Some(vec![(n, expected)]))
        }
        UserQuery::RoomsOfMembers(f) => join(
            Tbl::Room,
            "room",
            Tbl::Member,
            "member",
            "room.id = member.room",
            f,
        ),
        UserQuery::MembersOfRooms(f) => join(
            Tbl::Member,
            "member",
            Tbl::Room,
            "room",
            "member.room = room.id",
            f,
        ),
        UserQuery::RoomMates(f) => join(
            Tbl::Member,
            "member",
            Tbl::Member,
            "m2",
            "member.room = m2.room",
            f,
        ),
        UserQuery::RoomsOfMsgs(f) => {
            let (sql, expected) = join(Tbl::Room, "room", Tbl::Msg, "msg", "room.id = msg.room", f);
            (sql, if caller.is_owner { expected } else { None })
        }
        UserQuery::All => {
            let mut expected: Vec<(&'static str, String)> = [Tbl::Room, Tbl::Member, Tbl::Msg]
                .iter()
                .map(|t| {
                    let n = t.name();
                    (n, theirs("id", n, &Filter::All, &[visible(*t, n, caller)]))
                })
                .collect();
            if caller.is_owner {
                expected.push(("secret", "SELECT id FROM secret".into()));
            }
            ("SELECT * FROM *".into(), Some(expected))
        }
    }
}

/// Random contents: `rooms[i]` is room `i`'s `open` flag if it exists; members and
/// messages have their position as id; identities are drawn from clients 0..3 and the
/// stranger 3.
#[derive(Clone, Debug)]
struct Data {
    rooms: Vec<Option<bool>>,
    members: Vec<(u32, usize, bool)>,
    msgs: Vec<(u32, usize, u8)>,
    secrets: Vec<u32>,
}

fn data() -> impl Strategy<Value = Data> {
    (
        prop::collection::vec(prop::option::of(any::<bool>()), 3),
        prop::collection::vec((0u32..3, 0usize..4, any::<bool>()), 0..8),
        prop::collection::vec((0u32..3, 0usize..4, 0u8..2), 0..10),
        prop::collection::vec(0u32..3, 0..3),
    )
        .prop_map(|(rooms, members, msgs, secrets)| Data {
            rooms,
            members,
            msgs,
            secrets,
        })
}

/// The same data in our datastore and in SQLite (identities as 32-byte BLOBs).
fn load(d: &Data) -> (Datastore, Connection) {
    let ds = Datastore::in_memory(schema());
    let db = Connection::open_in_memory().expect("sqlite");
    db.execute_batch(
        "CREATE TABLE room (id INTEGER PRIMARY KEY, open INTEGER NOT NULL);
         CREATE TABLE member (id INTEGER PRIMARY KEY, room INTEGER NOT NULL,
                              user BLOB NOT NULL, admin INTEGER NOT NULL);
         CREATE TABLE msg (id INTEGER PRIMARY KEY, room INTEGER NOT NULL,
                           author BLOB NOT NULL, kind INTEGER NOT NULL);
         CREATE TABLE secret (id INTEGER PRIMARY KEY, room INTEGER NOT NULL);",
    )
    .expect("create");
    let mut tx = ds.begin_mut_tx();
    for (id, open) in d.rooms.iter().enumerate() {
        let Some(open) = *open else { continue };
        tx.insert(ROOM, row![id as u32, open]).expect("room");
        db.execute("INSERT INTO room VALUES (?1, ?2)", (id as i64, open))
            .expect("room");
    }
    for (id, (room, user, admin)) in d.members.iter().enumerate() {
        tx.insert(MEMBER, row![id as u64, *room, ident(*user), *admin])
            .expect("member");
        db.execute(
            "INSERT INTO member VALUES (?1, ?2, ?3, ?4)",
            (id as i64, room, ident(*user).0.to_vec(), admin),
        )
        .expect("member");
    }
    for (id, (room, author, kind)) in d.msgs.iter().enumerate() {
        tx.insert(MSG, row![id as u64, *room, ident(*author), *kind])
            .expect("msg");
        db.execute(
            "INSERT INTO msg VALUES (?1, ?2, ?3, ?4)",
            (id as i64, room, ident(*author).0.to_vec(), kind),
        )
        .expect("msg");
    }
    for (id, room) in d.secrets.iter().enumerate() {
        tx.insert(SECRET, row![id as u64, *room]).expect("secret");
        db.execute("INSERT INTO secret VALUES (?1, ?2)", (id as i64, room))
            .expect("secret");
    }
    tx.commit().expect("commit");
    (ds, db)
}

fn sqlite_ids(db: &Connection, sql: &str) -> BTreeSet<u64> {
    let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .expect("query")
        .map(|id| id.expect("id") as u64)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For each of three clients and the owner, every random query sees exactly the rows
    /// SQLite finds with the rules inlined: none it should not (no leak), and every one it
    /// should (no loss).
    #[test]
    fn clients_see_exactly_the_rows_their_rules_admit(
        d in data(),
        queries in prop::collection::vec(user_query(), 1..6),
    ) {
        let (ds, db) = load(&d);
        let rules = rules(ALL_RULES);
        let callers = [client(A), client(B), client(C), owner()];
        for uq in &queries {
            for caller in callers {
                let (sql, expected) = render(uq, caller);
                let got = compile_for(&sql, &schema(), &rules, 1, caller);
                let Some(expected) = expected else {
                    let err = got.expect_err("a join rule under a client's join");
                    prop_assert!(
                        matches!(&err, RlsCompileError::Rule(RlsError::JoinLimit { rule, .. })
                            if &*rule.table == "msg" && rule.index == 0),
                        "{sql}: {err}"
                    );
                    continue;
                };
                let got = got.map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
                let names: Vec<&str> = got.iter().map(|q| &*q.returned_table_name).collect();
                let want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
                prop_assert_eq!(names, want, "{}", sql);
                for (q, (_, oracle)) in got.iter().zip(&expected) {
                    let ours = seen(&ds, q);
                    let theirs = sqlite_ids(&db, oracle);
                    let leaked: Vec<_> = ours.difference(&theirs).collect();
                    let lost: Vec<_> = theirs.difference(&ours).collect();
                    prop_assert!(leaked.is_empty(), "{:?} {} leaked {:?} (oracle: {})", caller, sql, leaked, oracle);
                    prop_assert!(lost.is_empty(), "{:?} {} lost {:?} (oracle: {})", caller, sql, lost, oracle);
                }
            }
        }
    }
}
