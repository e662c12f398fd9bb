//! Staged validators with stable rejection codes.
//!
//! Stages, in the order a rollout is judged (the first failing stage names the rejection):
//! `policy.*` (the policy failed: transport, HTTP and auth errors only), `response.*` (a chat
//! endpoint answered, but with no choices, a refusal or a content filter), `format.*` (strict parse of every sampled completion and a
//! byte-exact re-encode round trip), `length.*` (turn/token/time limits, truncated completions),
//! `schema.*` (tool exists, arguments validate against its JSON Schema), `env.*` (the
//! environment failed: a package's timeout, crash, sandbox violation or protocol error),
//! `outcome.*` (the verifier; a tool error observation is only the warning
//! `exec.tool_error_recovered` on a passing row), `dedup.exact` (normalised
//! trajectory seen before in this shard), `filter.*` (difficulty band). Model mistakes are data:
//! these functions never panic and never return `Err`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use agentgen_codec::{
    AssistantMessage, EncodeOptions, Message, ParseError, Role, ThinkingMode, ToolCall,
    encode_messages, encode_mismatch, parse_completion,
};
use serde::Serialize;
use serde_json::Value;

use agentgen_codec::tokens::{CALLS_CLOSE, CALLS_OPEN, EOS, THINK_CLOSE};

