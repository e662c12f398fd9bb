//! Family `code`: a code interpreter. Each instance has a seeded CSV dataset (one of three
//! domains, instance-varying column names and sizes); tasks are data-analysis questions
//! (counts, sums, means, medians, standard deviations, arg-max, shares, correlations) answered
//! by running Python through `run_python` and submitting the value with `submit_answer`. The
//! expected value is computed in Rust from the same rows and compared tolerantly.
//!
//! Python runs in [`crate::sandbox`] (namespaces, read-only root, a private scratch tmpfs with
//! a fresh copy of the data, time/memory/process limits, cleared environment). Outputs are memoised per instance by code, so
//! replaying a reference (soundness probes) does not start the interpreter again. When python3
//! is missing, or a required sandbox layer is (unless weak sandboxes are allowed), the family
//! is `Unavailable` with the reason.

use std::collections::HashMap;
use std::sync::Mutex;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::answer;
use crate::error::{Error, Result};
use crate::families::common::{
    Base, Slots, TASKS, TaskParts, builtin_family, difficulty_slot, shuffled_candidates, turn,
};
use crate::framework::{Availability, Instance, State, TaskSpec, ToolResult, Verdict};
use crate::sandbox::Sandbox;
use crate::util::{call, name_hash, rng};

mod data;
mod questions;

use data::*;
use questions::*;

const NAME: &str = "code";
const VERSION: u32 = 2;
const MEMO_CAP: usize = 4096;

// ---------------------------------------------------------------------------------------------

/// The code-interpreter family.
pub struct CodeFamily;

builtin_family! {
    CodeFamily, NAME, VERSION,
    |seed| -> Result<CodeInstance> {
        let sandbox = Sandbox::shared()
            .map_err(|reason| Error::Unavailable { family: NAME.into(), reason })?;
        CodeInstance::build(seed, sandbox)
    };
    fn availability(&self) -> Availability {
        match Sandbox::shared() {
            Err(reason) => Availability::Unavailable { reason },
            Ok(sb) => match sb.layers().refusal() {
                Some(why) if !crate::sandbox::allow_weak() => Availability::Unavailable {
                    reason: format!("{why}; pass --allow-weak-sandbox to run it anyway"),
                },
                _ => Availability::Available,
            },
        }
    }
    fn spawns_process(&self) -> bool {
        true
    }
}

/// One dataset, its questions and the memoised interpreter.
pub struct CodeInstance {
    base: Base,
    data: Data,
    sandbox: &'static Sandbox,
    questions: [Vec<Q>; 5],
    /// The candidates with a well-defined answer: slot `j` of a difficulty takes its `j`-th.
    slots: Slots,
    system_prompt: String,
    memo: Mutex<HashMap<String, ToolResult>>,
}

impl CodeInstance {
    fn build(seed: u64, sandbox: &'static Sandbox) -> Result<Self> {
        let mut r = rng(&[name_hash(NAME), seed]);
        let data = generate(&mut r);
        let lists = std::array::from_fn(|i| candidates(&data, i as u8 + 1));
        let questions = shuffled_candidates(NAME, seed, "questions", lists, &mut r)?;
        let mut allowed = vec!["run_python"];
        if r.random_bool(0.5) {
            allowed.push("list_files");
        }
        allowed.push("submit_answer");
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let system_prompt = format!(
            "You are a data analyst with a Python 3 interpreter (standard library only: csv, statistics, math, json, collections; no third-party packages, no network). \
             Each run_python call starts a fresh process in a private working directory that contains {file}; print what you need to see. Runs are limited to {secs} seconds and {mb} MB of memory. \
             Compute answers with code rather than by hand. When you have the answer, call submit_answer exactly once with the value only; submissions are final.",
            file = data.file,
            secs = sandbox.config().timeout.as_secs(),
            mb = sandbox.config().memory_bytes >> 20
        );
        Ok(CodeInstance {
            base,
            data,
            sandbox,
            questions,
            slots: Slots::default(),
            system_prompt,
            memo: Mutex::new(HashMap::new()),
        })
    }

