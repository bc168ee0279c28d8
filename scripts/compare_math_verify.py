#!/usr/bin/env python3
"""Compare Cove's math verifier with Hugging Face Math-Verify on the same pairs.

Not part of CI. Needs `pip install math-verify` (a separate virtual environment is
fine: it pulls sympy and antlr4) and the Rust side as a command that reads a JSONL file
of {"gold", "response"} records and writes one verdict line per record, by default the
verifiers crate's `verify_math` example (no libtorch needed):

    cargo build -p cove-verifiers --example verify_math
    python3 -m venv /tmp/mv && /tmp/mv/bin/pip install math-verify==0.9.0
    /tmp/mv/bin/python scripts/compare_math_verify.py

(`--rust "target/release/cove verify math --input {input}"` uses the CLI instead.)

Pairs: MATH-500 (each `solution` against its `answer`), GSM8K test (each `answer` text
against its `#### N`), and the project's corpus (testdata/math/corpus.jsonl, which also
carries the expected verdict, a category and, for some cases, `options`: Cove's
MathOptions fields, passed to the Rust command as `--options JSON`; `decimal_places`
is Math-Verify's `float_rounding`). Prints per-set agreement between the two
verifiers, the accuracy of each against the expected verdicts, agreement and accuracy by
corpus category, the disagreements, every case where Cove matches the expected verdict
and Math-Verify does not (and the reverse), and items/s of each on one core (the Rust command runs with RAYON_NUM_THREADS=1 unless --threads is given;
its time includes process start-up and JSON I/O).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_pairs(shared: Path):
    sets = {}
    math500 = shared / "datasets/math500/test.jsonl"
    if math500.exists():
        rows = [json.loads(l) for l in math500.read_text().splitlines() if l.strip()]
        sets["math500"] = [(r["answer"], r["solution"], True, "math500", {}) for r in rows]
    gsm = shared / "datasets/gsm8k/test.jsonl"
    if gsm.exists():
        rows = [json.loads(l) for l in gsm.read_text().splitlines() if l.strip()]
        sets["gsm8k"] = [(r["answer"].rsplit("####", 1)[-1].strip(), r["answer"], True, "gsm8k", {})
                         for r in rows]
    corpus = ROOT / "verifiers/testdata/math/corpus.jsonl"
    rows = [json.loads(l) for l in corpus.read_text().splitlines() if l.strip()]
    sets["corpus"] = [(r["gold"], r["response"], r["correct"], r.get("category", ""), r.get("options", {}))
                      for r in rows]
    return sets


def run_math_verify(pairs):
    from math_verify import parse, verify  # noqa: PLC0415

    out = []
    t0 = time.perf_counter()
    for gold, response, _, _, options in pairs:
        try:
            g = parse("$" + gold + "$") if "\\boxed" not in gold and "####" not in gold else parse(gold)
            a = parse(response)
            rounding = options.get("decimal_places")
            out.append(bool(verify(g, a) if rounding is None else verify(g, a, float_rounding=rounding)))
        except Exception:  # noqa: BLE001 - a crash counts as "not verified"
            out.append(False)
    return out, time.perf_counter() - t0


def run_rust(cmd_template, pairs, threads):
    """Runs the Rust command once per distinct `options` (with `--options JSON` when there
    are any) and returns the verdicts in input order and the total time."""
    groups = {}
    for i, p in enumerate(pairs):
        groups.setdefault(json.dumps(p[4], sort_keys=True), []).append(i)
    out = [False] * len(pairs)
    dt = 0.0
    for options, idx in groups.items():
        with tempfile.TemporaryDirectory() as d:
            inp = Path(d) / "pairs.jsonl"
            with inp.open("w") as f:
                for i in idx:
                    f.write(json.dumps({"gold": pairs[i][0], "response": pairs[i][1]}) + "\n")
            cmd = shlex.split(cmd_template.format(input=str(inp)))
            if options != "{}":
                cmd += ["--options", options]
            env = dict(os.environ)
            if threads:
                env["RAYON_NUM_THREADS"] = str(threads)
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            dt += time.perf_counter() - t0
        verdicts = [json.loads(l) for l in res.stdout.splitlines() if l.strip()]
        if len(verdicts) != len(idx):
            sys.exit(f"rust command returned {len(verdicts)} lines for {len(idx)} pairs")
        for i, v in zip(idx, verdicts):
            out[i] = bool(v.get("correct", False))
    return out, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rust", default=str(ROOT / "target/debug/examples/verify_math") + " {input}")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--threads", type=int, default=1, help="RAYON_NUM_THREADS for the Rust side (0: all)")
    ap.add_argument("--show", type=int, default=15, help="disagreements to print per set")
    ap.add_argument("--show-right", type=int, default=1000,
                    help="cases to list where exactly one verifier matches the expected verdict")
    args = ap.parse_args()

    try:
        import math_verify  # noqa: F401, PLC0415
    except ImportError:
        sys.exit("math-verify is not installed: pip install math-verify")

    total_py = total_rs = 0.0
    total_n = 0
    for name, pairs in load_pairs(Path(args.shared)).items():
        py, t_py = run_math_verify(pairs)
        rs, t_rs = run_rust(args.rust, pairs, args.threads)
        n = len(pairs)
        total_py += t_py
        total_rs += t_rs
        total_n += n
        agree = sum(a == b for a, b in zip(py, rs))
        exp = [p[2] for p in pairs]
        acc_py = sum(a == e for a, e in zip(py, exp))
        acc_rs = sum(a == e for a, e in zip(rs, exp))
        print(f"== {name}: {n} pairs")
        print(f"   agreement Math-Verify vs Cove: {agree}/{n} ({100 * agree / n:.1f}%)")
        print(f"   matches expected verdict: Math-Verify {acc_py}/{n}, Cove {acc_rs}/{n}")
        print(f"   time: Math-Verify {t_py:.2f} s ({n / t_py:.0f} items/s), Cove {t_rs:.3f} s ({n / t_rs:.0f} items/s)")
        cats = sorted({p[3] for p in pairs})
        if len(cats) > 1:
            print("   by category: agree / Math-Verify right / Cove right / cases")
            for cat in cats:
                idx = [i for i, p in enumerate(pairs) if p[3] == cat]
                ag = sum(py[i] == rs[i] for i in idx)
                mp = sum(py[i] == exp[i] for i in idx)
                mr = sum(rs[i] == exp[i] for i in idx)
                print(f"     {cat:16s} {ag:4d} {mp:4d} {mr:4d} {len(idx):4d}")
        shown = 0
        for (gold, response, e, _, _), a, b in zip(pairs, py, rs):
            if a != b and shown < args.show:
                shown += 1
                print(f"   - expected {e} math-verify {a} cove {b}: gold {gold!r} response {response[-80:]!r}")
        for label, who in (("Cove right, Math-Verify wrong", 1), ("Math-Verify right, Cove wrong", 0)):
            hits = [(p, a, b) for p, a, b in zip(pairs, py, rs)
                    if (b == p[2]) != (a == p[2]) and (b == p[2]) == bool(who)]
            print(f"   {label}: {len(hits)}")
            for (gold, response, e, cat, _), a, b in hits[: args.show_right]:
                print(f"     [{cat}] expected {e}: gold {gold!r} response {response[-90:]!r}")
    print(f"== all: {total_n} pairs; Math-Verify {total_n / total_py:.0f} items/s, "
          f"Cove {total_n / total_rs:.0f} items/s (process incl. start-up); ratio {total_py / total_rs:.0f}x")


if __name__ == "__main__":
    main()
