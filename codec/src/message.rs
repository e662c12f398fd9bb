//! Plain data of the format: OpenAI-style chat messages as the V3.2 codec reads and writes them.
//!
//! These types are the vocabulary every other crate speaks (environments build them, the
//! pipeline appends them, datasets store them). Deserialization is strict: a non-string
//! `content`, an unknown `role` or `arguments` given as an object is a typed error, never a
//! silent coercion.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Spliced in raw; carries tools / response format.
    System,
    /// A user turn prefixed by tools / response format (the search-agent role).
    Developer,
    /// A user turn.
    User,
    /// A model turn: reasoning, content, tool calls.
    Assistant,
    /// One tool result, paired with the assistant's calls by position.
    Tool,
}

impl Role {
    /// The lowercase wire name (`"assistant"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tool call of an assistant message. `arguments` is the JSON text of an object, exactly as
/// OpenAI carries it (`function.arguments` is a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireToolCall", try_from = "WireToolCall")]
pub struct ToolCall {
    /// Caller-minted id (`call_0`, ...); the V3.2 format itself carries none.
    pub id: Option<String>,
    /// Function name.
    pub name: String,
    /// JSON text of the argument object.
    pub arguments: String,
}

impl ToolCall {
    /// A call without id.
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self { id: None, name: name.into(), arguments: arguments.into() }
    }

    /// The arguments as a JSON object, by [`tool_arguments`]'s rule.
    pub fn arguments_object(&self) -> Result<serde_json::Map<String, Value>, ArgumentsError> {
        tool_arguments(&self.arguments)
    }
}

/// Why a tool call's `arguments` text is not an argument object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgumentsError {
    /// Not JSON at all (an empty string included).
    #[error("arguments are not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but its top level is not an object (the value is carried).
    #[error("arguments are not a JSON object")]
    NotObject(Value),
}

/// The one rule for tool-call arguments (spec `codec.md` §2: "`arguments` must be a JSON
/// string whose top level is an object"; the reference refuses anything else): the text parses
/// as JSON and its top level is an object. An empty string is not JSON and is refused; a
/// reader of a wire format that sends no argument text for a call without arguments (some
/// OpenAI-compatible streams) writes `{}` before asking.
///
/// ```
/// use agentgen_codec::{ArgumentsError, tool_arguments};
/// assert_eq!(tool_arguments(r#"{"a": 1}"#).map(|m| m.len()), Ok(1));
/// assert!(matches!(tool_arguments("[1]"), Err(ArgumentsError::NotObject(_))));
/// assert!(matches!(tool_arguments(""), Err(ArgumentsError::NotJson(_))));
/// ```
pub fn tool_arguments(text: &str) -> Result<serde_json::Map<String, Value>, ArgumentsError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ArgumentsError::NotObject(other)),
        Err(e) => Err(ArgumentsError::NotJson(e.to_string())),
    }
}

#[derive(Serialize, Deserialize)]
struct WireToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: WireFunction,
}

#[derive(Serialize, Deserialize)]
struct WireFunction {
    name: String,
    arguments: String,
}

fn function_type() -> String {
    "function".to_owned()
}

impl From<ToolCall> for WireToolCall {
    fn from(c: ToolCall) -> Self {
        WireToolCall {
            id: c.id,
            kind: function_type(),
            function: WireFunction { name: c.name, arguments: c.arguments },
        }
    }
}

impl TryFrom<WireToolCall> for ToolCall {
    type Error = String;
    fn try_from(w: WireToolCall) -> Result<Self, String> {
        if w.kind != "function" {
            return Err(format!("tool call type must be \"function\", got {:?}", w.kind));
        }
        Ok(ToolCall { id: w.id, name: w.function.name, arguments: w.function.arguments })
    }
}

/// One chat message. Only the fields the V3.2 codec reads are kept; `tool_call_id` and `name`
/// are carried for OpenAI compatibility and ignored by the encoder (results pair by position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The text (required on user, tool and developer messages).
    pub content: Option<String>,
    /// Chain of thought (assistant only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    /// Tool calls (assistant only).
    pub tool_calls: Vec<ToolCall>,
    /// OpenAI tool list (`[{"type": "function", "function": {...}}]`); read on system/developer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Any JSON value; rendered on system/developer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Id of the call a tool result answers (ignored by the encoder).
    pub tool_call_id: Option<String>,
    /// OpenAI `name` (ignored by the encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ToolCall>, D::Error> {
    Ok(Option::<Vec<ToolCall>>::deserialize(d)?.unwrap_or_default())
}

impl Message {
    /// A message of `role` with `content` and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            reasoning_content: None,
            tool_calls: Vec::new(),
            tools: None,
            response_format: None,
            tool_call_id: None,
            name: None,
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A developer message.
    pub fn developer(content: impl Into<String>) -> Self {
        Self::new(Role::Developer, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// A tool result answering the call with id `tool_call_id` (if any).
    pub fn tool(content: impl Into<String>, tool_call_id: Option<String>) -> Self {
        Message { tool_call_id, ..Self::new(Role::Tool, content) }
    }
    /// An assistant turn.
    pub fn assistant(
        reasoning_content: Option<String>,
        content: impl Into<String>,
        tool_calls: Vec<ToolCall>,
    ) -> Self {
        Message { reasoning_content, tool_calls, ..Self::new(Role::Assistant, content) }
    }
    /// Attach an OpenAI tool list (builder style).
    pub fn with_tools(mut self, tools: Vec<Value>) -> Self {
        self.tools = Some(tools);
        self
    }
}

/// What `parse_completion` returns: the assistant message the model generated. `content` and
/// `reasoning_content` are `""` when empty (never absent), `tool_calls` carry no ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Final text (`""` when empty).
    pub content: String,
    /// Reasoning (`""` in chat mode or when empty).
    pub reasoning_content: String,
    /// Parsed calls, without ids.
    pub tool_calls: Vec<ToolCall>,
}

impl AssistantMessage {
    /// As a general [`Message`] (role assistant); empty reasoning becomes `None`.
    pub fn into_message(self) -> Message {
        let reasoning = (!self.reasoning_content.is_empty()).then_some(self.reasoning_content);
        Message::assistant(reasoning, self.content, self.tool_calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_round_trips() -> Result<(), serde_json::Error> {
        let text = r#"{"role":"assistant","content":"x","tool_calls":[{"id":"call_0","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}}]}"#;
        let m: Message = serde_json::from_str(text)?;
        assert_eq!(m.tool_calls[0].name, "f");
        assert_eq!(serde_json::to_string(&m)?, text);
        Ok(())
    }

    #[test]
    fn strict_types() {
        assert!(serde_json::from_str::<Message>(r#"{"role":"robot","content":"x"}"#).is_err());
        assert!(serde_json::from_str::<Message>(r#"{"role":"user","content":3}"#).is_err());
        let obj_args = r#"{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":{}}}]}"#;
        assert!(serde_json::from_str::<Message>(obj_args).is_err());
        let null_calls = r#"{"role":"assistant","content":null,"tool_calls":null}"#;
        assert!(serde_json::from_str::<Message>(null_calls).is_ok());
    }
}
