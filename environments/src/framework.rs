//! The fixed framework API: [`Family`], [`Instance`], [`TaskSpec`], [`State`], [`ToolResult`],
//! [`Verdict`] and the reconstructible task id [`TaskRef`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Whether a family can run on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Availability {
    /// The family can build instances and run tasks here.
    Available,
    /// The family cannot run here.
    Unavailable {
        /// Why (e.g. no usable sandbox for the code interpreter).
        reason: String,
    },
}

impl Availability {
    /// True for [`Availability::Available`].
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

/// What identifies a family and sizes its task space (one value per family, so the accessors
/// below are not repeated in every `impl Family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyInfo {
    /// `"trip"`, `"retail"`, ... (lowercase, `[a-z_][a-z0-9_]*`).
    pub name: &'static str,
    /// Bumped whenever generation changes, so task ids stay reproducible.
    pub version: u32,
    /// Instance seeds `0..instances` give distinct instances.
    pub instances: u64,
    /// Task seeds `0..tasks_per_instance` give tasks of an instance.
    pub tasks_per_instance: u64,
}

/// A seeded generator of environment instances.
pub trait Family: Send + Sync {
    /// Name, version and the size of the task space.
    fn info(&self) -> FamilyInfo;
    /// `"trip"`, `"retail"`, ... (lowercase, `[a-z_]`).
    fn name(&self) -> &'static str {
        self.info().name
    }
    /// Bumped whenever generation changes, so task ids stay reproducible.
    fn version(&self) -> u32 {
        self.info().version
    }
    /// Instance seeds `0..instances()` give distinct instances.
    fn instances(&self) -> u64 {
        self.info().instances
    }
    /// Task seeds `0..tasks_per_instance()` give tasks of an instance.
    fn tasks_per_instance(&self) -> u64 {
        self.info().tasks_per_instance
    }
    /// Whether the family can run on this machine (e.g. the code family needs a working sandbox);
    /// available unless a family says otherwise.
    fn availability(&self) -> Availability {
        Availability::Available
    }
    /// True when tool execution starts a subprocess (the code interpreter).
    fn spawns_process(&self) -> bool {
        false
    }
    /// Build instance `instance_seed` (may cost milliseconds; callers cache it).
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>>;
    /// For a family with a finite list of tasks (an envpkg package: its admitted tasks), how
    /// many; runs then draw [`Family::task_at`] in a seeded permutation instead of seeds.
    fn task_count(&self) -> Option<u64> {
        None
    }
    /// Task `i` of the finite list (`i < task_count()`).
    fn task_at(&self, _i: u64) -> Option<TaskRef> {
        None
    }
    /// Where the family comes from when it is not built in: an envpkg package's `name@version`,
    /// content hash and worker Python (`major.minor`), recorded on every row and the manifest.
    fn package(&self) -> Option<PackageInfo> {
        None
    }
}

/// The provenance of a package family (spec envpkg §11): what a row is pinned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    /// `name@version`.
    pub label: String,
    /// Lowercase hex hash of the package's files (spec envpkg §11).
    pub sha256: String,
    /// The worker Python's `major.minor`.
    pub python: String,
    /// The package directory.
    pub path: String,
}

/// One concrete environment: data, tool subset, policy; generates tasks and executes calls.
pub trait Instance: Send + Sync {
    /// Generate task `task_seed` of this instance (an error when the seed is out of range).
    fn task(&self, task_seed: u64) -> Result<TaskSpec>;
    /// Execute one call against the state. Never panics, never Err: unknown tool, bad JSON,
    /// schema violation, business-rule violation -> `ToolResult { is_error: true, .. }`.
    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult;
    /// Check final state + transcript. The agent never sees `task.hidden`.
    fn verify(&self, task: &TaskSpec, state: &State, transcript: &[Message]) -> Verdict;
    /// An episode of `task` that is not the plain [`StateSession`] (an envpkg package plays it
    /// in a sandboxed worker). `None`: use [`StateSession`].
    fn session(&self, _task: &Arc<TaskSpec>) -> Option<SessionResult> {
        None
    }
}

/// What starting an episode gives: the session, or why the environment failed (spec envpkg
/// §7.3 codes: `env.timeout`, `env.crash`, `env.sandbox`, `env.protocol`).
pub type SessionResult = std::result::Result<Box<dyn Session>, EnvFailure>;

/// An environment's misbehaviour that ends an episode (never a run): a stable code and a
/// detail naming the package, file and task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvFailure {
    /// The stable failure code (`env.timeout`, `env.crash`, `env.sandbox`, `env.protocol`).
    pub code: String,
    /// What happened, naming the package, file and task.
    pub detail: String,
}

impl EnvFailure {
    /// A failure with `code` and `detail`.
    pub fn new(code: &str, detail: impl Into<String>) -> Self {
        EnvFailure { code: code.to_owned(), detail: detail.into() }
    }
    /// True when the worker that produced it must not be reused (timeout, crash, sandbox).
    pub fn discards_worker(&self) -> bool {
        matches!(self.code.as_str(), "env.timeout" | "env.crash" | "env.sandbox")
    }
}

