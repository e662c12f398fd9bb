//! The strict completion parser: DeepSeek's `parse_message_from_completion_text`, accepting
//! and rejecting exactly what it does (spec §4), with typed errors carrying byte offsets.

use indexmap::IndexMap;

use crate::json::write_str;
use crate::tokens::{
    BOS, CALLS_CLOSE, DSML, EOS, INVOKE_START, PARAM_START, TC_START, THINK_CLOSE, THINK_OPEN,
};
use crate::{AssistantMessage, ThinkingMode, ToolCall};

/// Why a completion was rejected. Offsets are byte offsets into the UTF-8 completion text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text ended before the message did: more generated text could still make it valid
    /// (no `</think>` yet, no EOS yet, an unterminated parameter, half a tag).
    #[error("incomplete completion at byte {offset}: expected {expected}")]
    Incomplete {
        /// Where more text was needed (the end of the text).
        offset: usize,
        /// What was still expected.
        expected: &'static str,
    },
    /// The text can never become a valid message, whatever follows.
    #[error("malformed completion at byte {offset}: {reason}")]
    Malformed {
        /// Where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

impl ParseError {
    /// The byte offset the error names.
    pub fn offset(&self) -> usize {
        match self {
            ParseError::Incomplete { offset, .. } | ParseError::Malformed { offset, .. } => *offset,
        }
    }

    /// Stable label for counters (`parse.incomplete` / `parse.malformed`).
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Incomplete { .. } => "parse.incomplete",
            ParseError::Malformed { .. } => "parse.malformed",
        }
    }

    fn malformed(offset: usize, reason: impl Into<String>) -> Self {
        ParseError::Malformed { offset, reason: reason.into() }
    }
}

type PResult<T> = std::result::Result<T, ParseError>;

/// Byte offset of the first `needle` in `hay`: `str::find` semantics, with the memchr crate's
/// SIMD substring search (std's Two-Way setup dominated parsing short completions).
#[inline]
pub(crate) fn find(hay: &str, needle: &str) -> Option<usize> {
    match SEARCHED.iter().position(|m| *m == needle) {
        Some(i) => FINDERS[i].find(hay.as_bytes()),
        None => memchr::memmem::find(hay.as_bytes(), needle.as_bytes()),
    }
}

/// The strings the parsers search for again and again.
const SEARCHED: [&str; 13] = [
    BOS,
    EOS,
    THINK_OPEN,
    THINK_CLOSE,
    DSML,
    TC_START,
    CALLS_CLOSE,
    INVOKE_START,
    INVOKE_END,
    PARAM_START,
    PARAM_END,
    crate::tokens::CALLS_OPEN,
    crate::tokens::PARAM_CLOSE,
];

/// One prebuilt searcher per string in [`SEARCHED`]: building a `memmem` searcher costs more
/// than searching the few hundred bytes between two markers (it was 4 % of `validate`).
static FINDERS: std::sync::LazyLock<Vec<memchr::memmem::Finder<'static>>> =
    std::sync::LazyLock::new(|| {
        SEARCHED.iter().map(|m| memchr::memmem::Finder::new(m.as_bytes())).collect()
    });

/// The reference's `_read_until_stop`: the earliest occurrence at or after `from` of any of
/// `stops` (ties go to the earlier stop in the list). Returns (cursor after the match, start of
/// the match or end of text, which stop).
#[inline]
fn read_until(text: &str, from: usize, stops: &[&str]) -> (usize, usize, Option<usize>) {
    let hay = &text[from..];
    let mut best: Option<(usize, usize)> = None;
    for (k, stop) in stops.iter().enumerate() {
        let limit = best.map_or(hay.len(), |(p, _)| p);
        // Only search where an earlier match is still possible.
        let mut end = (limit + stop.len() - 1).min(hay.len());
        while !hay.is_char_boundary(end) {
            end += 1;
        }
        let window = &hay[..end];
        if let Some(p) = find(window, stop)
            && p < limit
        {
            best = Some((p, k));
        }
    }
    match best {
        Some((p, k)) => (from + p + stops[k].len(), from + p, Some(k)),
        None => (text.len(), text.len(), None),
    }
}

/// Python's `\s` (str patterns): Unicode White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Is `s` a proper prefix of `full` (so more text could complete it)?
fn proper_prefix(s: &str, full: &str) -> bool {
    s.len() < full.len() && full.starts_with(s)
}

