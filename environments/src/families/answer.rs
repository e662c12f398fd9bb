//! The one answer type of the families: what kind of final answer a task expects
//! ([`AnswerKind`], [`Expected`]) and how a submitted answer is compared with it (tolerant to
//! formatting, nothing else), plus the two places a submission lives in the state: the
//! answer-style families' `submitted` object (sql, search, code: [`submit`], [`checks`]) and a
//! plain state key (banking, vfs: [`answer_check`]).
//!
//! The expected answer lives in `hidden.answer` as `{"kind", "value"[, "decimals"]}`; the
//! constructors below ([`int`], [`number`], ...) build that JSON.

use serde_json::{Map, Value, json};

use crate::framework::{Check, State, TaskSpec, ToolResult};
use crate::util::{norm_text, parse_money, py_json};

/// What kind of answer a task expects, and so how it is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// A whole number: `"1,234"`, `1234`, `" 1234 "` are equal; `"1234.5"` is not.
    Integer,
    /// A money amount to the cent: `"$1,234.50"`, `1234.5`, `"1234.50"` are equal.
    Money,
    /// A number, within half a unit of the last requested decimal; no `%` sign.
    Number {
        /// Decimal places asked for (the tolerance is half a unit of the last one).
        decimals: u32,
    },
    /// A percentage like [`AnswerKind::Number`], a `%` sign allowed.
    Percent {
        /// Decimal places asked for (the tolerance is half a unit of the last one).
        decimals: u32,
    },
    /// Text: case, surrounding and repeated whitespace, a trailing period and quotes ignored.
    Text,
    /// Texts compared as a set (order ignored, each item as [`AnswerKind::Text`]).
    TextSet,
    /// Texts compared in order (comma/semicolon/newline separated, each item as `Text`).
    List,
}

impl AnswerKind {
    /// The `kind` name in `hidden.answer`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Integer => "int",
            AnswerKind::Money => "money",
            AnswerKind::Number { .. } => "number",
            AnswerKind::Percent { .. } => "percent",
            AnswerKind::Text => "text",
            AnswerKind::TextSet => "text_set",
            AnswerKind::List => "list",
        }
    }
}

/// An expected answer: its kind and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// How a submission is compared with `value`.
    pub kind: AnswerKind,
    /// The expected answer (a number, a string, or a list of strings for the list kinds).
    pub value: Value,
}

impl Expected {
    /// The `hidden.answer` JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "kind": self.kind.as_str(), "value": self.value });
        if let AnswerKind::Number { decimals } | AnswerKind::Percent { decimals } = self.kind {
            v["decimals"] = json!(decimals);
        }
        v
    }

    /// Read `hidden.answer` JSON (`None`: not an answer of a known kind).
    pub fn from_json(v: &Value) -> Option<Self> {
        let decimals = v.get("decimals").and_then(Value::as_u64).unwrap_or(2) as u32;
        let kind = match v.get("kind")?.as_str()? {
            "int" | "integer" => AnswerKind::Integer,
            "money" => AnswerKind::Money,
            "number" => AnswerKind::Number { decimals },
            "percent" => AnswerKind::Percent { decimals },
            "text" => AnswerKind::Text,
            "text_set" => AnswerKind::TextSet,
            "list" => AnswerKind::List,
            _ => return None,
        };
        Some(Expected { kind, value: v.get("value").cloned().unwrap_or(Value::Null) })
    }

    /// The canonical text of the answer (what a reference submits).
    pub fn display(&self) -> String {
        let v = &self.value;
        match self.kind {
            AnswerKind::Integer => v.as_i64().map(|i| i.to_string()).unwrap_or_default(),
            AnswerKind::Number { decimals } | AnswerKind::Percent { decimals } => {
                format!("{:.*}", decimals as usize, v.as_f64().unwrap_or(f64::NAN))
            }
            AnswerKind::TextSet | AnswerKind::List => items_of(v).join(", "),
            AnswerKind::Money | AnswerKind::Text => match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            },
        }
    }

    /// Whether the submitted `got` (text, or a JSON number or list) is a harmless variant.
    pub fn matches(&self, got: &Value) -> bool {
        let got = match got {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) => items_of(got).join(", "),
            _ => return false,
        };
        let want = &self.value;
        match self.kind {
            AnswerKind::Integer => {
                let w = want.as_i64().or_else(|| want.as_str().and_then(|s| s.parse().ok()));
                match (parse_number(&got), w) {
                    (Some(g), Some(w)) => g.fract() == 0.0 && g == w as f64,
                    _ => false,
                }
            }
            AnswerKind::Money => {
                let g = parse_money(&Value::String(got));
                matches!((g, parse_money(want)), (Some(a), Some(b)) if a == b)
            }
            AnswerKind::Number { decimals } | AnswerKind::Percent { decimals } => {
                if matches!(self.kind, AnswerKind::Number { .. }) && got.contains('%') {
                    return false;
                }
                let tol = 0.5 * 10f64.powi(-(decimals as i32)) * 1.001 + 1e-9;
                match (parse_number(&got), want.as_f64()) {
                    (Some(g), Some(w)) => (g - w).abs() <= tol,
                    _ => false,
                }
            }
            AnswerKind::Text => want.as_str().is_some_and(|w| norm_item(&got) == norm_item(w)),
            AnswerKind::List | AnswerKind::TextSet => {
                let mut want: Vec<String> = items_of(want).iter().map(|s| norm_item(s)).collect();
                let mut got: Vec<String> =
                    got.split([',', ';', '\n']).map(norm_item).filter(|s| !s.is_empty()).collect();
                if self.kind == AnswerKind::TextSet {
                    for v in [&mut want, &mut got] {
                        v.sort();
                        v.dedup();
                    }
                }
                !want.is_empty() && got == want
            }
        }
    }
}