impl fmt::Display for EnvFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// One running episode of a task: the calls of each user turn against its state, then that
/// turn's verification (spec envpkg §7). Built-in families play it on a [`State`] held here
/// ([`StateSession`]); packages in a worker. Runs on blocking threads.
pub trait Session: Send {
    /// Execute one call of assistant step `step` (0-based within the current user turn).
    fn call(&mut self, step: usize, call: &ToolCall)
    -> std::result::Result<ToolResult, EnvFailure>;
    /// Verify user turn `turn` (0-based) whose final answer is `answer`; `transcript` is the
    /// conversation so far. Starts the next turn.
    fn verify_turn(
        &mut self,
        turn: usize,
        answer: &str,
        transcript: &[Message],
    ) -> std::result::Result<Verdict, EnvFailure>;
}

/// Start an episode of `task` on `instance`: the instance's own session, or a [`StateSession`].
pub fn start_session(instance: &Arc<dyn Instance>, task: &Arc<TaskSpec>) -> SessionResult {
    match instance.session(task) {
        Some(r) => r,
        None => Ok(Box::new(StateSession {
            instance: Arc::clone(instance),
            task: Arc::clone(task),
            state: task.initial_state.clone(),
        })),
    }
}

/// The session of a built-in family: the state lives here, calls and the verifier are the
/// instance's pure functions.
pub struct StateSession {
    instance: Arc<dyn Instance>,
    task: Arc<TaskSpec>,
    state: State,
}

impl Session for StateSession {
    fn call(
        &mut self,
        _step: usize,
        call: &ToolCall,
    ) -> std::result::Result<ToolResult, EnvFailure> {
        Ok(self.instance.call(&mut self.state, call))
    }
    fn verify_turn(
        &mut self,
        _turn: usize,
        _answer: &str,
        transcript: &[Message],
    ) -> std::result::Result<Verdict, EnvFailure> {
        Ok(self.instance.verify(&self.task, &self.state, transcript))
    }
}

/// The mutable part of an environment (tables, files, accounts) as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State(pub Value);

/// What executing one tool call gives back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// What the model sees; Python-`json.dumps` text where structured.
    pub content: String,
    /// True when the call failed: `content` is an error observation.
    pub is_error: bool,
    /// True when the call changed the state (a write).
    pub state_changed: bool,
}

impl ToolResult {
    /// A successful read (state unchanged) with structured content.
    pub fn read(v: &Value) -> Self {
        ToolResult { content: crate::util::py_json(v), is_error: false, state_changed: false }
    }
    /// A successful write (state changed) with structured content.
    pub fn write(v: &Value) -> Self {
        ToolResult { content: crate::util::py_json(v), is_error: false, state_changed: true }
    }
    /// An error observation (state unchanged): `{"error": msg}`.
    pub fn error(msg: impl Into<String>) -> Self {
        let v = serde_json::json!({ "error": msg.into() });
        ToolResult { content: crate::util::py_json(&v), is_error: true, state_changed: false }
    }
}

/// The verifier's judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// In `[0, 1]`; 1 exactly when `passed`.
    pub reward: f32,
    /// True when the task is solved (every check passed).
    pub passed: bool,
    /// Every check the verifier made, passed or not.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// All checks must pass; reward is binary so no partial score can let a wrong state pass.
    pub fn from_checks(checks: Vec<Check>) -> Self {
        let passed = !checks.is_empty() && checks.iter().all(|c| c.passed);
        Verdict { reward: if passed { 1.0 } else { 0.0 }, passed, checks }
    }
    /// Names and details of the failed checks, `; `-joined.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One named verifier check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The check's name (what it compares).
    pub name: String,
    /// True when the check held.
    pub passed: bool,
    /// What was found (and, on failure, what was wanted).
    pub detail: String,
}

impl Check {
    /// A check named `name` with its outcome and detail.
    pub fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed, detail: detail.into() }
    }
    /// A check comparing `got` with `want` by equality, with both in the detail.
    pub fn eq<T: PartialEq + fmt::Debug>(name: impl Into<String>, got: &T, want: &T) -> Self {
        let passed = got == want;
        let detail =
            if passed { format!("{got:?}") } else { format!("got {got:?}, want {want:?}") };
        Check::new(name, passed, detail)
    }
}

/// A generated task: prompts, tools, initial state, reference solution and verifier data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// `family@version/instance_seed/task_seed`.
    pub id: String,
    /// The family's name.
    pub family: String,
    /// The family version that generated the task.
    pub version: u32,
    /// The seed of the instance the task belongs to.
    pub instance_seed: u64,
    /// The task's seed within its instance.
    pub task_seed: u64,
    /// 1..=5.
    pub difficulty: u8,
    /// The system prompt (the instance's policy text).
    pub system_prompt: String,
    /// The first user message.
    pub user_prompt: String,
    /// OpenAI function list (the instance's tool subset).
    pub tools: Vec<Value>,
    /// The environment's state before the first call.
    pub initial_state: State,
    /// Verifier data: the reference solution (never shown to the agent).
    pub reference: ReferenceSolution,
    /// Verifier data, never shown to the agent.
    #[serde(rename = "hidden_from_agent")]
    pub hidden: Value,
    /// The user turns after the first (spec envpkg §6.1 `turns[1..]`), each with its
    /// reference; empty for single-turn tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followups: Vec<FollowUp>,
}

