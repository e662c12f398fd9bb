//! Lenient parsing: repair common model slips, then parse strictly; report every repair.
//!
//! Strict parsing ([`parse_completion`]) stays the default and the conformance mode. The
//! lenient parser first tries it; only if that fails does it rewrite the text in one
//! left-to-right pass and parse the result strictly. Repairs:
//!
//! | code | slip | repair |
//! |---|---|---|
//! | `duplicate_think_open` | thinking mode, the completion starts with `<think>` again | drop it |
//! | `missing_think_close` | thinking mode, no `</think>` before the tool block / EOS / end | insert `</think>` there (all text becomes reasoning, content is empty) |
//! | `calls_block_spacing` | the tool block is not preceded by exactly `\n\n` | trim trailing whitespace of the content, put `\n\n` |
//! | `tag_whitespace` | whitespace other than one `\n` between DSML tags | replace it by `\n` |
//! | `whitespace_before_eos` | whitespace between `</｜DSML｜function_calls>` and EOS | drop it |
//! | `whitespace_after_eos` | whitespace after EOS | drop it |
//! | `missing_eos` | no EOS (and no tool block) at the end | append EOS |
//!
//! Offsets are byte offsets into the original text.

use serde::Serialize;

use crate::parse::parse_completion;
use crate::tokens::{
    CALLS_CLOSE, EOS, INVOKE_CLOSE, INVOKE_START, PARAM_CLOSE, PARAM_START, THINK_CLOSE, THINK_OPEN,
};
use crate::{AssistantMessage, ParseError, ThinkingMode};

/// Which slip was repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepairKind {
    /// A second `<think>` at the start of a thinking-mode completion was dropped.
    DuplicateThinkOpen,
    /// `</think>` was missing and was inserted.
    MissingThinkClose,
    /// The tool block was not preceded by exactly two newlines.
    CallsBlockSpacing,
    /// Whitespace between DSML tags was normalised to one newline.
    TagWhitespace,
    /// Whitespace between the tool block and EOS was dropped.
    WhitespaceBeforeEos,
    /// Whitespace after EOS was dropped.
    WhitespaceAfterEos,
    /// EOS was missing and was appended.
    MissingEos,
}

impl RepairKind {
    /// The stable label (`"missing_eos"`, ...).
    pub fn code(self) -> &'static str {
        match self {
            RepairKind::DuplicateThinkOpen => "duplicate_think_open",
            RepairKind::MissingThinkClose => "missing_think_close",
            RepairKind::CallsBlockSpacing => "calls_block_spacing",
            RepairKind::TagWhitespace => "tag_whitespace",
            RepairKind::WhitespaceBeforeEos => "whitespace_before_eos",
            RepairKind::WhitespaceAfterEos => "whitespace_after_eos",
            RepairKind::MissingEos => "missing_eos",
        }
    }
}

/// One repair: what and where (byte offset into the original text). Serializes as
/// `{"code": "missing_eos", "offset": 12}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Repair {
    /// What was repaired.
    #[serde(rename = "code")]
    pub kind: RepairKind,
    /// Where, in the original text.
    pub offset: usize,
}

