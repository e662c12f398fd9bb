//! Packages as families (spec §1: "serves the package's tasks like a native family"): a
//! [`PackageFamily`] is an admitted package behind the [`Family`] trait, so `generate`,
//! `rollout`, `--task-file` ids, the reference and model policies, verifiers, rejection codes
//! and manifests treat it like a built-in family.
//!
//! - Opening ([`open_packages`]) resolves `--envs` arguments (a package, a folder of packages,
//!   `PATH@sha256:<hex>` pins), refuses a package shadowing a built-in name or two hashes for
//!   one `name@version`, and admits each package (spec §9), caching the admission report by
//!   package hash and Python minor in `<parent>/.agentgen/<sha256>/` (interfaces.md: runtime
//!   state about packages lives outside every package). Only admitted tasks are served.
//! - Tasks: static tasks are instance 0, task = line; generated tasks are instance = seed, task
//!   0 (§6.3). Runs draw the admitted static tasks and every generated seed in a seeded
//!   permutation ([`Family::task_at`]). A generated seed beyond the admitted K is replayed once
//!   before first use (§13.17) and served only when its reference passes.
//! - Episodes: a [`PackageSession`] holds one pooled worker for the whole episode (a fresh
//!   `Env` per episode), plays calls with the §7.2 checks, verifies after every user turn (§8,
//!   gold states computed once per task) and returns the worker to its pool when dropped.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentgen_codec::{Message, ToolCall};
use serde_json::{Value, json};

use super::check::{CheckOptions, check_package, reference_states};
use super::episode::Episode;
use super::load::{ValidPackage, discover, load_package, parse_pin};
use super::task::{ValidTask, parse_task, task_id};
use super::worker::{Failure, PythonRuntime, Worker, WorkerPool};
use crate::error::{Error, Result};
use crate::framework::{
    Family, FamilyInfo, FollowUp, Instance, PackageInfo, ReferenceSolution, ReferenceTurn, Session,
    SessionResult, State, TaskRef, TaskSpec, ToolResult, Verdict,
};

/// How packages are opened for a run.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Workers kept per package (the run's concurrency: an in-flight episode holds one).
    pub workers: usize,
    /// Generated seeds admission checks (`envs check --seeds`).
    pub seeds_k: u64,
    /// Names a package may not take (the built-in families).
    pub reserved: Vec<String>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { workers: 4, seeds_k: 16, reserved: Vec::new() }
    }
}

/// `--envs` arguments to package directories with their optional pins, in argument order
/// (folders expanded in sorted order).
pub fn resolve_paths(
    specs: &[String],
) -> std::result::Result<Vec<(PathBuf, Option<String>)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let (p, pin) = parse_pin(spec);
        for found in discover(std::slice::from_ref(&p))? {
            out.push((found, pin.clone()));
        }
    }
    Ok(out)
}

/// Refuse a pin mismatch and two hashes for one `name@version` (`seen` holds earlier ones).
pub fn check_identity(
    pkg: &ValidPackage,
    pin: Option<&str>,
    seen: &mut Vec<(String, String)>,
) -> std::result::Result<(), String> {
    let label = pkg.label();
    if let Some(want) = pin
        && want != pkg.sha256
    {
        return Err(format!(
            "{}: package hash {} does not match the pinned {want}",
            pkg.path.display(),
            pkg.sha256
        ));
    }
    if let Some((_, h)) = seen.iter().find(|(l, h)| *l == label && *h != pkg.sha256) {
        return Err(format!(
            "{label}: two packages with different hashes ({h} and {})",
            pkg.sha256
        ));
    }
    seen.push((label, pkg.sha256.clone()));
    Ok(())
}

