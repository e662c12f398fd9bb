//! The `http` policy: any OpenAI-compatible server (vLLM, SGLang, the DeepSeek API) through
//! `POST {endpoint}/v1/completions` with the raw encoded prompt, and [`HttpClient`], the one
//! HTTP client it shares with the `chat` policy ([`crate::chat`]).
//!
//! Robustness (all in [`HttpClient`]): a per-request timeout, retries with exponential backoff and full jitter (from a
//! seeded RNG, so a run's retry schedule is reproducible), `Retry-After` honoured, a retry
//! budget shared by all rollouts (retries may not exceed a fraction of successful requests),
//! and a circuit breaker that pauses all requests after consecutive failures. Every failure is
//! counted in [`HttpStats`]; none is fatal to the run: a request that finally fails ends its
//! rollout with a `policy.*` rejection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::policy::{
    Completion, CompletionFinish, Policy, PolicyFailure, PromptRequest, SamplingParams,
};
use crate::{Error, Result};
use agentgen_codec::tokens::{CALLS_CLOSE, CALLS_OPEN, EOS};

/// Settings of the http policy. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL (`http://host:8000`, `.../v1`, or the full `.../v1/completions`).
    pub endpoint: String,
    /// The `model` field of each request.
    pub model: String,
    /// Bearer token (read by the CLI from `--api-key-env`).
    pub api_key: Option<String>,
    /// Most time one request may take.
    pub request_timeout: Duration,
    /// Most time connecting may take.
    pub connect_timeout: Duration,
    /// Retries per request after the first attempt.
    pub max_retries: u32,
    /// First retry delay (doubling, full jitter).
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// Retry budget: starts with this many retries...
    pub retry_budget_initial: f64,
    /// ...and earns this many per successful request (so retries stay a fraction of traffic).
    pub retry_budget_ratio: f64,
    /// Consecutive failures that open the circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit holds every request back.
    pub breaker_cooldown: Duration,
    /// Seed of the jitter RNG.
    pub seed: u64,
    /// Extra request headers (`--header 'K: V'`).
    pub headers: Vec<(String, String)>,
    /// Most request starts per minute (`--max-requests-per-minute`); `None`: unpaced.
    pub max_requests_per_minute: Option<u32>,
}

/// The endpoint the `http` and `chat` policies talk to unless told otherwise: `agentgen serve`'s
/// default address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8000";

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: DEFAULT_ENDPOINT.into(),
            model: agentgen_codec::DEFAULT_MODEL_NAME.into(),
            api_key: None,
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_retries: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(120),
            retry_budget_initial: 50.0,
            retry_budget_ratio: 0.2,
            breaker_threshold: 8,
            breaker_cooldown: Duration::from_secs(10),
            seed: 0,
            headers: Vec::new(),
            max_requests_per_minute: None,
        }
    }
}

/// Counters of everything that happened on the wire.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests started.
    pub requests: AtomicU64,
    /// Requests that succeeded.
    pub successes: AtomicU64,
    /// Retries sent.
    pub retries: AtomicU64,
    /// Attempts that timed out.
    pub timeouts: AtomicU64,
    /// Attempts that could not connect.
    pub connect_errors: AtomicU64,
    /// Attempts that failed in transport otherwise.
    pub transport_errors: AtomicU64,
    /// 5xx answers.
    pub status_5xx: AtomicU64,
    /// 429 answers.
    pub status_429: AtomicU64,
    /// Other 4xx answers (auth included).
    pub status_4xx: AtomicU64,
    /// Answers that were not what the API promises.
    pub malformed: AtomicU64,
    /// Retries refused by the retry budget.
    pub budget_exhausted: AtomicU64,
    /// Times the circuit breaker opened.
    pub circuit_opens: AtomicU64,
    /// Requests that waited for the breaker to close.
    pub circuit_waits: AtomicU64,
    /// Requests that failed for good.
    pub failed_requests: AtomicU64,
}

