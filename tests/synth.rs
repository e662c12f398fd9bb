//! `agentgen synth` against a scripted synthesizer model: a loopback chat server replays
//! recorded responses (tool calls on the synthesizer's tools), chosen by the category in the
//! conversation's first user message and by how many assistant turns it already holds. One
//! script builds the thermostat package through the tools, hits a failing check
//! (`tool.missing`), fixes it and is admitted (and the package then generates rows that
//! `validate` passes); one never gets past the check and is rejected at the round limit; one
//! tries to read and write outside its draft folder and is refused every time.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::util::{fixtures, rows_by_id, run};

type Scripts = HashMap<&'static str, Vec<Value>>;

struct Stub {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn read_request(sock: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while got.len() < end + 4 + len {
                let n = sock.read(&mut buf).ok()?;
                if n == 0 {
                    return None;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let line = head.lines().next().unwrap_or("").to_owned();
            return Some((line, got[end + 4..end + 4 + len].to_vec()));
        }
        let n = sock.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn respond(sock: &mut TcpStream, body: &Value) {
    let text = body.to_string();
    let _ = write!(
        sock,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// The scripted reply to one chat request: the `k`-th recorded message of the script whose
/// category the first user message names (k = assistant messages so far); past the end, a
/// message without tool calls.
fn reply(scripts: &Scripts, body: &Value) -> Value {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user = messages.iter().find(|m| m["role"] == "user").map(|m| m["content"].to_string());
    let k = messages.iter().filter(|m| m["role"] == "assistant").count();
    let script = user.and_then(|u| scripts.iter().find(|(c, _)| u.contains(*c)).map(|(_, s)| s));
    let message = match script.and_then(|s| s.get(k)) {
        Some(m) => m.clone(),
        None => json!({"role": "assistant", "content": "I have nothing more to add."}),
    };
    let finish = if message["tool_calls"].is_array() { "tool_calls" } else { "stop" };
    json!({"id": format!("cmpl-{k}"), "object": "chat.completion", "model": "synth-model",
           "choices": [{"index": 0, "message": message, "finish_reason": finish}],
           "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}})
}

impl Stub {
    fn start(scripts: Scripts) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (b, scripts) = (Arc::clone(&bodies), Arc::new(scripts));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut sock) = conn else { continue };
                let (b, scripts) = (Arc::clone(&b), Arc::clone(&scripts));
                std::thread::spawn(move || {
                    let Some((line, body)) = read_request(&mut sock) else { return };
                    if line.starts_with("GET") && line.contains("/models") {
                        respond(
                            &mut sock,
                            &json!({"object": "list", "data": [{"id": "synth-model", "object": "model"}]}),
                        );
                        return;
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let r = reply(&scripts, &v);
                    b.lock().expect("lock").push(v);
                    respond(&mut sock, &r);
                });
            }
        });
        Stub { url, bodies }
    }
}

/// Tool results the model was shown, by tool call id, from the saved transcript of the only
/// slot in `out`.
fn tool_results(out: &Path) -> HashMap<String, String> {
    let slots: Vec<_> =
        std::fs::read_dir(out.join(".synth")).expect("work dir").flatten().collect();
    assert_eq!(slots.len(), 1);
    let t: Value = serde_json::from_slice(
        &std::fs::read(slots[0].path().join("transcript.json")).expect("transcript"),
    )
    .expect("json");
    t.as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or("").to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn call(id: &str, name: &str, args: Value) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
}

fn step(calls: Vec<Value>) -> Value {
    json!({"role": "assistant", "content": "", "reasoning_content": "Next step of the package.", "tool_calls": calls})
}

fn thermostat(file: &str) -> String {
    std::fs::read_to_string(fixtures().join("envpkg").join("thermostat").join(file))
        .expect("fixture")
}

/// The step that writes the thermostat package with `set_mode` misspelled in env.py (so the
/// check reports `tool.missing`).
fn writes_broken_thermostat() -> Value {
    let broken = thermostat("env.py").replace("def set_mode(", "def set_mode_v2(");
    assert_ne!(broken, thermostat("env.py"));
    step(vec![
        call("w1", "write_file", json!({"path": "env.toml", "content": thermostat("env.toml")})),
        call(
            "w2",
            "write_file",
            json!({"path": "tools.json", "content": thermostat("tools.json")}),
        ),
        call("w3", "write_file", json!({"path": "env.py", "content": broken})),
    ])
}

/// Writes the thermostat package with `set_mode` misspelled in env.py (so the check reports
/// `tool.missing`), checks, fixes, checks and submits.
fn builds_fixes_and_submits() -> Vec<Value> {
    vec![
        writes_broken_thermostat(),
        step(vec![call("c1", "check_package", json!({}))]),
        step(vec![
            call("w4", "write_file", json!({"path": "env.py", "content": thermostat("env.py")})),
            call(
                "p1",
                "run_python",
                json!({"code": "print('room,floor')\nfor i in range(3):\n    print(f'room{i},{i % 2}')",
                       "save_stdout_to": "data/rooms.csv"}),
            ),
        ]),
        step(vec![call("l1", "list_files", json!({})), call("c2", "check_package", json!({}))]),
        step(vec![call("s1", "submit", json!({}))]),
    ]
}

/// Never fixes the broken env.py: checks and submits until the round limit.
fn never_passes() -> Vec<Value> {
    vec![
        writes_broken_thermostat(),
        step(vec![call("c1", "check_package", json!({}))]),
        step(vec![call("s1", "submit", json!({}))]),
        step(vec![call("s2", "submit", json!({}))]),
        step(vec![call("s3", "submit", json!({}))]),
    ]
}

fn escapes(outside: &Path) -> Vec<Value> {
    let abs = outside.join("abs.txt");
    vec![
        step(vec![
            call("e1", "write_file", json!({"path": "../escape.txt", "content": "x"})),
            call("e2", "write_file", json!({"path": abs.to_str().expect("utf-8"), "content": "x"})),
            call("e3", "read_file", json!({"path": "../../../../../../etc/passwd"})),
            call("e4", "read_file", json!({"path": "../result.json"})),
            call("e5", "write_file", json!({"path": "data/../../../escape2.txt", "content": "x"})),
        ]),
        step(vec![call(
            "e6",
            "run_python",
            json!({"code": "print('hello')", "save_stdout_to": "../../escape3.txt"}),
        )]),
        step(vec![call("e7", "write_file", json!({"path": ".hidden", "content": "x"}))]),
    ]
}

fn synth(stub: &Stub, category: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "synth",
        "--category",
        category,
        "--n",
        "1",
        "--out",
        out.to_str().expect("utf-8"),
        "--endpoint",
        &stub.url,
        "--no-stream",
        "--quiet",
        "--concurrency",
        "1",
    ];
    args.extend_from_slice(extra);
    run(&args, b"")
}

fn report(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("synth-report.json")).expect("report"))
        .expect("json")
}

