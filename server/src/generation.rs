//! Driving one choice: incremental detokenization, server-side stop strings, and the views
//! the two endpoints take of the generated text (plain text; reasoning / content / tool calls).

use agentgen_codec::tokens::{CALLS_CLOSE, EOS, TC_START, THINK_CLOSE};
use agentgen_codec::{AssistantMessage, ThinkingMode, Tokenizer, parse_completion, parse_lenient};
use agentgen_inference::{FinishReason, TokenEvent};

use crate::backend::Events;

/// Turns sampled ids into text piece by piece. A token that ends inside a UTF-8 character
/// yields nothing until the character completes (the TGI scheme: decode a short window and
/// emit only what grew and does not end in U+FFFD).
pub struct Detok {
    tokenizer: &'static Tokenizer,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detok {
    /// An empty decoder.
    pub fn new(tokenizer: &'static Tokenizer) -> Self {
        Self { tokenizer, ids: Vec::new(), prefix: 0, read: 0 }
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids).unwrap_or_default()
    }

    /// Add one token; returns the text it completes (maybe empty).
    pub fn push(&mut self, id: u32) -> String {
        self.ids.push(id);
        let prev = self.decode(&self.ids[self.prefix..self.read]);
        let cur = self.decode(&self.ids[self.prefix..]);
        if cur.len() > prev.len() && !cur.ends_with('\u{FFFD}') && cur.starts_with(prev.as_str()) {
            let delta = cur[prev.len()..].to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            delta
        } else {
            String::new()
        }
    }

    /// Whatever is still held back (an incomplete character at the end, decoded lossily).
    pub fn flush(&mut self) -> String {
        let prev = self.decode(&self.ids[self.prefix..self.read]);
        let cur = self.decode(&self.ids[self.prefix..]);
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        match cur.strip_prefix(prev.as_str()) {
            Some(rest) => rest.to_owned(),
            None => String::new(),
        }
    }
}

/// Why a choice ended, in OpenAI terms before the tool-call rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// EOS, a stop token, or the model's text ended.
    Stop,
    /// `max_tokens`.
    Length,
    /// A stop string matched at this byte range of the text.
    StopString {
        /// Start of the match.
        start: usize,
        /// End of the match.
        end: usize,
    },
}

/// One choice in progress: the backend's events folded into text, ids and logprobs.
pub struct ChoiceRun {
    rx: Option<Events>,
    detok: Detok,
    stops: Vec<String>,
    /// Decoded text of every sampled token (special tokens kept; cut after a stop string).
    pub text: String,
    /// Sampled ids.
    pub ids: Vec<u32>,
    /// Logprob of each sampled id.
    pub logprobs: Vec<f32>,
    /// Byte offset in `text` where each token's text starts.
    pub offsets: Vec<usize>,
    /// Set once the choice is over.
    pub finish: Option<Finish>,
    /// Prompt tokens the backend reported (or the request's count).
    pub prompt_tokens: usize,
}

/// A step of [`ChoiceRun::next`].
pub enum Progress {
    /// More text may have arrived.
    Token,
    /// The choice is over (`finish` is set).
    Done,
}

impl ChoiceRun {
    /// Follow `rx`; `stops` are matched on the decoded text.
    pub fn new(
        rx: Events,
        tokenizer: &'static Tokenizer,
        stops: Vec<String>,
        prompt_tokens: usize,
    ) -> Self {
        Self {
            rx: Some(rx),
            detok: Detok::new(tokenizer),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            ids: Vec::new(),
            logprobs: Vec::new(),
            offsets: Vec::new(),
            finish: None,
            prompt_tokens,
        }
    }

