//! One episode of a package task against a worker (spec §7): the worker-side `Env`, the
//! pre-execution call checks of §7.2 (call limit, offered tool, object arguments, schema), the
//! observation cap, episode time accounting (§13.9) and verification after each turn (§8).

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::load::ValidPackage;
use super::task::{ValidTask, VerifyMode};
use super::worker::{Failure, Worker};
use crate::framework::{Check, Verdict};

/// What one call produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The tool message content (capped at `observation_max_bytes`).
    pub content: String,
    /// An error observation (rejected, `ToolError` or another exception).
    pub is_error: bool,
    /// `state()` after the call, when asked for (not for rejected calls).
    pub state: Option<Value>,
}

/// A running episode; [`Episode::end`] (or dropping the worker) finishes it. Generic over how
/// it holds the package, the task and the worker: borrowed during admission, owned (`Arc`s and
/// a pooled worker) by a pipeline session.
pub struct Episode<P, T, W> {
    pkg: P,
    task: T,
    worker: W,
    calls_in_turn: u64,
    index: u64,
    rejected: Vec<Value>,
    spent: Duration,
}

impl<P, T, W> Episode<P, T, W>
where
    P: Deref<Target = ValidPackage>,
    T: Deref<Target = ValidTask>,
    W: DerefMut<Target = Worker>,
{
    /// Set the episode context in the worker and build `Env(seed, params)`.
    pub fn begin(pkg: P, task: T, worker: W) -> Result<Episode<P, T, W>, Failure> {
        let clock = task.clock.clone().or_else(|| pkg.manifest.clock.clone());
        let begin =
            json!({"op": "begin", "seed": task.seed, "params": task.params, "clock": clock});
        let mut ep = Episode {
            pkg,
            task,
            worker,
            calls_in_turn: 0,
            index: 0,
            rejected: Vec::new(),
            spent: Duration::ZERO,
        };
        ep.timed(&begin)?;
        Ok(ep)
    }

    /// Time left for the next package call: the call limit, or what remains of the episode's.
    fn budget(&self) -> Result<Duration, Failure> {
        let l = &self.pkg.manifest.limits;
        let episode = Duration::from_millis(l.episode_timeout_ms);
        if self.spent >= episode {
            return Err(Failure::new(
                "env.timeout",
                format!("package code used the episode's {} ms", l.episode_timeout_ms),
            ));
        }
        Ok(Duration::from_millis(l.call_timeout_ms).min(episode - self.spent))
    }

    /// A request whose package time counts toward the episode limit.
    fn timed(&mut self, req: &Value) -> Result<Value, Failure> {
        let budget = self.budget()?;
        let t0 = Instant::now();
        let r = self.worker.request(req, budget);
        self.spent += t0.elapsed();
        r.map_err(|mut f| {
            if f.code == "env.timeout" {
                // Limits only: the time actually used varies between runs, and a row's
                // rejection detail must not (resume and concurrency give identical rows).
                f.detail = format!(
                    "{} ({} ms call limit, {} ms episode limit)",
                    f.detail,
                    self.pkg.manifest.limits.call_timeout_ms,
                    self.pkg.manifest.limits.episode_timeout_ms
                );
            }
            f
        })
    }

    fn offered(&self, name: &str) -> bool {
        match &self.task.tools {
            Some(list) => list.iter().any(|t| t == name),
            None => self.pkg.tool(name).is_some(),
        }
    }

    /// The offered tools in tools.json order, as OpenAI function objects.
    pub fn offered_tools(pkg: &ValidPackage, task: &ValidTask) -> Vec<Value> {
        pkg.tools
            .iter()
            .filter(|t| task.tools.as_ref().is_none_or(|l| l.contains(&t.name)))
            .map(|t| t.openai.clone())
            .collect()
    }

    /// Play one call of assistant step `step` in the current turn (§7.2). `snap` asks for
    /// `state()` after it (to detect state-changing calls).
    pub fn call(
        &mut self,
        step: usize,
        name: &str,
        args: &Value,
        snap: bool,
    ) -> Result<Observation, Failure> {
        self.calls_in_turn += 1;
        let index = self.index;
        self.index += 1;
        let limit = self.pkg.manifest.limits.max_calls_per_turn;
        let reject = if self.calls_in_turn > limit {
            Some("tool call limit for this turn reached".to_owned())
        } else if !self.offered(name) {
            Some(format!("unknown tool: {name}"))
        } else if !args.is_object() {
            Some("arguments must be a JSON object".to_owned())
        } else {
            self.pkg.tool(name).and_then(|t| t.schema.validate(name, args).err())
        };
        if let Some(msg) = reject {
            self.rejected.push(json!({"index": index, "rec": {
                "step": step, "name": name, "arguments": args, "result": null, "error": msg}}));
            return Ok(Observation {
                content: crate::util::py_json(&json!({ "error": msg })),
                is_error: true,
                state: None,
            });
        }
        let r = self.timed(&json!({"op": "call", "name": name, "args": args, "step": step,
                                   "index": index, "snap": snap}))?;
        let content = r["obs"].as_str().unwrap_or_default();
        Ok(Observation {
            content: cap(content, self.pkg.manifest.limits.observation_max_bytes as usize),
            is_error: r["error"].as_bool().unwrap_or(false),
            state: r.get("state").cloned(),
        })
    }

    /// `state()` now (a runtime snapshot: not counted as episode time).
    pub fn state(&mut self) -> Result<Value, Failure> {
        let t = Duration::from_millis(self.pkg.manifest.limits.call_timeout_ms);
        let r = self.worker.request(&json!({"op": "state"}), t)?;
        Ok(r.get("state").cloned().unwrap_or(Value::Null))
    }

    /// Verify turn `turn` whose answer is `answer` (§8); `gold` is that turn's gold state for
    /// `gold_state` tasks. Starts the next turn's call count.
    pub fn verify(
        &mut self,
        turn: usize,
        answer: &str,
        gold: Option<&Value>,
    ) -> Result<Verdict, Failure> {
        self.calls_in_turn = 0;
        let rejected = std::mem::take(&mut self.rejected);
        let r = match self.task.verify {
            VerifyMode::Module => self
                .timed(&json!({"op": "verify", "task": self.task.record_json,
                "turn": turn, "answer": answer, "rejected": rejected}))?,
            VerifyMode::GoldState => {
                let contains = self.task.turns.get(turn).map(|t| t.answer_contains.clone());
                let t = Duration::from_millis(self.pkg.manifest.limits.call_timeout_ms);
                self.worker.request(&json!({"op": "verify", "mode": "gold_state",
                    "gold": gold.cloned().unwrap_or(Value::Null), "contains": contains.unwrap_or_default(),
                    "turn": turn, "answer": answer, "rejected": rejected}), t)?
            }
        };
        let v = &r["verdict"];
        let checks = v["checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        Check::new(
                            c["name"].as_str().unwrap_or_default(),
                            c["passed"].as_bool().unwrap_or(false),
                            c["detail"].as_str().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Verdict {
            passed: v["passed"].as_bool().unwrap_or(false),
            reward: v["reward"].as_f64().unwrap_or(0.0) as f32,
            checks,
        })
    }

    /// Finish the episode: the worker drops `Env` and removes the scratch directory.
    pub fn end(self) -> Result<(), Failure> {
        self.finish().1
    }

    /// Finish the episode and hand the worker back (to return it to its pool).
    pub fn finish(mut self) -> (W, Result<(), Failure>) {
        let t = Duration::from_millis(self.pkg.manifest.limits.call_timeout_ms);
        let r = self.worker.request(&json!({"op": "end"}), t).map(|_| ());
        (self.worker, r)
    }
}

/// Cut `s` to at most `max` bytes at a UTF-8 boundary, ending with `…[truncated N bytes]`.
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &s[..end], s.len() - end)
}

/// Equality of two JSON values as JSON values (spec §8.2): numbers by value, booleans are not
/// numbers, objects unordered, arrays ordered.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => i == j,
                (_, _, Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_at_a_char_boundary() {
        assert_eq!(cap("abc", 3), "abc");
        assert_eq!(cap("aé", 2), "a…[truncated 2 bytes]");
        assert_eq!(cap("abcd", 2), "ab…[truncated 2 bytes]");
    }

    #[test]
    fn json_values_compare_by_value() {
        assert!(json_eq(&json!({"a": 1, "b": [1.0]}), &json!({"b": [1], "a": 1.0})));
        assert!(!json_eq(&json!(true), &json!(1)));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
    }
}
