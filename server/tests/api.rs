//! The server against OpenAI's request/response shapes, over real HTTP, with the scripted
//! backend (real DSML tool calls through the V3.2 tokenizer).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgen_codec::Tokenizer;
use agentgen_server::{Backend, ScriptedBackend, ServerConfig};
use serde_json::{Value, json};

const EOS: &str = "<｜end▁of▁sentence｜>";

fn tool_call_text() -> String {
    format!(
        "I should look up the weather.</think>Let me check.\n\n<｜DSML｜function_calls>\n\
         <｜DSML｜invoke name=\"get_weather\">\n\
         <｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n\
         <｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n\
         </｜DSML｜invoke>\n</｜DSML｜function_calls>{EOS}"
    )
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather forecast",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}])
}

struct Srv {
    base: String,
    client: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(backend: Arc<dyn Backend>, cfg: ServerConfig) -> Srv {
    let app = agentgen_server::router(backend, cfg).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agentgen_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    Srv { base: format!("http://{addr}"), client: reqwest::Client::new(), _shutdown: tx }
}

async fn scripted(texts: &[String]) -> Srv {
    let b = ScriptedBackend::new(texts.to_vec()).expect("backend");
    start(Arc::new(b), ServerConfig::default()).await
}

impl Srv {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r =
            self.client.post(format!("{}{path}", self.base)).json(body).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }
    /// POST a streaming request; returns the `data:` payloads (the last is `[DONE]`).
    async fn sse(&self, path: &str, body: &Value) -> Vec<String> {
        let r =
            self.client.post(format!("{}{path}", self.base)).json(body).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().expect("ct").to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let text = r.text().await.expect("body");
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
    }
}

fn assert_error(v: &Value, kind: &str) {
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e.as_object().is_some_and(|o| o.contains_key("param") && o.contains_key("code")));
}

#[tokio::test]
async fn health_and_models() {
    let s = scripted(&[]).await;
    let (st, v) = s.get("/health").await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let (st, v) = s.get("/v1/models").await;
    assert_eq!(st, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "agentgen");
    assert_eq!(v["data"][0]["object"], "model");
    assert!(v["data"][0]["created"].is_u64());
    assert_eq!(s.get("/v1/models/agentgen").await.0, 200);
    let (st, v) = s.get("/v1/models/gpt-9").await;
    assert_eq!(st, 404);
    assert_error(&v, "not_found_error");
    let (st, v) = s.get("/nope").await;
    assert_eq!(st, 404);
    assert_error(&v, "not_found_error");
}

#[tokio::test]
async fn chat_tool_call_in_thinking_mode() {
    let s = scripted(&[tool_call_text()]).await;
    let body = json!({
        "model": "agentgen",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(),
        "thinking": {"type": "enabled"},
        "logprobs": true,
    });
    let (st, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("chatcmpl-")));
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["finish_reason"], "tool_calls");
    let m = &c["message"];
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["reasoning_content"], "I should look up the weather.");
    assert_eq!(m["content"], "Let me check.");
    let call = &m["tool_calls"][0];
    assert_eq!(call["id"], "call_0");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
        .expect("json");
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    let n = Tokenizer::shared().expect("tok").encode(&tool_call_text()).expect("ids").len();
    assert_eq!(v["usage"]["completion_tokens"], n);
    let pt = v["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
    assert!(pt > 100, "the tools block is in the prompt: {pt}");
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(pt + n as u64));
    assert_eq!(c["logprobs"]["content"].as_array().map(Vec::len), Some(n));
    assert_eq!(c["token_ids"].as_array().map(Vec::len), Some(n));
    assert_eq!(c["logprobs"]["content"][1]["logprob"], -0.25);
}

