//! `--policy chat` end to end over real loopback HTTP.
//!
//! A scripted chat server (std threads, hand-written HTTP/1.1) replays recorded, API-shaped
//! responses: the reference solutions of the same tasks, as DeepSeek's API would send them
//! (reasoning, parallel tool calls with ids, a final answer, `usage`), streamed in 7-byte
//! writes (so chunk boundaries fall inside UTF-8 characters and tool-call arguments), with
//! faults injected per task: 429 with `Retry-After`, 500, a reset mid-stream, a stall, a
//! malformed body (each retried to success), and non-JSON arguments, an unknown tool, a refusal,
//! a content filter, empty choices, a truncated answer (each a stable rejection code). The
//! README's chat examples run verbatim against it (its URL in place of the real one). Also:
//! resume, shards, the token budget, the `/v1/models` preflight and `agentgen serve`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgen_datasets::{Manifest, SampleRow};
use serde_json::{Value, json};

use crate::serve::{Server, tiny_real_model};

use crate::util::{bin, rows_by_id, run};

/// Appended to every replayed reasoning: multi-byte characters for the 7-byte writes to split.
const UTF8_TAIL: &str = " \u{2014} checked \u{2713} \u{65e5}\u{672c}\u{8a9e} \u{1f50e}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Status429,
    Status500,
    ResetMidStream,
    Stall,
    Malformed,
    BadArgs,
    UnknownTool,
    Refusal,
    ContentFilter,
    EmptyChoices,
    Length,
}

impl Fault {
    /// Transport faults hit the first attempt only and are retried to success.
    fn transient(self) -> bool {
        matches!(
            self,
            Fault::Status429
                | Fault::Status500
                | Fault::ResetMidStream
                | Fault::Stall
                | Fault::Malformed
        )
    }

    /// The rejection code a faulted task must end with (`None`: the reference's verdict).
    fn code(self) -> Option<&'static str> {
        match self {
            Fault::BadArgs => Some("schema.arguments_not_json"),
            Fault::UnknownTool => Some("schema.unknown_tool"),
            Fault::Refusal => Some("response.refusal"),
            Fault::ContentFilter => Some("response.content_filter"),
            Fault::EmptyChoices => Some("response.empty_choices"),
            Fault::Length => Some("length.truncated"),
            _ => None,
        }
    }

    /// Whether the fault needs a turn with tool calls.
    fn needs_calls(self) -> bool {
        matches!(self, Fault::BadArgs | Fault::UnknownTool)
    }
}

/// The reference trajectory of one task.
#[derive(Clone, Debug)]
struct Recorded {
    ordinal: usize,
    /// The reference's assistant messages (codec JSON: reasoning_content, content, tool_calls).
    turns: Vec<Value>,
    /// The reference row's rejection code (`None`: accepted).
    code: Option<String>,
}

#[derive(Default)]
struct Script {
    tasks: HashMap<String, Recorded>,
    /// Task ordinal -> (turn, fault).
    faults: HashMap<usize, (usize, Fault)>,
    reasoning: bool,
    models: Vec<String>,
    key: Option<String>,
    models_404: bool,
}

#[derive(Default)]
struct State {
    attempts: HashMap<(usize, usize), u32>,
    /// Usage of fully delivered responses: (prompt, completion).
    usage: (u64, u64),
    /// Protocol violations seen in requests (must stay empty).
    problems: Vec<String>,
    bodies: Vec<Value>,
    headers: Vec<String>,
}

struct ChatServer {
    url: String,
    state: Arc<Mutex<State>>,
}

impl ChatServer {
    fn start(script: Script) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let script = Arc::new(script);
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(sock) = conn else { continue };
                let (script, st) = (Arc::clone(&script), Arc::clone(&st));
                std::thread::spawn(move || handle(sock, &script, &st));
            }
        });
        ChatServer { url, state }
    }

    fn problems(&self) -> Vec<String> {
        self.state.lock().expect("state").problems.clone()
    }
}

fn read_request(sock: &mut TcpStream) -> Option<(String, Vec<String>, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = sock.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&got[..h]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        if got.len() >= h + 4 + len {
            let mut lines = head.lines();
            let first = lines.next().unwrap_or_default().to_owned();
            let headers = lines.map(str::to_owned).collect();
            return Some((first, headers, got[h + 4..h + 4 + len].to_vec()));
        }
    }
}

