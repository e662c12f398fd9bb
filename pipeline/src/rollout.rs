//! One rollout: the thinking-with-tools loop for one sample of one task.
//!
//! encode (codec) -> the policy completes one assistant turn (until the tool-call block closes
//! or EOS) -> strict parse + round trip -> execute the calls in the environment -> append the
//! tool results -> continue. Within the one user turn of a task the prompt only grows (codec
//! spec §3.11), so reasoning is kept across tool results and every segment is encoded
//! incrementally with the history as `context`. Token ids are the prompt segments' tokenizer
//! ids plus the ids the policy sampled; the loss mask is 1 exactly on sampled (and forced EOS)
//! tokens.
//!
//! Tool calls run off the async worker threads (`spawn_blocking`) under the rollout's wall
//! limit: a call still running when the limit passes ends the rollout with `length.timeout`.
//! At most `max_calls_per_turn` calls of a user turn are executed (the rest are answered with
//! a `limit.calls_per_turn` error observation), and every observation is cut to
//! `observation_max_bytes` ([`agentgen_environments::limits::truncate_observation`]); limit
//! codes seen in observations become row warnings.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgen_codec::{EncodeOptions, Message, ThinkingMode, Tokenizer, encode_messages};
use agentgen_environments::limits::{self, codes as limit_codes};
use agentgen_environments::{Instance, TaskSpec, Verdict, start_session};
use serde::{Deserialize, Serialize};

use crate::policy::{
    CompletionFinish, PlannedTurn, Policy, PromptRequest, ReferencePlan, SamplingParams,
};
use crate::validate::{Rejection, SchemaCache, check_completion, codes};
use crate::{Error, Result};
use agentgen_codec::tokens::{EOS, EOS_ID};

/// Limits of one rollout; exceeding one ends it with a finish reason and a `length.*` code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutLimits {
    /// Most assistant turns.
    pub max_turns: u32,
    /// Most tokens in the whole sample (prompt included).
    pub max_total_tokens: usize,
    /// Wall-clock limit of one rollout, enforced during tool execution too.
    pub max_wall: Duration,
    /// Tool calls executed per user turn; later calls get an error observation.
    #[serde(default = "default_calls_per_turn")]
    pub max_calls_per_turn: u32,
    /// Byte cap of one tool observation (cut at a UTF-8 boundary with a note).
    #[serde(default = "default_observation_max_bytes")]
    pub observation_max_bytes: usize,
}

fn default_calls_per_turn() -> u32 {
    limits::MAX_CALLS_PER_TURN
}

fn default_observation_max_bytes() -> usize {
    limits::OBSERVATION_MAX_BYTES
}

/// Default most assistant turns per rollout of every rollout command.
pub const DEFAULT_MAX_TURNS: u32 = 32;

impl Default for RolloutLimits {
    fn default() -> Self {
        RolloutLimits {
            max_turns: DEFAULT_MAX_TURNS,
            max_total_tokens: 65_536,
            max_wall: Duration::from_secs(1800),
            max_calls_per_turn: limits::MAX_CALLS_PER_TURN,
            observation_max_bytes: limits::OBSERVATION_MAX_BYTES,
        }
    }
}

/// Token ids of prompt segments that repeat (system prompt + tools), keyed by their text.
#[derive(Debug, Default)]
pub struct TokenCache {
    map: Mutex<HashMap<u64, Arc<[u32]>>>,
}

impl TokenCache {
    const CAPACITY: usize = 2048;

    /// Tokenize `text`, reusing the ids of an identical earlier text.
    pub fn tokenize(&self, tok: &Tokenizer, text: &str) -> Result<Arc<[u32]>> {
        let mut h = std::hash::DefaultHasher::new();
        text.hash(&mut h);
        let key = h.finish();
        if let Ok(map) = self.map.lock()
            && let Some(ids) = map.get(&key)
        {
            return Ok(Arc::clone(ids));
        }
        let ids: Arc<[u32]> = tokenize(tok, text)?.into();
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(key, Arc::clone(&ids));
        }
        Ok(ids)
    }
}

pub(crate) fn tokenize(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tok.encode(text).map_err(|source| Error::Codec { context: "tokenizing", source })
}

