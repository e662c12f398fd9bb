"""airline — Skylark Air reservations desk (envpkg v1).

The world (225 flights over 16 routes, 48 customers, 96 bookings) is read from data/*.csv into
plain dicts. Tools enforce physical facts only (departed flights, seats, same route, amounts the
booking can bear); the fare policy in policy.md is for the agent to apply, and `verify` recomputes
what the policy demands from the state (see `policy_*` below).
"""

import csv
import datetime as dt
import re

from agentgen_env import ToolError, data_path, now

CHANGE_FEE = 7500
CANCEL_FEE = 10000
BAG_FEE = 4000


def _rows(name):
    with open(data_path(name), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _cents(text):
    whole, _, frac = str(text).partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def usd(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def _money_arg(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"{what} must be a number of US dollars")
    cents = round(value * 100)
    if abs(value * 100 - cents) > 1e-6 or cents < 0:
        raise ToolError(f"{what} must be a non-negative amount with at most 2 decimals")
    return int(cents)


def _t(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


class Env:
    def __init__(self, seed, params):
        self.flights = {}
        for f in _rows("flights.csv"):
            self.flights[f["flight_no"]] = {
                "flight_no": f["flight_no"], "origin": f["origin"], "destination": f["destination"],
                "departure": f["departure"], "arrival": f["arrival"],
                "fares": {k: _cents(f[k]) for k in ("basic", "standard", "flex")},
                "seats_left": int(f["seats_left"]), "status": f["status"],
                "delay_min": int(f["delay_min"])}
        self.customers = {c["customer_id"]: c for c in _rows("customers.csv")}
        self.bookings = {}
        for b in _rows("bookings.csv"):
            self.bookings[b["booking_ref"]] = {
                "booking_ref": b["booking_ref"], "customer_id": b["customer_id"],
                "lead_last_name": b["lead_last_name"], "flight_no": b["flight_no"],
                "fare_class": b["fare_class"], "passengers": int(b["passengers"]),
                "fare_paid": _cents(b["fare_paid"]), "booked_at": b["booked_at"],
                "bags": int(b["bags"]), "status": "confirmed", "charges": [], "refund": None,
                "voucher": None}
        # Task-specific world changes (e.g. a flight that just filled up).
        for no, seats in params.get("seats", {}).items():
            self.flights[no]["seats_left"] = seats

    # ---- helpers
    def _booking(self, ref):
        b = self.bookings.get(str(ref).strip().upper())
        if b is None:
            raise ToolError(f"no booking with reference {ref}")
        return b

    def _flight(self, no):
        f = self.flights.get(str(no).strip().upper().replace(" ", ""))
        if f is None:
            raise ToolError(f"no flight {no}")
        return f

    def est_departure(self, f):
        return _t(f["departure"]) + dt.timedelta(minutes=f["delay_min"])

    def minutes_to_departure(self, f):
        return int((self.est_departure(f) - now()).total_seconds() // 60)

    def departed(self, f):
        return f["status"] == "departed" or (f["status"] != "cancelled"
                                              and self.est_departure(f) <= now())

    def _flight_view(self, f):
        est = self.est_departure(f)
        return {"flight_no": f["flight_no"], "origin": f["origin"],
                "destination": f["destination"], "scheduled_departure": f["departure"],
                "scheduled_arrival": f["arrival"], "status": f["status"],
                "delay_min": f["delay_min"],
                "estimated_departure": est.strftime("%Y-%m-%dT%H:%M") if f["status"] != "cancelled" else None,
                "minutes_to_departure": None if f["status"] == "cancelled" else self.minutes_to_departure(f),
                "seats_left": f["seats_left"],
                "fares": {k: usd(v) for k, v in f["fares"].items()}}

    def _open_booking(self, ref):
        b = self._booking(ref)
        if b["status"] != "confirmed":
            raise ToolError(f"booking {b['booking_ref']} is {b['status']}")
        f = self.flights[b["flight_no"]]
        if self.departed(f):
            raise ToolError(f"flight {f['flight_no']} of booking {b['booking_ref']} has departed")
        return b, f

    # ---- tools
    def find_customer(self, email):
        key = email.strip().lower()
        for c in self.customers.values():
            if c["email"] == key:
                refs = sorted(b["booking_ref"] for b in self.bookings.values()
                              if b["customer_id"] == c["customer_id"])
                return {"customer_id": c["customer_id"],
                        "name": f"{c['first_name']} {c['last_name']}", "tier": c["tier"],
                        "bookings": refs}
        raise ToolError(f"no customer with email {email}")

    def get_booking(self, booking_ref):
        b = self._booking(booking_ref)
        c = self.customers[b["customer_id"]]
        return {"booking_ref": b["booking_ref"], "lead_passenger_last_name": b["lead_last_name"],
                "customer_id": b["customer_id"], "member_tier": c["tier"],
                "flight_no": b["flight_no"], "fare_class": b["fare_class"],
                "passengers": b["passengers"], "fare_paid": usd(b["fare_paid"]),
                "booked_at": b["booked_at"], "checked_bags": b["bags"], "status": b["status"],
                "charges": [{"kind": k, "amount": usd(a)} for k, a in b["charges"]],
                "refund": None if b["refund"] is None else {"amount": usd(b["refund"][0]),
                                                            "method": b["refund"][1]},
                "voucher": None if b["voucher"] is None else usd(b["voucher"])}

    def get_flight(self, flight_no):
        return self._flight_view(self._flight(flight_no))

    def search_flights(self, origin, destination, date):
        o, d = origin.strip().upper(), destination.strip().upper()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date.strip()):
            raise ToolError("date must be YYYY-MM-DD")
        out = [self._flight_view(f) for f in self.flights.values()
               if f["origin"] == o and f["destination"] == d
               and f["departure"].startswith(date.strip())]
        out.sort(key=lambda v: (v["scheduled_departure"], v["flight_no"]))
        return {"origin": o, "destination": d, "date": date.strip(), "flights": out}

    def change_flight(self, booking_ref, new_flight_no, charge_usd):
        b, f = self._open_booking(booking_ref)
        n = self._flight(new_flight_no)
        charge = _money_arg(charge_usd, "charge_usd")
        if n["flight_no"] == f["flight_no"]:
            raise ToolError("the booking is already on that flight")
        if (n["origin"], n["destination"]) != (f["origin"], f["destination"]):
            raise ToolError(f"{n['flight_no']} flies {n['origin']}-{n['destination']}, "
                            f"not {f['origin']}-{f['destination']}")
        if n["status"] == "cancelled" or self.departed(n):
            raise ToolError(f"flight {n['flight_no']} is {('cancelled' if n['status'] == 'cancelled' else 'departed')}")
        if n["seats_left"] < b["passengers"]:
            raise ToolError(f"flight {n['flight_no']} has only {n['seats_left']} seats left")
        f["seats_left"] += b["passengers"]
        n["seats_left"] -= b["passengers"]
        diff = max(0, n["fares"][b["fare_class"]] * b["passengers"] - b["fare_paid"])
        b["fare_paid"] += min(diff, charge)
        b["flight_no"] = n["flight_no"]
        b["charges"].append(["change", charge])
        return {"booking_ref": b["booking_ref"], "flight_no": n["flight_no"],
                "departure": n["departure"], "charged": usd(charge), "status": b["status"]}

    def cancel_booking(self, booking_ref, refund_usd, refund_method):
        b, f = self._open_booking(booking_ref)
        refund = _money_arg(refund_usd, "refund_usd")
        if refund > b["fare_paid"]:
            raise ToolError(f"refund exceeds the fare paid ({usd(b['fare_paid'])})")
        if refund_method not in ("original_payment", "travel_credit"):
            raise ToolError("refund_method must be original_payment or travel_credit")
        if f["status"] != "cancelled":
            f["seats_left"] += b["passengers"]
        b["status"] = "cancelled"
        b["refund"] = [refund, refund_method]
        return {"booking_ref": b["booking_ref"], "status": "cancelled", "refund": usd(refund),
                "refund_method": refund_method}

    def add_bags(self, booking_ref, count, charge_usd):
        b, f = self._open_booking(booking_ref)
        charge = _money_arg(charge_usd, "charge_usd")
        count = int(count)
        if count < 1:
            raise ToolError("count must be at least 1")
        if b["bags"] + count > 2 * b["passengers"]:
            raise ToolError(f"at most {2 * b['passengers']} checked bags on this booking "
                            f"({b['bags']} already)")
        b["bags"] += count
        b["charges"].append(["bags", charge])
        return {"booking_ref": b["booking_ref"], "checked_bags": b["bags"], "charged": usd(charge)}

    def issue_voucher(self, booking_ref, amount_usd):
        b = self._booking(booking_ref)
        amount = _money_arg(amount_usd, "amount_usd")
        if amount == 0:
            raise ToolError("amount_usd must be positive")
        if b["voucher"] is not None:
            raise ToolError(f"booking {b['booking_ref']} already has a voucher")
        b["voucher"] = amount
        return {"booking_ref": b["booking_ref"], "voucher": usd(amount)}

    def state(self):
        return {
            "bookings": {r: {"flight_no": b["flight_no"], "passengers": b["passengers"],
                             "fare_paid": b["fare_paid"], "bags": b["bags"],
                             "status": b["status"], "charges": b["charges"],
                             "refund": b["refund"], "voucher": b["voucher"]}
                         for r, b in sorted(self.bookings.items())},
            "seats": {n: f["seats_left"] for n, f in sorted(self.flights.items())},
        }


# ---- the written policy, as code (used by verify and by the task generator)

def disrupted(env, b):
    f = env.flights[b["flight_no"]]
    return f["status"] == "cancelled" or f["delay_min"] >= 180


def gold(env, b):
    return env.customers[b["customer_id"]]["tier"] == "gold"


def policy_change(env, ref, new_no):
    """Charge in cents, or None when the policy forbids the change."""
    b = env.bookings[ref]
    if disrupted(env, b):
        return 0
    if b["fare_class"] == "basic":
        return None
    fee = 0 if (b["fare_class"] == "flex" or gold(env, b)) else CHANGE_FEE * b["passengers"]
    new = env.flights[new_no]["fares"][b["fare_class"]] * b["passengers"]
    return fee + max(0, new - b["fare_paid"])


def policy_cancel(env, ref):
    """(refund cents, method), or None when the policy forbids cancelling."""
    b = env.bookings[ref]
    booked = _t(b["booked_at"])
    if disrupted(env, b) or now() - booked < dt.timedelta(hours=24) or b["fare_class"] == "flex":
        return b["fare_paid"], "original_payment"
    if b["fare_class"] == "standard":
        return max(0, b["fare_paid"] - CANCEL_FEE * b["passengers"]), "travel_credit"
    return None


def policy_bags(env, ref, count):
    b = env.bookings[ref]
    free = b["passengers"] if (b["fare_class"] == "flex" or gold(env, b)) else 0
    paid_before = max(0, b["bags"] - free)
    paid_after = max(0, b["bags"] + count - free)
    return BAG_FEE * (paid_after - paid_before)


def policy_voucher(env, ref):
    """Voucher cents, or None when nothing is due."""
    b = env.bookings[ref]
    f = env.flights[b["flight_no"]]
    if b["voucher"] is not None:
        return None
    if f["status"] == "cancelled" or f["delay_min"] >= 180:
        return 15000 * b["passengers"]
    if f["delay_min"] >= 120:
        return 5000 * b["passengers"]
    return None


def apply_op(env, op):
    """Apply one intended operation through the tools with the policy's amount; returns cents."""
    ref = op["ref"]
    if op["op"] == "change":
        c = policy_change(env, ref, op["flight"])
        env.change_flight(ref, op["flight"], c / 100)
        return c
    if op["op"] == "cancel":
        amount, method = policy_cancel(env, ref)
        env.cancel_booking(ref, amount / 100, method)
        return amount
    if op["op"] == "bags":
        c = policy_bags(env, ref, op["count"])
        env.add_bags(ref, op["count"], c / 100)
        return c
    if op["op"] == "voucher":
        c = policy_voucher(env, ref)
        env.issue_voucher(ref, c / 100)
        return c
    raise ValueError(op)


# ---- verification

REFUSAL_WORDS = {
    "basic_change": ["basic"],
    "basic_cancel": ["basic", "non-refundable", "nonrefundable", "not refundable"],
    "identity": ["verify", "match", "confirm", "last name", "identity", "surname"],
    "two_hours": ["2 hours", "two hours", "120 minutes", "2-hour", "two-hour"],
    "no_compensation": ["not eligible", "isn't eligible", "doesn't qualify", "does not qualify",
                        "no compensation", "not qualify", "120 minutes", "2 hours", "two hours",
                        "no voucher", "not entitled"],
    "departed": ["departed", "already left", "has left", "took off"],
}


def _check(name, ok, detail=""):
    return {"name": name, "passed": bool(ok), "detail": detail}


def norm(text):
    return " ".join(str(text).casefold().split())


def numbers(text):
    out = set()
    for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", text):
        try:
            out.add(round(float(m.group(0).replace(",", "")), 2))
        except ValueError:
            pass
    return out


ZERO_WORDS = ["no charge", "free of charge", "no additional", "no extra", "$0", "0.00", "waived",
              "at no cost", "free", "nothing to pay", "no fee", "without charge"]


def mentions_amount(answer, cents):
    if cents == 0:
        a = norm(answer)
        return any(w in a for w in ZERO_WORDS) or 0.0 in numbers(answer)
    return round(cents / 100, 2) in numbers(answer)


def mentions_time(answer, hm):
    """HH:MM in the answer as 09:10, 9:10, 9:10 am/a.m., 21:10 or 9:10 pm."""
    a = norm(answer).replace("a.m.", "am").replace("p.m.", "pm")
    h, m = int(hm[:2]), int(hm[3:])
    h12 = h % 12 or 12
    ampm = "am" if h < 12 else "pm"
    forms = [f"{h:02d}:{m:02d}", f"{h}:{m:02d}", f"{h12}:{m:02d} {ampm}", f"{h12}:{m:02d}{ampm}"]
    if m == 0:
        forms += [f"{h12} {ampm}", f"{h12}{ampm}"]
    return any(re.search(r"(?<!\d)" + re.escape(f) + r"(?!\d)", a) for f in forms)


def mentions_delay(answer, minutes):
    """A delay given in minutes (185), or as hours and minutes (3 hours 5 minutes, 3h05)."""
    if minutes in numbers(answer):
        return True
    h, m = divmod(minutes, 60)
    hours = rf"\b{h}\s*(?:h|hr|hrs|hour|hours)\b"
    if m:
        pats = [hours + rf"\s*(?:and\s*)?{m}\s*(?:m|min|mins|minute|minutes)\b", rf"\b{h}h{m:02d}\b"]
    else:
        pats = [hours]
    a = norm(answer)
    return any(re.search(p, a) for p in pats)


def mentions_flight(answer, no):
    return no.lower() in norm(answer).replace(" ", "")


def _ok_results(calls, tool):
    for c in calls:
        if c["name"] == tool and c["error"] is None and isinstance(c["result"], dict):
            yield c["result"]


def saw(calls, ev):
    """Evidence: a successful call in this turn whose result shows ev['value']: ev['tool'] itself,
    or for a flight, search_flights and get_flight alike (both show the same flight fields)."""
    flight = ev["tool"] in ("get_flight", "search_flights")
    for tool in (("get_flight", "search_flights") if flight else (ev["tool"],)):
        for res in _ok_results(calls, tool):
            if tool == "search_flights":
                if any(f.get("flight_no") == ev["value"] for f in res.get("flights", [])):
                    return True
            elif res.get(ev["key"]) == ev["value"]:
                return True
    return False


def _first_diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}/{k}")
        return None
    if a != b:
        return f"{path}: got {a!r}, want {b!r}"
    return None


def cheapest(env, origin, destination, date, fare_class, pax):
    best = None
    for f in env.flights.values():
        if (f["origin"], f["destination"]) != (origin, destination) or not f["departure"].startswith(date):
            continue
        if f["status"] == "cancelled" or env.departed(f) or f["seats_left"] < pax:
            continue
        key = (f["fares"][fare_class], f["departure"], f["flight_no"])
        if best is None or key < best:
            best = key
    return best


def verify(task, env, turn, answer, calls):
    spec = task["hidden"]["turns"]
    expected = Env(task["seed"], task["params"])
    amounts = []
    for t in range(turn + 1):
        for op in spec[t].get("ops", []):
            c = apply_op(expected, op)
            if t == turn:
                amounts.append((op, c))
    want = expected.state()
    got = env.state()
    diff = _first_diff(got, want)
    checks = [_check("state", diff is None, diff or "bookings, seats and vouchers as the policy requires")]
    ts = spec[turn]
    for ev in ts.get("evidence", []):
        checks.append(_check(f"looked_up_{ev['tool']}", saw(calls, ev),
                             f"a successful {ev['tool']} in this turn shows {ev['value']}"))
    for op, c in amounts:
        if op["op"] == "cancel":
            detail = f"answer states the refund {usd(c)}"
        else:
            detail = f"answer states the {op['op']} amount {usd(c)}"
        checks.append(_check(f"{op['op']}_amount_said", mentions_amount(answer, c), detail))
        if op["op"] == "change":
            checks.append(_check("new_flight_said", mentions_flight(answer, op["flight"]),
                                 f"answer names {op['flight']}"))
    a = norm(answer)
    for fact in ts.get("facts", []):
        kind = fact["fact"]
        if kind == "status":
            f = env.flights[fact["flight"]]
            if f["status"] == "cancelled":
                ok = "cancel" in a
                d = "answer says the flight is cancelled"
            elif f["delay_min"] > 0:
                est = env.est_departure(f).strftime("%H:%M")
                ok = "delay" in a and (mentions_delay(answer, f["delay_min"]) or mentions_time(answer, est))
                d = f"answer says delayed by {f['delay_min']} min (or new time {est})"
            else:
                dep = f["departure"][11:16]
                neg = a
                for w in ("not delayed", "no delay", "isn't delayed", "without delay", "not be delayed", "no reported delay"):
                    neg = neg.replace(w, "")
                ok = mentions_time(answer, dep) and "delay" not in neg
                d = f"answer gives the on-time departure {dep}"
            checks.append(_check("status_said", ok, d))
        elif kind == "cheapest":
            best = cheapest(env, fact["origin"], fact["destination"], fact["date"],
                            fact["fare_class"], fact.get("pax", 1))
            ok = best is not None and mentions_flight(answer, best[2]) and mentions_amount(answer, best[0])
            checks.append(_check("cheapest_said", ok,
                                 f"answer names {best[2]} at {usd(best[0])}" if best else "no flight"))
        elif kind == "booking_summary":
            b = env.bookings[fact["ref"]]
            ok = mentions_flight(answer, b["flight_no"]) and b["fare_class"] in a
            checks.append(_check("summary_said", ok, f"answer names {b['flight_no']} and {b['fare_class']}"))
        elif kind == "refusal":
            words = REFUSAL_WORDS[fact["reason"]]
            checks.append(_check("refusal_explained", any(w in a for w in words),
                                 f"answer explains the refusal ({fact['reason']})"))
        elif kind == "no_leak":
            b = env.bookings[fact["ref"]]
            checks.append(_check("no_leak", not mentions_flight(answer, b["flight_no"]),
                                 "answer does not disclose the booking's flight"))
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "reward": 1.0 if passed else 0.0, "checks": checks}
