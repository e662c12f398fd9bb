//! Criterion benches of encode, parse and tokenize on the official search trajectories.
//!
//! Run with: `cargo bench -p agentgen-codec --bench codec`

use agentgen_codec::{
    Conversation, EncodeOptions, Message, Role, ThinkingMode, Tokenizer, encode_messages,
    parse_completion, tokenize_with_mask,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn load(name: &str) -> Conversation {
    let text =
        std::fs::read_to_string(agentgen_testdata::path("codec").join(name)).expect("fixture");
    Conversation::from_json(&serde_json::from_str(&text).expect("json")).expect("conversation")
}

/// Every assistant message after the last user turn as (context, message, completion text).
fn completions(conv: &Conversation) -> Vec<(Vec<Message>, Message, String)> {
    let last_user =
        conv.messages.iter().rposition(|m| matches!(m.role, Role::User | Role::Developer));
    let mut out = Vec::new();
    for (i, m) in conv.messages.iter().enumerate() {
        if m.role == Role::Assistant && last_user.is_some_and(|l| i > l) {
            let opts = EncodeOptions { context: conv.messages[..i].to_vec(), ..Default::default() };
            let text = encode_messages(std::slice::from_ref(m), &opts).expect("encode");
            out.push((conv.messages[..i].to_vec(), m.clone(), text));
        }
    }
    out
}

fn benches(c: &mut Criterion) {
    let tok = Tokenizer::shared().expect("tokenizer");
    for name in ["test_input_search_wo_date.json", "test_input_search_w_date.json"] {
        let conv = load(name);
        let opts = EncodeOptions::default();
        let prompt = conv.encode(&opts).expect("encode");
        let short = name.trim_start_matches("test_input_").trim_end_matches(".json");

        let mut g = c.benchmark_group(format!("encode/{short}"));
        g.throughput(Throughput::Bytes(prompt.len() as u64));
        g.bench_function("bytes", |b| b.iter(|| conv.encode(black_box(&opts)).expect("encode")));
        g.throughput(Throughput::Elements(1));
        g.bench_function("conversations", |b| {
            b.iter(|| conv.encode(black_box(&opts)).expect("encode"));
        });
        g.finish();

        let comps = completions(&conv);
        let total: usize = comps.iter().map(|c| c.2.len()).sum();
        let mut g = c.benchmark_group(format!("parse/{short}"));
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function("all_completions", |b| {
            b.iter(|| {
                for (_, _, text) in &comps {
                    black_box(
                        parse_completion(black_box(text), ThinkingMode::Thinking).expect("parse"),
                    );
                }
            });
        });
        g.finish();

        let mut g = c.benchmark_group(format!("tokenize/{short}"));
        g.sample_size(20);
        g.throughput(Throughput::Bytes(prompt.len() as u64));
        g.bench_function("prompt", |b| b.iter(|| tok.encode(black_box(&prompt)).expect("tok")));
        g.bench_function("with_mask", |b| {
            b.iter(|| tokenize_with_mask(black_box(&conv.messages), &opts).expect("tok"));
        });
        g.finish();
    }
}

criterion_group!(codec, benches);
criterion_main!(codec);
