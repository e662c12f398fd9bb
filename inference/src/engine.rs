//! The engine actor: an OS thread owns the model and runs a continuous-batching loop; the
//! cloneable [`EngineHandle`] sends requests to it from sync or async code.
//!
//! Each loop step gathers every running sequence into one batched forward: sequences still
//! prefilling contribute a chunk of their prompt (bounded per step), the others their last
//! sampled token. Sequences join and leave between steps. A dropped receiver cancels its
//! sequence and frees its cache. With a `cache_key`, a finished sequence's cache is kept so
//! the next request with the same key prefills only the suffix beyond the common prefix.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use agentgen_codec::StopStrings;
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::device::DeviceKind;
use crate::models::deepseek_v32::{Config, ForwardOptions, LogitsMode, Model, Segment, SeqCache};
use crate::sampler::{Sampler, SamplingParams};
use crate::{Error, Result};

/// Turns token ids into text, for stop strings (the CLI plugs in the codec's tokenizer).
pub trait Detokenize: Send + Sync {
    /// Decodes ids to text (lossy for partial UTF-8).
    fn decode(&self, ids: &[u32]) -> String;
}

/// Engine settings.
#[derive(Clone)]
pub struct EngineOptions {
    /// Where to run.
    pub device: DeviceKind,
    /// Most sequences in one step.
    pub max_batch: usize,
    /// Most prompt tokens prefilled per step (chunked prefill).
    pub prefill_chunk: usize,
    /// Most caches kept for `cache_key` reuse.
    pub max_cached: usize,
    /// Decoder for stop strings; without it, stop strings are rejected.
    pub detokenizer: Option<Arc<dyn Detokenize>>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("device", &self.device)
            .field("max_batch", &self.max_batch)
            .field("prefill_chunk", &self.prefill_chunk)
            .field("max_cached", &self.max_cached)
            .field("detokenizer", &self.detokenizer.is_some())
            .finish()
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: DeviceKind::Cpu,
            max_batch: 32,
            prefill_chunk: 512,
            max_cached: 64,
            detokenizer: None,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    /// Prompt token ids (non-empty).
    pub prompt_ids: Vec<u32>,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Stop strings (need a detokenizer); the tokens completing one are kept.
    pub stop: Vec<String>,
    /// Extra stop token ids (EOS always stops).
    pub stop_token_ids: Vec<u32>,
    /// Keep this sequence's cache under this key for a later request that extends it.
    pub cache_key: Option<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS or a stop token id (included in `token_ids`).
    Stop,
    /// `max_tokens` reached.
    Length,
    /// A stop string appeared (the tokens completing it are included).
    StopString,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Sampled tokens.
    pub token_ids: Vec<u32>,
    /// `log_softmax` of the raw logits at each sampled token.
    pub logprobs: Vec<f32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Prompt tokens served from a kept cache (not recomputed).
    pub cached_tokens: usize,
}

/// Streaming events.
#[derive(Debug, Clone)]
pub enum TokenEvent {
    /// One sampled token.
    Token {
        /// Token id.
        id: u32,
        /// Its log-probability.
        logprob: f32,
    },
    /// The generation finished (last event).
    Done(Completion),
    /// The generation failed (last event).
    Error(String),
}

enum Reply {
    Once(oneshot::Sender<Result<Completion>>),
    Stream(tmpsc::Sender<TokenEvent>),
}

impl Reply {
    fn closed(&self) -> bool {
        match self {
            Self::Once(tx) => tx.is_closed(),
            Self::Stream(tx) => tx.is_closed(),
        }
    }
    fn finish(self, result: Result<Completion>) {
        match self {
            Self::Once(tx) => {
                let _ = tx.send(result);
            }
            Self::Stream(tx) => {
                let ev = match result {
                    Ok(c) => TokenEvent::Done(c),
                    Err(e) => TokenEvent::Error(e.to_string()),
                };
                let _ = tx.blocking_send(ev);
            }
        }
    }
}

struct Job {
    req: GenerateRequest,
    reply: Reply,
}

/// Namespace for starting engines.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Loads the checkpoint in `dir` and spawns the engine thread.
    pub fn load(dir: &Path, opts: EngineOptions) -> Result<EngineHandle> {
        let device = opts.device.open()?;
        let model = Model::load(dir, &device)?;
        Self::start(model, opts)
    }

    /// Spawns the engine thread around an already built model.
    pub fn start(model: Model, opts: EngineOptions) -> Result<EngineHandle> {
        let (tx, rx) = mpsc::channel();
        let cfg = Arc::new(model.config().clone());
        std::thread::Builder::new()
            .name("agentgen-engine".into())
            .spawn(move || Worker::new(model, opts).run(rx))
            .map_err(|source| Error::Io { path: "<engine thread>".into(), source })?;
        Ok(EngineHandle { tx, cfg })
    }
}

/// Cloneable, `Send + Sync` handle to the engine thread.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    cfg: Arc<Config>,
}