fn respond(sock: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        sock,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = sock.flush();
}

fn handle(mut sock: TcpStream, script: &Script, st: &Mutex<State>) {
    let Some((first, headers, body)) = read_request(&mut sock) else { return };
    let problem = |p: String| st.lock().expect("state").problems.push(p);
    st.lock().expect("state").headers.extend(headers.iter().cloned());
    if let Some(key) = &script.key {
        let want = format!("authorization: bearer {}", key.to_ascii_lowercase());
        if !headers.iter().any(|h| h.to_ascii_lowercase() == want) {
            respond(&mut sock, "401 Unauthorized", "", r#"{"error":{"message":"bad key"}}"#);
            return;
        }
    }
    if first.starts_with("GET ") && first.contains("/models") {
        if script.models_404 {
            respond(&mut sock, "404 Not Found", "", r#"{"error":"no such route"}"#);
        } else {
            let data: Vec<Value> =
                script.models.iter().map(|m| json!({"id": m, "object": "model"})).collect();
            respond(&mut sock, "200 OK", "", &json!({"object": "list", "data": data}).to_string());
        }
        return;
    }
    if !(first.starts_with("POST ") && first.contains("/chat/completions")) {
        problem(format!("unexpected request {first}"));
        respond(&mut sock, "404 Not Found", "", "{}");
        return;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        problem("request body is not JSON".into());
        respond(&mut sock, "400 Bad Request", "", "{}");
        return;
    };
    let msgs = req["messages"].as_array().cloned().unwrap_or_default();
    let user = msgs.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str());
    let Some(rec) = user.and_then(|u| script.tasks.get(u)) else {
        problem(format!("unknown task in request: {user:?}"));
        respond(&mut sock, "400 Bad Request", "", "{}");
        return;
    };
    let k = msgs.iter().filter(|m| m["role"] == "assistant").count();
    check_request(&req, &msgs, rec, script.reasoning, &problem);
    let attempt = {
        let mut s = st.lock().expect("state");
        s.bodies.push(req.clone());
        let a = s.attempts.entry((rec.ordinal, k)).or_default();
        *a += 1;
        *a
    };
    let fault = match script.faults.get(&rec.ordinal) {
        Some((turn, f)) if *turn == k && (!f.transient() || attempt == 1) => Some(*f),
        _ => None,
    };
    let Some(turn) = rec.turns.get(k) else {
        problem(format!("task {} asked for turn {k} beyond the reference", rec.ordinal));
        respond(&mut sock, "400 Bad Request", "", "{}");
        return;
    };
    match fault {
        Some(Fault::Status429) => {
            return respond(
                &mut sock,
                "429 Too Many Requests",
                "retry-after: 1\r\n",
                r#"{"error":{"message":"rate limited"}}"#,
            );
        }
        Some(Fault::Status500) => {
            return respond(&mut sock, "500 Internal Server Error", "", r#"{"error":"boom"}"#);
        }
        _ => {}
    }
    let (msg, finish, empty) = reply_message(turn, rec.ordinal, k, script.reasoning, fault);
    let usage = ((body.len() / 4) as u64, (msg.to_string().len() / 4) as u64 + 1);
    let usage_json = json!({"prompt_tokens": usage.0, "completion_tokens": usage.1,
                            "total_tokens": usage.0 + usage.1});
    let stream = req["stream"] == json!(true);
    if !stream {
        if fault == Some(Fault::Malformed) {
            return respond(&mut sock, "200 OK", "", r#"{"choices": [{"message": "#);
        }
        let choices = if empty {
            json!([])
        } else {
            json!([{"index": 0, "message": msg, "finish_reason": finish}])
        };
        let body = json!({"id": "x", "object": "chat.completion", "model": req["model"],
                          "choices": choices, "usage": usage_json})
        .to_string();
        if fault == Some(Fault::Stall) {
            // Headers and a third of the body (bytes), then nothing until the client gives up.
            let _ = write!(
                sock,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(&body.as_bytes()[..body.len() / 3]);
            let _ = sock.flush();
            std::thread::sleep(Duration::from_secs(5));
            return;
        }
        respond(&mut sock, "200 OK", "", &body);
        add_usage(st, usage);
        return;
    }
    let sse = sse_events(&msg, finish, empty, &usage_json);
    let bytes = sse.as_bytes();
    let _ = write!(
        sock,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         connection: close\r\n\r\n"
    );
    let cut = match fault {
        Some(Fault::ResetMidStream) => bytes.len() / 2,
        Some(Fault::Stall) => bytes.len() / 3,
        _ => bytes.len(),
    };
    if fault == Some(Fault::Malformed) {
        let _ = sock.write_all(b"data: {\"choices\": [{\"delta\": {\"content\": \"x\"}\n\n");
        let _ = sock.flush();
        return;
    }
    for (i, piece) in bytes[..cut].chunks(7).enumerate() {
        if sock.write_all(piece).and_then(|()| sock.flush()).is_err() {
            return;
        }
        if i % 8 == 7 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    match fault {
        Some(Fault::Stall) => std::thread::sleep(Duration::from_secs(5)),
        Some(Fault::ResetMidStream) => {}
        _ => add_usage(st, usage),
    }
}

fn add_usage(st: &Mutex<State>, usage: (u64, u64)) {
    let mut s = st.lock().expect("state");
    s.usage.0 += usage.0;
    s.usage.1 += usage.1;
}

fn call_id(ordinal: usize, turn: usize, j: usize) -> String {
    format!("call_{ordinal:02}_{turn}_{j}_x9")
}

/// What a correct client sends back: our call ids paired with `role: tool` results in order,
/// and the current turn's reasoning (the task has one user turn) as `reasoning_content`.
fn check_request(
    req: &Value,
    msgs: &[Value],
    rec: &Recorded,
    reasoning: bool,
    problem: &dyn Fn(String),
) {
    if req["stream"] == json!(true) && req["stream_options"]["include_usage"] != json!(true) {
        problem("a streaming request without stream_options.include_usage".into());
    }
    if req["tools"].as_array().is_none_or(Vec::is_empty) {
        problem("a request without tools".into());
    }
    let mut turn = 0;
    for (i, m) in msgs.iter().enumerate() {
        if m["role"] != "assistant" {
            continue;
        }
        let want = rec.turns.get(turn).and_then(|t| t["reasoning_content"].as_str());
        if reasoning && let Some(r) = want {
            let sent = m["reasoning_content"].as_str();
            if sent != Some(&format!("{r}{UTF8_TAIL}")) {
                problem(format!("turn {turn}: reasoning sent back as {sent:?}"));
            }
        }
        let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
        for (j, c) in calls.iter().enumerate() {
            if c["id"] != json!(call_id(rec.ordinal, turn, j)) {
                problem(format!("turn {turn} call {j}: id {}", c["id"]));
            }
            let result = &msgs.get(i + 1 + j).cloned().unwrap_or_default();
            if result["role"] != "tool" || result["tool_call_id"] != c["id"] {
                problem(format!("turn {turn} call {j}: result {result}"));
            }
        }
        turn += 1;
    }
}

/// The reference's assistant turn `k` as an API message, with a fault applied; returns
/// (message, finish_reason, empty choices).
fn reply_message(
    turn: &Value,
    ordinal: usize,
    k: usize,
    reasoning: bool,
    fault: Option<Fault>,
) -> (Value, &'static str, bool) {
    let calls: Vec<Value> = turn["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let f = if c.get("function").is_some() { &c["function"] } else { c };
            json!({"id": call_id(ordinal, k, j), "type": "function",
                   "function": {"name": f["name"], "arguments": f["arguments"]}})
        })
        .collect();
    let mut msg = json!({"role": "assistant", "content": turn["content"].as_str().unwrap_or("")});
    if reasoning {
        let r = turn["reasoning_content"].as_str().unwrap_or("");
        msg["reasoning_content"] = json!(format!("{r}{UTF8_TAIL}"));
    }
    let mut finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    match fault {
        Some(Fault::BadArgs) => {
            msg["tool_calls"][0]["function"]["arguments"] = json!("{\"oops\": ");
        }
        Some(Fault::UnknownTool) => {
            msg["tool_calls"][0]["function"]["name"] = json!("launch_rockets");
        }
        Some(Fault::Refusal) => {
            msg = json!({"role": "assistant", "content": null, "refusal": "I cannot help."});
            finish = "stop";
        }
        Some(Fault::ContentFilter) => {
            msg = json!({"role": "assistant", "content": ""});
            finish = "content_filter";
        }
        Some(Fault::Length) => {
            msg = json!({"role": "assistant", "content": "The answer is"});
            finish = "length";
        }
        _ => {}
    }
    (msg, finish, fault == Some(Fault::EmptyChoices))
}

/// The message as SSE deltas: reasoning in 4-char pieces, content in 5-char pieces, each call
/// opened with id and name and its arguments in 3-char fragments, the finish, a usage chunk.
fn sse_events(msg: &Value, finish: &str, empty: bool, usage: &Value) -> String {
    let mut events: Vec<Value> = Vec::new();
    let delta = |d: Value| {
        json!({"id": "x", "object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
    };
    let pieces = |s: &str, n: usize| -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars.chunks(n).map(|c| c.iter().collect()).collect()
    };
    if !empty {
        events.push(delta(json!({"role": "assistant", "content": ""})));
        if let Some(r) = msg["reasoning_content"].as_str() {
            for p in pieces(r, 4) {
                events.push(delta(json!({"reasoning_content": p})));
            }
        }
        if let Some(r) = msg["refusal"].as_str() {
            events.push(delta(json!({"refusal": r})));
        }
        for p in pieces(msg["content"].as_str().unwrap_or(""), 5) {
            events.push(delta(json!({"content": p})));
        }
        for (j, c) in msg["tool_calls"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            events
                .push(delta(json!({"tool_calls": [{"index": j, "id": c["id"], "type": "function",
                "function": {"name": c["function"]["name"], "arguments": ""}}]})));
            for p in pieces(c["function"]["arguments"].as_str().unwrap_or(""), 3) {
                events.push(delta(
                    json!({"tool_calls": [{"index": j, "function": {"arguments": p}}]}),
                ));
            }
        }
        events.push(json!({"id": "x", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}));
    }
    events
        .push(json!({"id": "x", "object": "chat.completion.chunk", "choices": [], "usage": usage}));
    let mut s = String::new();
    for e in events {
        s.push_str(&format!("data: {e}\n\n"));
        if s.len().is_multiple_of(3) {
            s.push_str(": keep-alive\n\n");
        }
    }
    s.push_str("data: [DONE]\n\n");
    s
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The reference rows of the tasks a chat command will draw (same seed, tasks, families).
fn record(tasks: &str, extra: &[&str]) -> HashMap<String, Recorded> {
    let mut args =
        vec!["rollout", "--policy", "reference", "--tasks", tasks, "--samples-per-task", "1"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--quiet", "--jsonl", "-"]);
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut out = HashMap::new();
    let mut rows: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl row"))
        .collect();
    rows.sort_by_key(|r| r["sample_id"].as_str().unwrap_or_default().to_owned());
    for (ordinal, r) in rows.iter().enumerate() {
        let msgs = r["messages"].as_array().expect("messages");
        let user = msgs.iter().find(|m| m["role"] == "user").expect("user message");
        let turns: Vec<Value> = msgs.iter().filter(|m| m["role"] == "assistant").cloned().collect();
        let code = r["verdict"]["code"].as_str().map(str::to_owned);
        let rec = Recorded { ordinal, turns, code };
        let prev = out.insert(user["content"].as_str().expect("content").to_owned(), rec);
        assert!(prev.is_none(), "two tasks share a user prompt; pick another seed");
    }
    out
}

/// Faults on distinct tasks: those needing calls go to tasks whose turn 0 makes calls.
fn assign(tasks: &HashMap<String, Recorded>, faults: &[Fault]) -> HashMap<usize, (usize, Fault)> {
    let mut recs: Vec<&Recorded> = tasks.values().collect();
    recs.sort_by_key(|r| r.ordinal);
    let mut out = HashMap::new();
    for f in faults {
        let pick = recs
            .iter()
            .find(|r| {
                !out.contains_key(&r.ordinal)
                    && r.code.is_none()
                    && (!f.needs_calls()
                        || r.turns[0]["tool_calls"].as_array().is_some_and(|c| !c.is_empty()))
            })
            .unwrap_or_else(|| panic!("no task left for {f:?}"));
        out.insert(pick.ordinal, (0, *f));
    }
    out
}

/// The README's command starting with `prefix` (backslash continuations joined), as words.
fn readme_command(prefix: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let joined = readme.replace("\\\n", " ");
    let line = joined
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no command starting with {prefix:?}"));
    shell_words(line)
}

/// Split a command line as sh does for plain words and '...' / "..." quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    cur.push(q);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The value after `flag` in `words`.
fn flag<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    words.iter().position(|w| w == name).and_then(|i| words.get(i + 1)).map(String::as_str)
}

fn set_flag(words: &mut [String], name: &str, value: &str) {
    let i = words.iter().position(|w| w == name).unwrap_or_else(|| panic!("no {name}"));
    words[i + 1] = value.to_owned();
}

fn agentgen(words: &[String], env: &[(&str, &str)]) -> Output {
    assert_eq!(words[0], "agentgen");
    let mut cmd = Command::new(bin());
    cmd.args(&words[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run agentgen")
}

fn words(args: &[&str]) -> Vec<String> {
    std::iter::once("agentgen").chain(args.iter().copied()).map(str::to_owned).collect()
}

fn user_prompt(r: &SampleRow) -> String {
    r.messages
        .iter()
        .find(|m| m.role == agentgen_codec::Role::User)
        .and_then(|m| m.content.clone())
        .expect("user prompt")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn validate(dir: &Path) {
    let o = run(&["validate", dir.to_str().expect("utf-8 path")], b"");
    ok(&o, "agentgen validate");
}

/// Read the folder with pyarrow when python3 has it; otherwise say so loudly.
fn pyarrow_reads(dir: &Path, expected_rows: usize) {
    let probe = Command::new("python3").args(["-c", "import pyarrow"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n*** NOTE: pyarrow is not importable here; the pyarrow read of the chat dataset \
             was NOT run (agentgen validate and the Rust reader checked it) ***\n"
        );
        return;
    }
    let code = format!(
        "import pyarrow.dataset as ds\nt = ds.dataset({:?}, format='parquet').to_table()\n\
         assert t.num_rows == {expected_rows}, t.num_rows\n\
         assert set(t.column('token_source').to_pylist()) == {{'retokenized'}}\nprint('ok')",
        dir.join("data").to_str().expect("utf-8 path")
    );
    let o = Command::new("python3").args(["-c", &code]).output().expect("python3");
    ok(&o, "pyarrow read");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn deepseek_readme_example_replays_reasoning_parallel_calls_and_faults() {
    let mut cmd =
        readme_command("agentgen generate --policy chat --endpoint https://api.deepseek.com");
    let tasks_n = flag(&cmd, "--tasks").expect("--tasks").to_owned();
    let model = flag(&cmd, "--api-model").expect("--api-model").to_owned();
    let key_var = flag(&cmd, "--api-key-env").expect("--api-key-env").to_owned();
    let tasks = record(&tasks_n, &[]);
    let faults = [
        Fault::Status429,
        Fault::Status500,
        Fault::ResetMidStream,
        Fault::Malformed,
        Fault::BadArgs,
        Fault::UnknownTool,
        Fault::Refusal,
        Fault::ContentFilter,
        Fault::EmptyChoices,
        Fault::Length,
    ];
    let plan = assign(&tasks, &faults);
    let parallel = tasks
        .values()
        .any(|r| r.turns.iter().any(|t| t["tool_calls"].as_array().is_some_and(|c| c.len() > 1)));
    assert!(parallel, "the recorded tasks include a turn with parallel calls");
    let multi = tasks.values().filter(|r| r.turns.len() >= 3).count();
    assert!(multi > 0, "the recorded tasks include several tool rounds");
    let server = ChatServer::start(Script {
        tasks: tasks.clone(),
        faults: plan.clone(),
        reasoning: true,
        models: vec![model.clone(), "deepseek-chat".into()],
        key: Some("sk-test-123".into()),
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    set_flag(&mut cmd, "--endpoint", &server.url);
    set_flag(&mut cmd, "--out", out.to_str().expect("utf-8"));
    let o = agentgen(&cmd, &[(&key_var, "sk-test-123")]);
    ok(&o, "the README's DeepSeek example");
    assert_eq!(server.problems(), Vec::<String>::new());

    let all = rows_by_id(&out);
    assert_eq!(all.len(), tasks.len());
    for r in all.values() {
        let rec = &tasks[&user_prompt(r)];
        let want = match plan.get(&rec.ordinal) {
            Some((_, f)) => f.code().map(str::to_owned).or(rec.code.clone()),
            None => rec.code.clone(),
        };
        assert_eq!(
            r.verdict.code().map(str::to_owned),
            want,
            "task {} ({:?})",
            rec.ordinal,
            plan.get(&rec.ordinal)
        );
        assert_eq!(r.policy, "chat");
        assert_eq!(r.model.as_deref(), Some(model.as_str()));
        assert_eq!(r.token_source, "retokenized");
        assert_eq!(r.logprobs, None);
        assert_eq!(r.token_ids.len(), r.loss_mask.len());
        if r.verdict.code().is_none() {
            assert_eq!(r.thinking_mode, "thinking", "auto: the endpoint returned reasoning");
            assert!(r.text.contains(UTF8_TAIL), "reasoning survives the split stream");
            assert_eq!(r.turns as usize, rec.turns.len());
            let calls: usize =
                rec.turns.iter().map(|t| t["tool_calls"].as_array().map_or(0, Vec::len)).sum();
            assert_eq!(r.tool_calls as usize, calls);
            assert!(r.loss_mask.contains(&1));
        }
    }
    let accepted = all.values().filter(|r| r.verdict.code().is_none()).count();
    assert!(accepted >= 4, "the transient faults were retried to accepted rows");

    let m = Manifest::read(&out).expect("manifest");
    assert_eq!(m.policy, "chat");
    assert_eq!(m.token_source.as_deref(), Some("retokenized"));
    let usage = m.usage.expect("usage in the manifest");
    let sent = server.state.lock().expect("state").usage;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), sent);
    assert_eq!(usage.total_tokens, sent.0 + sent.1);
    let stats: Value = serde_json::from_str(&m.runtime["policy_stats"]).expect("policy_stats JSON");
    for (k, min) in [("status_429", 1), ("status_5xx", 1), ("malformed", 1), ("retries", 4)] {
        assert!(stats[k].as_u64().unwrap_or(0) >= min, "{k} in {stats}");
    }
    assert_eq!(stats["failed_requests"], json!(0), "every transient fault was retried");
    assert!(m.counts.policy_errors.is_empty(), "model mistakes are not policy errors");
    let card = std::fs::read_to_string(out.join("README.md")).expect("card");
    assert!(card.contains("re-tokenized"), "the card says the ids were re-tokenized");
    validate(&out);
    pyarrow_reads(&out, all.len());
}

#[test]
fn vllm_readme_example_without_reasoning_gives_chat_rows() {
    let mut cmd =
        readme_command("agentgen generate --policy chat --endpoint http://localhost:8000/v1");
    let tasks_n = flag(&cmd, "--tasks").expect("--tasks").to_owned();
    let model = flag(&cmd, "--api-model").expect("--api-model").to_owned();
    let extra: Value = serde_json::from_str(flag(&cmd, "--extra-body").expect("--extra-body"))
        .expect("the README's --extra-body is JSON");
    let tasks = record(&tasks_n, &[]);
    let server = ChatServer::start(Script {
        tasks: tasks.clone(),
        reasoning: false,
        models: vec![model.clone()],
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    set_flag(&mut cmd, "--endpoint", &format!("{}/v1", server.url));
    set_flag(&mut cmd, "--out", out.to_str().expect("utf-8"));
    let o = agentgen(&cmd, &[]);
    ok(&o, "the README's vLLM example");
    assert_eq!(server.problems(), Vec::<String>::new());
    let all = rows_by_id(&out);
    assert_eq!(all.len(), tasks.len());
    let accepted: Vec<&SampleRow> = all.values().filter(|r| r.verdict.code().is_none()).collect();
    assert!(!accepted.is_empty());
    for r in &accepted {
        assert_eq!(r.thinking_mode, "chat", "auto: no reasoning came back");
        assert!(r.messages.iter().all(|m| m.reasoning_content.is_none()), "no reasoning");
    }
    let st = server.state.lock().expect("state");
    for b in &st.bodies {
        for (k, v) in extra.as_object().expect("object") {
            assert_eq!(&b[k], v, "--extra-body merged into every request");
        }
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["model"], json!(model));
    }
    drop(st);
    validate(&out);
}

#[test]
fn rollout_chat_no_stream_retries_a_stall_and_sends_the_flags() {
    let tasks = record("3", &["--families", "banking"]);
    let plan = assign(&tasks, &[Fault::Stall, Fault::Malformed]);
    let server = ChatServer::start(Script {
        tasks: tasks.clone(),
        faults: plan,
        reasoning: true,
        models: vec!["m".into()],
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    let out_s = out.to_str().expect("utf-8").to_owned();
    let o = agentgen(
        &words(&[
            "rollout",
            "--policy",
            "chat",
            "--endpoint",
            &server.url,
            "--families",
            "banking",
            "--tasks",
            "3",
            "--samples-per-task",
            "1",
            "--no-stream",
            "--request-timeout",
            "1.5",
            "--extra-body",
            r#"{"thinking": {"type": "enabled"}, "seed": null, "stream": false}"#,
            "--tool-choice",
            "required",
            "--parallel-tool-calls",
            "false",
            "--reasoning-effort",
            "high",
            "--header",
            "X-Trace: abc-1",
            "--max-requests-per-minute",
            "6000",
            "--thinking-mode",
            "thinking",
            "--quiet",
            "--jsonl",
            "-",
            "--out",
            &out_s,
        ]),
        &[],
    );
    ok(&o, "rollout --policy chat");
    assert_eq!(server.problems(), Vec::<String>::new());
    let rows: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["verdict"]["verdict"], json!("accepted"), "{r}");
        assert_eq!(r["token_source"], json!("retokenized"));
        assert_eq!(r["logprobs"], Value::Null);
        assert_eq!(r["thinking_mode"], json!("thinking"));
    }
    let st = server.state.lock().expect("state");
    assert!(st.headers.iter().any(|h| h.eq_ignore_ascii_case("x-trace: abc-1")));
    let retried = st.attempts.values().filter(|&&n| n >= 2).count();
    assert_eq!(retried, 2, "the stalled and the malformed request were retried");
    let m = Manifest::read(&out).expect("manifest");
    let stats: Value = serde_json::from_str(&m.runtime["policy_stats"]).expect("stats JSON");
    assert!(stats["timeouts"].as_u64().unwrap_or(0) >= 1, "the stall timed out: {stats}");
    assert!(stats["malformed"].as_u64().unwrap_or(0) >= 1, "{stats}");
    for b in &st.bodies {
        assert_eq!(b["stream"], json!(false), "the flags own `stream`");
        assert!(b.get("stream_options").is_none());
        assert!(b.get("seed").is_none(), "null in the merge patch removes a field");
        assert_eq!(b["thinking"], json!({"type": "enabled"}));
        assert_eq!(b["tool_choice"], json!("required"));
        assert_eq!(b["parallel_tool_calls"], json!(false));
        assert_eq!(b["reasoning_effort"], json!("high"));
    }
}

#[test]
fn chat_shards_and_resume_after_a_spent_token_budget_match_one_run() {
    let tasks = record("8", &[]);
    let server = ChatServer::start(Script {
        tasks: tasks.clone(),
        reasoning: true,
        models: vec!["m".into()],
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let generate = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--policy",
            "chat",
            "--endpoint",
            &server.url,
            "--tasks",
            "8",
            "--no-dedup",
            "--concurrency",
            "3",
            "--quiet",
            "--out",
        ];
        let out_s = out.to_str().expect("utf-8").to_owned();
        a.push(&out_s);
        a.extend_from_slice(extra);
        agentgen(&words(&a), &[])
    };
    let whole = dir.path().join("whole");
    ok(&generate(&whole, &[]), "one run");
    let one = rows_by_id(&whole);
    assert_eq!(one.len(), 8);

    // Shards: the union is the one run.
    let mut union = BTreeMap::new();
    for i in 0..2 {
        let d = dir.path().join(format!("shard{i}"));
        ok(&generate(&d, &["--shard", &format!("{i}/2")]), "a shard");
        for (id, r) in rows_by_id(&d) {
            assert!(union.insert(id, r).is_none());
        }
    }
    assert_eq!(strip(&union), strip(&one));

    // A budget spent after the first response: exit 3, one line; what was written is valid.
    let part = dir.path().join("budget");
    let o = generate(&part, &["--max-tokens-total", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().filter(|l| l.starts_with("stopped:")).count(), 1, "{err}");
    assert!(err.contains("--max-tokens-total"));
    let before = rows_by_id(&part);
    assert!(before.len() < 8, "the budget stopped the run early");
    let m = Manifest::read(&part).expect("manifest after the stop");
    assert!(m.usage.is_some_and(|u| u.total_tokens >= 1));
    // Resume without a budget finishes exactly the one run.
    ok(&generate(&part, &["--resume"]), "resume");
    assert_eq!(strip(&rows_by_id(&part)), strip(&one));
}

/// Rows without the fields that differ between invocations.
fn strip(rows: &BTreeMap<String, SampleRow>) -> BTreeMap<String, SampleRow> {
    rows.iter()
        .map(|(k, r)| {
            let mut r = r.clone();
            r.run_id = String::new();
            r.timings_ms = String::new();
            (k.clone(), r)
        })
        .collect()
}

#[test]
fn preflight_checks_endpoint_key_and_model_before_any_rollout() {
    let tasks = record("1", &["--families", "banking"]);
    let two = ChatServer::start(Script {
        tasks: tasks.clone(),
        models: vec!["alpha".into(), "beta".into()],
        key: Some("k1".into()),
        ..Script::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    let out_s = out.to_str().expect("utf-8");
    let base = |policy: &str, url: &str| {
        vec![
            "generate".to_owned(),
            "--policy".into(),
            policy.into(),
            "--endpoint".into(),
            url.into(),
            "--families".into(),
            "banking".into(),
            "--tasks".into(),
            "1".into(),
            "--quiet".into(),
            "--api-key-env".into(),
            "AG_TEST_KEY".into(),
            "--out".into(),
            out_s.into(),
        ]
    };
    let go = |mut a: Vec<String>, extra: &[&str], key: &str| {
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.insert(0, "agentgen".into());
        agentgen(&a, &[("AG_TEST_KEY", key)])
    };
    let stopped = |o: &Output, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(!out.join("data").exists(), "nothing rolled out");
    };
    for policy in ["chat", "http"] {
        stopped(&go(base(policy, &two.url), &[], "k1"), "alpha, beta");
        stopped(&go(base(policy, &two.url), &["--api-model", "gamma"], "k1"), "alpha, beta");
        stopped(&go(base(policy, &two.url), &["--api-model", "alpha"], "wrong"), "401");
    }
    // The endpoint flags also come from `--config` (flags override); checked before the preflight.
    let cfg = dir.path().join("chat.toml");
    std::fs::write(&cfg, "max-requests-per-minute = 0\nno-stream = true\n").expect("write");
    let o = go(base("chat", &two.url), &["--config", cfg.to_str().expect("utf-8")], "k1");
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-requests-per-minute"));
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    stopped(&go(base("chat", &dead), &["--api-model", "alpha"], "k1"), "cannot reach");

    // No /v1/models (404): a warning, then the run goes on with the named model.
    let no_list =
        ChatServer::start(Script { tasks, reasoning: true, models_404: true, ..Script::default() });
    let o = go(base("chat", &no_list.url), &["--api-model", "anything"], "k1");
    ok(&o, "a run against an endpoint without /v1/models");
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning"));
    assert_eq!(rows_by_id(&out).len(), 1);
}

#[test]
fn chat_policy_against_agentgen_serve() {
    let s = Server::start(&tiny_real_model(), &["--served-model-name", "tiny"], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out: PathBuf = dir.path().join("ds");
    let o = run(
        &[
            "generate",
            "--policy",
            "chat",
            "--endpoint",
            &s.url(),
            "--tasks",
            "2",
            "--max-tokens",
            "8",
            "--max-turns",
            "2",
            "--quiet",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        b"",
    );
    ok(&o, "generate --policy chat against agentgen serve");
    let all = rows_by_id(&out);
    assert_eq!(all.len(), 2);
    for r in all.values() {
        assert_eq!(r.policy, "chat");
        assert_eq!(r.model.as_deref(), Some("tiny"), "the server's only model");
        assert_eq!(r.token_source, "retokenized");
        assert_eq!(r.token_ids.len(), r.loss_mask.len());
        // A random model answers garbage: a row either way, never a policy (transport) error.
        assert!(!r.verdict.code().is_some_and(|c| c.starts_with("policy.")), "{:?}", r.verdict);
    }
    let m = Manifest::read(&out).expect("manifest");
    assert!(m.usage.is_some_and(|u| u.completion_tokens > 0), "serve reports usage");
}
