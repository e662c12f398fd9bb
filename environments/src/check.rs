//! Reference execution and soundness probes.
//!
//! [`run_reference`] replays a task's reference solution through [`Instance::call`] and builds
//! the transcript. [`soundness`] checks that the reference passes and that every hack probe
//! fails: no tool calls, answer only, the reference minus its last state-changing call, and
//! random schema-valid calls (which never replay a state-changing call of the reference).

use std::collections::BTreeSet;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::framework::{Instance, ReferenceTurn, State, TaskSpec, Verdict};
use crate::util::{py_json, rng};

/// Outcome of one probe: `passed` is the verifier's verdict on it (a sound task has `false`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// The probe's name (`no_tool_calls`, `answer_only`, `minus_last_write`,
    /// `random_calls_<n>`).
    pub name: String,
    /// True when the verifier accepted the probe (a hole in the task).
    pub passed: bool,
    /// `"verifier accepted the probe"`, or the verifier's failure text.
    pub detail: String,
}

/// Reference verdict and probe outcomes of one task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoundnessReport {
    /// The id of the task checked.
    pub task_id: String,
    /// The verifier's verdict on the reference solution (a sound task passes).
    pub reference: Verdict,
    /// Every hack probe, in the order run.
    pub probes: Vec<ProbeOutcome>,
    /// Problems with the reference itself (e.g. a reference call returned an error).
    pub problems: Vec<String>,
}

impl SoundnessReport {
    /// Sound: the reference passes, it made no erroring call, and every probe fails.
    pub fn ok(&self) -> bool {
        self.reference.passed && self.problems.is_empty() && self.probes.iter().all(|p| !p.passed)
    }

    /// Human-readable reasons why the task is not sound (empty when [`Self::ok`]).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.reference.passed {
            out.push(format!("reference fails: {}", self.reference.failures()));
        }
        out.extend(self.problems.iter().cloned());
        for p in self.probes.iter().filter(|p| p.passed) {
            out.push(format!("probe {} passes: {}", p.name, p.detail));
        }
        out
    }
}

/// Execute `turns` from `state`, appending assistant + tool messages to `transcript`. Returns
/// per-call `(turn, index, is_error, state_changed, content)`.
fn execute(
    instance: &dyn Instance,
    state: &mut State,
    turns: &[ReferenceTurn],
    transcript: &mut Vec<Message>,
) -> Vec<(usize, usize, bool, bool, String)> {
    let mut log = Vec::new();
    let mut n = 0usize;
    for (ti, turn) in turns.iter().enumerate() {
        let calls: Vec<ToolCall> = turn
            .calls
            .iter()
            .map(|c| {
                let id = format!("call_{n}");
                n += 1;
                ToolCall { id: Some(id), ..c.clone() }
            })
            .collect();
        transcript.push(Message::assistant(Some(turn.reasoning.clone()), "", calls.clone()));
        for (ci, c) in calls.iter().enumerate() {
            let r = instance.call(state, c);
            transcript.push(Message::tool(r.content.clone(), c.id.clone()));
            log.push((ti, ci, r.is_error, r.state_changed, r.content));
        }
    }
    log
}

/// Execute the reference via `call` and build the transcript: system (with tools), user, the
/// assistant turns (reasoning + calls) with their tool results, then the final assistant answer.
pub fn run_reference(instance: &dyn Instance, task: &TaskSpec) -> (State, Vec<Message>) {
    let mut state = task.initial_state.clone();
    let mut transcript = task.prompt_messages();
    execute(instance, &mut state, &task.reference.turns, &mut transcript);
    transcript.push(Message::assistant(None, task.reference.final_answer.clone(), Vec::new()));
    (state, transcript)
}

fn probe(name: &str, verdict: &Verdict) -> ProbeOutcome {
    let detail =
        if verdict.passed { "verifier accepted the probe".to_owned() } else { verdict.failures() };
    ProbeOutcome { name: name.to_owned(), passed: verdict.passed, detail }
}

