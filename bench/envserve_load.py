#!/usr/bin/env python3
"""Load test of `agentgen envs serve` (stdlib only), NeMo Gym's routes.

C concurrent clients each play one episode per task row: POST /seed_session, then every user
turn: its reference calls (the first turn's cut or padded with its first call so that the
episode makes N calls when the reference allows), POST /verify (the next turn's user message
comes back while `done` is false). Prints sessions/s, tool-call latency p50/p99 and seed latency p50/p99 (client side: a
package seed includes the wait for a free worker), errors (any non-200 answer; a seed answered
503 is retried after its Retry-After only with --retries N, and counted), the server's peak RSS
(VmHWM of --pid), the worker processes under it and the session counters after the run.

    agentgen envs export --format nemo-gym --families trip,retail --tasks 256 --out rows.jsonl
    python3 bench/envserve_load.py --url http://127.0.0.1:8765 --rows rows.jsonl \
        --agentgen target/debug/agentgen --clients 256 --calls 10 --pid PID
"""
import argparse
import http.client
import json
import os
import subprocess
import threading
import time
import urllib.parse

RETRIES = 0


def reference_turns(agentgen, task_id, envs):
    """[(calls, final_answer)] per user turn of the task's reference (`envs sample`)."""
    fam, rest = task_id.split("@", 1)
    _, inst, task = rest.split("/")
    cmd = [agentgen, "envs", "sample", "--family", fam, "--instance-seed", inst, "--task-seed", task]
    if envs:
        cmd += ["--envs", envs]
    s = json.loads(subprocess.check_output(cmd))
    turns = []
    for ref in [s["reference"]] + [f["reference"] for f in s.get("followups") or []]:
        calls = []
        for step in ref["turns"]:
            for c in step["calls"]:
                c = c.get("function", c)
                calls.append((c["name"], c["arguments"]))
        turns.append((calls, ref["final_answer"]))
    return turns


def episode(u, row, turns, n_calls, lat, errors, seeds, retries):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    hdr = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    for attempt in range(RETRIES + 1):
        conn.request("POST", "/seed_session", json.dumps(row), hdr)
        r = conn.getresponse()
        r.read()
        # 503 (sessions.full / workers.busy) says when to come back: a client may retry.
        if r.status != 503 or attempt == RETRIES:
            break
        retries.append(1)
        time.sleep(float(r.getheader("Retry-After") or 1))
    seeds.append(time.perf_counter() - t0)
    if r.status != 200:
        errors.append(("seed", r.status))
        return None
    cookie = r.getheader("Set-Cookie").split(";", 1)[0]
    hdr["Cookie"] = cookie
    # Every user turn: its reference calls, then /verify; the first turn's calls are cut or
    # padded (its first call repeated) so that the episode makes n_calls calls in all when
    # the reference allows.
    later = sum(len(c) for c, _ in turns[1:])
    first_calls, _ = turns[0]
    want = max(len(first_calls) and 1, n_calls - later)
    plan0 = list(first_calls[:want])
    while first_calls and len(plan0) < want:
        plan0.append(first_calls[0])
    reward = None
    for t, (calls, answer) in enumerate(turns):
        items = []
        for i, (name, args) in enumerate(plan0 if t == 0 else calls):
            t0 = time.perf_counter()
            conn.request("POST", "/" + name, args, hdr)
            r = conn.getresponse()
            out = r.read().decode()
            lat.append(time.perf_counter() - t0)
            if r.status != 200:
                errors.append((name, r.status))
            items.append({"type": "function_call", "call_id": f"c{i}", "name": name,
                          "arguments": args})
            items.append({"type": "function_call_output", "call_id": f"c{i}", "output": out})
        items.append({"type": "message", "role": "assistant",
                      "content": [{"type": "output_text", "text": answer}]})
        req = dict(row, response={"output": items})
        conn.request("POST", "/verify", json.dumps(req), hdr)
        r = conn.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            errors.append(("verify", r.status))
            return None
        reward = body.get("reward")
        if body.get("done", True):
            return reward
        row = dict(row)
        rcp = dict(row["responses_create_params"])
        rcp["input"] = rcp["input"] + [body["next_user_message"]]
        row["responses_create_params"] = rcp
    errors.append(("verify", "episode not done after the last turn"))
    return reward


