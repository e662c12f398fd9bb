//! One job (a task's K samples) run to its rows: each rollout becomes one dataset row per user
//! turn, a task that fails to build or a rollout that errors becomes a rejected row.

use std::sync::Arc;

use agentgen_datasets::{SampleRow, Verdict, policy_token_source};
use agentgen_environments::{TaskRef, TaskSpec};

use super::Shared;
use super::plan::Job;
use crate::Error;
use crate::ids;
use crate::policy::{Policy, SamplingParams};
use crate::rollout::{RolloutOutput, rollout};
use crate::validate::{Rejection, codes};

pub(super) struct Pending {
    pub(super) row: SampleRow,
    pub(super) write: bool,
    /// Cut off by a spent run limit (`Error::Stopped`): neither written nor counted, so
    /// `--resume` redoes it.
    pub(super) stopped: bool,
    pub(super) tokens: u64,
    pub(super) completion_tokens: u64,
}

pub(super) struct JobResult {
    pub(super) ordinal: u64,
    pub(super) rows: Vec<Pending>,
    pub(super) pass_rate: f32,
    pub(super) any_passed: bool,
}

pub(super) fn reject(r: &Rejection) -> Verdict {
    Verdict::Rejected { code: r.code().to_owned(), detail: r.detail.clone() }
}

pub(super) async fn run_job<P: Policy>(shared: &Shared<P>, job: Job) -> JobResult {
    let cfg = &shared.cfg;
    let task_id = job.task_ref.to_string();
    let group_id = ids::group_id(cfg.seed, job.index, &task_id);
    let k = cfg.samples_per_task;
    let built = {
        let family = shared.registry.get(&job.task_ref.family).is_some_and(|f| f.spawns_process());
        shared.registry.task(&shared.cache, &job.task_ref).map(|(i, t)| (i, Arc::new(t), family))
    };
    let mut rows = Vec::with_capacity(k as usize);
    let mut outcomes: Vec<(f32, bool)> = Vec::new();
    for s in 0..k {
        let sample_id = ids::sample_id(cfg.seed, job.index, &task_id, s);
        let seed = ids::sample_seed(cfg.seed, &sample_id);
        let base = RowBase {
            shared,
            task_id: &task_id,
            group_id: &group_id,
            sample_id: &sample_id,
            index: s,
        };
        let row = match &built {
            Err(e) => base
                .failed_task(&job.task_ref, &Rejection::new(codes::ENV_TASK_ERROR, e.to_string())),
            Ok((instance, task, spawns)) => {
                let params = SamplingParams { seed, ..cfg.sampling.clone() };
                match rollout(
                    &shared.policy,
                    &shared.ctx,
                    Arc::clone(instance),
                    Arc::clone(task),
                    *spawns,
                    &sample_id,
                    &params,
                )
                .await
                {
                    Ok(out) => {
                        outcomes.push((out.verdict.reward, out.verdict.passed));
                        for p in base.rollout_rows(task, out) {
                            let write = !job.done.contains(&p.row.sample_id);
                            rows.push(Pending { write, ..p });
                        }
                        continue;
                    }
                    Err(Error::Stopped { .. }) => {
                        let mut p = base.failed_task(
                            &job.task_ref,
                            &Rejection::new(codes::ENV_TASK_ERROR, "stopped"),
                        );
                        p.stopped = true;
                        p
                    }
                    Err(e) => base.failed_task(
                        &job.task_ref,
                        &Rejection::new(codes::ENV_TASK_ERROR, e.chain()),
                    ),
                }
            }
        };
        let write = !row.stopped && !job.done.contains(&row.row.sample_id);
        rows.push(Pending { write, ..row });
    }
    let n = outcomes.len().max(1) as f32;
    let mean = outcomes.iter().map(|o| o.0).sum::<f32>() / n;
    let pass_rate = outcomes.iter().filter(|o| o.1).count() as f32 / k as f32;
    if k > 1 {
        for p in &mut rows {
            p.row.advantage = Some(p.row.reward - mean);
        }
    }
    JobResult { ordinal: job.ordinal, rows, pass_rate, any_passed: outcomes.iter().any(|o| o.1) }
}

struct RowBase<'a, P> {
    shared: &'a Shared<P>,
    task_id: &'a str,
    group_id: &'a str,
    sample_id: &'a str,
    index: u32,
}

