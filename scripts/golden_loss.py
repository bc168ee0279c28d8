#!/usr/bin/env python3
"""Reference values for Cove's loss tests, and the PyTorch timing of the same losses.

`golden` mode writes tests/golden/loss.json: inputs and expected outputs computed by an
independent PyTorch (float64) transcription of verl's `compute_policy_loss_clip_cov` /
`compute_policy_loss_kl_cov` and `agg_loss`, plus the advantage estimators. Cove's
definitions differ from verl's code on purpose in three places, mirrored here:
  * an all-masked batch or row gives 0 (denominators are at least 1, sequences with no
    valid token are not counted in the seq-mean modes);
  * a GRPO group of one, or of equal rewards, gets advantage 0;
  * Clip-Cov's random choice comes from a seeded RNG, so the file stores the candidate
    set and the count; the Rust test checks selected is a subset of the right size.

`bench` mode times forward+backward of plain GRPO, Clip-Cov and KL-Cov with verl's own
code path (KL-Cov's `.cpu()` top-k included) on 64x1024 and 256x2048 float32 tokens.

Run: .venv/bin/python scripts/golden_loss.py golden   (or: bench)
"""

import json
import math
import sys
import time
from pathlib import Path

import torch


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


# ---- verl core_algos transcriptions (float64) -------------------------------------

def ppo_loss(logp, old, adv, mask, eps_low, eps_high, dual_clip=None):
    ratio = torch.exp(logp - old)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    clipped = (pg2 > pg1) & (mask > 0)
    loss = torch.maximum(pg1, pg2)
    if dual_clip is not None:
        pg3 = -adv * dual_clip
        loss = torch.where(adv < 0, torch.minimum(loss, pg3), loss)
    return loss * mask, clipped


def clip_cov_reference(logp, old, adv, mask, eps_low, eps_high, ratio_r, lb, ub):
    """verl compute_policy_loss_clip_cov up to the random choice."""
    ratio = torch.exp(logp - old)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    clip_by_origin = (pg2 > pg1) & (mask > 0)
    cov_all = (adv - masked_mean(adv, mask)) * (logp - masked_mean(logp.detach(), mask))
    cov_all[mask == 0] = -torch.inf
    cov_all[clip_by_origin] = -torch.inf
    clip_num = max(int(ratio_r * mask.sum().item()), 1)
    cand = (cov_all < ub) & (cov_all > lb) & (mask > 0)
    pg = torch.maximum(pg1, pg2) * mask
    return pg, cand, min(clip_num, int(cand.sum().item())), clip_by_origin


def kl_cov_reference(logp, old, adv, mask, k_ratio, beta):
    """verl compute_policy_loss_kl_cov."""
    ratio = torch.exp(logp - old)
    pg1 = -adv * ratio
    pg_kl = -adv * ratio + beta * torch.abs(logp - old)
    pg = pg1.clone()
    sel = torch.zeros_like(mask, dtype=torch.bool)
    valid = mask > 0
    idx = torch.nonzero(valid.reshape(-1), as_tuple=True)[0]
    a = adv[valid].detach().reshape(-1).cpu()
    lp = logp[valid].detach().reshape(-1).cpu()
    if len(a) > 0:
        cov = (a - a.mean()) * (lp - lp.mean())
        n = max(1, int(len(cov) * k_ratio))
        top = torch.topk(cov, n, largest=True).indices
        top = idx[top]
        r, c = top // adv.shape[1], top % adv.shape[1]
        pg[r, c] = pg_kl[r, c]
        sel[r, c] = True
    return pg * mask, sel


def agg(loss, mask, mode):
    if mode == "token-mean":
        return (loss * mask).sum() / max(mask.sum().item(), 1)
    seq_valid = (mask.sum(-1) > 0).sum().item()
    if mode == "seq-mean-token-sum":
        return (loss * mask).sum() / max(seq_valid, 1)
    if mode == "seq-mean-token-mean":
        per = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per.sum() / max(seq_valid, 1)
    if mode == "seq-mean-token-sum-norm":
        return (loss * mask).sum() / mask.shape[-1]
    raise ValueError(mode)


def token_cov(logp, adv, mask):
    c = (adv - masked_mean(adv, mask)) * (logp - masked_mean(logp, mask))
    return c * mask


# ---- advantages --------------------------------------------------------------------

def grpo(scores, groups, norm_std=True):
    scores = torch.tensor(scores, dtype=torch.float64)
    out = torch.zeros_like(scores)
    for g in sorted(set(groups)):
        idx = [i for i, x in enumerate(groups) if x == g]
        s = scores[idx]
        if len(idx) < 2 or bool((s == s[0]).all()):
            continue
        a = s - s.mean()
        if norm_std:
            a = a / (s.std(unbiased=True) + 1e-6)
        out[idx] = a
    return out.tolist()


def rloo(scores, groups):
    out = [0.0] * len(scores)
    for g in sorted(set(groups)):
        idx = [i for i, x in enumerate(groups) if x == g]
        s = [scores[i] for i in idx]
        if len(idx) < 2 or all(v == s[0] for v in s):
            continue
        for i in idx:
            others = [scores[j] for j in idx if j != i]
            out[i] = scores[i] - sum(others) / len(others)
    return out


def reinforce_pp(scores, groups, lengths):
    centred = grpo(scores, groups, norm_std=False)
    T = max(lengths)
    x = torch.tensor([[c] * T for c in centred], dtype=torch.float64)
    m = torch.tensor([[1.0] * l + [0.0] * (T - l) for l in lengths], dtype=torch.float64)
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m) * (m.sum() / (m.sum() - 1))
    return ((torch.tensor(centred, dtype=torch.float64) - mean) * torch.rsqrt(var + 1e-8)).tolist()


