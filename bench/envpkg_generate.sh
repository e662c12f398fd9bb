#!/bin/sh
# `generate --envs thermostat` with the reference policy: accepted rows/s and peak RSS at
# several task counts (RSS must stay flat). The fixture is copied to a temp folder first (the
# runtime caches its admission next to the package) and admitted once before the timed runs.
#
#   bench/envpkg_generate.sh BIN [PKG_DIR] [COUNTS...]
set -eu
BIN=$1
PKG=${2:-fixtures/envpkg/thermostat}
shift 2 2>/dev/null || shift $#
COUNTS=${*:-1000 5000 20000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cp -r "$PKG" "$DIR/pkg"
"$BIN" envs check "$DIR/pkg" >/dev/null 2>&1
for n in $COUNTS; do
    /usr/bin/time -f "%e %M" -o "$DIR/t" "$BIN" generate --quiet --envs "$DIR/pkg" --tasks "$n" \
        --out "$DIR/ds-$n" 2>"$DIR/err" || { cat "$DIR/err"; exit 1; }
    read -r secs kb <"$DIR/t"
    rows=$(grep -o '([0-9]* train' "$DIR/err" | tr -dc 0-9)
    echo "$n tasks: ${secs}s, $rows train rows, $(echo "$rows $secs" | awk '{printf "%.0f", $1 / $2}') accepted rows/s, peak RSS $((kb / 1024)) MB"
    rm -rf "$DIR/ds-$n"
done
