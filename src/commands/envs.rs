//! `agentgen envs`: list the environment families, print one task, run the soundness checks.

use std::io::Write;
use std::process::ExitCode;

use std::path::PathBuf;

use agentgen_environments::{Registry, check_tasks, sandbox};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the families with their instance and task counts and availability.
    List {
        /// Print `{"families": [{"name", "version", "instances", "tasks", "available",
        /// "spawns_process", ...}]}` instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list envpkg packages: packages or folders of packages, comma-separated;
        /// `PATH@sha256:<hex>` pins a package's hash. Packages are listed, not admitted (see
        /// `envs check PATH`).
        #[arg(long, value_delimiter = ',')]
        envs: Vec<String>,
        /// Allow families that run untrusted code without every required sandbox layer.
        #[arg(long)]
        allow_weak_sandbox: bool,
    },
    /// Scaffold an envpkg package NAME (in DIR, default the current directory) that
    /// `envs check` admits as created; edit it from there.
    New {
        /// Package name: `[a-z][a-z0-9_]{0,63}`, not a built-in family's.
        name: String,
        /// Folder to create the package in.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Serve every selected family and package to RL stacks: NeMo Gym's resources-server
    /// routes (`POST /seed_session`, `POST /{tool}`, `POST /verify`) and OpenEnv's (`GET
    /// /health`, `/metadata`, `/schema`, the `/ws` WebSocket). Runs until SIGINT/SIGTERM.
    Serve(super::envserve::ServeArgs),
    /// Write the task rows `envs serve` expects (`--format nemo-gym`: one JSON row per task
    /// with `task_id` and `responses_create_params`).
    Export(super::envserve::ExportArgs),
    /// Print one task as JSON (TaskSpec). The `reference` solution and `hidden_from_agent`
    /// verifier data are marked as hidden from the agent.
    Sample {
        /// Family or package name (see `envs list`).
        #[arg(long, required_unless_present = "task_id")]
        family: Option<String>,
        /// The task id instead (`family@version/instance/task`, as rows carry it).
        #[arg(long, conflicts_with_all = ["family", "instance_seed", "task_seed"])]
        task_id: Option<String>,
        /// envpkg packages or folders of packages (comma-separated; `PATH@sha256:<hex>` pins),
        /// admitted first, whose tasks can then be sampled like a family's.
        #[arg(long, value_delimiter = ',')]
        envs: Vec<String>,
        /// Instance seed (0..instances).
        #[arg(long, default_value_t = 0)]
        instance_seed: u64,
        /// Task seed (0..tasks per instance).
        #[arg(long, default_value_t = 0)]
        task_seed: u64,
    },
    /// Soundness check: for each task the reference solution must pass its verifier and every
    /// hack probe (no calls, answer only, reference minus its last write, random valid calls)
    /// must fail. Task i goes to family i mod F over the available (or selected) families.
    /// Prints failures, then `N passed, M failed`; exits 1 on any failure.
    Check {
        /// envpkg packages to admit (spec envpkg §9): a folder holding env.toml, or a folder of
        /// such packages. Prints the §9.3 report (one JSON object per line for several
        /// packages); exits 0 iff every package is admitted. Without PATH: the families' check.
        paths: Vec<std::path::PathBuf>,
        /// Admit a package when at least one of its tasks passes (only those are served).
        #[arg(long)]
        partial: bool,
        /// Generated seeds checked per package: 1..=min(seeds, K).
        #[arg(long, default_value_t = 16)]
        seeds: u64,
        /// The workers' Python interpreter.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Only these families (repeatable or comma-separated); default all available.
        /// (`--family` is a hidden alias, as this flag was once named.)
        #[arg(long, alias = "family", value_name = "NAMES", value_delimiter = ',')]
        families: Vec<String>,
        /// Number of tasks.
        #[arg(long, default_value_t = 1000)]
        tasks: u64,
        /// Run seed: which tasks are drawn.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Families: print the report as one JSON object (`passed`, `failed`, `failures`,
        /// `sandbox`: the sandbox layers, each active or missing) to stdout. Packages: the
        /// report is on stdout anyway. With FILE, also write it there.
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
        json: Option<PathBuf>,
        /// Allow families that run untrusted code without every required sandbox layer.
        #[arg(long)]
        allow_weak_sandbox: bool,
    },
}

