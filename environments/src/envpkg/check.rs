//! Admission (spec §9): the package checks of §9.1, the task checks of §9.2 (reference
//! replayed twice, probes `empty`, `answer_only`, `minus_last_write` and the package's own),
//! and the JSON report of §9.3. A misbehaving package only fails its own checks: a worker that
//! times out, crashes or breaks the sandbox is replaced and the next task goes on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::Problem;
use super::episode::{Episode, json_eq};
use super::load::{ValidPackage, load_package};
use super::task::{Call, ValidTask, VerifyMode, parse_task, task_id};
use super::worker::{Failure, PythonRuntime, Worker};
use crate::framework::Verdict;

/// Knobs of one admission run.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Admit a package with at least one passing task (only those are served).
    pub partial: bool,
    /// Generated seeds checked: 1 ..= min(seeds, K).
    pub seeds_k: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { partial: false, seeds_k: 16 }
    }
}

/// The result of admitting one package.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    /// True when the package is admitted: every task passed admission (with `partial`, at
    /// least one).
    pub admitted: bool,
    /// The §9.3 report.
    pub report: Value,
}

/// `(steps, answer)` per turn: what one replay plays.
type Script = Vec<(Vec<Vec<Call>>, String)>;

/// What a replay saw.
struct Play {
    /// Every observation, in order.
    observations: Vec<String>,
    /// Error observations of reference calls: `turn t step s: content`.
    errors: Vec<String>,
    /// `state()` after each played turn.
    states: Vec<Value>,
    verdicts: Vec<Verdict>,
    /// State-changing calls `(turn, step, call)`, when tracked.
    writes: Vec<(usize, usize, usize)>,
}

