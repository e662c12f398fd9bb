//! Family `sql`: soundness over a few hundred tasks, determinism, read-only enforcement, query
//! budget, tolerant answer checking, distinct tasks.

use std::collections::BTreeSet;

use agentgen_codec::ToolCall;
use agentgen_environments::{Family, Instance, State, TaskSpec, run_reference};
use serde_json::{Value, json};

mod common;

fn family() -> agentgen_environments::families::sql::SqlFamily {
    agentgen_environments::families::sql::SqlFamily
}

fn submit_state(answer: &str) -> State {
    State(json!({ "submitted": { "answer": answer } }))
}

#[test]
fn soundness_over_300_tasks() {
    common::soundness_sweep(&family(), 15, 20, |i| i * 67, |i, t| t * 37 + i);
}

#[test]
fn same_seeds_give_identical_tasks() {
    let a = family().instance(11).unwrap().task(42).unwrap();
    let b = family().instance(11).unwrap().task(42).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    let c = family().instance(12).unwrap().task(42).unwrap();
    assert_ne!(a.user_prompt.clone() + &a.system_prompt, c.user_prompt.clone() + &c.system_prompt);
}

#[test]
fn tasks_of_an_instance_are_distinct() {
    let instance = family().instance(3).unwrap();
    let mut prompts = BTreeSet::new();
    for t in 0..family().tasks_per_instance() {
        let task = instance.task(t).unwrap();
        assert!(
            prompts.insert(task.user_prompt.clone()),
            "duplicate prompt for task {t}: {}",
            task.user_prompt
        );
    }
}

fn run(instance: &dyn Instance, sql: &str) -> (bool, String) {
    let mut state = State(json!({ "submitted": null }));
    let r =
        instance.call(&mut state, &ToolCall::new("run_query", json!({ "sql": sql }).to_string()));
    assert!(!r.state_changed);
    (r.is_error, r.content)
}

#[test]
fn queries_are_read_only_and_bounded() {
    let instance = family().instance(5).unwrap();
    let task = instance.task(0).unwrap();
    let (_, transcript) = run_reference(instance.as_ref(), &task);
    // Learn a table name from list_tables.
    let mut state = State(json!({ "submitted": null }));
    let r = instance.call(&mut state, &ToolCall::new("list_tables", "{}"));
    let tables: Value = serde_json::from_str(&r.content).unwrap();
    let t = tables["tables"][0]["name"].as_str().unwrap().to_owned();
    let rows_before = tables["tables"][0]["rows"].as_i64().unwrap();
    for bad in [
        format!("DELETE FROM {t}"),
        format!("DROP TABLE {t}"),
        format!("INSERT INTO {t} (id) VALUES (999999)"),
        format!("UPDATE {t} SET id = id + 1"),
        "PRAGMA query_only = OFF".to_owned(),
        "ATTACH DATABASE '/tmp/x.db' AS x".to_owned(),
        format!("SELECT 1; DELETE FROM {t}"),
        "SELECT random()".to_owned(),
        "SELECT date('now')".to_owned(),
        "CREATE TABLE evil (x)".to_owned(),
    ] {
        let (err, content) = run(instance.as_ref(), &bad);
        assert!(err, "{bad} was accepted: {content}");
    }
    let (err, content) = run(instance.as_ref(), &format!("SELECT COUNT(*) FROM {t}"));
    assert!(!err, "{content}");
    assert!(content.contains(&format!("[[{rows_before}]]")), "{content}");
    // A runaway cross join is interrupted, deterministically.
    let (err, content) =
        run(instance.as_ref(), &format!("SELECT COUNT(*) FROM {t} a, {t} b, {t} c, {t} d"));
    assert!(err && content.contains("interrupted"), "{content}");
    // Garbage SQL is an error observation, not a panic.
    let (err, _) = run(instance.as_ref(), "SELEKT nonsense FROM");
    assert!(err);
    // Row cap.
    let (err, content) = run(
        instance.as_ref(),
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) SELECT x FROM n",
    );
    assert!(!err && content.contains("\"truncated\": true"), "{content}");
    // The reference still passes after all of that (nothing was modified).
    let (state, transcript2) = run_reference(instance.as_ref(), &task);
    assert_eq!(transcript.len(), transcript2.len());
    assert!(instance.verify(&task, &state, &transcript2).passed);
}

fn expected_text(task: &TaskSpec) -> String {
    let last = task.reference.turns.last().unwrap();
    let args: Value = serde_json::from_str(&last.calls[0].arguments).unwrap();
    args["answer"].as_str().unwrap().to_owned()
}

#[test]
fn verifier_tolerates_formatting_but_not_wrong_values() {
    let instance = family().instance(8).unwrap();
    let mut seen_number = false;
    for t in 0..60u64 {
        let task = instance.task(t).unwrap();
        let shown = expected_text(&task);
        let kind = task.hidden["answer"]["kind"].as_str().unwrap().to_owned();
        let ok = |a: &str| instance.verify(&task, &submit_state(a), &[]).passed;
        assert!(ok(&shown), "{}: reference answer {shown} rejected", task.id);
        assert!(ok(&format!("  {}  ", shown.to_uppercase())), "{}: case/space", task.id);
        assert!(!instance.verify(&task, &State(json!({ "submitted": null })), &[]).passed);
        match kind.as_str() {
            "int" => {
                let v: i64 = shown.parse().unwrap();
                assert!(!ok(&(v + 1).to_string()));
                if v >= 1000 {
                    let with_commas = format!("{},{:03}", v / 1000, v % 1000);
                    assert!(ok(&with_commas), "{with_commas}");
                }
            }
            "number" | "percent" => {
                seen_number = true;
                let v: f64 = shown.parse().unwrap();
                assert!(ok(&format!("{v:.4}")) || ok(&format!("{v:.2}")));
                assert!(!ok(&format!("{:.2}", v + 0.02)), "{}: +0.02 accepted", task.id);
                if kind == "percent" {
                    assert!(ok(&format!("{shown}%")));
                }
            }
            "text" => assert!(!ok(&format!("{shown}x"))),
            "list" => {
                let mut items: Vec<&str> = shown.split(", ").collect();
                items.reverse();
                assert!(!ok(&items.join(", ")), "{}: reversed list accepted", task.id);
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert!(seen_number);
}

#[test]
fn bad_calls_are_error_observations() {
    let instance = family().instance(1).unwrap();
    let mut state = State(json!({ "submitted": null }));
    for (name, args) in [
        ("run_query", "{}"),
        ("run_query", "{\"sql\": 3}"),
        ("describe_table", "{\"table\": \"nope\"}"),
        ("nope", "{}"),
        ("submit_answer", "not json"),
        ("submit_answer", "{\"answer\": \"\"}"),
    ] {
        let r = instance.call(&mut state, &ToolCall::new(name, args));
        assert!(r.is_error && !r.state_changed, "{name} {args}: {}", r.content);
    }
    let r = instance.call(&mut state, &ToolCall::new("submit_answer", "{\"answer\": \"1\"}"));
    assert!(!r.is_error && r.state_changed);
    let r = instance.call(&mut state, &ToolCall::new("submit_answer", "{\"answer\": \"2\"}"));
    assert!(r.is_error, "second submission must be rejected");
}
