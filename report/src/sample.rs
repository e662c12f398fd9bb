//! The sampled rows, read after the statistics pass: full agentgen rows for our files,
//! conversations (plus whatever known fields exist) for foreign Parquet and JSONL.

use std::collections::BTreeMap;
use std::path::Path;

use agentgen_datasets::{ConversationReader, SCHEMA_VERSION, SampleRow, read_rows_at};
use serde_json::Value;

use crate::Result;
use crate::input::{Source, SourceKind};
use crate::scan::Picked;

/// The token view of a row: ids, loss mask and logprobs, one per token.
#[derive(Debug, Clone, Default)]
pub struct TokenView {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Loss mask (1 = trained).
    pub mask: Vec<u8>,
    /// Logprob per token, when the policy gave them.
    pub logprobs: Option<Vec<Option<f32>>>,
}

/// One row as the viewer shows it. Fields the source lacks are `None`.
#[derive(Debug, Clone, Default)]
pub struct Trajectory {
    /// File name it came from.
    pub file: String,
    /// Row within the file.
    pub row: usize,
    /// Sample key (the draw's order).
    pub key: u64,
    /// `sample_id`.
    pub sample_id: Option<String>,
    /// `task_id`.
    pub task_id: Option<String>,
    /// `group_id`.
    pub group_id: Option<String>,
    /// `family`.
    pub family: Option<String>,
    /// Rejection code (`None` on accepted rows and sources without verdicts).
    pub rejection_code: Option<String>,
    /// Rejection detail.
    pub rejection_detail: Option<String>,
    /// `reward`.
    pub reward: Option<f64>,
    /// `advantage`.
    pub advantage: Option<f64>,
    /// `passed`.
    pub passed: Option<bool>,
    /// Other scalar fields worth a line (difficulty, turns, finish reason, policy, ...).
    pub meta: BTreeMap<String, String>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// The conversation in the OpenAI wire shape (`role`, `content`, `reasoning_content`,
    /// `tool_calls: [{"type", "function": {"name", "arguments"}}]`).
    pub messages: Vec<Value>,
    /// The tool list.
    pub tools: Option<Value>,
    /// The verifier checks (parsed JSON when it parses, the raw text otherwise).
    pub checks: Option<Value>,
    /// The token view.
    pub tokens: Option<TokenView>,
}

impl Trajectory {
    /// Split name: `rejected` when it carries a rejection code, else `train`.
    pub fn split(&self) -> &'static str {
        if self.rejection_code.is_some() { "rejected" } else { "train" }
    }
}

fn parse_json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

fn from_row(r: SampleRow, file: &str, pos: usize, key: u64) -> Trajectory {
    let mut meta = BTreeMap::new();
    meta.insert("difficulty".into(), r.difficulty.to_string());
    meta.insert("turns".into(), r.turns.to_string());
    meta.insert("tool calls".into(), r.tool_calls.to_string());
    meta.insert("finish reason".into(), r.finish_reason.clone());
    meta.insert("thinking mode".into(), r.thinking_mode.clone());
    meta.insert("policy".into(), r.policy.clone());
    if let Some(m) = &r.model {
        meta.insert("model".into(), m.clone());
    }
    meta.insert("sample index".into(), r.sample_index.to_string());
    meta.insert("tokens".into(), r.token_ids.len().to_string());
    let trained = r.loss_mask.iter().filter(|m| **m != 0).count();
    meta.insert("trained tokens".into(), trained.to_string());
    let messages = serde_json::to_value(&r.messages)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let (code, detail) = match &r.verdict {
        agentgen_datasets::Verdict::Accepted => (None, None),
        agentgen_datasets::Verdict::Rejected { code, detail } => {
            (Some(code.clone()), Some(detail.clone()))
        }
    };
    Trajectory {
        file: file.to_owned(),
        row: pos,
        key,
        sample_id: Some(r.sample_id),
        task_id: Some(r.task_id),
        group_id: Some(r.group_id),
        family: Some(r.family),
        rejection_code: code,
        rejection_detail: detail,
        reward: Some(f64::from(r.reward)),
        advantage: r.advantage.map(f64::from),
        passed: Some(r.passed),
        meta,
        warnings: r.warnings,
        messages,
        tools: Some(parse_json_text(&r.tools)),
        checks: Some(parse_json_text(&r.checks)),
        tokens: Some(TokenView {
            ids: r.token_ids.clone(),
            mask: r.loss_mask.clone(),
            logprobs: r.logprobs,
        }),
    }
}

