//! A chat request turned into a prompt: thinking mode, OpenAI messages into codec messages,
//! tool results ordered to their calls, tools and response format on the first system message.

use std::collections::HashMap;

use agentgen_codec::{EncodeOptions, Message, Role, ThinkingMode, encode_messages};
use serde_json::Value;

use super::AppState;
use crate::api::{ApiError, ChatRequest};

/// A chat request turned into a prompt.
pub(super) struct ChatPrompt {
    pub(super) ids: Vec<u32>,
    pub(super) mode: ThinkingMode,
    /// Tool calls already in the conversation (new ids continue from here).
    pub(super) prior_calls: usize,
}

fn thinking_mode(req: &ChatRequest) -> Result<ThinkingMode, ApiError> {
    let from_bool = |b: bool| if b { ThinkingMode::Thinking } else { ThinkingMode::Chat };
    if let Some(t) = &req.thinking {
        return match t {
            Value::Bool(b) => Ok(from_bool(*b)),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("enabled") => Ok(ThinkingMode::Thinking),
                Some("disabled") => Ok(ThinkingMode::Chat),
                _ => Err(ApiError::bad_param(
                    "thinking",
                    "thinking must be {\"type\": \"enabled\"} or {\"type\": \"disabled\"}",
                )),
            },
            Value::Null => Ok(ThinkingMode::Chat),
            _ => Err(ApiError::bad_param("thinking", "thinking must be an object")),
        };
    }
    if let Some(kw) = &req.chat_template_kwargs {
        for key in ["thinking", "enable_thinking"] {
            match kw.get(key) {
                Some(Value::Bool(b)) => return Ok(from_bool(*b)),
                Some(Value::Null) | None => {}
                Some(_) => {
                    return Err(ApiError::bad_param(
                        "chat_template_kwargs",
                        format!("chat_template_kwargs.{key} must be a boolean"),
                    ));
                }
            }
        }
    }
    Ok(ThinkingMode::Chat)
}

/// OpenAI messages → codec messages: content-part arrays joined, roles checked.
fn messages(raw: &[Value]) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let Some(obj) = v.as_object() else {
            return Err(ApiError::bad_param("messages", format!("messages[{i}] is not an object")));
        };
        let mut obj = obj.clone();
        if let Some(Value::Array(parts)) = obj.get("content") {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str))
                {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::bad_param(
                            "messages",
                            format!("messages[{i}]: only text content parts are supported"),
                        ));
                    }
                }
            }
            obj.insert("content".into(), Value::String(text));
        }
        // Fields this server does not read (e.g. `refusal`, `annotations`) are dropped.
        obj.retain(|k, _| {
            matches!(
                k.as_str(),
                "role" | "content" | "reasoning_content" | "tool_calls" | "tool_call_id" | "name"
            )
        });
        let m: Message = serde_json::from_value(Value::Object(obj))
            .map_err(|e| ApiError::bad_param("messages", format!("messages[{i}]: {e}")))?;
        out.push(m);
    }
    Ok(out)
}

/// Reorder each block of tool results to the positions of the calls they answer (by
/// `tool_call_id`), and check every call got exactly one result.
fn order_tool_results(msgs: &mut [Message]) -> Result<(), ApiError> {
    let mut i = 0;
    while i < msgs.len() {
        if msgs[i].role != Role::Assistant || msgs[i].tool_calls.is_empty() {
            if msgs[i].role == Role::Tool {
                return Err(ApiError::bad_param(
                    "messages",
                    format!("messages[{i}] is a tool result that follows no assistant tool call"),
                ));
            }
            i += 1;
            continue;
        }
        let calls: Vec<Option<String>> = msgs[i].tool_calls.iter().map(|c| c.id.clone()).collect();
        let start = i + 1;
        let mut end = start;
        while end < msgs.len() && msgs[end].role == Role::Tool {
            end += 1;
        }
        let block = &mut msgs[start..end];
        if block.len() != calls.len() {
            return Err(ApiError::bad_param(
                "messages",
                format!(
                    "messages[{i}] makes {} tool calls but {} tool results follow it",
                    calls.len(),
                    block.len()
                ),
            ));
        }
        if block.iter().all(|m| m.tool_call_id.is_some()) && calls.iter().all(Option::is_some) {
            let pos: HashMap<&str, usize> =
                calls.iter().enumerate().filter_map(|(k, c)| Some((c.as_deref()?, k))).collect();
            let mut keyed = Vec::with_capacity(block.len());
            for (k, m) in block.iter().enumerate() {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let Some(&p) = pos.get(id) else {
                    return Err(ApiError::bad_param(
                        "messages",
                        format!(
                            "messages[{}]: tool_call_id {id:?} matches no call of messages[{i}]",
                            start + k
                        ),
                    ));
                };
                keyed.push((p, m.clone()));
            }
            keyed.sort_by_key(|(p, _)| *p);
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(ApiError::bad_param(
                    "messages",
                    "two tool results answer the same call",
                ));
            }
            for (slot, (_, m)) in block.iter_mut().zip(keyed) {
                *slot = m;
            }
        }
        i = end;
    }
    Ok(())
}

pub(super) fn chat_prompt(st: &AppState, req: &ChatRequest) -> Result<ChatPrompt, ApiError> {
    let mode = thinking_mode(req)?;
    let mut msgs = messages(&req.messages)?;
    let Some(last) = msgs.last() else {
        return Err(ApiError::bad_param("messages", "messages is empty"));
    };
    if !matches!(last.role, Role::User | Role::Developer | Role::Tool) {
        return Err(ApiError::bad_param(
            "messages",
            "the last message must be a user, developer or tool message",
        ));
    }
    order_tool_results(&mut msgs)?;
    let use_tools = match &req.tool_choice {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s == "auto" => true,
        Some(Value::String(s)) if s == "none" => false,
        Some(_) => {
            return Err(ApiError::bad_param(
                "tool_choice",
                "only \"auto\" and \"none\" are supported",
            ));
        }
    };
    let tools: Vec<Value> =
        if use_tools { req.tools.clone().unwrap_or_default() } else { Vec::new() };
    for (k, t) in tools.iter().enumerate() {
        if t.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).is_none() {
            return Err(ApiError::bad_param(
                "tools",
                format!(
                    "tools[{k}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                ),
            ));
        }
    }
    let rf = req.response_format.clone().filter(|v| {
        // `{"type": "text"}` is OpenAI's default and means nothing to render.
        v.get("type").and_then(Value::as_str) != Some("text")
    });
    if !tools.is_empty() || rf.is_some() {
        let attach = matches!(msgs[0].role, Role::System | Role::Developer)
            && msgs[0].tools.is_none()
            && msgs[0].response_format.is_none();
        if !attach {
            let mut sys = Message::system("");
            sys.content = None;
            msgs.insert(0, sys);
        }
        if !tools.is_empty() {
            msgs[0].tools = Some(tools);
        }
        msgs[0].response_format = rf;
    }
    let prior_calls = msgs.iter().map(|m| m.tool_calls.len()).sum();
    let opts = EncodeOptions::with_mode(mode);
    let text = encode_messages(&msgs, &opts).map_err(|e| {
        ApiError::bad_param("messages", format!("cannot encode the conversation: {e}"))
    })?;
    let ids = st.tok.encode(&text).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ChatPrompt { ids, mode, prior_calls })
}
