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
import time
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
        return self._send(req)

    def get(self, path):
        return self._send(urllib.request.Request(self.base + path, method="GET"))

    def _send(self, req):
        """Send `req` with the client's headers: `(status, body text)`, HTTP errors included."""
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


def turn_calls(reference):
    calls = []
    for step in reference["turns"]:
        for c in step["calls"]:
            c = c.get("function", c)
            args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
            calls.append((c["name"], args))
    return calls


def sample_row(sample):
    """The NeMo Gym row of a sampled task (what `envs export` writes for it)."""
    return {"task_id": sample["id"], "responses_create_params": {"input": [
        {"role": "system", "content": sample["system_prompt"]},
        {"role": "user", "content": sample["user_prompt"]}], "tools": []}}


def nemo_turn(client, row, calls, answer):
    """One user turn over NeMo Gym's routes: the calls, then /verify with their output."""
    items = []
    for i, (name, args) in enumerate(calls):
        status, out = client.post("/" + name, None, raw=args.encode())
        assert status == 200, (name, status, out)
        items.append({"type": "function_call", "call_id": f"c{i}", "name": name, "arguments": args})
        items.append({"type": "function_call_output", "call_id": f"c{i}", "output": out})
    items.append({"type": "message", "role": "assistant",
                  "content": [{"type": "output_text", "text": answer}]})
    status, body = client.post("/verify", dict(row, response=response_object(items)))
    return status, json.loads(body)


def mode_multiturn(base, sample_file):
    """A two-turn task over NeMo Gym's routes (reference turns: the episode continues after
    turn 0 with the next user message, then ends with reward 1; a failed first turn ends it
    with 0), and over OpenEnv's HTTP routes (reset / step / state)."""
    sample = json.load(open(sample_file))
    row = sample_row(sample)
    turns = [sample["reference"]] + [f["reference"] for f in sample["followups"]]
    out = {}
    c = Client(base)
    assert c.post("/seed_session", row)[0] == 200
    name, value = c.cookie()
    stale = Client(base, {"Cookie": f"{name}={value}"})
    out["verify0"] = nemo_turn(c, row, turn_calls(turns[0]), turns[0]["final_answer"])
    next_user = out["verify0"][1].get("next_user_message", {}).get("content")
    if next_user is not None:
        row = dict(row)
        row["responses_create_params"] = dict(row["responses_create_params"], input=(
            row["responses_create_params"]["input"] + [{"role": "user", "content": next_user}]))
    out["verify1"] = nemo_turn(c, row, turn_calls(turns[1]), turns[1]["final_answer"])
    out["after_end"] = stale.post("/" + turn_calls(turns[0])[0][0], {})[0]
    # A failed first turn ends the episode at once.
    c = Client(base)
    row = sample_row(sample)
    c.post("/seed_session", row)
    name, value = c.cookie()
    stale = Client(base, {"Cookie": f"{name}={value}"})
    out["fail0"] = nemo_turn(c, row, [], "no idea")
    out["after_fail"] = stale.post("/" + turn_calls(turns[0])[0][0], {})[0]
    # OpenEnv over HTTP: reset, the reference calls of each turn, answer.
    h = Client(base)
    out["reset"] = json.loads(h.post("/reset", {"task_id": sample["id"]})[1])
    answers = []
    for t in turns:
        for name, args in turn_calls(t):
            s, body = h.post("/step", {"action": {"type": "call_tool", "tool_name": name,
                                                  "arguments": json.loads(args)}})
            assert s == 200, (s, body)
        if not answers:
            out["state_turn0"] = json.loads(h.get("/state")[1])
        s, body = h.post("/step", {"action": {"type": "answer", "content": t["final_answer"]}})
        answers.append([s, json.loads(body)])
    out["answers"] = answers
    out["state_after"] = h.get("/state")[0]
    # The same over the WebSocket.
    ws = WebSocket(base)
    ws.send({"type": "reset", "data": {"task_id": sample["id"]}})
    ws.recv()
    ws_answers = []
    for t in turns:
        for name, args in turn_calls(t):
            ws.send({"type": "step", "data": {"type": "call_tool", "tool_name": name,
                                              "arguments": json.loads(args)}})
            ws.recv()
        ws.send({"type": "step", "data": {"type": "answer", "content": t["final_answer"]}})
        ws_answers.append(ws.recv())
    ws.send({"type": "state"})
    out["ws_state"] = ws.recv()
    ws.send({"type": "close"})
    out["ws_answers"] = ws_answers
    out["stats"] = settled_stats(base)
    return out