/// Every code the pipeline and `agentgen validate` emit. Stable: tools and manifests key on them.
pub mod codes {
    /// The completion ended before the message did.
    pub const FORMAT_INCOMPLETE: &str = "format.incomplete";
    /// The completion is not the V3.2 format.
    pub const FORMAT_MALFORMED: &str = "format.malformed";
    /// A tool-call block was opened and never closed.
    pub const FORMAT_UNCLOSED_CALL: &str = "format.unclosed_call";
    /// Thinking mode, and no `</think>`.
    pub const FORMAT_MISSING_THINK_CLOSE: &str = "format.missing_think_close";
    /// Neither EOS nor a tool-call block ends the message.
    pub const FORMAT_MISSING_EOS: &str = "format.missing_eos";
    /// Parsing and re-encoding the message does not give it back.
    pub const FORMAT_ROUNDTRIP: &str = "format.roundtrip";
    /// The codec refuses to encode the conversation.
    pub const FORMAT_ENCODE_ERROR: &str = "format.encode_error";
    /// A stored row cannot be read as a conversation.
    pub const FORMAT_BAD_ROW: &str = "format.bad_row";
    /// A call names no declared tool.
    pub const SCHEMA_UNKNOWN_TOOL: &str = "schema.unknown_tool";
    /// A call's arguments are not a JSON object (codec rule).
    pub const SCHEMA_ARGUMENTS_NOT_OBJECT: &str = "schema.arguments_not_object";
    /// A chat endpoint returned tool-call `arguments` that are not JSON.
    pub const SCHEMA_ARGUMENTS_NOT_JSON: &str = "schema.arguments_not_json";
    /// A chat endpoint answered with no choices.
    pub const RESPONSE_EMPTY_CHOICES: &str = "response.empty_choices";
    /// A chat endpoint's message carried a `refusal`.
    pub const RESPONSE_REFUSAL: &str = "response.refusal";
    /// A chat endpoint stopped with `finish_reason: content_filter`.
    pub const RESPONSE_CONTENT_FILTER: &str = "response.content_filter";
    /// A required argument is missing.
    pub const SCHEMA_MISSING_REQUIRED: &str = "schema.missing_required";
    /// An argument has the wrong type.
    pub const SCHEMA_TYPE_MISMATCH: &str = "schema.type_mismatch";
    /// An argument the schema does not declare.
    pub const SCHEMA_ADDITIONAL_PROPERTY: &str = "schema.additional_property";
    /// An argument outside its enum or constant.
    pub const SCHEMA_ENUM: &str = "schema.enum";
    /// The arguments fail the schema otherwise.
    pub const SCHEMA_INVALID: &str = "schema.invalid";
    /// A declared tool's schema does not compile.
    pub const SCHEMA_BAD_TOOL_SPEC: &str = "schema.bad_tool_spec";
    /// A tool call ended in an error observation.
    pub const EXEC_TOOL_ERROR: &str = "exec.tool_error";
    /// Warning: a passing trajectory that recovered from a tool error observation.
    pub const EXEC_TOOL_ERROR_RECOVERED: &str = "exec.tool_error_recovered";
    /// Environment failures that end an episode (spec envpkg §7.3).
    pub const ENV_TIMEOUT: &str = "env.timeout";
    /// The environment crashed.
    pub const ENV_CRASH: &str = "env.crash";
    /// The sandbox refused or killed the environment.
    pub const ENV_SANDBOX: &str = "env.sandbox";
    /// The environment broke its protocol.
    pub const ENV_PROTOCOL: &str = "env.protocol";
    /// The episode ran to the end and failed verification.
    pub const OUTCOME_FAILED: &str = "outcome.failed";
    /// The episode hit the turn limit.
    pub const LENGTH_MAX_TURNS: &str = "length.max_turns";
    /// The episode hit the token limit.
    pub const LENGTH_MAX_TOKENS: &str = "length.max_tokens";
    /// The episode hit the wall-time limit.
    pub const LENGTH_TIMEOUT: &str = "length.timeout";
    /// A completion hit `max_tokens`.
    pub const LENGTH_TRUNCATED: &str = "length.truncated";
    /// An earlier row has the same text.
    pub const DEDUP_EXACT: &str = "dedup.exact";
    /// The task's pass rate lies outside the difficulty band.
    pub const FILTER_DIFFICULTY_BAND: &str = "filter.difficulty_band";
    /// The environment failed to build or run the task.
    pub const ENV_TASK_ERROR: &str = "env.task_error";
    /// The sampled ids are not the tokenizer's ids of the text.
    pub const TOKENS_NONCANONICAL: &str = "tokens.noncanonical";
    /// The sampled ids do not decode to the text.
    pub const TOKENS_MISMATCH: &str = "tokens.mismatch";
    /// A stored row's `text` is not its `messages` (+ `tools`) re-encoded.
    pub const FORMAT_TEXT_MISMATCH: &str = "format.text_mismatch";
    /// A stored row's per-token columns disagree (lengths, mask values) or a column value is
    /// not what its type allows.
    pub const FORMAT_BAD_COLUMNS: &str = "format.bad_columns";
    /// Logprobs do not line up with the sampled tokens.
    pub const LOGPROBS_MISALIGNED: &str = "logprobs.misaligned";
}

/// Why a sample was rejected (or a row of `agentgen validate` is invalid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    code: &'static str,
    /// What exactly was wrong.
    pub detail: String,
    /// Byte offset into the text the check looked at, when there is one.
    pub offset: Option<usize>,
}

impl Rejection {
    /// A rejection with `code` and `detail`.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Rejection { code, detail: detail.into(), offset: None }
    }
    /// The same, pointing at byte `offset`.
    pub fn at(mut self, offset: usize) -> Self {
        self.offset = Some(offset);
        self
    }
    /// The stable label (`format.unclosed_call`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// The stage, i.e. the part of the code before the dot.
    pub fn stage(&self) -> &'static str {
        self.code.split('.').next().unwrap_or(self.code)
    }
}

impl Rejection {
    /// An environment's episode-ending failure, its code kept verbatim (spec envpkg §7.3); an
    /// unknown code (a worker that could not start, ...) is `env.task_error`.
    pub fn env(f: &agentgen_environments::EnvFailure) -> Self {
        let code = match f.code.as_str() {
            "env.timeout" => codes::ENV_TIMEOUT,
            "env.crash" => codes::ENV_CRASH,
            "env.sandbox" => codes::ENV_SANDBOX,
            "env.protocol" => codes::ENV_PROTOCOL,
            _ => codes::ENV_TASK_ERROR,
        };
        let detail = if code == codes::ENV_TASK_ERROR { f.to_string() } else { f.detail.clone() };
        Rejection::new(code, detail)
    }
}