/// `--allow-weak-sandbox` (generate, rollout, envs): allow families that run untrusted code
/// even when a required sandbox layer is missing, with a one-line warning naming what is.
pub fn allow_weak_sandbox(allow: bool) {
    if !allow {
        return;
    }
    sandbox::set_allow_weak(true);
    if let Some(why) = sandbox::Layers::probe().refusal() {
        eprintln!("warning: --allow-weak-sandbox: untrusted code runs in a weaker sandbox; {why}");
    }
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let registry = Registry::new();
    match cmd {
        Command::New { name, dir } => {
            let reserved: Vec<&str> = registry.families().iter().map(|f| f.name()).collect();
            match agentgen_environments::envpkg::scaffold(&name, &dir, &reserved) {
                Ok(p) => {
                    eprintln!("created {}; next: agentgen envs check {}", p.display(), p.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::List { json, envs, allow_weak_sandbox: weak } => {
            allow_weak_sandbox(weak);
            if envs.is_empty() {
                list(&registry, json)
            } else {
                list_packages(&registry, &envs, json)
            }
        }
        Command::Serve(args) => super::envserve::serve(args),
        Command::Export(args) => super::envserve::export(args),
        Command::Sample { family, task_id, envs, instance_seed, task_seed } => {
            let (registry, _) = agentgen_environments::envpkg::registry_with_packages(&envs, 1)
                .map_err(|e| anyhow::anyhow!("--envs: {e}"))?;
            let r = match (task_id, family) {
                (Some(id), _) => id.parse::<agentgen_environments::TaskRef>()?,
                (None, Some(family)) => agentgen_environments::TaskRef {
                    version: registry.try_get(&family)?.version(),
                    family,
                    instance_seed,
                    task_seed,
                },
                (None, None) => anyhow::bail!("--family or --task-id is required"),
            };
            let cache = agentgen_environments::InstanceCache::new(1);
            let (_, task) = registry.task(&cache, &r).with_context(|| format!("task {r}"))?;
            let mut v = serde_json::to_value(&task)?;
            if let Value::Object(m) = &mut v {
                m.insert("_hidden_from_agent".into(), json!(["reference", "hidden_from_agent"]));
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            paths, json, partial, seeds, python, allow_weak_sandbox: weak, ..
        } if !paths.is_empty() => {
            allow_weak_sandbox(weak);
            // `--json` alone: the report goes to stdout anyway; `--json FILE` also writes it.
            let file = json.filter(|p| p.as_os_str() != "-");
            check_packages(&registry, &paths, file.as_deref(), partial, seeds, &python)
        }
        Command::Check { families, tasks, seed, quiet, json, allow_weak_sandbox: weak, .. } => {
            allow_weak_sandbox(weak);
            let names: Vec<&str> = families.iter().map(String::as_str).collect();
            let selection = registry.select(&names)?;
            let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(tasks) };
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let failures = check_tasks(&registry, &selection, seed, tasks, &|| bar.inc(1));
            bar.finish_and_clear();
            let mut out = std::io::stdout().lock();
            for f in &failures {
                writeln!(out, "FAIL {}: {}", f.task_id, f.reasons.join("; "))?;
            }
            let failed = failures.len() as u64;
            if let Some(file) = json {
                let report = json!({
                    "passed": tasks - failed,
                    "failed": failed,
                    "failures": failures.iter().map(|f| json!({"task_id": f.task_id, "reasons": f.reasons})).collect::<Vec<_>>(),
                    "sandbox": sandbox::Layers::probe().to_json(),
                });
                let text = serde_json::to_string(&report)?;
                writeln!(out, "{text}")?;
                if file.as_os_str() != "-" {
                    std::fs::write(&file, format!("{text}\n"))
                        .with_context(|| format!("writing {}", file.display()))?;
                }
                return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            writeln!(out, "{} passed, {} failed", tasks - failed, failed)?;
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// `envs list --envs PATH[,PATH]`: the packages with their version, hash and task counts.
fn list_packages(registry: &Registry, envs: &[String], as_json: bool) -> anyhow::Result<ExitCode> {
    use agentgen_environments::envpkg;
    let resolved = envpkg::runtime::resolve_paths(envs).map_err(anyhow::Error::msg)?;
    let stdlib = envpkg::PythonRuntime::detect("python3").map(|rt| rt.stdlib).unwrap_or_default();
    let reserved: Vec<&str> = registry.families().iter().map(|f| f.name()).collect();
    let mut rows = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (p, pin) in &resolved {
        let row = match envpkg::load_package(p, &reserved, &stdlib) {
            Ok(pkg) => {
                envpkg::runtime::check_identity(&pkg, pin.as_deref(), &mut seen)
                    .map_err(anyhow::Error::msg)?;
                let static_tasks =
                    pkg.tasks_text.as_deref().map_or(0, |t| t.lines().count() as u64);
                json!({"name": pkg.manifest.name, "version": pkg.manifest.version,
                       "path": pkg.path.display().to_string(), "sha256": pkg.sha256,
                       "domain": pkg.manifest.domain, "static_tasks": static_tasks,
                       "generated_seeds": pkg.manifest.generate_seeds.unwrap_or(0),
                       "tasks": static_tasks + pkg.manifest.generate_seeds.unwrap_or(0),
                       "license": pkg.manifest.provenance.get("license"), "loadable": true})
            }
            Err(e) => json!({"path": p.display().to_string(), "loadable": false,
                             "reason": e.to_string()}),
        };
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({ "packages": rows }))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<20} {:>3} {:>10}  {:<16} note", "package", "ver", "tasks", "sha256")?;
    for r in &rows {
        if r["loadable"] == json!(true) {
            writeln!(
                out,
                "{:<20} {:>3} {:>10}  {:<16} {}",
                r["name"].as_str().unwrap_or(""),
                r["version"].to_string(),
                r["tasks"].to_string(),
                &r["sha256"].as_str().unwrap_or("")[..16],
                r["path"].as_str().unwrap_or("")
            )?;
        } else {
            writeln!(
                out,
                "{:<20}   -          -  {:<16} {}",
                r["path"].as_str().unwrap_or(""),
                "-",
                r["reason"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `envs check PATH...`: admit envpkg packages, print their reports.
fn check_packages(
    registry: &Registry,
    paths: &[std::path::PathBuf],
    json_file: Option<&std::path::Path>,
    partial: bool,
    seeds: u64,
    python: &str,
) -> anyhow::Result<ExitCode> {
    use agentgen_environments::envpkg;
    let packages = match envpkg::discover(paths) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = match envpkg::PythonRuntime::detect(python) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(why) = agentgen_environments::sandbox::Layers::probe().refusal()
        && !agentgen_environments::sandbox::allow_weak()
    {
        eprintln!("error: {why}; package workers run only in the full sandbox");
        return Ok(ExitCode::from(2));
    }
    let reserved: Vec<&str> = registry.families().iter().map(|f| f.name()).collect();
    let opts = envpkg::CheckOptions { partial, seeds_k: seeds };
    let mut lines = String::new();
    let mut all = true;
    for p in &packages {
        let out = envpkg::check_package(p, &rt, &reserved, &opts);
        // `generate --envs` reuses the report (cached by package hash next to the package).
        envpkg::runtime::store_admission(&out.report, &rt, seeds);
        all &= out.admitted;
        let r = &out.report;
        let codes: Vec<String> = r["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["code"].as_str().map(str::to_owned))
            .chain(
                r["summary"]["by_reason"].as_object().into_iter().flatten().map(|(k, _)| k.clone()),
            )
            .collect();
        eprintln!(
            "{}: {} ({}/{} tasks admitted){}",
            p.display(),
            if out.admitted { "admitted" } else { "REJECTED" },
            r["summary"]["admitted"],
            r["summary"]["tasks"],
            if codes.is_empty() { String::new() } else { format!(" [{}]", codes.join(", ")) }
        );
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    std::io::stdout().lock().write_all(lines.as_bytes())?;
    if let Some(f) = json_file {
        std::fs::write(f, &lines).with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn list(registry: &Registry, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for f in registry.families() {
        let availability = f.availability();
        let mut row = json!({
            "name": f.name(),
            "version": f.version(),
            "instances": f.instances(),
            "tasks_per_instance": f.tasks_per_instance(),
            "tasks": f.instances().saturating_mul(f.tasks_per_instance()),
            "available": availability.is_available(),
            "spawns_process": f.spawns_process(),
        });
        if let agentgen_environments::Availability::Unavailable { reason } = availability {
            row["unavailable_reason"] = json!(reason);
        }
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({ "families": rows }))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<12} {:>3} {:>10} {:>12} {:>9} {:>8}  note",
        "family", "ver", "instances", "tasks", "available", "process"
    )?;
    let (mut ti, mut tt, mut avail) = (0u64, 0u64, 0usize);
    for r in &rows {
        let available = r["available"].as_bool().unwrap_or(false);
        if available {
            ti += r["instances"].as_u64().unwrap_or(0);
            tt += r["tasks"].as_u64().unwrap_or(0);
            avail += 1;
        }
        writeln!(
            out,
            "{:<12} {:>3} {:>10} {:>12} {:>9} {:>8}  {}",
            r["name"].as_str().unwrap_or(""),
            r["version"],
            r["instances"],
            r["tasks"],
            if available { "yes" } else { "no" },
            if r["spawns_process"].as_bool().unwrap_or(false) { "yes" } else { "no" },
            r["unavailable_reason"].as_str().unwrap_or(""),
        )?;
    }
    writeln!(out, "{avail} of {} families available: {ti} instances, {tt} tasks", rows.len())?;
    Ok(ExitCode::SUCCESS)
}
