//! The embedded V3.2 tokenizer against the shared token cases, and loss masks.

use agentgen_codec::{
    Conversation, EncodeOptions, ThinkingMode, Tokenizer, mask_segments, tokenize_with_mask, tokens,
};
use serde_json::Value;

const SEED_IDS: [u32; 21] = [
    0, 128803, 33310, 128804, 128799, 19923, 3, 342, 1030, 22651, 4374, 1465, 16, 1, 128803, 19,
    13, 19, 127252, 128804, 128798,
];

fn read(rel: &str) -> String {
    std::fs::read_to_string(agentgen_testdata::path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn token_cases_match() -> anyhow::Result<()> {
    let tok = Tokenizer::shared()?;
    let mut n = 0;
    for line in read("tokenizer/token_cases.jsonl").lines() {
        let v: Value = serde_json::from_str(line)?;
        let text = v["text"].as_str().unwrap_or_default();
        let want: Vec<u32> = serde_json::from_value(v["ids"].clone())?;
        assert_eq!(tok.encode(text)?, want, "{}", v["name"]);
        // Decoding keeps special tokens and gives the text back.
        assert_eq!(tok.decode(&want)?, text, "{}", v["name"]);
        n += 1;
    }
    assert_eq!(n, 8);
    Ok(())
}

#[test]
fn seed_example_ids_and_mask() -> anyhow::Result<()> {
    let tok = Tokenizer::shared()?;
    let conv: Conversation = Conversation::from_json(&serde_json::json!({"messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello! I am DeepSeek.", "reasoning_content": "thinking..."},
        {"role": "user", "content": "1+1=?"}
    ]}))?;
    let prompt = conv.encode(&EncodeOptions::default())?;
    assert_eq!(tok.encode(&prompt)?, SEED_IDS);
    let (ids, mask) = tokenize_with_mask(&conv.messages, &EncodeOptions::default())?;
    assert_eq!(ids, SEED_IDS);
    // Everything precedes the last user message: nothing is trainable.
    assert!(mask.iter().all(|&m| m == 0));
    assert_eq!(tok.vocab_size(), 128815);
    assert_eq!(tok.id_to_token(tokens::THINK_CLOSE_ID).as_deref(), Some(tokens::THINK_CLOSE));
    for (text, id) in [
        (tokens::BOS, tokens::BOS_ID),
        (tokens::EOS, tokens::EOS_ID),
        (tokens::USER, tokens::USER_ID),
        (tokens::ASSISTANT, tokens::ASSISTANT_ID),
        (tokens::THINK_OPEN, tokens::THINK_OPEN_ID),
        (tokens::DSML, tokens::DSML_ID),
    ] {
        assert_eq!(tok.encode(text)?, [id], "{text}");
    }
    Ok(())
}

/// Per-segment tokenization equals whole-text tokenization on every fixture conversation,
/// and the mask marks exactly the assistant text after the last user message.
#[test]
fn segment_tokenization_equals_whole() -> anyhow::Result<()> {
    let tok = Tokenizer::shared()?;
    let mut convs = Vec::new();
    for name in
        ["test_input.json", "test_input_search_wo_date.json", "test_input_search_w_date.json"]
    {
        let v: Value = serde_json::from_str(&read(&format!("codec/{name}")))?;
        convs.push((name.to_owned(), Conversation::from_json(&v)?, EncodeOptions::default()));
    }
    for line in read("codec/extra_cases.jsonl").lines() {
        let v: Value = serde_json::from_str(line)?;
        if v.get("expected_prompt").is_none() || v["config"].get("context").is_some() {
            continue;
        }
        let Ok(conv) = Conversation::from_json(
            &serde_json::json!({"messages": v["messages"], "tools": v["tools"]}),
        ) else {
            continue;
        };
        let mode: ThinkingMode = v["config"]["thinking_mode"].as_str().unwrap_or("?").parse()?;
        let opts = EncodeOptions {
            thinking_mode: mode,
            drop_thinking: v["config"]["drop_thinking"].as_bool().unwrap_or(true),
            add_bos: v["config"]["add_default_bos_token"].as_bool().unwrap_or(true),
            context: vec![],
        };
        convs.push((v["name"].as_str().unwrap_or("?").to_owned(), conv, opts));
    }
    let mut trainable_convs = 0;
    for (name, conv, opts) in &convs {
        let prompt = conv.encode(opts)?;
        let (ids, mask) = tokenize_with_mask(&conv.messages, opts)?;
        assert_eq!(ids.len(), mask.len());
        // Vectors with no user turn put plain text on both sides of a segment boundary
        // (crate docs); everywhere else per-segment ids equal whole-text ids.
        let has_user = conv.messages.iter().any(|m| {
            matches!(m.role, agentgen_codec::Role::User | agentgen_codec::Role::Developer)
        });
        if has_user {
            assert_eq!(ids, tok.encode(&prompt)?, "{name}");
        }
        let segments = mask_segments(&conv.messages, opts)?;
        let joined: String = segments.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(joined, prompt, "{name}");
        let trainable: String = segments.iter().filter(|s| s.1).map(|(s, _)| s.as_str()).collect();
        let masked: Vec<u32> =
            ids.iter().zip(&mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
        assert_eq!(tok.decode(&masked)?, trainable, "{name}");
        if !trainable.is_empty() {
            trainable_convs += 1;
            // Every trainable run ends with EOS.
            assert!(trainable.ends_with(tokens::EOS), "{name}");
            assert_eq!(masked.last(), Some(&tokens::EOS_ID), "{name}");
        }
    }
    assert!(trainable_convs >= 10, "only {trainable_convs} conversations had trainable tokens");
    Ok(())
}