/// Parse the text a model generated after the prompt (special tokens kept) into an assistant
/// message, exactly as DeepSeek's reference does (spec §4.1). Tool calls carry no ids.
///
/// ```
/// use agentgen_codec::{parse_completion, ParseError, ThinkingMode};
/// let m = parse_completion("Hi.<｜end▁of▁sentence｜>", ThinkingMode::Chat).expect("valid");
/// assert_eq!(m.content, "Hi.");
/// let e = parse_completion("Hi.", ThinkingMode::Chat).unwrap_err();
/// assert!(matches!(e, ParseError::Incomplete { offset: 3, .. }));
/// ```
pub fn parse_completion(text: &str, mode: ThinkingMode) -> PResult<AssistantMessage> {
    let mut reasoning = "";
    let mut cursor = 0;
    if mode == ThinkingMode::Thinking {
        let (next, at, stop) = read_until(text, 0, &[THINK_CLOSE, TC_START]);
        match stop {
            Some(0) => {}
            Some(_) => {
                return Err(ParseError::malformed(at, "tool-call block before </think>"));
            }
            None => {
                return Err(ParseError::Incomplete { offset: text.len(), expected: "</think>" });
            }
        }
        reasoning = &text[..at];
        cursor = next;
    }
    let content_start = cursor;
    let (next, at, stop) = read_until(text, cursor, &[EOS, TC_START]);
    let content = &text[content_start..at];
    cursor = next;
    let mut tool_calls = Vec::new();
    match stop {
        None => {
            return Err(ParseError::Incomplete {
                offset: text.len(),
                expected: "<｜end▁of▁sentence｜> or a tool-call block",
            });
        }
        Some(0) => {}
        Some(_) => {
            cursor = parse_tool_calls(text, cursor, &mut tool_calls)?;
            let (next, at, _) = read_until(text, cursor, &[EOS]);
            if at != cursor {
                let rest = &text[cursor..at];
                if at == text.len() && proper_prefix(rest, EOS) {
                    return Err(ParseError::Incomplete { offset: text.len(), expected: EOS });
                }
                return Err(ParseError::malformed(
                    cursor,
                    "unexpected text after the tool-call block",
                ));
            }
            cursor = next;
        }
    }
    if cursor != text.len() {
        return Err(ParseError::malformed(cursor, "unexpected text after the end of the message"));
    }
    for (which, part, start) in [("content", content, content_start), ("reasoning", reasoning, 0)] {
        for tok in [BOS, EOS, THINK_OPEN, THINK_CLOSE, DSML] {
            if let Some(p) = find(part, tok) {
                return Err(ParseError::malformed(
                    start + p,
                    format!("special token {tok} inside the {which}"),
                ));
            }
        }
    }
    Ok(AssistantMessage {
        content: content.to_owned(),
        reasoning_content: reasoning.to_owned(),
        tool_calls,
    })
}

const INVOKE_END: &str = "</｜DSML｜invoke";
const PARAM_END: &str = "/｜DSML｜parameter";

/// The reference's `parse_tool_calls`, from just after `\n\n<｜DSML｜function_calls`.
fn parse_tool_calls(text: &str, mut cursor: usize, calls: &mut Vec<ToolCall>) -> PResult<usize> {
    while cursor < text.len() {
        let (next, at, stop) = read_until(text, cursor, &[INVOKE_START, CALLS_CLOSE]);
        let gap = &text[cursor..at];
        if gap != ">\n" {
            if stop.is_none() && proper_prefix(gap, ">\n") {
                return Err(ParseError::Incomplete { offset: text.len(), expected: ">\\n" });
            }
            return Err(ParseError::malformed(cursor, "expected \">\\n\" after a tool-call tag"));
        }
        match stop {
            Some(1) => return Ok(next),
            Some(_) => {}
            None => {
                return Err(ParseError::Incomplete {
                    offset: text.len(),
                    expected: "<｜DSML｜invoke or </｜DSML｜function_calls>",
                });
            }
        }
        cursor = next;
        let (next, at, mut stop) = read_until(text, cursor, &[PARAM_START, INVOKE_END]);
        let name = invoke_name(&text[cursor..at]).ok_or_else(|| {
            if stop.is_none() && name_could_continue(&text[cursor..at]) {
                ParseError::Incomplete { offset: text.len(), expected: "name=\"...\">" }
            } else {
                ParseError::malformed(cursor, "invalid invoke tag: expected name=\"NAME\">")
            }
        })?;
        cursor = next;
        let mut args: IndexMap<&str, (&str, bool)> = IndexMap::new();
        while stop == Some(0) {
            let (next, at, found) = read_until(text, cursor, &[PARAM_END]);
            if found.is_none() {
                return Err(ParseError::Incomplete {
                    offset: text.len(),
                    expected: "</｜DSML｜parameter>",
                });
            }
            let (key, is_str, value) = param_parts(&text[cursor..at]).ok_or_else(|| {
                ParseError::malformed(
                    cursor,
                    "invalid parameter tag: expected name=\"KEY\" string=\"true|false\">VALUE<",
                )
            })?;
            if args.contains_key(key) {
                return Err(ParseError::malformed(cursor, format!("duplicate parameter {key:?}")));
            }
            args.insert(key, (value, is_str));
            cursor = next;
            let (next, at, found) = read_until(text, cursor, &[PARAM_START, INVOKE_END]);
            let gap = &text[cursor..at];
            if gap != ">\n" {
                if found.is_none() && proper_prefix(gap, ">\n") {
                    return Err(ParseError::Incomplete { offset: text.len(), expected: ">\\n" });
                }
                return Err(ParseError::malformed(cursor, "expected \">\\n\" after a parameter"));
            }
            cursor = next;
            stop = found;
        }
        let mut arguments = String::with_capacity(2 + args.len() * 16);
        arguments.push('{');
        for (i, (key, (value, is_str))) in args.iter().enumerate() {
            if i > 0 {
                arguments.push_str(", ");
            }
            write_str(key, &mut arguments);
            arguments.push_str(": ");
            if *is_str {
                write_str(value, &mut arguments);
            } else {
                arguments.push_str(value);
            }
        }
        arguments.push('}');
        calls.push(ToolCall { id: None, name: name.to_owned(), arguments });
    }
    Ok(cursor)
}

