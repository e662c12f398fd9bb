#!/usr/bin/env bash
# One prepared device check of the engine's GPU path (issue 18). Prints one JSON summary on
# stdout (progress on stderr) and writes it, with every step's raw output, to $OUT_DIR.
#
#   scripts/gpu-check.sh                     # on a machine with an NVIDIA GPU
#   DEVICE=cpu QUICK=1 scripts/gpu-check.sh  # its CPU-side parts, anywhere (minutes, small sizes)
#
# What it runs (each step under its own time limit; a failed step is reported, the rest go on):
#   1. goldens on the device for the tiny f32, bf16 and fp8 fixtures (the fixture tolerances);
#   2. `bench decode` sparse vs dense at 2K, 8K, 32K and 128K context on the `medium` preset,
#      sampling GPU memory meanwhile (peak used vs the cache bytes the spec predicts, §12);
#   3. `bench prefill` sparse vs the masked dense path at 2K, 8K and 32K;
#   4. `bench tokens`: prefill and decode tokens/s of one sequence;
#   5. `serve` on a random `medium` checkpoint under 1, 8 and 64 concurrent clients.
# Budget: about 4 minutes on an H200 after the binary exists (8 at most).
#
# Inputs (environment):
#   BIN       the agentgen binary built with `--features cuda` (default: target/gpu/agentgen,
#             then $WORK/target/release/agentgen of scripts/build-cuda.sh, which it runs when
#             neither exists and cargo is present). A CPU binary serves DEVICE=cpu.
#   FIXTURES  a materialised fixtures folder (default: target/gpu/fixtures, else the one the
#             testdata crate's build script wrote under target/, else decompressed from
#             fixtures/ with `zstd`).
#   DEVICE    cuda (default) or cpu.   QUICK=1: small sizes for a CPU run.
#   OUT_DIR   where results go (default: $OUT if set, else target/gpu-check).
# At run time a cuda binary needs libcuda.so.1 (the driver) and the CUDA 13 libraries
# (libcublas, libcublasLt, libcurand, libcudart): the script looks for them in a Python
# environment's nvidia/cu13 wheels and in the usual CUDA folders and adds them to
# LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
OUT_DIR=${OUT_DIR:-${OUT:-target/gpu-check}}
mkdir -p "$OUT_DIR"
log() { echo "[gpu-check $(date +%T)] $*" >&2; }

# --- the binary ------------------------------------------------------------------------------
BIN=${BIN:-}
# A binary carried to a GPU machine compressed (a stripped release cuda build is ~100 MB, ~19 MB
# as xz, ~37 MB as gzip), and materialised fixtures as a tarball, both under target/gpu/.
if [ -z "$BIN" ] && [ ! -x target/gpu/agentgen ]; then
  if [ -f target/gpu/agentgen.xz ]; then
    if command -v xz >/dev/null; then xz -dc target/gpu/agentgen.xz >target/gpu/agentgen
    else python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      target/gpu/agentgen.xz target/gpu/agentgen; fi
    chmod +x target/gpu/agentgen
  elif [ -f target/gpu/agentgen.gz ]; then
    gzip -dc target/gpu/agentgen.gz >target/gpu/agentgen && chmod +x target/gpu/agentgen
  fi
fi
if [ -f target/gpu/fixtures.tar.gz ] && [ ! -d target/gpu/fixtures ]; then
  tar xzf target/gpu/fixtures.tar.gz -C target/gpu
fi
if [ -z "$BIN" ]; then
  for b in target/gpu/agentgen "${WORK:-/tmp/agentgen-cuda}/target/release/agentgen"; do
    [ -x "$b" ] && BIN=$b && break
  done
fi
if [ -z "$BIN" ] && [ "$DEVICE" = cuda ] && command -v cargo >/dev/null; then
  log "no cuda binary: building it with scripts/build-cuda.sh (~30 min on 2 cores)"
  scripts/build-cuda.sh >&2 || { log "build failed"; exit 2; }
  BIN=${WORK:-/tmp/agentgen-cuda}/target/release/agentgen
fi
if [ -z "$BIN" ] && [ "$DEVICE" = cpu ]; then
  for b in target/release/agentgen target/debug/agentgen; do
    [ -x "$b" ] && BIN=$b && break
  done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { log "no agentgen binary (set BIN)"; exit 2; }