#[tokio::test]
async fn chat_mode_plain_answer() {
    let s = scripted(&[format!("Bonjour !{EOS}")]).await;
    let body = json!({"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]});
    let (st, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(st, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["message"]["content"], "Bonjour !");
    assert!(c["message"]["reasoning_content"].is_null());
    assert!(c["message"].get("tool_calls").is_none());
    assert!(c["logprobs"].is_null());
}

#[tokio::test]
async fn thinking_switch_and_tool_result_order_reach_the_prompt() {
    let seen = Arc::new(Mutex::new(Vec::<u32>::new()));
    let seen2 = Arc::clone(&seen);
    let b = ScriptedBackend::from_fn(move |ids| {
        *seen2.lock().expect("lock") = ids.to_vec();
        format!("ok{EOS}")
    })
    .expect("backend");
    let s = start(Arc::new(b), ServerConfig::default()).await;
    let tok = Tokenizer::shared().expect("tok");
    let prompt = || tok.decode(&seen.lock().expect("lock")).expect("decode");
    let user = json!([{"role": "user", "content": "hi"}]);
    for (extra, ends) in [
        (json!({}), "</think>"),
        (json!({"thinking": {"type": "enabled"}}), "<think>"),
        (json!({"chat_template_kwargs": {"thinking": true}}), "<think>"),
        (json!({"chat_template_kwargs": {"thinking": false}}), "</think>"),
    ] {
        let mut body = json!({"messages": user});
        for (k, v) in extra.as_object().expect("obj") {
            body[k] = v.clone();
        }
        let (st, v) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(st, 200, "{v}");
        assert!(prompt().ends_with(&format!("<｜Assistant｜>{ends}")), "{extra}: {}", prompt());
    }
    // Results given out of order are put back in the calls' order.
    let body = json!({
    "tools": weather_tools(),
    "messages": [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ROME-SUNNY"},
        {"role": "tool", "tool_call_id": "call_0", "content": "PARIS-RAIN"},
    ]});
    let (st, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(st, 200, "{v}");
    let p = prompt();
    let (paris, rome) = (p.find("PARIS-RAIN").expect("paris"), p.find("ROME-SUNNY").expect("rome"));
    assert!(paris < rome, "{p}");
    assert!(p.contains("## Tools"), "tools are rendered on a system message");
    // An id that matches no call is a 400.
    let mut bad = body.clone();
    bad["messages"][2]["tool_call_id"] = json!("call_9");
    let (st, v) = s.post("/v1/chat/completions", &bad).await;
    assert_eq!(st, 400);
    assert_error(&v, "invalid_request_error");
    // A missing result is a 400 too.
    let mut short = body.clone();
    short["messages"].as_array_mut().expect("arr").pop();
    assert_eq!(s.post("/v1/chat/completions", &short).await.0, 400);
}

#[tokio::test]
async fn chat_streaming_deltas_and_tool_calls() {
    let s = scripted(&[tool_call_text()]).await;
    let body = json!({
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(),
        "chat_template_kwargs": {"thinking": true},
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let data = s.sse("/v1/chat/completions", &body).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk")).collect();
    assert!(chunks.len() > 5, "streamed in many chunks: {}", chunks.len());
    let (mut reasoning, mut content, mut calls, mut finish) =
        (String::new(), String::new(), vec![], None);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        let Some(choice) = c["choices"].get(0) else { continue };
        let d = &choice["delta"];
        reasoning += d["reasoning_content"].as_str().unwrap_or("");
        content += d["content"].as_str().unwrap_or("");
        if let Some(tc) = d["tool_calls"].as_array() {
            calls.extend(tc.iter().cloned());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(reasoning, "I should look up the weather.");
    assert_eq!(content, "Let me check.");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "call_0");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert!(usage["completion_tokens"].as_u64().is_some_and(|n| n > 10), "{usage}");
}

#[tokio::test]
async fn completions_text_logprobs_stop_n_and_length() {
    let text = format!("The answer is 42. Done.{EOS}");
    let s = scripted(std::slice::from_ref(&text)).await;
    let n_tok = Tokenizer::shared().expect("tok").encode(&text).expect("ids").len();
    let (st, v) =
        s.post("/v1/completions", &json!({"prompt": "Q:", "max_tokens": 100, "logprobs": 1})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    let c = &v["choices"][0];
    assert_eq!(c["text"], "The answer is 42. Done.", "EOS is dropped by default");
    assert_eq!(c["finish_reason"], "stop");
    let lp = &c["logprobs"];
    let toks = lp["tokens"].as_array().expect("tokens");
    assert_eq!(toks.len(), n_tok - 1);
    assert_eq!(lp["token_logprobs"].as_array().map(Vec::len), Some(n_tok - 1));
    assert_eq!(lp["text_offset"][0], 0);
    let joined: String = toks.iter().map(|t| t.as_str().expect("str")).collect();
    assert_eq!(joined, "The answer is 42. Done.");
    assert_eq!(c["token_ids"].as_array().map(Vec::len), Some(n_tok - 1));
    assert_eq!(v["usage"]["completion_tokens"], n_tok);
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    // Special tokens kept, as the pipeline's http policy asks.
    let (_, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": [5, 6, 7], "max_tokens": 100, "skip_special_tokens": false}),
        )
        .await;
    assert_eq!(v["choices"][0]["text"], text.as_str());
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    // Stop strings, with and without the match in the output.
    let (_, v) = s.post("/v1/completions", &json!({"prompt": "Q:", "stop": ["42"]})).await;
    assert_eq!(v["choices"][0]["text"], "The answer is ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let body = json!({"prompt": "Q:", "stop": "42", "include_stop_str_in_output": true});
    let (_, v) = s.post("/v1/completions", &body).await;
    assert_eq!(v["choices"][0]["text"], "The answer is 42");

    // max_tokens and n.
    let (_, v) = s.post("/v1/completions", &json!({"prompt": "Q:", "max_tokens": 2, "n": 3})).await;
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(v["usage"]["completion_tokens"], 6);

    // Streaming gives the same text.
    let data =
        s.sse("/v1/completions", &json!({"prompt": "Q:", "max_tokens": 100, "stream": true})).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut streamed = String::new();
    let mut finish = None;
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).expect("chunk");
        streamed += c["choices"][0]["text"].as_str().unwrap_or("");
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(streamed, "The answer is 42. Done.");
    assert_eq!(finish.as_deref(), Some("stop"));
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let b = ScriptedBackend::new(vec![format!("x{EOS}")]).expect("backend").with_max_context(64);
    let cfg = ServerConfig { max_body_bytes: 4096, ..ServerConfig::default() };
    let s = start(Arc::new(b), cfg).await;
    let raw = s
        .client
        .post(format!("{}/v1/completions", s.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status().as_u16(), 400);
    assert_error(&raw.json().await.expect("json"), "invalid_request_error");
    let cases = [
        ("/v1/completions", json!({"max_tokens": 3})),
        ("/v1/completions", json!({"prompt": "x", "n": 0})),
        ("/v1/completions", json!({"prompt": "x", "temperature": 7.0})),
        ("/v1/completions", json!({"prompt": "x", "top_p": 0.0})),
        ("/v1/completions", json!({"prompt": [999_999_999]})),
        ("/v1/completions", json!({"prompt": []})),
        ("/v1/completions", json!({"prompt": "x", "max_tokens": 1000})),
        ("/v1/completions", json!({"prompt": "x", "echo": true})),
        ("/v1/chat/completions", json!({"messages": []})),
        ("/v1/chat/completions", json!({"messages": [{"role": "robot", "content": "x"}]})),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": 5}]})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
        ),
        ("/v1/chat/completions", json!({"messages": [{"role": "tool", "content": "x"}]})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
        ),
    ];
    for (path, body) in cases {
        let (st, v) = s.post(path, &body).await;
        assert_eq!(st, 400, "{body} -> {v}");
        assert_error(&v, "invalid_request_error");
    }
    let (_, v) = s.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1000})).await;
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let (st, v) = s.post("/v1/completions", &json!({"model": "other", "prompt": "x"})).await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    let big = json!({"prompt": "x".repeat(10_000)});
    let (st, v) = s.post("/v1/completions", &big).await;
    assert_eq!(st, 413);
    assert_error(&v, "invalid_request_error");
    let r = s.client.get(format!("{}/v1/completions", s.base)).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 405);
    // The server is still up.
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn bearer_key_guards_the_api() {
    let b = ScriptedBackend::new(vec![format!("x{EOS}")]).expect("backend");
    let cfg = ServerConfig { api_key: Some("s3cret".into()), ..ServerConfig::default() };
    let s = start(Arc::new(b), cfg).await;
    assert_eq!(s.get("/health").await.0, 200);
    let (st, v) = s.get("/v1/models").await;
    assert_eq!(st, 401);
    assert_error(&v, "authentication_error");
    let url = format!("{}/v1/completions", s.base);
    let body = json!({"prompt": "x"});
    let wrong = s.client.post(&url).bearer_auth("nope").json(&body).send().await.expect("send");
    assert_eq!(wrong.status().as_u16(), 401);
    let right = s.client.post(&url).bearer_auth("s3cret").json(&body).send().await.expect("send");
    assert_eq!(right.status().as_u16(), 200);
}

#[tokio::test]
async fn disconnect_frees_the_sequence() {
    let long = "word ".repeat(400);
    let b = Arc::new(
        ScriptedBackend::new(vec![long])
            .expect("backend")
            .with_token_delay(Duration::from_millis(5)),
    );
    let s = start(Arc::clone(&b) as Arc<dyn Backend>, ServerConfig::default()).await;
    let mut r = s
        .client
        .post(format!("{}/v1/completions", s.base))
        .json(&json!({"prompt": "x", "max_tokens": 1000, "stream": true}))
        .send()
        .await
        .expect("send");
    let first = r.chunk().await.expect("chunk");
    assert!(first.is_some());
    assert_eq!(b.active(), 1);
    drop(r);
    // The scripted sequence notices the closed stream at its next token.
    let mut waited = 0;
    while b.active() > 0 && waited < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(b.active(), 0, "the dropped client's sequence is freed");

    // Non-streaming: a client that gives up also frees its sequence.
    let client = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().expect("c");
    let res = client
        .post(format!("{}/v1/completions", s.base))
        .json(&json!({"prompt": "x", "max_tokens": 1000}))
        .send()
        .await;
    assert!(res.is_err(), "timed out");
    let mut waited = 0;
    while b.active() > 0 && waited < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(b.active(), 0);
}
