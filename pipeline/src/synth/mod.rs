//! `agentgen synth`: environment synthesis with a model (DeepSeek-V3.2's third pillar). The
//! synthesizer is itself a tool-use agent driven through the chat policy: per package it gets
//! the system prompt `prompts/synth-system.md` and the tools `tool-specs/synth/*.json`
//! (write, read and list files of one draft package, run Python in the sandbox, run
//! `envs check` on the draft, submit), and works in rounds (one model response and its tool
//! calls) until admission or a bound (rounds, tokens, wall time).
//!
//! Layout of the output folder `DIR`:
//!
//! ```text
//! DIR/<name>-<sha256[:12]>/     admitted packages (with provenance.json)
//! DIR/rejected/<slot>/draft/    rejected drafts, reason.json beside them
//! DIR/transcripts/data/*.parquet  the synthesizer's own conversations, one row per package
//!                               attempt (train: admitted, rejected: `synth.<reason>`)
//! DIR/synth-report.json         categories, drafts, checks, admitted/rejected by reason, tokens
//! DIR/.synth/<slot>/            work area: draft, transcript.json, result.json (finished)
//! ```
//!
//! A slot is one package to build: `<category slug>-<hash8>-<index>`. A slot with
//! `result.json` is finished and never redone, so a killed run resumes where it stopped (an
//! unfinished slot starts over from an empty draft). Model mistakes (malformed calls, refused
//! paths, failing checks) are observations the model sees, never errors.

pub mod admit;
pub mod draft;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgen_codec::{Message, ThinkingMode, ToolCall};
use agentgen_datasets::{DatasetWriter, SampleRow, Verdict, WriterOptions};
use agentgen_environments::envpkg::PythonRuntime;
use agentgen_environments::sandbox::{Sandbox, SandboxConfig};
use agentgen_environments::toolspec::{ToolSet, family_tools};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::admit::{Admission, AdmitContext};
use self::draft::Draft;
use crate::{ChatPolicy, Error, Policy, PromptRequest, Result, SamplingParams};

/// The synthesizer's system prompt (reviewed like code).
pub const SYSTEM_PROMPT: &str = include_str!("../../../prompts/synth-system.md");
/// Name of the report file in the output folder.
pub const REPORT_FILE: &str = "synth-report.json";
/// Work folder of unfinished slots.
pub const WORK_DIR: &str = ".synth";
/// Folder of the drafts that were refused.
pub const REJECTED_DIR: &str = "rejected";
/// Folder of the model transcripts.
pub const TRANSCRIPTS_DIR: &str = "transcripts";

/// Settings of a synthesis run.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Categories to build packages for.
    pub categories: Vec<String>,
    /// Packages per category.
    pub n: u32,
    /// The output folder.
    pub out: PathBuf,
    /// Most model turns per package.
    pub max_rounds: u32,
    /// Prompt + completion tokens (from `usage`) per package.
    pub max_tokens_per_package: u64,
    /// Most wall time per package, in minutes.
    pub max_minutes_per_package: f64,
    /// Packages built at once.
    pub concurrency: usize,
    /// Generated seeds `envs check` covers.
    pub seeds_k: u64,
    /// Sampling of the synthesizer model.
    pub sampling: SamplingParams,
    /// Show the progress bar.
    pub progress: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            categories: Vec::new(),
            n: 1,
            out: PathBuf::from("synth"),
            max_rounds: 40,
            max_tokens_per_package: 2_000_000,
            max_minutes_per_package: 30.0,
            concurrency: 4,
            seeds_k: 16,
            sampling: SamplingParams {
                temperature: 0.7,
                max_tokens: 16384,
                ..SamplingParams::default()
            },
            progress: true,
        }
    }
}

/// One package to build.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Slot id (`<category>-<index>`).
    pub id: String,
    /// The slot's category.
    pub category: String,
    /// Index of the slot within its category.
    pub index: u32,
}

