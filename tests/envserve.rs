//! `agentgen envs serve` and `envs export --format nemo-gym` (issue 19): a Python client
//! written from NeMo Gym's and OpenEnv's shapes (`tests/envserve_client.py`, standard library
//! only) plays tasks against the real binary on loopback; abuse gets clear HTTP errors; the
//! server exits cleanly on SIGTERM and SIGINT with every session freed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::util::{bin, fixtures, run};

const CLIENT: &str = include_str!("envserve_client.py");

/// A running `envs serve`; SIGTERM (or the given signal) and a wait when dropped.
struct Server {
    child: Child,
    base: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Option<Server> {
        Self::start_env(args, &[])
    }

    /// Start with extra environment variables for the server only.
    fn start_env(args: &[&str], env: &[(&str, &str)]) -> Option<Server> {
        let mut child = Command::new(bin())
            .args(["envs", "serve", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentgen envs serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let base = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    seen.push_str(&l);
                    seen.push('\n');
                    if let Some(i) = l.find("listening on http://") {
                        break l[i + "listening on ".len()..].trim().to_owned();
                    }
                }
                _ => {
                    let status = child.wait().expect("wait");
                    eprintln!("!!! envs serve did not start ({status}): {seen}");
                    return None;
                }
            }
        };
        let stderr = std::thread::spawn(move || {
            let mut rest = seen;
            for l in lines.map_while(Result::ok) {
                rest.push_str(&l);
                rest.push('\n');
            }
            rest
        });
        Some(Server { child, base, stderr: Some(stderr) })
    }

    /// Send `signal` and wait: the exit status and everything the server wrote on stderr.
    fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        let status = self.child.wait().expect("wait for the server");
        let err = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (status, err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

fn python_ok() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.exit(sys.version_info < (3, 8))")
        .status()
        .is_ok_and(|s| s.success())
}

/// Run the client in `mode` against `base`; its one JSON line.
fn client(dir: &Path, mode: &str, base: &str, args: &[&str]) -> Value {
    let script = dir.join("envserve_client.py");
    std::fs::write(&script, CLIENT).expect("write the client");
    let out = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .arg(base)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {mode} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client output {stdout:?}: {e}"))
}

/// `envs export` of one task, and `envs sample` of the same task (its reference calls).
fn export_and_sample(dir: &Path, select: &[&str], family: &str) -> (PathBuf, PathBuf, Value) {
    let rows = dir.join("rows.jsonl");
    let rows_s = rows.to_string_lossy().into_owned();
    let mut args = vec![
        "envs", "export", "--format", "nemo-gym", "--tasks", "3", "--seed", "5", "--out", &rows_s,
    ];
    args.extend_from_slice(select);
    let out = run(&args, b"");
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&rows).expect("rows");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON row")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    let row = &lines[0];
    let id = row["task_id"].as_str().expect("task_id").to_owned();
    assert!(id.starts_with(&format!("{family}@")), "{id}");
    let input = row["responses_create_params"]["input"].as_array().expect("input");
    assert_eq!(
        (input[0]["role"].as_str(), input[1]["role"].as_str()),
        (Some("system"), Some("user"))
    );
    let tools = row["responses_create_params"]["tools"].as_array().expect("tools");
    assert!(
        !tools.is_empty()
            && tools.iter().all(|t| t["type"] == "function"
                && t["name"].is_string()
                && t["parameters"].is_object()),
        "{row}"
    );
    // Nothing hidden from the agent is in a row.
    assert!(!text.contains("hidden_from_agent") && !text.contains("final_answer"), "{text}");
    // The same task with its reference (envs sample prints it, marked hidden).
    let parts: Vec<&str> = id.split(['@', '/']).collect();
    let mut sargs = vec![
        "envs",
        "sample",
        "--family",
        parts[0],
        "--instance-seed",
        parts[2],
        "--task-seed",
        parts[3],
    ];
    if select.first() == Some(&"--envs") {
        sargs.extend_from_slice(select);
    }
    let out = run(&sargs, b"");
    assert!(out.status.success(), "sample: {}", String::from_utf8_lossy(&out.stderr));
    let sample: Value = serde_json::from_slice(&out.stdout).expect("sample JSON");
    assert_eq!(sample["id"], id.as_str());
    let sample_file = dir.join("sample.json");
    std::fs::write(&sample_file, &out.stdout).expect("write sample");
    (rows, sample_file, sample)
}

