//! The session engine both protocols share: bounded episodes (one permit each, taken before
//! anything is built), bounded package workers (one per package episode, capped per package
//! and queued for with a bounded wait), the cookie-keyed table of HTTP sessions with its idle
//! reaper, and the blocking calls into [`agentgen_environments::Session`] run off the async
//! threads.
//!
//! An episode holds the environment's state (a built-in family) or one sandboxed worker (a
//! package) until it ends (its last user turn verified, a turn failed, closed, reaped after
//! `idle_timeout` without a request, or the server stopped). A package's workers are the
//! envpkg runtime's pool (`environments/src/envpkg/runtime.rs`, `PooledWorker`): the engine
//! only caps how many episodes of one package hold one at once (`workers` per package), so
//! the pool's idle workers are reused episode after episode and no more than `workers` are
//! ever alive; an episode that cannot get one within `worker_wait` is refused with 503
//! `workers.busy`.
//!
//! Calls and turns follow the pipeline's rules (`pipeline/src/rollout.rs`): at most
//! [`limits::MAX_CALLS_PER_TURN`] executed calls per user turn (later ones get the
//! `limit.calls_per_turn` error observation), observations cut to
//! [`limits::OBSERVATION_MAX_BYTES`], every user turn verified when the agent answers it; a
//! passed turn that is not the last one continues the episode with the next user message, a
//! failed or last turn ends it with the episode's verdict (passed iff every turn passed,
//! reward the minimum of the turns' rewards, else 0), and an [`EnvFailure`] ends it.

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
    /// Sandboxed workers alive at once per package (each package episode holds one).
    pub workers: usize,
    /// How long a package episode waits for one of its package's workers before 503
    /// `workers.busy`.
    pub worker_wait: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_sessions: 256,
            idle_timeout: Duration::from_secs(600),
            seed_wait: Duration::ZERO,
            workers: default_workers(),
            worker_wait: Duration::from_secs(60),
        }
    }
}

/// Workers per package by default: two per core (a worker is busy only while a call of its
/// episode runs; more would only contend for the cores), at least 2.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2).max(2)
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

/// What verifying a user turn gave.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// The turn verified (0-based).
    pub turn: usize,
    /// User turns of the task.
    pub turns_total: usize,
    /// That turn's verdict.
    pub verdict: Verdict,
    /// The episode's verdict once it has ended (`None` while it continues).
    pub episode: Option<Verdict>,
    /// The next user message when the episode continues.
    pub next_user: Option<String>,
    /// Every verified turn's reward so far.
    pub turn_rewards: Vec<f32>,
}

impl TurnOutcome {
    /// Whether the episode has ended.
    pub fn done(&self) -> bool {
        self.episode.is_some()
    }

    /// The reward to report: the episode's once it has ended, else this turn's.
    pub fn reward(&self) -> f32 {
        self.episode.as_ref().map_or(self.verdict.reward, |v| v.reward)
    }

    /// Whether it passed: the episode once it has ended, else this turn.
    pub fn passed(&self) -> bool {
        self.episode.as_ref().map_or(self.verdict.passed, |v| v.passed)
    }
}

/// The verdict of an episode from its turns' verdicts, as `generate` computes it
/// (`pipeline/src/rollout.rs`, `finish_output`): passed iff all `total` turns were verified
/// and passed; reward the minimum of their rewards when passed, else 0; every turn's checks.
pub fn episode_verdict(turns: &[Verdict], total: usize) -> Verdict {
    let passed = turns.len() == total && turns.iter().all(|v| v.passed);
    let reward = if passed { turns.iter().map(|v| v.reward).fold(1.0f32, f32::min) } else { 0.0 };
    Verdict {
        reward,
        passed,
        checks: turns.iter().flat_map(|v| v.checks.iter().cloned()).collect(),
    }
}

/// What a live episode holds: its session, then (dropped after it, so a worker is back in its
/// pool before another episode may take one) its place among its package's workers.
struct Held {
    session: Box<dyn Session>,
    _worker: Option<OwnedSemaphorePermit>,
}

