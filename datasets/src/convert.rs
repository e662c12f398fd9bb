//! `SampleRow` <-> Arrow `RecordBatch`.
//!
//! Arrays are assembled from flat value vectors and offsets rather than nested builders: it is
//! faster, and the field definitions come from one place ([`crate::schema`]).

use std::path::Path;
use std::sync::Arc;

use agentgen_codec::{Message, Role, ToolCall};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, GenericStringArray, Int8Array,
    Int32Array, ListArray, RecordBatch, StringArray, StructArray, UInt8Array, UInt32Array,
    UInt64Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Field, Float32Type, Int8Type, Int32Type, UInt8Type, UInt32Type, UInt64Type,
};

use crate::schema::{col, message_fields, schema, tool_call_fields};
use crate::{Error, Result, SampleRow, Verdict};

/// Running i32 offsets; errors (instead of wrapping) past 2 GiB of values in one batch.
struct Offsets(Vec<i32>);

impl Offsets {
    fn with_capacity(n: usize) -> Self {
        let mut v = Vec::with_capacity(n + 1);
        v.push(0);
        Offsets(v)
    }
    fn push_len(&mut self, len: usize) -> Result<()> {
        let last = *self.0.last().unwrap_or(&0);
        let next = i32::try_from(len).ok().and_then(|l| last.checked_add(l)).ok_or_else(|| {
            Error::InvalidOptions {
                reason: "a record batch exceeds 2 GiB in one column; lower row_group_rows".into(),
            }
        })?;
        self.0.push(next);
        Ok(())
    }
    fn finish(self) -> OffsetBuffer<i32> {
        OffsetBuffer::new(ScalarBuffer::from(self.0))
    }
}

fn list_field(data_type: &DataType) -> Arc<Field> {
    match data_type {
        DataType::List(f) => f.clone(),
        // Unreachable by construction: callers pass list types from `schema()`.
        _ => Arc::new(Field::new("item", data_type.clone(), true)),
    }
}

fn field_type(name: &str) -> DataType {
    schema().field_with_name(name).map_or(DataType::Null, |f| f.data_type().clone())
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn string_list<'a, I>(rows: impl Iterator<Item = I>, n: usize, name: &str) -> Result<ArrayRef>
where
    I: ExactSizeIterator<Item = &'a str>,
{
    let mut offsets = Offsets::with_capacity(n);
    let mut values = Vec::new();
    for row in rows {
        offsets.push_len(row.len())?;
        values.extend(row);
    }
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(values));
    let field = list_field(&field_type(name));
    Ok(Arc::new(ListArray::try_new(field, offsets.finish(), values, None).map_err(arrow_err)?))
}

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::arrow(Path::new("<batch>"), e)
}

fn messages_array(rows: &[SampleRow]) -> Result<ArrayRef> {
    let n_msgs: usize = rows.iter().map(|r| r.messages.len()).sum();
    let mut row_offsets = Offsets::with_capacity(rows.len());
    let mut roles = Vec::with_capacity(n_msgs);
    let mut contents = Vec::with_capacity(n_msgs);
    let mut reasonings = Vec::with_capacity(n_msgs);
    let mut call_offsets = Offsets::with_capacity(n_msgs);
    let mut call_valid = Vec::with_capacity(n_msgs);
    let mut names = Vec::new();
    let mut args = Vec::new();
    for row in rows {
        row_offsets.push_len(row.messages.len())?;
        for m in &row.messages {
            roles.push(m.role.as_str());
            contents.push(m.content.as_deref());
            reasonings.push(m.reasoning_content.as_deref());
            call_offsets.push_len(m.tool_calls.len())?;
            call_valid.push(!m.tool_calls.is_empty());
            for c in &m.tool_calls {
                names.push(c.name.as_str());
                args.push(c.arguments.as_str());
            }
        }
    }
    let calls = StructArray::try_new(
        tool_call_fields(),
        vec![strings(names.into_iter()), strings(args.into_iter())],
        None,
    )
    .map_err(arrow_err)?;
    let fields = message_fields();
    let calls_field = list_field(fields[3].data_type());
    let calls = ListArray::try_new(
        calls_field,
        call_offsets.finish(),
        Arc::new(calls),
        Some(NullBuffer::from(call_valid)),
    )
    .map_err(arrow_err)?;
    let messages = StructArray::try_new(
        fields,
        vec![
            strings(roles.into_iter()),
            opt_strings(contents.into_iter()),
            opt_strings(reasonings.into_iter()),
            Arc::new(calls),
        ],
        None,
    )
    .map_err(arrow_err)?;
    let field = list_field(&field_type(col::MESSAGES));
    Ok(Arc::new(
        ListArray::try_new(field, row_offsets.finish(), Arc::new(messages), None)
            .map_err(arrow_err)?,
    ))
}

