//! The ordering stage: finished jobs arrive in any order; it restores task order, applies the
//! difficulty band and exact dedup deterministically, counts, drives the progress bar and hands
//! rows to the writer, so the output is identical at any concurrency. It also watches policy
//! health and stops a run whose endpoint is failing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgen_datasets::{Verdict, trajectory_hash};
use indicatif::ProgressBar;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::rows::{JobResult, Pending, reject};
use super::writer::ToWriter;
use super::{POLICY_ERROR_MIN_ROLLOUTS, Shared};
use crate::policy::Policy;
use crate::validate::{Rejection, codes};

#[derive(Default)]
pub(super) struct OrderStats {
    pub(super) accepted: u64,
    pub(super) rejected: u64,
    pub(super) tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) codes: BTreeMap<String, u64>,
    pub(super) families: BTreeMap<String, (u64, u64)>,
    pub(super) groups: u64,
    pub(super) pass_sum: f64,
    pub(super) any_passed: u64,
    /// Rollouts finished (in arrival order), those that failed in the policy, the first such
    /// failure, and why the run was stopped early.
    pub(super) rollouts: u64,
    pub(super) policy_failed: u64,
    pub(super) first_policy_error: Option<String>,
    pub(super) stopped: Option<String>,
}

impl OrderStats {
    fn count(&mut self, p: &Pending) {
        let fam = self.families.entry(p.row.family.clone()).or_default();
        match &p.row.verdict {
            Verdict::Accepted => {
                self.accepted += 1;
                fam.0 += 1;
            }
            Verdict::Rejected { code, .. } => {
                self.rejected += 1;
                fam.1 += 1;
                *self.codes.entry(code.clone()).or_default() += 1;
            }
        }
        self.tokens += p.tokens;
        self.completion_tokens += p.completion_tokens;
    }

    fn top_codes(&self, n: usize) -> Vec<(&String, &u64)> {
        let mut v: Vec<_> = self.codes.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    fn message(&self, elapsed: Duration) -> String {
        let tps = self.tokens as f64 / elapsed.as_secs_f64().max(1e-3);
        let top: Vec<String> = self.top_codes(2).iter().map(|(c, n)| format!("{c} {n}")).collect();
        let top = if top.is_empty() { String::new() } else { format!(" [{}]", top.join(", ")) };
        format!("accepted {} rejected {}{top} {:.0} tok/s", self.accepted, self.rejected, tps)
    }

    pub(super) fn table(
        &self,
        elapsed: Duration,
        resumed: u64,
        p1: f64,
        pk: f64,
        k: u32,
    ) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(s, "{:<28} {:>10} {:>10}", "family", "accepted", "rejected");
        for (f, (a, r)) in &self.families {
            let _ = writeln!(s, "{f:<28} {a:>10} {r:>10}");
        }
        let _ = writeln!(s, "{:<28} {:>10} {:>10}", "total", self.accepted, self.rejected);
        if !self.codes.is_empty() {
            let _ = writeln!(s, "\n{:<28} {:>10}", "rejection code", "rows");
            for (c, n) in self.top_codes(usize::MAX) {
                let _ = writeln!(s, "{c:<28} {n:>10}");
            }
        }
        let _ = writeln!(
            s,
            "\n{} samples in {:.2}s ({:.0} accepted/s), {} tokens ({:.0} tok/s)",
            self.accepted + self.rejected,
            secs,
            self.accepted as f64 / secs,
            self.tokens,
            self.tokens as f64 / secs
        );
        if k > 1 {
            let _ = writeln!(s, "pass@1 {p1:.3}  pass@{k} {pk:.3} over {} groups", self.groups);
        }
        if resumed > 0 {
            let _ = writeln!(s, "{resumed} tasks were already finished (resume)");
        }
        s
    }

    /// Policy health, counted as results arrive (not in task order): stop early when the
    /// endpoint is failing rather than turning every task into a policy.* row. True when this
    /// result crossed `max_rate`.
    fn observe_policy_health(&mut self, rows: &[Pending], max_rate: f64) -> bool {
        for p in rows {
            self.rollouts += 1;
            if let Verdict::Rejected { code, detail } = &p.row.verdict
                && code.starts_with("policy.")
            {
                self.policy_failed += 1;
                self.first_policy_error.get_or_insert_with(|| format!("{code}: {detail}"));
            }
        }
        if self.stopped.is_none()
            && self.rollouts >= POLICY_ERROR_MIN_ROLLOUTS
            && self.policy_failed as f64 > max_rate * self.rollouts as f64
        {
            self.stopped = Some(format!(
                "{} of {} rollouts failed in the policy (more than --max-policy-error-rate \
                 {max_rate}); first error: {}",
                self.policy_failed,
                self.rollouts,
                self.first_policy_error.as_deref().unwrap_or("?")
            ));
            return true;
        }
        false
    }

