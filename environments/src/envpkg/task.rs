//! Task records (spec §6.1): parsing a tasks.jsonl line or a `generate_task` result into a
//! [`ValidTask`], with defaults filled (the record `verify()` receives), and task ids (§6.3).

use serde_json::{Map, Value, json};

use super::Problem;

/// How a task's turns are verified (§8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// `"module"` (the default): the package's own `verify()` judges each turn (§8.1).
    Module,
    /// `"gold_state"`: each turn's state must equal the reference's replayed state, and the
    /// answer hold every `answer_contains` string (§8.2).
    GoldState,
}

impl VerifyMode {
    /// The record's spelling: `"module"` or `"gold_state"`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Module => "module",
            VerifyMode::GoldState => "gold_state",
        }
    }
}

/// One call of a reference step or a probe: arguments are any JSON value (probes may be bad).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The tool name (not necessarily one tools.json defines).
    pub name: String,
    /// The arguments as written (normally an object).
    pub arguments: Value,
}

/// One user turn with its reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// The user's message of this turn (non-empty).
    pub user: String,
    /// Steps of parallel calls.
    pub reference: Vec<Vec<Call>>,
    /// The reference's final text of the turn (may be empty).
    pub answer: String,
    /// Strings the answer must contain (case-folded, whitespace collapsed); `gold_state` only.
    pub answer_contains: Vec<String>,
}

/// A scripted attempt that must fail: per task turn, steps of calls and an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The probe's name, unique within the task.
    pub name: String,
    /// `(steps, answer)` per task turn.
    pub turns: Vec<(Vec<Vec<Call>>, String)>,
}

/// A task record that matches §6.1.
#[derive(Clone, Debug)]
pub struct ValidTask {
    /// `<name>@<version>/<instance>/<index>`.
    pub task_id: String,
    /// The author's label.
    pub id: String,
    /// Difficulty, 1..=5.
    pub difficulty: u8,
    /// The seed passed to `Env()`.
    pub seed: u64,
    /// The params object passed to `Env()` (default `{}`).
    pub params: Value,
    /// Offered tool names (None: all).
    pub tools: Option<Vec<String>>,
    /// The task's own system prompt, replacing the package's.
    pub system_prompt: Option<String>,
    /// The task's virtual clock (RFC 3339), overriding env.toml's.
    pub clock: Option<String>,
    /// How the turns are verified.
    pub verify: VerifyMode,
    /// The user turns with their references (at least one).
    pub turns: Vec<Turn>,
    /// The record's probes: attempts that must fail.
    pub probes: Vec<Probe>,
    /// The full record with defaults filled in (what `verify()` receives), as JSON text.
    pub record_json: String,
}

