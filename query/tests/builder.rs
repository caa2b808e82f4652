//! The typed query builder and views: builder queries compile to the same plans as the
//! equivalent SQL, views compile per caller and evaluate against a datastore, event
//! tables are refused by views on the dynamic path, and misuse fails to compile (ui).

use tidings_engine::typed::{HasCols, TableType};
use tidings_engine::{Datastore, Identity, Schema};
use tidings_macros::{SqlEnum, table};
use tidings_query::builder::prelude::*;
use tidings_query::builder::{BuildError, Query};
use tidings_query::view::{
    VIEW_EVENT_ERROR, ViewCompileError, ViewDef, ViewError, compile_with_views, resolve_view,
    validate_views,
};
use tidings_query::{
    Caller, CompileError, EVENT_LOOKUP_ERROR, Plan, PlanError, Pred, Side, Source, compile,
    evaluate_rows,
};

#[table(name = "user", public)]
#[derive(Clone, Debug, PartialEq)]
struct User {
    #[primary_key]
    identity: Identity,
    name: String,
    #[index(btree)]
    online: bool,
}

#[table(name = "message", public)]
#[derive(Clone, Debug, PartialEq)]
struct Message {
    #[primary_key]
    #[auto_inc]
    id: u64,
    #[index(btree)]
    sender: Identity,
    text: String,
    reply_to: Option<u64>,
    score: f64,
}

#[derive(SqlEnum, Clone, Copy, Debug, PartialEq)]
enum DamageKind {
    Fire,
    Ice,
}

#[table(name = "player", public, index(btree(columns = [zone, hp])))]
#[derive(Clone, Debug, PartialEq)]
struct Player {
    #[primary_key]
    id: u64,
    #[unique]
    owner: Identity,
    zone: u32,
    hp: u32,
}

#[table(name = "damage", public, event)]
#[derive(Clone, Debug, PartialEq)]
struct Damage {
    #[primary_key]
    #[auto_inc]
    id: u64,
    #[index(btree)]
    target: u64,
    amount: u32,
    kind: DamageKind,
}

#[table(name = "secret", private)]
#[derive(Clone, Debug, PartialEq)]
struct Secret {
    #[primary_key]
    id: u64,
    owner: Identity,
}

fn schema() -> Schema {
    Schema::new([
        User::schema(),
        Message::schema(),
        Player::schema(),
        Damage::schema(),
        Secret::schema(),
    ])
    .expect("test schema")
}

const VERSION: u64 = 3;

fn alice() -> Identity {
    Identity::from_u64(0xA11CE)
}

fn bob() -> Identity {
    Identity::from_u64(0xB0B)
}

fn caller(identity: Identity) -> Caller {
    Caller {
        identity,
        is_owner: false,
    }
}

/// The one plan `sql` compiles to.
fn sql_plan(sql: &str, schema: &Schema, who: Caller) -> Plan {
    let mut plans = compile(sql, schema, VERSION, who).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(plans.len(), 1, "{sql}");
    plans.remove(0)
}

fn build_plan<T, J>(q: &Query<T, J>, schema: &Schema, who: Caller) -> Plan {
    q.compile(schema, VERSION, who)
        .unwrap_or_else(|e| panic!("{q:?}: {e}"))
}

