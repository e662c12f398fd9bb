#!/usr/bin/env python3
"""Generate environments/packages/airline/tasks.jsonl from the package's own data and policy code.

Every task is built from the world in data/*.csv: the script picks bookings that satisfy a
scenario (a disrupted flight, a basic fare, a booking made yesterday, ...), writes the user
turns in varied phrasings, computes the reference calls with the policy functions of env.py and
replays reference and probes locally (pkgstub) before writing. `agentgen envs check` is the
judge. Deterministic: rerun gives the same file.
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(HERE, "..", "..", "environments", "packages", "airline")
sys.path.insert(0, HERE)
import pkgstub  # noqa: E402
from pkgstub import C, ev, probe, turn  # noqa: E402

E = pkgstub.load(PKG, "2025-06-12T08:00:00Z")
W = E.Env(0, {})
R = random.Random(7)
usd = E.usd


def money(cents):
    return f"${usd(cents)}"


def pick(xs):
    return R.choice(xs)


def flight(no):
    return W.flights[no]


def bk(ref):
    return W.bookings[ref]


def changeable(b):
    f = flight(b["flight_no"])
    return (f["status"] != "departed" and (f["status"] == "cancelled" or W.minutes_to_departure(f) >= 120))


def alternatives(b, date=None, exclude_full=True):
    f = flight(b["flight_no"])
    out = []
    for n in W.flights.values():
        if (n["origin"], n["destination"]) != (f["origin"], f["destination"]) or n is f:
            continue
        if date and not n["departure"].startswith(date):
            continue
        if n["status"] == "cancelled" or W.departed(n):
            continue
        if exclude_full and n["seats_left"] < b["passengers"]:
            continue
        out.append(n)
    return sorted(out, key=lambda n: (n["departure"], n["flight_no"]))


def nice_date(iso):
    d = int(iso[8:10])
    return pick([f"June {d}", f"the {d}th" if d not in (21, 22, 23) else f"June {d}", f"{iso[:10]}", f"Jun {d}"])


GREET = ["", "Hi. ", "Hello! ", "Hey there. ", "Good morning. ", "Hi there! ", ""]


def cap(text):
    return text[:1].upper() + text[1:]


def hello(b, wrong=None):
    return cap(f"{pick(GREET)}{who(b, wrong)}. ")


def who(b, wrong=None):
    last = wrong or b["lead_last_name"]
    ref = b["booking_ref"]
    first = W.customers[b["customer_id"]]["first_name"]
    return pick([f"My booking is {ref}, last name {last}",
                 f"This is {first} {last}, booking reference {ref}",
                 f"I'm {first} {last} (confirmation {ref})",
                 f"Reference {ref}, surname {last}",
                 f"Booking {ref} under {last}"])


tasks = pkgstub.Tasks(E)
add = tasks.add
used = set()


B = list(W.bookings.values())
open_b = [b for b in B if changeable(b)]


def status_text(f):
    if f["status"] == "cancelled":
        return f"Flight {f['flight_no']} has been cancelled."
    if f["delay_min"]:
        est = W.est_departure(f).strftime("%H:%M")
        return (f"Flight {f['flight_no']} is delayed by {f['delay_min']} minutes; it is now "
                f"expected to leave at {est} UTC.")
    return f"Flight {f['flight_no']} is on time, departing {f['departure'][:10]} at {f['departure'][11:16]} UTC."


def wrong_status_text(f):
    if f["status"] == "cancelled" or f["delay_min"]:
        return f"Flight {f['flight_no']} is on time, departing at {f['departure'][11:16]} UTC."
    return f"Flight {f['flight_no']} is delayed by 45 minutes."


# ---------------------------------------------------------------- A. status (d1)
STATUS_Q = ["Is my flight on time?", "Can you tell me whether my flight is still leaving as planned?",
            "What's the status of my flight today?", "Any delays on my flight?",
            "I heard about disruptions — is my flight affected?", "Is my flight going to leave on schedule?"]
pool = [b for b in B if flight(b["flight_no"])["status"] in ("delayed", "cancelled", "scheduled")
        and flight(b["flight_no"])["departure"] < "2025-06-14"]
pool.sort(key=lambda b: (flight(b["flight_no"])["status"], b["booking_ref"]))
chosen = [b for b in pool if flight(b["flight_no"])["status"] == "delayed"][:3] + \
         [b for b in pool if flight(b["flight_no"])["status"] == "cancelled"][:2] + \
         [b for b in pool if flight(b["flight_no"])["status"] == "scheduled"][:2]
for i, b in enumerate(chosen):
    f = flight(b["flight_no"])
    ref = b["booking_ref"]
    user = hello(b) + f"{STATUS_Q[i % len(STATUS_Q)]}"
    add(f"status-{i + 1}", 1,
        [turn(user, [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]],
              status_text(f))],
        [{"evidence": [ev("get_booking", "booking_ref", ref), ev("get_flight", "flight_no", f["flight_no"])],
          "facts": [{"fact": "status", "flight": f["flight_no"]}]}],
        [probe("wrong-status", ([[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]],
                                wrong_status_text(f)))])
    used.add(ref)

# ---------------------------------------------------------------- B. booking summary (d1)
SUM_Q = ["Which flight am I booked on, and what fare did I buy?",
         "Remind me of my flight number and fare class, please.",
         "I lost the confirmation email. What flight and fare type is this booking?",
         "Could you confirm the flight and the fare class on my reservation?"]
for i, b in enumerate([b for b in B if b["booking_ref"] not in used][:4]):
    ref = b["booking_ref"]
    user = hello(b) + f"{SUM_Q[i]}"
    add(f"summary-{i + 1}", 1,
        [turn(user, [[C("get_booking", booking_ref=ref)]],
              f"You are on flight {b['flight_no']} with a {b['fare_class']} fare for {b['passengers']} passenger(s).")],
        [{"evidence": [ev("get_booking", "booking_ref", ref)],
          "facts": [{"fact": "booking_summary", "ref": ref}]}],
        [probe("other-fare", ([[C("get_booking", booking_ref=ref)]],
                              f"You are on flight {b['flight_no']} with a "
                              f"{'flex' if b['fare_class'] != 'flex' else 'basic'} fare."))])

# ---------------------------------------------------------------- C. cheapest fare (d2)
CHEAP_Q = ["What's the cheapest {cls} fare from {o} to {d} on {date} for {pax}?",
           "I need {pax} on a {o} to {d} flight on {date}. Which flight has the lowest {cls} fare, and how much per person?",
           "Price check: {o}→{d}, {date}, {cls} class, {pax}. Cheapest option?",
           "Looking to fly {o} to {d} on {date} ({pax}). Which {cls} fare is lowest?",
           "Can you find me the least expensive {cls} seat from {o} to {d} on {date}? We are {pax}."]
routes = sorted({(f["origin"], f["destination"], f["departure"][:10]) for f in W.flights.values()
                 if f["departure"][:10] >= "2025-06-13"})
R.shuffle(routes)
n = 0
for o, d, date in routes:
    if n >= 7:
        break
    cls = pick(["basic", "standard", "flex"])
    pax = pick([1, 2, 3, 4])
    best = E.cheapest(W, o, d, date, cls, pax)
    naive = E.cheapest(W, o, d, date, cls, 1)
    if best is None:
        continue
    # prefer cases where the cheapest flight lacks seats for the whole party (a trap)
    if n < 4 and naive == best:
        continue
    paxs = "just me" if pax == 1 else f"{pax} people"
    user = CHEAP_Q[n % len(CHEAP_Q)].format(cls=cls, o=o, d=d, date=nice_date(date), pax=paxs)
    ref_calls = [[C("search_flights", origin=o, destination=d, date=date)]]
    wrong = naive if naive != best else None
    probes = []
    if wrong:
        probes.append(probe("ignores-seats", (ref_calls, f"{wrong[2]} at {money(wrong[0])} per person is the cheapest.")))
    else:
        worst = max((f["fares"][cls], f["flight_no"]) for f in W.flights.values()
                    if (f["origin"], f["destination"]) == (o, d) and f["departure"].startswith(date))
        if worst[1] != best[2]:
            probes.append(probe("priciest", (ref_calls, f"{worst[1]} at {money(worst[0])} per person.")))
    add(f"cheapest-{n + 1}", 2 if not wrong else 3,
        [turn(user, ref_calls, f"The cheapest {cls} fare with seats for {paxs} is {best[2]} at {money(best[0])} per person.")],
        [{"evidence": [ev("search_flights", "flight_no", best[2])],
          "facts": [{"fact": "cheapest", "origin": o, "destination": d, "date": date, "fare_class": cls, "pax": pax}]}],
        probes)
    n += 1

# ---------------------------------------------------------------- D. bags (d2)
BAG_Q = ["Please add {k} checked bag{s} to my booking.", "I'd like to check {k} bag{s} — can you add {them}?",
         "We're bringing {k} suitcase{s}; add {them} as checked bags please.",
         "Add {k} checked bag{s}, and tell me what it costs.", "Can I get {k} more checked bag{s} on this trip?"]


def bag_ok(b, k):
    return changeable(b) and flight(b["flight_no"])["status"] != "cancelled" and b["bags"] + k <= 2 * b["passengers"]


cands = sorted([b for b in open_b if bag_ok(b, 1)], key=lambda b: b["booking_ref"])
R.shuffle(cands)
seen_kinds = {}
n = 0
for b in cands:
    free = b["fare_class"] == "flex" or E.gold(W, b)
    k = min(pick([1, 2, 2, 3]), 2 * b["passengers"] - b["bags"])
    key = (free, b["bags"] > 0)
    if seen_kinds.get(key, 0) >= 2 or n >= 7:
        continue
    seen_kinds[key] = seen_kinds.get(key, 0) + 1
    ref = b["booking_ref"]
    c = E.policy_bags(W, ref, k)
    s = "" if k == 1 else "s"
    user = hello(b) + f"" + BAG_Q[n % len(BAG_Q)].format(k=k, s=s, them="it" if k == 1 else "them")
    wrongc = 4000 * k if c != 4000 * k else 0
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    add(f"bags-{n + 1}", 2 if not free else 3,
        [turn(user, reads + [[C("add_bags", booking_ref=ref, count=k, charge_usd=c / 100)]],
              f"Added {k} checked bag{s}; the charge is {money(c)}.")],
        [{"ops": [{"op": "bags", "ref": ref, "count": k}],
          "evidence": [ev("get_booking", "booking_ref", ref)]}],
        [probe("flat-rate", (reads + [[C("add_bags", booking_ref=ref, count=k, charge_usd=wrongc / 100)]],
                             f"Added {k} bag{s} for {money(wrongc)}."))])
    used.add(ref)
    n += 1

# ---------------------------------------------------------------- E. voluntary change (d3)
CHG_Q = ["I need to move to {target}. Can you change my booking?",
         "Something came up — please switch us to {target}.",
         "Could you rebook me onto {target}? Let me know what it costs.",
         "Please change my flight to {target}.",
         "Is it possible to move my reservation to {target}? Go ahead if so and tell me the cost.",
         "I'd like to take {target} instead of my current flight."]


def describe_target(b, n_, alts_same_day):
    f = flight(b["flight_no"])
    if R.random() < 0.4:
        return n_["flight_no"], 3
    d = n_["departure"][:10]
    day_alts = [a for a in alternatives(b, d, exclude_full=False) if a["status"] != "cancelled"]
    if day_alts and day_alts[0] is n_:
        return f"the first flight on {nice_date(d)}", 4
    if day_alts and day_alts[-1] is n_:
        return f"the last {f['origin']}-{f['destination']} flight on {nice_date(d)}", 4
    return f"the {n_['departure'][11:16]} UTC departure on {nice_date(d)}", 3


cands = sorted([b for b in open_b if b["fare_class"] != "basic" and not E.disrupted(W, b)
                and flight(b["flight_no"])["status"] != "cancelled"], key=lambda b: b["booking_ref"])
R.shuffle(cands)
n = 0
change_pool = []
for b in cands:
    alts = alternatives(b)
    if not alts:
        continue
    tgt = pick(alts)
    ref = b["booking_ref"]
    c = E.policy_change(W, ref, tgt["flight_no"])
    change_pool.append((b, tgt))
    if n >= 8:
        continue
    target, diff = describe_target(b, tgt, alts)
    user = hello(b) + f"" + CHG_Q[n % len(CHG_Q)].format(target=target)
    f = flight(b["flight_no"])
    reads = [[C("get_booking", booking_ref=ref)],
             [C("get_flight", flight_no=f["flight_no"]),
              C("search_flights", origin=f["origin"], destination=f["destination"], date=tgt["departure"][:10])]]
    fee_only = 0 if (b["fare_class"] == "flex" or E.gold(W, b)) else 7500 * b["passengers"]
    wrong = fee_only if fee_only != c else c + 7500
    add(f"change-{n + 1}", diff,
        [turn(user, reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c / 100)]],
              f"Done: you are now on {tgt['flight_no']} departing {tgt['departure'].replace('T', ' ')} UTC; the charge is {money(c)}.")],
        [{"ops": [{"op": "change", "ref": ref, "flight": tgt["flight_no"]}],
          "evidence": [ev("get_booking", "booking_ref", ref)]}],
        [probe("wrong-charge", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=wrong / 100)]],
                                f"Done: you are on {tgt['flight_no']}; charge {money(wrong)}."))])
    used.add(ref)
    n += 1

# ---------------------------------------------------------------- F. basic change refusal (d2)
BASIC_CHG = ["Please move me to a later flight on the same day.", "Can I switch to the next morning's flight instead?",
             "I want to change my flight to {alt}.", "Could you move my booking to {alt}? Happy to pay a fee."]
cands = [b for b in open_b if b["fare_class"] == "basic" and not E.disrupted(W, b) and alternatives(b)]
for i, b in enumerate(cands[:5]):
    ref = b["booking_ref"]
    alt = alternatives(b)[0]
    user = hello(b) + f"" + BASIC_CHG[i % len(BASIC_CHG)].format(alt=alt["flight_no"])
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    add(f"basic-change-refusal-{i + 1}", 2,
        [turn(user, reads, f"I'm sorry — your booking {ref} is a basic fare, and basic fares cannot be changed, so I can't move you.")],
        [{"evidence": [ev("get_booking", "booking_ref", ref)], "facts": [{"fact": "refusal", "reason": "basic_change"}]}],
        [probe("change-anyway", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=alt["flight_no"], charge_usd=75 * b["passengers"])]],
                                 f"Your basic fare can't normally be changed, but I moved you to {alt['flight_no']}."))])
    used.add(ref)

# ---------------------------------------------------------------- G. cancellations (d3)
CAN_Q = ["Please cancel my booking and refund me.", "I can't travel anymore. Cancel it, please — what do I get back?",
         "Cancel this reservation. How much will be refunded, and where does it go?",
         "We need to cancel the trip. Please process it.", "I'd like to cancel my flight."]
groups = {"flex": [], "standard": [], "fresh": [], "disrupted": []}
for b in open_b:
    p = E.policy_cancel(W, b["booking_ref"])
    if p is None or flight(b["flight_no"])["status"] == "departed":
        continue
    if E.disrupted(W, b):
        groups["disrupted"].append(b)
    elif E.now() - E._t(b["booked_at"]) < E.dt.timedelta(hours=24):
        groups["fresh"].append(b)
    else:
        groups[b["fare_class"]].append(b)
n = 0
for g, k in (("flex", 2), ("standard", 3), ("fresh", 2), ("disrupted", 2)):
    for b in groups[g][:k]:
        ref = b["booking_ref"]
        amt, method = E.policy_cancel(W, ref)
        user = hello(b) + f"" + CAN_Q[n % len(CAN_Q)]
        reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
        wrong = (b["fare_paid"], "original_payment") if (amt, method) != (b["fare_paid"], "original_payment") \
            else (max(0, b["fare_paid"] - 10000 * b["passengers"]), "travel_credit")
        where = "to your original payment method" if method == "original_payment" else "as travel credit"
        add(f"cancel-{g}-{n + 1}", 3,
            [turn(user, reads + [[C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]],
                  f"Booking {ref} is cancelled. {money(amt)} will be refunded {where}.")],
            [{"ops": [{"op": "cancel", "ref": ref}], "evidence": [ev("get_booking", "booking_ref", ref)]}],
            [probe("wrong-refund", (reads + [[C("cancel_booking", booking_ref=ref, refund_usd=wrong[0] / 100, refund_method=wrong[1])]],
                                    f"Cancelled; {money(wrong[0])} refunded."))])
        used.add(ref)
        n += 1

# ---------------------------------------------------------------- H. basic cancel refusal (d3)
BC_Q = ["Please cancel and refund my ticket.", "I want my money back for this booking, please cancel it.",
        "Cancel my reservation — I'd like a refund to my card.", "Can I cancel and get at least some credit?"]
cands = [b for b in open_b if E.policy_cancel(W, b["booking_ref"]) is None]
for i, b in enumerate(cands[:4]):
    ref = b["booking_ref"]
    user = hello(b) + f"" + BC_Q[i]
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    add(f"basic-cancel-refusal-{i + 1}", 3,
        [turn(user, reads, f"Booking {ref} is a basic fare booked more than 24 hours ago, and its flight is operating normally; basic fares are non-refundable, so I can't cancel it for a refund.")],
        [{"evidence": [ev("get_booking", "booking_ref", ref), ev("get_flight", "flight_no", b["flight_no"])],
          "facts": [{"fact": "refusal", "reason": "basic_cancel"}]}],
        [probe("cancel-anyway", (reads + [[C("cancel_booking", booking_ref=ref, refund_usd=0, refund_method="travel_credit")]],
                                 "Basic fares are non-refundable, but I cancelled it with a $0 refund."))])
    used.add(ref)

# ---------------------------------------------------------------- I. identity refusal (d2)
for i, b in enumerate([b for b in open_b if b["fare_class"] != "basic"][5:9]):
    ref = b["booking_ref"]
    wrong_last = pick([x for x in ["Hughes", "Morales", "Lindgren", "Kaur", "Dubois", "Ivanova"] if x != b["lead_last_name"]])
    ask = pick(["Cancel it, please.", "Move me to the next flight.", "What flight is this on?", "Please cancel and refund it."])
    user = hello(b, wrong_last) + ask
    reads = [[C("get_booking", booking_ref=ref)]]
    amt, method = E.policy_cancel(W, ref)
    add(f"identity-refusal-{i + 1}", 2,
        [turn(user, reads, f"I'm sorry, but the last name you gave doesn't match booking {ref}, so I can't discuss or change it. Please check the reference and the lead passenger's last name.")],
        [{"evidence": [ev("get_booking", "booking_ref", ref)],
          "facts": [{"fact": "refusal", "reason": "identity"}, {"fact": "no_leak", "ref": ref}]}],
        [probe("act-anyway", (reads + [[C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]],
                              f"Booking {ref} is cancelled.")),
         probe("leak", (reads, f"I can't verify you, but the booking is on {b['flight_no']}."))])
    used.add(ref)

# ---------------------------------------------------------------- J. vouchers (d3) and refusals
VQ = ["My flight isn't leaving on time. Am I owed any compensation? If so, please issue it.",
      "This disruption is ruining my day — what compensation do you offer? Please apply it.",
      "Can I get a voucher for what's happening with my flight? Please issue whatever applies.",
      "I'd like compensation for the disruption to my flight, please."]
vb = [b for b in B if flight(b["flight_no"])["status"] in ("delayed", "cancelled")]
due = [b for b in vb if E.policy_voucher(W, b["booking_ref"]) is not None]
not_due = [b for b in vb if E.policy_voucher(W, b["booking_ref"]) is None]
for i, b in enumerate(due[:5]):
    ref = b["booking_ref"]
    c = E.policy_voucher(W, ref)
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    user = hello(b) + f"" + VQ[i % len(VQ)]
    wrong = 5000 * b["passengers"] if c != 5000 * b["passengers"] else 15000 * b["passengers"]
    add(f"voucher-{i + 1}", 3,
        [turn(user, reads + [[C("issue_voucher", booking_ref=ref, amount_usd=c / 100)]],
              f"I've issued a travel voucher of {money(c)} on booking {ref}.")],
        [{"ops": [{"op": "voucher", "ref": ref}], "evidence": [ev("get_flight", "flight_no", b["flight_no"])]}],
        [probe("wrong-tier", (reads + [[C("issue_voucher", booking_ref=ref, amount_usd=wrong / 100)]],
                              f"Voucher of {money(wrong)} issued."))])
for i, b in enumerate(not_due[:4]):
    ref = b["booking_ref"]
    f = flight(b["flight_no"])
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]]
    user = hello(b) + f"" + VQ[(i + 2) % len(VQ)]
    add(f"voucher-refusal-{i + 1}", 3,
        [turn(user, reads, f"Flight {f['flight_no']} is delayed by {f['delay_min']} minutes. Compensation starts at delays of 120 minutes, so this delay is not eligible for a voucher.")],
        [{"evidence": [ev("get_flight", "flight_no", f["flight_no"])], "facts": [{"fact": "refusal", "reason": "no_compensation"}]}],
        [probe("voucher-anyway", (reads + [[C("issue_voucher", booking_ref=ref, amount_usd=50 * b["passengers"])]],
                                  "The delay is not eligible under 120 minutes, but I issued a goodwill voucher anyway."))])

# ---------------------------------------------------------------- K. departs within 2 hours (d4)
soon = [b for b in B if b["status"] == "confirmed" and flight(b["flight_no"])["status"] != "cancelled"
        and 0 < W.minutes_to_departure(flight(b["flight_no"])) < 120 and b["fare_class"] != "basic"]
for i, b in enumerate(soon[:4]):
    ref = b["booking_ref"]
    alts = alternatives(b)
    ask = pick(["I'm stuck in traffic — please move me to a later flight today.",
                "Can you cancel this booking? I won't make it.",
                "Please put me on a later departure, I'm running late."])
    user = hello(b) + f"{ask}"
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    if "cancel" in ask:
        amt, method = E.policy_cancel(W, ref)
        bad = [[C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]]
    elif alts:
        bad = [[C("change_flight", booking_ref=ref, new_flight_no=alts[0]["flight_no"], charge_usd=E.policy_change(W, ref, alts[0]["flight_no"]) / 100)]]
    else:
        continue
    m = W.minutes_to_departure(flight(b["flight_no"]))
    add(f"two-hour-refusal-{i + 1}", 4,
        [turn(user, reads, f"Your flight {b['flight_no']} leaves in {m} minutes. Changes and cancellations are not possible within 2 hours of departure, so I can't do that now.")],
        [{"evidence": [ev("get_flight", "flight_no", b["flight_no"])], "facts": [{"fact": "refusal", "reason": "two_hours"}]}],
        [probe("act-anyway", (reads + bad, "Within 2 hours of departure, but done anyway."))])

# ---------------------------------------------------------------- L. disrupted rebooking (d4)
DQ = ["I just got a notification about my flight. Put {us} on the earliest flight on the same route that has seats for all of us{when}.",
      "Please rebook {us} on the earliest possible flight on the same route with room for everyone{when}.",
      "What are my options? Just move {us} to the first flight with enough seats{when}, please."]
dis = [b for b in open_b if E.disrupted(W, b)]
n = 0
for b in dis:
    f = flight(b["flight_no"])
    alts = [a for a in alternatives(b) if a["departure"] > f["departure"]]
    if not alts or n >= 5:
        continue
    tgt = alts[0]
    full = [a for a in alternatives(b, exclude_full=False) if a["departure"] > f["departure"] and a["departure"] < tgt["departure"]]
    ref = b["booking_ref"]
    us = "me" if b["passengers"] == 1 else "us"
    when = "" if n % 2 else ", even if it's another day"
    user = hello(b) + f"" + DQ[n % len(DQ)].format(us=us, when=when)
    dates = sorted({a["departure"][:10] for a in full + [tgt]} | {f["departure"][:10]})
    reads = [[C("get_booking", booking_ref=ref)],
             [C("get_flight", flight_no=f["flight_no"])] + [C("search_flights", origin=f["origin"], destination=f["destination"], date=d) for d in dates]]
    fee = 7500 * b["passengers"]
    probes = [probe("charged-fee", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=fee / 100)]],
                                    f"Moved you to {tgt['flight_no']} for {money(fee)}."))]
    if len(alts) > 1:
        probes.append(probe("not-earliest", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=alts[1]["flight_no"], charge_usd=0)]],
                                             f"Moved you to {alts[1]['flight_no']} at no charge.")))
    add(f"disrupted-rebook-{n + 1}", 4 if not full else 5,
        [turn(user, reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=0)]],
              f"Your flight {f['flight_no']} is {f['status']}, so the change is free of charge: you are now on {tgt['flight_no']} departing {tgt['departure'].replace('T', ' ')} UTC.")],
        [{"ops": [{"op": "change", "ref": ref, "flight": tgt["flight_no"]}], "evidence": [ev("get_flight", "flight_no", f["flight_no"])]}],
        probes)
    n += 1

# ---------------------------------------------------------------- M. multi-turn
# M1 status -> voucher (d3)
for i, b in enumerate(due[5:9] + due[:2]):
    ref = b["booking_ref"]
    f = flight(b["flight_no"])
    c = E.policy_voucher(W, ref)
    reads1 = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]]
    t2 = pick(["That's really annoying. Do I get anything for this? Please sort it out.",
               "OK. Is there compensation for that? If so, go ahead.",
               "Then I'd like whatever compensation you offer, please."])
    add(f"mt-status-voucher-{i + 1}", 3,
        [turn(hello(b) + f"{pick(STATUS_Q)}", reads1, status_text(f)),
         turn(t2, [[C("get_flight", flight_no=f["flight_no"])], [C("issue_voucher", booking_ref=ref, amount_usd=c / 100)]],
              f"Yes — I've issued a voucher of {money(c)} on booking {ref}.")],
        [{"evidence": [ev("get_flight", "flight_no", f["flight_no"])], "facts": [{"fact": "status", "flight": f["flight_no"]}]},
         {"ops": [{"op": "voucher", "ref": ref}], "evidence": []}],
        [probe("double-tier", (reads1, status_text(f)),
               ([[C("issue_voucher", booking_ref=ref, amount_usd=(c + 5000) / 100)]], f"Voucher of {money(c + 5000)} issued."))])

# M2 change -> bags (d4)
n = 0
for b, tgt in change_pool[8:]:
    if n >= 8:
        break
    ref = b["booking_ref"]
    if b["bags"] + 1 > 2 * b["passengers"]:
        continue
    env2 = E.Env(0, {})
    c1 = E.apply_op(env2, {"op": "change", "ref": ref, "flight": tgt["flight_no"]})
    k = min(2 * b["passengers"] - b["bags"], pick([1, 2]))
    c2 = E.policy_bags(env2, ref, k)
    f = flight(b["flight_no"])
    reads = [[C("get_booking", booking_ref=ref)],
             [C("get_flight", flight_no=f["flight_no"]), C("search_flights", origin=f["origin"], destination=f["destination"], date=tgt["departure"][:10])]]
    target, _ = describe_target(b, tgt, None)
    s = "" if k == 1 else "s"
    add(f"mt-change-bags-{n + 1}", 4,
        [turn(hello(b) + f"" + pick(CHG_Q).format(target=target),
              reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c1 / 100)]],
              f"You're now on {tgt['flight_no']}; the change cost {money(c1)}."),
         turn(pick([f"Great. Also add {k} checked bag{s} for that flight.", f"Thanks! We'll need {k} checked bag{s} too.",
                    f"Perfect — and please add {k} bag{s}. What's the damage?"]),
              [[C("get_booking", booking_ref=ref)], [C("add_bags", booking_ref=ref, count=k, charge_usd=c2 / 100)]],
              f"Added {k} bag{s} for {money(c2)}.")],
        [{"ops": [{"op": "change", "ref": ref, "flight": tgt["flight_no"]}], "evidence": [ev("get_booking", "booking_ref", ref)]},
         {"ops": [{"op": "bags", "ref": ref, "count": k}], "evidence": []}],
        [probe("bags-flat", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c1 / 100)]], f"{tgt['flight_no']}, {money(c1)}."),
               ([[C("add_bags", booking_ref=ref, count=k, charge_usd=(c2 + 4000) / 100)]], f"Added for {money(c2 + 4000)}."))])
    n += 1

# M3 basic cancel refusal -> add a bag (d4)
n = 0
for b in cands[4:]:
    if n >= 4 or not bag_ok(b, 1):
        continue
    ref = b["booking_ref"]
    c = E.policy_bags(W, ref, 1)
    reads = [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=b["flight_no"])]]
    add(f"mt-refuse-then-bag-{n + 1}", 4,
        [turn(hello(b) + f"" + pick(BC_Q), reads,
              "This is a basic fare, which is non-refundable, so I can't cancel it for a refund."),
         turn(pick(["Fine, I'll fly then. Add one checked bag.", "OK, forget it. Can you at least add a checked bag?",
                    "Understood. Then add a single checked bag to it please."]),
              [[C("add_bags", booking_ref=ref, count=1, charge_usd=c / 100)]], f"Added one checked bag for {money(c)}.")],
        [{"evidence": [ev("get_booking", "booking_ref", ref)], "facts": [{"fact": "refusal", "reason": "basic_cancel"}]},
         {"ops": [{"op": "bags", "ref": ref, "count": 1}], "evidence": []}],
        [probe("cancel-then-fail", (reads + [[C("cancel_booking", booking_ref=ref, refund_usd=0, refund_method="travel_credit")]], "Basic is non-refundable; cancelled with no refund."),
               ([[C("add_bags", booking_ref=ref, count=1, charge_usd=c / 100)]], f"Added for {money(c)}."))])
    n += 1

# M4 quote -> change to the cheapest (d4/5)
n = 0
for b in [b for b in open_b if b["fare_class"] in ("standard", "flex") and not E.disrupted(W, b)]:
    if n >= 5:
        break
    f = flight(b["flight_no"])
    day = f["departure"][:10]
    nxt = f"2025-06-{int(day[8:10]) + 1:02d}"
    best = E.cheapest(W, f["origin"], f["destination"], nxt, b["fare_class"], b["passengers"])
    if best is None or best[2] == f["flight_no"]:
        continue
    ref = b["booking_ref"]
    c = E.policy_change(W, ref, best[2])
    t1calls = [[C("get_booking", booking_ref=ref)], [C("search_flights", origin=f["origin"], destination=f["destination"], date=nxt)]]
    add(f"mt-quote-change-{n + 1}", 5 if b["passengers"] > 1 else 4,
        [turn(hello(b) + f"" + pick(["What's the cheapest flight the day after my current one, in my fare class, with room for my whole party?",
                                                   "If I pushed my trip back by a day, which flight would be cheapest for my fare class and group size?",
                                                   "I'm thinking of flying a day later. Which flight that day is cheapest for us in the same fare class?"]),
              t1calls, f"The cheapest option on {nxt} is {best[2]} at {money(best[0])} per person."),
         turn(pick(["Let's do it — move me to that one. What will it cost?", "Sounds good, switch the booking to it.",
                    "OK, please book that change and tell me the charge."]),
              [[C("change_flight", booking_ref=ref, new_flight_no=best[2], charge_usd=c / 100)]],
              f"You're now on {best[2]}; the charge is {money(c)}.")],
        [{"evidence": [ev("search_flights", "flight_no", best[2]), ev("get_booking", "booking_ref", ref)],
          "facts": [{"fact": "cheapest", "origin": f["origin"], "destination": f["destination"], "date": nxt,
                     "fare_class": b["fare_class"], "pax": b["passengers"]}]},
         {"ops": [{"op": "change", "ref": ref, "flight": best[2]}], "evidence": []}],
        [probe("no-fee", (t1calls, f"The cheapest option on {nxt} is {best[2]} at {money(best[0])} per person."),
               ([[C("change_flight", booking_ref=ref, new_flight_no=best[2], charge_usd=(c + 7500) / 100)]], f"Moved; {money(c + 7500)}."))])
    n += 1

# M5 disrupted: status -> rebook -> voucher (d5)
n = 0
for b in dis:
    f = flight(b["flight_no"])
    alts = [a for a in alternatives(b) if a["departure"] > f["departure"]]
    if not alts or n >= 4 or E.policy_voucher(W, b["booking_ref"]) is None:
        continue
    tgt = alts[0]
    ref = b["booking_ref"]
    v = E.policy_voucher(W, ref)  # computed on the original flight; after the change the flight differs
    env3 = E.Env(0, {})
    env3.issue_voucher(ref, v / 100)
    dates = sorted({a["departure"][:10] for a in alternatives(b, exclude_full=False) if a["departure"] <= tgt["departure"] and a["departure"] > f["departure"]} | {f["departure"][:10]})
    reads2 = [[C("search_flights", origin=f["origin"], destination=f["destination"], date=d) for d in dates]]
    add(f"mt-disruption-{n + 1}", 5,
        [turn(hello(b) + f"{pick(STATUS_Q)}", [[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]], status_text(f)),
         turn(pick(["Ugh. Then first sort out compensation for this, please.", "I want the compensation I'm owed for this, before anything else.",
                    "Please issue whatever voucher applies first."]),
              [[C("get_flight", flight_no=f["flight_no"])], [C("issue_voucher", booking_ref=ref, amount_usd=v / 100)]],
              f"Issued a voucher of {money(v)}."),
         turn(pick(["Now move us to the earliest flight on the same route that has enough seats for everyone.",
                    "And rebook me on the first flight on that route with seats for my whole booking."]),
              reads2 + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=0)]],
              f"Done: you're on {tgt['flight_no']}, free of charge because your original flight was disrupted.")],
        [{"evidence": [ev("get_flight", "flight_no", f["flight_no"])], "facts": [{"fact": "status", "flight": f["flight_no"]}]},
         {"ops": [{"op": "voucher", "ref": ref}], "evidence": []},
         {"ops": [{"op": "change", "ref": ref, "flight": tgt["flight_no"]}], "evidence": [ev("search_flights", "flight_no", tgt["flight_no"])]}],
        [probe("fee-charged", ([[C("get_booking", booking_ref=ref)], [C("get_flight", flight_no=f["flight_no"])]], status_text(f)),
               ([[C("issue_voucher", booking_ref=ref, amount_usd=v / 100)]], f"Issued {money(v)}."),
               (reads2 + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=75 * b["passengers"])]], f"Moved to {tgt['flight_no']}."))])
    n += 1

# M6 identity failure then success -> cancel (d4)
n = 0
for b in [b for b in open_b if E.policy_cancel(W, b["booking_ref"]) is not None and flight(b["flight_no"])["status"] != "departed"][12:]:
    if n >= 6:
        break
    ref = b["booking_ref"]
    amt, method = E.policy_cancel(W, ref)
    wrong_last = pick([x for x in ["Hughes", "Morales", "Lindgren", "Kaur"] if x != b["lead_last_name"]])
    first = W.customers[b["customer_id"]]["first_name"]
    reads = [[C("get_booking", booking_ref=ref)]]
    where = "to your original payment method" if method == "original_payment" else "as travel credit"
    add(f"mt-identity-cancel-{n + 1}", 4,
        [turn(cap(f"{pick(GREET)}Booking {ref}, name {first} {wrong_last}. Please cancel it."), reads,
              "The name you gave doesn't match this booking, so I can't change it. Could you confirm the lead passenger's last name?"),
         turn(pick([f"Sorry, it's under my maiden name: {b['lead_last_name']}.", f"My mistake, the booking is under {b['lead_last_name']}.",
                    f"Oops — last name {b['lead_last_name']}, that's the one on the ticket."]),
              [[C("get_booking", booking_ref=ref), C("get_flight", flight_no=b["flight_no"])],
               [C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]],
              f"Thanks, verified. Booking {ref} is cancelled and {money(amt)} will be refunded {where}.")],
        [{"evidence": [ev("get_booking", "booking_ref", ref)], "facts": [{"fact": "refusal", "reason": "identity"}, {"fact": "no_leak", "ref": ref}]},
         {"ops": [{"op": "cancel", "ref": ref}], "evidence": [ev("get_booking", "booking_ref", ref)]}],
        [probe("cancel-unverified", (reads + [[C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]], "Cancelled."),
               ([[C("get_booking", booking_ref=ref)]], f"Booking {ref} is cancelled, {money(amt)} refunded."))])
    n += 1

# M7 change -> then cancel (d5): the refund depends on the fare paid after the change
n = 0
for b, tgt in change_pool[16:]:
    if n >= 6:
        break
    ref = b["booking_ref"]
    env2 = E.Env(0, {})
    c1 = E.apply_op(env2, {"op": "change", "ref": ref, "flight": tgt["flight_no"]})
    amt, method = E.policy_cancel(env2, ref)
    f = flight(b["flight_no"])
    reads = [[C("get_booking", booking_ref=ref)],
             [C("get_flight", flight_no=f["flight_no"]), C("search_flights", origin=f["origin"], destination=f["destination"], date=tgt["departure"][:10])]]
    where = "to your original payment method" if method == "original_payment" else "as travel credit"
    amt0, _ = E.policy_cancel(W, ref)
    add(f"mt-change-cancel-{n + 1}", 5,
        [turn(hello(b) + f"Please move me to {tgt['flight_no']}.",
              reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c1 / 100)]],
              f"You're on {tgt['flight_no']} now; the change cost {money(c1)}."),
         turn(pick(["Actually, plans fell through entirely. Cancel the whole booking — how much do I get back?",
                    "Hmm, on second thought just cancel everything. What's the refund?"]),
              [[C("get_booking", booking_ref=ref)], [C("cancel_booking", booking_ref=ref, refund_usd=amt / 100, refund_method=method)]],
              f"Cancelled; {money(amt)} will be refunded {where}.")],
        [{"ops": [{"op": "change", "ref": ref, "flight": tgt["flight_no"]}], "evidence": [ev("get_booking", "booking_ref", ref)]},
         {"ops": [{"op": "cancel", "ref": ref}], "evidence": [ev("get_booking", "booking_ref", ref)]}],
        [probe("stale-refund", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c1 / 100)]], f"{tgt['flight_no']}, {money(c1)}."),
               ([[C("get_booking", booking_ref=ref)], [C("cancel_booking", booking_ref=ref, refund_usd=amt0 / 100, refund_method=method)]], f"Cancelled; {money(amt0)}."))]
        if amt0 != amt else
        [probe("change-not-cancel", (reads + [[C("change_flight", booking_ref=ref, new_flight_no=tgt["flight_no"], charge_usd=c1 / 100)]], f"{tgt['flight_no']}, {money(c1)}."),
               ([[C("get_booking", booking_ref=ref)]], f"Cancelled; {money(amt)}."))])
    n += 1

tasks.write(PKG)