/// How one slot ended (`DIR/.synth/<slot>/result.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlotResult {
    /// Slot id.
    pub slot: String,
    /// The slot's category.
    pub category: String,
    /// Index of the slot within its category.
    pub index: u32,
    /// `admitted` or `rejected`.
    pub status: String,
    /// Rejected: `round_limit`, `token_limit`, `time_limit`, `policy_error`.
    pub reason: Option<String>,
    /// What went wrong, for a reader.
    pub detail: Option<String>,
    /// Admitted: the package folder, its name and hash; rejected: the kept draft.
    pub path: Option<String>,
    /// Admitted: the package name.
    pub name: Option<String>,
    /// Admitted: the package SHA-256.
    pub sha256: Option<String>,
    /// Model turns used.
    pub rounds: u32,
    /// Prompt tokens used (from `usage`).
    pub prompt_tokens: u64,
    /// Completion tokens used (from `usage`).
    pub completion_tokens: u64,
    /// Tool calls made.
    pub tool_calls: u32,
    /// Files the model wrote.
    pub files_written: u32,
    /// `envs check` runs.
    pub checks: u32,
    /// Check runs that admitted the draft.
    pub checks_admitted: u32,
    /// Submissions.
    pub submits: u32,
    /// Refused tool calls (paths outside the draft, bad arguments, unknown tools).
    pub refused_calls: u32,
    /// Submissions refused, by reason (`check`, `seeds`, `hardcoded_answer`, `near_duplicate`).
    pub submit_refusals: BTreeMap<String, u32>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// What a run did: the report written to `DIR/synth-report.json`.
pub struct SynthOutcome {
    /// The JSON report.
    pub report: Value,
    /// One result per slot.
    pub results: Vec<SlotResult>,
    /// A spent `--max-tokens-total` (unfinished slots are redone by the next run).
    pub stopped: Option<String>,
    /// Whether a signal stopped the run early.
    pub interrupted: bool,
}

struct Ctx {
    cfg: SynthConfig,
    policy: Arc<ChatPolicy>,
    rt: &'static PythonRuntime,
    reserved: Vec<String>,
    toolset: Arc<ToolSet>,
    tools: Vec<Value>,
    model: String,
    prompt_sha256: String,
    admit_lock: tokio::sync::Mutex<()>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The slots of a run, in category order.
pub fn slots(categories: &[String], n: u32) -> Vec<Slot> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for c in categories.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if seen.contains(&c) {
            continue;
        }
        seen.push(c);
        let mut slug: String = c
            .to_lowercase()
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        slug = slug.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-");
        slug.truncate(40);
        let h: String = sha256_hex(c.as_bytes()).chars().take(8).collect();
        for i in 0..n {
            out.push(Slot { id: format!("{slug}-{h}-{i:03}"), category: c.to_owned(), index: i });
        }
    }
    out
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::Io { path: path.display().to_string(), source })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

