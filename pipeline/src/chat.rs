//! The `chat` policy: any OpenAI-compatible `POST {endpoint}/v1/chat/completions` (the DeepSeek
//! API, vLLM/SGLang with the model's own chat template, other providers).
//!
//! Owns the mapping between the pipeline's conversation and the chat wire format, both ways
//! (specified in `docs/chat-policy.md`): requests carry `messages` + `tools`, the current user
//! turn's reasoning is sent back as `reasoning_content` while its tool loop runs and dropped
//! for earlier turns; responses (one JSON body, or SSE deltas of reasoning, content and
//! tool-call fragments) become one assistant [`Message`] with the server's call ids, or a
//! stable rejection code for what the model or server got wrong (non-JSON arguments,
//! refusals, `content_filter`, empty choices). The rollout re-encodes the finished
//! conversation with the codec ([`reencode`]), so rows are exact V3.2 data whose token ids are
//! re-tokenized, never sampled. Transport goes through the shared [`HttpClient`]; this module
//! adds the token budget (`--max-tokens-total`) and the usage totals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use agentgen_codec::{
    ArgumentsError, EncodeOptions, Message, Role, ThinkingMode, ToolCall, encode_messages,
};
use serde_json::{Map, Value, json};

use crate::http::{Failure, HttpClient, HttpConfig, classify_reqwest};
use crate::policy::{
    Completion, CompletionFinish, Policy, PolicyFailure, PromptRequest, SamplingParams,
};
use crate::validate::{Rejection, codes, render_completion};
use crate::{Error, Result};

/// Request keys the flags own; `--extra-body` may not set them.
pub const FLAG_OWNED_KEYS: [&str; 4] = ["model", "messages", "tools", "stream"];

/// Settings of the chat policy.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Endpoint, model, key, timeouts, retries, headers, pacing (shared with `http`).
    pub http: HttpConfig,
    /// `stream: true` (SSE) unless `--no-stream`.
    pub stream: bool,
    /// `--extra-body`: a JSON merge patch (RFC 7396) applied to every request body last,
    /// without the [`FLAG_OWNED_KEYS`].
    pub extra_body: Option<Value>,
    /// `--tool-choice auto|required|none`.
    pub tool_choice: Option<String>,
    /// `--parallel-tool-calls true|false`.
    pub parallel_tool_calls: Option<bool>,
    /// `--reasoning-effort LEVEL`.
    pub reasoning_effort: Option<String>,
    /// `--max-tokens-total`: prompt + completion tokens (from `usage`) after which no new
    /// request starts.
    pub max_tokens_total: Option<u64>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            http: HttpConfig::default(),
            stream: true,
            extra_body: None,
            tool_choice: None,
            parallel_tool_calls: None,
            reasoning_effort: None,
            max_tokens_total: None,
        }
    }
}

/// One assistant turn as the chat endpoint returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTurn {
    /// The assistant message (reasoning, content, tool calls with the server's ids).
    pub message: Message,
    /// `finish_reason` as sent (`stop`, `tool_calls`, `length`, ...).
    pub finish_reason: Option<String>,
    /// What the model or server got wrong in this turn: (rollout finish reason, rejection).
    pub rejection: Option<(&'static str, Rejection)>,
    /// `usage`: (prompt, completion) tokens, when the server reported them.
    pub usage: Option<(u64, u64)>,
}

/// The chat policy. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ChatPolicy {
    client: HttpClient,
    url: String,
    cfg: ChatConfig,
    patch: Option<Value>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    responses_without_usage: AtomicU64,
    spent: AtomicBool,
    spent_tx: tokio::sync::watch::Sender<bool>,
}