impl EngineHandle {
    /// Generates a completion (async; dropping the future cancels the sequence).
    pub async fn generate(&self, req: GenerateRequest) -> Result<Completion> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Job { req, reply: Reply::Once(tx) }).map_err(|_| Error::EngineStopped)?;
        rx.await.map_err(|_| Error::EngineStopped)?
    }

    /// Generates from synchronous code (not from inside an async runtime).
    pub fn generate_blocking(&self, req: GenerateRequest) -> Result<Completion> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Job { req, reply: Reply::Once(tx) }).map_err(|_| Error::EngineStopped)?;
        rx.blocking_recv().map_err(|_| Error::EngineStopped)?
    }

    /// Streams tokens; the last event is `Done` or `Error`. Dropping the receiver cancels.
    pub fn generate_stream(&self, req: GenerateRequest) -> Result<tmpsc::Receiver<TokenEvent>> {
        let (tx, rx) = tmpsc::channel(1024);
        self.tx.send(Job { req, reply: Reply::Stream(tx) }).map_err(|_| Error::EngineStopped)?;
        Ok(rx)
    }

    /// Vocabulary size of the model.
    pub fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

struct Seq {
    prompt: Vec<u32>,
    fed: usize,
    cached_tokens: usize,
    cache: SeqCache,
    sampler: Sampler,
    params: SamplingParams,
    stop: StopStrings,
    stop_ids: Vec<u32>,
    cache_key: Option<String>,
    generated: Vec<u32>,
    logprobs: Vec<f32>,
    reply: Reply,
}

struct Worker {
    model: Model,
    opts: EngineOptions,
    eos: Vec<u32>,
    kept: VecDeque<(String, Vec<u32>, SeqCache)>,
    active: Vec<Seq>,
    waiting: VecDeque<Job>,
}

impl Worker {
    fn new(model: Model, opts: EngineOptions) -> Self {
        let eos = model.config().eos_ids();
        Self {
            model,
            opts,
            eos,
            kept: VecDeque::new(),
            active: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.active.is_empty() && self.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            while self.active.len() < self.opts.max_batch.max(1) {
                let Some(job) = self.waiting.pop_front() else { break };
                self.admit(job);
            }
            self.active.retain(|s| !s.reply.closed());
            if !self.active.is_empty() {
                self.step();
            }
        }
    }

    fn validate(&self, req: &GenerateRequest) -> Result<()> {
        if req.prompt_ids.is_empty() {
            return Err(Error::InvalidRequest("empty prompt".into()));
        }
        let ctx = self.model.config().max_position_embeddings;
        if req.prompt_ids.len() >= ctx {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {} tokens; the model's context is {ctx}",
                req.prompt_ids.len()
            )));
        }
        let v = self.model.config().vocab_size;
        if let Some(bad) = req.prompt_ids.iter().find(|&&t| t as usize >= v) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} outside the vocabulary ({v})"
            )));
        }
        if !req.stop.is_empty() && self.opts.detokenizer.is_none() {
            return Err(Error::InvalidRequest("stop strings need a tokenizer".into()));
        }
        req.params.validate()
    }

    fn admit(&mut self, job: Job) {
        if let Err(e) = self.validate(&job.req) {
            job.reply.finish(Err(e));
            return;
        }
        let req = job.req;
        if req.params.max_tokens == 0 {
            job.reply.finish(Ok(Completion {
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                finish_reason: FinishReason::Length,
                prompt_tokens: req.prompt_ids.len(),
                cached_tokens: 0,
            }));
            return;
        }
        let mut cache = None;
        if let Some(key) = &req.cache_key
            && let Some(pos) = self.kept.iter().position(|(k, _, _)| k == key)
            && let Some((_, tokens, mut c)) = self.kept.remove(pos)
        {
            let common = tokens.iter().zip(&req.prompt_ids).take_while(|(a, b)| a == b).count();
            // at least the last prompt token must be fed to get its logits
            c.truncate(common.min(req.prompt_ids.len() - 1));
            cache = Some(c);
        }
        let cache = cache.unwrap_or_else(|| self.model.new_cache());
        let fed = cache.len();
        self.active.push(Seq {
            fed,
            cached_tokens: fed,
            cache,
            sampler: Sampler::new(req.params.clone()),
            params: req.params,
            stop: StopStrings::new(req.stop),
            stop_ids: req.stop_token_ids,
            cache_key: req.cache_key,
            prompt: req.prompt_ids,
            generated: Vec::new(),
            logprobs: Vec::new(),
            reply: job.reply,
        });
    }

    fn step(&mut self) {
        let mut budget = self.opts.prefill_chunk.max(1);
        // (index into active, tokens to feed)
        let mut plan: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, s) in self.active.iter().enumerate() {
            if s.fed < s.prompt.len() {
                if budget == 0 {
                    continue;
                }
                let n = (s.prompt.len() - s.fed).min(budget);
                budget -= n;
                plan.push((i, s.prompt[s.fed..s.fed + n].to_vec()));
            } else if let Some(&last) = s.generated.last() {
                plan.push((i, vec![last]));
            }
        }
        let in_plan: Vec<usize> = plan.iter().map(|(i, _)| *i).collect();
        let result = {
            let mut segs: Vec<Segment<'_>> = Vec::with_capacity(plan.len());
            let mut plan_iter = plan.iter().peekable();
            for (i, s) in self.active.iter_mut().enumerate() {
                if let Some((_, toks)) = plan_iter.next_if(|(j, _)| *j == i) {
                    segs.push(Segment { cache: &mut s.cache, tokens: toks });
                }
            }
            let opts = ForwardOptions { dense: false, logits: LogitsMode::Last };
            self.model.forward(&mut segs, opts, None).and_then(|l| Ok(l.to_vec2::<f32>()?))
        };
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                let msg = e.to_string();
                let mut idx = in_plan;
                idx.sort_unstable_by(|a, b| b.cmp(a));
                for i in idx {
                    let s = self.active.remove(i);
                    s.reply.finish(Err(Error::InvalidRequest(format!("forward failed: {msg}"))));
                }
                return;
            }
        };
        let mut finished = Vec::new();
        for ((i, toks), row) in plan.iter().zip(rows) {
            let s = &mut self.active[*i];
            if s.fed < s.prompt.len() {
                s.fed += toks.len();
                if s.fed < s.prompt.len() {
                    continue;
                }
            }
            let (tok, lp) = s.sampler.sample(&row);
            s.generated.push(tok);
            s.logprobs.push(lp);
            if let Reply::Stream(tx) = &s.reply {
                let _ = tx.blocking_send(TokenEvent::Token { id: tok, logprob: lp });
            }
            let reason = if self.eos.contains(&tok) || s.stop_ids.contains(&tok) {
                Some(FinishReason::Stop)
            } else if hit_stop_string(self.opts.detokenizer.as_deref(), &s.stop, &s.generated) {
                Some(FinishReason::StopString)
            } else if s.generated.len() >= s.params.max_tokens
                // Every sequence stops at the model's context, whatever max_tokens says.
                || s.prompt.len().saturating_add(s.generated.len())
                    >= self.model.config().max_position_embeddings
            {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(r) = reason {
                finished.push((*i, r));
            }
        }
        finished.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
        for (i, reason) in finished {
            let s = self.active.remove(i);
            self.finish(s, reason);
        }
    }
}

