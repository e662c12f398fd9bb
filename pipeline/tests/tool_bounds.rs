//! Bounded in-process tools inside real rollouts (issue 11): a scripted policy sends the calls
//! that used to abort or exhaust the run (a deep search query, `NOT` repeated thousands of
//! times, a `zeroblob` SQL query, a VFS edit that grows a file without bound, a huge SQL cell,
//! too many calls in one turn); each is refused or cut with its stable code, recorded as a
//! warning, and the rollout goes on to its final answer.

use std::sync::Arc;

use agentgen_codec::{Role, ThinkingMode, ToolCall};
use agentgen_environments::limits::codes;
use agentgen_environments::{Registry, TaskRef};
use agentgen_pipeline::{
    Completion, PlannedTurn, Policy, PromptRequest, ReferencePlan, ReferencePolicy, RolloutContext,
    RolloutLimits, RolloutOutput, SamplingParams, rollout,
};
use serde_json::{Value, json};

/// Plays a fixed plan whatever the task.
struct Scripted(Arc<ReferencePlan>);

impl Policy for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn model(&self) -> Option<String> {
        None
    }
    fn complete(
        &self,
        prompt: &PromptRequest,
        _params: &SamplingParams,
    ) -> impl Future<Output = agentgen_pipeline::Result<Completion>> + Send {
        let mut p = prompt.clone();
        p.reference = Some(Arc::clone(&self.0));
        std::future::ready(ReferencePolicy::completion(&p))
    }
}

fn turn(calls: Vec<(&str, Value)>) -> PlannedTurn {
    PlannedTurn {
        reasoning: "Trying the tool.".into(),
        calls: calls.into_iter().map(|(n, a)| ToolCall::new(n, a.to_string())).collect(),
    }
}

async fn play(family: &str, turns: Vec<PlannedTurn>, limits: RolloutLimits) -> RolloutOutput {
    let registry = Registry::new();
    let fam = registry.try_get(family).unwrap();
    let r =
        TaskRef { family: family.into(), version: fam.version(), instance_seed: 3, task_seed: 1 };
    let cache = agentgen_environments::InstanceCache::new(4);
    let (instance, task) = registry.task(&cache, &r).unwrap();
    let ctx = RolloutContext::try_new(ThinkingMode::Thinking, limits).unwrap();
    let plan = ReferencePlan {
        turns,
        final_reasoning: "Done.".into(),
        final_answer: "I could not finish.".into(),
    };
    let policy = Scripted(Arc::new(plan));
    let out =
        rollout(&policy, &ctx, instance, Arc::new(task), false, "s0", &SamplingParams::default())
            .await
            .unwrap();
    assert_eq!(out.finish_reason, "stop", "the rollout went on to its answer: {out:?}");
    out
}

fn observations(out: &RolloutOutput) -> Vec<String> {
    out.messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.clone().unwrap_or_default())
        .collect()
}

fn code_of(obs: &str) -> Option<String> {
    agentgen_environments::limits::limit_code(obs)
}

#[tokio::test]
async fn deep_and_long_search_queries_are_refused_and_the_run_goes_on() {
    let deep = format!("{}river{}", "(".repeat(800), ")".repeat(800));
    let nots = "NOT ".repeat(3000);
    let nested = format!("{}river{}", "(".repeat(40), ")".repeat(40));
    let out = play(
        "search",
        vec![
            turn(vec![("search", json!({"query": deep, "k": null}))]),
            turn(vec![("search", json!({"query": nots, "k": null}))]),
            turn(vec![("search", json!({"query": nested, "k": null}))]),
            turn(vec![("search", json!({"query": "river", "k": null}))]),
        ],
        RolloutLimits::default(),
    )
    .await;
    let obs = observations(&out);
    assert_eq!(code_of(&obs[0]).as_deref(), Some(codes::SEARCH_QUERY_LENGTH), "{}", obs[0]);
    assert_eq!(code_of(&obs[1]).as_deref(), Some(codes::SEARCH_QUERY_LENGTH), "{}", obs[1]);
    assert_eq!(code_of(&obs[2]).as_deref(), Some(codes::SEARCH_QUERY_DEPTH), "{}", obs[2]);
    assert!(obs[3].contains("\"results\""), "a normal search still works: {}", obs[3]);
    assert!(out.warnings.iter().any(|w| w == codes::SEARCH_QUERY_DEPTH), "{:?}", out.warnings);
}

