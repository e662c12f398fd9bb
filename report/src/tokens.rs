//! Token pieces for the token view: each id decoded with the codec's tokenizer (cached per
//! id); a token that holds only part of a UTF-8 character is decoded together with the
//! following ones and the text shown on the first of them.

use std::collections::HashMap;

use agentgen_codec::Tokenizer;
use serde_json::{Value, json};

use crate::sample::TokenView;

const REPLACEMENT: char = '\u{FFFD}';

/// Decodes token ids to display pieces.
pub(crate) struct Pieces<'t> {
    tok: &'t Tokenizer,
    cache: HashMap<u32, String>,
}

impl<'t> Pieces<'t> {
    pub fn new(tok: &'t Tokenizer) -> Self {
        Pieces { tok, cache: HashMap::new() }
    }

    fn one(&mut self, id: u32) -> String {
        if let Some(s) = self.cache.get(&id) {
            return s.clone();
        }
        let s = self.tok.decode(&[id]).unwrap_or_else(|_| format!("<id {id}>"));
        self.cache.insert(id, s.clone());
        s
    }

    /// The text of each token (empty for the continuation bytes of a character split across
    /// tokens).
    pub fn decode(&mut self, ids: &[u32]) -> Vec<String> {
        let mut out = Vec::with_capacity(ids.len());
        let mut i = 0;
        while i < ids.len() {
            let s = self.one(ids[i]);
            if s.contains(REPLACEMENT) {
                // Try joining up to 3 following tokens into whole characters.
                let joined = (2..=4usize).filter(|n| i + n <= ids.len()).find_map(|n| {
                    let t = self.tok.decode(&ids[i..i + n]).ok()?;
                    (!t.contains(REPLACEMENT)).then_some((n, t))
                });
                if let Some((n, t)) = joined {
                    out.push(t);
                    out.extend(std::iter::repeat_n(String::new(), n - 1));
                    i += n;
                    continue;
                }
            }
            out.push(s);
            i += 1;
        }
        out
    }

    /// The token view's JSON: `{"t": [piece...], "m": "0110...", "l": [logprob|null...]?}`.
    pub fn view_json(&mut self, v: &TokenView) -> Value {
        let pieces = self.decode(&v.ids);
        let mask: String = (0..pieces.len())
            .map(|i| if v.mask.get(i).copied().unwrap_or(0) != 0 { '1' } else { '0' })
            .collect();
        let mut obj = json!({"t": pieces, "m": mask});
        if let Some(l) = &v.logprobs {
            let rounded: Vec<Value> = l
                .iter()
                .map(|x| match x {
                    Some(f) if f.is_finite() => json!((f64::from(*f) * 1e4).round() / 1e4),
                    _ => Value::Null,
                })
                .collect();
            obj["l"] = Value::Array(rounded);
        }
        obj
    }
}