/// Run the reference and every probe on `task`.
pub fn soundness(instance: &dyn Instance, task: &TaskSpec, probe_seed: u64) -> SoundnessReport {
    let mut problems = Vec::new();
    let mut state = task.initial_state.clone();
    let mut transcript = task.prompt_messages();
    let log = execute(instance, &mut state, &task.reference.turns, &mut transcript);
    transcript.push(Message::assistant(None, task.reference.final_answer.clone(), Vec::new()));
    for (ti, ci, is_error, _, content) in &log {
        if *is_error {
            problems.push(format!("reference call {ti}.{ci} returned an error: {content}"));
        }
    }
    let reference = instance.verify(task, &state, &transcript);
    let mut probes = Vec::new();

    // 1. No tool calls at all.
    let mut t = task.prompt_messages();
    t.push(Message::assistant(None, "I have completed the task.", Vec::new()));
    probes.push(probe("no_tool_calls", &instance.verify(task, &task.initial_state, &t)));

    // 2. The reference's final answer as text, no calls.
    let mut t = task.prompt_messages();
    t.push(Message::assistant(None, task.reference.final_answer.clone(), Vec::new()));
    probes.push(probe("answer_only", &instance.verify(task, &task.initial_state, &t)));

    // 3. The reference minus its last state-changing call.
    let writes: Vec<&(usize, usize, bool, bool, String)> = log.iter().filter(|l| l.3).collect();
    match writes.last() {
        None => problems.push("reference has no state-changing call".to_owned()),
        Some(&&(wt, wc, ..)) => {
            let turns: Vec<ReferenceTurn> = task
                .reference
                .turns
                .iter()
                .enumerate()
                .map(|(ti, turn)| ReferenceTurn {
                    reasoning: turn.reasoning.clone(),
                    calls: turn
                        .calls
                        .iter()
                        .enumerate()
                        .filter(|(ci, _)| !(ti == wt && *ci == wc))
                        .map(|(_, c)| c.clone())
                        .collect(),
                })
                .filter(|turn| !turn.calls.is_empty())
                .collect();
            let mut s = task.initial_state.clone();
            let mut t = task.prompt_messages();
            execute(instance, &mut s, &turns, &mut t);
            t.push(Message::assistant(None, task.reference.final_answer.clone(), Vec::new()));
            probes.push(probe("minus_last_write", &instance.verify(task, &s, &t)));
        }
    }

    // 4. Random schema-valid calls (two attempts), never replaying a reference write.
    let reference_writes: BTreeSet<(String, String)> = log
        .iter()
        .filter(|l| l.3)
        .filter_map(|l| task.reference.turns.get(l.0).and_then(|t| t.calls.get(l.1)))
        .map(|c| (c.name.clone(), canonical_args(&c.arguments)))
        .collect();
    let pool = ValuePool::from_task(task);
    for attempt in 0..2u64 {
        let mut r = rng(&[probe_seed, attempt, 0x5EED]);
        let n_calls = r.random_range(1..=8usize);
        let mut turns = Vec::new();
        for _ in 0..n_calls {
            let Some(tool) = task.tools.choose(&mut r) else { break };
            let Some(func) = tool.get("function") else { continue };
            let name = func.get("name").and_then(Value::as_str).unwrap_or_default();
            let params = func.get("parameters").cloned().unwrap_or(Value::Null);
            let args = random_value(&params, &pool, &mut r, 0);
            let text = py_json(&args);
            if reference_writes.contains(&(name.to_owned(), canonical_args(&text))) {
                continue;
            }
            turns.push(ReferenceTurn {
                reasoning: String::new(),
                calls: vec![ToolCall::new(name, text)],
            });
        }
        let mut s = task.initial_state.clone();
        let mut t = task.prompt_messages();
        execute(instance, &mut s, &turns, &mut t);
        t.push(Message::assistant(None, task.reference.final_answer.clone(), Vec::new()));
        probes.push(probe(&format!("random_calls_{attempt}"), &instance.verify(task, &s, &t)));
    }

    SoundnessReport { task_id: task.id.clone(), reference, probes, problems }
}

/// Argument names whose values are free commentary (never part of what a verifier checks);
/// a random call that equals a reference write on every other argument is a replay.
pub const FREE_TEXT_ARGS: &[&str] =
    &["note", "memo", "comment", "summary", "message", "explanation", "description"];

fn canonical_args(text: &str) -> String {
    let text = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            for k in FREE_TEXT_ARGS {
                m.remove(*k);
            }
            Value::Object(m).to_string()
        }
        _ => text.to_owned(),
    };
    let text = text.as_str();
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(String, Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect::<Map<_, _>>())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            other => other,
        }
    }
    serde_json::from_str::<Value>(text).map(|v| sort(v).to_string()).unwrap_or_default()
}

/// Plausible argument values: strings and numbers seen in the task's reference arguments and
/// prompt-visible state, so random calls hit real ids rather than only noise.
struct ValuePool {
    strings: Vec<String>,
    numbers: Vec<Value>,
}

impl ValuePool {
    fn from_task(task: &TaskSpec) -> Self {
        let mut strings = BTreeSet::new();
        let mut numbers = Vec::new();
        fn walk(v: &Value, s: &mut BTreeSet<String>, n: &mut Vec<Value>) {
            match v {
                Value::String(x) if x.len() <= 64 => {
                    s.insert(x.clone());
                }
                Value::Number(_) if n.len() < 64 => n.push(v.clone()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, s, n)),
                Value::Object(m) => m.values().for_each(|x| walk(x, s, n)),
                _ => {}
            }
        }
        for turn in &task.reference.turns {
            for c in &turn.calls {
                if let Ok(v) = serde_json::from_str::<Value>(&c.arguments) {
                    walk(&v, &mut strings, &mut numbers);
                }
            }
        }
        walk(&task.initial_state.0, &mut strings, &mut numbers);
        ValuePool { strings: strings.into_iter().take(256).collect(), numbers }
    }
}

