//! Loading one package from disk into a [`ValidPackage`]: layout (spec §2), `env.toml` (§3),
//! `tools.json` (§4) and the package hash (§11). The checks that need the worker's Python
//! (import screen, `Env` and its methods) are in [`super::check`]. Every failure is a
//! [`Problem`] with the spec's code and a detail naming the file, line and field.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::schema::ToolSchema;
use super::{Problem, is_date, is_rfc3339};

/// The only format this runtime serves.
pub const FORMAT: &str = "agentgen-envpkg/1";
/// Packages larger than this are refused (the spec's minimum to accept).
pub const MAX_PACKAGE_BYTES: u64 = 16 << 20;

/// `[limits]` of env.toml, defaults filled and maxima applied (spec §3, §13.18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall time of one `Env()`, tool call, `state()`, `verify()` or `generate_task()`, in ms
    /// (default 2000, max 60000).
    pub call_timeout_ms: u64,
    /// Wall time allowed for importing env.py, in ms (default 10000, max 120000).
    pub load_timeout_ms: u64,
    /// Total wall time spent in package code in one episode, in ms (default 60000, max 600000).
    pub episode_timeout_ms: u64,
    /// Worker memory (its address space, interpreter included), in MiB (default 512, max 4096).
    pub memory_mb: u64,
    /// Most tool calls in one user turn (default 32, max 256).
    pub max_calls_per_turn: u64,
    /// Byte cap of one observation (default 65536, max 1 MiB).
    pub observation_max_bytes: u64,
}

/// `(key, default, max)` of every limit.
const LIMITS: &[(&str, u64, u64)] = &[
    ("call_timeout_ms", 2000, 60000),
    ("load_timeout_ms", 10000, 120000),
    ("episode_timeout_ms", 60000, 600000),
    ("memory_mb", 512, 4096),
    ("max_calls_per_turn", 32, 256),
    ("observation_max_bytes", 65536, 1 << 20),
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout_ms: 2000,
            load_timeout_ms: 10000,
            episode_timeout_ms: 60000,
            memory_mb: 512,
            max_calls_per_turn: 32,
            observation_max_bytes: 65536,
        }
    }
}

/// env.toml, validated.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    /// `name`: the package name, `[a-z][a-z0-9_]{0,63}`, never a built-in family's.
    pub name: String,
    /// `version`: an integer >= 1.
    pub version: u32,
    /// `title`: a non-empty display title.
    pub title: String,
    /// `description`: non-empty free text.
    pub description: String,
    /// `domain`: non-empty free text (`retail`, `smart_home`, ...).
    pub domain: String,
    /// The resolved system prompt text (from `system_prompt` or `system_prompt_file`).
    pub system_prompt: String,
    /// `clock`: the virtual clock's RFC 3339 date-time, when given (a task's own `clock`
    /// overrides it).
    pub clock: Option<String>,
    /// `[limits]`, defaults filled and maxima applied.
    pub limits: Limits,
    /// `[generate] seeds`.
    pub generate_seeds: Option<u64>,
    /// `[provenance]`: the known keys given (`author`, `model`, `created`, `source`,
    /// `license`, `parent`).
    pub provenance: BTreeMap<String, String>,
}

/// One tool of tools.json.
#[derive(Debug)]
pub struct ValidTool {
    /// The tool's name (`function.name`).
    pub name: String,
    /// The entry as written (`{"type": "function", "function": {...}}`): what the agent sees.
    pub openai: Value,
    /// The compiled `parameters` schema that calls are checked against.
    pub schema: ToolSchema,
}

/// A package whose files passed the static checks.
#[derive(Debug)]
pub struct ValidPackage {
    /// Canonical path of the package directory.
    pub path: PathBuf,
    /// The validated env.toml.
    pub manifest: Manifest,
    /// The tools of tools.json, in file order.
    pub tools: Vec<ValidTool>,
    /// Lowercase hex package hash (§11).
    pub sha256: String,
    /// Relative paths of every `.py` file (the import screen's input).
    pub py_files: Vec<String>,
    /// Top-level module names the package provides.
    pub local_modules: Vec<String>,
    /// tasks.jsonl text, when present.
    pub tasks_text: Option<String>,
    /// Non-fatal findings of the static checks (`lint.*`, `limits.clamped`).
    pub warnings: Vec<Problem>,
}

