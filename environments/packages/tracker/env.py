"""tracker — Forgeboard issue tracker (envpkg v1).

32 users, 6 projects with role-based memberships and 144 issues, read from data/*.csv into plain
dicts. The tools never check permissions (the agent acts with a service token); the permission
policy in policy.md is the agent's job, and `verify` replays the intended operations on a fresh
copy and compares the state, plus facts recomputed from the data for answers.
"""

import csv
import re

from agentgen_env import ToolError, data_path, today

STATUSES = ["open", "in_progress", "resolved", "closed"]
PRIORITIES = ["low", "medium", "high", "critical"]


def _rows(name):
    with open(data_path(name), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class Env:
    def __init__(self, seed, params):
        self.users = {u["handle"]: u for u in _rows("users.csv")}
        self.projects = {p["key"]: {**p, "members": {}} for p in _rows("projects.csv")}
        for m in _rows("members.csv"):
            self.projects[m["project"]]["members"][m["handle"]] = m["role"]
        self.issues = {}
        self.order = []
        for i in _rows("issues.csv"):
            self.issues[i["issue_id"]] = {
                "id": i["issue_id"], "project": i["project"], "title": i["title"],
                "status": i["status"], "priority": i["priority"], "assignee": i["assignee"] or None,
                "reporter": i["reporter"], "labels": sorted(x for x in i["labels"].split(";") if x),
                "created": i["created"], "comments": []}
            self.order.append(i["issue_id"])

    # ---- helpers
    def _user(self, handle):
        h = str(handle).strip().lstrip("@").lower()
        if h not in self.users:
            raise ToolError(f"no user @{h}")
        return h

    def _issue(self, issue_id):
        key = str(issue_id).strip().upper()
        if key not in self.issues:
            raise ToolError(f"no issue {issue_id}")
        return self.issues[key]

    def _project(self, key):
        k = str(key).strip().upper()
        if k not in self.projects:
            raise ToolError(f"no project {key}")
        return self.projects[k]

    def role(self, handle, project):
        if self.users[handle]["global_role"] == "admin":
            return "admin"
        return self.projects[project]["members"].get(handle)

    def _summary(self, i):
        return {"id": i["id"], "title": i["title"], "status": i["status"], "priority": i["priority"],
                "assignee": i["assignee"], "labels": i["labels"], "created": i["created"]}

    # ---- tools
    def get_user(self, handle):
        h = self._user(handle)
        u = self.users[h]
        return {"handle": h, "name": u["name"], "global_role": u["global_role"],
                "memberships": [{"project": k, "role": p["members"][h]}
                                for k, p in self.projects.items() if h in p["members"]]}

    def find_user(self, name):
        q = name.strip().lower()
        hits = [{"handle": h, "name": u["name"]} for h, u in self.users.items()
                if q in u["name"].lower() or q == h]
        return {"query": name, "users": hits}

    def get_project(self, project):
        p = self._project(project)
        return {"key": p["key"], "name": p["name"], "lead": p["lead"],
                "members": [{"handle": h, "role": r} for h, r in sorted(p["members"].items())]}

    def search_issues(self, project, status=None, assignee=None, label=None, priority=None, text=None):
        p = self._project(project)
        out = []
        for iid in self.order:
            i = self.issues[iid]
            if i["project"] != p["key"]:
                continue
            if status is not None and i["status"] != status:
                continue
            if assignee is not None:
                want = None if assignee.strip().lower() in ("", "none", "unassigned") else assignee.strip().lstrip("@").lower()
                if i["assignee"] != want:
                    continue
            if label is not None and label.strip().lower() not in i["labels"]:
                continue
            if priority is not None and i["priority"] != priority:
                continue
            if text is not None and text.strip().lower() not in i["title"].lower():
                continue
            out.append(self._summary(i))
        return {"project": p["key"], "count": len(out), "issues": out}

    def get_issue(self, issue_id):
        i = self._issue(issue_id)
        return {**self._summary(i), "project": i["project"], "reporter": i["reporter"],
                "comments": [{"author": a, "body": b} for a, b in i["comments"]]}

    def assign_issue(self, issue_id, assignee):
        i = self._issue(issue_id)
        if assignee is None:
            i["assignee"] = None
            return {"id": i["id"], "assignee": None}
        h = self._user(assignee)
        i["assignee"] = h
        return {"id": i["id"], "assignee": h}

    def set_status(self, issue_id, status):
        i = self._issue(issue_id)
        if i["status"] == status:
            raise ToolError(f"{i['id']} is already {status}")
        i["status"] = status
        return {"id": i["id"], "status": status}

    def set_priority(self, issue_id, priority):
        i = self._issue(issue_id)
        i["priority"] = priority
        return {"id": i["id"], "priority": priority}

    def update_labels(self, issue_id, add=None, remove=None):
        i = self._issue(issue_id)
        add = [x.strip().lower() for x in (add or [])]
        remove = [x.strip().lower() for x in (remove or [])]
        missing = [x for x in remove if x not in i["labels"]]
        if missing:
            raise ToolError(f"{i['id']} has no label {missing[0]}")
        i["labels"] = sorted((set(i["labels"]) - set(remove)) | set(add))
        return {"id": i["id"], "labels": i["labels"]}

    def add_comment(self, issue_id, author, body):
        i = self._issue(issue_id)
        h = self._user(author)
        if not body.strip():
            raise ToolError("empty comment")
        i["comments"].append([h, body.strip()])
        return {"id": i["id"], "comment_index": len(i["comments"]), "author": h}

    def create_issue(self, project, title, reporter, priority, labels=None):
        p = self._project(project)
        h = self._user(reporter)
        n = 1 + max(int(k.split("-")[1]) for k in self.issues if k.startswith(p["key"] + "-"))
        iid = f"{p['key']}-{n}"
        self.issues[iid] = {"id": iid, "project": p["key"], "title": " ".join(title.split()),
                            "status": "open", "priority": priority, "assignee": None,
                            "reporter": h, "labels": sorted({x.strip().lower() for x in labels or []}),
                            "created": today().isoformat(), "comments": []}
        self.order.append(iid)
        return {"id": iid, "status": "open", "priority": priority}

    def state(self):
        return {"issues": {k: {"status": i["status"], "priority": i["priority"],
                               "assignee": i["assignee"], "labels": i["labels"],
                               "reporter": i["reporter"], "title": i["title"],
                               "comments": i["comments"]}
                           for k, i in sorted(self.issues.items())}}


# ---- intended operations (verify replays them on a fresh Env)

def apply_op(env, op):
    k = op["op"]
    if k == "assign":
        env.assign_issue(op["issue"], op["to"])
    elif k == "status":
        env.set_status(op["issue"], op["status"])
    elif k == "priority":
        env.set_priority(op["issue"], op["priority"])
    elif k == "labels":
        env.update_labels(op["issue"], op.get("add"), op.get("remove"))
    elif k == "comment":
        env.add_comment(op["issue"], op["author"], "(comment)")
    elif k == "create":
        env.create_issue(op["project"], "(title)", op["reporter"], op["priority"], op.get("labels"))
    else:
        raise ValueError(k)


def projection(state):
    """What must match exactly: everything except free text (titles of new issues, comment bodies)."""
    out = {}
    for k, i in state["issues"].items():
        out[k] = {**i, "comments": [a for a, _ in i["comments"]]}
        out[k].pop("title")
    return out


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]


