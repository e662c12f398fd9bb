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
use crate::families::common::{Base, Slots, TaskParts, difficulty_slot, turn};
use crate::framework::{
    Availability, Check, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::limits::{self, codes as limit_codes};
use crate::util::{call, rng};

const NAME: &str = "sql";
const VERSION: u32 = 2;
const INSTANCES: u64 = 1000;
const TASKS: u64 = 200;
/// Progress-handler callbacks (every 1,000 VM steps) before a query is interrupted.
const STEP_BUDGET: u32 = 4_000;
/// Rows returned to the agent per query.
const ROW_CAP: usize = 50;

// ---------------------------------------------------------------------------------------------
// Schema variants.

/// One domain of the star schema: synonyms for each role and the vocabulary of the questions.
struct Domain {
    title: &'static str,
    a_table: &'static [&'static str],
    a_city: &'static [&'static str],
    a_seg: &'static [&'static str],
    seg_values: &'static [&'static str],
    b_table: &'static [&'static str],
    b_cat: &'static [&'static str],
    cat_values: &'static [&'static str],
    b_price: &'static [&'static str],
    f_table: &'static [&'static str],
    f_qty: &'static [&'static str],
    f_status: &'static [&'static str],
    status_values: &'static [&'static str],
    f_month: &'static [&'static str],
    /// Nouns: a, b, fact row, quantity, price, amount (qty * price), segment, category.
    a_noun: &'static str,
    b_noun: &'static str,
    f_noun: &'static str,
    qty_noun: &'static str,
    amount_noun: &'static str,
    seg_noun: &'static str,
    cat_noun: &'static str,
    city_noun: &'static str,
}

const DOMAINS: [Domain; 3] = [
    Domain {
        title: "an online retailer",
        a_table: &["customers", "clients", "buyers"],
        a_city: &["city", "home_city", "location"],
        a_seg: &["segment", "tier", "customer_type"],
        seg_values: &["consumer", "corporate", "small_business", "public_sector"],
        b_table: &["products", "catalog_items", "goods"],
        b_cat: &["category", "product_line", "family"],
        cat_values: &[
            "audio", "kitchen", "outdoor", "office", "toys", "fitness", "lighting", "storage",
        ],
        b_price: &["unit_price", "price", "list_price"],
        f_table: &["orders", "purchases", "order_lines"],
        f_qty: &["quantity", "qty", "units"],
        f_status: &["status", "order_status", "state"],
        status_values: &["completed", "cancelled", "returned"],
        f_month: &["order_month", "month", "period"],
        a_noun: "customer",
        b_noun: "product",
        f_noun: "order",
        qty_noun: "units",
        amount_noun: "revenue (quantity times unit price)",
        seg_noun: "segment",
        cat_noun: "category",
        city_noun: "city",
    },
    Domain {
        title: "a consulting firm's time tracking",
        a_table: &["employees", "staff", "consultants"],
        a_city: &["office", "base_office", "site"],
        a_seg: &["level", "grade", "band"],
        seg_values: &["junior", "associate", "senior", "principal"],
        b_table: &["projects", "engagements", "initiatives"],
        b_cat: &["practice", "department", "division"],
        cat_values: &[
            "analytics",
            "design",
            "cloud",
            "security",
            "strategy",
            "operations",
            "finance",
            "legal",
        ],
        b_price: &["hourly_rate", "bill_rate", "rate"],
        f_table: &["timesheets", "time_entries", "worklogs"],
        f_qty: &["hours", "hours_logged", "duration_h"],
        f_status: &["status", "approval", "review_state"],
        status_values: &["approved", "rejected", "pending"],
        f_month: &["work_month", "month", "period"],
        a_noun: "employee",
        b_noun: "project",
        f_noun: "timesheet entry",
        qty_noun: "hours",
        amount_noun: "billed amount (hours times hourly rate)",
        seg_noun: "level",
        cat_noun: "practice",
        city_noun: "office",
    },
    Domain {
        title: "a chain of stores",
        a_table: &["stores", "shops", "outlets"],
        a_city: &["city", "town", "market"],
        a_seg: &["format", "store_format", "kind"],
        seg_values: &["mall", "street", "airport", "warehouse"],
        b_table: &["items", "skus", "articles"],
        b_cat: &["department", "aisle", "dept"],
        cat_values: &[
            "grocery",
            "electronics",
            "apparel",
            "home",
            "beauty",
            "sports",
            "garden",
            "pets",
        ],
        b_price: &["price", "retail_price", "shelf_price"],
        f_table: &["sales", "sale_lines", "receipts"],
        f_qty: &["units", "quantity", "qty_sold"],
        f_status: &["status", "payment_status", "txn_state"],
        status_values: &["paid", "refunded", "voided"],
        f_month: &["sale_month", "month", "period"],
        a_noun: "store",
        b_noun: "item",
        f_noun: "sale line",
        qty_noun: "units",
        amount_noun: "sales amount (units times price)",
        seg_noun: "format",
        cat_noun: "department",
        city_noun: "city",
    },
];

