//! The encoder: messages → prompt text, byte-identical to DeepSeek's `encode_messages`
//! (spec §3). Errors the reference raises are typed [`Error`]s.

use serde_json::Value;

use crate::json::{parse_arguments, write_value};
use crate::tokens::{ASSISTANT, BOS, CALLS_CLOSE, CALLS_OPEN, EOS, THINK_CLOSE, THINK_OPEN, USER};
use crate::{Error, Message, Result, Role, ThinkingMode};

/// Options of [`encode_messages`] (the reference's keyword arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    /// `thinking_mode`: where the thinking tags go.
    pub thinking_mode: ThinkingMode,
    /// `drop_thinking`: only consulted in thinking mode (spec §3.8). It never changes a
    /// successful output; with it, an earlier developer message is an error.
    pub drop_thinking: bool,
    /// `add_default_bos_token`: emit BOS first, but only when `context` is empty.
    pub add_bos: bool,
    /// Earlier conversation that is taken into account but not rendered (spec §3.11).
    pub context: Vec<Message>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            thinking_mode: ThinkingMode::Thinking,
            drop_thinking: true,
            add_bos: true,
            context: Vec::new(),
        }
    }
}

impl EncodeOptions {
    /// Defaults with the given mode.
    pub fn with_mode(thinking_mode: ThinkingMode) -> Self {
        EncodeOptions { thinking_mode, ..Self::default() }
    }
}

/// Render `messages` (after `opts.context`) as V3.2 prompt text.
///
/// ```
/// use agentgen_codec::{encode_messages, EncodeOptions, Message};
/// let prompt = encode_messages(&[Message::user("hi")], &EncodeOptions::default())?;
/// assert_eq!(prompt, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>");
/// # Ok::<(), agentgen_codec::Error>(())
/// ```
pub fn encode_messages(messages: &[Message], opts: &EncodeOptions) -> Result<String> {
    let mut out = String::with_capacity(estimate_len(messages));
    encode_into(messages, opts, &mut out)?;
    Ok(out)
}

/// Where the text [`encode_messages`] renders first differs from `expected`: `None` when they
/// are equal, else the length in bytes of their common prefix. The text is compared piece by
/// piece as it is rendered, never built (a checker of stored rows compares every row's text
/// this way). Errors are those of [`encode_messages`].
///
/// ```
/// use agentgen_codec::{encode_mismatch, EncodeOptions, Message};
/// let m = [Message::user("hi")];
/// let opts = EncodeOptions::default();
/// let text = "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>";
/// assert_eq!(encode_mismatch(&m, &opts, text)?, None);
/// assert_eq!(encode_mismatch(&m, &opts, "<｜begin▁of▁sentence｜><｜User｜>ho")?, Some(42));
/// # Ok::<(), agentgen_codec::Error>(())
/// ```
pub fn encode_mismatch(
    messages: &[Message],
    opts: &EncodeOptions,
    expected: &str,
) -> Result<Option<usize>> {
    let mut cmp = Compare { expected: expected.as_bytes(), pos: 0, differs: false };
    encode_into(messages, opts, &mut cmp)?;
    Ok((cmp.differs || cmp.pos < cmp.expected.len()).then_some(cmp.pos))
}

/// A [`Sink`] that compares what is emitted with an expected text: `pos` is the length of the
/// common prefix so far, and stays put once they differ.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
    differs: bool,
}

impl Sink for Compare<'_> {
    #[inline]
    fn emit(&mut self, text: &str, _trainable: bool) {
        if self.differs {
            return;
        }
        let rest = &self.expected[self.pos..];
        let text = text.as_bytes();
        if rest.len() >= text.len() && &rest[..text.len()] == text {
            self.pos += text.len();
        } else {
            self.pos += text.iter().zip(rest).take_while(|(a, b)| a == b).count();
            self.differs = true;
        }
    }
}

fn estimate_len(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| {
            m.content.as_ref().map_or(0, String::len)
                + m.reasoning_content.as_ref().map_or(0, String::len)
                + m.tool_calls.iter().map(|c| c.arguments.len() * 2 + 128).sum::<usize>()
                + m.tools.as_ref().map_or(0, |t| t.len() * 512 + TOOLS_PREFIX.len())
                + 64
        })
        .sum()
}

