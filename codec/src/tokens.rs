//! Literal marker strings of the V3.2 format and their token ids (spec §1).
//!
//! `｜` is U+FF5C FULLWIDTH VERTICAL LINE and `▁` is U+2581 LOWER ONE EIGHTH BLOCK; the ASCII
//! look-alikes (`<|User|>`) are different text and different tokens.

/// Beginning of sentence (special token).
pub const BOS: &str = "<｜begin▁of▁sentence｜>";
/// End of sentence (special token); ends every assistant message.
pub const EOS: &str = "<｜end▁of▁sentence｜>";
/// Opens a user (or developer) turn.
pub const USER: &str = "<｜User｜>";
/// Ends a user turn; the assistant writes after it (and after the thinking tag).
pub const ASSISTANT: &str = "<｜Assistant｜>";
/// Opens reasoning.
pub const THINK_OPEN: &str = "<think>";
/// Closes reasoning.
pub const THINK_CLOSE: &str = "</think>";
/// The DSML marker (special token); the DSML tags are built from it.
pub const DSML: &str = "｜DSML｜";
/// Opens a tool-call block.
pub const CALLS_OPEN: &str = "<｜DSML｜function_calls>";
/// Closes a tool-call block.
pub const CALLS_CLOSE: &str = "</｜DSML｜function_calls>";
/// Start of an invoke tag (followed by ` name="NAME">`).
pub const INVOKE_START: &str = "<｜DSML｜invoke";
/// Closes an invoke.
pub const INVOKE_CLOSE: &str = "</｜DSML｜invoke>";
/// Start of a parameter tag (followed by ` name="KEY" string="BOOL">`).
pub const PARAM_START: &str = "<｜DSML｜parameter";
/// Closes a parameter.
pub const PARAM_CLOSE: &str = "</｜DSML｜parameter>";
/// What the parser looks for to find a tool-call block: two newlines and the open tag's start.
pub const TC_START: &str = "\n\n<｜DSML｜function_calls";
/// Opens a merged tool-results block (plain text, not a special token).
pub const RESULTS_OPEN: &str = "<function_results>";
/// Closes a merged tool-results block.
pub const RESULTS_CLOSE: &str = "</function_results>";

/// Id of [`BOS`].
pub const BOS_ID: u32 = 0;
/// Id of [`EOS`].
pub const EOS_ID: u32 = 1;
/// Id of the padding token `<｜▁pad▁｜>` (never emitted by the codec).
pub const PAD_ID: u32 = 2;
/// Id of [`DSML`].
pub const DSML_ID: u32 = 128793;
/// Id of [`THINK_OPEN`].
pub const THINK_OPEN_ID: u32 = 128798;
/// Id of [`THINK_CLOSE`].
pub const THINK_CLOSE_ID: u32 = 128799;
/// Id of [`USER`].
pub const USER_ID: u32 = 128803;
/// Id of [`ASSISTANT`].
pub const ASSISTANT_ID: u32 = 128804;
/// Vocabulary size of the V3.2 model's embedding (larger than the tokenizer's 128,815 ids).
pub const MODEL_VOCAB_SIZE: usize = 129280;
