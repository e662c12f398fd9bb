#!/usr/bin/env bash
# `validate` throughput on this machine, side by side for several builds and thread counts.
# Prints one line per run (binary, threads, input, wall/user/sys seconds, rows/s, peak RSS) on
# stdout and in $OUT_DIR/validate-bench.tsv.
#
#   BINS="target/release/agentgen /path/to/older/agentgen" scripts/validate-bench.sh
#
# Inputs (environment):
#   BINS     the binaries to compare (default: target/release/agentgen); the first one also
#            generates the inputs.
#   THREADS  RAYON_NUM_THREADS values (default: "1 2 4 8 16", capped at this machine's cores).
#   CHECK_THREADS  thread counts for `--check-tokens` (default: the widest of THREADS).
#   REPS     runs of each (default 3).
#   TASKS    rows of the benchmark dataset (default 20000: reference rollouts of eight families,
#            ~2,400 tokens a row; deterministic, so every machine checks the same rows).
#   OUT_DIR  where results go (default: $OUT if set, else target/validate-bench).
# The datasets are written under a temporary folder and removed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-${OUT:-target/validate-bench}}
mkdir -p "$OUT_DIR"
read -r -a BINS <<<"${BINS:-target/release/agentgen}"
CORES=$(nproc)
THREADS=${THREADS:-"1 2 4 8 16"}
REPS=${REPS:-3}
TASKS=${TASKS:-20000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { echo "[validate-bench $(date +%T)] $*" >&2; }
FAMILIES=banking,calendar,logistics,retail,search,sql,trip,vfs

# The inputs: one part of $TASKS rows in row groups of 1,000, and the same rows as parts of 500
# (one row group each; what --flush-secs leaves of a slow run).
GEN=${BINS[0]}
t0=$(date +%s.%N)
"$GEN" generate --tasks "$TASKS" --families "$FAMILIES" --quiet --out "$WORK/one" >/dev/null || exit 1
"$GEN" generate --tasks "$TASKS" --families "$FAMILIES" --quiet --rows-per-file 500 \
  --out "$WORK/many" >/dev/null || exit 1
log "inputs generated in $(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
ROWS=$("$GEN" validate "$WORK/one" | tail -1 | sed -E 's/.* ([0-9]+) rows.*/\1/')
log "$ROWS rows; $CORES cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

TSV="$OUT_DIR/validate-bench.tsv"
printf 'bin\tthreads\tinput\twall_s\tuser_s\tsys_s\trows_per_s\tmax_rss_kb\n' | tee "$TSV"
run_one() { # bin threads input-name args...
  local bin=$1 t=$2 name=$3; shift 3
  local tf="$WORK/time" rc s e
  # Wall from the clock (ns); CPU and peak RSS from /usr/bin/time where there is one.
  echo "- - - -" >"$tf"
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%e %U %S %M' -o "$tf")
  s=$(date +%s.%N)
  RAYON_NUM_THREADS=$t "${timer[@]}" "$bin" validate "$@" >"$WORK/stdout" 2>&1
  rc=$?
  e=$(date +%s.%N)
  read -r _ user sys rss <"$tf"
  wall=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')
  local rate
  rate=$(awk -v r="$ROWS" -v w="$wall" 'BEGIN { printf "%.0f", r / w }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$(dirname "$bin")")/$(basename "$bin")" \
    "$t" "$name" "$wall" "$user" "$sys" "$rate" "$rss" | tee -a "$TSV"
  tail -1 "$WORK/stdout" | grep -q " $ROWS rows, $ROWS valid, 0 invalid" \
    || log "unexpected result (rc $rc): $(tail -2 "$WORK/stdout")"
}
for t in $THREADS; do
  [ "$t" -gt "$CORES" ] && continue
  for r in $(seq "$REPS"); do
    for bin in "${BINS[@]}"; do
      run_one "$bin" "$t" one "$WORK/one"
      run_one "$bin" "$t" many "$WORK/many"
    done
  done
done
# --check-tokens (by default at the widest thread count).
CHECK_THREADS=${CHECK_THREADS:-$(for x in $THREADS; do [ "$x" -le "$CORES" ] && echo "$x"; done | tail -1)}
for t in $CHECK_THREADS; do
  [ "$t" -gt "$CORES" ] && continue
  for r in $(seq "$REPS"); do
    for bin in "${BINS[@]}"; do
      run_one "$bin" "$t" one-check-tokens "$WORK/one" --check-tokens
    done
  done
done
