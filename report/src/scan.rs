//! The one streaming pass over the input files: per-row facts into [`Acc`], and the
//! deterministic seeded sample of rows for the trajectory viewer (only its keys and positions
//! are held during the pass; the rows are read afterwards).

use std::collections::BinaryHeap;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, GenericListArray, Int8Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int8Type, Int64Type};
use rayon::prelude::*;
use serde_json::Value;

use crate::input::{Source, SourceKind};
use crate::stats::{Acc, Facts, STATS_COLUMNS};
use crate::{Error, Result};

/// Which rows the viewer samples from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitFilter {
    /// Accepted rows only.
    Train,
    /// Rejected rows only.
    Rejected,
    /// Both.
    All,
}

impl SplitFilter {
    /// Parse `train`, `rejected` or `all`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train" => Some(SplitFilter::Train),
            "rejected" => Some(SplitFilter::Rejected),
            "all" => Some(SplitFilter::All),
            _ => None,
        }
    }

    fn admits(self, rejected: bool) -> bool {
        match self {
            SplitFilter::Train => !rejected,
            SplitFilter::Rejected => rejected,
            SplitFilter::All => true,
        }
    }
}

/// How the sample is drawn.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    /// Rows to keep (0 = none).
    pub samples: usize,
    /// Seed of the draw.
    pub seed: u64,
    /// Split to draw from.
    pub split: SplitFilter,
}

/// A sampled row's place: which file, which row; ordered by its sample key.
#[derive(Debug, Clone)]
pub(crate) struct Picked {
    pub key: u64,
    pub source: usize,
    pub row: usize,
    /// The parsed line, for JSONL sources (they are read once).
    pub line: Option<Value>,
}

impl PartialEq for Picked {
    fn eq(&self, o: &Self) -> bool {
        (self.key, self.source, self.row) == (o.key, o.source, o.row)
    }
}
impl Eq for Picked {}
impl PartialOrd for Picked {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Picked {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.key, self.source, self.row).cmp(&(o.key, o.source, o.row))
    }
}

/// The `n` rows with the smallest keys (a max-heap of the current best).
struct Reservoir {
    n: usize,
    heap: BinaryHeap<Picked>,
}

impl Reservoir {
    fn new(n: usize) -> Self {
        Reservoir { n, heap: BinaryHeap::new() }
    }
    /// Whether a row with `key` would be kept (cheap check before building it).
    fn wants(&self, key: u64) -> bool {
        self.n > 0 && (self.heap.len() < self.n || self.heap.peek().is_some_and(|m| key < m.key))
    }
    fn offer(&mut self, p: Picked) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(p);
        } else if self.heap.peek().is_some_and(|m| p < *m) {
            self.heap.pop();
            self.heap.push(p);
        }
    }
    fn merge(&mut self, other: Reservoir) {
        for p in other.heap {
            self.offer(p);
        }
    }
}

/// FNV-1a, then a splitmix finaliser: stable across platforms and releases (the sample and
/// group keys must not change with the Rust version).
pub(crate) fn stable_hash(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Result of the pass.
pub(crate) struct Scan {
    pub acc: Acc,
    /// Sampled rows, smallest key first.
    pub picked: Vec<Picked>,
    /// Schema version of each source (Parquet key-value metadata), if it has one.
    pub versions: Vec<Option<String>>,
}

/// Read every source once (files in parallel, merged in file order so every sum is the same
/// whatever the thread count).
pub(crate) fn scan(sources: &[Source], opts: &SampleOptions) -> Result<Scan> {
    let per_file: Vec<Result<(Acc, Reservoir, Option<String>)>> = sources
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut acc = Acc::default();
            let mut res = Reservoir::new(opts.samples);
            let version = match s.kind {
                SourceKind::Parquet => scan_parquet(i, s, opts, &mut acc, &mut res)?,
                SourceKind::Jsonl => {
                    scan_jsonl(i, s, opts, &mut acc, &mut res)?;
                    None
                }
            };
            Ok((acc, res, version))
        })
        .collect();
    let mut acc = Acc::default();
    let mut all = Reservoir::new(opts.samples);
    let mut versions = Vec::with_capacity(sources.len());
    for r in per_file {
        let (a, res, v) = r?;
        acc.merge(a);
        all.merge(res);
        versions.push(v);
    }
    let mut picked = all.heap.into_vec();
    picked.sort();
    Ok(Scan { acc, picked, versions })
}