impl ChatPolicy {
    /// The chat policy for `cfg` (checks the endpoint URL and headers; sends nothing).
    pub fn try_new(cfg: ChatConfig) -> Result<Self> {
        let client = HttpClient::try_new(cfg.http.clone())?;
        let url = client.url("chat/completions");
        let patch = match &cfg.extra_body {
            None => None,
            Some(Value::Object(o)) => {
                let mut o = o.clone();
                for k in FLAG_OWNED_KEYS {
                    if o.remove(k).is_some() {
                        tracing::warn!("--extra-body: `{k}` is set by the flags; ignored");
                    }
                }
                Some(Value::Object(o))
            }
            Some(other) => {
                return Err(Error::Config {
                    message: format!("--extra-body must be a JSON object, got {other}"),
                });
            }
        };
        let (spent_tx, _) = tokio::sync::watch::channel(false);
        Ok(ChatPolicy {
            client,
            url,
            cfg,
            patch,
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            responses_without_usage: AtomicU64::new(0),
            spent: AtomicBool::new(false),
            spent_tx,
        })
    }

    /// The `chat/completions` URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP client (retries, budget, breaker, stats).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Whether `--max-tokens-total` is spent.
    pub fn budget_spent(&self) -> bool {
        self.spent.load(Ordering::SeqCst)
    }

    /// Resolves once `--max-tokens-total` is spent (never without a budget).
    pub fn budget_spent_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.spent_tx.subscribe();
        async move {
            let closed = rx.wait_for(|spent| *spent).await.is_err();
            if closed {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The request body for the conversation `messages` (tools on `messages[0]`).
    pub fn body(&self, messages: &[Message], params: &SamplingParams) -> Value {
        let mut body = json!({
            "model": self.cfg.http.model,
            "messages": wire_messages(messages),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        });
        let Some(obj) = body.as_object_mut() else { return body };
        if let Some(tools) = messages.first().and_then(|m| m.tools.as_ref())
            && !tools.is_empty()
        {
            obj.insert("tools".into(), Value::Array(tools.clone()));
            if let Some(tc) = &self.cfg.tool_choice {
                obj.insert("tool_choice".into(), json!(tc));
            }
            if let Some(p) = self.cfg.parallel_tool_calls {
                obj.insert("parallel_tool_calls".into(), json!(p));
            }
        }
        if let Some(r) = &self.cfg.reasoning_effort {
            obj.insert("reasoning_effort".into(), json!(r));
        }
        if self.cfg.stream {
            obj.insert("stream_options".into(), json!({"include_usage": true}));
        }
        if let Some(patch) = &self.patch {
            merge_patch(&mut body, patch);
        }
        if let Some(obj) = body.as_object_mut() {
            obj.insert("stream".into(), json!(self.cfg.stream));
        }
        body
    }

    async fn complete_chat(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> Result<Completion> {
        if self.budget_spent() {
            return Err(Error::Stopped { reason: "--max-tokens-total is spent".into() });
        }
        let body = self.body(&prompt.messages, params);
        let seed = params.seed.rotate_left(17)
            ^ u64::from(prompt.turn).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let turn = self.client.send(&self.url, Some(&body), seed, read_turn);
        let turn = turn.await?;
        match turn.usage {
            Some((p, c)) => {
                let total = self.prompt_tokens.fetch_add(p, Ordering::SeqCst)
                    + self.completion_tokens.fetch_add(c, Ordering::SeqCst)
                    + p
                    + c;
                if let Some(max) = self.cfg.max_tokens_total
                    && total >= max
                    && !self.spent.swap(true, Ordering::SeqCst)
                {
                    tracing::warn!("--max-tokens-total {max} is spent ({total} tokens used)");
                    self.spent_tx.send_replace(true);
                }
            }
            None => {
                if self.responses_without_usage.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "the endpoint returned no `usage`; token totals and --max-tokens-total \
                         cannot count this response"
                    );
                }
            }
        }
        let finish = match turn.finish_reason.as_deref() {
            Some("length") => CompletionFinish::Length,
            _ if turn.message.tool_calls.is_empty() => CompletionFinish::Eos,
            _ => CompletionFinish::ToolCalls,
        };
        Ok(Completion {
            text: String::new(),
            token_ids: None,
            logprobs: None,
            finish,
            chat: Some(turn),
        })
    }

    fn stats_value(&self) -> Value {
        let mut v = serde_json::to_value(self.client.stats().snapshot()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("prompt_tokens".into(), json!(self.prompt_tokens.load(Ordering::Relaxed)));
            o.insert(
                "completion_tokens".into(),
                json!(self.completion_tokens.load(Ordering::Relaxed)),
            );
            o.insert(
                "responses_without_usage".into(),
                json!(self.responses_without_usage.load(Ordering::Relaxed)),
            );
            o.insert("budget_spent".into(), json!(self.budget_spent()));
        }
        v
    }
}

impl Policy for ChatPolicy {
    fn name(&self) -> &str {
        "chat"
    }