/// Shared, read-only helpers of all rollouts of a run.
#[derive(Debug)]
pub struct RolloutContext {
    /// The V3.2 tokenizer.
    pub tokenizer: &'static Tokenizer,
    /// The run's thinking mode.
    pub mode: ThinkingMode,
    /// `--thinking-mode auto` (chat policy): each row is thinking when the endpoint returned
    /// reasoning, chat otherwise (`mode` is then `Thinking`).
    pub auto_mode: bool,
    /// Per-rollout limits.
    pub limits: RolloutLimits,
    /// Token ids of texts seen before (prompts repeat across rollouts).
    pub tokens: TokenCache,
    /// Compiled tool schemas, per tool list.
    pub schemas: SchemaCache,
}

impl RolloutContext {
    /// A context for `mode` within `limits` (loads the shared tokenizer).
    pub fn try_new(mode: ThinkingMode, limits: RolloutLimits) -> Result<Self> {
        let tokenizer = Tokenizer::shared()
            .map_err(|source| Error::Codec { context: "loading the tokenizer", source })?;
        Ok(RolloutContext {
            tokenizer,
            mode,
            auto_mode: false,
            limits,
            tokens: TokenCache::default(),
            schemas: SchemaCache::default(),
        })
    }
}

/// What one rollout (one episode) produced, before dedup and group statistics: one
/// [`TurnOutput`] per user turn played, and the episode's verdict.
#[derive(Debug, Clone)]
pub struct RolloutOutput {
    /// The whole conversation (system message with its tools first).
    pub messages: Vec<Message>,
    /// One per user turn played (a rejected episode stops at its failing turn); never empty.
    pub rows: Vec<TurnOutput>,
    /// True when every row's `logprobs` are the policy's.
    pub has_logprobs: bool,
    /// Why the episode ended (`stop`, `max_turns`, `policy_error`, ...).
    pub finish_reason: String,
    /// Assistant messages over the episode.
    pub turns: u32,
    /// Tool calls over the episode.
    pub tool_calls: u32,
    /// The episode's verdict (spec envpkg §7.1): passed iff every user turn passed, reward the
    /// minimum of the turns' rewards, checks of every turn.
    pub verdict: Verdict,
    /// Why the episode is rejected, if it is.
    pub rejection: Option<Rejection>,
    /// Warning codes (the episode is kept).
    pub warnings: Vec<String>,
    /// Time spent waiting for the policy, in milliseconds.
    pub policy_ms: f64,
    /// Time spent in the environment, in milliseconds.
    pub env_ms: f64,
    /// Wall time of the episode, in milliseconds.
    pub total_ms: f64,
    /// Tokens the policy sampled over the episode.
    pub completion_tokens: usize,
    /// The mode `text` is encoded in (differs from the run's only with `auto`).
    pub thinking_mode: ThinkingMode,
    /// `reference`, `sampled` (every completion came with its sampled ids) or `retokenized`.
    pub token_source: &'static str,
}

/// One user turn of an episode as a dataset row: the conversation up to the end of that turn,
/// earlier turns rendered as the codec renders them (their reasoning dropped) with loss mask 0,
/// and loss mask 1 only on this turn's sampled tokens.
#[derive(Debug, Clone)]
pub struct TurnOutput {
    /// `messages[..messages_len]` of the episode is this row's conversation.
    pub messages_len: usize,
    /// The row's conversation encoded by the codec.
    pub text: String,
    /// Token ids of `text`.
    pub token_ids: Vec<u32>,
    /// 1 on this turn's sampled tokens, 0 elsewhere.
    pub loss_mask: Vec<u8>,
    /// Per token; `None` on prompt and forced tokens.
    pub logprobs: Vec<Option<f32>>,
    /// Assistant messages in this turn.
    pub turns: u32,
    /// Tool calls in this turn.
    pub tool_calls: u32,
    /// This turn's verdict (a failing placeholder when the turn never reached verification).
    pub verdict: Verdict,
}

/// The reference solution of user turn `t` of a task as the reference policy's plan.
pub fn plan_of(task: &TaskSpec) -> ReferencePlan {
    plan_of_turn(task, 0)
}

/// The reference of user turn `t` (empty when the task has no such turn).
pub fn plan_of_turn(task: &TaskSpec, t: usize) -> ReferencePlan {
    let (turns, final_answer) = match task.user_turn(t) {
        Some((_, r)) => (
            r.turns
                .iter()
                .map(|t| PlannedTurn { reasoning: t.reasoning.clone(), calls: t.calls.clone() })
                .collect(),
            r.final_answer.clone(),
        ),
        None => (Vec::new(), String::new()),
    };
    ReferencePlan { turns, final_reasoning: String::new(), final_answer }
}

