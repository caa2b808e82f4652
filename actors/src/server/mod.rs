//! The network server: WebSocket subscriptions and a small HTTP API, on actix-web.
//!
//! - `GET /subscribe`: the WebSocket endpoint; each connection is a [`ws::WsSession`]
//!   actor over a raw [`crate::session::Session`]. Subprotocols `v2.msgpack.tidings`
//!   (also when the header is absent), `v1.msgpack.tidings` and `v1.json.tidings`
//!   ([`SUPPORTED_PROTOCOLS`]); a header naming none of them gets HTTP 400 listing the
//!   supported ones. `?compression=none|gzip` (MessagePack row lists only), `?token=` or
//!   `Authorization: Bearer <token>` to restore an identity (a bad token gets 401).
//! - `POST /call/{reducer}`: JSON array (positional) or object arguments (by the names a
//!   reducer declares with `Module::arg_names`).
//! - `POST /sql`: a SELECT evaluated under the caller's visibility rules; with the owner's
//!   token also `INSERT`/`UPDATE`/`DELETE`, run as one transaction that subscribers see
//!   (`403` for anyone else, `400` for a statement that does not compile, `409` for one
//!   the transaction refuses, `200 {"tx_offset", "rows_affected"}` once durable).
//! - `GET /schema`, `GET /metrics` (Prometheus text).
//!
//! Limits: message size ([`ws::WsLimits`]), requests in flight per connection (the
//! builder's `client_in_flight_max`), heartbeat and idle timeout, and the outbound queue
//! bound (enforced by the hubs). [`watchdog`] runs outside the sessions and reclaims one
//! that actix stopped polling because its peer stopped reading. `tidings serve` shuts
//! down through `Tidings::shutdown_gracefully`; signals are the application's to handle
//! (`bind` disables actix's own).
//!
//! The owner is [`Identity::ZERO`]; its token is [`Server::owner_token`].

pub mod token;
pub mod watchdog;
pub mod ws;

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tidings_engine::commitlog::Durable;
use tidings_engine::{AlgebraicType, Identity};
use tidings_query::Caller;
use tidings_query::dml::DmlError;
use tidings_query::rls::compile_for;

use crate::client::ConnectOptions;
use crate::module::ReducerError;
use crate::system::{Tidings, TidingsError};
use crate::wire::v2::{self, Compression};
use crate::wire::{Codec, v1};
use token::TokenKey;
use watchdog::{ConnSocket, Watchdog};
use ws::{WsLimits, WsSession};

pub use crate::wire::json::value_json;

/// The subprotocols this server speaks, preferred first.
pub const SUPPORTED_PROTOCOLS: &[&str] = &[
    v2::SUBPROTOCOL,
    v1::SUBPROTOCOL_MSGPACK,
    v1::SUBPROTOCOL_JSON,
];

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct Server {
    tidings: Tidings,
    key: TokenKey,
    limits: WsLimits,
    watchdog: Watchdog,
}

impl Server {
    /// A server for `tidings`, issuing tokens with `key`.
    pub fn new(tidings: Tidings, key: TokenKey, limits: WsLimits) -> Self {
        let watchdog = Watchdog::start(
            limits.heartbeat,
            limits.idle_timeout,
            tidings.metrics().clone(),
        );
        Server {
            tidings,
            key,
            limits,
            watchdog,
        }
    }

    /// WebSocket sessions open now, as the watchdog counts them (a gauge).
    pub fn ws_sessions(&self) -> usize {
        self.watchdog.len()
    }

    /// The owner's token (bypasses visibility rules; may run DML).
    pub fn owner_token(&self) -> String {
        self.key.issue(&Identity::ZERO)
    }

