//! `POST /v1/completions`: text or token prompts, plain text back (special tokens and the
//! matched stop string kept on request), legacy logprobs, token ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::choices::{self, ChoiceStream, Envelope, finish_str};
use super::plan::Sampling;
use super::{AppState, St, parse_body};
use crate::api::{ApiError, CompletionRequest, Prompt};
use crate::generation::{ChoiceRun, Progress, completion_text};

pub(super) async fn completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    match completions_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct CompletionOpts {
    logprobs: bool,
    token_ids: bool,
    include_stop: bool,
    skip_special: bool,
}

async fn completions_inner(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(body)?;
    let model = st.model_name(req.model.as_deref())?;
    if req.echo {
        return Err(ApiError::bad_param("echo", "echo is not supported"));
    }
    let encode =
        |t: &str| st.tok.encode(t).map_err(|e| ApiError::bad_param("prompt", e.to_string()));
    let prompts = match req.prompt {
        Prompt::Text(t) => vec![encode(&t)?],
        Prompt::Ids(ids) => vec![ids],
        Prompt::Texts(ts) => ts.iter().map(|t| encode(t)).collect::<Result<_, _>>()?,
        Prompt::IdBatch(b) => b,
    };
    if prompts.is_empty() {
        return Err(ApiError::bad_param("prompt", "the prompt list is empty"));
    }
    let max_tokens = usize::try_from(req.max_tokens.unwrap_or(16)).unwrap_or(usize::MAX);
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        n: req.n,
        stop: req.stop,
    };
    let mut plan = st.plan("cmpl", model, prompts, max_tokens, sampling)?;
    plan.stop_token_ids = req.stop_token_ids.unwrap_or_default();
    let opts = Arc::new(CompletionOpts {
        logprobs: req.logprobs.is_some(),
        token_ids: req.logprobs.is_some() || req.return_token_ids,
        include_stop: req.include_stop_str_in_output,
        skip_special: req.skip_special_tokens.unwrap_or(true),
    });
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let started = st.start(&plan)?;
    if req.stream {
        return Ok(choices::stream(
            st,
            plan,
            started,
            "text_completion",
            include_usage,
            move |c| stream_choice(c, Arc::clone(&opts)),
        ));
    }
    let runs = choices::run_all(&st, &plan, started).await?;
    let env = Envelope::new(&st, &plan, "text_completion");
    Ok(choices::respond(&env, &plan, &runs, |index, run| {
        let text = completion_text(run, opts.include_stop, opts.skip_special);
        let kept = run.tokens_within(text.len());
        let mut choice = json!({
            "index": index,
            "text": text,
            "logprobs": Value::Null,
            "finish_reason": finish_str(run.finish, false),
        });
        if opts.logprobs {
            choice["logprobs"] = completion_logprobs(&st, run, 0, kept);
        }
        if opts.token_ids {
            choice["token_ids"] = json!(run.ids[..kept]);
        }
        choice
    }))
}

/// The legacy `logprobs` object for tokens `from..to` (the sampled token only: the engine
/// reports no alternatives, so `top_logprobs` is null).
fn completion_logprobs(st: &AppState, run: &ChoiceRun, from: usize, to: usize) -> Value {
    let tokens: Vec<String> = run.ids[from..to].iter().map(|&id| st.token_text(id)).collect();
    json!({
        "tokens": tokens,
        "token_logprobs": run.logprobs[from..to],
        "top_logprobs": Value::Null,
        "text_offset": run.offsets[from..to],
    })
}

/// Stream one choice: the text no stop string can still claim, as it settles.
async fn stream_choice(mut c: ChoiceStream, opts: Arc<CompletionOpts>) -> Option<usize> {
    let mut sent_text = 0;
    let mut sent_tok = 0;
    loop {
        let done = matches!(c.next().await?, Progress::Done);
        let run = &c.run;
        let text = completion_text(run, opts.include_stop, opts.skip_special);
        let mut safe = text.len() - run.stop_holdback(text);
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        if safe > sent_text || done {
            let upto = if done { text.len() } else { safe };
            let toks = run.tokens_within(upto).max(sent_tok);
            let mut choice = json!({
                "index": c.index,
                "text": &text[sent_text.min(upto)..upto],
                "logprobs": Value::Null,
                "finish_reason": if done { json!(finish_str(run.finish, false)) } else { Value::Null },
            });
            if opts.logprobs {
                choice["logprobs"] = completion_logprobs(&c.st, run, sent_tok, toks);
            }
            if opts.token_ids {
                choice["token_ids"] = json!(run.ids[sent_tok..toks]);
            }
            sent_text = upto;
            sent_tok = toks;
            if !c.send(choice).await {
                return None;
            }
        }
        if done {
            return Some(c.run.ids.len());
        }
    }
}
