//! Readers: typed rows of our schema, projected columns, and conversations from any Parquet
//! file with a `messages` column.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value;

use crate::convert::{BatchView, RowView};
use crate::json::{array_value, normalise_messages};
use crate::pages::check_page_sizes;
use crate::schema::{READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, col};
use crate::writer::{DATA_DIR, TMP_SUFFIX, parse_part_file_name};
use crate::{Error, Result, SampleRow, Split};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 128;

/// Most bytes the values of one decoded batch may add up to. A few bytes of Parquet can
/// decode to gigabytes (one dictionary value repeated by run-length indices: a "dictionary
/// bomb"); every reader here refuses such a batch with [`Error::TooLarge`] before expanding it.
pub const MAX_BATCH_BYTES: u64 = 256 << 20;

/// A Parquet reader builder for `path`. Top-level columns with a dictionary-encoded chunk are
/// read as Arrow dictionaries (keys + the page's values, never expanded), so [`Batches`] can
/// measure what a batch would expand to before expanding it.
fn open_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let (file, meta) = load_metadata(path)?;
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta))
}

/// The open file and its reader metadata, with the read hints of [`open_builder`].
fn load_metadata(path: &Path) -> Result<(File, ArrowReaderMetadata)> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // Guarded: a malformed footer must become an error, never a panic.
    let build = || -> parquet::errors::Result<(File, ArrowReaderMetadata)> {
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
        let mut dict_roots = HashSet::new();
        for rg in meta.metadata().row_groups() {
            for c in rg.columns() {
                if c.dictionary_page_offset().is_some()
                    && let Some(root) = c.column_path().parts().first()
                {
                    dict_roots.insert(root.clone());
                }
            }
        }
        let file =
            file.try_clone().map_err(|e| parquet::errors::ParquetError::External(e.into()))?;
        if dict_roots.is_empty() {
            return Ok((file, meta));
        }
        let hinted: Vec<Field> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let f = f.as_ref().clone();
                if dict_roots.contains(f.name()) {
                    let t = dictionary_hint(f.data_type());
                    f.with_data_type(t)
                } else {
                    f
                }
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(hinted, meta.schema().metadata().clone()));
        let meta = ArrowReaderMetadata::try_new(
            Arc::clone(meta.metadata()),
            ArrowReaderOptions::new().with_schema(schema),
        )?;
        Ok((file, meta))
    };
    match catch_unwind(AssertUnwindSafe(build)) {
        Ok(r) => r.map_err(|e| Error::parquet(path, e)),
        Err(panic) => Err(Error::Corrupt { path: path.to_owned(), detail: panic_text(&panic) }),
    }
}

/// `t` with every utf8 leaf read as a dictionary.
fn dictionary_hint(t: &DataType) -> DataType {
    let field = |f: &Field| f.clone().with_data_type(dictionary_hint(f.data_type()));
    match t {
        DataType::Utf8 | DataType::LargeUtf8 => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(t.clone()))
        }
        DataType::List(f) => DataType::List(Arc::new(field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(field(f))),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(|f| field(f)).collect::<Fields>()),
        other => other.clone(),
    }
}

/// The bytes `a` holds once every dictionary in it is expanded (its buffers otherwise).
fn expanded_bytes(a: &dyn Array) -> u64 {
    if let Some(d) = a.as_any_dictionary_opt() {
        let values = d.values();
        let lens: Vec<u64> = if let Some(s) = values.as_string_opt::<i32>() {
            s.offsets().windows(2).map(|w| (w[1] - w[0]).max(0) as u64).collect()
        } else if let Some(s) = values.as_string_opt::<i64>() {
            s.offsets().windows(2).map(|w| (w[1] - w[0]).max(0) as u64).collect()
        } else {
            return (a.len() as u64).saturating_mul(values.get_array_memory_size() as u64);
        };
        if lens.is_empty() {
            // No values (an all-null column): only the keys. `normalized_keys` panics here.
            return (a.len() as u64).saturating_mul(4);
        }
        return d
            .normalized_keys()
            .iter()
            .map(|&k| lens.get(k).copied().unwrap_or(0).saturating_add(4))
            .fold(0u64, u64::saturating_add);
    }
    let own = a.to_data().buffers().iter().map(|b| b.len() as u64).sum::<u64>();
    let children: u64 = if let Some(l) = a.as_list_opt::<i32>() {
        expanded_bytes(l.values().as_ref())
    } else if let Some(l) = a.as_list_opt::<i64>() {
        expanded_bytes(l.values().as_ref())
    } else if let Some(s) = a.as_struct_opt() {
        s.columns().iter().map(|c| expanded_bytes(c.as_ref())).fold(0u64, u64::saturating_add)
    } else {
        0
    };
    own.saturating_add(children)
}