/// Open, admit and wrap every package named by `specs`. `Err` is one line naming the package
/// and why (not loadable, not admitted with its reason codes, pin mismatch, name clash).
pub fn open_packages(
    specs: &[String],
    rt: &PythonRuntime,
    opts: &OpenOptions,
) -> std::result::Result<Vec<Arc<PackageFamily>>, String> {
    let reserved: Vec<&str> = opts.reserved.iter().map(String::as_str).collect();
    let mut seen = Vec::new();
    let mut out: Vec<Arc<PackageFamily>> = Vec::new();
    for (path, pin) in resolve_paths(specs)? {
        let pkg = load_package(&path, &reserved, &rt.stdlib)
            .map_err(|p| format!("{}: not a loadable package: {p}", path.display()))?;
        check_identity(&pkg, pin.as_deref(), &mut seen)?;
        if out.iter().any(|f| f.pkg.manifest.name == pkg.manifest.name) {
            if out.iter().any(|f| f.pkg.sha256 == pkg.sha256) {
                continue; // the same package named twice
            }
            return Err(format!(
                "{}: package name {:?} is used by two packages (versions differ)",
                path.display(),
                pkg.manifest.name
            ));
        }
        let report = admission(&pkg, &path, rt, opts)?;
        out.push(Arc::new(PackageFamily::new(pkg, rt.clone(), &report, opts.workers)?));
    }
    Ok(out)
}

/// The built-in families plus the packages of `envs` (`--envs` arguments), opened with the
/// process-wide `python3` runtime, and the package names in argument order. `Err` is one line:
/// no CPython >= 3.11, a sandbox layer missing (unless `--allow-weak-sandbox`), or a package
/// that does not load or is not admitted.
pub fn registry_with_packages(
    envs: &[String],
    workers: usize,
) -> std::result::Result<(crate::Registry, Vec<String>), String> {
    let builtins = crate::Registry::new();
    if envs.is_empty() {
        return Ok((builtins, Vec::new()));
    }
    let rt = PythonRuntime::shared()
        .map_err(|e| format!("packages need CPython >= 3.11 (standard library only): {e}"))?;
    if let Some(why) = crate::sandbox::Layers::probe().refusal()
        && !crate::sandbox::allow_weak()
    {
        return Err(format!(
            "{why}; package workers run only in the full sandbox (--allow-weak-sandbox to run \
             them anyway)"
        ));
    }
    let reserved: Vec<String> = builtins.families().iter().map(|f| f.name().to_owned()).collect();
    let opts = OpenOptions { workers: workers.clamp(1, 256), reserved, ..Default::default() };
    let packages = open_packages(envs, rt, &opts)?;
    let mut names = Vec::new();
    let mut families: Vec<Arc<dyn Family>> = builtins.families().to_vec();
    for p in packages {
        names.push(p.name().to_owned());
        families.push(p);
    }
    Ok((crate::Registry::from_families(families), names))
}

/// The admission report of `pkg`: cached in `<parent>/.agentgen/<sha256>/` by Python minor,
/// else computed (and cached when the folder is writable). `Err` when not admitted.
fn admission(
    pkg: &ValidPackage,
    path: &Path,
    rt: &PythonRuntime,
    opts: &OpenOptions,
) -> std::result::Result<Value, String> {
    let file = admission_file(&pkg.path, &pkg.sha256, rt, opts.seeds_k);
    let cached = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|r| r["package"]["sha256"] == json!(pkg.sha256));
    let report = match cached {
        Some(r) => r,
        None => {
            tracing::info!(
                "admitting {} ({}): first use of this package hash, the report is cached",
                pkg.label(),
                path.display()
            );
            let reserved: Vec<&str> = opts.reserved.iter().map(String::as_str).collect();
            let copts = CheckOptions { partial: false, seeds_k: opts.seeds_k };
            let r = check_package(path, rt, &reserved, &copts).report;
            store_admission(&r, rt, opts.seeds_k);
            r
        }
    };
    if report["admitted"] != json!(true) {
        let codes: Vec<String> = report["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["code"].as_str().unwrap_or("?"),
                    e["detail"].as_str().unwrap_or("")
                )
            })
            .chain(
                report["summary"]["by_reason"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, n)| format!("{k} ({n} tasks)")),
            )
            .collect();
        return Err(format!(
            "{} ({}) is not admitted: {}; run `agentgen envs check {}` for the report",
            pkg.label(),
            path.display(),
            codes.join("; "),
            path.display()
        ));
    }
    Ok(report)
}

