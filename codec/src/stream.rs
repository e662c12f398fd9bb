//! The streaming parser: feed generated text in chunks, learn when generation can stop, what
//! of the reasoning and content can be shown already, and what message the text makes.

use crate::parse::parse_completion;
use crate::stop::partial_suffix;
use crate::tokens::{CALLS_CLOSE, EOS, TC_START, THINK_CLOSE};
use crate::{AssistantMessage, ParseError, ThinkingMode, parse_lenient};

/// What the stream has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamStatus {
    /// Keep generating.
    Continue,
    /// A tool-call block has closed (`</｜DSML｜function_calls>` ending a block that parses):
    /// the only valid continuation is EOS, so generation may stop here.
    ToolCallsClosed,
    /// EOS arrived; the message is over.
    Eos,
}

/// Incremental parser over generated text. Its [`finish`](StreamParser::finish) result equals
/// [`parse_completion`] of the concatenated chunks, for every chunking.
///
/// ```
/// use agentgen_codec::{StreamParser, StreamStatus, ThinkingMode};
/// let mut p = StreamParser::new(ThinkingMode::Chat);
/// assert_eq!(p.push("Hel"), StreamStatus::Continue);
/// assert_eq!(p.push("lo<｜end▁of▁sen"), StreamStatus::Continue);
/// assert_eq!(p.push("tence｜>"), StreamStatus::Eos);
/// assert_eq!(p.finish().expect("valid").content, "Hello");
/// ```
#[derive(Debug, Clone)]
pub struct StreamParser {
    mode: ThinkingMode,
    buf: String,
    status: StreamStatus,
}

impl StreamParser {
    /// An empty stream for `mode`.
    pub fn new(mode: ThinkingMode) -> Self {
        StreamParser { mode, buf: String::new(), status: StreamStatus::Continue }
    }

    /// Append a chunk; returns the status after it. Once `Eos` or `ToolCallsClosed` is
    /// reported it stays reported (text pushed afterwards makes `finish` reject the message,
    /// except EOS after a closed tool block, which moves the status to `Eos`).
    pub fn push(&mut self, chunk: &str) -> StreamStatus {
        if self.status == StreamStatus::Eos {
            self.buf.push_str(chunk);
            return self.status;
        }
        let old = self.buf.len();
        self.buf.push_str(chunk);
        // A marker may straddle the chunk boundary: rescan the last few old bytes.
        let longest = EOS.len().max(CALLS_CLOSE.len());
        let mut from = old.saturating_sub(longest - 1);
        while !self.buf.is_char_boundary(from) {
            from -= 1;
        }
        let region = &self.buf[from..];
        let eos_at = crate::parse::find(region, EOS).map(|p| from + p);
        if self.status == StreamStatus::Continue {
            let mut search = from;
            while let Some(p) = crate::parse::find(&self.buf[search..], CALLS_CLOSE) {
                let end = search + p + CALLS_CLOSE.len();
                if eos_at.is_some_and(|e| e < search + p) {
                    break;
                }
                // The close tag also appears in parameter values; only a real block close
                // leaves a prefix that parses as a whole message.
                if end > old && parse_completion(&self.buf[..end], self.mode).is_ok() {
                    self.status = StreamStatus::ToolCallsClosed;
                    break;
                }
                search = end;
            }
        }
        if eos_at.is_some() {
            self.status = StreamStatus::Eos;
        }
        self.status
    }

    /// The status after the last push.
    pub fn status(&self) -> StreamStatus {
        self.status
    }

    /// Everything pushed so far.
    pub fn text(&self) -> &str {
        &self.buf
    }

    /// Parse everything pushed (strictly, as [`parse_completion`]).
    pub fn finish(self) -> Result<AssistantMessage, ParseError> {
        parse_completion(&self.buf, self.mode)
    }

    /// The reasoning and content that can be shown now: nothing that could still turn into
    /// `</think>`, EOS or the start of a tool-call block (`\n\n<｜DSML｜function_calls`) is
    /// shown, and nothing after EOS or that start. Each call's sections extend the previous
    /// call's (pushing only appends).
    ///
    /// ```
    /// use agentgen_codec::{StreamParser, ThinkingMode};
    /// let mut p = StreamParser::new(ThinkingMode::Thinking);
    /// p.push("I think</th");
    /// assert_eq!((p.sections().reasoning, p.sections().content), ("I think", ""));
    /// p.push("ink>Hello\n");
    /// assert_eq!((p.sections().reasoning, p.sections().content), ("I think", "Hello"));
    /// ```
    pub fn sections(&self) -> Sections<'_> {
        sections(&self.buf, self.mode)
    }

    /// The message the text pushed so far makes, whatever it is (for a stream that ended, at
    /// EOS or early): see [`parse_best_effort`].
    pub fn message(&self) -> AssistantMessage {
        parse_best_effort(&self.buf, self.mode)
    }
}

/// Sections of a message seen so far ([`StreamParser::sections`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sections<'a> {
    /// Reasoning that can be shown now (thinking mode only).
    pub reasoning: &'a str,
    /// Content that can be shown now.
    pub content: &'a str,
}

