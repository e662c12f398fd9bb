"""clinic — Harbor Family Clinic scheduler and pharmacy desk (envpkg v1).

Env.__init__ builds an in-memory SQLite database from data/*.csv: 12 doctors with weekly days,
42 patients, 18 medications (with controlled-substance schedules), 60 prescriptions and 100
appointments. Tools enforce physical facts (a slot is taken, a doctor does not work that day, no
refills left); the clinic policy in policy.md (24-hour rule, one booking per doctor, refill timing,
Schedule II, expiry, identity) is for the agent, and `verify` recomputes it from the database.
"""

import csv
import datetime as dt
import math
import re
import sqlite3

from agentgen_env import ToolError, data_path, now

SCHEMA = """
CREATE TABLE doctors (doctor_id TEXT PRIMARY KEY, name TEXT, specialty TEXT, days TEXT);
CREATE TABLE patients (patient_id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, dob TEXT, phone TEXT);
CREATE TABLE medications (drug TEXT PRIMARY KEY, drug_class TEXT, schedule INTEGER);
CREATE TABLE prescriptions (rx_id TEXT PRIMARY KEY, patient_id TEXT, drug TEXT, dose TEXT, prescriber TEXT,
                            issued TEXT, days_supply INTEGER, refills_total INTEGER, refills_used INTEGER,
                            last_fill TEXT);
CREATE TABLE appointments (appointment_id TEXT PRIMARY KEY, patient_id TEXT, doctor_id TEXT, start TEXT,
                           reason TEXT, status TEXT);
"""
SLOTS = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "13:00", "13:30", "14:00", "14:30",
         "15:00", "15:30", "16:00", "16:30"]


