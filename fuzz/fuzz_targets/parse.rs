//! Run with: `cargo +nightly fuzz run parse` (from `fuzz/`).
//!
//! The strict, lenient and streaming parsers must never panic, must agree with each other, and
//! error offsets must be char boundaries inside the text.
#![no_main]

use agentgen_codec::{StreamParser, ThinkingMode, parse_completion, parse_lenient};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for mode in [ThinkingMode::Thinking, ThinkingMode::Chat] {
        let strict = parse_completion(text, mode);
        if let Err(e) = &strict {
            assert!(text.is_char_boundary(e.offset()));
        }
        if let (Ok(s), Ok((l, repairs))) = (&strict, parse_lenient(text, mode)) {
            assert_eq!(s, &l);
            assert!(repairs.is_empty());
        }
        let mut p = StreamParser::new(mode);
        for chunk in text.as_bytes().chunks(7) {
            // Chunks must be valid UTF-8; feed whole chars only.
            if let Ok(c) = std::str::from_utf8(chunk) {
                p.push(c);
            } else {
                return;
            }
        }
        assert_eq!(p.finish(), strict);
    }
});