# ---- golden file -------------------------------------------------------------------

def make_inputs(seed, B, T):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 6.0
    old = logp + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.25
    adv_seq = torch.randn(B, 1, generator=g, dtype=torch.float64) * 1.5
    adv = adv_seq.expand(B, T).clone()
    lens = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lens[:, None]).double()
    mask[-1] = 0.0  # one fully masked row
    return logp, old, adv, mask


def rows(x):
    return x.tolist()


def golden(path):
    logp, old, adv, mask = make_inputs(1234, 8, 40)
    base = {"logp": rows(logp), "old_logp": rows(old), "advantages": rows(adv), "mask": rows(mask)}
    out = {"inputs": base, "n_valid": int(mask.sum().item()), "clip_cov": [], "kl_cov": [], "ppo": [], "agg": [], "cov": None, "advantages": []}
    out["cov"] = rows(token_cov(logp, adv, mask))
    for (r, lb, ub) in [(2e-4, 1.0, 5.0), (0.049, 1.0, 5.0), (0.5, 1.0, 5.0), (0.05, 0.5, 2.0), (0.02, 1.0, 5.0)]:
        pg, cand, count, clipped = clip_cov_reference(logp, old, adv, mask, 0.2, 0.2, r, lb, ub)
        out["clip_cov"].append({"ratio": r, "lb": lb, "ub": ub, "pg": rows(pg), "candidates": rows(cand.double()), "count": count, "clipped": rows(clipped.double())})
    for (k, beta) in [(2e-3, 1.0), (0.05, 1.0), (0.049, 0.5), (0.3, 2.0)]:
        pg, sel = kl_cov_reference(logp, old, adv, mask, k, beta)
        out["kl_cov"].append({"ratio": k, "beta": beta, "token_loss": rows(pg), "selected": rows(sel.double()), "loss_token_mean": agg(pg, mask, "token-mean").item()})
    for (lo, hi, dual) in [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.28, 3.0)]:
        pg, clipped = ppo_loss(logp, old, adv, mask, lo, hi, dual)
        out["ppo"].append({"eps_low": lo, "eps_high": hi, "dual_clip": dual, "token_loss": rows(pg), "clipped": rows(clipped.double())})
    pg, _ = ppo_loss(logp, old, adv, mask, 0.2, 0.2)
    for mode in ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]:
        out["agg"].append({"mode": mode, "loss": agg(pg, mask, mode).item()})
    scores = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.2, 0.9, 0.3, 0.3, 1.0]
    groups = [0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 3]
    lengths = [5, 3, 8, 1, 4, 4, 2, 7, 6, 2, 9, 3]
    out["advantages"] = {
        "scores": scores, "groups": groups, "lengths": lengths,
        "grpo": grpo(scores, groups), "dr-grpo": grpo(scores, groups, norm_std=False),
        "rloo": rloo(scores, groups), "reinforce-plus-plus-baseline": reinforce_pp(scores, groups, lengths),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


# ---- timing ------------------------------------------------------------------------

def bench():
    torch.manual_seed(0)
    for (B, T) in [(64, 1024), (256, 2048)]:
        g = torch.Generator().manual_seed(0)
        logp0 = -torch.rand(B, T, generator=g) * 6.0
        old = logp0 + torch.randn(B, T, generator=g) * 0.25
        adv = (torch.randn(B, 1, generator=g) * 1.5).expand(B, T).contiguous()
        mask = torch.ones(B, T)

        # Each variant also computes verl's metrics (clip fraction, approx KL) and
        # reads them back, as verl's actor does and as Cove's loss does.
        def metrics(logp, flags):
            masked_mean(flags.double(), mask).item()
            masked_mean(old - logp.detach(), mask).item()

        def grpo_loss(logp):
            pg, clipped = ppo_loss(logp, old, adv, mask, 0.2, 0.2)
            metrics(logp, clipped)
            return agg(pg, mask, "token-mean")

        def clip_cov_loss(logp):
            pg, cand, count, _ = clip_cov_reference(logp, old, adv, mask, 0.2, 0.2, 2e-4, 1.0, 5.0)
            idx = torch.nonzero(cand)
            corr = torch.ones_like(adv)
            if len(idx) > 0:
                perm = torch.randperm(len(idx))
                idx = idx[perm[:count]]
                corr[idx[:, 0], idx[:, 1]] = 0
            metrics(logp, corr == 0)
            return agg(pg * corr, mask, "token-mean")

        def kl_cov_loss(logp):
            pg, sel = kl_cov_reference(logp, old, adv, mask, 2e-3, 1.0)
            metrics(logp, sel)
            return agg(pg, mask, "token-mean")

        res = {}
        for name, fn in [("grpo", grpo_loss), ("clip_cov", clip_cov_loss), ("kl_cov", kl_cov_loss)]:
            times = []
            for i in range(30):
                logp = logp0.clone().requires_grad_(True)
                t0 = time.perf_counter()
                fn(logp).backward()
                times.append(time.perf_counter() - t0)
            times = sorted(times[5:])
            res[name] = times[len(times) // 2]
        print(f"{B}x{T}: grpo {res['grpo']*1e3:.3f} ms, clip_cov {res['clip_cov']*1e3:.3f} ms "
              f"({res['clip_cov']/res['grpo']:.2f}x), kl_cov {res['kl_cov']*1e3:.3f} ms "
              f"({res['kl_cov']/res['grpo']:.2f}x)  [median of 25, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads]")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "golden"
    if mode == "golden":
        golden(Path(__file__).resolve().parent.parent / "tests" / "golden" / "loss.json")
    elif mode == "bench":
        bench()
    else:
        sys.exit(f"unknown mode {mode!r}: golden | bench")