/// Check a decoded batch's expanded size, then expand its dictionary columns back to the
/// file's own types (`target`).
///
/// A column named `keep` that the file stores as utf8 and was read as a dictionary of utf8
/// stays a dictionary (its size is still measured expanded).
fn expand_batch(
    path: &Path,
    batch: RecordBatch,
    target: &SchemaRef,
    keep: Option<&str>,
) -> Result<RecordBatch> {
    let bytes =
        batch.columns().iter().map(|c| expanded_bytes(c.as_ref())).fold(0u64, u64::saturating_add);
    if bytes > MAX_BATCH_BYTES {
        return Err(Error::TooLarge { path: path.to_owned(), bytes, limit: MAX_BATCH_BYTES });
    }
    let schema = batch.schema();
    if schema
        .fields()
        .iter()
        .all(|f| target.field_with_name(f.name()).is_ok_and(|t| t == f.as_ref()))
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let want =
            target.field_with_name(f.name()).map_or_else(|_| f.as_ref().clone(), Clone::clone);
        let kept = keep == Some(f.name().as_str())
            && want.data_type() == &DataType::Utf8
            && c.data_type()
                == &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        if kept {
            columns.push(Arc::clone(c));
            fields.push(f.as_ref().clone());
            continue;
        }
        if want.data_type() == c.data_type() {
            columns.push(Arc::clone(c));
        } else {
            columns.push(
                arrow::compute::cast(c.as_ref(), want.data_type())
                    .map_err(|e| Error::arrow(path, e))?,
            );
        }
        fields.push(want);
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
    .map_err(|e| Error::arrow(path, e))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// The `agentgen.schema_version` of a file, from the Parquet key-value metadata or the Arrow
/// schema metadata.
fn file_schema_version(builder: &ParquetRecordBatchReaderBuilder<File>) -> Option<String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_VERSION_KEY))
        .and_then(|k| k.value.clone())
        .or_else(|| builder.schema().metadata().get(SCHEMA_VERSION_KEY).cloned())
}

