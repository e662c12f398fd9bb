//! Byte-for-byte pins of the server's streamed (SSE) output: every `data:` payload of a set of
//! chat and completion streams over the scripted backend (one token per event, so the chunking
//! is deterministic), compared with `tests/golden/sse.txt`. `created` is zeroed. Set
//! `AGENTGEN_BLESS=1` to rewrite the golden file after an intended change.

use std::sync::Arc;

use agentgen_server::{ScriptedBackend, ServerConfig};
use serde_json::{Value, json};

const EOS: &str = "<｜end▁of▁sentence｜>";
const CLOSE: &str = "</｜DSML｜function_calls>";

fn call_block() -> String {
    "\n\n<｜DSML｜function_calls>\n\
     <｜DSML｜invoke name=\"get_weather\">\n\
     <｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n\
     <｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n\
     </｜DSML｜invoke>\n</｜DSML｜function_calls>"
        .to_owned()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather forecast",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}])
}

/// `(name, endpoint, scripted text, request body)`.
fn cases() -> Vec<(&'static str, &'static str, String, Value)> {
    let user = json!([{"role": "user", "content": "Weather in Paris?"}]);
    let think = json!({"thinking": true});
    let chat = "/v1/chat/completions";
    let cmpl = "/v1/completions";
    let call = call_block();
    vec![
        (
            "thinking tool call, usage, logprobs",
            chat,
            format!("I should look.</think>Let me check.{call}{EOS}"),
            json!({"messages": user, "tools": tools(), "chat_template_kwargs": think,
                   "stream": true, "logprobs": true, "stream_options": {"include_usage": true}}),
        ),
        (
            "stop string inside the reasoning",
            chat,
            format!("I should look up the weather.</think>Fine.{EOS}"),
            json!({"messages": user, "chat_template_kwargs": think, "stream": true,
                   "stop": ["up the"]}),
        ),
        (
            "stop string straddling tokens in the content",
            chat,
            format!("The answer is 42. Done, really.{EOS}"),
            json!({"messages": user, "stream": true, "stop": ["42. Do", "zzz"]}),
        ),
        (
            "stop at the tool-block close",
            chat,
            format!("Checking.{call}{EOS}"),
            json!({"messages": user, "tools": tools(), "stream": true, "stop": [CLOSE]}),
        ),
        (
            "marker look-alikes in reasoning and content",
            chat,
            format!("a </thin b < c</think>x <｜end y <｜DSML｜ z{EOS}"),
            json!({"messages": user, "chat_template_kwargs": think, "stream": true}),
        ),
        (
            "stop string overlapping </think>",
            chat,
            format!("Reason.</think>Let me check.{EOS}"),
            json!({"messages": user, "chat_template_kwargs": think, "stream": true,
                   "stop": ["nk>Let"]}),
        ),
        (
            "broken tool block repaired at the end",
            chat,
            format!(
                "Checking.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n\
                 <｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n{EOS}"
            ),
            json!({"messages": user, "tools": tools(), "stream": true}),
        ),
        (
            "multi-byte text, no EOS (length)",
            chat,
            "Grüße, 世界! 🚀 and more 🚀🚀".to_owned(),
            json!({"messages": user, "stream": true, "max_tokens": 9, "stop": ["界!"]}),
        ),
        (
            "completion: stop, logprobs, usage",
            cmpl,
            format!("The answer is 42. Done.{EOS}"),
            json!({"prompt": "Q:", "stream": true, "stop": ["42"], "logprobs": 1,
                   "stream_options": {"include_usage": true}}),
        ),
        (
            "completion: stop kept, special tokens kept, token ids",
            cmpl,
            format!("The answer is 42. Done.{EOS}"),
            json!({"prompt": "Q:", "stream": true, "stop": [". Do"],
                   "include_stop_str_in_output": true, "skip_special_tokens": false,
                   "return_token_ids": true}),
        ),
        (
            "completion: EOS kept, multi-byte",
            cmpl,
            format!("Grüße 🚀 世界{EOS}"),
            json!({"prompt": "Q:", "stream": true, "skip_special_tokens": false}),
        ),
    ]
}

async fn stream(text: String, path: &str, body: &Value) -> Vec<String> {
    let backend = ScriptedBackend::new(vec![text]).expect("backend");
    let app = agentgen_server::router(Arc::new(backend), ServerConfig::default()).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agentgen_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.expect("body");
    let _ = tx.send(());
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| match serde_json::from_str::<Value>(d) {
            Ok(mut v) => {
                if v.get("created").is_some() {
                    v["created"] = json!(0);
                }
                v.to_string()
            }
            Err(_) => d.to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn streamed_output_is_pinned() {
    let mut got = String::new();
    for (name, path, text, body) in cases() {
        got.push_str(&format!("## {name}\n"));
        for d in stream(text, path, &body).await {
            got.push_str(&d);
            got.push('\n');
        }
    }
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sse.txt");
    if std::env::var_os("AGENTGEN_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
        std::fs::write(&golden, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (AGENTGEN_BLESS=1 writes it)");
    if got != want {
        let at = got.lines().zip(want.lines()).position(|(a, b)| a != b);
        panic!("SSE output changed (first differing line {at:?}):\n{got}");
    }
}