/// `^\s*name="(.*?)">\n$` (DOTALL; Python's `$` also matches before one final newline).
fn invoke_name(s: &str) -> Option<&str> {
    let rest = s.trim_start_matches(is_py_space).strip_prefix("name=\"")?;
    rest.strip_suffix("\">\n").or_else(|| rest.strip_suffix("\">\n\n"))
}

/// Could more text turn this (unterminated) invoke header into a valid one?
fn name_could_continue(s: &str) -> bool {
    let rest = s.trim_start_matches(is_py_space);
    rest.starts_with("name=\"") || "name=\"".starts_with(rest)
}

/// `^ name="(.*?)" string="(true|false)">(.*?)<$` (DOTALL): key, is-string, value.
fn param_parts(s: &str) -> Option<(&str, bool, &str)> {
    let rest = s.strip_prefix(" name=\"")?;
    let body = rest.strip_suffix("<\n").or_else(|| rest.strip_suffix('<'))?;
    // KEY is the shortest prefix followed by `" string="true">` or `" string="false">`.
    let mut from = 0;
    loop {
        let p = from + find(&body[from..], "\" string=\"")?;
        let after = &body[p + 10..];
        if let Some(v) = after.strip_prefix("true\">") {
            return Some((&body[..p], true, v));
        }
        if let Some(v) = after.strip_prefix("false\">") {
            return Some((&body[..p], false, v));
        }
        from = p + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_regex_semantics() {
        assert_eq!(param_parts(" name=\"k\" string=\"true\">v<"), Some(("k", true, "v")));
        assert_eq!(param_parts(" name=\"k\" string=\"false\">[1]<\n"), Some(("k", false, "[1]")));
        assert_eq!(
            param_parts(" name=\"a\" string=\"x\">\" string=\"true\">v<"),
            Some(("a\" string=\"x\">", true, "v"))
        );
        assert_eq!(param_parts("  name=\"k\" string=\"true\">v<"), None);
        assert_eq!(param_parts(" name=\"k\" string=\"yes\">v<"), None);
        assert_eq!(param_parts(" name=\"k\" string=\"true\">v"), None);
    }

    #[test]
    fn invoke_regex_semantics() {
        assert_eq!(invoke_name(" \n name=\"f\">\n"), Some("f"));
        assert_eq!(invoke_name(" name=\"f\">\n\n"), Some("f"));
        assert_eq!(invoke_name(" name=\"f\">\n\n\n"), None);
        assert_eq!(invoke_name(" name=\"a\">\nb\">\n"), Some("a\">\nb"));
        assert_eq!(invoke_name(" name=f>\n"), None);
        assert_eq!(invoke_name("\u{1c}name=\"f\">\n"), Some("f"));
    }

    #[test]
    fn offsets_point_at_the_problem() {
        let e = parse_completion("a</think>b<｜end▁of▁sentence｜>x", ThinkingMode::Thinking);
        assert_eq!(e.unwrap_err().offset(), "a</think>b<｜end▁of▁sentence｜>".len());
        let e = parse_completion("a<think>b</think>c<｜end▁of▁sentence｜>", ThinkingMode::Thinking);
        assert_eq!(e.unwrap_err().offset(), 1);
    }
}
