//! Python-compatible JSON: `json.dumps(v, ensure_ascii=False)` byte for byte (spec §3.7), and a
//! small parser for tool-call `arguments` that keeps what Python keeps.
//!
//! Why a parser of our own: serde_json (without `arbitrary_precision`, which would leak into
//! every crate of the workspace) turns integers beyond 64 bits into doubles, while Python keeps
//! them exact. Arguments are parsed with [`parse_arguments`], which keeps integer digits as
//! text, floats as `f64` (printed with Python's `repr`), object keys in insertion order with
//! Python's duplicate-key rule (last value, first position).

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde_json::Value;

/// Python's `json.dumps(v, ensure_ascii=False)` of a serde_json value: `", "` / `": "`
/// separators, keys in insertion order, raw non-ASCII, floats in Python `repr` form.
///
/// ```
/// let v = serde_json::json!({"b": 1.0, "a": [1e16, "°C", null]});
/// assert_eq!(agentgen_codec::python_json(&v), r#"{"b": 1.0, "a": [1e+16, "°C", null]}"#);
/// ```
pub fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// Append `python_json(v)` to `out`.
pub(crate) fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                write_float(n.as_f64().unwrap_or(f64::NAN), out);
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => write_array(items, out, write_value),
        Value::Object(map) => write_object(map, out, write_value),
    }
}

/// `json.dumps(s, ensure_ascii=False)` of a string: the JSON string literal Python writes
/// (quotes, `\\`, `\"`, `\n`-style escapes, other control bytes as `\u00XX`, everything else
/// raw), appended to `out`.
///
/// ```
/// let mut out = String::new();
/// agentgen_codec::python_json_str("a\"b\n°\u{1}", &mut out);
/// assert_eq!(out, r#""a\"b\n°\u0001""#);
/// ```
pub fn python_json_str(s: &str, out: &mut String) {
    write_str(s, out);
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit per byte) for the bytes of the little-endian word `w` that need escaping
/// (`< 0x20`, `"` or `\\`): the classic has-less / has-zero bit tricks. A borrow can flag a
/// byte above a true hit, but the lowest flag is always exact, and no flag means no hit; bytes
/// >= 0x80 are never flagged.
#[inline]
fn escape_flags(w: u64) -> u64 {
    let less_20 = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (less_20 | quote | backslash) & HIGHS
}

/// A JSON string literal as Python writes it with `ensure_ascii=False`. The next byte to
/// escape is found eight bytes at a time.
pub(crate) fn write_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let hit = match bytes.get(i..i + 8) {
            Some(chunk) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let flags = escape_flags(u64::from_le_bytes(word));
                if flags == 0 {
                    i += 8;
                    continue;
                }
                i + (flags.trailing_zeros() / 8) as usize
            }
            None => match bytes[i..].iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\') {
                Some(p) => i + p,
                None => break,
            },
        };
        let b = bytes[hit];
        // `hit` is an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[start..hit]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        i = hit + 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `repr(float)` of Python 3: shortest round-trip digits; scientific notation when the decimal
