//! The questions of the sql family: the candidate questions per difficulty ([`Q`],
//! [`candidates`]) and their rendering into a prompt, the SQL that answers it and the answer's
//! shape ([`render`]).

use super::*;

// ---------------------------------------------------------------------------------------------
// Questions.

#[derive(Clone, Debug)]
pub(super) enum Q {
    /// d1: count fact rows with a status (and optionally a month).
    CountStatus { status: usize, month: Option<u32> },
    /// d1: count `a` rows in a city (and optionally a segment).
    CountCity { city: usize, seg: Option<usize> },
    /// d2: total quantity of a category with a status.
    QtyCategory { cat: usize, status: usize },
    /// d2: distinct `a` with a status in a month.
    DistinctActive { status: usize, month: u32 },
    /// d3: amount for a city with a status (2 decimals).
    AmountCity { city: usize, status: usize },
    /// d3: average price of a category's `b` bought by a segment (2 decimals).
    AvgPriceSeg { cat: usize, seg: usize },
    /// d4: top `b` by quantity for a segment in a quarter with a status.
    TopB { seg: usize, quarter: u32, status: usize },
    /// d4: city with the highest average amount per fact row in a category.
    TopCityAvg { cat: usize, status: usize },
    /// d5: share (percent) of a city's amount that comes from a category.
    Share { city: usize, cat: usize },
    /// d5: top-3 `a` by amount in a category and quarter.
    Top3A { cat: usize, quarter: u32 },
}

impl Q {
    pub(super) fn difficulty(&self) -> u8 {
        match self {
            Q::CountStatus { .. } | Q::CountCity { .. } => 1,
            Q::QtyCategory { .. } | Q::DistinctActive { .. } => 2,
            Q::AmountCity { .. } | Q::AvgPriceSeg { .. } => 3,
            Q::TopB { .. } | Q::TopCityAvg { .. } => 4,
            Q::Share { .. } | Q::Top3A { .. } => 5,
        }
    }
}

/// All question candidates of difficulty `d` for a schema (deterministic order).
pub(super) fn candidates(s: &Schema, d: u8) -> Vec<Q> {
    let mut out = Vec::new();
    let (nc, ng, nk, ns) = (s.cities.len(), s.segs.len(), s.cats.len(), s.statuses.len());
    match d {
        1 => {
            for status in 0..ns {
                out.push(Q::CountStatus { status, month: None });
                for m in 1..=12 {
                    out.push(Q::CountStatus { status, month: Some(m) });
                }
            }
            for city in 0..nc {
                out.push(Q::CountCity { city, seg: None });
                for seg in 0..ng {
                    out.push(Q::CountCity { city, seg: Some(seg) });
                }
            }
        }
        2 => {
            for cat in 0..nk {
                for status in 0..ns {
                    out.push(Q::QtyCategory { cat, status });
                }
            }
            for status in 0..ns {
                for month in 1..=12 {
                    out.push(Q::DistinctActive { status, month });
                }
            }
        }
        3 => {
            for city in 0..nc {
                for status in 0..ns {
                    out.push(Q::AmountCity { city, status });
                }
            }
            for cat in 0..nk {
                for seg in 0..ng {
                    out.push(Q::AvgPriceSeg { cat, seg });
                }
            }
        }
        4 => {
            for seg in 0..ng {
                for quarter in 1..=4 {
                    for status in 0..ns {
                        out.push(Q::TopB { seg, quarter, status });
                    }
                }
            }
            for cat in 0..nk {
                for status in 0..ns {
                    out.push(Q::TopCityAvg { cat, status });
                }
            }
        }
        _ => {
            for city in 0..nc {
                for cat in 0..nk {
                    out.push(Q::Share { city, cat });
                }
            }
            for cat in 0..nk {
                for quarter in 1..=4 {
                    out.push(Q::Top3A { cat, quarter });
                }
            }
        }
    }
    out
}

/// How the answer of a question is read from its query result.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Int,
    Dec2,
    Pct2,
    Text,
    List,
}