    /// Wait for the next event. `Err` carries a backend failure message.
    pub async fn next(&mut self) -> Result<Progress, String> {
        if self.finish.is_some() {
            return Ok(Progress::Done);
        }
        let Some(rx) = self.rx.as_mut() else { return Ok(Progress::Done) };
        match rx.recv().await {
            Some(TokenEvent::Token { id, logprob }) => {
                let before = self.text.len();
                self.offsets.push(before);
                self.ids.push(id);
                self.logprobs.push(logprob);
                let delta = self.detok.push(id);
                self.text.push_str(&delta);
                if let Some((start, end)) = self.find_stop(before) {
                    self.text.truncate(end);
                    self.end(Finish::StopString { start, end });
                    return Ok(Progress::Done);
                }
                Ok(Progress::Token)
            }
            Some(TokenEvent::Done(c)) => {
                self.prompt_tokens = c.prompt_tokens;
                let tail = self.detok.flush();
                self.text.push_str(&tail);
                let before = self.text.len() - tail.len();
                if let Some((start, end)) = self.find_stop(before) {
                    self.text.truncate(end);
                    self.end(Finish::StopString { start, end });
                } else {
                    self.end(match c.finish_reason {
                        FinishReason::Length => Finish::Length,
                        _ => Finish::Stop,
                    });
                }
                Ok(Progress::Done)
            }
            Some(TokenEvent::Error(e)) => {
                self.rx = None;
                Err(e)
            }
            None => {
                self.rx = None;
                Err("the backend stopped before finishing".into())
            }
        }
    }

    /// Run to the end.
    pub async fn run(mut self) -> Result<Self, String> {
        loop {
            if let Progress::Done = self.next().await? {
                return Ok(self);
            }
        }
    }

    fn end(&mut self, f: Finish) {
        self.finish = Some(f);
        // Dropping the receiver cancels the sequence in the engine.
        self.rx = None;
    }

    /// The earliest stop string in the text that overlaps the new bytes from `before`.
    fn find_stop(&self, before: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for s in &self.stops {
            let mut from = before.saturating_sub(s.len() - 1);
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(p) = self.text[from..].find(s.as_str()) {
                let start = from + p;
                if best.is_none_or(|(b, _)| start < b) {
                    best = Some((start, start + s.len()));
                }
            }
        }
        best
    }

    /// Bytes at the end of `text` that could be the start of a stop string (held back while
    /// streaming).
    pub fn stop_holdback(&self, text: &str) -> usize {
        if self.finish.is_some() {
            return 0;
        }
        self.stops.iter().map(|s| partial_suffix(text, s)).max().unwrap_or(0)
    }

    /// Number of tokens whose text starts before byte `len` (all of them when `len` is the
    /// whole text).
    pub fn tokens_within(&self, len: usize) -> usize {
        if len >= self.text.len() {
            return self.ids.len();
        }
        self.offsets.iter().take_while(|&&o| o < len).count()
    }
}

/// Length of the longest proper prefix of `pat` that `text` ends with.
pub fn partial_suffix(text: &str, pat: &str) -> usize {
    let max = pat.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && pat.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

/// The text `/v1/completions` returns for a finished or in-progress choice.
pub fn completion_text(run: &ChoiceRun, include_stop: bool, skip_special: bool) -> &str {
    let mut t = run.text.as_str();
    if let Some(Finish::StopString { start, .. }) = run.finish
        && !include_stop
    {
        t = &t[..start];
    }
    if skip_special && let Some(s) = t.strip_suffix(EOS) {
        t = s;
    }
    t
}

/// Sections of a chat completion seen so far, for streaming deltas.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChatSections<'a> {
    /// Reasoning that can be shown now.
    pub reasoning: &'a str,
    /// Content that can be shown now.
    pub content: &'a str,
}

