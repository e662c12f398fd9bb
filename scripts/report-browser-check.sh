#!/usr/bin/env bash
# Open an `agentgen report` page in headless Chromium (Debian's `chromium` package) and check
# it as a person would see it. Not run in CI (Chromium takes seconds to start per page).
#
#   scripts/report-browser-check.sh REPORT.html [OUTDIR]
#   scripts/report-browser-check.sh --dataset DIR [DIR...] [--out OUTDIR]   # builds the report
#
# Fails (exit 1) on: any console error, uncaught exception or CSP violation; a chart
# (figure.chart) without a drawn mark of non-zero size; a trajectory that does not open, whose
# conversation is not shown, or whose token view does not render. Writes screenshots to OUTDIR
# (default ./report-check): overview.png (top of the page), charts.png (reward, pass-rate and
# length charts), trajectory.png (the first trajectory opened with its token view), dark.png
# (the same in the dark theme, switched with the page's own button), and result.json.
#
# How: the page is copied with one extra inline script at the very top of <head> (before the
# page's CSP, so it sees everything): it records errors and CSP violations, then, after load,
# measures every chart and opens a trajectory, and writes what it found into the DOM, which
# `chromium --dump-dom` prints. Needs: chromium, python3 (standard library only).
set -euo pipefail

AGENTGEN=${AGENTGEN:-target/debug/agentgen}
out=report-check
if [[ ${1:-} == --dataset ]]; then
  shift
  dirs=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --out) out=$2; shift 2 ;;
      *) dirs+=("$1"); shift ;;
    esac
  done
  mkdir -p "$out"
  "$AGENTGEN" report "${dirs[@]}" --out "$out/report.html"
  page=$out/report.html
else
  page=${1:?usage: $0 REPORT.html [OUTDIR] | --dataset DIR... [--out OUTDIR]}
  out=${2:-$out}
  mkdir -p "$out"
fi
command -v chromium >/dev/null || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 2; }


python3 - "$page" "$out" <<'PY'
import json, os, re, subprocess, sys

page, out = sys.argv[1], sys.argv[2]
html = open(page, encoding="utf-8").read()
chrome = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
          "--no-first-run", "--disable-extensions", "--force-device-scale-factor=1"]

PROBE = r"""<script>
(function(){
  var errs = [];
  window.__errs = errs;
  window.addEventListener("error", function(e){ errs.push("error: " + (e.message || e.type)); }, true);
  window.addEventListener("unhandledrejection", function(e){ errs.push("unhandled rejection: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function(e){ errs.push("CSP: " + e.violatedDirective + " " + e.blockedURI); });
  var ce = console.error; console.error = function(){ errs.push("console.error: " + Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); };
  window.addEventListener("load", function(){
    var res = {errors: errs, charts: [], trajectories: 0, opened: null, mode: "%MODE%"};
    document.querySelectorAll("figure.chart").forEach(function(f){
      var marks = f.querySelectorAll("svg rect.bar"), drawn = 0;
      marks.forEach(function(r){ var b = r.getBBox(); if (b.width > 0 && b.height > 0) drawn++; });
      var svg = f.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : {width:0,height:0};
      res.charts.push({name: f.getAttribute("data-chart"), marks: marks.length, drawn: drawn,
                       width: Math.round(box.width), height: Math.round(box.height)});
    });
    var items = document.querySelectorAll("details.traj");
    res.trajectories = items.length;
    if (items.length) {
      var t = items[0];
      var bodyEl = t.querySelector(".body");
      var before = bodyEl.checkVisibility();
      t.querySelector("summary").click();
      var msgs = Array.prototype.filter.call(t.querySelectorAll(".msg"), function(m){ return m.checkVisibility(); });
      var body = bodyEl.checkVisibility() ? bodyEl.getBoundingClientRect().height : 0;
      var tok = t.querySelector("details.tokens"), spans = 0, trained = 0, titled = 0;
      if (tok) {
        tok.querySelector("summary").click();
      }
      setTimeout(function(){
        if (tok) {
          var view = tok.querySelector(".tokview");
          spans = view.querySelectorAll("span:not(.legend)").length;
          trained = view.querySelectorAll("span.m1").length;
          titled = view.querySelectorAll("span[title]").length;
        }
        res.opened = {open: t.open, visible_before: before, height_after: Math.round(body),
                      messages: msgs.length, token_spans: spans, trained_spans: trained, titled_spans: titled,
                      has_token_view: !!tok};
        var hide = function(sel){ document.querySelectorAll(sel).forEach(function(s){ s.style.display = "none"; }); };
        if (res.mode === "trajectory" || res.mode === "dark") {
          hide("section:not(#trajectories)");
          t.querySelectorAll("details.reasoning").forEach(function(d){ d.open = true; });
        }
        if (res.mode === "charts") hide("#overview, #run, #verdicts");
        if (res.mode === "dark") {
          // The page's own theme button (auto -> light -> dark), and the token view in sight.
          document.getElementById("theme").click(); document.getElementById("theme").click();
          t.querySelectorAll(".conv, dl.kv").forEach(function(c){ c.style.display = "none"; });
        }
        var pre = document.createElement("pre");
        pre.id = "__check"; pre.style.display = "none";
        pre.textContent = JSON.stringify(res);
        document.body.appendChild(pre);
      }, 50);
    }
    else {
      var pre = document.createElement("pre"); pre.id = "__check"; pre.style.display = "none";
      pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
    }
  });
})();
</script>"""

