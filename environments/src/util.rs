//! Small deterministic helpers shared by the families: seed mixing, seeded RNGs, the Python
//! `json.dumps` text of tool observations, argument accessors and money formatting.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

/// One step of splitmix64 (a fixed, platform-independent mixer).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a of a string, then mixed: a stable 64-bit hash of a name.
pub fn name_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    splitmix64(h)
}

/// Mix several words into one seed (order matters).
pub fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &p in parts {
        h = splitmix64(h ^ splitmix64(p));
    }
    h
}

/// A keyed bijection of `0..n` (`i < n`): a 4-round Feistel network over the smallest even
/// bit width covering `n`, cycle-walked back into range. Drawing `permute(0..n, n, key)` visits
/// every value once: task drawing without replacement, stable across platforms.
pub fn permute(i: u64, n: u64, key: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2).max(1);
    let mask = (1u64 << half) - 1;
    let mut x = i % n;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for round in 0..4u64 {
            let f = mix(&[key, round, r]) & mask;
            (l, r) = (r, l ^ f);
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

/// A ChaCha8 RNG seeded from `parts` (deterministic everywhere).
pub fn rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

/// Python `json.dumps(v, ensure_ascii=False)` text (`", "` and `": "` separators, insertion
/// order), byte-exact via the codec. Used for structured tool observations and reference args.
pub fn py_json(v: &Value) -> String {
    agentgen_codec::python_json(v)
}

/// Compact JSON text of tool-call arguments (what a reference call carries).
pub fn args_text(v: &Value) -> String {
    py_json(v)
}

/// A reference tool call with arguments built from a JSON object.
pub fn call(name: &str, args: Value) -> agentgen_codec::ToolCall {
    agentgen_codec::ToolCall::new(name, args_text(&args))
}

/// Read a string argument (schema validation already ran, so absence means null).
pub fn arg_str<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

/// Read an integer argument.
pub fn arg_i64(args: &Map<String, Value>, key: &str) -> Option<i64> {
    args.get(key).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// Read a number argument.
pub fn arg_f64(args: &Map<String, Value>, key: &str) -> Option<f64> {
    args.get(key).and_then(Value::as_f64)
}

/// Cents as a decimal string: `12345 -> "123.45"`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// Parse a money amount given as a JSON number or string (`"123.4"`, `"$1,234.50"`, `123`) into
/// cents. Tolerant to harmless formatting only.
pub fn parse_money(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| (f * 100.0).round() as i64),
        Value::String(s) => {
            let t: String = s.trim().chars().filter(|c| !matches!(c, '$' | ',' | ' ')).collect();
            t.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| (f * 100.0).round() as i64)
        }
        _ => None,
    }
}

/// Normalise free text for tolerant comparison: trim, lowercase, collapse whitespace.
pub fn norm_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A minute-of-week virtual clock value formatted as `"Mon 09:30"`-style text is family
/// specific; this gives `HH:MM` for minutes since midnight.
pub fn hhmm(minutes: i64) -> String {
    let m = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection() {
        for n in [1u64, 2, 3, 7, 8, 9, 200, 1000, 1001] {
            for key in [0u64, 1, 0xdead_beef] {
                let mut seen: Vec<u64> = (0..n).map(|i| permute(i, n, key)).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n} key={key}");
            }
        }
        // Different keys give different orders.
        let a: Vec<u64> = (0..50).map(|i| permute(i, 50, 1)).collect();
        let b: Vec<u64> = (0..50).map(|i| permute(i, 50, 2)).collect();
        assert_ne!(a, b);
    }
    use serde_json::json;

    #[test]
    fn py_json_matches_python_separators() {
        let v = json!({"a": [1, 2.5, "x\"y"], "b": null, "c": "é\n"});
        assert_eq!(py_json(&v), "{\"a\": [1, 2.5, \"x\\\"y\"], \"b\": null, \"c\": \"é\\n\"}");
    }

    #[test]
    fn money_round_trips() {
        assert_eq!(money(12345), "123.45");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(parse_money(&json!("$1,234.50")), Some(123450));
        assert_eq!(parse_money(&json!(12.3)), Some(1230));
        assert_eq!(parse_money(&json!("abc")), None);
    }

    #[test]
    fn mix_is_order_sensitive() {
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_eq!(mix(&[1, 2]), mix(&[1, 2]));
    }
}