/// The NeMo Gym contract on one task: reference calls then verify give reward 1, the empty
/// response 0; the verify answer echoes the request and carries no hidden data.
fn contract(select: &[&str], family: &str) {
    if !python_ok() {
        eprintln!("!!! no python3: skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, sample_file, sample) = export_and_sample(dir.path(), select, family);
    let Some(server) = Server::start(select) else {
        panic!("envs serve did not start");
    };
    let out = client(
        dir.path(),
        "contract",
        &server.base,
        &[&rows.to_string_lossy(), &sample_file.to_string_lossy()],
    );
    assert_eq!(out["verify_status"], 200, "{out}");
    let v = &out["verified"];
    assert_eq!(v["reward"], 1.0, "reference run: {out}");
    assert_eq!(v["passed"], true, "{out}");
    assert!(
        v["reward_components"]
            .as_object()
            .is_some_and(|c| !c.is_empty() && c.values().all(|x| x == 1.0)),
        "{v}"
    );
    // The request is echoed: the row's fields and the response.
    assert_eq!(v["task_id"], sample["id"]);
    assert!(
        v["responses_create_params"]["input"].is_array() && v["response"]["output"].is_array(),
        "{v}"
    );
    assert!(out["call_statuses"].as_array().is_some_and(|s| s.iter().all(|x| x == 200)), "{out}");
    // The empty probe.
    assert_eq!(out["empty_status"], 200, "{out}");
    assert_eq!(out["empty"]["reward"], 0.0, "empty probe: {out}");
    // The verified session is gone.
    assert_eq!(out["after_verify_status"], 404, "{out}");
    // Hidden data never left the server (the reference's final answer and hidden fields).
    let text = out.to_string();
    assert!(!text.contains("hidden_from_agent"), "{text}");
    if let Some(hidden) = sample.get("hidden_from_agent").filter(|h| !h.is_null()) {
        assert!(!text.contains(&hidden.to_string()), "hidden data leaked");
    }
    let (status, err) = server.stop("-TERM");
    assert!(status.success(), "exit on SIGTERM: {status}\n{err}");
    assert!(err.contains("shut down (0 open session(s) freed)"), "{err}");
}

#[test]
fn envs_serve_nemo_gym_contract_on_a_builtin_family() {
    contract(&["--families", "trip"], "trip");
}

/// The thermostat package (a copy: the runtime writes its admission cache next to it).
#[test]
fn envs_serve_nemo_gym_contract_on_a_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkg = dir.path().join("thermostat");
    agentgen_testdata::copy_dir(&fixtures().join("envpkg").join("thermostat"), &pkg);
    let pkg_s = pkg.to_string_lossy().into_owned();
    // Without python3 or the sandbox the package cannot be opened: that is a clear refusal.
    let probe = run(&["envs", "check", &pkg_s], b"");
    if probe.status.code() != Some(0) {
        eprintln!("!!! package not admitted here: {}", String::from_utf8_lossy(&probe.stderr));
        return;
    }
    contract(&["--envs", &pkg_s], "thermostat");
}

/// OpenEnv: reset / step (`call_tool`) / answer over the WebSocket gives the same reward as the
/// NeMo Gym routes; health, metadata and schema answer their shapes.
#[test]
fn envs_serve_openenv_websocket_episode() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, sample_file, sample) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let server = Server::start(&["--families", "trip"]).expect("server");
    let out = client(dir.path(), "openenv", &server.base, &[&sample_file.to_string_lossy()]);
    assert_eq!(out["health"][0], 200);
    assert_eq!(
        serde_json::from_str::<Value>(out["health"][1].as_str().unwrap_or("")).ok(),
        Some(serde_json::json!({"status": "healthy"}))
    );
    let meta: Value =
        serde_json::from_str(out["metadata"][1].as_str().unwrap_or("")).expect("metadata");
    assert_eq!(meta["name"], "agentgen");
    let schema: Value =
        serde_json::from_str(out["schema"][1].as_str().unwrap_or("")).expect("schema");
    assert!(
        schema["action"].is_object()
            && schema["observation"].is_object()
            && schema["state"].is_object()
    );
    assert_eq!(out["step_before_reset"]["type"], "error", "{out}");
    let reset = &out["reset"];
    assert_eq!(reset["type"], "observation", "{out}");
    assert_eq!(reset["data"]["done"], false);
    assert_eq!(reset["data"]["observation"]["task_id"], sample["id"]);
    assert_eq!(reset["data"]["observation"]["messages"][1]["content"], sample["user_prompt"]);
    let tools = out["list_tools"]["data"]["observation"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), sample["tools"].as_array().map_or(0, Vec::len));
    for s in out["steps"].as_array().expect("steps") {
        assert_eq!(s["type"], "observation", "{s}");
        assert!(s["data"]["observation"]["error"].is_null(), "reference call errored: {s}");
        assert!(s["data"]["observation"]["result"].is_string());
    }
    assert_eq!(
        out["state"]["data"]["step_count"],
        out["steps"].as_array().map_or(0, Vec::len),
        "{out}"
    );
    assert_eq!(out["answer"]["data"]["done"], true, "{out}");
    assert_eq!(out["answer"]["data"]["reward"], 1.0, "{out}");
    assert_eq!(out["empty_answer"]["data"]["reward"], 0.0, "{out}");
    assert_eq!(out["unknown_type"]["data"]["code"], "UNKNOWN_TYPE");
    assert!(out["after_close"].is_null(), "close ends the connection: {out}");
    let (status, err) = server.stop("-INT");
    assert!(status.success(), "exit on SIGINT: {status}\n{err}");
}

