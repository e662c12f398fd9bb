//! The versioned Arrow schema and its column documentation.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

/// Version of the row schema. Bumped on any change to column names or types; stored in the
/// Arrow schema metadata and the Parquet key-value metadata under [`SCHEMA_VERSION_KEY`].
pub const SCHEMA_VERSION: u32 = 2;

/// Schema versions the readers accept: version 1 files lack the v2 columns, which read back
/// as their documented defaults (see `SCHEMA.md`).
pub const READABLE_SCHEMA_VERSIONS: &[u32] = &[1, 2];

/// Metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "agentgen.schema_version";

/// Column names, in schema order.
pub mod col {
    #![allow(missing_docs)]
    pub const SAMPLE_ID: &str = "sample_id";
    pub const TASK_ID: &str = "task_id";
    pub const GROUP_ID: &str = "group_id";
    pub const RUN_ID: &str = "run_id";
    pub const FAMILY: &str = "family";
    pub const INSTANCE_SEED: &str = "instance_seed";
    pub const TASK_SEED: &str = "task_seed";
    pub const SAMPLE_INDEX: &str = "sample_index";
    pub const DIFFICULTY: &str = "difficulty";
    pub const THINKING_MODE: &str = "thinking_mode";
    pub const TOOLS: &str = "tools";
    pub const MESSAGES: &str = "messages";
    pub const TEXT: &str = "text";
    pub const TOKEN_IDS: &str = "token_ids";
    pub const LOSS_MASK: &str = "loss_mask";
    pub const LOGPROBS: &str = "logprobs";
    pub const REWARD: &str = "reward";
    pub const ADVANTAGE: &str = "advantage";
    pub const PASSED: &str = "passed";
    pub const CHECKS: &str = "checks";
    pub const REJECTION_CODE: &str = "rejection_code";
    pub const REJECTION_DETAIL: &str = "rejection_detail";
    pub const TURNS: &str = "turns";
    pub const TOOL_CALLS: &str = "tool_calls";
    pub const FINISH_REASON: &str = "finish_reason";
    pub const POLICY: &str = "policy";
    pub const MODEL: &str = "model";
    pub const SAMPLING: &str = "sampling";
    pub const WARNINGS: &str = "warnings";
    pub const TIMINGS_MS: &str = "timings_ms";
    // Schema v2.
    pub const TOKEN_SOURCE: &str = "token_source";
    pub const EPISODE_ID: &str = "episode_id";
    pub const TURN_INDEX: &str = "turn_index";
    pub const TURNS_TOTAL: &str = "turns_total";
    pub const ENV_PACKAGE: &str = "env_package";
    pub const ENV_PACKAGE_SHA256: &str = "env_package_sha256";
    pub const ENV_PYTHON: &str = "env_python";
}

/// One documented column: name, Arrow type as text, nullability, meaning. Drives `SCHEMA.md`
/// checks and the dataset card.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDoc {
    /// Column name.
    pub name: &'static str,
    /// Arrow type, written as in `SCHEMA.md`.
    pub arrow_type: &'static str,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// What it means.
    pub description: &'static str,
}

const fn doc(
    name: &'static str,
    arrow_type: &'static str,
    nullable: bool,
    description: &'static str,
) -> ColumnDoc {
    ColumnDoc { name, arrow_type, nullable, description }
}

/// Every column of [`schema()`], in order, with its documentation.
pub const COLUMNS: &[ColumnDoc] = &[
    doc(col::SAMPLE_ID, "utf8", false, "deterministic id from (run seed, task, sample index)"),
    doc(col::TASK_ID, "utf8", false, "`family@version/instance_seed/task_seed`, reconstructible"),
    doc(col::GROUP_ID, "utf8", false, "RL group: the samples of one task in one run"),
    doc(col::RUN_ID, "utf8", false, "the run that produced the row"),
    doc(col::FAMILY, "utf8", false, "environment family"),
    doc(col::INSTANCE_SEED, "uint64", false, "seed of the environment instance"),
    doc(col::TASK_SEED, "uint64", false, "seed of the task within the instance"),
    doc(col::SAMPLE_INDEX, "uint32", false, "index of the sample within its group"),
    doc(col::DIFFICULTY, "uint8", false, "task difficulty as the generator rates it"),
    doc(col::THINKING_MODE, "utf8", false, "`thinking` or `chat`: the mode `text` is encoded in"),
    doc(col::TOOLS, "utf8", false, "JSON text of the OpenAI tool list (belongs on `messages[0]`)"),
    doc(
        col::MESSAGES,
        "list<struct<role: utf8, content: utf8?, reasoning_content: utf8?, \
         tool_calls: list<struct<name: utf8, arguments: utf8>>?>>",
        false,
        "the conversation; absent fields are null; `arguments` is JSON text",
    ),
    doc(
        col::TEXT,
        "utf8",
        false,
        "the exact encoded conversation (BOS, tools on the first system message, the run's \
         thinking mode) that `token_ids` come from",
    ),
    doc(col::TOKEN_IDS, "list<int32>", false, "token ids of `text` (sampled ids where sampled)"),
    doc(col::LOSS_MASK, "list<int8>", false, "1 on trained tokens, 0 elsewhere; one per token"),
    doc(
        col::LOGPROBS,
        "list<float32?>?",
        true,
        "logprob per token; null items for prompt/forced tokens, null list when the policy gave none",
    ),
    doc(col::REWARD, "float32", false, "verifier reward"),
    doc(col::ADVANTAGE, "float32?", true, "group-relative advantage, null outside group sampling"),
    doc(col::PASSED, "bool", false, "whether the verifier passed the outcome"),
    doc(col::CHECKS, "utf8", false, "JSON text of the verifier checks"),
    doc(col::REJECTION_CODE, "utf8?", true, "stable rejection code, null on accepted rows"),
    doc(col::REJECTION_DETAIL, "utf8?", true, "rejection detail, null on accepted rows"),
    doc(col::TURNS, "uint32", false, "assistant turns"),
    doc(col::TOOL_CALLS, "uint32", false, "tool calls made"),
    doc(col::FINISH_REASON, "utf8", false, "why the rollout ended (`stop`, `max_turns`, ...)"),
    doc(col::POLICY, "utf8", false, "`reference`, `local`, `http` or `chat`"),
    doc(col::MODEL, "utf8?", true, "model name or checkpoint, null for the reference policy"),
    doc(col::SAMPLING, "utf8", false, "JSON text of the sampling parameters"),
    doc(col::WARNINGS, "list<utf8>", false, "non-fatal findings (`tokens.noncanonical`, ...)"),
    doc(col::TIMINGS_MS, "utf8", false, "JSON text of per-stage timings in milliseconds"),
    // Schema v2.
    doc(
        col::TOKEN_SOURCE,
        "utf8",
        false,
        "`reference` (tokenizer ids of a scripted solution), `sampled` (the ids the policy \
         sampled) or `retokenized` (the policy returned text; ids are the tokenizer's)",
    ),
    doc(
        col::EPISODE_ID,
        "utf8",
        false,
        "the episode (one rollout of one task) the row belongs to; a multi-turn episode has one \
         row per user turn",
    ),
    doc(col::TURN_INDEX, "int32", false, "0-based user turn of this row within its episode"),
    doc(
        col::TURNS_TOTAL,
        "int32",
        false,
        "rows of this episode (user turns played); all of them are in the dataset",
    ),
    doc(
        col::ENV_PACKAGE,
        "utf8?",
        true,
        "`name@version` of the envpkg package, null for built-ins",
    ),
    doc(col::ENV_PACKAGE_SHA256, "utf8?", true, "content hash of that package (spec envpkg §11)"),
    doc(col::ENV_PYTHON, "utf8?", true, "`major.minor` of the package's worker Python"),
];