/// Run the admission of the package at `path` with workers of `rt`; `reserved` are the
/// built-in family names.
pub fn check_package(
    path: &Path,
    rt: &PythonRuntime,
    reserved: &[&str],
    opts: &CheckOptions,
) -> CheckOutcome {
    let mut report = json!({
        "format": "agentgen-envpkg-check/1",
        "runtime": {"name": "agentgen", "version": env!("CARGO_PKG_VERSION"), "python": rt.version,
                    "isolation": rt.isolation()},
        "package": {"path": path.display().to_string()},
        "admitted": false,
        "mode": if opts.partial { "partial" } else { "strict" },
        "errors": [],
        "warnings": [],
        "summary": {"tasks": 0, "admitted": 0, "rejected": 0, "by_reason": {}},
        "admitted_tasks": [],
        "tasks": [],
    });
    let fail = |mut report: Value, p: Problem| {
        report["errors"] = json!([p]);
        CheckOutcome { admitted: false, report }
    };
    let pkg = match load_package(path, reserved, &rt.stdlib) {
        Ok(p) => p,
        Err(p) => return fail(report, p),
    };
    report["package"] = json!({
        "path": pkg.path.display().to_string(), "name": pkg.manifest.name,
        "version": pkg.manifest.version, "sha256": pkg.sha256, "limits": pkg.manifest.limits,
    });
    let mut warnings: Vec<Problem> = pkg.warnings.clone();
    let tool_names: Vec<&str> = pkg.tools.iter().map(|t| t.name.as_str()).collect();
    let limits = pkg.manifest.limits;
    let load_timeout = Duration::from_millis(limits.load_timeout_ms);
    let worker = Worker::start(
        rt,
        &pkg.path,
        limits.memory_mb,
        load_timeout,
        Some((&pkg.py_files, &pkg.local_modules)),
        &tool_names,
    );
    let mut worker = match worker {
        Ok(w) => Some(w),
        Err(f) => {
            let code = if f.code == "env.protocol" { "pkg.import".to_owned() } else { f.code };
            return fail(report, Problem::new(code, f.detail));
        }
    };
    let info = worker.as_ref().map(|w| w.load_info.clone()).unwrap_or_default();
    if info["has_env"] != json!(true) || info["has_state"] != json!(true) {
        return fail(
            report,
            Problem::new("pkg.module", "env.py must define class Env with a state() method"),
        );
    }
    if let Err(p) = check_signatures(&pkg, &info["tools"]) {
        return fail(report, p);
    }
    let has_generate = info["has_generate"] == json!(true);
    let has_verify = info["has_verify"] == json!(true);
    if has_generate != pkg.manifest.generate_seeds.is_some() {
        return fail(
            report,
            Problem::new(
                "pkg.toml",
                if has_generate {
                    "env.py defines generate_task but env.toml has no [generate] table"
                } else {
                    "env.toml has [generate] but env.py defines no generate_task"
                },
            ),
        );
    }
    if pkg.tasks_text.is_none() && !has_generate {
        return fail(report, Problem::new("pkg.layout", "neither tasks.jsonl nor generate_task"));
    }

    // ---- task records
    let mut entries: Vec<Value> = Vec::new();
    let mut tasks: Vec<ValidTask> = Vec::new();
    if let Some(text) = &pkg.tasks_text {
        let mut ids: Vec<String> = Vec::new();
        for (i, line) in text.strip_suffix('\n').unwrap_or(text).split('\n').enumerate() {
            let tid = task_id(&pkg.manifest.name, pkg.manifest.version, 0, i as u64);
            let parsed = serde_json::from_str::<Value>(line)
                .map_err(|e| Problem::new("task.schema", format!("tasks.jsonl:{}: {e}", i + 1)))
                .and_then(|v| parse_task(tid.clone(), &v, &tool_names, None, None, &mut warnings));
            match parsed {
                Ok(t) if ids.contains(&t.id) => entries.push(short_entry(
                    &tid,
                    &t.id,
                    Problem::new(
                        "task.duplicate_id",
                        format!("tasks.jsonl:{}: id {:?} repeats", i + 1, t.id),
                    ),
                )),
                Ok(t) => {
                    ids.push(t.id.clone());
                    tasks.push(t);
                }
                Err(p) => entries.push(short_entry(&tid, "", p)),
            }
        }
    }
    let mut seeds_checked = None;
    if let Some(seeds) = pkg.manifest.generate_seeds {
        let last = seeds.min(opts.seeds_k.max(1));
        seeds_checked = Some((1, last));
        for seed in 1..=last {
            let tid = task_id(&pkg.manifest.name, pkg.manifest.version, seed, 0);
            let w = match ensure_worker(&mut worker, rt, &pkg) {
                Ok(w) => w,
                Err(f) => {
                    entries.push(short_entry(&tid, "", Problem::new(f.code, f.detail)));
                    continue;
                }
            };
            match generate_twice(w, &pkg, seed) {
                Ok(v) => {
                    match parse_task(
                        tid.clone(),
                        &v,
                        &tool_names,
                        Some(&format!("gen-{seed}")),
                        Some(seed),
                        &mut warnings,
                    ) {
                        Ok(t) => tasks.push(t),
                        Err(p) => entries.push(short_entry(&tid, "", p)),
                    }
                }
                Err(p) => entries.push(short_entry(&tid, "", p)),
            }
        }
    }

    // ---- task checks
    for task in &tasks {
        entries.push(check_task(&mut worker, rt, &pkg, task, has_verify));
    }
    drop(worker);
    entries.sort_by_key(|e| task_order(e["task_id"].as_str().unwrap_or_default()));

    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut admitted_tasks = Vec::new();
    for e in &entries {
        if e["admitted"] == json!(true) {
            admitted_tasks.push(e["task_id"].clone());
        }
        let mut codes: Vec<&str> = e["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["code"].as_str())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            *by_reason.entry(c.to_owned()).or_default() += 1;
        }
    }
    let n = entries.len();
    let ok = admitted_tasks.len();
    let admitted = if opts.partial { ok > 0 } else { ok == n && n > 0 };
    if let Some((first, last)) = seeds_checked {
        report["package"]["generated_seeds_checked"] = json!([first, last]);
        report["package"]["generated_seeds_k"] = json!(opts.seeds_k);
    }
    report["admitted"] = json!(admitted);
    report["warnings"] = json!(warnings);
    report["summary"] =
        json!({"tasks": n, "admitted": ok, "rejected": n - ok, "by_reason": by_reason});
    report["admitted_tasks"] = json!(admitted_tasks);
    report["tasks"] = json!(entries);
    CheckOutcome { admitted, report }
}

/// Sort key of a task id: (instance, index).
fn task_order(id: &str) -> (u64, u64) {
    let mut it = id.rsplit('/');
    let idx = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let inst = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (inst, idx)
}

fn short_entry(task_id: &str, id: &str, p: Problem) -> Value {
    json!({"task_id": task_id, "id": id, "admitted": false, "reasons": [p]})
}

