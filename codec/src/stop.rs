//! Stop strings: the one matcher the engine and the server both use on generated text.

use std::ops::Range;

/// A request's stop strings (empty strings dropped). Generation ends at the earliest match; a
/// streaming reader holds back the text that could still become one ([`StopStrings::holdback`]).
///
/// ```
/// use agentgen_codec::StopStrings;
/// let stops = StopStrings::new(["42", "Done"]);
/// // Text up to byte 13 was searched before; "42" completes in the new bytes.
/// assert_eq!(stops.find("The answer is 42", 13), Some(14..16));
/// assert_eq!(stops.holdback("The answer is 4"), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopStrings {
    stops: Vec<String>,
}

impl StopStrings {
    /// The matcher for `stops`.
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> Self {
        Self { stops: stops.into_iter().map(Into::into).filter(|s| !s.is_empty()).collect() }
    }

    /// No stop string to match.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// The longest stop string, in bytes (0 when there is none).
    pub fn longest(&self) -> usize {
        self.stops.iter().map(String::len).max().unwrap_or(0)
    }

    /// The earliest match that ends after byte `searched` of `text` (the text before it holds
    /// no match: it was searched when it arrived); `None` when there is none. Ties go to the
    /// stop string listed first.
    pub fn find(&self, text: &str, searched: usize) -> Option<Range<usize>> {
        let mut best: Option<Range<usize>> = None;
        for s in &self.stops {
            let mut from = searched.min(text.len()).saturating_sub(s.len() - 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(p) = crate::parse::find(&text[from..], s) {
                let start = from + p;
                if best.as_ref().is_none_or(|b| start < b.start) {
                    best = Some(start..start + s.len());
                }
            }
        }
        best
    }

    /// Bytes at the end of `text` that could be the start of a match (a streaming reader shows
    /// them only once the next text rules the match out).
    pub fn holdback(&self, text: &str) -> usize {
        self.stops.iter().map(|s| partial_suffix(text, s)).max().unwrap_or(0)
    }
}

/// Length of the longest proper prefix of `pat` that `text` ends with (always a character
/// boundary of `text`).
pub(crate) fn partial_suffix(text: &str, pat: &str) -> usize {
    let max = pat.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && pat.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{TC_START, THINK_CLOSE};

    #[test]
    fn partial_suffixes() {
        assert_eq!(partial_suffix("abc</thi", THINK_CLOSE), 5);
        assert_eq!(partial_suffix("abc", THINK_CLOSE), 0);
        assert_eq!(partial_suffix("</think>", THINK_CLOSE), 0);
        assert_eq!(partial_suffix("x\n", TC_START), 1);
        assert_eq!(partial_suffix("世", "世界"), 3);
    }

    #[test]
    fn finds_the_earliest_match_in_new_text() {
        let s = StopStrings::new(["", "cd", "bcd", "zz"]);
        assert_eq!(s.longest(), 3);
        assert_eq!(s.find("abcd", 3), Some(1..4));
        assert_eq!(s.find("abcd", 4), None, "nothing new");
        assert_eq!(s.find("cd cd", 3), Some(3..5), "the old match was reported before");
        assert_eq!(s.find("abc", 0), None);
        assert_eq!(StopStrings::new(["x"]).find("x", 0), Some(0..1));
        assert_eq!(StopStrings::new(["界"]).find("世界", 4), Some(3..6));
        assert!(StopStrings::new([""]).is_empty());
    }

    #[test]
    fn holds_back_possible_starts() {
        let s = StopStrings::new(["42. Do", "zzz"]);
        assert_eq!(s.holdback("is 42."), 3);
        assert_eq!(s.holdback("is zz"), 2);
        assert_eq!(s.holdback("is 4x"), 0);
        assert_eq!(StopStrings::default().holdback("abc"), 0);
    }
}
