#!/usr/bin/env python3
"""Write environments/packages/clinic/data/*.csv (deterministic)."""
import csv
import datetime as dt
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "environments", "packages", "clinic", "data")
r = random.Random(915)
TODAY = dt.date(2025, 9, 15)

doctors = [
    ("D01", "Dr. Helen Park", "family medicine", "Mon;Tue;Wed;Thu;Fri"),
    ("D02", "Dr. Samuel Osei", "family medicine", "Mon;Wed;Fri"),
    ("D03", "Dr. Lucia Ferreira", "family medicine", "Tue;Thu"),
    ("D04", "Dr. Arjun Mehta", "cardiology", "Mon;Thu"),
    ("D05", "Dr. Claire Dubois", "cardiology", "Tue;Wed;Fri"),
    ("D06", "Dr. Kenji Watanabe", "dermatology", "Mon;Tue;Thu"),
    ("D07", "Dr. Fiona Gallagher", "dermatology", "Wed;Fri"),
    ("D08", "Dr. Marcus Hill", "endocrinology", "Tue;Thu;Fri"),
    ("D09", "Dr. Ana Kovac", "psychiatry", "Mon;Wed;Thu"),
    ("D10", "Dr. Robert Lin", "pediatrics", "Mon;Tue;Wed;Thu;Fri"),
    ("D11", "Dr. Grace Adeyemi", "orthopedics", "Wed;Thu"),
    ("D12", "Dr. Tomas Novak", "psychiatry", "Tue;Fri"),
]
FIRST = ["Alice", "Bernard", "Carla", "Devon", "Esther", "Frank", "Gloria", "Henry", "Irene", "Jorge",
         "Kathy", "Leon", "Monica", "Nathan", "Olivia", "Paul", "Rita", "Simon", "Teresa", "Umar",
         "Vera", "Walter", "Xenia", "Yosef", "Zelda", "Aaron", "Bella", "Colin", "Diana", "Eli",
         "Fay", "Gavin", "Hilda", "Ian", "Joy", "Karl", "Lila", "Miles", "Nell", "Owen", "Pia", "Reed"]
LAST = ["Abbott", "Brooks", "Chavez", "Dalton", "Ellis", "Foster", "Grant", "Hayes", "Ibarra", "Jensen",
        "Keller", "Lowe", "Mendez", "Nolan", "Ortiz", "Pryor", "Quinn", "Ramos", "Stone", "Tran",
        "Underwood", "Vance", "Walsh", "Xu", "Young", "Zamora"]
patients = []
names = set()
for i in range(42):
    while True:
        n = (r.choice(FIRST), r.choice(LAST))
        if n not in names:
            names.add(n)
            break
    dob = dt.date(r.randint(1941, 2018), r.randint(1, 12), r.randint(1, 28))
    patients.append({"patient_id": f"P{3001 + i}", "first_name": n[0], "last_name": n[1],
                     "dob": dob.isoformat(), "phone": f"555-{r.randint(100, 999)}-{r.randint(1000, 9999)}"})
# two patients with the same name, different birth dates (identity matters)
patients[41]["first_name"], patients[41]["last_name"] = patients[7]["first_name"], patients[7]["last_name"]
meds = [("atorvastatin", "statin", 0), ("lisinopril", "ace inhibitor", 0), ("metformin", "biguanide", 0),
        ("levothyroxine", "thyroid hormone", 0), ("sertraline", "ssri", 0), ("amlodipine", "calcium channel blocker", 0),
        ("albuterol inhaler", "bronchodilator", 0), ("omeprazole", "proton pump inhibitor", 0),
        ("methylphenidate", "stimulant", 2), ("oxycodone", "opioid", 2), ("zolpidem", "sedative", 4),
        ("alprazolam", "benzodiazepine", 4), ("tretinoin cream", "retinoid", 0), ("insulin glargine", "insulin", 0),
        ("losartan", "arb", 0), ("escitalopram", "ssri", 0), ("montelukast", "leukotriene antagonist", 0),
        ("gabapentin", "anticonvulsant", 5)]
DOSES = {"atorvastatin": "20 mg once daily", "lisinopril": "10 mg once daily", "metformin": "500 mg twice daily",
         "levothyroxine": "75 mcg every morning", "sertraline": "50 mg once daily", "amlodipine": "5 mg once daily",
         "albuterol inhaler": "2 puffs every 4-6 hours as needed", "omeprazole": "20 mg before breakfast",
         "methylphenidate": "10 mg twice daily", "oxycodone": "5 mg every 6 hours as needed", "zolpidem": "5 mg at bedtime",
         "alprazolam": "0.25 mg up to three times daily", "tretinoin cream": "apply thin layer nightly",
         "insulin glargine": "20 units at bedtime", "losartan": "50 mg once daily", "escitalopram": "10 mg once daily",
         "montelukast": "10 mg in the evening", "gabapentin": "300 mg three times daily"}
