#!/bin/sh
# `agentgen validate` rows/s and peak RSS, side by side: a baseline binary and this build, on
# the same dataset (reference policy, the 8 families that spawn no process: rows of ~2,500
# tokens). Each configuration runs ROUNDS times, alternating binaries; all runs are printed.
#
#   bench/validate_compare.sh BASELINE_BIN NEW_BIN [TASKS] [ROUNDS]
set -eu
BASE=$1
NEW=$2
TASKS=${3:-10000}
ROUNDS=${4:-3}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
F=banking,calendar,logistics,retail,search,sql,trip,vfs
"$NEW" generate --tasks "$TASKS" --families $F --out "$DIR/ds" --quiet 2>/dev/null
ROWS=$("$NEW" validate "$DIR/ds" | tail -1 | sed 's/.* files, \([0-9]*\) rows.*/\1/')
echo "dataset: $TASKS tasks, $ROWS train rows, $(du -sh "$DIR/ds/data" | cut -f1) of Parquet"
run() { # label bin args...
    label=$1; bin=$2; shift 2
    /usr/bin/time -f "%e %M" -o "$DIR/t" "$bin" validate "$@" "$DIR/ds" >/dev/null 2>&1 || true
    read -r secs kb <"$DIR/t"
    echo "$label $* : ${secs}s, $(echo "$ROWS $secs" | awk '{printf "%.0f", $1 / $2}') rows/s, peak RSS $((kb / 1024)) MB"
}
for i in $(seq "$ROUNDS"); do
    run baseline "$BASE"
    run new "$NEW"
    run baseline "$BASE" --check-tokens
    run new "$NEW" --check-tokens
done