/// Where encoded text goes. `trainable` marks text the assistant produced after the last
/// user/developer message (the loss-mask rule).
pub(crate) trait Sink {
    fn emit(&mut self, text: &str, trainable: bool);
}

impl Sink for String {
    #[inline]
    fn emit(&mut self, text: &str, _trainable: bool) {
        self.push_str(text);
    }
}

/// Consecutive text pieces with their trainable flag (adjacent pieces of equal flag merged).
#[derive(Debug, Default)]
pub(crate) struct Segments(pub(crate) Vec<(String, bool)>);

impl Sink for Segments {
    fn emit(&mut self, text: &str, trainable: bool) {
        if text.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((s, t)) if *t == trainable => s.push_str(text),
            _ => self.0.push((text.to_owned(), trainable)),
        }
    }
}

/// Python truthiness of a JSON value (`null`, `false`, `0`, `""`, `[]`, `{}` are absent).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

const TOOLS_PREFIX: &str = r#"## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<｜DSML｜function_calls>" block like the following as part of your reply to the user:
<｜DSML｜function_calls>
<｜DSML｜invoke name="$FUNCTION_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$FUNCTION_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<｜DSML｜function_calls>
...
</｜DSML｜function_calls>

<function_results>
...
</function_results>

<think>...thinking about results</think>

Here are the functions available in JSONSchema format:
<functions>
"#;
const TOOLS_SUFFIX: &str = "\n</functions>\n";
const RESPONSE_FORMAT_PREFIX: &str =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";
const DEVELOPER_PREFIX: &str = "\n\n# The user's message is: ";

/// The tools block and response-format block of a system/developer message, each preceded by
/// `\n\n` (spec §3.2, §3.4, §3.10).
fn write_blocks(index: usize, m: &Message, out: &mut String) -> Result<()> {
    if let Some(tools) = m.tools.as_ref().filter(|t| !t.is_empty()) {
        out.push_str("\n\n");
        out.push_str(TOOLS_PREFIX);
        for (t, tool) in tools.iter().enumerate() {
            let function = tool.get("function").ok_or(Error::InvalidTool { index, tool: t })?;
            if t > 0 {
                out.push('\n');
            }
            write_value(function, out);
        }
        out.push_str(TOOLS_SUFFIX);
    }
    if let Some(rf) = m.response_format.as_ref().filter(|v| truthy(v)) {
        out.push_str("\n\n");
        out.push_str(RESPONSE_FORMAT_PREFIX);
        write_value(rf, out);
    }
    Ok(())
}

/// Append the DSML block of `m`'s tool calls (spec §3.6), or nothing.
pub(crate) fn write_calls(index: usize, m: &Message, out: &mut String) -> Result<()> {
    if m.tool_calls.is_empty() {
        return Ok(());
    }
    out.push_str("\n\n");
    out.push_str(CALLS_OPEN);
    out.push('\n');
    for (c, call) in m.tool_calls.iter().enumerate() {
        let args = parse_arguments(&call.arguments).map_err(|reason| Error::InvalidArguments {
            index,
            call: c,
            reason,
        })?;
        if c > 0 {
            out.push('\n');
        }
        out.push_str("<｜DSML｜invoke name=\"");
        out.push_str(&call.name);
        out.push_str("\">\n");
        for (p, (key, value)) in args.iter().enumerate() {
            if p > 0 {
                out.push('\n');
            }
            out.push_str("<｜DSML｜parameter name=\"");
            out.push_str(key);
            match value {
                crate::json::PyJson::Str(s) => {
                    out.push_str("\" string=\"true\">");
                    out.push_str(s);
                }
                other => {
                    out.push_str("\" string=\"false\">");
                    other.write(out);
                }
            }
            out.push_str("</｜DSML｜parameter>");
        }
        out.push_str("\n</｜DSML｜invoke>");
    }
    out.push('\n');
    out.push_str(CALLS_CLOSE);
    Ok(())
}

