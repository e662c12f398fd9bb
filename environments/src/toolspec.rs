//! Tool specs: JSON files in the OpenAI function format under `tool-specs/<family>/`, embedded
//! at build time, validated at load (JSON Schema via `jsonschema`, strict-mode rules, unique
//! names, descriptions), and used to validate every tool call's arguments before execution.
//!
//! Strict rules checked on every `parameters` schema (nested too): an object schema has
//! `additionalProperties: false` and lists every property in `required`; no `default` anywhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use agentgen_codec::ToolCall;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/tool_specs.rs"));
}

/// `(family, file, contents)` of every embedded spec file, sorted by family then file.
pub fn embedded_files() -> &'static [(&'static str, &'static str, &'static str)] {
    embedded::EMBEDDED
}

/// One validated tool.
pub struct ToolSpec {
    /// The tool's name (`function.name`), unique within its family.
    pub name: String,
    /// The tool's description (`function.description`), shown to the model.
    pub description: String,
    /// The `parameters` JSON Schema.
    pub parameters: Value,
    /// The whole OpenAI object `{"type": "function", "function": {...}}`, as in the file.
    pub openai: Value,
    /// Which file it came from.
    pub file: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec").field("name", &self.name).field("file", &self.file).finish()
    }
}

impl ToolSpec {
    /// Parse and validate one spec file's text.
    pub fn from_str(file: &str, text: &str) -> Result<ToolSpec> {
        let err = |pointer: &str, reason: String| Error::ToolSpec {
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            reason,
        };
        let openai: Value = serde_json::from_str(text).map_err(|e| {
            err("", format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()))
        })?;
        let Some(top) = openai.as_object() else {
            return Err(err("", "top level must be an object".into()));
        };
        for k in top.keys() {
            if k != "type" && k != "function" {
                return Err(err(&format!("/{k}"), "unexpected key".into()));
            }
        }
        if top.get("type").and_then(Value::as_str) != Some("function") {
            return Err(err("/type", "must be \"function\"".into()));
        }
        let Some(func) = top.get("function").and_then(Value::as_object) else {
            return Err(err("/function", "must be an object".into()));
        };
        for k in func.keys() {
            if !matches!(k.as_str(), "name" | "description" | "parameters" | "strict") {
                return Err(err(&format!("/function/{k}"), "unexpected key".into()));
            }
        }
        let name = func.get("name").and_then(Value::as_str).unwrap_or_default();
        if !valid_tool_name(name) {
            return Err(err(
                "/function/name",
                format!("{name:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"),
            ));
        }
        let description = func.get("description").and_then(Value::as_str).unwrap_or_default();
        if description.trim().len() < 10 {
            return Err(err("/function/description", "missing or too short".into()));
        }
        let Some(parameters) = func.get("parameters") else {
            return Err(err("/function/parameters", "missing".into()));
        };
        if parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(err("/function/parameters/type", "must be \"object\"".into()));
        }
        if let Err(e) = jsonschema::meta::validate(parameters) {
            let p = e.instance_path().as_str().to_owned();
            return Err(err(
                &format!("/function/parameters{p}"),
                format!("not a valid JSON Schema: {e}"),
            ));
        }
        check_strict(parameters, "/function/parameters").map_err(|(p, r)| err(&p, r))?;
        let validator = jsonschema::validator_for(parameters)
            .map_err(|e| err("/function/parameters", format!("cannot compile schema: {e}")))?;
        Ok(ToolSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            parameters: parameters.clone(),
            openai,
            file: file.to_owned(),
            validator,
        })
    }

    /// Validate parsed arguments; the error names the offending field.
    pub fn validate_args(&self, args: &Value) -> std::result::Result<(), String> {
        match self.validator.iter_errors(args).next() {
            None => Ok(()),
            Some(e) => {
                let path = e.instance_path().as_str().to_owned();
                let field = if path.is_empty() {
                    "arguments".to_owned()
                } else {
                    format!("argument {path}")
                };
                Err(format!("invalid arguments for {}: {field}: {e}", self.name))
            }
        }
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Strict-mode rules, recursively; `Err((pointer, reason))`.
fn check_strict(schema: &Value, ptr: &str) -> std::result::Result<(), (String, String)> {
    let Some(obj) = schema.as_object() else { return Ok(()) };
    if obj.contains_key("default") {
        return Err((format!("{ptr}/default"), "`default` is not allowed in strict mode".into()));
    }
    let is_object = match obj.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => obj.contains_key("properties"),
    };
    if is_object {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err((format!("{ptr}/additionalProperties"), "must be false".into()));
        }
        let props = obj.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = props {
            for (k, v) in props {
                if !required.contains(&k.as_str()) {
                    return Err((
                        format!("{ptr}/required"),
                        format!("property {k:?} must be required (make it nullable if optional)"),
                    ));
                }
                let d = v.get("description").and_then(Value::as_str).unwrap_or_default();
                if d.trim().is_empty() {
                    return Err((format!("{ptr}/properties/{k}/description"), "missing".into()));
                }
                check_strict(v, &format!("{ptr}/properties/{k}"))?;
            }
        }
        for r in &required {
            if !props.is_some_and(|p| p.contains_key(*r)) {
                return Err((format!("{ptr}/required"), format!("{r:?} is not a property")));
            }
        }
    }
    if let Some(items) = obj.get("items") {
        check_strict(items, &format!("{ptr}/items"))?;
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = obj.get(key) {
            for (i, a) in alts.iter().enumerate() {
                check_strict(a, &format!("{ptr}/{key}/{i}"))?;
            }
        }
    }
    Ok(())
}