fn first_difference(a: &str, b: &str) -> usize {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // Report a char boundary of `a`.
    let mut n = n.min(a.len());
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Classify a strict-parse failure of a completion.
fn parse_rejection(text: &str, mode: ThinkingMode, err: &ParseError) -> Rejection {
    let (offset, reason) = match err {
        ParseError::Malformed { offset, reason, .. } => (Some(*offset), reason.clone()),
        other => (None, other.to_string()),
    };
    // A completion is finished when it reaches the validators, so the specific causes of an
    // `Incomplete` parse (no `</think>`, no EOS) are named before the generic code.
    let code = if mode == ThinkingMode::Thinking && !text.contains(THINK_CLOSE) {
        codes::FORMAT_MISSING_THINK_CLOSE
    } else if !text.contains(EOS) && !text.contains(CALLS_OPEN) {
        codes::FORMAT_MISSING_EOS
    } else if matches!(err, ParseError::Incomplete { .. }) {
        codes::FORMAT_INCOMPLETE
    } else {
        codes::FORMAT_MALFORMED
    };
    let r = Rejection::new(code, reason);
    match offset {
        Some(o) => r.at(o),
        None => r,
    }
}

fn encode_opts(mode: ThinkingMode) -> EncodeOptions {
    EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: false,
        context: vec![Message::user("")],
    }
}

/// Render one assistant message as the completion text a model would have produced for it
/// (after the last user message).
pub fn render_completion(message: &Message, mode: ThinkingMode) -> Result<String, String> {
    encode_messages(std::slice::from_ref(message), &encode_opts(mode)).map_err(|e| e.to_string())
}

/// Format stage for one sampled completion (EOS already appended where it was forced): the
/// tool-call block must be closed, the strict parse must succeed, and re-encoding the parsed
/// message must reproduce `text` byte for byte. Returns the parsed message.
pub fn check_completion(text: &str, mode: ThinkingMode) -> Result<AssistantMessage, Rejection> {
    check_completion_of(text, mode, None)
}

/// Whether `parsed` holds exactly what rendering `source` in `mode` writes: the same content,
/// the same reasoning where the mode renders it, the same calls (names and argument text, byte
/// for byte). Rendering is a function of these fields alone, so then rendering `parsed` gives
/// the text rendering `source` gave.
fn renders_like(parsed: &AssistantMessage, source: &Message, mode: ThinkingMode) -> bool {
    parsed.content == source.content.as_deref().unwrap_or_default()
        && (mode == ThinkingMode::Chat
            || parsed.reasoning_content == source.reasoning_content.as_deref().unwrap_or_default())
        && parsed.tool_calls.len() == source.tool_calls.len()
        && parsed
            .tool_calls
            .iter()
            .zip(&source.tool_calls)
            .all(|(p, s)| p.name == s.name && p.arguments == s.arguments)
}

