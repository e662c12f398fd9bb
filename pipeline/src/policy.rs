//! The [`Policy`] trait: prompt text in, completion text (+ sampled ids and logprobs) out.
//!
//! Pipeline code is generic over `P: Policy` (never `dyn`). The CLI adapts the local candle
//! engine to this trait; this crate ships the engine-free policies ([`crate::ReferencePolicy`],
//! [`crate::HttpPolicy`]).

use std::future::Future;
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Why a policy produced no turn. Each kind has a stable label (logs, error text) and a stable
/// `policy.*` rejection code ([`PolicyFailure::code`]), the one the rollout writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyFailure {
    /// The request timed out (or the server answered 408).
    Timeout,
    /// No connection to the endpoint.
    Connect,
    /// Another transport failure.
    Transport,
    /// The server answered 5xx.
    Http5xx,
    /// The server answered 429.
    Http429,
    /// The server answered another 4xx.
    Http4xx,
    /// The server refused the key (401 or 403).
    Auth,
    /// The response was not what the API promises.
    Malformed,
    /// Retries stopped: the retry budget is spent.
    RetryBudget,
    /// The local engine failed.
    Engine,
    /// The reference policy met a sample without a reference solution.
    NoReference,
    /// The reference policy was asked for a turn past its solution's last.
    ReferenceExhausted,
}

impl PolicyFailure {
    /// The stable label (`timeout`, `http_5xx`, ...).
    pub fn label(self) -> &'static str {
        match self {
            PolicyFailure::Timeout => "timeout",
            PolicyFailure::Connect => "connect",
            PolicyFailure::Transport => "transport",
            PolicyFailure::Http5xx => "http_5xx",
            PolicyFailure::Http429 => "http_429",
            PolicyFailure::Http4xx => "http_4xx",
            PolicyFailure::Auth => "auth",
            PolicyFailure::Malformed => "malformed",
            PolicyFailure::RetryBudget => "retry_budget",
            PolicyFailure::Engine => "engine",
            PolicyFailure::NoReference => "no_reference",
            PolicyFailure::ReferenceExhausted => "reference_exhausted",
        }
    }

    /// The rejection code of a rollout this failure ended: `policy.<label>`, except the
    /// reference policy's own failures, which are `policy.error`.
    pub fn code(self) -> &'static str {
        match self {
            PolicyFailure::Timeout => "policy.timeout",
            PolicyFailure::Connect => "policy.connect",
            PolicyFailure::Transport => "policy.transport",
            PolicyFailure::Http5xx => "policy.http_5xx",
            PolicyFailure::Http429 => "policy.http_429",
            PolicyFailure::Http4xx => "policy.http_4xx",
            PolicyFailure::Auth => "policy.auth",
            PolicyFailure::Malformed => "policy.malformed",
            PolicyFailure::RetryBudget => "policy.retry_budget",
            PolicyFailure::Engine => "policy.engine",
            PolicyFailure::NoReference | PolicyFailure::ReferenceExhausted => "policy.error",
        }
    }
}

impl std::fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Sampling parameters of a run (defaults are DeepSeek's recommended 1.0 / 0.95).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Most tokens one completion (one assistant turn) may sample.
    pub max_tokens: usize,
    /// Per-sample seed (derived from the run seed and the sample id by the rollout).
    pub seed: u64,
}

/// Default sampling temperature of every rollout command.
pub const DEFAULT_TEMPERATURE: f32 = 1.0;
/// Default nucleus mass of every rollout command.
pub const DEFAULT_TOP_P: f32 = 0.95;
/// Default most tokens per assistant turn of every rollout command.
pub const DEFAULT_MAX_TOKENS: usize = 4096;
/// The temperatures a policy accepts (the OpenAI API's range; 0 is greedy).
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f32> = 0.0..=2.0;

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            top_k: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// The one rule for sampling values at the edge: temperature in [`TEMPERATURE_RANGE`],
    /// top-p above 0 and at most 1, at least one token. The error names the value.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !TEMPERATURE_RANGE.contains(&self.temperature) {
            return Err(format!("temperature {} is not within 0..=2", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} is not above 0 and at most 1", self.top_p));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// One turn of a scripted (reference) solution: reasoning, then parallel calls.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTurn {
    /// Reasoning before the calls (empty: none).
    pub reasoning: String,
    /// The calls, run in parallel.
    pub calls: Vec<ToolCall>,
}

/// What the reference policy writes for one task: its tool-call turns, then a final answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencePlan {
    /// The tool-call turns, in order.
    pub turns: Vec<PlannedTurn>,
    /// Reasoning of the final answer (empty: a default sentence).
    pub final_reasoning: String,
    /// The final answer's content.
    pub final_answer: String,
}