/// Unknown tool, missing / forged / foreign cookies, bad shapes, oversized bodies and 1,000
/// idle sessions against `--max-sessions 100`: each a clear HTTP error, the server healthy
/// throughout; the idle timeout then frees every idle session.
#[test]
fn envs_serve_abuse_gets_clear_errors_and_sessions_are_freed() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, _, sample) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let tool = sample["tools"][0]["function"]["name"].as_str().expect("a tool").to_owned();
    let server = Server::start(&[
        "--families",
        "trip",
        "--max-sessions",
        "100",
        "--idle-timeout-secs",
        "3600",
        "--max-body-bytes",
        "1048576",
    ])
    .expect("server");
    let out = client(dir.path(), "abuse", &server.base, &[&rows.to_string_lossy(), &tool, "1000"]);
    assert_eq!((out["seed_a"].as_u64(), out["seed_b"].as_u64()), (Some(200), Some(200)), "{out}");
    assert_eq!(out["unknown_tool"][0], 404, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(out["unknown_tool"][1].as_str().unwrap_or("")).ok(),
        Some(serde_json::json!({"error": "unknown tool: no_such_tool"}))
    );
    let err = |k: &str| -> (u64, Value) {
        let status = out[k][0].as_u64().unwrap_or(0);
        let body = serde_json::from_str(out[k][1].as_str().unwrap_or("")).unwrap_or(Value::Null);
        (status, body)
    };
    let (s, b) = err("no_cookie");
    assert_eq!((s, b["code"].as_str()), (400, Some("session.missing")), "{out}");
    let (s, b) = err("forged_cookie");
    assert_eq!((s, b["code"].as_str()), (404, Some("session.unknown")), "{out}");
    let (s, _) = err("verify_forged");
    assert_eq!(s, 404, "{out}");
    assert_eq!(out["verify_a"], 200);
    assert_eq!(out["a_after_verify"], 404, "a verified session is gone: {out}");
    assert_eq!(out["b_still_alive"], 200, "another client's session is untouched: {out}");
    assert_eq!(out["verify_bad_shape"], 422, "{out}");
    assert_eq!(out["verify_other_task"], 400, "{out}");
    for k in ["oversized_tool", "oversized_seed"] {
        assert!(
            out[k] == 413 || out[k].as_str().is_some_and(|s| s.starts_with("closed")),
            "{k}: {out}"
        );
    }
    assert_eq!(out["not_json"], 422);
    assert_eq!(out["no_task_id"], 422);
    let (s, b) = err("bad_task_id");
    assert_eq!((s, b["code"].as_str()), (400, Some("task.invalid")), "{out}");
    assert_eq!(out["b_alive_after_abuse"], 200, "{out}");
    assert_eq!(out["close_b"][0], 200);
    // 100 sessions fit; the other 900 seeds are refused with 503 sessions.full.
    assert_eq!(out["idle_codes"], serde_json::json!({"200": 100, "503": 900}), "{out}");
    assert_eq!(out["full_body"]["code"], "sessions.full");
    assert_eq!(out["full_body"]["max_sessions"], 100);
    assert_eq!(out["stats_full"]["active_sessions"], 100);
    assert_eq!(out["liveness"][0], 200);
    assert_eq!(out["health"][0], 200);
    // SIGTERM frees the 100 idle sessions.
    let (status, err) = server.stop("-TERM");
    assert!(status.success(), "exit on SIGTERM: {status}\n{err}");
    assert!(err.contains("shut down (100 open session(s) freed)"), "{err}");

    // The idle timeout frees idle sessions (polled until they are gone: no timed assertion).
    let server =
        Server::start(&["--families", "trip", "--idle-timeout-secs", "1"]).expect("server");
    let codes = client(dir.path(), "seed_many", &server.base, &[&rows.to_string_lossy(), "50"]);
    assert_eq!(codes, serde_json::json!({"200": 50}));
    let mut stats = Value::Null;
    for _ in 0..1200 {
        stats = client(dir.path(), "stats", &server.base, &[]);
        if stats["active_sessions"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(stats["active_sessions"], 0, "idle sessions were never freed: {stats}");
    assert_eq!(stats["sessions_reaped"], 50, "{stats}");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}

/// `--api-key-env`: every route but the liveness probes wants the bearer key; an unset
/// variable is refused at start.
#[test]
fn envs_serve_requires_the_api_key_when_configured() {
    let unset = Command::new(bin())
        .args(["envs", "serve", "--port", "0", "--families", "trip"])
        .args(["--api-key-env", "AGENTGEN_TEST_ENV_KEY_UNSET"])
        .env_remove("AGENTGEN_TEST_ENV_KEY_UNSET")
        .output()
        .expect("run");
    assert!(!unset.status.success(), "an unset key variable is refused");
    assert!(String::from_utf8_lossy(&unset.stderr).contains("AGENTGEN_TEST_ENV_KEY_UNSET"));
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, _, _) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let key = "k-7f3a";
    let server = Server::start_env(
        &["--families", "trip", "--api-key-env", "AGENTGEN_TEST_ENV_KEY"],
        &[("AGENTGEN_TEST_ENV_KEY", key)],
    )
    .expect("server");
    let out = client(dir.path(), "auth", &server.base, &[&rows.to_string_lossy(), key]);
    assert_eq!((out["liveness"].as_u64(), out["health"].as_u64()), (Some(200), Some(200)), "{out}");
    assert_eq!(out["stats_no_key"], 401, "{out}");
    assert_eq!(out["seed_no_key"][0], 401, "{out}");
    assert!(out["seed_no_key"][1].as_str().is_some_and(|b| b.contains("API key")), "{out}");
    assert_eq!(out["seed_wrong_key"], 401, "{out}");
    assert_eq!(
        (out["seed_key"].as_u64(), out["verify_key"].as_u64()),
        (Some(200), Some(200)),
        "{out}"
    );
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}

