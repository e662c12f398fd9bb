//! What every generation request shares: the model name, sampling checked into engine
//! parameters, seeds per choice, and starting the choices on the backend.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use agentgen_inference::{GenerateRequest, SamplingParams};

use super::{AppState, model_not_found};
use crate::api::ApiError;
use crate::backend::Events;
use crate::generation::ChoiceRun;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What every generation request shares after validation.
pub(super) struct Plan {
    /// Response id (`cmpl-<n>`, `chatcmpl-<n>`).
    pub(super) id: String,
    /// The model name the response carries.
    pub(super) model: String,
    /// Token ids of each prompt.
    pub(super) prompts: Vec<Vec<u32>>,
    n: u32,
    params: SamplingParams,
    seed: u64,
    stops: Vec<String>,
    /// Extra stop token ids passed to the backend.
    pub(super) stop_token_ids: Vec<u32>,
}

impl Plan {
    /// Prompt tokens of the request (each prompt once, whatever `n`).
    pub(super) fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }
}

/// A request's sampling fields, before validation.
pub(super) struct Sampling {
    pub(super) temperature: Option<f32>,
    pub(super) top_p: Option<f32>,
    pub(super) top_k: Option<i64>,
    pub(super) seed: Option<u64>,
    pub(super) n: Option<u32>,
    pub(super) stop: Option<crate::api::Stop>,
}

/// A started choice: `(choice index, prompt index, events)`.
pub(super) type Started = (usize, usize, Events);

impl AppState {
    fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// The served name a request asked for (the first when it names none), or 404.
    pub(super) fn model_name(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None | Some("") => Ok(self.cfg.model_names[0].clone()),
            Some(m) if self.cfg.model_names.iter().any(|n| n == m) => Ok(m.to_owned()),
            Some(m) => Err(model_not_found(m)),
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Err(ApiError::bad_param("prompt", "the prompt is empty"));
        }
        let v = self.backend.vocab_size();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= v) {
            return Err(ApiError::bad_param(
                "prompt",
                format!("token id {bad} is outside the model's vocabulary of {v} ids"),
            ));
        }
        Ok(())
    }

    /// Check a request's sampling and prompts into a [`Plan`].
    pub(super) fn plan(
        &self,
        kind: &str,
        model: String,
        prompts: Vec<Vec<u32>>,
        max_tokens: usize,
        s: Sampling,
    ) -> Result<Plan, ApiError> {
        let counter = self.next_request();
        let n = s.n.unwrap_or(1);
        if n == 0 || n > self.cfg.max_choices {
            return Err(ApiError::bad_param(
                "n",
                format!("n must be between 1 and {}, got {n}", self.cfg.max_choices),
            ));
        }
        if prompts.len() * n as usize > self.cfg.max_choices as usize * 4 {
            return Err(ApiError::bad_param("prompt", "too many prompts times choices"));
        }
        let temperature = s.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_param("temperature", "temperature must be in [0, 2]"));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param("top_p", "top_p must be in (0, 1]"));
        }
        let top_k = match s.top_k {
            None => None,
            Some(k) if k <= 0 => None,
            Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        };
        let stops = s.stop.map(crate::api::Stop::into_vec).unwrap_or_default();
        if stops.len() > 16 || stops.iter().any(|s| s.len() > 1024) {
            return Err(ApiError::bad_param("stop", "at most 16 stop strings of 1024 bytes"));
        }
        let ctx = self.backend.max_context();
        for p in &prompts {
            self.check_ids(p)?;
            // Overflow-safe: max_tokens may be anything up to 2^64 - 1.
            if p.len().checked_add(max_tokens).is_none_or(|total| total > ctx) {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!(
                        "this model's maximum context length is {ctx} tokens, but {} prompt \
                         tokens + {max_tokens} max_tokens were requested",
                        p.len()
                    ),
                )
                .with_code("context_length_exceeded"));
            }
        }
        let seed = s.seed.unwrap_or_else(|| splitmix(self.cfg.seed ^ splitmix(counter)));
        Ok(Plan {
            id: format!("{kind}-{counter}"),
            model,
            prompts,
            n,
            params: SamplingParams { temperature, top_p, top_k, seed, max_tokens },
            seed,
            stops,
            stop_token_ids: Vec::new(),
        })
    }

    /// Start every choice of the plan: `(choice index, prompt index, events)`.
    pub(super) fn start(&self, plan: &Plan) -> Result<Vec<Started>, ApiError> {
        let mut out = Vec::new();
        for (p, ids) in plan.prompts.iter().enumerate() {
            for j in 0..plan.n as usize {
                let index = p * plan.n as usize + j;
                let seed = if index == 0 { plan.seed } else { splitmix(plan.seed ^ index as u64) };
                let req = GenerateRequest {
                    prompt_ids: ids.clone(),
                    params: SamplingParams { seed, ..plan.params.clone() },
                    stop: Vec::new(),
                    stop_token_ids: plan.stop_token_ids.clone(),
                    cache_key: None,
                };
                let rx =
                    self.backend.generate(req).map_err(|e| ApiError::internal(e.to_string()))?;
                out.push((index, p, rx));
            }
        }
        Ok(out)
    }

    /// Follow one started choice.
    pub(super) fn run(&self, rx: Events, plan: &Plan, p: usize) -> ChoiceRun {
        ChoiceRun::new(rx, self.tok, plan.stops.clone(), plan.prompts[p].len())
    }

    /// One token's text (special tokens kept).
    pub(super) fn token_text(&self, id: u32) -> String {
        self.tok.decode(&[id]).unwrap_or_default()
    }
}

impl AppState {
    /// Now, for a response's `created` (the start time if the clock is off).
    pub(super) fn created_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(self.created, |d| d.as_secs())
    }
}
