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
        Ok(Tokenizer { inner: tokenizers::Tokenizer::from_bytes(json).map_err(tok_err)? })
    }

    /// Token ids of `text`; markers in the text become their single tokens, nothing is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept (BOS, EOS and `｜DSML｜` included).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
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