pub(crate) fn encode_into<S: Sink>(
    messages: &[Message],
    opts: &EncodeOptions,
    out: &mut S,
) -> Result<()> {
    let ctx = &opts.context;
    let n_ctx = ctx.len();
    let total = n_ctx + messages.len();
    let at = |i: usize| if i < n_ctx { &ctx[i] } else { &messages[i - n_ctx] };
    let thinking = opts.thinking_mode == ThinkingMode::Thinking;
    // L of the spec, as "number of messages up to and including the last user/developer",
    // so that `i > L` reads `i >= after_last` and L = -1 is `after_last = 0`.
    let last_user = (0..total).rev().find(|&i| matches!(at(i).role, Role::User | Role::Developer));

    if opts.add_bos && ctx.is_empty() {
        out.emit(BOS, false);
    }
    if messages.is_empty() {
        return Ok(());
    }
    if thinking && opts.drop_thinking {
        // The reference's drop filter deletes developer messages before L, after which its
        // render loop indexes past the shortened list: always an error (spec §3.8).
        if let Some(l) = last_user
            && let Some(index) = (0..l).find(|&i| at(i).role == Role::Developer)
        {
            return Err(Error::DeveloperBeforeLastUser { index });
        }
    }
    let is_after = |i: usize| last_user.is_none_or(|l| i > l);
    let mut buf = String::new();
    for i in n_ctx..total {
        let m = at(i);
        match m.role {
            Role::System => {
                out.emit(m.content.as_deref().unwrap_or(""), false);
                buf.clear();
                write_blocks(i, m, &mut buf)?;
                out.emit(&buf, false);
            }
            Role::User | Role::Developer => {
                let content = m.content.as_deref();
                out.emit(USER, false);
                if m.role == Role::Developer {
                    let content = content
                        .filter(|c| !c.is_empty())
                        .ok_or(Error::MissingContent { index: i, role: m.role })?;
                    buf.clear();
                    write_blocks(i, m, &mut buf)?;
                    buf.push_str(DEVELOPER_PREFIX);
                    buf.push_str(content);
                    out.emit(&buf, false);
                } else {
                    out.emit(
                        content.ok_or(Error::MissingContent { index: i, role: m.role })?,
                        false,
                    );
                }
                out.emit(ASSISTANT, false);
                let open = thinking && Some(i) == last_user;
                out.emit(if open { THINK_OPEN } else { THINK_CLOSE }, false);
            }
            Role::Tool => {
                let owner = (0..i).rev().find(|&j| at(j).role != Role::Tool);
                let Some(j) = owner else {
                    return Err(Error::ToolWithoutCall { index: i });
                };
                let a = at(j);
                if a.role != Role::Assistant || a.tool_calls.is_empty() {
                    return Err(Error::ToolWithoutCall { index: i });
                }
                let k = i - j;
                let calls = a.tool_calls.len();
                if k > calls {
                    return Err(Error::MoreResultsThanCalls { index: i, result: k, calls });
                }
                let content =
                    m.content.as_deref().ok_or(Error::MissingContent { index: i, role: m.role })?;
                if k == 1 {
                    out.emit("\n\n<function_results>", false);
                }
                out.emit("\n<result>", false);
                out.emit(content, false);
                out.emit("</result>", false);
                if k == calls {
                    out.emit("\n</function_results>\n\n", false);
                    let open = thinking && is_after(i);
                    out.emit(if open { THINK_OPEN } else { THINK_CLOSE }, false);
                }
            }
            Role::Assistant => {
                let after = is_after(i);
                if thinking && after {
                    let reasoning = m.reasoning_content.as_deref().unwrap_or("");
                    if reasoning.is_empty() && m.tool_calls.is_empty() {
                        return Err(Error::MissingReasoning { index: i });
                    }
                    out.emit(reasoning, after);
                    out.emit(THINK_CLOSE, after);
                }
                out.emit(m.content.as_deref().unwrap_or(""), after);
                buf.clear();
                write_calls(i, m, &mut buf)?;
                out.emit(&buf, after);
                out.emit(EOS, after);
            }
        }
    }
    Ok(())
}

