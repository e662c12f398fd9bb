//! Cache, chunking, batching and sampling invariants on the tiny fixture.

use std::sync::OnceLock;

use agentgen_inference::{
    Engine, EngineOptions, FinishReason, ForwardOptions, GenerateRequest, LogitsMode, Model,
    SamplingParams, Segment, TokenEvent,
};
use candle_core::Device;

fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::load(&agentgen_testdata::path("model/tiny-f32"), &Device::Cpu).unwrap())
}

fn prompt(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32).map(|i| 2 + (i * 37 + salt * 101) % 500).collect()
}

fn all_logits(m: &Model, chunks: &[&[u32]], dense: bool) -> Vec<f32> {
    let mut cache = m.new_cache();
    let mut out = Vec::new();
    for c in chunks {
        let l = m
            .forward(
                &mut [Segment { cache: &mut cache, tokens: c }],
                ForwardOptions { dense, logits: LogitsMode::All },
                None,
            )
            .unwrap();
        out.extend(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn token_by_token_decode_equals_one_prefill() {
    let m = model();
    let p = prompt(40, 1);
    let full = all_logits(m, &[&p], false);
    let singles: Vec<&[u32]> = p.chunks(1).collect();
    let step = all_logits(m, &singles, false);
    assert!(max_abs(&full, &step) < 1e-3);
}

#[test]
fn chunked_prefill_equals_one_prefill() {
    let m = model();
    let p = prompt(50, 2);
    let full = all_logits(m, &[&p], false);
    for cuts in [[3usize, 9, 30], [7, 8, 49], [1, 20, 21]] {
        let chunks = [&p[..cuts[0]], &p[cuts[0]..cuts[1]], &p[cuts[1]..cuts[2]], &p[cuts[2]..]];
        let e = max_abs(&full, &all_logits(m, &chunks, false));
        assert!(e < 1e-3, "{cuts:?}: {e}");
    }
}

#[test]
fn sparse_equals_dense_when_context_fits_topk() {
    let m = model();
    let k = m.config().index_topk;
    let p = prompt(k, 3);
    let e = max_abs(&all_logits(m, &[&p], false), &all_logits(m, &[&p], true));
    assert!(e < 1e-5, "{e}");
    // and beyond top-k the sparse mask really bites
    let p = prompt(3 * k, 3);
    assert!(max_abs(&all_logits(m, &[&p], false), &all_logits(m, &[&p], true)) > 1e-2);
}

/// A prefill that returns only the last position's logits runs the last layer's queries for
/// that row only; the keys of every token must still land in the cache.
#[test]
fn last_only_prefill_leaves_a_complete_cache() {
    let m = model();
    let v = m.config().vocab_size;
    let p = prompt(30, 7);
    let full = all_logits(m, &[&p], false);
    let mut cache = m.new_cache();
    let mut got = Vec::new();
    for chunk in [&p[..20], &p[20..21], &p[21..]] {
        let l = m
            .forward(
                &mut [Segment { cache: &mut cache, tokens: chunk }],
                ForwardOptions::default(),
                None,
            )
            .unwrap();
        got.push(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    for (ends_at, row) in [20usize, 21, 30].iter().zip(&got) {
        let want = &full[(ends_at - 1) * v..ends_at * v];
        assert!(max_abs(row, want) < 1e-3, "chunk ending at {ends_at}");
    }
}

#[test]
fn mixed_batch_forward_equals_each_alone() {
    let m = model();
    // Short segments, then long ones whose rows are split into blocks differently in the batch
    // (161 rows) than alone (70 / 90 rows).
    for (la, lb) in [(5usize, 23usize), (70, 90)] {
        let a = prompt(la, 4);
        let b = prompt(lb, 5);
        let c = prompt(1, 6);
        let alone: Vec<Vec<f32>> = [&a, &b, &c]
            .iter()
            .map(|p| {
                let l = all_logits(m, &[p], false);
                l[l.len() - m.config().vocab_size..].to_vec()
            })
            .collect();
        let (mut ca, mut cb, mut cc) = (m.new_cache(), m.new_cache(), m.new_cache());
        let l = m
            .forward(
                &mut [
                    Segment { cache: &mut ca, tokens: &a },
                    Segment { cache: &mut cb, tokens: &b },
                    Segment { cache: &mut cc, tokens: &c },
                ],
                ForwardOptions::default(),
                None,
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (got, want) in l.iter().zip(&alone) {
            assert!(max_abs(got, want) < 1e-4, "segments of {la}, {lb}, 1");
        }
        assert_eq!((ca.len(), cb.len(), cc.len()), (la, lb, 1));
    }
}

fn engine() -> agentgen_inference::EngineHandle {
    Engine::start(model().clone(), EngineOptions { prefill_chunk: 16, ..Default::default() })
        .unwrap()
}

fn req(p: Vec<u32>, params: SamplingParams) -> GenerateRequest {
    GenerateRequest { prompt_ids: p, params, ..Default::default() }
}

#[test]
fn engine_batch_gives_same_tokens_as_alone() {
    let e = engine();
    let prompts: Vec<Vec<u32>> = (0..5).map(|i| prompt(3 + 9 * i, i as u32)).collect();
    let greedy = SamplingParams::greedy(12);
    let sampled = |seed| SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        seed,
        max_tokens: 12,
        ..Default::default()
    };
    let alone: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let params = if i % 2 == 0 { greedy.clone() } else { sampled(i as u64) };
            e.generate_blocking(req(p.clone(), params)).unwrap()
        })
        .collect();
    // all at once (streams submitted before the engine drains its queue)
    let streams: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let params = if i % 2 == 0 { greedy.clone() } else { sampled(i as u64) };
            e.generate_stream(req(p.clone(), params)).unwrap()
        })
        .collect();
    for (mut rx, want) in streams.into_iter().zip(&alone) {
        let mut ids = Vec::new();
        let done = loop {
            match rx.blocking_recv().unwrap() {
                TokenEvent::Token { id, .. } => ids.push(id),
                TokenEvent::Done(c) => break c,
                TokenEvent::Error(m) => panic!("{m}"),
            }
        };
        assert_eq!(done.token_ids, want.token_ids);
        assert_eq!(ids, want.token_ids);
        assert_eq!(done.token_ids.len(), done.logprobs.len());
        assert!(done.logprobs.iter().all(|l| *l <= 0.0));
    }
    assert!(
        alone
            .iter()
            .all(|c| c.finish_reason == FinishReason::Length
                || c.finish_reason == FinishReason::Stop)
    );
}

#[test]
fn engine_cache_key_reuses_prefix_and_matches_fresh_run() {
    let e = engine();
    let p = prompt(20, 9);
    let first = e
        .generate_blocking(GenerateRequest {
            cache_key: Some("r1".into()),
            ..req(p.clone(), SamplingParams::greedy(4))
        })
        .unwrap();
    let mut next = p.clone();
    next.extend(&first.token_ids);
    next.extend(prompt(6, 10));
    let cached = e
        .generate_blocking(GenerateRequest {
            cache_key: Some("r1".into()),
            ..req(next.clone(), SamplingParams::greedy(6))
        })
        .unwrap();
    let fresh = e.generate_blocking(req(next, SamplingParams::greedy(6))).unwrap();
    assert!(cached.cached_tokens >= 20, "{}", cached.cached_tokens);
    assert_eq!(cached.token_ids, fresh.token_ids);
}

#[test]
fn engine_rejects_bad_requests_without_dying() {
    let e = engine();
    assert!(e.generate_blocking(req(vec![], SamplingParams::default())).is_err());
    assert!(e.generate_blocking(req(vec![100_000], SamplingParams::default())).is_err());
    let ok = e.generate_blocking(req(vec![5, 6], SamplingParams::greedy(2))).unwrap();
    assert_eq!(ok.token_ids.len(), 2);
    // a dropped stream is cancelled and the engine keeps serving
    drop(e.generate_stream(req(prompt(30, 1), SamplingParams::greedy(50))).unwrap());
    assert!(e.generate_blocking(req(vec![5], SamplingParams::greedy(1))).is_ok());
}
