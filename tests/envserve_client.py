"""A client of `agentgen envs serve` written from NeMo Gym's and OpenEnv's shapes, standard
library only (tests/envserve.rs runs it against the real binary).

NeMo Gym (NVIDIA-NeMo/Gym): `responses_api_agents/simple_agent/app.py` posts the dataset row
to /seed_session, forwards the cookies it got to every POST /{tool_name} (the body is the
arguments object; the raw response body is the model-visible output, whatever its status) and
to POST /verify, whose body is the row plus `response` (a Responses-API response: `output`
items of type function_call, function_call_output and message) and whose answer is the request
echoed plus `reward` (`nemo_gym/base_resources_server.py`: BaseVerifyRequest,
BaseVerifyResponse).

OpenEnv (meta-pytorch/OpenEnv): `src/openenv/core/env_server/http_server.py` /ws messages
`{"type": "reset"|"step"|"state"|"close", "data": ...}`, answers `{"type": "observation",
"data": {"observation", "reward", "done"}}`; CallToolAction `{"type": "call_tool", "tool_name",
"arguments"}` (`mcp_types.py`).

Usage: envserve_client.py MODE BASE_URL ARGS... ; prints one JSON object.
"""

import base64
import http.client
import http.cookiejar
import json
import os
import socket
import struct
import sys
import threading
import urllib.error
import urllib.request


class Client:
    """One NeMo Gym-style client: its own cookie jar (one episode at a time)."""

    def __init__(self, base, headers=None):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.headers = headers or {}

    def post(self, path, body, raw=None):
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        for k, v in self.headers.items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path):
        req = urllib.request.Request(self.base + path, method="GET")
        for k, v in self.headers.items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def cookie(self):
        for c in self.jar:
            return c.name, c.value
        return None