/// `--seed-wait-secs`: with every place taken, a seed waits for one instead of failing (the
/// second seed returns once the first session is verified, whatever the timing).
#[test]
fn envs_serve_seed_waits_for_a_free_place() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, _, _) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let server =
        Server::start(&["--families", "trip", "--max-sessions", "1", "--seed-wait-secs", "600"])
            .expect("server");
    let out = client(dir.path(), "queue", &server.base, &[&rows.to_string_lossy()]);
    assert_eq!(out["first"], 200, "{out}");
    assert_eq!(out["verify_first"], 200, "{out}");
    assert_eq!(out["second"], 200, "{out}");
    assert_eq!(out["verify_second"], 200, "{out}");
    assert_eq!(out["stats"]["sessions_verified"], 2, "{out}");
    assert_eq!(out["stats"]["active_sessions"], 0, "{out}");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}

/// A copy of fixture package `name` in `dir` (the runtime writes its admission cache next to
/// it), or `None` when packages cannot be admitted here (no python3 or no sandbox).
fn package_copy(dir: &Path, name: &str) -> Option<String> {
    let pkg = dir.join(name);
    agentgen_testdata::copy_dir(&fixtures().join("envpkg").join(name), &pkg);
    let pkg_s = pkg.to_string_lossy().into_owned();
    let probe = run(&["envs", "check", &pkg_s], b"");
    if probe.status.code() != Some(0) {
        eprintln!("!!! package not admitted here: {}", String::from_utf8_lossy(&probe.stderr));
        return None;
    }
    Some(pkg_s)
}

