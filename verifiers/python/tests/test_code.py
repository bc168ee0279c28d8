"""cove_verifiers.code: hostile programs (the verdicts of verifiers/tests/suite/
code_hostile.rs), the three test formats, errors, batches."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cove_verifiers import SandboxUnavailable, VerifierError, code

pytestmark = pytest.mark.usefixtures("sandbox")

# The hostile suite's limits.
LIMITS = dict(timeout_s=1.0, memory_mb=256, max_output_bytes=1 << 20)


def run(src, **kw):
    return code.run(src, **{**LIMITS, **kw})


def expect_exception(src, error="Error"):
    r = run(src)
    assert (r["status"], r["exit_code"]) == ("exited", 1), r
    assert error in r["stderr"], r["stderr"]
    return r


def test_result_shape():
    r = code.run("import sys\nprint(input()[::-1])\nprint('err', file=sys.stderr)", stdin="abc")
    assert r["status"] == "exited" and r["exit_code"] == 0
    assert r["stdout"] == "cba\n" and "err" in r["stderr"]
    assert isinstance(r["elapsed_s"], float) and 0 < r["elapsed_s"] < 4
    assert r["detail"] == ""
    assert code.run("print(len(input()))", stdin="é".encode())["stdout"] == "1\n"


def test_cannot_read_host_files():
    r = expect_exception("print(open('/etc/passwd').read())")
    assert "root:" not in r["stdout"]
    expect_exception("print(open('../../../../etc/hostname').read())")
    expect_exception("import os\nprint(os.stat('/etc/passwd'))")
    expect_exception("open('/tmp/cove-py-escape', 'w').write('x')")
    expect_exception("import os\nprint(os.listdir('/'))")


def test_has_no_network_processes_or_environment():
    expect_exception("import socket\nsocket.create_connection(('127.0.0.1', 22))")
    expect_exception("import urllib.request\nurllib.request.urlopen('http://example.com')")
    expect_exception("import os\nos.system('echo escaped')")
    expect_exception("import subprocess\nsubprocess.run(['ls'])")
    r = run("import os\nprint(sorted(os.environ.items()))")
    assert r["stdout"].strip() == "[]"


def test_infinite_loops_and_sleeps_hit_the_deadline():
    assert run("while True:\n    pass")["status"] == "time_limit"
    t0 = time.monotonic()
    r = run("import time\ntime.sleep(30)\nprint('woke')")
    assert r["status"] == "time_limit" and r["stdout"] == ""
    assert time.monotonic() - t0 < 10


def test_memory_bombs_hit_the_memory_cap():
    for src in ["x = []\nwhile True:\n    x.append(bytearray(10**7))", "x = bytearray(1 << 30)", "s = 'a' * (400 * 2**20)"]:
        r = run(src, timeout_s=10.0)
        assert r["status"] == "memory_limit", (src, r["status"])
        assert r["exit_code"] is None


def test_output_floods_hit_the_output_cap():
    assert run("while True:\n    print('x' * 1000)")["status"] == "output_limit"
    assert run("import sys\nsys.stdout.write('y' * (2 << 20))")["status"] == "output_limit"
    assert run("print('y' * 100)", max_output_bytes=50)["status"] == "output_limit"


def test_deep_recursion_is_contained():
    expect_exception("def f(n):\n    return f(n + 1) + 1\nf(0)", "RecursionError")
    r = run(
        "import sys, functools\nsys.setrecursionlimit(10**7)\n@functools.lru_cache(None)\n"
        "def f(n):\n    return 0 if n == 0 else f(n - 1) + 1\nprint(f(10**6))"
    )
    assert r["status"] == "trap" or (r["status"], r["exit_code"]) == ("exited", 1), r
    if r["status"] == "trap":
        assert r["detail"]


def test_exit_codes_and_syntax_errors():
    assert run("import sys\nsys.exit(3)")["exit_code"] == 3
    assert run("import sys\nsys.exit(-1)")["exit_code"] == 255
    assert run("raise SystemExit(0)")["exit_code"] == 0
    r = run("import sys\nsys.exit('bye')")
    assert r["exit_code"] == 1 and "bye" in r["stderr"]
    assert run("import os\nos._exit(7)")["exit_code"] == 1
    s = run("def f(:\n  pass")
    assert s["status"] == "syntax_error" and s["exit_code"] is None and "SyntaxError" in s["stderr"]


def test_each_run_starts_fresh():
    assert run("import sys\nsys.modules['math'].pi = 3\nprint('set')")["stdout"] == "set\n"
    assert run("import math\nprint(math.pi)")["stdout"].startswith("3.14159")


def test_run_argument_errors():
    with pytest.raises(TypeError, match="code must be a str"):
        code.run(b"print(1)")
    with pytest.raises(TypeError, match="stdin"):
        code.run("print(1)", stdin=1)
    with pytest.raises(ValueError, match="timeout_s"):
        code.run("print(1)", timeout_s=0)
    with pytest.raises(ValueError, match="timeout_s"):
        code.run("print(1)", timeout_s=float("inf"))
    with pytest.raises(TypeError, match="timeout_s"):
        code.run("print(1)", timeout_s="1")
    with pytest.raises(ValueError, match="memory_mb"):
        code.run("print(1)", memory_mb=0)
    with pytest.raises(ValueError, match="memory_mb"):
        code.run("print(1)", memory_mb=10**6)


def test_the_gil_is_released_while_a_program_runs():
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=tick)
    t.start()
    try:
        r = code.run("import time\ntime.sleep(0.5)")
    finally:
        stop.set()
        t.join()
    assert r["status"] == "exited"
    assert len(ticks) >= 10


STDIO = {"kind": "stdio", "inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]}
CALL = {"kind": "call", "fn_name": "add", "inputs": [[1, 2], [5, 7]], "outputs": [3, 12]}
ASSERT = {
    "kind": "assert",
    "code": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n",
    "entry_point": "square",
}


def test_verify_the_three_formats():
    r = code.verify("```python\na, b = map(int, input().split())\nprint(a + b)\n```", STDIO)
    assert r == {"score": 1.0, "passed": 2, "total": 2, "verdicts": [{"verdict": "Accepted", "detail": ""}] * 2}
    wrong = code.verify("print(3)", STDIO)
    assert wrong["score"] == 0.0 and wrong["passed"] == 1
    assert [v["verdict"] for v in wrong["verdicts"]] == ["Accepted", "WrongAnswer"]
    assert "line 1" in wrong["verdicts"][1]["detail"]
    assert code.verify("print(3)", STDIO, scoring="pass-fraction")["score"] == 0.5
    assert len(code.verify("print(0)", STDIO, stop_at_first_failure=True)["verdicts"]) == 1

    assert code.verify("def add(a, b):\n    return a + b", CALL)["score"] == 1.0
    assert code.verify("class Solution:\n    def add(self, a, b):\n        return a + b", CALL)["score"] == 1.0
    assert code.verify("def add(a, b):\n    return a * b", json.dumps(CALL))["verdicts"][0]["verdict"] == "WrongAnswer"

    assert code.verify("def square(x):\n    return x * x", ASSERT)["score"] == 1.0
    assert code.verify("def square(x):\n    return 2 * x", ASSERT)["verdicts"][0]["verdict"] == "WrongAnswer"
    hack = "class Eq:\n    def __eq__(self, o):\n        return True\ndef square(x):\n    return Eq()"
    assert code.verify(hack, ASSERT)["verdicts"][0]["verdict"] == "RewardHack"
    assert code.verify(hack, {**ASSERT, "allow_objects": True})["score"] == 1.0
    assert code.verify("while True: pass", ASSERT, timeout_s=0.5)["verdicts"][0]["verdict"] == "TimeLimit"
    assert code.verify("def square(x:\n", ASSERT)["verdicts"][0]["verdict"] == "SyntaxError"
    assert code.verify("```python\nprint(1)\n```", {"kind": "stdio", "inputs": [""], "outputs": ["```python\n"]}, extract="raw")["score"] == 0.0


@pytest.mark.parametrize(
    "tests, text",
    [
        ({"kind": "stdio", "inputs": ["1"], "outputs": []}, "tests.inputs has 1 cases but tests.outputs has 0"),
        ({"kind": "stdio", "inputs": [], "outputs": []}, "tests has no case"),
        ({"kind": "call", "fn_name": "not an id", "inputs": [[1]], "outputs": [1]}, "is not a Python identifier"),
        ({"kind": "exotic"}, "unknown variant `exotic`"),
        ({"kind": "stdio", "inputs": ["1"]}, "missing field `outputs`"),
        ({"kind": "stdio", "inputs": ["1"], "outputs": ["1"], "extra": 1}, "unknown field `extra`"),
        ("{not json", "invalid tests"),
    ],
)
def test_invalid_tests_are_value_errors_with_coves_message(tests, text):
    with pytest.raises(ValueError, match=text.replace("`", ".")):
        code.verify("print(1)", tests)
    with pytest.raises(ValueError, match=text.replace("`", ".")):
        code.check_tests(tests)
    with pytest.raises(ValueError, match="item 1"):
        code.verify_batch([("print(1)", STDIO), ("print(1)", tests)])


def test_verify_argument_errors():
    with pytest.raises(TypeError, match="response must be a str"):
        code.verify(None, STDIO)
    with pytest.raises(TypeError, match="tests must be a dict"):
        code.verify("print(1)", [STDIO])
    with pytest.raises(ValueError, match="scoring"):
        code.verify("print(1)", STDIO, scoring="best")
    with pytest.raises(ValueError, match="extract"):
        code.verify("print(1)", STDIO, extract="first")
    with pytest.raises(TypeError):
        code.verify_batch([("print(1)",)])
    assert code.check_tests(STDIO) == 2


def _worker_children():
    """Pids of this process's children that are sandbox workers."""
    import glob
    import os

    pids = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as f:
            pids += f.read().split()
    workers = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"serve_worker" in f.read():
                    workers.append(int(pid))
        except OSError:
            pass
    return workers


def test_verify_batch_with_two_threads_equals_sequential():
    items = [
        ("print(3)", STDIO),
        ("a, b = map(int, input().split())\nprint(a + b)", STDIO),
        ("def add(a, b):\n    return a + b", CALL),
        ("def square(x):\n    return 2 * x", ASSERT),
        ("while True: pass", ASSERT),
        ("def square(x):\n    return x * x", json.dumps(ASSERT)),
    ]
    kw = dict(timeout_s=1.0)
    batch = code.verify_batch(items, threads=2, **kw)
    seq = [code.verify(r, t, **kw) for r, t in items]
    assert batch == seq
    assert len(_worker_children()) == 2, "the batch ran in two worker processes"
    assert code.verify_batch(items, threads=2, processes=False, **kw) == seq
    assert [r["score"] for r in batch] == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert code.verify_batch([]) == []


def test_exception_hierarchy():
    assert issubclass(SandboxUnavailable, VerifierError)
    assert issubclass(SandboxUnavailable, RuntimeError)
    assert SandboxUnavailable.__module__ == "cove_verifiers"