    /// Registers the routes on an actix-web service config.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .app_data(web::PayloadConfig::new(self.limits.message_bytes_max))
            .route("/subscribe", web::get().to(subscribe))
            .route("/call/{reducer}", web::post().to(call))
            .route("/sql", web::post().to(sql))
            .route("/schema", web::get().to(schema))
            .route("/metrics", web::get().to(metrics));
    }

    /// Binds `addr` and returns the running server (await it, or keep its handle).
    pub fn bind(
        self,
        addr: &str,
    ) -> std::io::Result<(actix_web::dev::Server, Vec<std::net::SocketAddr>)> {
        let server = HttpServer::new(move || {
            let s = self.clone();
            App::new().configure(move |cfg| s.configure(cfg))
        })
        .workers(1)
        .on_connect(watchdog::record_socket)
        // The embedding application decides what a signal means (the `tidings` binary
        // shuts down gracefully through `Tidings::shutdown_gracefully`).
        .disable_signals()
        .bind(addr)?;
        let addrs = server.addrs();
        Ok((server.run(), addrs))
    }

    /// The identity a request proves with its token; `None` without a token.
    fn identity(
        &self,
        req: &HttpRequest,
        query_token: Option<&str>,
    ) -> Result<Option<Identity>, Box<HttpResponse>> {
        let header = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        match header.or(query_token) {
            None => Ok(None),
            Some(t) => self.key.verify(t).map(Some).map_err(|e| {
                Box::new(error(
                    StatusCode::UNAUTHORIZED,
                    format!("invalid token: {e}"),
                ))
            }),
        }
    }
}

fn error(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

#[derive(Deserialize)]
struct SubscribeParams {
    compression: Option<String>,
    token: Option<String>,
}

async fn subscribe(
    req: HttpRequest,
    stream: web::Payload,
    server: web::Data<Server>,
    params: web::Query<SubscribeParams>,
) -> Result<HttpResponse, actix_web::Error> {
    // The handshake helper alone would answer 101 whatever the client asked for.
    let protocol = match req.headers().get("sec-websocket-protocol") {
        None => v2::SUBPROTOCOL,
        Some(h) => {
            let asked: Vec<&str> = h.to_str().unwrap_or("").split(',').map(str::trim).collect();
            match SUPPORTED_PROTOCOLS.iter().find(|p| asked.contains(p)) {
                Some(p) => p,
                None => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unsupported WebSocket subprotocol {:?}; supported: {}",
                            asked,
                            SUPPORTED_PROTOCOLS.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let compression = match params.compression.as_deref() {
        None | Some("none") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some(other) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!("unknown compression {other:?}; use none or gzip"),
            ));
        }
    };
    let identity = match server.identity(&req, params.token.as_deref()) {
        Ok(Some(id)) => id,
        Ok(None) => match token::random_bytes() {
            Ok(b) => Identity(b),
            Err(e) => {
                return Ok(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("no randomness for a new identity: {e}"),
                ));
            }
        },
        Err(resp) => return Ok(*resp),
    };
    let Some(codec) = Codec::for_subprotocol(protocol, compression) else {
        return Ok(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("subprotocol {protocol} is listed but has no codec"),
        ));
    };
    let session = server.tidings.open_session(ConnectOptions {
        identity: Some(identity),
        owner: identity == Identity::ZERO,
        protocol: codec.protocol(),
        queue_limits: None,
        token: Some(server.key.issue(&identity)),
    });
    let registration = server.watchdog.register(
        req.conn_data::<ConnSocket>().cloned(),
        session.queue().clone(),
    );
    actix_web_actors::ws::WsResponseBuilder::new(
        WsSession::new(session, codec, server.limits, registration),
        &req,
        stream,
    )
    .protocols(&[protocol])
    .frame_size(server.limits.message_bytes_max)
    .start()
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

