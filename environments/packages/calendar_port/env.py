"""calendar_port — the built-in `calendar` family (environments/src/families/calendar.rs) as an
envpkg package.

Each task's `params` carry the Rust instance's world as the family's own tools reported it
(people with UTC offsets and local working hours, rooms with capacities, and every person's and
room's busy intervals on the task date). The tools below reproduce calendar.rs call for call:
the same arguments, the same observations (key order included) and the same error messages;
state() is the family's state ({"events": [...]}), and verify() is the family's verifier: one
check `state.<key>` per key of the sealed expected state (`hidden.expected_state`).

One difference, documented in README.md: busy intervals on dates other than the task date are
not exported from Rust; they are generated here by the same algorithm (1-4 non-overlapping
intervals on a 30-minute grid within working hours) from Python's seeded generator, so they
differ from Rust's. No task's solution reads another date.
"""

import hashlib
import json
import random
import re

from agentgen_env import ToolError


def hhmm(minutes):
    m = minutes % (24 * 60)
    return f"{m // 60:02d}:{m % 60:02d}"


def _debug(s):
    """Rust's `{:?}` of a string (close enough: JSON string escaping)."""
    return json.dumps(s, ensure_ascii=False)


def _int_part(text):
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def parse_hhmm(s):
    if ":" not in s.strip():
        return None
    h, m = s.strip().split(":", 1)
    h, m = _int_part(h), _int_part(m)
    if h is None or m is None or not (0 <= h < 24 and 0 <= m < 60):
        return None
    return h * 60 + m


def _interval(text):
    a, b = text.split("-")
    s, e = parse_hhmm(a), parse_hhmm(b)
    return [s, e if e > s else e + 24 * 60]


def norm_text(s):
    return " ".join(s.split()).lower()