/// exponent is below -4 or at least 16 (`1e-05`, `1e+16`), otherwise plain with at least one
/// fractional digit (`3.0`, `0.0001`).
pub(crate) fn write_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    if f == 0.0 {
        out.push_str("0.0");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. `3.0000000000000004e-1`.
    let mut buf = String::with_capacity(32);
    let _ = write!(buf, "{:e}", f.abs());
    let (mant, exp) = buf.split_once('e').unwrap_or((buf.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = String::with_capacity(mant.len());
    digits.extend(mant.chars().filter(|c| *c != '.'));
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

/// `[a, b]`: Python's array with its `", "` separator, each item appended by `write`.
fn write_array<'a, T: 'a>(
    items: impl IntoIterator<Item = &'a T>,
    out: &mut String,
    write: impl Fn(&'a T, &mut String),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(item, out);
    }
    out.push(']');
}

/// `{"k": v}`: Python's object with its `", "` / `": "` separators, in the entries' order,
/// each value appended by `write`.
fn write_object<'a, T: 'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a T)>,
    out: &mut String,
    write: impl Fn(&'a T, &mut String),
) {
    out.push('{');
    for (i, (k, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(k, out);
        out.push_str(": ");
        write(item, out);
    }
    out.push('}');
}

/// A parsed JSON value with Python's number semantics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PyJson {
    Null,
    Bool(bool),
    /// Exact integer digits, normalised (`-0` is `0`).
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<PyJson>),
    Object(IndexMap<String, PyJson>),
}

impl PyJson {
    /// Append `json.dumps(self, ensure_ascii=False)`.
    pub(crate) fn write(&self, out: &mut String) {
        match self {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(true) => out.push_str("true"),
            PyJson::Bool(false) => out.push_str("false"),
            PyJson::Int(digits) => out.push_str(digits),
            PyJson::Float(f) => write_float(*f, out),
            PyJson::Str(s) => write_str(s, out),
            PyJson::Array(items) => write_array(items, out, PyJson::write),
            PyJson::Object(map) => write_object(map, out, PyJson::write),
        }
    }
}

/// Python's limit on the digits of an integer parsed from text (`sys.int_info`).
const MAX_INT_DIGITS: usize = 4300;
/// Nesting limit; deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

/// Parse JSON text the way `json.loads` does, refusing what spec §10 declares errors
/// (NaN/Infinity, numbers overflowing a double, integers over 4,300 digits, lone surrogates).
pub(crate) fn parse_json(text: &str) -> Result<PyJson, String> {
    let mut p = Parser { s: text.as_bytes(), text, pos: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("extra data at byte {}", p.pos));
    }
    Ok(v)
}

