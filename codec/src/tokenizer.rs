//! The shipped DeepSeek-V3.2 tokenizer and loss masks.

use std::sync::OnceLock;

use crate::encode::{EncodeOptions, Segments, encode_into};
use crate::{Error, Message, Result};

/// The V3.2 `tokenizer.json`, zstd-compressed (level 19), embedded in the binary.
static TOKENIZER_ZST: &[u8] = include_bytes!("../assets/tokenizer.json.zst");

/// SHA-256 of the uncompressed embedded `tokenizer.json` (DeepSeek-V3.2 at revision
/// `a7e62ac04ecb2c0a54d736dc46601c5606cf10a6`).
pub const TOKENIZER_SHA256: &str =
    "cd050be35cae877f8f0aa847f45aa87e23835a56ca32b29b28545597852784e5";

/// The V3.2 tokenizer (byte-level BPE, 128,815 ids). Special-token handling follows the
/// format: nothing is added when encoding (the prompt text carries BOS itself) and nothing is
/// skipped when decoding.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same pipeline without `tokenizers`' per-piece bookkeeping (see [`FastPath`]);
    /// `None` when the tokenizer.json is not shaped like V3.2's.
    fast: Option<FastPath>,
    /// Each id's decoded bytes, built on the first [`Tokenizer::decode`] when the decoder is
    /// ByteLevel (see [`DecodeTable`]); `None` inside when it is not.
    decode_table: OnceLock<Option<DecodeTable>>,
    /// Whether the tokenizer.json's decoder is plain ByteLevel.
    byte_level_decoder: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { reason: e.to_string() }
}

