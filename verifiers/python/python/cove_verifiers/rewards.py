"""TRL-style reward functions (``GRPOTrainer(reward_funcs=[...])``).

Each takes the batch's ``completions`` and the dataset columns as keyword arguments and
returns one float per completion (None where the row has no reference, which TRL skips).
Completions may be plain (``list[str]``) or conversational (``list[list[{"role",
"content"}]]``, scored on the last message's content). The whole batch goes through one
native batch call, in parallel, with the GIL released.

>>> from cove_verifiers.rewards import math_accuracy
>>> math_accuracy(["... so \\\\boxed{4}", "it is 5"], solution=["4", "4"])
[1.0, 0.0]
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

from . import code as _code
from . import math as _math
from ._verl import verl_tests_to_suite

__all__ = ["math_accuracy", "code_accuracy", "code_pass_rate", "completion_text"]

Message = Mapping[str, Any]
Completion = Union[str, Sequence[Message]]


def completion_text(completion: Completion) -> str:
    """The text of one completion: the string itself, or the ``content`` of the last
    message of a conversational completion (text parts joined when the content is a list
    of ``{"type": "text", "text": ...}`` parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        if isinstance(last, Mapping) and "content" in last:
            content = last["content"]
            if isinstance(content, str):
                return content
            if isinstance(content, Sequence):
                parts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
                return "".join(p for p in parts if isinstance(p, str))
            raise TypeError(f"message content must be a str or a list of parts, got {type(content).__name__}")
    raise TypeError(
        "a completion must be a str or a non-empty list of {'role', 'content'} messages, "
        f"got {type(completion).__name__}"
    )


def _column(name: str, values: Any, n: int) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list with one item per completion")
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} items but there are {n} completions")
    return values


def math_accuracy(completions: Sequence[Completion], solution: Sequence[Any], **kwargs: Any) -> List[Optional[float]]:
    """1.0 where the completion's final answer equals ``solution`` (Cove's math
    verifier, default options), 0.0 where it does not, None where ``solution`` is None.

    Args:
        completions: the batch's completions (plain or conversational).
        solution: the dataset's gold answers (bare answers, solutions with
            ``\\boxed{}`` / ``#### N``, or numbers), one per completion.
        **kwargs: the other columns TRL passes; ignored.
    """
    golds = _column("solution", solution, len(completions))
    texts = [completion_text(c) for c in completions]
    idx = [i for i, g in enumerate(golds) if g is not None]
    out: List[Optional[float]] = [None] * len(texts)
    for i, v in zip(idx, _math.verify_batch([(golds[i], texts[i]) for i in idx])):
        out[i] = 1.0 if v["correct"] else 0.0
    return out


def _code_scores(completions, tests, scoring: str) -> List[Optional[float]]:
    suites = _column("tests", tests, len(completions))
    texts = [completion_text(c) for c in completions]
    idx = [i for i, t in enumerate(suites) if t is not None]
    items = []
    for i in idx:
        t = suites[i]
        suite = t if isinstance(t, str) and '"kind"' in t else verl_tests_to_suite(t)
        items.append((texts[i], suite))
    out: List[Optional[float]] = [None] * len(texts)
    for i, r in zip(idx, _code.verify_batch(items, scoring=scoring)):
        out[i] = float(r["score"])
    return out


def code_accuracy(completions: Sequence[Completion], tests: Sequence[Any], **kwargs: Any) -> List[Optional[float]]:
    """1.0 where the completion's program passes every case of ``tests``, else 0.0
    (None where ``tests`` is None). Programs run in Cove's sandbox with the default
    limits (4 s, 512 MiB per case).

    Args:
        completions: the batch's completions (plain or conversational); the program is
            the last ```python block.
        tests: one test suite per completion: Cove's TestSuite (dict or JSON text), or
            verl's ``{"inputs", "outputs", "fn_name"?}`` ground truth.
        **kwargs: the other columns TRL passes; ignored.
    """
    return _code_scores(completions, tests, "all-or-nothing")


def code_pass_rate(completions: Sequence[Completion], tests: Sequence[Any], **kwargs: Any) -> List[Optional[float]]:
    """Like :func:`code_accuracy`, but the fraction of cases passed."""
    return _code_scores(completions, tests, "pass-fraction")