fn token_ids_array(rows: &[SampleRow]) -> Result<ArrayRef> {
    let mut offsets = Offsets::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.iter().map(|r| r.token_ids.len()).sum());
    for row in rows {
        offsets.push_len(row.token_ids.len())?;
        // Token ids are < 2^31 in every real vocabulary; a larger id is stored bit-for-bit
        // (reinterpreted), so the round trip is still exact.
        values.extend(row.token_ids.iter().map(|&t| t as i32));
    }
    let field = list_field(&field_type(col::TOKEN_IDS));
    let values: ArrayRef = Arc::new(Int32Array::from(values));
    Ok(Arc::new(ListArray::try_new(field, offsets.finish(), values, None).map_err(arrow_err)?))
}

fn loss_mask_array(rows: &[SampleRow]) -> Result<ArrayRef> {
    let mut offsets = Offsets::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.iter().map(|r| r.loss_mask.len()).sum());
    for row in rows {
        offsets.push_len(row.loss_mask.len())?;
        values.extend(row.loss_mask.iter().map(|&m| m as i8));
    }
    let field = list_field(&field_type(col::LOSS_MASK));
    let values: ArrayRef = Arc::new(Int8Array::from(values));
    Ok(Arc::new(ListArray::try_new(field, offsets.finish(), values, None).map_err(arrow_err)?))
}

fn logprobs_array(rows: &[SampleRow]) -> Result<ArrayRef> {
    let mut offsets = Offsets::with_capacity(rows.len());
    let mut valid = Vec::with_capacity(rows.len());
    let mut values: Vec<Option<f32>> = Vec::new();
    for row in rows {
        match &row.logprobs {
            Some(lp) => {
                offsets.push_len(lp.len())?;
                values.extend(lp.iter().copied());
                valid.push(true);
            }
            None => {
                offsets.push_len(0)?;
                valid.push(false);
            }
        }
    }
    let field = list_field(&field_type(col::LOGPROBS));
    let values: ArrayRef = Arc::new(Float32Array::from(values));
    Ok(Arc::new(
        ListArray::try_new(field, offsets.finish(), values, Some(NullBuffer::from(valid)))
            .map_err(arrow_err)?,
    ))
}