#[test]
fn builder_plans_equal_sql_plans() {
    let schema = schema();
    let who = caller(alice());
    let id = bob();
    let hex = id.to_hex();
    let cases: Vec<(Plan, String)> = vec![
        (
            build_plan(&Message::query(), &schema, who),
            "SELECT * FROM message".into(),
        ),
        (
            build_plan(
                &Message::query().filter(|c: &MessageCols| c.sender.eq(id).and(c.id.gt(5u64))),
                &schema,
                who,
            ),
            format!("SELECT * FROM message WHERE sender = 0x{hex} AND id > 5"),
        ),
        (
            // Filters add up with AND, in any order.
            build_plan(
                &Message::query()
                    .filter(|c| c.id.le(9))
                    .filter(|c| c.id.ge(2u64).or(c.text.eq("hi".to_string()))),
                &schema,
                who,
            ),
            "SELECT * FROM message WHERE (text = 'hi' OR 2 <= id) AND id <= 9".into(),
        ),
        (
            build_plan(
                &Message::query().filter(|c| {
                    c.reply_to
                        .eq(Some(3u64))
                        .or(c.reply_to.ne(None))
                        .or(c.score.lt(-0.0))
                }),
                &schema,
                who,
            ),
            "SELECT * FROM message WHERE reply_to = 3 OR reply_to != NULL OR score < 0.0".into(),
        ),
        (
            build_plan(
                &Message::query().filter(|c| c.sender.eq(Sender)),
                &schema,
                who,
            ),
            "SELECT * FROM message WHERE sender = :sender".into(),
        ),
        (
            build_plan(
                &Damage::query().filter(|c| c.kind.eq(DamageKind::Ice).and(c.amount.ge(10u32))),
                &schema,
                who,
            ),
            "SELECT * FROM damage WHERE kind = 'Ice' AND amount >= 10".into(),
        ),
        (
            // Filters given before the join keep their side.
            build_plan(
                &Message::query()
                    .filter(|m| m.text.ne(String::new()))
                    .left_semijoin(User::query().filter(|u| u.online.eq(true)), |m, u| {
                        (m.sender, u.identity)
                    }),
                &schema,
                who,
            ),
            "SELECT message.* FROM message JOIN user ON message.sender = user.identity \
             WHERE user.online = TRUE AND message.text != ''"
                .into(),
        ),
        (
            // The right side is returned; a filter after the join is on it.
            build_plan(
                &User::query()
                    .filter(|u| u.identity.eq(Sender))
                    .right_semijoin(Message::query(), |u, m| (u.identity, m.sender))
                    .filter(|m| m.id.lt(100u64)),
                &schema,
                who,
            ),
            "SELECT m.* FROM user AS u JOIN message AS m ON m.sender = u.identity \
             WHERE u.identity = :sender AND m.id < 100"
                .into(),
        ),
        (
            // An event table may be the returned side; the first column of a
            // multi-column index counts as indexed.
            build_plan(
                &Damage::query()
                    .left_semijoin(Player::query().filter(|p| p.zone.eq(7u32)), |d, p| {
                        (d.target, p.id)
                    }),
                &schema,
                who,
            ),
            "SELECT damage.* FROM damage JOIN player ON damage.target = player.id \
             WHERE player.zone = 7"
                .into(),
        ),
        (
            build_plan(
                &Player::query().right_semijoin(Damage::query(), |p, d| (p.id, d.target)),
                &schema,
                who,
            ),
            "SELECT damage.* FROM player JOIN damage ON player.id = damage.target".into(),
        ),
        (
            // A self-join: SQL needs aliases, the builder does not.
            build_plan(
                &Player::query()
                    .filter(|p| p.hp.eq(0u32))
                    .left_semijoin(Player::query().filter(|p| p.hp.gt(0u32)), |a, b| {
                        (a.zone, b.zone)
                    }),
                &schema,
                who,
            ),
            "SELECT a.* FROM player AS a JOIN player AS b ON a.zone = b.zone \
             WHERE a.hp = 0 AND b.hp > 0"
                .into(),
        ),
    ];
    for (built, sql) in &cases {
        let expected = sql_plan(sql, &schema, who);
        assert_eq!(built.key(), expected.key(), "{sql}");
        assert_eq!(built.join.is_some(), expected.join.is_some(), "{sql}");
        assert_eq!(built.returned_access, expected.returned_access, "{sql}");
        assert_eq!(built.returns_event_table(), expected.returns_event_table());
    }
}

#[test]
fn generated_handles_follow_the_columns() {
    let c = Message::cols();
    assert_eq!(c.id.id().idx(), 0);
    assert_eq!(c.sender.id().idx(), 1);
    assert_eq!(c.score.id().idx(), 4);
    assert_eq!(c.sender.col().id(), c.sender.id());
    let p = Player::cols();
    // Only an index's first column is indexed for joins.
    let _: tidings_engine::typed::IndexedCol<Player, u32> = p.zone;
    let _: tidings_engine::typed::Col<Player, u32> = p.hp;
    let _: tidings_engine::typed::IndexedCol<Player, Identity> = p.owner;
}

#[test]
fn sender_binds_to_each_caller() {
    let schema = schema();
    let q = Message::query().filter(|c| c.sender.eq(Sender));
    let for_alice = build_plan(&q, &schema, caller(alice()));
    let for_bob = build_plan(&q, &schema, caller(bob()));
    assert_ne!(for_alice.key(), for_bob.key());
    assert_eq!(
        for_bob.key(),
        sql_plan(
            &format!("SELECT * FROM message WHERE sender = 0x{}", bob().to_hex()),
            &schema,
            caller(alice())
        )
        .key()
    );
}