/// Where the admission report of the package at `dir` with hash `sha256` is cached, by Python
/// minor and the number of generated seeds checked.
fn admission_file(dir: &Path, sha256: &str, rt: &PythonRuntime, seeds_k: u64) -> Option<PathBuf> {
    state_dir(dir, sha256).map(|d| d.join(format!("admission-py{}-k{}.json", rt.minor(), seeds_k)))
}

/// Cache a strict (not `--partial`) admission that admitted its package, next to the package, where runs look it
/// up (`envs check` and the runs share it). Best effort: a read-only folder re-admits next time.
pub fn store_admission(report: &Value, rt: &PythonRuntime, seeds_k: u64) {
    let (Some(path), Some(sha)) =
        (report["package"]["path"].as_str(), report["package"]["sha256"].as_str())
    else {
        return;
    };
    // Only strict admissions are looked up, and a rejected package is never served, so
    // nothing is written for it (a rejected package's folder stays untouched).
    if report["mode"] != json!("strict") || report["admitted"] != json!(true) {
        return;
    }
    let Some(f) = admission_file(Path::new(path), sha, rt, seeds_k) else { return };
    if let Some(dir) = f.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, report.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &f);
        }
    }
}

/// `<parent of the package>/.agentgen/<sha256>/` for the package at `dir`: the one place for
/// runtime state about a package (admission reports, calibration), outside every package.
/// `None` for a package at the filesystem root.
pub fn state_dir(dir: &Path, sha256: &str) -> Option<PathBuf> {
    dir.parent().map(|p| p.join(".agentgen").join(sha256))
}

/// What every instance and session of one package shares.
pub struct PackageCore {
    /// The loaded, statically checked package.
    pub pkg: Arc<ValidPackage>,
    pool: Arc<WorkerPool>,
    /// Gold states per task id (gold_state tasks), computed once; bounded (see
    /// [`PackageCore::remember_gold`]).
    golds: Mutex<HashMap<String, Arc<Vec<Value>>>>,
    /// The generated seeds admission checked and admitted.
    admitted_seeds: Vec<u64>,
}

/// Gold states kept per package: a run over a million generated seeds must not keep one per
/// seed (memory flat in the task count); past this the cache starts over.
const MAX_GOLDS: usize = 4096;

impl PackageCore {
    fn remember_gold(&self, task_id: &str, states: Arc<Vec<Value>>) {
        if let Ok(mut g) = self.golds.lock() {
            if g.len() >= MAX_GOLDS {
                g.clear();
            }
            g.insert(task_id.to_owned(), states);
        }
    }
}

/// An admitted package as a [`Family`].
pub struct PackageFamily {
    core: Arc<PackageCore>,
    pkg: Arc<ValidPackage>,
    name: &'static str,
    info: PackageInfo,
    /// Static tasks by line (None: not admitted or unparsable).
    statics: Vec<Option<Arc<ValidTask>>>,
    /// The served static tasks (admitted lines); then come generated seeds `1..=seeds`.
    served: Vec<TaskRef>,
    /// `[generate] seeds` (0 without `generate_task`).
    seeds: u64,
}