/// A later user turn of a multi-turn task: what the user says, and the reference's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The user's message of this turn.
    pub user: String,
    /// The reference solution of this turn.
    pub reference: ReferenceSolution,
}

impl TaskSpec {
    /// The task's reconstructible reference.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            family: self.family.clone(),
            version: self.version,
            instance_seed: self.instance_seed,
            task_seed: self.task_seed,
        }
    }
    /// Number of user turns (1 + follow-ups).
    pub fn user_turns(&self) -> usize {
        1 + self.followups.len()
    }
    /// User message and reference of user turn `t`.
    pub fn user_turn(&self, t: usize) -> Option<(&str, &ReferenceSolution)> {
        if t == 0 {
            Some((&self.user_prompt, &self.reference))
        } else {
            self.followups.get(t - 1).map(|f| (f.user.as_str(), &f.reference))
        }
    }
    /// The opening of a conversation: the system prompt carrying the tools, then the user turn.
    pub fn prompt_messages(&self) -> Vec<Message> {
        vec![
            Message::system(self.system_prompt.clone()).with_tools(self.tools.clone()),
            Message::user(self.user_prompt.clone()),
        ]
    }
}

/// The solution the generator knows: turns of (parallel) calls, then the final answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSolution {
    /// Assistant turns of tool calls, in order.
    pub turns: Vec<ReferenceTurn>,
    /// The final assistant answer after the last call.
    pub final_answer: String,
}

impl ReferenceSolution {
    /// Number of tool calls over all turns.
    pub fn num_calls(&self) -> usize {
        self.turns.iter().map(|t| t.calls.len()).sum()
    }
}

/// One assistant turn of the reference: its reasoning and its calls (parallel within a turn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceTurn {
    /// The assistant's reasoning text before the calls.
    pub reasoning: String,
    /// The turn's tool calls (parallel within the turn).
    pub calls: Vec<ToolCall>,
}

/// A task's reconstructible id `family@version/instance_seed/task_seed`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    /// The family's name.
    pub family: String,
    /// The family version the task was generated at.
    pub version: u32,
    /// Which instance of the family (`0..instances`).
    pub instance_seed: u64,
    /// Which task of the instance (`0..tasks_per_instance`).
    pub task_seed: u64,
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}/{}/{}", self.family, self.version, self.instance_seed, self.task_seed)
    }
}

impl FromStr for TaskRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            |reason: &str| Error::InvalidTaskId { id: s.to_owned(), reason: reason.to_owned() };
        let (family, rest) = s.split_once('@').ok_or_else(|| bad("missing '@'"))?;
        // Digits are allowed after the first character (envpkg names, spec envpkg §6.3).
        let name_ok = family.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(bad("family must match [a-z_][a-z0-9_]*"));
        }
        let mut parts = rest.split('/');
        let (Some(v), Some(i), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected family@version/instance_seed/task_seed"));
        };
        let num = |x: &str, what: &str| {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("{what} is not a decimal integer")));
            }
            x.parse::<u64>().map_err(|_| bad(&format!("{what} out of range")))
        };
        let version = u32::try_from(num(v, "version")?).map_err(|_| bad("version out of range"))?;
        Ok(TaskRef {
            family: family.to_owned(),
            version,
            instance_seed: num(i, "instance seed")?,
            task_seed: num(t, "task seed")?,
        })
    }
}

/// Build a task id string.
pub fn task_id(family: &str, version: u32, instance_seed: u64, task_seed: u64) -> String {
    format!("{family}@{version}/{instance_seed}/{task_seed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ref_round_trips() -> Result<()> {
        let r: TaskRef = "trip@1/17/42".parse()?;
        assert_eq!(r.family, "trip");
        assert_eq!((r.version, r.instance_seed, r.task_seed), (1, 17, 42));
        assert_eq!(r.to_string(), "trip@1/17/42");
        let p: TaskRef = "b2b_shop@3/0/2".parse()?;
        assert_eq!((p.family.as_str(), p.version, p.task_seed), ("b2b_shop", 3, 2));
        for bad in [
            "trip",
            "trip@1/2",
            "Trip@1/2/3",
            "trip@1/2/3/4",
            "trip@x/2/3",
            "trip@1/-2/3",
            "@1/2/3",
            "9lives@1/0/0",
        ] {
            assert!(bad.parse::<TaskRef>().is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn verdict_is_binary() {
        let v = Verdict::from_checks(vec![Check::new("a", true, ""), Check::new("b", false, "x")]);
        assert!(!v.passed);
        assert_eq!(v.reward, 0.0);
        assert_eq!(v.failures(), "b: x");
        assert!(!Verdict::from_checks(vec![]).passed);
    }
}
