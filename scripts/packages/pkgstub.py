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