#[derive(Default)]
struct Builder {
    text: String,
    ids: Vec<u32>,
    mask: Vec<u8>,
    logprobs: Vec<Option<f32>>,
}

impl Builder {
    fn push_prompt(&mut self, text: &str, ids: &[u32]) {
        self.text.push_str(text);
        self.ids.extend_from_slice(ids);
        self.mask.resize(self.ids.len(), 0);
        self.logprobs.resize(self.ids.len(), None);
    }
    fn push_sampled(&mut self, text: &str, ids: &[u32], logprobs: Option<&[f32]>) {
        self.text.push_str(text);
        self.ids.extend_from_slice(ids);
        self.mask.resize(self.ids.len(), 1);
        match logprobs {
            Some(lp) => self.logprobs.extend(lp.iter().map(|&x| Some(x))),
            None => self.logprobs.resize(self.ids.len(), None),
        }
    }
}

/// How a user turn ended.
enum TurnEnd {
    /// The assistant answered without calls: verify the turn.
    Answered,
    /// The episode stops here (limit, policy error, format error, environment failure).
    Stopped(String, Rejection),
}

/// Run one rollout of `task` with `policy`: one episode, every user turn of the task, each
/// verified when the assistant answers it (spec envpkg §7). Never fails on a model's or a
/// package's mistake (those are rejections); `Err` only for infrastructure (the codec refusing
/// a conversation the pipeline built, the tokenizer).
pub async fn rollout<P: Policy>(
    policy: &P,
    ctx: &RolloutContext,
    instance: Arc<dyn Instance>,
    task: Arc<TaskSpec>,
    // Every family's calls now run off the async threads; kept for the callers.
    _spawns_process: bool,
    sample_id: &str,
    params: &SamplingParams,
) -> Result<RolloutOutput> {
    let start = Instant::now();
    let mode = ctx.mode;
    let thinking = mode == ThinkingMode::Thinking;
    let codec_err = |context: &'static str| {
        move |source: agentgen_codec::Error| Error::Codec { context, source }
    };

    let system = Message::system(task.system_prompt.clone()).with_tools(task.tools.clone());
    let user = Message::user(task.user_prompt.clone());
    let mut opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: true,
        context: Vec::new(),
    };
    let sys_text = encode_messages(std::slice::from_ref(&system), &opts)
        .map_err(codec_err("encoding the system prompt"))?;
    opts.context = vec![system.clone()];
    opts.add_bos = false;
    let user_text = encode_messages(std::slice::from_ref(&user), &opts)
        .map_err(codec_err("encoding the user prompt"))?;
    let mut b = Builder::default();
    let sys_ids = ctx.tokens.tokenize(ctx.tokenizer, &sys_text)?;
    b.push_prompt(&sys_text, &sys_ids);
    let user_ids = tokenize(ctx.tokenizer, &user_text)?;
    b.push_prompt(&user_text, &user_ids);

    let mut messages = vec![system, user];
    let mut out_warnings = Vec::new();
    let mut has_logprobs = true;
    let mut rejection: Option<Rejection> = None;
    let mut turns = 0u32;
    let mut n_calls = 0u32;
    let mut policy_time = Duration::ZERO;
    let mut env_time = Duration::ZERO;
    let mut completion_tokens = 0usize;
    let mut exec_error: Option<Rejection> = None;
    // A chat policy's turns arrive as messages; the rows are re-encoded at the end.
    let mut retokenized = false;
    let mut all_sampled = true;
    let mut rows: Vec<TurnOutput> = Vec::new();
    let mut finish_reason = String::from("stop");

    // The episode: the environment's state lives in the session (here or in a worker).
    let t_env = Instant::now();
    let started = {
        let (inst, task2) = (Arc::clone(&instance), Arc::clone(&task));
        tokio::task::spawn_blocking(move || start_session(&inst, &task2))
            .await
            .map_err(|e| Error::Join { message: e.to_string() })?
    };
    env_time += t_env.elapsed();
    let mut session = match started {
        Ok(s) => Some(s),
        Err(f) => {
            rejection = Some(Rejection::env(&f));
            finish_reason = "env_error".into();
            None
        }
    };

    let user_turns = task.user_turns();
    'episode: for t in 0..user_turns {
        let Some(mut sess) = session.take() else { break };
        if t > 0 {
            // The next user message: the conversation so far is re-encoded as this row's
            // prompt (the codec drops earlier reasoning at a new user turn).
            let Some((text, _)) = task.user_turn(t) else { break };
            messages.push(Message::user(text.to_owned()));
            let opts = EncodeOptions {
                thinking_mode: mode,
                drop_thinking: true,
                add_bos: true,
                context: Vec::new(),
            };
            let prompt =
                encode_messages(&messages, &opts).map_err(codec_err("encoding a user turn"))?;
            let ids = tokenize(ctx.tokenizer, &prompt)?;
            b = Builder::default();
            b.push_prompt(&prompt, &ids);
        }
        let reference = Some(Arc::new(plan_of_turn(&task, t)));
        let mut steps = 0u32;
        let mut turn_calls = 0u32;
        let end: TurnEnd = 'steps: loop {
            if steps >= ctx.limits.max_turns {
                break TurnEnd::Stopped(
                    "max_turns".into(),
                    Rejection::new(
                        codes::LENGTH_MAX_TURNS,
                        format!("no final answer after {steps} turns (user turn {t})"),
                    ),
                );
            }
            if b.ids.len() >= ctx.limits.max_total_tokens {
                break TurnEnd::Stopped(
                    "max_tokens".into(),
                    Rejection::new(
                        codes::LENGTH_MAX_TOKENS,
                        format!(
                            "{} tokens reach the limit of {}",
                            b.ids.len(),
                            ctx.limits.max_total_tokens
                        ),
                    ),
                );
            }
            if start.elapsed() >= ctx.limits.max_wall {
                break TurnEnd::Stopped(
                    "timeout".into(),
                    Rejection::new(
                        codes::LENGTH_TIMEOUT,
                        format!("rollout exceeded {:?}", ctx.limits.max_wall),
                    ),
                );
            }
            let req = PromptRequest {
                text: b.text.clone(),
                prompt_ids: b.ids.clone(),
                sample_id: sample_id.to_owned(),
                turn: steps,
                user_turn: t as u32,
                thinking,
                reference: reference.clone(),
                messages: if policy.wants_messages() { messages.clone() } else { Vec::new() },
            };
            let mut p = params.clone();
            p.max_tokens = p.max_tokens.min(ctx.limits.max_total_tokens - b.ids.len()).max(1);
            let t0 = Instant::now();
            let remaining = ctx.limits.max_wall.saturating_sub(start.elapsed());
            let mut completion =
                match tokio::time::timeout(remaining, policy.complete(&req, &p)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(Error::Policy { kind, message })) => {
                        break TurnEnd::Stopped(
                            "policy_error".into(),
                            Rejection::new(kind.code(), message),
                        );
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        break TurnEnd::Stopped(
                            "timeout".into(),
                            Rejection::new(
                                codes::LENGTH_TIMEOUT,
                                format!("rollout exceeded {:?}", ctx.limits.max_wall),
                            ),
                        );
                    }
                };
            policy_time += t0.elapsed();
            steps += 1;
            turns += 1;
            // A chat policy answers with a message: its V3.2 rendering is checked as sampled
            // text.
            let mut turn_mode = mode;
            let mut server_ids = Vec::new();
            if let Some(turn) = completion.chat.take() {
                retokenized = true;
                has_logprobs = false;
                match crate::chat::prepare_turn(turn, mode, ctx.auto_mode) {
                    Ok(x) => (completion.text, turn_mode, server_ids) = (x.text, x.mode, x.ids),
                    Err((fr, r)) => break TurnEnd::Stopped(fr.into(), r),
                }
            }
            all_sampled &= completion.token_ids.is_some();
            let sampled_ids = match &completion.token_ids {
                Some(ids) => {
                    let canonical = tokenize(ctx.tokenizer, &completion.text)?;
                    if &canonical != ids
                        && !out_warnings.iter().any(|w| w == codes::TOKENS_NONCANONICAL)
                    {
                        out_warnings.push(codes::TOKENS_NONCANONICAL.to_owned());
                    }
                    ids.clone()
                }
                None => tokenize(ctx.tokenizer, &completion.text)?,
            };
            completion_tokens += sampled_ids.len();
            let logprobs = match &completion.logprobs {
                Some(lp) if lp.len() == sampled_ids.len() => Some(lp.as_slice()),
                Some(_) => {
                    if !out_warnings.iter().any(|w| w == codes::LOGPROBS_MISALIGNED) {
                        out_warnings.push(codes::LOGPROBS_MISALIGNED.to_owned());
                    }
                    has_logprobs = false;
                    None
                }
                None => {
                    has_logprobs = false;
                    None
                }
            };
            b.push_sampled(&completion.text, &sampled_ids, logprobs);
            if completion.finish == CompletionFinish::Length {
                break TurnEnd::Stopped(
                    "length".into(),
                    Rejection::new(
                        codes::LENGTH_TRUNCATED,
                        format!("completion of turn {turns} hit max_tokens ({})", p.max_tokens),
                    ),
                );
            }
            let mut full = completion.text.clone();
            if !full.ends_with(EOS) {
                // The completion stopped at the close of the tool-call block (or the server
                // hid EOS): EOS is appended as a forced token (no logprob).
                full.push_str(EOS);
                b.push_prompt(EOS, &[EOS_ID]);
                if let Some(m) = b.mask.last_mut() {
                    *m = 1;
                }
            }
            let parsed = match check_completion(&full, turn_mode) {
                Ok(p) => p,
                Err(r) => break TurnEnd::Stopped("format_error".into(), r),
            };
            let mut assistant = parsed.into_message();
            for (k, c) in assistant.tool_calls.iter_mut().enumerate() {
                // Ids a chat endpoint sent are kept; the others are minted.
                let minted = || Some(format!("call_{n_calls}"));
                c.id = server_ids.get(k).cloned().flatten().or_else(minted);
                n_calls += 1;
            }
            let calls = assistant.tool_calls.clone();
            messages.push(assistant);
            if calls.is_empty() {
                break TurnEnd::Answered;
            }
            // Execute the calls (parallel calls of one step, in order), off the async threads
            // and under the rollout's wall limit.
            let t1 = Instant::now();
            let step = (steps - 1) as usize;
            let mut results = Vec::with_capacity(calls.len());
            for call in calls {
                let mut result = if turn_calls >= ctx.limits.max_calls_per_turn {
                    limits::limit_error(limit_codes::CALLS_PER_TURN, limits::CALLS_PER_TURN_MESSAGE)
                } else {
                    turn_calls += 1;
                    let job = tokio::task::spawn_blocking(move || {
                        let r = sess.call(step, &call);
                        (sess, r)
                    });
                    let remaining = ctx.limits.max_wall.saturating_sub(start.elapsed());
                    match tokio::time::timeout(remaining, job).await {
                        Ok(joined) => {
                            let (s, r) =
                                joined.map_err(|e| Error::Join { message: e.to_string() })?;
                            sess = s;
                            match r {
                                Ok(r) => r,
                                Err(f) => {
                                    env_time += t1.elapsed();
                                    break 'steps TurnEnd::Stopped(
                                        "env_error".into(),
                                        Rejection::env(&f),
                                    );
                                }
                            }
                        }
                        Err(_) => {
                            // The call still runs on its blocking thread and drops the session
                            // (a package worker is then killed) when it returns.
                            env_time += t1.elapsed();
                            rows.push(turn_row(&b, &messages, steps, turn_calls, None));
                            rejection = Some(Rejection::new(
                                codes::LENGTH_TIMEOUT,
                                format!(
                                    "rollout exceeded {:?} during tool execution (turn {turns})",
                                    ctx.limits.max_wall
                                ),
                            ));
                            finish_reason = "timeout".into();
                            break 'episode;
                        }
                    }
                };
                if limits::truncate_observation(
                    &mut result.content,
                    ctx.limits.observation_max_bytes,
                )
                .is_some()
                    && !out_warnings.iter().any(|w| w == limit_codes::OBSERVATION_BYTES)
                {
                    out_warnings.push(limit_codes::OBSERVATION_BYTES.to_owned());
                }
                if let Some(code) = limits::limit_code(&result.content)
                    && !out_warnings.contains(&code)
                {
                    out_warnings.push(code);
                }
                let id = call_id(&messages, results.len());
                if result.is_error && exec_error.is_none() {
                    let snippet: String = result.content.chars().take(160).collect();
                    exec_error = Some(Rejection::new(
                        codes::EXEC_TOOL_ERROR,
                        format!("turn {turns}, call {}: {snippet}", results.len()),
                    ));
                }
                results.push(Message::tool(result.content, id));
            }
            env_time += t1.elapsed();
            // The conversation so far is the context; moved in and back out, not cloned.
            let mut opts = EncodeOptions {
                thinking_mode: mode,
                drop_thinking: true,
                add_bos: false,
                context: std::mem::take(&mut messages),
            };
            let seg = encode_messages(&results, &opts);
            messages = std::mem::take(&mut opts.context);
            let seg = seg.map_err(codec_err("encoding tool results"))?;
            let seg_ids = tokenize(ctx.tokenizer, &seg)?;
            b.push_prompt(&seg, &seg_ids);
            messages.extend(results);
        };
        match end {
            TurnEnd::Stopped(fr, r) => {
                rows.push(turn_row(&b, &messages, steps, turn_calls, None));
                finish_reason = fr;
                rejection = Some(r);
                session = Some(sess);
                break;
            }
            TurnEnd::Answered => {
                let answer = messages.last().and_then(|m| m.content.clone()).unwrap_or_default();
                let t2 = Instant::now();
                let transcript = messages.clone();
                let (s, verdict) = tokio::task::spawn_blocking(move || {
                    let v = sess.verify_turn(t, &answer, &transcript);
                    (sess, v)
                })
                .await
                .map_err(|e| Error::Join { message: e.to_string() })?;
                env_time += t2.elapsed();
                match verdict {
                    Ok(v) => {
                        let passed = v.passed;
                        rows.push(turn_row(&b, &messages, steps, turn_calls, Some(v)));
                        session = Some(s);
                        if !passed {
                            break; // the episode has failed (spec envpkg §7.1 allows stopping)
                        }
                    }
                    Err(f) => {
                        rows.push(turn_row(&b, &messages, steps, turn_calls, None));
                        finish_reason = "env_error".into();
                        rejection = Some(Rejection::env(&f));
                        session = Some(s);
                        break;
                    }
                }
            }
        }
    }
    if rows.is_empty() {
        // The episode never started (the environment failed): the prompt alone is the row.
        rows.push(turn_row(&b, &messages, 0, 0, None));
    }
    // The session ends (a package's worker goes back to its pool) off the async threads.
    if let Some(s) = session.take() {
        let _ = tokio::task::spawn_blocking(move || drop(s)).await;
    }
    Ok(finish_output(FinishParts {
        policy,
        ctx,
        task: &task,
        messages,
        rows,
        rejection,
        exec_error,
        warnings: out_warnings,
        finish_reason,
        has_logprobs,
        retokenized,
        all_sampled,
        turns,
        n_calls,
        policy_time,
        env_time,
        start,
        completion_tokens,
        sample_id,
    }))
}