impl Tokenizer {
    /// The embedded tokenizer, decompressed and loaded once per process.
    pub fn shared() -> Result<&'static Tokenizer> {
        static SHARED: OnceLock<std::result::Result<Tokenizer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let json = zstd::decode_all(TOKENIZER_ZST).map_err(|e| e.to_string())?;
                Tokenizer::from_json_bytes(&json).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| Error::Tokenizer { reason: reason.clone() })
    }

    /// Load a `tokenizer.json` from its bytes.
    pub fn from_json_bytes(json: &[u8]) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(tok_err)?;
        let shape = serde_json::from_slice::<Shape>(json).ok();
        let byte_level_decoder =
            shape.as_ref().is_some_and(|s| s.decoder.get("type").is_some_and(|t| t == "ByteLevel"));
        let fast = shape.and_then(|shape| FastPath::try_new(&shape.into_value(), &inner));
        Ok(Tokenizer { inner, fast, decode_table: OnceLock::new(), byte_level_decoder })
    }

    /// Token ids of `text`; markers in the text become their single tokens, nothing is added.
    /// Same ids as [`Tokenizer::encode_reference`], several times faster (see [`FastPath`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.fast {
            Some(fast) => fast.encode(self.inner.get_model(), text),
            None => self.encode_reference(text),
        }
    }

    /// Token ids through the `tokenizers` crate's own pipeline (`encode_fast`, no special
    /// tokens added): the reference the fast path is tested against.
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Whether [`Tokenizer::encode`] uses the fast path (true for the embedded tokenizer).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Text of `ids`, special tokens kept (BOS, EOS and `｜DSML｜` included). The same text as
    /// [`Tokenizer::decode_reference`] (ids the tokenizer does not know are dropped, invalid
    /// UTF-8 becomes U+FFFD), from a per-id byte table instead of a per-char hash lookup.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let table = self
            .decode_table
            .get_or_init(|| self.byte_level_decoder.then(|| DecodeTable::new(&self.inner)));
        match table {
            Some(t) => Ok(t.decode(ids)),
            None => self.decode_reference(ids),
        }
    }

    /// Text of `ids` through the `tokenizers` crate's own decoder: the reference
    /// [`Tokenizer::decode`] is tested against.
    pub fn decode_reference(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// Number of ids the tokenizer knows (base vocabulary plus added tokens: 128,815). The
    /// model's embedding is larger ([`crate::tokens::MODEL_VOCAB_SIZE`]).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token text of `id` (byte-level form), if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token text, if it is one token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Token ids and loss mask of a training sample: `messages` encoded like
/// [`encode_messages`](crate::encode_messages), mask 1 on every token an assistant produced
/// after the last user/developer message (reasoning, `</think>`, content, DSML calls, EOS), 0
/// on everything else. Each mask segment is tokenized separately (see the crate docs).
pub fn tokenize_with_mask(
    messages: &[Message],
    opts: &EncodeOptions,
) -> Result<(Vec<u32>, Vec<u8>)> {
    let tok = Tokenizer::shared()?;
    let mut segments = Segments::default();
    encode_into(messages, opts, &mut segments)?;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (text, trainable) in &segments.0 {
        let seg = tok.encode(text)?;
        mask.extend(std::iter::repeat_n(u8::from(*trainable), seg.len()));
        ids.extend(seg);
    }
    Ok((ids, mask))
}

/// The text pieces of a sample with their mask value, as [`tokenize_with_mask`] tokenizes
/// them. Concatenated, they are the encoded prompt.
pub fn mask_segments(messages: &[Message], opts: &EncodeOptions) -> Result<Vec<(String, bool)>> {
    let mut segments = Segments::default();
    encode_into(messages, opts, &mut segments)?;
    Ok(segments.0)
}

/// The parts of a tokenizer.json the fast path looks at. The model's vocabulary and merges
/// (most of the file) are skipped, not built into a `Value` a second time.
#[derive(serde::Deserialize)]
struct Shape {
    #[serde(default)]
    normalizer: serde_json::Value,
    #[serde(default)]
    pre_tokenizer: serde_json::Value,
    #[serde(default)]
    added_tokens: serde_json::Value,
    #[serde(default)]
    model: ModelFlags,
    #[serde(default)]
    decoder: serde_json::Value,
}

/// What the ByteLevel decoder gives each id, precomputed: `tokenizers` maps every char of
/// every token through a hash map (~20 % of a `validate --check-tokens` run). A token whose
/// chars are all byte-level chars becomes those bytes; any other (the added tokens: BOS,
/// `｜DSML｜`, ...) its UTF-8 as it is; an id without a token decodes to nothing — each as
/// `tokenizers`' `decode` does, before its `from_utf8_lossy` of the whole.
struct DecodeTable {
    /// All ids' bytes, one after the other.
    bytes: Vec<u8>,
    /// Id `i`'s bytes are `bytes[starts[i]..starts[i + 1]]` (empty for an unknown id).
    starts: Vec<u32>,
}

impl DecodeTable {
    fn new(inner: &tokenizers::Tokenizer) -> DecodeTable {
        let mut char_bytes = std::collections::HashMap::new();
        for (b, c) in byte_level_chars().into_iter().enumerate() {
            char_bytes.insert(c, b as u8);
        }
        let n = inner.get_vocab(true).values().max().map_or(0, |m| *m as usize + 1);
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0);
        for id in 0..n {
            if let Some(token) = inner.id_to_token(id as u32) {
                let mapped: Option<Vec<u8>> =
                    token.chars().map(|c| char_bytes.get(&c).copied()).collect();
                bytes.extend(mapped.unwrap_or_else(|| token.into_bytes()));
            }
            starts.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
        DecodeTable { bytes, starts }
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            if let (Some(&a), Some(&b)) = (self.starts.get(i), self.starts.get(i + 1)) {
                out.extend_from_slice(&self.bytes[a as usize..b as usize]);
            }
        }
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// The BPE settings the fast path depends on (absent ones read as `null`).
#[derive(serde::Deserialize, Default)]
struct ModelFlags {
    #[serde(default, rename = "type")]
    kind: serde_json::Value,
    #[serde(default)]
    dropout: serde_json::Value,
    #[serde(default)]
    continuing_subword_prefix: serde_json::Value,
    #[serde(default)]
    end_of_word_suffix: serde_json::Value,
    #[serde(default)]
    byte_fallback: serde_json::Value,
    #[serde(default)]
    ignore_merges: serde_json::Value,
}

impl Shape {
    /// The same fields as a JSON object, as [`FastPath::try_new`] reads them.
    fn into_value(self) -> serde_json::Value {
        let m = self.model;
        serde_json::json!({
            "normalizer": self.normalizer,
            "pre_tokenizer": self.pre_tokenizer,
            "added_tokens": self.added_tokens,
            "model": {
                "type": m.kind,
                "dropout": m.dropout,
                "continuing_subword_prefix": m.continuing_subword_prefix,
                "end_of_word_suffix": m.end_of_word_suffix,
                "byte_fallback": m.byte_fallback,
                "ignore_merges": m.ignore_merges,
            },
        })
    }
}

/// The V3.2 tokenizer's encode pipeline, step for step, without `tokenizers`' per-piece
/// offset bookkeeping (which allocates per byte and made tokenization half of a `generate`
/// run):
///
/// 1. added tokens are split out leftmost-longest (Aho-Corasick), first those matched on the
///    raw text, then the `normalized` ones (the normalizer is the identity);
/// 2. the three `Split` (Isolated) pre-tokenizers run in order on each remaining piece with the
///    `regex` crate (the same `regex-syntax` Unicode tables `fancy-regex` uses). The third
///    pattern ends in `\s+(?!\S)|\s+`; the lookahead is emulated: a whitespace-only match of the
///    final `\s+` that is followed by more text gives back its last char when it has more
///    than one (what backtracking into `\s+(?!\S)` does), otherwise it stands;
/// 3. each piece is mapped to byte-level chars and handed to the BPE model itself.
///
/// Built only when the tokenizer.json has exactly this shape; tests compare it with the
/// reference pipeline on the fixtures, the conformance conversations and random text.
struct FastPath {
    specials: aho_corasick::AhoCorasick,
    special_ids: Vec<u32>,
    normalized: aho_corasick::AhoCorasick,
    normalized_ids: Vec<u32>,
    splits: [regex::Regex; 3],
    /// Each thread's own copy of `splits`: a `Regex` shared by threads hands its search cache
    /// to one owner thread and makes the others queue for a pooled one (~5 % of a
    /// `validate --check-tokens` on two threads).
    thread_splits: thread_local::ThreadLocal<[regex::Regex; 3]>,
    byte_chars: [char; 256],
    /// Each thread's ids of pieces already run through the BPE, cleared when it holds
    /// [`WORD_CACHE_PIECES`]. Per thread, without locks: one cache behind 16 mutex shards
    /// made 16 threads spend as much time in the kernel, waiting on its locks, as encoding
    /// (`validate --check-tokens`, 20,000 rows on 16 cores: 13 – 27 s of system time).
    words: thread_local::ThreadLocal<std::cell::RefCell<IdCache>>,
    /// Each thread's ids of long stretches between two raw added tokens (the same system
    /// prompt and tool list open every row of a dataset); cleared when it holds
    /// [`SEGMENT_CACHE_BYTES`] of text.
    segments: thread_local::ThreadLocal<std::cell::RefCell<IdCache>>,
}

/// Text -> its ids, and the bytes of text held. Hashed with foldhash (SipHash was ~5 % of
/// `--check-tokens`), seeded per process: the text comes from datasets anyone can write.
#[derive(Default)]
struct IdCache {
    map: std::collections::HashMap<Box<str>, Box<[u32]>, foldhash::fast::RandomState>,
    bytes: usize,
}

impl IdCache {
    /// Remember `text`'s ids, starting over first when the cache would hold more than
    /// `max_entries` texts or `max_bytes` of text.
    fn insert(&mut self, text: &str, ids: &[u32], max_entries: usize, max_bytes: usize) {
        if self.map.len() >= max_entries || self.bytes + text.len() > max_bytes {
            self.map.clear();
            self.bytes = 0;
        }
        if self.map.insert(text.into(), ids.into()).is_none() {
            self.bytes += text.len();
        }
    }
}

/// Segments at least this long are remembered (shorter ones cost less than the lookup).
const SEGMENT_CACHE_MIN_LEN: usize = 256;
/// Longer ones are not (a one-off tool result would crowd out the shared prompt).
const SEGMENT_CACHE_MAX_LEN: usize = 64 * 1024;
/// Text held by a thread's segment cache before it starts over.
const SEGMENT_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Pieces held by a thread's word cache before it starts over.
const WORD_CACHE_PIECES: usize = 32_768;
/// Pieces longer than this are not cached (rare, and they would crowd out the words).
const WORD_CACHE_MAX_LEN: usize = 64;

/// The tail of the third V3.2 split pattern, replaced by `\s+` plus the emulation.
const LOOKAHEAD_TAIL: &str = r"|\s+(?!\S)|\s+";

impl FastPath {
    fn try_new(json: &serde_json::Value, inner: &tokenizers::Tokenizer) -> Option<FastPath> {
        use serde_json::json;
        let normalizer = &json["normalizer"];
        let identity =
            normalizer.is_null() || *normalizer == json!({"type": "Sequence", "normalizers": []});
        let model = &json["model"];
        let plain_bpe = model["type"] == "BPE"
            && model["dropout"].is_null()
            && model["continuing_subword_prefix"].is_null()
            && model["end_of_word_suffix"].is_null()
            && model["byte_fallback"] != true
            && model["ignore_merges"] != true;
        let pre = json["pre_tokenizer"]["pretokenizers"].as_array()?;
        if !identity || !plain_bpe || json["pre_tokenizer"]["type"] != "Sequence" || pre.len() != 4
        {
            return None;
        }
        let byte_level = &pre[3];
        if byte_level["type"] != "ByteLevel"
            || byte_level["add_prefix_space"] != false
            || byte_level["use_regex"] != false
        {
            return None;
        }
        let mut patterns = Vec::new();
        for split in &pre[..3] {
            if split["type"] != "Split"
                || split["behavior"] != "Isolated"
                || split["invert"] != false
            {
                return None;
            }
            patterns.push(split["pattern"]["Regex"].as_str()?.to_owned());
        }
        let last = patterns.pop()?;
        let head = last.strip_suffix(LOOKAHEAD_TAIL)?;
        if head.contains("(?") || patterns.iter().any(|p| p.contains("(?")) {
            return None;
        }
        let third = format!(r"{head}|\s+");
        let compile = |p: &str| regex::Regex::new(p).ok();
        let splits = [compile(&patterns[0])?, compile(&patterns[1])?, compile(&third)?];

        let mut raw: Vec<(String, u32)> = Vec::new();
        let mut norm: Vec<(String, u32)> = Vec::new();
        for t in json["added_tokens"].as_array()? {
            if t["lstrip"] == true || t["rstrip"] == true || t["single_word"] == true {
                return None;
            }
            let entry = (t["content"].as_str()?.to_owned(), u32::try_from(t["id"].as_u64()?).ok()?);
            if t["normalized"] == true { norm.push(entry) } else { raw.push(entry) }
        }
        // The ids must be the ones the loaded tokenizer uses.
        if raw.iter().chain(&norm).any(|(c, id)| inner.token_to_id(c) != Some(*id)) {
            return None;
        }
        let build = |list: &[(String, u32)]| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(list.iter().map(|(c, _)| c.as_str()))
                .ok()
        };
        Some(FastPath {
            specials: build(&raw)?,
            special_ids: raw.iter().map(|(_, id)| *id).collect(),
            normalized: build(&norm)?,
            normalized_ids: norm.iter().map(|(_, id)| *id).collect(),
            splits,
            thread_splits: thread_local::ThreadLocal::new(),
            byte_chars: byte_level_chars(),
            words: thread_local::ThreadLocal::new(),
            segments: thread_local::ThreadLocal::new(),
        })
    }

    fn encode(&self, model: &tokenizers::ModelWrapper, text: &str) -> Result<Vec<u32>> {
        let mut pieces = Vec::new();
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let mut word = String::new();
        let mut last = 0;
        for m in self.specials.find_iter(text) {
            self.segment(model, &text[last..m.start()], &mut pieces, &mut word, &mut ids)?;
            ids.push(self.special_ids[m.pattern().as_usize()]);
            last = m.end();
        }
        self.segment(model, &text[last..], &mut pieces, &mut word, &mut ids)?;
        Ok(ids)
    }

    /// The ids of one stretch between raw added tokens, appended to `ids` (from the segment
    /// cache when it is long and was seen before). A stretch's ids do not depend on what
    /// surrounds it: the raw added tokens are split out before anything else.
    fn segment<'t>(
        &self,
        model: &tokenizers::ModelWrapper,
        seg: &'t str,
        pieces: &mut Vec<Piece<'t>>,
        word: &mut String,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        let cached = (SEGMENT_CACHE_MIN_LEN..=SEGMENT_CACHE_MAX_LEN).contains(&seg.len());
        let cache = self.segments.get_or_default();
        if cached && let Some(hit) = cache.borrow().map.get(seg) {
            ids.extend_from_slice(hit);
            return Ok(());
        }
        let start = ids.len();
        pieces.clear();
        split_added(&self.normalized, &self.normalized_ids, seg, pieces, &mut |rest, out| {
            self.split_pieces(rest, out);
        });
        for piece in pieces.drain(..) {
            match piece {
                Piece::Added(id) => ids.push(id),
                Piece::Text(t) => self.bpe(model, t, word, ids)?,
            }
        }
        if cached {
            cache.borrow_mut().insert(seg, &ids[start..], usize::MAX, SEGMENT_CACHE_BYTES);
        }
        Ok(())
    }

    /// The BPE ids of one pre-tokenized piece, appended to `ids` (from the word cache when the
    /// piece was seen before).
    fn bpe(
        &self,
        model: &tokenizers::ModelWrapper,
        piece: &str,
        word: &mut String,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        let cache = (piece.len() <= WORD_CACHE_MAX_LEN).then(|| self.words.get_or_default());
        if let Some(c) = cache
            && let Some(hit) = c.borrow().map.get(piece)
        {
            ids.extend_from_slice(hit);
            return Ok(());
        }
        word.clear();
        word.extend(piece.bytes().map(|b| self.byte_chars[usize::from(b)]));
        let tokens = tokenizers::Model::tokenize(model, word).map_err(tok_err)?;
        let start = ids.len();
        ids.extend(tokens.iter().map(|t| t.id));
        if let Some(cache) = cache {
            cache.borrow_mut().insert(piece, &ids[start..], WORD_CACHE_PIECES, usize::MAX);
        }
        Ok(())
    }

    /// The three Isolated splits, in order.
    fn split_pieces<'t>(&self, text: &'t str, out: &mut Vec<Piece<'t>>) {
        let splits = self.thread_splits.get_or(|| self.splits.clone());
        isolated(&splits[0], text, &mut |a| {
            isolated(&splits[1], a, &mut |b| {
                split_words(&splits[2], b, &mut |c| out.push(Piece::Text(c)));
            });
        });
    }
}

