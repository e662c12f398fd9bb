//! The [`Backend`] trait the routes generate through, its implementation for the candle
//! engine ([`EngineBackend`]) and a scripted test double ([`ScriptedBackend`]).
//!
//! A backend takes prompt token ids and streams [`TokenEvent`]s: one `Token` per sampled token,
//! then `Done` (with the whole [`Completion`]) or `Error`. Dropping the receiver cancels the
//! generation and frees its sequence: that is how a client that disconnects frees the engine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgen_codec::Tokenizer;
use agentgen_codec::tokens::{EOS_ID, MODEL_VOCAB_SIZE};
use agentgen_inference::{Completion, EngineHandle, FinishReason, GenerateRequest, TokenEvent};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// Receiver of one generation's events. Unbounded so that a slow client never blocks the
/// engine's batch (the buffer is bounded by `max_tokens`).
pub type Events = mpsc::UnboundedReceiver<TokenEvent>;

/// Something that turns prompt ids into streamed tokens. Implemented for the candle engine and
/// for the scripted test double; the routes only see this trait.
pub trait Backend: Send + Sync + 'static {
    /// Number of token ids the model can read and emit.
    fn vocab_size(&self) -> usize;
    /// Longest sequence (prompt + completion) the model accepts.
    fn max_context(&self) -> usize;
    /// Start a generation. Must be called inside a tokio runtime. `req.stop` is empty: the
    /// server matches stop strings itself. Dropping the receiver cancels the generation.
    fn generate(&self, req: GenerateRequest) -> Result<Events>;
}

/// The candle engine behind the [`Backend`] trait (batched across all clients by the engine).
#[derive(Debug, Clone)]
pub struct EngineBackend {
    handle: EngineHandle,
}

impl EngineBackend {
    /// Wrap a running engine.
    pub fn new(handle: EngineHandle) -> Self {
        Self { handle }
    }
}

impl Backend for EngineBackend {
    fn vocab_size(&self) -> usize {
        self.handle.vocab_size()
    }

    fn max_context(&self) -> usize {
        self.handle.config().max_position_embeddings
    }

    fn generate(&self, req: GenerateRequest) -> Result<Events> {
        let mut rx = self
            .handle
            .generate_stream(req)
            .map_err(|e| Error::Backend { message: e.to_string() })?;
        let (tx, out) = mpsc::unbounded_channel();
        // Forward promptly (the engine thread must never wait on a slow client) and drop the
        // engine's receiver as soon as ours is gone, which cancels the sequence.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        let Some(ev) = ev else {
                            let _ = tx.send(TokenEvent::Error("the engine has shut down".into()));
                            break;
                        };
                        let last = !matches!(ev, TokenEvent::Token { .. });
                        if tx.send(ev).is_err() || last {
                            break;
                        }
                    }
                    () = tx.closed() => break,
                }
            }
        });
        Ok(out)
    }
}

type Script = dyn Fn(&[u32]) -> String + Send + Sync;

/// A test double that "generates" a fixed text token by token through the V3.2 tokenizer, so
/// tests can make the server see real DSML tool calls, reasoning and EOS.
///
/// The text comes from a list used round robin ([`ScriptedBackend::new`]) or from a function
/// of the prompt ids ([`ScriptedBackend::from_fn`]). Each token's logprob is `-0.25 * (i % 4)`
/// (deterministic, distinguishable). Generation stops after EOS or at the end of the text
/// (finish `Stop`), at `max_tokens` (finish `Length`), or when the receiver is dropped; [`ScriptedBackend::active`] counts generations
/// still running, so tests can check that a disconnect frees its sequence.
pub struct ScriptedBackend {
    script: Box<Script>,
    tokenizer: &'static Tokenizer,
    delay: Option<Duration>,
    active: Arc<AtomicUsize>,
    vocab_size: usize,
    max_context: usize,
}

impl std::fmt::Debug for ScriptedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedBackend")
            .field("delay", &self.delay)
            .field("active", &self.active())
            .finish()
    }
}

impl ScriptedBackend {
    /// Replies with `texts[k % len]` to the k-th request (an empty list replies EOS).
    pub fn new(texts: Vec<String>) -> Result<Self> {
        let queue = Mutex::new(VecDeque::from(texts));
        Self::from_fn(move |_| {
            let Ok(mut q) = queue.lock() else { return String::new() };
            let Some(t) = q.pop_front() else { return String::new() };
            q.push_back(t.clone());
            t
        })
    }

    /// Replies with `f(prompt_ids)`.
    pub fn from_fn(f: impl Fn(&[u32]) -> String + Send + Sync + 'static) -> Result<Self> {
        Ok(Self {
            script: Box::new(f),
            tokenizer: Tokenizer::shared()?,
            delay: None,
            active: Arc::new(AtomicUsize::new(0)),
            vocab_size: MODEL_VOCAB_SIZE,
            max_context: 163_840,
        })
    }

    /// Sleep this long before each token (to test streaming and disconnects).
    pub fn with_token_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Pretend the model accepts at most `n` tokens of context.
    pub fn with_max_context(mut self, n: usize) -> Self {
        self.max_context = n;
        self
    }

    /// Generations that have started and not yet finished or been cancelled.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend for ScriptedBackend {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn max_context(&self) -> usize {
        self.max_context
    }

    fn generate(&self, req: GenerateRequest) -> Result<Events> {
        let (tx, rx) = mpsc::unbounded_channel();
        if req.prompt_ids.is_empty() {
            let _ = tx.send(TokenEvent::Error("invalid request: empty prompt".into()));
            return Ok(rx);
        }
        let text = (self.script)(&req.prompt_ids);
        let ids = self.tokenizer.encode(&text)?;
        self.active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(Arc::clone(&self.active));
        let delay = self.delay;
        tokio::spawn(async move {
            let _guard = guard;
            let mut out = Completion {
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                finish_reason: FinishReason::Stop,
                prompt_tokens: req.prompt_ids.len(),
                cached_tokens: 0,
            };
            let mut finish = FinishReason::Stop;
            for (i, &id) in ids.iter().enumerate() {
                if out.token_ids.len() >= req.params.max_tokens {
                    finish = FinishReason::Length;
                    break;
                }
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                let logprob = -0.25 * (i % 4) as f32;
                out.token_ids.push(id);
                out.logprobs.push(logprob);
                if tx.send(TokenEvent::Token { id, logprob }).is_err() {
                    return;
                }
                if id == EOS_ID || req.stop_token_ids.contains(&id) {
                    break;
                }
            }
            out.finish_reason = finish;
            let _ = tx.send(TokenEvent::Done(out));
        });
        Ok(rx)
    }
}