impl ValidPackage {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }
    /// The tool named `name`, if tools.json defines it.
    pub fn tool(&self, name: &str) -> Option<&ValidTool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Load and statically check the package at `dir`. `reserved` are the built-in family names
/// (a package may not take one); `stdlib` the worker Python's `sys.stdlib_module_names`.
pub fn load_package(
    dir: &Path,
    reserved: &[&str],
    stdlib: &HashSet<String>,
) -> Result<ValidPackage, Problem> {
    let layout = |d: String| Problem::new("pkg.layout", d);
    let path = dir.canonicalize().map_err(|e| {
        layout(format!("{}: cannot open the package directory: {e}", dir.display()))
    })?;
    if !path.is_dir() {
        return Err(layout(format!("{}: not a directory", path.display())));
    }
    let files = walk(&path)?;
    for req in ["env.toml", "tools.json", "env.py"] {
        if !files.iter().any(|(p, _)| p == req) {
            return Err(layout(format!("{req}: required file is missing")));
        }
    }
    let total: u64 = files.iter().map(|(_, n)| *n).sum();
    if total > MAX_PACKAGE_BYTES {
        return Err(layout(format!(
            "package is {total} bytes, over the {MAX_PACKAGE_BYTES}-byte limit"
        )));
    }
    let mut local_modules = Vec::new();
    let mut py_files = Vec::new();
    for (rel, _) in &files {
        if !rel.ends_with(".py") {
            continue;
        }
        let bytes = std::fs::read(path.join(rel)).map_err(|e| layout(format!("{rel}: {e}")))?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(layout(format!("{rel}: Python source is not UTF-8")));
        }
        py_files.push(rel.clone());
        let top = match rel.split_once('/') {
            None => rel.trim_end_matches(".py").to_owned(),
            Some((d, _)) => d.to_owned(),
        };
        if !local_modules.contains(&top) {
            local_modules.push(top);
        }
    }
    for m in &local_modules {
        if m == "agentgen_env" || stdlib.contains(m) {
            return Err(layout(format!(
                "module {m:?} shadows {}",
                if m == "agentgen_env" {
                    "the runtime's agentgen_env"
                } else {
                    "a standard-library module"
                }
            )));
        }
    }
    let sha256 = package_hash(&path, &files)?;
    let mut warnings = Vec::new();
    let manifest = parse_manifest(&path, reserved, &mut warnings)?;
    let tools = parse_tools(&path, &mut warnings)?;
    let tasks_text = if files.iter().any(|(p, _)| p == "tasks.jsonl") {
        let bytes = std::fs::read(path.join("tasks.jsonl"))
            .map_err(|e| Problem::new("pkg.tasks", format!("tasks.jsonl: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Problem::new("pkg.tasks", format!("tasks.jsonl: not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            return Err(Problem::new("pkg.tasks", "tasks.jsonl: empty"));
        }
        Some(text)
    } else {
        None
    };
    Ok(ValidPackage {
        path,
        manifest,
        tools,
        sha256,
        py_files,
        local_modules,
        tasks_text,
        warnings,
    })
}

/// Every package file as `(relative path, size)`, sorted by the path's bytes; `__pycache__/`
/// and `*.pyc` skipped. Symlinks, bad names and binary modules are `pkg.layout`.
fn walk(root: &Path) -> Result<Vec<(String, u64)>, Problem> {
    let layout = |d: String| Problem::new("pkg.layout", d);
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| layout(format!("{}: {e}", if rel.is_empty() { "." } else { &rel })))?;
        for entry in entries {
            let entry = entry.map_err(|e| layout(format!("{rel}: {e}")))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| layout(format!("{child}: {e}")))?;
            if meta.file_type().is_symlink() {
                return Err(layout(format!("{child}: symlinks are not allowed")));
            }
            if meta.is_dir() && name == "__pycache__" {
                continue;
            }
            if meta.is_file() && name.ends_with(".pyc") {
                continue;
            }
            if !valid_segment(&name) {
                return Err(layout(format!(
                    "{child}: name must match [A-Za-z0-9_][A-Za-z0-9._-]* (no hidden files)"
                )));
            }
            if meta.is_dir() {
                stack.push((entry.path(), child));
            } else if meta.is_file() {
                if [".so", ".pyd", ".dll", ".dylib", ".pth"].iter().any(|x| name.ends_with(x)) {
                    return Err(layout(format!(
                        "{child}: binary modules and .pth files are not allowed"
                    )));
                }
                out.push((child, meta.len()));
            } else {
                return Err(layout(format!("{child}: not a regular file or directory")));
            }
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn valid_segment(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// The package hash of spec §11 over `files` (sorted relative paths).
fn package_hash(root: &Path, files: &[(String, u64)]) -> Result<String, Problem> {
    let mut manifest = String::new();
    for (rel, _) in files {
        let bytes = std::fs::read(root.join(rel))
            .map_err(|e| Problem::new("pkg.layout", format!("{rel}: {e}")))?;
        manifest.push_str(&hex(&Sha256::digest(&bytes)));
        manifest.push_str("  ");
        manifest.push_str(rel);
        manifest.push('\n');
    }
    Ok(hex(&Sha256::digest(manifest.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 1-based line of the first `key =` (or `[key]`) in a TOML text, for error messages.
fn toml_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key).is_some_and(|r| {
                let r = r.trim_start();
                r.starts_with('=') || r.starts_with(']') || r.starts_with('.')
            }) || l.strip_prefix('[').is_some_and(|r| r.trim_start().starts_with(key))
        })
        .map_or(1, |i| i + 1)
}

fn parse_manifest(
    root: &Path,
    reserved: &[&str],
    warnings: &mut Vec<Problem>,
) -> Result<Manifest, Problem> {
    let text = std::fs::read_to_string(root.join("env.toml"))
        .map_err(|e| Problem::new("pkg.toml", format!("env.toml: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| text[..s.start.min(text.len())].lines().count().max(1));
        Problem::new("pkg.toml", format!("env.toml:{line}: {}", e.message()))
    })?;
    let err = |key: &str, why: String| {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        Problem::new("pkg.toml", format!("env.toml:{}: {key}: {why}", toml_line(&text, leaf)))
    };
    let string = |key: &str| -> Result<Option<String>, Problem> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(err(key, format!("must be a string, not {}", other.type_str()))),
        }
    };
    let known = [
        "format",
        "name",
        "version",
        "title",
        "description",
        "domain",
        "system_prompt",
        "system_prompt_file",
        "clock",
        "limits",
        "generate",
        "provenance",
    ];
    for k in table.keys() {
        if !known.contains(&k.as_str()) {
            warnings.push(Problem::new(
                "lint.unknown_field",
                format!("env.toml:{}: unknown key {k:?} ignored", toml_line(&text, k)),
            ));
        }
    }
    match string("format")? {
        Some(f) if f == FORMAT => {}
        Some(f) => return Err(err("format", format!("{f:?} is not {FORMAT:?}"))),
        None => return Err(err("format", "missing".into())),
    }
    let name = string("name")?.ok_or_else(|| err("name", "missing".into()))?;
    let name_ok = name.len() <= 64
        && name.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !name_ok {
        return Err(err("name", format!("{name:?} must match [a-z][a-z0-9_]{{0,63}}")));
    }
    if reserved.contains(&name.as_str()) {
        return Err(err("name", format!("{name:?} is the name of a built-in family")));
    }
    let version = match table.get("version") {
        Some(toml::Value::Integer(v)) if *v >= 1 && *v <= i64::from(u32::MAX) => *v as u32,
        Some(v) => return Err(err("version", format!("{v} is not an integer >= 1"))),
        None => return Err(err("version", "missing".into())),
    };
    let nonempty = |key: &str| -> Result<String, Problem> {
        match string(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(err(key, "missing or empty".into())),
        }
    };
    let title = nonempty("title")?;
    let description = nonempty("description")?;
    let domain = nonempty("domain")?;
    let system_prompt = match (string("system_prompt")?, string("system_prompt_file")?) {
        (Some(s), None) => s,
        (None, Some(f)) => {
            if f.starts_with('/') || f.split('/').any(|s| s == ".." || s == "." || s.is_empty()) {
                return Err(err(
                    "system_prompt_file",
                    format!("{f:?} is not a package-relative path"),
                ));
            }
            let bytes = std::fs::read(root.join(&f))
                .map_err(|e| err("system_prompt_file", format!("{f}: {e}")))?;
            String::from_utf8(bytes)
                .map_err(|_| err("system_prompt_file", format!("{f} is not UTF-8")))?
        }
        (Some(_), Some(_)) => {
            return Err(err(
                "system_prompt",
                "give system_prompt or system_prompt_file, not both".into(),
            ));
        }
        (None, None) => {
            return Err(err(
                "system_prompt",
                "one of system_prompt or system_prompt_file is required".into(),
            ));
        }
    };
    if system_prompt.trim().is_empty() {
        return Err(err("system_prompt", "empty".into()));
    }
    let clock = string("clock")?;
    if let Some(c) = &clock
        && !is_rfc3339(c)
    {
        return Err(err("clock", format!("{c:?} is not an RFC 3339 date-time with offset")));
    }
    let sub = |key: &str| -> Result<Option<&toml::Table>, Problem> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(v) => Err(err(key, format!("must be a table, not {}", v.type_str()))),
        }
    };
    let mut limits = Limits::default();
    if let Some(t) = sub("limits")? {
        for (k, v) in t {
            let Some(&(_, _, max)) = LIMITS.iter().find(|(n, _, _)| n == k) else {
                warnings.push(Problem::new(
                    "lint.unknown_field",
                    format!("env.toml:{}: limits.{k}: unknown limit ignored", toml_line(&text, k)),
                ));
                continue;
            };
            let n = match v {
                toml::Value::Integer(n) if *n >= 1 => *n as u64,
                _ => {
                    return Err(err(&format!("limits.{k}"), format!("{v} is not an integer >= 1")));
                }
            };
            let n = if n > max {
                warnings.push(Problem::new(
                    "limits.clamped",
                    format!("env.toml:{}: limits.{k} = {n} clamped to {max}", toml_line(&text, k)),
                ));
                max
            } else {
                n
            };
            match k.as_str() {
                "call_timeout_ms" => limits.call_timeout_ms = n,
                "load_timeout_ms" => limits.load_timeout_ms = n,
                "episode_timeout_ms" => limits.episode_timeout_ms = n,
                "memory_mb" => limits.memory_mb = n,
                "max_calls_per_turn" => limits.max_calls_per_turn = n,
                _ => limits.observation_max_bytes = n,
            }
        }
    }
    let mut generate_seeds = None;
    if let Some(t) = sub("generate")? {
        for k in t.keys().filter(|k| *k != "seeds") {
            warnings.push(Problem::new(
                "lint.unknown_field",
                format!("env.toml:{}: generate.{k}: unknown key ignored", toml_line(&text, k)),
            ));
        }
        match t.get("seeds") {
            Some(toml::Value::Integer(n)) if *n >= 1 => generate_seeds = Some(*n as u64),
            Some(v) => return Err(err("generate.seeds", format!("{v} is not an integer >= 1"))),
            None => return Err(err("generate.seeds", "missing".into())),
        }
    }
    let mut provenance = BTreeMap::new();
    if let Some(t) = sub("provenance")? {
        for (k, v) in t {
            if !["author", "model", "created", "source", "license", "parent"].contains(&k.as_str())
            {
                warnings.push(Problem::new(
                    "lint.unknown_field",
                    format!(
                        "env.toml:{}: provenance.{k}: unknown key ignored",
                        toml_line(&text, k)
                    ),
                ));
                continue;
            }
            let toml::Value::String(s) = v else {
                return Err(err(
                    &format!("provenance.{k}"),
                    format!("must be a string, not {}", v.type_str()),
                ));
            };
            if k == "created" && !is_date(s) && !is_rfc3339(s) {
                return Err(err("provenance.created", format!("{s:?} is not an RFC 3339 date")));
            }
            provenance.insert(k.clone(), s.clone());
        }
    }
    Ok(Manifest {
        name,
        version,
        title,
        description,
        domain,
        system_prompt,
        clock,
        limits,
        generate_seeds,
        provenance,
    })
}