impl PackageFamily {
    fn new(
        pkg: ValidPackage,
        rt: PythonRuntime,
        report: &Value,
        workers: usize,
    ) -> std::result::Result<PackageFamily, String> {
        let admitted: Vec<&str> = report["admitted_tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let name = pkg.manifest.name.clone();
        let version = pkg.manifest.version;
        let tool_names: Vec<&str> = pkg.tools.iter().map(|t| t.name.as_str()).collect();
        let mut statics = Vec::new();
        let mut served = Vec::new();
        if let Some(text) = &pkg.tasks_text {
            for (i, line) in text.strip_suffix('\n').unwrap_or(text).split('\n').enumerate() {
                let tid = task_id(&name, version, 0, i as u64);
                let task = if admitted.contains(&tid.as_str()) {
                    serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| {
                            parse_task(tid.clone(), &v, &tool_names, None, None, &mut Vec::new())
                                .ok()
                        })
                        .map(Arc::new)
                } else {
                    None
                };
                if task.is_some() {
                    served.push(TaskRef {
                        family: name.clone(),
                        version,
                        instance_seed: 0,
                        task_seed: i as u64,
                    });
                }
                statics.push(task);
            }
        }
        // The seeds admission checked (`generated_seeds_checked`); later ones are replayed
        // before first use.
        let last_checked = report["package"]["generated_seeds_checked"][1].as_u64().unwrap_or(0);
        let admitted_seeds: Vec<u64> = (1..=last_checked)
            .filter(|&seed| admitted.contains(&task_id(&name, version, seed, 0).as_str()))
            .collect();
        let seeds = pkg.manifest.generate_seeds.unwrap_or(0);
        if served.is_empty() && seeds == 0 {
            return Err(format!("{}: no admitted task to serve", pkg.label()));
        }
        let info = PackageInfo {
            label: pkg.label(),
            sha256: pkg.sha256.clone(),
            python: rt.minor(),
            path: pkg.path.display().to_string(),
        };
        let pool = Arc::new(WorkerPool::new(rt, &pkg, workers.max(1)));
        let pkg = Arc::new(pkg);
        let core = Arc::new(PackageCore {
            pkg: Arc::clone(&pkg),
            pool,
            golds: Mutex::new(HashMap::new()),
            admitted_seeds,
        });
        // A package lives as long as the process (its name is a `&'static str` like the
        // built-ins'); a run opens each package once.
        let name: &'static str = Box::leak(name.into_boxed_str());
        Ok(PackageFamily { core, pkg, name, info, statics, served, seeds })
    }

    /// The loaded package this family serves.
    pub fn package_ref(&self) -> &ValidPackage {
        &self.pkg
    }

    /// The task a [`TaskRef`] of this package names, as the runtime serves it.
    fn generated(&self, seed: u64) -> Result<Arc<ValidTask>> {
        let gen_err = |reason: String| Error::Generation { family: self.name.to_owned(), reason };
        let mut w = PooledWorker::checkout(&self.core.pool).map_err(|f| gen_err(f.to_string()))?;
        let t = std::time::Duration::from_millis(self.pkg.manifest.limits.call_timeout_ms);
        let req = json!({"op": "generate", "seed": seed, "clock": self.pkg.manifest.clock});
        let r = w.request(&req, t).map_err(|f| gen_err(format!("generate_task({seed}): {f}")))?;
        let v: Value = serde_json::from_str(r["task"].as_str().unwrap_or("null"))
            .map_err(|e| gen_err(format!("generate_task({seed}): {e}")))?;
        let tid = task_id(self.name, self.pkg.manifest.version, seed, 0);
        let names: Vec<&str> = self.pkg.tools.iter().map(|t| t.name.as_str()).collect();
        let task =
            parse_task(tid, &v, &names, Some(&format!("gen-{seed}")), Some(seed), &mut Vec::new())
                .map_err(|p| gen_err(p.to_string()))?;
        let task = Arc::new(task);
        if !self.core.admitted_seeds.contains(&seed) {
            // §13.17: before a seed's first use its reference must pass (one replay).
            let states = reference_states(&mut w, &self.pkg, &task, true)
                .map_err(|f| gen_err(format!("seed {seed}: {f}")))?;
            self.core.remember_gold(&task.task_id, Arc::new(states));
        }
        Ok(task)
    }
}

impl Family for PackageFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo {
            name: self.name,
            version: self.pkg.manifest.version,
            instances: self.pkg.manifest.generate_seeds.unwrap_or(0) + 1,
            tasks_per_instance: (self.statics.len() as u64).max(1),
        }
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        let tasks = if instance_seed == 0 {
            self.statics.clone()
        } else {
            vec![Some(self.generated(instance_seed)?)]
        };
        Ok(Arc::new(PackageInstance { core: Arc::clone(&self.core), family: self.name, tasks }))
    }
    fn task_count(&self) -> Option<u64> {
        Some(self.served.len() as u64 + self.seeds)
    }
    fn task_at(&self, i: u64) -> Option<TaskRef> {
        let n = self.served.len() as u64;
        if i < n {
            return self.served.get(i as usize).cloned();
        }
        (i - n < self.seeds).then(|| TaskRef {
            family: self.name.to_owned(),
            version: self.pkg.manifest.version,
            instance_seed: i - n + 1,
            task_seed: 0,
        })
    }
    fn package(&self) -> Option<PackageInfo> {
        Some(self.info.clone())
    }
}