/// Run synthesis until every slot is finished, `shutdown` resolves, or the token budget of
/// the policy is spent.
pub async fn run_synth<S>(
    cfg: SynthConfig,
    policy: Arc<ChatPolicy>,
    shutdown: S,
) -> Result<SynthOutcome>
where
    S: Future<Output = ()> + Send,
{
    let all = slots(&cfg.categories, cfg.n);
    if all.is_empty() || cfg.max_rounds == 0 || cfg.concurrency == 0 {
        return Err(Error::Config {
            message: "synth needs at least one category, --n >= 1, --max-rounds >= 1".into(),
        });
    }
    let out = cfg.out.clone();
    let _lock = match agentgen_datasets::FolderLock::acquire(&out) {
        Ok(l) => l,
        Err(agentgen_datasets::Error::Busy { holder, .. }) => {
            return Err(Error::OutputBusy { dir: out.display().to_string(), holder });
        }
        Err(e) => return Err(Error::Dataset(e)),
    };
    let rt = PythonRuntime::shared().map_err(|e| Error::Config {
        message: format!("synth checks packages with CPython >= 3.11: {e}"),
    })?;
    if let Some(why) = agentgen_environments::sandbox::Layers::probe().refusal()
        && !agentgen_environments::sandbox::allow_weak()
    {
        return Err(Error::Config {
            message: format!(
                "{why}; synth runs package code only in the full sandbox (--allow-weak-sandbox to run it anyway)"
            ),
        });
    }
    let toolset = family_tools("synth").map_err(|e| Error::Config { message: e.to_string() })?;
    let names: Vec<&str> = toolset.names();
    let tools =
        toolset.openai_list(&names).map_err(|e| Error::Config { message: e.to_string() })?;
    let reserved: Vec<String> = agentgen_environments::Registry::new()
        .families()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let model = policy.model().unwrap_or_default();
    let work = out.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    let ctx = Arc::new(Ctx {
        prompt_sha256: sha256_hex(SYSTEM_PROMPT.as_bytes()),
        cfg,
        policy,
        rt,
        reserved,
        toolset,
        tools,
        model,
        admit_lock: tokio::sync::Mutex::new(()),
    });

    let mut results: Vec<SlotResult> = Vec::new();
    let mut pending = Vec::new();
    for s in &all {
        let f = work.join(&s.id).join("result.json");
        match std::fs::read(&f).ok().and_then(|b| serde_json::from_slice::<SlotResult>(&b).ok()) {
            Some(r) => results.push(r),
            None => pending.push(s.clone()),
        }
    }
    let resumed = results.len();
    let bar = if ctx.cfg.progress {
        let b = indicatif::ProgressBar::new(all.len() as u64);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} packages {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        b.set_style(style);
        b.set_position(resumed as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(ctx.cfg.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for slot in pending {
        let (ctx, sem) = (Arc::clone(&ctx), Arc::clone(&sem));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            synthesize(ctx, slot).await
        });
    }
    let mut stopped = None;
    let mut interrupted = false;
    let admitted_count = |r: &[SlotResult]| r.iter().filter(|r| r.status == "admitted").count();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            joined = set.join_next() => {
                let Some(joined) = joined else { break };
                match joined {
                    Ok(Ok(r)) => {
                        results.push(r);
                        bar.inc(1);
                        bar.set_message(format!("{} admitted", admitted_count(&results)));
                    }
                    Ok(Err(Error::Stopped { reason })) => {
                        stopped.get_or_insert(reason);
                        set.abort_all();
                    }
                    Ok(Err(e)) => tracing::warn!("synth: a slot failed and will be redone: {e}"),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => tracing::warn!("synth: a slot panicked: {e}"),
                }
            }
            () = &mut shutdown, if !interrupted => {
                interrupted = true;
                set.abort_all();
            }
        }
    }
    bar.finish_and_clear();
    // A spent `--max-tokens-total` refuses the next request (`Error::Stopped`); slots left
    // unfinished are redone by the next run.
    if stopped.is_none() && !interrupted && results.len() < all.len() && ctx.policy.budget_spent() {
        stopped = Some("--max-tokens-total is spent".into());
    }
    results.sort_by(|a, b| a.slot.cmp(&b.slot));
    write_transcripts(&ctx, &out, &results)?;
    let report = report_json(&ctx, &all, &results, resumed, stopped.as_deref(), interrupted);
    write_json(&out.join(REPORT_FILE), &report)?;
    Ok(SynthOutcome { report, results, stopped, interrupted })
}