/// Build one record batch of [`schema()`] from `rows`.
pub fn rows_to_batch(rows: &[SampleRow]) -> Result<RecordBatch> {
    let s = |f: fn(&SampleRow) -> &str| strings(rows.iter().map(f));
    let columns: Vec<ArrayRef> = vec![
        s(|r| &r.sample_id),
        s(|r| &r.task_id),
        s(|r| &r.group_id),
        s(|r| &r.run_id),
        s(|r| &r.family),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.instance_seed))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.task_seed))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sample_index))),
        Arc::new(UInt8Array::from_iter_values(rows.iter().map(|r| r.difficulty))),
        s(|r| &r.thinking_mode),
        s(|r| &r.tools),
        messages_array(rows)?,
        s(|r| &r.text),
        token_ids_array(rows)?,
        loss_mask_array(rows)?,
        logprobs_array(rows)?,
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.reward))),
        Arc::new(rows.iter().map(|r| r.advantage).collect::<Float32Array>()),
        Arc::new(rows.iter().map(|r| Some(r.passed)).collect::<BooleanArray>()),
        s(|r| &r.checks),
        opt_strings(rows.iter().map(|r| r.verdict.code())),
        opt_strings(rows.iter().map(|r| match &r.verdict {
            Verdict::Accepted => None,
            Verdict::Rejected { detail, .. } => Some(detail.as_str()),
        })),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.turns))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.tool_calls))),
        s(|r| &r.finish_reason),
        s(|r| &r.policy),
        opt_strings(rows.iter().map(|r| r.model.as_deref())),
        s(|r| &r.sampling),
        string_list(
            rows.iter().map(|r| r.warnings.iter().map(String::as_str)),
            rows.len(),
            col::WARNINGS,
        )?,
        s(|r| &r.timings_ms),
        // Schema v2.
        s(|r| &r.token_source),
        s(|r| &r.episode_id),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.turn_index))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.turns_total))),
        opt_strings(rows.iter().map(|r| r.env_package.as_deref())),
        opt_strings(rows.iter().map(|r| r.env_package_sha256.as_deref())),
        opt_strings(rows.iter().map(|r| r.env_python.as_deref())),
    ];
    RecordBatch::try_new(schema(), columns).map_err(arrow_err)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// The usual `token_source` of a policy's rows: the reference policy's ids are the
/// tokenizer's, `local` stores the sampled ids, every other policy's text is tokenized. (What a
/// version 1 row, which has no such column, reads back; what a run records before its rows.)
pub fn policy_token_source(policy: &str) -> &'static str {
    match policy {
        "reference" => "reference",
        "local" => "sampled",
        _ => "retokenized",
    }
}

/// Typed, panic-free access to the columns of one batch of our schema.
pub(crate) struct BatchView<'a> {
    path: &'a Path,
    batch: &'a RecordBatch,
    /// Row index of the batch's first row within the file.
    base: usize,
    /// Whether `tools` may come as a dictionary of utf8 (read so by [`crate::ScanFile`], whose
    /// file stores it as utf8).
    dict_tools: bool,
}

const NULL_IN_NON_NULL: &str = "null in a non-null column";

impl<'a> BatchView<'a> {
    pub(crate) fn new(path: &'a Path, batch: &'a RecordBatch, base: usize) -> Self {
        BatchView { path, batch, base, dict_tools: false }
    }

    /// A view whose `tools` column may be a dictionary of utf8 (see [`crate::ScanFile`]).
    pub(crate) fn with_dict_tools(mut self, dict_tools: bool) -> Self {
        self.dict_tools = dict_tools;
        self
    }