    fn model(&self) -> Option<String> {
        Some(self.cfg.http.model.clone())
    }

    fn complete(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> impl Future<Output = Result<Completion>> + Send {
        self.complete_chat(prompt, params)
    }

    fn stats_json(&self) -> Option<String> {
        Some(self.stats_value().to_string())
    }

    fn wants_messages(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<(u64, u64)> {
        Some((
            self.prompt_tokens.load(Ordering::Relaxed),
            self.completion_tokens.load(Ordering::Relaxed),
        ))
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The conversation as chat `messages`: system/developer/user as `{role, content}`; assistants
/// with `content`, their `tool_calls` (ids kept) and, after the last user message only,
/// `reasoning_content`; tool results as `{role: "tool", tool_call_id, content}`.
pub fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let last_user = messages.iter().rposition(|m| matches!(m.role, Role::User | Role::Developer));
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let content = m.content.clone().unwrap_or_default();
            match m.role {
                Role::Assistant => {
                    let mut o = Map::new();
                    o.insert("role".into(), json!("assistant"));
                    o.insert("content".into(), json!(content));
                    if let Some(r) = &m.reasoning_content
                        && !r.is_empty()
                        && last_user.is_none_or(|l| i > l)
                    {
                        o.insert("reasoning_content".into(), json!(r));
                    }
                    if !m.tool_calls.is_empty() {
                        let calls: Vec<Value> = m
                            .tool_calls
                            .iter()
                            .map(|c| {
                                json!({"id": c.id, "type": "function",
                                       "function": {"name": c.name, "arguments": c.arguments}})
                            })
                            .collect();
                        o.insert("tool_calls".into(), Value::Array(calls));
                    }
                    Value::Object(o)
                }
                Role::Tool => json!({
                    "role": "tool", "tool_call_id": m.tool_call_id, "content": content,
                }),
                role => json!({"role": role.as_str(), "content": content}),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A response before it is judged: what the body or the SSE deltas said.
#[derive(Debug, Default)]
struct RawTurn {
    saw_choice: bool,
    reasoning: String,
    content: String,
    refusal: String,
    /// By the delta's `index`.
    calls: BTreeMap<u64, RawCall>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct RawCall {
    id: Option<String>,
    name: String,
    /// Argument text (an object the server sent as JSON is serialized).
    arguments: String,
}

fn malformed(message: String) -> Failure {
    Failure { kind: PolicyFailure::Malformed, message, retryable: true, retry_after: None }
}

fn text_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

impl RawTurn {
    fn usage_from(&mut self, v: &Value) {
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some((n("prompt_tokens"), n("completion_tokens")));
        }
    }

    /// A whole (non-streaming) response body.
    fn from_body(v: &Value) -> std::result::Result<RawTurn, Failure> {
        if let Some(e) = v.get("error") {
            return Err(malformed(format!("the response is an error object: {e}")));
        }
        let choices = v
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("the response has no `choices` list".into()))?;
        let mut raw = RawTurn::default();
        raw.usage_from(v);
        let Some(choice) = choices.first() else { return Ok(raw) };
        raw.saw_choice = true;
        raw.finish_reason = text_of(choice.get("finish_reason")).map(str::to_owned);
        let msg = choice.get("message").unwrap_or(&Value::Null);
        raw.absorb(msg, false)?;
        Ok(raw)
    }

    /// One streamed chunk (`chat.completion.chunk`).
    fn push_chunk(&mut self, v: &Value) -> std::result::Result<(), Failure> {
        if let Some(e) = v.get("error") {
            return Err(malformed(format!("the stream carried an error: {e}")));
        }
        self.usage_from(v);
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first())
        else {
            return Ok(());
        };
        self.saw_choice = true;
        if let Some(f) = text_of(choice.get("finish_reason")) {
            self.finish_reason = Some(f.to_owned());
        }
        match choice.get("delta") {
            Some(d) => self.absorb(d, true),
            None => Ok(()),
        }
    }

    /// Fold a message (or a delta) in: reasoning (`reasoning_content`, or `reasoning` as some
    /// servers name it), content, refusal, tool calls (by `index`; fragments appended).
    fn absorb(&mut self, m: &Value, delta: bool) -> std::result::Result<(), Failure> {
        let reasoning = text_of(m.get("reasoning_content")).or_else(|| text_of(m.get("reasoning")));
        if let Some(r) = reasoning {
            self.reasoning.push_str(r);
        }
        if let Some(c) = text_of(m.get("content")) {
            self.content.push_str(c);
        }
        if let Some(r) = text_of(m.get("refusal")) {
            self.refusal.push_str(r);
        }
        let calls = match m.get("tool_calls") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(malformed(format!("`tool_calls` is not a list: {other}"))),
        };
        for (pos, c) in calls.iter().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            let slot = self.calls.entry(index).or_default();
            if let Some(id) = text_of(c.get("id")).filter(|s| !s.is_empty()) {
                slot.id = Some(id.to_owned());
            }
            let f = c.get("function").unwrap_or(&Value::Null);
            if let Some(name) = text_of(f.get("name")).filter(|s| !s.is_empty()) {
                // Most servers send the name once; some repeat it whole in every delta.
                if slot.name.is_empty() || !delta {
                    slot.name = name.to_owned();
                } else if slot.name != name {
                    slot.name.push_str(name);
                }
            }
            match f.get("arguments") {
                Some(Value::String(s)) => slot.arguments.push_str(s),
                Some(Value::Null) | None => {}
                Some(other) => slot.arguments = other.to_string(),
            }
        }
        Ok(())
    }

    /// Judge the finished response.
    fn into_turn(self) -> ChatTurn {
        let finish_reason = self.finish_reason.clone();
        let usage = self.usage;
        let reject = |fr: &'static str, code: &'static str, detail: String| ChatTurn {
            message: Message::assistant(None, "", Vec::new()),
            finish_reason: finish_reason.clone(),
            rejection: Some((fr, Rejection::new(code, detail))),
            usage,
        };
        if !self.saw_choice {
            return reject(
                "empty_choices",
                codes::RESPONSE_EMPTY_CHOICES,
                "the response has no choices".into(),
            );
        }
        if !self.refusal.is_empty() {
            let snippet: String = self.refusal.chars().take(200).collect();
            return reject("refusal", codes::RESPONSE_REFUSAL, snippet);
        }
        if finish_reason.as_deref() == Some("content_filter") {
            return reject(
                "content_filter",
                codes::RESPONSE_CONTENT_FILTER,
                "finish_reason content_filter".into(),
            );
        }
        let mut calls = Vec::with_capacity(self.calls.len());
        for (k, c) in self.calls.into_values().enumerate() {
            // A stream that sent no argument text made a call without arguments; the rest is
            // the codec's one rule for arguments.
            let text = if c.arguments.trim().is_empty() { "{}".to_owned() } else { c.arguments };
            match agentgen_codec::tool_arguments(&text) {
                Ok(_) => {}
                Err(ArgumentsError::NotObject(other)) => {
                    return reject(
                        "format_error",
                        codes::SCHEMA_ARGUMENTS_NOT_OBJECT,
                        format!("call {k} ({}): arguments are not an object: {other}", c.name),
                    );
                }
                Err(ArgumentsError::NotJson(e)) => {
                    let snippet: String = text.chars().take(120).collect();
                    return reject(
                        "format_error",
                        codes::SCHEMA_ARGUMENTS_NOT_JSON,
                        format!("call {k} ({}): arguments are not JSON ({e}): {snippet}", c.name),
                    );
                }
            }
            if c.name.is_empty() {
                return reject(
                    "format_error",
                    codes::SCHEMA_UNKNOWN_TOOL,
                    format!("call {k} has no function name"),
                );
            }
            calls.push(ToolCall { id: c.id, name: c.name, arguments: text });
        }
        let reasoning = (!self.reasoning.is_empty()).then_some(self.reasoning);
        ChatTurn {
            message: Message::assistant(reasoning, self.content, calls),
            finish_reason,
            rejection: None,
            usage,
        }
    }
}

/// Read a successful response: SSE when the server streams (whatever was asked), else JSON.
async fn read_turn(resp: reqwest::Response) -> std::result::Result<ChatTurn, Failure> {
    let is_sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("text/event-stream"));
    if is_sse {
        return read_sse(resp).await.map(RawTurn::into_turn);
    }
    let bytes = resp.bytes().await.map_err(classify_reqwest)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| malformed(format!("the response is not JSON: {e}")))?;
    RawTurn::from_body(&v).map(RawTurn::into_turn)
}

