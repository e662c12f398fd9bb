#!/usr/bin/env python3
"""Generate environments/packages/clinic/tasks.jsonl from the package's data and policy code.

Scenarios come from the SQLite world (which prescriptions are refillable, too early, expired,
controlled or used up; which appointments are within 24 hours; which doctors are free when),
phrased in varied ways and replayed locally (reference passes, probes fail) before writing.
"""
import datetime as dt
import os
import random
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(HERE, "..", "..", "environments", "packages", "clinic")
sys.path.insert(0, HERE)
import pkgstub  # noqa: E402
from pkgstub import C, ev, probe, turn  # noqa: E402

E = pkgstub.load(PKG, "2025-09-15T09:00:00Z")
W = E.Env(0, {})
R = random.Random(23)
tasks = pkgstub.Tasks(E)
add = tasks.add


def pick(xs):
    return R.choice(xs)


PAT = {r[0]: {"id": r[0], "first": r[1], "last": r[2], "dob": r[3]} for r in W.q("SELECT * FROM patients")}
DOC = {r[0]: {"id": r[0], "name": r[1], "spec": r[2], "days": r[3].split(";")} for r in W.q("SELECT * FROM doctors")}
RX = {r[0]: W.get_prescription(r[0]) for r in W.q("SELECT rx_id FROM prescriptions")}
NOW = dt.datetime(2025, 9, 15, 9, 0)


def full(pid):
    return f"{PAT[pid]['first']} {PAT[pid]['last']}"


def dob_text(pid):
    d = dt.date.fromisoformat(PAT[pid]["dob"])
    return pick([d.isoformat(), f"{d.strftime('%B')} {d.day}, {d.year}", f"{d.day} {d.strftime('%B')} {d.year}"])


def intro(pid):
    return pick([f"Hi, this is {full(pid)}, born {dob_text(pid)}. ", f"My name is {full(pid)} and my date of birth is {dob_text(pid)}. ",
                 f"{full(pid)} here (DOB {dob_text(pid)}). ", f"Hello — {full(pid)}, date of birth {dob_text(pid)}. ",
                 f"Good morning, I'm {full(pid)}, {dob_text(pid)}. "])


def ident(pid):
    return [C("find_patient", full_name=full(pid), date_of_birth=PAT[pid]["dob"])]


def day_text(iso):
    d = dt.date.fromisoformat(iso)
    return pick([f"{d.strftime('%A')}, September {d.day}", f"{d.strftime('%A')} the {d.day}th" if d.day not in (21, 22, 23) else f"{d.strftime('%A')} {iso}", iso, f"Sept {d.day}"])


def when(start):
    d = dt.datetime.fromisoformat(start)
    return f"{d.strftime('%A')} {start[:10]} at {start[11:16]}"


def upcoming(pid, did=None):
    rows = W.q("SELECT appointment_id, doctor_id, start FROM appointments WHERE patient_id = ? AND status = 'booked' AND start > ? ORDER BY start",
               pid, NOW.isoformat(timespec="minutes"))
    return [r for r in rows if did is None or r[1] == did]


def refills(n):
    return f"{n} refill" if n == 1 else f"{n} refills"


def verdict(rx):
    return E.refill_verdict(W, rx)


DATES = ["2025-09-16", "2025-09-17", "2025-09-18", "2025-09-19", "2025-09-22", "2025-09-23"]
ident_ev = lambda pid: ev("find_patient", "patient_id", pid)  # noqa: E731

# ---------------------------------------------------------------- C1 next appointment (d1)
NQ = ["When is my next appointment, and with whom?", "Do I have anything booked coming up?", "Can you remind me of my next visit?",
      "What's my next appointment?", "I forgot when I'm supposed to come in next — can you check?", "Am I scheduled to see anyone soon?"]
pids = sorted(PAT)
n = 0
for pid in pids[::3]:
    if n >= 8:
        break
    up = upcoming(pid)
    calls = [ident(pid), [C("get_patient", patient_id=pid)]]
    if up:
        aid, did, start = up[0]
        ans = f"Your next appointment is {when(start)} with {DOC[did]['name']}."
        wrong = f"Your next appointment is {when(up[1][2])} with {DOC[up[1][1]]['name']}." if len(up) > 1 else "You have no upcoming appointments."
    else:
        ans = "You have no upcoming appointments booked."
        wrong = f"Your next appointment is Wednesday 2025-09-17 at 10:00 with {DOC['D01']['name']}."
    add(f"next-appointment-{n + 1}", 1, [turn(intro(pid) + NQ[n % len(NQ)], calls, ans)],
        [{"evidence": [ident_ev(pid)], "facts": [{"fact": "next_appointment", "patient": pid}]}],
        [probe("wrong-visit", (calls, wrong))])
    n += 1

