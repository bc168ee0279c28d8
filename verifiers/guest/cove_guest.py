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


# ---------------------------------------------------------------------------------------
# The `assert` test harness (HumanEval / MBPP), hardened against reward hacking.
#
# The host sends the per-run token and the test code on stdin, never in the harness
# source, and the harness reads both before the program runs. Everything the harness
# needs later is bound to locals of `run_assert` before the program runs, so patching a
# module (this one included) cannot change it. An audit hook installed first refuses
# what reaches frames or arbitrary objects (`sys._getframe`, traceback / generator /
# coroutine frames, `gc.get_objects` and friends, tracing, profiling, monitoring, more
# audit hooks), so the token and the harness state stay out of reach; any such attempt
# makes the run a RewardHack. The tests run in their own namespace over the program's
# names, with the real builtins; `builtins`, the standard streams, the import machinery
# and the modules the tests import are restored after the program and after each call
# the tests make. With the guard on, every value a program function returns to the tests
# must be plain data of exact builtin types.
#
# Line numbers of the program are shifted by PROGRAM_LINES and those of the tests by
# TESTS_LINES, so a traceback's files are known from `tb_lineno` alone (reading a frame
# would trip the audit hook).

PROGRAM_LINES = 200000
TESTS_LINES = 100000
PLAIN_DEPTH = 100
PLAIN_ITEMS = 2000000
WATCHED_MODULES = ("builtins", "math", "cmath", "operator", "functools", "itertools",
                   "collections", "re", "string", "random", "heapq", "bisect",
                   "statistics", "fractions", "decimal", "json", "copy", "types",
                   "typing", "hashlib", "numbers")


