//! Every sequence stops at the model's context, whatever `max_tokens` asks for; a prompt that
//! fills the context is refused.

use std::path::PathBuf;

use agentgen_inference::{
    Engine, EngineOptions, FinishReason, GenerateRequest, Model, SamplingParams,
};
use candle_core::Device;

/// The tiny fixture with `max_position_embeddings` lowered to `ctx`, in a scratch folder.
fn tiny_with_context(ctx: usize) -> PathBuf {
    let src = agentgen_testdata::path("model/tiny-f32");
    let dir = std::env::temp_dir().join(format!("agentgen-ctx-{}-{ctx}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["max_position_embeddings"] = serde_json::json!(ctx);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn generation_stops_at_the_model_context() {
    let dir = tiny_with_context(40);
    let model = Model::load(&dir, &Device::Cpu).unwrap();
    let e = Engine::start(model, EngineOptions::default()).unwrap();
    let prompt: Vec<u32> = (0..30).map(|i| 2 + (i * 37) % 500).collect();
    let params =
        SamplingParams { temperature: 1.0, seed: 3, max_tokens: usize::MAX, ..Default::default() };
    let c = e
        .generate_blocking(GenerateRequest {
            prompt_ids: prompt,
            params: params.clone(),
            ..Default::default()
        })
        .unwrap();
    assert!(c.token_ids.len() <= 10, "{} tokens past a 40-token context", c.token_ids.len());
    if c.token_ids.len() == 10 {
        assert_eq!(c.finish_reason, FinishReason::Length);
    }
    let full: Vec<u32> = (0..40).map(|i| 2 + (i * 37) % 500).collect();
    let r = e.generate_blocking(GenerateRequest { prompt_ids: full, params, ..Default::default() });
    assert!(r.is_err(), "a prompt that fills the context is refused");
    let _ = std::fs::remove_dir_all(&dir);
}