/// A random instance of a (strict-mode) JSON Schema.
fn random_value(schema: &Value, pool: &ValuePool, r: &mut impl Rng, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else { return Value::Null };
    if let Some(Value::Array(options)) = obj.get("enum") {
        return options.choose(r).cloned().unwrap_or(Value::Null);
    }
    if let Some(Value::Array(alts)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
        return match alts.choose(r) {
            Some(a) => random_value(a, pool, r, depth + 1),
            None => Value::Null,
        };
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["string"],
    };
    let ty = types.choose(r).copied().unwrap_or("null");
    match ty {
        "null" => Value::Null,
        "boolean" => Value::Bool(r.random_bool(0.5)),
        "integer" => {
            let lo = obj.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let hi = obj.get("maximum").and_then(Value::as_i64).unwrap_or(lo + 100).max(lo);
            let from_pool =
                pool.numbers.iter().filter_map(Value::as_i64).filter(|n| (lo..=hi).contains(n));
            let candidates: Vec<i64> = from_pool.collect();
            match candidates.choose(r) {
                Some(&n) if r.random_bool(0.5) => Value::from(n),
                _ => Value::from(r.random_range(lo..=hi)),
            }
        }
        "number" => {
            let lo = obj.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let hi = obj.get("maximum").and_then(Value::as_f64).unwrap_or(lo + 1000.0).max(lo);
            match pool.numbers.choose(r) {
                Some(n) if r.random_bool(0.5) && n.as_f64().is_some_and(|f| f >= lo && f <= hi) => {
                    n.clone()
                }
                _ => serde_json::Number::from_f64(
                    ((lo + r.random::<f64>() * (hi - lo)) * 100.0).round() / 100.0,
                )
                .map_or(Value::Null, Value::Number),
            }
        }
        "array" => {
            let items = obj.get("items").cloned().unwrap_or(Value::Null);
            let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = obj
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(min + 3, |m| m as usize)
                .max(min);
            let n = if depth > 3 { min } else { r.random_range(min..=max.min(min + 4)) };
            Value::Array((0..n).map(|_| random_value(&items, pool, r, depth + 1)).collect())
        }
        "object" => {
            let mut m = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    m.insert(k.clone(), random_value(v, pool, r, depth + 1));
                }
            }
            Value::Object(m)
        }
        _ => {
            let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            match pool.strings.choose(r) {
                Some(s) if r.random_bool(0.6) && s.chars().count() >= min => {
                    Value::String(s.clone())
                }
                _ => {
                    let len = r.random_range(min.max(1)..=min.max(1) + 8);
                    let s: String =
                        (0..len).map(|_| char::from(b'a' + r.random_range(0..26u8))).collect();
                    Value::String(s)
                }
            }
        }
    }
}

/// One task that failed `envs check`: its id (or the ref that failed to build) and reasons.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckFailure {
    /// The task's id, or the task ref whose instance or task failed to build.
    pub task_id: String,
    /// Why it failed: reference failures, probes that passed, or the build error.
    pub reasons: Vec<String>,
}

/// Run [`soundness`] on tasks `0..n` of a run (task `i` -> `selection.task_ref(run_seed, i)`),
/// in parallel with rayon; `progress` is called once per finished task. Returns the failures
/// in task order (a task that cannot be generated is a failure too).
pub fn check_tasks(
    registry: &crate::Registry,
    selection: &crate::Selection,
    run_seed: u64,
    n: u64,
    progress: &(dyn Fn() + Sync),
) -> Vec<CheckFailure> {
    use rayon::prelude::*;
    let cache = crate::InstanceCache::new(1024);
    let mut failures: Vec<(u64, CheckFailure)> = (0..n as usize)
        .into_par_iter()
        .with_min_len(8)
        .filter_map(|i| {
            let i = i as u64;
            let r = selection.task_ref(run_seed, i);
            let out = match registry.task(&cache, &r) {
                Err(e) => {
                    Some(CheckFailure { task_id: r.to_string(), reasons: vec![e.to_string()] })
                }
                Ok((instance, task)) => {
                    let rep = soundness(instance.as_ref(), &task, crate::util::mix(&[run_seed, i]));
                    (!rep.ok())
                        .then(|| CheckFailure { task_id: task.id.clone(), reasons: rep.failures() })
                }
            };
            progress();
            out.map(|f| (i, f))
        })
        .collect();
    failures.sort_by_key(|(i, _)| *i);
    failures.into_iter().map(|(_, f)| f).collect()
}