/// The live worker, restarting it if the last one was discarded.
fn ensure_worker<'w>(
    slot: &'w mut Option<Worker>,
    rt: &PythonRuntime,
    pkg: &ValidPackage,
) -> Result<&'w mut Worker, Failure> {
    if !slot.as_ref().is_some_and(Worker::is_alive) {
        *slot = None;
        let names: Vec<&str> = pkg.tools.iter().map(|t| t.name.as_str()).collect();
        let l = &pkg.manifest.limits;
        *slot = Some(Worker::start(
            rt,
            &pkg.path,
            l.memory_mb,
            Duration::from_millis(l.load_timeout_ms),
            None,
            &names,
        )?);
    }
    slot.as_mut().ok_or_else(|| Failure::new("env.crash", "no worker"))
}

/// `generate_task(seed)` twice; different records are `nondeterministic`.
fn generate_twice(w: &mut Worker, pkg: &ValidPackage, seed: u64) -> Result<Value, Problem> {
    let t = Duration::from_millis(pkg.manifest.limits.call_timeout_ms);
    let req = json!({"op": "generate", "seed": seed, "clock": pkg.manifest.clock});
    let generate = |w: &mut Worker| -> Result<Value, Problem> {
        let r = w.request(&req, t).map_err(|f| Problem::new(f.code, f.detail))?;
        serde_json::from_str(r["task"].as_str().unwrap_or("null"))
            .map_err(|e| Problem::new("env.protocol", format!("generate_task({seed}): {e}")))
    };
    let a = generate(w)?;
    let b = generate(w)?;
    if !json_eq(&a, &b) {
        return Err(Problem::new(
            "nondeterministic",
            format!("generate_task({seed}) returned different records"),
        ));
    }
    Ok(a)
}

