//! The `tidings serve` binary as a person runs it: killed with SIGKILL under load it loses
//! no acknowledged commit and its tokens stay valid after a restart; Ctrl-C (SIGINT) shuts
//! it down gracefully, closing sessions with 1001 and a reason, and it exits 0.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awc::ws::{CloseCode, Frame, Message};
use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};

/// A running `tidings serve`: its process, port, owner token and stderr so far.
struct Served {
    child: Child,
    port: u16,
    owner: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The thread reading stderr; it ends at the pipe's end, after the process exits.
    reader: Option<std::thread::JoinHandle<()>>,
}

fn serve(dir: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidings serve");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("tidings serving") {
                    let _ = tx.send(line.clone());
                }
                lines.lock().expect("lines").push(line);
            }
        })
    };
    let banner = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no banner; stderr: {:?}", lines.lock().expect("lines")));
    // "tidings serving DIR on [127.0.0.1:PORT]; owner token: TOKEN"
    let port = banner
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner}"));
    let owner = banner
        .rsplit("owner token: ")
        .next()
        .expect("owner token")
        .trim()
        .to_string();
    Served {
        child,
        port,
        owner,
        stderr: lines,
        reader: Some(reader),
    }
}

impl Served {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Served {
    /// Waits for the process to exit; whether it succeeded, and all it wrote to stderr
    /// (read to the pipe's end, not just what the reader had reached at the exit).
    fn exit(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("exits");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        (status, self.stderr.lock().expect("stderr").join("\n"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(base: &str, path: &str, token: Option<&str>, body: String) -> Option<(u16, Json)> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let mut req = client.post(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send_body(body).await.ok()?;
    let bytes = resp.body().await.ok()?;
    Some((
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    ))
}

async fn message_texts(base: &str, token: &str) -> Vec<String> {
    let (status, body) = post(base, "/sql", Some(token), "SELECT * FROM message".into())
        .await
        .expect("server answers");
    assert_eq!(status, 200, "{body}");
    body["tables"][0]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r[3].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_commit_and_tokens_survive() {
    let dir = tempfile::tempdir().expect("dir");
    let first = serve(dir.path());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    actix_rt::System::new().block_on(async {
        let base = first.base();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (base, acked) = (base.clone(), acked.clone());
                actix_rt::spawn(async move {
                    for i in 0.. {
                        let text = format!("w{w}-{i}");
                        match post(&base, "/call/send_message", None, json!([text]).to_string())
                            .await
                        {
                            Some((200, _)) => acked.lock().expect("acked").push(text),
                            // The kill: requests fail from here on.
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().expect("acked").len() < 200 {
            assert!(std::time::Instant::now() < deadline, "writers too slow");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        // SIGKILL while the writers keep going.
        let mut first = first;
        first.child.kill().expect("SIGKILL");
        first.child.wait().expect("reaped");
        for w in writers {
            let _ = w.await;
        }
        let owner_before = first.owner.clone();
        drop(first);

        let second = serve(dir.path());
        assert_eq!(
            second.owner, owner_before,
            "the identity key survived the restart"
        );
        let texts = message_texts(&second.base(), &owner_before).await;
        let acked = acked.lock().expect("acked").clone();
        let missing: Vec<&String> = acked.iter().filter(|t| !texts.contains(t)).collect();
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), texts.len(), "no commit replayed twice");
        // The owner token from before the crash still carries owner rights.
        let (status, body) = post(
            &second.base(),
            "/sql",
            Some(&owner_before),
            "DELETE FROM message WHERE id = 1".into(),
        )
        .await
        .expect("answers");
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn ctrl_c_closes_sessions_with_a_reason_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let mut served = serve(dir.path());
    actix_rt::System::new().block_on(async {
        let (status, body) = post(
            &served.base(),
            "/call/send_message",
            None,
            "[\"before\"]".into(),
        )
        .await
        .expect("answers");
        assert_eq!(status, 200, "{body}");
        let (_, mut ws) = awc::Client::new()
            .ws(format!("ws://127.0.0.1:{}/subscribe", served.port))
            .connect()
            .await
            .expect("connects");
        // The first message (InitialConnection) shows the session is up.
        let first = actix_rt::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("in time");
        assert!(matches!(first, Some(Ok(Frame::Binary(_)))), "{first:?}");

        let status = Command::new("kill")
            .args(["-INT", &served.child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let close = loop {
            let frame = actix_rt::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .expect("a close in time");
            match frame {
                Some(Ok(Frame::Close(reason))) => break reason,
                Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.expect("pong"),
                Some(Ok(_)) => {}
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        };
        let close = close.expect("a reason");
        assert_eq!(close.code, CloseCode::Away);
        assert_eq!(
            close.description.as_deref(),
            Some("the server is shutting down")
        );
    });
    let (exit, stderr) = served.exit();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(stderr.contains("log flushed"), "{stderr}");
    drop(served);

    let again = serve(dir.path());
    actix_rt::System::new().block_on(async {
        assert_eq!(
            message_texts(&again.base(), &again.owner).await,
            vec!["before".to_string()]
        );
    });
}
