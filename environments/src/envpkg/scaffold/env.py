"""{{name}}: an envpkg v1 package scaffolded by `agentgen envs new` (spec: shared/spec/envpkg.md).

Rules that keep `agentgen envs check .` green:
- Build the world in Env.__init__ from (seed, params) only: no host clock, no unseeded random
  (use agentgen_env.rng(...)), no network, threads or processes; standard library only.
- Read tools never change state(); write tools validate everything before the first change.
- verify() checks the state and demands evidence from this turn's calls for facts it reports,
  so that doing nothing or answering without looking fails.
"""

from agentgen_env import ToolError

ITEMS = {
    "A-100": {"name": "desk lamp", "stock": 4},
    "A-200": {"name": "office chair", "stock": 0},
    "A-300": {"name": "monitor arm", "stock": 12},
}


class Env:
    def __init__(self, seed, params):
        self.items = {sku: dict(item) for sku, item in ITEMS.items()}
        for sku, count in params.get("stock", {}).items():
            self.items[sku]["stock"] = count

    # ---- tools (one method per tools.json entry)
    def get_item(self, sku):
        item = self.items.get(sku)
        if item is None:
            raise ToolError(f"no item {sku}")
        return {"sku": sku, "name": item["name"], "stock": item["stock"]}

    def set_stock(self, sku, count):
        if sku not in self.items:
            raise ToolError(f"no item {sku}")
        self.items[sku]["stock"] = int(count)
        return {"sku": sku, "stock": int(count)}

    # ---- everything a verifier must see, as JSON
    def state(self):
        return {"stock": {sku: item["stock"] for sku, item in sorted(self.items.items())}}


def _check(name, ok, detail=""):
    return {"name": name, "passed": bool(ok), "detail": detail}


def verify(task, env, turn, answer, calls):
    """Called after every user turn; `calls` are this turn's calls, rejected ones included."""
    h = task["hidden"]
    before = Env(task["seed"], task["params"]).state()["stock"]
    now = env.state()["stock"]
    checks = []
    if h["kind"] == "lookup":
        looked = any(c["name"] == "get_item" and c["error"] is None
                     and isinstance(c["result"], dict) and c["result"].get("sku") == h["sku"]
                     for c in calls)
        checks.append(_check("looked_up", looked, f"get_item({h['sku']}) succeeded in this turn"))
        want = str(now[h["sku"]])
        checks.append(_check("answer", want in answer, f"answer mentions {want}"))
        checks.append(_check("unchanged", now == before, "no stock changed"))
    elif h["kind"] == "set":
        want = dict(before, **{h["sku"]: h["stock"]})
        checks.append(_check("stock", now == want, f"stock {now}, want {want}"))
        checks.append(_check("answer", str(h["stock"]) in answer, f"answer mentions {h['stock']}"))
    else:
        raise ValueError(f"unknown task kind {h['kind']}")
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "reward": 1.0 if passed else 0.0, "checks": checks}
