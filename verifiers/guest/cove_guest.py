"""Cove's sandbox driver: runs one model-written program inside the WASI guest.

Shared by both runtimes: the pre-initialised CPython component imports it from
``app.py``; the CPython 3.12 preview1 fallback runs it through ``python -c``. The
prelude fixes two WASI pitfalls before the program runs:

* ``os.fstat(0).st_size`` reports the real size of the in-memory stdin (WASI reports 0,
  which breaks ``os.read(0, os.fstat(0).st_size)``);
* ``time.sleep`` never blocks past the wall-clock deadline: a sleep that would outlive
  it sleeps what is left and then spins, so the host's epoch deadline ends the run
  (a blocking host call cannot be interrupted by an epoch).
"""

import builtins
import linecache
import os
import random
import sys
import time
import traceback

SYNTAX_ERROR = -1
TRACEBACK_FRAMES = 20

_real_fstat = os.fstat
_real_sleep = time.sleep


def _install_prelude(stdin_len, deadline_ms):
    deadline = time.monotonic() + deadline_ms / 1000.0

    def fstat(fd):
        st = _real_fstat(fd)
        if fd == 0:
            fields = list(st)
            fields[6] = stdin_len
            st = os.stat_result(fields)
        return st

    def sleep(secs):
        if secs < 0:
            raise ValueError("sleep length must be non-negative")
        remaining = deadline - time.monotonic()
        if secs <= remaining:
            _real_sleep(secs)
            return
        if remaining > 0:
            _real_sleep(remaining)
        while True:  # past the deadline: the host's epoch interrupt ends the run here
            pass

    os.fstat = fstat
    time.sleep = sleep
    # A pre-initialised snapshot would otherwise replay the build-time seed.
    random.seed()


def register_source(filename, source):
    """Lets tracebacks show the lines of code that was compiled from a string."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run(code, stdin_len, deadline_ms):
    """Runs ``code`` as ``__main__``; returns the exit status (see sandbox.wit)."""
    _install_prelude(stdin_len, deadline_ms)
    sys.argv = ["solution.py"]
    register_source("solution.py", code)
    try:
        compiled = compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        traceback.print_exception(err, limit=0)
        sys.stderr.flush()
        return SYNTAX_ERROR
    namespace = {"__name__": "__main__", "__builtins__": builtins, "__file__": "solution.py"}
    status = 0
    try:
        exec(compiled, namespace)
    except SystemExit as exit_:
        status = _exit_status(exit_.code)
    except BaseException as err:  # the verdict is read from the status and stderr
        try:
            # The last frames only: formatting a 100,000-frame traceback outlives the deadline.
            traceback.print_exception(err, limit=-TRACEBACK_FRAMES)
        except BaseException:
            print(type(err).__name__, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    return status


def main():
    """Entry point for the preview1 fallback: ``python -c DRIVER CODE STDIN_LEN DEADLINE_MS``."""
    code, stdin_len, deadline_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    status = run(code, stdin_len, deadline_ms)
    os._exit(status & 0xFF if status >= 0 else 120)
