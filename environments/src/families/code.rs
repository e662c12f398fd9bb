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
use std::sync::{Arc, Mutex};

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::answer;
use crate::error::{Error, Result};
use crate::families::common::{Base, Slots, TaskParts, difficulty_slot, turn};
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::sandbox::Sandbox;
use crate::util::{call, name_hash, rng};

const NAME: &str = "code";
const VERSION: u32 = 2;
const INSTANCES: u64 = 1000;
const TASKS: u64 = 200;
const MEMO_CAP: usize = 4096;

struct Domain {
    files: &'static [&'static str],
    group: &'static [&'static str],
    group_values: &'static [&'static str],
    cat: &'static [&'static str],
    cat_values: &'static [&'static str],
    x: &'static [&'static str],
    y: &'static [&'static str],
    /// (x range, y range in cents)
    x_range: (i64, i64),
    y_range: (i64, i64),
    what: &'static str,
    amount: &'static str,
}

const DOMAINS: [Domain; 3] = [
    Domain {
        files: &["sales.csv", "orders_export.csv", "sales_2024.csv"],
        group: &["region", "territory", "area"],
        group_values: &["North", "South", "East", "West", "Central", "Coastal", "Highlands"],
        cat: &["channel", "sales_channel"],
        cat_values: &["online", "retail", "wholesale"],
        x: &["units", "quantity", "qty"],
        y: &["unit_price", "price", "price_eur"],
        x_range: (1, 120),
        y_range: (150, 45_000),
        what: "sales records",
        amount: "revenue (units times price)",
    },
    Domain {
        files: &["readings.csv", "sensor_log.csv", "telemetry.csv"],
        group: &["station", "site", "location"],
        group_values: &["Alder", "Birch", "Cedar", "Dogwood", "Elm", "Fir", "Hazel"],
        cat: &["sensor", "sensor_type"],
        cat_values: &["thermal", "humidity", "pressure"],
        x: &["samples", "sample_count", "n_samples"],
        y: &["reading", "value", "mean_value"],
        x_range: (5, 400),
        y_range: (-2_000, 9_000),
        what: "sensor readings",
        amount: "weighted total (samples times reading)",
    },
    Domain {
        files: &["payroll.csv", "timesheet.csv", "hours.csv"],
        group: &["department", "team", "unit"],
        group_values: &["Finance", "Legal", "Ops", "Research", "Sales", "Support", "Design"],
        cat: &["contract", "employment_type"],
        cat_values: &["full_time", "part_time", "contractor"],
        x: &["hours", "hours_worked", "billable_hours"],
        y: &["rate", "hourly_rate", "pay_rate"],
        x_range: (1, 60),
        y_range: (1_500, 12_000),
        what: "payroll records",
        amount: "pay (hours times rate)",
    },
];

struct Row {
    group: usize,
    cat: usize,
    month: u32,
    x: i64,
    /// Exact value in hundredths.
    y100: i64,
}

impl Row {
    fn y(&self) -> f64 {
        self.y100 as f64 / 100.0
    }
    fn amount(&self) -> f64 {
        self.x as f64 * self.y()
    }
}

struct Data {
    dom: &'static Domain,
    file: &'static str,
    group: &'static str,
    cat: &'static str,
    x: &'static str,
    y: &'static str,
    groups: Vec<&'static str>,
    year: u32,
    rows: Vec<Row>,
    csv: String,
}

#[derive(Clone, Debug)]
enum Q {
    Count { g: usize, month: Option<u32> },
    MeanY { g: usize, c: Option<usize> },
    SumXMonth { month: u32, c: Option<usize> },
    TopGroup { c: Option<usize>, quarter: Option<u32> },
    MedianY { g: usize, c: Option<usize> },
    MedianAmount { g: usize, c: Option<usize> },
    PStdevX { g: usize, c: Option<usize> },
    PStdevY { g: usize, c: Option<usize> },
    TopMonth { g: Option<usize>, c: usize },
    Share { g: usize, c: usize, quarter: Option<u32> },
    Corr { g: usize, c: Option<usize> },
}

impl Q {
    fn difficulty(&self) -> u8 {
        match self {
            Q::Count { .. } => 1,
            Q::MeanY { .. } | Q::SumXMonth { .. } => 2,
            Q::TopGroup { .. } | Q::MedianY { .. } | Q::MedianAmount { .. } => 3,
            Q::PStdevX { .. } | Q::PStdevY { .. } | Q::TopMonth { .. } => 4,
            Q::Share { .. } | Q::Corr { .. } => 5,
        }
    }
}

fn opts<T>(xs: impl Iterator<Item = T>) -> impl Iterator<Item = Option<T>> {
    std::iter::once(None).chain(xs.map(Some))
}