#[tokio::test]
async fn zeroblob_and_huge_cells_are_refused_or_cut() {
    let out = play(
        "sql",
        vec![
            turn(vec![("run_query", json!({"sql": "SELECT hex(zeroblob(499999999))"}))]),
            turn(vec![("run_query", json!({"sql": "SELECT length(zeroblob(2000000))"}))]),
            turn(vec![("run_query", json!({"sql": "SELECT printf('%.*c', 900000, 'x') AS big"}))]),
            turn(vec![("run_query", json!({"sql": "SELECT 1 + 1 AS two"}))]),
        ],
        RolloutLimits::default(),
    )
    .await;
    let obs = observations(&out);
    assert_eq!(code_of(&obs[0]).as_deref(), Some(codes::SQL_LENGTH), "{}", obs[0]);
    assert_eq!(code_of(&obs[1]).as_deref(), Some(codes::SQL_LENGTH), "{}", obs[1]);
    // A value under SQLITE_LIMIT_LENGTH but over the observation cap is cut, deterministically.
    assert!(obs[2].len() < 70_000, "{}", obs[2].len());
    assert!(
        obs[2].ends_with(" bytes]") && obs[2].contains("…[truncated "),
        "{}",
        &obs[2][obs[2].len() - 60..]
    );
    assert!(obs[3].contains("\"rows\": [[2]]"), "{}", obs[3]);
    assert!(out.warnings.iter().any(|w| w == codes::OBSERVATION_BYTES), "{:?}", out.warnings);
    assert!(out.warnings.iter().any(|w| w == codes::SQL_LENGTH), "{:?}", out.warnings);
}

#[tokio::test]
async fn vfs_growth_is_refused() {
    // Double a file's content over and over with tiny arguments.
    let mut turns = vec![turn(vec![("write_file", json!({"path": "grow.txt", "content": "ab"}))])];
    for _ in 0..40 {
        turns.push(turn(vec![("edit_file", json!({"path": "grow.txt", "old": "a", "new": "aa"}))]));
        turns.push(turn(vec![(
            "edit_file",
            json!({"path": "grow.txt", "old": "b", "new": "abab"}),
        )]));
    }
    let limits = RolloutLimits { max_turns: 200, ..RolloutLimits::default() };
    let out = play("vfs", turns, limits).await;
    let obs = observations(&out);
    let refused: Vec<&String> =
        obs.iter().filter(|o| code_of(o).as_deref() == Some(codes::VFS_FILE_BYTES)).collect();
    assert!(!refused.is_empty(), "the file kept growing: {:?}", &obs[obs.len() - 2..]);
    assert!(out.warnings.iter().any(|w| w == codes::VFS_FILE_BYTES), "{:?}", out.warnings);
}

#[tokio::test]
async fn calls_beyond_the_per_turn_cap_are_not_executed() {
    let many: Vec<(&str, Value)> = (0..40).map(|_| ("list_tables", json!({}))).collect();
    let limits = RolloutLimits { max_calls_per_turn: 32, ..RolloutLimits::default() };
    let out = play("sql", vec![turn(many)], limits).await;
    let obs = observations(&out);
    assert_eq!(obs.len(), 40);
    assert!(obs[..32].iter().all(|o| o.contains("\"tables\"")));
    for o in &obs[32..] {
        assert_eq!(code_of(o).as_deref(), Some(codes::CALLS_PER_TURN), "{o}");
        assert!(o.contains("tool call limit for this turn reached"), "{o}");
    }
}