/// A column cast to one of the types the scan reads, or `None` when absent or uncastable.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Option<ArrayRef> {
    let a = batch.column_by_name(name)?;
    if a.data_type() == to {
        return Some(a.clone());
    }
    cast(a, to).ok()
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// A list column whose items are `item`, as it is when it already is one (whatever the item
/// field's name or nullability: a cast would copy every value), cast otherwise.
fn list_column(batch: &RecordBatch, name: &str, item: DataType) -> Option<ArrayRef> {
    let a = batch.column_by_name(name)?;
    if let DataType::List(f) = a.data_type()
        && *f.data_type() == item
    {
        return Some(a.clone());
    }
    cast(a, &list_of(item)).ok()
}

/// Lengths of the lists of a list column of any list type.
enum Lengths {
    Small(GenericListArray<i32>),
    Large(GenericListArray<i64>),
}

impl Lengths {
    fn of(a: &ArrayRef) -> Option<Self> {
        if let Some(l) = a.as_list_opt::<i32>() {
            return Some(Lengths::Small(l.clone()));
        }
        a.as_list_opt::<i64>().map(|l| Lengths::Large(l.clone()))
    }
    fn len(&self, i: usize) -> u64 {
        match self {
            Lengths::Small(l) => l.value_length(i) as u64,
            Lengths::Large(l) => l.value_length(i) as u64,
        }
    }
}

/// The value of row `i`: `None` when the column is absent, `Some(None)` when null.
fn str_at(a: &Option<StringArray>, i: usize) -> Option<Option<&str>> {
    a.as_ref().map(|a| (!a.is_null(i)).then(|| a.value(i)))
}

fn f64_at(a: &Option<Float64Array>, i: usize) -> Option<f64> {
    a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i))
}

fn i64_at(a: &Option<Int64Array>, i: usize) -> Option<i64> {
    a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i))
}