class Env:
    def __init__(self, seed, params):
        self.instance = params["instance_seed"]
        self.people = [dict(p) for p in params["people"]]
        self.rooms = [dict(r) for r in params["rooms"]]
        self.known = params["busy"]  # {date: {key: ["HH:MM-HH:MM", ...]}}
        self.events = json.loads(json.dumps(params.get("initial_state", {"events": []})["events"]))

    # ---- world
    def _busy(self, key, date, work):
        if date in self.known and key in self.known[date]:
            return [tuple(_interval(x)) for x in self.known[date][key]]
        digest = hashlib.sha256(f"{self.instance}/{key}/{date}".encode()).digest()
        r = random.Random(int.from_bytes(digest[:8], "big"))
        out = []
        for _ in range(r.randint(1, 4)):
            slots = max((work[1] - work[0]) // 30, 1)
            s = work[0] + r.randrange(slots) * 30
            e = s + [30, 60, 60, 90][r.randrange(4)]
            if not any(s < b and a < e for a, b in out):
                out.append((s, e))
        return sorted(out)

    def person(self, pid):
        pid = pid.strip()
        return next((p for p in self.people if p["id"] == pid), None)

    @staticmethod
    def work_utc(p):
        return (p["start"] - p["offset"] * 60, p["end"] - p["offset"] * 60)

    def person_busy(self, p, date):
        return self._busy(p["id"], date, self.work_utc(p))

    def room_busy(self, room, date):
        return self._busy(room["id"], date, (6 * 60, 20 * 60))

    def events_busy(self, key, date):
        return [(e["start"], e["start"] + e["duration_min"]) for e in self.events
                if e["date"] == date and (e["room"] == key or key in e["attendees"])]

    def conflict(self, date, s, d, attendees, room):
        for p in attendees:
            ws, we = self.work_utc(p)
            if s < ws or s + d > we:
                return f"{p['name']} ({p['id']}) works {hhmm(ws)}-{hhmm(we)} UTC"
            busy = self.person_busy(p, date) + self.events_busy(p["id"], date)
            hit = next(((a, b) for a, b in busy if s < b and a < s + d), None)
            if hit:
                return f"{p['id']} is busy {hhmm(hit[0])}-{hhmm(hit[1])} UTC"
        if room is not None:
            if room["capacity"] < len(attendees):
                return f"{room['id']} holds only {room['capacity']}"
            busy = self.room_busy(room, date) + self.events_busy(room["id"], date)
            if any(s < b and a < s + d for a, b in busy):
                return f"{room['id']} is booked then"
        return None

    @staticmethod
    def _date(date):
        date = (date or "").strip()
        return date, len(date) == 10 and date.startswith("2025-")

    # ---- tools (calendar.rs `call`)
    def list_people(self):
        return {"people": [{"id": p["id"], "name": p["name"], "team": p["team"]} for p in self.people]}

    def get_person(self, person_id):
        p = self.person(person_id)
        if p is None:
            raise ToolError("unknown person id")
        return {"id": p["id"], "name": p["name"], "utc_offset_hours": p["offset"],
                "working_hours_local": f"{hhmm(p['start'])}-{hhmm(p['end'])}"}

    def get_busy(self, person_id, date):
        date, ok = self._date(date)
        if not ok:
            raise ToolError(f"invalid date {_debug(date)} (YYYY-MM-DD in 2025)")
        p = self.person(person_id)
        if p is None:
            raise ToolError("unknown person id")
        b = sorted(self.person_busy(p, date) + self.events_busy(p["id"], date))
        return {"id": p["id"], "date": date, "busy_utc": [f"{hhmm(a)}-{hhmm(e)}" for a, e in b]}

    def list_rooms(self, date):
        date, ok = self._date(date)
        if not ok:
            raise ToolError(f"invalid date {_debug(date)} (YYYY-MM-DD in 2025)")
        rooms = []
        for r in self.rooms:
            b = sorted(self.room_busy(r, date) + self.events_busy(r["id"], date))
            rooms.append({"id": r["id"], "capacity": r["capacity"],
                          "booked_utc": [f"{hhmm(a)}-{hhmm(e)}" for a, e in b]})
        return {"date": date, "rooms": rooms}

    def create_event(self, title, date, start_utc, duration_min, attendee_ids, room_id=None):
        date, ok = self._date(date)
        if not ok:
            raise ToolError(f"invalid date {_debug(date)}")
        s = parse_hhmm(start_utc)
        if s is None:
            raise ToolError("start_utc must be HH:MM")
        d = int(duration_min)
        ids = [x.strip() for x in attendee_ids if isinstance(x, str)]
        people = []
        for pid in ids:
            p = self.person(pid)
            if p is None:
                raise ToolError(f"unknown attendee {_debug(pid)}")
            if any(q["id"] == p["id"] for q in people):
                raise ToolError(f"attendee {pid} listed twice")
            people.append(p)
        if len(people) < 2:
            raise ToolError("a meeting needs at least two attendees")
        room = None
        if isinstance(room_id, str):
            rid = room_id.strip()
            room = next((r for r in self.rooms if r["id"] == rid), None)
            if room is None:
                raise ToolError(f"unknown room {_debug(rid)}")
        why = self.conflict(date, s, d, people, room)
        if why is not None:
            raise ToolError(f"cannot book: {why}")
        n = len(self.events) + 1
        self.events.append({"id": f"ev-{n}", "title": norm_text(title), "date": date, "start": s,
                            "duration_min": d, "attendees": sorted(p["id"] for p in people),
                            "room": room["id"] if room else None})
        return {"event_id": f"ev-{n}", "start_utc": hhmm(s), "end_utc": hhmm(s + d)}

    def cancel_event(self, event_id):
        eid = event_id.strip()
        for i, e in enumerate(self.events):
            if e["id"] == eid:
                del self.events[i]
                return {"cancelled": eid}
        raise ToolError(f"unknown event {_debug(eid)}")

    def state(self):
        return {"events": self.events}



def verify(task, env, turn, answer, calls):
    """calendar.rs `verify`: `state_checks(task, state, &[])` — one check per top-level key of
    hidden.expected_state (the state the family sealed by running the reference); the final
    state must equal it as a JSON value. The answer and the transcript are not consulted."""
    want = task["hidden"].get("expected_state") or {}
    got = env.state()
    checks = []
    if not want:
        checks.append({"name": "state", "passed": False, "detail": "task has no expected state"})
    for k, w in want.items():
        g = got.get(k)
        ok = g == w
        detail = "as expected" if ok else f"got {json.dumps(g)[:300]}, want {json.dumps(w)[:300]}"
        checks.append({"name": f"state.{k}", "passed": ok, "detail": detail})
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "reward": 1.0 if passed else 0.0, "checks": checks}
