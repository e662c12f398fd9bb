//! Admission of a synthesized draft (beyond `envs check`): the reference passes on at least
//! three generated seeds where the package generates tasks, no static task's answer is
//! written into the package's Python code, and no package already in the output folder has
//! the same tools and schemas (renamed entities do not make a new environment). An admitted
//! draft gets a fresh name when its name is taken, `provenance.json`, and lands in
//! `DIR/<name>-<short hash>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentgen_environments::envpkg::{
    CheckOptions, PythonRuntime, ValidPackage, check_package, discover, load_package,
};
use serde_json::{Value, json};

/// Generated seeds the reference must pass on.
pub const MIN_SEEDS: usize = 3;

/// What admission decided.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Admitted into `dir` under `name`, with the package hash.
    Admitted {
        /// The package folder.
        dir: PathBuf,
        /// The package name.
        name: String,
        /// SHA-256 of the package.
        sha256: String,
    },
    /// `reason`: `check`, `seeds`, `hardcoded_answer`, `near_duplicate`.
    Refused {
        /// Why (`check`, `seeds`, `hardcoded_answer`, `near_duplicate`).
        reason: &'static str,
        /// What the check said, for the model.
        detail: String,
    },
}

/// What admission needs.
pub struct AdmitContext<'a> {
    /// The synthesis output folder.
    pub out: &'a Path,
    /// The Python runtime the checks run in.
    pub rt: &'a PythonRuntime,
    /// Names already taken (admitted packages, shipped families).
    pub reserved: &'a [String],
    /// Generated seeds the check covers.
    pub seeds_k: u64,
}

/// The check report, compacted for the model: the decision, package errors, counts and every
/// rejected task with its reasons (details cut to 600 characters).
pub fn compact_report(report: &Value) -> Value {
    let cut = |s: &str| -> String {
        if s.chars().count() > 600 {
            s.chars().take(600).collect::<String>() + "…"
        } else {
            s.to_owned()
        }
    };
    let problems = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| json!({"code": e["code"], "detail": cut(e["detail"].as_str().unwrap_or(""))}))
            .collect()
    };
    let rejected: Vec<Value> = report["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["admitted"] != json!(true))
        .take(20)
        .map(
            |t| json!({"task_id": t["task_id"], "id": t["id"], "reasons": problems(&t["reasons"])}),
        )
        .collect();
    let warnings: Vec<Value> = problems(&report["warnings"]).into_iter().take(10).collect();
    json!({
        "admitted": report["admitted"], "errors": problems(&report["errors"]),
        "summary": report["summary"], "rejected_tasks": rejected, "warnings": warnings,
    })
}

/// Run `envs check` (strict) on `path`.
pub fn check(path: &Path, ctx: &AdmitContext<'_>) -> Value {
    let reserved: Vec<&str> = ctx.reserved.iter().map(String::as_str).collect();
    let opts = CheckOptions { partial: false, seeds_k: ctx.seeds_k };
    check_package(path, ctx.rt, &reserved, &opts).report
}

/// The reason codes of a report (errors, then task reasons by count).
pub fn report_codes(report: &Value) -> Vec<String> {
    let mut codes: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect();
    codes.extend(
        report["summary"]["by_reason"].as_object().into_iter().flatten().map(|(k, _)| k.clone()),
    );
    codes
}

/// The shape of a package's tools: names, parameter names, types, required lists and nesting;
/// descriptions, enum values and other annotations dropped.
pub fn signature(pkg: &ValidPackage) -> String {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for k in ["type", "items", "properties", "required", "anyOf", "oneOf", "allOf"] {
                    if let Some(x) = o.get(k) {
                        let x = match (k, x) {
                            ("required", Value::Array(a)) => {
                                let mut a: Vec<String> = a
                                    .iter()
                                    .filter_map(|s| s.as_str().map(str::to_owned))
                                    .collect();
                                a.sort();
                                json!(a)
                            }
                            ("properties", Value::Object(p)) => {
                                let m: BTreeMap<&String, Value> =
                                    p.iter().map(|(k, v)| (k, norm(v))).collect();
                                json!(m)
                            }
                            _ => norm(x),
                        };
                        out.insert(k.to_owned(), x);
                    }
                }
                if let Some(Value::Array(e)) = o.get("enum") {
                    out.insert("enum".into(), json!(e.len()));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            other => other.clone(),
        }
    }
    let mut tools: Vec<(String, Value)> = pkg
        .tools
        .iter()
        .map(|t| (t.name.clone(), norm(&t.openai["function"]["parameters"])))
        .collect();
    tools.sort_by(|a, b| a.0.cmp(&b.0));
    json!(tools).to_string()
}

/// Admitted packages already in `out`: (name, sha256, signature, dir).
fn existing(out: &Path, ctx: &AdmitContext<'_>) -> Vec<(String, String, String, PathBuf)> {
    let reserved: Vec<&str> = ctx.reserved.iter().map(String::as_str).collect();
    discover(&[out.to_owned()])
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| {
            let p = load_package(&dir, &reserved, &ctx.rt.stdlib).ok()?;
            Some((p.manifest.name.clone(), p.sha256.clone(), signature(&p), dir))
        })
        .collect()
}