    /// After the last result: a run where every rollout failed in the policy failed.
    pub(super) fn stop_if_all_failed(&mut self) {
        if self.stopped.is_none() && self.rollouts > 0 && self.policy_failed == self.rollouts {
            self.stopped = Some(format!(
                "every one of the {} rollouts failed in the policy; first error: {}",
                self.rollouts,
                self.first_policy_error.as_deref().unwrap_or("?")
            ));
        }
    }
}

/// What the ordering stage owns.
pub(super) struct OrderStage<P> {
    /// Finished jobs, in any order.
    pub(super) results: mpsc::Receiver<JobResult>,
    /// The writer actor.
    pub(super) row_tx: mpsc::Sender<ToWriter>,
    /// Bounds how far dispatch may run ahead: one permit back per job put in order.
    pub(super) window: Arc<Semaphore>,
    /// Trajectories already kept (dedup), seeded by `--resume`.
    pub(super) seen: HashMap<[u8; 32], String>,
    pub(super) bar: ProgressBar,
    pub(super) shared: Arc<Shared<P>>,
    /// Cancelled when the policy fails too often.
    pub(super) stop: CancellationToken,
}

impl<P: Policy> OrderStage<P> {
    /// Ordering / dedup / counting stage, until every result has arrived (or the writer failed).
    pub(super) async fn run(self) -> OrderStats {
        let OrderStage { mut results, row_tx, window, mut seen, bar, shared, stop } = self;
        let band = shared.cfg.difficulty_band;
        let dedup = shared.cfg.dedup;
        let max_rate = shared.cfg.max_policy_error_rate;
        let mut next = 0u64;
        let mut buffer: BTreeMap<u64, JobResult> = BTreeMap::new();
        let mut st = OrderStats::default();
        let t0 = Instant::now();
        while let Some(r) = results.recv().await {
            if st.observe_policy_health(&r.rows, max_rate) {
                stop.cancel();
            }
            buffer.insert(r.ordinal, r);
            while let Some(r) = buffer.remove(&next) {
                next += 1;
                st.groups += 1;
                st.pass_sum += f64::from(r.pass_rate);
                st.any_passed += u64::from(r.any_passed);
                // Package tasks were pre-selected by calibration (`run_registry`).
                let calibrated = r.rows.first().is_some_and(|p| p.row.env_package.is_some());
                let in_band =
                    calibrated || band.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.pass_rate));
                let mut rows = r.rows;
                judge_episodes(&mut rows, in_band, r.pass_rate, dedup, &mut seen);
                for p in rows {
                    if p.stopped {
                        continue;
                    }
                    st.count(&p);
                    if p.write && row_tx.send(ToWriter::Row(Box::new(p.row))).await.is_err() {
                        return st; // the writer failed; its error is reported by the join
                    }
                }
                window.add_permits(1);
                let usage = shared
                    .policy
                    .usage()
                    .map_or(String::new(), |(p, c)| format!(" usage {p}+{c} tok"));
                bar.set_message(format!("{}{usage}", st.message(t0.elapsed())));
                bar.inc(1);
            }
        }
        st
    }
}

/// The band and dedup judge whole episodes: every row of an episode (one per user turn,
/// consecutive) shares the verdict; dedup hashes its last row (the whole conversation).
fn judge_episodes(
    rows: &mut [Pending],
    in_band: bool,
    pass_rate: f32,
    dedup: bool,
    seen: &mut HashMap<[u8; 32], String>,
) {
    let mut start = 0;
    while start < rows.len() {
        let episode = rows[start].row.episode_id.clone();
        let end = start + rows[start..].iter().take_while(|p| p.row.episode_id == episode).count();
        let last = &rows[end - 1];
        let mut verdict = None;
        if !last.stopped && last.row.verdict == Verdict::Accepted {
            if !in_band {
                verdict = Some(reject(&Rejection::new(
                    codes::FILTER_DIFFICULTY_BAND,
                    format!("group pass rate {pass_rate} is outside the band"),
                )));
            } else if dedup {
                let h = trajectory_hash(&last.row.messages, &last.row.tools);
                match seen.get(&h) {
                    Some(first) => {
                        verdict = Some(reject(&Rejection::new(
                            codes::DEDUP_EXACT,
                            format!("same normalised trajectory as sample {first}"),
                        )));
                    }
                    None => {
                        seen.insert(h, last.row.sample_id.clone());
                    }
                }
            }
        }
        for p in &mut rows[start..end] {
            if let Some(v) = &verdict {
                p.row.verdict = v.clone();
            }
        }
        start = end;
    }
}