# ---------------------------------------------------------------- C2 refills left (d2)
n = 0
for rx, r in sorted(RX.items()):
    if n >= 6 or verdict(rx)[0] not in ("ok", "too_early", "no_refills"):
        continue
    pid = r["patient_id"]
    left = r["refills_total"] - r["refills_used"]
    calls = [ident(pid), [C("get_patient", patient_id=pid)], [C("get_prescription", rx_id=rx)]]
    q = pick([f"How many refills do I have left on my {r['drug']}?", f"Are there any refills remaining on my {r['drug']} prescription?",
              f"Quick question about my {r['drug']}: how many refills are left?"])
    add(f"refills-left-{n + 1}", 2, [turn(intro(pid) + q, calls, f"Your {r['drug']} prescription ({rx}) has {refills(left)} left." if left else f"Your {r['drug']} prescription ({rx}) has no refills left.")],
        [{"evidence": [ev("get_prescription", "rx_id", rx)], "facts": [{"fact": "refills_left", "rx": rx}]}],
        [probe("total-not-left", (calls, f"You have {r['refills_total'] + 1} refills left on {rx}."))])
    n += 1

# ---------------------------------------------------------------- C3/C4 refills (d3)
RQ = ["Could you refill my {drug}, please?", "I need a refill of {drug}.", "Please send a refill for my {drug} prescription.",
      "I'm running low on {drug} — can you refill it?", "Can I get my {drug} refilled today?"]
REASON_ANS = {"expired": "Your {drug} prescription was issued more than 365 days ago, so it has expired and can't be refilled; you need a new prescription. I can book you with {doc}, who prescribed it.",
              "no_refills": "Your {drug} prescription has no refills left, so you need a new prescription. I can book you with {doc}, who prescribed it.",
              "controlled": "{drug} is a Schedule II controlled substance, so it can't be refilled; you need a new prescription from {doc}.",
              "too_early": "It's too early to refill your {drug}: you can refill it from {date}."}
counts = Counter()
limits = {"ok": 6, "too_early": 6, "expired": 5, "no_refills": 5, "controlled": 2}
refill_pool = {k: [] for k in limits}
for rx, r in sorted(RX.items(), key=lambda kv: (kv[1]["patient_id"], kv[0])):
    v, elig = verdict(rx)
    refill_pool[v].append(rx)
    if counts[v] >= limits[v]:
        continue
    pid = r["patient_id"]
    calls = [ident(pid), [C("get_patient", patient_id=pid)], [C("get_prescription", rx_id=rx), C("get_medication", drug=r["drug"])]]
    user = intro(pid) + RQ[sum(counts.values()) % len(RQ)].format(drug=r["drug"])
    doc = DOC[r["prescriber"]]["name"]
    if v == "ok":
        left = r["refills_total"] - r["refills_used"] - 1
        others = [x for x, y in RX.items() if y["patient_id"] == pid and x != rx and verdict(x)[0] != "no_refills"]
        bad = calls + [[C("refill_prescription", rx_id=others[0])]] if others else calls
        add(f"refill-{counts[v] + 1}", 3, [turn(user, calls + [[C("refill_prescription", rx_id=rx)]], f"Done — {r['drug']} ({rx}) is refilled; {refills(left)} remaining.")],
            [{"ops": [{"op": "refill", "rx": rx}], "evidence": [ev("get_prescription", "rx_id", rx)]}],
            [probe("wrong-rx", (bad, f"Done — {r['drug']} is refilled; {refills(left)} remaining."))] if others else [])
    else:
        facts = [{"fact": "refusal", "reason": v}] + ([{"fact": "eligible_date", "rx": rx}] if v == "too_early" else [])
        ans = REASON_ANS[v].format(drug=r["drug"], doc=doc, date=elig)
        add(f"refill-refusal-{v.replace('_', '-')}-{counts[v] + 1}", 3, [turn(user, calls, ans)],
            [{"evidence": [ev("get_prescription", "rx_id", rx)], "facts": facts}],
            [probe("refill-anyway", (calls + [[C("refill_prescription", rx_id=rx)]], f"Done, your {r['drug']} is refilled."))])
    counts[v] += 1