/// `envs sample` of one task, written to `dir/sample.json`.
fn sample_task(dir: &Path, envs: &[&str], family: &str, instance: &str, task: &str) -> PathBuf {
    let mut args = vec![
        "envs",
        "sample",
        "--family",
        family,
        "--instance-seed",
        instance,
        "--task-seed",
        task,
    ];
    args.extend_from_slice(envs);
    let out = run(&args, b"");
    assert!(out.status.success(), "sample: {}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("sample.json");
    std::fs::write(&file, &out.stdout).expect("write sample");
    file
}

/// A multi-turn package task (bookshop task 4: two user turns): over NeMo Gym's routes the
/// verify of turn 0 keeps the session and answers the next user message, the verify of turn 1
/// ends the episode with the episode's reward; a failed turn 0 ends it at once with 0. Over
/// OpenEnv's HTTP routes the `answer` step does the same.
#[test]
fn envs_serve_multi_turn_tasks_continue_after_each_verified_turn() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pkg) = package_copy(dir.path(), "bookshop") else { return };
    let envs = ["--envs", pkg.as_str()];
    let sample_file = sample_task(dir.path(), &envs, "bookshop", "0", "4");
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(&sample_file).expect("sample"))
            .expect("json");
    let followup = sample["followups"][0]["user"].as_str().expect("a second user turn").to_owned();
    let server = Server::start(&["--envs", &pkg, "--workers", "2"]).expect("server");
    let out = client(dir.path(), "multiturn", &server.base, &[&sample_file.to_string_lossy()]);
    // Turn 0 passed: the episode continues with the second user message.
    let v0 = &out["verify0"];
    assert_eq!(v0[0], 200, "{out}");
    let b0 = &v0[1];
    assert_eq!((b0["turn"].as_u64(), b0["turns_total"].as_u64()), (Some(0), Some(2)), "{b0}");
    assert_eq!(
        (b0["done"].as_bool(), b0["turn_reward"].as_f64()),
        (Some(false), Some(1.0)),
        "{b0}"
    );
    assert_eq!(b0["next_user_message"], serde_json::json!({"role": "user", "content": followup}));
    // Turn 1 ends it: the episode's reward, both turns' rewards, the session freed.
    let b1 = &out["verify1"][1];
    assert_eq!(out["verify1"][0], 200, "{out}");
    assert_eq!((b1["turn"].as_u64(), b1["done"].as_bool()), (Some(1), Some(true)), "{b1}");
    assert_eq!((b1["reward"].as_f64(), b1["passed"].as_bool()), (Some(1.0), Some(true)), "{b1}");
    assert_eq!(b1["turn_rewards"], serde_json::json!([1.0, 1.0]), "{b1}");
    assert!(b1.get("next_user_message").is_none(), "{b1}");
    assert_eq!(out["after_end"], 404, "{out}");
    // A failed first turn ends the episode with 0, and frees it.
    let f = &out["fail0"][1];
    assert_eq!((f["done"].as_bool(), f["reward"].as_f64()), (Some(true), Some(0.0)), "{f}");
    assert_eq!(f["turns_total"], 2);
    assert_eq!(out["after_fail"], 404, "{out}");
    // OpenEnv over HTTP.
    assert_eq!(out["reset"]["observation"]["turns_total"], 2, "{out}");
    assert_eq!(out["state_turn0"]["turn"], 0, "{out}");
    let a = out["answers"].as_array().expect("answers");
    assert_eq!(a.len(), 2, "{out}");
    assert_eq!(a[0][0], 200);
    assert_eq!(
        (a[0][1]["done"].as_bool(), a[0][1]["reward"].is_null()),
        (Some(false), true),
        "{out}"
    );
    assert_eq!(a[0][1]["observation"]["next_user_message"]["content"], followup.as_str());
    assert_eq!(a[0][1]["observation"]["messages"][0]["content"], followup.as_str());
    assert_eq!((a[1][1]["done"].as_bool(), a[1][1]["reward"].as_f64()), (Some(true), Some(1.0)));
    assert_eq!(out["state_after"], 404, "an ended HTTP episode is freed: {out}");
    // And over the WebSocket.
    let w = out["ws_answers"].as_array().expect("ws answers");
    assert_eq!(w.len(), 2, "{out}");
    assert_eq!(
        (w[0]["data"]["done"].as_bool(), w[0]["data"]["reward"].is_null()),
        (Some(false), true),
        "{out}"
    );
    assert_eq!(w[0]["data"]["observation"]["next_user_message"]["content"], followup.as_str());
    assert_eq!(
        (w[1]["data"]["done"].as_bool(), w[1]["data"]["reward"].as_f64()),
        (Some(true), Some(1.0)),
        "{out}"
    );
    assert_eq!(out["ws_state"]["data"]["turn"], 1, "{out}");
    assert_eq!(out["ws_state"]["data"]["done"], true, "{out}");
    let st = &out["stats"];
    assert_eq!(
        (st["active_sessions"].as_u64(), st["sessions_verified"].as_u64()),
        (Some(0), Some(4)),
        "{st}"
    );
    assert_eq!(st["turns_verified"], 7, "{st}");
    assert_eq!(st["workers"]["bookshop"], serde_json::json!({"max": 2, "busy": 0}), "{st}");
    let (status, err) = server.stop("-TERM");
    assert!(status.success(), "{err}");
}