/// [`check_completion`]; with `source`, `text` is known to be `source` rendered in `mode`, and
/// when the parse gives back `source`'s rendered fields byte for byte the re-encode is known to
/// reproduce `text` without rendering it again (the same result, one render fewer).
fn check_completion_of(
    text: &str,
    mode: ThinkingMode,
    source: Option<&Message>,
) -> Result<AssistantMessage, Rejection> {
    if let Some(pos) = text.find(CALLS_OPEN)
        && !text[pos..].contains(CALLS_CLOSE)
    {
        return Err(Rejection::new(
            codes::FORMAT_UNCLOSED_CALL,
            "the tool-call block is never closed",
        )
        .at(pos));
    }
    let parsed = parse_completion(text, mode).map_err(|e| parse_rejection(text, mode, &e))?;
    if source.is_some_and(|s| renders_like(&parsed, s, mode)) {
        return Ok(parsed);
    }
    let message = parsed.clone().into_message();
    match render_completion(&message, mode) {
        Ok(again) if again == text => Ok(parsed),
        Ok(again) => {
            let at = first_difference(text, &again);
            let snippet: String = text[at..].chars().take(40).collect();
            Err(Rejection::new(
                codes::FORMAT_ROUNDTRIP,
                format!(
                    "re-encoding the parsed completion differs at byte {at} (sampled {snippet:?})"
                ),
            )
            .at(at))
        }
        Err(e) => Err(Rejection::new(
            codes::FORMAT_ENCODE_ERROR,
            format!("parsed completion does not re-encode: {e}"),
        )),
    }
}

/// A compiled parameter schema, or why it does not compile.
type Compiled = Arc<Result<jsonschema::Validator, String>>;

/// Compiled JSON Schemas of one tool list.
pub struct ToolSchemas {
    tools: HashMap<String, Compiled>,
}

impl std::fmt::Debug for ToolSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSchemas")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Compiled parameter schemas by their JSON text (bounded): the tool lists of a dataset differ
/// from instance to instance in a few tools and repeat the rest (10,000 rows of 8 families:
/// 622 lists, 5,233 tools, 54 distinct schemas), so each schema is compiled once.
#[derive(Default)]
pub struct ValidatorCache {
    map: Mutex<HashMap<String, Compiled>>,
}

impl std::fmt::Debug for ValidatorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map_or(0, |m| m.len());
        f.debug_struct("ValidatorCache").field("schemas", &n).finish()
    }
}

impl ValidatorCache {
    const CAPACITY: usize = 4096;

    fn compile(&self, params: &Value) -> Compiled {
        let key = params.to_string();
        if let Ok(map) = self.map.lock()
            && let Some(v) = map.get(&key)
        {
            return Arc::clone(v);
        }
        let v = Arc::new(jsonschema::validator_for(params).map_err(|e| e.to_string()));
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(key, Arc::clone(&v));
        }
        v
    }
}

impl ToolSchemas {
    /// From an OpenAI tool list (`[{"type": "function", "function": {name, parameters}}]`; a bare
    /// `{name, parameters}` is accepted too). A schema that does not compile is reported when
    /// a call uses that tool.
    pub fn from_tools(tools: &[Value]) -> Self {
        Self::build(tools, None)
    }

    /// [`from_tools`](Self::from_tools), each schema compiled once per `cache`.
    pub fn from_tools_cached(tools: &[Value], cache: &ValidatorCache) -> Self {
        Self::build(tools, Some(cache))
    }