medications = [{"drug": d, "drug_class": c, "schedule": s} for d, c, s in meds]
SPEC_DRUGS = {"family medicine": ["lisinopril", "metformin", "omeprazole", "albuterol inhaler", "montelukast", "zolpidem", "gabapentin", "oxycodone"],
              "cardiology": ["atorvastatin", "amlodipine", "losartan", "lisinopril"],
              "dermatology": ["tretinoin cream"], "endocrinology": ["levothyroxine", "insulin glargine", "metformin"],
              "psychiatry": ["sertraline", "escitalopram", "methylphenidate", "alprazolam"],
              "pediatrics": ["albuterol inhaler", "montelukast", "methylphenidate"], "orthopedics": ["gabapentin", "oxycodone"]}
prescriptions = []
n = 0
for p in patients:
    for _ in range(r.choice([0, 1, 1, 2, 2, 3])):
        doc = r.choice(doctors)
        drug = r.choice(SPEC_DRUGS[doc[2]])
        if any(x["patient_id"] == p["patient_id"] and x["drug"] == drug for x in prescriptions):
            continue
        n += 1
        supply = r.choice([30, 30, 30, 60, 90])
        total = r.choice([0, 1, 2, 3, 5, 5, 11])
        used = r.randint(0, total)
        last = TODAY - dt.timedelta(days=r.randint(2, supply + 20))
        issued = last - dt.timedelta(days=used * supply + r.randint(0, 30))
        if r.random() < 0.1:
            issued = TODAY - dt.timedelta(days=r.randint(370, 420))
        prescriptions.append({"rx_id": f"RX{7100 + n}", "patient_id": p["patient_id"], "drug": drug,
                              "dose": DOSES[drug],
                              "prescriber": doc[0], "issued": issued.isoformat(), "days_supply": supply,
                              "refills_total": total, "refills_used": used, "last_fill": last.isoformat()})
appointments = []
n = 0
for p in patients:
    for _ in range(r.choice([0, 1, 1, 2])):
        doc = r.choice(doctors)
        days = [TODAY + dt.timedelta(days=k) for k in range(-20, 15)]
        days = [d for d in days if d.strftime("%a") in doc[3].split(";")]
        d = r.choice(days)
        hh = r.choice([9, 9.5, 10, 10.5, 11, 11.5, 13, 13.5, 14, 14.5, 15, 15.5, 16, 16.5])
        start = dt.datetime(d.year, d.month, d.day, int(hh), 30 if hh % 1 else 0)
        if any(a["doctor_id"] == doc[0] and a["start"] == start.isoformat(timespec="minutes") for a in appointments):
            continue
        n += 1
        past = start < dt.datetime(2025, 9, 15, 9, 0)
        appointments.append({"appointment_id": f"A{5200 + n}", "patient_id": p["patient_id"], "doctor_id": doc[0],
                             "start": start.isoformat(timespec="minutes"), "reason": r.choice(["check-up", "follow-up", "consultation", "review of results"]),
                             "status": r.choice(["completed", "completed", "no_show"]) if past else "booked"})
# other patients' bookings that fill the doctors' calendars
for k in range(160):
    doc = r.choice(doctors)
    d = TODAY + dt.timedelta(days=r.randint(0, 14))
    if d.strftime("%a") not in doc[3].split(";"):
        continue
    hh = r.choice([9, 9.5, 10, 10.5, 11, 11.5, 13, 13.5, 14, 14.5, 15, 15.5, 16, 16.5])
    start = dt.datetime(d.year, d.month, d.day, int(hh), 30 if hh % 1 else 0)
    if start < dt.datetime(2025, 9, 15, 9, 0) or any(a["doctor_id"] == doc[0] and a["start"] == start.isoformat(timespec="minutes") for a in appointments):
        continue
    n += 1
    appointments.append({"appointment_id": f"A{5200 + n}", "patient_id": "P9999", "doctor_id": doc[0],
                         "start": start.isoformat(timespec="minutes"), "reason": "other patient", "status": "booked"})


def dump(name, rows):
    with open(os.path.join(OUT, name), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


dump("doctors.csv", [{"doctor_id": a, "name": b, "specialty": c, "days": d} for a, b, c, d in doctors])
dump("patients.csv", patients)
dump("medications.csv", medications)
dump("prescriptions.csv", prescriptions)
dump("appointments.csv", appointments)
print(len(patients), "patients", len(prescriptions), "prescriptions", len(appointments), "appointments")