fn sections(text: &str, mode: ThinkingMode) -> Sections<'_> {
    let mut rest = text;
    let mut out = Sections::default();
    if mode == ThinkingMode::Thinking {
        match crate::parse::find(text, THINK_CLOSE) {
            Some(p) => {
                out.reasoning = &text[..p];
                rest = &text[p + THINK_CLOSE.len()..];
            }
            None => {
                let hold = partial_suffix(text, THINK_CLOSE);
                out.reasoning = &text[..text.len() - hold];
                return out;
            }
        }
    }
    let end = [crate::parse::find(rest, EOS), crate::parse::find(rest, TC_START)]
        .into_iter()
        .flatten()
        .min();
    out.content = match end {
        Some(p) => &rest[..p],
        None => {
            let hold = partial_suffix(rest, EOS).max(partial_suffix(rest, TC_START));
            &rest[..rest.len() - hold]
        }
    };
    out
}

/// The assistant message of a completion, whatever shape it is in: the strict parse; else the
/// lenient one ([`parse_lenient`]); else a plain split (reasoning up to `</think>` in thinking
/// mode, the rest, less a final EOS, as content), so a model that breaks the format still gets
/// its text back. A completion that ends at the close of a tool-call block (generation stopped
/// there, e.g. by a stop string) is read as if EOS followed, the only valid continuation.
///
/// ```
/// use agentgen_codec::{ThinkingMode, parse_best_effort};
/// let m = parse_best_effort("thought</think>answer", ThinkingMode::Thinking);
/// assert_eq!((m.reasoning_content.as_str(), m.content.as_str()), ("thought", "answer"));
/// ```
pub fn parse_best_effort(text: &str, mode: ThinkingMode) -> AssistantMessage {
    let with_eos;
    let mut t = text;
    if t.ends_with(CALLS_CLOSE) {
        with_eos = format!("{t}{EOS}");
        t = &with_eos;
    }
    if let Ok(m) = parse_completion(t, mode) {
        return m;
    }
    if let Ok((m, _)) = parse_lenient(t, mode) {
        return m;
    }
    let t = t.strip_suffix(EOS).unwrap_or(t);
    let (reasoning, content) = match mode {
        ThinkingMode::Thinking => match crate::parse::find(t, THINK_CLOSE) {
            Some(p) => (&t[..p], &t[p + THINK_CLOSE.len()..]),
            None => (t, ""),
        },
        ThinkingMode::Chat => ("", t),
    };
    AssistantMessage {
        content: content.to_owned(),
        reasoning_content: reasoning.to_owned(),
        tool_calls: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str, mode: ThinkingMode) -> (String, String) {
        let s = sections(text, mode);
        (s.reasoning.to_owned(), s.content.to_owned())
    }

    #[test]
    fn sections_hold_back_markers() {
        let t = ThinkingMode::Thinking;
        assert_eq!(shown("I think</th", t), ("I think".into(), String::new()));
        assert_eq!(shown("R</think>Hello\n", t), ("R".into(), "Hello".into()));
        assert_eq!(shown("R</think>Hi\n\n<｜DSML｜function_calls>\n", t).1, "Hi");
        assert_eq!(shown("Hi<｜end▁of▁sentence｜>", ThinkingMode::Chat).1, "Hi");
        assert_eq!(shown("Hi<｜end▁of", ThinkingMode::Chat).1, "Hi");
        // Look-alikes that can no longer become a marker are shown.
        assert_eq!(shown("a </thin b", t).0, "a </thin b");
        assert_eq!(shown("x <｜end y", ThinkingMode::Chat).1, "x <｜end y");
    }

    /// Shown sections only grow, and never show what the final message does not have.
    #[test]
    fn sections_are_prefixes_of_the_final_message() {
        let texts = [
            (ThinkingMode::Thinking, "Let me see.</think>It is 4.<｜end▁of▁sentence｜>"),
            (
                ThinkingMode::Thinking,
                "Look up.</think>Checking.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n\
                 <｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜parameter>\n\
                 </｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>",
            ),
            (ThinkingMode::Chat, "Grüße </thi 世界 \n\n<｜DSML <｜end▁of▁sentence｜>"),
        ];
        for (mode, text) in texts {
            let whole = parse_completion(text, mode).expect("fixture parses");
            let mut p = StreamParser::new(mode);
            let (mut r, mut c) = (0, 0);
            for ch in text.chars() {
                p.push(ch.encode_utf8(&mut [0; 4]));
                let s = p.sections();
                assert!(s.reasoning.len() >= r && s.content.len() >= c, "{text:?}");
                (r, c) = (s.reasoning.len(), s.content.len());
                assert!(whole.reasoning_content.starts_with(s.reasoning), "{:?}", s.reasoning);
                assert!(whole.content.starts_with(s.content), "{:?}", s.content);
            }
            assert_eq!((r, c), (whole.reasoning_content.len(), whole.content.len()), "{text:?}");
            assert_eq!(p.message(), whole);
        }
    }

    #[test]
    fn best_effort_falls_back() {
        let m = parse_best_effort("thought</think>answer", ThinkingMode::Thinking);
        assert_eq!((m.reasoning_content.as_str(), m.content.as_str()), ("thought", "answer"));
        let m = parse_best_effort("only thoughts", ThinkingMode::Thinking);
        assert_eq!((m.reasoning_content.as_str(), m.content.as_str()), ("only thoughts", ""));
        let m = parse_best_effort("plain<｜end▁of▁sentence｜>", ThinkingMode::Chat);
        assert_eq!(m.content, "plain");
        // Stopped at the block close: read as if EOS followed.
        let call = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n\
                    </｜DSML｜function_calls>";
        let m = parse_best_effort(&format!("Go.{call}"), ThinkingMode::Chat);
        assert_eq!((m.content.as_str(), m.tool_calls.len()), ("Go.", 1));
    }
}