/// OpenEnv's HTTP routes (`POST /reset`, `POST /step`, `GET /state`) on a one-turn task give
/// the reference reward 1 and the empty answer 0, with clear errors around them.
#[test]
fn envs_serve_openenv_http_reset_step_state() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, sample_file, sample) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let server = Server::start(&["--families", "trip"]).expect("server");
    let out = client(dir.path(), "openenv_http", &server.base, &[&sample_file.to_string_lossy()]);
    assert_eq!(out["step_no_session"][0], 400, "{out}");
    assert_eq!(out["state_no_session"], 400, "{out}");
    assert_eq!(out["reset_bad"], 422, "{out}");
    let reset = &out["reset"];
    assert_eq!(reset[0], 200, "{out}");
    assert_eq!(reset[1]["done"], false);
    assert_eq!(reset[1]["observation"]["task_id"], sample["id"]);
    assert_eq!(reset[1]["observation"]["messages"][1]["content"], sample["user_prompt"]);
    let n_tools = sample["tools"].as_array().map_or(0, Vec::len);
    assert_eq!(out["list_tools"]["observation"]["tools"].as_array().map(Vec::len), Some(n_tools));
    assert_eq!(out["bad_action"], 422, "{out}");
    assert_eq!(out["no_action"], 422, "{out}");
    for s in out["steps"].as_array().expect("steps") {
        assert_eq!(s[0], 200, "{s}");
        assert!(s[1]["observation"]["error"].is_null(), "reference call errored: {s}");
        assert_eq!(s[1]["done"], false);
    }
    let st = &out["state"];
    assert_eq!(st["episode_id"], "ep-7", "{out}");
    assert_eq!(st["task_id"], sample["id"]);
    // Tool calls are steps (list_tools and refused actions are not).
    assert_eq!(st["step_count"], out["steps"].as_array().map_or(0, Vec::len), "{st}");
    assert_eq!(out["other_state"], 400, "{out}");
    assert_eq!(out["answer"][0], 200);
    assert_eq!(
        (out["answer"][1]["done"].as_bool(), out["answer"][1]["reward"].as_f64()),
        (Some(true), Some(1.0)),
        "{out}"
    );
    assert_eq!(out["after_done"], 404, "{out}");
    assert_eq!(out["empty"]["reward"], 0.0, "{out}");
    assert_eq!(out["stats"]["active_sessions"], 0, "{out}");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}