/// The validated tools of one family, by name.
#[derive(Debug)]
pub struct ToolSet {
    /// The family these tools belong to.
    pub family: String,
    tools: Vec<ToolSpec>,
    by_name: HashMap<String, usize>,
}

impl ToolSet {
    /// Build from `(file, text)` pairs; names must be unique.
    pub fn from_files<'a>(
        family: &str,
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ToolSet> {
        let mut tools = Vec::new();
        let mut by_name = HashMap::new();
        for (file, text) in files {
            let spec = ToolSpec::from_str(file, text)?;
            if let Some(&prev) = by_name.get(&spec.name) {
                let prev: &ToolSpec = &tools[prev];
                return Err(Error::ToolSpec {
                    file: file.to_owned(),
                    pointer: "/function/name".into(),
                    reason: format!("duplicate tool name {:?} (also in {})", spec.name, prev.file),
                });
            }
            by_name.insert(spec.name.clone(), tools.len());
            tools.push(spec);
        }
        Ok(ToolSet { family: family.to_owned(), tools, by_name })
    }

    /// The tool named `name`, if the family defines it.
    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// Every tool of the family, in file order.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// The names of every tool, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_str()).collect()
    }

    /// The OpenAI function list of `names`, in that order; every name must exist.
    pub fn openai_list(&self, names: &[&str]) -> Result<Vec<Value>> {
        names
            .iter()
            .map(|n| {
                self.get(n).map(|t| t.openai.clone()).ok_or_else(|| Error::MissingTool {
                    family: self.family.clone(),
                    tool: (*n).to_owned(),
                })
            })
            .collect()
    }

    /// Parse and validate a call against the tools in `allowed` (the instance's subset). The
    /// `Err` is the error observation text for the model.
    pub fn parse_call(
        &self,
        call: &ToolCall,
        allowed: &[&str],
    ) -> std::result::Result<Map<String, Value>, String> {
        let spec = match self.get(&call.name) {
            Some(s) if allowed.contains(&call.name.as_str()) => s,
            _ => {
                return Err(format!(
                    "unknown tool {:?}; available tools: {}",
                    call.name,
                    allowed.join(", ")
                ));
            }
        };
        // The codec's one rule for arguments, as the validators apply it: JSON whose top level
        // is an object; an empty string is not JSON (it was read as `{}` here before).
        let args = call.arguments_object().map_err(|e| match e {
            agentgen_codec::ArgumentsError::NotJson(e) => {
                format!("arguments of {} are not valid JSON: {e}", call.name)
            }
            agentgen_codec::ArgumentsError::NotObject(_) => {
                format!("arguments of {} must be a JSON object", call.name)
            }
        })?;
        let args = Value::Object(args);
        spec.validate_args(&args)?;
        match args {
            Value::Object(m) => Ok(m),
            // Built as an object two lines up.
            _ => Err(format!("arguments of {} must be a JSON object", call.name)),
        }
    }
}