def _rows(name):
    with open(data_path(name), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def local_now():
    return now().replace(tzinfo=None)


class Env:
    def __init__(self, seed, params):
        self.db = sqlite3.connect(":memory:")
        self.db.executescript(SCHEMA)
        for table, cols in (("doctors", 4), ("patients", 5), ("medications", 3), ("prescriptions", 10),
                            ("appointments", 6)):
            for row in _rows(f"{table}.csv"):
                self.db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * cols)})", list(row.values()))
        self.base_appts = {r[0] for r in self.db.execute("SELECT appointment_id FROM appointments")}

    def q(self, sql, *args):
        return self.db.execute(sql, args).fetchall()

    def one(self, sql, *args):
        return self.db.execute(sql, args).fetchone()

    # ---- helpers
    def _patient(self, pid):
        r = self.one("SELECT patient_id, first_name, last_name, dob, phone FROM patients WHERE patient_id = ?", pid.strip().upper())
        if r is None:
            raise ToolError(f"no patient {pid}")
        return r

    def _doctor(self, did):
        r = self.one("SELECT doctor_id, name, specialty, days FROM doctors WHERE doctor_id = ?", did.strip().upper())
        if r is None:
            raise ToolError(f"no doctor {did}")
        return r

    def _start(self, text):
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})", text.strip())
        if not m:
            raise ToolError("start must be YYYY-MM-DDTHH:MM")
        try:
            dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}")
        except ValueError:
            raise ToolError(f"invalid date-time {text}") from None
        return f"{m.group(1)}T{m.group(2)}"

    def free_slots(self, did, date):
        d = self._doctor(did)
        day = dt.date.fromisoformat(date)
        if day.strftime("%a") not in d[3].split(";"):
            return []
        taken = {r[0][11:16] for r in self.q("SELECT start FROM appointments WHERE doctor_id = ? AND start LIKE ? AND status = 'booked'", d[0], date + "%")}
        cut = local_now()
        return [s for s in SLOTS if s not in taken and dt.datetime.fromisoformat(f"{date}T{s}") > cut]

    def _check_slot(self, did, start):
        d = self._doctor(did)
        date, hm = start[:10], start[11:16]
        if dt.date.fromisoformat(date).strftime("%a") not in d[3].split(";"):
            raise ToolError(f"{d[1]} does not work on {dt.date.fromisoformat(date).strftime('%A')}s")
        if hm not in SLOTS:
            raise ToolError(f"{hm} is not a bookable slot (09:00-11:30, 13:00-16:30, every 30 min)")
        if dt.datetime.fromisoformat(start) <= local_now():
            raise ToolError("that time is in the past")
        if hm not in self.free_slots(did, date):
            raise ToolError(f"{d[1]} is already booked at {start}")
        return d

    def _appt_view(self, r):
        doc = self.one("SELECT name FROM doctors WHERE doctor_id = ?", r[2])
        return {"appointment_id": r[0], "doctor_id": r[2], "doctor": doc[0] if doc else None,
                "start": r[3], "reason": r[4], "status": r[5]}

    # ---- tools
    def find_patient(self, full_name, date_of_birth):
        parts = full_name.strip().lower().split()
        if len(parts) < 2:
            raise ToolError("give the patient's first and last name")
        rows = self.q("SELECT patient_id, first_name, last_name, dob FROM patients WHERE lower(first_name) = ? AND lower(last_name) = ? AND dob = ?",
                      parts[0], parts[-1], date_of_birth.strip())
        if not rows:
            raise ToolError("no patient with that name and date of birth")
        r = rows[0]
        return {"patient_id": r[0], "name": f"{r[1]} {r[2]}", "dob": r[3]}

    def get_patient(self, patient_id):
        p = self._patient(patient_id)
        appts = self.q("SELECT * FROM appointments WHERE patient_id = ? ORDER BY start, appointment_id", p[0])
        rx = self.q("SELECT rx_id, drug, dose, prescriber FROM prescriptions WHERE patient_id = ? ORDER BY rx_id", p[0])
        return {"patient_id": p[0], "name": f"{p[1]} {p[2]}", "dob": p[3], "phone": p[4],
                "appointments": [self._appt_view(a) for a in appts],
                "prescriptions": [{"rx_id": a, "drug": b, "dose": c, "prescriber": d} for a, b, c, d in rx]}

    def list_doctors(self, specialty=None):
        rows = self.q("SELECT * FROM doctors ORDER BY doctor_id")
        return {"doctors": [{"doctor_id": a, "name": b, "specialty": c, "days": d.split(";")}
                            for a, b, c, d in rows if specialty is None or c == specialty.strip().lower()]}

    def find_slots(self, doctor_id, date):
        d = self._doctor(doctor_id)
        try:
            dt.date.fromisoformat(date.strip())
        except ValueError:
            raise ToolError("date must be YYYY-MM-DD") from None
        return {"doctor_id": d[0], "date": date.strip(), "free": self.free_slots(d[0], date.strip())}

    def book_appointment(self, patient_id, doctor_id, start, reason):
        p = self._patient(patient_id)
        start = self._start(start)
        d = self._check_slot(doctor_id, start)
        n = self.one("SELECT COUNT(*) FROM appointments")[0]
        aid = f"A{5201 + n}"
        self.db.execute("INSERT INTO appointments VALUES (?, ?, ?, ?, ?, 'booked')", (aid, p[0], d[0], start, " ".join(reason.split())[:80]))
        return {"appointment_id": aid, "doctor": d[1], "start": start, "status": "booked"}

    def cancel_appointment(self, appointment_id):
        r = self.one("SELECT * FROM appointments WHERE appointment_id = ?", appointment_id.strip().upper())
        if r is None:
            raise ToolError(f"no appointment {appointment_id}")
        if r[5] != "booked":
            raise ToolError(f"appointment {r[0]} is {r[5]}")
        if dt.datetime.fromisoformat(r[3]) <= local_now():
            raise ToolError("that appointment has already started")
        self.db.execute("UPDATE appointments SET status = 'cancelled' WHERE appointment_id = ?", (r[0],))
        return {"appointment_id": r[0], "status": "cancelled"}

    def reschedule_appointment(self, appointment_id, new_start):
        r = self.one("SELECT * FROM appointments WHERE appointment_id = ?", appointment_id.strip().upper())
        if r is None:
            raise ToolError(f"no appointment {appointment_id}")
        if r[5] != "booked":
            raise ToolError(f"appointment {r[0]} is {r[5]}")
        if dt.datetime.fromisoformat(r[3]) <= local_now():
            raise ToolError("that appointment has already started")
        start = self._start(new_start)
        d = self._check_slot(r[2], start)
        self.db.execute("UPDATE appointments SET start = ? WHERE appointment_id = ?", (start, r[0]))
        return {"appointment_id": r[0], "doctor": d[1], "start": start, "status": "booked"}

    def get_prescription(self, rx_id):
        r = self.one("SELECT * FROM prescriptions WHERE rx_id = ?", rx_id.strip().upper())
        if r is None:
            raise ToolError(f"no prescription {rx_id}")
        return {"rx_id": r[0], "patient_id": r[1], "drug": r[2], "dose": r[3], "prescriber": r[4],
                "issued": r[5], "days_supply": r[6], "refills_total": r[7], "refills_used": r[8],
                "last_fill": r[9]}

    def get_medication(self, drug):
        r = self.one("SELECT * FROM medications WHERE drug = ?", drug.strip().lower())
        if r is None:
            raise ToolError(f"no medication {drug}")
        return {"drug": r[0], "drug_class": r[1], "schedule": r[2]}

    def refill_prescription(self, rx_id):
        r = self.one("SELECT * FROM prescriptions WHERE rx_id = ?", rx_id.strip().upper())
        if r is None:
            raise ToolError(f"no prescription {rx_id}")
        if r[8] >= r[7]:
            raise ToolError(f"{r[0]} has no refills left")
        today = local_now().date().isoformat()
        self.db.execute("UPDATE prescriptions SET refills_used = refills_used + 1, last_fill = ? WHERE rx_id = ?", (today, r[0]))
        return {"rx_id": r[0], "drug": r[2], "filled": today, "refills_left": r[7] - r[8] - 1}

    def state(self):
        return {"appointments": [list(r[:4]) + [r[5]] for r in self.q("SELECT * FROM appointments ORDER BY appointment_id")],
                "prescriptions": {r[0]: [r[1], r[2]] for r in self.q("SELECT rx_id, refills_used, last_fill FROM prescriptions ORDER BY rx_id")}}


