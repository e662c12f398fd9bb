#!/usr/bin/env bash
# Prefill and decode tokens/s of agentgen's engine against HF transformers'
# `DeepseekV32ForCausalLM` (f32, eager attention) on the same checkpoint, side by side.
#
#   bench/transformers_compare.sh          # from the repository root, after `cargo build --release`
#
# Installs torch + transformers + safetensors from PyPI into a temporary venv (torch's wheel pulls
# ~3 GB of CUDA packages; fine for a bench, never for CI), then times, for each prompt length:
# the prompt in one forward call (prefill tokens/s) and NEW greedy steps with the cache
# (decode tokens/s), best of REPS after a warm-up; the agentgen side is
# `agentgen bench tokens`, which measures the same way. Both use THREADS threads.
# Env: AGENTGEN (binary, default target/release/agentgen), MODEL (checkpoint, default
# ../shared/fixtures/model/tiny-f32, else `agentgen model init --preset tiny --dtype f32`),
# PROMPTS (default 128,512), NEW (default 64), REPS (default 3), THREADS (default: nproc),
# VENV (reuse a venv that already has torch + transformers), ROUNDS (default 1: run both sides
# that many times, alternating, and report each side's best; a busy VM slows one side or the
# other for seconds at a time, so alternating rounds compare the two at their least disturbed;
# each round's own ratios are printed too).
set -euo pipefail
AGENTGEN=${AGENTGEN:-target/release/agentgen}
PROMPTS=${PROMPTS:-128,512}
NEW=${NEW:-64}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
THREADS=${THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

MODEL=${MODEL:-../shared/fixtures/model/tiny-f32}
if [ ! -f "$MODEL/config.json" ]; then
  MODEL="$tmp/tiny-f32"
  "$AGENTGEN" model init --preset tiny --dtype f32 --seed 1 --out "$MODEL" >&2
fi

if [ -z "${VENV:-}" ]; then
  VENV="$tmp/venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch transformers safetensors >&2
fi

echo "checkpoint: $MODEL; threads: $THREADS; prompts: $PROMPTS; new tokens: $NEW; best of $REPS; rounds: $ROUNDS"
for round in $(seq 1 "$ROUNDS"); do
OMP_NUM_THREADS=$THREADS "$VENV/bin/python" - "$MODEL" "$PROMPTS" "$NEW" "$REPS" "$THREADS" \
  > "$tmp/hf.$round.json" <<'PY'
import json, sys, time
import torch
from transformers import DeepseekV32ForCausalLM

model_dir, prompts, new, reps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = DeepseekV32ForCausalLM.from_pretrained(
    model_dir, dtype=torch.float32, attn_implementation="eager").eval()
vocab = model.config.vocab_size
rows = []
for p in (int(x) for x in prompts.split(",")):
    ids = torch.tensor([[(i * 7 + 3) % vocab for i in range(p)]])
    best_prefill, best_decode = float("inf"), float("inf")
    with torch.inference_mode():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t1 = time.perf_counter()
            past = out.past_key_values
            for _ in range(new):
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t2 = time.perf_counter()
            best_prefill = min(best_prefill, t1 - t0)
            best_decode = min(best_decode, t2 - t1)
    rows.append({"prompt_tokens": p, "new_tokens": new,
                 "prefill_tokens_per_s": p / best_prefill,
                 "decode_tokens_per_s": new / best_decode})
print(json.dumps(rows))
PY
RAYON_NUM_THREADS=$THREADS "$AGENTGEN" bench tokens --model "$MODEL" --prompt-tokens "$PROMPTS" \
  --new-tokens "$NEW" --reps "$REPS" --json > "$tmp/ag.$round.json"
done

python3 - "$tmp" "$ROUNDS" <<'PY'
import json, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
load = lambda side, r: json.load(open(f"{tmp}/{side}.{r}.json"))
hf = [load("hf", r) for r in range(1, rounds + 1)]
ag = [load("ag", r) for r in range(1, rounds + 1)]
phases = ("prefill", "decode")
if rounds > 1:
    for r in range(rounds):
        cells = [f"{h['prompt_tokens']} {ph} {a[ph + '_tokens_per_s'] / h[ph + '_tokens_per_s']:.1f}x"
                 for h, a in zip(hf[r], ag[r]) for ph in phases]
        print(f"round {r + 1}: " + "; ".join(cells))
print(f"{'prompt':>7} {'phase':>8} {'transformers tok/s':>19} {'agentgen tok/s':>15} {'ratio':>7}")
for i, row in enumerate(hf[0]):
    for ph in phases:
        k = f"{ph}_tokens_per_s"
        h = max(run[i][k] for run in hf)
        a = max(run[i][k] for run in ag)
        print(f"{row['prompt_tokens']:>7} {ph:>8} {h:>19.1f} {a:>15.1f} {a / h:>6.1f}x")
PY