/// Split streamed text into what is safe to show as reasoning and content now: nothing that
/// could still turn into `</think>`, EOS, a tool-call block or a stop string is shown early.
pub fn chat_sections<'a>(
    text: &'a str,
    mode: ThinkingMode,
    stop_holdback: usize,
) -> ChatSections<'a> {
    let mut rest = text;
    let mut out = ChatSections::default();
    if mode == ThinkingMode::Thinking {
        match text.find(THINK_CLOSE) {
            Some(p) => {
                out.reasoning = &text[..p];
                rest = &text[p + THINK_CLOSE.len()..];
            }
            None => {
                let hold = partial_suffix(text, THINK_CLOSE).max(stop_holdback);
                out.reasoning = &text[..floor_boundary(text, text.len() - hold.min(text.len()))];
                return out;
            }
        }
    }
    let end = [rest.find(EOS), rest.find(TC_START)].into_iter().flatten().min();
    out.content = match end {
        Some(p) => &rest[..p],
        None => {
            let hold = partial_suffix(rest, EOS)
                .max(partial_suffix(rest, TC_START))
                .max(stop_holdback)
                .min(rest.len());
            &rest[..floor_boundary(rest, rest.len() - hold)]
        }
    };
    out
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The final assistant message of a chat choice: strict parse, then the lenient repairs, then
/// a plain split (reasoning up to `</think>`, the rest as content) so a model that breaks the
/// format still gets its text back. The bool says whether the strict parser accepted it.
pub fn final_message(text: &str, mode: ThinkingMode) -> (AssistantMessage, bool) {
    let mut owned;
    let mut t = text;
    if t.ends_with(CALLS_CLOSE) {
        // Stopped at the block close (a stop string): EOS is the only valid continuation.
        owned = t.to_owned();
        owned.push_str(EOS);
        t = &owned;
    }
    if let Ok(m) = parse_completion(t, mode) {
        return (m, true);
    }
    if let Ok((m, _)) = parse_lenient(t, mode) {
        return (m, false);
    }
    owned = t.strip_suffix(EOS).unwrap_or(t).to_owned();
    let (reasoning, content) = match mode {
        ThinkingMode::Thinking => match owned.find(THINK_CLOSE) {
            Some(p) => (owned[..p].to_owned(), owned[p + THINK_CLOSE.len()..].to_owned()),
            None => (owned.clone(), String::new()),
        },
        ThinkingMode::Chat => (String::new(), owned.clone()),
    };
    (AssistantMessage { content, reasoning_content: reasoning, tool_calls: Vec::new() }, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_suffixes() {
        assert_eq!(partial_suffix("abc</thi", THINK_CLOSE), 5);
        assert_eq!(partial_suffix("abc", THINK_CLOSE), 0);
        assert_eq!(partial_suffix("</think>", THINK_CLOSE), 0);
        assert_eq!(partial_suffix("x\n", TC_START), 1);
    }

    #[test]
    fn sections_hold_back_markers() {
        let s = chat_sections("I think</th", ThinkingMode::Thinking, 0);
        assert_eq!(s.reasoning, "I think");
        let s = chat_sections("R</think>Hello\n", ThinkingMode::Thinking, 0);
        assert_eq!((s.reasoning, s.content), ("R", "Hello"));
        let s =
            chat_sections("R</think>Hi\n\n<｜DSML｜function_calls>\n", ThinkingMode::Thinking, 0);
        assert_eq!(s.content, "Hi");
        let s = chat_sections("Hi<｜end▁of▁sentence｜>", ThinkingMode::Chat, 0);
        assert_eq!(s.content, "Hi");
    }

    #[test]
    fn detok_round_trips_multibyte_text() -> Result<(), agentgen_codec::Error> {
        let tok = Tokenizer::shared()?;
        let text = "Grüße, 世界! 🚀 <｜DSML｜function_calls>";
        let ids = tok.encode(text)?;
        let mut d = Detok::new(tok);
        let mut out = String::new();
        for id in ids {
            out.push_str(&d.push(id));
        }
        out.push_str(&d.flush());
        assert_eq!(out, text);
        Ok(())
    }

    #[test]
    fn final_message_falls_back() {
        let (m, strict) = final_message("thought</think>answer", ThinkingMode::Thinking);
        assert!(!strict);
        assert_eq!((m.reasoning_content.as_str(), m.content.as_str()), ("thought", "answer"));
        let (m, strict) = final_message("only thoughts", ThinkingMode::Thinking);
        assert!(!strict);
        assert_eq!(m.content, "");
    }
}