#[test]
fn join_filters_are_on_their_sides() {
    let schema = schema();
    let plan = build_plan(
        &User::query()
            .filter(|u| u.online.eq(true))
            .right_semijoin(Message::query().filter(|m| m.id.eq(1u64)), |u, m| {
                (u.identity, m.sender)
            }),
        &schema,
        caller(alice()),
    );
    let message = schema.table_id("message").expect("message");
    let user = schema.table_id("user").expect("user");
    assert!(matches!(
        plan.source(),
        Source::Semijoin { returned, lookup, .. } if *returned == message && *lookup == user
    ));
    let Pred::And(conjuncts) = plan.filter() else {
        panic!("two conjuncts: {:?}", plan.filter());
    };
    let sides: Vec<Side> = conjuncts
        .iter()
        .map(|c| match c {
            Pred::Cmp { side, .. } => *side,
            other => panic!("not a comparison: {other:?}"),
        })
        .collect();
    assert_eq!(sides, [Side::Returned, Side::Lookup]);
}

#[test]
fn compile_errors_name_the_table() {
    let schema = Schema::new([User::schema()]).expect("schema");
    let err = Message::query()
        .compile(&schema, VERSION, caller(alice()))
        .expect_err("no message table");
    assert_eq!(err, BuildError::UnknownTable { table: "message" });
    assert_eq!(
        err.to_string(),
        "unknown table `message`: the schema has no table of that name"
    );

    // A table called `message` whose columns are not the struct's.
    let other = tidings_engine::TableSchema::builder("message")
        .column("id", tidings_engine::AlgebraicType::U64)
        .primary_key("id")
        .public()
        .build()
        .expect("other message");
    let schema = Schema::new([other]).expect("schema");
    let err = Message::query()
        .compile(&schema, VERSION, caller(alice()))
        .expect_err("different columns");
    assert_eq!(err, BuildError::SchemaMismatch { table: "message" });

    let schema = self::schema();
    let err = Secret::query()
        .compile(&schema, VERSION, caller(alice()))
        .expect_err("private");
    assert_eq!(err.to_string(), "table `secret` is private");
    let owner = Caller {
        identity: alice(),
        is_owner: true,
    };
    assert!(Secret::query().compile(&schema, VERSION, owner).is_ok());

    let err = Message::query()
        .filter(|c| c.score.eq(f64::NAN))
        .compile(&schema, VERSION, owner)
        .expect_err("NaN");
    assert_eq!(
        err.to_string(),
        "column `message.score` is compared with NaN"
    );
}

#[test]
fn a_missing_join_index_is_still_caught_when_planning() {
    // A schema from another build of the program: same columns, no index on `sender`.
    let bare = tidings_engine::TableSchema::builder("message")
        .column("id", tidings_engine::AlgebraicType::U64)
        .column("sender", tidings_engine::AlgebraicType::Identity)
        .column("text", tidings_engine::AlgebraicType::String)
        .column(
            "reply_to",
            tidings_engine::AlgebraicType::Option(Box::new(tidings_engine::AlgebraicType::U64)),
        )
        .column("score", tidings_engine::AlgebraicType::F64)
        .public()
        .build()
        .expect("bare message");
    let schema = Schema::new([bare, User::schema()]).expect("schema");
    let err = Message::query()
        .left_semijoin(User::query(), |m, u| (m.sender, u.identity))
        .compile(&schema, VERSION, caller(alice()))
        .expect_err("no index on sender");
    assert!(matches!(
        err,
        BuildError::Plan(PlanError::MissingJoinIndex { .. })
    ));
}

/// A datastore with two users, their messages and a player each.
fn datastore() -> Datastore {
    let ds = Datastore::in_memory(schema());
    let mut tx = ds.begin_mut_tx();
    let id = |name| tx_table(&ds, name);
    let rows = [
        (
            id("user"),
            User {
                identity: alice(),
                name: "alice".into(),
                online: true,
            }
            .into_row(),
        ),
        (
            id("user"),
            User {
                identity: bob(),
                name: "bob".into(),
                online: false,
            }
            .into_row(),
        ),
        (id("message"), message(alice(), "hello", 1.0)),
        (id("message"), message(alice(), "again", 2.0)),
        (id("message"), message(bob(), "hi", 3.0)),
        (
            id("player"),
            Player {
                id: 1,
                owner: alice(),
                zone: 1,
                hp: 10,
            }
            .into_row(),
        ),
    ];
    for (table, row) in rows {
        tx.insert(table, row).expect("insert");
    }
    tx.commit().expect("commit");
    ds
}