fn candidates(d: &Data, diff: u8) -> Vec<Q> {
    let ng = d.groups.len();
    let nc = d.dom.cat_values.len();
    let mut out = Vec::new();
    match diff {
        1 => {
            for g in 0..ng {
                for month in opts(1..=12u32) {
                    out.push(Q::Count { g, month });
                }
            }
        }
        2 => {
            for g in 0..ng {
                for c in opts(0..nc) {
                    out.push(Q::MeanY { g, c });
                }
            }
            for month in 1..=12 {
                for c in opts(0..nc) {
                    out.push(Q::SumXMonth { month, c });
                }
            }
        }
        3 => {
            for c in opts(0..nc) {
                for quarter in opts(1..=4u32) {
                    out.push(Q::TopGroup { c, quarter });
                }
            }
            for g in 0..ng {
                for c in opts(0..nc) {
                    out.push(Q::MedianY { g, c });
                    out.push(Q::MedianAmount { g, c });
                }
            }
        }
        4 => {
            for g in 0..ng {
                for c in opts(0..nc) {
                    out.push(Q::PStdevX { g, c });
                    out.push(Q::PStdevY { g, c });
                }
            }
            for g in opts(0..ng) {
                for c in 0..nc {
                    out.push(Q::TopMonth { g, c });
                }
            }
        }
        _ => {
            for g in 0..ng {
                for c in 0..nc {
                    for quarter in opts(1..=4u32) {
                        out.push(Q::Share { g, c, quarter });
                    }
                }
                for c in opts(0..nc) {
                    out.push(Q::Corr { g, c });
                }
            }
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn pstdev(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt())
}

fn corr(x: &[f64], y: &[f64]) -> Option<f64> {
    let (mx, my) = (mean(x)?, mean(y)?);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let syy: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
    (x.len() >= 3 && sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// A rendered question: prompt, Python that answers it, expected answer (None = degenerate).
struct Rendered {
    prompt: String,
    code: String,
    expected: Option<Value>,
}

fn render(d: &Data, q: &Q) -> Rendered {
    let (gcol, ccol, xcol, ycol) = (d.group, d.cat, d.x, d.y);
    let gname = |g: usize| d.groups[g];
    let cname = |c: usize| d.dom.cat_values[c];
    let month = |m: u32| format!("{}-{:02}", d.year, m);
    let in_quarter =
        |r: &Row, q: Option<u32>| q.is_none_or(|q| (3 * q - 2..=3 * q).contains(&r.month));
    let sel = |g: Option<usize>, c: Option<usize>, m: Option<u32>, q: Option<u32>| -> Vec<&Row> {
        d.rows
            .iter()
            .filter(|r| {
                g.is_none_or(|g| r.group == g)
                    && c.is_none_or(|c| r.cat == c)
                    && m.is_none_or(|m| r.month == m)
                    && in_quarter(r, q)
            })
            .collect()
    };
    // Python filter expression and English description.
    let cond =
        |g: Option<usize>, c: Option<usize>, m: Option<u32>, q: Option<u32>| -> (String, String) {
            let mut py = Vec::new();
            let mut en = Vec::new();
            if let Some(g) = g {
                py.push(format!("r[{gcol:?}] == {:?}", gname(g)));
                en.push(format!("{gcol} is {}", gname(g)));
            }
            if let Some(c) = c {
                py.push(format!("r[{ccol:?}] == {:?}", cname(c)));
                en.push(format!("{ccol} is {}", cname(c)));
            }
            if let Some(m) = m {
                py.push(format!("r[\"month\"] == {:?}", month(m)));
                en.push(format!("month is {}", month(m)));
            }
            if let Some(q) = q {
                py.push(format!("{:?} <= r[\"month\"] <= {:?}", month(3 * q - 2), month(3 * q)));
                en.push(format!(
                    "month is between {} and {} inclusive",
                    month(3 * q - 2),
                    month(3 * q)
                ));
            }
            let py = if py.is_empty() { "True".to_owned() } else { py.join(" and ") };
            let en = if en.is_empty() {
                "all rows".to_owned()
            } else {
                format!("rows where {}", en.join(" and "))
            };
            (py, en)
        };
    let head = format!(
        "import csv, statistics\nwith open({:?}, newline=\"\") as f:\n    rows = list(csv.DictReader(f))\n",
        d.file
    );
    let (prompt, body, expected) = match *q {
        Q::Count { g, month: m } => {
            let (py, en) = cond(Some(g), None, m, None);
            let n = sel(Some(g), None, m, None).len() as i64;
            (
                format!("How many {} are there among {en}? Answer with an integer.", d.dom.what),
                format!("sel = [r for r in rows if {py}]\nprint(len(sel))\n"),
                Some(answer::int(n)),
            )
        }
        Q::MeanY { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let v: Vec<f64> = sel(Some(g), c, None, None).iter().map(|r| r.y()).collect();
            (
                format!("What is the mean of {ycol} over {en}? Round to 2 decimal places."),
                format!(
                    "vals = [float(r[{ycol:?}]) for r in rows if {py}]\nprint(round(statistics.mean(vals), 2))\n"
                ),
                mean(&v).map(|m| answer::number(m, 2)),
            )
        }
        Q::SumXMonth { month: m, c } => {
            let (py, en) = cond(None, c, Some(m), None);
            let s: i64 = sel(None, c, Some(m), None).iter().map(|r| r.x).sum();
            (
                format!("What is the total of {xcol} over {en}? Answer with an integer."),
                format!("print(sum(int(r[{xcol:?}]) for r in rows if {py}))\n"),
                Some(answer::int(s)),
            )
        }
        Q::TopGroup { c, quarter } => {
            let (py, en) = cond(None, c, None, quarter);
            let mut totals: Vec<(String, f64)> = Vec::new();
            for r in sel(None, c, None, quarter) {
                let name = gname(r.group);
                match totals.iter_mut().find(|t| t.0 == name) {
                    Some(t) => t.1 += r.amount(),
                    None => totals.push((name.to_owned(), r.amount())),
                }
            }
            totals.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            (
                format!(
                    "Considering {en}, which {gcol} has the highest total {}? Break ties alphabetically; answer with the {gcol} name.",
                    d.dom.amount
                ),
                format!(
                    "totals = {{}}\nfor r in rows:\n    if {py}:\n        totals[r[{gcol:?}]] = totals.get(r[{gcol:?}], 0.0) + int(r[{xcol:?}]) * float(r[{ycol:?}])\nbest = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[0]\nprint(best[0])\n"
                ),
                totals.first().map(|t| answer::text(&t.0)),
            )
        }
        Q::MedianY { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let v: Vec<f64> = sel(Some(g), c, None, None).iter().map(|r| r.y()).collect();
            (
                format!("What is the median of {ycol} over {en}? Round to 2 decimal places."),
                format!(
                    "vals = [float(r[{ycol:?}]) for r in rows if {py}]\nprint(round(statistics.median(vals), 2))\n"
                ),
                median(v).map(|m| answer::number(m, 2)),
            )
        }
        Q::MedianAmount { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let v: Vec<f64> = sel(Some(g), c, None, None).iter().map(|r| r.amount()).collect();
            (
                format!(
                    "What is the median {} per row over {en}? Round to 2 decimal places.",
                    d.dom.amount
                ),
                format!(
                    "vals = [int(r[{xcol:?}]) * float(r[{ycol:?}]) for r in rows if {py}]\nprint(round(statistics.median(vals), 2))\n"
                ),
                median(v).map(|m| answer::number(m, 2)),
            )
        }
        Q::PStdevX { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let v: Vec<f64> = sel(Some(g), c, None, None).iter().map(|r| r.x as f64).collect();
            (
                format!(
                    "What is the population standard deviation of {xcol} over {en}? Round to 2 decimal places."
                ),
                format!(
                    "vals = [int(r[{xcol:?}]) for r in rows if {py}]\nprint(round(statistics.pstdev(vals), 2))\n"
                ),
                pstdev(&v).filter(|s| *s > 0.0).map(|s| answer::number(s, 2)),
            )
        }
        Q::PStdevY { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let v: Vec<f64> = sel(Some(g), c, None, None).iter().map(|r| r.y()).collect();
            (
                format!(
                    "What is the population standard deviation of {ycol} over {en}? Round to 2 decimal places."
                ),
                format!(
                    "vals = [float(r[{ycol:?}]) for r in rows if {py}]\nprint(round(statistics.pstdev(vals), 2))\n"
                ),
                pstdev(&v).filter(|s| *s > 0.0).map(|s| answer::number(s, 2)),
            )
        }
        Q::TopMonth { g, c } => {
            let (py, en) = cond(g, Some(c), None, None);
            let mut totals = [0i64; 13];
            for r in sel(g, Some(c), None, None) {
                totals[r.month as usize] += r.x;
            }
            let best = (1..=12u32)
                .max_by(|&a, &b| totals[a as usize].cmp(&totals[b as usize]).then(b.cmp(&a)));
            (
                format!(
                    "Considering {en}, which month (YYYY-MM) has the largest total {xcol}? Break ties by the earliest month."
                ),
                format!(
                    "totals = {{}}\nfor r in rows:\n    if {py}:\n        totals[r[\"month\"]] = totals.get(r[\"month\"], 0) + int(r[{xcol:?}])\nprint(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])\n"
                ),
                best.filter(|&m| totals[m as usize] > 0).map(|m| answer::text(&month(m))),
            )
        }
        Q::Share { g, c, quarter } => {
            let (py, en) = cond(Some(g), None, None, quarter);
            let rows = sel(Some(g), None, None, quarter);
            let total: f64 = rows.iter().map(|r| r.amount()).sum();
            let part: f64 = rows.iter().filter(|r| r.cat == c).map(|r| r.amount()).sum();
            let pct = 100.0 * part / total;
            (
                format!(
                    "Considering {en}, what percentage of the total {} comes from rows whose {ccol} is {}? Round to 2 decimal places.",
                    d.dom.amount,
                    cname(c)
                ),
                format!(
                    "sel = [r for r in rows if {py}]\ntotal = sum(int(r[{xcol:?}]) * float(r[{ycol:?}]) for r in sel)\npart = sum(int(r[{xcol:?}]) * float(r[{ycol:?}]) for r in sel if r[{ccol:?}] == {:?})\nprint(round(100 * part / total, 2))\n",
                    cname(c)
                ),
                (total > 0.0 && (0.0..=100.0).contains(&pct)).then(|| answer::percent(pct, 2)),
            )
        }
        Q::Corr { g, c } => {
            let (py, en) = cond(Some(g), c, None, None);
            let rows = sel(Some(g), c, None, None);
            let xs: Vec<f64> = rows.iter().map(|r| r.x as f64).collect();
            let ys: Vec<f64> = rows.iter().map(|r| r.y()).collect();
            (
                format!(
                    "What is the Pearson correlation between {xcol} and {ycol} over {en}? Round to 3 decimal places."
                ),
                format!(
                    "sel = [r for r in rows if {py}]\nxs = [int(r[{xcol:?}]) for r in sel]\nys = [float(r[{ycol:?}]) for r in sel]\nprint(round(statistics.correlation(xs, ys), 3))\n"
                ),
                corr(&xs, &ys).filter(|v| v.abs() > 0.002).map(|v| answer::number(v, 3)),
            )
        }
    };
    Rendered { prompt, code: format!("{head}{body}"), expected }
}

fn generate(r: &mut impl Rng) -> Data {
    let dom = &DOMAINS[r.random_range(0..DOMAINS.len())];
    let pick =
        |r: &mut dyn rand::RngCore, xs: &'static [&'static str]| xs[r.random_range(0..xs.len())];
    let file = pick(r, dom.files);
    let (group, cat, x, y) = (pick(r, dom.group), pick(r, dom.cat), pick(r, dom.x), pick(r, dom.y));
    let mut groups = dom.group_values.to_vec();
    groups.shuffle(r);
    groups.truncate(r.random_range(4..=6));
    let year = r.random_range(2018..=2025);
    let n = r.random_range(200..=400);
    let mut rows: Vec<Row> = (0..n)
        .map(|_| Row {
            group: r.random_range(0..groups.len()),
            cat: r.random_range(0..dom.cat_values.len()),
            month: r.random_range(1..=12),
            x: r.random_range(dom.x_range.0..=dom.x_range.1),
            y100: r.random_range(dom.y_range.0..=dom.y_range.1),
        })
        .collect();
    rows.sort_by_key(|r| r.month);
    let mut csv = format!("month,{group},{cat},{x},{y}\n");
    for row in &rows {
        let yv = row.y100;
        let ytext =
            format!("{}{}.{:02}", if yv < 0 { "-" } else { "" }, yv.abs() / 100, yv.abs() % 100);
        csv.push_str(&format!(
            "{year}-{:02},{},{},{},{}\n",
            row.month, groups[row.group], dom.cat_values[row.cat], row.x, ytext
        ));
    }
    Data { dom, file, group, cat, x, y, groups, year, rows, csv }
}

// ---------------------------------------------------------------------------------------------

/// The code-interpreter family.
pub struct CodeFamily;

impl Family for CodeFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: INSTANCES, tasks_per_instance: TASKS }
    }
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
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Error::check_instance_seed(NAME, instance_seed, INSTANCES)?;
        let sandbox = Sandbox::shared()
            .map_err(|reason| Error::Unavailable { family: NAME.into(), reason })?;
        Ok(Arc::new(CodeInstance::build(instance_seed, sandbox)?))
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
        let mut questions: [Vec<Q>; 5] = Default::default();
        for (i, qs) in questions.iter_mut().enumerate() {
            let mut c = candidates(&data, i as u8 + 1);
            c.shuffle(&mut r);
            if (c.len() as u64) < TASKS / 5 {
                return Err(Error::Generation {
                    family: NAME.into(),
                    reason: format!(
                        "instance {seed}: only {} questions of difficulty {}",
                        c.len(),
                        i + 1
                    ),
                });
            }
            *qs = c;
        }
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
        if let Some(hit) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(code) {
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
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
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
