//! The marker strings the pipeline looks for in sampled text (codec spec §1). Kept here as
//! plain constants so the policies do not need the codec's tokenizer to recognise them.

pub const EOS: &str = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>";
pub const THINK_CLOSE: &str = "</think>";
pub const CALLS_OPEN: &str = "<\u{ff5c}DSML\u{ff5c}function_calls>";
pub const CALLS_CLOSE: &str = "</\u{ff5c}DSML\u{ff5c}function_calls>";
/// Token id of EOS in the V3.2 vocabulary.
pub const EOS_ID: u32 = 1;
