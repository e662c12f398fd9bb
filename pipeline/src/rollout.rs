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
use agentgen_environments::{Instance, State, TaskSpec, Verdict};
use serde::{Deserialize, Serialize};

use crate::policy::{
    CompletionFinish, PlannedTurn, Policy, PromptRequest, ReferencePlan, SamplingParams,
};
use crate::tokens::{EOS, EOS_ID};
use crate::validate::{Rejection, SchemaCache, check_completion, codes, policy_code};
use crate::{Error, Result};

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

impl Default for RolloutLimits {
    fn default() -> Self {
        RolloutLimits {
            max_turns: 32,
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
    tok.encode(text).map_err(|e| Error::Codec { context: "tokenizing", message: e.to_string() })
}

/// Shared, read-only helpers of all rollouts of a run.
#[derive(Debug)]
pub struct RolloutContext {
    pub tokenizer: &'static Tokenizer,
    pub mode: ThinkingMode,
    /// `--thinking-mode auto` (chat policy): each row is thinking when the endpoint returned
    /// reasoning, chat otherwise (`mode` is then `Thinking`).
    pub auto_mode: bool,
    pub limits: RolloutLimits,
    pub tokens: TokenCache,
    pub schemas: SchemaCache,
}

impl RolloutContext {
    pub fn try_new(mode: ThinkingMode, limits: RolloutLimits) -> Result<Self> {
        let tokenizer = Tokenizer::shared().map_err(|e| Error::Codec {
            context: "loading the tokenizer",
            message: e.to_string(),
        })?;
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

/// What one rollout produced, before dedup and group statistics.
#[derive(Debug, Clone)]
pub struct RolloutOutput {
    pub messages: Vec<Message>,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub loss_mask: Vec<u8>,
    /// Per token; `None` on prompt and forced tokens. All `None` when the policy gave none.
    pub logprobs: Vec<Option<f32>>,
    pub has_logprobs: bool,
    pub finish_reason: String,
    pub turns: u32,
    pub tool_calls: u32,
    pub verdict: Verdict,
    pub rejection: Option<Rejection>,
    pub warnings: Vec<String>,
    pub policy_ms: f64,
    pub env_ms: f64,
    pub total_ms: f64,
    pub completion_tokens: usize,
    /// The mode `text` is encoded in (differs from the run's only with `auto`).
    pub thinking_mode: ThinkingMode,
    /// `reference`, `sampled` (every completion came with its sampled ids) or `retokenized`.
    pub token_source: &'static str,
}

/// The reference solution of a task as the reference policy's plan.
pub fn plan_of(task: &TaskSpec) -> ReferencePlan {
    ReferencePlan {
        turns: task
            .reference
            .turns
            .iter()
            .map(|t| PlannedTurn { reasoning: t.reasoning.clone(), calls: t.calls.clone() })
            .collect(),
        final_reasoning: String::new(),
        final_answer: task.reference.final_answer.clone(),
    }
}

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

/// Run one rollout of `task` with `policy`. Never fails on a model mistake; `Err` only for
/// infrastructure (the codec refusing a conversation the pipeline built, the tokenizer).
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
        move |e: agentgen_codec::Error| Error::Codec { context, message: e.to_string() }
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
    let mut b =
        Builder { text: String::new(), ids: Vec::new(), mask: Vec::new(), logprobs: Vec::new() };
    let sys_ids = ctx.tokens.tokenize(ctx.tokenizer, &sys_text)?;
    b.push_prompt(&sys_text, &sys_ids);
    let user_ids = tokenize(ctx.tokenizer, &user_text)?;
    b.push_prompt(&user_text, &user_ids);

    let mut messages = vec![system, user];
    let mut state: State = task.initial_state.clone();
    let reference = Some(Arc::new(plan_of(&task)));
    let mut out_warnings = Vec::new();
    let mut has_logprobs = true;
    let mut rejection: Option<Rejection> = None;
    let mut turns = 0u32;
    let mut n_calls = 0u32;
    let mut policy_time = Duration::ZERO;
    let mut env_time = Duration::ZERO;
    let mut completion_tokens = 0usize;
    let mut exec_error: Option<Rejection> = None;
    // A chat policy's turns arrive as messages; the row is re-encoded at the end.
    let mut retokenized = false;
    let mut all_sampled = true;
    // Calls executed in the current user turn (a task has one user turn today).
    let mut turn_calls = 0u32;

    let finish_reason: String = 'turns: loop {
        if turns >= ctx.limits.max_turns {
            let fr = "max_turns";
            rejection = Some(Rejection::new(
                codes::LENGTH_MAX_TURNS,
                format!("no final answer after {turns} turns"),
            ));
            break fr.to_owned();
        }
        if b.ids.len() >= ctx.limits.max_total_tokens {
            let fr = "max_tokens";
            rejection = Some(Rejection::new(
                codes::LENGTH_MAX_TOKENS,
                format!(
                    "{} tokens reach the limit of {}",
                    b.ids.len(),
                    ctx.limits.max_total_tokens
                ),
            ));
            break fr.to_owned();
        }
        if start.elapsed() >= ctx.limits.max_wall {
            let fr = "timeout";
            rejection = Some(Rejection::new(
                codes::LENGTH_TIMEOUT,
                format!("rollout exceeded {:?}", ctx.limits.max_wall),
            ));
            break fr.to_owned();
        }
        let req = PromptRequest {
            text: b.text.clone(),
            prompt_ids: b.ids.clone(),
            sample_id: sample_id.to_owned(),
            turn: turns,
            thinking,
            reference: reference.clone(),
            messages: if policy.wants_messages() { messages.clone() } else { Vec::new() },
        };
        let mut p = params.clone();
        p.max_tokens = p.max_tokens.min(ctx.limits.max_total_tokens - b.ids.len()).max(1);
        let t0 = Instant::now();
        let remaining = ctx.limits.max_wall.saturating_sub(start.elapsed());
        let mut completion = match tokio::time::timeout(remaining, policy.complete(&req, &p)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(Error::Policy { kind, message })) => {
                let fr = "policy_error";
                rejection = Some(Rejection::new(policy_code(kind), message));
                break fr.to_owned();
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let fr = "timeout";
                rejection = Some(Rejection::new(
                    codes::LENGTH_TIMEOUT,
                    format!("rollout exceeded {:?}", ctx.limits.max_wall),
                ));
                break fr.to_owned();
            }
        };
        policy_time += t0.elapsed();
        turns += 1;
        // A chat policy answers with a message: its V3.2 rendering is checked as sampled text.
        let mut turn_mode = mode;
        let mut server_ids = Vec::new();
        if let Some(turn) = completion.chat.take() {
            retokenized = true;
            has_logprobs = false;
            match crate::chat::prepare_turn(turn, mode, ctx.auto_mode) {
                Ok(t) => (completion.text, turn_mode, server_ids) = (t.text, t.mode, t.ids),
                Err((fr, r)) => {
                    rejection = Some(r);
                    break fr.to_owned();
                }
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
            let fr = "length";
            rejection = Some(Rejection::new(
                codes::LENGTH_TRUNCATED,
                format!("completion of turn {turns} hit max_tokens ({})", p.max_tokens),
            ));
            break fr.to_owned();
        }
        let mut full = completion.text.clone();
        if !full.ends_with(EOS) {
            // The completion stopped at the close of the tool-call block (or the server hid
            // EOS): EOS is appended as a forced token (no logprob).
            full.push_str(EOS);
            b.push_prompt(EOS, &[EOS_ID]);
            if let Some(m) = b.mask.last_mut() {
                *m = 1;
            }
        }
        let parsed = match check_completion(&full, turn_mode) {
            Ok(p) => p,
            Err(r) => {
                let fr = "format_error";
                rejection = Some(r);
                break fr.to_owned();
            }
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
            let fr = "stop";
            break fr.to_owned();
        }
        // Execute the calls (parallel calls of one turn, in order), off the async threads and
        // under the rollout's wall limit.
        let t1 = Instant::now();
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            let mut result = if turn_calls >= ctx.limits.max_calls_per_turn {
                limits::limit_error(limit_codes::CALLS_PER_TURN, limits::CALLS_PER_TURN_MESSAGE)
            } else {
                turn_calls += 1;
                let inst = Arc::clone(&instance);
                let mut st = std::mem::replace(&mut state, State(serde_json::Value::Null));
                let job = tokio::task::spawn_blocking(move || {
                    let r = inst.call(&mut st, &call);
                    (st, r)
                });
                let remaining = ctx.limits.max_wall.saturating_sub(start.elapsed());
                match tokio::time::timeout(remaining, job).await {
                    Ok(joined) => {
                        let (st, r) = joined.map_err(|e| Error::Join { message: e.to_string() })?;
                        state = st;
                        r
                    }
                    Err(_) => {
                        env_time += t1.elapsed();
                        rejection = Some(Rejection::new(
                            codes::LENGTH_TIMEOUT,
                            format!(
                                "rollout exceeded {:?} during tool execution (turn {turns})",
                                ctx.limits.max_wall
                            ),
                        ));
                        break 'turns "timeout".to_owned();
                    }
                }
            };
            if limits::truncate_observation(&mut result.content, ctx.limits.observation_max_bytes)
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

    let t2 = Instant::now();
    let verdict = {
        let inst = Arc::clone(&instance);
        let (task2, state2, msgs) = (Arc::clone(&task), state.clone(), messages.clone());
        tokio::task::spawn_blocking(move || inst.verify(&task2, &state2, &msgs))
            .await
            .map_err(|e| Error::Join { message: e.to_string() })?
    };
    env_time += t2.elapsed();

    let mut row_mode = mode;
    if retokenized {
        row_mode = crate::chat::row_mode(&messages, mode, ctx.auto_mode);
        match crate::chat::reencode(&messages, row_mode) {
            Ok((text, ids, mask)) => {
                b.logprobs = vec![None; ids.len()];
                (b.text, b.ids, b.mask) = (text, ids, mask);
            }
            Err(r) => {
                rejection.get_or_insert(r);
            }
        }
    }
    if rejection.is_none() {
        rejection = final_checks(ctx, row_mode, &messages, &b.text, &task, exec_error, &verdict);
    }
    let token_source = if policy.name() == "reference" {
        "reference"
    } else if retokenized || !all_sampled {
        "retokenized"
    } else {
        "sampled"
    };
    policy.release(sample_id);
    // No sampled token, no logprobs (a policy error before the first completion).
    has_logprobs &= turns > 0;
    let mut logprobs = b.logprobs;
    if !has_logprobs {
        logprobs.iter_mut().for_each(|l| *l = None);
    }
    Ok(RolloutOutput {
        messages,
        text: b.text,
        token_ids: b.ids,
        loss_mask: b.mask,
        logprobs,
        has_logprobs,
        finish_reason,
        turns,
        tool_calls: n_calls,
        verdict,
        rejection,
        warnings: out_warnings,
        policy_ms: policy_time.as_secs_f64() * 1e3,
        env_ms: env_time.as_secs_f64() * 1e3,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        completion_tokens,
        thinking_mode: row_mode,
        token_source,
    })
}

fn call_id(messages: &[Message], k: usize) -> Option<String> {
    messages.last().and_then(|m| m.tool_calls.get(k)).and_then(|c| c.id.clone())
}

/// The stages after a normally finished rollout: whole-text round trip, schema, execution,
/// outcome.
fn final_checks(
    ctx: &RolloutContext,
    mode: ThinkingMode,
    messages: &[Message],
    text: &str,
    task: &TaskSpec,
    exec_error: Option<Rejection>,
    verdict: &Verdict,
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
    if let Some(r) = exec_error {
        return Some(r);
    }
    if !verdict.passed {
        let failed: Vec<&str> =
            verdict.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        return Some(Rejection::new(
            codes::OUTCOME_FAILED,
            format!("verifier failed (reward {}): {}", verdict.reward, failed.join(", ")),
        ));
    }
    None
}
