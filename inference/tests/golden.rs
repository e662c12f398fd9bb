//! Golden parity on the public tiny fixtures (f32, bf16, fp8 files; f32 compute).

use std::path::PathBuf;

use agentgen_inference::{Model, golden};
use candle_core::Device;

fn fixtures() -> PathBuf {
    agentgen_testdata::path("model")
}

fn check(variant: &str) {
    let model = Model::load(&fixtures().join(variant), &Device::Cpu).unwrap();
    let checks = golden::run_checks(&model, &fixtures().join("goldens.safetensors")).unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    for c in &checks {
        eprintln!("{} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail);
    }
    assert!(checks.len() >= 20, "only {} checks ran", checks.len());
    assert!(failed.is_empty(), "{variant}: {} failed", failed.len());
}

#[test]
fn tiny_f32_meets_goldens() {
    check("tiny-f32");
}

#[test]
fn tiny_bf16_meets_goldens() {
    check("tiny-bf16");
}

#[test]
fn tiny_fp8_meets_goldens_and_skips_mtp() {
    check("tiny-fp8");
}
