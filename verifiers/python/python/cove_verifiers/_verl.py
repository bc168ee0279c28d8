"""verl's custom-reward interface: :func:`compute_score` and :func:`compute_score_batch`.

The data sources and return shapes follow verl's ``default_compute_score``
(``verl.utils.reward_score``); the scoring itself is Cove's:

==========================================================  ======================  ==========================================
data_source                                                 verl's scorer           returns
==========================================================  ======================  ==========================================
``openai/gsm8k`` (also ``gsm8k``)                           gsm8k                   float: 1.0 right, 0.0 wrong
``lighteval/MATH``, ``DigitalLearningGmbH/MATH-lighteval``, math                    float: 1.0 / 0.0
``HuggingFaceH4/MATH-500``
``math_dapo``, ``math``, ``math_dapo_reasoning``, ``aime*``  math_dapo               dict: ``score`` 1.0 / -1.0, ``acc`` bool,
                                                                                    ``pred`` the extracted answer
                                                                                    (``"[INVALID]"`` when none)
``numina_aops_forum``, ``numina_synthetic_math``,           prime_math              float: 1.0 / 0.0
``numina_amc_aime``, ``numina_synthetic_amc``,
``numina_cn_k12``, ``numina_olympiads``
``codecontests``, ``apps``, ``codeforces``, ``taco``        prime_code /            float: fraction of test cases passed
                                                            sandbox_fusion
==========================================================  ======================  ==========================================

Other data sources raise ``NotImplementedError`` as verl does.

Differences from verl's scorers, on purpose: every math family uses Cove's verifier
(``\\boxed{}``, ``#### N``, "Answer:", a last number, ... with exact equivalence), so a
GSM8K response need not end in ``#### N`` and a DAPO response is read whole rather than
its last 300 characters. Code runs in Cove's WebAssembly sandbox, every case of the
suite counts (verl stops at 10), and each case has a 5 s deadline (``memory_limit_mb``,
default 1024, caps memory as in verl's newer signature).

The code ground truth is verl's: JSON text (or a dict) ``{"inputs": [...], "outputs":
[...]}`` for stdin/stdout problems, with ``"fn_name"`` for call-based ones (each input
is the argument list); a dict that already has Cove's ``"kind"`` is taken as it is.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import code as _code
from . import math as _math

__all__ = ["compute_score", "compute_score_batch", "verl_tests_to_suite", "family"]

GSM8K = frozenset({"openai/gsm8k", "gsm8k"})
MATH = frozenset({"lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"})
DAPO = frozenset({"math_dapo", "math", "math_dapo_reasoning"})
NUMINA = frozenset(
    {
        "numina_aops_forum",
        "numina_synthetic_math",
        "numina_amc_aime",
        "numina_synthetic_amc",
        "numina_cn_k12",
        "numina_olympiads",
    }
)
CODE = frozenset({"codecontests", "apps", "codeforces", "taco"})

#: Per-case deadline of code data sources, in seconds.
CODE_TIMEOUT_S = 5.0
#: Default memory cap of code data sources, in MiB.
CODE_MEMORY_MB = 1024

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def family(data_source: str) -> str:
    """The scorer family of a verl data source: ``"gsm8k"``, ``"math"``, ``"dapo"``,
    ``"numina"`` or ``"code"``; raises ``NotImplementedError`` for others."""
    if not isinstance(data_source, str):
        raise TypeError(f"data_source must be a str, got {type(data_source).__name__}")
    if data_source in GSM8K:
        return "gsm8k"
    if data_source in MATH:
        return "math"
    if data_source in DAPO or data_source.startswith("aime"):
        return "dapo"
    if data_source in NUMINA:
        return "numina"
    if data_source in CODE:
        return "code"
    raise NotImplementedError(f"Reward function is not implemented for {data_source=}")


def _lines(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "\n".join(v) + "\n"
    raise ValueError(f"a stdin/stdout test case must be a str (or a list of lines), got {type(v).__name__}")


def verl_tests_to_suite(ground_truth: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Converts verl's code ground truth (APPS / TACO / CodeContests style) into Cove's
    TestSuite dict; see the module docstring. Raises ``ValueError`` on a shape it cannot
    read."""
    gt: Any = ground_truth
    if isinstance(gt, (bytes, bytearray)):
        gt = gt.decode("utf-8")
    if isinstance(gt, str):
        try:
            gt = json.loads(gt)
        except json.JSONDecodeError as e:
            raise ValueError(f"code ground truth is not valid JSON: {e}") from None
    if not isinstance(gt, Mapping):
        raise ValueError(f"code ground truth must be a JSON object, got {type(gt).__name__}")
    if "kind" in gt:
        return dict(gt)
    if "inputs" not in gt or "outputs" not in gt:
        raise ValueError('code ground truth needs "inputs" and "outputs"')
    inputs, outputs = gt["inputs"], gt["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError('code ground truth: "inputs" and "outputs" must be lists')
    fn_name = gt.get("fn_name")
    if fn_name:
        return {
            "kind": "call",
            "fn_name": fn_name,
            "inputs": [x if isinstance(x, list) else [x] for x in inputs],
            "outputs": list(outputs),
        }
    return {"kind": "stdio", "inputs": [_lines(x) for x in inputs], "outputs": [_lines(x) for x in outputs]}


def _math_result(fam: str, verdict: Dict[str, Any]) -> Union[float, Dict[str, Any]]:
    ok = bool(verdict["correct"])
    if fam == "dapo":
        pred = verdict["extracted"]
        return {"score": 1.0 if ok else -1.0, "acc": ok, "pred": pred if pred is not None else "[INVALID]"}
    return 1.0 if ok else 0.0


def _memory(kwargs: Mapping[str, Any]) -> int:
    m = kwargs.get("memory_limit_mb")
    return CODE_MEMORY_MB if m is None else int(m)


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> Union[float, Dict[str, Any]]:
    """Scores one response the way verl's ``default_compute_score`` does for
    ``data_source`` (see the module docstring for the table).

    Use it as verl's custom reward: ``custom_reward_function.path`` pointing at a file
    with ``from cove_verifiers import compute_score``, ``custom_reward_function.name=
    compute_score``. Extra keyword arguments verl passes (``sandbox_fusion_url``,
    ``concurrent_semaphore``, ...) are accepted and ignored, except ``memory_limit_mb``.

    Returns:
        A float, or for DAPO / AIME sources a dict with ``score``, ``acc`` and ``pred``.

    Raises:
        NotImplementedError: unknown data source.
        TypeError: ``solution_str`` not a str, ground truth of the wrong type.
        ValueError: a code ground truth that cannot be read as tests.
    """
    fam = family(data_source)
    if not isinstance(solution_str, str):
        raise TypeError(f"solution_str must be a str, got {type(solution_str).__name__}")
    if fam == "code":
        suite = verl_tests_to_suite(ground_truth)
        report = _code.verify(
            _THINK.sub("", solution_str),
            suite,
            timeout_s=CODE_TIMEOUT_S,
            memory_mb=_memory(kwargs),
            scoring="pass-fraction",
        )
        return float(report["score"])
    return _math_result(fam, _math.verify(ground_truth, solution_str))


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
    threads: int = 0,
    **kwargs: Any,
) -> List[Union[float, Dict[str, Any]]]:
    """:func:`compute_score` over many items (verl's ``BatchRewardManager`` signature):
    math items go through one parallel native batch and code items through another, on
    ``threads`` threads (0: all cores). Results are in input order."""
    n = len(data_sources)
    if len(solution_strs) != n or len(ground_truths) != n:
        raise ValueError(
            f"data_sources, solution_strs and ground_truths differ in length ({n}, "
            f"{len(solution_strs)}, {len(ground_truths)})"
        )
    if extra_infos is not None and len(extra_infos) != n:
        raise ValueError(f"extra_infos has {len(extra_infos)} items, expected {n}")
    fams = [family(d) for d in data_sources]
    for i, s in enumerate(solution_strs):
        if not isinstance(s, str):
            raise TypeError(f"solution_strs[{i}] must be a str, got {type(s).__name__}")
    out: List[Union[float, Dict[str, Any]]] = [0.0] * n
    math_idx = [i for i, f in enumerate(fams) if f != "code"]
    code_idx = [i for i, f in enumerate(fams) if f == "code"]
    if math_idx:
        verdicts = _math.verify_batch([(ground_truths[i], solution_strs[i]) for i in math_idx], threads=threads)
        for i, v in zip(math_idx, verdicts):
            out[i] = _math_result(fams[i], v)
    if code_idx:
        items = [(_THINK.sub("", solution_strs[i]), verl_tests_to_suite(ground_truths[i])) for i in code_idx]
        reports = _code.verify_batch(
            items,
            threads=threads,
            timeout_s=CODE_TIMEOUT_S,
            memory_mb=_memory(kwargs),
            scoring="pass-fraction",
        )
        for i, r in zip(code_idx, reports):
            out[i] = float(r["score"])
    return out
