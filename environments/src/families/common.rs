//! Shared plumbing of the families: the instance base (tool subset, call parsing, TaskSpec
//! assembly), sealing a task with its expected final state, and how task seeds map to distinct
//! candidate tasks ([`difficulty_slot`], [`interleave`], [`Slots`]). Answers: [`super::answer`].

use std::sync::Arc;

use agentgen_codec::ToolCall;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::framework::{
    Check, Instance, ReferenceSolution, ReferenceTurn, State, TaskSpec, ToolResult, task_id,
};
use crate::toolspec::{ToolSet, family_tools};
use crate::util::py_json;

/// Instance seeds of a built-in family: `0..INSTANCES`.
pub const INSTANCES: u64 = 1000;
/// Task seeds of a built-in family's instance: `0..TASKS`, a fifth of them per difficulty
/// ([`difficulty_slot`]).
pub const TASKS: u64 = 200;

/// `impl Family` for a built-in family's unit struct: its [`FamilyInfo`](crate::FamilyInfo)
/// (`name`, `version`, [`INSTANCES`] instances of [`TASKS`] task seeds) and an `instance` that
/// checks the seed's range and builds the instance with `build(seed)` (a function or closure
/// returning `Result<impl Instance>`). Further `Family` methods (after a `;`) go into the impl.
macro_rules! builtin_family {
    ($family:ident, $name:expr, $version:expr, $build:expr $(; $($more:tt)*)?) => {
        impl $crate::framework::Family for $family {
            fn info(&self) -> $crate::framework::FamilyInfo {
                $crate::framework::FamilyInfo {
                    name: $name,
                    version: $version,
                    instances: $crate::families::common::INSTANCES,
                    tasks_per_instance: $crate::families::common::TASKS,
                }
            }
            fn instance(
                &self,
                instance_seed: u64,
            ) -> $crate::error::Result<std::sync::Arc<dyn $crate::framework::Instance>> {
                $crate::error::Error::check_instance_seed(
                    $name,
                    instance_seed,
                    $crate::families::common::INSTANCES,
                )?;
                Ok(std::sync::Arc::new(($build)(instance_seed)?))
            }
            $($($more)*)?
        }
    };
}
pub(crate) use builtin_family;

/// The candidate tasks of an instance, one list per difficulty (index `d - 1`), each shuffled
/// with `r` in difficulty order; an [`Error::Generation`] of `family` naming instance `seed`
/// when a list has fewer than the [`TASKS`]` / 5` slots of its difficulty (`what`: "questions",
/// "tasks").
pub fn shuffled_candidates<T>(
    family: &str,
    seed: u64,
    what: &str,
    mut lists: [Vec<T>; 5],
    r: &mut impl rand::Rng,
) -> Result<[Vec<T>; 5]> {
    use rand::seq::SliceRandom;
    for (i, c) in lists.iter_mut().enumerate() {
        c.shuffle(r);
        if (c.len() as u64) < TASKS / 5 {
            return Err(Error::Generation {
                family: family.into(),
                reason: format!("instance {seed}: only {} {what} of difficulty {}", c.len(), i + 1),
            });
        }
    }
    Ok(lists)
}

/// What every instance of a family carries: identity and its tool subset.
pub struct Base {
    /// The family's name.
    pub family: &'static str,
    /// The family's version (goes into task ids).
    pub version: u32,
    /// The seed this instance was built from.
    pub instance_seed: u64,
    /// The family's whole embedded tool set (the instance offers [`Base::allowed`]).
    pub tools: Arc<ToolSet>,
    /// The instance's tools, in prompt order.
    pub allowed: Vec<&'static str>,
    openai: Vec<Value>,
}

/// The family-specific parts of a task; [`Base::finish`] makes the [`TaskSpec`].
pub struct TaskParts {
    /// Difficulty, clamped to 1..=5 by [`Base::finish`].
    pub difficulty: u8,
    /// The system prompt (the instance's policy text).
    pub system_prompt: String,
    /// The user's request.
    pub user_prompt: String,
    /// The state before the first call (becomes [`TaskSpec::initial_state`]).
    pub initial_state: Value,
    /// The reference solution's assistant turns of tool calls.
    pub turns: Vec<ReferenceTurn>,
    /// The reference solution's final answer.
    pub final_answer: String,
    /// Verifier data, never shown to the agent (becomes [`TaskSpec::hidden`]).
    pub hidden: Value,
}

impl Base {
    /// The base of instance `instance_seed` offering the tools `allowed`; `Err` when the
    /// family's specs fail to load or lack one of them.
    pub fn new(
        family: &'static str,
        version: u32,
        instance_seed: u64,
        allowed: Vec<&'static str>,
    ) -> Result<Self> {
        let tools = family_tools(family)?;
        let openai = tools.openai_list(&allowed)?;
        Ok(Base { family, version, instance_seed, tools, allowed, openai })
    }

    /// True when the instance offers `tool`.
    pub fn has(&self, tool: &str) -> bool {
        self.allowed.contains(&tool)
    }