/// Spec §9.1 item 6: a method per tool, and signatures that accept the schema's arguments.
fn check_signatures(pkg: &ValidPackage, sigs: &Value) -> Result<(), Problem> {
    for tool in &pkg.tools {
        let sig = &sigs[&tool.name];
        if sig.is_null() {
            return Err(Problem::new(
                "tool.missing",
                format!("tools.json declares {:?} but env.py's Env has no such method", tool.name),
            ));
        }
        if sig["opaque"] == json!(true) {
            continue;
        }
        let params = sig["params"].as_array().cloned().unwrap_or_default();
        let kind = |p: &Value| p["kind"].as_str().unwrap_or_default().to_owned();
        let var_kw = params.iter().any(|p| kind(p) == "VAR_KEYWORD");
        let bad = |why: String| {
            Problem::new("tool.signature", format!("env.py: Env.{}: {why}", tool.name))
        };
        for prop in &tool.schema.properties {
            let accepted = params.iter().any(|p| {
                p["name"] == json!(prop)
                    && matches!(kind(p).as_str(), "POSITIONAL_OR_KEYWORD" | "KEYWORD_ONLY")
            });
            if !accepted && !var_kw {
                return Err(bad(format!("schema property {prop:?} is not a keyword parameter")));
            }
        }
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            let has_default = p["default"] == json!(true);
            match kind(p).as_str() {
                "POSITIONAL_ONLY" if !has_default => {
                    return Err(bad(format!("positional-only parameter {name:?} has no default")));
                }
                "POSITIONAL_OR_KEYWORD" | "KEYWORD_ONLY"
                    if !has_default && !tool.schema.required.iter().any(|r| r == name) =>
                {
                    return Err(bad(format!(
                        "parameter {name:?} has no default but the schema does not require it"
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Replay `script` in a fresh episode. `golds`: gold states per turn (gold-state tasks; when
/// None the turn's own state is its gold). `stop_on_fail` stops at the first failed turn.
fn play(
    w: &mut Worker,
    pkg: &ValidPackage,
    task: &ValidTask,
    script: &Script,
    golds: Option<&[Value]>,
    track_writes: bool,
    stop_on_fail: bool,
) -> Result<Play, Failure> {
    let mut ep = Episode::begin(pkg, task, w)?;
    let mut p = Play {
        observations: vec![],
        errors: vec![],
        states: vec![],
        verdicts: vec![],
        writes: vec![],
    };
    let mut prev = if track_writes { Some(ep.state()?) } else { None };
    for (t, (steps, answer)) in script.iter().enumerate() {
        for (s, step) in steps.iter().enumerate() {
            for (c, call) in step.iter().enumerate() {
                let obs = ep.call(s, &call.name, &call.arguments, track_writes)?;
                if obs.is_error {
                    p.errors.push(format!("turn {t} step {s} {}: {}", call.name, obs.content));
                }
                if let (Some(st), Some(before)) = (&obs.state, &prev) {
                    if !json_eq(st, before) {
                        p.writes.push((t, s, c));
                    }
                    prev = obs.state.clone();
                }
                p.observations.push(obs.content);
            }
        }
        let state = ep.state()?;
        let gold = match (task.verify, golds) {
            (VerifyMode::GoldState, Some(g)) => g.get(t).cloned(),
            (VerifyMode::GoldState, None) => Some(state.clone()),
            _ => None,
        };
        let v = ep.verify(t, answer, gold.as_ref())?;
        let passed = v.passed;
        p.states.push(state);
        p.verdicts.push(v);
        if stop_on_fail && !passed {
            break;
        }
    }
    ep.end()?;
    Ok(p)
}

/// Replay `task`'s reference in a fresh episode on `w`: the `state()` after each turn (the
/// gold states of §8.2). With `must_pass`, a failing turn or an error observation is an
/// `env.task` failure (§13.17: a generated seed beyond the admitted ones is served only when
/// its reference passes).
pub(crate) fn reference_states(
    w: &mut Worker,
    pkg: &ValidPackage,
    task: &ValidTask,
    must_pass: bool,
) -> Result<Vec<Value>, Failure> {
    let script: Script =
        task.turns.iter().map(|t| (t.reference.clone(), t.answer.clone())).collect();
    let p = play(w, pkg, task, &script, None, false, false)?;
    if must_pass {
        if let Some(e) = p.errors.first() {
            return Err(Failure::new(
                "env.task",
                format!("{}: reference error: {e}", task.task_id),
            ));
        }
        if p.verdicts.iter().any(|v| !v.passed) {
            return Err(Failure::new(
                "env.task",
                format!("{}: reference fails: {}", task.task_id, first_failure(&p)),
            ));
        }
    }
    Ok(p.states)
}

fn verdict_json(v: &Verdict) -> Value {
    json!({"passed": v.passed, "reward": v.reward, "checks": v.checks})
}

/// `turn t: failing checks` of the first failed turn, or "" when all passed.
fn first_failure(p: &Play) -> String {
    p.verdicts
        .iter()
        .enumerate()
        .find(|(_, v)| !v.passed)
        .map(|(t, v)| {
            format!(
                "turn {t}: {}",
                if v.checks.is_empty() { "verify returned False".into() } else { v.failures() }
            )
        })
        .unwrap_or_default()
}

/// All §9.2 checks of one task, as its report entry.
fn check_task(
    slot: &mut Option<Worker>,
    rt: &PythonRuntime,
    pkg: &ValidPackage,
    task: &ValidTask,
    has_verify: bool,
) -> Value {
    let mut reasons: Vec<Problem> = Vec::new();
    let offered = |n: &str| match &task.tools {
        Some(l) => l.iter().any(|t| t == n),
        None => pkg.tool(n).is_some(),
    };
    if task.verify == VerifyMode::Module && !has_verify {
        reasons.push(Problem::new(
            "task.schema",
            format!("{}: module verification but env.py has no verify()", task.task_id),
        ));
    }
    for (t, turn) in task.turns.iter().enumerate() {
        let n: usize = turn.reference.iter().map(Vec::len).sum();
        if n as u64 > pkg.manifest.limits.max_calls_per_turn {
            reasons.push(Problem::new("ref.call_limit", format!("turn {t}: {n} reference calls")));
        }
        for (s, step) in turn.reference.iter().enumerate() {
            for c in step {
                if !offered(&c.name) {
                    reasons.push(Problem::new(
                        "ref.unknown_tool",
                        format!("turn {t} step {s}: {:?} is not offered", c.name),
                    ));
                } else if !c.arguments.is_object() {
                    reasons.push(Problem::new(
                        "ref.schema",
                        format!("turn {t} step {s}: {}: arguments must be a JSON object", c.name),
                    ));
                } else if let Some(Err(e)) =
                    pkg.tool(&c.name).map(|tool| tool.schema.validate(&c.name, &c.arguments))
                {
                    reasons.push(Problem::new("ref.schema", format!("turn {t} step {s}: {e}")));
                }
            }
        }
    }
    let base = json!({"task_id": task.task_id, "id": task.id});
    if !reasons.is_empty() {
        let mut e = base;
        e["admitted"] = json!(false);
        e["reasons"] = json!(reasons);
        return e;
    }
    let mut entry = json!({"task_id": task.task_id, "id": task.id, "difficulty": task.difficulty,
        "turns": task.turns.len(), "verify": task.verify.as_str()});
    let reference: Script =
        task.turns.iter().map(|t| (t.reference.clone(), t.answer.clone())).collect();
    let run = |slot: &mut Option<Worker>,
               script: &Script,
               golds: Option<&[Value]>,
               track: bool,
               stop: bool| {
        let w = ensure_worker(slot, rt, pkg)?;
        play(w, pkg, task, script, golds, track, stop)
    };
    let finish = |mut entry: Value, reasons: Vec<Problem>| {
        entry["admitted"] = json!(reasons.is_empty());
        entry["reasons"] = json!(reasons);
        entry
    };
    // Replay 1: the reference must pass every turn without an error observation.
    let r1 = match run(slot, &reference, None, true, false) {
        Ok(p) => p,
        Err(f) => {
            entry["reference"] = json!({"passed": false, "detail": f.to_string()});
            return finish(entry, vec![Problem::new(f.code, f.detail)]);
        }
    };
    let ref_passed = r1.verdicts.iter().all(|v| v.passed);
    if !ref_passed {
        reasons.push(Problem::new("ref.fails", first_failure(&r1)));
    }
    if let Some(e) = r1.errors.first() {
        reasons.push(Problem::new("ref.error", e.clone()));
    }
    entry["reference"] = json!({"passed": ref_passed, "calls": r1.observations.len(),
        "turns": r1.verdicts.iter().map(verdict_json).collect::<Vec<_>>()});
    let golds = r1.states.clone();
    // Replay 2 in the same worker: identical observations, states and verdicts.
    match run(slot, &reference, Some(&golds), false, false) {
        Ok(r2) => {
            let same = r2.observations == r1.observations
                && r2.states.len() == r1.states.len()
                && r2.states.iter().zip(&r1.states).all(|(a, b)| json_eq(a, b))
                && r2.verdicts == r1.verdicts;
            entry["deterministic"] = json!(same);
            if !same {
                let detail =
                    match r1.observations.iter().zip(&r2.observations).position(|(a, b)| a != b) {
                        Some(i) => format!(
                            "observation {i} differs: {:?} vs {:?}",
                            r1.observations[i], r2.observations[i]
                        ),
                        None => "post-turn state() or verdicts differ between two replays".into(),
                    };
                reasons.push(Problem::new("nondeterministic", detail));
            }
        }
        Err(f) => reasons.push(Problem::new(f.code, f.detail)),
    }
    // Probes: each must fail some turn.
    let n = task.turns.len();
    let mut probes: Vec<(String, &str, Option<Script>)> = vec![
        ("empty".into(), "probe.empty", Some(vec![(vec![], String::new()); n])),
        (
            "answer_only".into(),
            "probe.answer_only",
            Some(task.turns.iter().map(|t| (vec![], t.answer.clone())).collect()),
        ),
    ];
    let mlw = r1.writes.last().map(|&(wt, ws, wc)| {
        let mut s = reference.clone();
        s[wt].0[ws].remove(wc);
        if s[wt].0[ws].is_empty() {
            s[wt].0.remove(ws);
        }
        s
    });
    probes.push(("minus_last_write".into(), "probe.minus_last_write", mlw));
    for p in &task.probes {
        probes.push((p.name.clone(), "probe.package", Some(p.turns.clone())));
    }
    let mut probe_entries = Vec::new();
    for (name, code, script) in probes {
        let Some(script) = script else {
            probe_entries.push(
                json!({"name": name, "skipped": true, "detail": "the reference changes nothing"}),
            );
            continue;
        };
        match run(slot, &script, Some(&golds), false, true) {
            Ok(p) => {
                let passed = p.verdicts.len() == n && p.verdicts.iter().all(|v| v.passed);
                if passed {
                    reasons.push(Problem::new(code, format!("probe {name:?} passes verification")));
                }
                probe_entries
                    .push(json!({"name": name, "passed": passed, "detail": first_failure(&p)}));
            }
            Err(f) => {
                probe_entries.push(
                    json!({"name": name, "passed": false, "error": f.code, "detail": f.detail}),
                );
                reasons.push(Problem::new(f.code, format!("probe {name:?}: {}", f.detail)));
            }
        }
    }
    entry["probes"] = json!(probe_entries);
    finish(entry, reasons)
}