# --- CUDA libraries ----------------------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
  libdirs=""
  for py in python3 /usr/bin/python3 /opt/conda/bin/python3; do
    command -v "$py" >/dev/null || continue
    d=$("$py" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
hits = set()
for r in roots:
    for pat in ("nvidia/cu13/lib", "nvidia/*/lib"):
        for d in glob.glob(os.path.join(r, pat)):
            if glob.glob(os.path.join(d, "lib*.so*")):
                hits.add(d)
print(":".join(sorted(hits)))
EOF
)
    [ -n "$d" ] && libdirs="$libdirs:$d"
  done
  for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] && libdirs="$libdirs:$d"
  done
  export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  missing=$(ldd "$BIN" 2>/dev/null | grep "not found" | awk '{print $1}' | tr '\n' ' ')
  [ -n "$missing" ] && log "unresolved libraries: $missing"
fi

# --- fixtures ----------------------------------------------------------------------------------
FIXTURES=${FIXTURES:-}
if [ -z "$FIXTURES" ]; then
  if [ -f target/gpu/fixtures/model/goldens.safetensors ]; then
    FIXTURES=target/gpu/fixtures
  else
    FIXTURES=$(ls -d target/*/build/agentgen-testdata-*/out/fixtures 2>/dev/null | head -1)
  fi
fi
if [ -z "$FIXTURES" ] || [ ! -f "$FIXTURES/model/goldens.safetensors" ]; then
  FIXTURES=$OUT_DIR/fixtures
  if command -v zstd >/dev/null; then
    rm -rf "$FIXTURES" && cp -r fixtures "$FIXTURES"
    find "$FIXTURES" -name '*.zst' -exec zstd -q -d --rm {} \;
  else
    log "no materialised fixtures and no zstd: the golden step will fail (set FIXTURES)"
  fi
fi

# --- steps -------------------------------------------------------------------------------------
# step NAME LIMIT CMD...: runs CMD with a time limit, its stdout to $OUT_DIR/NAME.out, stderr to
# NAME.err, the exit status and seconds to NAME.rc.
step() {
  local name=$1 limit=$2; shift 2
  log "$name: $*"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err"
  local rc=$?
  echo "$rc $((SECONDS - t0))" >"$OUT_DIR/$name.rc"
  if [ "$rc" != 0 ]; then
    log "$name: exit $rc; the end of its stderr:"
    tail -3 "$OUT_DIR/$name.err" >&2
  fi
}

# GPU memory sampler (MiB used), in the background while a step runs.
MEMLOG=$OUT_DIR/gpu_mem.log
: >"$MEMLOG"
sampler_pid=""
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader \
    >"$OUT_DIR/gpu.txt" 2>&1
  (while :; do
     echo "$(date +%s.%N) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"
     sleep 0.5
   done) >>"$MEMLOG" 2>/dev/null &
  sampler_pid=$!
fi
trap '[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null' EXIT

if [ "$QUICK" = 1 ]; then
  PRESET=small; VOCAB=4096; DECODE_CTX=2048,4096; PREFILL_CTX=1024,2560; TOKENS=256
  CLIENTS=1,4; LOAD_SECS=4
else
  PRESET=medium; VOCAB=129280; DECODE_CTX=2048,8192,32768,131072; PREFILL_CTX=2048,8192,32768
  TOKENS=512,4096; CLIENTS=1,8,64; LOAD_SECS=8
fi
TP=""
[ "$DEVICE" = cpu ] && TP=--tensor-path   # the CPU run exercises the path a GPU takes

for v in tiny-f32 tiny-bf16 tiny-fp8; do
  step "golden_$v" 120 "$BIN" model golden --model "$FIXTURES/model/$v" \
    --goldens "$FIXTURES/model/goldens.safetensors" --device "$DEVICE"
done
date +%s.%N >"$OUT_DIR/decode.t0"
step decode 150 "$BIN" bench decode --preset $PRESET --vocab $VOCAB --device "$DEVICE" $TP \
  --contexts $DECODE_CTX --dense --steps 5 --json
date +%s.%N >"$OUT_DIR/decode.t1"
step prefill 150 "$BIN" bench prefill --preset $PRESET --vocab $VOCAB --device "$DEVICE" $TP \
  --contexts $PREFILL_CTX --dense --reps 2 --json