/// Instance 0 (the static tasks) or one generated seed of a package.
struct PackageInstance {
    core: Arc<PackageCore>,
    family: &'static str,
    tasks: Vec<Option<Arc<ValidTask>>>,
}

impl PackageInstance {
    fn valid(&self, task_id: &str) -> Option<&Arc<ValidTask>> {
        self.tasks.iter().flatten().find(|t| t.task_id == task_id)
    }
}

impl Instance for PackageInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        let task = self.tasks.get(task_seed as usize).cloned().flatten().ok_or_else(|| {
            Error::Generation {
                family: self.family.to_owned(),
                reason: format!("task {task_seed} of this instance is not an admitted task"),
            }
        })?;
        Ok(task_spec(&self.core.pkg, &task))
    }
    fn call(&self, _state: &mut State, _call: &ToolCall) -> ToolResult {
        ToolResult::error("package tools run only inside an episode")
    }
    fn verify(&self, _task: &TaskSpec, _state: &State, _transcript: &[Message]) -> Verdict {
        Verdict::from_checks(Vec::new())
    }
    fn session(&self, task: &Arc<TaskSpec>) -> Option<SessionResult> {
        let Some(valid) = self.valid(&task.id).cloned() else {
            return Some(Err(Failure::new(
                "env.protocol",
                format!("{}: not a task of this package instance", task.id),
            )));
        };
        Some(PackageSession::start(&self.core, valid).map(|s| Box::new(s) as Box<dyn Session>))
    }
}

/// The agent-visible task of a package: system prompt, offered tools, each turn's user text
/// and the reference as the reference policy plays it. Hidden data stays in the worker.
pub fn task_spec(pkg: &ValidPackage, task: &ValidTask) -> TaskSpec {
    let solution = |t: &super::task::Turn| ReferenceSolution {
        turns: t
            .reference
            .iter()
            .map(|step| ReferenceTurn {
                reasoning: step_reasoning(step),
                calls: step
                    .iter()
                    .map(|c| ToolCall::new(c.name.clone(), c.arguments.to_string()))
                    .collect(),
            })
            .collect(),
        final_answer: t.answer.clone(),
    };
    let mut parts = task_ref_parts(&task.task_id);
    let first = task.turns.first();
    TaskSpec {
        id: task.task_id.clone(),
        family: pkg.manifest.name.clone(),
        version: pkg.manifest.version,
        instance_seed: parts.next().unwrap_or(0),
        task_seed: parts.next().unwrap_or(0),
        difficulty: task.difficulty,
        system_prompt: task
            .system_prompt
            .clone()
            .unwrap_or_else(|| pkg.manifest.system_prompt.clone()),
        user_prompt: first.map(|t| t.user.clone()).unwrap_or_default(),
        tools: Episode::<&ValidPackage, &ValidTask, &mut Worker>::offered_tools(pkg, task),
        initial_state: State(Value::Null),
        reference: first
            .map_or(ReferenceSolution { turns: Vec::new(), final_answer: String::new() }, solution),
        hidden: Value::Null,
        followups: task
            .turns
            .iter()
            .skip(1)
            .map(|t| FollowUp { user: t.user.clone(), reference: solution(t) })
            .collect(),
    }
}

/// `(instance, index)` of `name@v/instance/index`.
fn task_ref_parts(id: &str) -> impl Iterator<Item = u64> {
    let mut it = id.rsplit('/');
    let index = it.next().and_then(|s| s.parse().ok());
    let instance = it.next().and_then(|s| s.parse().ok());
    [instance, index].into_iter().flatten()
}