def variant(mode):
    probe = PROBE.replace("%MODE%", mode)
    # First thing in <head>, before the page's own CSP meta.
    text = html.replace("<head>", "<head>" + probe, 1)
    path = os.path.abspath(os.path.join(out, f"check-{mode}.html"))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path

def run(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)

failures = []
results = {}
for mode, size in [("overview", "1280,1700"), ("charts", "1280,2400"), ("trajectory", "1280,2200"), ("dark", "1280,1500")]:
    path = variant(mode)
    url = "file://" + path
    dom = run(chrome + ["--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom", url])
    m = re.search(r'<pre id="__check"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    if not m:
        failures.append(f"{mode}: the check script did not report (page broken?) stderr: {dom.stderr[-2000:]}")
        continue
    import html as h
    res = json.loads(h.unescape(m.group(1)))
    # Console messages Chromium itself logged at error level (e.g. parse errors before the probe ran).
    for line in dom.stderr.splitlines():
        if "CONSOLE" in line and ("ERROR" in line or ":ERROR:" in line):
            res["errors"].append("chromium log: " + line.strip())
    results[mode] = res
    shot = os.path.abspath(os.path.join(out, f"{mode}.png"))
    r = run(chrome + ["--virtual-time-budget=5000", f"--window-size={size}", f"--screenshot={shot}", url])
    if not os.path.exists(shot):
        failures.append(f"{mode}: no screenshot ({r.stderr[-500:]})")

res = results.get("overview")
if res:
    for e in res["errors"]:
        failures.append("console: " + e)
    if not res["charts"]:
        failures.append("no charts on the page")
    for c in res["charts"]:
        if c["drawn"] == 0 or c["width"] == 0 or c["height"] == 0:
            failures.append(f"chart {c['name']} has no drawing ({c})")
    if res["trajectories"]:
        o = res["opened"] or {}
        if not o.get("open"):
            failures.append("the first trajectory did not open")
        if o.get("visible_before") or o.get("height_after", 0) == 0:
            failures.append(f"opening the trajectory did not show its body ({o})")
        if o.get("messages", 0) == 0:
            failures.append("the opened trajectory has no messages")
        if o.get("has_token_view") and (o.get("token_spans", 0) == 0 or o.get("titled_spans", 0) == 0):
            failures.append(f"the token view did not render ({o})")
for mode in ("charts", "trajectory", "dark"):
    for e in results.get(mode, {}).get("errors", []):
        failures.append(f"console ({mode}): {e}")

with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"results": results, "failures": failures}, f, indent=2)
ov = results.get("overview", {})
print(f"charts: {len(ov.get('charts', []))}, trajectories: {ov.get('trajectories')}, opened: {ov.get('opened')}")
print(f"screenshots: {', '.join(os.path.join(out, m + '.png') for m in results)}")
if failures:
    print("FAILED:")
    for f in failures:
        print("  - " + f)
    sys.exit(1)
print("browser check: ok")
PY
