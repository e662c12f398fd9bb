//! The http policy against an in-process server that injects 5xx (with Retry-After), stalls,
//! connection resets and malformed JSON. Real sockets, short timeouts, no timed assertions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentgen_pipeline::{HttpConfig, HttpPolicy, Policy, PromptRequest, SamplingParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Ok,
    Status500,
    Status503RetryAfter,
    Stall,
    Reset,
    Malformed,
    Status400,
}

const OK_BODY: &str = r#"{"choices":[{"text":"r</think>done<\uff5cend\u2581of\u2581sentence\uff5c>","finish_reason":"stop","logprobs":{"token_logprobs":[-0.5,-0.25]}}]}"#;

/// Serve `script[i]` to the i-th request (the last entry repeats).
async fn server(script: Vec<Fault>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let i = c.fetch_add(1, Ordering::SeqCst);
            let fault = script[i.min(script.len() - 1)];
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head and the body (Content-Length).
                loop {
                    let Ok(n) = sock.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text[..h]
                            .lines()
                            .find_map(|l| {
                                let l = l.to_ascii_lowercase();
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= h + 4 + len {
                            break;
                        }
                    }
                }
                let respond = |status: &str, extra: &str, body: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                        body.len()
                    )
                };
                let reply = match fault {
                    Fault::Ok => respond("200 OK", "", OK_BODY),
                    Fault::Status500 => respond("500 Internal Server Error", "", "{}"),
                    Fault::Status503RetryAfter => {
                        respond("503 Service Unavailable", "retry-after: 0\r\n", "{}")
                    }
                    Fault::Status400 => respond("400 Bad Request", "", "{\"error\": \"bad\"}"),
                    Fault::Malformed => respond("200 OK", "", "{\"choices\": [{\"text\": 3"),
                    Fault::Stall => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    Fault::Reset => {
                        // SO_LINGER 0 makes the close an RST: exactly the reset we inject. The
                        // blocking-on-drop concern behind the deprecation does not apply to 0.
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                        return;
                    }
                };
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

fn cfg(endpoint: String) -> HttpConfig {
    HttpConfig {
        endpoint,
        request_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        max_retries: 6,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        breaker_threshold: 100,
        breaker_cooldown: Duration::from_millis(50),
        ..HttpConfig::default()
    }
}

fn prompt() -> PromptRequest {
    PromptRequest {
        user_turn: 0,
        text: "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>hi".into(),
        prompt_ids: vec![0],
        sample_id: "s".into(),
        turn: 0,
        thinking: true,
        reference: None,
        messages: Vec::new(),
    }
}

#[tokio::test]
async fn recovers_from_every_fault_kind_and_counts_them() {
    let script = vec![
        Fault::Status500,
        Fault::Status503RetryAfter,
        Fault::Stall,
        Fault::Reset,
        Fault::Malformed,
        Fault::Ok,
    ];
    let (url, count) = server(script).await;
    let p = HttpPolicy::try_new(cfg(url)).expect("policy");
    let c = p.complete(&prompt(), &SamplingParams::default()).await.expect("eventually succeeds");
    assert!(c.text.ends_with("\u{ff5c}>"));
    assert_eq!(c.logprobs, Some(vec![-0.5, -0.25]));
    let s = p.stats().snapshot();
    assert_eq!(count.load(Ordering::SeqCst), 6);
    assert_eq!((s.requests, s.successes, s.retries), (6, 1, 5));
    assert_eq!(s.status_5xx, 2);
    assert_eq!(s.timeouts, 1);
    assert_eq!(s.malformed, 1);
    assert!(s.transport_errors + s.connect_errors >= 1, "{s:?}");
}

#[tokio::test]
async fn permanent_failures_are_errors_not_panics() {
    let (url, _) = server(vec![Fault::Status400]).await;
    let p = HttpPolicy::try_new(cfg(url)).expect("policy");
    let e = p.complete(&prompt(), &SamplingParams::default()).await;
    assert!(
        matches!(
            e,
            Err(agentgen_pipeline::Error::Policy {
                kind: agentgen_pipeline::PolicyFailure::Http4xx,
                ..
            })
        ),
        "{e:?}"
    );
    let (url, _) = server(vec![Fault::Status500]).await;
    let p = HttpPolicy::try_new(cfg(url)).expect("policy");
    let e = p.complete(&prompt(), &SamplingParams::default()).await;
    assert!(
        matches!(
            e,
            Err(agentgen_pipeline::Error::Policy {
                kind: agentgen_pipeline::PolicyFailure::Http5xx,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(p.stats().snapshot().failed_requests, 1);
    assert_eq!(p.stats().snapshot().requests, 7);
}

#[tokio::test]
async fn circuit_breaker_opens_under_a_failure_storm() {
    let (url, _) =
        server(vec![Fault::Status500, Fault::Status500, Fault::Status500, Fault::Ok]).await;
    let p = HttpPolicy::try_new(HttpConfig { breaker_threshold: 2, ..cfg(url) }).expect("policy");
    let c = p.complete(&prompt(), &SamplingParams::default()).await;
    assert!(c.is_ok());
    let s = p.stats().snapshot();
    assert!(s.circuit_opens >= 1 && s.circuit_waits >= 1, "{s:?}");
}
