"""The math-answer verifier: is the final answer of a response equal to a gold answer?

Extraction (``\\boxed{}``, ``#### N``, "the final answer is", ``$...$``, a last number),
LaTeX normalisation and exact mathematical comparison all run in Rust; every item takes
a bounded amount of work, so there are no timeouts, and nothing hangs or crashes on odd
input.

Options (keyword arguments of :func:`verify` and :func:`verify_batch`, the fields of
Cove's ``MathOptions``):

``boxed`` (``"last"``)
    Which ``\\boxed{}`` answers when a response has several: ``"last"``, ``"first"`` or
    ``"all"`` (every box, as an order-free list).
``last_number_fallback`` (``True``)
    Fall back to the last number in the response when nothing else marks an answer.
``rel_tol`` (``1e-6``)
    Relative tolerance for answers written as decimals.
``percent_as_fraction`` (``True``)
    Whether ``50\\%`` also matches ``0.5`` (it always matches ``50``).
``eval_points`` (``4``)
    Points (1 to 11) at which expressions with variables are compared.
``decimal_places`` (``None``)
    Decimal places (0 to 15) at which an answer written as a decimal also matches when
    it agrees with the gold after both are rounded (``0.333`` matches ``\\frac{1}{3}``
    at 3, not at 4); ``None``: off.

An unknown option raises ``TypeError`` naming it; a value of the wrong type
``TypeError``; a value out of range ``ValueError``.

>>> from cove_verifiers import math
>>> math.verify("\\\\frac{1}{2}", "So the answer is $\\\\boxed{0.5}$.")["correct"]
True
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

from . import _native

__all__ = ["verify", "verify_batch", "default_options", "Gold"]

#: A gold answer: LaTeX text, a solution with ``\\boxed{}`` or ``#### N``, or a number.
Gold = Union[str, int, float]


def _gold(gold: Any, where: str) -> str:
    """The gold answer as text (numbers as ``str()`` writes them, as ``cove verify
    math`` does for JSON numbers)."""
    if isinstance(gold, str):
        return gold
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return str(gold)
    raise TypeError(f"{where}: gold must be a str or a number, got {type(gold).__name__}")


def _response(response: Any, where: str) -> str:
    if isinstance(response, str):
        return response
    raise TypeError(f"{where}: response must be a str, got {type(response).__name__}")


def default_options() -> Dict[str, Any]:
    """The default options, as a dict (a fresh copy each call)."""
    return _native.math_default_options()


def verify(gold: Gold, response: str, **options: Any) -> Dict[str, Any]:
    """Verifies one response against a gold answer.

    Args:
        gold: the gold answer: bare LaTeX (MATH's ``answer``), a full solution with
            ``\\boxed{}`` or ``#### N``, or a number such as ``27.0``.
        response: the model's full output.
        **options: see the module docstring.

    Returns:
        ``{"correct": bool, "extracted": str | None, "gold_normalized": str,
        "reason": str}``: the verdict, the answer text found in the response (None when
        none was), the normalised gold answer, and how the verdict was reached.
    """
    return _native.math_verify(
        _gold(gold, "verify()"), _response(response, "verify()"), options or None
    )


def verify_batch(
    pairs: Iterable[Union[Tuple[Gold, str], Sequence[Any]]],
    threads: int = 0,
    **options: Any,
) -> List[Dict[str, Any]]:
    """Verifies many ``(gold, response)`` pairs in parallel, in input order.

    The work runs in Rust on a pool of ``threads`` threads (0: every core) with the GIL
    released, so other Python threads keep running meanwhile.

    Args:
        pairs: ``(gold, response)`` pairs (tuples or two-item lists).
        threads: worker threads; 0 uses all cores (or ``RAYON_NUM_THREADS``).
        **options: see the module docstring.

    Returns:
        One verdict dict per pair, as :func:`verify` returns.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"verify_batch(): threads must be an int, got {type(threads).__name__}")
    if threads < 0:
        raise ValueError(f"verify_batch(): threads must be >= 0, got {threads}")
    if isinstance(pairs, (str, bytes)):
        raise TypeError("verify_batch(): pairs must be an iterable of (gold, response) pairs")
    items = []
    for i, pair in enumerate(pairs):
        try:
            gold, response = pair
        except (TypeError, ValueError):
            raise TypeError(
                f"verify_batch(): item {i} must be a (gold, response) pair, got {type(pair).__name__}"
            ) from None
        where = f"verify_batch() item {i}"
        items.append((_gold(gold, where), _response(response, where)))
    return _native.math_verify_batch(items, threads, options or None)