const CITIES: &[&str] = &[
    "Arlen",
    "Brisby",
    "Caldera",
    "Dunmore",
    "Elsworth",
    "Fairhaven",
    "Glenrock",
    "Harrow",
    "Ivydale",
    "Jasper Bay",
    "Kestrel",
    "Lowmarsh",
    "Marlow",
    "Northgate",
    "Oakridge",
    "Pemberton",
    "Quarry Hill",
    "Redwater",
    "Stanmore",
    "Thistlewood",
    "Upton",
    "Valewick",
    "Westbrook",
    "Yarrow",
];
const COUNTRIES: &[&str] = &["Norland", "Sudmark", "Estavia", "Westria"];
const FIRST: &[&str] = &[
    "Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kira",
    "Luis", "Mira", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor",
    "Wren", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Abbott",
    "Baker",
    "Castro",
    "Dalton",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ibsen",
    "Jensen",
    "Kovacs",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Park",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
];
const ADJ: &[&str] = &[
    "Amber", "Bold", "Crisp", "Deft", "Eager", "Firm", "Grand", "Hardy", "Ideal", "Jolly", "Keen",
    "Lucid", "Mellow", "Noble", "Opal", "Prime", "Quiet", "Rapid", "Solid", "True", "Urban",
    "Vivid",
];
const NOUN: &[&str] = &[
    "Anchor", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris",
    "Juniper", "Kite", "Lantern", "Meadow", "Nova", "Orbit", "Pine", "Quartz", "Ridge", "Summit",
    "Tide",
];

/// The resolved schema of one instance.
struct Schema {
    dom: &'static Domain,
    a: &'static str,
    a_city: String,
    a_seg: &'static str,
    b: &'static str,
    b_cat: &'static str,
    b_price: &'static str,
    f: &'static str,
    f_a: String,
    f_b: String,
    f_qty: &'static str,
    f_status: &'static str,
    f_month: &'static str,
    /// The normalised city table, when cities are not inlined into `a`.
    c: Option<&'static str>,
    cities: Vec<&'static str>,
    segs: Vec<&'static str>,
    cats: Vec<&'static str>,
    statuses: Vec<&'static str>,
    year: u32,
}

impl Schema {
    /// `JOIN` clause for the city table (empty when inlined) and the city expression.
    fn city(&self) -> (String, String) {
        match self.c {
            Some(c) => (format!(" JOIN {c} c ON c.id = a.{}", self.a_city), "c.name".into()),
            None => (String::new(), format!("a.{}", self.a_city)),
        }
    }
    fn month(&self, m: u32) -> String {
        format!("{}-{:02}", self.year, m)
    }
    /// `f JOIN a JOIN b [JOIN c]`.
    fn fab(&self) -> String {
        let (cj, _) = self.city();
        format!(
            "{f} f JOIN {a} a ON a.id = f.{fa} JOIN {b} b ON b.id = f.{fb}{cj}",
            f = self.f,
            a = self.a,
            b = self.b,
            fa = self.f_a,
            fb = self.f_b
        )
    }
}

/// One distractor table: name and `(column, type)` list; rows generated from the types.
const DISTRACTORS: &[(&str, &[(&str, &str)])] = &[
    ("suppliers", &[("name", "TEXT"), ("country", "TEXT"), ("rating", "REAL")]),
    ("audit_log", &[("actor", "TEXT"), ("action", "TEXT"), ("logged_month", "TEXT")]),
    ("promotions", &[("code", "TEXT"), ("discount_pct", "INTEGER"), ("active", "INTEGER")]),
    ("budgets", &[("owner", "TEXT"), ("amount", "REAL"), ("fiscal_year", "INTEGER")]),
    ("tickets", &[("subject", "TEXT"), ("priority", "TEXT"), ("opened_month", "TEXT")]),
];