type Loaded = BTreeMap<&'static str, std::result::Result<Arc<ToolSet>, (String, String, String)>>;

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut by_family: BTreeMap<&'static str, Vec<(&'static str, &'static str)>> =
            BTreeMap::new();
        for (family, file, text) in embedded_files() {
            by_family.entry(family).or_default().push((file, text));
        }
        by_family
            .into_iter()
            .map(|(family, files)| {
                let set = ToolSet::from_files(family, files).map(Arc::new).map_err(|e| match e {
                    Error::ToolSpec { file, pointer, reason } => (file, pointer, reason),
                    other => (format!("tool-specs/{family}"), String::new(), other.to_string()),
                });
                (family, set)
            })
            .collect()
    })
}

/// The embedded, validated tool set of `family` (loaded once).
pub fn family_tools(family: &str) -> Result<Arc<ToolSet>> {
    match loaded().get(family) {
        Some(Ok(set)) => Ok(set.clone()),
        Some(Err((file, pointer, reason))) => Err(Error::ToolSpec {
            file: file.clone(),
            pointer: pointer.clone(),
            reason: reason.clone(),
        }),
        None => Err(Error::ToolSpec {
            file: format!("tool-specs/{family}"),
            pointer: String::new(),
            reason: "no spec files embedded for this family".into(),
        }),
    }
}

/// Validate every embedded family folder; returns each family's problem (empty = all good).
pub fn validate_all() -> Vec<Error> {
    loaded().keys().filter_map(|f| family_tools(f).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(params: Value) -> String {
        json!({"type": "function", "function": {"name": "t", "description": "A test tool that does things.", "parameters": params}}).to_string()
    }

    #[test]
    fn strict_rules_are_enforced_with_pointers() {
        let ok = json!({"type": "object", "properties": {"a": {"type": ["string", "null"], "description": "x"}}, "required": ["a"], "additionalProperties": false});
        assert!(ToolSpec::from_str("f.json", &spec(ok)).is_ok());
        let not_required = json!({"type": "object", "properties": {"a": {"type": "string", "description": "x"}}, "required": [], "additionalProperties": false});
        let e = ToolSpec::from_str("f.json", &spec(not_required)).unwrap_err().to_string();
        assert!(e.contains("f.json") && e.contains("/function/parameters/required"), "{e}");
        let nested = json!({"type": "object", "properties": {"a": {"type": "object", "description": "x", "properties": {}, "required": []}}, "required": ["a"], "additionalProperties": false});
        let e = ToolSpec::from_str("f.json", &spec(nested)).unwrap_err().to_string();
        assert!(e.contains("/function/parameters/properties/a/additionalProperties"), "{e}");
        let bad_schema = json!({"type": "object", "properties": {"a": {"type": "strng", "description": "x"}}, "required": ["a"], "additionalProperties": false});
        assert!(ToolSpec::from_str("f.json", &spec(bad_schema)).is_err());
        let with_default = json!({"type": "object", "properties": {"a": {"type": "string", "description": "x", "default": "y"}}, "required": ["a"], "additionalProperties": false});
        assert!(ToolSpec::from_str("f.json", &spec(with_default)).is_err());
        assert!(ToolSpec::from_str("f.json", "{not json").is_err());
    }

    #[test]
    fn call_validation_names_the_field() -> Result<()> {
        let params = json!({"type": "object", "properties": {"n": {"type": "integer", "description": "x"}}, "required": ["n"], "additionalProperties": false});
        let text = spec(params);
        let set = ToolSet::from_files("x", [("f.json", text.as_str())])?;
        assert!(set.parse_call(&ToolCall::new("t", r#"{"n": 3}"#), &["t"]).is_ok());
        let e = set.parse_call(&ToolCall::new("t", r#"{"n": "3"}"#), &["t"]).unwrap_err();
        assert!(e.contains("/n"), "{e}");
        assert!(set.parse_call(&ToolCall::new("t", "{"), &["t"]).is_err());
        // The codec's rule: empty arguments are not JSON (not read as `{}`), a list not an object.
        let e = set.parse_call(&ToolCall::new("t", ""), &["t"]).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = set.parse_call(&ToolCall::new("t", "[1]"), &["t"]).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
        assert!(set.parse_call(&ToolCall::new("t", r#"{"n": 1, "m": 2}"#), &["t"]).is_err());
        assert!(set.parse_call(&ToolCall::new("u", "{}"), &["t"]).is_err());
        assert!(set.parse_call(&ToolCall::new("t", r#"{"n": 1}"#), &[]).is_err());
        Ok(())
    }
}