/// One running episode of one task.
pub struct Episode {
    /// OpenEnv's `episode_id` (`task_id#n` unless the client names it).
    pub episode_id: String,
    held: Option<Held>,
    task: Arc<TaskSpec>,
    tools: Vec<String>,
    /// The user turn being played (0-based).
    turn: usize,
    calls_in_turn: u32,
    steps: u64,
    /// The conversation up to the current turn's user message.
    history: Vec<Message>,
    turn_verdicts: Vec<Verdict>,
    /// The current turn's calls as the server ran them (Responses-API `function_call` and
    /// `function_call_output` items): the transcript of an OpenEnv `answer`.
    played: Vec<Value>,
    failure: Option<EnvFailure>,
    outcome: Option<TurnOutcome>,
    /// The episode's place among `--max-sessions` (None: its WebSocket connection holds it).
    /// Given back as soon as the episode is verified to its end, so that the answer of the
    /// last `/verify` finds the place already free.
    permit: Option<OwnedSemaphorePermit>,
}

impl Episode {
    /// The task (agent-visible parts are `system_prompt`, the user turns, `tools`; the
    /// reference and `hidden` must never be sent).
    pub fn task(&self) -> &Arc<TaskSpec> {
        &self.task
    }

    /// Calls made so far (unknown tools and refused calls included).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The user turn being played (0-based; the last one once the episode has ended).
    pub fn turn(&self) -> usize {
        self.turn
    }

    /// The final outcome, once the episode has ended by verification.
    pub fn outcome(&self) -> Option<&TurnOutcome> {
        self.outcome.as_ref()
    }