    /// A utf8 column, or (for `tools` in a view that allows it) a dictionary of utf8.
    fn strs(&self, name: &str) -> Result<Strs<'a>> {
        let a = self.column(name)?;
        if let Some(s) = a.as_string_opt::<i32>() {
            return Ok(Strs::Plain(s));
        }
        if self.dict_tools
            && let Some(d) = a.as_dictionary_opt::<Int32Type>()
            && let Some(values) = d.values().as_string_opt::<i32>()
        {
            return Ok(Strs::Dict { keys: d.keys(), values });
        }
        Err(self.type_err(name, a.data_type(), "utf8"))
    }

    fn column(&self, name: &str) -> Result<&'a ArrayRef> {
        self.batch.column_by_name(name).ok_or_else(|| Error::MissingColumn {
            path: self.path.to_owned(),
            column: name.to_owned(),
        })
    }

    fn type_err(&self, name: &str, found: &DataType, expected: &str) -> Error {
        Error::ColumnType {
            path: self.path.to_owned(),
            column: name.to_owned(),
            found: found.to_string(),
            expected: expected.to_owned(),
        }
    }

    fn invalid(&self, row: usize, column: &str, reason: impl Into<String>) -> Error {
        Error::InvalidValue {
            path: self.path.to_owned(),
            row: self.base + row,
            column: column.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn utf8(&self, name: &str) -> Result<&'a GenericStringArray<i32>> {
        let a = self.column(name)?;
        a.as_string_opt::<i32>().ok_or_else(|| self.type_err(name, a.data_type(), "utf8"))
    }

    pub(crate) fn prim<T: arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<&'a arrow::array::PrimitiveArray<T>> {
        let a = self.column(name)?;
        a.as_primitive_opt::<T>().ok_or_else(|| self.type_err(name, a.data_type(), expected))
    }

    fn list(&self, name: &str, expected: &str) -> Result<&'a ListArray> {
        let a = self.column(name)?;
        a.as_list_opt::<i32>().ok_or_else(|| self.type_err(name, a.data_type(), expected))
    }

    fn req_str(&self, a: &'a GenericStringArray<i32>, i: usize, name: &str) -> Result<String> {
        if a.is_null(i) {
            return Err(self.invalid(i, name, NULL_IN_NON_NULL));
        }
        Ok(a.value(i).to_owned())
    }

    fn opt_str(a: &GenericStringArray<i32>, i: usize) -> Option<String> {
        a.is_valid(i).then(|| a.value(i).to_owned())
    }

    /// Every column of the batch, typed (a missing column or a wrong type is an error, in
    /// schema order), and the messages of every row decoded.
    fn columns(&self) -> Result<Columns<'a>> {
        let sample_id = self.utf8(col::SAMPLE_ID)?;
        let task_id = self.utf8(col::TASK_ID)?;
        let group_id = self.utf8(col::GROUP_ID)?;
        let run_id = self.utf8(col::RUN_ID)?;
        let family = self.utf8(col::FAMILY)?;
        let instance_seed = self.prim::<UInt64Type>(col::INSTANCE_SEED, "uint64")?;
        let task_seed = self.prim::<UInt64Type>(col::TASK_SEED, "uint64")?;
        let sample_index = self.prim::<UInt32Type>(col::SAMPLE_INDEX, "uint32")?;
        let difficulty = self.prim::<UInt8Type>(col::DIFFICULTY, "uint8")?;
        let thinking_mode = self.utf8(col::THINKING_MODE)?;
        let tools = self.strs(col::TOOLS)?;
        let messages = self.messages()?;
        let text = self.utf8(col::TEXT)?;
        let token_ids = self.list(col::TOKEN_IDS, "list<int32>")?;
        let token_values = token_ids
            .values()
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| self.type_err(col::TOKEN_IDS, token_ids.data_type(), "list<int32>"))?;
        let loss_mask = self.list(col::LOSS_MASK, "list<int8>")?;
        let mask_values = loss_mask
            .values()
            .as_primitive_opt::<Int8Type>()
            .ok_or_else(|| self.type_err(col::LOSS_MASK, loss_mask.data_type(), "list<int8>"))?;
        let logprobs = self.list(col::LOGPROBS, "list<float32>")?;
        let lp_values = logprobs
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| self.type_err(col::LOGPROBS, logprobs.data_type(), "list<float32>"))?;
        let reward = self.prim::<Float32Type>(col::REWARD, "float32")?;
        let advantage = self.prim::<Float32Type>(col::ADVANTAGE, "float32")?;
        let passed_col = self.column(col::PASSED)?;
        let passed = passed_col
            .as_boolean_opt()
            .ok_or_else(|| self.type_err(col::PASSED, passed_col.data_type(), "bool"))?;
        let checks = self.utf8(col::CHECKS)?;
        let rejection_code = self.utf8(col::REJECTION_CODE)?;
        let rejection_detail = self.utf8(col::REJECTION_DETAIL)?;
        let turns = self.prim::<UInt32Type>(col::TURNS, "uint32")?;
        let tool_calls = self.prim::<UInt32Type>(col::TOOL_CALLS, "uint32")?;
        let finish_reason = self.utf8(col::FINISH_REASON)?;
        let policy = self.utf8(col::POLICY)?;
        let model = self.utf8(col::MODEL)?;
        let sampling = self.utf8(col::SAMPLING)?;
        let warnings = self.list(col::WARNINGS, "list<utf8>")?;
        let warning_values = warnings
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| self.type_err(col::WARNINGS, warnings.data_type(), "list<utf8>"))?;
        let timings_ms = self.utf8(col::TIMINGS_MS)?;
        // Schema v2 columns: absent in version 1 files.
        let token_source = match self.batch.column_by_name(col::TOKEN_SOURCE) {
            Some(_) => Some(self.utf8(col::TOKEN_SOURCE)?),
            None => None,
        };
        let opt_utf8 = |name: &str| match self.batch.column_by_name(name) {
            Some(_) => self.utf8(name).map(Some),
            None => Ok(None),
        };
        let opt_i32 = |name: &str| match self.batch.column_by_name(name) {
            Some(_) => self.prim::<Int32Type>(name, "int32").map(Some),
            None => Ok(None),
        };
        let episode_id = opt_utf8(col::EPISODE_ID)?;
        let turn_index = opt_i32(col::TURN_INDEX)?;
        let turns_total = opt_i32(col::TURNS_TOTAL)?;
        let env_package = opt_utf8(col::ENV_PACKAGE)?;
        let env_package_sha256 = opt_utf8(col::ENV_PACKAGE_SHA256)?;
        let env_python = opt_utf8(col::ENV_PYTHON)?;

        Ok(Columns {
            sample_id,
            task_id,
            group_id,
            run_id,
            family,
            instance_seed,
            task_seed,
            sample_index,
            difficulty,
            thinking_mode,
            tools,
            messages,
            text,
            token_ids,
            token_values,
            loss_mask,
            mask_values,
            logprobs,
            lp_values,
            reward,
            advantage,
            passed,
            checks,
            rejection_code,
            rejection_detail,
            turns,
            tool_calls,
            finish_reason,
            policy,
            model,
            sampling,
            warnings,
            warning_values,
            timings_ms,
            token_source,
            episode_id,
            turn_index,
            turns_total,
            env_package,
            env_package_sha256,
            env_python,
        })
    }

    /// Decode every row of the batch.
    pub(crate) fn rows(&self) -> Result<Vec<SampleRow>> {
        let n = self.batch.num_rows();
        let c = self.columns()?;
        let mut out = Vec::with_capacity(n);
        for (i, messages) in c.messages.into_iter().enumerate().take(n) {
            let range = |l: &ListArray| {
                let o = l.value_offsets();
                (o[i] as usize)..(o[i + 1] as usize)
            };
            let verdict = match Self::opt_str(c.rejection_code, i) {
                None => Verdict::Accepted,
                Some(code) => Verdict::Rejected {
                    code,
                    detail: Self::opt_str(c.rejection_detail, i).unwrap_or_default(),
                },
            };
            let logprobs = c.logprobs.is_valid(i).then(|| {
                range(c.logprobs)
                    .map(|j| c.lp_values.is_valid(j).then(|| c.lp_values.value(j)))
                    .collect()
            });
            out.push(SampleRow {
                sample_id: self.req_str(c.sample_id, i, col::SAMPLE_ID)?,
                task_id: self.req_str(c.task_id, i, col::TASK_ID)?,
                group_id: self.req_str(c.group_id, i, col::GROUP_ID)?,
                run_id: self.req_str(c.run_id, i, col::RUN_ID)?,
                family: self.req_str(c.family, i, col::FAMILY)?,
                instance_seed: c.instance_seed.value(i),
                task_seed: c.task_seed.value(i),
                sample_index: c.sample_index.value(i),
                difficulty: c.difficulty.value(i),
                thinking_mode: self.req_str(c.thinking_mode, i, col::THINKING_MODE)?,
                tools: match c.tools.value(i) {
                    Some(t) => t.to_owned(),
                    None => return Err(self.invalid(i, col::TOOLS, NULL_IN_NON_NULL)),
                },
                messages,
                text: self.req_str(c.text, i, col::TEXT)?,
                token_ids: c.token_values.values()[range(c.token_ids)]
                    .iter()
                    .map(|&t| t as u32)
                    .collect(),
                loss_mask: c.mask_values.values()[range(c.loss_mask)]
                    .iter()
                    .map(|&m| m as u8)
                    .collect(),
                logprobs,
                reward: c.reward.value(i),
                advantage: c.advantage.is_valid(i).then(|| c.advantage.value(i)),
                passed: c.passed.value(i),
                checks: self.req_str(c.checks, i, col::CHECKS)?,
                verdict,
                turns: c.turns.value(i),
                tool_calls: c.tool_calls.value(i),
                finish_reason: self.req_str(c.finish_reason, i, col::FINISH_REASON)?,
                policy: self.req_str(c.policy, i, col::POLICY)?,
                model: Self::opt_str(c.model, i),
                sampling: self.req_str(c.sampling, i, col::SAMPLING)?,
                warnings: range(c.warnings).map(|j| c.warning_values.value(j).to_owned()).collect(),
                timings_ms: self.req_str(c.timings_ms, i, col::TIMINGS_MS)?,
                token_source: match c.token_source {
                    Some(a) => self.req_str(a, i, col::TOKEN_SOURCE)?,
                    None => {
                        policy_token_source(&self.req_str(c.policy, i, col::POLICY)?).to_owned()
                    }
                },
                episode_id: match c.episode_id {
                    Some(a) => self.req_str(a, i, col::EPISODE_ID)?,
                    None => self.req_str(c.sample_id, i, col::SAMPLE_ID)?,
                },
                turn_index: c.turn_index.map_or(0, |a| a.value(i)),
                turns_total: c.turns_total.map_or(1, |a| a.value(i)),
                env_package: c.env_package.and_then(|a| Self::opt_str(a, i)),
                env_package_sha256: c.env_package_sha256.and_then(|a| Self::opt_str(a, i)),
                env_python: c.env_python.and_then(|a| Self::opt_str(a, i)),
            });
        }
        Ok(out)
    }

    fn messages(&self) -> Result<Vec<Vec<Message>>> {
        const EXPECTED: &str = "list<struct<role, content, reasoning_content, tool_calls>>";
        let list = self.list(col::MESSAGES, EXPECTED)?;
        let bad = || self.type_err(col::MESSAGES, list.data_type(), EXPECTED);
        let structs = list.values().as_struct_opt().ok_or_else(bad)?;
        let field = |name: &str| -> Result<&GenericStringArray<i32>> {
            structs.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(bad)
        };
        let roles = field("role")?;
        let contents = field("content")?;
        let reasonings = field("reasoning_content")?;
        let calls = structs
            .column_by_name("tool_calls")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(bad)?;
        let call_structs = calls.values().as_struct_opt().ok_or_else(bad)?;
        let call_field = |name: &str| -> Result<&GenericStringArray<i32>> {
            call_structs.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(bad)
        };
        let names = call_field("name")?;
        let arguments = call_field("arguments")?;
        let offsets = list.value_offsets();
        let call_offsets = calls.value_offsets();
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let range = (offsets[i] as usize)..(offsets[i + 1] as usize);
            let mut messages = Vec::with_capacity(range.len());
            for j in range {
                let role = match roles.is_valid(j).then(|| roles.value(j)) {
                    Some("system") => Role::System,
                    Some("developer") => Role::Developer,
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    Some("tool") => Role::Tool,
                    other => {
                        return Err(self.invalid(i, col::MESSAGES, format!("bad role {other:?}")));
                    }
                };
                let tool_calls = if calls.is_valid(j) {
                    ((call_offsets[j] as usize)..(call_offsets[j + 1] as usize))
                        .map(|k| ToolCall::new(names.value(k), arguments.value(k)))
                        .collect()
                } else {
                    Vec::new()
                };
                // Built through the constructor so fields the codec adds later stay defaulted.
                let mut m = Message::new(role, String::new());
                m.content = Self::opt_str(contents, j);
                m.reasoning_content = Self::opt_str(reasonings, j);
                m.tool_calls = tool_calls;
                messages.push(m);
            }
            out.push(messages);
        }
        Ok(out)
    }
}

