//! The session engine both protocols share: bounded episodes (one permit each, taken before
//! anything is built), the cookie-keyed table of HTTP sessions with its idle reaper, and the
//! blocking calls into [`agentgen_environments::Session`] run off the async threads.
//!
//! An episode holds the environment's state (a built-in family) or one sandboxed worker (a
//! package) until it is verified, closed, reaped after `idle_timeout` without a request, or
//! the server stops. Calls follow the pipeline's rules (`pipeline/src/rollout.rs`): at most
//! [`limits::MAX_CALLS_PER_TURN`] executed calls per user turn (later ones get the
//! `limit.calls_per_turn` error observation), observations cut to
//! [`limits::OBSERVATION_MAX_BYTES`], and an [`EnvFailure`] ends the episode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgen_codec::{Message, ToolCall};
use agentgen_environments::limits::{self, codes as limit_codes};
use agentgen_environments::{EnvFailure, Session, TaskSpec, ToolResult, Verdict, start_session};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::{Catalog, tool_names};
use crate::http::ApiError;

/// Limits of the session engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Episodes alive at once (HTTP sessions and WebSocket connections together).
    pub max_sessions: usize,
    /// An HTTP session with no request for this long is freed.
    pub idle_timeout: Duration,
    /// How long `/seed_session` waits for a place when all are taken before answering 503
    /// (zero: at once). Agents that do not retry (NeMo Gym's) then queue instead of failing.
    pub seed_wait: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_sessions: 256,
            idle_timeout: Duration::from_secs(600),
            seed_wait: Duration::ZERO,
        }
    }
}

/// What one call gave.
pub enum CallOutcome {
    /// The observation (tool errors included: `is_error`).
    Observation(ToolResult),
    /// The task does not offer a tool of that name (not executed).
    UnknownTool,
    /// The environment failed (timeout, crash, sandbox, protocol): the episode has ended.
    Failed(EnvFailure),
}

/// One running episode of one task.
pub struct Episode {
    session: Option<Box<dyn Session>>,
    task: Arc<TaskSpec>,
    tools: Vec<String>,
    calls_in_turn: u32,
    steps: u64,
    failure: Option<EnvFailure>,
    verdict: Option<Verdict>,
    /// The episode's place among `--max-sessions` (None: its WebSocket connection holds it).
    _permit: Option<OwnedSemaphorePermit>,
}

impl Episode {
    /// The task (agent-visible parts are `system_prompt`, `user_prompt`, `tools`; the
    /// reference and `hidden` must never be sent).
    pub fn task(&self) -> &Arc<TaskSpec> {
        &self.task
    }

    /// Calls made so far (unknown tools and refused calls included).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The verdict, once verified.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Whether the task offers tool `name`.
    pub fn offers(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t == name)
    }

    /// Run one call (blocking). `arguments` is the JSON text of the arguments object.
    pub fn call(&mut self, name: &str, arguments: String) -> CallOutcome {
        self.steps += 1;
        if !self.offers(name) {
            return CallOutcome::UnknownTool;
        }
        if let Some(f) = &self.failure {
            return CallOutcome::Failed(f.clone());
        }
        if self.verdict.is_some() {
            return CallOutcome::Failed(EnvFailure::new(
                "env.protocol",
                "the episode has been verified; seed a new session",
            ));
        }
        let Some(session) = self.session.as_mut() else {
            return CallOutcome::Failed(EnvFailure::new("env.crash", "the episode has ended"));
        };
        if self.calls_in_turn >= limits::MAX_CALLS_PER_TURN {
            return CallOutcome::Observation(limits::limit_error(
                limit_codes::CALLS_PER_TURN,
                limits::CALLS_PER_TURN_MESSAGE,
            ));
        }
        let step = self.calls_in_turn as usize;
        self.calls_in_turn += 1;
        match session.call(step, &ToolCall::new(name, arguments)) {
            Ok(mut r) => {
                limits::truncate_observation(&mut r.content, limits::OBSERVATION_MAX_BYTES);
                CallOutcome::Observation(r)
            }
            Err(f) => {
                // The session is unusable (a package worker is discarded when dropped).
                self.session = None;
                self.failure = Some(f.clone());
                CallOutcome::Failed(f)
            }
        }
    }

    /// Verify the first user turn with `answer` (blocking) and end the episode: the session
    /// (and a package's worker) is released here.
    pub fn verify(&mut self, answer: &str, transcript: &[Message]) -> Result<Verdict, EnvFailure> {
        if let Some(v) = &self.verdict {
            return Ok(v.clone());
        }
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let Some(mut session) = self.session.take() else {
            return Err(EnvFailure::new("env.crash", "the episode has ended"));
        };
        let v = session.verify_turn(0, answer, transcript);
        drop(session);
        match v {
            Ok(v) => {
                self.verdict = Some(v.clone());
                Ok(v)
            }
            Err(f) => {
                self.failure = Some(f.clone());
                Err(f)
            }
        }
    }
}

