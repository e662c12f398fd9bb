//! End-to-end tests of `agentgen model` and `agentgen bench decode`.

use crate::util::{fixtures, run};

#[test]
fn golden_passes_for_all_three_fixture_files() {
    let f = fixtures().join("model");
    let goldens = f.join("goldens.safetensors");
    for v in ["tiny-f32", "tiny-bf16", "tiny-fp8"] {
        let out = run(
            &[
                "model",
                "golden",
                "--model",
                f.join(v).to_str().unwrap(),
                "--goldens",
                goldens.to_str().unwrap(),
            ],
            b"",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{v}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.trim_end().ends_with("20 passed, 0 failed"), "{stdout}");
    }
}

#[test]
fn golden_fails_with_exit_1_on_a_wrong_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let out = run(
        &["model", "init", "--preset", "tiny", "--vocab", "512", "--out", m.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let goldens = fixtures().join("model/goldens.safetensors");
    let out = run(
        &[
            "model",
            "golden",
            "--model",
            m.to_str().unwrap(),
            "--goldens",
            goldens.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL prefill_logits"));
}

#[test]
fn init_generate_and_bench_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let out = run(
        &[
            "model",
            "init",
            "--preset",
            "tiny",
            "--vocab",
            "512",
            "--seed",
            "5",
            "--dtype",
            "f32",
            "--out",
            m.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success());
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "model",
            "generate",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "[0, 17, 42]",
            "--max-tokens",
            "6",
        ];
        args.extend_from_slice(extra);
        let out = run(&args, b"");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/s"));
        serde_json::from_slice::<Vec<u32>>(&out.stdout).unwrap()
    };
    let a = generate(&["--seed", "3"]);
    assert_eq!(a.len(), 6);
    assert_eq!(a, generate(&["--seed", "3"]));
    assert_eq!(generate(&["--greedy"]), generate(&["--temperature", "0"]));
    let out = run(
        &[
            "bench",
            "decode",
            "--model",
            m.to_str().unwrap(),
            "--contexts",
            "4,32",
            "--dense",
            "--steps",
            "1",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    for key in ["context", "sparse_ms", "dense_ms", "sparse_attn_ms", "dense_attn_ms"] {
        assert!(rows[1][key].is_number(), "{key}");
    }
    // The prefill bench, on the tensor path a GPU takes (forced on the CPU): one row per
    // prompt length, a dense baseline for each; lengths past the fixture's top-k (8) select.
    let out = run(
        &[
            "bench",
            "prefill",
            "--model",
            m.to_str().unwrap(),
            "--contexts",
            "6,40",
            "--dense",
            "--reps",
            "1",
            "--tensor-path",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.iter().map(|r| r["context"].as_u64()).collect::<Vec<_>>(), [Some(6), Some(40)]);
    for key in ["sparse_ms", "dense_ms", "sparse_attn_ms", "dense_attn_ms"] {
        assert!(rows[1][key].as_f64().is_some_and(|v| v > 0.0), "{key}");
    }
    let bad =
        run(&["model", "generate", "--model", dir.path().to_str().unwrap(), "--ids", "[1]"], b"");
    assert_eq!(bad.status.code(), Some(2));
}
