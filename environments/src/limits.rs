//! Bounds of the in-process tools (search, SQL, VFS) and of every tool observation, with the
//! stable codes their error observations carry.
//!
//! A bounded tool answers with an error observation `{"error": "<text>", "code": "<code>"}`
//! ([`limit_error`]); the rollout goes on and records the code as a row warning
//! ([`limit_code`] reads it back). Outcomes are decided by step and byte budgets (SQLite VM
//! steps, observation bytes, VFS bytes); the wall-clock limits below are backstops, and a trip
//! is recorded with a `*_deadline` code so that such rows can be told apart.

use serde_json::json;

use crate::framework::ToolResult;

/// Stable codes (`limit.*`), used verbatim in observations, warnings and counters.
pub mod codes {
    /// A search query longer than [`super::SEARCH_QUERY_MAX_BYTES`].
    pub const SEARCH_QUERY_LENGTH: &str = "limit.search_query_length";
    /// Parentheses nested deeper than [`super::SEARCH_QUERY_MAX_DEPTH`].
    pub const SEARCH_QUERY_DEPTH: &str = "limit.search_query_depth";
    /// More than [`super::SEARCH_QUERY_MAX_TERMS`] terms and operators.
    pub const SEARCH_QUERY_TERMS: &str = "limit.search_query_terms";
    /// A string or blob beyond SQLite's `SQLITE_LIMIT_LENGTH` ([`super::SQL_MAX_LENGTH`]).
    pub const SQL_LENGTH: &str = "limit.sql_length";
    /// SQLite ran out of its heap limit ([`super::SQL_HEAP_LIMIT`]).
    pub const SQL_HEAP: &str = "limit.sql_heap";
    /// The query used up its VM-step budget (the deterministic bound).
    pub const SQL_STEPS: &str = "limit.sql_steps";
    /// The query passed the wall-clock backstop ([`super::SQL_DEADLINE`]).
    pub const SQL_DEADLINE: &str = "limit.sql_deadline";
    /// A VFS file would exceed [`super::VFS_FILE_MAX_BYTES`].
    pub const VFS_FILE_BYTES: &str = "limit.vfs_file_bytes";
    /// The VFS workspace would exceed [`super::VFS_WORKSPACE_MAX_BYTES`] or
    /// [`super::VFS_MAX_FILES`] files.
    pub const VFS_WORKSPACE_BYTES: &str = "limit.vfs_workspace_bytes";
    /// An observation was cut to the observation byte cap (a warning, not an error).
    pub const OBSERVATION_BYTES: &str = "limit.observation_bytes";
    /// A call beyond the calls-per-turn cap (not executed).
    pub const CALLS_PER_TURN: &str = "limit.calls_per_turn";
}

/// Longest search query in bytes (longer: [`codes::SEARCH_QUERY_LENGTH`]).
pub const SEARCH_QUERY_MAX_BYTES: usize = 512;
/// Deepest parenthesis nesting of a search query (deeper: [`codes::SEARCH_QUERY_DEPTH`]).
pub const SEARCH_QUERY_MAX_DEPTH: usize = 8;
/// Most terms and operators in one search query (more: [`codes::SEARCH_QUERY_TERMS`]).
pub const SEARCH_QUERY_MAX_TERMS: usize = 64;
/// `SQLITE_LIMIT_LENGTH`: the largest string or blob a query may build.
pub const SQL_MAX_LENGTH: i32 = 1 << 20;
/// `sqlite3_hard_heap_limit64` for the whole process (every instance database shares it).
pub const SQL_HEAP_LIMIT: i64 = 1 << 30;
/// Wall-clock backstop of one SQL query.
pub const SQL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest VFS file in bytes (larger: [`codes::VFS_FILE_BYTES`]).
pub const VFS_FILE_MAX_BYTES: usize = 256 << 10;
/// Largest total size of a VFS workspace in bytes (larger: [`codes::VFS_WORKSPACE_BYTES`]).
pub const VFS_WORKSPACE_MAX_BYTES: usize = 4 << 20;
/// Most files in a VFS workspace (more: [`codes::VFS_WORKSPACE_BYTES`]).
pub const VFS_MAX_FILES: usize = 2000;
/// Default byte cap of one observation (interfaces.md: `observation_max_bytes`).
pub const OBSERVATION_MAX_BYTES: usize = 65_536;
/// Largest cap a package may ask for.
pub const OBSERVATION_MAX_BYTES_CEILING: usize = 1 << 20;
/// Default cap on tool calls in one user turn (as envpkg's `max_calls_per_turn`).
pub const MAX_CALLS_PER_TURN: u32 = 32;
/// The observation of a call beyond the cap (envpkg spec §7.2).
pub const CALLS_PER_TURN_MESSAGE: &str = "tool call limit for this turn reached";