fn report_json(
    ctx: &Ctx,
    all: &[Slot],
    results: &[SlotResult],
    resumed: usize,
    stopped: Option<&str>,
    interrupted: bool,
) -> Value {
    let mut categories: Vec<&str> = all.iter().map(|s| s.category.as_str()).collect();
    categories.dedup();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in results {
        let e = by_category.entry(r.category.as_str()).or_default();
        if r.status == "admitted" {
            e.0 += 1;
        } else {
            e.1 += 1;
            *by_reason.entry(r.reason.clone().unwrap_or_default()).or_default() += 1;
        }
        for (k, n) in &r.submit_refusals {
            *refusals.entry(k.clone()).or_default() += u64::from(*n);
        }
    }
    let sum = |f: fn(&SlotResult) -> u64| results.iter().map(f).sum::<u64>();
    let (prompt, completion) = (sum(|r| r.prompt_tokens), sum(|r| r.completion_tokens));
    json!({
        "format": "agentgen-synth-report/1",
        "model": ctx.model,
        "prompt_sha256": ctx.prompt_sha256,
        "categories": {"tried": categories.len(), "names": categories},
        "packages": {
            "planned": all.len(), "finished": results.len(), "resumed": resumed,
            "admitted": results.iter().filter(|r| r.status == "admitted").count(),
            "rejected": results.iter().filter(|r| r.status != "admitted").count(),
        },
        "rejected_by_reason": by_reason,
        "submit_refusals_by_reason": refusals,
        "drafts": results.iter().filter(|r| r.files_written > 0).count(),
        "files_written": sum(|r| u64::from(r.files_written)),
        "checks": {"run": sum(|r| u64::from(r.checks)), "admitted": sum(|r| u64::from(r.checks_admitted))},
        "submits": sum(|r| u64::from(r.submits)),
        "refused_calls": sum(|r| u64::from(r.refused_calls)),
        "rounds": sum(|r| u64::from(r.rounds)),
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "by_category": by_category.iter().map(|(c, (a, r))| (c.to_string(), json!({"admitted": a, "rejected": r}))).collect::<serde_json::Map<_, _>>(),
        "bounds": {"max_rounds": ctx.cfg.max_rounds, "max_tokens_per_package": ctx.cfg.max_tokens_per_package,
                   "max_minutes_per_package": ctx.cfg.max_minutes_per_package},
        "stopped": stopped,
        "interrupted": interrupted,
        "slots": results,
    })
}