/// Parse one record. `defaults` fills `id`/`seed` for generated tasks. Warnings
/// (`lint.unknown_field`) go to `warnings`; a mismatch is `task.schema`.
pub fn parse_task(
    task_id: String,
    value: &Value,
    tool_names: &[&str],
    default_id: Option<&str>,
    default_seed: Option<u64>,
    warnings: &mut Vec<Problem>,
) -> Result<ValidTask, Problem> {
    let bad =
        |field: &str, why: &str| Problem::new("task.schema", format!("{task_id}: {field}: {why}"));
    let Some(obj) = value.as_object() else {
        return Err(bad("/", "a task record must be a JSON object"));
    };
    let mut rec: Map<String, Value> = obj.clone();
    const KNOWN: &[&str] = &[
        "id",
        "difficulty",
        "seed",
        "params",
        "tools",
        "system_prompt",
        "clock",
        "verify",
        "turns",
        "hidden",
        "probes",
        "tags",
    ];
    for k in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        warnings.push(Problem::new(
            "lint.unknown_field",
            format!("{task_id}: unknown field {k:?} ignored"),
        ));
    }
    if let Some(d) = default_id {
        rec.entry("id").or_insert_with(|| json!(d));
    }
    if let Some(s) = default_seed {
        rec.entry("seed").or_insert_with(|| json!(s));
    }
    let id = match rec.get("id") {
        Some(Value::String(s)) if (1..=128).contains(&s.chars().count()) => s.clone(),
        _ => return Err(bad("/id", "must be a string of 1-128 characters")),
    };
    let difficulty = match rec.get("difficulty").and_then(Value::as_u64) {
        Some(d @ 1..=5) => d as u8,
        _ => return Err(bad("/difficulty", "must be an integer 1-5")),
    };
    let seed = match rec.get("seed").and_then(Value::as_u64) {
        Some(s) if s <= i64::MAX as u64 => s,
        _ => return Err(bad("/seed", "must be an integer 0 .. 2^63-1")),
    };
    let params = rec.entry("params").or_insert_with(|| json!({})).clone();
    if !params.is_object() {
        return Err(bad("/params", "must be an object"));
    }
    let tools = match rec.get("tools") {
        None => None,
        Some(Value::Array(a)) => {
            let mut names = Vec::new();
            for (i, t) in a.iter().enumerate() {
                match t.as_str() {
                    Some(n) if tool_names.contains(&n) => names.push(n.to_owned()),
                    _ => return Err(bad(&format!("/tools/{i}"), "must name a tool of tools.json")),
                }
            }
            Some(names)
        }
        Some(_) => return Err(bad("/tools", "must be an array of tool names")),
    };
    let opt_str = |k: &str| -> Result<Option<String>, Problem> {
        match rec.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&format!("/{k}"), "must be a string")),
        }
    };
    let system_prompt = opt_str("system_prompt")?;
    let clock = opt_str("clock")?;
    if let Some(c) = &clock
        && !super::is_rfc3339(c)
    {
        return Err(bad("/clock", "must be an RFC 3339 date-time with offset"));
    }
    let verify = match rec.entry("verify").or_insert_with(|| json!("module")).as_str() {
        Some("module") => VerifyMode::Module,
        Some("gold_state") => VerifyMode::GoldState,
        _ => return Err(bad("/verify", "must be \"module\" or \"gold_state\"")),
    };
    rec.entry("hidden").or_insert_with(|| json!({}));
    if !rec.get("hidden").is_some_and(Value::is_object) {
        return Err(bad("/hidden", "must be an object"));
    }
    if let Some(t) = rec.get("tags")
        && !t.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(bad("/tags", "must be an array of strings"));
    }
    let Some(raw_turns) =
        rec.get_mut("turns").and_then(Value::as_array_mut).filter(|t| !t.is_empty())
    else {
        return Err(bad("/turns", "must be a non-empty array of turns"));
    };
    let mut turns = Vec::new();
    for (i, t) in raw_turns.iter_mut().enumerate() {
        let at = format!("/turns/{i}");
        let Some(t) = t.as_object_mut() else { return Err(bad(&at, "must be an object")) };
        for k in t
            .keys()
            .filter(|k| !["user", "reference", "answer", "answer_contains"].contains(&k.as_str()))
        {
            warnings.push(Problem::new(
                "lint.unknown_field",
                format!("{task_id}: {at}: unknown field {k:?} ignored"),
            ));
        }
        let user = match t.get("user") {
            Some(Value::String(u)) if !u.is_empty() => u.clone(),
            _ => return Err(bad(&format!("{at}/user"), "must be a non-empty string")),
        };
        let reference = steps(t.get("reference"), &format!("{at}/reference"), false)
            .map_err(|(f, w)| bad(&f, &w))?;
        let answer = match t.entry("answer").or_insert_with(|| json!("")) {
            Value::String(a) => a.clone(),
            _ => return Err(bad(&format!("{at}/answer"), "must be a string")),
        };
        let answer_contains = match t.get("answer_contains") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()
            }
            Some(_) => {
                return Err(bad(&format!("{at}/answer_contains"), "must be an array of strings"));
            }
        };
        if !answer_contains.is_empty() && verify != VerifyMode::GoldState {
            return Err(bad(
                &format!("{at}/answer_contains"),
                "only allowed with \"verify\": \"gold_state\"",
            ));
        }
        turns.push(Turn { user, reference, answer, answer_contains });
    }
    let raw_probes = rec.entry("probes").or_insert_with(|| json!([])).clone();
    let Some(raw_probes) = raw_probes.as_array() else {
        return Err(bad("/probes", "must be an array"));
    };
    let mut probes: Vec<Probe> = Vec::new();
    for (i, p) in raw_probes.iter().enumerate() {
        let at = format!("/probes/{i}");
        let name = match p.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(bad(&format!("{at}/name"), "must be a non-empty string")),
        };
        if probes.iter().any(|q| q.name == name) {
            return Err(bad(&format!("{at}/name"), "duplicate probe name"));
        }
        let Some(pt) = p.get("turns").and_then(Value::as_array).filter(|a| a.len() == turns.len())
        else {
            return Err(bad(&format!("{at}/turns"), "must have one entry per task turn"));
        };
        let mut pturns = Vec::new();
        for (j, t) in pt.iter().enumerate() {
            let tat = format!("{at}/turns/{j}");
            let calls = steps(t.get("calls"), &format!("{tat}/calls"), true)
                .map_err(|(f, w)| bad(&f, &w))?;
            let answer = match t.get("answer") {
                None => String::new(),
                Some(Value::String(a)) => a.clone(),
                Some(_) => return Err(bad(&format!("{tat}/answer"), "must be a string")),
            };
            pturns.push((calls, answer));
        }
        probes.push(Probe { name, turns: pturns });
    }
    let record_json = Value::Object(rec).to_string();
    Ok(ValidTask {
        task_id,
        id,
        difficulty,
        seed,
        params,
        tools,
        system_prompt,
        clock,
        verify,
        turns,
        probes,
        record_json,
    })
}