/// `--workers 2`: two package sessions hold the two workers; a third waits
/// `--worker-wait-secs` and gets 503 `workers.busy` with `Retry-After`; once one session is
/// verified its worker serves the next seed. No more than 2 worker sandboxes ever run.
#[test]
fn envs_serve_caps_live_workers_per_package() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pkg) = package_copy(dir.path(), "bookshop") else { return };
    let (rows, _, _) = export_and_sample(dir.path(), &["--envs", &pkg], "bookshop");
    let server = Server::start(&["--envs", &pkg, "--workers", "2", "--worker-wait-secs", "0.5"])
        .expect("server");
    let out = client(dir.path(), "workers", &server.base, &[&rows.to_string_lossy(), "4"]);
    assert_eq!(out["codes"], serde_json::json!([200, 200, 503, 503]), "{out}");
    assert_eq!(out["busy"]["body"]["code"], "workers.busy", "{out}");
    assert_eq!(out["busy"]["body"]["package"], "bookshop", "{out}");
    assert_eq!(out["busy"]["retry_after"], "1", "{out}");
    let full = &out["stats_full"];
    assert_eq!(full["workers"]["bookshop"], serde_json::json!({"max": 2, "busy": 2}), "{full}");
    assert_eq!(full["sessions_refused_workers"], 2, "{full}");
    assert_eq!(full["active_sessions"], 2, "the refused seeds hold no place: {full}");
    assert_eq!(
        (out["verify_one"].as_u64(), out["seed_after"].as_u64()),
        (Some(200), Some(200)),
        "{out}"
    );
    assert_eq!(out["stats_after"]["workers"]["bookshop"]["busy"], 2, "{out}");
    let workers = sandbox_processes(server.child.id());
    let (status, err) = server.stop("-TERM");
    assert!(status.success(), "{err}");
    assert!(err.contains("shut down (2 open session(s) freed)"), "{err}");
    assert!(workers <= 2, "{workers} worker sandboxes alive with --workers 2");
}

/// The worker sandboxes under process `pid`: its direct children (each worker is one child
/// process of the server, whatever runs inside it).
fn sandbox_processes(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok())
                == Some(pid)
        })
        .count()
}