/// A utf8 column, or a dictionary of utf8 read from one (see [`crate::ScanFile`]).
#[derive(Clone, Copy)]
enum Strs<'a> {
    Plain(&'a GenericStringArray<i32>),
    Dict { keys: &'a Int32Array, values: &'a GenericStringArray<i32> },
}

impl<'a> Strs<'a> {
    /// The value of row `i`, `None` when null.
    fn value(&self, i: usize) -> Option<&'a str> {
        match *self {
            Strs::Plain(a) => a.is_valid(i).then(|| a.value(i)),
            Strs::Dict { keys, values } => {
                let k = usize::try_from(keys.is_valid(i).then(|| keys.value(i))?).ok()?;
                (k < values.len() && values.is_valid(k)).then(|| values.value(k))
            }
        }
    }

    /// The dictionary key of row `i` (rows with one key hold the same value).
    fn key(&self, i: usize) -> Option<usize> {
        match *self {
            Strs::Plain(_) => None,
            Strs::Dict { keys, .. } => usize::try_from(keys.value(i)).ok(),
        }
    }

    /// Whether some row may be null (exact for plain columns).
    fn may_have_nulls(&self) -> bool {
        match *self {
            Strs::Plain(a) => a.null_count() > 0,
            Strs::Dict { .. } => true,
        }
    }
}

