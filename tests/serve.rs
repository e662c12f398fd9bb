//! End-to-end tests of `agentgen serve`: the real binary and engine over real HTTP.
//!
//! Shapes follow OpenAI's API. Tool calls need a model that makes them and are tested with the
//! scripted backend in `server/tests/api.rs`; here the random tiny model checks shapes,
//! streaming, auth, the vocabulary guard, shutdown and the pipeline's `http` policy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::util::{bin, fixtures};

/// A random tiny checkpoint with the real V3.2 vocabulary (so the tokenizer applies), made
/// once per test binary under the target folder (reused, not left in the system temp folder).
pub fn tiny_real_model() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tiny-real-bf16-seed1");
        if path.is_dir() {
            return path;
        }
        // Made aside and renamed into place, so a killed run never leaves a half checkpoint.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let out = Command::new(bin())
            .args(["model", "init", "--preset", "tiny", "--seed", "1", "--dtype", "bf16", "--out"])
            .arg(&tmp)
            .output()
            .expect("model init");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another test binary made it first
        }
        path
    })
    .clone()
}

/// A running `agentgen serve`; killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--port", "0", "--model"]).arg(model).args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("serve exited before listening").expect("line");
            if let Some(a) = line.split("listening on http://").nth(1) {
                break a.trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// One HTTP/1.1 request; returns (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        let payload = body.map(Value::to_string).unwrap_or_default();
        let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            self.addr,
            payload.len()
        )
        .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let text = String::from_utf8(raw).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        let status: u16 = head.split(' ').nth(1).expect("status").parse().expect("code");
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (st, b) = self.http(method, path, body, None);
        (st, serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}")))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, then wait; returns (success, stderr is drained elsewhere).
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM");
        self.child.wait().expect("wait").success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n..];
        body = body.strip_prefix("\r\n").unwrap_or(body);
    }
    out
}

fn sse_data(body: &str) -> Vec<Value> {
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk")).collect()
}

#[test]
fn serve_tiny_model_speaks_openai() {
    let model = tiny_real_model();
    let s = Server::start(&model, &["--served-model-name", "tiny"], &[]);
    assert_eq!(s.json("GET", "/health", None).0, 200);
    let (st, v) = s.json("GET", "/v1/models", None);
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["id"], "tiny");

    // Chat: shape, usage, logprobs with token ids.
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi!"}],
                      "max_tokens": 6, "seed": 7, "logprobs": true,
                      "thinking": {"type": "enabled"}});
    let (st, v) = s.json("POST", "/v1/chat/completions", Some(&body));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["role"], "assistant");
    assert!(c["message"]["content"].is_string());
    assert!(c["message"]["reasoning_content"].is_string());
    assert!(["stop", "length", "tool_calls"].contains(&c["finish_reason"].as_str().expect("f")));
    let n = v["usage"]["completion_tokens"].as_u64().expect("usage");
    assert!((1..=6).contains(&n));
    assert_eq!(c["token_ids"].as_array().map(|a| a.len() as u64), Some(n));
    assert_eq!(c["logprobs"]["content"].as_array().map(|a| a.len() as u64), Some(n));
    assert!(c["logprobs"]["content"][0]["logprob"].as_f64().is_some_and(|l| l <= 0.0));

    // Completions: greedy is deterministic across choices; seeds reproduce.
    let body = json!({"prompt": "Hello", "max_tokens": 5, "temperature": 0, "n": 2});
    let (st, v) = s.json("POST", "/v1/completions", Some(&body));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], v["choices"][1]["text"]);
    let seeded = json!({"prompt": "Hello", "max_tokens": 5, "seed": 11, "logprobs": 1});
    let a = s.json("POST", "/v1/completions", Some(&seeded)).1;
    let b = s.json("POST", "/v1/completions", Some(&seeded)).1;
    assert_eq!(a["choices"][0]["token_ids"], b["choices"][0]["token_ids"]);
    assert_eq!(
        a["choices"][0]["logprobs"]["token_logprobs"],
        b["choices"][0]["logprobs"]["token_logprobs"]
    );

    // Streaming.
    let body = json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": true,
                      "stream_options": {"include_usage": true}});
    let (st, raw) = s.http("POST", "/v1/completions", Some(&body), None);
    assert_eq!(st, 200);
    let chunks = sse_data(&raw);
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(
        streamed,
        v["choices"][0]["text"].as_str().expect("text")[..]
            .chars()
            .take(streamed.chars().count())
            .collect::<String>()
    );
    assert_eq!(chunks.last().expect("usage")["usage"]["completion_tokens"], 4);

    let body =
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true});
    let (st, raw) = s.http("POST", "/v1/chat/completions", Some(&body), None);
    assert_eq!(st, 200);
    let chunks = sse_data(&raw);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"].is_string()));

    // Bad input is a 4xx and the server stays up.
    let (st, v) = s.json("POST", "/v1/completions", Some(&json!({"prompt": [999_999]})));
    assert_eq!(st, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(s.json("GET", "/health", None).0, 200);

    assert!(s.terminate(), "SIGTERM shuts down cleanly with exit 0");
}