// ---------------------------------------------------------------------------------------------
// Questions.

#[derive(Clone, Debug)]
enum Q {
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
    fn difficulty(&self) -> u8 {
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
fn candidates(s: &Schema, d: u8) -> Vec<Q> {
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
enum Shape {
    Int,
    Dec2,
    Pct2,
    Text,
    List,
}

/// A question rendered: user prompt, the SQL that answers it, the answer shape, the tables it
/// touches and the filter columns whose values a careful analyst would look up first.
struct Rendered {
    prompt: String,
    sql: String,
    shape: Shape,
    tables: Vec<String>,
    lookups: Vec<String>,
}

fn quarter_range(s: &Schema, q: u32) -> (String, String) {
    (s.month(3 * q - 2), s.month(3 * q))
}

fn render(s: &Schema, q: &Q) -> Rendered {
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

// ---------------------------------------------------------------------------------------------
// The family.

/// The SQL analytics family.
pub struct SqlFamily;

impl Family for SqlFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: INSTANCES, tasks_per_instance: TASKS }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Error::check_instance_seed(NAME, instance_seed, INSTANCES)?;
        Ok(Arc::new(SqlInstance::build(instance_seed)?))
    }
}

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

struct Db {
    conn: Connection,
    steps: Arc<AtomicU32>,
    /// The current query's wall-clock backstop, in nanoseconds since [`clock_base`].
    deadline: Arc<AtomicU64>,
    /// Why the progress handler interrupted: 0 not, 1 step budget, 2 deadline.
    tripped: Arc<AtomicU8>,
    /// `(table, row count)` in creation order.
    tables: Vec<(String, i64)>,
    /// `describe_table` output per table.
    descs: Vec<(String, Value)>,
}

/// Column names, rows, and whether rows were cut at the cap.
type QueryRows = (Vec<String>, Vec<Vec<Value>>, bool);

/// A failed query: the message the agent sees and, for a bound, its limit code.
struct SqlFail {
    code: Option<&'static str>,
    msg: String,
}

impl SqlFail {
    fn plain(msg: impl Into<String>) -> Self {
        SqlFail { code: None, msg: msg.into() }
    }
    fn observation(self) -> ToolResult {
        match self.code {
            Some(code) => limits::limit_error(code, self.msg),
            None => ToolResult::error(self.msg),
        }
    }
}

fn clock_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos_since_base() -> u64 {
    clock_base().elapsed().as_nanos() as u64
}

fn sqlite_err(source: rusqlite::Error) -> Error {
    Error::Sqlite { family: NAME.into(), source }
}

fn pick<T: Copy>(r: &mut impl Rng, xs: &[T]) -> T {
    // Every list passed here is a non-empty constant.
    xs[r.random_range(0..xs.len())]
}

impl SqlInstance {
    fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[crate::util::name_hash(NAME), seed]);
        let dom = &DOMAINS[(seed % 3) as usize];
        let normalised = r.random_bool(0.4);
        let a = pick(&mut r, dom.a_table);
        let b = pick(&mut r, dom.b_table);
        let f = pick(&mut r, dom.f_table);
        let singular = |t: &str| t.strip_suffix('s').unwrap_or(t).replace("ie", "y").to_owned();
        let mut cities: Vec<&'static str> = CITIES.to_vec();
        cities.shuffle(&mut r);
        cities.truncate(r.random_range(8..=14));
        let mut cats: Vec<&'static str> = dom.cat_values.to_vec();
        cats.shuffle(&mut r);
        cats.truncate(r.random_range(6..=8));
        let schema = Schema {
            dom,
            a,
            a_city: if normalised {
                format!("{}_id", pick(&mut r, &["city", "location", "site"]))
            } else {
                pick(&mut r, dom.a_city).to_owned()
            },
            a_seg: pick(&mut r, dom.a_seg),
            b,
            b_cat: pick(&mut r, dom.b_cat),
            b_price: pick(&mut r, dom.b_price),
            f,
            f_a: format!("{}_id", singular(a)),
            f_b: format!("{}_id", singular(b)),
            f_qty: pick(&mut r, dom.f_qty),
            f_status: pick(&mut r, dom.f_status),
            f_month: pick(&mut r, dom.f_month),
            c: normalised.then(|| pick(&mut r, &["cities", "locations", "sites"])),
            cities,
            segs: dom.seg_values.to_vec(),
            cats,
            statuses: dom.status_values.to_vec(),
            year: r.random_range(2019..=2025),
        };
        let db = build_db(&schema, &mut r)?;
        let mut questions: [Vec<Q>; 5] = Default::default();
        for (i, qs) in questions.iter_mut().enumerate() {
            let mut c = candidates(&schema, i as u8 + 1);
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
        let mut allowed = vec!["list_tables", "describe_table", "run_query"];
        if r.random_bool(0.5) {
            allowed.push("sample_rows");
        }
        allowed.push("submit_answer");
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let company = format!("{} {}", pick(&mut r, ADJ), pick(&mut r, NOUN));
        let system_prompt = format!(
            "You are a data analyst at {company}, {title}. You have read-only access to the company's SQLite database through the tools. \
             Inspect the schema before writing queries, use exact column values as stored (look them up when unsure), and compute answers with SQL rather than by hand. \
             Queries may not modify data; each query returns at most {ROW_CAP} rows and is stopped if it runs too long. \
             When you know the answer, call submit_answer exactly once with the value only (no units); submissions are final.",
            title = dom.title
        );
        Ok(SqlInstance {
            base,
            schema,
            db: Mutex::new(db),
            questions,
            slots: Slots::default(),
            system_prompt,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Db> {
        // A poisoned lock only means another thread panicked mid-query; the connection is
        // still usable for read-only work.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run a read-only query under the step budget: `(columns, rows, truncated)`.
    fn query(&self, sql: &str, cap: usize) -> std::result::Result<QueryRows, SqlFail> {
        let db = self.lock();
        db.steps.store(0, Ordering::Relaxed);
        db.tripped.store(0, Ordering::Relaxed);
        db.deadline
            .store(nanos_since_base() + limits::SQL_DEADLINE.as_nanos() as u64, Ordering::Relaxed);
        let describe =
            |e: &rusqlite::Error| describe_sql_error(e, db.tripped.load(Ordering::Relaxed));
        let mut stmt = db.conn.prepare(sql).map_err(|e| describe(&e))?;
        if !stmt.readonly() {
            return Err(SqlFail::plain("only read-only SELECT statements are allowed"));
        }
        let cols: Vec<String> = stmt.column_names().iter().map(|c| (*c).to_owned()).collect();
        let n = cols.len();
        let mut rows_out = Vec::new();
        let mut truncated = false;
        let mut rows = stmt.query([]).map_err(|e| describe(&e))?;
        loop {
            match rows.next() {
                Ok(Some(row)) => {
                    if rows_out.len() == cap {
                        truncated = true;
                        break;
                    }
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(match row.get_ref(i) {
                            Ok(ValueRef::Integer(v)) => json!(v),
                            Ok(ValueRef::Real(v)) => json!(v),
                            Ok(ValueRef::Text(t)) => json!(String::from_utf8_lossy(t)),
                            Ok(ValueRef::Blob(b)) => json!(format!("<blob {} bytes>", b.len())),
                            _ => Value::Null,
                        });
                    }
                    rows_out.push(vals);
                }
                Ok(None) => break,
                Err(e) => return Err(describe(&e)),
            }
        }
        Ok((cols, rows_out, truncated))
    }

    /// The expected answer of a rendered question (`None` when degenerate: empty or zero).
    fn expected(&self, q: &Rendered) -> Result<Option<Value>> {
        let (_, rows, _) = self.query(&q.sql, 10).map_err(|f| Error::Generation {
            family: NAME.into(),
            reason: format!("{}: {}", f.msg, q.sql),
        })?;
        let first = rows.first().and_then(|r| r.first()).cloned().unwrap_or(Value::Null);
        Ok(match q.shape {
            Shape::Int => first.as_i64().filter(|&v| v >= 0).map(answer::int),
            Shape::Dec2 => first.as_f64().filter(|&v| v >= 0.0).map(|v| answer::number(v, 2)),
            Shape::Pct2 => {
                first.as_f64().filter(|&v| v > 0.0 && v < 100.0).map(|v| answer::percent(v, 2))
            }
            Shape::Text => first.as_str().map(answer::text),
            Shape::List => {
                let names: Vec<String> =
                    rows.iter().filter_map(|r| r.first()?.as_str().map(str::to_owned)).collect();
                (names.len() == 3).then(|| answer::list(&names))
            }
        })
    }
}

fn describe_sql_error(e: &rusqlite::Error, tripped: u8) -> SqlFail {
    use rusqlite::ErrorCode;
    let limit = |code, msg: String| SqlFail { code: Some(code), msg };
    match e {
        rusqlite::Error::MultipleStatement => {
            SqlFail::plain("only one SQL statement per call is allowed")
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            if tripped == 2 {
                limit(
                    limit_codes::SQL_DEADLINE,
                    format!(
                        "query interrupted: it ran longer than the {} s wall-clock backstop (add filters or avoid cross joins)",
                        limits::SQL_DEADLINE.as_secs()
                    ),
                )
            } else {
                limit(
                    limit_codes::SQL_STEPS,
                    "query interrupted: it exceeded the execution budget (add filters or avoid cross joins)"
                        .into(),
                )
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::TooBig => limit(
            limit_codes::SQL_LENGTH,
            format!(
                "SQL error: string or blob too big (at most {} bytes per value)",
                limits::SQL_MAX_LENGTH
            ),
        ),
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OutOfMemory => {
            limit(limit_codes::SQL_HEAP, "SQL error: the query needs too much memory".into())
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => SqlFail::plain(format!("SQL error: {msg}")),
        other => SqlFail::plain(format!("SQL error: {other}")),
    }
}

/// Process-wide SQLite heap cap (once).
fn set_heap_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sqlite3_hard_heap_limit64 only sets a global under SQLite's own mutex.
    ONCE.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64(limits::SQL_HEAP_LIMIT);
    });
}

fn build_db(s: &Schema, r: &mut impl Rng) -> Result<Db> {
    set_heap_limit();
    let conn = Connection::open_in_memory().map_err(sqlite_err)?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, limits::SQL_MAX_LENGTH)
        .map_err(sqlite_err)?;
    // Sorts and temporary tables stay in memory (under the heap limit), never in host files.
    conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(sqlite_err)?;
    let mut ddl = String::new();
    let mut tables = Vec::new();
    if let Some(c) = s.c {
        ddl.push_str(&format!("CREATE TABLE {c} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);\n"));
    }
    let city_col = if s.c.is_some() {
        format!("{} INTEGER NOT NULL REFERENCES {}(id)", s.a_city, s.c.unwrap_or_default())
    } else {
        format!("{} TEXT NOT NULL", s.a_city)
    };
    ddl.push_str(&format!(
        "CREATE TABLE {a} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, {city_col}, {seg} TEXT NOT NULL, joined_year INTEGER);\n\
         CREATE TABLE {b} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, {cat} TEXT NOT NULL, {price} REAL NOT NULL);\n\
         CREATE TABLE {f} (id INTEGER PRIMARY KEY, {fa} INTEGER NOT NULL REFERENCES {a}(id), {fb} INTEGER NOT NULL REFERENCES {b}(id), {q} INTEGER NOT NULL, {st} TEXT NOT NULL, {m} TEXT NOT NULL);\n",
        a = s.a, seg = s.a_seg, b = s.b, cat = s.b_cat, price = s.b_price, f = s.f, fa = s.f_a, fb = s.f_b,
        q = s.f_qty, st = s.f_status, m = s.f_month
    ));
    let n_distractors = r.random_range(0..=3usize);
    let mut distractors: Vec<usize> = (0..DISTRACTORS.len()).collect();
    distractors.shuffle(r);
    distractors.truncate(n_distractors);
    for &di in &distractors {
        let (name, cols) = DISTRACTORS[di];
        let cols: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
        ddl.push_str(&format!(
            "CREATE TABLE {name} (id INTEGER PRIMARY KEY, {});\n",
            cols.join(", ")
        ));
    }
    conn.execute_batch(&ddl).map_err(sqlite_err)?;

    let tx = conn.unchecked_transaction().map_err(sqlite_err)?;
    if let Some(c) = s.c {
        let mut st = tx
            .prepare(&format!("INSERT INTO {c} (id, name, country) VALUES (?1, ?2, ?3)"))
            .map_err(sqlite_err)?;
        for (i, name) in s.cities.iter().enumerate() {
            st.execute(rusqlite::params![i as i64 + 1, name, pick(r, COUNTRIES)])
                .map_err(sqlite_err)?;
        }
        tables.push((c.to_owned(), s.cities.len() as i64));
    }
    // a: unique person-like or store-like names.
    let n_a = r.random_range(60..=140usize);
    let mut names = std::collections::BTreeSet::new();
    let a_base = r.random_range(1..=9) as i64 * 100;
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, name, {}, {}, joined_year) VALUES (?1, ?2, ?3, ?4, ?5)",
                s.a, s.a_city, s.a_seg
            ))
            .map_err(sqlite_err)?;
        let mut i = 0;
        let mut collisions = 0u32;
        while i < n_a {
            let name = if s.dom.a_noun == "store" {
                format!(
                    "{} {}",
                    pick(r, NOUN),
                    pick(r, &["Market", "Corner", "Plaza", "Depot", "Express", "Central"])
                )
            } else {
                format!("{} {}", pick(r, FIRST), pick(r, LAST))
            };
            if !names.insert(name.clone()) {
                // The name space can be smaller than `n_a` (e.g. NOUN x 6 store names): stop
                // after a bounded number of collisions instead of spinning forever.
                collisions += 1;
                if names.len() > 400 || collisions > 2_000 {
                    break;
                }
                continue;
            }
            let ci = r.random_range(0..s.cities.len());
            let city: Value =
                if s.c.is_some() { json!(ci as i64 + 1) } else { json!(s.cities[ci]) };
            let city_sql: rusqlite::types::Value = match city {
                Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap_or(1)),
                _ => rusqlite::types::Value::Text(s.cities[ci].to_owned()),
            };
            let seg = pick(r, &s.segs);
            st.execute(rusqlite::params![
                a_base + i as i64,
                name,
                city_sql,
                seg,
                r.random_range(2005..=2024)
            ])
            .map_err(sqlite_err)?;
            i += 1;
        }
        tables.push((s.a.to_owned(), i as i64));
    }
    let n_a = tables.last().map(|t| t.1).unwrap_or(0);
    let n_b = r.random_range(25..=60i64);
    let b_base = r.random_range(1..=9) as i64 * 1000;
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, name, {}, {}) VALUES (?1, ?2, ?3, ?4)",
                s.b, s.b_cat, s.b_price
            ))
            .map_err(sqlite_err)?;
        let mut bnames = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < n_b {
            let name = format!("{} {} {}", pick(r, ADJ), pick(r, NOUN), r.random_range(1..=99));
            if !bnames.insert(name.clone()) {
                continue;
            }
            let cents: i64 = r.random_range(199..=49_999);
            st.execute(rusqlite::params![b_base + i, name, pick(r, &s.cats), cents as f64 / 100.0])
                .map_err(sqlite_err)?;
            i += 1;
        }
        tables.push((s.b.to_owned(), n_b));
    }
    let n_f = r.random_range(600..=1800i64);
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, {}, {}, {}, {}, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                s.f, s.f_a, s.f_b, s.f_qty, s.f_status, s.f_month
            ))
            .map_err(sqlite_err)?;
        for i in 0..n_f {
            let status = match r.random_range(0..100) {
                0..=69 => s.statuses[0],
                70..=84 => s.statuses[1],
                _ => s.statuses[2],
            };
            st.execute(rusqlite::params![
                i + 1,
                a_base + r.random_range(0..n_a),
                b_base + r.random_range(0..n_b),
                r.random_range(1..=12i64),
                status,
                s.month(r.random_range(1..=12)),
            ])
            .map_err(sqlite_err)?;
        }
        tables.push((s.f.to_owned(), n_f));
    }
    for &di in &distractors {
        let (name, cols) = DISTRACTORS[di];
        let n = r.random_range(15..=80i64);
        let placeholders: Vec<String> = (0..=cols.len()).map(|i| format!("?{}", i + 1)).collect();
        let colnames: Vec<&str> = cols.iter().map(|c| c.0).collect();
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {name} (id, {}) VALUES ({})",
                colnames.join(", "),
                placeholders.join(", ")
            ))
            .map_err(sqlite_err)?;
        for i in 0..n {
            let mut vals: Vec<rusqlite::types::Value> =
                vec![rusqlite::types::Value::Integer(i + 1)];
            for (c, t) in cols {
                vals.push(match *t {
                    "INTEGER" => rusqlite::types::Value::Integer(r.random_range(0..=100)),
                    "REAL" => {
                        rusqlite::types::Value::Real(r.random_range(0..=50_000) as f64 / 100.0)
                    }
                    _ if c.ends_with("month") => {
                        rusqlite::types::Value::Text(s.month(r.random_range(1..=12)))
                    }
                    _ => {
                        rusqlite::types::Value::Text(format!("{} {}", pick(r, ADJ), pick(r, NOUN)))
                    }
                });
            }
            st.execute(params_from_iter(vals)).map_err(sqlite_err)?;
        }
        tables.push((name.to_owned(), n));
    }
    tx.commit().map_err(sqlite_err)?;

    let descs = describe_all(&conn, &tables).map_err(sqlite_err)?;
    // From here on the connection is read-only for everyone, the verifier included.
    conn.execute_batch("PRAGMA query_only = ON;").map_err(sqlite_err)?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name } => {
            let f = function_name.to_ascii_lowercase();
            let nondeterministic = matches!(
                f.as_str(),
                "random"
                    | "randomblob"
                    | "load_extension"
                    | "date"
                    | "time"
                    | "datetime"
                    | "julianday"
                    | "unixepoch"
                    | "strftime"
                    | "timediff"
                    | "current_date"
                    | "current_time"
                    | "current_timestamp"
                    | "changes"
                    | "last_insert_rowid"
                    | "total_changes"
                    | "sqlite_offset"
            );
            if nondeterministic { Authorization::Deny } else { Authorization::Allow }
        }
        _ => Authorization::Deny,
    }));
    let steps = Arc::new(AtomicU32::new(0));
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let tripped = Arc::new(AtomicU8::new(0));
    let (counter, until, why) = (steps.clone(), deadline.clone(), tripped.clone());
    conn.progress_handler(
        1000,
        Some(move || {
            if counter.fetch_add(1, Ordering::Relaxed) >= STEP_BUDGET {
                why.store(1, Ordering::Relaxed);
                return true;
            }
            if nanos_since_base() > until.load(Ordering::Relaxed) {
                why.store(2, Ordering::Relaxed);
                return true;
            }
            false
        }),
    );
    Ok(Db { conn, steps, deadline, tripped, tables, descs })
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