/// A conversation as the CLI and the conformance files carry it: `{"messages": [...]}` with an
/// optional top-level `"tools"` list, which is attached to `messages[0]` when that is a system
/// or developer message (interfaces.md).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    /// The messages, tools attached.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// Read `{"messages": [...], "tools": [...]?}`. Errors name the offending message index.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::InvalidConversation {
            reason: "expected a json object with a \"messages\" list".to_owned(),
        })?;
        let list = obj.get("messages").and_then(Value::as_array).ok_or_else(|| {
            Error::InvalidConversation { reason: "missing \"messages\" list".to_owned() }
        })?;
        let messages = messages_from_json(list)?;
        let tools = match obj.get("tools") {
            None | Some(Value::Null) => None,
            Some(Value::Array(tools)) => Some(tools.clone()),
            Some(_) => {
                return Err(Error::InvalidConversation {
                    reason: "\"tools\" must be a list".to_owned(),
                });
            }
        };
        Self::with_tools(messages, tools)
    }

    /// [`from_json`](Conversation::from_json) straight from JSON text, without building a
    /// `serde_json::Value` first (the fast path of batch encoding). Errors name line/column.
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::from_json_slice(text.as_bytes())
    }

    /// [`Conversation::from_json_str`] on raw bytes: UTF-8 is checked once, string by string,
    /// while parsing (invalid UTF-8 is an `InvalidConversation` error).
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Wire {
            messages: Vec<Message>,
            #[serde(default)]
            tools: Option<Vec<Value>>,
        }
        let w: Wire = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidConversation { reason: e.to_string() })?;
        Self::with_tools(w.messages, w.tools)
    }

    /// Apply the top-level `tools` rule: attach to messages[0] when that is a system or
    /// developer message; otherwise a non-empty list is an error.
    pub fn with_tools(mut messages: Vec<Message>, tools: Option<Vec<Value>>) -> Result<Self> {
        let Some(tools) = tools else { return Ok(Conversation { messages }) };
        match messages.first_mut() {
            Some(first) if matches!(first.role, Role::System | Role::Developer) => {
                first.tools = Some(tools);
            }
            _ if tools.is_empty() => {}
            _ => {
                return Err(Error::InvalidConversation {
                    reason: "top-level tools need a first system or developer message".to_owned(),
                });
            }
        }
        Ok(Conversation { messages })
    }

    /// [`encode_messages`] of these messages.
    pub fn encode(&self, opts: &EncodeOptions) -> Result<String> {
        encode_messages(&self.messages, opts)
    }
}

/// Deserialize a JSON list of messages; the error names the index and serde's reason.
pub fn messages_from_json(list: &[Value]) -> Result<Vec<Message>> {
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            Message::deserialize_value(m)
                .map_err(|e| Error::InvalidConversation { reason: format!("message {i}: {e}") })
        })
        .collect()
}

impl Message {
    fn deserialize_value(v: &Value) -> std::result::Result<Message, serde_json::Error> {
        serde::Deserialize::deserialize(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `encode_mismatch` gives the common prefix length of the rendered text and the expected
    /// one, in every case `encode_messages` + a byte comparison would.
    #[test]
    fn encode_mismatch_is_the_common_prefix() -> Result<()> {
        let call = crate::ToolCall::new("f", r#"{"a": 1}"#);
        let msgs = vec![
            Message::system("sys"),
            Message::user("héllo"),
            Message::assistant(Some("why".into()), "", vec![call]),
            Message::tool("{}", None),
            Message::assistant(Some("done".into()), "ok", vec![]),
        ];
        let opts = EncodeOptions::default();
        let full = encode_messages(&msgs, &opts)?;
        let common = |a: &str| a.bytes().zip(full.bytes()).take_while(|(x, y)| x == y).count();
        assert_eq!(encode_mismatch(&msgs, &opts, &full)?, None);
        let longer = format!("{full}x");
        assert_eq!(encode_mismatch(&msgs, &opts, &longer)?, Some(full.len()));
        let cut = full.char_indices().rev().nth(2).map_or(0, |(i, _)| i);
        let shorter = &full[..cut];
        assert_eq!(encode_mismatch(&msgs, &opts, shorter)?, Some(shorter.len()));
        let changed = full.replacen("héllo", "hello", 1);
        assert_eq!(encode_mismatch(&msgs, &opts, &changed)?, Some(common(&changed)));
        assert_eq!(encode_mismatch(&msgs, &opts, "")?, Some(0));
        Ok(())
    }
}