/// Parse tool-call arguments: JSON text whose top level must be an object.
pub(crate) fn parse_arguments(text: &str) -> Result<IndexMap<String, PyJson>, String> {
    match parse_json(text)? {
        PyJson::Object(map) => Ok(map),
        _ => Err("arguments must be a JSON object".to_owned()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<PyJson, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.s.get(self.pos) {
            None => self.err("unexpected end of json"),
            Some(b'{') => {
                self.pos += 1;
                let mut map = IndexMap::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(PyJson::Object(map));
                }
                loop {
                    self.ws();
                    if self.s.get(self.pos) != Some(&b'"') {
                        return self.err("expected a string key");
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.s.get(self.pos) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.pos += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(PyJson::Object(map));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(PyJson::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(PyJson::Array(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(PyJson::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (lit, v) in [
                    ("null", PyJson::Null),
                    ("true", PyJson::Bool(true)),
                    ("false", PyJson::Bool(false)),
                ] {
                    if self.s[self.pos..].starts_with(lit.as_bytes()) {
                        self.pos += lit.len();
                        return Ok(v);
                    }
                }
                for lit in ["NaN", "Infinity"] {
                    if self.s[self.pos..].starts_with(lit.as_bytes()) {
                        return self.err("NaN and Infinity are not supported (python-only json)");
                    }
                }
                self.err("expected a json value")
            }
        }
    }

    fn number(&mut self) -> Result<PyJson, String> {
        let start = self.pos;
        let neg = self.s[self.pos] == b'-';
        if neg {
            self.pos += 1;
            if self.s[self.pos..].starts_with(b"Infinity") {
                return self.err("NaN and Infinity are not supported (python-only json)");
            }
        }
        let int_start = self.pos;
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                    self.pos += 1;
                }
            }
            _ => return self.err("invalid number"),
        }
        let int_end = self.pos;
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.')
            && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9'))
        {
            is_float = true;
            self.pos += 1;
            while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            let mut q = self.pos + 1;
            if let Some(b'+' | b'-') = self.s.get(q) {
                q += 1;
            }
            if matches!(self.s.get(q), Some(b'0'..=b'9')) {
                is_float = true;
                self.pos = q;
                while let Some(b'0'..=b'9') = self.s.get(self.pos) {
                    self.pos += 1;
                }
            }
        }
        if is_float {
            let f: f64 = self.text[start..self.pos].parse().map_err(|_| "invalid number")?;
            if f.is_infinite() {
                return Err(format!(
                    "number {} at byte {start} overflows a double",
                    &self.text[start..self.pos]
                ));
            }
            return Ok(PyJson::Float(f));
        }
        let digits = &self.text[int_start..int_end];
        if digits.len() > MAX_INT_DIGITS {
            return Err(format!("integer at byte {start} has more than {MAX_INT_DIGITS} digits"));
        }
        if !neg || digits == "0" {
            Ok(PyJson::Int(digits.to_owned()))
        } else {
            Ok(PyJson::Int(format!("-{digits}")))
        }
    }

    /// A string literal starting at the opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(&b) = self.s.get(self.pos) else {
                return self.err("unterminated string");
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.pos) == Some(&b'\\')
                                    && self.s.get(self.pos + 1) == Some(&b'u')
                                {
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return self.err("lone utf-16 surrogate not supported");
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    return self.err("lone utf-16 surrogate not supported");
                                }
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return self.err("lone utf-16 surrogate not supported");
                            } else {
                                hi
                            };
                            match char::from_u32(c) {
                                Some(c) => out.push(c),
                                None => return self.err("invalid \\u escape"),
                            }
                        }
                        _ => return self.err("invalid escape"),
                    }
                    run = self.pos;
                }
                0..=0x1f => return self.err("invalid control character in string"),
                _ => self.pos += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(h) = self.text.get(self.pos..self.pos + 4) else {
            return self.err("invalid \\u escape");
        };
        let v = u32::from_str_radix(h, 16)
            .map_err(|_| format!("invalid \\u escape at byte {}", self.pos))?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.err("invalid \\u escape");
        }
        self.pos += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping rule spelled out byte by byte, to check the word-at-a-time version.
    fn slow_str(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn fast_string_escape_equals_the_byte_rule() {
        // Every char below 0x80 plus some multi-byte ones, at every offset within a word.
        let alphabet: Vec<char> = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain(['°', 'é', '中', '😀', '\u{7f}', '\u{80}', '\u{ff}'])
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..40 {
            for _ in 0..200 {
                let s: String = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Mostly plain letters so runs of safe words occur.
                        if state.is_multiple_of(4) {
                            alphabet[(state >> 8) as usize % alphabet.len()]
                        } else {
                            char::from(b'a' + (state >> 8) as u8 % 26)
                        }
                    })
                    .collect();
                let mut fast = String::new();
                write_str(&s, &mut fast);
                assert_eq!(fast, slow_str(&s), "{s:?}");
                let back: String = serde_json::from_str(&fast).expect("valid JSON string");
                assert_eq!(back, s);
            }
        }
    }

    fn f(x: f64) -> String {
        let mut s = String::new();
        write_float(x, &mut s);
        s
    }

    #[test]
    fn python_float_repr() {
        let cases = [
            (3.0, "3.0"),
            (2.5, "2.5"),
            (1e5, "100000.0"),
            (1e-5, "1e-05"),
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (2e21, "2e+21"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (1.5e16, "1.5e+16"),
            (-1.25e-10, "-1.25e-10"),
            (9999999999999998.0, "9999999999999998.0"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "{x:e}");
        }
    }

    #[test]
    fn arguments_keep_python_semantics() -> Result<(), String> {
        let v = parse_json(
            r#"{"b": 1.50, "a": -0, "big": 123456789012345678901234567890, "b": [1E5, "\u00b0C\ud83d\ude00"]}"#,
        )?;
        let mut s = String::new();
        v.write(&mut s);
        assert_eq!(
            s,
            r#"{"b": [100000.0, "°C😀"], "a": 0, "big": 123456789012345678901234567890}"#
        );
        assert!(parse_json("[NaN]").is_err());
        assert!(parse_json("[1e400]").is_err());
        assert!(parse_json(r#""\ud800""#).is_err());
        assert!(parse_json("{} x").is_err());
        assert!(parse_json(&"9".repeat(4301)).is_err());
        Ok(())
    }

    #[test]
    fn string_escapes() {
        let mut s = String::new();
        write_str("a\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}\u{2028}é", &mut s);
        assert_eq!(s, "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}\u{2028}é\"");
    }
}
