//! Streaming dataset statistics: the numbers `agentgen inspect --json` prints under `report`
//! and the report's overview draws. One pass over the files with bounded memory (exact value
//! counts per family, one small entry per RL group); rows themselves are never kept.
//!
//! Every statistic is optional: one whose source column no file has is left out and its
//! column listed in [`Stats::columns_missing`], so foreign data gets the sections it can.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

/// Columns the statistics read when a file has them.
pub const STATS_COLUMNS: &[&str] = &[
    "sample_id",
    "group_id",
    "family",
    "difficulty",
    "reward",
    "passed",
    "rejection_code",
    "turns",
    "tool_calls",
    "loss_mask",
    "token_ids",
    "warnings",
    "env_package",
];

/// What one row contributes. `None` means "this file has no such column".
#[derive(Debug, Default, Clone)]
pub(crate) struct Facts<'a> {
    pub family: Option<&'a str>,
    /// `Some(None)`: accepted row; `Some(Some(code))`: rejected; `None`: no verdict column
    /// (counted as train).
    pub code: Option<Option<&'a str>>,
    pub reward: Option<f64>,
    pub passed: Option<bool>,
    pub group: Option<u64>,
    pub difficulty: Option<i64>,
    pub turns: Option<i64>,
    pub tool_calls: Option<i64>,
    pub tokens: Option<u64>,
    pub loss_tokens: Option<u64>,
    pub env_package: Option<Option<&'a str>>,
}

/// Exact counts of integer values (turns, tool calls, tokens per row).
type ValueCounts = BTreeMap<i64, u64>;

#[derive(Debug, Default, Clone)]
struct FamilyAcc {
    accepted: u64,
    rejected: u64,
    passed: u64,
    with_passed: u64,
    reward_sum: f64,
    with_reward: u64,
    turns: ValueCounts,
    tool_calls: ValueCounts,
    tokens: ValueCounts,
}

/// The accumulator of one file (merged in file order, so sums are deterministic).
#[derive(Debug, Default, Clone)]
pub(crate) struct Acc {
    rows: u64,
    train: u64,
    rejected: u64,
    tokens_total: u64,
    tokens_train: u64,
    tokens_train_loss: u64,
    /// Family "" collects rows of files without a family column.
    families: BTreeMap<String, FamilyAcc>,
    per_code: BTreeMap<String, u64>,
    per_warning: BTreeMap<String, u64>,
    /// Reward (quantised to 1e-6) -> rows.
    rewards: BTreeMap<i64, u64>,
    reward_sum: f64,
    reward_min: f64,
    reward_max: f64,
    /// Group key -> (samples, passed).
    groups: HashMap<u64, (u32, u32)>,
    difficulty: BTreeMap<i64, (u64, u64)>,
    env_package: BTreeMap<String, (u64, u64)>,
    /// Column name -> whether some file had it.
    pub seen: BTreeMap<&'static str, bool>,
}

const REWARD_SCALE: f64 = 1e6;

impl Acc {
    /// Record which of [`STATS_COLUMNS`] a file has.
    pub fn saw_columns(&mut self, present: &[String]) {
        for c in STATS_COLUMNS {
            let has = present.iter().any(|p| p == c);
            let e = self.seen.entry(c).or_insert(false);
            *e |= has;
        }
    }

