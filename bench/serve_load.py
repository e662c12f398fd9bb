#!/usr/bin/env python3
"""Load generator for `agentgen serve` (stdlib only).

Runs C concurrent clients, each sending POST /v1/completions back to back for D seconds, and
prints requests/s and generated tokens/s (from `usage.completion_tokens`) per concurrency.

    python3 bench/serve_load.py --url http://127.0.0.1:8000 --clients 1,8,32 --duration 10
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def worker(url, body, deadline, out):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    reqs = toks = errs = 0
    lat = []
    while time.time() < deadline:
        t0 = time.time()
        try:
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                errs += 1
                continue
            toks += json.loads(data)["usage"]["completion_tokens"]
            reqs += 1
            lat.append(time.time() - t0)
        except Exception:
            errs += 1
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    out.append((reqs, toks, errs, lat))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt", default="Write a short story about a lighthouse keeper.")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for c in [int(x) for x in a.clients.split(",")]:
        body = json.dumps({"prompt": a.prompt, "max_tokens": a.max_tokens, "temperature": 1.0,
                           "ignore_eos": True})
        out = []
        start = time.time()
        deadline = start + a.duration
        ts = [threading.Thread(target=worker, args=(a.url, body, deadline, out)) for _ in range(c)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        el = time.time() - start
        reqs = sum(o[0] for o in out)
        toks = sum(o[1] for o in out)
        errs = sum(o[2] for o in out)
        lat = sorted(x for o in out for x in o[3])
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        row = {"clients": c, "requests": reqs, "errors": errs, "seconds": round(el, 2),
               "req_per_s": round(reqs / el, 2), "tok_per_s": round(toks / el, 1),
               "p50_ms": round(p50, 1)}
        rows.append(row)
        if not a.json:
            print(f"clients={c:3d} req/s={row['req_per_s']:8.2f} tok/s={row['tok_per_s']:9.1f} "
                  f"p50={row['p50_ms']:8.1f}ms requests={reqs} errors={errs}", flush=True)
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