fn check_version(path: &Path, builder: &ParquetRecordBatchReaderBuilder<File>) -> Result<()> {
    let found = file_schema_version(builder);
    let readable = found
        .as_deref()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| READABLE_SCHEMA_VERSIONS.contains(&v));
    if !readable {
        return Err(Error::SchemaVersion {
            path: path.to_owned(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Schema version and row count of a Parquet file, from its footer only.
pub fn file_info(path: &Path) -> Result<FileInfo> {
    let builder = open_builder(path)?;
    let rows = builder.metadata().file_metadata().num_rows();
    Ok(FileInfo {
        schema_version: file_schema_version(&builder),
        rows: u64::try_from(rows).unwrap_or(0),
        row_groups: builder.metadata().num_row_groups(),
    })
}

/// What a file's footer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// `agentgen.schema_version`, if present.
    pub schema_version: Option<String>,
    /// Rows in the file.
    pub rows: u64,
    /// Row groups in the file.
    pub row_groups: usize,
}

/// Iterates record batches, turning decoder panics into [`Error::Corrupt`] and stopping after
/// the first error.
struct Batches {
    path: PathBuf,
    inner: Option<ParquetRecordBatchReader>,
    /// The file's own column types (dictionary-read columns are expanded back to these).
    target: SchemaRef,
    /// A column left as a dictionary (see [`expand_batch`]).
    keep: Option<&'static str>,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.inner.as_mut()?;
        let item = match catch_unwind(AssertUnwindSafe(|| reader.next())) {
            Ok(None) => None,
            Ok(Some(Ok(batch))) => Some(expand_batch(&self.path, batch, &self.target, self.keep)),
            Ok(Some(Err(e))) => Some(Err(Error::arrow(&self.path, e))),
            Err(panic) => {
                Some(Err(Error::Corrupt { path: self.path.clone(), detail: panic_text(&panic) }))
            }
        };
        if !matches!(item, Some(Ok(_))) {
            self.inner = None;
        }
        item
    }
}

fn batches(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<File>,
    columns: Option<&[&str]>,
) -> Result<Batches> {
    // Nothing is decompressed before every page header of the file has been checked.
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    check_page_sizes(path, &file, builder.metadata())?;
    let target = file_schema(builder.metadata(), builder.schema());
    let builder = match columns {
        None => builder,
        Some(names) => {
            let mut roots = Vec::new();
            for name in names {
                let i = builder.schema().index_of(name).map_err(|_| Error::MissingColumn {
                    path: path.to_owned(),
                    column: (*name).to_owned(),
                })?;
                roots.push(i);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
    };
    let reader =
        builder.with_batch_size(BATCH_ROWS).build().map_err(|e| Error::parquet(path, e))?;
    Ok(Batches { path: path.to_owned(), inner: Some(reader), target, keep: None })
}

/// The file's own column types, from its metadata (a builder's schema carries the read hints).
fn file_schema(meta: &ParquetMetaData, hinted: &SchemaRef) -> SchemaRef {
    match parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    ) {
        Ok(s) => Arc::new(s),
        Err(_) => Arc::clone(hinted),
    }
}

/// A file of our schema opened for reading all of it, one row group at a time: the footer,
/// the schema version and every page header are checked once when it opens (as
/// [`RowReader::try_new`] does), then each row group is decoded on its own (its own file
/// handle), so that several row groups can be decoded on several threads. Batches hold at
/// most [`MAX_BATCH_BYTES`] of values, as with every reader here; rows come as borrowed
/// [`RowView`]s of a batch.
pub struct ScanFile {
    path: PathBuf,
    meta: ArrowReaderMetadata,
    target: SchemaRef,
    /// (first row, rows) of each row group.
    groups: Vec<(usize, usize)>,
    /// `tools` is stored as utf8: when its pages are dictionary-encoded it is read as a
    /// dictionary and left so (rows with one key share the text).
    dict_tools: bool,
}

impl ScanFile {
    /// Open `path`: Parquet, our schema version, no page over the size limits.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, meta) = load_metadata(path)?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone());
        check_version(path, &builder)?;
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        check_page_sizes(path, &file, builder.metadata())?;
        let target = file_schema(builder.metadata(), builder.schema());
        let mut groups = Vec::with_capacity(builder.metadata().num_row_groups());
        let mut first = 0usize;
        for rg in builder.metadata().row_groups() {
            let rows = usize::try_from(rg.num_rows()).unwrap_or(0);
            groups.push((first, rows));
            first = first.saturating_add(rows);
        }
        let dict_tools =
            target.field_with_name(col::TOOLS).is_ok_and(|f| f.data_type() == &DataType::Utf8);
        Ok(ScanFile { path: path.to_owned(), meta, target, groups, dict_tools })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Row groups in the file.
    pub fn num_row_groups(&self) -> usize {
        self.groups.len()
    }

    /// Rows in the file (from the footer).
    pub fn num_rows(&self) -> usize {
        self.groups.last().map_or(0, |(first, rows)| first + rows)
    }

    /// The file position of row group `group`'s first row and its number of rows.
    pub fn row_group_rows(&self, group: usize) -> Option<(usize, usize)> {
        self.groups.get(group).copied()
    }

    /// The record batches of row group `group`, in order; the first error ends them (a
    /// decoder panic is [`Error::Corrupt`], a batch over [`MAX_BATCH_BYTES`] is
    /// [`Error::TooLarge`]).
    pub fn row_group_batches(
        &self,
        group: usize,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
        let path = &self.path;
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_row_groups(vec![group])
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::parquet(path, e))?;
        Ok(Batches {
            path: path.clone(),
            inner: Some(reader),
            target: Arc::clone(&self.target),
            keep: self.dict_tools.then_some(col::TOOLS),
        })
    }

    /// The rows of `batch` (a batch of this file whose first row is row `first` of the file)
    /// as [`RowView`]s; errors as [`read_rows`] gives them for the same batch.
    pub fn rows<'a>(&'a self, batch: &'a RecordBatch, first: usize) -> Result<Vec<RowView<'a>>> {
        BatchView::new(&self.path, batch, first).with_dict_tools(self.dict_tools).views()
    }
}

/// Streams the rows of one file of our schema, one record batch at a time.
pub struct RowReader {
    path: PathBuf,
    batches: Batches,
    pending: VecDeque<SampleRow>,
    next_row: usize,
    rows: u64,
    failed: bool,
}

impl RowReader {
    /// Open `path`; checks it is Parquet with our schema version.
    pub fn try_new(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let builder = open_builder(path)?;
        check_version(path, &builder)?;
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        Ok(RowReader {
            path: path.to_owned(),
            batches: batches(path, builder, None)?,
            pending: VecDeque::new(),
            next_row: 0,
            rows,
            failed: false,
        })
    }

    /// Rows in the file (from the footer).
    pub fn num_rows(&self) -> u64 {
        self.rows
    }

    /// The next decoded batch of rows, `None` at the end.
    pub fn next_batch(&mut self) -> Option<Result<Vec<SampleRow>>> {
        if !self.pending.is_empty() {
            return Some(Ok(self.pending.drain(..).collect()));
        }
        if self.failed {
            return None;
        }
        let batch = match self.batches.next()? {
            Ok(b) => b,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let rows = BatchView::new(&self.path, &batch, self.next_row).rows();
        self.next_row += batch.num_rows();
        if rows.is_err() {
            self.failed = true;
        }
        Some(rows)
    }
}

impl Iterator for RowReader {
    type Item = Result<SampleRow>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                return Some(Ok(row));
            }
            match self.next_batch()? {
                Ok(rows) => self.pending.extend(rows),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// All rows of one file of our schema.
pub fn read_rows(path: &Path) -> Result<Vec<SampleRow>> {
    RowReader::try_new(path)?.collect()
}

/// The rows of a file of our schema at the given 0-based positions (sorted or not; positions
/// past the end are ignored), in file order. Only the row groups and pages holding them are
/// decoded, so picking a few sampled rows out of a large file stays cheap.
pub fn read_rows_at(path: &Path, positions: &[usize]) -> Result<Vec<SampleRow>> {
    let builder = open_builder(path)?;
    check_version(path, &builder)?;
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut wanted: Vec<usize> = positions.iter().copied().filter(|&p| p < total).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let selection = RowSelection::from_consecutive_ranges(wanted.iter().map(|&p| p..p + 1), total);
    let builder = builder.with_row_selection(selection);
    let mut out = Vec::with_capacity(wanted.len());
    for batch in batches(path, builder, None)? {
        let batch = batch?;
        let first = wanted.get(out.len()).copied().unwrap_or(0);
        out.extend(BatchView::new(path, &batch, first).rows()?);
    }
    Ok(out)
}

/// The values of one utf8 column of a file of our schema (e.g. `sample_id`), in row order.
pub fn read_string_column(path: &Path, column: &str) -> Result<Vec<Option<String>>> {
    let builder = open_builder(path)?;
    check_version(path, &builder)?;
    let mut out = Vec::new();
    for batch in batches(path, builder, Some(&[column]))? {
        let batch = batch?;
        let view = BatchView::new(path, &batch, out.len());
        let a = view.utf8(column)?;
        out.extend(a.iter().map(|v| v.map(str::to_owned)));
    }
    Ok(out)
}

/// Stream the record batches of `columns` of a file of our schema. Batches hold the columns in
/// file (schema) order, not in the order asked for: look them up by name.
pub fn read_columns(
    path: &Path,
    columns: &[&str],
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let builder = open_builder(path)?;
    check_version(path, &builder)?;
    batches(path, builder, Some(columns))
}

/// A projected read of ANY Parquet file (no schema-version check, unlike [`read_columns`]):
/// the columns of `wanted` the file has (top-level names), its schema version if it carries
/// one, and the record batches of those columns (in file order: look columns up by name).
pub fn read_present_columns(
    path: &Path,
    wanted: &[&str],
) -> Result<(Vec<String>, Option<String>, impl Iterator<Item = Result<RecordBatch>> + use<>)> {
    let builder = open_builder(path)?;
    let version = file_schema_version(&builder);
    let present: Vec<&str> =
        wanted.iter().copied().filter(|name| builder.schema().index_of(name).is_ok()).collect();
    let names = present.iter().map(|s| (*s).to_owned()).collect();
    // None of them: read the first column, which still yields the row count.
    let first = builder.schema().fields().first().map(|f| f.name().clone());
    let projection: Vec<&str> = match (&present[..], &first) {
        ([], Some(f)) => vec![f.as_str()],
        _ => present,
    };
    let batches = batches(path, builder, Some(&projection))?;
    Ok((names, version, batches))
}

/// One finished part of a dataset folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartFile {
    /// Its split.
    pub split: Split,
    /// The shard that wrote it.
    pub shard: u32,
    /// Part number within (split, shard).
    pub part: u32,
    /// Full path.
    pub path: PathBuf,
}

/// The finished parts under `dir/data/` (temp files and foreign names ignored), ordered by
/// split, shard, part. A missing `data/` folder is an empty dataset.
pub fn list_parts(dir: &Path) -> Result<Vec<PartFile>> {
    let data = dir.join(DATA_DIR);
    let entries = match fs::read_dir(&data) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &data, e)),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", &data, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((split, shard, part)) = parse_part_file_name(&name) {
            parts.push(PartFile { split, shard, part, path: entry.path() });
        }
    }
    parts.sort();
    Ok(parts)
}