/// An HTTP session: its episode and when it was last used.
pub struct Slot {
    episode: Mutex<Episode>,
    last_used: AtomicU64,
}

impl Slot {
    /// Run `f` on the episode (blocking: call from a blocking thread). `None` if a panic
    /// elsewhere poisoned the lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut Episode) -> T) -> Option<T> {
        let mut ep = self.episode.lock().ok()?;
        Some(f(&mut ep))
    }
}

/// Counters for `/health` and the load test.
#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    verified: AtomicU64,
    reaped: AtomicU64,
    refused_full: AtomicU64,
}

/// The shared engine.
pub struct Engine {
    catalog: Catalog,
    cfg: EngineConfig,
    permits: Arc<Semaphore>,
    sessions: Mutex<HashMap<String, Arc<Slot>>>,
    epoch: Instant,
    counters: Counters,
}

impl Engine {
    /// An engine serving `catalog`'s tasks within `cfg`.
    pub fn new(catalog: Catalog, cfg: EngineConfig) -> Engine {
        let max = cfg.max_sessions.clamp(1, Semaphore::MAX_PERMITS);
        Engine {
            catalog,
            cfg: EngineConfig { max_sessions: max, ..cfg },
            permits: Arc::new(Semaphore::new(max)),
            sessions: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            counters: Counters::default(),
        }
    }

    /// The served tasks.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The limits.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Episodes alive now (HTTP sessions and WebSocket episodes).
    pub fn active(&self) -> usize {
        self.cfg.max_sessions - self.permits.available_permits()
    }

    /// Numbers for `/health`.
    pub fn stats(&self) -> Value {
        let c = &self.counters;
        serde_json::json!({
            "active_sessions": self.active(),
            "http_sessions": self.sessions.lock().map(|m| m.len()).unwrap_or(0),
            "max_sessions": self.cfg.max_sessions,
            "idle_timeout_secs": self.cfg.idle_timeout.as_secs_f64(),
            "sessions_started": c.started.load(Ordering::Relaxed),
            "sessions_verified": c.verified.load(Ordering::Relaxed),
            "sessions_reaped": c.reaped.load(Ordering::Relaxed),
            "sessions_refused_full": c.refused_full.load(Ordering::Relaxed),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A place among `--max-sessions`, or 503 `sessions.full` when every one is taken.
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
            ApiError::full(self.active(), self.cfg.max_sessions)
        })
    }

    /// Start an episode of task `id`: a permit first (waiting up to `seed_wait` for one, then
    /// 503), then the task and its session on a blocking thread.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Episode, ApiError> {
        let permit = match self.permit() {
            Ok(p) => p,
            Err(e) if self.cfg.seed_wait.is_zero() => return Err(e),
            Err(e) => {
                let wait = Arc::clone(&self.permits).acquire_owned();
                match tokio::time::timeout(self.cfg.seed_wait, wait).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(e),
                }
            }
        };
        self.start_with(Some(permit), id).await
    }

    /// Start an episode of task `id` under `permit` (None: the caller holds one for it, as a
    /// WebSocket connection does for all its episodes).
    pub async fn start_with(
        self: &Arc<Self>,
        permit: Option<OwnedSemaphorePermit>,
        id: &str,
    ) -> Result<Episode, ApiError> {
        let (me, id) = (Arc::clone(self), id.to_owned());
        let built = tokio::task::spawn_blocking(move || {
            let (instance, task) = me.catalog.task(&id).map_err(|e| match e {
                crate::Error::Build { .. } => {
                    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "env.failed", e.to_string())
                }
                _ => ApiError::bad_task(e.to_string()),
            })?;
            let session = start_session(&instance, &task).map_err(|f| ApiError::env_failed(&f))?;
            Ok::<_, ApiError>((task, session))
        })
        .await
        .map_err(|e| ApiError::internal(format!("starting the session: {e}")))?;
        let (task, session) = built?;
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        Ok(Episode {
            session: Some(session),
            tools: tool_names(&task),
            task,
            calls_in_turn: 0,
            steps: 0,
            failure: None,
            verdict: None,
            _permit: permit,
        })
    }

    /// Keep `episode` as an HTTP session; returns its token (128 random bits, hex).
    pub fn insert(&self, episode: Episode) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        let slot = Arc::new(Slot {
            episode: Mutex::new(episode),
            last_used: AtomicU64::new(self.now_ms()),
        });
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(token.clone(), slot);
        }
        token
    }

    /// The HTTP session of `token`, marked as used now.
    pub fn get(&self, token: &str) -> Option<Arc<Slot>> {
        let slot = self.sessions.lock().ok()?.get(token).cloned()?;
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        Some(slot)
    }

    /// Take the HTTP session of `token` out of the table (verify, close).
    pub fn remove(&self, token: &str) -> Option<Arc<Slot>> {
        self.sessions.lock().ok()?.remove(token)
    }

    /// Count a verified episode.
    pub fn count_verified(&self) {
        self.counters.verified.fetch_add(1, Ordering::Relaxed);
    }

    /// Free every HTTP session idle for longer than the idle timeout and not in use; returns
    /// how many. Their episodes are dropped on a blocking thread.
    pub fn reap(&self) -> usize {
        let limit = u64::try_from(self.cfg.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let mut gone = Vec::new();
        if let Ok(mut m) = self.sessions.lock() {
            m.retain(|_, slot| {
                let idle = now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) >= limit;
                // A slot in use (a call running) is not idle; one held elsewhere is left to
                // its holder.
                let free = Arc::strong_count(slot) == 1 && slot.episode.try_lock().is_ok();
                if idle && free {
                    gone.push(Arc::clone(slot));
                    false
                } else {
                    true
                }
            });
        }
        let n = gone.len();
        if n > 0 {
            self.counters.reaped.fetch_add(n as u64, Ordering::Relaxed);
            release(gone);
        }
        n
    }

    /// Free every HTTP session (shutdown); returns how many.
    pub fn clear(&self) -> usize {
        let all: Vec<Arc<Slot>> = self
            .sessions
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default();
        let n = all.len();
        drop(all);
        n
    }

    /// Run the idle reaper until the engine is dropped elsewhere (every quarter of the idle
    /// timeout, at least every second).
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every =
            (self.cfg.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = weak.upgrade() else { break };
                let n = engine.reap();
                if n > 0 {
                    tracing::info!("freed {n} idle session(s)");
                }
            }
        });
    }
}

