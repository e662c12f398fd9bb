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
    Available,
    Unavailable { reason: String },
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

/// A seeded generator of environment instances.
pub trait Family: Send + Sync {
    /// `"trip"`, `"retail"`, ... (lowercase, `[a-z_]`).
    fn name(&self) -> &'static str;
    /// Bumped whenever generation changes, so task ids stay reproducible.
    fn version(&self) -> u32;
    /// Instance seeds `0..instances()` give distinct instances.
    fn instances(&self) -> u64;
    /// Task seeds `0..tasks_per_instance()` give distinct tasks.
    fn tasks_per_instance(&self) -> u64;
    fn availability(&self) -> Availability;
    /// True when tool execution starts a subprocess (the code interpreter).
    fn spawns_process(&self) -> bool {
        false
    }
    /// Build instance `instance_seed` (may cost milliseconds; callers cache it).
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>>;
}

/// One concrete environment: data, tool subset, policy; generates tasks and executes calls.
pub trait Instance: Send + Sync {
    fn task(&self, task_seed: u64) -> Result<TaskSpec>;
    /// Execute one call against the state. Never panics, never Err: unknown tool, bad JSON,
    /// schema violation, business-rule violation -> `ToolResult { is_error: true, .. }`.
    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult;
    /// Check final state + transcript. The agent never sees `task.hidden`.
    fn verify(&self, task: &TaskSpec, state: &State, transcript: &[Message]) -> Verdict;
}

/// The mutable part of an environment (tables, files, accounts) as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State(pub Value);

/// What executing one tool call gives back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// What the model sees; Python-`json.dumps` text where structured.
    pub content: String,
    pub is_error: bool,
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
    pub passed: bool,
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
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
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
    pub family: String,
    pub version: u32,
    pub instance_seed: u64,
    pub task_seed: u64,
    /// 1..=5.
    pub difficulty: u8,
    pub system_prompt: String,
    pub user_prompt: String,
    /// OpenAI function list (the instance's tool subset).
    pub tools: Vec<Value>,
    pub initial_state: State,
    /// Verifier data: the reference solution (never shown to the agent).
    pub reference: ReferenceSolution,
    /// Verifier data, never shown to the agent.
    #[serde(rename = "hidden_from_agent")]
    pub hidden: Value,
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
    pub turns: Vec<ReferenceTurn>,
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
    pub reasoning: String,
    pub calls: Vec<ToolCall>,
}

/// A task's reconstructible id `family@version/instance_seed/task_seed`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    pub family: String,
    pub version: u32,
    pub instance_seed: u64,
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