def run_assert(program, entry_point, guard):
    """Runs ``program`` and then the tests read from stdin (see above). Writes the token
    to stdout when every test passed, or a marked failure record to stderr."""
    import gc as gc_mod
    import re as re_mod
    import types as types_mod

    _type, _len, _list, _tuple, _str = type, len, list, tuple, str
    _callable, _getattr, _dir, _exec, _compile = callable, getattr, dir, exec, compile
    _isinstance, _frozenset, _dict = isinstance, frozenset, dict
    _BaseException, _SystemExit, _AssertionError = BaseException, SystemExit, AssertionError
    _SyntaxError, _RuntimeError, _Exception = SyntaxError, RuntimeError, Exception
    _NoneType, _bool, _int, _float, _complex, _bytes = (type(None), bool, int, float,
                                                         complex, bytes)
    _set, _CodeType, _ModuleType = set, types_mod.CodeType, types_mod.ModuleType
    _any, _all, _zip, _NameError, _ValueError = any, all, zip, NameError, ValueError
    _Namespace = types_mod.SimpleNamespace
    _write, _read, _exc_info = os.write, os.read, sys.exc_info
    _gc_disable, _gc_enable = gc_mod.disable, gc_mod.enable
    real_builtins = builtins
    modules = sys.modules
    _findall = re_mod.findall
    # Module constants bound now: the program could rebind them later.
    plain_depth, plain_items, tb_frames = PLAIN_DEPTH, PLAIN_ITEMS, TRACEBACK_FRAMES
    program_off, tests_off = PROGRAM_LINES, TESTS_LINES

    chunks = []
    while True:
        block = _read(0, 1 << 16)
        if not block:
            break
        chunks.append(block)
    token, _, tests = b"".join(chunks).decode("utf-8", "replace").partition("\n")
    hacks = []

    def hook(event, args):
        if event == "object.__getattr__":
            if _len(args) < 2 or args[1] not in {"tb_frame", "gi_frame", "cr_frame",
                                                  "ag_frame"}:
                return
            what = "read ." + _str(args[1])
        elif event in {"sys._getframe", "sys._current_frames", "sys._current_exceptions",
                       "sys.settrace", "sys.setprofile", "sys._settraceallthreads",
                       "sys._setprofileallthreads", "sys.addaudithook", "gc.get_objects",
                       "gc.get_referrers", "gc.get_referents",
                       "sys.monitoring.register_callback"}:
            what = "called " + event
        else:
            return
        hacks.append("the program " + what + ", which the test harness does not allow")
        raise _RuntimeError("cove sandbox: " + what + " is not allowed in tests")

    # Snapshots (immutable) of what the program could patch to fool the tests.
    test_imports = _findall(r"(?m)^\s*(?:import|from)\s+([A-Za-z_][\w.]*)", tests)
    watched = []
    for name in WATCHED_MODULES + _tuple(test_imports):
        mod = modules.get(name)
        if _type(mod) is _ModuleType and _all(m is not mod for _, m, _, _ in watched):
            d = mod.__dict__
            watched.append((name, mod, _tuple(d.items()), _frozenset(d)))
    sys_saved = _tuple((k, _getattr(sys, k)) for k in (
        "stdout", "stderr", "stdin", "__stdout__", "__stderr__", "__stdin__",
        "displayhook", "excepthook", "modules", "meta_path", "path_hooks", "path",
        "path_importer_cache"))
    lists_saved = _tuple((lst, _tuple(lst)) for lst in (sys.meta_path, sys.path_hooks,
                                                        sys.path))
    sys_dict = sys.__dict__

    def restore():
        for name, mod, items, keys in watched:
            d = mod.__dict__ if _type(mod) is _ModuleType else None
            if d is None:
                continue
            for k, v in items:
                if d.get(k, restore) is not v:
                    d[k] = v
            if _len(d) != _len(keys):
                for k in _list(d):
                    if k not in keys:
                        del d[k]
            if modules.get(name) is not mod:
                modules[name] = mod
        for k, v in sys_saved:
            if sys_dict.get(k, restore) is not v:
                sys_dict[k] = v
        for lst, items in lists_saved:
            if _len(lst) != _len(items) or _any(a is not b for a, b in _zip(lst, items)):
                lst[:] = items

    def describe(t):
        try:
            name = _type.__dict__["__qualname__"].__get__(t)
        except _BaseException:
            name = "?"
        return name if _type(name) is _str else "?"

    def plain_error(value):
        """None when ``value`` is plain data, else what is not."""
        stack = [(value, 0)]
        budget = plain_items
        while stack:
            x, depth = stack.pop()
            t = _type(x)
            if (t is _NoneType or t is _bool or t is _int or t is _float or t is _str
                    or t is _complex or t is _bytes):
                continue
            nested = "" if depth == 0 else "a value containing "
            if depth >= plain_depth:
                return "a value nested more than %d deep" % plain_depth
            if t is _list or t is _tuple or t is _set or t is _frozenset:
                budget -= _len(x)
                if budget < 0:
                    return "a value of more than %d items" % plain_items
                for y in x:
                    stack.append((y, depth + 1))
            elif t is _dict:
                budget -= 2 * _len(x)
                if budget < 0:
                    return "a value of more than %d items" % plain_items
                for k, y in _dict.items(x):
                    stack.append((k, depth + 1))
                    stack.append((y, depth + 1))
            else:
                return nested + "a " + describe(t)
        return None

    def guarded(fn, what):
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            restore()
            err = plain_error(result)
            if err is not None:
                hacks.append(what + " returned " + err + ", not plain data")
                raise _SystemExit(1)
            return result
        return call

    def solution_factory(cls):
        def make(*args, **kwargs):
            inst = cls(*args, **kwargs)
            attrs = {}
            for name in _dir(inst):
                if _type(name) is _str and not name.startswith("__"):
                    value = _getattr(inst, name)
                    attrs[name] = (guarded(value, "Solution." + name) if _callable(value)
                                   else value)
            return _Namespace(**attrs)
        return make

    program_lines = program.splitlines()
    tests_lines = tests.splitlines()

    def shift(code, offset):
        consts = _tuple(shift(k, offset) if _type(k) is _CodeType else k
                        for k in code.co_consts)
        return code.replace(co_firstlineno=code.co_firstlineno + offset, co_consts=consts)

    def report(kind, detail):
        text = "\n__cove_detail_%s\n%s\n__cove_%s_%s\n" % (token, detail, kind, token)
        try:
            _write(2, text.encode("utf-8", "replace"))
        except _BaseException:
            pass

    def where(tb):
        """The program and test lines of a traceback, innermost last (no frames read)."""
        out = []
        count = 0
        while tb is not None and count < 200:
            count += 1
            line = tb.tb_lineno
            if _type(line) is _int:
                if line > program_off:
                    n = line - program_off
                    src = program_lines[n - 1] if 0 < n <= _len(program_lines) else ""
                    out.append('  File "solution.py", line %d\n    %s' % (n, src.strip()))
                elif line > tests_off:
                    n = line - tests_off
                    src = tests_lines[n - 1] if 0 < n <= _len(tests_lines) else ""
                    out.append('  File "tests.py", line %d\n    %s' % (n, src.strip()))
            tb = tb.tb_next
        return "\n".join(out[-tb_frames:])

    def failure(err, tb):
        try:
            message = _str(err) if _isinstance(err, _BaseException) else ""
        except _BaseException:
            message = ""
        name = describe(_type(err))
        lines = where(tb)
        return ("Traceback (most recent call last):\n" + lines + "\n" if lines else "") + (
            name + (": " + message if message else ""))

    sys.addaudithook(hook)
    try:
        code = shift(_compile(program, "solution.py", "exec"), program_off)
    except (_SyntaxError, _ValueError) as err:
        report("syntax", "".join(traceback.format_exception_only(err)).rstrip())
        raise _SystemExit(1)
    try:
        test_code = shift(_compile(tests, "tests.py", "exec"), tests_off)
    except (_SyntaxError, _ValueError) as err:
        report("error", "the tests do not compile: " + _str(err))
        raise _SystemExit(1)

    program_ns = {"__name__": "__main__", "__builtins__": real_builtins,
                  "__file__": "solution.py"}
    stage = "program"
    try:
        _exec(code, program_ns)
        restore()
        stage = "tests"
        mentioned = _frozenset(_findall(r"[A-Za-z_]\w*", tests))
        test_ns = {"__name__": "__main__", "__builtins__": real_builtins,
                   "__file__": "tests.py"}
        for name, value in _dict.items(program_ns):
            if _type(name) is not _str or name.startswith("__") or name not in mentioned:
                if _type(name) is _str and not name.startswith("__"):
                    test_ns[name] = value
                continue
            if guard and name == "Solution" and _isinstance(value, _type):
                test_ns[name] = solution_factory(value)
            elif (guard and _callable(value) and not _isinstance(value, _type)
                  and _type(value) is not _ModuleType):
                test_ns[name] = guarded(value, "`" + name + "`")
            else:
                test_ns[name] = value
        candidate = None
        if entry_point is not None:
            if entry_point in program_ns and _callable(program_ns[entry_point]):
                candidate = program_ns[entry_point]
            elif _isinstance(program_ns.get("Solution"), _type):
                candidate = _getattr(program_ns["Solution"](), entry_point)
            else:
                raise _NameError("no function or Solution method named " + entry_point)
            if guard:
                candidate = guarded(candidate, "entry point `" + entry_point + "`")
        _exec(test_code, test_ns)
        check = test_ns.get("check")
        if candidate is not None and check is not None:
            check(candidate)
    except _BaseException as err:
        tb = _exc_info()[2]
        if hacks:
            report("hack", hacks[0])
        elif _type(err) is _SystemExit:
            report("wrong", "the program exited before the tests finished"
                   if stage == "tests" else "the program exited before the tests ran")
        else:
            detail = failure(err, tb)
            report("wrong" if _isinstance(err, _AssertionError) and stage == "tests"
                   else "error", detail)
        raise _SystemExit(1)
    if hacks:
        report("hack", hacks[0])
        raise _SystemExit(1)
    _write(1, ("\n" + token + "\n").encode())