    fn build(tools: &[Value], cache: Option<&ValidatorCache>) -> Self {
        let mut map = HashMap::new();
        let object = serde_json::json!({"type": "object"});
        for t in tools {
            let f = t.get("function").unwrap_or(t);
            let Some(name) = f.get("name").and_then(Value::as_str) else { continue };
            let params = f.get("parameters").unwrap_or(&object);
            let v = match cache {
                Some(c) => c.compile(params),
                None => Arc::new(jsonschema::validator_for(params).map_err(|e| e.to_string())),
            };
            map.insert(name.to_owned(), v);
        }
        ToolSchemas { tools: map }
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is declared.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Schema stage for one call.
    pub fn check_call(&self, call: &ToolCall) -> Result<(), Rejection> {
        let Some(v) = self.tools.get(&call.name) else {
            return Err(Rejection::new(
                codes::SCHEMA_UNKNOWN_TOOL,
                format!("unknown tool {:?}", call.name),
            ));
        };
        let v = v.as_ref().as_ref().map_err(|e| {
            Rejection::new(
                codes::SCHEMA_BAD_TOOL_SPEC,
                format!("tool {:?} has an invalid schema: {e}", call.name),
            )
        })?;
        // The codec's one rule for arguments (an empty string is not an object).
        let args = match call.arguments_object() {
            Ok(m) => Value::Object(m),
            Err(e) => {
                return Err(Rejection::new(
                    codes::SCHEMA_ARGUMENTS_NOT_OBJECT,
                    format!("{}: {e}", call.name),
                ));
            }
        };
        // The fast yes/no first; errors are collected only for an invalid call.
        if v.is_valid(&args) {
            return Ok(());
        }
        if let Some(err) = v.iter_errors(&args).next() {
            use jsonschema::error::ValidationErrorKind as K;
            let code = match err.kind() {
                K::Required { .. } => codes::SCHEMA_MISSING_REQUIRED,
                K::Type { .. } => codes::SCHEMA_TYPE_MISMATCH,
                K::AdditionalProperties { .. } => codes::SCHEMA_ADDITIONAL_PROPERTY,
                K::Enum { .. } | K::Constant { .. } => codes::SCHEMA_ENUM,
                _ => codes::SCHEMA_INVALID,
            };
            let path = err.instance_path().to_string();
            let at = if path.is_empty() { String::new() } else { format!(" at {path}") };
            return Err(Rejection::new(code, format!("{}{at}: {err}", call.name)));
        }
        Ok(())
    }
}

/// A bounded cache of compiled tool schemas keyed by the tool list's JSON text: rows of one
/// family carry the same tools, so each schema is compiled once, not once per row.
#[derive(Debug, Default)]
pub struct SchemaCache {
    map: Mutex<HashMap<u64, Arc<ToolSchemas>>>,
}

impl SchemaCache {
    const CAPACITY: usize = 4096;

    /// The schemas of `tools` (whose JSON text is `tools_json`), compiled once per tool list.
    pub fn get(&self, tools: &[Value], tools_json: &str) -> Arc<ToolSchemas> {
        let mut h = std::hash::DefaultHasher::new();
        tools_json.hash(&mut h);
        self.get_keyed(h.finish(), || tools.to_vec())
    }

    /// The schemas cached under `key`, or those of `tools()` compiled and cached now.
    pub fn get_keyed(&self, key: u64, tools: impl FnOnce() -> Vec<Value>) -> Arc<ToolSchemas> {
        if let Ok(map) = self.map.lock()
            && let Some(s) = map.get(&key)
        {
            return Arc::clone(s);
        }
        let s = Arc::new(ToolSchemas::from_tools(&tools()));
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(key, Arc::clone(&s));
        }
        s
    }
}

/// One problem found in a conversation by [`check_conversation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Index of the message it concerns, if any.
    pub message: Option<usize>,
    #[serde(flatten)]
    /// What is wrong.
    pub rejection: Rejection,
}

fn calls_equal(a: &[ToolCall], b: &[ToolCall]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && (x.arguments == y.arguments
                    || match (
                        serde_json::from_str::<Value>(&x.arguments),
                        serde_json::from_str::<Value>(&y.arguments),
                    ) {
                        (Ok(p), Ok(q)) => p == q,
                        _ => false,
                    })
        })
}

/// The tools a conversation declares (on its system/developer messages), in order.
fn declared_tools(messages: &[Message]) -> impl Iterator<Item = &Value> {
    messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .filter_map(|m| m.tools.as_ref())
        .flatten()
}

/// Structural hash of a JSON value (key order counts, as in the encoded text), without
/// serialising it.
fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            for i in items {
                hash_value(i, h);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            for (k, i) in map {
                k.hash(h);
                hash_value(i, h);
            }
        }
    }
}

