//! The fast encode path ([`Tokenizer::encode`]) against the `tokenizers` crate's own pipeline
//! ([`Tokenizer::encode_reference`]): same ids on the fixtures, on every official conversation
//! and on random text built from the characters the pre-tokenizer patterns care about. The
//! table decode ([`Tokenizer::decode`]) against [`Tokenizer::decode_reference`] the same way.

use agentgen_codec::{Conversation, EncodeOptions, Tokenizer};
use proptest::prelude::*;

fn fixtures() -> std::path::PathBuf {
    agentgen_testdata::dir().to_path_buf()
}

fn same(tok: &Tokenizer, text: &str) {
    let fast = tok.encode(text).expect("fast");
    let reference = tok.encode_reference(text).expect("reference");
    assert_eq!(fast, reference, "ids differ for {text:?}");
}

#[test]
fn the_embedded_tokenizer_takes_the_fast_path() {
    assert!(Tokenizer::shared().expect("tokenizer").has_fast_path());
}

#[test]
fn fixture_cases_and_official_conversations_match_the_reference() {
    let tok = Tokenizer::shared().expect("tokenizer");
    let cases = std::fs::read_to_string(fixtures().join("tokenizer/token_cases.jsonl"))
        .expect("token cases");
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("case json");
        same(tok, v["text"].as_str().expect("text"));
        n += 1;
    }
    assert!(n >= 8);
    let codec = fixtures().join("codec");
    let mut convs = 0;
    for entry in std::fs::read_dir(&codec).expect("codec fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !(name.starts_with("test_input") && name.ends_with(".json")) {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let conv = Conversation::from_json(&v).expect("conversation");
        for opts in [
            EncodeOptions::default(),
            EncodeOptions { drop_thinking: false, ..EncodeOptions::default() },
        ] {
            let text = conv.encode(&opts).expect("encode");
            same(tok, &text);
        }
        convs += 1;
    }
    assert!(convs >= 3, "official conversations found: {convs}");
}

/// Pieces that exercise every branch of the split patterns: spaces of several kinds, line
/// breaks, digits of several scripts, CJK and kana runs, letters with combining marks,
/// punctuation and symbols, emoji, and added tokens (raw and normalized ones).
const PIECES: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{85}",
    "\u{b}",
    "a",
    "Z",
    "word",
    "Hello",
    "é",
    "e\u{301}",
    "\u{301}",
    "ß",
    "Ω",
    "中",
    "文字",
    "ア",
    "ぁ",
    "ｱ",
    "한",
    "0",
    "7",
    "12345",
    "٣",
    "½",
    "Ⅻ",
    "!",
    ".",
    "...",
    "-",
    "_",
    "$",
    "€",
    "'s",
    "\"",
    "<",
    ">",
    "｜",
    "▁",
    "😀",
    "👍🏽",
    "\u{200b}",
    "\u{feff}",
    "\u{0}",
    "\u{7f}",
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<think>",
    "</think>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "｜DSML｜",
    "<｜DSML｜invoke name=\"f\">",
    "</｜DSML｜parameter>",
    "<dsml:",
    "<|EOT|>",
    "<｜tool▁sep｜>",
    "{\"a\": [1, 2.5, \"x\"]}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_text_matches_the_reference(parts in prop::collection::vec(0..PIECES.len(), 0..24)) {
        let tok = Tokenizer::shared().expect("tokenizer");
        let text: String = parts.iter().map(|&i| PIECES[i]).collect();
        let fast = tok.encode(&text).expect("fast");
        let reference = tok.encode_reference(&text).expect("reference");
        prop_assert_eq!(fast, reference, "text {:?}", text);
    }

    #[test]
    fn arbitrary_unicode_matches_the_reference(text in "\\PC{0,40}") {
        let tok = Tokenizer::shared().expect("tokenizer");
        prop_assert_eq!(tok.encode(&text).expect("fast"), tok.encode_reference(&text).expect("reference"));
    }

    #[test]
    fn random_ids_decode_like_the_reference(
        ids in prop::collection::vec(prop_oneof![
            // Anywhere in the vocabulary, the added tokens at its end, single-byte tokens that
            // can split a UTF-8 sequence, and ids no token has.
            0u32..129_500,
            128_790u32..128_815,
            0u32..400,
            128_815u32..u32::MAX,
        ], 0..40)
    ) {
        let tok = Tokenizer::shared().expect("tokenizer");
        prop_assert_eq!(tok.decode(&ids).expect("table"), tok.decode_reference(&ids).expect("reference"));
    }
}

