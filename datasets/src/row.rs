//! The row type: one trajectory with its verdict.

use agentgen_codec::Message;
use serde::{Deserialize, Serialize};

/// What the validators decided about a sample. Only `pipeline` constructs rows; the verdict
/// routes a row to split `train` (accepted) or `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Passed every stage: goes to split `train`.
    Accepted,
    /// Failed a stage: goes to split `rejected` with a stable code (`format.unclosed_call`,
    /// `outcome.failed`, ...) and a human-readable detail.
    Rejected {
        /// Stable rejection code, `stage.reason`.
        code: String,
        /// Free text (offsets, the offending value, ...).
        detail: String,
    },
}

impl Verdict {
    /// The split this verdict routes a row to.
    pub fn split(&self) -> Split {
        match self {
            Verdict::Accepted => Split::Train,
            Verdict::Rejected { .. } => Split::Rejected,
        }
    }
    /// The rejection code, `None` when accepted.
    pub fn code(&self) -> Option<&str> {
        match self {
            Verdict::Accepted => None,
            Verdict::Rejected { code, .. } => Some(code),
        }
    }
}

/// A dataset split (HF datasets layout: `data/{split}-*.parquet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Accepted samples.
    Train,
    /// Rejected samples, each with `rejection_code` and `rejection_detail`.
    Rejected,
}

impl Split {
    /// Both splits, in file-name order.
    pub const ALL: [Split; 2] = [Split::Rejected, Split::Train];

    /// The name used in file names and the dataset card.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Rejected => "rejected",
        }
    }

    /// Parse `"train"` / `"rejected"`.
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "rejected" => Some(Split::Rejected),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One trajectory: a row of the dataset. Field names are the column names (see `SCHEMA.md`);
/// `verdict` becomes the columns `rejection_code` and `rejection_detail`.
///
/// `messages` stores, per message, only what the V3.2 format encodes: `role`, `content`,
/// `reasoning_content` and `tool_calls` (`name`, `arguments`). The tool list lives in the
/// `tools` column (it belongs on `messages[0]`, see [`SampleRow::conversation`]); tool-call ids,
/// `tool_call_id`, `name` and `response_format` are not stored and read back as `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    /// Deterministic id from (run seed, task, sample index).
    pub sample_id: String,
    /// `family@version/instance_seed/task_seed`.
    pub task_id: String,
    /// The RL group (all samples of one task in one run).
    pub group_id: String,
    /// The run that produced the row.
    pub run_id: String,
    /// Environment family.
    pub family: String,
    /// Seed of the environment instance.
    pub instance_seed: u64,
    /// Seed of the task within the instance.
    pub task_seed: u64,
    /// Index of this sample within its group (`0..samples_per_task`).
    pub sample_index: u32,
    /// Task difficulty as the generator rates it.
    pub difficulty: u8,
    /// `thinking` or `chat`: the mode `text` was encoded in.
    pub thinking_mode: String,
    /// JSON text of the OpenAI tool list.
    pub tools: String,
    /// The conversation (system, user, assistant turns, tool results).
    pub messages: Vec<Message>,
    /// The exact encoded text `token_ids` come from (BOS, tools on the first system message).
    pub text: String,
    /// Token ids of `text` (sampled ids for sampled segments).
    pub token_ids: Vec<u32>,
    /// 1 for tokens the model is trained on, 0 otherwise; same length as `token_ids`.
    pub loss_mask: Vec<u8>,
    /// Per-token logprob of sampled tokens; `None` for the whole row when the policy gave none.
    pub logprobs: Option<Vec<Option<f32>>>,
    /// Verifier reward.
    pub reward: f32,
    /// Group-relative advantage (`None` outside group sampling).
    pub advantage: Option<f32>,
    /// Whether the verifier passed the outcome.
    pub passed: bool,
    /// JSON text of the verifier checks.
    pub checks: String,
    /// Accepted or rejected (with code and detail).
    pub verdict: Verdict,
    /// Number of assistant turns.
    pub turns: u32,
    /// Number of tool calls made.
    pub tool_calls: u32,
    /// Why the rollout ended (`stop`, `max_turns`, `max_tokens`, `timeout`, ...).
    pub finish_reason: String,
    /// `reference`, `local` or `http`.
    pub policy: String,
    /// Model name or checkpoint, when a model was used.
    pub model: Option<String>,
    /// JSON text of the sampling parameters.
    pub sampling: String,
    /// Non-fatal findings (`tokens.noncanonical`, ...).
    pub warnings: Vec<String>,
    /// JSON text of per-stage timings in milliseconds.
    pub timings_ms: String,
    /// `reference`, `sampled` or `retokenized`: where `token_ids` come from (schema v2; a
    /// version 1 file reads back the policy's usual source).
    #[serde(default)]
    pub token_source: String,
    /// The episode this row belongs to (schema v2): one rollout of one task; a multi-turn
    /// episode has one row per user turn. Files without the column read the sample id.
    #[serde(default)]
    pub episode_id: String,
    /// 0-based user turn of this row (schema v2).
    #[serde(default)]
    pub turn_index: i32,
    /// Rows of this episode (schema v2; 1 when the column is absent).
    #[serde(default = "one")]
    pub turns_total: i32,
    /// `name@version` of the envpkg package, `None` for built-in families (schema v2).
    #[serde(default)]
    pub env_package: Option<String>,
    /// Content hash of that package (schema v2).
    #[serde(default)]
    pub env_package_sha256: Option<String>,
    /// `major.minor` of the package worker's Python (schema v2).
    #[serde(default)]
    pub env_python: Option<String>,
}

fn one() -> i32 {
    1
}

impl SampleRow {
    /// The split this row is written to.
    pub fn split(&self) -> Split {
        self.verdict.split()
    }

    /// The conversation as the codec encodes it: `messages` with the `tools` column attached to
    /// the first message when that is a system or developer message (`text` is this, encoded).
    /// A `tools` value that is not a JSON list is left off.
    pub fn conversation(&self) -> Vec<Message> {
        let mut messages = self.messages.clone();
        let tools = serde_json::from_str::<Vec<serde_json::Value>>(&self.tools).ok();
        if let (Some(first), Some(tools)) = (messages.first_mut(), tools) {
            use agentgen_codec::Role;
            if matches!(first.role, Role::System | Role::Developer) && !tools.is_empty() {
                first.tools = Some(tools);
            }
        }
        messages
    }
}