/// Drop episodes (a package's worker goes back to its pool or is killed) off the async
/// threads when there is a runtime, else here.
pub fn release<T: Send + 'static>(x: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(move || drop(x));
        }
        Err(_) => drop(x),
    }
}

/// The final answer and the transcript of a Responses-API `response.output`: the prompt of
/// the task, then each item (function calls as assistant tool calls, their outputs as tool
/// messages, output messages as assistant text). The answer is the text of the last assistant
/// message ("" when there is none). Nothing here is executed again: the verifier judges the
/// state the server's own calls produced.
pub fn transcript(task: &TaskSpec, output: &[Value]) -> (String, Vec<Message>) {
    let mut messages = task.prompt_messages();
    let mut answer = String::new();
    let mut pending: Vec<ToolCall> = Vec::new();
    let flush = |pending: &mut Vec<ToolCall>, messages: &mut Vec<Message>| {
        if !pending.is_empty() {
            messages.push(Message::assistant(None, "", std::mem::take(pending)));
        }
    };
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                let args = item.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                let mut call = ToolCall::new(name, args);
                call.id = item.get("call_id").and_then(Value::as_str).map(str::to_owned);
                pending.push(call);
            }
            Some("function_call_output") => {
                flush(&mut pending, &mut messages);
                let out = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                let id = item.get("call_id").and_then(Value::as_str).map(str::to_owned);
                messages.push(Message::tool(out, id));
            }
            Some("message") if item.get("role").and_then(Value::as_str) != Some("user") => {
                flush(&mut pending, &mut messages);
                answer = message_text(item);
                messages.push(Message::assistant(None, answer.clone(), Vec::new()));
            }
            _ => {}
        }
    }
    flush(&mut pending, &mut messages);
    (answer, messages)
}

/// The text of a Responses-API message item: its `output_text` / `text` parts joined, or a
/// plain string `content`.
fn message_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentgen_environments::{Registry, TaskRef};
    use serde_json::json;

    #[test]
    fn transcripts_group_calls_and_take_the_last_assistant_text() {
        let reg = Registry::new();
        let cache = agentgen_environments::InstanceCache::new(1);
        let r: TaskRef = "trip@2/0/0".parse().unwrap_or_else(|_| unreachable!());
        let Ok((_, task)) = reg.task(&cache, &r) else { return };
        let output = vec![
            json!({"type": "function_call", "name": "list_cities", "arguments": "{}", "call_id": "a"}),
            json!({"type": "function_call", "name": "list_hotels", "arguments": "{\"city\": \"X\"}", "call_id": "b"}),
            json!({"type": "function_call_output", "call_id": "a", "output": "[]"}),
            json!({"type": "function_call_output", "call_id": "b", "output": {"x": 1}}),
            json!({"type": "reasoning", "summary": []}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "do"}, {"type": "output_text", "text": "ne"}]}),
            json!(42),
        ];
        let (answer, messages) = transcript(&task, &output);
        assert_eq!(answer, "done");
        // system, user, one assistant step with both calls, two tool results, the answer.
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[2].tool_calls.len(), 2);
        assert_eq!(messages[4].content.as_deref(), Some("{\"x\":1}"));
        let (answer, messages) = transcript(&task, &[]);
        assert_eq!((answer.as_str(), messages.len()), ("", 2));
    }
}
