//! The JSON Schema subset of envpkg tools (spec §4): which keywords a `parameters` schema may
//! use, compiling it, the strict-mode lint, and validating call arguments with the spec's
//! error text (`invalid arguments for <name>: <JSON pointer>: <reason>`).

use serde_json::Value;

use super::{Problem, is_py_identifier};

/// Assertion keywords of the subset.
const ASSERTIONS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
];
/// Annotation keywords (ignored).
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];
/// Standard JSON Schema keywords outside the subset (`pkg.schema`).
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "$recursiveRef",
    "$recursiveAnchor",
    "not",
    "if",
    "then",
    "else",
    "prefixItems",
    "additionalItems",
    "patternProperties",
    "propertyNames",
    "multipleOf",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
    "unevaluatedProperties",
    "minProperties",
    "maxProperties",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
];
const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean", "null"];

/// A compiled `parameters` schema.
pub struct ToolSchema {
    validator: jsonschema::Validator,
    /// Declared top-level property names, in schema order.
    pub properties: Vec<String>,
    /// Required top-level property names.
    pub required: Vec<String>,
}

impl std::fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSchema").field("properties", &self.properties).finish()
    }
}

impl ToolSchema {
    /// Check `params` (found at `ptr` in `file`) against the subset and compile it. Warnings
    /// (`lint.schema`, `lint.strict`) are pushed to `warnings`; a violation is `pkg.schema`.
    pub fn compile(
        tool: &str,
        params: &Value,
        ptr: &str,
        warnings: &mut Vec<Problem>,
    ) -> Result<ToolSchema, Problem> {
        let bad =
            |p: &str, why: String| Problem::new("pkg.schema", format!("tools.json {p}: {why}"));
        let Some(obj) = params.as_object() else {
            return Err(bad(ptr, "parameters must be a JSON Schema object".into()));
        };
        if obj.get("type").and_then(Value::as_str) != Some("object") {
            return Err(bad(&format!("{ptr}/type"), "top-level type must be \"object\"".into()));
        }
        subset(params, ptr, tool, warnings).map_err(|(p, why)| bad(&p, why))?;
        let properties: Vec<String> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for p in &properties {
            if !is_py_identifier(p) {
                return Err(bad(
                    &format!("{ptr}/properties/{p}"),
                    format!("property name {p:?} is not a Python identifier (or is a keyword)"),
                ));
            }
        }
        let required: Vec<String> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if let Err(e) = jsonschema::meta::validate(params) {
            return Err(bad(
                &format!("{ptr}{}", e.instance_path().as_str()),
                format!("not a valid JSON Schema: {e}"),
            ));
        }
        let validator = jsonschema::validator_for(params)
            .map_err(|e| bad(ptr, format!("cannot compile schema: {e}")))?;
        strict_lint(params, "", tool, warnings);
        Ok(ToolSchema { validator, properties, required })
    }

    /// Validate call arguments (already known to be a JSON object); `Err` is the spec's message.
    pub fn validate(&self, tool: &str, args: &Value) -> Result<(), String> {
        if let Some(m) = args.as_object() {
            for k in m.keys() {
                if !self.properties.iter().any(|p| p == k) {
                    let p = k.replace('~', "~0").replace('/', "~1");
                    return Err(format!(
                        "invalid arguments for {tool}: /{p}: unexpected argument {k:?}"
                    ));
                }
            }
        }
        match self.validator.iter_errors(args).next() {
            None => Ok(()),
            Some(e) => {
                let path = e.instance_path().as_str().to_owned();
                let path = if path.is_empty() { "/".to_owned() } else { path };
                Err(format!("invalid arguments for {tool}: {path}: {e}"))
            }
        }
    }
}

