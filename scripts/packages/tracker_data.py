#!/usr/bin/env python3
"""Write environments/packages/tracker/data/*.csv (deterministic)."""
import csv
import datetime as dt
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "environments", "packages", "tracker", "data")
r = random.Random(4242)
PEOPLE = ["Priya Raman", "Tomás Ortega", "Mei Lin", "Jakob Weiss", "Aisha Bello", "Lucas Martin",
          "Sofia Greco", "Kwame Asante", "Hannah Cole", "Ravi Menon", "Elif Kaya", "Noah Fischer",
          "Yuki Mori", "Carlos Reyes", "Ingrid Dahl", "Omar Farouk", "Chloe Dupont", "Daniel Kim",
          "Zara Qureshi", "Felix Braun", "Amelia Ward", "Sven Olsen", "Leila Haddad", "Marco Bianchi",
          "Nadia Petrova", "Ethan Brooks", "Ana Souza", "Hugo Laurent", "Grace Nwosu", "Tariq Aziz",
          "Lena Vogel", "Oliver Grant"]
PROJECTS = [("WEB", "Storefront web app"), ("API", "Public REST API"), ("MOB", "Mobile apps"),
            ("DATA", "Data platform"), ("INFRA", "Infrastructure"), ("DOCS", "Developer docs")]
TITLES = {
    "WEB": ["Checkout button unresponsive on Safari", "Cart total ignores discount codes", "Dark mode toggle resets on reload",
            "Product images blurry on retina screens", "Search suggestions lag behind typing", "Cookie banner covers footer links",
            "Wishlist loses items after login", "Broken link in order confirmation email", "Add size guide to product page",
            "Pagination skips page 2 on category view", "Currency selector shows wrong symbol", "Newsletter form accepts invalid emails"],
    "API": ["Rate limiter returns 500 instead of 429", "Webhook retries fire twice", "Pagination cursor expires too early",
            "Add ETag support to /orders", "Timezone offset wrong in invoice dates", "OpenAPI spec missing refund endpoint",
            "Token refresh race condition", "Bulk import times out above 10k rows", "Deprecate v1 customer endpoints",
            "Idempotency keys not honoured on POST /payments", "Inconsistent error codes for validation", "Add filtering by updated_at"],
    "MOB": ["App crashes when camera permission denied", "Push notifications arrive twice on Android", "Offline mode loses draft orders",
            "Biometric login fails after OS update", "Scroll jank on product list", "Deep links open home screen instead of product",
            "Add haptic feedback to checkout", "Font scaling breaks order summary", "Battery drain from location polling",
            "iPad layout cuts off filters", "Sign-in with Apple loops", "Map pins misplaced in store finder"],
    "DATA": ["Nightly ETL misses late-arriving events", "Revenue dashboard double counts refunds", "Partition pruning disabled on events table",
             "Schema drift alert too noisy", "Backfill job OOMs on large tenants", "Add data retention policy for logs",
             "Customer dedup merges distinct accounts", "Slow query on sessions join", "Export to warehouse drops null columns",
             "Monitoring for stale tables", "Timezone bug in daily aggregates", "Document lineage for finance tables"],
    "INFRA": ["TLS certificate renewal failed on staging", "Disk pressure evictions on worker pool", "Terraform drift in DNS records",
              "Upgrade Postgres to 16", "Alert fatigue from CPU warnings", "Rotate leaked CI token", "Load balancer health checks flapping",
              "Backups not verified since March", "Add egress firewall rules", "Kubernetes node autoscaler too slow",
              "Secrets visible in build logs", "Migrate cron jobs to scheduler"],
    "DOCS": ["Quickstart uses deprecated auth flow", "Missing examples for webhooks", "Broken anchors in API reference",
             "Typo in pagination guide", "Add Python SDK tutorial", "Changelog not updated for 3.2",
             "Search in docs ignores code blocks", "Rate limit page contradicts API", "Translate onboarding guide to Spanish",
             "Diagram outdated in architecture page", "Add troubleshooting for SSO", "Glossary missing core terms"],
}
SECURITY = {"Rotate leaked CI token", "Secrets visible in build logs", "Token refresh race condition",
            "Biometric login fails after OS update", "Customer dedup merges distinct accounts",
            "Idempotency keys not honoured on POST /payments", "TLS certificate renewal failed on staging"}

users = []
for i, name in enumerate(PEOPLE):
    first, last = name.split()
    handle = (first[0] + last).lower().replace("á", "a").replace("ó", "o")
    users.append({"handle": handle, "name": name,
                  "global_role": "admin" if i in (7, 21) else ("guest" if i in (12, 27, 30) else "member")})
members = []
for key, _ in PROJECTS:
    pool = r.sample(users, 11)
    roles = ["maintainer", "maintainer"] + ["developer"] * 5 + ["reporter"] * 2 + ["viewer"] * 2
    for u, role in zip(pool, roles):
        if u["global_role"] == "guest" and role in ("maintainer", "developer"):
            role = "viewer"
        members.append({"project": key, "handle": u["handle"], "role": role})
projects = [{"key": k, "name": n, "lead": next(m["handle"] for m in members if m["project"] == k and m["role"] == "maintainer")}
            for k, n in PROJECTS]
issues = []
for key, _ in PROJECTS:
    mem = [m for m in members if m["project"] == key]
    devs = [m["handle"] for m in mem if m["role"] in ("developer", "maintainer")]
    reps = [m["handle"] for m in mem if m["role"] != "viewer"]
    titles = TITLES[key][:]
    r.shuffle(titles)
    for n, title in enumerate(titles + [t + " (regression)" for t in titles[:12]], start=1):
        status = r.choice(["open"] * 4 + ["in_progress"] * 3 + ["resolved"] * 2 + ["closed"])
        assignee = "" if (status == "open" and r.random() < 0.55) else r.choice(devs)
        labels = set()
        base = title.replace(" (regression)", "")
        labels.add("feature" if base.split()[0] in ("Add", "Upgrade", "Migrate", "Deprecate", "Translate", "Document", "Monitoring") else "bug")
        if base in SECURITY:
            labels.add("security")
        if r.random() < 0.3:
            labels.add("customer")
        if "(regression)" in title:
            labels.add("regression")
        created = dt.date(2025, 1, 6) + dt.timedelta(days=r.randint(0, 150))
        issues.append({"issue_id": f"{key}-{n}", "project": key, "title": title, "status": status,
                       "priority": r.choice(["low", "medium", "medium", "high", "high", "critical"]),
                       "assignee": assignee, "reporter": r.choice(reps), "labels": ";".join(sorted(labels)),
                       "created": created.isoformat()})


def dump(name, rows):
    with open(os.path.join(OUT, name), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


dump("users.csv", users)
dump("projects.csv", projects)
dump("members.csv", members)
dump("issues.csv", issues)
print(len(users), "users", len(members), "memberships", len(issues), "issues")
