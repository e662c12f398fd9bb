"""Load an envpkg package's env.py outside the runtime, for the task generators.

A stand-in `agentgen_env` module (ToolError, data_path, now, today, seed, rng, scratch_dir) with
the spec's semantics (envpkg.md §5.4), so a generator can build `Env` objects, replay reference
calls and run `verify` exactly as the runtime will. `agentgen envs check` remains the judge.
"""
import datetime as _dt
import hashlib
import importlib.util
import os
import random
import sys
import types


def load(pkg_dir, clock, module_name=None):
    ctx = {"seed": 0, "clock": _dt.datetime.fromisoformat(clock.replace("Z", "+00:00"))}
    m = types.ModuleType("agentgen_env")

    class ToolError(Exception):
        pass

    def data_path(*parts):
        return os.path.join(pkg_dir, "data", *parts)

    def rng(*salt):
        text = str(ctx["seed"]) + "".join("/" + str(s) for s in salt)
        return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))

    m.ToolError = ToolError
    m.data_path = data_path
    m.now = lambda: ctx["clock"]
    m.today = lambda: ctx["clock"].date()
    m.seed = lambda: ctx["seed"]
    m.rng = rng
    m.scratch_dir = lambda: "/tmp"
    sys.modules["agentgen_env"] = m
    sys.path.insert(0, pkg_dir)
    spec = importlib.util.spec_from_file_location(module_name or "env", os.path.join(pkg_dir, "env.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod._ctx = ctx
    return mod


def play(mod, task, probe_turns=None):
    """Replay a task's reference (or probe turns) like the runtime; return per-turn verdicts."""
    mod._ctx["seed"] = task.get("seed", 0)
    env = mod.Env(task.get("seed", 0), task.get("params", {}))
    verdicts = []
    for t, turn in enumerate(task["turns"]):
        steps = turn["reference"] if probe_turns is None else probe_turns[t]["calls"]
        answer = turn.get("answer", "") if probe_turns is None else probe_turns[t]["answer"]
        calls = []
        for s, step in enumerate(steps):
            for c in step:
                try:
                    res = getattr(env, c["name"])(**c["arguments"])
                    import json
                    res = res if isinstance(res, str) else json.loads(json.dumps(res))
                    calls.append({"step": s, "name": c["name"], "arguments": c["arguments"],
                                  "result": res, "error": None})
                except Exception as e:  # noqa: BLE001
                    calls.append({"step": s, "name": c["name"], "arguments": c["arguments"],
                                  "result": None, "error": str(e)})
        full = dict(task)
        full.setdefault("hidden", {})
        verdicts.append(mod.verify(full, env, t, answer, calls))
    return verdicts, env


# Task authoring: the tasks.jsonl vocabulary the generators share.

def C(tool, /, **args):
    """A reference call of `tool` with `args`."""
    return {"name": tool, "arguments": args}


def ev(tool, key, value):
    """Evidence: the call of `tool` whose `key` argument is `value`."""
    return {"tool": tool, "key": key, "value": value}


def turn(user, ref, answer):
    """A user turn with its reference steps and final answer."""
    return {"user": user, "reference": ref, "answer": answer}


def probe(name, *turns_):
    """A package probe: per turn, `(steps of calls, answer)`; it must fail."""
    return {"name": name, "turns": [{"calls": c, "answer": a} for c, a in turns_]}


class Tasks(list):
    """The tasks a generator writes for the package loaded as `mod`. `add` keeps a task only
    after replaying it locally: the reference passes; the package probes, the empty probe and
    the answer-only probe fail."""

    def __init__(self, mod):
        super().__init__()
        self.mod = mod

    def add(self, tid, diff, turns, hidden_turns, probes=(), params=None):
        refusal = any(f.get("fact") == "refusal" for h in hidden_turns for f in h.get("facts", []))
        task = {"id": tid, "difficulty": diff, "seed": 0, "params": params or {}, "turns": turns,
                "hidden": {"turns": hidden_turns}, "probes": list(probes),
                "tags": [tid.rsplit("-", 1)[0]] + (["multi_turn"] if len(turns) > 1 else [])
                + (["refusal"] if refusal else [])}
        verdicts, _ = play(self.mod, task)
        assert all(v["passed"] for v in verdicts), (tid, verdicts)
        for p in task["probes"]:
            pv, _ = play(self.mod, task, p["turns"])
            assert not all(v["passed"] for v in pv), (tid, p["name"])
        for name, ans in (("empty", lambda t: ""), ("answer_only", lambda t: t.get("answer", ""))):
            pv, _ = play(self.mod, task, [{"calls": [], "answer": ans(t)} for t in turns])
            assert not all(v["passed"] for v in pv), (tid, name)
        self.append(task)

    def write(self, pkg_dir):
        """Write `pkg_dir/tasks.jsonl` (one task a line) and print a summary."""
        from collections import Counter
        import json
        with open(os.path.join(pkg_dir, "tasks.jsonl"), "w", encoding="utf-8") as fh:
            for t in self:
                fh.write(json.dumps(t, ensure_ascii=False) + "\n")
        refusals = sum(any(f.get("fact") == "refusal" for h in t["hidden"]["turns"]
                           for f in h.get("facts", [])) for t in self)
        print(len(self), "tasks; difficulty", sorted(Counter(t["difficulty"] for t in self).items()),
              "; multi-turn", sum(len(t["turns"]) > 1 for t in self), "; refusals", refusals)
        print(Counter(t["id"].rsplit("-", 1)[0] for t in self))