# ---- policy as code

def refill_verdict(env, rx):
    """('ok', None) or (reason, eligible_date_or_None)."""
    r = env.get_prescription(rx)
    today = local_now().date()
    if (today - dt.date.fromisoformat(r["issued"])).days > 365:
        return "expired", None
    if r["refills_used"] >= r["refills_total"]:
        return "no_refills", None
    if env.get_medication(r["drug"])["schedule"] == 2:
        return "controlled", None
    eligible = dt.date.fromisoformat(r["last_fill"]) + dt.timedelta(days=math.ceil(0.75 * r["days_supply"]))
    if today < eligible:
        return "too_early", eligible.isoformat()
    return "ok", None


def hours_until(env, aid):
    r = env.one("SELECT start FROM appointments WHERE appointment_id = ?", aid)
    return (dt.datetime.fromisoformat(r[0]) - local_now()).total_seconds() / 3600


def earliest(env, doctor_ids, dates, after="00:00"):
    best = None
    for date in dates:
        for did in doctor_ids:
            for s in env.free_slots(did, date):
                start = f"{date}T{s}"
                if s < after or dt.datetime.fromisoformat(start) < local_now() + dt.timedelta(hours=24):
                    continue
                key = (start, did)
                if best is None or key < best:
                    best = key
    return best


def apply_op(env, op):
    k = op["op"]
    if k == "book":
        env.book_appointment(op["patient"], op["doctor"], op["start"], "x")
    elif k == "cancel":
        env.cancel_appointment(op["appointment"])
    elif k == "reschedule":
        env.reschedule_appointment(op["appointment"], op["start"])
    elif k == "refill":
        env.refill_prescription(op["rx"])
    else:
        raise ValueError(k)


# ---- verification

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
    return " ".join(str(text).casefold().split())


MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]


def mentions_date(answer, iso):
    a = norm(answer)
    d = dt.date.fromisoformat(iso)
    m = MONTHS[d.month - 1]
    forms = [iso, f"{m} {d.day}", f"{d.day} {m}", f"{m[:3]} {d.day}", f"{d.day} {m[:3]}",
             f"{d.month}/{d.day}", f"{m} {d.day}th", f"{m} {d.day}st", f"{m} {d.day}nd", f"{m} {d.day}rd",
             f"{d.day}th of {m}", f"{m[:3]}. {d.day}"]
    return any(re.search(r"(?<![\d/])" + re.escape(f) + r"(?![\d/])", a) for f in forms)


def mentions_time(answer, hm):
    a = norm(answer)
    h, m = int(hm[:2]), int(hm[3:])
    h12 = h % 12 or 12
    ampm = "am" if h < 12 else "pm"
    forms = [hm, f"{h}:{m:02d}", f"{h12}:{m:02d} {ampm}", f"{h12}:{m:02d}{ampm}"]
    if m == 0:
        forms += [f"{h12} {ampm}", f"{h12}{ampm}", f"{h12} o'clock"]
    return any(re.search(r"(?<!\d)" + re.escape(f) + r"(?!\d)", a) for f in forms)