    /// Add one row; `warnings` are its warning codes.
    pub fn add<'w>(&mut self, f: &Facts<'_>, warnings: impl Iterator<Item = &'w str>) {
        self.rows += 1;
        let rejected_code = f.code.flatten();
        let fam = self.families.entry(f.family.unwrap_or("").to_owned()).or_default();
        if let Some(code) = rejected_code {
            self.rejected += 1;
            fam.rejected += 1;
            *self.per_code.entry(code.to_owned()).or_default() += 1;
        } else {
            self.train += 1;
            fam.accepted += 1;
        }
        if let Some(n) = f.tokens {
            self.tokens_total += n;
            if rejected_code.is_none() {
                self.tokens_train += n;
                self.tokens_train_loss += f.loss_tokens.unwrap_or(0);
            }
            *fam.tokens.entry(n as i64).or_default() += 1;
        }
        if let Some(t) = f.turns {
            *fam.turns.entry(t).or_default() += 1;
        }
        if let Some(t) = f.tool_calls {
            *fam.tool_calls.entry(t).or_default() += 1;
        }
        if let Some(p) = f.passed {
            fam.with_passed += 1;
            fam.passed += u64::from(p);
        }
        if let Some(r) = f.reward.filter(|r| r.is_finite()) {
            fam.reward_sum += r;
            fam.with_reward += 1;
            if self.rewards.is_empty() {
                self.reward_min = r;
                self.reward_max = r;
            }
            self.reward_min = self.reward_min.min(r);
            self.reward_max = self.reward_max.max(r);
            self.reward_sum += r;
            *self.rewards.entry((r * REWARD_SCALE).round() as i64).or_default() += 1;
        }
        if let (Some(g), Some(p)) = (f.group, f.passed) {
            let e = self.groups.entry(g).or_default();
            e.0 += 1;
            e.1 += u32::from(p);
        }
        if let Some(d) = f.difficulty {
            let e = self.difficulty.entry(d).or_default();
            e.0 += 1;
            e.1 += u64::from(f.passed.unwrap_or(false));
        }
        if let Some(pkg) = f.env_package {
            let e = self.env_package.entry(pkg.unwrap_or("(built-in)").to_owned()).or_default();
            if rejected_code.is_some() {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
        for w in warnings {
            *self.per_warning.entry(w.to_owned()).or_default() += 1;
        }
    }

    /// Fold `other` (the next file) into `self`.
    pub fn merge(&mut self, other: Acc) {
        self.rows += other.rows;
        self.train += other.train;
        self.rejected += other.rejected;
        self.tokens_total += other.tokens_total;
        self.tokens_train += other.tokens_train;
        self.tokens_train_loss += other.tokens_train_loss;
        for (k, f) in other.families {
            let e = self.families.entry(k).or_default();
            e.accepted += f.accepted;
            e.rejected += f.rejected;
            e.passed += f.passed;
            e.with_passed += f.with_passed;
            e.reward_sum += f.reward_sum;
            e.with_reward += f.with_reward;
            add_counts(&mut e.turns, f.turns);
            add_counts(&mut e.tool_calls, f.tool_calls);
            add_counts(&mut e.tokens, f.tokens);
        }
        add_counts(&mut self.per_code, other.per_code);
        add_counts(&mut self.per_warning, other.per_warning);
        if !other.rewards.is_empty() {
            if self.rewards.is_empty() {
                self.reward_min = other.reward_min;
                self.reward_max = other.reward_max;
            }
            self.reward_min = self.reward_min.min(other.reward_min);
            self.reward_max = self.reward_max.max(other.reward_max);
        }
        self.reward_sum += other.reward_sum;
        add_counts(&mut self.rewards, other.rewards);
        for (g, (n, p)) in other.groups {
            let e = self.groups.entry(g).or_default();
            e.0 += n;
            e.1 += p;
        }
        for (d, (n, p)) in other.difficulty {
            let e = self.difficulty.entry(d).or_default();
            e.0 += n;
            e.1 += p;
        }
        for (k, (a, r)) in other.env_package {
            let e = self.env_package.entry(k).or_default();
            e.0 += a;
            e.1 += r;
        }
        for (c, has) in other.seen {
            *self.seen.entry(c).or_insert(false) |= has;
        }
    }

    fn has(&self, column: &str) -> bool {
        self.seen.get(column).copied().unwrap_or(false)
    }

    /// The final statistics.
    pub fn finish(self, manifests: Vec<Value>) -> Stats {
        let has_family = self.has("family");
        let has_code = self.has("rejection_code");
        let has_passed = self.has("passed");
        let has_reward = self.has("reward");
        let has_tokens = self.has("loss_mask") || self.has("token_ids");
        let has_warnings = self.has("warnings");
        let has_groups = self.has("group_id") && has_passed;
        let has_difficulty = self.has("difficulty");
        let has_package = self.has("env_package");
        let columns_missing: Vec<String> = STATS_COLUMNS
            .iter()
            .filter(|c| !self.has(c))
            .filter(|c| match **c {
                // Either gives the token counts; the optional v2 column is not "missing".
                "token_ids" => !self.has("loss_mask"),
                "loss_mask" => !self.has("token_ids"),
                "env_package" => false,
                _ => true,
            })
            .map(|c| (*c).to_owned())
            .collect();

        let per_family: Option<BTreeMap<String, FamilyStats>> = has_family.then(|| {
            self.families
                .iter()
                .map(|(k, f)| {
                    (
                        k.clone(),
                        FamilyStats {
                            accepted: f.accepted,
                            rejected: f.rejected,
                            passed: has_passed.then_some(f.passed),
                            pass_rate: (has_passed && f.with_passed > 0)
                                .then(|| ratio(f.passed, f.with_passed)),
                            reward_mean: (f.with_reward > 0)
                                .then(|| round6(f.reward_sum / f.with_reward as f64)),
                        },
                    )
                })
                .collect()
        });

        let mut histograms = BTreeMap::new();
        fn turns_of(f: &FamilyAcc) -> &ValueCounts {
            &f.turns
        }
        fn calls_of(f: &FamilyAcc) -> &ValueCounts {
            &f.tool_calls
        }
        fn tokens_of(f: &FamilyAcc) -> &ValueCounts {
            &f.tokens
        }
        type Measure = fn(&FamilyAcc) -> &ValueCounts;
        let measures: [(&str, bool, Measure); 3] = [
            ("turns", self.has("turns"), turns_of),
            ("tool_calls", self.has("tool_calls"), calls_of),
            ("tokens", has_tokens, tokens_of),
        ];
        for (name, present, get) in measures {
            if !present {
                continue;
            }
            let mut all = ValueCounts::new();
            for f in self.families.values() {
                add_counts(&mut all, get(f).clone());
            }
            if all.is_empty() {
                continue;
            }
            let edges = int_edges(&all);
            let per_family = if has_family {
                self.families.iter().map(|(k, f)| (k.clone(), bin_counts(get(f), &edges))).collect()
            } else {
                BTreeMap::new()
            };
            histograms.insert(
                name.to_owned(),
                FamilyHistogram {
                    all: Histogram { counts: bin_counts(&all, &edges), edges: edges.clone() },
                    mean: round6(weighted_mean(&all)),
                    median: quantile(&all, 0.5),
                    p90: quantile(&all, 0.9),
                    max: all.keys().next_back().copied().unwrap_or(0),
                    per_family,
                },
            );
        }

        let reward = (has_reward && !self.rewards.is_empty()).then(|| {
            let count: u64 = self.rewards.values().sum();
            let edges = reward_edges(self.reward_min, self.reward_max);
            let mut counts = vec![0u64; edges.len() - 1];
            for (q, n) in &self.rewards {
                let r = *q as f64 / REWARD_SCALE;
                counts[bin_index(&edges, r)] += n;
            }
            RewardStats {
                count,
                mean: round6(self.reward_sum / count as f64),
                min: round6(self.reward_min),
                max: round6(self.reward_max),
                histogram: Histogram { edges, counts },
            }
        });

        let pass_rate = has_passed.then(|| {
            let (rows, passed) =
                self.families.values().fold((0, 0), |(r, p), f| (r + f.with_passed, p + f.passed));
            PassRate { rows, passed, rate: if rows > 0 { ratio(passed, rows) } else { 0.0 } }
        });

        let groups = has_groups.then(|| group_stats(&self.groups));

        let difficulty: Option<BTreeMap<String, DifficultyStats>> =
            (has_difficulty && !self.difficulty.is_empty()).then(|| {
                self.difficulty
                    .iter()
                    .map(|(d, (n, p))| {
                        (
                            d.to_string(),
                            DifficultyStats {
                                rows: *n,
                                passed: *p,
                                pass_rate: if has_passed && *n > 0 {
                                    Some(ratio(*p, *n))
                                } else {
                                    None
                                },
                            },
                        )
                    })
                    .collect()
            });

        let dedup = has_code.then(|| {
            let rows: u64 =
                self.per_code.iter().filter(|(k, _)| k.starts_with("dedup.")).map(|(_, n)| n).sum();
            Dedup { rows, rate: if self.rows > 0 { ratio(rows, self.rows) } else { 0.0 } }
        });

        let per_env_package: Option<BTreeMap<String, SplitRows>> = has_package.then(|| {
            self.env_package
                .iter()
                .map(|(k, (a, r))| (k.clone(), SplitRows { accepted: *a, rejected: *r }))
                .collect()
        });

        Stats {
            rows: self.rows,
            train: self.train,
            rejected: self.rejected,
            tokens: has_tokens.then_some(TokenStats {
                total: self.tokens_total,
                train: self.tokens_train,
                train_loss: self.tokens_train_loss,
            }),
            per_family,
            per_rejection_code: has_code.then_some(self.per_code),
            per_warning: has_warnings.then_some(self.per_warning),
            reward,
            pass_rate,
            groups,
            histograms,
            difficulty,
            dedup,
            per_env_package,
            manifests,
            columns_missing,
        }
    }
}

fn add_counts<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, n) in from {
        *into.entry(k).or_default() += n;
    }
}