    /// Whether the episode has ended (verified to the end, or the environment failed).
    pub fn done(&self) -> bool {
        self.outcome.is_some() || self.failure.is_some() || self.held.is_none()
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
        if self.outcome.is_some() {
            return CallOutcome::Failed(EnvFailure::new(
                "env.protocol",
                "the episode has been verified; seed a new session",
            ));
        }
        let Some(held) = self.held.as_mut() else {
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
        let call_id = format!("call_{}", self.steps);
        self.played.push(serde_json::json!({"type": "function_call", "call_id": call_id,
            "name": name, "arguments": arguments}));
        match held.session.call(step, &ToolCall::new(name, arguments)) {
            Ok(mut r) => {
                limits::truncate_observation(&mut r.content, limits::OBSERVATION_MAX_BYTES);
                self.played.push(serde_json::json!({"type": "function_call_output",
                    "call_id": call_id, "output": r.content}));
                CallOutcome::Observation(r)
            }
            Err(f) => {
                // The session is unusable (a package worker is discarded when dropped).
                self.held = None;
                self.failure = Some(f.clone());
                CallOutcome::Failed(f)
            }
        }
    }

    /// Verify the current user turn (blocking) with the final message `answer`, after the calls
    /// the server ran in this turn (OpenEnv's `answer` action: the client sends no transcript).
    pub fn answer(&mut self, answer: &str) -> Result<TurnOutcome, EnvFailure> {
        let mut output = std::mem::take(&mut self.played);
        output.push(serde_json::json!({"type": "message", "role": "assistant", "content": answer}));
        self.verify(&output)
    }

    /// Verify the current user turn (blocking) from the Responses-API `output` items the agent
    /// produced in it (the answer is its last assistant text). A passed turn that is not the
    /// last continues the episode with the next user message; otherwise the episode ends and
    /// its session (a package's worker) is released here. Once ended, the final outcome again.
    pub fn verify(&mut self, output: &[Value]) -> Result<TurnOutcome, EnvFailure> {
        if let Some(o) = &self.outcome {
            return Ok(o.clone());
        }
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let Some(held) = self.held.as_mut() else {
            return Err(EnvFailure::new("env.crash", "the episode has ended"));
        };
        let (answer, messages) = transcript_after(&self.history, output);
        self.played.clear();
        let total = self.task.user_turns();
        let v = match held.session.verify_turn(self.turn, &answer, &messages) {
            Ok(v) => v,
            Err(f) => {
                self.held = None;
                self.permit = None;
                self.failure = Some(f.clone());
                return Err(f);
            }
        };
        self.turn_verdicts.push(v.clone());
        let turn = self.turn;
        let turn_rewards: Vec<f32> = self.turn_verdicts.iter().map(|v| v.reward).collect();
        let next = if v.passed { self.task.user_turn(turn + 1) } else { None };
        if let Some((text, _)) = next {
            let text = text.to_owned();
            self.history = messages;
            self.history.push(Message::user(text.clone()));
            self.turn += 1;
            self.calls_in_turn = 0;
            return Ok(TurnOutcome {
                turn,
                turns_total: total,
                verdict: v,
                episode: None,
                next_user: Some(text),
                turn_rewards,
            });
        }
        // The episode ends: its session (and worker), then its place, go now.
        self.held = None;
        self.permit = None;
        let out = TurnOutcome {
            turn,
            turns_total: total,
            verdict: v,
            episode: Some(episode_verdict(&self.turn_verdicts, total)),
            next_user: None,
            turn_rewards,
        };
        self.outcome = Some(out.clone());
        Ok(out)
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
    refused_workers: AtomicU64,
    turns_verified: AtomicU64,
}

/// The shared engine.
pub struct Engine {
    catalog: Catalog,
    cfg: EngineConfig,
    permits: Arc<Semaphore>,
    sessions: Mutex<HashMap<String, Arc<Slot>>>,
    /// Per served package: its places among `workers` (built-in families need none).
    workers: HashMap<&'static str, Arc<Semaphore>>,
    epoch: Instant,
    counters: Counters,
}

impl Engine {
    /// An engine serving `catalog`'s tasks within `cfg`.
    pub fn new(catalog: Catalog, cfg: EngineConfig) -> Engine {
        let max = cfg.max_sessions.clamp(1, Semaphore::MAX_PERMITS);
        let workers_each = cfg.workers.clamp(1, Semaphore::MAX_PERMITS);
        let workers = catalog
            .packages()
            .into_iter()
            .map(|name| (name, Arc::new(Semaphore::new(workers_each))))
            .collect();
        Engine {
            catalog,
            cfg: EngineConfig { max_sessions: max, workers: workers_each, ..cfg },
            permits: Arc::new(Semaphore::new(max)),
            sessions: Mutex::new(HashMap::new()),
            workers,
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
        let workers: serde_json::Map<String, Value> = self
            .workers
            .iter()
            .map(|(name, sem)| {
                let busy = self.cfg.workers - sem.available_permits();
                ((*name).to_owned(), serde_json::json!({"max": self.cfg.workers, "busy": busy}))
            })
            .collect();
        serde_json::json!({
            "active_sessions": self.active(),
            "http_sessions": self.sessions.lock().map_or(0, |m| m.len()),
            "max_sessions": self.cfg.max_sessions,
            "idle_timeout_secs": self.cfg.idle_timeout.as_secs_f64(),
            "sessions_started": c.started.load(Ordering::Relaxed),
            "sessions_verified": c.verified.load(Ordering::Relaxed),
            "sessions_reaped": c.reaped.load(Ordering::Relaxed),
            "sessions_refused_full": c.refused_full.load(Ordering::Relaxed),
            "sessions_refused_workers": c.refused_workers.load(Ordering::Relaxed),
            "turns_verified": c.turns_verified.load(Ordering::Relaxed),
            "workers": workers,
            "worker_wait_secs": self.cfg.worker_wait.as_secs_f64(),
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

    /// A place among `--max-sessions` for an HTTP session, waiting up to `seed_wait` for one
    /// when all are taken (then 503 `sessions.full`).
    pub async fn place(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match self.permit() {
            Ok(p) => Ok(p),
            Err(e) if self.cfg.seed_wait.is_zero() => Err(e),
            Err(e) => {
                let wait = Arc::clone(&self.permits).acquire_owned();
                match tokio::time::timeout(self.cfg.seed_wait, wait).await {
                    Ok(Ok(p)) => Ok(p),
                    _ => Err(e),
                }
            }
        }
    }

    /// Start an episode of task `id`: a place first ([`Engine::place`]), then the task and its
    /// session on a blocking thread.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Episode, ApiError> {
        let permit = self.place().await?;
        self.start_with(Some(permit), id).await
    }

    /// A place among the workers of the package task `id` belongs to (waiting up to
    /// `worker_wait`, then 503 `workers.busy`); `None` for a built-in family's task.
    async fn worker_permit(&self, id: &str) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let family = id.split('@').next().unwrap_or_default();
        let Some(sem) = self.workers.get(family) else { return Ok(None) };
        if let Ok(p) = Arc::clone(sem).try_acquire_owned() {
            return Ok(Some(p));
        }
        let wait = Arc::clone(sem).acquire_owned();
        match tokio::time::timeout(self.cfg.worker_wait, wait).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => {
                self.counters.refused_workers.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::workers_busy(family, self.cfg.workers, self.cfg.worker_wait))
            }
        }
    }

    /// Start an episode of task `id` under `permit` (None: the caller holds one for it, as a
    /// WebSocket connection does for all its episodes). A package task first waits for one of
    /// its package's workers (building a generated task asks that worker too).
    pub async fn start_with(
        self: &Arc<Self>,
        permit: Option<OwnedSemaphorePermit>,
        id: &str,
    ) -> Result<Episode, ApiError> {
        // A malformed id is refused at once, not after waiting for a worker.
        if let Err(e) = id.parse::<agentgen_environments::TaskRef>() {
            return Err(ApiError::bad_task(e.to_string()));
        }
        let worker = self.worker_permit(id).await?;
        let (me, id) = (Arc::clone(self), id.to_owned());
        let built = tokio::task::spawn_blocking(move || {
            let (instance, task) = me.catalog.task(&id).map_err(|e| match e {
                crate::Error::Build { .. } => {
                    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "env.failed", e.to_string())
                }
                _ => ApiError::bad_task(e.to_string()),
            })?;
            if let Some(name) = tool_names(&task).into_iter().find(|t| crate::is_route(t)) {
                return Err(ApiError::bad_task(crate::shadowed_message(&task.family, &name)));
            }
            let session = start_session(&instance, &task).map_err(|f| ApiError::env_failed(&f))?;
            Ok::<_, ApiError>((task, session))
        })
        .await
        .map_err(|e| ApiError::internal(format!("starting the session: {e}")))?;
        let (task, session) = built?;
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let n = self.counters.started.load(Ordering::Relaxed);
        Ok(Episode {
            episode_id: format!("{}#{n}", task.id),
            held: Some(Held { session, _worker: worker }),
            tools: tool_names(&task),
            history: task.prompt_messages(),
            task,
            turn: 0,
            calls_in_turn: 0,
            steps: 0,
            turn_verdicts: Vec::new(),
            played: Vec::new(),
            failure: None,
            outcome: None,
            permit,
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

    /// Count a verified user turn, and the episode when it has ended.
    pub fn count_verified(&self, episode_done: bool) {
        self.counters.turns_verified.fetch_add(1, Ordering::Relaxed);
        if episode_done {
            self.counters.verified.fetch_add(1, Ordering::Relaxed);
        }
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

/// Drop `x` (an episode: a package's worker goes back to its pool or is killed, its places
/// are given back) on a blocking thread, and wait for it: the answer of a close or a new seed
/// then finds the freed place free.
pub async fn release_now<T: Send + 'static>(x: T) {
    let _ = tokio::task::spawn_blocking(move || drop(x)).await;
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

/// The final answer and the transcript of one user turn's Responses-API `response.output`
/// after `history` (the conversation up to that turn's user message): each item in order
/// (function calls as assistant tool calls, their outputs as tool messages, output messages as
/// assistant text). The answer is the text of the last assistant message ("" when there is
/// none). Nothing here is executed again: the verifier judges the state the server's own calls
/// produced.
pub fn transcript_after(history: &[Message], output: &[Value]) -> (String, Vec<Message>) {
    let mut messages = history.to_vec();
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
        let (answer, messages) = transcript_after(&task.prompt_messages(), &output);
        assert_eq!(answer, "done");
        // system, user, one assistant step with both calls, two tool results, the answer.
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[2].tool_calls.len(), 2);
        assert_eq!(messages[4].content.as_deref(), Some("{\"x\":1}"));
        let (answer, messages) = transcript_after(&task.prompt_messages(), &[]);
        assert_eq!((answer.as_str(), messages.len()), ("", 2));
    }

    #[test]
    fn an_episode_passes_only_when_every_turn_passed_and_takes_the_lowest_reward() {
        let v = |passed: bool, reward: f32| Verdict { reward, passed, checks: Vec::new() };
        let e = episode_verdict(&[v(true, 1.0), v(true, 0.5)], 2);
        assert!(e.passed && (e.reward - 0.5).abs() < 1e-6);
        // A turn failed, or not every turn was played: 0.
        let e = episode_verdict(&[v(true, 1.0), v(false, 0.0)], 2);
        assert!(!e.passed && e.reward == 0.0);
        let e = episode_verdict(&[v(true, 1.0)], 2);
        assert!(!e.passed && e.reward == 0.0);
        assert!(episode_verdict(&[v(true, 1.0)], 1).passed);
    }
}