def mode_openenv_http(base, sample_file):
    """OpenEnv's HTTP routes on a one-turn task, and their errors."""
    sample = json.load(open(sample_file))
    out = {}
    h = Client(base)
    out["step_no_session"] = h.post("/step", {"action": {"type": "list_tools"}})
    out["state_no_session"] = h.get("/state")[0]
    out["reset_bad"] = h.post("/reset", {"nothing": 1})[0]
    s, body = h.post("/reset", {"task_id": sample["id"], "episode_id": "ep-7"})
    out["reset"] = [s, json.loads(body)]
    out["list_tools"] = json.loads(h.post("/step", {"action": {"type": "list_tools"}})[1])
    out["bad_action"] = h.post("/step", {"action": {"type": "dance"}})[0]
    out["no_action"] = h.post("/step", {"nothing": 1})[0]
    steps = []
    for name, args in reference_calls(sample):
        s, body = h.post("/step", {"action": {"type": "call_tool", "tool_name": name,
                                              "arguments": json.loads(args)}})
        steps.append([s, json.loads(body)])
    out["steps"] = steps
    out["state"] = json.loads(h.get("/state")[1])
    # Another client cannot see this one's episode.
    out["other_state"] = Client(base).get("/state")[0]
    s, body = h.post("/step", {"action": {"type": "answer",
                                          "content": sample["reference"]["final_answer"]}})
    out["answer"] = [s, json.loads(body)]
    out["after_done"] = h.post("/step", {"action": {"type": "list_tools"}})[0]
    # The empty probe on a second episode of the same client.
    h.post("/reset", {"task_id": sample["id"]})
    out["empty"] = json.loads(h.post("/step", {"action": {"type": "answer", "content": ""}})[1])
    out["stats"] = mode_stats(base)
    return out


