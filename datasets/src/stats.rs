//! Counts recomputed from the files of a dataset folder (for manifests on resume, the dataset
//! card and `agentgen inspect`).

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int8Type;

use crate::manifest::{Counts, TokenTotals};
use crate::reader::{list_parts, read_columns};
use crate::schema::col;
use crate::writer::WrittenFile;
use crate::{Error, Result, Split};

/// What the finished files of one dataset folder hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetStats {
    /// Every finished part, with rows and bytes.
    pub files: Vec<WrittenFile>,
    /// `accepted`, `rejected`, `per_rejection_code`, `per_family`, `per_warning` filled from
    /// the rows (the run-level fields stay zero).
    pub counts: Counts,
    /// `total`, `train` and `train_loss` filled from the rows.
    pub tokens: TokenTotals,
}

/// Scan the finished parts under `dir/data/` (projected reads: family, codes, token lists).
pub fn scan_dataset(dir: &Path) -> Result<DatasetStats> {
    let mut stats = DatasetStats::default();
    for part in list_parts(dir)? {
        let path = &part.path;
        let bytes = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?.len();
        let mut rows = 0u64;
        let columns =
            [col::FAMILY, col::REJECTION_CODE, col::TOKEN_IDS, col::LOSS_MASK, col::WARNINGS];
        for batch in read_columns(path, &columns)? {
            let batch = batch?;
            // Projected batches keep file order, not request order: look columns up by name.
            let column = |b: &'_ arrow::array::RecordBatch, c: &str| {
                b.column_by_name(c).cloned().ok_or_else(|| Error::MissingColumn {
                    path: path.clone(),
                    column: c.to_owned(),
                })
            };
            let bad = |c: &str| Error::ColumnType {
                path: path.clone(),
                column: c.to_owned(),
                found: "another type".into(),
                expected: "the agentgen schema".into(),
            };
            let (family, code, tokens, mask, warnings) = (
                column(&batch, col::FAMILY)?,
                column(&batch, col::REJECTION_CODE)?,
                column(&batch, col::TOKEN_IDS)?,
                column(&batch, col::LOSS_MASK)?,
                column(&batch, col::WARNINGS)?,
            );
            let family = family.as_string_opt::<i32>().ok_or_else(|| bad(col::FAMILY))?;
            let code = code.as_string_opt::<i32>().ok_or_else(|| bad(col::REJECTION_CODE))?;
            let tokens = tokens.as_list_opt::<i32>().ok_or_else(|| bad(col::TOKEN_IDS))?;
            let mask = mask.as_list_opt::<i32>().ok_or_else(|| bad(col::LOSS_MASK))?;
            let mask_values =
                mask.values().as_primitive_opt::<Int8Type>().ok_or_else(|| bad(col::LOSS_MASK))?;
            let warnings = warnings.as_list_opt::<i32>().ok_or_else(|| bad(col::WARNINGS))?;
            let warning_values =
                warnings.values().as_string_opt::<i32>().ok_or_else(|| bad(col::WARNINGS))?;
            for i in 0..batch.num_rows() {
                rows += 1;
                let accepted = code.is_null(i);
                let fam = stats.counts.per_family.entry(family.value(i).to_owned()).or_default();
                let n_tokens = tokens.value_length(i) as u64;
                stats.tokens.total += n_tokens;
                if accepted {
                    fam.accepted += 1;
                    stats.counts.accepted += 1;
                    stats.tokens.train += n_tokens;
                    let o = mask.value_offsets();
                    let r = (o[i] as usize)..(o[i + 1] as usize);
                    stats.tokens.train_loss +=
                        mask_values.values()[r].iter().filter(|&&m| m != 0).count() as u64;
                } else {
                    fam.rejected += 1;
                    stats.counts.rejected += 1;
                    *stats
                        .counts
                        .per_rejection_code
                        .entry(code.value(i).to_owned())
                        .or_default() += 1;
                }
                let o = warnings.value_offsets();
                for j in (o[i] as usize)..(o[i + 1] as usize) {
                    *stats
                        .counts
                        .per_warning
                        .entry(warning_values.value(j).to_owned())
                        .or_default() += 1;
                }
            }
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        stats.files.push(WrittenFile {
            path: format!("{}/{name}", crate::writer::DATA_DIR),
            split: part.split,
            rows,
            bytes,
            sha256: None,
        });
    }
    Ok(stats)
}

impl DatasetStats {
    /// Rows in `split`.
    pub fn rows_in(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.counts.accepted,
            Split::Rejected => self.counts.rejected,
        }
    }
}
