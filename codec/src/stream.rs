//! The streaming parser: feed generated text in chunks, learn when generation can stop.

use crate::parse::parse_completion;
use crate::tokens::{CALLS_CLOSE, EOS};
use crate::{AssistantMessage, ParseError, ThinkingMode};

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
}
