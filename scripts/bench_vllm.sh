#!/usr/bin/env bash
# Step time of SmolLM2 `train-math` with the local engine, with a launched vLLM server
# (synchronous), and with the server one step ahead (trainer.async.max_staleness = 1):
# the same configuration and seed, STEPS steps each; then the two vLLM arms again with the
# trainer on one libtorch thread (the server samples on one), so that sampling and
# training do not share a core. Metrics into OUT/<arm>.metrics.jsonl, a table on stdout.
# Run it alone on the machine (timings).
#   bash scripts/bench_vllm.sh [OUT] [STEPS] [ARMS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-docs/measurements/vllm}"
STEPS="${2:-5}"
ARMS=("${@:3}")
[[ ${#ARMS[@]} -gt 0 ]] || ARMS=(local vllm-sync vllm-async vllm-sync-1t vllm-async-1t)
mkdir -p "$OUT"
common=(--quiet --steps "$STEPS"
  --set trainer.prompts_per_step=4 --set trainer.group_size=4
  --set trainer.mini_batch_size=16 --set trainer.micro_batch_size=8
  --set trainer.rollout.max_new_tokens=128 --set trainer.checkpoint.every=0
  --set trainer.reuse_rollout_logprobs=false --set data.eval_limit=2)
vllm=(--set 'trainer.rollout.engine="vllm"' --set trainer.rollout.vllm.launch=true
  --set 'trainer.rollout.vllm.args=["--enforce-eager"]')
run() {
  local arm="$1"; shift
  rm -rf "$OUT/$arm.run"
  local start=$(date +%s.%N)
  target/debug/train-math "${common[@]}" --out "$OUT/$arm.run" "$@" > "$OUT/$arm.log" 2>&1
  local end=$(date +%s.%N)
  cp "$OUT/$arm.run/metrics.jsonl" "$OUT/$arm.metrics.jsonl"
  sed -i "/^$arm wall/d" "$OUT/wall.txt"
  echo "$arm wall $(echo "$end - $start" | bc) s" >> "$OUT/wall.txt"
  rm -rf "$OUT/$arm.run"
}
one=(--set run.threads=1)
async=(--set trainer.async.max_staleness=1)
for arm in "${ARMS[@]}"; do
  case "$arm" in
    local) run local ;;
    vllm-sync) run vllm-sync "${vllm[@]}" ;;
    vllm-async) run vllm-async "${vllm[@]}" "${async[@]}" ;;
    vllm-sync-1t) run vllm-sync-1t "${vllm[@]}" "${one[@]}" ;;
    vllm-async-1t) run vllm-async-1t "${vllm[@]}" "${async[@]}" "${one[@]}" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
done
python3 - "$OUT" <<'PY'
import json, sys, statistics as st
out = sys.argv[1]
print(f"{'arm':<11} {'steps 2..':>9} {'total s':>8} {'rollout s':>9} {'old_logprob s':>13} {'update s':>8} {'weight_sync s':>13} {'lag':>4} {'mismatch kl':>11}")
import os
for arm in ["local", "vllm-sync", "vllm-async", "vllm-sync-1t", "vllm-async-1t"]:
    if not os.path.exists(f"{out}/{arm}.metrics.jsonl"):
        continue
    rows = [json.loads(l) for l in open(f"{out}/{arm}.metrics.jsonl")][1:]
    mean = lambda f: st.mean(f(r) for r in rows)
    kl = [r.get("rollout_mismatch_kl") for r in rows if r.get("rollout_mismatch_kl") is not None]
    print(f"{arm:<11} {len(rows):>9} {mean(lambda r: r['seconds']['total']):>8.2f} "
          f"{mean(lambda r: r['seconds']['rollout']):>9.2f} {mean(lambda r: r['seconds']['old_logprob']):>13.2f} "
          f"{mean(lambda r: r['seconds']['update']):>8.2f} {mean(lambda r: r['seconds'].get('weight_sync', 0)):>13.2f} "
          f"{max(r['policy_lag'] for r in rows):>4} {(st.mean(kl) if kl else float('nan')):>11.2e}")
PY
cat "$OUT/wall.txt"