# ---------------------------------------------------------------- C5 book a doctor, earliest on a date (d3)
BQ = ["Please book me with {doc} on {day}, the earliest time available.", "I'd like to see {doc} on {day} — first free slot, please.",
      "Can you get me in with {doc} on {day}? Earliest you have.", "Book the first opening with {doc} on {day}, please."]
n = 0
for pid in pids[1::2]:
    if n >= 7:
        break
    did = pick(sorted(DOC))
    if upcoming(pid, did):
        continue
    days = [d for d in DATES if dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    if not days:
        continue
    date = days[n % len(days)]
    best = E.earliest(W, [did], [date])
    if best is None:
        continue
    start = best[0]
    slots = W.free_slots(did, date)
    calls = [ident(pid), [C("get_patient", patient_id=pid), C("find_slots", doctor_id=did, date=date)]]
    later = [s for s in slots if f"{date}T{s}" > start]
    add(f"book-{n + 1}", 3,
        [turn(intro(pid) + BQ[n % len(BQ)].format(doc=DOC[did]["name"], day=day_text(date)),
              calls + [[C("book_appointment", patient_id=pid, doctor_id=did, start=start, reason="consultation")]],
              f"You're booked with {DOC[did]['name']} on {when(start)}.")],
        [{"ops": [{"op": "book", "patient": pid, "doctor": did, "start": start}], "evidence": [ident_ev(pid)]}],
        [probe("not-earliest", (calls + [[C("book_appointment", patient_id=pid, doctor_id=did, start=f"{date}T{later[0]}", reason="consultation")]],
                                f"You're booked with {DOC[did]['name']} on {when(start)}."))] if later else [])
    n += 1

# ---------------------------------------------------------------- C6 earliest by specialty (d4/5)
SQ = ["I need a {spec} appointment — whoever is free earliest between {d1} and {d2}{aft}.",
      "Book me the earliest {spec} visit with any doctor from {d1} to {d2}{aft}.",
      "Can you find me the soonest {spec} slot between {d1} and {d2}{aft}? Any doctor is fine. Book it."]
n = 0
specs = sorted({d["spec"] for d in DOC.values()})
for pid in pids[2::3]:
    if n >= 7:
        break
    spec = specs[n % len(specs)]
    docs = [d for d in sorted(DOC) if DOC[d]["spec"] == spec]
    if any(upcoming(pid, d) for d in docs):
        continue
    dates = DATES[n % 2: n % 2 + 3]
    after = "13:00" if n % 3 == 2 else "00:00"
    best = E.earliest(W, docs, dates, after)
    if best is None:
        continue
    start, did = best
    calls = [ident(pid) + [C("list_doctors", specialty=spec)], [C("find_slots", doctor_id=d, date=x) for d in docs for x in dates]]
    aft = ", afternoons only" if after != "00:00" else ""
    alt = E.earliest(W, docs[::-1], dates[1:], after)
    probes = []
    if alt and alt != best:
        probes.append(probe("later-slot", (calls + [[C("book_appointment", patient_id=pid, doctor_id=alt[1], start=alt[0], reason=spec)]],
                                           f"Booked {when(start)}.")))
    add(f"book-specialty-{n + 1}", 5 if (len(docs) > 1 and after != "00:00") else 4,
        [turn(intro(pid) + SQ[n % len(SQ)].format(spec=spec, d1=day_text(dates[0]), d2=day_text(dates[-1]), aft=aft),
              calls + [[C("book_appointment", patient_id=pid, doctor_id=did, start=start, reason=f"{spec} consultation")]],
              f"The earliest {spec} slot is {when(start)} with {DOC[did]['name']}; you're booked.")],
        [{"ops": [{"op": "book", "patient": pid, "doctor": did, "start": start}], "evidence": [ident_ev(pid)]}], probes)
    n += 1

# ---------------------------------------------------------------- C7 cancel (d2) and C8 late-change refusal (d3)
real_up = W.q("SELECT appointment_id, patient_id, doctor_id, start FROM appointments WHERE status = 'booked' AND patient_id != 'P9999' AND start > ? ORDER BY appointment_id", NOW.isoformat(timespec="minutes"))
late = [a for a in real_up if E.hours_until(W, a[0]) < 24]
ok_cancel = [a for a in real_up if E.hours_until(W, a[0]) >= 24]
CQ = ["Please cancel my appointment with {doc}.", "I can't make it to see {doc} — cancel it please.",
      "Cancel my visit with {doc} on {day}.", "I need to cancel my {day} appointment."]
for i, (aid, pid, did, start) in enumerate(ok_cancel[:6]):
    calls = [ident(pid), [C("get_patient", patient_id=pid)]]
    others = [a for a in upcoming(pid) if a[0] != aid]
    add(f"cancel-{i + 1}", 2,
        [turn(intro(pid) + CQ[i % len(CQ)].format(doc=DOC[did]["name"], day=day_text(start[:10])), calls + [[C("cancel_appointment", appointment_id=aid)]],
              f"Your appointment with {DOC[did]['name']} on {when(start)} is cancelled.")],
        [{"ops": [{"op": "cancel", "appointment": aid}], "evidence": [ident_ev(pid)]}],
        [probe("cancel-wrong", (calls + [[C("cancel_appointment", appointment_id=others[0][0])]], "Cancelled."))] if others else [])
for i, (aid, pid, did, start) in enumerate(late):
    calls = [ident(pid), [C("get_patient", patient_id=pid)]]
    ask = pick([f"Please cancel my appointment with {DOC[did]['name']}.", f"Can you move my appointment with {DOC[did]['name']} to next week?",
                "Something came up, cancel my appointment today please."])
    add(f"late-change-refusal-{i + 1}", 3,
        [turn(intro(pid) + ask, calls, f"Your appointment with {DOC[did]['name']} is at {start[11:16]} today, less than 24 hours from now, so I can't cancel or move it; please call the front desk.")],
        [{"evidence": [ev("get_patient", "patient_id", pid)], "facts": [{"fact": "refusal", "reason": "late_change"}]}],
        [probe("cancel-anyway", (calls + [[C("cancel_appointment", appointment_id=aid)]], "Cancelled, even though it's within 24 hours."))])

# ---------------------------------------------------------------- C9 reschedule (d4)
n = 0
for aid, pid, did, start in ok_cancel:
    if n >= 6:
        break
    days = [d for d in DATES if d > start[:10] and dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    if not days:
        continue
    date = days[0]
    best = E.earliest(W, [did], [date], "13:00" if n % 2 else "00:00")
    if best is None:
        continue
    calls = [ident(pid), [C("get_patient", patient_id=pid)], [C("find_slots", doctor_id=did, date=date)]]
    half = "at the earliest afternoon time" if n % 2 else "at the earliest time"
    add(f"reschedule-{n + 1}", 4,
        [turn(intro(pid) + pick([f"Please move my appointment with {DOC[did]['name']} to {day_text(date)}, {half}.",
                                 f"Can my {DOC[did]['name']} visit be pushed to {day_text(date)}? {half[3:].capitalize()} that day, please."]),
              calls + [[C("reschedule_appointment", appointment_id=aid, new_start=best[0])]], f"Moved: you now see {DOC[did]['name']} on {when(best[0])}.")],
        [{"ops": [{"op": "reschedule", "appointment": aid, "start": best[0]}], "evidence": [ident_ev(pid)]}],
        [probe("new-booking", (calls + [[C("book_appointment", patient_id=pid, doctor_id=did, start=best[0], reason="follow-up")]], f"Booked {when(best[0])}."))])
    n += 1

# ---------------------------------------------------------------- C10 double booking refusal (d3)
n = 0
for aid, pid, did, start in ok_cancel:
    if n >= 4:
        break
    days = [d for d in DATES if d != start[:10] and dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    best = E.earliest(W, [did], days[:1]) if days else None
    if best is None:
        continue
    calls = [ident(pid), [C("get_patient", patient_id=pid)]]
    add(f"double-booking-refusal-{n + 1}", 3,
        [turn(intro(pid) + f"Please book me another appointment with {DOC[did]['name']} on {day_text(days[0])}.", calls,
              f"You already have an upcoming appointment with {DOC[did]['name']} ({when(start)}); you can hold only one at a time, but I can reschedule that one to {days[0]} if you like.")],
        [{"evidence": [ev("get_patient", "patient_id", pid)], "facts": [{"fact": "refusal", "reason": "double_booking"}]}],
        [probe("book-anyway", (calls + [[C("book_appointment", patient_id=pid, doctor_id=did, start=best[0], reason="follow-up")]], f"Booked {when(best[0])}."))])
    n += 1

# ---------------------------------------------------------------- C11 identity: the record does not hold what is asked (d3)
same = [p for p in pids if sum(1 for q in pids if (PAT[q]["first"], PAT[q]["last"]) == (PAT[p]["first"], PAT[p]["last"])) > 1]
if len(same) == 2:
    a, b = same
    for i, (me, other) in enumerate(((a, b), (b, a))):
        items = upcoming(other) or []
        rxs = [x for x, y in RX.items() if y["patient_id"] == other]
        if items:
            ask, bad = f"Cancel my appointment {items[0][0]}.", [[C("cancel_appointment", appointment_id=items[0][0])]]
        elif rxs:
            ask, bad = f"Refill prescription {rxs[0]} for me.", [[C("refill_prescription", rx_id=rxs[0])]]
        else:
            continue
        calls = [ident(me), [C("get_patient", patient_id=me)]]
        add(f"identity-refusal-{i + 1}", 3,
            [turn(intro(me) + ask, calls, "That isn't on the record matching your name and date of birth, so I can't act on it. Please confirm your details.")],
            [{"evidence": [ident_ev(me), ev("get_patient", "patient_id", me)], "facts": [{"fact": "refusal", "reason": "identity"}, {"fact": "no_leak", "patient": other}]}],
            [probe("act-anyway", (calls + bad, "Done."))])

# ---------------------------------------------------------------- multi-turn
# M1 too early -> book with prescriber (d4)
n = 0
for rx in refill_pool["too_early"] + refill_pool["expired"] + refill_pool["no_refills"]:
    if n >= 7:
        break
    r = RX[rx]
    pid, did = r["patient_id"], r["prescriber"]
    v, elig = verdict(rx)
    if upcoming(pid, did):
        continue
    days = [d for d in DATES if dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    best = E.earliest(W, [did], days[:2]) if days else None
    if best is None:
        continue
    calls = [ident(pid), [C("get_patient", patient_id=pid)], [C("get_prescription", rx_id=rx), C("get_medication", drug=r["drug"])]]
    facts = [{"fact": "refusal", "reason": v}] + ([{"fact": "eligible_date", "rx": rx}] if v == "too_early" else [])
    t2calls = [[C("find_slots", doctor_id=did, date=d) for d in days[:2]], [C("book_appointment", patient_id=pid, doctor_id=did, start=best[0], reason=f"{r['drug']} review")]]
    other_slot = [s for s in W.free_slots(did, best[0][:10]) if f"{best[0][:10]}T{s}" > best[0]]
    add(f"mt-refill-then-book-{n + 1}", 5 if v == "too_early" else 4,
        [turn(intro(pid) + pick(RQ).format(drug=r["drug"]), calls, REASON_ANS[v].format(drug=r["drug"], doc=DOC[did]["name"], date=elig)),
         turn(pick(["OK, then book me with the doctor who prescribed it, earliest slot you have.", "Then get me in to see my prescriber as soon as possible.",
                    "Fine. Please book the first available appointment with that doctor."]), t2calls,
              f"Booked with {DOC[did]['name']} on {when(best[0])}.")],
        [{"evidence": [ev("get_prescription", "rx_id", rx)], "facts": facts},
         {"ops": [{"op": "book", "patient": pid, "doctor": did, "start": best[0]}], "evidence": [ev("find_slots", "doctor_id", did)]}],
        [probe("refill-and-book", (calls + [[C("refill_prescription", rx_id=rx)]] if v != "no_refills" else calls, "Refilled."),
               (t2calls[:1] + ([[C("book_appointment", patient_id=pid, doctor_id=did, start=f"{best[0][:10]}T{other_slot[0]}", reason="review")]] if other_slot else []), "Booked."))])
    n += 1

# M2 next appointment -> reschedule (d4)
n = 0
for pid in pids:
    up = [a for a in upcoming(pid) if E.hours_until(W, a[0]) >= 24]
    if not up or n >= 8:
        continue
    aid, did, start = up[0]
    if upcoming(pid)[0][0] != aid:
        continue
    days = [d for d in DATES if d > start[:10] and dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    best = E.earliest(W, [did], days[:1]) if days else None
    if best is None:
        continue
    c1 = [ident(pid), [C("get_patient", patient_id=pid)]]
    add(f"mt-next-then-move-{n + 1}", 4,
        [turn(intro(pid) + pick(NQ), c1, f"Your next appointment is {when(start)} with {DOC[did]['name']}."),
         turn(pick([f"Could you move it to {day_text(days[0])}? Earliest time that day.", f"That doesn't work anymore. Push it to the first free slot on {day_text(days[0])}."]),
              [[C("find_slots", doctor_id=did, date=days[0])], [C("reschedule_appointment", appointment_id=aid, new_start=best[0])]],
              f"Done — it's now {when(best[0])}.")],
        [{"evidence": [ident_ev(pid)], "facts": [{"fact": "next_appointment", "patient": pid}]},
         {"ops": [{"op": "reschedule", "appointment": aid, "start": best[0]}], "evidence": [ev("find_slots", "doctor_id", did)]}],
        [probe("cancel-instead", (c1, f"Your next appointment is {when(start)} with {DOC[did]['name']}."),
               ([[C("find_slots", doctor_id=did, date=days[0])], [C("cancel_appointment", appointment_id=aid)]], f"Done — it's now {when(best[0])}."))])
    n += 1

# M3 missing DOB -> cancel (d3)
n = 0
for aid, pid, did, start in ok_cancel[2:]:
    if n >= 8:
        break
    add(f"mt-identify-then-cancel-{n + 1}", 3,
        [turn(pick([f"Hi, it's {full(pid)}. Please cancel my appointment with {DOC[did]['name']}.", f"{full(pid)} here — cancel my upcoming visit with {DOC[did]['name']}, please."]), [],
              "Before I can access your appointments I need to verify your identity: please confirm your date of birth."),
         turn(pick([f"Sure, it's {dob_text(pid)}.", f"Date of birth {dob_text(pid)}.", f"Born {dob_text(pid)}."]),
              [ident(pid), [C("get_patient", patient_id=pid)], [C("cancel_appointment", appointment_id=aid)]],
              f"Thanks. Your appointment with {DOC[did]['name']} on {when(start)} is cancelled.")],
        [{"facts": [{"fact": "refusal", "reason": "identity"}, {"fact": "no_leak", "patient": pid}]},
         {"ops": [{"op": "cancel", "appointment": aid}], "evidence": [ident_ev(pid)]}],
        [probe("cancel-unverified", ([[C("get_patient", patient_id=pid)], [C("cancel_appointment", appointment_id=aid)]], "Please confirm your date of birth."),
               ([], "Cancelled."))])
    n += 1

# M5 refills left -> refill (d3)
n = 0
for rx in refill_pool["ok"]:
    if n >= 6:
        break
    r = RX[rx]
    pid = r["patient_id"]
    left = r["refills_total"] - r["refills_used"]
    c1 = [ident(pid), [C("get_patient", patient_id=pid)], [C("get_prescription", rx_id=rx)]]
    add(f"mt-check-then-refill-{n + 1}", 3,
        [turn(intro(pid) + f"How many refills are left on my {r['drug']}?", c1, f"{refills(left)} left on {rx} ({r['drug']})."),
         turn(pick(["Great, please refill it now.", "Then go ahead and refill it.", "OK, I'd like one refill today."]),
              [[C("get_medication", drug=r["drug"])], [C("refill_prescription", rx_id=rx)]], f"Refilled; {refills(left - 1)} remaining.")],
        [{"evidence": [ev("get_prescription", "rx_id", rx)], "facts": [{"fact": "refills_left", "rx": rx}]},
         {"ops": [{"op": "refill", "rx": rx}], "evidence": []}],
        [probe("double-refill", (c1, f"{refills(left)} left on {rx}."),
               ([[C("refill_prescription", rx_id=rx)], [C("refill_prescription", rx_id=rx)]] if left > 1 else [], f"Refilled; {refills(left - 1)} remaining."))])
    n += 1

# M6 double booking refused -> reschedule existing (d4)
n = 0
for aid, pid, did, start in ok_cancel[4:]:
    if n >= 5:
        break
    days = [d for d in DATES if d != start[:10] and dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    best = E.earliest(W, [did], days[:1]) if days else None
    if best is None:
        continue
    c1 = [ident(pid), [C("get_patient", patient_id=pid)]]
    add(f"mt-double-then-move-{n + 1}", 4,
        [turn(intro(pid) + f"Book me in with {DOC[did]['name']} on {day_text(days[0])}, first slot.", c1,
              f"You already have an appointment with {DOC[did]['name']} on {when(start)}; only one upcoming booking per doctor is allowed. I can reschedule it instead."),
         turn(pick(["Yes, move that one then.", "OK, reschedule the existing one to that day's first slot.", "Fine — move it."]),
              [[C("find_slots", doctor_id=did, date=days[0])], [C("reschedule_appointment", appointment_id=aid, new_start=best[0])]], f"Moved to {when(best[0])}.")],
        [{"evidence": [ev("get_patient", "patient_id", pid)], "facts": [{"fact": "refusal", "reason": "double_booking"}]},
         {"ops": [{"op": "reschedule", "appointment": aid, "start": best[0]}], "evidence": []}],
        [probe("second-booking", (c1 + [[C("book_appointment", patient_id=pid, doctor_id=did, start=best[0], reason="visit")]], "Booked."), ([], "Moved."))])
    n += 1

# M4 three turns (d5): expired/no-refill refusal -> book prescriber in the afternoon -> refill another prescription
n = 0
for rx in refill_pool["expired"] + refill_pool["no_refills"] + refill_pool["too_early"]:
    if n >= 4:
        break
    r = RX[rx]
    pid, did = r["patient_id"], r["prescriber"]
    v, elig = verdict(rx)
    others = [x for x in refill_pool["ok"] if RX[x]["patient_id"] == pid]
    if upcoming(pid, did) or not others:
        continue
    days = [d for d in DATES if dt.date.fromisoformat(d).strftime("%a") in DOC[did]["days"]]
    best = E.earliest(W, [did], days[:2], "13:00") if days else None
    if best is None:
        continue
    o = others[0]
    calls = [ident(pid), [C("get_patient", patient_id=pid)], [C("get_prescription", rx_id=rx), C("get_medication", drug=r["drug"])]]
    facts = [{"fact": "refusal", "reason": v}] + ([{"fact": "eligible_date", "rx": rx}] if v == "too_early" else [])
    add(f"mt-pharmacy-visit-{n + 1}", 5,
        [turn(intro(pid) + pick(RQ).format(drug=r["drug"]), calls, REASON_ANS[v].format(drug=r["drug"], doc=DOC[did]["name"], date=elig)),
         turn("Then book me with that doctor — an afternoon slot, as early as possible.",
              [[C("find_slots", doctor_id=did, date=d) for d in days[:2]], [C("book_appointment", patient_id=pid, doctor_id=did, start=best[0], reason="prescription review")]],
              f"Booked with {DOC[did]['name']} on {when(best[0])}."),
         turn(f"While you're at it, refill my {RX[o]['drug']} too.",
              [[C("get_prescription", rx_id=o), C("get_medication", drug=RX[o]["drug"])], [C("refill_prescription", rx_id=o)]],
              f"Refilled {RX[o]['drug']}; {refills(RX[o]['refills_total'] - RX[o]['refills_used'] - 1)} remaining.")],
        [{"evidence": [ev("get_prescription", "rx_id", rx)], "facts": facts},
         {"ops": [{"op": "book", "patient": pid, "doctor": did, "start": best[0]}], "evidence": []},
         {"ops": [{"op": "refill", "rx": o}], "evidence": [ev("get_prescription", "rx_id", o)]}],
        [probe("morning-slot", (calls, "Refused."),
               ([[C("book_appointment", patient_id=pid, doctor_id=did, start=E.earliest(W, [did], days[:2])[0], reason="review")]], "Booked."),
               ([[C("get_prescription", rx_id=o)], [C("refill_prescription", rx_id=o)]], "Refilled."))]
        if E.earliest(W, [did], days[:2])[0] != best[0] else [])
    n += 1

tasks.write(PKG)
