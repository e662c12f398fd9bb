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
        /// Allow families that run untrusted code without every required sandbox layer.
        #[arg(long)]
        allow_weak_sandbox: bool,
    },
    /// Print one task as JSON (TaskSpec). The `reference` solution and `hidden_from_agent`
    /// verifier data are marked as hidden from the agent.
    Sample {
        /// Family name (see `envs list`).
        #[arg(long)]
        family: String,
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
        /// Only these families (repeatable or comma-separated); default all available.
        #[arg(long, value_delimiter = ',')]
        family: Vec<String>,
        /// Number of tasks.
        #[arg(long, default_value_t = 1000)]
        tasks: u64,
        /// Run seed: which tasks are drawn.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print the report as one JSON object (`passed`, `failed`, `failures`, `sandbox`:
        /// the sandbox layers, each active or missing) to stdout; with FILE also write it there.
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
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
        Command::List { json, allow_weak_sandbox: weak } => {
            allow_weak_sandbox(weak);
            list(&registry, json)
        }
        Command::Sample { family, instance_seed, task_seed } => {
            let fam = registry.try_get(&family)?;
            let r = agentgen_environments::TaskRef {
                family: family.clone(),
                version: fam.version(),
                instance_seed,
                task_seed,
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
        Command::Check { family, tasks, seed, quiet, json, allow_weak_sandbox: weak } => {
            allow_weak_sandbox(weak);
            let names: Vec<&str> = family.iter().map(String::as_str).collect();
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
                if !file.as_os_str().is_empty() {
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