/// Replace the `name = "..."` line of env.toml.
fn rename(toml_text: &str, new: &str) -> Option<String> {
    let (mut replaced, mut in_table) = (false, false);
    let mut out = String::new();
    for line in toml_text.split_inclusive('\n') {
        let t = line.trim_start();
        in_table = in_table || t.starts_with('[');
        if !replaced && !in_table && t.starts_with("name") && t[4..].trim_start().starts_with('=') {
            out.push_str(&format!("name = \"{new}\"\n"));
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    replaced.then_some(out)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let m = std::fs::symlink_metadata(e.path())?;
        if e.file_name() == "__pycache__" {
            continue;
        }
        if m.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else if m.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Admit the draft at `draft` into `ctx.out` (staging under `stage`). `provenance` is written
/// as `provenance.json`. The caller serialises admissions into one folder.
pub fn admit(draft: &Path, stage: &Path, ctx: &AdmitContext<'_>, provenance: &Value) -> Admission {
    let refused = |reason: &'static str, detail: String| Admission::Refused { reason, detail };
    let reserved: Vec<&str> = ctx.reserved.iter().map(String::as_str).collect();
    let pkg = match load_package(draft, &reserved, &ctx.rt.stdlib) {
        Ok(p) => p,
        Err(p) => return refused("check", format!("{}: {}", p.code, p.detail)),
    };
    let others = existing(ctx.out, ctx);
    // Near duplicates first: the cheapest refusal.
    let sig = signature(&pkg);
    if let Some((name, _, _, dir)) = others.iter().find(|(_, _, s, _)| *s == sig) {
        return refused(
            "near_duplicate",
            format!("same tools and schemas as the admitted package {name} ({})", dir.display()),
        );
    }
    // Hard-coded answers: a static task's answer text in the package's Python code.
    let code: String = pkg
        .py_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(pkg.path.join(f)).ok())
        .collect::<Vec<_>>()
        .join("\n");
    for line in pkg.tasks_text.as_deref().unwrap_or("").lines() {
        let Ok(t) = serde_json::from_str::<Value>(line) else { continue };
        for turn in t["turns"].as_array().into_iter().flatten() {
            let answer = turn["answer"].as_str().unwrap_or("").trim();
            if answer.chars().count() >= 16 && code.contains(answer) {
                return refused(
                    "hardcoded_answer",
                    format!(
                        "task {}: its answer {answer:?} is written in the package code",
                        t["id"]
                    ),
                );
            }
        }
    }
    // Stage: a fresh name when taken, provenance.json.
    let mut name = pkg.manifest.name.clone();
    let taken = |n: &str| others.iter().any(|(o, _, _, _)| o == n) || reserved.contains(&n);
    if taken(&name) {
        let base: String = name.chars().take(56).collect();
        name = (2..)
            .map(|k| format!("{base}_{k}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| format!("{base}_x"));
    }
    let _ = std::fs::remove_dir_all(stage);
    if let Err(e) = copy_dir(draft, stage) {
        return refused("check", format!("cannot stage the draft: {e}"));
    }
    if name != pkg.manifest.name {
        let toml = std::fs::read_to_string(stage.join("env.toml")).unwrap_or_default();
        match rename(&toml, &name) {
            Some(t) if std::fs::write(stage.join("env.toml"), &t).is_ok() => {}
            _ => return refused("check", format!("cannot rename the package to {name}")),
        }
    }
    let prov = serde_json::to_string_pretty(provenance).unwrap_or_default();
    if let Err(e) = std::fs::write(stage.join("provenance.json"), prov + "\n") {
        return refused("check", format!("cannot write provenance.json: {e}"));
    }
    let report = check(stage, ctx);
    if report["admitted"] != json!(true) {
        return refused(
            "check",
            format!("envs check rejects it: {}", report_codes(&report).join(", ")),
        );
    }
    if pkg.manifest.generate_seeds.is_some() {
        let passed = report["admitted_tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|id| id.rsplit('/').nth(1).is_some_and(|inst| inst != "0"))
            .count();
        if passed < MIN_SEEDS {
            return refused(
                "seeds",
                format!(
                    "the reference passes on {passed} generated seed(s); at least {MIN_SEEDS} \
                     are needed (set [generate] seeds >= {MIN_SEEDS})"
                ),
            );
        }
    }
    let sha = report["package"]["sha256"].as_str().unwrap_or("").to_owned();
    let short: String = sha.chars().take(12).collect();
    let target = ctx.out.join(format!("{name}-{short}"));
    if target.exists() {
        return refused(
            "near_duplicate",
            format!("{} already holds this package", target.display()),
        );
    }
    if let Err(e) = std::fs::rename(stage, &target) {
        return refused("check", format!("cannot move the package into {}: {e}", target.display()));
    }
    // The runtime's admission cache (keyed by hash; `generate --envs` then skips the check).
    let mut report = report;
    report["package"]["path"] = json!(target.display().to_string());
    agentgen_environments::envpkg::runtime::store_admission(&report, ctx.rt, ctx.seeds_k);
    Admission::Admitted { dir: target, name, sha256: sha }
}

#[cfg(test)]
mod tests {
    use super::rename;

    #[test]
    fn renames_only_the_top_level_name() {
        let t = "format = \"x\"\nname = \"shop\"\nversion = 1\n[provenance]\nname = \"x\"\n";
        let r = rename(t, "shop_2").expect("renamed");
        assert!(r.contains("name = \"shop_2\"\n"));
        assert!(r.contains("[provenance]\nname = \"x\"\n"));
        assert_eq!(rename("[a]\nname = \"q\"\n", "z"), None);
    }
}
