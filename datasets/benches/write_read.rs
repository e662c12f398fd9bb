//! Rows/s written (zstd) and read back, with realistic trajectory rows.
//! Run with: cargo bench -p agentgen-datasets --bench write_read

use agentgen_codec::{Message, ToolCall};
use agentgen_datasets::{
    DatasetWriter, SampleRow, Verdict, WriterOptions, list_parts, read_rows, rows_to_batch,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 2_000;

fn row(i: usize) -> SampleRow {
    let tools = r#"[{"type":"function","function":{"name":"lookup","description":"Look up an account by id and return its balance and owner.","parameters":{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}}}]"#;
    let reasoning =
        format!("The user asks about account {i}. I should look it up first, then answer. ")
            .repeat(4);
    let messages = vec![
        Message::system("You are a banking assistant. Use the tools."),
        Message::user(format!("What is the balance of account AC-{i:06}?")),
        Message::assistant(
            Some(reasoning),
            "",
            vec![ToolCall::new("lookup", format!(r#"{{"id": "AC-{i:06}"}}"#))],
        ),
        Message::tool(format!(r#"{{"balance": {}, "owner": "Person {i}"}}"#, i * 7), None),
        Message::assistant(Some("Got it.".into()), format!("The balance is {}.", i * 7), vec![]),
    ];
    let n_tokens = 600;
    SampleRow {
        sample_id: format!("{i:016x}"),
        task_id: format!("banking@1/{}/{}", i / 10, i % 10),
        group_id: format!("g{i}"),
        run_id: "bench".into(),
        family: "banking".into(),
        instance_seed: (i / 10) as u64,
        task_seed: (i % 10) as u64,
        sample_index: 0,
        difficulty: 2,
        thinking_mode: "thinking".into(),
        tools: tools.into(),
        messages,
        text: "x".repeat(2_400),
        token_ids: (0..n_tokens).map(|t| (t * 31 + i as u32) % 128_000).collect(),
        loss_mask: (0..n_tokens).map(|t| u8::from(t > 300)).collect(),
        logprobs: None,
        reward: 1.0,
        advantage: None,
        passed: true,
        checks: r#"[{"name":"balance","passed":true}]"#.into(),
        verdict: if i % 10 == 9 {
            Verdict::Rejected { code: "outcome.failed".into(), detail: "wrong".into() }
        } else {
            Verdict::Accepted
        },
        turns: 2,
        tool_calls: 1,
        finish_reason: "stop".into(),
        policy: "reference".into(),
        model: None,
        sampling: "{}".into(),
        warnings: vec![],
        timings_ms: r#"{"rollout":0.1}"#.into(),
        token_source: "reference".into(),
        episode_id: String::new(),
        turn_index: 0,
        turns_total: 1,
        env_package: None,
        env_package_sha256: None,
        env_python: None,
    }
}

fn bench(c: &mut Criterion) {
    let rows: Vec<SampleRow> = (0..ROWS).map(row).collect();
    let mut g = c.benchmark_group("datasets");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.bench_function("rows_to_batch", |b| b.iter(|| rows_to_batch(&rows).unwrap()));
    g.bench_function("write_zstd", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = DatasetWriter::try_new(dir.path(), WriterOptions::default()).unwrap();
            for r in &rows {
                w.write(r.clone()).unwrap();
            }
            w.finish().unwrap()
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::try_new(dir.path(), WriterOptions::default()).unwrap();
    for r in &rows {
        w.write(r.clone()).unwrap();
    }
    let summary = w.finish().unwrap();
    let bytes: u64 = summary.files.iter().map(|f| f.bytes).sum();
    eprintln!("{ROWS} rows -> {bytes} bytes on disk ({} bytes/row)", bytes / ROWS as u64);
    let parts = list_parts(dir.path()).unwrap();
    g.bench_function("read_rows", |b| {
        b.iter(|| parts.iter().map(|p| read_rows(&p.path).unwrap().len()).sum::<usize>());
    });
    g.bench_function("clone_only_baseline", |b| b.iter(|| rows.clone()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