/// A row of foreign data: the conversation plus the known fields it has.
fn from_value(v: &Value, file: &str, pos: usize, key: u64) -> Trajectory {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut meta = BTreeMap::new();
    for k in
        ["difficulty", "turns", "tool_calls", "finish_reason", "thinking_mode", "policy", "model"]
    {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            let text = x.as_str().map_or_else(|| x.to_string(), str::to_owned);
            meta.insert(k.replace('_', " "), text);
        }
    }
    let json_field = |k: &str| {
        v.get(k).filter(|x| !x.is_null()).map(|x| match x.as_str() {
            Some(text) => parse_json_text(text),
            None => x.clone(),
        })
    };
    let tokens = v.get("token_ids").and_then(Value::as_array).map(|ids| TokenView {
        ids: ids.iter().map(|x| x.as_u64().unwrap_or(0) as u32).collect(),
        mask: v
            .get("loss_mask")
            .and_then(Value::as_array)
            .map(|m| m.iter().map(|x| u8::from(x.as_i64().unwrap_or(0) != 0)).collect())
            .unwrap_or_default(),
        logprobs: v
            .get("logprobs")
            .and_then(Value::as_array)
            .map(|l| l.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()),
    });
    Trajectory {
        file: file.to_owned(),
        row: pos,
        key,
        sample_id: s("sample_id"),
        task_id: s("task_id"),
        group_id: s("group_id"),
        family: s("family"),
        rejection_code: s("rejection_code"),
        rejection_detail: s("rejection_detail"),
        reward: v.get("reward").and_then(Value::as_f64),
        advantage: v.get("advantage").and_then(Value::as_f64),
        passed: v.get("passed").and_then(Value::as_bool),
        meta,
        warnings: v
            .get("warnings")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        messages: v.get("messages").and_then(Value::as_array).cloned().unwrap_or_default(),
        tools: json_field("tools"),
        checks: json_field("checks"),
        tokens,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Read the picked rows. Ordered by split, family, then the draw.
pub(crate) fn load(
    sources: &[Source],
    versions: &[Option<String>],
    picked: Vec<Picked>,
) -> Result<Vec<Trajectory>> {
    let mut by_source: BTreeMap<usize, Vec<Picked>> = BTreeMap::new();
    for p in picked {
        by_source.entry(p.source).or_default().push(p);
    }
    let mut out = Vec::new();
    for (i, mut ps) in by_source {
        let src = &sources[i];
        let name = file_name(&src.path);
        ps.sort_by_key(|p| p.row);
        let ours =
            versions.get(i).and_then(|v| v.as_deref()) == Some(SCHEMA_VERSION.to_string().as_str());
        match src.kind {
            SourceKind::Jsonl => {
                for p in &ps {
                    if let Some(v) = &p.line {
                        out.push(from_value(v, &name, p.row, p.key));
                    }
                }
            }
            SourceKind::Parquet if ours => {
                let positions: Vec<usize> = ps.iter().map(|p| p.row).collect();
                let rows = read_rows_at(&src.path, &positions)?;
                for (p, r) in ps.iter().zip(rows) {
                    out.push(from_row(r, &name, p.row, p.key));
                }
            }
            SourceKind::Parquet => {
                // Foreign Parquet: the conversation (messages, tools) of each picked row.
                let mut want = ps.iter().peekable();
                for (row, item) in ConversationReader::try_new(&src.path)? {
                    let Some(p) = want.peek() else { break };
                    if row < p.row {
                        continue;
                    }
                    let p = want.next().map(|p| (p.row, p.key));
                    if let Some((prow, key)) = p
                        && prow == row
                    {
                        let v = item.unwrap_or_else(
                            |e| serde_json::json!({"messages": [], "unreadable": e.to_string()}),
                        );
                        let mut t = from_value(&v, &name, row, key);
                        if let Some(reason) = v.get("unreadable").and_then(Value::as_str) {
                            t.meta.insert("unreadable".into(), reason.to_owned());
                        }
                        out.push(t);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (a.split(), &a.family, a.key).cmp(&(b.split(), &b.family, b.key)));
    Ok(out)
}