/// The items of a list answer: a JSON list of texts, or one comma-separated text.
fn items_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Value::String(s) => {
            s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

/// Parse a number written by a person or model: `"1,234.50"`, `"$12"`, `"12.5%"`, `" 7 "`.
pub fn parse_number(s: &str) -> Option<f64> {
    let t: String = s
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| !matches!(c, ',' | '$' | '%' | ' ' | '_' | '\u{a0}'))
        .collect();
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn norm_item(s: &str) -> String {
    let t = s.trim().trim_end_matches('.').trim_matches(|c| c == '"' || c == '\'' || c == '`');
    norm_text(t)
}

/// `hidden.answer` JSON of each kind: here an integer answer.
pub fn int(v: i64) -> Value {
    Expected { kind: AnswerKind::Integer, value: json!(v) }.to_json()
}
/// `hidden.answer` of a money answer of `cents` cents (its value is the `"1234.50"` text).
pub fn money(cents: i64) -> Value {
    Expected { kind: AnswerKind::Money, value: json!(crate::util::money(cents)) }.to_json()
}
/// `hidden.answer` of a number answer given to `decimals` places.
pub fn number(v: f64, decimals: u32) -> Value {
    Expected { kind: AnswerKind::Number { decimals }, value: json!(v) }.to_json()
}
/// `hidden.answer` of a percentage answer given to `decimals` places.
pub fn percent(v: f64, decimals: u32) -> Value {
    Expected { kind: AnswerKind::Percent { decimals }, value: json!(v) }.to_json()
}
/// `hidden.answer` of a text answer.
pub fn text(v: &str) -> Value {
    Expected { kind: AnswerKind::Text, value: json!(v) }.to_json()
}
/// `hidden.answer` of an ordered list of texts.
pub fn list(v: &[String]) -> Value {
    Expected { kind: AnswerKind::List, value: json!(v) }.to_json()
}

/// The canonical text of `hidden.answer` JSON (what a reference submits).
pub fn display(expected: &Value) -> String {
    Expected::from_json(expected).map(|e| e.display()).unwrap_or_default()
}

/// Whether `got` is a harmless variant of `hidden.answer` JSON `expected`.
pub fn matches(expected: &Value, got: &str) -> bool {
    Expected::from_json(expected).is_some_and(|e| e.matches(&Value::String(got.to_owned())))
}

/// The initial state of an answer-style task (sql, search, code).
pub fn initial_state() -> Value {
    json!({ "submitted": null })
}

/// `submit_answer(answer)` of an answer-style task: final, once.
pub fn submit(state: &mut State, args: &Map<String, Value>) -> ToolResult {
    let Some(text) = args.get("answer").and_then(Value::as_str) else {
        return ToolResult::error("missing required argument: answer");
    };
    if text.trim().is_empty() {
        return ToolResult::error("answer must not be empty");
    }
    let Some(obj) = state.0.as_object_mut() else {
        return ToolResult::error("internal: state is not an object");
    };
    if obj.get("submitted").is_some_and(|v| !v.is_null()) {
        return ToolResult::error("an answer was already submitted; submissions are final");
    }
    obj.insert("submitted".into(), json!({ "answer": text }));
    ToolResult::write(&json!({ "status": "submitted", "answer": text }))
}

/// The submitted answer text of an answer-style task, if any.
pub fn submitted(state: &State) -> Option<&str> {
    state.0.get("submitted")?.get("answer")?.as_str()
}

/// The verifier's checks for an answer-style task: something was submitted, and it matches
/// `expected` (`hidden.answer` JSON).
pub fn checks(state: &State, expected: &Value) -> Vec<Check> {
    let Some(got) = submitted(state) else {
        return vec![Check::new("answer_submitted", false, "no answer was submitted")];
    };
    let ok = matches(expected, got);
    let detail = if ok {
        format!("{got:?} matches")
    } else {
        format!("submitted {got:?}, expected {}", py_json(&json!(display(expected))))
    };
    vec![
        Check::new("answer_submitted", true, "submitted"),
        Check::new("answer_correct", ok, detail),
    ]
}

/// Check the answer stored in the state under `key` against `hidden.answer`. `None` when the
/// task has no answer.
pub fn answer_check(task: &TaskSpec, state: &State, key: &str) -> Option<Check> {
    let spec = task.hidden.get("answer")?;
    let Some(want) = Expected::from_json(spec) else {
        return Some(Check::new("answer", false, "task has an answer of unknown kind"));
    };
    let got = state.0.get(key).unwrap_or(&Value::Null);
    if got.is_null() {
        return Some(Check::new("answer", false, "no answer was submitted"));
    }
    let ok = want.matches(got);
    let detail = if ok {
        format!("{} matches", py_json(got))
    } else {
        format!(
            "submitted {}, expected {} ({})",
            py_json(got),
            py_json(&want.value),
            want.kind.as_str()
        )
    };
    Some(Check::new("answer", ok, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(expected: &Value, got: Value) -> bool {
        Expected::from_json(expected).is_some_and(|e| e.matches(&got))
    }

    #[test]
    fn tolerant_but_not_lax() {
        assert!(matches(&int(42), " 42 "));
        assert!(matches(&int(1234), "1,234"));
        assert!(!matches(&int(42), "43"));
        assert!(!matches(&int(42), "42.5"));
        assert!(m(&int(12), json!(12)));
        assert!(!m(&int(12), json!(12.5)));
        assert!(matches(&number(1234.567, 2), "1234.57"));
        assert!(matches(&number(1234.567, 2), "$1,234.567"));
        assert!(!matches(&number(1234.567, 2), "1234.58"));
        assert!(!matches(&number(12.0, 2), "12%"));
        assert!(matches(&percent(12.345, 2), "12.35%"));
        assert!(matches(&text("Velmora"), "velmora."));
        assert!(matches(&text("paris nord"), "  Paris  Nord "));
        assert!(!matches(&text("Velmora"), "Velmoran"));
        let l = list(&["A b".into(), "C".into()]);
        assert!(matches(&l, "a B, c"));
        assert!(!matches(&l, "C, A b"));
        assert!(matches(&money(120_050), "$1,200.50"));
        assert!(m(&money(120_050), json!(1200.5)));
        assert!(!matches(&money(120_050), "1200.51"));
        let set = json!({"kind": "text_set", "value": "a, b"});
        assert!(m(&set, json!(["b", "A"])));
        assert!(!m(&json!({"kind": "text_set", "value": ["a", "b"]}), json!(["a"])));
    }

    #[test]
    fn json_round_trips() {
        for v in [int(3), money(250), number(1.5, 3), percent(2.0, 1), text("x"), list(&[])] {
            assert_eq!(Expected::from_json(&v).map(|e| e.to_json()), Some(v));
        }
    }
}
