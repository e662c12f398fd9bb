#!/usr/bin/env python3
"""Compare the calendar_port package with the built-in Rust `calendar` family on the same tasks.

Four comparisons, all on the 200 distinct tasks of calendar@1 run seed 0 (indices 0..201):

1. Package admission: `agentgen envs check environments/packages/calendar_port --json F`:
   per task, the reference passes and every probe (empty, answer_only, minus_last_write,
   later-slot) fails.
2. Rust soundness: `agentgen envs check --family calendar --tasks 202 --seed 0 --json`: the same
   task refs (registry task_ref(run seed, index), as `generate` uses): reference passes and the
   Rust probes (no_tool_calls, answer_only, minus_last_write, random_calls_0/1) fail.
3. Same trajectories, both verifiers: a scripted chat endpoint replays, for each task, the
   reference, the reference minus its create_event, the package's later-slot probe and an empty
   rollout through `agentgen generate --policy chat` (Rust executes the calls and verifies; the
   `passed` column is Rust's verdict). The package's verdict on the same calls comes from the
   local replay (pkgstub) of the package code; the runtime's own verdicts for reference,
   minus_last_write, later-slot and empty are in comparison 1.
4. Observations: every call of the world dump (the Rust family's observations) is replayed on
   the package's Env and the observation text compared byte for byte.

Usage: python3 scripts/packages/compare_calendar_port.py [--agentgen /work/bin/agentgen]
Prints a summary and writes it as JSON to scripts/packages/calendar_export/comparison.json.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PKG = os.path.join(ROOT, "environments", "packages", "calendar_port")
sys.path.insert(0, HERE)
import pkgstub  # noqa: E402

N_INDICES = 202  # run indices 0..201 hold the 200 distinct tasks


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def trajectories(task):
    ref = task["turns"][0]["reference"]
    minus = [[c for c in step if c["name"] != "create_event"] for step in ref]
    minus = [s for s in minus if s]
    later = task["probes"][0]["turns"][0]["calls"]
    return {"reference": ref, "minus_last_write": minus, "later_slot": later, "empty": []}


class Replay(BaseHTTPRequestHandler):
    plans = {}  # user prompt -> steps
    answers = {}

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
        self._send({"object": "list", "data": [{"id": "replay", "object": "model", "owned_by": "me"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msgs = body["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        steps = Replay.plans[user]
        n = sum(1 for m in msgs if m["role"] == "assistant")
        if n < len(steps):
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{n}_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for i, c in enumerate(steps[n])]}
            fin = "tool_calls"
        else:
            msg = {"role": "assistant", "content": Replay.answers[user] or "I have completed the task."}
            fin = "stop"
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "replay",
                    "choices": [{"index": 0, "message": msg, "finish_reason": fin}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def rust_verdicts(agentgen, tasks, kind, port):
    import pyarrow.parquet as pq
    Replay.plans = {t["turns"][0]["user"]: trajectories(t)[kind] for t in tasks}
    Replay.answers = {t["turns"][0]["user"]: (t["turns"][0]["answer"] if kind != "empty" else "") for t in tasks}
    srv = HTTPServer(("127.0.0.1", port), Replay)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        with tempfile.TemporaryDirectory() as out:
            rc, so, se = run([agentgen, "generate", "--out", out, "--overwrite", "--tasks", str(N_INDICES), "--seed", "0",
                              "--families", "calendar", "--policy", "chat", "--no-stream", "--endpoint",
                              f"http://127.0.0.1:{port}", "--api-model", "replay", "--quiet", "--concurrency", "4"])
            if rc not in (0,):
                print(se[-2000:], file=sys.stderr)
            rows = {}
            for f in glob.glob(os.path.join(out, "data", "**", "*.parquet"), recursive=True):
                t = pq.read_table(f, columns=["task_id", "passed", "rejection_code"]).to_pydict()
                for tid, passed, code in zip(t["task_id"], t["passed"], t["rejection_code"]):
                    rows[tid] = (bool(passed), code)
            return rows
    finally:
        srv.shutdown()


def package_verdict(E, task, kind):
    steps = trajectories(task)[kind]
    answer = task["turns"][0]["answer"] if kind != "empty" else ""
    v, _ = pkgstub.play(E, task, [{"calls": steps, "answer": answer}])
    return v[0]["passed"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agentgen", default="/work/bin/agentgen")
    args = ap.parse_args()
    tasks = [json.loads(l) for l in open(os.path.join(PKG, "tasks.jsonl"), encoding="utf-8")]
    ids = [t["id"] for t in tasks]
    summary = {"tasks": len(tasks)}

    # 1. package admission
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        rc, so, se = run([args.agentgen, "envs", "check", PKG, "--json", f.name])
        rep = json.load(open(f.name))
    pk = {t["id"]: t for t in rep["tasks"]}
    summary["package_check"] = {"exit": rc, "admitted": rep["summary"]["admitted"], "rejected": rep["summary"]["rejected"],
                                "reference_passed": sum(pk[i]["reference"]["passed"] for i in ids),
                                "probes_failed": sum(all(not p.get("passed", False) for p in pk[i]["probes"]) for i in ids),
                                "probes_run": sorted({p["name"] for i in ids for p in pk[i]["probes"] if not p.get("skipped")})}

    # 2. Rust soundness on the same refs
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        rc, so, se = run([args.agentgen, "envs", "check", "--family", "calendar", "--tasks", str(N_INDICES), "--seed", "0",
                          "--quiet", "--json", f.name])
        rrep = json.load(open(f.name))
    rust_fail = {x["task_id"]: x["reasons"] for x in rrep.get("failures", [])}
    summary["rust_check"] = {"exit": rc, "passed": rrep.get("passed"), "failed": rrep.get("failed"),
                             "failures_among_ported": sorted(set(rust_fail) & set(ids))}
    sound_both = sum(1 for i in ids if pk[i]["admitted"] and i not in rust_fail)
    summary["soundness_agreement"] = {"sound_in_both": sound_both, "of": len(ids)}

    # 3. same trajectories, both verifiers
    E = pkgstub.load(PKG, "2025-01-01T00:00:00Z")
    traj = {}
    for n, kind in enumerate(["reference", "minus_last_write", "later_slot", "empty"]):
        rv = rust_verdicts(args.agentgen, tasks, kind, 18890 + n)
        agree = 0
        rust_pass = pkg_pass = 0
        missing = 0
        disagree = []
        for t in tasks:
            if t["id"] not in rv:
                missing += 1
                continue
            r = rv[t["id"]][0]
            p = package_verdict(E, t, kind)
            rust_pass += r
            pkg_pass += p
            if r == p:
                agree += 1
            else:
                disagree.append(t["id"])
        traj[kind] = {"rust_passed": rust_pass, "package_passed": pkg_pass, "agree": agree,
                      "missing_rows": missing, "disagree": disagree[:10]}
    summary["same_trajectories"] = traj

    # 4. observation fidelity
    same = diff = 0
    examples = []
    specs = {json.loads(l)["user_prompt"]: json.loads(l) for l in open(os.path.join(HERE, "calendar_export", "specs.jsonl"))}
    by_prompt = {t["turns"][0]["user"]: t for t in tasks}
    for line in open(os.path.join(HERE, "calendar_export", "world_dump.jsonl"), encoding="utf-8"):
        rec = json.loads(line)
        t = by_prompt.get(rec["prompt"])
        if t is None:
            continue
        E._ctx["seed"] = t["seed"]
        env = E.Env(t["seed"], t["params"])
        for c in rec["calls"]:
            try:
                res = getattr(env, c["name"])(**c["arguments"])
                obs = res if isinstance(res, str) else json.dumps(res, ensure_ascii=False)
            except Exception as e:  # noqa: BLE001
                obs = json.dumps({"error": str(e)}, ensure_ascii=False)
            if obs == c["observation"]:
                same += 1
            else:
                diff += 1
                if len(examples) < 5:
                    examples.append({"call": c["name"], "rust": c["observation"][:200], "port": obs[:200]})
    summary["observations"] = {"identical": same, "different": diff, "examples": examples}
    del specs

    out = os.path.join(HERE, "calendar_export", "comparison.json")
    with open(out, "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