fn item(data_type: DataType, nullable: bool) -> Arc<Field> {
    Arc::new(Field::new("item", data_type, nullable))
}

/// Fields of one tool-call struct: `name`, `arguments`.
pub(crate) fn tool_call_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("arguments", DataType::Utf8, false),
    ])
}

/// Fields of one message struct.
pub(crate) fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, true),
        Field::new("reasoning_content", DataType::Utf8, true),
        Field::new(
            "tool_calls",
            DataType::List(item(DataType::Struct(tool_call_fields()), false)),
            true,
        ),
    ])
}

fn build_schema() -> Schema {
    use DataType::*;
    let utf8 = |name: &str| Field::new(name, Utf8, false);
    let fields = vec![
        utf8(col::SAMPLE_ID),
        utf8(col::TASK_ID),
        utf8(col::GROUP_ID),
        utf8(col::RUN_ID),
        utf8(col::FAMILY),
        Field::new(col::INSTANCE_SEED, UInt64, false),
        Field::new(col::TASK_SEED, UInt64, false),
        Field::new(col::SAMPLE_INDEX, UInt32, false),
        Field::new(col::DIFFICULTY, UInt8, false),
        utf8(col::THINKING_MODE),
        utf8(col::TOOLS),
        Field::new(col::MESSAGES, List(item(Struct(message_fields()), false)), false),
        utf8(col::TEXT),
        Field::new(col::TOKEN_IDS, List(item(Int32, false)), false),
        Field::new(col::LOSS_MASK, List(item(Int8, false)), false),
        Field::new(col::LOGPROBS, List(item(Float32, true)), true),
        Field::new(col::REWARD, Float32, false),
        Field::new(col::ADVANTAGE, Float32, true),
        Field::new(col::PASSED, Boolean, false),
        utf8(col::CHECKS),
        Field::new(col::REJECTION_CODE, Utf8, true),
        Field::new(col::REJECTION_DETAIL, Utf8, true),
        Field::new(col::TURNS, UInt32, false),
        Field::new(col::TOOL_CALLS, UInt32, false),
        utf8(col::FINISH_REASON),
        utf8(col::POLICY),
        Field::new(col::MODEL, Utf8, true),
        utf8(col::SAMPLING),
        Field::new(col::WARNINGS, List(item(Utf8, false)), false),
        utf8(col::TIMINGS_MS),
        // Schema v2.
        utf8(col::TOKEN_SOURCE),
        utf8(col::EPISODE_ID),
        Field::new(col::TURN_INDEX, Int32, false),
        Field::new(col::TURNS_TOTAL, Int32, false),
        Field::new(col::ENV_PACKAGE, Utf8, true),
        Field::new(col::ENV_PACKAGE_SHA256, Utf8, true),
        Field::new(col::ENV_PYTHON, Utf8, true),
    ];
    let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]);
    Schema::new_with_metadata(fields, metadata)
}

/// The versioned row schema (version [`SCHEMA_VERSION`] in its metadata).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| Arc::new(build_schema())).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_doc_matches_schema() {
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let documented: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, documented);
        for (field, doc) in schema.fields().iter().zip(COLUMNS) {
            assert_eq!(field.is_nullable(), doc.nullable, "{}", doc.name);
        }
    }

    #[test]
    fn schema_md_documents_every_column() {
        let md = include_str!("../SCHEMA.md");
        for c in COLUMNS {
            assert!(md.contains(&format!("`{}`", c.name)), "SCHEMA.md lacks `{}`", c.name);
        }
        assert!(md.contains(&format!("version {SCHEMA_VERSION}")));
    }
}