/// Server-sent events: bytes are split into lines before decoding, so a chunk boundary inside
/// a UTF-8 character or anywhere in a JSON payload is harmless. A stream that ends before a
/// `finish_reason` (or `[DONE]`) is a transport failure (retried).
async fn read_sse(mut resp: reqwest::Response) -> std::result::Result<RawTurn, Failure> {
    let mut sse = SseDecoder::default();
    let mut raw = RawTurn::default();
    let mut done = false;
    while !done {
        let chunk = resp.chunk().await.map_err(classify_reqwest)?;
        let events = match chunk {
            Some(bytes) => sse.push(&bytes),
            None => {
                done = true;
                sse.finish()
            }
        };
        for data in events {
            let data = data.map_err(malformed)?;
            if data.trim() == "[DONE]" {
                done = true;
                break;
            }
            let v: Value = serde_json::from_str(&data)
                .map_err(|e| malformed(format!("an SSE event is not JSON: {e}")))?;
            raw.push_chunk(&v)?;
        }
        if done && !sse.saw_done && raw.finish_reason.is_none() {
            return Err(Failure {
                kind: PolicyFailure::Transport,
                message: "the stream ended before the response finished".into(),
                retryable: true,
                retry_after: None,
            });
        }
    }
    Ok(raw)
}