/// Temp files (`*.parquet.tmp`) under `dir/data/`: parts being written, or left by a crash.
pub fn list_temp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let data = dir.join(DATA_DIR);
    let entries = match fs::read_dir(&data) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &data, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", &data, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.strip_suffix(TMP_SUFFIX).is_some_and(|b| b.ends_with(".parquet")) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The sample ids held by the finished files of the dataset at `dir` (both splits), for
/// `--resume`. Temp files are never read; they are stale (their writer is gone) and deleted.
///
/// Call it before any writer for `dir` starts: a temp file of a writer running concurrently in
/// the same folder would be deleted too.
pub fn finished_sample_ids(dir: &Path) -> Result<HashSet<String>> {
    for tmp in list_temp_files(dir)? {
        fs::remove_file(&tmp).map_err(|e| Error::io("remove stale", &tmp, e))?;
    }
    let mut ids = HashSet::new();
    for part in list_parts(dir)? {
        for id in read_string_column(&part.path, col::SAMPLE_ID)?.into_iter().flatten() {
            ids.insert(id);
        }
    }
    Ok(ids)
}

/// What `--resume` needs to know about the finished rows of a folder: per episode, the sample
/// ids of its finished rows and how many rows it has (`turns_total`). An episode is finished
/// when all of its rows are (a kill between two parts can leave some of a multi-turn episode's
/// rows behind; resume redoes the episode and writes only the rest).
#[derive(Debug, Default, Clone)]
pub struct FinishedRows {
    /// `episode_id -> (finished rows' sample ids, turns_total)`.
    pub episodes: HashMap<String, (Vec<String>, i32)>,
}