#[test]
fn serve_requires_the_key_when_configured() {
    let s = Server::start(
        &tiny_real_model(),
        &["--api-key-env", "AG_TEST_KEY"],
        &[("AG_TEST_KEY", "k3y")],
    );
    let (st, body) = s.http("GET", "/v1/models", None, None);
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("authentication_error"));
    assert_eq!(s.http("GET", "/v1/models", None, Some("wrong")).0, 401);
    assert_eq!(s.http("GET", "/v1/models", None, Some("k3y")).0, 200);
    assert_eq!(s.http("GET", "/health", None, None).0, 200);
}

#[test]
fn serve_refuses_a_missing_key_variable_and_a_missing_model() {
    let out = crate::util::run(&["serve", "--model", "/nonexistent/model", "--port", "0"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    let out = crate::util::run(
        &["serve", "--model", "/nonexistent/model", "--api-key-env", "AG_SURELY_UNSET_VAR"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AG_SURELY_UNSET_VAR"));
}

#[test]
fn serve_fixture_model_guards_its_small_vocabulary() {
    let s = Server::start(&fixtures().join("model/tiny-f32"), &[], &[]);
    let (st, v) = s.json("POST", "/v1/completions", Some(&json!({"prompt": "Hello there"})));
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("vocabulary of 512")));
    let body = json!({"prompt": [0, 5, 9, 300], "max_tokens": 3, "temperature": 0, "logprobs": 1});
    let (st, v) = s.json("POST", "/v1/completions", Some(&body));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert!(v["choices"][0]["token_ids"].as_array().is_some_and(|a| !a.is_empty()));
}

#[test]
fn pipeline_http_policy_against_serve() {
    use agentgen_pipeline::{HttpConfig, HttpPolicy, Policy, PromptRequest, SamplingParams};
    let s = Server::start(&tiny_real_model(), &["--served-model-name", "tiny"], &[]);
    let policy = HttpPolicy::try_new(HttpConfig {
        endpoint: s.url(),
        model: "tiny".into(),
        max_retries: 0,
        ..HttpConfig::default()
    })
    .expect("policy");
    let text = "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>".to_owned();
    let prompt = PromptRequest {
        prompt_ids: Vec::new(),
        user_turn: 0,
        text,
        sample_id: "s0".into(),
        turn: 0,
        thinking: true,
        reference: None,
        messages: Vec::new(),
    };
    let params = SamplingParams { max_tokens: 8, seed: 3, ..SamplingParams::default() };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let c = rt.block_on(policy.complete(&prompt, &params)).expect("completion over http");
    let lp = c.logprobs.expect("the server returns logprobs");
    assert!((1..=8).contains(&lp.len()), "{lp:?}");
    assert!(lp.iter().all(|l| *l <= 0.0));
    assert!(!c.text.is_empty());
    let stats = policy.stats().snapshot();
    assert_eq!((stats.requests, stats.successes, stats.failed_requests), (1, 1, 0));
}

/// The official `openai` Python client, when it is installed (skipped loudly otherwise).
#[test]
fn openai_python_client_if_installed() {
    let probe = Command::new("python3").args(["-c", "import openai"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED openai_python_client_if_installed: python3 with `openai` not installed");
        return;
    }
    let s = Server::start(&tiny_real_model(), &["--served-model-name", "tiny"], &[]);
    let script = r#"
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="none")
assert c.models.list().data[0].id == "tiny"
r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                              max_tokens=4, seed=1)
assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1
r = c.completions.create(model="tiny", prompt="Hello", max_tokens=3, logprobs=1)
assert len(r.choices[0].logprobs.token_logprobs) >= 1
n = sum(1 for _ in c.chat.completions.create(model="tiny", max_tokens=3, stream=True,
        messages=[{"role": "user", "content": "Hi"}]))
assert n >= 2
print("ok")
"#;
    let out = Command::new("python3").args(["-c", script, &s.url()]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
