//! OpenAI wire shapes: request bodies (validated into typed values by the routes), response
//! bodies, and the OpenAI-style error body every 4xx/5xx carries.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error answered to the client: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI error type (`invalid_request_error`, ...).
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault, when known.
    pub param: Option<&'static str>,
    /// Stable machine code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_param(param: &'static str, message: impl Into<String>) -> Self {
        Self { param: Some(param), ..Self::bad_request(message) }
    }

    /// Set the stable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: message.into(),
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: message.into(),
            param: None,
            code: Some(code),
        }
    }

    /// 500 (a failure of the server or engine, not of the request).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `prompt` of `/v1/completions`: text, token ids, or a batch of either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// One prompt as token ids.
    Ids(Vec<u32>),
    /// A batch of texts.
    Texts(Vec<String>),
    /// A batch of token-id prompts.
    IdBatch(Vec<Vec<u32>>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/completions` body (unknown fields are ignored, as OpenAI-compatible servers do).
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Served model name.
    pub model: Option<String>,
    /// Prompt(s).
    pub prompt: Prompt,
    /// New tokens per choice (OpenAI's default: 16).
    pub max_tokens: Option<u64>,
    /// Temperature (0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Top-k (vLLM extension; -1 or 0 = off).
    pub top_k: Option<i64>,
    /// Seed; choice `i` uses a stream derived from `(seed, i)`.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Extra stop token ids (vLLM extension).
    pub stop_token_ids: Option<Vec<u32>>,
    /// Choices per prompt.
    pub n: Option<u32>,
    /// Return logprobs of the sampled tokens (the value is the number of alternatives OpenAI
    /// would list; this engine reports the sampled token only).
    pub logprobs: Option<u32>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options.
    pub stream_options: Option<StreamOptions>,
    /// Echo the prompt (not supported: must be false).
    #[serde(default)]
    pub echo: bool,
    /// Drop EOS (and other non-format special tokens) from the text (default true, as vLLM).
    pub skip_special_tokens: Option<bool>,
    /// Keep a matched stop string in the text (default false).
    #[serde(default)]
    pub include_stop_str_in_output: bool,
    /// Return the sampled token ids (vLLM extension; implied by `logprobs`).
    #[serde(default)]
    pub return_token_ids: bool,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Served model name.
    pub model: Option<String>,
    /// The conversation (validated into codec messages by the routes).
    pub messages: Vec<Value>,
    /// OpenAI tools (`[{"type": "function", "function": {...}}]`).
    pub tools: Option<Vec<Value>>,
    /// `"auto"` (default) or `"none"` (tools are left out of the prompt).
    pub tool_choice: Option<Value>,
    /// Rendered into the system prompt as V3.2's response-format block.
    pub response_format: Option<Value>,
    /// New tokens per choice.
    pub max_tokens: Option<u64>,
    /// Newer spelling of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// Temperature (0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Top-k (vLLM extension).
    pub top_k: Option<i64>,
    /// Seed.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Choices.
    pub n: Option<u32>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options.
    pub stream_options: Option<StreamOptions>,
    /// Return logprobs (and token ids) of the sampled tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (only 0 is supported beyond the sampled token).
    pub top_logprobs: Option<u32>,
    /// DeepSeek API style: `{"type": "enabled" | "disabled"}`.
    pub thinking: Option<Value>,
    /// vLLM style: `{"thinking": bool}`.
    pub chat_template_kwargs: Option<Value>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens (summed over prompts).
    pub prompt_tokens: usize,
    /// Sampled tokens (summed over choices).
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// From the two counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}