impl FinishedRows {
    /// True when every row of `episode_id` is finished.
    pub fn episode_done(&self, episode_id: &str) -> bool {
        self.episodes.get(episode_id).is_some_and(|(rows, total)| {
            i64::try_from(rows.len()).unwrap_or(i64::MAX) >= i64::from(*total)
        })
    }

    /// The sample ids of `episode_id`'s finished rows (none when it has none).
    pub fn rows_of(&self, episode_id: &str) -> &[String] {
        self.episodes.get(episode_id).map_or(&[], |(rows, _)| rows.as_slice())
    }
}

/// [`FinishedRows`] of the finished parts in `dir` (stale temp files are removed first, as in
/// [`finished_sample_ids`]). Files without the v2 episode columns count each row as a
/// one-row episode named by its sample id.
pub fn finished_rows(dir: &Path) -> Result<FinishedRows> {
    for tmp in list_temp_files(dir)? {
        fs::remove_file(&tmp).map_err(|e| Error::io("remove stale", &tmp, e))?;
    }
    let mut out = FinishedRows::default();
    for part in list_parts(dir)? {
        let wanted = [col::SAMPLE_ID, col::EPISODE_ID, col::TURNS_TOTAL];
        let (present, _, batches) = read_present_columns(&part.path, &wanted)?;
        let has = |c: &str| present.iter().any(|p| p == c);
        let (has_episode, has_total) = (has(col::EPISODE_ID), has(col::TURNS_TOTAL));
        let mut base = 0;
        for batch in batches {
            let batch = batch?;
            let view = BatchView::new(&part.path, &batch, base);
            base += batch.num_rows();
            let ids = view.utf8(col::SAMPLE_ID)?;
            let episodes = if has_episode { Some(view.utf8(col::EPISODE_ID)?) } else { None };
            let totals = if has_total {
                Some(view.prim::<arrow::datatypes::Int32Type>(col::TURNS_TOTAL, "int32")?)
            } else {
                None
            };
            for i in 0..batch.num_rows() {
                let Some(id) = ids.is_valid(i).then(|| ids.value(i)) else { continue };
                let episode =
                    episodes.filter(|e| e.is_valid(i)).map_or(id, |e| e.value(i)).to_owned();
                let total = totals.map_or(1, |t| t.value(i));
                out.episodes.entry(episode).or_insert((Vec::new(), total)).0.push(id.to_owned());
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ColumnKind {
    /// list<struct> (or another nested type): converted structurally.
    Nested,
    /// utf8 JSON text.
    Json,
}

fn column_kind(dt: &DataType) -> Option<ColumnKind> {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(ColumnKind::Json),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            Some(ColumnKind::Nested)
        }
        DataType::Dictionary(_, v) => column_kind(v).filter(|k| matches!(k, ColumnKind::Json)),
        _ => None,
    }
}

/// Reads conversations from ANY Parquet file with a `messages` column (list<struct> like ours,
/// or utf8 JSON text of the message list) and an optional `tools` column (utf8 JSON, a nested
/// list, or absent). Yields `(row_index, {"messages": [...], "tools"?: [...]})` in the OpenAI
/// wire shape the codec's `Message` deserialises (tool calls as `{"type": "function",
/// "function": {"name", "arguments"}}`), one record batch at a time.
///
/// A file that is not Parquet or lacks a usable `messages` column fails in
/// [`try_new`](Self::try_new); a row that cannot be converted yields
/// `Err(Error::InvalidValue)` for that row only; a decode failure mid-file yields one error
/// and ends the iteration.
pub struct ConversationReader {
    path: PathBuf,
    batches: Batches,
    messages_kind: ColumnKind,
    tools_kind: Option<ColumnKind>,
    next_row: usize,
    rows: u64,
    pending: VecDeque<(usize, Result<Value>)>,
}

impl ConversationReader {
    /// Open `path` and check it has a usable `messages` column.
    pub fn try_new(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let builder = open_builder(path)?;
        let schema = builder.schema().clone();
        let messages = schema.field_with_name(col::MESSAGES).map_err(|_| Error::MissingColumn {
            path: path.to_owned(),
            column: col::MESSAGES.to_owned(),
        })?;
        let messages_kind = column_kind(messages.data_type()).ok_or_else(|| Error::ColumnType {
            path: path.to_owned(),
            column: col::MESSAGES.to_owned(),
            found: messages.data_type().to_string(),
            expected: "list<struct<role, content, ...>> or utf8 JSON".to_owned(),
        })?;
        let tools_kind = schema
            .field_with_name(col::TOOLS)
            .ok()
            .map(|f| {
                column_kind(f.data_type()).ok_or_else(|| Error::ColumnType {
                    path: path.to_owned(),
                    column: col::TOOLS.to_owned(),
                    found: f.data_type().to_string(),
                    expected: "utf8 JSON or a list".to_owned(),
                })
            })
            .transpose()?;
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        Ok(ConversationReader {
            path: path.to_owned(),
            // Every column is decoded (a corrupt page anywhere makes the file unreadable); only
            // `messages`, `tools` and (our schema) each row's `thinking_mode` are converted, so a
            // row is checked in its own mode.
            batches: batches(path, builder, None)?,
            messages_kind,
            tools_kind,
            next_row: 0,
            rows,
            pending: VecDeque::new(),
        })
    }

    /// Rows in the file (from the footer).
    pub fn num_rows(&self) -> u64 {
        self.rows
    }

    fn invalid(&self, row: usize, column: &str, reason: impl Into<String>) -> Error {
        Error::InvalidValue {
            path: self.path.clone(),
            row,
            column: column.to_owned(),
            reason: reason.into(),
        }
    }

    fn cell(
        &self,
        array: &dyn Array,
        kind: ColumnKind,
        i: usize,
        row: usize,
        column: &str,
    ) -> Result<Option<Value>> {
        if array.is_null(i) {
            return Ok(None);
        }
        match kind {
            ColumnKind::Nested => {
                array_value(array, i).map(Some).map_err(|reason| self.invalid(row, column, reason))
            }
            ColumnKind::Json => {
                let text = string_at(array, i)
                    .ok_or_else(|| self.invalid(row, column, "not a string column"))?;
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| self.invalid(row, column, format!("invalid JSON: {e}")))
            }
        }
    }

    fn convert_batch(&mut self, batch: &RecordBatch) {
        let base = self.next_row;
        self.next_row += batch.num_rows();
        let Some(messages) = batch.column_by_name(col::MESSAGES) else { return };
        let tools = batch.column_by_name(col::TOOLS);
        let mode = batch.column_by_name(col::THINKING_MODE);
        for i in 0..batch.num_rows() {
            let row = base + i;
            let value = (|| {
                let mut msgs = self
                    .cell(messages.as_ref(), self.messages_kind, i, row, col::MESSAGES)?
                    .ok_or_else(|| self.invalid(row, col::MESSAGES, "null"))?;
                normalise_messages(&mut msgs)
                    .map_err(|reason| self.invalid(row, col::MESSAGES, reason))?;
                let mut obj = serde_json::Map::new();
                obj.insert("messages".to_owned(), msgs);
                if let (Some(t), Some(kind)) = (tools, self.tools_kind)
                    && let Some(v) = self.cell(t.as_ref(), kind, i, row, col::TOOLS)?
                {
                    obj.insert("tools".to_owned(), v);
                }
                if let Some(m) = mode.filter(|m| m.is_valid(i)).and_then(|m| string_at(m, i)) {
                    obj.insert("thinking_mode".to_owned(), Value::String(m));
                }
                Ok(Value::Object(obj))
            })();
            self.pending.push_back((row, value));
        }
    }
}

fn string_at(array: &dyn Array, i: usize) -> Option<String> {
    if let Some(a) = array.as_string_opt::<i32>() {
        return Some(a.value(i).to_owned());
    }
    if let Some(a) = array.as_string_opt::<i64>() {
        return Some(a.value(i).to_owned());
    }
    if let Some(a) = array.as_string_view_opt() {
        return Some(a.value(i).to_owned());
    }
    if let Some(d) = array.as_any_dictionary_opt() {
        let key = *d.normalized_keys().get(i)?;
        return string_at(d.values().as_ref(), key);
    }
    None
}

impl Iterator for ConversationReader {
    type Item = (usize, Result<Value>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match self.batches.next()? {
                Ok(batch) => self.convert_batch(&batch),
                Err(e) => return Some((self.next_row, Err(e))),
            }
        }
    }
}

impl Error {
    /// Whether the error concerns one row only (the rest of the file is still readable).
    pub fn is_row_error(&self) -> bool {
        matches!(self, Error::InvalidValue { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    use arrow::datatypes::Int32Type;

    /// An all-null dictionary column with no values (as pyarrow writes one) is measured, not
    /// a panic (`normalized_keys` asserts non-empty values).
    #[test]
    fn expanded_bytes_of_an_empty_dictionary() {
        let keys = Int32Array::from(vec![None, None, None]);
        let values = StringArray::from(Vec::<&str>::new());
        let d = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        assert_eq!(expanded_bytes(&d), 12);
        let keys = Int32Array::from(vec![Some(0), None, Some(1)]);
        let values = StringArray::from(vec!["ab", "cde"]);
        let d = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        // 2 + 3 value bytes, a null key counts as the first value, 4 key bytes each.
        assert_eq!(expanded_bytes(&d), (2 + 4) + (2 + 4) + (3 + 4));
    }
}