    /// Validate a call: `Ok((name, args))`, or the error observation to return.
    pub fn parse<'c>(
        &self,
        call: &'c ToolCall,
    ) -> std::result::Result<(&'c str, Map<String, Value>), ToolResult> {
        self.tools
            .parse_call(call, &self.allowed)
            .map(|args| (call.name.as_str(), args))
            .map_err(ToolResult::error)
    }

    /// Assemble the [`TaskSpec`] of task `task_seed` from `p` (id, tools and identity from the
    /// base; no follow-ups).
    pub fn finish(&self, task_seed: u64, p: TaskParts) -> TaskSpec {
        TaskSpec {
            id: task_id(self.family, self.version, self.instance_seed, task_seed),
            family: self.family.to_owned(),
            version: self.version,
            instance_seed: self.instance_seed,
            task_seed,
            difficulty: p.difficulty.clamp(1, 5),
            system_prompt: p.system_prompt,
            user_prompt: p.user_prompt,
            tools: self.openai.clone(),
            initial_state: State(p.initial_state),
            reference: ReferenceSolution { turns: p.turns, final_answer: p.final_answer },
            hidden: p.hidden,
            followups: Vec::new(),
        }
    }

    /// An [`Error::Generation`] of this family with `reason`.
    pub fn gen_error(&self, reason: impl Into<String>) -> Error {
        Error::Generation { family: self.family.to_owned(), reason: reason.into() }
    }
}

/// Run the reference through `call`, fail generation if any reference call errors or nothing
/// changed, and store the resulting state as `hidden.expected_state`.
pub fn seal(instance: &dyn Instance, base: &Base, mut spec: TaskSpec) -> Result<TaskSpec> {
    let mut state = spec.initial_state.clone();
    let mut wrote = false;
    for turn in &spec.reference.turns {
        for c in &turn.calls {
            let r = instance.call(&mut state, c);
            if r.is_error {
                return Err(base.gen_error(format!(
                    "{}: reference call {} failed: {}",
                    spec.id, c.name, r.content
                )));
            }
            wrote |= r.state_changed;
        }
    }
    if !wrote || state == spec.initial_state {
        return Err(base.gen_error(format!("{}: reference changes no state", spec.id)));
    }
    if let Value::Object(h) = &mut spec.hidden {
        h.insert("expected_state".into(), state.0);
    } else {
        spec.hidden = json!({ "expected_state": state.0 });
    }
    Ok(spec)
}

/// One check per top-level key of `hidden.expected_state` (except `skip`): the final state must
/// equal it (key order is irrelevant: JSON object equality).
pub fn state_checks(task: &TaskSpec, state: &State, skip: &[&str]) -> Vec<Check> {
    let empty = Map::new();
    let want = task.hidden.get("expected_state").and_then(Value::as_object).unwrap_or(&empty);
    let got = state.0.as_object().unwrap_or(&empty);
    let mut checks = Vec::new();
    if want.is_empty() {
        checks.push(Check::new("state", false, "task has no expected state"));
    }
    for (k, w) in want {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let g = got.get(k).unwrap_or(&Value::Null);
        let passed = g == w;
        let detail = if passed {
            "as expected".to_owned()
        } else {
            format!("got {}, want {}", clip(&py_json(g)), clip(&py_json(w)))
        };
        checks.push(Check::new(format!("state.{k}"), passed, detail));
    }
    checks
}

fn clip(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_owned();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Task seed `t` of a built-in family has difficulty `t % 5 + 1` and is task `t / 5` of that
/// difficulty: `(difficulty, j)`.
pub fn difficulty_slot(task_seed: u64) -> (u8, usize) {
    ((task_seed % 5) as u8 + 1, (task_seed / 5) as usize)
}

/// For families whose candidate tasks can turn out degenerate (no unique answer, an empty
/// result): per difficulty, how many candidates were tried and which of them make a task, grown
/// on demand and shared by the instance's task seeds.
#[derive(Debug, Default)]
pub struct Slots([std::sync::Mutex<(usize, Vec<usize>)>; 5]);

impl Slots {
    /// The candidate (an index below `len`) that slot `j` of difficulty `d` (1..=5) takes: the
    /// `j`-th one for which `good` holds, in list order (cycling when there are fewer), so slots
    /// below the number of good candidates take distinct candidates. `None` if none is good.
    pub fn pick(
        &self,
        d: u8,
        j: usize,
        len: usize,
        mut good: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let cell = &self.0[usize::from(d.clamp(1, 5)) - 1];
        let mut guard = cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tried, ok) = &mut *guard;
        while ok.len() <= j && *tried < len {
            if good(*tried) {
                ok.push(*tried);
            }
            *tried += 1;
        }
        (!ok.is_empty()).then(|| ok[j % ok.len()])
    }
}

/// Candidate task descriptions of one difficulty in the order task slots take them: each list
/// shuffled, then merged round robin so every kind of task shows up early. Slot `j` takes
/// element `j % len`, so the first `len` slots of a difficulty are distinct tasks as long as
/// distinct descriptions make distinct tasks.
pub fn interleave<T>(lists: Vec<Vec<T>>, r: &mut impl rand::Rng) -> Vec<T> {
    use rand::seq::SliceRandom;
    let mut its: Vec<std::vec::IntoIter<T>> = lists
        .into_iter()
        .map(|mut l| {
            l.shuffle(r);
            l.into_iter()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for it in &mut its {
            out.extend(it.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// A reference turn from reasoning text and calls.
pub fn turn(reasoning: impl Into<String>, calls: Vec<ToolCall>) -> ReferenceTurn {
    ReferenceTurn { reasoning: reasoning.into(), calls }
}