fn tx_table(ds: &Datastore, name: &str) -> tidings_engine::TableId {
    ds.schema().table_id(name).expect("table")
}

fn message(sender: Identity, text: &str, score: f64) -> tidings_engine::Row {
    Message {
        id: 0,
        sender,
        text: text.into(),
        reply_to: None,
        score,
    }
    .into_row()
}

/// The texts of the message rows `plans` return, sorted.
fn message_texts(ds: &Datastore, plans: &[Plan]) -> Vec<String> {
    let read = ds.read();
    let mut texts: Vec<String> = plans
        .iter()
        .flat_map(|p| evaluate_rows(p, &read))
        .map(|row| Message::from_row(row).expect("a message row").text)
        .collect();
    texts.sort();
    texts
}

fn views() -> Vec<ViewDef> {
    vec![
        ViewDef::new("my_messages", |ctx| {
            ctx.from::<Message>().filter(|m| m.sender.eq(Sender))
        }),
        ViewDef::new("online_messages", |ctx| {
            ctx.from::<Message>()
                .left_semijoin(ctx.from::<User>().filter(|u| u.online.eq(true)), |m, u| {
                    (m.sender, u.identity)
                })
        }),
        ViewDef::from_sql(
            "my_messages_sql",
            "SELECT * FROM message WHERE sender = :sender",
        ),
        ViewDef::from_sql("everything", "SELECT * FROM *"),
    ]
}

#[test]
fn views_compile_per_caller_and_evaluate() {
    let ds = datastore();
    let schema = ds.schema();
    let views = views();
    validate_views(&views, &schema).expect("valid views");
    // Declared once, shared by every session's thread.
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&views);
    assert!(resolve_view("my_messages", &views).is_some());
    assert!(resolve_view("message", &views).is_none());

    let run = |sql: &str, who: Identity| {
        let plans = compile_with_views(sql, &schema, &views, VERSION, caller(who))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        message_texts(&ds, &plans)
    };
    assert_eq!(
        run("SELECT * FROM my_messages", alice()),
        ["again", "hello"]
    );
    assert_eq!(run("SELECT * FROM my_messages", bob()), ["hi"]);
    assert_eq!(run("SELECT * FROM my_messages_sql", bob()), ["hi"]);
    // Only alice is online.
    assert_eq!(
        run("SELECT * FROM online_messages", bob()),
        ["again", "hello"]
    );
    // Tables still compile as usual.
    assert_eq!(run("SELECT * FROM message WHERE id = 3", bob()), ["hi"]);

    // The view's plan is the plan of the SQL it stands for.
    let via_view = compile_with_views(
        "SELECT * FROM my_messages",
        &schema,
        &views,
        VERSION,
        caller(alice()),
    )
    .expect("view");
    let direct = sql_plan(
        "SELECT * FROM message WHERE sender = :sender",
        &schema,
        caller(alice()),
    );
    assert_eq!(via_view[0].key(), direct.key());
}