impl Repair {
    /// The stable label of the repair.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// Parse `text`, repairing common slips (see the module table). A text the strict parser
/// accepts comes back unchanged with no repairs; a text that stays invalid after the repairs
/// gets the strict parser's error for the original text.
///
/// ```
/// use agentgen_codec::{parse_lenient, ThinkingMode};
/// let (m, repairs) = parse_lenient("Paris.", ThinkingMode::Chat).expect("repairable");
/// assert_eq!(m.content, "Paris.");
/// assert_eq!(repairs[0].code(), "missing_eos");
/// ```
pub fn parse_lenient(
    text: &str,
    mode: ThinkingMode,
) -> Result<(AssistantMessage, Vec<Repair>), ParseError> {
    let strict_err = match parse_completion(text, mode) {
        Ok(m) => return Ok((m, Vec::new())),
        Err(e) => e,
    };
    let (fixed, repairs) = repair(text, mode);
    if repairs.is_empty() {
        return Err(strict_err);
    }
    match parse_completion(&fixed, mode) {
        Ok(m) => Ok((m, repairs)),
        Err(_) => Err(strict_err),
    }
}

const CALLS_START: &str = "<｜DSML｜function_calls";

fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// One left-to-right rewriting pass.
fn repair(text: &str, mode: ThinkingMode) -> (String, Vec<Repair>) {
    let mut out = String::with_capacity(text.len() + 32);
    let mut repairs = Vec::new();
    let mut fix = |kind, offset| repairs.push(Repair { kind, offset });
    let mut cur = 0;
    let block = crate::parse::find(text, CALLS_START);
    let eos = crate::parse::find(text, EOS);
    if mode == ThinkingMode::Thinking {
        let lead = text.len() - text.trim_start_matches(is_ws).len();
        if text[lead..].starts_with(THINK_OPEN) {
            fix(RepairKind::DuplicateThinkOpen, lead);
            cur = lead + THINK_OPEN.len();
        }
        let close = crate::parse::find(&text[cur..], THINK_CLOSE).map(|p| cur + p);
        let first_other = [block, eos].into_iter().flatten().min();
        match close {
            Some(c) if first_other.is_none_or(|o| c < o) => {
                out.push_str(&text[cur..c + THINK_CLOSE.len()]);
                cur = c + THINK_CLOSE.len();
            }
            _ => {
                let stop = first_other.unwrap_or(text.len());
                // Keep the whitespace before a tool block out of the reasoning.
                let at = if Some(stop) == block {
                    cur + text[cur..stop].trim_end_matches(is_ws).len()
                } else {
                    stop
                };
                fix(RepairKind::MissingThinkClose, at);
                out.push_str(&text[cur..at]);
                out.push_str(THINK_CLOSE);
                cur = at;
            }
        }
    }
    let block = crate::parse::find(&text[cur..], CALLS_START).map(|p| cur + p);
    let eos = crate::parse::find(&text[cur..], EOS).map(|p| cur + p);
    match (block, eos) {
        (Some(b), e) if e.is_none_or(|e| b < e) => {
            let content = &text[cur..b];
            if content.ends_with("\n\n") {
                out.push_str(content);
            } else {
                fix(RepairKind::CallsBlockSpacing, b);
                out.push_str(content.trim_end_matches(is_ws));
                out.push_str("\n\n");
            }
            cur = repair_block(text, b, &mut out, &mut fix);
            if cur < text.len() {
                let gap_end =
                    cur + (text.len() - cur - text[cur..].trim_start_matches(is_ws).len());
                if gap_end > cur && text[gap_end..].starts_with(EOS) {
                    fix(RepairKind::WhitespaceBeforeEos, cur);
                    cur = gap_end;
                }
                if text[cur..].starts_with(EOS) {
                    out.push_str(EOS);
                    cur += EOS.len();
                    trailing(text, cur, &mut out, &mut fix);
                    cur = text.len();
                }
                out.push_str(&text[cur..]);
            }
        }
        (_, Some(e)) => {
            out.push_str(&text[cur..e + EOS.len()]);
            trailing(text, e + EOS.len(), &mut out, &mut fix);
        }
        (_, None) => {
            out.push_str(&text[cur..]);
            fix(RepairKind::MissingEos, text.len());
            out.push_str(EOS);
        }
    }
    (out, repairs)
}

/// After EOS: drop trailing whitespace, keep anything else (the strict parse rejects it).
fn trailing(text: &str, at: usize, out: &mut String, fix: &mut impl FnMut(RepairKind, usize)) {
    let rest = &text[at..];
    if !rest.is_empty() && rest.trim_matches(is_ws).is_empty() {
        fix(RepairKind::WhitespaceAfterEos, at);
    } else {
        out.push_str(rest);
    }
}

/// Copy the tool block starting at `start` (at `<｜DSML｜function_calls`), normalising the
/// whitespace between tags to one `\n`. Returns the cursor after the block (after
/// `</｜DSML｜function_calls>`), or the end of the text when the block is truncated or has a
/// shape this pass does not understand (then the rest is copied verbatim).
fn repair_block(
    text: &str,
    start: usize,
    out: &mut String,
    fix: &mut impl FnMut(RepairKind, usize),
) -> usize {
    let mut cur = start;
    // Copies text[cur..end] then normalises the whitespace that follows it.
    let mut step = |cur: &mut usize, end: usize, out: &mut String| {
        out.push_str(&text[*cur..end]);
        let ws_len = text[end..].len() - text[end..].trim_start_matches(is_ws).len();
        let ws = &text[end..end + ws_len];
        *cur = end + ws_len;
        if ws != "\n" && text[*cur..].starts_with('<') {
            fix(RepairKind::TagWhitespace, end);
            out.push('\n');
        } else {
            out.push_str(ws);
        }
    };
    let open = CALLS_START.len() + 1;
    if !text[cur..].starts_with("<｜DSML｜function_calls>") {
        out.push_str(&text[cur..]);
        return text.len();
    }
    let end = cur + open;
    step(&mut cur, end, out);
    loop {
        let rest = &text[cur..];
        if rest.starts_with(CALLS_CLOSE) {
            out.push_str(CALLS_CLOSE);
            return cur + CALLS_CLOSE.len();
        } else if rest.starts_with(INVOKE_START) {
            let Some(end) = crate::parse::find(rest, "\">").map(|p| cur + p + 2) else { break };
            step(&mut cur, end, out);
        } else if rest.starts_with(PARAM_START) {
            let Some(end) =
                crate::parse::find(rest, PARAM_CLOSE).map(|p| cur + p + PARAM_CLOSE.len())
            else {
                break;
            };
            step(&mut cur, end, out);
        } else if rest.starts_with(INVOKE_CLOSE) {
            let end = cur + INVOKE_CLOSE.len();
            step(&mut cur, end, out);
        } else {
            break;
        }
    }
    out.push_str(&text[cur..]);
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str, mode: ThinkingMode) -> Vec<&'static str> {
        match parse_lenient(text, mode) {
            Ok((_, r)) => r.iter().map(Repair::code).collect(),
            Err(e) => vec![if e.code() == "parse.incomplete" { "ERR_INCOMPLETE" } else { "ERR" }],
        }
    }

    #[test]
    fn repairs_common_slips() {
        use ThinkingMode::*;
        assert_eq!(codes("a</think>b<｜end▁of▁sentence｜>", Thinking), Vec::<&str>::new());
        assert_eq!(codes("a</think>b", Thinking), ["missing_eos"]);
        assert_eq!(
            codes("<think>a</think>b<｜end▁of▁sentence｜>", Thinking),
            ["duplicate_think_open"]
        );
        assert_eq!(codes("reasoning only<｜end▁of▁sentence｜>", Thinking), ["missing_think_close"]);
        assert_eq!(codes("b<｜end▁of▁sentence｜>\n", Chat), ["whitespace_after_eos"]);
        let block = "x\n<｜DSML｜function_calls>  \n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">v</｜DSML｜parameter>\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls> <｜end▁of▁sentence｜>";
        assert_eq!(
            codes(block, Chat),
            ["calls_block_spacing", "tag_whitespace", "tag_whitespace", "whitespace_before_eos"]
        );
        let (m, _) = parse_lenient(block, Chat).expect("repaired");
        assert_eq!(m.content, "x");
        assert_eq!(m.tool_calls[0].arguments, r#"{"a": "v"}"#);
        let r = "think\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
        let (m, rep) = parse_lenient(r, Thinking).expect("repaired");
        assert_eq!((m.reasoning_content.as_str(), m.content.as_str()), ("think", ""));
        assert_eq!(rep[0].kind, RepairKind::MissingThinkClose);
        // Still broken after repairs: the strict error of the original.
        assert_eq!(codes("a<｜end▁of▁sentence｜>junk", Chat), ["ERR"]);
    }
}