/// Incremental SSE decoder (the `data:` fields of each event, joined by newlines).
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    data: Vec<String>,
    /// A `data: [DONE]` event was seen.
    pub saw_done: bool,
}

impl SseDecoder {
    /// Feed bytes; returns the events completed by them (`Err` for a line that is not UTF-8).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<std::result::Result<String, String>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            match String::from_utf8(line) {
                Ok(l) => self.line(&l, &mut out),
                Err(e) => out.push(Err(format!("an SSE line is not UTF-8: {e}"))),
            }
        }
        out
    }

    /// End of the body: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Vec<std::result::Result<String, String>> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            match String::from_utf8(rest) {
                Ok(l) => self.line(l.trim_end_matches('\r'), &mut out),
                Err(e) => out.push(Err(format!("an SSE line is not UTF-8: {e}"))),
            }
        }
        self.line("", &mut out);
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<std::result::Result<String, String>>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = self.data.join("\n");
                self.data.clear();
                if data.trim() == "[DONE]" {
                    self.saw_done = true;
                }
                out.push(Ok(data));
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            self.data.push(value.to_owned());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rollout's side

/// The mode a chat turn is checked in: with `auto`, a turn without reasoning is checked as
/// chat.
fn turn_mode(message: &Message, mode: ThinkingMode, auto: bool) -> ThinkingMode {
    let has_reasoning = message.reasoning_content.as_ref().is_some_and(|r| !r.is_empty());
    if auto && !has_reasoning { ThinkingMode::Chat } else { mode }
}