/// An error observation carrying a limit code.
pub fn limit_error(code: &str, msg: impl Into<String>) -> ToolResult {
    let v = json!({ "error": msg.into(), "code": code });
    ToolResult { content: crate::util::py_json(&v), is_error: true, state_changed: false }
}

/// The limit code of an error observation made by [`limit_error`], if any.
pub fn limit_code(content: &str) -> Option<String> {
    if !content.starts_with("{\"error\"") || !content.contains("\"code\": \"limit.") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(content).ok()?;
    v.get("code")?.as_str().filter(|c| c.starts_with("limit.")).map(str::to_owned)
}

/// Cut `content` to at most `max` bytes at a UTF-8 boundary and append
/// `…[truncated N bytes]` (N = bytes dropped). Deterministic; returns N when it cut.
pub fn truncate_observation(content: &mut String, max: usize) -> Option<usize> {
    if content.len() <= max {
        return None;
    }
    let mut end = max;
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = content.len() - end;
    content.truncate(end);
    content.push_str(&format!("…[truncated {dropped} bytes]"));
    Some(dropped)
}

/// Check a full-text query before it reaches the parser: byte length, parenthesis depth and
/// term count (deep or long queries overflowed a worker thread's stack).
pub fn check_search_query(q: &str) -> Result<(), ToolResult> {
    if q.len() > SEARCH_QUERY_MAX_BYTES {
        return Err(limit_error(
            codes::SEARCH_QUERY_LENGTH,
            format!("query is {} bytes long; at most {SEARCH_QUERY_MAX_BYTES}", q.len()),
        ));
    }
    let (mut depth, mut max_depth) = (0usize, 0usize);
    for c in q.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max_depth > SEARCH_QUERY_MAX_DEPTH {
        return Err(limit_error(
            codes::SEARCH_QUERY_DEPTH,
            format!("query nests {max_depth} levels deep; at most {SEARCH_QUERY_MAX_DEPTH}"),
        ));
    }
    let terms = q
        .split(|c: char| c.is_whitespace() || "()[]{}".contains(c))
        .filter(|t| !t.is_empty())
        .count();
    // Runs of prefix operators (`---x`, `+-+x`) nest like parentheses.
    let prefix_run = q
        .split(char::is_whitespace)
        .map(|t| t.chars().take_while(|c| matches!(c, '-' | '+' | '!')).count())
        .max()
        .unwrap_or(0);
    if terms > SEARCH_QUERY_MAX_TERMS || prefix_run > SEARCH_QUERY_MAX_DEPTH {
        return Err(limit_error(
            codes::SEARCH_QUERY_TERMS,
            format!("query has {terms} terms and operators; at most {SEARCH_QUERY_MAX_TERMS}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_at_a_char_boundary_and_says_how_much() {
        let mut s = "é".repeat(10); // 20 bytes
        assert_eq!(truncate_observation(&mut s, 5), Some(16));
        assert_eq!(s, "éé…[truncated 16 bytes]");
        let mut short = "abc".to_owned();
        assert_eq!(truncate_observation(&mut short, 3), None);
        assert_eq!(short, "abc");
    }

    #[test]
    fn deep_long_and_wide_queries_are_refused_with_codes() {
        let deep = format!("{}x{}", "(".repeat(800), ")".repeat(800));
        let code = |q: &str| check_search_query(q).err().and_then(|r| limit_code(&r.content));
        assert_eq!(code(&deep).as_deref(), Some(codes::SEARCH_QUERY_LENGTH));
        let deep = format!("{}x{}", "(".repeat(20), ")".repeat(20));
        assert_eq!(code(&deep).as_deref(), Some(codes::SEARCH_QUERY_DEPTH));
        assert_eq!(code(&"NOT ".repeat(100)).as_deref(), Some(codes::SEARCH_QUERY_TERMS));
        assert_eq!(code(&"-".repeat(100)).as_deref(), Some(codes::SEARCH_QUERY_TERMS));
        assert_eq!(code("river AND (delta OR \"lower basin\")"), None);
        let err = limit_error(codes::SQL_LENGTH, "x");
        assert!(err.is_error);
        assert_eq!(limit_code(&ToolResult::error("plain").content), None);
    }
}