/// A package offering a tool named like one of the server's routes (`reset`) is refused at
/// start with a message naming the tool and the route; the same package without the clash is
/// served.
#[test]
fn envs_serve_refuses_a_tool_shadowed_by_a_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pkg) = package_copy(dir.path(), "thermostat") else { return };
    for f in ["env.py", "tools.json"] {
        let p = Path::new(&pkg).join(f);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains("set_away"), "{f}");
        std::fs::write(&p, text.replace("set_away", "reset")).expect("write");
    }
    let out = Command::new(bin())
        .args(["envs", "serve", "--port", "0", "--envs", &pkg])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a shadowed tool must be refused: {err}");
    assert!(
        err.contains("thermostat offers a tool named \"reset\"") && err.contains("(/reset)"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
}

/// The README's NeMo Gym YAML parses and names the port and the dataset file of the README's
/// own `envs serve` / `envs export` commands; its `verifiers` snippet's helpers, run as written
/// against the real server (stand-in `verifiers` and `datasets` modules), seed, call tools
/// and verify a task with reward 1 through the routes the server serves.
#[test]
fn envs_serve_readme_snippets_work_against_the_server() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, sample_file, _) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let server = Server::start(&["--families", "trip"]).expect("server");
    let work = dir.path().join("snippet");
    let out = client(
        dir.path(),
        "readme",
        &server.base,
        &[
            &readme.to_string_lossy(),
            &rows.to_string_lossy(),
            &sample_file.to_string_lossy(),
            &work.to_string_lossy(),
        ],
    );
    assert_eq!(out["snippet_url"], format!("http://127.0.0.1:{}", out["serve_port"]), "{out}");
    if out["yaml"].is_object() {
        let y = &out["yaml"];
        assert_eq!(
            (y["host"].as_str(), y["port"].as_u64()),
            (Some("127.0.0.1"), out["serve_port"].as_u64()),
            "{out}"
        );
        assert_eq!(y["agent_points_at_server"], true, "{out}");
        assert_eq!(y["datasets"], serde_json::json!([out["export_out"]]), "{out}");
    } else {
        eprintln!("!!! YAML not parsed: {}", out["yaml"]);
    }
    assert_eq!(out["cookie"], "agentgen_session", "{out}");
    assert_eq!(
        out["verified"],
        serde_json::json!({"reward": 1.0, "done": true, "turns_total": 1}),
        "{out}"
    );
    assert_eq!(out["env_class"], "StatefulToolEnv");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}

/// `--max-sessions 1` and no seed wait: a seed sent right after the previous episode's last
/// `/verify` (or its `/close_session`) always finds the place free (the ended episode gives it
/// back before answering).
#[test]
fn envs_serve_an_ended_session_frees_its_place_before_answering() {
    if !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, _, _) = export_and_sample(dir.path(), &["--families", "trip"], "trip");
    let server = Server::start(&["--families", "trip", "--max-sessions", "1"]).expect("server");
    let out = client(dir.path(), "reseed", &server.base, &[&rows.to_string_lossy(), "25"]);
    assert_eq!(out["codes"], serde_json::json!({"200": 50}), "{out}");
    assert_eq!(out["stats"]["sessions_refused_full"], 0, "{out}");
    assert_eq!(out["stats"]["active_sessions"], 0, "{out}");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
    // A package episode takes longer to end (its worker ends the `Env`): where the place was
    // given back after the answer, about one seed in five found it still taken.
    let Some(pkg) = package_copy(dir.path(), "bookshop") else { return };
    let (rows, _, _) = export_and_sample(dir.path(), &["--envs", &pkg], "bookshop");
    let server = Server::start(&["--envs", &pkg, "--max-sessions", "1"]).expect("server");
    let out = client(dir.path(), "reseed", &server.base, &[&rows.to_string_lossy(), "25"]);
    assert_eq!(out["codes"], serde_json::json!({"200": 50}), "{out}");
    let (status, _) = server.stop("-TERM");
    assert!(status.success());
}
