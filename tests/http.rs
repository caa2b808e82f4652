//! The HTTP API over a real loopback socket (port 0): `/call`, `/sql` (SELECT for anyone,
//! DML for the owner only, seen by subscribers), `/schema` and `/metrics`, with every
//! error path answering a status and a message that names the problem.

mod common;

use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value as Json, json};
use tidings::actors::server::Server;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::{Identity, Tidings, demo};

struct Api {
    tidings: Tidings,
    base: String,
    owner: String,
    user: String,
}

async fn start() -> Api {
    let tidings = Tidings::builder(demo::chat_module())
        .start()
        .expect("start");
    let key = TokenKey::random().expect("key");
    let user = key.issue(&Identity::from_u64(42));
    let server = Server::new(tidings.clone(), key, WsLimits::default());
    let owner = server.owner_token();
    let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
    actix_rt::spawn(running);
    Api {
        tidings,
        base: format!("http://127.0.0.1:{}", addrs[0].port()),
        owner,
        user,
    }
}

impl Api {
    /// POSTs `body` to `path` (with `token` if given); status and JSON answer.
    async fn post(&self, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Json) {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        let mut req = client.post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send_body(body.to_string()).await.expect("request");
        let bytes = resp.body().await.expect("body");
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into()));
        (resp.status(), json)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        let mut resp = client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let bytes = resp.body().await.expect("body");
        (resp.status(), String::from_utf8_lossy(&bytes).into())
    }

    async fn select(&self, sql: &str) -> Vec<Json> {
        let (status, body) = self.post("/sql", None, sql).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        body["tables"][0]["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn error_text(body: &Json) -> &str {
    body["error"].as_str().unwrap_or("")
}

#[actix_rt::test]
async fn call_answers_once_durable_and_names_every_error() {
    let api = start().await;
    let (status, body) = api
        .post("/call/send_message", Some(&api.user), r#"["hello"]"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], json!(1), "send_message returns the new id");
    assert!(body["tx_offset"].as_u64().is_some_and(|o| o >= 1), "{body}");
    // Object arguments by name.
    let (status, body) = api
        .post("/call/send_message", None, r#"{"text": "by name"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = api.select("SELECT * FROM message").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0][1],
        json!(Identity::from_u64(42).to_hex()),
        "the token's identity is the caller"
    );

    for (path, body, want_status, want) in [
        (
            "/call/nope",
            "[]",
            StatusCode::NOT_FOUND,
            "no reducer named `nope`",
        ),
        ("/call/send_message", "[\"x\"", StatusCode::BAD_REQUEST, ""),
        (
            "/call/send_message",
            "42",
            StatusCode::BAD_REQUEST,
            "a JSON array or object",
        ),
        ("/call/send_message", "[1]", StatusCode::BAD_REQUEST, ""),
        (
            "/call/send_message",
            "[\"  \"]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "messages must not be empty",
        ),
        (
            "/call/send_message",
            "{}",
            StatusCode::BAD_REQUEST,
            "argument `text` of reducer `send_message` is missing",
        ),
        (
            "/call/send_message",
            r#"{"text": "a", "to": 1}"#,
            StatusCode::BAD_REQUEST,
            "no argument named `to`",
        ),
    ] {
        let (status, answer) = api.post(path, None, body).await;
        assert_eq!(status, want_status, "{path} {body}: {answer}");
        assert!(
            !error_text(&answer).is_empty(),
            "{path} {body}: no error text in {answer}"
        );
        assert!(
            error_text(&answer).contains(want),
            "{path} {body}: {answer}"
        );
    }
    let (status, answer) = api
        .post("/call/send_message", Some("forged"), "[\"x\"]")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(
        api.select("SELECT * FROM message").await.len(),
        2,
        "failed calls change nothing"
    );
}

#[actix_rt::test]
async fn sql_select_runs_for_anyone_and_bad_sql_names_the_problem() {
    let api = start().await;
    api.post("/call/send_message", None, r#"["one"]"#).await;
    let (status, body) = api
        .post("/sql", None, "select * from message where id = 1")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tables"][0]["table"], json!("message"));
    assert_eq!(
        body["tables"][0]["columns"],
        json!(["id", "sender", "sent", "text"])
    );
    assert_eq!(body["tables"][0]["rows"][0][3], json!("one"));
    for (sql, want) in [
        ("SELECT * FROM nope", "unknown table `nope`"),
        ("SELECT * FROM message WHERE", "expected"),
        ("SELECT text FROM message", "column projection"),
    ] {
        let (status, body) = api.post("/sql", None, sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert!(error_text(&body).contains(want), "{sql}: {body}");
        assert!(
            error_text(&body).contains("line 1"),
            "{sql}: position missing in {body}"
        );
    }
}

#[actix_rt::test]
async fn owner_dml_is_a_transaction_subscribers_see_and_others_get_403() {
    let api = start().await;
    let watcher = api.tidings.connect();
    common::subscribe_and_wait(&watcher, &["SELECT * FROM message"]);

    // Anyone but the owner: refused, nothing changes.
    for token in [None, Some(api.user.as_str())] {
        let (status, body) = api
            .post(
                "/sql",
                token,
                "INSERT INTO message (sender, sent, text) VALUES (X'00', 0, 'x')",
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(error_text(&body).contains("owner"), "{body}");
    }
    assert_eq!(api.select("SELECT * FROM message").await.len(), 0);

    let sender = Identity::from_u64(5).to_hex();
    let insert = format!(
        "INSERT INTO message (sender, sent, text) VALUES (X'{sender}', 10, 'a'), (X'{sender}', 20, 'b')"
    );
    let (status, body) = api.post("/sql", Some(&api.owner), &insert).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows_affected"], json!(2));
    let offset = body["tx_offset"].as_u64().expect("an offset");
    common::wait_for(&watcher, "the inserted rows", |c| c.count("message") == 2);
    assert_eq!(
        watcher.last_offset(),
        offset,
        "the subscriber saw that very commit"
    );

    let (status, body) = api
        .post(
            "/sql",
            Some(&api.owner),
            "UPDATE message SET text = 'edited' WHERE sent >= 20",
        )
        .await;
    assert_eq!(
        (status, body["rows_affected"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );
    common::wait_for(&watcher, "the edited row", |c| {
        c.rows("message")
            .iter()
            .any(|r| r[3] == tidings::engine::Value::String("edited".into()))
    });

    let (status, body) = api
        .post(
            "/sql",
            Some(&api.owner),
            "DELETE FROM message WHERE text = 'a'",
        )
        .await;
    assert_eq!(
        (status, body["rows_affected"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );
    common::wait_for(&watcher, "the deletion", |c| c.count("message") == 1);

    // Errors: bad statements are 400 with a position, refused transactions 409; neither
    // changes anything.
    for (sql, want_status, want) in [
        (
            "DELETE FROM nope",
            StatusCode::BAD_REQUEST,
            "unknown table `nope`",
        ),
        (
            "UPDATE message SET text = 3",
            StatusCode::BAD_REQUEST,
            "not a value of column `text`",
        ),
        ("DELETE FROM typing", StatusCode::BAD_REQUEST, "event table"),
        (
            "INSERT INTO message VALUES (2, X'0000000000000000000000000000000000000000000000000000000000000000', 0, 'dup')",
            StatusCode::CONFLICT,
            "unique",
        ),
    ] {
        let (status, body) = api.post("/sql", Some(&api.owner), sql).await;
        assert_eq!(status, want_status, "{sql}: {body}");
        assert!(error_text(&body).contains(want), "{sql}: {body}");
    }
    let rows = api.select("SELECT * FROM message").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][3], json!("edited"));
}

#[actix_rt::test]
async fn schema_and_metrics_describe_the_server() {
    let api = start().await;
    let (status, body) = api.get("/schema").await;
    assert_eq!(status, StatusCode::OK);
    let schema: Json = serde_json::from_str(&body).expect("JSON");
    let tables = schema["tables"].as_array().expect("tables");
    let typing = tables
        .iter()
        .find(|t| t["name"] == json!("typing"))
        .expect("typing listed");
    assert_eq!(typing["event"], json!(true), "{typing}");
    let reducers = schema["reducers"].as_array().expect("reducers");
    assert!(
        reducers.iter().any(|r| r["name"] == json!("send_message")),
        "{schema}"
    );

    api.post("/call/send_message", None, r#"["m"]"#).await;
    let (status, text) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tidings_commits_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("tidings_commits_total");
    assert!(commits >= 1, "{text}");
    for name in [
        "tidings_sessions",
        "tidings_tx_queue_length",
        "tidings_deliveries_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}