def response_object(items):
    """A Responses-API response as NeMo Gym's agent hands it to /verify."""
    return {
        "id": "resp_test",
        "created_at": 0,
        "model": "policy",
        "object": "response",
        "output": items,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def play(client, row, calls, answer):
    """Seed, run `calls` [(name, arguments_json)], verify with `answer`; returns the verify
    answer, the observations and the statuses."""
    status, body = client.post("/seed_session", row)
    assert status == 200, (status, body)
    client.seeded = client.cookie()
    items, observations, statuses = [], [], []
    for i, (name, args) in enumerate(calls):
        status, out = client.post("/" + name, None, raw=args.encode())
        statuses.append(status)
        observations.append(out)
        items.append({"type": "function_call", "call_id": f"call_{i}", "name": name,
                      "arguments": args, "id": f"fc_{i}", "status": "completed"})
        items.append({"type": "function_call_output", "call_id": f"call_{i}", "output": out})
    if answer is not None:
        items.append({"type": "message", "role": "assistant", "id": "msg_0", "status": "completed",
                      "content": [{"type": "output_text", "text": answer, "annotations": []}]})
    req = dict(row)
    req["response"] = response_object(items)
    status, body = client.post("/verify", req)
    return status, json.loads(body) if body.startswith("{") else body, observations, statuses


def reference_calls(sample):
    calls = []
    for turn in sample["reference"]["turns"]:
        for c in turn["calls"]:
            c = c.get("function", c)  # OpenAI tool-call shape
            args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
            calls.append((c["name"], args))
    return calls


def mode_contract(base, row_file, sample_file):
    row = json.loads(open(row_file).read().splitlines()[0])
    sample = json.load(open(sample_file))
    client = Client(base)
    status, verified, observations, statuses = play(
        client, row, reference_calls(sample), sample["reference"]["final_answer"])
    # The same client plays the empty probe: no calls, no answer.
    status0, empty, _, _ = play(client, row, [], None)
    # The verified session is gone: a call with its cookie is refused.
    name, value = client.seeded
    stale = Client(base, {"Cookie": f"{name}={value}"})
    gone_status, gone_body = stale.post("/" + reference_calls(sample)[0][0], {})
    return {
        "verify_status": status, "verified": verified, "call_statuses": statuses,
        "observations": observations, "empty_status": status0, "empty": empty,
        "after_verify_status": gone_status, "after_verify_body": gone_body,
    }


def mode_abuse(base, row_file, tool, n_idle):
    row = json.loads(open(row_file).read().splitlines()[0])
    out = {}
    a, b = Client(base), Client(base)
    out["seed_a"] = a.post("/seed_session", row)[0]
    out["seed_b"] = b.post("/seed_session", row)[0]
    # Unknown tool: NeMo Gym-style 404 with the error the model sees.
    out["unknown_tool"] = a.post("/no_such_tool", {})
    # No cookie, a made-up cookie, another client's cookie.
    out["no_cookie"] = Client(base).post("/" + tool, {})
    forged = Client(base, {"Cookie": "agentgen_session=" + "0" * 32})
    out["forged_cookie"] = forged.post("/" + tool, {})
    out["verify_forged"] = forged.post("/verify", dict(row, response=response_object([])))
    # Client b's session is its own: a's cookie never names it, and verifying a's leaves b's.
    name, value = a.cookie()
    out["verify_a"] = a.post("/verify", dict(row, response=response_object([])))[0]
    out["a_after_verify"] = Client(base, {"Cookie": f"{name}={value}"}).post("/" + tool, {})[0]
    out["b_still_alive"] = b.post("/" + tool, {})[0]
    # A verify body of the wrong shape: 422, the session survives it.
    out["verify_bad_shape"] = b.post("/verify", {"responses_create_params": {}})[0]
    # A row naming another task than the session's.
    other = dict(row, task_id="trip@2/0/1", response=response_object([]))
    out["verify_other_task"] = b.post("/verify", other)[0]
    # Oversized bodies.
    big = b"{\"x\": \"" + b"a" * (3 << 20) + b"\"}"
    try:
        out["oversized_tool"] = b.post("/" + tool, None, raw=big)[0]
    except Exception as e:  # the server may close the connection mid-upload
        out["oversized_tool"] = "closed: " + type(e).__name__
    try:
        out["oversized_seed"] = Client(base).post("/seed_session", None, raw=big)[0]
    except Exception as e:
        out["oversized_seed"] = "closed: " + type(e).__name__
    out["not_json"] = Client(base).post("/seed_session", None, raw=b"not json")[0]
    out["no_task_id"] = Client(base).post("/seed_session", {"responses_create_params": {}})[0]
    out["bad_task_id"] = Client(base).post("/seed_session", dict(row, task_id="trip@1/x/0"))
    out["b_alive_after_abuse"] = b.post("/" + tool, {})[0]
    out["close_b"] = b.post("/close_session", {})
    # n idle sessions: the limit answers 503 with a clear error, never anything else.
    out["idle_codes"], out["full_body"] = seed_many(base, row, n_idle)
    out["stats_full"] = json.loads(Client(base).get("/stats")[1])
    out["liveness"] = Client(base).get("/")
    out["health"] = Client(base).get("/health")
    return out


def seed_many(base, row, n):
    """Seed n sessions from n clients and leave them idle: the status counts and the first
    503 body."""
    codes, full_body = {}, None
    for _ in range(n):
        s, body = Client(base).post("/seed_session", row)
        codes[str(s)] = codes.get(str(s), 0) + 1
        if s == 503 and full_body is None:
            full_body = json.loads(body)
    return codes, full_body


def mode_auth(base, row_file, key):
    row = json.loads(open(row_file).read().splitlines()[0])
    bearer = {"Authorization": "Bearer " + key}
    wrong = {"Authorization": "Bearer not-" + key}
    keyed = Client(base, bearer)
    out = {
        "liveness": Client(base).get("/")[0],
        "health": Client(base).get("/health")[0],
        "stats_no_key": Client(base).get("/stats")[0],
        "seed_no_key": Client(base).post("/seed_session", row),
        "seed_wrong_key": Client(base, wrong).post("/seed_session", row)[0],
        "seed_key": keyed.post("/seed_session", row)[0],
        "verify_key": keyed.post("/verify", dict(row, response=response_object([])))[0],
    }
    return out


def mode_queue(base, row_file):
    """With one place and a seed wait: a second seed waits until the first session is
    verified, then gets the place."""
    row = json.loads(open(row_file).read().splitlines()[0])
    first, second = Client(base), Client(base)
    out = {"first": first.post("/seed_session", row)[0]}
    result = {}
    t = threading.Thread(target=lambda: result.update(second=second.post("/seed_session", row)[0]))
    t.start()
    out["verify_first"] = first.post("/verify", dict(row, response=response_object([])))[0]
    t.join()
    out["second"] = result.get("second")
    out["verify_second"] = second.post("/verify", dict(row, response=response_object([])))[0]
    out["stats"] = json.loads(Client(base).get("/stats")[1])
    return out


def mode_stats(base):
    return json.loads(Client(base).get("/stats")[1])


# --- OpenEnv over a minimal RFC 6455 client ---------------------------------------------------

class WebSocket:
    def __init__(self, base, path="/ws"):
        host, port = base.split("://", 1)[1].rstrip("/").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise RuntimeError("handshake refused: " + head.decode(errors="replace"))

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return buf

    def recv(self):
        """The next text message as JSON, or None on a close frame."""
        while True:
            b0, b1 = self._exact(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            data = self._exact(n)
            if op == 0x8:
                return None
            if op == 0x1:
                return json.loads(data.decode())


def mode_openenv(base, sample_file):
    sample = json.load(open(sample_file))
    c = Client(base)
    out = {"health": c.get("/health"), "metadata": c.get("/metadata"), "schema": c.get("/schema")}
    ws = WebSocket(base)
    ws.send({"type": "step", "data": {"type": "list_tools"}})
    out["step_before_reset"] = ws.recv()
    ws.send({"type": "reset", "data": {"task_id": sample["id"]}})
    out["reset"] = ws.recv()
    ws.send({"type": "step", "data": {"type": "list_tools"}})
    out["list_tools"] = ws.recv()
    steps = []
    for name, args in reference_calls(sample):
        ws.send({"type": "step", "data": {"type": "call_tool", "tool_name": name,
                                          "arguments": json.loads(args)}})
        steps.append(ws.recv())
    out["steps"] = steps
    ws.send({"type": "state"})
    out["state"] = ws.recv()
    ws.send({"type": "step", "data": {"type": "answer", "content": sample["reference"]["final_answer"]}})
    out["answer"] = ws.recv()
    # A second episode on the same connection: the empty probe.
    ws.send({"type": "reset", "data": {"task_id": sample["id"]}})
    ws.recv()
    ws.send({"type": "step", "data": {"type": "answer", "content": ""}})
    out["empty_answer"] = ws.recv()
    ws.send({"type": "nonsense"})
    out["unknown_type"] = ws.recv()
    ws.send({"type": "close"})
    out["after_close"] = ws.recv()
    return out


def main():
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "contract":
        out = mode_contract(base, sys.argv[3], sys.argv[4])
    elif mode == "abuse":
        out = mode_abuse(base, sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif mode == "openenv":
        out = mode_openenv(base, sys.argv[3])
    elif mode == "seed_many":
        rows = json.loads(open(sys.argv[3]).read().splitlines()[0])
        out = seed_many(base, rows, int(sys.argv[4]))[0]
    elif mode == "auth":
        out = mode_auth(base, sys.argv[3], sys.argv[4])
    elif mode == "queue":
        out = mode_queue(base, sys.argv[3])
    elif mode == "stats":
        out = mode_stats(base)
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