#[test]
fn where_on_a_view_is_anded_onto_it() {
    let ds = datastore();
    let schema = ds.schema();
    let views = views();
    let run = |sql: &str| {
        compile_with_views(sql, &schema, &views, VERSION, caller(alice()))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let plans = run("SELECT v.* FROM my_messages AS v WHERE v.score > 1.5");
    assert_eq!(message_texts(&ds, &plans), ["again"]);
    assert_eq!(
        plans[0].key(),
        sql_plan(
            "SELECT * FROM message WHERE sender = :sender AND score > 1.5",
            &schema,
            caller(alice())
        )
        .key()
    );
    // On a semijoin view the filter is on the returned rows.
    let plans = run("SELECT * FROM online_messages WHERE text = 'hello'");
    assert_eq!(message_texts(&ds, &plans), ["hello"]);
    assert_eq!(
        plans[0].key(),
        sql_plan(
            "SELECT message.* FROM message JOIN user ON message.sender = user.identity \
             WHERE user.online = TRUE AND message.text = 'hello'",
            &schema,
            caller(alice())
        )
        .key()
    );

    // The outer statement is checked like SQL over the view's table.
    let err = compile_with_views(
        "SELECT * FROM my_messages WHERE nope = 1",
        &schema,
        &views,
        VERSION,
        caller(alice()),
    )
    .expect_err("unknown column");
    assert!(matches!(
        err,
        ViewCompileError::Compile(CompileError::Check(_))
    ));
    let err = compile_with_views(
        "SELECT * FROM everything WHERE id = 1",
        &schema,
        &views,
        VERSION,
        caller(alice()),
    )
    .expect_err("several tables");
    assert_eq!(
        err.to_string(),
        "view `everything` returns several tables, so a WHERE cannot be applied to it"
    );
    let plans = run("SELECT * FROM everything");
    assert!(plans.iter().all(|p| !p.reads_from_event_table()));
    let err = compile_with_views(
        "SELECT m.* FROM message AS m JOIN my_messages AS v ON m.id = v.id",
        &schema,
        &views,
        VERSION,
        caller(alice()),
    )
    .expect_err("join on a view");
    assert!(matches!(err, ViewCompileError::JoinOnView { view } if &*view == "my_messages"));
}

#[test]
fn views_cannot_read_event_tables_on_the_dynamic_path() {
    let schema = schema();
    let statements = [
        "SELECT * FROM damage",
        "SELECT damage.* FROM damage JOIN player ON damage.target = player.id",
        // As a lookup side the planner would say something else; views say this first.
        "SELECT player.* FROM player JOIN damage ON damage.target = player.id",
    ];
    for sql in statements {
        let views = [ViewDef::from_sql("hits", sql)];
        let err = validate_views(&views, &schema).expect_err(sql);
        assert_eq!(err.to_string(), VIEW_EVENT_ERROR);
        assert_eq!(err.to_string(), "Views cannot read event tables");
        assert_eq!(
            err,
            ViewError::ReadsEventTable {
                view: "hits".into(),
                table: "damage".into()
            }
        );
        // Compiling an unvalidated view refuses it just the same.
        let err = compile_with_views(
            "SELECT * FROM hits",
            &schema,
            &views,
            VERSION,
            caller(alice()),
        )
        .expect_err(sql);
        assert_eq!(err.to_string(), "Views cannot read event tables");
    }
    // Outside views, an event table as lookup side keeps its own error.
    let err = compile(
        "SELECT player.* FROM player JOIN damage ON damage.target = player.id",
        &schema,
        VERSION,
        caller(alice()),
    )
    .expect_err("event lookup");
    assert_eq!(err.to_string(), EVENT_LOOKUP_ERROR);
}

#[test]
fn view_declarations_are_validated() {
    let schema = schema();
    let twice = [
        ViewDef::from_sql("v", "SELECT * FROM user"),
        ViewDef::from_sql("v", "SELECT * FROM player"),
    ];
    assert_eq!(
        validate_views(&twice, &schema)
            .expect_err("twice")
            .to_string(),
        "view `v` is declared twice"
    );
    let shadow = [ViewDef::from_sql("user", "SELECT * FROM player")];
    assert_eq!(
        validate_views(&shadow, &schema)
            .expect_err("shadows")
            .to_string(),
        "view `user` has the name of a table"
    );
    let broken = [ViewDef::from_sql("v", "SELECT * FROM nowhere")];
    let err = validate_views(&broken, &schema).expect_err("unknown table");
    assert!(matches!(err, ViewError::Sql { ref view, .. } if &**view == "v"));
    assert!(
        err.to_string()
            .starts_with("view `v` does not compile: unknown table `nowhere`")
    );

    // A view reads with the caller's rights: private tables stay private.
    let secret = [ViewDef::new("secrets", |ctx| ctx.from::<Secret>())];
    validate_views(&secret, &schema).expect("the owner may read it");
    let err = compile_with_views(
        "SELECT * FROM secrets",
        &schema,
        &secret,
        VERSION,
        caller(alice()),
    )
    .expect_err("private");
    assert_eq!(
        err.to_string(),
        "view `secrets` does not compile: table `secret` is private"
    );
}

/// Misuse of the builder and of views fails to compile; an event table as the returned
/// side of a semijoin compiles.
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*_fail.rs");
    cases.pass("tests/ui/*_pass.rs");
}