async fn call(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    server: web::Data<Server>,
    params: web::Query<TokenParam>,
) -> HttpResponse {
    let reducer = path.into_inner();
    let caller = match server.identity(&req, params.token.as_deref()) {
        Ok(id) => id.unwrap_or(Identity::ZERO),
        Err(resp) => return *resp,
    };
    let Some(def) = server.tidings.module().reducer_def(&reducer) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no reducer named `{reducer}`"),
        );
    };
    let args: Json = if body.is_empty() {
        Json::Array(Vec::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ (Json::Array(_) | Json::Object(_))) => v,
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "arguments must be a JSON array or object".into(),
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("arguments are not valid JSON: {e}"),
                );
            }
        }
    };
    let args = match args {
        Json::Object(mut named) => {
            let Some(names) = &def.arg_names else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "reducer `{reducer}` declares no argument names; pass its arguments as a JSON array"
                    ),
                );
            };
            let mut positional = Vec::with_capacity(names.len());
            for name in names {
                match named.remove(&**name) {
                    Some(v) => positional.push(v),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("argument `{name}` of reducer `{reducer}` is missing"),
                        );
                    }
                }
            }
            if let Some(extra) = named.keys().next() {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("reducer `{reducer}` has no argument named `{extra}`"),
                );
            }
            Json::Array(positional)
        }
        other => other,
    };
    let Ok(args) = rmp_serde::to_vec(&args) else {
        return error(StatusCode::BAD_REQUEST, "arguments do not encode".into());
    };
    let result = match server.tidings.call_raw(&reducer, args, caller).await {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    if let Err(resp) = wait_durable(result.durable.clone()).await {
        return *resp;
    }
    match result.outcome {
        Ok(value) => HttpResponse::Ok().json(json!({
            "tx_offset": result.tx_offset,
            "value": rmp_serde::from_slice::<Json>(&value).unwrap_or(Json::Null),
        })),
        Err(ReducerError::User(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(ReducerError::Args(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(ReducerError::Internal(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The answer to a request Tidings did not accept: 429 when its queue is full, 503 when
/// it has stopped.
fn refused(e: TidingsError) -> HttpResponse {
    match e {
        TidingsError::Overloaded(n) => error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests ({n} in flight); retry later"),
        ),
        e => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Acknowledge only once durable under the policy; waiting happens off the arbiter.
async fn wait_durable(durable: Option<Durable>) -> Result<(), Box<HttpResponse>> {
    let Some(d) = durable else {
        return Ok(());
    };
    match web::block(move || d.wait()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("commit not durable: {e}"),
        ))),
        Err(e) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))),
    }
}

/// The owner's `INSERT`, `UPDATE` or `DELETE`: one transaction, acknowledged once durable.
async fn dml(server: &Server, sql: &str) -> HttpResponse {
    let done = match server.tidings.execute_dml(sql).await {
        Ok(Ok(done)) => done,
        Ok(Err(e @ (DmlError::Parse(_) | DmlError::Check(_)))) => {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
        Ok(Err(e @ DmlError::Tx(_))) => return error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ DmlError::Commit(_))) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return refused(e),
    };
    if let Err(resp) = wait_durable(done.durable.clone()).await {
        return *resp;
    }
    HttpResponse::Ok().json(json!({
        "tx_offset": done.tx_offset,
        "rows_affected": done.rows_affected,
    }))
}

async fn sql(
    req: HttpRequest,
    body: String,
    server: web::Data<Server>,
    params: web::Query<TokenParam>,
) -> HttpResponse {
    let caller = match server.identity(&req, params.token.as_deref()) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    if tidings_query::parse::dml::is_dml(&body) {
        return if caller == Some(Identity::ZERO) {
            dml(&server, &body).await
        } else {
            let first = body
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            error(
                StatusCode::FORBIDDEN,
                format!("{first} needs the owner's token"),
            )
        };
    }
    let identity = caller.unwrap_or_else(|| Identity::from_u64(u64::MAX));
    let caller = Caller {
        identity,
        is_owner: identity == Identity::ZERO,
    };
    let state = server.tidings.datastore().read();
    let rules = server.tidings.rules();
    let queries = match compile_for(&body, state.schema(), rules, state.schema_version(), caller) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut tables = Vec::new();
    for q in queries {
        let rows = q.evaluate(&state);
        let ts = &state.schema().tables()[q.returned_table.idx()];
        tables.push(json!({
            "table": q.returned_table_name.to_string(),
            "columns": ts.columns.iter().map(|c| c.name.to_string()).collect::<Vec<_>>(),
            "rows": rows.iter().map(|r| r.iter().map(value_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }));
    }
    HttpResponse::Ok().json(json!({ "offset": state.offset(), "tables": tables }))
}

/// A column type as `GET /schema` names it (the remote client compares these names).
pub(crate) fn type_name(t: &AlgebraicType) -> String {
    match t {
        AlgebraicType::Enum(e) => format!("enum {}({})", e.name, e.variants.join("|")),
        other => other.to_string(),
    }
}

async fn schema(server: web::Data<Server>) -> HttpResponse {
    let schema = server.tidings.datastore().schema();
    let tables: Vec<Json> = schema
        .tables()
        .iter()
        .map(|t| {
            json!({
                "name": t.name.to_string(),
                "event": t.is_event,
                "public": t.access == tidings_engine::Access::Public,
                "primary_key": t.primary_key.map(|c| t.column(c).name.to_string()),
                "columns": t.columns.iter().map(|c| json!({"name": c.name.to_string(), "type": type_name(&c.ty)})).collect::<Vec<_>>(),
                "indexes": t.indexes.iter().map(|i| json!({
                    "name": i.name.to_string(),
                    "columns": i.columns.iter().map(|c| t.column(*c).name.to_string()).collect::<Vec<_>>(),
                    "unique": i.unique,
                })).collect::<Vec<_>>(),
                "auto_inc": t.sequences.iter().map(|c| t.column(*c).name.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let reducers: Vec<Json> = server
        .tidings
        .module()
        .reducers()
        .map(|r| {
            json!({
                "name": r.name.to_string(),
                "args": r.args_type,
                "arg_names": r.arg_names.as_ref().map(|n| n.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "returns": r.return_type,
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "tables": tables, "reducers": reducers }))
}

async fn metrics(server: web::Data<Server>) -> HttpResponse {
    let m = server.tidings.metrics();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "tidings_sessions",
        "gauge",
        "Connected sessions.",
        m.sessions.load(Ordering::Relaxed),
    );
    metric(
        "tidings_queries",
        "gauge",
        "Distinct registered queries.",
        m.queries.load(Ordering::Relaxed),
    );
    metric(
        "tidings_tx_queue_length",
        "gauge",
        "Requests queued for the transaction actor.",
        server.tidings.tx_queue_len() as u64,
    );
    metric(
        "tidings_commits_total",
        "counter",
        "Commits that changed something.",
        m.commits.load(Ordering::Relaxed),
    );
    metric(
        "tidings_evaluations_total",
        "counter",
        "Query evaluations (once per distinct affected query per commit).",
        m.evaluations.load(Ordering::Relaxed),
    );
    metric(
        "tidings_deliveries_total",
        "counter",
        "Messages appended to session queues.",
        m.deliveries.load(Ordering::Relaxed),
    );
    metric(
        "tidings_bytes_sent_total",
        "counter",
        "Bytes written to WebSocket sessions.",
        m.bytes_sent.load(Ordering::Relaxed),
    );
    let (queued, queued_bytes, longest) = server.watchdog.queue_totals();
    metric(
        "tidings_ws_sessions",
        "gauge",
        "WebSocket sessions open.",
        server.watchdog.len() as u64,
    );
    metric(
        "tidings_ws_queued_messages",
        "gauge",
        "Messages waiting in WebSocket sessions' outbound queues, in all.",
        queued as u64,
    );
    metric(
        "tidings_ws_queued_bytes",
        "gauge",
        "Approximate bytes waiting in WebSocket sessions' outbound queues, in all.",
        queued_bytes as u64,
    );
    metric(
        "tidings_ws_queue_longest_messages",
        "gauge",
        "The longest WebSocket session outbound queue, in messages.",
        longest as u64,
    );
    metric(
        "tidings_frames_encoded_total",
        "counter",
        "WebSocket frames encoded (a frame shared by sessions counts once).",
        m.frames_encoded.load(Ordering::Relaxed),
    );
    metric(
        "tidings_frame_bytes_encoded_total",
        "counter",
        "Bytes of the WebSocket frames encoded.",
        m.frame_bytes_encoded.load(Ordering::Relaxed),
    );
    out.push_str("# HELP tidings_dropped_sessions_total Sessions dropped, by reason.\n# TYPE tidings_dropped_sessions_total counter\n");
    for (reason, n) in m.dropped.lock().iter() {
        out.push_str(&format!(
            "tidings_dropped_sessions_total{{reason={:?}}} {n}\n",
            reason
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