/// `a / b` rounded to 6 decimals (stable JSON text; the page shows fewer).
fn ratio(a: u64, b: u64) -> f64 {
    round6(a as f64 / b as f64)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn weighted_mean(c: &ValueCounts) -> f64 {
    let n: u64 = c.values().sum();
    if n == 0 {
        return 0.0;
    }
    c.iter().map(|(v, k)| *v as f64 * *k as f64).sum::<f64>() / n as f64
}

/// The smallest value with at least `q` of the rows at or below it.
fn quantile(c: &ValueCounts, q: f64) -> i64 {
    let n: u64 = c.values().sum();
    let target = ((n as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (v, k) in c {
        seen += k;
        if seen >= target {
            return *v;
        }
    }
    0
}

/// Bin edges for integer values: one bin per value when the range is small, otherwise about
/// 30 bins of a "nice" width (1, 2, 5 × 10^k). Bin i holds [edges[i], edges[i+1]).
fn int_edges(c: &ValueCounts) -> Vec<f64> {
    let (Some(&lo), Some(&hi)) = (c.keys().next(), c.keys().next_back()) else {
        return vec![0.0, 1.0];
    };
    let span = hi - lo + 1;
    let mut width = 1i64;
    if span > 30 {
        let raw = (span as f64 / 30.0).ceil() as i64;
        let mut base = 1i64;
        loop {
            if let Some(w) = [1, 2, 5].iter().map(|m| m * base).find(|w| *w >= raw) {
                width = w;
                break;
            }
            base *= 10;
        }
    }
    let start = lo.div_euclid(width) * width;
    let mut edges = vec![start as f64];
    let mut e = start;
    while e <= hi {
        e += width;
        edges.push(e as f64);
    }
    edges
}

fn bin_index(edges: &[f64], v: f64) -> usize {
    let bins = edges.len() - 1;
    // Last bin is closed on the right.
    edges[1..].iter().position(|e| v < *e).unwrap_or(bins - 1).min(bins - 1)
}

fn bin_counts(c: &ValueCounts, edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() - 1];
    for (v, n) in c {
        counts[bin_index(edges, *v as f64)] += n;
    }
    counts
}

/// 20 bins over [0, 1] when rewards lie there, else 20 bins over [min, max] (one bin when all
/// are equal).
fn reward_edges(min: f64, max: f64) -> Vec<f64> {
    let (lo, hi) = if min >= 0.0 && max <= 1.0 { (0.0, 1.0) } else { (min, max) };
    if hi <= lo {
        return vec![lo, lo + 1.0];
    }
    (0..=20).map(|i| round6(lo + (hi - lo) * f64::from(i) / 20.0)).collect()
}

fn group_stats(groups: &HashMap<u64, (u32, u32)>) -> Groups {
    let multi: Vec<(u32, u32)> = groups.values().copied().filter(|(n, _)| *n >= 2).collect();
    let max_size = groups.values().map(|(n, _)| *n).max().unwrap_or(0);
    let edges: Vec<f64> = (0..=10).map(|i| f64::from(i) / 10.0).collect();
    let mut counts = vec![0u64; 10];
    let (mut all_pass, mut all_fail) = (0, 0);
    for (n, p) in &multi {
        counts[bin_index(&edges, f64::from(*p) / f64::from(*n))] += 1;
        all_pass += u64::from(p == n);
        all_fail += u64::from(*p == 0);
    }
    let mut pass_at_k = BTreeMap::new();
    let mut k = 1u32;
    while k <= max_size && !multi.is_empty() {
        let eligible: Vec<&(u32, u32)> = multi.iter().filter(|(n, _)| *n >= k).collect();
        if !eligible.is_empty() {
            let sum: f64 = eligible.iter().map(|(n, c)| pass_at_k_one(*n, *c, k)).sum();
            pass_at_k.insert(k.to_string(), round6(sum / eligible.len() as f64));
        }
        k *= 2;
    }
    Groups {
        count: groups.len() as u64,
        multi_sample: multi.len() as u64,
        max_size,
        all_pass,
        all_fail,
        pass_rate_histogram: (!multi.is_empty()).then_some(Histogram { edges, counts }),
        pass_at_k,
    }
}

/// Unbiased pass@k of one group of `n` samples with `c` passing: 1 - C(n-c, k) / C(n, k).
fn pass_at_k_one(n: u32, c: u32, k: u32) -> f64 {
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - f64::from(k) / f64::from(i);
    }
    1.0 - prod
}

/// Counts per bin; `edges` has one more entry than `counts`; bin i is [edges[i], edges[i+1]),
/// the last one closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Bin edges.
    pub edges: Vec<f64>,
    /// Rows per bin.
    pub counts: Vec<u64>,
}