#[test]
fn a_scripted_synthesizer_fixes_a_failing_check_and_is_admitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synth");
    let stub = Stub::start(
        [
            ("smart home heating", builds_fixes_and_submits()),
            ("home climate control", builds_fixes_and_submits()),
        ]
        .into(),
    );
    let o = synth(&stub, "smart home heating", &out, &["--max-rounds", "8"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");

    // The model saw the failing check, then the admitted one, then the admission.
    let results = tool_results(&out);
    assert!(
        results["c1"].contains("tool.missing") && results["c1"].contains("\"admitted\":false"),
        "{}",
        results["c1"]
    );
    assert!(results["c2"].contains("\"admitted\":true"), "{}", results["c2"]);
    assert!(results["s1"].contains("\"admitted\":true"), "{}", results["s1"]);

    let r = report(&out);
    assert_eq!(r["format"], "agentgen-synth-report/1");
    assert_eq!(r["packages"]["admitted"], 1);
    assert_eq!(r["packages"]["rejected"], 0);
    assert_eq!(r["categories"]["tried"], 1);
    assert_eq!(r["checks"]["run"], 2);
    assert_eq!(r["checks"]["admitted"], 1);
    assert_eq!(r["tokens"]["total"], 5 * 1200);
    let slot = &r["slots"][0];
    assert_eq!(slot["rounds"], 5);
    assert_eq!(slot["files_written"], 5);
    assert!(results["p1"].contains("\"exit_code\":0"), "{}", results["p1"]);

    // DIR/<name>-<short hash>/ with provenance; the hash is the package's.
    let pkg = Path::new(slot["path"].as_str().expect("path")).to_owned();
    let sha = slot["sha256"].as_str().expect("sha");
    assert_eq!(pkg.parent(), Some(out.as_path()));
    assert_eq!(
        pkg.file_name().and_then(|f| f.to_str()),
        Some(format!("thermostat-{}", &sha[..12]).as_str())
    );
    assert_eq!(
        std::fs::read_to_string(pkg.join("data/rooms.csv")).expect("data built in the sandbox"),
        "room,floor\nroom0,0\nroom1,1\nroom2,0\n"
    );
    let prov: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("provenance.json")).expect("prov"))
            .expect("json");
    assert_eq!(prov["model"], "synth-model");
    assert_eq!(prov["category"], "smart home heating");
    assert_eq!(prov["rounds"], 5);
    assert_eq!(prov["tokens"]["prompt"], 5000);
    assert_eq!(prov["prompt_sha256"].as_str().map(str::len), Some(64));
    let check = run(&["envs", "check", pkg.to_str().expect("utf-8")], b"");
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    let check: Value = serde_json::from_slice(&check.stdout).expect("check json");
    assert_eq!(check["package"]["sha256"], sha);

    // The synthesizer's transcript is a Parquet row (accepted: the package was admitted).
    let rows = rows_by_id(&out.join("transcripts"));
    assert_eq!(rows.len(), 1);
    let row = rows.values().next().expect("row");
    assert!(row.passed && row.verdict.code().is_none());
    assert!(
        row.messages
            .iter()
            .any(|m| m.content.as_deref().is_some_and(|c| c.contains("tool.missing")))
    );
    assert!(!row.token_ids.is_empty());

    // Resume: a rerun finds the slot finished and asks the model nothing.
    let before = stub.bodies.lock().expect("lock").len();
    let o = synth(&stub, "smart home heating", &out, &["--max-rounds", "8"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stub.bodies.lock().expect("lock").len(), before);
    assert_eq!(report(&out)["packages"]["resumed"], 1);

    // The synthesized package feeds generate, and validate passes its rows.
    let ds = dir.path().join("ds");
    let g = run(
        &[
            "generate",
            "--envs",
            out.to_str().expect("utf-8"),
            "--tasks",
            "6",
            "--quiet",
            "--out",
            ds.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(g.status.code(), Some(0), "{}", String::from_utf8_lossy(&g.stderr));
    let rows = rows_by_id(&ds);
    assert!(!rows.is_empty());
    assert!(rows.values().all(|r| r.env_package_sha256.as_deref() == Some(sha)));
    let v = run(&["validate", ds.to_str().expect("utf-8")], b"");
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));

    // The same tools again for another category: told what exists, refused as a near
    // duplicate at submit, rejected at the round limit; the admitted package is untouched.
    let o = synth(&stub, "home climate control", &out, &["--max-rounds", "6"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(r["submit_refusals_by_reason"]["near_duplicate"], 1, "{r}");
    assert_eq!(r["rejected_by_reason"]["round_limit"], 1);
    let slot = &r["slots"][0];
    assert!(slot["detail"].as_str().is_some_and(|d| d.contains("near_duplicate")), "{slot}");
    let told = stub.bodies.lock().expect("lock").iter().any(|b| {
        let m = b["messages"].to_string();
        m.contains("home climate control") && m.contains(&format!("thermostat-{}", &sha[..12]))
    });
    assert!(told, "the second conversation was not told about the admitted package");
    let admitted: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .filter(|e| e.path().join("env.toml").is_file())
        .collect();
    assert_eq!(admitted.len(), 1);
}

#[test]
fn a_synthesizer_that_never_passes_is_rejected_at_the_round_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synth");
    let stub = Stub::start([("broken boilers", never_passes())].into());
    let o = synth(&stub, "broken boilers", &out, &["--max-rounds", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(r["packages"]["admitted"], 0);
    assert_eq!(r["packages"]["rejected"], 1);
    assert_eq!(r["rejected_by_reason"]["round_limit"], 1);
    assert_eq!(r["submit_refusals_by_reason"]["check"], 2);
    let slot = &r["slots"][0];
    assert_eq!(slot["rounds"], 4);
    let detail = slot["detail"].as_str().expect("detail");
    assert!(detail.contains("tool.missing"), "{detail}");
    // The draft is kept with its reason; nothing was admitted into DIR.
    let kept = Path::new(slot["path"].as_str().expect("kept")).to_owned();
    assert!(kept.join("env.py").is_file());
    let reason: Value = serde_json::from_slice(
        &std::fs::read(kept.parent().expect("parent").join("reason.json")).expect("reason"),
    )
    .expect("json");
    assert_eq!(reason["reason"], "round_limit");
    let admitted: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .filter(|e| e.path().join("env.toml").is_file())
        .collect();
    assert!(admitted.is_empty());
    let rows = rows_by_id(&out.join("transcripts"));
    let row = rows.values().next().expect("row");
    assert_eq!(row.verdict.code(), Some("synth.round_limit"));
}

#[test]
fn a_synthesizer_cannot_leave_its_draft_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synth");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let stub = Stub::start([("escape artist", escapes(&outside))].into());
    let o = synth(&stub, "escape artist", &out, &["--max-rounds", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let results = tool_results(&out);
    for id in ["e1", "e2", "e3", "e4", "e5", "e6", "e7"] {
        let r = results.get(id).map_or("<missing>", String::as_str);
        assert!(r.contains("refused"), "{id}: {r}");
    }
    assert!(!results["e3"].contains("root:"), "{}", results["e3"]);
    // Nothing was written outside the draft.
    assert!(std::fs::read_dir(&outside).expect("outside").next().is_none());
    for p in [
        dir.path().join("escape.txt"),
        out.join("escape.txt"),
        out.join("escape2.txt"),
        out.join(".synth/escape3.txt"),
        dir.path().join("escape3.txt"),
    ] {
        assert!(!p.exists(), "{}", p.display());
    }
    let r = report(&out);
    assert_eq!(r["refused_calls"], 7);
    assert_eq!(r["packages"]["rejected"], 1);
}

#[test]
fn a_spent_token_budget_stops_with_exit_3_and_the_rerun_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synth");
    let stub = Stub::start([("budget probe", builds_fixes_and_submits())].into());
    // 1,200 tokens per response: the budget is spent after the second one.
    let o = synth(&stub, "budget probe", &out, &["--max-tokens-total", "2000"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert!(r["stopped"].is_string(), "{r}");
    assert_eq!(r["packages"]["finished"], 0);
    assert_eq!(stub.bodies.lock().expect("lock").len(), 2);
    // The unfinished slot starts over and is admitted.
    let o = synth(&stub, "budget probe", &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(
        (r["packages"]["admitted"].as_u64(), r["packages"]["resumed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(r["slots"][0]["rounds"], 5);
}