def mode_workers(base, row_file, n):
    """n package sessions at once against a smaller --workers: the ones beyond wait, then get
    503 workers.busy with Retry-After; verifying one lets the next seed in."""
    row = json.loads(open(row_file).read().splitlines()[0])
    clients = [Client(base) for _ in range(n)]
    codes, busy = [], None
    for c in clients:
        req = urllib.request.Request(base.rstrip("/") + "/seed_session",
                                     data=json.dumps(row).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        try:
            with c.opener.open(req, timeout=60) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
            if busy is None:
                busy = {"body": json.loads(e.read().decode()),
                        "retry_after": e.headers.get("Retry-After")}
    out = {"codes": codes, "busy": busy, "stats_full": mode_stats(base)}
    first = clients[codes.index(200)]
    out["verify_one"] = first.post("/verify", dict(row, response=response_object([])))[0]
    out["seed_after"] = Client(base).post("/seed_session", row)[0]
    out["stats_after"] = mode_stats(base)
    return out


def readme_block(text, after, lang):
    """The first ```lang block after the line containing `after`."""
    start = text.index(after)
    open_ = text.index("```" + lang + "\n", start) + len(lang) + 4
    return text[open_:text.index("```", open_)]


def mode_readme(base, readme, rows_file, sample_file, workdir):
    """The README's NeMo Gym YAML and `verifiers` snippet: the YAML parses and names the port
    and the dataset file of the README's own commands; the snippet's helpers, run as written
    (stand-in `verifiers` and `datasets` modules), play a task against the server."""
    import importlib.util
    import re
    text = open(readme).read()
    sh = readme_block(text, "## Environments for RL stacks", "sh")
    out = {"serve_port": int(re.search(r"envs serve .*--port (\d+)", sh).group(1)),
           "export_out": re.search(r"envs export .*--out (\S+)", sh).group(1)}
    y = readme_block(text, "A NeMo Gym config", "yaml")
    try:
        import yaml
    except ImportError:
        out["yaml"] = "no PyYAML"
    else:
        cfg = yaml.safe_load(y)
        (server_name, server), = [(k, v) for k, v in cfg.items() if "resources_servers" in v]
        (agent_name, agent), = [(k, v) for k, v in cfg.items() if "responses_api_agents" in v]
        res = list(server["resources_servers"].values())[0]
        ag = list(agent["responses_api_agents"].values())[0]
        out["yaml"] = {"host": res["host"], "port": res["port"],
                       "agent_points_at_server": ag["resources_server"]["name"] == server_name,
                       "datasets": [d["jsonl_fpath"] for d in ag["datasets"]]}
    code = readme_block(text, "A `verifiers` environment", "python")
    out["snippet_url"] = re.search(r'URL = "([^"]+)"', code).group(1)
    code = code.replace(out["snippet_url"], base.rstrip("/"))
    os.makedirs(workdir, exist_ok=True)
    open(os.path.join(workdir, "verifiers.py"), "w").write(
        "class StatefulToolEnv:\n    pass\n")
    open(os.path.join(workdir, "datasets.py"), "w").write(
        "import json\n"
        "def load_dataset(kind, data_files):\n"
        "    return {'train': [json.loads(l) for l in open(data_files) if l.strip()]}\n")
    import shutil
    shutil.copy(rows_file, os.path.join(workdir, out["export_out"]))
    open(os.path.join(workdir, "snippet.py"), "w").write(code)
    sys.path.insert(0, workdir)
    os.chdir(workdir)
    spec = importlib.util.spec_from_file_location("snippet", os.path.join(workdir, "snippet.py"))
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    sample = json.load(open(sample_file))
    row = [r for r in snippet.rows if r["task_id"] == sample["id"]][0]
    cookie = snippet.seed(row)
    output = []
    for i, (name, args) in enumerate(reference_calls(sample)):
        obs = snippet.call_tool(cookie, name, json.loads(args))
        output.append({"type": "function_call", "call_id": f"c{i}", "name": name, "arguments": args})
        output.append({"type": "function_call_output", "call_id": f"c{i}",
                       "output": obs})
    output.append({"type": "message", "role": "assistant",
                   "content": [{"type": "output_text", "text": sample["reference"]["final_answer"]}]})
    v = snippet.verify(cookie, row, output)
    out["cookie"] = cookie.split("=")[0]
    out["verified"] = {k: v.get(k) for k in ("reward", "done", "turns_total")}
    out["env_class"] = snippet.AgentgenEnv.__mro__[1].__name__
    return out


def mode_reseed(base, row_file, n):
    """With one place and no seed wait: seed right after the previous episode's last /verify
    (or /close_session), n times each; every seed must find the place free."""
    row = json.loads(open(row_file).read().splitlines()[0])
    codes = {}
    for i in range(2 * n):
        c = Client(base)
        s = c.post("/seed_session", row)[0]
        codes[str(s)] = codes.get(str(s), 0) + 1
        if i < n:
            c.post("/verify", dict(row, response=response_object([])))
        else:
            c.post("/close_session", {})
    return {"codes": codes, "stats": mode_stats(base)}


def mode_stats(base):
    return json.loads(Client(base).get("/stats")[1])


def settled_stats(base, tries=400):
    """/stats once the server has processed a just-sent WebSocket close (it frees the session
    after reading the close frame, not before this client's next request)."""
    st = mode_stats(base)
    for _ in range(tries):
        if st.get("active_sessions") == 0:
            break
        time.sleep(0.05)
        st = mode_stats(base)
    return st


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
    elif mode == "multiturn":
        out = mode_multiturn(base, sys.argv[3])
    elif mode == "openenv_http":
        out = mode_openenv_http(base, sys.argv[3])
    elif mode == "workers":
        out = mode_workers(base, sys.argv[3], int(sys.argv[4]))
    elif mode == "readme":
        out = mode_readme(base, *sys.argv[3:7])
    elif mode == "reseed":
        out = mode_reseed(base, sys.argv[3], int(sys.argv[4]))
    elif mode == "stats":
        out = mode_stats(base)
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
