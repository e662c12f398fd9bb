//! The code family's data: the three domains and the seeded CSV table an instance provides.

use super::*;

pub(super) struct Domain {
    pub(super) files: &'static [&'static str],
    pub(super) group: &'static [&'static str],
    pub(super) group_values: &'static [&'static str],
    pub(super) cat: &'static [&'static str],
    pub(super) cat_values: &'static [&'static str],
    pub(super) x: &'static [&'static str],
    pub(super) y: &'static [&'static str],
    /// (x range, y range in cents)
    pub(super) x_range: (i64, i64),
    pub(super) y_range: (i64, i64),
    pub(super) what: &'static str,
    pub(super) amount: &'static str,
}

pub(super) const DOMAINS: [Domain; 3] = [
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

pub(super) struct Row {
    pub(super) group: usize,
    pub(super) cat: usize,
    pub(super) month: u32,
    pub(super) x: i64,
    /// Exact value in hundredths.
    pub(super) y100: i64,
}

impl Row {
    pub(super) fn y(&self) -> f64 {
        self.y100 as f64 / 100.0
    }
    pub(super) fn amount(&self) -> f64 {
        self.x as f64 * self.y()
    }
}

pub(super) struct Data {
    pub(super) dom: &'static Domain,
    pub(super) file: &'static str,
    pub(super) group: &'static str,
    pub(super) cat: &'static str,
    pub(super) x: &'static str,
    pub(super) y: &'static str,
    pub(super) groups: Vec<&'static str>,
    pub(super) year: u32,
    pub(super) rows: Vec<Row>,
    pub(super) csv: String,
}

pub(super) fn generate(r: &mut impl Rng) -> Data {
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
