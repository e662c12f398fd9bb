//! Input resolution: which files a report or `inspect --json` reads for each path given
//! (dataset folders, loose Parquet files, JSONL conversation files) and the run manifests.

use std::path::{Path, PathBuf};

use agentgen_datasets::{MANIFEST_FILE, list_parts};
use serde_json::Value;

use crate::{Error, Result};

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Parquet (an agentgen part or any file with known columns).
    Parquet,
    /// One JSON object per line (`{"messages", "tools"?, ...}` like `validate` reads).
    Jsonl,
}

/// One file to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// How to read it.
    pub kind: SourceKind,
}

/// A path given on the command line that is a dataset folder, with its manifest.
#[derive(Debug, Clone)]
pub struct DatasetDir {
    /// The folder as given.
    pub path: PathBuf,
    /// `manifest.json` as raw JSON (unknown and future fields kept), if the folder has one.
    pub manifest: Option<Value>,
}

/// Everything to read, in a stable order (paths in the order given; files sorted within).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Files, in reading order.
    pub sources: Vec<Source>,
    /// Dataset folders among the paths.
    pub dirs: Vec<DatasetDir>,
}

fn is_jsonl(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "json" | "ndjson"))
}

fn is_parquet(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("parquet")
}

fn source(path: PathBuf) -> Source {
    let kind = if is_jsonl(&path) { SourceKind::Jsonl } else { SourceKind::Parquet };
    Source { path, kind }
}

/// Loose data files (`*.parquet`, `*.jsonl`, `*.json`, `*.ndjson`) directly in `dir`, sorted.
fn loose_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut files = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io("list", dir, e))?.path();
        if p.is_file() && (is_parquet(&p) || is_jsonl(&p)) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Resolve the paths given: a folder holding `manifest.json` or finished parts under `data/`
/// is a dataset folder (its finished parts, both splits; `*.tmp` ignored); another folder
/// contributes its loose data files (and those of its `data/`); a file is read as JSONL when
/// named `*.jsonl`/`*.json`/`*.ndjson`, as Parquet otherwise.
pub fn resolve(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for path in paths {
        if path.is_dir() {
            let parts = list_parts(path)?;
            let manifest_path = path.join(MANIFEST_FILE);
            if !parts.is_empty() || manifest_path.is_file() {
                let manifest = match std::fs::read(&manifest_path) {
                    Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Input { path: manifest_path.clone(), reason: e.to_string() }
                    })?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::io("read", &manifest_path, e)),
                };
                inputs.dirs.push(DatasetDir { path: path.clone(), manifest });
                // Train before rejected, then shard and part: the order `inspect` prints.
                let mut parts = parts;
                parts.sort_by(|a, b| {
                    (a.split.as_str() != "train", a.shard, a.part).cmp(&(
                        b.split.as_str() != "train",
                        b.shard,
                        b.part,
                    ))
                });
                inputs.sources.extend(parts.into_iter().map(|p| source(p.path)));
            } else {
                let mut files = loose_files(path)?;
                let data = path.join("data");
                if data.is_dir() {
                    files.extend(loose_files(&data)?);
                }
                if files.is_empty() {
                    return Err(Error::Input {
                        path: path.clone(),
                        reason: "no dataset here (no manifest.json, no data/*.parquet, no *.parquet or *.jsonl files)".into(),
                    });
                }
                inputs.sources.extend(files.into_iter().map(source));
            }
        } else if path.is_file() {
            inputs.sources.push(source(path.clone()));
        } else {
            return Err(Error::Input {
                path: path.clone(),
                reason: "no such file or folder".into(),
            });
        }
    }
    Ok(inputs)
}
