#!/usr/bin/env python3
"""Speed of the cove_verifiers Python package, against Math-Verify in the same run.

(a) `cove_verifiers.compute_score` called from Python, one item at a time on one
    thread, against Hugging Face Math-Verify 0.9.0 used as verl's `math_verify` reward
    uses it (`math_metric` with LaTeX extraction for the gold and expression + LaTeX
    extraction for the prediction, the gold wrapped in `\\boxed{}`), on the same items.
(b) `cove_verifiers.math.verify_batch` with threads=2 against threads=1 (and 0 = all
    cores when the machine has more than 2).

Items: MATH-500 (each `solution` against its `answer`, data source
HuggingFaceH4/MATH-500) and GSM8K test (each worked `answer` against its `#### N`,
openai/gsm8k) from /work/shared/datasets when present (or --datasets DIR), and always
the project's corpus verifiers/testdata/math/corpus.jsonl (lighteval/MATH). Also prints
how often the two verifiers agree and, on the corpus, how often each matches the label.

Not a test (speed claims for the Rust side live in `cargo bench`). Needs the package and
`math-verify==0.9.0` installed in the interpreter that runs it, e.g.

    .venv/bin/pip install target/wheels/cove_verifiers-*.whl math-verify==0.9.0
    .venv/bin/python scripts/bench_python_verifiers.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import machine  # scripts/machine.py

ROOT = Path(__file__).resolve().parent.parent


def load(datasets: Path):
    """(name, data_source, gold, response, label or None) per item, by set."""
    sets = {}
    m5 = datasets / "math500" / "test.jsonl"
    if m5.is_file():
        rows = [json.loads(l) for l in m5.read_text().splitlines() if l.strip()]
        sets["math500"] = [("HuggingFaceH4/MATH-500", r["answer"], r["solution"], True) for r in rows]
    gsm = datasets / "gsm8k" / "test.jsonl"
    if gsm.is_file():
        rows = [json.loads(l) for l in gsm.read_text().splitlines() if l.strip()]
        sets["gsm8k"] = [("openai/gsm8k", r["answer"].rsplit("####", 1)[-1].strip().replace(",", ""), r["answer"], True) for r in rows]
    corpus = ROOT / "verifiers" / "testdata" / "math" / "corpus.jsonl"
    rows = [json.loads(l) for l in corpus.read_text().splitlines() if l.strip()]
    sets["corpus"] = [("lighteval/MATH", r["gold"], r["response"], r["correct"]) for r in rows]
    return sets


def math_verify_scorer():
    """verl's verl/utils/reward_score/math_verify.py way of calling Math-Verify."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # per-item extraction warnings
    from math_verify.errors import TimeoutException
    from math_verify.metric import math_metric
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    verify_func = math_metric(
        gold_extraction_target=(LatexExtractionConfig(),),
        pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig()),
    )

    def score(response: str, gold: str) -> float:
        try:
            s, _ = verify_func(["\\boxed{" + gold + "}"], [response])
            return float(s)
        except TimeoutException:
            return 0.0
        except Exception:  # noqa: BLE001 - verl scores a crash as 0
            return 0.0

    return score


def timed(fn, min_s=1.0):
    """(result, seconds per repetition), repeating until at least min_s elapsed."""
    reps, total, result = 0, 0.0, None
    while total < min_s:
        t0 = time.perf_counter()
        result = fn()
        total += time.perf_counter() - t0
        reps += 1
    return result, total / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--skip-math-verify", action="store_true", help="only time Cove")
    args = ap.parse_args()

    import cove_verifiers
    from cove_verifiers import compute_score, math

    sets = load(args.datasets)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: nproc={os.cpu_count()} cpu={machine.cpu_model()!r} python={platform.python_version()} "
          f"cove_verifiers={cove_verifiers.__version__} load(1m)={os.getloadavg()[0]:.2f}")
    mv = None
    if not args.skip_math_verify:
        try:
            import math_verify  # noqa: F401
            from importlib.metadata import version

            mv = math_verify_scorer()
            print(f"math-verify={version('math-verify')}")
        except ImportError:
            print("math-verify not installed: `pip install math-verify==0.9.0` (timing Cove only)")
    print()
    print("(a) compute_score from Python, one thread, one item per call")
    print(f"{'set':<8} {'items':>6} {'cove items/s':>13} {'math-verify items/s':>20} {'speed-up':>9} {'agree':>7} {'cove=label':>11} {'mv=label':>9}")
    for name, items in sets.items():
        cove_scores, cove_t = timed(lambda: [compute_score(ds, r, g) for ds, g, r, _ in items])
        row = f"{name:<8} {len(items):>6} {len(items) / cove_t:>13.0f}"
        labels = [lab for *_, lab in items]
        cove_ok = sum((s == 1.0) == lab for s, lab in zip(cove_scores, labels))
        if mv is not None:
            t0 = time.perf_counter()
            mv_scores = [mv(r, g) for _, g, r, _ in items]
            mv_t = time.perf_counter() - t0
            agree = sum((a == 1.0) == (b == 1.0) for a, b in zip(cove_scores, mv_scores))
            mv_ok = sum((s == 1.0) == lab for s, lab in zip(mv_scores, labels))
            row += f" {len(items) / mv_t:>20.0f} {mv_t / cove_t:>8.0f}x {agree:>7} {cove_ok:>11} {mv_ok:>9}"
        else:
            row += f" {'-':>20} {'-':>9} {'-':>7} {cove_ok:>11} {'-':>9}"
        print(row)
    print("(labels: every MATH-500 / GSM8K item is its own reference solution, so 'correct';")
    print(" the corpus carries a label per case)")
    print()
    pairs = [(g, r) for items in sets.values() for _, g, r, _ in items]
    print(f"(b) math.verify_batch on {len(pairs)} pairs (all sets), GIL released, rayon pool")
    print(f"{'threads':>8} {'items/s':>10} {'vs 1 thread':>12}")
    base = None
    ref = None
    for threads in [1, 2] + ([0] if (os.cpu_count() or 1) > 2 else []):
        res, t = timed(lambda: math.verify_batch(pairs, threads=threads), min_s=3.0)
        ref = ref or res
        assert res == ref, "verdicts differ between thread counts"
        rate = len(pairs) / t
        base = base or rate
        label = str(threads) if threads else f"0 ({os.cpu_count()})"
        print(f"{label:>8} {rate:>10.0f} {rate / base:>11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
