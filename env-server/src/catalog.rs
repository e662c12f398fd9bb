//! Which tasks the server serves (the selected families and packages of one registry), how a
//! task id from a dataset row becomes a task, and the NeMo Gym dataset row of a task.

use std::sync::Arc;

use agentgen_environments::{Instance, InstanceCache, Registry, Selection, TaskRef, TaskSpec};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The served tasks: a registry, the selected families and packages, and the instance cache.
pub struct Catalog {
    registry: Registry,
    selection: Selection,
    cache: InstanceCache,
}

impl Catalog {
    /// `names` are the selected families and packages (empty: every available built-in).
    pub fn new(registry: Registry, names: &[String]) -> Result<Catalog> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let selection =
            registry.select(&refs).map_err(|e| Error::Config { message: e.to_string() })?;
        Ok(Catalog { registry, selection, cache: InstanceCache::new(256) })
    }

    /// Names of the served families and packages, in list order.
    pub fn names(&self) -> Vec<&'static str> {
        self.selection.families().iter().map(|f| f.name()).collect()
    }

    /// Names of the served packages (their episodes hold a sandboxed worker each).
    pub fn packages(&self) -> Vec<&'static str> {
        self.selection
            .families()
            .iter()
            .filter(|f| f.package().is_some())
            .map(|f| f.name())
            .collect()
    }

    /// Refuse a served family or package offering a tool named like one of `routes` (its
    /// `POST /{tool}` would reach the route instead): `Err` names the family, the tool and the
    /// route. A package's tools are its `tools.json` (every tool any of its tasks can offer);
    /// a built-in family's are those of its first tasks. Blocking.
    pub fn check_tool_names(&self, is_route: impl Fn(&str) -> bool) -> Result<()> {
        for f in self.selection.families() {
            let names: Vec<String> = match f.package() {
                Some(p) => package_tools(std::path::Path::new(&p.path)),
                None => (0..f.task_count().unwrap_or(1).min(4))
                    .filter_map(|i| f.task_at(i))
                    .filter_map(|r| self.task(&r.to_string()).ok())
                    .flat_map(|(_, t)| tool_names(&t))
                    .collect(),
            };
            if let Some(name) = names.iter().find(|n| is_route(n)) {
                return Err(Error::Config { message: crate::shadowed_message(f.name(), name) });
            }
        }
        Ok(())
    }

    /// The task a task id names, if its family is served. Blocking (builds the instance; a
    /// generated package seed asks a worker): call it off the async threads.
    pub fn task(&self, id: &str) -> Result<(Arc<dyn Instance>, Arc<TaskSpec>)> {
        let r: TaskRef = id.parse().map_err(|e: agentgen_environments::Error| Error::Task {
            id: id.to_owned(),
            reason: e.to_string(),
        })?;
        if !self.selection.families().iter().any(|f| f.name() == r.family) {
            return Err(Error::Task {
                id: id.to_owned(),
                reason: format!(
                    "family {:?} is not served here (served: {})",
                    r.family,
                    self.names().join(", ")
                ),
            });
        }
        // The id is checked first (a client's mistake); building the instance is the
        // environment's work (a package seed asks a worker, which can fail or time out).
        let family = self
            .registry
            .check(&r)
            .map_err(|e| Error::Task { id: id.to_owned(), reason: e.to_string() })?;
        let instance = self
            .cache
            .get_or_build(family.as_ref(), r.instance_seed)
            .map_err(|e| Error::Build { id: id.to_owned(), reason: e.to_string() })?;
        let task = instance
            .task(r.task_seed)
            .map_err(|e| Error::Task { id: id.to_owned(), reason: e.to_string() })?;
        Ok((instance, Arc::new(task)))
    }

    /// Task `index` of a run with `seed` over the served families (the drawing of
    /// `generate --seed`: round robin over families, without replacement within each).
    pub fn task_ref(&self, seed: u64, index: u64) -> TaskRef {
        self.selection.task_ref(seed, index)
    }
}

/// A tool of a [`TaskSpec`] (OpenAI chat format `{"type": "function", "function": {...}}`, or
/// already flat) as a Responses-API function tool `{"type": "function", "name", "description",
/// "parameters", "strict"}`.
pub fn responses_tool(tool: &Value) -> Value {
    let f = tool.get("function").unwrap_or(tool);
    json!({
        "type": "function",
        "name": f.get("name").cloned().unwrap_or(Value::Null),
        "description": f.get("description").cloned().unwrap_or_else(|| json!("")),
        "parameters": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        "strict": false,
    })
}

/// The tool names of the package at `dir` (its `tools.json`: OpenAI function objects or flat
/// ones); none when unreadable (the package was admitted, so it is readable).
fn package_tools(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("tools.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let list = v.get("tools").unwrap_or(&v);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function").unwrap_or(t).get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The names of the tools a task offers.
pub fn tool_names(task: &TaskSpec) -> Vec<String> {
    task.tools
        .iter()
        .filter_map(|t| t.get("function").unwrap_or(t).get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The NeMo Gym dataset row of a task: `responses_create_params` (`input` = the system prompt
/// and the first user message, `tools` in Responses-API function format) plus the fields the
/// server needs, carried at the top level the way NeMo Gym rows carry extra fields (the
/// example rows of `resources_servers/example_session_state_mgmt/data/example.jsonl`):
/// `task_id` (`family@version/instance/task`, what `/seed_session` reads), `env`,
/// `difficulty`, and `turns_total` (a multi-turn task's later user messages come from
/// `/verify` as each turn passes; see the README). Nothing hidden from the agent is in it.
pub fn nemo_gym_row(task: &TaskSpec) -> Value {
    let tools: Vec<Value> = task.tools.iter().map(responses_tool).collect();
    let mut row = Map::new();
    row.insert(
        "responses_create_params".into(),
        json!({
            "input": [
                {"role": "system", "content": task.system_prompt},
                {"role": "user", "content": task.user_prompt},
            ],
            "tools": tools,
        }),
    );
    row.insert("task_id".into(), json!(task.id));
    row.insert("env".into(), json!(task.family));
    row.insert("difficulty".into(), json!(task.difficulty));
    row.insert("turns_total".into(), json!(task.user_turns()));
    Value::Object(row)
}

/// The task id a dataset row carries: top-level `task_id`, else `metadata.task_id`.
pub fn row_task_id(row: &Value) -> Option<&str> {
    row.get("task_id")
        .or_else(|| row.get("metadata").and_then(|m| m.get("task_id")))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_task_id_and_flat_tools_but_nothing_hidden() -> Result<()> {
        let catalog = Catalog::new(Registry::new(), &["trip".to_owned()])?;
        let (_, task) = catalog.task("trip@2/0/0")?;
        let row = nemo_gym_row(&task);
        assert_eq!(row_task_id(&row), Some("trip@2/0/0"));
        let tools = row["responses_create_params"]["tools"].as_array().cloned().unwrap_or_default();
        assert_eq!(tools.len(), task.tools.len());
        assert!(tools.iter().all(|t| t["name"].is_string() && t.get("function").is_none()));
        let text = row.to_string();
        assert!(!text.contains("hidden_from_agent") && !text.contains("\"reference\""), "{text}");
        // Another family is not served by this catalog; a bad id is an error, not a panic.
        assert!(catalog.task("sql@1/0/0").is_err());
        assert!(catalog.task("trip@1/0").is_err());
        assert!(catalog.task("trip@99/0/0").is_err());
        Ok(())
    }
}