impl<P: Policy> RowBase<'_, P> {
    fn empty(&self, family: &str, instance_seed: u64, task_seed: u64) -> SampleRow {
        SampleRow {
            sample_id: self.sample_id.to_owned(),
            task_id: self.task_id.to_owned(),
            group_id: self.group_id.to_owned(),
            run_id: self.shared.run_id.clone(),
            family: family.to_owned(),
            instance_seed,
            task_seed,
            sample_index: self.index,
            difficulty: 0,
            thinking_mode: self.shared.cfg.thinking_mode.as_str().to_owned(),
            token_source: policy_token_source(self.shared.policy.name()).to_owned(),
            tools: "[]".into(),
            messages: Vec::new(),
            text: String::new(),
            token_ids: Vec::new(),
            loss_mask: Vec::new(),
            logprobs: None,
            reward: 0.0,
            advantage: None,
            passed: false,
            checks: "[]".into(),
            verdict: Verdict::Accepted,
            turns: 0,
            tool_calls: 0,
            finish_reason: String::new(),
            policy: self.shared.policy.name().to_owned(),
            model: self.shared.policy.model(),
            sampling: self.shared.sampling_json.clone(),
            warnings: Vec::new(),
            timings_ms: "{}".into(),
            episode_id: self.sample_id.to_owned(),
            turn_index: 0,
            turns_total: 1,
            env_package: None,
            env_package_sha256: None,
            env_python: None,
        }
    }

    fn failed_task(&self, r: &TaskRef, why: &Rejection) -> Pending {
        let mut row = self.empty(&r.family, r.instance_seed, r.task_seed);
        row.finish_reason = "env_error".into();
        row.verdict = reject(why);
        Pending { row, write: true, stopped: false, tokens: 0, completion_tokens: 0 }
    }

    /// The rows of one episode: one per user turn played. A single-turn task's row keeps the
    /// episode's id as its sample id; a multi-turn task's rows are `<episode>-t<turn>`.
    fn rollout_rows(&self, task: &TaskSpec, out: RolloutOutput) -> Vec<Pending> {
        let multi = task.user_turns() > 1;
        let total = out.rows.len() as i32;
        let tools = serde_json::to_string(&task.tools).unwrap_or_else(|_| "[]".into());
        let verdict = match &out.rejection {
            None => Verdict::Accepted,
            Some(r) => reject(r),
        };
        let package = self.shared.registry.get(&task.family).and_then(|f| f.package());
        let timings = serde_json::json!({
            "policy": round3(out.policy_ms), "env": round3(out.env_ms), "total": round3(out.total_ms),
        })
        .to_string();
        let last = out.rows.len().saturating_sub(1);
        let mut completion_tokens = out.completion_tokens as u64;
        let mut rows = Vec::with_capacity(out.rows.len());
        for (t, turn) in out.rows.into_iter().enumerate() {
            let mut row = self.empty(&task.family, task.instance_seed, task.task_seed);
            if multi {
                row.sample_id = turn_row_id(self.sample_id, t as u32);
            }
            row.episode_id = self.sample_id.to_owned();
            row.turn_index = t as i32;
            row.turns_total = total;
            if let Some(p) = &package {
                row.env_package = Some(p.label.clone());
                row.env_package_sha256 = Some(p.sha256.clone());
                row.env_python = Some(p.python.clone());
            }
            row.difficulty = task.difficulty;
            row.tools = tools.clone();
            // Stored messages carry tools in the `tools` column, not on the system message.
            let mut messages = out.messages[..turn.messages_len.min(out.messages.len())].to_vec();
            if let Some(first) = messages.first_mut() {
                first.tools = None;
            }
            row.messages = messages;
            row.text = turn.text;
            let tokens = turn.token_ids.len() as u64;
            row.token_ids = turn.token_ids;
            row.loss_mask = turn.loss_mask;
            row.logprobs = out.has_logprobs.then_some(turn.logprobs);
            // The episode's reward and verdict; the turn's checks.
            row.reward = out.verdict.reward;
            row.passed = out.verdict.passed;
            let checks = if multi { &turn.verdict.checks } else { &out.verdict.checks };
            row.checks = serde_json::to_string(checks).unwrap_or_else(|_| "[]".into());
            row.verdict = verdict.clone();
            row.turns = turn.turns;
            row.tool_calls = turn.tool_calls;
            row.finish_reason = if t == last { out.finish_reason.clone() } else { "stop".into() };
            row.warnings = out.warnings.clone();
            row.thinking_mode = out.thinking_mode.as_str().to_owned();
            row.token_source = out.token_source.to_owned();
            row.timings_ms = timings.clone();
            rows.push(Pending {
                row,
                write: true,
                stopped: false,
                tokens,
                // Sampled tokens are counted once per episode.
                completion_tokens: std::mem::take(&mut completion_tokens),
            });
        }
        rows
    }
}

/// The sample id of row `turn` of a multi-turn episode.
fn turn_row_id(episode: &str, turn: u32) -> String {
    format!("{episode}-t{turn}")
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