#[test]
fn long_stretches_from_the_segment_cache_match_the_reference() {
    let tok = Tokenizer::shared().expect("tokenizer");
    // A stretch long enough to be cached, met again after different added tokens, inside
    // other text, cut short, and with a normalized added token in it.
    let stretch: String =
        PIECES.iter().filter(|p| !p.contains('｜')).cycle().take(150).copied().collect();
    assert!(stretch.len() > 300, "{}", stretch.len());
    let cut = stretch.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    let cases = [
        format!("<｜begin▁of▁sentence｜>{stretch}<｜User｜>hi"),
        format!("<｜User｜>{stretch}<｜Assistant｜>"),
        format!("x{stretch}<｜User｜>"),
        format!("<｜User｜>{}<｜Assistant｜>", &stretch[..cut]),
        format!("<｜User｜>{stretch}<｜DSML｜invoke name=\"f\">{stretch}"),
        format!("<｜begin▁of▁sentence｜>{stretch}<｜User｜>hi"),
    ];
    for text in &cases {
        for _ in 0..2 {
            same(tok, text);
        }
    }
}

#[test]
fn every_id_decodes_like_the_reference() {
    let tok = Tokenizer::shared().expect("tokenizer");
    let mut differ = Vec::new();
    for id in 0..130_000u32 {
        let (fast, reference) = (tok.decode(&[id]), tok.decode_reference(&[id]));
        if fast.as_deref().ok() != reference.as_deref().ok() {
            differ.push(id);
        }
    }
    assert!(
        differ.is_empty(),
        "{} ids decode differently, first {:?}",
        differ.len(),
        &differ[..differ.len().min(10)]
    );
    // Whole conversations: the ids of the fixture texts decode back to them.
    let cases = std::fs::read_to_string(fixtures().join("tokenizer/token_cases.jsonl"))
        .expect("token cases");
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("case json");
        let text = v["text"].as_str().expect("text");
        let ids = tok.encode(text).expect("ids");
        assert_eq!(tok.decode(&ids).expect("decode"), text);
        assert_eq!(
            tok.decode(&ids).expect("decode"),
            tok.decode_reference(&ids).expect("reference")
        );
    }
}

/// The word and segment caches are each thread's own: eight threads encoding the same texts
/// and their own (enough distinct pieces and long stretches that every thread's caches fill
/// and start over, some more than once) get the reference's ids every time.
#[test]
fn caches_of_many_threads_match_the_reference() {
    let tok = Tokenizer::shared().expect("tokenizer");
    let shared: String =
        PIECES.iter().filter(|p| !p.contains('｜')).cycle().take(120).copied().collect();
    let shared = &shared;
    std::thread::scope(|s| {
        for t in 0..8u32 {
            s.spawn(move || {
                for round in 0..2u32 {
                    // ~40,000 distinct words per thread (over the per-thread word bound) and
                    // ~2.4 MB of distinct long stretches (over the per-thread segment bound).
                    let words: String = (0..40_000u32)
                        .map(|i| format!(" w{t}x{}q{round}", i.wrapping_mul(2_654_435_761)))
                        .collect();
                    let fast = tok.encode(&words).expect("fast");
                    assert_eq!(fast, tok.encode_reference(&words).expect("reference"));
                    for k in 0..300u32 {
                        let text = format!(
                            "<｜User｜>{shared}<｜Assistant｜>{}{k} {t} {round}<｜User｜>",
                            "stretch ".repeat(1000)
                        );
                        if k % 50 == 0 {
                            same(tok, &text);
                        } else {
                            tok.encode(&text).expect("fast");
                        }
                    }
                    same(tok, &format!("<｜User｜>{shared}<｜Assistant｜>"));
                }
            });
        }
    });
}
