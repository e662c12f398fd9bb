//! Family `sql`: analytics questions over a real SQLite database (`rusqlite`, bundled) built
//! per instance in memory from seeded data: a star schema (two dimension tables, a fact table,
//! optionally a normalised city table) in one of three domains, with instance-varying table and
//! column names, plus distractor tables. Questions need filters, joins, aggregates, top-k and
//! ratios; their answers are computed by SQL on the instance's database, and the verifier runs
//! its own query again and compares the submitted value tolerantly (number formatting, case,
//! whitespace).
//!
//! The agent's `run_query` is read-only by construction: `PRAGMA query_only`, an authorizer that
//! admits only SELECT/READ/deterministic functions, one statement per call, a VM-step budget via
//! the progress handler (deterministic; a wall-clock deadline only as a recorded backstop),
//! `SQLITE_LIMIT_LENGTH`, a process-wide SQLite heap limit, temporary storage in memory and a
//! row cap (codes in [`crate::limits`]). Answers: [`super::answer`].

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::SliceRandom;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, params_from_iter};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::families::answer;
use crate::families::common::{
    Base, Slots, TASKS, TaskParts, builtin_family, difficulty_slot, shuffled_candidates, turn,
};
use crate::framework::{Check, Instance, State, TaskSpec, ToolResult, Verdict};
use crate::limits::{self, codes as limit_codes};
use crate::util::{call, rng};

mod db;
mod questions;
mod schema;

use db::*;
use questions::*;
use schema::*;

const NAME: &str = "sql";
const VERSION: u32 = 2;
/// Progress-handler callbacks (every 1,000 VM steps) before a query is interrupted.
const STEP_BUDGET: u32 = 4_000;
/// Rows returned to the agent per query.
const ROW_CAP: usize = 50;

// ---------------------------------------------------------------------------------------------
// The family.

/// The SQL analytics family.
pub struct SqlFamily;

builtin_family!(SqlFamily, NAME, VERSION, SqlInstance::build);

/// One database plus its question generator.
pub struct SqlInstance {
    base: Base,
    schema: Schema,
    db: Mutex<Db>,
    /// Per difficulty (index d-1): the permuted question candidates.
    questions: [Vec<Q>; 5],
    /// The candidates with a non-degenerate answer: slot `j` of a difficulty takes its `j`-th.
    slots: Slots,
    system_prompt: String,
}

impl Instance for SqlInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        Error::check_task_seed(NAME, task_seed, TASKS)?;
        let (d, j) = difficulty_slot(task_seed);
        let list = &self.questions[d as usize - 1];
        // The j-th non-degenerate candidate: distinct task seeds, distinct questions.
        let k = self.slots.pick(d, j, list.len(), |k| {
            matches!(self.expected(&render(&self.schema, &list[k])), Ok(Some(_)))
        });
        let mut found = None;
        if let Some(k) = k {
            let q = render(&self.schema, &list[k]);
            if let Some(exp) = self.expected(&q)? {
                found = Some((list[k].clone(), q, exp));
            }
        }
        let Some((q, rq, expected)) = found else {
            return Err(self
                .base
                .gen_error(format!("task {task_seed}: every candidate question is degenerate")));
        };
        let mut turns = Vec::new();
        turns.push(turn(
            "I should start by looking at which tables the database has.",
            vec![call("list_tables", json!({}))],
        ));
        let describes: Vec<ToolCall> =
            rq.tables.iter().map(|t| call("describe_table", json!({ "table": t }))).collect();
        turns.push(turn(
            format!(
                "The question involves {}. I'll describe {} to learn the columns and how they join.",
                rq.tables.join(", "),
                if rq.tables.len() > 1 { "these tables in parallel" } else { "that table" }
            ),
            describes,
        ));
        if q.difficulty() >= 3 && !rq.lookups.is_empty() {
            let calls: Vec<ToolCall> =
                rq.lookups.iter().map(|l| call("run_query", json!({ "sql": l }))).collect();
            turns.push(turn(
                "Before filtering, I'll check the exact values stored in the filter columns so the WHERE clause matches.",
                calls,
            ));
        }
        turns.push(turn(
            "Now I can compute the answer with a single query joining and aggregating as needed.",
            vec![call("run_query", json!({ "sql": rq.sql }))],
        ));
        let shown = answer::display(&expected);
        turns.push(turn(
            format!("The query returned {shown}. I'll submit it."),
            vec![call("submit_answer", json!({ "answer": shown }))],
        ));
        let spec = self.base.finish(
            task_seed,
            TaskParts {
                difficulty: q.difficulty(),
                system_prompt: self.system_prompt.clone(),
                user_prompt: rq.prompt.clone(),
                initial_state: answer::initial_state(),
                turns,
                final_answer: format!("The answer is {shown}."),
                hidden: json!({ "question": format!("{q:?}"), "sql": rq.sql, "answer": expected }),
            },
        );
        Ok(spec)
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match name {
            "list_tables" => {
                let db = self.lock();
                let tables: Vec<Value> =
                    db.tables.iter().map(|(t, n)| json!({ "name": t, "rows": n })).collect();
                ToolResult::read(&json!({ "tables": tables }))
            }
            "describe_table" => self.describe(&text("table")),
            "run_query" => {
                let sql = text("sql");
                match self.query(&sql, ROW_CAP) {
                    Ok((cols, rows, truncated)) => ToolResult::read(&json!({
                        "columns": cols,
                        "rows": rows,
                        "row_count": rows.len(),
                        "truncated": truncated,
                    })),
                    Err(f) => f.observation(),
                }
            }
            "sample_rows" => {
                let table = text("table");
                let limit = args.get("limit").and_then(Value::as_i64).unwrap_or(5).clamp(1, 20);
                if !self.lock().tables.iter().any(|(t, _)| *t == table) {
                    return ToolResult::error(format!("no such table: {table}"));
                }
                match self
                    .query(&format!("SELECT * FROM \"{table}\" ORDER BY id LIMIT {limit}"), ROW_CAP)
                {
                    Ok((cols, rows, _)) => {
                        ToolResult::read(&json!({ "table": table, "columns": cols, "rows": rows }))
                    }
                    Err(f) => f.observation(),
                }
            }
            "submit_answer" => answer::submit(state, &args),
            other => ToolResult::error(format!("unknown tool {other:?}")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        // Recompute the expected value with the verifier's own query on this database.
        let sql = task.hidden.get("sql").and_then(Value::as_str).unwrap_or_default();
        let stored = task.hidden.get("answer").cloned().unwrap_or(Value::Null);
        let shape = match stored.get("kind").and_then(Value::as_str) {
            Some("int") => Shape::Int,
            Some("number") => Shape::Dec2,
            Some("percent") => Shape::Pct2,
            Some("list") => Shape::List,
            _ => Shape::Text,
        };
        let rq = Rendered {
            prompt: String::new(),
            sql: sql.to_owned(),
            shape,
            tables: vec![],
            lookups: vec![],
        };
        let mut checks = Vec::new();
        let expected = match self.expected(&rq) {
            Ok(Some(v)) => {
                checks.push(Check::new(
                    "recomputed",
                    v == stored,
                    "verifier query re-run on the instance database",
                ));
                v
            }
            Ok(None) | Err(_) => {
                checks.push(Check::new("recomputed", false, "verifier query gave no answer"));
                stored
            }
        };
        checks.extend(answer::checks(state, &expected));
        Verdict::from_checks(checks)
    }
}