/// The transcripts of every finished slot as one Parquet dataset (rewritten each run).
fn write_transcripts(ctx: &Ctx, out: &Path, results: &[SlotResult]) -> Result<()> {
    let dir = out.join(TRANSCRIPTS_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let ds = Error::Dataset;
    let mut writer = DatasetWriter::try_new(&dir, WriterOptions::default()).map_err(ds)?;
    let tools_text = serde_json::to_string(&ctx.tools).unwrap_or_else(|_| "[]".into());
    let sampling = serde_json::to_string(&ctx.cfg.sampling).unwrap_or_else(|_| "{}".into());
    for r in results {
        let f = out.join(WORK_DIR).join(&r.slot).join("transcript.json");
        let Some(messages) =
            std::fs::read(&f).ok().and_then(|b| serde_json::from_slice::<Vec<Message>>(&b).ok())
        else {
            continue;
        };
        let mut with_tools = messages.clone();
        if let Some(first) = with_tools.first_mut() {
            first.tools = Some(ctx.tools.clone());
        }
        let mode = crate::chat::row_mode(&with_tools, ThinkingMode::Thinking, true);
        let admitted = r.status == "admitted";
        let mut verdict = if admitted {
            Verdict::Accepted
        } else {
            Verdict::Rejected {
                code: format!("synth.{}", r.reason.as_deref().unwrap_or("rejected")),
                detail: r.detail.clone().unwrap_or_default(),
            }
        };
        let (text, ids, mask) = match crate::chat::reencode(&with_tools, mode) {
            Ok(x) => x,
            Err(rej) => {
                verdict =
                    Verdict::Rejected { code: rej.code().to_owned(), detail: rej.detail.clone() };
                (String::new(), Vec::new(), Vec::new())
            }
        };
        let mut stored = messages;
        if let Some(first) = stored.first_mut() {
            first.tools = None;
        }
        let sample_id = format!("synth-{}", r.slot);
        let row = SampleRow {
            sample_id: sample_id.clone(),
            task_id: format!("synth/{}", r.slot),
            group_id: r.slot.clone(),
            run_id: format!("synth-{}", &ctx.prompt_sha256[..12]),
            family: "synth".into(),
            instance_seed: 0,
            task_seed: u64::from(r.index),
            sample_index: 0,
            difficulty: 0,
            thinking_mode: mode.as_str().to_owned(),
            tools: tools_text.clone(),
            messages: stored,
            logprobs: None,
            text,
            token_ids: ids,
            loss_mask: mask,
            reward: if admitted { 1.0 } else { 0.0 },
            advantage: None,
            passed: admitted,
            checks: json!([{"name": "admitted", "passed": admitted,
                            "detail": r.detail.clone().unwrap_or_default()}])
            .to_string(),
            verdict,
            turns: r.rounds,
            tool_calls: r.tool_calls,
            finish_reason: if admitted {
                "stop".into()
            } else {
                r.reason.clone().unwrap_or_default()
            },
            policy: "chat".into(),
            model: Some(ctx.model.clone()),
            sampling: sampling.clone(),
            warnings: Vec::new(),
            timings_ms: json!({"total": (r.seconds * 1e3).round()}).to_string(),
            token_source: "retokenized".into(),
            episode_id: sample_id,
            turn_index: 0,
            turns_total: 1,
            env_package: None,
            env_package_sha256: None,
            env_python: None,
        };
        writer.write(row).map_err(ds)?;
    }
    writer.finish().map_err(ds)?;
    Ok(())
}

fn err_obs(msg: impl std::fmt::Display) -> String {
    json!({"error": msg.to_string()}).to_string()
}

/// Build one package: the agent loop of one slot. `Err` only for a spent token budget
/// (`Error::Stopped`) or the work folder failing; the slot is then redone by the next run.
async fn synthesize(ctx: Arc<Ctx>, slot: Slot) -> Result<SlotResult> {
    let started = Instant::now();
    let out = ctx.cfg.out.clone();
    let work = out.join(WORK_DIR).join(&slot.id);
    let draft = Draft::fresh(&work.join("draft")).map_err(io_err(&work))?;
    let mut res = SlotResult {
        slot: slot.id.clone(),
        category: slot.category.clone(),
        index: slot.index,
        ..SlotResult::default()
    };
    let admitted_names: Vec<String> = std::fs::read_dir(&out)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("env.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let others = if admitted_names.is_empty() {
        String::new()
    } else {
        format!(
            "\nPackages already admitted in the output folder (build something different from them: other entities, tools and tasks): {}.",
            admitted_names.join(", ")
        )
    };
    let mut messages = vec![
        Message::system(SYSTEM_PROMPT).with_tools(ctx.tools.clone()),
        Message::user(format!(
            "Category: {}\n\nBuild one envpkg package for this category (package {} of {}). Pick a short package name ([a-z][a-z0-9_]*) that fits it.{others}\nStart with the data, then the tools, then one easy task; run check_package after every change; submit when it is admitted, then add harder tasks only if you still have budget.",
            slot.category,
            slot.index + 1,
            ctx.cfg.n
        )),
    ];
    let seed =
        u64::from_le_bytes(Sha256::digest(slot.id.as_bytes())[..8].try_into().unwrap_or([0; 8]))
            ^ ctx.cfg.sampling.seed;
    let deadline = Duration::from_secs_f64(ctx.cfg.max_minutes_per_package.max(0.0) * 60.0);
    let mut last_problem = String::from("the draft was never submitted");
    let mut end: Option<(&'static str, String)> = None;
    let mut admitted: Option<(PathBuf, String, String)> = None;
    while admitted.is_none() && end.is_none() {
        let tokens = res.prompt_tokens + res.completion_tokens;
        if res.rounds >= ctx.cfg.max_rounds {
            end = Some((
                "round_limit",
                format!("{} rounds used; last problem: {last_problem}", res.rounds),
            ));
            break;
        }
        if tokens >= ctx.cfg.max_tokens_per_package {
            end = Some((
                "token_limit",
                format!("{tokens} tokens used; last problem: {last_problem}"),
            ));
            break;
        }
        if started.elapsed() >= deadline {
            end = Some((
                "time_limit",
                format!(
                    "{:.0} s used; last problem: {last_problem}",
                    started.elapsed().as_secs_f64()
                ),
            ));
            break;
        }
        let req = PromptRequest {
            text: String::new(),
            prompt_ids: Vec::new(),
            sample_id: slot.id.clone(),
            turn: res.rounds,
            user_turn: 0,
            thinking: true,
            reference: None,
            messages: messages.clone(),
        };
        res.rounds += 1;
        let params =
            SamplingParams { seed: seed ^ u64::from(res.rounds), ..ctx.cfg.sampling.clone() };
        let completion = match ctx.policy.complete(&req, &params).await {
            Ok(c) => c,
            Err(e @ Error::Stopped { .. }) => return Err(e),
            Err(e) => {
                end = Some(("policy_error", e.to_string()));
                break;
            }
        };
        let Some(turn) = completion.chat else {
            end = Some(("policy_error", "the endpoint gave no chat message".into()));
            break;
        };
        if let Some((p, c)) = turn.usage {
            res.prompt_tokens += p;
            res.completion_tokens += c;
        }
        if let Some((_, rej)) = &turn.rejection {
            last_problem = format!("unusable response ({}: {})", rej.code(), rej.detail);
            messages.push(Message::user(format!(
                "Your last response could not be used ({}: {}). Reply with tool calls whose arguments are JSON objects, using only the declared tools.",
                rej.code(),
                rej.detail
            )));
            continue;
        }
        let calls: Vec<ToolCall> = turn.message.tool_calls.clone();
        messages.push(turn.message);
        if calls.is_empty() {
            messages.push(Message::user(
                "Continue with the tools: build the package, run check_package, and call submit once it is admitted.",
            ));
            continue;
        }
        for call in calls {
            res.tool_calls += 1;
            let (content, adm) =
                execute(&ctx, &slot, &draft, &work, &call, &mut res, &mut last_problem).await?;
            messages.push(Message::tool(content, call.id.clone()));
            if admitted.is_none() {
                admitted = adm;
            }
        }
    }
    res.seconds = started.elapsed().as_secs_f64();
    match (admitted, end) {
        (Some((dir, name, sha)), _) => {
            res.status = "admitted".into();
            res.path = Some(dir.display().to_string());
            res.name = Some(name);
            res.sha256 = Some(sha);
        }
        (None, end) => {
            let (reason, detail) = end.unwrap_or(("round_limit", last_problem.clone()));
            res.status = "rejected".into();
            res.reason = Some(reason.to_owned());
            res.detail = Some(detail);
            let keep = out.join(REJECTED_DIR).join(&slot.id);
            let _ = std::fs::remove_dir_all(&keep);
            std::fs::create_dir_all(&keep).map_err(io_err(&keep))?;
            let target = keep.join("draft");
            std::fs::rename(draft.root(), &target).map_err(io_err(&target))?;
            write_json(
                &keep.join("reason.json"),
                &json!({
                    "slot": slot.id, "category": slot.category, "reason": reason,
                    "detail": res.detail, "rounds": res.rounds,
                    "tokens": res.prompt_tokens + res.completion_tokens,
                }),
            )?;
            res.path = Some(target.display().to_string());
        }
    }
    write_json(&work.join("transcript.json"), &messages)?;
    write_json(&work.join("result.json"), &res)?;
    Ok(res)
}

/// Run one tool call of the synthesizer. Returns the observation and, for an admitted
/// submission, the package. `Err` only when the work folder fails.
async fn execute(
    ctx: &Arc<Ctx>,
    slot: &Slot,
    draft: &Draft,
    work: &Path,
    call: &ToolCall,
    res: &mut SlotResult,
    last_problem: &mut String,
) -> Result<(String, Option<(PathBuf, String, String)>)> {
    let names = ctx.toolset.names();
    let args = match ctx.toolset.parse_call(call, &names) {
        Ok(a) => a,
        Err(e) => {
            res.refused_calls += 1;
            return Ok((err_obs(e), None));
        }
    };
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let refused = |res: &mut SlotResult, e: String| {
        if e.starts_with("refused") {
            res.refused_calls += 1;
        }
        err_obs(e)
    };
    let obs = match call.name.as_str() {
        "write_file" => match draft.write(&s("path"), &s("content")) {
            Ok(v) => {
                res.files_written += 1;
                v.to_string()
            }
            Err(e) => refused(res, e),
        },
        "read_file" => match draft.read(&s("path")) {
            Ok(text) => text,
            Err(e) => refused(res, e),
        },
        "list_files" => draft.list().to_string(),
        "run_python" => {
            let save = args.get("save_stdout_to").and_then(Value::as_str).map(str::to_owned);
            if let Some(p) = &save
                && let Err(e) = draft.resolve(p)
            {
                return Ok((refused(res, e), None));
            }
            let files = draft.sandbox_files();
            let code = s("code");
            let ran = tokio::task::spawn_blocking(move || {
                let sb = Sandbox::shared()?;
                let sb = sb.with_config(SandboxConfig {
                    max_output_bytes: draft::MAX_FILE_BYTES,
                    ..SandboxConfig::default()
                });
                sb.run(&code, &files).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| Error::Join { message: e.to_string() })?;
            match ran {
                Err(e) => err_obs(format!("the sandbox could not run the program: {e}")),
                Ok(o) => {
                    let mut saved = Value::Null;
                    if let Some(p) = &save
                        && o.success()
                        && !o.truncated
                    {
                        saved = match draft.write(p, &o.stdout) {
                            Ok(v) => {
                                res.files_written += 1;
                                v
                            }
                            Err(e) => json!({"error": e}),
                        };
                    }
                    let cut = |t: &str| -> String {
                        if t.len() > 8192 && save.is_some() {
                            let mut c = 8192;
                            while !t.is_char_boundary(c) {
                                c -= 1;
                            }
                            format!("{}…[{} more bytes]", &t[..c], t.len() - c)
                        } else {
                            t.to_owned()
                        }
                    };
                    json!({"stdout": cut(&o.stdout), "stderr": o.stderr, "exit_code": o.exit_code,
                           "timed_out": o.timed_out, "truncated": o.truncated, "saved": saved})
                    .to_string()
                }
            }
        }
        "check_package" => {
            res.checks += 1;
            let c = Arc::clone(ctx);
            let root = draft.root().to_owned();
            let report = tokio::task::spawn_blocking(move || {
                let actx = AdmitContext {
                    out: &c.cfg.out,
                    rt: c.rt,
                    reserved: &c.reserved,
                    seeds_k: c.cfg.seeds_k,
                };
                admit::check(&root, &actx)
            })
            .await
            .map_err(|e| Error::Join { message: e.to_string() })?;
            if report["admitted"] == json!(true) {
                res.checks_admitted += 1;
            } else {
                *last_problem = format!("envs check: {}", admit::report_codes(&report).join(", "));
            }
            admit::compact_report(&report).to_string()
        }
        "submit" => {
            res.submits += 1;
            let _guard = ctx.admit_lock.lock().await;
            let c = Arc::clone(ctx);
            let root = draft.root().to_owned();
            let stage = work.join("stage");
            let provenance = json!({
                "format": "agentgen-synth-provenance/1",
                "model": ctx.model, "category": slot.category, "slot": slot.id,
                "prompt_sha256": ctx.prompt_sha256,
                "rounds": res.rounds,
                "tokens": {"prompt": res.prompt_tokens, "completion": res.completion_tokens},
                "created": crate::run::now_rfc3339(),
                "generator": format!("agentgen {} synth", env!("CARGO_PKG_VERSION")),
            });
            let adm = tokio::task::spawn_blocking(move || {
                let actx = AdmitContext {
                    out: &c.cfg.out,
                    rt: c.rt,
                    reserved: &c.reserved,
                    seeds_k: c.cfg.seeds_k,
                };
                admit::admit(&root, &stage, &actx, &provenance)
            })
            .await
            .map_err(|e| Error::Join { message: e.to_string() })?;
            match adm {
                Admission::Admitted { dir, name, sha256 } => {
                    let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned());
                    let obs = json!({"admitted": true, "package": folder, "name": name, "sha256": sha256});
                    return Ok((obs.to_string(), Some((dir, name, sha256))));
                }
                Admission::Refused { reason, detail } => {
                    *res.submit_refusals.entry(reason.to_owned()).or_default() += 1;
                    *last_problem = format!("submit refused ({reason}): {detail}");
                    json!({"admitted": false, "reason": reason, "detail": detail}).to_string()
                }
            }
        }
        other => err_obs(format!("unknown tool {other}")),
    };
    Ok((obs, None))
}