/// Steps of calls; reference steps must be non-empty, probe steps may be empty.
fn steps(v: Option<&Value>, at: &str, probe: bool) -> Result<Vec<Vec<Call>>, (String, String)> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Err((at.to_owned(), "must be an array of steps".into()));
    };
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let Some(calls) = s.as_array().filter(|c| probe || !c.is_empty()) else {
            return Err((format!("{at}/{i}"), "a step must be a non-empty array of calls".into()));
        };
        let mut step = Vec::new();
        for (j, c) in calls.iter().enumerate() {
            let Some(name) = c.get("name").and_then(Value::as_str) else {
                return Err((format!("{at}/{i}/{j}/name"), "must be a string".into()));
            };
            let Some(arguments) = c.get("arguments") else {
                return Err((format!("{at}/{i}/{j}/arguments"), "missing".into()));
            };
            step.push(Call { name: name.to_owned(), arguments: arguments.clone() });
        }
        out.push(step);
    }
    Ok(out)
}

/// `<name>@<version>/<instance>/<index>` (spec §6.3).
pub fn task_id(name: &str, version: u32, instance: u64, index: u64) -> String {
    format!("{name}@{version}/{instance}/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_and_bad_records_named() {
        let v = json!({"id": "a", "difficulty": 2, "seed": 0,
            "turns": [{"user": "hi", "reference": []}], "zz": 1});
        let mut w = Vec::new();
        let t =
            parse_task("p@1/0/0".into(), &v, &["x"], None, None, &mut w).map_err(|p| p.to_string());
        let Ok(t) = t else { panic!("parse") };
        assert_eq!(t.verify, VerifyMode::Module);
        assert_eq!(t.turns[0].answer, "");
        let rec: Value = serde_json::from_str(&t.record_json).unwrap_or_default();
        assert_eq!(rec["hidden"], json!({}));
        assert_eq!(rec["probes"], json!([]));
        assert_eq!(w.len(), 1);
        let bad = json!({"id": "a", "difficulty": 9, "seed": 0, "turns": [{"user": "hi", "reference": []}]});
        let e =
            parse_task("p@1/0/1".into(), &bad, &[], None, None, &mut w).map(|_| ()).unwrap_err();
        assert_eq!(e.code, "task.schema");
        assert!(e.detail.contains("/difficulty"), "{}", e.detail);
    }
}
