#!/usr/bin/env bash
# Time DeepSeek's Python reference codec against agentgen's, side by side.
#
#   bench/codec_python.sh            # from the repository root, after `cargo build --release`
#
# Downloads the `lmdeploy` wheel from PyPI into a temp dir and extracts only
# `lmdeploy/deepseek_v32_encoding.py` (DeepSeek's encoding_dsv32.py, adapted); its code is never
# committed here. Measures, on the official search trajectories:
#   1. in-process encode of each conversation + parse of each of its completions (Python side;
#      the Rust side is `cargo bench -p agentgen-codec --bench codec`);
#   2. the file-to-file batch job: JSONL of conversations -> JSONL of prompts, Python vs
#      `agentgen codec encode --batch`, and checks both outputs are equal.
# Env: AGENTGEN (binary, default target/release/agentgen), FIXTURES (default
# ../shared/fixtures/codec), COPIES (batch file = COPIES x 3 fixtures, default 400).
set -euo pipefail
AGENTGEN=${AGENTGEN:-target/release/agentgen}
FIXTURES=${FIXTURES:-../shared/fixtures/codec}
COPIES=${COPIES:-400}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheel" lmdeploy >&2
unzip -q -j -o "$tmp"/wheel/lmdeploy-*.whl lmdeploy/deepseek_v32_encoding.py -d "$tmp/ref"

# The batch input: every fixture conversation COPIES times, one JSON object per line.
python3 - "$FIXTURES" "$COPIES" "$tmp/batch.jsonl" <<'PY'
import json, sys
fx, copies, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
convs = [json.load(open(f"{fx}/{n}")) for n in
         ("test_input.json", "test_input_search_wo_date.json", "test_input_search_w_date.json")]
with open(out, "w") as f:
    for _ in range(copies):
        for c in convs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
PY
echo "batch file: $(wc -l < "$tmp/batch.jsonl") lines, $(du -h "$tmp/batch.jsonl" | cut -f1)"

# 1. In-process encode + parse, Python reference.
PYTHONPATH="$tmp/ref" python3 - "$FIXTURES" <<'PY'
import json, sys, time
from deepseek_v32_encoding import encode_messages, parse_message_from_completion_text as parse
fx = sys.argv[1]
for name in ("test_input_search_wo_date.json", "test_input_search_w_date.json"):
    msgs = json.load(open(f"{fx}/{name}"))["messages"]
    last_user = max(i for i, m in enumerate(msgs) if m["role"] in ("user", "developer"))
    comps = [encode_messages([m], "thinking", context=msgs[:i])
             for i, m in enumerate(msgs) if m["role"] == "assistant" and i > last_user]
    prompt = encode_messages(msgs, "thinking")
    def best(fn, reps):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t) / reps)
        return min(times)
    enc = best(lambda: encode_messages(msgs, "thinking"), 20)
    par = best(lambda: [parse(c, "thinking") for c in comps], 20)
    print(f"python {name}: encode {enc*1e6:.1f} us ({len(prompt)/enc/1e6:.1f} MB/s), "
          f"parse {len(comps)} completions {par*1e6:.1f} us, encode+parse {(enc+par)*1e6:.1f} us")
PY

# 2. File-to-file batch job.
cat > "$tmp/batch.py" <<'PY'
import json, sys
from deepseek_v32_encoding import encode_messages
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        c = json.loads(line)
        msgs = c["messages"]
        if c.get("tools") is not None:
            msgs[0]["tools"] = c["tools"]
        out.write(json.dumps(encode_messages(msgs, "thinking"), ensure_ascii=False) + "\n")
PY
t0=$(date +%s.%N)
PYTHONPATH="$tmp/ref" python3 "$tmp/batch.py" "$tmp/batch.jsonl" "$tmp/py.jsonl"
t1=$(date +%s.%N)
"$AGENTGEN" codec encode --batch "$tmp/batch.jsonl" > "$tmp/rs.jsonl"
t2=$(date +%s.%N)
py=$(echo "$t1 - $t0" | bc -l); rs=$(echo "$t2 - $t1" | bc -l)
printf 'batch python %.3f s, agentgen %.3f s, ratio %.1fx\n' "$py" "$rs" "$(echo "$py / $rs" | bc -l)"
python3 - "$tmp/py.jsonl" "$tmp/rs.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert a == b, "batch outputs differ"
print(f"batch outputs identical ({len(a)} prompts)")
PY
