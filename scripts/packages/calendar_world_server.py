#!/usr/bin/env python3
"""A scripted OpenAI-compatible chat endpoint that dumps the Rust `calendar` family's world.

`agentgen generate --policy chat --no-stream --endpoint http://127.0.0.1:PORT` rolls calendar
tasks out against it. For each task it asks, through the family's own tools, for every person
(get_person on every id the generator can produce, list_people when offered), the rooms on the
task date and every person's busy intervals on that date, then answers "done". Each finished
conversation (prompt, tools, every call with its observation) is appended as one JSON line to
the dump file. `port_calendar.py` turns these dumps plus `envs sample` TaskSpecs into the
calendar_port package's tasks.jsonl.

Usage: calendar_world_server.py PORT DUMP.jsonl [MODE]   (MODE 0..3; run all four)
"""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

# Rust: id = format!("p{:02}", i + 1 + k * 20) with i < 12, k < 3.
CANDIDATE_IDS = [f"p{i + 1 + k * 20:02d}" for k in range(3) for i in range(12)]


def tool_names(body):
    return [t["function"]["name"] for t in body.get("tools", [])]


def calls_so_far(messages):
    """[(call, observation)] over the conversation."""
    by_id = {}
    out = []
    for m in messages:
        if m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                by_id[tc["id"]] = {"name": tc["function"]["name"],
                                   "arguments": json.loads(tc["function"]["arguments"] or "{}")}
        elif m.get("role") == "tool":
            c = by_id.get(m.get("tool_call_id"))
            if c is not None:
                out.append({**c, "observation": m.get("content")})
    return out


def plan(body):
    """Mode 0: list_people (when offered), list_rooms and every person the prompt or list_people
    names; mode g in 1..3: the g-th group of 12 candidate ids. Then get_busy for everyone found.
    Each mode stays under the rollout's 32 calls per turn; the port script merges the modes."""
    messages = body["messages"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    if isinstance(user, list):
        user = "".join(p.get("text", "") for p in user)
    date = re.search(r"\b(2025-\d\d-\d\d)\b", user).group(1)
    names = tool_names(body)
    n_assist = sum(1 for m in messages if m["role"] == "assistant")
    done = calls_so_far(messages)
    mode = Handler.mode
    if n_assist == 0:
        if mode == 0:
            calls = [("list_people", {})] if "list_people" in names else []
            calls.append(("list_rooms", {"date": date}))
            calls += [("get_person", {"person_id": p}) for p in dict.fromkeys(re.findall(r"\((p\d\d)\)", user))]
        else:
            calls = [("get_person", {"person_id": p}) for p in CANDIDATE_IDS[12 * (mode - 1): 12 * mode]]
        return calls, None
    asked = {c["arguments"].get("person_id") for c in done if c["name"] == "get_person"}
    listed = []
    for c in done:
        if c["name"] == "list_people" and not c["observation"].startswith('{"error"'):
            listed = [p["id"] for p in json.loads(c["observation"])["people"]]
    more = [("get_person", {"person_id": p}) for p in listed if p not in asked]
    if more:
        return more, None
    known = [c["arguments"]["person_id"] for c in done
             if c["name"] == "get_person" and not c["observation"].startswith('{"error"')]
    busy_done = {c["arguments"]["person_id"] for c in done if c["name"] == "get_busy"}
    todo = [("get_busy", {"person_id": p, "date": date}) for p in known if p not in busy_done]
    if todo:
        return todo, None
    return [], {"mode": mode, "prompt": user, "system": next((m["content"] for m in messages
                                                              if m["role"] == "system"), ""),
                "tools": names, "date": date, "calls": done}


class Handler(BaseHTTPRequestHandler):
    dump = None
    mode = 0

    def log_message(self, *a):
        pass

    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "scripted", "object": "model",
                                                 "owned_by": "me"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        calls, record = plan(body)
        if record is not None:
            with open(Handler.dump, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            msg = {"role": "assistant", "content": "done"}
            finish = "stop"
        else:
            n = sum(1 for m in body["messages"] if m["role"] == "assistant")
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(calls)]}
            finish = "tool_calls"
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


if __name__ == "__main__":
    Handler.dump = sys.argv[2]
    Handler.mode = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