    fn files(&self) -> Vec<(String, Vec<u8>)> {
        vec![(self.data.file.to_owned(), self.data.csv.as_bytes().to_vec())]
    }

    /// Execute (or recall) one run.
    pub fn run_python(&self, code: &str) -> ToolResult {
        if let Some(hit) =
            self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(code)
        {
            return hit.clone();
        }
        let result = match self.sandbox.run(code, &self.files()) {
            Ok(out) => {
                let mut v = json!({ "stdout": out.stdout, "stderr": out.stderr, "exit_code": out.exit_code });
                if out.timed_out {
                    v["timed_out"] = json!(true);
                }
                if out.truncated {
                    v["truncated"] = json!(true);
                }
                let mut r = ToolResult::read(&v);
                r.is_error = !out.success();
                r
            }
            Err(e) => return ToolResult::error(format!("sandbox failure: {e}")),
        };
        let mut memo = self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if memo.len() >= MEMO_CAP {
            memo.clear();
        }
        memo.insert(code.to_owned(), result.clone());
        result
    }
}

impl Instance for CodeInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        Error::check_task_seed(NAME, task_seed, TASKS)?;
        let (d, j) = difficulty_slot(task_seed);
        let list = &self.questions[d as usize - 1];
        let k =
            self.slots.pick(d, j, list.len(), |k| render(&self.data, &list[k]).expected.is_some());
        let found = k.and_then(|k| {
            let rq = render(&self.data, &list[k]);
            rq.expected.clone().map(|e| (list[k].clone(), rq, e))
        });
        let Some((q, rq, expected)) = found else {
            return Err(self
                .base
                .gen_error(format!("task {task_seed}: every candidate is degenerate")));
        };
        let data = &self.data;
        let mut turns = Vec::new();
        let difficulty = q.difficulty();
        if difficulty >= 3 {
            let peek = format!(
                "import csv\nwith open({:?}, newline=\"\") as f:\n    rows = list(csv.DictReader(f))\nprint(len(rows), \"rows; columns:\", list(rows[0].keys()))\nprint(rows[0])\nprint(sorted({{r[{:?}] for r in rows}}))\n",
                data.file, data.group
            );
            turns.push(turn(
                format!("First I'll look at {}: its size, columns, a sample row and the distinct {} values.", data.file, data.group),
                vec![call("run_python", json!({ "code": peek }))],
            ));
        }
        turns.push(turn(
            "Now I'll compute the answer directly with the csv and statistics modules.",
            vec![call("run_python", json!({ "code": rq.code }))],
        ));
        let shown = answer::display(&expected);
        turns.push(turn(
            format!("The script printed the result; the answer is {shown}. Submitting it."),
            vec![call("submit_answer", json!({ "answer": shown }))],
        ));
        let intro = if difficulty <= 2 {
            format!(
                "Your working directory has {} ({} rows) with columns month, {}, {}, {}, {}.",
                data.file,
                data.rows.len(),
                data.group,
                data.cat,
                data.x,
                data.y
            )
        } else {
            format!("Your working directory has {}.", data.file)
        };
        Ok(self.base.finish(
            task_seed,
            TaskParts {
                difficulty,
                system_prompt: self.system_prompt.clone(),
                user_prompt: format!("{intro} {}", rq.prompt),
                initial_state: answer::initial_state(),
                turns,
                final_answer: format!("The answer is {shown}."),
                hidden: json!({ "question": format!("{q:?}"), "answer": expected, "solution_code": rq.code }),
            },
        ))
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        match name {
            "run_python" => {
                let code = args.get("code").and_then(Value::as_str).unwrap_or_default();
                if code.trim().is_empty() {
                    return ToolResult::error("code must not be empty");
                }
                self.run_python(code)
            }
            "list_files" => ToolResult::read(&json!({
                "files": [{ "name": self.data.file, "bytes": self.data.csv.len(), "lines": self.data.rows.len() + 1 }]
            })),
            "submit_answer" => answer::submit(state, &args),
            other => ToolResult::error(format!("unknown tool {other:?}")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let expected = task.hidden.get("answer").cloned().unwrap_or(Value::Null);
        Verdict::from_checks(answer::checks(state, &expected))
    }
}
