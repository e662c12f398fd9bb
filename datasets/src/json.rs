//! Arrow values as JSON (for conversations read from foreign Parquet files) and the
//! normalised trajectory hash used for exact dedup.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use agentgen_codec::Message;

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Element `i` of `array` as a JSON value (structs as objects, lists as arrays, nulls as null).
pub(crate) fn array_value(array: &dyn Array, i: usize) -> Result<Value, String> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    macro_rules! prim {
        ($t:ty) => {
            array.as_primitive_opt::<$t>().map(|a| Value::from(a.value(i)))
        };
    }
    let v = match array.data_type() {
        DataType::Null => Some(Value::Null),
        DataType::Boolean => array.as_boolean_opt().map(|a| Value::Bool(a.value(i))),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float16 => {
            array.as_primitive_opt::<Float16Type>().map(|a| float(f64::from(a.value(i))))
        }
        DataType::Float32 => {
            array.as_primitive_opt::<Float32Type>().map(|a| float(f64::from(a.value(i))))
        }
        DataType::Float64 => array.as_primitive_opt::<Float64Type>().map(|a| float(a.value(i))),
        DataType::Utf8 => array.as_string_opt::<i32>().map(|a| Value::from(a.value(i))),
        DataType::LargeUtf8 => array.as_string_opt::<i64>().map(|a| Value::from(a.value(i))),
        DataType::Utf8View => array.as_string_view_opt().map(|a| Value::from(a.value(i))),
        DataType::Binary => array
            .as_binary_opt::<i32>()
            .map(|a| Value::from(String::from_utf8_lossy(a.value(i)).into_owned())),
        DataType::LargeBinary => array
            .as_binary_opt::<i64>()
            .map(|a| Value::from(String::from_utf8_lossy(a.value(i)).into_owned())),
        DataType::List(_) => match array.as_list_opt::<i32>() {
            Some(a) => Some(list_value(a.value(i).as_ref())?),
            None => None,
        },
        DataType::LargeList(_) => match array.as_list_opt::<i64>() {
            Some(a) => Some(list_value(a.value(i).as_ref())?),
            None => None,
        },
        DataType::FixedSizeList(_, _) => match array.as_fixed_size_list_opt() {
            Some(a) => Some(list_value(a.value(i).as_ref())?),
            None => None,
        },
        DataType::Struct(fields) => match array.as_struct_opt() {
            Some(a) => {
                let mut obj = Map::new();
                for (f, c) in fields.iter().zip(a.columns()) {
                    obj.insert(f.name().clone(), array_value(c.as_ref(), i)?);
                }
                Some(Value::Object(obj))
            }
            None => None,
        },
        DataType::Dictionary(_, _) => match array.as_any_dictionary_opt() {
            Some(d) => {
                let key = d.normalized_keys().get(i).copied().ok_or("bad dictionary key")?;
                Some(array_value(d.values().as_ref(), key)?)
            }
            None => None,
        },
        other => return Err(format!("unsupported arrow type {other}")),
    };
    v.ok_or_else(|| format!("array does not match its type {}", array.data_type()))
}

fn list_value(values: &dyn Array) -> Result<Value, String> {
    (0..values.len())
        .map(|j| array_value(values, j))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Bring a `messages` value into the OpenAI wire shape: null fields dropped, tool calls stored
/// flat (`{name, arguments}`) wrapped as `{"type": "function", "function": {...}}`.
pub(crate) fn normalise_messages(messages: &mut Value) -> Result<(), String> {
    let Value::Array(list) = messages else {
        return Err(format!("messages must be a list, got {}", kind(messages)));
    };
    for m in list {
        let Value::Object(obj) = m else { continue };
        obj.retain(|_, v| !v.is_null());
        if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
            for call in calls {
                let Value::Object(c) = call else { continue };
                c.retain(|_, v| !v.is_null());
                if c.contains_key("function") {
                    continue;
                }
                let mut function = Map::new();
                for key in ["name", "arguments"] {
                    if let Some(v) = c.remove(key) {
                        function.insert(key.to_owned(), v);
                    }
                }
                c.insert("type".to_owned(), Value::from("function"));
                c.insert("function".to_owned(), Value::Object(function));
            }
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Write `v` canonically: object keys sorted, no whitespace.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (n, k) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, x) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// JSON text canonicalised (sorted keys, no whitespace); text that is not JSON is kept as is.
fn canonical_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let mut s = String::with_capacity(text.len());
            canonical(&v, &mut s);
            s
        }
        Err(_) => text.to_owned(),
    }
}

/// The normalised-trajectory hash used for exact dedup (`dedup.exact`, `inspect --dedup`):
/// SHA-256 over the tool list and, per message, role, content, reasoning and tool calls, with
/// JSON (`tools`, call arguments) canonicalised (keys sorted, whitespace dropped) and absent
/// text equal to empty text. Ids and timings are not part of it.
pub fn trajectory_hash(messages: &[Message], tools: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |tag: u8, s: &str| {
        h.update([tag]);
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    // Rows of a run repeat a handful of tool lists: canonicalise each once per thread.
    thread_local! {
        static LAST_TOOLS: std::cell::RefCell<(String, String)> = const {
            std::cell::RefCell::new((String::new(), String::new()))
        };
    }
    LAST_TOOLS.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != tools || last.0.is_empty() {
            *last = (tools.to_owned(), canonical_text(tools));
        }
        field(b'T', &last.1);
    });
    for m in messages {
        field(b'R', m.role.as_str());
        field(b'C', m.content.as_deref().unwrap_or(""));
        field(b'r', m.reasoning_content.as_deref().unwrap_or(""));
        for c in &m.tool_calls {
            field(b'n', &c.name);
            field(b'a', &canonical_text(&c.arguments));
        }
        field(b'E', "");
    }
    h.finalize().into()
}

/// [`trajectory_hash`] as lowercase hex.
pub fn trajectory_hash_hex(messages: &[Message], tools: &str) -> String {
    trajectory_hash(messages, tools).iter().map(|b| format!("{b:02x}")).collect()
}