/// A request for one assistant turn.
#[derive(Debug, Clone)]
pub struct PromptRequest {
    /// The whole encoded prompt so far (BOS included); ends with `<think>` or `</think>`.
    pub text: String,
    /// The token ids of `text` (prompt segments tokenized, sampled segments as sampled).
    pub prompt_ids: Vec<u32>,
    /// Stable id of the sample; engines use it as a KV-cache key across tool rounds.
    pub sample_id: String,
    /// 0-based index of the assistant turn within the current user turn (the reference plan's
    /// step).
    pub turn: u32,
    /// 0-based user turn of the episode (multi-turn tasks).
    pub user_turn: u32,
    /// `thinking` or `chat`.
    pub thinking: bool,
    /// The task's reference solution (only the reference policy reads it).
    pub reference: Option<Arc<ReferencePlan>>,
    /// The conversation so far (system message with its tools first), filled only for a
    /// policy whose [`Policy::wants_messages`] is true (the `chat` policy); empty otherwise.
    pub messages: Vec<Message>,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionFinish {
    /// EOS was sampled.
    Eos,
    /// The tool-call block closed (a stop string); the rollout appends a forced EOS.
    ToolCalls,
    /// `max_tokens` reached.
    Length,
}

/// One completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The sampled text (special tokens kept).
    pub text: String,
    /// The ids the policy sampled, when it knows them; `None` means "tokenize `text`".
    pub token_ids: Option<Vec<u32>>,
    /// Log-probability of each sampled token (same length as the sampled ids), if known.
    pub logprobs: Option<Vec<f32>>,
    /// Why the completion ended.
    pub finish: CompletionFinish,
    /// A policy that answers with a structured message instead of sampled text (`chat`):
    /// the rollout takes the turn from here and re-encodes the row with the codec.
    pub chat: Option<crate::chat::ChatTurn>,
}

/// Something that writes assistant turns. Implementations must be cheap to share (`Arc`).
pub trait Policy: Send + Sync + 'static {
    /// `reference`, `http`, `chat` or `local`.
    fn name(&self) -> &str;
    /// The model name recorded in rows (`None` for the reference policy).
    fn model(&self) -> Option<String>;
    /// Complete one assistant turn. An `Err` is counted and ends that rollout with a
    /// `policy.*` rejection; it never ends the run.
    fn complete(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> impl Future<Output = Result<Completion>> + Send;
    /// The rollout of `sample_id` is over (free any cache kept for it).
    fn release(&self, _sample_id: &str) {}
    /// Counters worth recording in the manifest (JSON text), e.g. the http failure counts.
    fn stats_json(&self) -> Option<String> {
        None
    }
    /// Whether [`PromptRequest::messages`] must be filled (the `chat` policy).
    fn wants_messages(&self) -> bool {
        false
    }
    /// Token usage the server reported so far, summed: `(prompt, completion)`.
    fn usage(&self) -> Option<(u64, u64)> {
        None
    }
}

impl<P: Policy> Policy for Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn model(&self) -> Option<String> {
        (**self).model()
    }
    fn complete(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> impl Future<Output = Result<Completion>> + Send {
        (**self).complete(prompt, params)
    }
    fn release(&self, sample_id: &str) {
        (**self).release(sample_id);
    }
    fn stats_json(&self) -> Option<String> {
        (**self).stats_json()
    }
    fn wants_messages(&self) -> bool {
        (**self).wants_messages()
    }
    fn usage(&self) -> Option<(u64, u64)> {
        (**self).usage()
    }
}

#[cfg(test)]
mod tests {
    use super::PolicyFailure as F;

    /// The codes rows carry: unchanged from the string mapping this enum replaced.
    #[test]
    fn codes_are_stable() {
        let all = [
            (F::Timeout, "timeout", "policy.timeout"),
            (F::Connect, "connect", "policy.connect"),
            (F::Transport, "transport", "policy.transport"),
            (F::Http5xx, "http_5xx", "policy.http_5xx"),
            (F::Http429, "http_429", "policy.http_429"),
            (F::Http4xx, "http_4xx", "policy.http_4xx"),
            (F::Auth, "auth", "policy.auth"),
            (F::Malformed, "malformed", "policy.malformed"),
            (F::RetryBudget, "retry_budget", "policy.retry_budget"),
            (F::Engine, "engine", "policy.engine"),
            (F::NoReference, "no_reference", "policy.error"),
            (F::ReferenceExhausted, "reference_exhausted", "policy.error"),
        ];
        for (f, label, code) in all {
            assert_eq!((f.label(), f.code(), f.to_string()), (label, code, label.to_owned()));
        }
    }
}