/// [`check_conversation`] with the conversation's own tools, compiled through `cache`.
pub fn check_conversation_cached(
    messages: &[Message],
    mode: ThinkingMode,
    cache: &SchemaCache,
) -> Vec<Issue> {
    let mut h = std::hash::DefaultHasher::new();
    declared_tools(messages).for_each(|t| hash_value(t, &mut h));
    let schemas = cache.get_keyed(h.finish(), || declared_tools(messages).cloned().collect());
    check_conversation(messages, mode, Some(&schemas))
}

/// Check a whole conversation the way `agentgen validate` does: it encodes (codec strictness),
/// every assistant message survives the parse round trip (content, reasoning where rendered,
/// tool calls with arguments compared as JSON values), and every tool call names a declared
/// tool with arguments valid against its schema. Returns every issue found (empty = valid).
pub fn check_conversation(
    messages: &[Message],
    mode: ThinkingMode,
    schemas: Option<&ToolSchemas>,
) -> Vec<Issue> {
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: true,
        context: Vec::new(),
    };
    if let Err(e) = encode_messages(messages, &opts) {
        return vec![Issue {
            message: None,
            rejection: Rejection::new(
                codes::FORMAT_ENCODE_ERROR,
                format!("the conversation does not encode: {e}"),
            ),
        }];
    }
    check_messages(messages, mode, schemas)
}

/// Every check of a stored row of our schema (`agentgen validate` on a dataset): the
/// per-token columns agree (`token_ids`, `loss_mask` and `logprobs` of one length, the mask
/// 0/1), `text` is exactly `messages` (with `tools` on the first message) re-encoded in the
/// row's thinking mode, the conversation checks of [`check_conversation`], and with `tok` the
/// token check: `token_ids` decode to `text` (a mismatch is invalid) and are the tokenizer's
/// ids of it (`tokens.noncanonical` otherwise, reported but not invalid).
///
/// `tools` is the row's tool list parsed (`schemas` compiled from it): it is lent to the first
/// message for the re-encode and handed back unchanged, so a caller can keep one parsed copy
/// per tool list instead of cloning it for every row.
pub fn check_row(
    row: agentgen_datasets::RowView<'_>,
    tools: &mut Vec<Value>,
    schemas: &ToolSchemas,
    tok: Option<&agentgen_codec::Tokenizer>,
) -> Vec<Rejection> {
    let mut out = Vec::new();
    let bad = |detail: String| Rejection::new(codes::FORMAT_BAD_COLUMNS, detail);
    let n = row.token_ids.len();
    if row.loss_mask.len() != n {
        out.push(bad(format!("loss_mask has {} values, token_ids {n}", row.loss_mask.len())));
    } else if let Some(i) = row.loss_mask.iter().position(|&m| m as u8 > 1) {
        // Reported as the unsigned byte, as rows read back by `read_rows` hold it.
        out.push(bad(format!("loss_mask[{i}] is {}, not 0 or 1", row.loss_mask[i] as u8)));
    }
    if let Some(lp) = row.logprobs_len
        && lp != n
    {
        out.push(bad(format!("logprobs has {lp} values, token_ids {n}")));
    }
    let mode = match row.thinking_mode {
        "thinking" => ThinkingMode::Thinking,
        "chat" => ThinkingMode::Chat,
        other => {
            out.push(bad(format!("thinking_mode {other:?} is not thinking or chat")));
            return out;
        }
    };
    let mut messages = row.messages;
    let mut lent = false;
    if !tools.is_empty() {
        match messages.first_mut() {
            Some(m) if matches!(m.role, Role::System | Role::Developer) => {
                m.tools = Some(std::mem::take(tools));
                lent = true;
            }
            _ => out.push(bad("tools given but the first message is not system/developer".into())),
        }
    }
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: true,
        context: Vec::new(),
    };
    let compared = encode_mismatch(&messages, &opts, row.text);
    if lent && let Some(m) = messages.first_mut() {
        *tools = m.tools.take().unwrap_or_default();
    }
    match compared {
        Ok(None) => {}
        Ok(Some(common)) => {
            // The first difference, at a char boundary of `text`.
            let mut at = common.min(row.text.len());
            while !row.text.is_char_boundary(at) {
                at -= 1;
            }
            out.push(
                Rejection::new(
                    codes::FORMAT_TEXT_MISMATCH,
                    format!("text differs from the re-encoded messages at byte {at}"),
                )
                .at(at),
            );
        }
        Err(e) => {
            out.push(Rejection::new(
                codes::FORMAT_ENCODE_ERROR,
                format!("the conversation does not encode: {e}"),
            ));
            return out;
        }
    }
    out.extend(check_messages(&messages, mode, Some(schemas)).into_iter().map(|i| {
        let mut r = i.rejection;
        if let Some(m) = i.message {
            r.detail = format!("message {m}: {}", r.detail);
        }
        r
    }));
    if let Some(tok) = tok {
        // Ids are stored as int32 bit for bit (see the writer).
        let ids: Vec<u32> = row.token_ids.iter().map(|&t| t as u32).collect();
        match tok.decode(&ids) {
            Ok(t) if t == row.text => {}
            Ok(_) => {
                out.push(Rejection::new(codes::TOKENS_MISMATCH, "token_ids do not decode to text"));
            }
            Err(e) => out.push(Rejection::new(
                codes::TOKENS_MISMATCH,
                format!("token_ids do not decode: {e}"),
            )),
        }
        if tok.encode(row.text).is_ok_and(|encoded| encoded != ids) {
            out.push(Rejection::new(
                codes::TOKENS_NONCANONICAL,
                "token_ids are not the tokenizer's ids of text",
            ));
        }
    }
    out
}