fn parse_tools(root: &Path, warnings: &mut Vec<Problem>) -> Result<Vec<ValidTool>, Problem> {
    let bad = |d: String| Problem::new("pkg.tools", format!("tools.json {d}"));
    let text =
        std::fs::read_to_string(root.join("tools.json")).map_err(|e| bad(format!(": {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("line {} column {}: invalid JSON: {e}", e.line(), e.column())))?;
    let Some(list) = v.as_array().filter(|a| !a.is_empty()) else {
        return Err(bad(": must be a non-empty JSON array".into()));
    };
    let mut tools: Vec<ValidTool> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        if entry.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(format!("/{i}/type: must be \"function\"")));
        }
        let Some(f) = entry.get("function").and_then(Value::as_object) else {
            return Err(bad(format!("/{i}/function: must be an object")));
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !name_ok || super::PY_KEYWORDS.contains(&name) || name == "state" {
            return Err(bad(format!(
                "/{i}/function/name: {name:?} must match [A-Za-z][A-Za-z0-9_]{{0,63}} and not be a Python keyword or \"state\""
            )));
        }
        if tools.iter().any(|t| t.name == name) {
            return Err(bad(format!("/{i}/function/name: duplicate tool {name:?}")));
        }
        if f.get("description").and_then(Value::as_str).is_none_or(|d| d.trim().is_empty()) {
            return Err(bad(format!("/{i}/function/description: missing or empty")));
        }
        let Some(params) = f.get("parameters") else {
            return Err(bad(format!("/{i}/function/parameters: missing")));
        };
        let schema =
            ToolSchema::compile(name, params, &format!("/{i}/function/parameters"), warnings)?;
        tools.push(ValidTool { name: name.to_owned(), openai: entry.clone(), schema });
    }
    Ok(tools)
}

/// Split `PATH@sha256:<hex>` into the path and the pinned hash (lowercased).
pub fn parse_pin(arg: &str) -> (PathBuf, Option<String>) {
    match arg.rsplit_once("@sha256:") {
        Some((p, h)) if !p.is_empty() => (PathBuf::from(p), Some(h.to_ascii_lowercase())),
        _ => (PathBuf::from(arg), None),
    }
}

/// The packages named by `--envs`/`envs check` paths: a PATH holding `env.toml` is a package;
/// otherwise its direct children holding `env.toml` are (sorted; anything else is ignored).
/// `Err` names a PATH that is neither (or a folder without packages).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.join("env.toml").is_file() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| {
            format!(
                "{}: not a package (no env.toml) nor a readable folder of packages: {e}",
                p.display()
            )
        })?;
        let mut found: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|c| c.join("env.toml").is_file()).collect();
        if found.is_empty() {
            return Err(format!("{}: holds no env.toml and no package folders", p.display()));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        agentgen_testdata::path("envpkg")
    }

    #[test]
    fn fixture_hashes_match_the_readme() {
        let stdlib = HashSet::new();
        for (name, want) in [
            ("bookshop", "495d9da0b21376c86ed8636b84ea2d0d2cbb459470c900d746664cd2cc0d0f60"),
            ("thermostat", "5e589bc16163f3bd93efff0d4a1236d80d17d9d2f5f7ef514e96b50e6c947a97"),
        ] {
            let p =
                load_package(&fixtures().join(name), &["trip"], &stdlib).map_err(|e| e.to_string());
            match p {
                Ok(p) => assert_eq!(p.sha256, want, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }

    #[test]
    fn reserved_names_and_bad_toml_are_refused_with_line() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { panic!("tempdir") };
        let src = fixtures().join("broken/missing_tool");
        for f in ["env.py", "tools.json", "tasks.jsonl"] {
            let _ = std::fs::copy(src.join(f), dir.path().join(f));
        }
        let toml_text = std::fs::read_to_string(src.join("env.toml")).unwrap_or_default();
        let _ = std::fs::write(dir.path().join("env.toml"), &toml_text);
        let e =
            load_package(dir.path(), &["missing_tool"], &HashSet::new()).map(|_| ()).unwrap_err();
        assert_eq!(e.code, "pkg.toml");
        assert!(e.detail.starts_with("env.toml:2: name:"), "{}", e.detail);
        let _ = std::fs::write(
            dir.path().join("env.toml"),
            toml_text.replace("version = 1", "version = 0"),
        );
        let e = load_package(dir.path(), &[], &HashSet::new()).map(|_| ()).unwrap_err();
        assert!(e.detail.starts_with("env.toml:3: version:"), "{}", e.detail);
        let _ = std::fs::write(dir.path().join("env.toml"), &toml_text);
        let _ = std::fs::write(dir.path().join("json.py"), "x = 1\n");
        let mut stdlib = HashSet::new();
        stdlib.insert("json".to_owned());
        let e = load_package(dir.path(), &[], &stdlib).map(|_| ()).unwrap_err();
        assert_eq!(e.code, "pkg.layout");
    }
}
