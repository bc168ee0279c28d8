#!/usr/bin/env python3
"""Requests per second of `cove serve`'s POST /run_code against the same programs run as
native `python3` subprocesses, with the same number of concurrent clients.

    python3 scripts/bench_serve.py [--clients 64] [--requests 2000] [--cove target/debug/cove]

Starts `cove serve --port 0` itself (workers: one per core), warms it up, then sends
`--requests` requests from `--clients` threads, each on its own keep-alive connection.
The native side runs each program with `subprocess.run([python3, "-c", code])` from the
same number of threads. Every answer is checked (stdout must be the expected one), so a
fast wrong answer cannot count. The clients share the machine with the server: on a
small machine part of the cores go to the load generator, and the table says how many
cores there are.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import machine  # scripts/machine.py

# A small mix of the programs RL code rewards run: arithmetic on stdin, a loop, a
# comprehension with a standard-library import. Each prints one known line.
PROGRAMS = [
    ("n = int(input())\nprint(n * n)", "12\n", "144\n"),
    ("s = 0\nfor i in range(20000):\n    s += i * i\nprint(s)", "", f"{sum(i * i for i in range(20000))}\n"),
    ("import math\nprint(sum(math.isqrt(i) for i in range(1000)))", "", f"{sum(math.isqrt(i) for i in range(1000))}\n"),
]


def start_server(cove: str) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([cove, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    prefix = "cove serve: listening on http://"
    if not line.startswith(prefix):
        proc.kill()
        sys.exit(f"unexpected first line from cove serve: {line!r}")
    host, port = line[len(prefix):].rsplit(":", 1)
    return proc, host, int(port)


def bench_server(host: str, port: int, clients: int, requests: int) -> float:
    counter = iter(range(requests))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            code, stdin, want = PROGRAMS[i % len(PROGRAMS)]
            body = json.dumps({"code": code, "stdin": stdin, "language": "python"})
            conn.request("POST", "/run_code", body, {"Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            if answer.get("status") != "Success" or answer["run_result"]["stdout"] != want:
                errors.append(json.dumps(answer)[:300])
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        sys.exit(f"{len(errors)} wrong answers from cove serve, first: {errors[0]}")
    return requests / elapsed


def bench_native(python: str, clients: int, requests: int) -> float:
    def one(i: int) -> None:
        code, stdin, want = PROGRAMS[i % len(PROGRAMS)]
        out = subprocess.run([python, "-c", code], input=stdin, capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or out.stdout != want:
            raise RuntimeError(f"native run {i} gave {out.returncode}: {out.stdout!r} {out.stderr!r}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    return requests / (time.perf_counter() - start)


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--native-requests", type=int, default=500)
    parser.add_argument("--cove", default=os.path.join(root, "target", "debug", "cove"))
    parser.add_argument("--python", default="python3", help="interpreter of the native side")
    args = parser.parse_args()

    proc, host, port = start_server(args.cove)
    try:
        bench_server(host, port, min(args.clients, 8), 64)  # warm-up: workers, caches
        served = bench_server(host, port, args.clients, args.requests)
    finally:
        proc.kill()
        proc.wait()
    native = bench_native(args.python, args.clients, args.native_requests)
    version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} cores, {machine.cpu_model()}")
    print(f"command: {' '.join(sys.argv)}")
    print(f"| runner | clients | requests | requests/s |")
    print(f"|---|---|---|---|")
    print(f"| cove serve /run_code (WASM sandbox, {os.cpu_count()} workers) | {args.clients} | {args.requests} | {served:.0f} |")
    print(f"| native {version} subprocess per program | {args.clients} | {args.native_requests} | {native:.0f} |")
    print(f"cove serve / native: {served / native:.1f}x")


if __name__ == "__main__":
    main()