/// The third split with the `\s+(?!\S)` emulation (see [`FastPath`]).
fn split_words<'t>(re: &regex::Regex, s: &'t str, f: &mut impl FnMut(&'t str)) {
    let mut last = 0;
    while last < s.len() {
        let Some(m) = re.find_at(s, last) else { break };
        let mut end = m.end();
        let text = m.as_str();
        if end < s.len() && text.chars().all(char::is_whitespace) && !text.contains(['\r', '\n']) {
            let tail = text.chars().next_back().map_or(0, char::len_utf8);
            if text.len() > tail {
                end -= tail;
            }
        }
        if m.start() > last {
            f(&s[last..m.start()]);
        }
        f(&s[m.start()..end]);
        last = end;
    }
    if last < s.len() {
        f(&s[last..]);
    }
}

/// One unit of the fast path: an added token's id, or a pre-tokenized piece for the BPE.
enum Piece<'t> {
    Added(u32),
    Text(&'t str),
}

/// Added tokens found by `ac` (leftmost-longest) become [`Piece::Added`]; the text between
/// them goes to `rest`.
fn split_added<'t>(
    ac: &aho_corasick::AhoCorasick,
    ids: &[u32],
    text: &'t str,
    out: &mut Vec<Piece<'t>>,
    rest: &mut dyn FnMut(&'t str, &mut Vec<Piece<'t>>),
) {
    let mut last = 0;
    for m in ac.find_iter(text) {
        rest(&text[last..m.start()], out);
        out.push(Piece::Added(ids[m.pattern().as_usize()]));
        last = m.end();
    }
    rest(&text[last..], out);
}

/// `Split` with behavior Isolated: every match and every non-empty gap between matches.
fn isolated<'t>(re: &regex::Regex, s: &'t str, f: &mut impl FnMut(&'t str)) {
    if s.is_empty() {
        return;
    }
    let mut last = 0;
    for m in re.find_iter(s) {
        if m.start() > last {
            f(&s[last..m.start()]);
        }
        f(m.as_str());
        last = m.end();
    }
    if last < s.len() {
        f(&s[last..]);
    }
}

/// GPT-2's byte-to-char table used by ByteLevel: printable Latin-1 bytes map to themselves,
/// the rest to U+0100 upwards in byte order.
fn byte_level_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\0');
    }
    table
}