/// An integer per-row quantity over all rows, and per family on the same bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyHistogram {
    /// All rows.
    pub all: Histogram,
    /// Mean over all rows.
    pub mean: f64,
    /// Median over all rows.
    pub median: i64,
    /// 90th percentile over all rows.
    pub p90: i64,
    /// Largest value.
    pub max: i64,
    /// Counts per family on `all.edges`.
    pub per_family: BTreeMap<String, Vec<u64>>,
}

/// Rows, verdicts and verifier results of one family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyStats {
    /// Rows in split `train`.
    pub accepted: u64,
    /// Rows in split `rejected`.
    pub rejected: u64,
    /// Rows whose verifier passed (both splits).
    pub passed: Option<u64>,
    /// `passed` / rows.
    pub pass_rate: Option<f64>,
    /// Mean reward.
    pub reward_mean: Option<f64>,
}

/// Rows per split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitRows {
    /// Rows in split `train`.
    pub accepted: u64,
    /// Rows in split `rejected`.
    pub rejected: u64,
}

/// Token totals (`token_ids` lengths; `loss_mask` lengths where both exist, one per token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStats {
    /// All rows.
    pub total: u64,
    /// Split `train`.
    pub train: u64,
    /// Loss-mask-1 tokens of split `train`.
    pub train_loss: u64,
}