def rss_kb(pid):
    """VmHWM of pid plus VmRSS of its descendants now (workers)."""
    def field(p, name):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith(name):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0
    kids, direct = [], 0
    try:
        out = subprocess.check_output(["ps", "-e", "-o", "pid=,ppid="]).decode().split("\n")
        tree = {}
        for l in out:
            if l.strip():
                a, b = l.split()
                tree.setdefault(int(b), []).append(int(a))
        direct = len(tree.get(pid, []))  # one sandbox process per worker
        stack = [pid]
        while stack:
            p = stack.pop()
            for c in tree.get(p, []):
                kids.append(c)
                stack.append(c)
    except Exception:
        pass
    return field(pid, "VmHWM:"), sum(field(k, "VmRSS:") for k in kids), len(kids), direct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--agentgen", required=True)
    ap.add_argument("--envs", default="")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--retries", type=int, default=0,
                    help="retries of a seed answered 503, after its Retry-After (default 0)")
    a = ap.parse_args()
    global RETRIES
    RETRIES = a.retries
    u = urllib.parse.urlparse(a.url)
    rows = [json.loads(l) for l in open(a.rows) if l.strip()]
    plans = {}
    for row in rows:
        if row["task_id"] not in plans:
            plans[row["task_id"]] = reference_turns(a.agentgen, row["task_id"], a.envs)
    lat, errors, rewards, seeds, retries = [], [], [], [], []
    lock = threading.Lock()
    jobs = list(range(len(rows)))

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                i = jobs.pop()
            row = rows[i]
            turns = plans[row["task_id"]]
            l, e, sd, rt = [], [], [], []
            rew = episode(u, row, turns, a.calls, l, e, sd, rt)
            with lock:
                lat.extend(l)
                errors.extend(e)
                seeds.extend(sd)
                retries.extend(rt)
                rewards.append(rew)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    for t in threads:
        t.start()
    peak_workers = (0, 0)
    peak_sandboxes = 0
    while any(t.is_alive() for t in threads):
        if a.pid:
            _, kids_rss, kids, direct = rss_kb(a.pid)
            peak_workers = max(peak_workers, (kids, kids_rss))
            peak_sandboxes = max(peak_sandboxes, direct)
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    lat.sort()
    seeds.sort()
    q = lambda p, xs=lat: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else 0
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/stats")
    stats = json.loads(conn.getresponse().read())
    out = {
        "episodes": len(rows), "clients": a.clients, "calls_per_episode": a.calls,
        "wall_s": round(wall, 2), "sessions_per_s": round(len(rows) / wall, 1),
        "calls_per_s": round(len(lat) / wall, 1),
        "call_ms_p50": round(q(0.50), 2), "call_ms_p99": round(q(0.99), 2),
        "seed_ms_p50": round(q(0.50, seeds), 1), "seed_ms_p99": round(q(0.99, seeds), 1),
        "errors": len(errors), "error_kinds": sorted(set(map(str, errors)))[:5],
        "seed_retries_503": len(retries),
        "reward_mean": round(sum(r or 0 for r in rewards) / max(1, len(rewards)), 3),
        "stats_after": stats,
    }
    if a.pid:
        hwm, kids_rss, kids, direct = rss_kb(a.pid)
        out["peak_worker_sandboxes"] = peak_sandboxes
        out["worker_sandboxes_after"] = direct
        out["server_peak_rss_mb"] = round(hwm / 1024, 1)
        out["peak_worker_processes"] = peak_workers[0]
        out["peak_workers_rss_mb"] = round(peak_workers[1] / 1024, 1)
        out["worker_processes_after"] = kids
    print(json.dumps(out))


if __name__ == "__main__":
    main()
