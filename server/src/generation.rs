//! Driving one choice: incremental detokenization, stop strings (the codec's
//! [`StopStrings`], matched on the decoded text) and the text `/v1/completions` returns. The
//! chat view (reasoning / content / tool calls) is the codec's [`agentgen_codec::StreamParser`].

use agentgen_codec::tokens::EOS;
use agentgen_codec::{StopStrings, Tokenizer};
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
    stops: StopStrings,
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
            stops: StopStrings::new(stops),
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
        self.stops.find(&self.text, before).map(|r| (r.start, r.end))
    }

    /// Bytes at the end of `text` that could be the start of a stop string (held back while
    /// streaming).
    pub fn stop_holdback(&self, text: &str) -> usize {
        if self.finish.is_some() {
            return 0;
        }
        self.stops.holdback(text)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