/// The reference's reasoning before a step (packages carry none): what it calls and with
/// which arguments.
fn step_reasoning(step: &[super::task::Call]) -> String {
    let calls: Vec<String> = step
        .iter()
        .map(|c| {
            let args: Vec<String> = c
                .arguments
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k} = {v}")).collect())
                .unwrap_or_default();
            if args.is_empty() {
                c.name.clone()
            } else {
                format!("{} with {}", c.name, args.join(", "))
            }
        })
        .collect();
    format!("Next I call {}.", calls.join("; and "))
}

/// A worker checked out of a pool for one episode; dropping it checks it back in (a dead
/// worker is dropped, so the pool replaces it).
pub struct PooledWorker {
    pool: Arc<WorkerPool>,
    worker: Option<Worker>,
}

impl PooledWorker {
    /// Check a worker out of `pool` (an idle one, or a freshly started one).
    pub fn checkout(pool: &Arc<WorkerPool>) -> std::result::Result<PooledWorker, Failure> {
        Ok(PooledWorker { pool: Arc::clone(pool), worker: Some(pool.checkout()?) })
    }
}

impl Deref for PooledWorker {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        // Present from checkout until drop.
        self.worker.as_ref().unwrap_or_else(|| unreachable!("worker taken before drop"))
    }
}

impl DerefMut for PooledWorker {
    fn deref_mut(&mut self) -> &mut Worker {
        self.worker.as_mut().unwrap_or_else(|| unreachable!("worker taken before drop"))
    }
}

impl Drop for PooledWorker {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.pool.checkin(w);
        }
    }
}

type PackageEpisode = Episode<Arc<ValidPackage>, Arc<ValidTask>, PooledWorker>;

/// One episode of a package task in a pooled worker.
pub struct PackageSession {
    episode: Option<PackageEpisode>,
    golds: Option<Arc<Vec<Value>>>,
}

impl PackageSession {
    /// Check out a worker, compute the gold states if the task needs them and are not cached,
    /// and begin the episode (`Env(seed, params)`).
    pub fn start(
        core: &Arc<PackageCore>,
        task: Arc<ValidTask>,
    ) -> std::result::Result<PackageSession, Failure> {
        let mut worker = PooledWorker::checkout(&core.pool)?;
        let mut golds = None;
        if task.verify == super::task::VerifyMode::GoldState {
            let cached = core.golds.lock().ok().and_then(|g| g.get(&task.task_id).cloned());
            golds = Some(match cached {
                Some(g) => g,
                None => {
                    let states = Arc::new(reference_states(&mut worker, &core.pkg, &task, false)?);
                    core.remember_gold(&task.task_id, Arc::clone(&states));
                    states
                }
            });
        }
        let episode = Episode::begin(Arc::clone(&core.pkg), task, worker)?;
        Ok(PackageSession { episode: Some(episode), golds })
    }

    fn episode(&mut self) -> std::result::Result<&mut PackageEpisode, Failure> {
        self.episode.as_mut().ok_or_else(|| Failure::new("env.crash", "the episode has ended"))
    }
}

impl Session for PackageSession {
    fn call(&mut self, step: usize, call: &ToolCall) -> std::result::Result<ToolResult, Failure> {
        // Arguments that are not JSON reach the §7.2 check as a string (not an object).
        let args: Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        let obs = self.episode()?.call(step, &call.name, &args, false)?;
        Ok(ToolResult { content: obs.content, is_error: obs.is_error, state_changed: false })
    }

    fn verify_turn(
        &mut self,
        turn: usize,
        answer: &str,
        _transcript: &[Message],
    ) -> std::result::Result<Verdict, Failure> {
        let gold = self.golds.as_ref().and_then(|g| g.get(turn).cloned());
        self.episode()?.verify(turn, answer, gold.as_ref())
    }
}

impl Drop for PackageSession {
    fn drop(&mut self) {
        if let Some(ep) = self.episode.take() {
            // The worker goes back to its pool when `finish` hands it over and it drops; a
            // failed `end` leaves it dead, so the pool replaces it.
            let (worker, _ended) = ep.finish();
            drop(worker);
        }
    }
}