/// Every column of one batch of our schema, typed, with the messages decoded.
struct Columns<'a> {
    sample_id: &'a GenericStringArray<i32>,
    task_id: &'a GenericStringArray<i32>,
    group_id: &'a GenericStringArray<i32>,
    run_id: &'a GenericStringArray<i32>,
    family: &'a GenericStringArray<i32>,
    instance_seed: &'a UInt64Array,
    task_seed: &'a UInt64Array,
    sample_index: &'a UInt32Array,
    difficulty: &'a UInt8Array,
    thinking_mode: &'a GenericStringArray<i32>,
    tools: Strs<'a>,
    messages: Vec<Vec<Message>>,
    text: &'a GenericStringArray<i32>,
    token_ids: &'a ListArray,
    token_values: &'a Int32Array,
    loss_mask: &'a ListArray,
    mask_values: &'a Int8Array,
    logprobs: &'a ListArray,
    lp_values: &'a Float32Array,
    reward: &'a Float32Array,
    advantage: &'a Float32Array,
    passed: &'a BooleanArray,
    checks: &'a GenericStringArray<i32>,
    rejection_code: &'a GenericStringArray<i32>,
    rejection_detail: &'a GenericStringArray<i32>,
    turns: &'a UInt32Array,
    tool_calls: &'a UInt32Array,
    finish_reason: &'a GenericStringArray<i32>,
    policy: &'a GenericStringArray<i32>,
    model: &'a GenericStringArray<i32>,
    sampling: &'a GenericStringArray<i32>,
    warnings: &'a ListArray,
    warning_values: &'a GenericStringArray<i32>,
    timings_ms: &'a GenericStringArray<i32>,
    token_source: Option<&'a GenericStringArray<i32>>,
    episode_id: Option<&'a GenericStringArray<i32>>,
    turn_index: Option<&'a Int32Array>,
    turns_total: Option<&'a Int32Array>,
    env_package: Option<&'a GenericStringArray<i32>>,
    env_package_sha256: Option<&'a GenericStringArray<i32>>,
    env_python: Option<&'a GenericStringArray<i32>>,
}