def says_number(text, n):
    """n as digits (issue ids and rx ids removed first) or, up to twelve, as a word."""
    t = re.sub(r"\b[a-z]+-?\d+\b", " ", text.casefold())
    if str(n) in re.findall(r"\d+", t):
        return True
    return n < len(NUMBER_WORDS) and re.search(rf"\b{NUMBER_WORDS[n]}\b", t) is not None


def _check(name, ok, detail=""):
    return {"name": name, "passed": bool(ok), "detail": detail}


def norm(text):
    return " ".join(str(text).casefold().replace("_", " ").split())


def _first_diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}/{k}")
        return None
    return None if a == b else f"{path}: got {a!r}, want {b!r}"


def _saw(calls, ev):
    """A successful call in this turn whose result shows ev['value'] (an issue read with get_issue
    also counts when search_issues listed it: both show status and assignee)."""
    tools = ("get_issue", "search_issues") if ev["tool"] == "get_issue" else (ev["tool"],)
    for c in calls:
        if c["name"] not in tools or c["error"] is not None or not isinstance(c["result"], dict):
            continue
        if c["name"] == "search_issues" and ev["tool"] == "get_issue":
            if any(x.get("id") == ev["value"] for x in c["result"].get("issues", [])):
                return True
            continue
        res = c["result"]
        if ev["tool"] == "search_issues":
            if any(x.get("id") == ev["value"] for x in res.get("issues", [])):
                return True
            if ev.get("key") == "project" and res.get("project") == ev["value"]:
                return True
        elif res.get(ev["key"]) == ev["value"]:
            return True
    return False


REFUSAL_WORDS = ["not allowed", "can't", "cannot", "can not", "unable", "not permitted", "don't have permission",
                 "do not have permission", "no permission", "only maintainers", "only a maintainer",
                 "not able", "isn't allowed", "not authorized", "not authorised", "restricted", "confidential"]