/// Whether the text of the last tokens holds a stop string (the codec's matcher, as the
/// server's): checked after every token, so a match always ends in the newest one.
fn hit_stop_string(dt: Option<&dyn Detokenize>, stop: &StopStrings, generated: &[u32]) -> bool {
    let Some(dt) = dt else { return false };
    if stop.is_empty() {
        return false;
    }
    // Every token decodes to at least one byte: this window covers the longest stop string.
    let window = (stop.longest() + 4).min(generated.len());
    let text = dt.decode(&generated[generated.len() - window..]);
    stop.find(&text, 0).is_some()
}

impl Worker {
    fn finish(&mut self, s: Seq, reason: FinishReason) {
        let completion = Completion {
            token_ids: s.generated.clone(),
            logprobs: s.logprobs,
            finish_reason: reason,
            prompt_tokens: s.prompt.len(),
            cached_tokens: s.cached_tokens,
        };
        if let Some(key) = s.cache_key
            && self.opts.max_cached > 0
        {
            // The cache holds the prompt and every generated token but the last.
            let mut tokens = s.prompt;
            tokens.extend_from_slice(&s.generated[..s.generated.len().saturating_sub(1)]);
            self.kept.retain(|(k, _, _)| *k != key);
            if self.kept.len() >= self.opts.max_cached {
                self.kept.pop_front();
            }
            self.kept.push_back((key, tokens, s.cache));
        }
        s.reply.finish(Ok(completion));
    }
}

impl Detokenize for agentgen_codec::Tokenizer {
    fn decode(&self, ids: &[u32]) -> String {
        agentgen_codec::Tokenizer::decode(self, ids).unwrap_or_default()
    }
}

impl<T: Detokenize + ?Sized> Detokenize for &T {
    fn decode(&self, ids: &[u32]) -> String {
        (**self).decode(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One character per token: id `c` decodes to the character `c`.
    struct Chars;
    impl Detokenize for Chars {
        fn decode(&self, ids: &[u32]) -> String {
            ids.iter().filter_map(|&c| char::from_u32(c)).collect()
        }
    }

    #[test]
    fn stop_strings_match_in_the_newest_tokens() {
        let ids = |s: &str| s.chars().map(u32::from).collect::<Vec<_>>();
        let stop = StopStrings::new(["42", ""]);
        assert!(hit_stop_string(Some(&Chars), &stop, &ids("the answer is 42")));
        assert!(!hit_stop_string(Some(&Chars), &stop, &ids("the answer is 4")));
        assert!(!hit_stop_string(None, &stop, &ids("42")), "no decoder, no stop strings");
        assert!(!hit_stop_string(Some(&Chars), &StopStrings::new([""]), &ids("")));
    }
}
