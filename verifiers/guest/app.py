"""The pre-initialised component's entry point (built by scripts/setup.sh with
componentize-py). Every module imported here is loaded once at build time and is part
of the snapshot; a program can import only these (and what they import) at run time.
Keep this list in step with the table in verifiers/guest/README.md."""

# fmt: off
import abc, array, base64, binascii, bisect, builtins, calendar, cmath, collections  # noqa: F401,E401
import collections.abc, contextlib, copy, dataclasses, datetime, decimal, difflib  # noqa: F401,E401
import enum, fractions, functools, hashlib, heapq, io, itertools, json, math  # noqa: F401,E401
import numbers, operator, os, pprint, queue, random, re, statistics, string  # noqa: F401,E401
import struct, sys, textwrap, time, traceback, types, typing, unicodedata, weakref  # noqa: F401,E401
import __future__  # noqa: F401
# fmt: on

import wit_world

import cove_guest


class WitWorld(wit_world.WitWorld):
    """Implements the `sandbox` world of wit/sandbox.wit."""

    def execute(self, code: str, stdin_len: int, deadline_ms: int) -> int:
        return cove_guest.run(code, stdin_len, deadline_ms)