/// Keyword screen over one schema and its subschemas; `Err((pointer, reason))`.
fn subset(
    v: &Value,
    ptr: &str,
    tool: &str,
    warnings: &mut Vec<Problem>,
) -> Result<(), (String, String)> {
    let Some(obj) = v.as_object() else {
        if v.is_boolean() {
            return Ok(());
        }
        return Err((ptr.to_owned(), "a schema must be an object".into()));
    };
    for (k, sub) in obj {
        let here = format!("{ptr}/{k}");
        if FORBIDDEN.contains(&k.as_str()) {
            return Err((here, format!("keyword {k:?} is outside the envpkg schema subset")));
        }
        if ANNOTATIONS.contains(&k.as_str()) {
            continue;
        }
        if !ASSERTIONS.contains(&k.as_str()) {
            warnings.push(Problem::new(
                "lint.schema",
                format!("{tool}: {here}: non-standard keyword {k:?} ignored"),
            ));
            continue;
        }
        match k.as_str() {
            "type" => {
                let ok = match sub {
                    Value::String(t) => TYPES.contains(&t.as_str()),
                    Value::Array(ts) => {
                        !ts.is_empty()
                            && ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t)))
                    }
                    _ => false,
                };
                if !ok {
                    return Err((here, format!("type {sub} is not one of {}", TYPES.join(" "))));
                }
            }
            "properties" => {
                let Some(props) = sub.as_object() else {
                    return Err((here, "properties must be an object".into()));
                };
                for (name, s) in props {
                    subset(s, &format!("{here}/{name}"), tool, warnings)?;
                }
            }
            "additionalProperties" if !sub.is_boolean() => subset(sub, &here, tool, warnings)?,
            "items" => {
                if sub.is_array() {
                    return Err((
                        here,
                        "items must be one schema (tuple form is not allowed)".into(),
                    ));
                }
                subset(sub, &here, tool, warnings)?;
            }
            "anyOf" | "oneOf" | "allOf" => {
                let Some(alts) = sub.as_array() else {
                    return Err((here, format!("{k} must be an array of schemas")));
                };
                for (i, a) in alts.iter().enumerate() {
                    subset(a, &format!("{here}/{i}"), tool, warnings)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `lint.strict`: objects without `additionalProperties: false`, optional properties, defaults.
fn strict_lint(v: &Value, ptr: &str, tool: &str, warnings: &mut Vec<Problem>) {
    let Some(obj) = v.as_object() else { return };
    let at = if ptr.is_empty() { "/" } else { ptr };
    if obj.contains_key("default") {
        warnings.push(Problem::new("lint.strict", format!("{tool}: {at}: has a default")));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            warnings.push(Problem::new(
                "lint.strict",
                format!("{tool}: {at}: additionalProperties is not false"),
            ));
        }
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let optional: Vec<&str> =
            props.keys().map(String::as_str).filter(|k| !required.contains(k)).collect();
        if !optional.is_empty() {
            warnings.push(Problem::new(
                "lint.strict",
                format!("{tool}: {at}: optional properties {optional:?}"),
            ));
        }
        for (k, s) in props {
            strict_lint(s, &format!("{ptr}/properties/{k}"), tool, warnings);
        }
    }
    if let Some(items) = obj.get("items") {
        strict_lint(items, &format!("{ptr}/items"), tool, warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Result<ToolSchema, Problem> {
        ToolSchema::compile("t", &v, "/0/function/parameters", &mut Vec::new())
    }

    #[test]
    fn subset_rejects_refs_and_accepts_the_fixture_shapes() {
        assert_eq!(
            compile(json!({"type": "object", "$defs": {}})).map(|_| ()).unwrap_err().code,
            "pkg.schema"
        );
        assert!(compile(json!({"type": "object", "properties": {"x": {"not": {}}}})).is_err());
        assert!(compile(json!({"type": "array"})).is_err());
        assert!(compile(json!({"type": "object", "properties": {"class": {}}})).is_err());
        let s = compile(json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 1}, "o": {"type": ["string", "null"]}},
            "required": ["n"], "additionalProperties": false}))
        .map_err(|p| p.to_string());
        let s = match s {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.validate("t", &json!({"n": 3})).is_ok());
        assert!(s.validate("t", &json!({"n": 3.0})).is_ok(), "3.0 is an integer");
        let e = s.validate("t", &json!({"n": "3"})).unwrap_err();
        assert!(e.starts_with("invalid arguments for t: /n: "), "{e}");
        let e = s.validate("t", &json!({"n": 1, "zz": 1})).unwrap_err();
        assert!(e.starts_with("invalid arguments for t: /zz: "), "{e}");
    }

    #[test]
    fn undeclared_top_level_argument_is_a_violation_even_if_allowed() {
        let s =
            compile(json!({"type": "object", "properties": {"a": {}}})).map_err(|p| p.to_string());
        let Ok(s) = s else { panic!("compile") };
        assert!(s.validate("t", &json!({"a": 1, "b": 2})).is_err());
    }
}