/// The per-message checks of [`check_conversation`] (the conversation is known to encode).
fn check_messages(
    messages: &[Message],
    mode: ThinkingMode,
    schemas: Option<&ToolSchemas>,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    let last_user = messages.iter().rposition(|m| matches!(m.role, Role::User | Role::Developer));
    let owned;
    let schemas = match schemas {
        Some(s) => s,
        None => {
            owned = ToolSchemas::from_tools(&declared_tools(messages).cloned().collect::<Vec<_>>());
            &owned
        }
    };
    for (i, m) in messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let after_last_user = last_user.is_none_or(|l| i > l);
        let turn_mode = if mode == ThinkingMode::Thinking && after_last_user {
            mode
        } else {
            ThinkingMode::Chat
        };
        let push = |issues: &mut Vec<Issue>, r: Rejection| {
            issues.push(Issue { message: Some(i), rejection: r });
        };
        let text = match render_completion(m, turn_mode) {
            Ok(t) => t,
            Err(e) => {
                push(&mut issues, Rejection::new(codes::FORMAT_ENCODE_ERROR, e));
                continue;
            }
        };
        match check_completion_of(&text, turn_mode, Some(m)) {
            Ok(parsed) => {
                let content_ok = parsed.content == m.content.as_deref().unwrap_or_default();
                let reasoning_ok = turn_mode == ThinkingMode::Chat
                    || parsed.reasoning_content
                        == m.reasoning_content.as_deref().unwrap_or_default();
                if !content_ok || !reasoning_ok || !calls_equal(&parsed.tool_calls, &m.tool_calls) {
                    let what = if !content_ok {
                        "content"
                    } else if !reasoning_ok {
                        "reasoning_content"
                    } else {
                        "tool_calls"
                    };
                    push(
                        &mut issues,
                        Rejection::new(
                            codes::FORMAT_ROUNDTRIP,
                            format!("{what} does not survive encode + parse"),
                        ),
                    );
                }
            }
            Err(r) => push(&mut issues, r),
        }
        for call in &m.tool_calls {
            if let Err(r) = schemas.check_call(call) {
                push(&mut issues, r);
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "additionalProperties": false,
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]}}})]
    }

    #[test]
    fn schema_codes() {
        let s = ToolSchemas::from_tools(&tools());
        let code = |name: &str, args: &str| {
            s.check_call(&ToolCall::new(name, args)).err().map(|r| r.code())
        };
        assert_eq!(code("get_weather", r#"{"city": "Paris", "days": 2}"#), None);
        assert_eq!(code("nope", "{}"), Some(codes::SCHEMA_UNKNOWN_TOOL));
        assert_eq!(
            code("get_weather", r#"{"city": "Paris"}"#),
            Some(codes::SCHEMA_MISSING_REQUIRED)
        );
        assert_eq!(
            code("get_weather", r#"{"city": 3, "days": 2}"#),
            Some(codes::SCHEMA_TYPE_MISMATCH)
        );
        assert_eq!(
            code("get_weather", r#"{"city": "P", "days": 2, "x": 1}"#),
            Some(codes::SCHEMA_ADDITIONAL_PROPERTY)
        );
        assert_eq!(code("get_weather", "[1]"), Some(codes::SCHEMA_ARGUMENTS_NOT_OBJECT));
        assert_eq!(code("get_weather", "{bad"), Some(codes::SCHEMA_ARGUMENTS_NOT_OBJECT));
    }

    #[test]
    fn format_codes() {
        let m = ThinkingMode::Thinking;
        let ok = format!("think</think>hello{EOS}");
        assert!(check_completion(&ok, m).is_ok());
        let code = |t: &str| check_completion(t, m).err().map(|r| r.code());
        assert_eq!(code(&format!("no close tag{EOS}")), Some(codes::FORMAT_MISSING_THINK_CLOSE));
        assert_eq!(code("r</think>no eos"), Some(codes::FORMAT_MISSING_EOS));
        let unclosed =
            format!("r</think>\n\n{CALLS_OPEN}\n<\u{ff5c}DSML\u{ff5c}invoke name=\"f\">\n");
        assert_eq!(code(&unclosed), Some(codes::FORMAT_UNCLOSED_CALL));
        let p = "<\u{ff5c}DSML\u{ff5c}parameter name=\"a\" string=\"false\">[1,2]</\u{ff5c}DSML\u{ff5c}parameter>";
        let not_python_json = format!(
            "r</think>\n\n{CALLS_OPEN}\n<\u{ff5c}DSML\u{ff5c}invoke name=\"f\">\n{p}\n</\u{ff5c}DSML\u{ff5c}invoke>\n{CALLS_CLOSE}{EOS}"
        );
        assert_eq!(code(&not_python_json), Some(codes::FORMAT_ROUNDTRIP));
        assert_eq!(
            code(&format!("r</think>x{EOS}tail")).map(|c| c.starts_with("format.")),
            Some(true)
        );
    }

    #[test]
    fn conversation_check() {
        let call = ToolCall::new("get_weather", r#"{"city": "Paris", "days": 2}"#);
        let msgs = vec![
            Message::system("s").with_tools(tools()),
            Message::user("u"),
            Message::assistant(Some("r".into()), "", vec![call]),
            Message::tool("{}", None),
            Message::assistant(Some("done".into()), "ok", vec![]),
        ];
        assert!(check_conversation(&msgs, ThinkingMode::Thinking, None).is_empty());
        let mut bad = msgs.clone();
        bad[2].tool_calls[0].arguments = r#"{"city": "Paris"}"#.into();
        let issues = check_conversation(&bad, ThinkingMode::Thinking, None);
        assert_eq!(
            issues.first().map(|i| i.rejection.code()),
            Some(codes::SCHEMA_MISSING_REQUIRED)
        );
        let mut dsml = msgs.clone();
        dsml[4].content = Some(format!("x{CALLS_CLOSE}"));
        let issues = check_conversation(&dsml, ThinkingMode::Thinking, None);
        assert!(issues.iter().any(|i| i.rejection.stage() == "format"), "{issues:?}");
    }
}