fn turn_row(
    b: &Builder,
    messages: &[Message],
    steps: u32,
    calls: u32,
    verdict: Option<Verdict>,
) -> TurnOutput {
    TurnOutput {
        messages_len: messages.len(),
        text: b.text.clone(),
        token_ids: b.ids.clone(),
        loss_mask: b.mask.clone(),
        logprobs: b.logprobs.clone(),
        turns: steps,
        tool_calls: calls,
        verdict: verdict.unwrap_or_else(|| Verdict::from_checks(Vec::new())),
    }
}

/// What [`finish_output`] needs from the loop.
struct FinishParts<'a, P> {
    policy: &'a P,
    ctx: &'a RolloutContext,
    task: &'a TaskSpec,
    messages: Vec<Message>,
    rows: Vec<TurnOutput>,
    rejection: Option<Rejection>,
    exec_error: Option<Rejection>,
    warnings: Vec<String>,
    finish_reason: String,
    has_logprobs: bool,
    retokenized: bool,
    all_sampled: bool,
    turns: u32,
    n_calls: u32,
    policy_time: Duration,
    env_time: Duration,
    start: Instant,
    completion_tokens: usize,
    sample_id: &'a str,
}

/// The episode's verdict and the final checks of every row (round trip, schemas, outcome).
fn finish_output<P: Policy>(f: FinishParts<'_, P>) -> RolloutOutput {
    let FinishParts { policy, ctx, task, messages, mut rows, mut rejection, .. } = f;
    let mut warnings = f.warnings;
    let mode = ctx.mode;
    let all_turns = rows.len() == task.user_turns();
    let verdict = if rejection.is_none() {
        let passed = all_turns && rows.iter().all(|r| r.verdict.passed);
        let reward =
            if passed { rows.iter().map(|r| r.verdict.reward).fold(1.0f32, f32::min) } else { 0.0 };
        Verdict {
            reward,
            passed,
            checks: rows.iter().flat_map(|r| r.verdict.checks.iter().cloned()).collect(),
        }
    } else {
        Verdict { reward: 0.0, passed: false, checks: Vec::new() }
    };
    let mut row_mode = mode;
    if f.retokenized {
        row_mode = crate::chat::row_mode(&messages, mode, ctx.auto_mode);
        for row in &mut rows {
            match crate::chat::reencode(&messages[..row.messages_len], row_mode) {
                Ok((text, ids, mask)) => {
                    row.logprobs = vec![None; ids.len()];
                    (row.text, row.token_ids, row.loss_mask) = (text, ids, mask);
                }
                Err(r) => {
                    rejection.get_or_insert(r);
                }
            }
        }
    }
    if rejection.is_none() {
        for row in &rows {
            rejection = final_checks(ctx, row_mode, &messages[..row.messages_len], &row.text, task);
            if rejection.is_some() {
                break;
            }
        }
    }
    if rejection.is_none() && !verdict.passed {
        let failed: Vec<&str> =
            verdict.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        rejection = Some(Rejection::new(
            codes::OUTCOME_FAILED,
            format!("verifier failed (reward {}): {}", verdict.reward, failed.join(", ")),
        ));
    }
    // A tool error the trajectory recovered from is not a rejection by itself: the verdict
    // decides (interfaces.md, wave 2 settlements).
    if f.exec_error.is_some() && rejection.is_none() {
        warnings.push(codes::EXEC_TOOL_ERROR_RECOVERED.to_owned());
    }
    let token_source = if policy.name() == "reference" {
        "reference"
    } else if f.retokenized || !f.all_sampled {
        "retokenized"
    } else {
        "sampled"
    };
    policy.release(f.sample_id);
    // No sampled token, no logprobs (a policy error before the first completion).
    let has_logprobs = f.has_logprobs && f.turns > 0;
    if !has_logprobs {
        for row in &mut rows {
            row.logprobs.iter_mut().for_each(|l| *l = None);
        }
    }
    RolloutOutput {
        messages,
        rows,
        has_logprobs,
        finish_reason: f.finish_reason,
        turns: f.turns,
        tool_calls: f.n_calls,
        verdict,
        rejection,
        warnings,
        policy_ms: f.policy_time.as_secs_f64() * 1e3,
        env_ms: f.env_time.as_secs_f64() * 1e3,
        total_ms: f.start.elapsed().as_secs_f64() * 1e3,
        completion_tokens: f.completion_tokens,
        thinking_mode: row_mode,
        token_source,
    }
}

