//! The code family's questions: candidates per difficulty ([`Q`], [`candidates`]), the
//! statistics that compute their answers, and rendering into a prompt and a solution script
//! ([`render`]).

use super::*;

#[derive(Clone, Debug)]
pub(super) enum Q {
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
    pub(super) fn difficulty(&self) -> u8 {
        match self {
            Q::Count { .. } => 1,
            Q::MeanY { .. } | Q::SumXMonth { .. } => 2,
            Q::TopGroup { .. } | Q::MedianY { .. } | Q::MedianAmount { .. } => 3,
            Q::PStdevX { .. } | Q::PStdevY { .. } | Q::TopMonth { .. } => 4,
            Q::Share { .. } | Q::Corr { .. } => 5,
        }
    }
}

pub(super) fn opts<T>(xs: impl Iterator<Item = T>) -> impl Iterator<Item = Option<T>> {
    std::iter::once(None).chain(xs.map(Some))
}

pub(super) fn candidates(d: &Data, diff: u8) -> Vec<Q> {
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

pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

pub(super) fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

pub(super) fn pstdev(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt())
}

pub(super) fn corr(x: &[f64], y: &[f64]) -> Option<f64> {
    let (mx, my) = (mean(x)?, mean(y)?);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let syy: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
    (x.len() >= 3 && sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// A rendered question: prompt, Python that answers it, expected answer (None = degenerate).
pub(super) struct Rendered {
    pub(super) prompt: String,
    pub(super) code: String,
    pub(super) expected: Option<Value>,
}

pub(super) fn render(d: &Data, q: &Q) -> Rendered {
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
