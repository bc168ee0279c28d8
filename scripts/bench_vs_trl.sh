#!/usr/bin/env bash
# Cove vs TRL on one GRPO workload, same machine, one run: SmolLM2-135M-Instruct f32,
# 4 prompts x 8 samples, up to NEW_TOKENS new tokens at T = 1, 4 optimizer steps of 8
# completions, lr 1e-6, no KL. Cove's GRPO and Clip-Cov steps (benches/grpo_step.rs
# `workload`, one process each, so each peak RSS is its own), then TRL 1.16's
# GRPOTrainer (scripts/bench_trl_grpo.py; TRL is optional, install it as that script's
# docstring says). Results: OUT/{cove-grpo,cove-clip_cov,trl}.json and a table.
#
#   bash scripts/bench_vs_trl.sh [NEW_TOKENS=32] [STEPS=3] [OUT=target/bench-vs-trl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tokens=${1:-32}
steps=${2:-3}
out=${3:-target/bench-vs-trl}/$tokens
mkdir -p "$out"
for method in grpo clip_cov; do
  cargo bench --profile dev --bench grpo_step -- workload --method "$method" \
    --new-tokens "$tokens" --steps "$steps" --json "$out/cove-$method.json"
done
if .venv/bin/python -c "import trl" 2>/dev/null; then
  .venv/bin/python scripts/bench_trl_grpo.py --batches "$steps" --max-new-tokens "$tokens" \
    --json "$out/trl.json"
else
  echo "TRL is not installed in .venv: see scripts/bench_trl_grpo.py for the install line" >&2
fi
.venv/bin/python - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
runs = [(n, os.path.join(out, f)) for n, f in
        [("Cove GRPO", "cove-grpo.json"), ("Cove Clip-Cov", "cove-clip_cov.json"), ("TRL GRPO", "trl.json")]]
runs = [(n, json.load(open(p))) for n, p in runs if os.path.exists(p)]
keys = [("generation_s", "generation"), ("old_logprob_s", "old log-probs"),
        ("update_s", "update"), ("total_s", "total"),
        ("response_len_mean", "mean response (tokens)"), ("peak_rss_gib", "peak RSS (GiB)")]
print("| phase (median s per rollout batch) | " + " | ".join(n for n, _ in runs) + " |")
print("|---" * (len(runs) + 1) + "|")
for k, label in keys:
    print(f"| {label} | " + " | ".join(f"{r.get(k, float('nan')):.2f}" for _, r in runs) + " |")
trl = dict(runs).get("TRL GRPO")
if trl:
    for n, r in runs[:-1]:
        print(f"{n} total / TRL total = {r['total_s'] / trl['total_s']:.3f}")
PY