/// A chat turn as the rollout takes it: its V3.2 rendering (checked by the format stage like
/// sampled text), the mode it is checked in, and the server's call ids by position (a missing
/// or repeated id is `None`, for the rollout to mint).
#[derive(Debug)]
pub(crate) struct PreparedTurn {
    pub text: String,
    pub mode: ThinkingMode,
    pub ids: Vec<Option<String>>,
}

/// Prepare one chat turn for the rollout, or the rejection the turn earned. A truncated turn
/// (`finish_reason: length`) renders as nothing: the rollout rejects it as `length.truncated`.
pub(crate) fn prepare_turn(
    turn: ChatTurn,
    mode: ThinkingMode,
    auto: bool,
) -> std::result::Result<PreparedTurn, (&'static str, Rejection)> {
    if turn.finish_reason.as_deref() == Some("length") {
        return Ok(PreparedTurn { text: String::new(), mode, ids: Vec::new() });
    }
    if let Some(r) = turn.rejection {
        return Err(r);
    }
    let m = turn_mode(&turn.message, mode, auto);
    let text = render_completion(&turn.message, m)
        .map_err(|e| ("format_error", Rejection::new(codes::FORMAT_ENCODE_ERROR, e)))?;
    let mut seen = std::collections::HashSet::new();
    let ids = turn
        .message
        .tool_calls
        .iter()
        .map(|c| c.id.clone().filter(|id| seen.insert(id.clone())))
        .collect();
    Ok(PreparedTurn { text, mode: m, ids })
}

/// The thinking mode of a finished chat row: with `auto`, thinking when any assistant turn
/// after the last user message carries reasoning, chat otherwise.
pub(crate) fn row_mode(messages: &[Message], mode: ThinkingMode, auto: bool) -> ThinkingMode {
    if !auto {
        return mode;
    }
    let last_user = messages.iter().rposition(|m| matches!(m.role, Role::User | Role::Developer));
    let reasoned = messages.iter().enumerate().any(|(i, m)| {
        m.role == Role::Assistant
            && last_user.is_none_or(|l| i > l)
            && m.reasoning_content.as_ref().is_some_and(|r| !r.is_empty())
    });
    if reasoned { ThinkingMode::Thinking } else { ThinkingMode::Chat }
}