/// The reward distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardStats {
    /// Rows with a finite reward.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// 20 bins.
    pub histogram: Histogram,
}

/// Verifier pass rate over all rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassRate {
    /// Rows with a `passed` value.
    pub rows: u64,
    /// Of which passed.
    pub passed: u64,
    /// `passed / rows`.
    pub rate: f64,
}

/// RL groups (rows sharing a `group_id`: the samples of one task).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Groups {
    /// Distinct groups.
    pub count: u64,
    /// Groups of two or more samples.
    pub multi_sample: u64,
    /// Samples in the largest group.
    pub max_size: u32,
    /// Multi-sample groups where every sample passed.
    pub all_pass: u64,
    /// Multi-sample groups where none passed.
    pub all_fail: u64,
    /// Pass rate per multi-sample group, 10 bins over [0, 1].
    pub pass_rate_histogram: Option<Histogram>,
    /// Unbiased pass@k (k = 1, 2, 4, ...) over the multi-sample groups with at least k samples.
    pub pass_at_k: BTreeMap<String, f64>,
}

/// Pass rate per task difficulty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DifficultyStats {
    /// Rows of this difficulty.
    pub rows: u64,
    /// Of which passed.
    pub passed: u64,
    /// `passed / rows`.
    pub pass_rate: Option<f64>,
}

