//! The crate's error type.

use crate::Role;

/// Everything the codec can refuse. Encoder errors mirror the exceptions DeepSeek's reference
/// encoder raises (spec §3.12) plus the inputs spec §10 declares errors; message indices are
/// absolute positions in `context ++ messages`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A thinking mode other than `thinking` / `chat`.
    #[error("invalid thinking mode {value:?}, expected \"thinking\" or \"chat\"")]
    InvalidThinkingMode {
        /// The rejected text.
        value: String,
    },
    /// A message that must carry content has none (`user`, `tool`) or an empty one (`developer`).
    #[error("message {index} ({role}) needs a non-empty content")]
    MissingContent {
        /// Absolute message index.
        index: usize,
        /// Its role.
        role: Role,
    },
    /// A tool result whose nearest preceding non-tool message is not an assistant with calls.
    #[error("tool message {index} does not follow an assistant message with tool calls")]
    ToolWithoutCall {
        /// Absolute message index.
        index: usize,
    },
    /// More tool results than the assistant made calls.
    #[error("tool message {index} is result {result} but the assistant made only {calls} calls")]
    MoreResultsThanCalls {
        /// Absolute message index.
        index: usize,
        /// 1-based position of this result.
        result: usize,
        /// Number of calls of the assistant.
        calls: usize,
    },
    /// Thinking mode: an assistant after the last user turn with neither reasoning nor calls.
    #[error(
        "assistant message {index} comes after the last user message in thinking mode but has \
         neither reasoning_content nor tool_calls"
    )]
    MissingReasoning {
        /// Absolute message index.
        index: usize,
    },
    /// Thinking mode with drop_thinking: a developer message before the last user/developer
    /// message (the reference fails with an index error here).
    #[error(
        "developer message {index} precedes the last user/developer message; the reference \
         encoder rejects this in thinking mode with drop_thinking (use --no-drop-thinking or chat)"
    )]
    DeveloperBeforeLastUser {
        /// Absolute message index.
        index: usize,
    },
    /// A tool call whose `arguments` is not the JSON text of an object.
    #[error("message {index}, tool call {call}: invalid arguments: {reason}")]
    InvalidArguments {
        /// Absolute message index.
        index: usize,
        /// 0-based call position.
        call: usize,
        /// What is wrong.
        reason: String,
    },
    /// A tool list entry without a `function` object.
    #[error("message {index}, tool {tool}: tool entry has no \"function\" object")]
    InvalidTool {
        /// Absolute message index.
        index: usize,
        /// 0-based tool position.
        tool: usize,
    },
    /// A JSON value the Python reference would print but a conforming encoder refuses
    /// (NaN / infinities, lone surrogates, oversized integers).
    #[error("unsupported json value: {reason}")]
    UnsupportedJson {
        /// What is wrong.
        reason: String,
    },
    /// Input that is not a conversation (`{"messages": [...], "tools": [...]?}`).
    #[error("invalid conversation: {reason}")]
    InvalidConversation {
        /// What is wrong.
        reason: String,
    },
    /// The embedded tokenizer failed to load, encode or decode.
    #[error("tokenizer: {reason}")]
    Tokenizer {
        /// The tokenizers crate's message.
        reason: String,
    },
    /// A conformance file that cannot be read, is not JSON, or is of another kind.
    #[error("{context}")]
    Conformance {
        /// What was being done, naming the file (and line).
        context: String,
        /// The underlying I/O or JSON error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
