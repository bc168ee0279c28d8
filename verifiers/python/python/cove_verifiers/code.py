"""The code verifier: model-written Python runs in a WebAssembly sandbox.

Every run gets a fresh CPython instance inside wasmtime (embedded in this package's
native module): stdin from memory, captured stdout/stderr with caps, no files, no
environment variables, no network, no processes or threads, a wall-clock deadline that
also cuts sleeps, a memory cap and an 8 MiB wasm stack. Nothing a program does survives
its run. All calls release the GIL while programs run.

The sandbox is loaded once per process, on the first call that needs it (or by
:func:`load_sandbox`), from the runtime that :mod:`cove_verifiers` (package docstring)
describes; loading from the compiled-code cache takes milliseconds, the first
compilation of a runtime tens of seconds.

Tests are Cove's TestSuite format, as a dict or a JSON string:

- ``{"kind": "stdio", "inputs": [str], "outputs": [str], "float_tolerance"?: float}``
- ``{"kind": "call", "fn_name": str, "inputs": [[arg, ...]], "outputs": [value],
  "float_tolerance"?: float}`` (a top-level function or a ``Solution()`` method)
- ``{"kind": "assert", "code": str, "entry_point"?: str, "allow_objects"?: bool}``
  (MBPP asserts, or HumanEval's ``check(candidate)``)

Verdicts: ``Accepted``, ``WrongAnswer``, ``RuntimeError``, ``TimeLimit``,
``MemoryLimit``, ``OutputLimit``, ``SyntaxError``, ``RewardHack``.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native, _runtime
from ._native import SandboxUnavailable

__all__ = [
    "run",
    "verify",
    "verify_batch",
    "load_sandbox",
    "sandbox_info",
    "check_tests",
    "Tests",
    "SandboxUnavailable",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_MAX_OUTPUT_BYTES",
]

#: Tests in Cove's TestSuite format: a dict, or its JSON text.
Tests = Union[Mapping[str, Any], str]

#: Default wall-clock deadline of one execution (each test case is one), in seconds.
DEFAULT_TIMEOUT_S = 4.0
#: Default cap on a program's memory, in MiB.
DEFAULT_MEMORY_MB = 512
#: Default cap on captured stdout, in bytes.
DEFAULT_MAX_OUTPUT_BYTES = 4 << 20

_lock = threading.Lock()


def load_sandbox() -> Dict[str, Any]:
    """Loads the process's sandbox now (code functions do it on first use).

    Returns:
        ``{"kind", "runtime_dir", "compiled_dir", "load_s", "source"}``: ``kind`` is
        ``"component"`` or ``"preview1"``; ``source`` says which rule found the runtime
        (``"env"``, ``"bundled"``, ``"preview1-package"``).

    Raises:
        SandboxUnavailable: no runtime was found (the message says how to get one), or
            the one found is corrupt or cannot be compiled.
    """
    global _source
    info = _native.sandbox_info()
    if info is not None:
        info["source"] = _source
        return info
    with _lock:
        info = _native.sandbox_info()
        if info is None:
            loc = _runtime.locate()
            info = _native.init_sandbox(loc.kind, str(loc.runtime_dir), str(loc.compiled_dir))
            _source = loc.source
    info["source"] = _source
    return info


_source: Optional[str] = None


def sandbox_info() -> Optional[Dict[str, Any]]:
    """What :func:`load_sandbox` returned, or None while no sandbox is loaded."""
    info = _native.sandbox_info()
    if info is not None:
        info["source"] = _source
    return info


def _ensure() -> None:
    if _native.sandbox_info() is None:
        load_sandbox()


def _str_arg(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a str, got {type(value).__name__}")
    return value


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def _int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{where}: {name} must be >= 0, got {value}")
    return value


def _tests_json(tests: Any, where: str) -> str:
    """Tests as JSON text (dicts are serialised; strings are taken as JSON)."""
    if isinstance(tests, str):
        return tests
    if isinstance(tests, Mapping):
        try:
            return json.dumps(dict(tests), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: tests are not JSON-serialisable: {e}") from None
    raise TypeError(
        f"{where}: tests must be a dict in Cove's TestSuite format or its JSON text, "
        f"got {type(tests).__name__}"
    )


def check_tests(tests: Tests) -> int:
    """Checks tests without running anything and returns their number of cases.

    Raises:
        ValueError: with Cove's message (a missing or unknown field, ``inputs`` and
            ``outputs`` of different lengths, no case, a ``fn_name`` that is not an
            identifier, ...).
    """
    return _native.parse_tests(_tests_json(tests, "check_tests()"))


def run(
    code: str,
    stdin: Union[str, bytes] = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> Dict[str, Any]:
    """Runs a Python program once in a fresh sandbox instance.

    Args:
        code: the program (Python source).
        stdin: its standard input (str is encoded as UTF-8).
        timeout_s: wall-clock deadline in seconds, sleeps included.
        memory_mb: cap on the program's memory in MiB.
        max_output_bytes: cap on captured stdout; writing more ends the run.

    Returns:
        ``{"status", "exit_code", "stdout", "stderr", "elapsed_s", "detail"}``:
        ``status`` is ``"exited"``, ``"syntax_error"``, ``"time_limit"``,
        ``"memory_limit"``, ``"output_limit"`` or ``"trap"``; ``exit_code`` the exit
        status when it exited, else None; ``stdout``/``stderr`` the captured text (lossy
        UTF-8); ``elapsed_s`` the wall time; ``detail`` the trap's message (else "").
    """
    where = "run()"
    _str_arg(code, "code", where)
    if not isinstance(stdin, (str, bytes)):
        raise TypeError(f"{where}: stdin must be str or bytes, got {type(stdin).__name__}")
    t = _number(timeout_s, "timeout_s", where)
    m = _int(memory_mb, "memory_mb", where)
    o = _int(max_output_bytes, "max_output_bytes", where)
    _ensure()
    return _native.run(code, stdin, t, m, o)


def _settings(where: str, timeout_s, memory_mb, max_output_bytes, scoring, stop_at_first_failure, extract):
    if not isinstance(stop_at_first_failure, bool):
        raise TypeError(f"{where}: stop_at_first_failure must be a bool")
    return (
        _number(timeout_s, "timeout_s", where),
        _int(memory_mb, "memory_mb", where),
        _int(max_output_bytes, "max_output_bytes", where),
        _str_arg(scoring, "scoring", where),
        stop_at_first_failure,
        _str_arg(extract, "extract", where),
    )


def verify(
    response: str,
    tests: Tests,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    scoring: str = "all-or-nothing",
    stop_at_first_failure: bool = False,
    extract: str = "last-python-block",
) -> Dict[str, Any]:
    """Extracts the program from a response and runs it against tests.

    Args:
        response: the model's output; the program is its last ```python block (else the
            last fenced block, else the whole text), or the whole text with
            ``extract="raw"``.
        tests: Cove's TestSuite (see the module docstring), as a dict or JSON text.
        timeout_s, memory_mb, max_output_bytes: limits of each case's execution.
        scoring: ``"all-or-nothing"`` (1.0 when every case passes) or
            ``"pass-fraction"`` (the fraction of cases that pass).
        stop_at_first_failure: skip the remaining cases after a failure.
        extract: ``"last-python-block"`` or ``"raw"``.

    Returns:
        ``{"score": float, "passed": int, "total": int, "verdicts": [{"verdict": str,
        "detail": str}]}``, one verdict per case that ran.

    Raises:
        ValueError: invalid tests (Cove's message) or a limit out of range.
        SandboxUnavailable: no runtime could be loaded.
    """
    where = "verify()"
    _str_arg(response, "response", where)
    tj = _tests_json(tests, where)
    s = _settings(where, timeout_s, memory_mb, max_output_bytes, scoring, stop_at_first_failure, extract)
    _native.parse_tests(tj)
    _ensure()
    return _native.code_verify_batch([(response, tj)], 1, *s)[0]


def verify_batch(
    items: Iterable[Union[Tuple[str, Tests], Sequence[Any]]],
    threads: int = 0,
    *,
    processes: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    scoring: str = "all-or-nothing",
    stop_at_first_failure: bool = False,
    extract: str = "last-python-block",
) -> List[Dict[str, Any]]:
    """:func:`verify` over ``(response, tests)`` pairs on ``threads`` threads (0: one per
    core) with the GIL released; reports are in input order. Every item's tests are
    checked before anything runs; a bad one raises ``ValueError`` naming its index.

    With ``processes=True`` (the default) a batch of more than one item runs in
    ``threads`` worker processes of this interpreter (``sys.executable``), started on the
    first such call for each configuration and kept for the next: threads of one process
    barely scale, because every run's memory-map changes stall the other threads.
    ``processes=False`` runs them on threads of this process.
    """
    where = "verify_batch()"
    threads = _int(threads, "threads", where)
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{where}: items must be an iterable of (response, tests) pairs")
    pairs = []
    for i, item in enumerate(items):
        try:
            response, tests = item
        except (TypeError, ValueError):
            raise TypeError(f"{where}: item {i} must be a (response, tests) pair") from None
        w = f"{where} item {i}"
        pairs.append((_str_arg(response, "response", w), _tests_json(tests, w)))
    s = _settings(where, timeout_s, memory_mb, max_output_bytes, scoring, stop_at_first_failure, extract)
    if not pairs:
        return []
    _ensure()
    worker_python = sys.executable if processes and len(pairs) > 1 and sys.executable else None
    return _native.code_verify_batch(pairs, threads, *s, worker_python=worker_python)