step tokens 90 "$BIN" bench tokens --preset $PRESET --vocab $VOCAB --device "$DEVICE" \
  --prompt-tokens $TOKENS --new-tokens 64 --reps 2 --json

# serve under load: a random checkpoint of the preset, the real vocabulary (prompts are text).
CKPT=${TMPDIR:-/tmp}/gpu-check-ckpt-$PRESET   # not under $OUT_DIR: hundreds of MB
rm -rf "$CKPT"
step init 90 "$BIN" model init --preset $PRESET --out "$CKPT" --dtype bf16
PORT=$((20000 + RANDOM % 20000))
"$BIN" serve --model "$CKPT" --device "$DEVICE" --port "$PORT" --max-batch 64 \
  >"$OUT_DIR/serve.out" 2>"$OUT_DIR/serve.err" &
serve_pid=$!
for _ in $(seq 1 120); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" \
    2>/dev/null && break
  kill -0 $serve_pid 2>/dev/null || break
  sleep 0.5
done
step serve_load 120 python3 bench/serve_load.py --url "http://127.0.0.1:$PORT" \
  --clients $CLIENTS --duration $LOAD_SECS --json
kill -TERM $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null
rm -rf "$CKPT"

# --- summary -----------------------------------------------------------------------------------
python3 - "$OUT_DIR" "$DEVICE" "$PRESET" <<'EOF' | tee "$OUT_DIR/summary.json"
import json, os, re, sys
out, device, preset = sys.argv[1:4]
def read(name, ext):
    try:
        return open(os.path.join(out, f"{name}.{ext}")).read()
    except OSError:
        return ""
def status(name):
    rc = read(name, "rc").split()
    return {"exit": int(rc[0]), "seconds": int(rc[1])} if rc else {"exit": None}
def js(name):
    try:
        return json.loads(read(name, "out"))
    except ValueError:
        return None
summary = {"device": device, "preset": preset, "gpu": read("gpu", "txt").strip() or None}
goldens = {}
for v in ("tiny-f32", "tiny-bf16", "tiny-fp8"):
    text = read(f"golden_{v}", "out") + read(f"golden_{v}", "err")
    ok = len(re.findall(r"^ok", text, re.M)); bad = len(re.findall(r"^FAIL", text, re.M))
    goldens[v] = dict(status(f"golden_{v}"), passed=ok, failed=bad,
                      tail=text.strip().splitlines()[-1:] if text.strip() else [])
summary["goldens"] = goldens
for name in ("decode", "prefill", "tokens"):
    rows = js(name)
    summary[name] = dict(status(name), rows=rows)
    if name in ("decode", "prefill") and rows:
        for r in rows:
            if r.get("dense_ms") and r.get("sparse_ms"):
                r["dense_over_sparse"] = round(r["dense_ms"] / r["sparse_ms"], 2)
            if r.get("dense_attn_ms") and r.get("sparse_attn_ms"):
                r["attn_dense_over_sparse"] = round(r["dense_attn_ms"] / r["sparse_attn_ms"], 2)
summary["serve"] = dict(status("serve_load"), rows=js("serve_load"),
                        serve_err_tail=read("serve", "err").strip().splitlines()[-3:])
# GPU memory: peak during the decode bench vs what the spec predicts for the largest cache.
mem = []
for line in read("gpu_mem", "log").splitlines():
    try:
        t, m = line.split(); mem.append((float(t), float(m)))
    except ValueError:
        pass
try:
    t0, t1 = float(read("decode", "t0")), float(read("decode", "t1"))
except ValueError:
    t0 = t1 = 0
dec = [m for t, m in mem if t0 <= t <= t1]
cfg = {"medium": (256, 32, 64, 6), "small": (128, 16, 32, 4)}[preset]
rows = summary["decode"].get("rows") or []
ctx = max((r["context"] for r in rows), default=0)
summary["memory"] = {
    "peak_used_mib_during_decode": max(dec) if dec else None,
    "idle_used_mib": min((m for _, m in mem), default=None),
    "cache_bytes_predicted_at_max_context": (cfg[0] + cfg[1] + cfg[2]) * 4 * cfg[3] * ctx,
    "max_context": ctx,
    "note": "spec §12: (kv_lora_rank + qk_rope_head_dim + index_head_dim) * 4 bytes * layers per token",
}
print(json.dumps(summary, indent=1))
EOF