/// Rows rejected as duplicates (`dedup.*` codes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dedup {
    /// Rows.
    pub rows: u64,
    /// Of all rows.
    pub rate: f64,
}

/// Everything the report's overview shows: `agentgen inspect --json` prints it as `report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Rows read.
    pub rows: u64,
    /// Rows of split `train` (no rejection code).
    pub train: u64,
    /// Rows of split `rejected`.
    pub rejected: u64,
    /// Token totals.
    pub tokens: Option<TokenStats>,
    /// Per family.
    pub per_family: Option<BTreeMap<String, FamilyStats>>,
    /// Rejected rows per code.
    pub per_rejection_code: Option<BTreeMap<String, u64>>,
    /// Rows per warning.
    pub per_warning: Option<BTreeMap<String, u64>>,
    /// Reward distribution.
    pub reward: Option<RewardStats>,
    /// Verifier pass rate.
    pub pass_rate: Option<PassRate>,
    /// RL groups.
    pub groups: Option<Groups>,
    /// `turns`, `tool_calls`, `tokens` per row.
    pub histograms: BTreeMap<String, FamilyHistogram>,
    /// Pass rate per difficulty.
    pub difficulty: Option<BTreeMap<String, DifficultyStats>>,
    /// Dedup rejections.
    pub dedup: Option<Dedup>,
    /// Rows per environment package (schema v2 `env_package`; null = built-in family).
    pub per_env_package: Option<BTreeMap<String, SplitRows>>,
    /// `manifest.json` of each dataset folder, as written (future fields included).
    pub manifests: Vec<Value>,
    /// Columns no file had: the statistics and sections that need them are left out.
    pub columns_missing: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        assert_eq!(pass_at_k_one(4, 0, 1), 0.0);
        assert_eq!(pass_at_k_one(4, 4, 2), 1.0);
        assert!((pass_at_k_one(4, 1, 1) - 0.25).abs() < 1e-12);
        // 1 - C(2,2)/C(4,2) = 1 - 1/6
        assert!((pass_at_k_one(4, 2, 2) - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn int_edges_cover_the_range() {
        let c: ValueCounts = [(3, 1), (7, 2)].into_iter().collect();
        let e = int_edges(&c);
        assert_eq!(e.first(), Some(&3.0));
        assert_eq!(e.last(), Some(&8.0));
        assert_eq!(bin_counts(&c, &e), vec![1, 0, 0, 0, 2]);
        let wide: ValueCounts = [(10, 1), (1000, 1)].into_iter().collect();
        let e = int_edges(&wide);
        assert!(e.len() <= 32, "{e:?}");
        assert_eq!(bin_counts(&wide, &e).iter().sum::<u64>(), 2);
    }

    #[test]
    fn rewards_in_unit_interval_use_fixed_bins() {
        let e = reward_edges(0.0, 1.0);
        assert_eq!(e.len(), 21);
        assert_eq!(bin_index(&e, 1.0), 19);
        assert_eq!(bin_index(&e, 0.0), 0);
        assert_eq!(reward_edges(2.0, 2.0), vec![2.0, 3.0]);
    }
}
