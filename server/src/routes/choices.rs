//! What the two generation endpoints share: running every choice to the end (plain JSON), or
//! streaming each choice in its own task (server-sent events); the envelope of every response
//! object and chunk; the usage tail; the finish reason.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::plan::{Plan, Started};
use crate::api::{ApiError, Usage};
use crate::generation::{ChoiceRun, Finish, Progress};

/// The fields every response object and stream chunk of one request starts with.
pub(super) struct Envelope {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
}

impl Envelope {
    /// For `plan`'s responses of type `object` (`text_completion`, `chat.completion.chunk`, ...).
    pub(super) fn new(st: &AppState, plan: &Plan, object: &'static str) -> Self {
        Self { id: plan.id.clone(), object, created: st.created_now(), model: plan.model.clone() }
    }

    fn with(&self, choices: Value) -> Value {
        json!({
            "id": self.id, "object": self.object, "created": self.created, "model": self.model,
            "choices": choices,
        })
    }

    /// One stream chunk carrying `choices`.
    pub(super) fn chunk(&self, choices: Value) -> Event {
        json_event(&self.with(choices))
    }
}

/// Run every choice to the end; `(choice index, run)` in index order. The first backend
/// failure is the error.
pub(super) async fn run_all(
    st: &AppState,
    plan: &Plan,
    started: Vec<Started>,
) -> Result<Vec<(usize, ChoiceRun)>, ApiError> {
    let runs = futures_util::future::join_all(started.into_iter().map(|(i, p, rx)| {
        let run = st.run(rx, plan, p);
        async move { run.run().await.map(|r| (i, r)) }
    }))
    .await;
    let mut runs = runs.into_iter().collect::<Result<Vec<_>, _>>().map_err(ApiError::internal)?;
    runs.sort_by_key(|(i, _)| *i);
    Ok(runs)
}

/// The plain JSON response: the envelope with one `choice(index, run)` per run, and the usage.
pub(super) fn respond(
    env: &Envelope,
    plan: &Plan,
    runs: &[(usize, ChoiceRun)],
    choice: impl Fn(usize, &ChoiceRun) -> Value,
) -> Response {
    let choices: Vec<Value> = runs.iter().map(|(i, run)| choice(*i, run)).collect();
    let completion_tokens = runs.iter().map(|(_, run)| run.ids.len()).sum();
    let mut body = env.with(json!(choices));
    body["usage"] = json!(Usage::new(plan.prompt_tokens(), completion_tokens));
    Json(body).into_response()
}

/// One choice being streamed, handed to the endpoint's per-choice task.
pub(super) struct ChoiceStream {
    /// The server.
    pub(super) st: Arc<AppState>,
    /// The envelope of every chunk.
    pub(super) env: Arc<Envelope>,
    /// The choice's index.
    pub(super) index: usize,
    /// The choice.
    pub(super) run: ChoiceRun,
    tx: mpsc::Sender<Event>,
}

impl ChoiceStream {
    /// Send a chunk carrying this choice only; `false` when the client is gone (the task then
    /// returns, and dropping the run cancels the sequence).
    pub(super) async fn send(&self, choice: Value) -> bool {
        self.tx.send(self.env.chunk(json!([choice]))).await.is_ok()
    }

    /// The next step of the run; a backend failure is sent as an error event and gives `None`.
    pub(super) async fn next(&mut self) -> Option<Progress> {
        match self.run.next().await {
            Ok(step) => Some(step),
            Err(e) => {
                let _ = self.tx.send(json_event(&ApiError::internal(e).body())).await;
                None
            }
        }
    }
}

/// The server-sent-events response: `each` streams one choice in its own task and returns its
/// completion tokens (`None` ends the stream early: the client is gone or the backend failed).
/// After every choice: the usage chunk when asked for, then `[DONE]`.
pub(super) fn stream<F, Fut>(
    st: Arc<AppState>,
    plan: Plan,
    started: Vec<Started>,
    object: &'static str,
    include_usage: bool,
    each: F,
) -> Response
where
    F: Fn(ChoiceStream) -> Fut,
    Fut: Future<Output = Option<usize>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Event>(64);
    let env = Arc::new(Envelope::new(&st, &plan, object));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, p, events) in started {
        let run = st.run(events, &plan, p);
        let (st, env, tx) = (Arc::clone(&st), Arc::clone(&env), tx.clone());
        tasks.spawn(each(ChoiceStream { st, env, index, run, tx }));
    }
    let prompt_tokens = plan.prompt_tokens();
    tokio::spawn(async move {
        let mut completion_tokens = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Some(n)) => completion_tokens += n,
                _ => return,
            }
        }
        if include_usage {
            let mut chunk = env.with(json!([]));
            chunk["usage"] = json!(Usage::new(prompt_tokens, completion_tokens));
            let _ = tx.send(json_event(&chunk)).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn json_event(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// The OpenAI `finish_reason` of a choice.
pub(super) fn finish_str(f: Option<Finish>, tool_calls: bool) -> &'static str {
    match f {
        Some(Finish::Length) => "length",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}