impl SqlInstance {
    fn describe(&self, table: &str) -> ToolResult {
        let db = self.lock();
        match db.descs.iter().find(|(t, _)| t == table) {
            Some((_, d)) => ToolResult::read(d),
            None => {
                let names: Vec<&str> = db.tables.iter().map(|t| t.0.as_str()).collect();
                ToolResult::error(format!("no such table: {table:?}; tables: {}", names.join(", ")))
            }
        }
    }
}

/// `describe_table` output of every table, read before the authorizer locks the connection.
fn describe_all(
    conn: &Connection,
    tables: &[(String, i64)],
) -> rusqlite::Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (table, rows) in tables {
        let mut st = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
        let mut cols = st
            .query_map([table], |row| {
                Ok(json!({
                    "name": row.get::<_, String>(0)?,
                    "type": row.get::<_, String>(1)?,
                    "primary_key": row.get::<_, i64>(2)? > 0,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut st = conn.prepare("SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?1)")?;
        let fks = st
            .query_map([table], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for c in &mut cols {
            let n = c.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if let Some((_, t)) = fks.iter().find(|(from, _)| *from == n)
                && let Some(o) = c.as_object_mut()
            {
                o.insert("references".into(), json!(format!("{t}.id")));
            }
        }
        out.push((table.clone(), json!({ "table": table, "columns": cols, "row_count": rows })));
    }
    Ok(out)
}
