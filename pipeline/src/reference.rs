//! The `reference` policy: writes each task's reference solution as the assistant's turns
//! (reasoning, DSML tool-call block, then the final answer) in the exact V3.2 format, rendered
//! by the codec itself so the text round-trips byte for byte. Needs no model: it is the
//! default policy, so `agentgen generate` works on a fresh clone.

use agentgen_codec::{EncodeOptions, Message, ThinkingMode, encode_messages};

use crate::policy::{
    Completion, CompletionFinish, Policy, PolicyFailure, PromptRequest, SamplingParams,
};
use crate::{Error, Result};

/// Reasoning of the final turn when the plan gives none (thinking mode needs some).
pub const DEFAULT_FINAL_REASONING: &str =
    "The tool results give me everything the task asked for, so I can answer now.";

/// Renders the reference solution carried by each [`PromptRequest`].
#[derive(Debug, Clone, Default)]
pub struct ReferencePolicy;

impl ReferencePolicy {
    /// The reference policy.
    pub fn new() -> Self {
        ReferencePolicy
    }

    /// [`ReferencePolicy::render`] as a [`Completion`]: the text, ended by EOS, without token
    /// ids or logprobs (what [`Policy::complete`] returns).
    pub fn completion(prompt: &PromptRequest) -> Result<Completion> {
        Self::render(prompt).map(|text| Completion {
            text,
            token_ids: None,
            logprobs: None,
            finish: CompletionFinish::Eos,
            chat: None,
        })
    }

    /// The completion text of turn `turn` (what a perfect model would sample).
    pub fn render(prompt: &PromptRequest) -> Result<String> {
        let plan = prompt.reference.as_ref().ok_or(Error::Policy {
            kind: PolicyFailure::NoReference,
            message: format!("sample {} carries no reference solution", prompt.sample_id),
        })?;
        let turn = prompt.turn as usize;
        let message = if let Some(t) = plan.turns.get(turn) {
            let reasoning = (!t.reasoning.is_empty()).then(|| t.reasoning.clone());
            Message::assistant(reasoning, "", t.calls.clone())
        } else if turn == plan.turns.len() {
            let reasoning = if plan.final_reasoning.is_empty() {
                DEFAULT_FINAL_REASONING.to_owned()
            } else {
                plan.final_reasoning.clone()
            };
            Message::assistant(Some(reasoning), plan.final_answer.clone(), Vec::new())
        } else {
            return Err(Error::Policy {
                kind: PolicyFailure::ReferenceExhausted,
                message: format!("the reference solution has no turn {turn}"),
            });
        };
        let mode = if prompt.thinking { ThinkingMode::Thinking } else { ThinkingMode::Chat };
        let opts = EncodeOptions {
            thinking_mode: mode,
            drop_thinking: true,
            add_bos: false,
            context: vec![Message::user("")],
        };
        encode_messages(std::slice::from_ref(&message), &opts)
            .map_err(|source| Error::Codec { context: "rendering a reference turn", source })
    }
}

impl Policy for ReferencePolicy {
    fn name(&self) -> &str {
        "reference"
    }

    fn model(&self) -> Option<String> {
        None
    }

    fn complete(
        &self,
        prompt: &PromptRequest,
        _params: &SamplingParams,
    ) -> impl Future<Output = Result<Completion>> + Send {
        std::future::ready(Self::completion(prompt))
    }
}