fn scan_parquet(
    index: usize,
    s: &Source,
    opts: &SampleOptions,
    acc: &mut Acc,
    res: &mut Reservoir,
) -> Result<Option<String>> {
    // `token_ids` only when there is no `loss_mask` (one value per token too, and cheaper):
    // decoding both would double the cost of the pass.
    let without_ids: Vec<&str> =
        STATS_COLUMNS.iter().copied().filter(|c| *c != "token_ids").collect();
    let (mut present, mut version, mut batches) =
        agentgen_datasets::read_present_columns(&s.path, &without_ids)?;
    if !present.iter().any(|c| c == "loss_mask") {
        (present, version, batches) =
            agentgen_datasets::read_present_columns(&s.path, STATS_COLUMNS)?;
    }
    let path_bytes = s.path.to_string_lossy().into_owned();
    let mut usable: Vec<String> = Vec::new();
    let mut base = 0usize;
    for (b, batch) in batches.enumerate() {
        let batch = batch?;
        let utf8 = |n: &str| column(&batch, n, &DataType::Utf8);
        let sample_id = utf8("sample_id");
        let group_id = utf8("group_id");
        let family = utf8("family");
        let code = utf8("rejection_code");
        let env_package = utf8("env_package");
        let reward = column(&batch, "reward", &DataType::Float64);
        let passed = column(&batch, "passed", &DataType::Boolean);
        let difficulty = column(&batch, "difficulty", &DataType::Int64);
        let turns = column(&batch, "turns", &DataType::Int64);
        let tool_calls = column(&batch, "tool_calls", &DataType::Int64);
        let mask = list_column(&batch, "loss_mask", DataType::Int8);
        let token_ids = batch.column_by_name("token_ids").and_then(Lengths::of);
        let warnings = list_column(&batch, "warnings", DataType::Utf8);
        if b == 0 {
            // The columns this file really contributes (present and of a readable type).
            let readable = [
                ("sample_id", sample_id.is_some()),
                ("group_id", group_id.is_some()),
                ("family", family.is_some()),
                ("rejection_code", code.is_some()),
                ("env_package", env_package.is_some()),
                ("reward", reward.is_some()),
                ("passed", passed.is_some()),
                ("difficulty", difficulty.is_some()),
                ("turns", turns.is_some()),
                ("tool_calls", tool_calls.is_some()),
                ("loss_mask", mask.is_some()),
                ("token_ids", token_ids.is_some()),
                ("warnings", warnings.is_some()),
            ];
            usable = readable
                .iter()
                .filter(|(n, ok)| *ok && present.iter().any(|p| p == n))
                .map(|(n, _)| (*n).to_owned())
                .collect();
        }
        let str_of =
            |a: &Option<ArrayRef>| a.as_ref().and_then(|a| a.as_string_opt::<i32>().cloned());
        let sample_id: Option<StringArray> = str_of(&sample_id);
        let group_id: Option<StringArray> = str_of(&group_id);
        let family: Option<StringArray> = str_of(&family);
        let code: Option<StringArray> = str_of(&code);
        let env_package: Option<StringArray> = str_of(&env_package);
        let reward: Option<Float64Array> =
            reward.as_ref().and_then(|a| a.as_primitive_opt::<Float64Type>().cloned());
        let passed: Option<BooleanArray> =
            passed.as_ref().and_then(|a| a.as_boolean_opt().cloned());
        let int = |a: &Option<ArrayRef>| -> Option<Int64Array> {
            a.as_ref().and_then(|a| a.as_primitive_opt::<Int64Type>().cloned())
        };
        let (difficulty, turns, tool_calls) = (int(&difficulty), int(&turns), int(&tool_calls));
        let mask = mask.as_ref().and_then(|a| a.as_list_opt::<i32>().cloned());
        let mask_values: Option<Int8Array> =
            mask.as_ref().and_then(|m| m.values().as_primitive_opt::<Int8Type>().cloned());
        let warnings = warnings.as_ref().and_then(|a| a.as_list_opt::<i32>().cloned());
        let warning_values: Option<StringArray> =
            warnings.as_ref().and_then(|w| w.values().as_string_opt::<i32>().cloned());

        for i in 0..batch.num_rows() {
            let (tokens, loss_tokens) = match (&mask, &mask_values) {
                (Some(m), Some(v)) => {
                    let o = m.value_offsets();
                    let r = (o[i] as usize)..(o[i + 1] as usize);
                    let loss = v.values()[r.clone()].iter().filter(|&&x| x != 0).count() as u64;
                    (Some(r.len() as u64), Some(loss))
                }
                _ => (token_ids.as_ref().map(|t| t.len(i)), None),
            };
            let code_v = str_at(&code, i);
            let facts = Facts {
                family: str_at(&family, i).flatten(),
                code: code_v,
                reward: f64_at(&reward, i),
                passed: passed.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i)),
                group: str_at(&group_id, i).flatten().map(|g| stable_hash(0, &[g.as_bytes()])),
                difficulty: i64_at(&difficulty, i),
                turns: i64_at(&turns, i),
                tool_calls: i64_at(&tool_calls, i),
                tokens,
                loss_tokens,
                env_package: str_at(&env_package, i),
            };
            let warns: Vec<&str> = match (&warnings, &warning_values) {
                (Some(w), Some(v)) if !w.is_null(i) => {
                    let o = w.value_offsets();
                    ((o[i] as usize)..(o[i + 1] as usize)).map(|j| v.value(j)).collect()
                }
                _ => Vec::new(),
            };
            acc.add(&facts, warns.into_iter());

            let rejected = code_v.flatten().is_some();
            if opts.samples > 0 && opts.split.admits(rejected) {
                let row = base + i;
                let key = match str_at(&sample_id, i).flatten() {
                    Some(id) => stable_hash(opts.seed, &[id.as_bytes()]),
                    None => stable_hash(
                        opts.seed,
                        &[path_bytes.as_bytes(), &(row as u64).to_le_bytes()],
                    ),
                };
                if res.wants(key) {
                    res.offer(Picked { key, source: index, row, line: None });
                }
            }
        }
        base += batch.num_rows();
    }
    acc.saw_columns(&usable);
    Ok(version)
}

