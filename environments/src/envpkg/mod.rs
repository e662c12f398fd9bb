//! envpkg v1: environments as data (spec `shared/spec/envpkg.md`). A package is a directory of
//! data plus Python tool code; this module loads and statically validates it ([`load`],
//! [`schema`], [`task`]), runs its code in persistent sandboxed Python workers ([`worker`], with
//! the embedded `harness.py`), plays episodes against a worker ([`episode`]) and admits packages
//! ([`check`], the `envs check` report of spec §9.3); [`scaffold`] writes a new package.

pub mod calibration;
pub mod check;
pub mod episode;
pub mod load;
pub mod runtime;
pub mod scaffold;
pub mod schema;
pub mod task;
pub mod worker;

pub use check::{CheckOptions, check_package};
pub use episode::{Episode, Observation};
pub use load::{Limits, Manifest, ValidPackage, ValidTool, discover, load_package};
pub use runtime::{
    OpenOptions, PackageFamily, PackageSession, open_packages, registry_with_packages,
};
pub use scaffold::scaffold;
pub use task::{ValidTask, VerifyMode};
pub use worker::{Failure, PythonRuntime, Worker, WorkerPool};

use serde::Serialize;

/// One coded finding (`{"code", "detail"}` in reports): a rejection reason, an episode-ending
/// failure or a warning. Codes are the spec's (§7.3, §9); details name file, line and field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The spec's code (`pkg.layout`, `env.timeout`, `lint.strict`, ...).
    pub code: String,
    /// What was found, naming the file, line and field.
    pub detail: String,
}

impl Problem {
    /// A finding with `code` and `detail`.
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem { code: code.into(), detail: detail.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// Python keywords (tool names and schema property names must not be one).
pub(crate) const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// True for a Python identifier in the ASCII subset (`[A-Za-z_][A-Za-z0-9_]*`), not a keyword.
pub(crate) fn is_py_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !PY_KEYWORDS.contains(&s)
}

/// RFC 3339 date-time with an offset (`2025-03-14T10:00:00Z`, `...+01:00`, fractions allowed).
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !is_date(&s[..10]) || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !(d(11) && d(12) && b[13] == b':' && d(14) && d(15) && b[16] == b':' && d(17) && d(18)) {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while d(i) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && d(i + 1) && d(i + 2) && b[i + 3] == b':' && d(i + 4) && d(i + 5)
        }
        _ => false,
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
pub(crate) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_dates() {
        assert!(is_py_identifier("order_id"));
        assert!(!is_py_identifier("class"));
        assert!(!is_py_identifier("9a"));
        assert!(is_rfc3339("2025-03-14T10:00:00Z"));
        assert!(is_rfc3339("2025-03-14T10:00:00.5+01:00"));
        assert!(!is_rfc3339("2025-03-14T10:00:00"));
        assert!(!is_rfc3339("2025-03-14"));
        assert!(is_date("2026-11-28"));
        assert!(!is_date("2026-13-28"));
    }
}