/// A plain copy of [`HttpStats`] for manifests and summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpStatsSnapshot {
    /// Requests started.
    pub requests: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Retries sent.
    pub retries: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Attempts that could not connect.
    pub connect_errors: u64,
    /// Attempts that failed in transport otherwise.
    pub transport_errors: u64,
    /// 5xx answers.
    pub status_5xx: u64,
    /// 429 answers.
    pub status_429: u64,
    /// Other 4xx answers (auth included).
    pub status_4xx: u64,
    /// Answers that were not what the API promises.
    pub malformed: u64,
    /// Retries refused by the retry budget.
    pub budget_exhausted: u64,
    /// Times the circuit breaker opened.
    pub circuit_opens: u64,
    /// Requests that waited for the breaker to close.
    pub circuit_waits: u64,
    /// Requests that failed for good.
    pub failed_requests: u64,
}

impl HttpStats {
    /// The counters now.
    pub fn snapshot(&self) -> HttpStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStatsSnapshot {
            requests: g(&self.requests),
            successes: g(&self.successes),
            retries: g(&self.retries),
            timeouts: g(&self.timeouts),
            connect_errors: g(&self.connect_errors),
            transport_errors: g(&self.transport_errors),
            status_5xx: g(&self.status_5xx),
            status_429: g(&self.status_429),
            status_4xx: g(&self.status_4xx),
            malformed: g(&self.malformed),
            budget_exhausted: g(&self.budget_exhausted),
            circuit_opens: g(&self.circuit_opens),
            circuit_waits: g(&self.circuit_waits),
            failed_requests: g(&self.failed_requests),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What failed.
    pub kind: PolicyFailure,
    /// What failed, for a reader.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The server's `Retry-After` (capped).
    pub retry_after: Option<Duration>,
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base * 2^attempt)]`.
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32, rng: &mut impl Rng) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// Token bucket limiting retries to a fraction of successful traffic.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    /// A budget of `initial` retries that earns `ratio` of a retry per success.
    pub fn new(initial: f64, ratio: f64) -> Self {
        RetryBudget { tokens: Mutex::new(initial), ratio, cap: initial.max(1.0) * 2.0 }
    }
    /// A request succeeded: earn `ratio` of a retry.
    pub fn deposit(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + self.ratio).min(self.cap);
        }
    }
    /// Take one retry; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }
}

/// Opens after `threshold` consecutive failures and holds every request back for `cooldown`.
#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<BreakerState>,
    threshold: u32,
    cooldown: Duration,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    /// A breaker that opens after `threshold` failures in a row, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            state: Mutex::new(BreakerState::default()),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// When the circuit is open, the instant it closes again.
    pub fn open_until(&self) -> Option<Instant> {
        let st = self.state.lock().ok()?;
        st.open_until.filter(|t| *t > Instant::now())
    }

    /// Wait while the circuit is open. Returns whether it had to wait.
    pub async fn admit(&self) -> bool {
        let mut waited = false;
        while let Some(t) = self.open_until() {
            waited = true;
            tokio::time::sleep_until(t).await;
        }
        waited
    }

    /// A request succeeded: the failure streak ends.
    pub fn record_success(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.consecutive_failures = 0;
        }
    }

    /// Returns `true` when this failure opened the circuit.
    pub fn record_failure(&self) -> bool {
        let Ok(mut st) = self.state.lock() else { return false };
        st.consecutive_failures += 1;
        if st.consecutive_failures >= self.threshold {
            st.consecutive_failures = 0;
            st.open_until = Some(Instant::now() + self.cooldown);
            return true;
        }
        false
    }
}

/// Paces request starts to at most `per_minute` a minute (`--max-requests-per-minute`): each
/// request takes the next free slot, `60 / per_minute` seconds after the previous one.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// At most `per_minute` request starts a minute.
    pub fn per_minute(per_minute: u32) -> Self {
        RateLimiter {
            interval: Duration::from_secs(60) / per_minute.max(1),
            next: Mutex::new(None),
        }
    }

    /// Wait for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let Ok(mut next) = self.next.lock() else { return };
            let now = Instant::now();
            let slot = next.map_or(now, |t| t.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The one HTTP client of the policies that talk to a server (`http`, `chat`): timeouts,
/// retries with seeded full jitter, `Retry-After`, the shared retry budget, the circuit
/// breaker, the request pacing of `--max-requests-per-minute`, extra headers and the bearer
/// key. Each policy supplies only its URL, its body and how to read a successful response.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    cfg: HttpConfig,
    headers: reqwest::header::HeaderMap,
    stats: HttpStats,
    budget: RetryBudget,
    breaker: CircuitBreaker,
    limiter: Option<RateLimiter>,
}

impl HttpClient {
    /// A client for `cfg` (checks the URL and headers; sends nothing).
    pub fn try_new(cfg: HttpConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| Error::Config { message: format!("cannot build the http client: {e}") })?;
        if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
            return Err(Error::Config {
                message: format!("--endpoint must be an http(s) URL, got {:?}", cfg.endpoint),
            });
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|e| Error::Config { message: format!("--header {k:?}: {e}") })?;
            let value = reqwest::header::HeaderValue::from_str(v.trim())
                .map_err(|e| Error::Config { message: format!("--header {k:?}: {e}") })?;
            headers.insert(name, value);
        }
        Ok(HttpClient {
            client,
            headers,
            budget: RetryBudget::new(cfg.retry_budget_initial, cfg.retry_budget_ratio),
            breaker: CircuitBreaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            limiter: cfg.max_requests_per_minute.map(RateLimiter::per_minute),
            stats: HttpStats::default(),
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// `{endpoint}/v1/{path}` from a base URL given with or without `/v1` (a URL that already
    /// ends in `/{path}` is kept).
    pub fn url(&self, path: &str) -> String {
        endpoint_url(&self.cfg.endpoint, path)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, url).headers(self.headers.clone());
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key);
        }
        req
    }

    async fn attempt<T, F, Fut>(
        &self,
        url: &str,
        body: Option<&Value>,
        read: &F,
    ) -> std::result::Result<T, Failure>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        inc(&self.stats.requests);
        let req = match body {
            Some(b) => self.request(reqwest::Method::POST, url).json(b),
            None => self.request(reqwest::Method::GET, url),
        };
        let resp = req.send().await.map_err(classify_reqwest)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_failure(resp, self.cfg.retry_after_max).await);
        }
        read(resp).await
    }

    fn count(&self, f: &Failure) {
        let s = &self.stats;
        inc(match f.kind {
            PolicyFailure::Timeout => &s.timeouts,
            PolicyFailure::Connect => &s.connect_errors,
            PolicyFailure::Http5xx => &s.status_5xx,
            PolicyFailure::Http429 => &s.status_429,
            PolicyFailure::Http4xx | PolicyFailure::Auth => &s.status_4xx,
            PolicyFailure::Malformed => &s.malformed,
            _ => &s.transport_errors,
        });
    }

    /// Send one request (POST with `body`, GET without) until `read` accepts a successful
    /// response, retrying what is retryable within the budget. `seed` seeds the jitter RNG.
    /// A request that finally fails is `Error::Policy` with the failure's kind.
    pub async fn send<T, F, Fut>(
        &self,
        url: &str,
        body: Option<&Value>,
        seed: u64,
        read: F,
    ) -> Result<T>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ seed);
        let mut attempt = 0u32;
        loop {
            if self.breaker.admit().await {
                inc(&self.stats.circuit_waits);
            }
            match self.attempt(url, body, &read).await {
                Ok(c) => {
                    inc(&self.stats.successes);
                    self.breaker.record_success();
                    self.budget.deposit();
                    return Ok(c);
                }
                Err(f) => {
                    self.count(&f);
                    tracing::debug!(
                        kind = f.kind.label(),
                        attempt,
                        "http request failed: {}",
                        f.message
                    );
                    if self.breaker.record_failure() {
                        inc(&self.stats.circuit_opens);
                        tracing::warn!(
                            "circuit breaker opened after repeated failures ({})",
                            f.kind
                        );
                    }
                    let give_up = |kind: PolicyFailure, message: String| {
                        inc(&self.stats.failed_requests);
                        Err(Error::Policy { kind, message })
                    };
                    if !f.retryable || attempt >= self.cfg.max_retries {
                        return give_up(
                            f.kind,
                            format!("after {} attempts: {}", attempt + 1, f.message),
                        );
                    }
                    if !self.budget.withdraw() {
                        inc(&self.stats.budget_exhausted);
                        return give_up(
                            PolicyFailure::RetryBudget,
                            format!(
                                "retry budget exhausted; last failure {}: {}",
                                f.kind, f.message
                            ),
                        );
                    }
                    inc(&self.stats.retries);
                    let delay = match f.retry_after {
                        Some(d) => d,
                        None => backoff_delay(
                            self.cfg.backoff_base,
                            self.cfg.backoff_max,
                            attempt,
                            &mut rng,
                        ),
                    };
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// `{base}/v1/{path}` for a base URL with or without `/v1`; a URL already ending in `/{path}`
/// is kept as it is.
pub fn endpoint_url(endpoint: &str, path: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(&format!("/{path}")) {
        base.to_owned()
    } else if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

/// A non-2xx response as a [`Failure`]: 429, 408 and 5xx are retryable (with `Retry-After`
/// when the server sent one), 401/403 are `auth`, other 4xx are final.
async fn status_failure(resp: reqwest::Response, retry_after_max: Duration) -> Failure {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s).min(retry_after_max));
    let text = resp.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(200).collect();
    let code = status.as_u16();
    let (kind, retryable) = match code {
        429 => (PolicyFailure::Http429, true),
        408 => (PolicyFailure::Timeout, true),
        401 | 403 => (PolicyFailure::Auth, false),
        500..=599 => (PolicyFailure::Http5xx, true),
        _ => (PolicyFailure::Http4xx, false),
    };
    Failure { kind, message: format!("status {code}: {snippet}"), retryable, retry_after }
}

/// The http policy. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct HttpPolicy {
    client: HttpClient,
    url: String,
}

impl HttpPolicy {
    /// The http policy for `cfg` (checks the URL and headers; sends nothing).
    pub fn try_new(cfg: HttpConfig) -> Result<Self> {
        let client = HttpClient::try_new(cfg)?;
        let url = client.url("completions");
        Ok(HttpPolicy { client, url })
    }

    /// The HTTP counters.
    pub fn stats(&self) -> &HttpStats {
        self.client.stats()
    }

    /// The `completions` URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn body(&self, prompt: &PromptRequest, params: &SamplingParams) -> Value {
        let mut body = json!({
            "model": self.client.config().model,
            "prompt": prompt.text,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "stop": [CALLS_CLOSE],
            "logprobs": 1,
            "skip_special_tokens": false,
            "spaces_between_special_tokens": false,
            "include_stop_str_in_output": true,
        });
        if let (Some(k), Some(obj)) = (params.top_k, body.as_object_mut()) {
            obj.insert("top_k".into(), json!(k));
        }
        body
    }

    async fn complete_with_retries(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> Result<Completion> {
        let body = self.body(prompt, params);
        let seed = params.seed.rotate_left(17)
            ^ u64::from(prompt.turn).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.client
            .send(&self.url, Some(&body), seed, |resp| async move {
                let bytes = resp.bytes().await.map_err(classify_reqwest)?;
                parse_response(&bytes)
            })
            .await
    }
}

pub(crate) fn classify_reqwest(e: reqwest::Error) -> Failure {
    let (kind, retryable) = if e.is_timeout() {
        (PolicyFailure::Timeout, true)
    } else if e.is_connect() {
        (PolicyFailure::Connect, true)
    } else if e.is_decode() {
        (PolicyFailure::Malformed, true)
    } else {
        (PolicyFailure::Transport, true)
    };
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    Failure { kind, message, retryable, retry_after: None }
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
}

#[derive(Deserialize)]
struct WireChoice {
    text: String,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

#[derive(Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    token_logprobs: Option<Vec<Option<f32>>>,
}

/// Turn a `/v1/completions` response body into a [`Completion`].
pub fn parse_response(bytes: &[u8]) -> std::result::Result<Completion, Failure> {
    let malformed = |message: String| Failure {
        kind: PolicyFailure::Malformed,
        message,
        retryable: true,
        retry_after: None,
    };
    let wire: WireResponse = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("response is not a completions object: {e}")))?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| malformed("response has no choices".into()))?;
    let mut text = choice.text;
    let finish = match choice.finish_reason.as_deref() {
        Some("length") => CompletionFinish::Length,
        _ if text.ends_with(EOS) => CompletionFinish::Eos,
        _ if text.ends_with(CALLS_CLOSE) => CompletionFinish::ToolCalls,
        _ if text.contains(CALLS_OPEN) && !text.contains(CALLS_CLOSE) => {
            // The server matched the stop string but did not include it in the text.
            text.push_str(CALLS_CLOSE);
            CompletionFinish::ToolCalls
        }
        // EOS sampled but hidden by the server; the rollout appends it as a forced token.
        _ => CompletionFinish::Eos,
    };
    let logprobs = choice
        .logprobs
        .and_then(|l| l.token_logprobs)
        .and_then(|v| v.into_iter().collect::<Option<Vec<f32>>>());
    Ok(Completion { text, token_ids: None, logprobs, finish, chat: None })
}

impl Policy for HttpPolicy {
    fn name(&self) -> &str {
        "http"
    }

    fn model(&self) -> Option<String> {
        Some(self.client.config().model.clone())
    }

    fn complete(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> impl Future<Output = Result<Completion>> + Send {
        self.complete_with_retries(prompt, params)
    }

    fn stats_json(&self) -> Option<String> {
        serde_json::to_string(&self.client.stats().snapshot()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_seeded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for attempt in 0..40 {
            let da = backoff_delay(base, max, attempt, &mut a);
            assert_eq!(da, backoff_delay(base, max, attempt, &mut b));
            assert!(da <= max);
            assert!(da <= base * 2u32.saturating_pow(attempt.min(20)));
        }
    }

    #[test]
    fn budget_limits_retries() {
        let b = RetryBudget::new(2.0, 0.5);
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw());
        b.deposit();
        assert!(!b.withdraw());
        b.deposit();
        assert!(b.withdraw());
    }

    #[tokio::test]
    async fn breaker_opens_and_holds_requests_back() {
        let br = CircuitBreaker::new(3, Duration::from_millis(30));
        assert!(!br.record_failure());
        assert!(!br.record_failure());
        assert!(br.record_failure());
        let t0 = Instant::now();
        assert!(br.admit().await);
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert!(!br.admit().await);
        br.record_failure();
        br.record_success();
        assert!(!br.record_failure());
    }

    #[test]
    fn parses_responses() {
        let ok = br#"{"choices":[{"text":"hi</think>ok<\uff5cend\u2581of\u2581sentence\uff5c>","finish_reason":"stop","logprobs":{"token_logprobs":[-0.1,-0.2]}}]}"#;
        let c = parse_response(ok).map_err(|f| f.message).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(c.finish, CompletionFinish::Eos);
        assert_eq!(c.logprobs, Some(vec![-0.1, -0.2]));
        let len = br#"{"choices":[{"text":"abc","finish_reason":"length"}]}"#;
        assert_eq!(parse_response(len).map(|c| c.finish), Ok(CompletionFinish::Length));
        for bad in [&b"{"[..], b"[]", br#"{"choices":[]}"#, br#"{"choices":[{"text":3}]}"#] {
            let f = parse_response(bad).err().map(|f| f.kind);
            assert_eq!(f, Some(PolicyFailure::Malformed));
        }
        let stripped = "r</think>\n\n<\u{ff5c}DSML\u{ff5c}function_calls>\n<\u{ff5c}DSML\u{ff5c}invoke name=\"f\">\n";
        let body = json!({"choices": [{"text": stripped, "finish_reason": "stop"}]}).to_string();
        let c = parse_response(body.as_bytes()).map_err(|f| f.message);
        assert!(c.is_ok_and(
            |c| c.text.ends_with(CALLS_CLOSE) && c.finish == CompletionFinish::ToolCalls
        ));
    }
}