fn scan_jsonl(
    index: usize,
    s: &Source,
    opts: &SampleOptions,
    acc: &mut Acc,
    res: &mut Reservoir,
) -> Result<()> {
    let f = std::fs::File::open(&s.path).map_err(|e| Error::io("open", &s.path, e))?;
    let path_bytes = s.path.to_string_lossy().into_owned();
    let mut seen: Vec<String> = Vec::new();
    let mut row = 0usize;
    for (n, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io("read", &s.path, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(&line).map_err(|e| Error::Jsonl {
            path: s.path.clone(),
            line: n + 1,
            reason: format!("not JSON: {e}"),
        })?;
        let Some(obj) = v.as_object() else {
            return Err(Error::Jsonl {
                path: s.path.clone(),
                line: n + 1,
                reason: "not a JSON object".into(),
            });
        };
        for c in STATS_COLUMNS {
            if obj.contains_key(*c) && !seen.iter().any(|s| s == c) {
                seen.push((*c).to_owned());
            }
        }
        let get = |k: &str| obj.get(k);
        let opt_str = |k: &str| get(k).map(|v| v.as_str());
        let mask: Option<Vec<i64>> = get("loss_mask")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| x.as_i64().unwrap_or(0)).collect());
        let (tokens, loss_tokens) = match &mask {
            Some(m) => (Some(m.len() as u64), Some(m.iter().filter(|x| **x != 0).count() as u64)),
            None => (get("token_ids").and_then(Value::as_array).map(|a| a.len() as u64), None),
        };
        let facts = Facts {
            family: opt_str("family").flatten(),
            code: opt_str("rejection_code"),
            reward: get("reward").and_then(Value::as_f64),
            passed: get("passed").and_then(Value::as_bool),
            group: opt_str("group_id").flatten().map(|g| stable_hash(0, &[g.as_bytes()])),
            difficulty: get("difficulty").and_then(Value::as_i64),
            turns: get("turns").and_then(Value::as_i64),
            tool_calls: get("tool_calls").and_then(Value::as_i64),
            tokens,
            loss_tokens,
            env_package: opt_str("env_package"),
        };
        let warns: Vec<&str> = get("warnings")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        acc.add(&facts, warns.into_iter());
        let rejected = facts.code.flatten().is_some();
        if opts.samples > 0 && opts.split.admits(rejected) {
            let key = match opt_str("sample_id").flatten() {
                Some(id) => stable_hash(opts.seed, &[id.as_bytes()]),
                None => {
                    stable_hash(opts.seed, &[path_bytes.as_bytes(), &(row as u64).to_le_bytes()])
                }
            };
            if res.wants(key) {
                res.offer(Picked { key, source: index, row, line: Some(v.clone()) });
            }
        }
        row += 1;
    }
    acc.saw_columns(&seen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_keeps_the_smallest_keys_whatever_the_order() {
        let keys = [9u64, 3, 7, 1, 8, 2];
        let mut a = Reservoir::new(3);
        for (i, k) in keys.iter().enumerate() {
            a.offer(Picked { key: *k, source: 0, row: i, line: None });
        }
        let mut got: Vec<u64> = a.heap.into_vec().iter().map(|p| p.key).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(0, &[b"abc"]), stable_hash(0, &[b"abc"]));
        assert_ne!(stable_hash(0, &[b"abc"]), stable_hash(1, &[b"abc"]));
        assert_ne!(stable_hash(0, &[b"ab", b"c"]), stable_hash(0, &[b"a", b"bc"]));
    }
}
