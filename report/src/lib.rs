//! `agentgen-report`: dataset statistics and the self-contained HTML dataset report.
//!
//! It owns the numbers `agentgen inspect --json` prints under `report` and the report's
//! overview draws (computed once, in [`stats`], from one streaming pass), the deterministic
//! seeded sample of rows the trajectory viewer shows, and the page itself (inline CSS, inline
//! SVG, a small inline script; nothing loads from the network). It reads agentgen dataset
//! folders and any Parquet or JSONL that `validate` reads; what a source lacks is left out of
//! the page and said so.
//!
//! It must not judge rows (that is `pipeline`) nor decide what `inspect` checks (shards,
//! manifests: the CLI's inspect). The CLI only wires it.

#![warn(missing_docs)]

mod charts;
mod error;
mod html;
mod input;
mod sample;
mod scan;
mod stats;
mod tokens;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use error::{Error, Result};
pub use html::{CSP, esc, json_block};
pub use input::{DatasetDir, Inputs, Source, SourceKind, resolve};
pub use sample::{TokenView, Trajectory};
pub use scan::{SampleOptions, SplitFilter};
pub use stats::{
    Dedup, DifficultyStats, FamilyHistogram, FamilyStats, Groups, Histogram, PassRate, RewardStats,
    STATS_COLUMNS, SplitRows, Stats, TokenStats,
};

/// Default number of sampled trajectories.
pub const DEFAULT_SAMPLES: usize = 200;

/// A report ready to render.
#[derive(Debug, Clone)]
pub struct Report {
    /// The paths given.
    pub inputs: Vec<PathBuf>,
    /// The statistics (equal to `inspect --json`'s `report`).
    pub stats: Stats,
    /// The sampled rows.
    pub trajectories: Vec<Trajectory>,
    /// Requested sample size.
    pub samples: usize,
    /// Seed of the draw.
    pub seed: u64,
    /// `train`, `rejected` or `all`.
    pub split_name: &'static str,
}

fn manifests(inputs: &Inputs) -> Vec<Value> {
    inputs
        .dirs
        .iter()
        .filter_map(|d| {
            d.manifest.as_ref().map(|m| json!({"dir": d.path.display().to_string(), "manifest": m}))
        })
        .collect()
}

/// The statistics of `paths` (one streaming pass, no sample): what `inspect --json` prints
/// as `report`.
pub fn statistics(paths: &[PathBuf]) -> Result<Stats> {
    let inputs = resolve(paths)?;
    let opts = SampleOptions { samples: 0, seed: 0, split: SplitFilter::All };
    let scan = scan::scan(&inputs.sources, &opts)?;
    Ok(scan.acc.finish(manifests(&inputs)))
}

/// Statistics and the sampled rows of `paths`, from the same single pass.
pub fn build(paths: &[PathBuf], opts: &SampleOptions) -> Result<Report> {
    let inputs = resolve(paths)?;
    let scan = scan::scan(&inputs.sources, opts)?;
    let trajectories = sample::load(&inputs.sources, &scan.versions, scan.picked)?;
    Ok(Report {
        inputs: paths.to_vec(),
        stats: scan.acc.finish(manifests(&inputs)),
        trajectories,
        samples: opts.samples,
        seed: opts.seed,
        split_name: match opts.split {
            SplitFilter::Train => "train",
            SplitFilter::Rejected => "rejected",
            SplitFilter::All => "all",
        },
    })
}

/// The numbers embedded in the page as `<script type="application/json"
/// id="agentgen-inspect">`: `inspect --json`'s top-level `rows`, `train`, `rejected`,
/// `tokens`, `per_family`, `per_rejection_code`, `per_warning` (those it has) and its whole
/// `report` object.
pub fn inspect_numbers(st: &Stats) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("rows".into(), json!(st.rows));
    o.insert("train".into(), json!(st.train));
    o.insert("rejected".into(), json!(st.rejected));
    if let Some(t) = &st.tokens {
        o.insert(
            "tokens".into(),
            json!({"total": t.total, "train": t.train, "train_loss": t.train_loss}),
        );
    }
    if let Some(pf) = &st.per_family {
        let m: serde_json::Map<String, Value> = pf
            .iter()
            .map(|(k, f)| (k.clone(), json!({"accepted": f.accepted, "rejected": f.rejected})))
            .collect();
        o.insert("per_family".into(), Value::Object(m));
    }
    if let Some(c) = &st.per_rejection_code {
        o.insert("per_rejection_code".into(), json!(c));
    }
    if let Some(w) = &st.per_warning {
        o.insert("per_warning".into(), json!(w));
    }
    o.insert("report".into(), serde_json::to_value(st).unwrap_or(Value::Null));
    Value::Object(o)
}

/// The page's HTML.
pub fn render_html(report: &Report) -> String {
    html::render(report)
}

/// Write the page to `out` (via a temp file and a rename); returns its size in bytes.
pub fn write_html(report: &Report, out: &Path) -> Result<u64> {
    let html = render_html(report);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html.as_bytes()).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(html.len() as u64)
}