/// Re-encode a finished conversation (tools on `messages[0]`) with the codec: text, token ids
/// and loss mask (1 on the assistant tokens after the last user message).
pub(crate) fn reencode(
    messages: &[Message],
    mode: ThinkingMode,
) -> std::result::Result<(String, Vec<u32>, Vec<u8>), Rejection> {
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: true,
        context: Vec::new(),
    };
    let enc = |e: agentgen_codec::Error| Rejection::new(codes::FORMAT_ENCODE_ERROR, e.to_string());
    let text = encode_messages(messages, &opts).map_err(enc)?;
    let (ids, mask) = agentgen_codec::tokenize_with_mask(messages, &opts).map_err(enc)?;
    Ok((text, ids, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> (RawTurn, bool) {
        let mut d = SseDecoder::default();
        let mut raw = RawTurn::default();
        let mut all = Vec::new();
        for c in chunks {
            all.extend(d.push(c));
        }
        all.extend(d.finish());
        for e in all {
            let e = e.unwrap_or_else(|m| panic!("{m}"));
            if e.trim() == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(&e).unwrap_or_else(|er| panic!("{er}: {e}"));
            raw.push_chunk(&v).unwrap_or_else(|f| panic!("{}", f.message));
        }
        (raw, d.saw_done)
    }

    #[test]
    fn sse_split_anywhere_gives_the_same_turn() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"h\u{e9}las \u{65e5}\u{672c}\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"k\\\": \\\"v\u{e9}\"}}]}}]}\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}},{\"index\":1,\"id\":\"c2\",\"function\":{\"name\":\"put\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        let (whole, done) = events(&[body]);
        assert!(done);
        let expect = whole.into_turn();
        assert_eq!(expect.message.tool_calls.len(), 2);
        assert_eq!(expect.message.tool_calls[0].arguments, "{\"k\": \"v\u{e9}\"}");
        assert_eq!(expect.message.tool_calls[1].id.as_deref(), Some("c2"));
        assert_eq!(expect.usage, Some((10, 5)));
        for size in [1, 2, 3, 5, 7, 13] {
            let chunks: Vec<&[u8]> = body.chunks(size).collect();
            let (raw, _) = events(&chunks);
            assert_eq!(raw.into_turn(), expect, "chunk size {size}");
        }
    }

    #[test]
    fn judges_bad_turns() {
        let body =
            |m: Value, finish: &str| json!({"choices": [{"message": m, "finish_reason": finish}]});
        let code = |v: Value| {
            RawTurn::from_body(&v)
                .map_or(Some("malformed"), |r| r.into_turn().rejection.map(|(_, r)| r.code()))
        };
        let call = |args: &str| json!({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": args}}]});
        assert_eq!(
            code(body(call("{\"a\": "), "tool_calls")),
            Some(codes::SCHEMA_ARGUMENTS_NOT_JSON)
        );
        assert_eq!(code(body(call("[1]"), "tool_calls")), Some(codes::SCHEMA_ARGUMENTS_NOT_OBJECT));
        assert_eq!(code(body(call(""), "tool_calls")), None);
        assert_eq!(code(json!({"choices": []})), Some(codes::RESPONSE_EMPTY_CHOICES));
        assert_eq!(code(body(json!({"refusal": "no"}), "stop")), Some(codes::RESPONSE_REFUSAL));
        assert_eq!(
            code(body(json!({"content": ""}), "content_filter")),
            Some(codes::RESPONSE_CONTENT_FILTER)
        );
        assert_eq!(code(json!({"object": "x"})), Some("malformed"));
        let t = RawTurn::from_body(&body(json!({"reasoning": "r", "content": "c"}), "stop"))
            .map(RawTurn::into_turn)
            .ok();
        assert_eq!(t.map(|t| t.message.reasoning_content), Some(Some("r".to_owned())));
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": {"x": 1}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": {"x": 1}}));
        let mut t = json!([1]);
        merge_patch(&mut t, &json!({"a": 1}));
        assert_eq!(t, json!({"a": 1}));
    }

    #[test]
    fn reasoning_goes_back_only_within_the_current_user_turn() {
        let call = ToolCall { id: Some("x".into()), name: "f".into(), arguments: "{}".into() };
        let msgs = vec![
            Message::system("s"),
            Message::user("u1"),
            Message::assistant(Some("old".into()), "a1", Vec::new()),
            Message::user("u2"),
            Message::assistant(Some("new".into()), "", vec![call]),
            Message::tool("r", Some("x".into())),
        ];
        let w = wire_messages(&msgs);
        assert!(w[2].get("reasoning_content").is_none());
        assert_eq!(w[4]["reasoning_content"], json!("new"));
        assert_eq!(w[4]["tool_calls"][0]["id"], json!("x"));
        assert_eq!(w[5], json!({"role": "tool", "tool_call_id": "x", "content": "r"}));
    }
}