fn call_id(messages: &[Message], k: usize) -> Option<String> {
    messages.last().and_then(|m| m.tool_calls.get(k)).and_then(|c| c.id.clone())
}

/// The stages after a normally finished rollout, per row: whole-text round trip and tool
/// arguments against their schemas (the outcome is the episode verdict's).
fn final_checks(
    ctx: &RolloutContext,
    mode: ThinkingMode,
    messages: &[Message],
    text: &str,
    task: &TaskSpec,
) -> Option<Rejection> {
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: true,
        add_bos: true,
        context: Vec::new(),
    };
    match encode_messages(messages, &opts) {
        Ok(full) if full == text => {}
        Ok(full) => {
            let at = full.bytes().zip(text.bytes()).take_while(|(a, b)| a == b).count();
            return Some(
                Rejection::new(
                    codes::FORMAT_ROUNDTRIP,
                    format!("re-encoding the conversation differs at byte {at}"),
                )
                .at(at),
            );
        }
        Err(e) => return Some(Rejection::new(codes::FORMAT_ENCODE_ERROR, e.to_string())),
    }
    let tools_json = serde_json::to_string(&task.tools).unwrap_or_default();
    let schemas = ctx.schemas.get(&task.tools, &tools_json);
    for m in messages {
        for c in &m.tool_calls {
            if let Err(r) = schemas.check_call(c) {
                return Some(r);
            }
        }
    }
    None
}
