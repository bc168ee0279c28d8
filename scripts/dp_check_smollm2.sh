#!/usr/bin/env bash
# Data-parallel check on the real model: one step of `train-math` (SmolLM2-135M-Instruct,
# model.device=cpu) alone and under `mpirun -n 2`, for GRPO, Clip-Cov and KL-Cov, then
# the largest difference between the two parameter updates (relative to the largest
# update), the selected-token digests and the step times. Needs scripts/setup.sh and
# scripts/build.sh first; about 5 minutes on 2 cores.
#
#   bash scripts/dp_check_smollm2.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/dp-check-smollm2}"
rm -rf "$OUT"
mkdir -p "$OUT"
BIN=target/debug/train-math
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2)
# Two mini-batches of 16 rows (the second selects from the current policy), micro-batches
# of 4 on both world sizes, lr 1e-5, no clipping; old log-probs recomputed in the
# training layout (KL-Cov's |logp - old| gradient otherwise follows rounding). An
# update of 1e-5 on weights of order 1 is resolved by f32 to about 1e-7 / 1e-5 = 1%, so
# the check compares AdamW's moments instead: after the step's two optimizer steps
# m = 0.1 (0.9 g1 + g2) and v = 0.001 (0.999 g1^2 + g2^2), in f32 at full relative
# precision, which fix the update; it requires them equal within 1e-5 of the largest,
# and prints the weights' update gap (rounding-bound) beside them.
COMMON=(--quiet --steps 1
  --set model.device='"cpu"' --set data.eval_limit=4
  --set trainer.prompts_per_step=4 --set trainer.group_size=8
  --set trainer.mini_batch_size=16 --set trainer.micro_batch_size=4
  --set trainer.logprob_batch_size=4 --set trainer.reuse_rollout_logprobs=false
  --set trainer.optim.lr=1e-5 --set trainer.optim.grad_clip=1e9
  --set trainer.checkpoint.keep=1)
declare -A CONTROLS=(
  [grpo]='--set trainer.loss.control.kind="none"'
  [clip-cov]='--set trainer.loss.control.kind="clip-cov" --set trainer.loss.control.ratio=0.02 --set trainer.loss.control.lb=-100.0 --set trainer.loss.control.ub=100.0'
  [kl-cov]='--set trainer.loss.control.kind="kl-cov" --set trainer.loss.control.ratio=0.02'
)
for name in grpo clip-cov kl-cov; do
  read -r -a control <<<"${CONTROLS[$name]}"
  echo "== $name: 1 rank"
  "$BIN" "${COMMON[@]}" "${control[@]}" --out "$OUT/$name-1" 2>&1 | grep '^step'
  echo "== $name: 2 ranks"
  "${MPIRUN[@]}" "$BIN" "${COMMON[@]}" "${control[@]}" --out "$OUT/$name-2" 2>&1 | grep '^step'
done
.venv/bin/python - "$OUT" <<'EOF'
import json, sys, pathlib
from safetensors.torch import load_file
out = pathlib.Path(sys.argv[1])
init = load_file(".cache/cove/models/smollm2-135m-instruct/model.safetensors")
def final(run, file="model.safetensors"):
    ckpt = sorted((out / run / "checkpoints").glob("step-*"))[-1]
    return load_file(str(ckpt / file))
def gap_of(a, b, prefix):
    keys = [k for k in a if k.startswith(prefix)]
    gap = max((a[k] - b[k]).abs().max().item() for k in keys)
    return gap, max(a[k].abs().max().item() for k in keys)
for name in ["grpo", "clip-cov", "kl-cov"]:
    oa, ob = final(f"{name}-1", "optimizer.safetensors"), final(f"{name}-2", "optimizer.safetensors")
    moments = {p: gap_of(oa, ob, p + ".") for p in "mv"}
    a, b = final(f"{name}-1"), final(f"{name}-2")
    gap = largest = 0.0
    for k, w in a.items():
        w0 = init[k] if k in init else init["model.embed_tokens.weight"]
        ua, ub = w - w0, b[k] - w0
        gap = max(gap, (ua - ub).abs().max().item())
        largest = max(largest, ua.abs().max().item())
    m1, m2 = (json.loads(open(out / r / "metrics.jsonl").readline()) for r in (f"{name}-1", f"{name}-2"))
    same = all(m1[k] == m2[k] for k in ("reward_mean", "selected_frac", "selection_digest"))
    print(f"{name}: AdamW m: max |2 ranks - 1 rank| {moments['m'][0]:.3e} of largest "
          f"{moments['m'][1]:.3e} ({moments['m'][0] / moments['m'][1]:.2e}); v: "
          f"{moments['v'][0] / moments['v'][1]:.2e}; weights' update: max gap {gap:.3e}, "
          f"largest {largest:.3e} ({gap / largest:.2e}); reward/selection/digest equal: {same} "
          f"(digest {m1['selection_digest']})")
    for ranks, m in (("1 rank ", m1), ("2 ranks", m2)):
        s = m["seconds"]
        print(f"  {ranks}: step {s['total']:.1f} s = rollout {s['rollout']:.1f} + reward {s['reward']:.2f}"
              f" + old log-probs {s['old_logprob']:.1f} + update {s['update']:.1f} (+ rest)")
    assert same and all(g <= 1e-5 * big for g, big in moments.values()), name
EOF