/// A question rendered: user prompt, the SQL that answers it, the answer shape, the tables it
/// touches and the filter columns whose values a careful analyst would look up first.
pub(super) struct Rendered {
    pub(super) prompt: String,
    pub(super) sql: String,
    pub(super) shape: Shape,
    pub(super) tables: Vec<String>,
    pub(super) lookups: Vec<String>,
}

pub(super) fn quarter_range(s: &Schema, q: u32) -> (String, String) {
    (s.month(3 * q - 2), s.month(3 * q))
}

pub(super) fn render(s: &Schema, q: &Q) -> Rendered {
    let d = s.dom;
    let (cj, cx) = s.city();
    let city_table = s.c.map(str::to_owned);
    let mut tables = Vec::new();
    let lit = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let month_name = |m: u32| format!("{}-{:02}", s.year, m);
    let fab_tables = |with_city: bool| {
        let mut t = vec![s.f.to_owned(), s.a.to_owned(), s.b.to_owned()];
        if with_city {
            t.extend(city_table.clone());
        }
        t
    };
    let (prompt, sql, shape, lookups) = match *q {
        Q::CountStatus { status, month } => {
            tables.push(s.f.to_owned());
            let st = s.statuses[status];
            let (mtext, mwhere) = match month {
                Some(m) => (
                    format!(" in {}", month_name(m)),
                    format!(" AND {} = {}", s.f_month, lit(&s.month(m))),
                ),
                None => (String::new(), String::new()),
            };
            (
                format!(
                    "How many {} records have status '{st}'{mtext}? Answer with a single integer.",
                    d.f_noun
                ),
                format!("SELECT COUNT(*) FROM {} WHERE {} = {}{mwhere}", s.f, s.f_status, lit(st)),
                Shape::Int,
                vec![format!("SELECT DISTINCT {} FROM {}", s.f_status, s.f)],
            )
        }
        Q::CountCity { city, seg } => {
            tables.push(s.a.to_owned());
            tables.extend(city_table.clone());
            let c = s.cities[city];
            let (stext, swhere) = match seg {
                Some(g) => (
                    format!(" with {} '{}'", d.seg_noun, s.segs[g]),
                    format!(" AND a.{} = {}", s.a_seg, lit(s.segs[g])),
                ),
                None => (String::new(), String::new()),
            };
            (
                format!(
                    "How many {}s are located in the {} {c}{stext}? Answer with a single integer.",
                    d.a_noun, d.city_noun
                ),
                format!("SELECT COUNT(*) FROM {} a{cj} WHERE {cx} = {}{swhere}", s.a, lit(c)),
                Shape::Int,
                vec![],
            )
        }
        Q::QtyCategory { cat, status } => {
            tables.extend([s.f.to_owned(), s.b.to_owned()]);
            let k = s.cats[cat];
            let st = s.statuses[status];
            (
                format!(
                    "What is the total number of {} over all {} records with status '{st}' for {}s in the {} '{k}'? Answer with a single integer.",
                    d.qty_noun, d.f_noun, d.b_noun, d.cat_noun
                ),
                format!(
                    "SELECT COALESCE(SUM(f.{q}), 0) FROM {f} f JOIN {b} b ON b.id = f.{fb} WHERE b.{bc} = {k} AND f.{fs} = {st}",
                    q = s.f_qty,
                    f = s.f,
                    b = s.b,
                    fb = s.f_b,
                    bc = s.b_cat,
                    fs = s.f_status,
                    k = lit(k),
                    st = lit(st)
                ),
                Shape::Int,
                vec![format!("SELECT DISTINCT {} FROM {}", s.b_cat, s.b)],
            )
        }
        Q::DistinctActive { status, month } => {
            tables.push(s.f.to_owned());
            let st = s.statuses[status];
            (
                format!(
                    "How many distinct {}s have at least one {} record with status '{st}' in {}? Answer with a single integer.",
                    d.a_noun,
                    d.f_noun,
                    month_name(month)
                ),
                format!(
                    "SELECT COUNT(DISTINCT {fa}) FROM {f} WHERE {fs} = {st} AND {fm} = {m}",
                    fa = s.f_a,
                    f = s.f,
                    fs = s.f_status,
                    fm = s.f_month,
                    st = lit(st),
                    m = lit(&s.month(month))
                ),
                Shape::Int,
                vec![],
            )
        }
        Q::AmountCity { city, status } => {
            tables = fab_tables(true);
            let c = s.cities[city];
            let st = s.statuses[status];
            (
                format!(
                    "What is the total {} of {} records with status '{st}' placed by {}s in the {} {c}? Round to 2 decimal places.",
                    d.amount_noun, d.f_noun, d.a_noun, d.city_noun
                ),
                format!(
                    "SELECT ROUND(COALESCE(SUM(f.{q} * b.{p}), 0), 2) FROM {fab} WHERE {cx} = {c} AND f.{fs} = {st}",
                    q = s.f_qty,
                    p = s.b_price,
                    fab = s.fab(),
                    fs = s.f_status,
                    c = lit(c),
                    st = lit(st)
                ),
                Shape::Dec2,
                vec![format!("SELECT DISTINCT {} FROM {}", s.f_status, s.f)],
            )
        }
        Q::AvgPriceSeg { cat, seg } => {
            tables.extend([s.b.to_owned(), s.f.to_owned(), s.a.to_owned()]);
            let k = s.cats[cat];
            let g = s.segs[seg];
            (
                format!(
                    "Among {}s in the {} '{k}' that appear in at least one {} record of a {} with {} '{g}' (any status), what is the average {}? Round to 2 decimal places.",
                    d.b_noun, d.cat_noun, d.f_noun, d.a_noun, d.seg_noun, s.b_price
                ),
                format!(
                    "SELECT ROUND(AVG(b.{p}), 2) FROM {b} b WHERE b.{bc} = {k} AND b.id IN (SELECT f.{fb} FROM {f} f JOIN {a} a ON a.id = f.{fa} WHERE a.{ag} = {g})",
                    p = s.b_price,
                    b = s.b,
                    bc = s.b_cat,
                    fb = s.f_b,
                    f = s.f,
                    a = s.a,
                    fa = s.f_a,
                    ag = s.a_seg,
                    k = lit(k),
                    g = lit(g)
                ),
                Shape::Dec2,
                vec![format!("SELECT DISTINCT {} FROM {}", s.a_seg, s.a)],
            )
        }
        Q::TopB { seg, quarter, status } => {
            tables = fab_tables(false);
            let g = s.segs[seg];
            let st = s.statuses[status];
            let (m0, m1) = quarter_range(s, quarter);
            (
                format!(
                    "Which {} has the largest total {} in {} records with status '{st}' from {}s with {} '{g}' between {m0} and {m1} inclusive? Break ties by name in alphabetical order; answer with the {} name.",
                    d.b_noun, d.qty_noun, d.f_noun, d.a_noun, d.seg_noun, d.b_noun
                ),
                format!(
                    "SELECT b.name FROM {fab} WHERE a.{ag} = {g} AND f.{fs} = {st} AND f.{fm} BETWEEN {m0} AND {m1} GROUP BY b.id ORDER BY SUM(f.{q}) DESC, b.name ASC LIMIT 1",
                    fab = s.fab(),
                    ag = s.a_seg,
                    fs = s.f_status,
                    fm = s.f_month,
                    q = s.f_qty,
                    g = lit(g),
                    st = lit(st),
                    m0 = lit(&m0),
                    m1 = lit(&m1)
                ),
                Shape::Text,
                vec![
                    format!("SELECT DISTINCT {} FROM {}", s.a_seg, s.a),
                    format!("SELECT MIN({m}), MAX({m}) FROM {}", s.f, m = s.f_month),
                ],
            )
        }
        Q::TopCityAvg { cat, status } => {
            tables = fab_tables(true);
            let k = s.cats[cat];
            let st = s.statuses[status];
            (
                format!(
                    "Considering only {} records with status '{st}' for {}s in the {} '{k}', which {} (of the {}) has the highest average {} per record? Break ties alphabetically; answer with the {} name.",
                    d.f_noun,
                    d.b_noun,
                    d.cat_noun,
                    d.city_noun,
                    d.a_noun,
                    d.amount_noun,
                    d.city_noun
                ),
                format!(
                    "SELECT {cx} FROM {fab} WHERE b.{bc} = {k} AND f.{fs} = {st} GROUP BY {cx} ORDER BY AVG(f.{q} * b.{p}) DESC, {cx} ASC LIMIT 1",
                    fab = s.fab(),
                    bc = s.b_cat,
                    fs = s.f_status,
                    q = s.f_qty,
                    p = s.b_price,
                    k = lit(k),
                    st = lit(st)
                ),
                Shape::Text,
                vec![
                    format!("SELECT DISTINCT {} FROM {}", s.b_cat, s.b),
                    format!("SELECT DISTINCT {} FROM {}", s.f_status, s.f),
                ],
            )
        }
        Q::Share { city, cat } => {
            tables = fab_tables(true);
            let c = s.cities[city];
            let k = s.cats[cat];
            let st = s.statuses[0];
            (
                format!(
                    "For {}s in the {} {c}, what percentage of their total {} over {} records with status '{st}' comes from {}s in the {} '{k}'? Give the percentage rounded to 2 decimal places.",
                    d.a_noun, d.city_noun, d.amount_noun, d.f_noun, d.b_noun, d.cat_noun
                ),
                format!(
                    "SELECT ROUND(100.0 * SUM(CASE WHEN b.{bc} = {k} THEN f.{q} * b.{p} ELSE 0 END) / SUM(f.{q} * b.{p}), 2) FROM {fab} WHERE {cx} = {c} AND f.{fs} = {st}",
                    bc = s.b_cat,
                    q = s.f_qty,
                    p = s.b_price,
                    fab = s.fab(),
                    fs = s.f_status,
                    k = lit(k),
                    c = lit(c),
                    st = lit(st)
                ),
                Shape::Pct2,
                vec![
                    format!("SELECT DISTINCT {} FROM {}", s.b_cat, s.b),
                    format!("SELECT DISTINCT {} FROM {}", s.f_status, s.f),
                ],
            )
        }
        Q::Top3A { cat, quarter } => {
            tables = fab_tables(false);
            let k = s.cats[cat];
            let st = s.statuses[0];
            let (m0, m1) = quarter_range(s, quarter);
            (
                format!(
                    "List the top 3 {}s by total {} from {} records with status '{st}' for {}s in the {} '{k}' between {m0} and {m1} inclusive, highest first (break ties alphabetically). Answer with the three names separated by commas.",
                    d.a_noun, d.amount_noun, d.f_noun, d.b_noun, d.cat_noun
                ),
                format!(
                    "SELECT a.name FROM {fab} WHERE b.{bc} = {k} AND f.{fs} = {st} AND f.{fm} BETWEEN {m0} AND {m1} GROUP BY a.id ORDER BY SUM(f.{q} * b.{p}) DESC, a.name ASC LIMIT 3",
                    fab = s.fab(),
                    bc = s.b_cat,
                    fs = s.f_status,
                    fm = s.f_month,
                    q = s.f_qty,
                    p = s.b_price,
                    k = lit(k),
                    st = lit(st),
                    m0 = lit(&m0),
                    m1 = lit(&m1)
                ),
                Shape::List,
                vec![
                    format!("SELECT DISTINCT {} FROM {}", s.b_cat, s.b),
                    format!("SELECT MIN({m}), MAX({m}) FROM {}", s.f, m = s.f_month),
                ],
            )
        }
    };
    Rendered { prompt, sql, shape, tables, lookups }
}
