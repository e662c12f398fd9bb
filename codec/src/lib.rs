//! `agentgen-codec`: the DeepSeek-V3.2 chat format.
//!
//! Owns the plain message types ([`Message`], [`Role`], [`ToolCall`]), the byte-exact encoder
//! ([`encode_messages`]), the strict / lenient / streaming completion parser
//! ([`parse_completion`], [`parse_lenient`], [`StreamParser`] with the sections a stream can
//! show so far, [`parse_best_effort`]), stop strings ([`StopStrings`]), Python-compatible JSON
//! ([`python_json`]), the shipped V3.2 tokenizer ([`Tokenizer`]) and loss masks
//! ([`tokenize_with_mask`]). Must not depend on candle, tokio or the environments.
//!
//! The normative description is `shared/spec/codec.md`; the encoder and the strict parser
//! reproduce DeepSeek's reference `encoding_dsv32.py` byte for byte, quirks included, and
//! refuse with a typed error what the reference refuses.
//!
//! ```
//! use agentgen_codec::{encode_messages, parse_completion, EncodeOptions, Message, ThinkingMode};
//! let history = vec![Message::user("1+1=?")];
//! let answer = Message::assistant(Some("Easy.".into()), "2", vec![]);
//! let opts = EncodeOptions { context: history, ..EncodeOptions::default() };
//! let completion = encode_messages(&[answer], &opts)?;
//! assert_eq!(completion, "Easy.</think>2<｜end▁of▁sentence｜>");
//! let parsed = parse_completion(&completion, ThinkingMode::Thinking).expect("parses");
//! assert_eq!((parsed.reasoning_content.as_str(), parsed.content.as_str()), ("Easy.", "2"));
//! # Ok::<(), agentgen_codec::Error>(())
//! ```
//!
//! # Tokens versus text
//!
//! The codec works on text; [`Tokenizer`] maps it to ids. Every marker the codec emits
//! (BOS, EOS, `<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`, `｜DSML｜`) is an *added token*
//! of the V3.2 tokenizer, and the tokenizer splits its input at added tokens before running
//! byte-level BPE. So `</think>` is always its own token (128799) and never merges with the
//! reasoning before it or the content after it; the DSML tags are `<` + `｜DSML｜` (128793) +
//! ordinary text (`function_calls>`, ...). The tool-results block (`<function_results>`,
//! `<result>`) is ordinary text.
//!
//! [`tokenize_with_mask`] renders the conversation as *segments*: runs of text with one mask
//! value (1 for what an assistant after the last user/developer message produced: reasoning,
//! `</think>`, content, the DSML block, EOS; 0 otherwise). Each segment is tokenized on its own
//! and the ids are concatenated. In the V3.2 format every segment boundary is next to an added
//! token (a trainable segment starts after `<think>`, `</think>` or the EOS ending the previous
//! assistant message, and ends with EOS), so per-segment tokenization equals tokenizing the
//! whole prompt; the tests check this on every fixture. The exception is a conversation the
//! format does not really intend: an assistant right after a system message with no user turn
//! at all (`L = -1`, spec §3.9), or after a tool-results block left open by missing results.
//! There the boundary falls between two plain-text runs and BPE could merge across it; we
//! still tokenize per segment, because that is what generation does too (the prompt is
//! tokenized, the completion is sampled token by token after it), so the ids stay those the
//! model would see and the mask stays exact.
//!
//! Decoding model output must keep special tokens ([`Tokenizer::decode`] does): `｜DSML｜`, BOS
//! and EOS are `special` in the V3.2 tokenizer and `skip_special_tokens` would delete them.

#![deny(missing_docs)]

pub mod conformance;
mod encode;
mod error;
mod json;
mod lenient;
pub mod message;
mod mode;
mod parse;
mod stop;
mod stream;
mod tokenizer;
pub mod tokens;

pub use encode::{
    Conversation, EncodeOptions, encode_messages, encode_mismatch, messages_from_json,
};

/// The model name `agentgen serve` answers to and `rollout`/`generate` ask for when none is
/// given, so the two agree out of the box.
pub const DEFAULT_MODEL_NAME: &str = "deepseek-ai/DeepSeek-V3.2";
pub use error::{Error, Result};
pub use json::{python_json, python_json_str};
pub use lenient::{Repair, RepairKind, parse_lenient};
pub use message::{ArgumentsError, AssistantMessage, Message, Role, ToolCall, tool_arguments};
pub use mode::ThinkingMode;
pub use parse::{ParseError, parse_completion};
pub use stop::StopStrings;
pub use stream::{Sections, StreamParser, StreamStatus, parse_best_effort};
pub use tokenizer::{TOKENIZER_SHA256, Tokenizer, mask_segments, tokenize_with_mask};