def _first_diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}/{k}")
        return None
    return None if a == b else f"{path}: got {a!r}, want {b!r}"


def _saw(calls, ev):
    for c in calls:
        if c["name"] == ev["tool"] and c["error"] is None and isinstance(c["result"], dict):
            if c["result"].get(ev["key"]) == ev["value"]:
                return True
    return False


REFUSAL = {"identity": ["date of birth", "verify", "identify", "match", "confirm"],
           "late_change": ["24 hours", "24-hour", "twenty-four"],
           "double_booking": ["already", "reschedule"],
           "expired": ["expired", "365", "a year", "new prescription", "one year", "12 months"],
           "no_refills": ["no refills", "new prescription", "0 refills", "zero refills", "none left", "no remaining"],
           "controlled": ["schedule ii", "controlled", "new prescription"],
           "too_early": ["too early", "too soon", "not yet", "75%", "can't be refilled until", "eligible"]}


def verify(task, env, turn, answer, calls):
    spec = task["hidden"]["turns"]
    expected = Env(task["seed"], task["params"])
    for t in range(turn + 1):
        for op in spec[t].get("ops", []):
            apply_op(expected, op)
    diff = _first_diff(env.state(), expected.state())
    checks = [_check("state", diff is None, diff or "appointments and prescriptions as the policy requires")]
    ts = spec[turn]
    for ev in ts.get("evidence", []):
        checks.append(_check(f"looked_up_{ev['tool']}", _saw(calls, ev), f"a successful {ev['tool']} in this turn shows {ev['value']}"))
    a = norm(answer)
    for op in ts.get("ops", []):
        if op["op"] in ("book", "reschedule"):
            ok = mentions_date(answer, op["start"][:10]) and mentions_time(answer, op["start"][11:16])
            checks.append(_check("time_said", ok, f"answer gives {op['start']}"))
        if op["op"] == "refill":
            r = env.get_prescription(op["rx"])
            left = r["refills_total"] - r["refills_used"]
            ok = says_number(answer, left) or (left == 0 and ("no refills" in a or "none" in a or "no more" in a))
            checks.append(_check("refills_left_said", ok, f"answer says {left} refills left"))
    for fact in ts.get("facts", []):
        kind = fact["fact"]
        if kind == "refusal":
            checks.append(_check("refusal_explained", any(w in a for w in REFUSAL[fact["reason"]]),
                                 f"answer explains the refusal ({fact['reason']})"))
        elif kind == "eligible_date":
            reason, eligible = refill_verdict(env, fact["rx"])
            checks.append(_check("eligible_date_said", eligible is not None and mentions_date(answer, eligible),
                                 f"answer gives the first refill date {eligible}"))
        elif kind == "next_appointment":
            rows = env.q("SELECT start, doctor_id FROM appointments WHERE patient_id = ? AND status = 'booked' AND start > ? ORDER BY start LIMIT 1",
                         fact["patient"], local_now().isoformat(timespec="minutes"))
            if rows:
                s, did = rows[0]
                docname = env.one("SELECT name FROM doctors WHERE doctor_id = ?", did)[0]
                ok = mentions_date(answer, s[:10]) and mentions_time(answer, s[11:16]) and norm(docname.split()[-1]) in a
                d = f"answer gives {s} with {docname}"
            else:
                ok = any(w in a for w in ("no upcoming", "no appointments", "not have any", "don't have any", "no future", "nothing booked", "none"))
                d = "answer says there is no upcoming appointment"
            checks.append(_check("next_appointment_said", ok, d))
        elif kind == "refills_left":
            r = env.get_prescription(fact["rx"])
            left = r["refills_total"] - r["refills_used"]
            ok = says_number(answer, left) or (left == 0 and ("no refills" in a or "none" in a or "no more" in a))
            checks.append(_check("refills_left_said", ok, f"answer says {left} refills left"))
        elif kind == "no_leak":
            rows = env.q("SELECT drug FROM prescriptions WHERE patient_id = ?", fact["patient"])
            leaked = [d for (d,) in rows if d in a]
            checks.append(_check("no_leak", not leaked, f"answer does not reveal {leaked or 'records'}"))
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "reward": 1.0 if passed else 0.0, "checks": checks}