/// One row of our schema as a check reads it: `text` and the per-token columns borrowed from
/// the decoded batch (nothing copied), the messages decoded. The other columns were decoded
/// and type-checked with the batch; a null where the schema forbids one fails the batch, as
/// it does for [`crate::read_rows`].
#[derive(Debug)]
pub struct RowView<'a> {
    /// `thinking_mode`.
    pub thinking_mode: &'a str,
    /// `tools`: JSON text of the tool list.
    pub tools: &'a str,
    /// The key of `tools` in its batch's dictionary when the column was read as one: rows of
    /// one batch with the same key hold the same text.
    pub tools_key: Option<usize>,
    /// The conversation (without the tool list, which is `tools`).
    pub messages: Vec<Message>,
    /// `text`.
    pub text: &'a str,
    /// `token_ids`, as stored (int32).
    pub token_ids: &'a [i32],
    /// `loss_mask`, as stored (int8).
    pub loss_mask: &'a [i8],
    /// How many values `logprobs` holds, `None` when the row has none (null).
    pub logprobs_len: Option<usize>,
}

impl<'a> BatchView<'a> {
    /// The rows of the batch as [`RowView`]s: the same errors as [`rows`](Self::rows) (the
    /// first one, in the same order), without copying what a check only reads.
    pub(crate) fn views(&self) -> Result<Vec<RowView<'a>>> {
        let n = self.batch.num_rows();
        let c = self.columns()?;
        // Nulls in non-null columns: the first row first, its columns in the order `rows`
        // reads them (`token_source` and `episode_id` fall back to columns read before).
        let mut required = vec![
            (col::SAMPLE_ID, Strs::Plain(c.sample_id)),
            (col::TASK_ID, Strs::Plain(c.task_id)),
            (col::GROUP_ID, Strs::Plain(c.group_id)),
            (col::RUN_ID, Strs::Plain(c.run_id)),
            (col::FAMILY, Strs::Plain(c.family)),
            (col::THINKING_MODE, Strs::Plain(c.thinking_mode)),
            (col::TOOLS, c.tools),
            (col::TEXT, Strs::Plain(c.text)),
            (col::CHECKS, Strs::Plain(c.checks)),
            (col::FINISH_REASON, Strs::Plain(c.finish_reason)),
            (col::POLICY, Strs::Plain(c.policy)),
            (col::SAMPLING, Strs::Plain(c.sampling)),
            (col::TIMINGS_MS, Strs::Plain(c.timings_ms)),
        ];
        required.extend(c.token_source.map(|a| (col::TOKEN_SOURCE, Strs::Plain(a))));
        required.extend(c.episode_id.map(|a| (col::EPISODE_ID, Strs::Plain(a))));
        if required.iter().any(|(_, a)| a.may_have_nulls()) {
            for i in 0..n {
                if let Some((name, _)) = required.iter().find(|(_, a)| a.value(i).is_none()) {
                    return Err(self.invalid(i, name, NULL_IN_NON_NULL));
                }
            }
        }
        let range = |l: &ListArray, i: usize| {
            let o = l.value_offsets();
            (o[i] as usize)..(o[i + 1] as usize)
        };
        let mut out = Vec::with_capacity(n);
        for (i, messages) in c.messages.into_iter().enumerate().take(n) {
            out.push(RowView {
                thinking_mode: c.thinking_mode.value(i),
                tools: c.tools.value(i).unwrap_or_default(),
                tools_key: c.tools.key(i),
                messages,
                text: c.text.value(i),
                token_ids: &c.token_values.values()[range(c.token_ids, i)],
                loss_mask: &c.mask_values.values()[range(c.loss_mask, i)],
                logprobs_len: c.logprobs.is_valid(i).then(|| range(c.logprobs, i).len()),
            });
        }
        Ok(out)
    }
}
