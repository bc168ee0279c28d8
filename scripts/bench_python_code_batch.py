"""Code verification batches from Python: worker processes against threads of one process.

    python scripts/bench_python_code_batch.py   # with cove_verifiers installed

128 responses, each run against 3 stdio cases (384 sandbox runs per batch), best of 3
batches, every score checked. The worker pool is started before timing.
"""
import time

import cove_verifiers as cv

import machine  # scripts/machine.py

print(f"machine: {machine.describe()}")
tests = {"kind": "stdio", "inputs": [f"{i} {i+1}\n" for i in range(3)], "outputs": [f"{2*i+1}\n" for i in range(3)]}
items = [("a, b = map(int, input().split())\nprint(a + b)", tests)] * 128
cv.code.verify_batch(items[:4], threads=2)                    # start the worker pool
cv.code.verify_batch(items[:4], threads=2, processes=False)
for processes in (True, False):
    for threads in (1, 2):
        best = None
        for _ in range(3):
            t = time.perf_counter()
            r = cv.code.verify_batch(items, threads=threads, processes=processes)
            dt = time.perf_counter() - t
            assert all(x["score"] == 1.0 for x in r)
            best = dt if best is None else min(best, dt)
        print(f"processes={processes} threads={threads}: {len(items)*3/best:.0f} runs/s ({len(items)/best:.0f} items/s)")
