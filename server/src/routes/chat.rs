//! `POST /v1/chat/completions`: the conversation encoded by the codec, the reply parsed back
//! into `reasoning_content`, `content` and `tool_calls` (streamed through the codec's
//! [`StreamParser`]).

use std::sync::Arc;

use agentgen_codec::tokens::CALLS_CLOSE;
use agentgen_codec::{StreamParser, ThinkingMode, ToolCall, parse_best_effort};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::chat_prompt::chat_prompt;
use super::choices::{self, ChoiceStream, Envelope, finish_str};
use super::plan::Sampling;
use super::{AppState, St, parse_body};
use crate::api::{ApiError, ChatRequest};
use crate::generation::{ChoiceRun, Finish, Progress};

pub(super) async fn chat_completions(
    State(st): St,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match chat_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn tool_calls_json(calls: &[ToolCall], first_id: usize) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(k, c)| {
            json!({
                "id": format!("call_{}", first_id + k),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })
        })
        .collect()
}

fn chat_logprobs(st: &AppState, run: &ChoiceRun, from: usize, to: usize) -> Value {
    let content: Vec<Value> = (from..to)
        .map(|k| {
            let t = st.token_text(run.ids[k]);
            json!({
                "token": t,
                "logprob": run.logprobs[k],
                "bytes": t.as_bytes(),
                "top_logprobs": [],
            })
        })
        .collect();
    json!({"content": content})
}

async fn chat_inner(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_body(body)?;
    let model = st.model_name(req.model.as_deref())?;
    if req.top_logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::bad_param(
            "top_logprobs",
            "this server reports the sampled token's logprob only (top_logprobs must be 0)",
        ));
    }
    let prompt = chat_prompt(&st, &req)?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .map_or(st.cfg.default_max_tokens, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let max_tokens = if req.max_completion_tokens.is_none() && req.max_tokens.is_none() {
        max_tokens.min(st.backend.max_context().saturating_sub(prompt.ids.len()).max(1))
    } else {
        max_tokens
    };
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        n: req.n,
        stop: req.stop.clone(),
    };
    let plan = st.plan("chatcmpl", model, vec![prompt.ids], max_tokens, sampling)?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let started = st.start(&plan)?;
    let ctx =
        ChatCtx { mode: prompt.mode, prior_calls: prompt.prior_calls, logprobs: req.logprobs };
    if req.stream {
        let object = "chat.completion.chunk";
        return Ok(choices::stream(st, plan, started, object, include_usage, move |c| {
            stream_choice(c, ctx)
        }));
    }
    let runs = choices::run_all(&st, &plan, started).await?;
    let env = Envelope::new(&st, &plan, "chat.completion");
    Ok(choices::respond(&env, &plan, &runs, |index, run| {
        let msg = parse_best_effort(chat_text(run), ctx.mode);
        let calls = tool_calls_json(&msg.tool_calls, ctx.prior_calls);
        let mut message = json!({
            "role": "assistant",
            "content": msg.content,
            "reasoning_content": if ctx.mode == ThinkingMode::Thinking { json!(msg.reasoning_content) } else { Value::Null },
        });
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let mut choice = json!({
            "index": index,
            "message": message,
            "logprobs": Value::Null,
            "finish_reason": finish_str(run.finish, !calls.is_empty()),
        });
        if ctx.logprobs {
            choice["logprobs"] = chat_logprobs(&st, run, 0, run.ids.len());
            choice["token_ids"] = json!(run.ids);
        }
        choice
    }))
}

#[derive(Clone, Copy)]
struct ChatCtx {
    mode: ThinkingMode,
    prior_calls: usize,
    logprobs: bool,
}

/// The text a chat choice is parsed from: a matched stop string is cut off (a stop at the
/// tool-block close keeps the close, which the parser needs).
fn chat_text(run: &ChoiceRun) -> &str {
    match run.finish {
        Some(Finish::StopString { start, end }) if run.text[start..end] != *CALLS_CLOSE => {
            &run.text[..start]
        }
        _ => &run.text,
    }
}

/// A chunk's choice: `delta`, `logprobs` and `finish_reason` of choice `index`.
fn chunk_choice(index: usize, delta: Value, finish: Option<&str>, logprobs: Value) -> Value {
    json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
}

/// Stream one choice: the role, then reasoning and content deltas as the codec's parser lets
/// them show, then what the final parse adds (tool calls, repairs) and the finish reason.
async fn stream_choice(mut c: ChoiceStream, ctx: ChatCtx) -> Option<usize> {
    let index = c.index;
    let role = json!({"role": "assistant", "content": ""});
    if !c.send(chunk_choice(index, role, None, Value::Null)).await {
        return None;
    }
    let mut parser = StreamParser::new(ctx.mode);
    let (mut sent_r, mut sent_c, mut sent_tok) = (0usize, 0usize, 0usize);
    loop {
        let done = matches!(c.next().await?, Progress::Done);
        let run = &c.run;
        // The parser gets the text no stop string can still cut: a match ends the text where
        // it starts, and can start only in the held-back tail.
        let text = chat_text(run);
        let settled = text.len() - run.stop_holdback(text);
        if let Some(new) = text.get(parser.text().len()..settled) {
            parser.push(new);
        }
        let sec = parser.sections();
        let mut delta = serde_json::Map::new();
        if sec.reasoning.len() > sent_r {
            delta.insert("reasoning_content".into(), json!(&sec.reasoning[sent_r..]));
            sent_r = sec.reasoning.len();
        }
        if sec.content.len() > sent_c {
            delta.insert("content".into(), json!(&sec.content[sent_c..]));
            sent_c = sec.content.len();
        }
        let lp = if ctx.logprobs && run.ids.len() > sent_tok && (!delta.is_empty() || done) {
            let v = chat_logprobs(&c.st, run, sent_tok, run.ids.len());
            sent_tok = run.ids.len();
            v
        } else {
            Value::Null
        };
        if (!delta.is_empty() || !lp.is_null())
            && !c.send(chunk_choice(index, Value::Object(delta), None, lp)).await
        {
            return None;
        }
        if done {
            break;
        }
    }
    let msg = parser.message();
    let mut delta = serde_json::Map::new();
    // Whatever the final parse adds beyond what was streamed (e.g. repairs).
    if let Some(rest) = msg.content.get(sent_c..).filter(|r| !r.is_empty())
        && msg.content.is_char_boundary(sent_c)
    {
        delta.insert("content".into(), json!(rest));
    }
    let calls = tool_calls_json(&msg.tool_calls, ctx.prior_calls);
    if !calls.is_empty() {
        let indexed: Vec<Value> = calls
            .into_iter()
            .enumerate()
            .map(|(k, mut c)| {
                c["index"] = json!(k);
                c
            })
            .collect();
        delta.insert("tool_calls".into(), json!(indexed));
    }
    let finish = finish_str(c.run.finish, !msg.tool_calls.is_empty());
    if !delta.is_empty()
        && !c.send(chunk_choice(index, Value::Object(delta), None, Value::Null)).await
    {
        return None;
    }
    let mut last = chunk_choice(index, json!({}), Some(finish), Value::Null);
    if ctx.logprobs {
        // Non-standard: the sampled ids, on the final chunk of the choice.
        last["token_ids"] = json!(c.run.ids);
    }
    if !c.send(last).await {
        return None;
    }
    Some(c.run.ids.len())
}