ROLE_WORDS = {"maintainer": ["maintainer"], "member": ["member"], "reporter": ["reporter", "resolved"],
              "assignee_role": ["developer", "maintainer"], "security": ["restricted", "confidential", "security"],
              "self_assign": ["yourself", "only assign", "themselves", "your own", "maintainer"],
              "viewer": ["viewer", "read-only", "read only", "only read"]}


def count_matching(env, project, flt):
    n = []
    for iid in env.order:
        i = env.issues[iid]
        if i["project"] != project:
            continue
        if "status" in flt and i["status"] not in flt["status"]:
            continue
        if "priority" in flt and i["priority"] not in flt["priority"]:
            continue
        if flt.get("unassigned") and i["assignee"] is not None:
            continue
        if "label" in flt and flt["label"] not in i["labels"]:
            continue
        if "assignee" in flt and i["assignee"] != flt["assignee"]:
            continue
        n.append(iid)
    return n


def verify(task, env, turn, answer, calls):
    spec = task["hidden"]["turns"]
    expected = Env(task["seed"], task["params"])
    for t in range(turn + 1):
        for op in spec[t].get("ops", []):
            apply_op(expected, op)
    got_state = env.state()
    diff = _first_diff(projection(got_state), projection(expected.state()))
    checks = [_check("state", diff is None, diff or "issues as the request and the policy require")]
    ts = spec[turn]
    a = norm(answer)
    for op in ts.get("ops", []):
        if op["op"] == "comment":
            bodies = [b for au, b in got_state["issues"].get(op["issue"], {}).get("comments", [])
                      if au == op["author"]]
            ok = any(all(norm(tok) in norm(b) for tok in op.get("must", [])) for b in bodies)
            checks.append(_check("comment_content", ok, f"a comment by {op['author']} on {op['issue']} mentions {op.get('must', [])}"))
        if op["op"] == "create":
            before = set(Env(task["seed"], task["params"]).issues)
            new = [k for k in got_state["issues"] if k not in before]
            ok = any(all(norm(tok) in norm(got_state["issues"][k]["title"]) for tok in op.get("title_has", [])) for k in new)
            checks.append(_check("new_issue_title", ok, f"the new issue's title mentions {op.get('title_has', [])}"))
            ok = any(k.lower() in a for k in new)
            checks.append(_check("new_issue_id_said", ok, "the answer gives the new issue id"))
    evs = ts.get("evidence", [])
    for ev in evs:
        alts = ev if isinstance(ev, list) else [ev]
        checks.append(_check("looked_up", any(_saw(calls, e) for e in alts),
                             " or ".join(f"{e['tool']} showing {e['value']}" for e in alts)))
    for fact in ts.get("facts", []):
        kind = fact["fact"]
        if kind == "issue_field":
            i = env.issues[fact["issue"]]
            if fact["field"] == "assignee":
                h = i["assignee"]
                ok = ("unassigned" in a or "not assigned" in a or "no one" in a or "nobody" in a) if h is None else \
                    (h in a or norm(env.users[h]["name"]) in a)
                d = f"answer names the assignee {h}"
            else:
                ok = norm(i[fact["field"]]) in a.replace("-", " ")
                d = f"answer gives {fact['field']} {i[fact['field']]}"
            checks.append(_check(f"{fact['field']}_said", ok, d))
        elif kind == "count":
            ids = count_matching(env, fact["project"], fact["filter"])
            words = ["no ", "none", "zero"] if not ids else []
            ok = says_number(answer, len(ids)) or any(w in a for w in words)
            if ids and len(ids) <= 6:
                ok = ok and all(x.lower() in a for x in ids)
            checks.append(_check("count_said", ok, f"answer gives {len(ids)}: {ids}"))
        elif kind == "refusal":
            ok = any(w in a for w in REFUSAL_WORDS) and any(w in a for w in ROLE_WORDS[fact["reason"]])
            checks.append(_check("refusal_explained", ok, f"answer refuses and names the rule ({fact['reason']})"))
        elif kind == "no_leak":
            i = env.issues[fact["issue"]]
            checks.append(_check("no_leak", norm(i["title"]) not in a and (i["assignee"] or "@@") not in a,
                                 "answer does not reveal the confidential issue's title or assignee"))
        elif kind == "maintainers":
            p = env.projects[fact["project"]]
            ms = [h for h, r in p["members"].items() if r == "maintainer"]
            ok = all(h in a or norm(env.users[h]["name"]) in a for h in ms)
            checks.append(_check("maintainers_said", ok, f"answer names the maintainers {ms}"))
        elif kind == "triage":
            checks.append(_check("triage_said", "triage" in a or "maintainer" in a, "answer says a maintainer will triage"))
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "reward": 1.0 if passed else 0.0, "checks": checks}
