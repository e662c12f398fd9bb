#!/usr/bin/env python3
"""Write environments/packages/airline/data/*.csv (deterministic; rerun only to change the world)."""
import csv
import datetime as dt
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "environments", "packages", "airline", "data")
r = random.Random(20250612)

AIRPORTS = {"SEA": "Seattle", "PDX": "Portland", "SFO": "San Francisco", "LAX": "Los Angeles",
            "DEN": "Denver", "ORD": "Chicago O'Hare", "BOS": "Boston", "JFK": "New York JFK",
            "ATL": "Atlanta", "AUS": "Austin", "MIA": "Miami", "PHX": "Phoenix"}
ROUTES = [("SEA", "SFO", 125), ("SFO", "SEA", 125), ("SEA", "DEN", 165), ("DEN", "SEA", 170),
          ("PDX", "LAX", 145), ("LAX", "PDX", 145), ("SFO", "JFK", 330), ("JFK", "SFO", 370),
          ("ORD", "BOS", 135), ("BOS", "ORD", 155), ("ATL", "MIA", 110), ("MIA", "ATL", 110),
          ("DEN", "AUS", 140), ("AUS", "DEN", 145), ("PHX", "ORD", 200), ("ORD", "PHX", 215)]
DAYS = [dt.date(2025, 6, d) for d in range(12, 18)]
FIRST = ["Amara", "Ben", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
         "Keiko", "Liam", "Maya", "Nikhil", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tara",
         "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Aiden", "Bianca", "Caleb", "Dana",
         "Emil", "Fatima", "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Mateo", "Nora"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Petrov", "Garcia", "Haddad", "Kim", "Tanaka", "Silva",
        "Becker", "Sato", "Murphy", "Patel", "Iyer", "Novak", "Alves", "Reilly", "Diaz", "Rahman",
        "Nguyen", "Shah", "Costa", "Zhang", "Lopez", "Aydin", "Fischer", "Brennan", "Rossi",
        "Mensah", "Kowalski", "Larsen", "Hussein", "Berg", "Yamada", "Volkov", "Schmidt",
        "Owusu", "Weber", "Romero", "Ahmed"]

flights = []
num = 1100
for day in DAYS:
    for org, dst, dur in ROUTES:
        for _ in range(r.choice([2, 2, 3])):
            num += r.randint(1, 3)
            hh = r.choice([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20])
            mm = r.choice([0, 10, 15, 25, 30, 40, 45, 55])
            dep = dt.datetime(day.year, day.month, day.day, hh, mm)
            arr = dep + dt.timedelta(minutes=dur)
            base = dur * 55 + r.randint(-1500, 3000)
            basic = round(base / 100) * 100 - 1 + 100 * r.randint(0, 3)
            flights.append({"flight_no": f"SK{num}", "origin": org, "destination": dst,
                            "departure": dep.strftime("%Y-%m-%dT%H:%M"),
                            "arrival": arr.strftime("%Y-%m-%dT%H:%M"),
                            "basic": basic, "standard": basic + r.choice([4000, 5000, 6000]),
                            "flex": basic + r.choice([11000, 13000, 15000, 18000]),
                            "seats_left": r.choice([0, 1, 2, 3, 4, 6, 9, 12, 15, 20, 24]),
                            "status": "scheduled", "delay_min": 0})
# Disruptions: flights on the 12th and 13th.
now = dt.datetime(2025, 6, 12, 8, 0)
for f in flights:
    dep = dt.datetime.fromisoformat(f["departure"])
    if dep <= now:
        f["status"] = "departed"
    elif dep.date() <= dt.date(2025, 6, 13):
        x = r.random()
        if x < 0.12:
            f["status"] = "cancelled"
        elif x < 0.40:
            f["status"] = "delayed"
            f["delay_min"] = r.choice([25, 45, 70, 95, 130, 150, 185, 210, 260])
flights.sort(key=lambda f: (f["departure"], f["flight_no"]))

customers = []
used = set()
for i in range(48):
    while True:
        fn, ln = r.choice(FIRST), r.choice(LAST)
        if (fn, ln) not in used:
            used.add((fn, ln))
            break
    customers.append({"customer_id": f"C{2001 + i}", "first_name": fn, "last_name": ln,
                      "email": f"{fn.lower()}.{ln.lower()}@{r.choice(['mail.com', 'example.org', 'inbox.net', 'post.io'])}",
                      "tier": r.choice(["member"] * 5 + ["silver"] * 2 + ["gold"] * 2)})

ALPH = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
bookings = []
refs = set()
future = [f for f in flights if f["status"] != "departed"]
for i in range(96):
    c = customers[i % len(customers)] if i < 48 else r.choice(customers)
    f = r.choice(future if i % 7 else flights)
    while True:
        ref = "".join(r.choice(ALPH) for _ in range(6))
        if ref not in refs:
            refs.add(ref)
            break
    fare = r.choice(["basic", "basic", "standard", "standard", "standard", "flex"])
    pax = r.choice([1, 1, 1, 2, 2, 3])
    paid = f[fare] + r.choice([-3000, -2000, -1000, 0, 0, 0, 1000, 2000])
    hours_ago = r.choice([3, 9, 20, 30, 50, 100, 300, 700, 1500])
    booked = now - dt.timedelta(hours=hours_ago, minutes=r.randint(0, 59))
    bags = r.choice([0, 0, 0, 1, 1, 2])
    bookings.append({"booking_ref": ref, "customer_id": c["customer_id"],
                     "lead_last_name": c["last_name"], "flight_no": f["flight_no"],
                     "fare_class": fare, "passengers": pax, "fare_paid": paid * pax,
                     "booked_at": booked.strftime("%Y-%m-%dT%H:%M"), "bags": min(bags, 2 * pax)})


def dump(name, rows):
    with open(os.path.join(OUT, name), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def cents(v):
    return f"{v // 100}.{v % 100:02d}"


for f in flights:
    for k in ("basic", "standard", "flex"):
        f[k] = cents(f[k])
for b in bookings:
    b["fare_paid"] = cents(b["fare_paid"])
dump("flights.csv", flights)
dump("customers.csv", customers)
dump("bookings.csv", bookings)
with open(os.path.join(OUT, "airports.csv"), "w", encoding="utf-8") as fh:
    fh.write("code,city\n" + "".join(f"{k},{v}\n" for k, v in AIRPORTS.items()))
print(len(flights), "flights", len(customers), "customers", len(bookings), "bookings")
