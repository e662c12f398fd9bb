//! The server holds its limits: overflow-safe `max_tokens`, the bearer scheme in any case and
//! a constant-time key check, JSON bodies only, header and body read timeouts, a connection
//! cap, and a shutdown that drains within a deadline then cancels. Loopback only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use agentgen_server::{Backend, ScriptedBackend, ServeLimits, ServerConfig};
use serde_json::{Value, json};

struct Srv {
    addr: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<agentgen_server::Result<()>>,
}

async fn start(backend: Arc<dyn Backend>, cfg: ServerConfig, limits: ServeLimits) -> Srv {
    let app = agentgen_server::router(backend, cfg).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(agentgen_server::serve_with(
        listener,
        app,
        async move {
            let _ = rx.await;
        },
        limits,
    ));
    Srv { addr, shutdown: Some(tx), done }
}

fn eos_backend() -> Arc<dyn Backend> {
    Arc::new(ScriptedBackend::new(vec!["hello".into()]).expect("backend"))
}

/// A raw HTTP/1.1 exchange on a fresh connection (blocking; run it off the runtime).
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn post(addr: &str, path: &str, headers: &str, body: &Value) -> String {
    let body = body.to_string();
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

const JSON: &str = "Content-Type: application/json\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn max_tokens_near_u64_max_is_refused_not_wrapped() {
    let s = start(eos_backend(), ServerConfig::default(), ServeLimits::default()).await;
    let addr = s.addr.clone();
    let (a, b) = tokio::task::spawn_blocking(move || {
        let big = json!({"prompt": "hi", "max_tokens": u64::MAX});
        let a = post(&addr, "/v1/completions", JSON, &big);
        let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": u64::MAX});
        let b = post(&addr, "/v1/chat/completions", JSON, &chat);
        (a, b)
    })
    .await
    .expect("join");
    for r in [a, b] {
        assert_eq!(status(&r), 400, "{r}");
        assert!(r.contains("context_length_exceeded"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_scheme_is_case_insensitive_and_the_key_must_match_exactly() {
    let cfg = ServerConfig { api_key: Some("s3cret".into()), ..ServerConfig::default() };
    let s = start(eos_backend(), cfg, ServeLimits::default()).await;
    let addr = s.addr.clone();
    let codes = tokio::task::spawn_blocking(move || {
        let body = json!({"prompt": "hi", "max_tokens": 2});
        [
            "Authorization: bearer s3cret\r\n",
            "Authorization: BEARER s3cret\r\n",
            "Authorization: Bearer s3cret\r\n",
            "Authorization: Bearer s3cre\r\n",
            "Authorization: Bearer s3cretX\r\n",
            "Authorization: Basic s3cret\r\n",
            "",
        ]
        .map(|h| status(&post(&addr, "/v1/completions", &format!("{h}{JSON}"), &body)))
    })
    .await
    .expect("join");
    assert_eq!(codes, [200, 200, 200, 401, 401, 401, 401]);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_must_be_json_by_content_type() {
    let s = start(eos_backend(), ServerConfig::default(), ServeLimits::default()).await;
    let addr = s.addr.clone();
    let codes = tokio::task::spawn_blocking(move || {
        let body = json!({"prompt": "hi", "max_tokens": 2});
        [
            "Content-Type: text/plain\r\n",
            "",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            "Content-Type: application/json; charset=utf-8\r\n",
            "content-type: Application/JSON\r\n",
        ]
        .map(|h| status(&post(&addr, "/v1/completions", h, &body)))
    })
    .await
    .expect("join");
    assert_eq!(codes, [415, 415, 415, 200, 200]);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_idle_connections_and_half_sent_bodies_are_closed() {
    let limits =
        ServeLimits { header_timeout: Duration::from_millis(300), ..ServeLimits::default() };
    let cfg = ServerConfig { body_timeout: Duration::from_millis(300), ..ServerConfig::default() };
    let s = start(eos_backend(), cfg, limits).await;
    let addr = s.addr.clone();
    let (half_head, idle, half_body) = tokio::task::spawn_blocking(move || {
        // Headers never finished: the server closes the connection (read_to_end returns).
        let half_head = raw(&addr, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
        // A connection that never sends anything is closed too.
        let idle = raw(&addr, b"");
        // A body that stops halfway gets 408.
        let half_body = raw(
            &addr,
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"prompt\": ",
        );
        (half_head, idle, half_body)
    })
    .await
    .expect("join");
    // Closed without a response, or with hyper's 408 for the unfinished head.
    assert!(half_head.is_empty() || status(&half_head) == 408, "{half_head}");
    assert!(idle.is_empty(), "{idle}");
    assert_eq!(status(&half_body), 408, "{half_body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let limits = ServeLimits { max_connections: 2, ..ServeLimits::default() };
    let s = start(eos_backend(), ServerConfig::default(), limits).await;
    let addr = s.addr.clone();
    let (held, served_after) = tokio::task::spawn_blocking(move || {
        let a = TcpStream::connect(&addr).expect("a");
        let b = TcpStream::connect(&addr).expect("b");
        let mut c = TcpStream::connect(&addr).expect("c");
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("w");
        c.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 64];
        // Both slots are taken by idle connections: the third is not served.
        let held = c.read(&mut buf).is_err();
        drop(a);
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        drop(b);
        (held, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("join");
    assert!(held, "the third connection was served while two were open");
    assert_eq!(status(&served_after), 200, "{served_after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_within_its_deadline_then_cancels() {
    // A stream that would take ~100 s: shutdown must not wait for it past the deadline.
    let slow = ScriptedBackend::new(vec!["word ".repeat(2000)])
        .expect("backend")
        .with_token_delay(Duration::from_millis(50));
    let limits =
        ServeLimits { shutdown_timeout: Duration::from_millis(500), ..ServeLimits::default() };
    let mut s = start(Arc::new(slow), ServerConfig::default(), limits).await;
    let addr = s.addr.clone();
    let client = std::thread::spawn(move || {
        post(
            &addr,
            "/v1/completions",
            JSON,
            &json!({"prompt": "hi", "max_tokens": 4000, "stream": true}),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(tx) = s.shutdown.take() {
        let _ = tx.send(());
    }
    let finished = tokio::time::timeout(Duration::from_secs(60), &mut s.done).await;
    assert!(finished.is_ok(), "serve did not return after its shutdown deadline");
    let got = tokio::task::spawn_blocking(move || client.join().expect("client")).await.expect("j");
    assert_eq!(status(&got), 200, "{got}");
    assert!(!got.contains("[DONE]"), "the stream was cancelled, not finished");
}
