"""compute_score: verl's data sources and return shapes."""

from __future__ import annotations

import json

import pytest

from cove_verifiers import compute_score, compute_score_batch
from cove_verifiers._verl import verl_tests_to_suite

GSM_RESPONSE = "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72"
MATH_RESPONSE = "The distance is $\\sqrt{(3)^2+(4)^2} = 5$, so the answer is $\\boxed{5}$."


@pytest.mark.parametrize("source", ["openai/gsm8k", "gsm8k"])
def test_gsm8k_is_a_float(source):
    right = compute_score(source, GSM_RESPONSE, "72")
    wrong = compute_score(source, GSM_RESPONSE, "73")
    assert type(right) is float and right == 1.0
    assert type(wrong) is float and wrong == 0.0


@pytest.mark.parametrize("source", ["lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"])
def test_math_is_a_float(source):
    assert compute_score(source, MATH_RESPONSE, "5") == 1.0
    assert compute_score(source, MATH_RESPONSE, "\\frac{10}{2}") == 1.0
    assert compute_score(source, MATH_RESPONSE, "6") == 0.0
    assert type(compute_score(source, MATH_RESPONSE, "6")) is float


@pytest.mark.parametrize("source", ["math_dapo", "math", "math_dapo_reasoning", "aime24", "aime2025"])
def test_dapo_and_aime_are_dicts(source):
    right = compute_score(source, "Let me think... Answer: 204", "204")
    assert right == {"score": 1.0, "acc": True, "pred": "204"}
    wrong = compute_score(source, "Answer: 205", "204")
    assert wrong["score"] == -1.0 and wrong["acc"] is False and wrong["pred"] == "205"
    none = compute_score(source, "I give up.", "204")
    assert none == {"score": -1.0, "acc": False, "pred": "[INVALID]"}


@pytest.mark.parametrize("source", ["numina_aops_forum", "numina_cn_k12", "numina_olympiads", "numina_synthetic_math"])
def test_numina_is_a_float(source):
    assert compute_score(source, "so $\\boxed{\\frac{3}{4}}$", "0.75") == 1.0
    assert compute_score(source, "so $\\boxed{\\frac{3}{5}}$", "0.75") == 0.0


def test_unknown_source_is_not_implemented():
    with pytest.raises(NotImplementedError, match="my/dataset"):
        compute_score("my/dataset", "x", "y")
    with pytest.raises(NotImplementedError):
        compute_score("hiyouga/geometry3k", "x", "y")
    with pytest.raises(TypeError):
        compute_score(None, "x", "y")
    with pytest.raises(TypeError, match="solution_str"):
        compute_score("openai/gsm8k", 72, "72")


def test_verl_keyword_arguments_are_accepted():
    assert compute_score("openai/gsm8k", GSM_RESPONSE, "72", extra_info={"index": 0}, sandbox_fusion_url=None) == 1.0
    assert compute_score(data_source="openai/gsm8k", solution_str=GSM_RESPONSE, ground_truth="72") == 1.0


STDIO_GT = json.dumps({"inputs": ["1 2\n", "5 7\n", "10 -3\n"], "outputs": ["3\n", "12\n", "7\n"]})
CALL_GT = json.dumps({"fn_name": "add", "inputs": [[1, 2], [5, 7]], "outputs": [[3], [12]]})


@pytest.mark.parametrize("source", ["codecontests", "apps", "codeforces", "taco"])
def test_code_sources_are_the_fraction_passed(source, sandbox):
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert compute_score(source, good, STDIO_GT) == 1.0
    partial = "```python\na, b = map(int, input().split())\nprint(a + b if a < 5 else 0)\n```"
    assert compute_score(source, partial, STDIO_GT) == pytest.approx(1 / 3)
    assert compute_score(source, "print('no')", STDIO_GT) == 0.0
    assert type(compute_score(source, good, STDIO_GT)) is float


def test_code_call_based_and_think_tags(sandbox):
    response = "<think>```python\ndef add(a, b):\n    return 0\n```</think>\n```python\ndef add(a, b):\n    return a + b\n```"
    assert compute_score("apps", response, CALL_GT) == 1.0
    assert compute_score("apps", response, json.loads(CALL_GT)) == 1.0
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    assert compute_score("apps", wrong, CALL_GT) == 0.0


def test_verl_tests_conversion():
    assert verl_tests_to_suite(STDIO_GT)["kind"] == "stdio"
    call = verl_tests_to_suite(CALL_GT)
    assert call == {"kind": "call", "fn_name": "add", "inputs": [[1, 2], [5, 7]], "outputs": [[3], [12]]}
    lines = verl_tests_to_suite({"inputs": [["1 2", "3"]], "outputs": [["x"]]})
    assert lines["inputs"] == ["1 2\n3\n"]
    cove = {"kind": "assert", "code": "assert f() == 1"}
    assert verl_tests_to_suite(cove) == cove
    with pytest.raises(ValueError, match="JSON"):
        verl_tests_to_suite("{not json")
    with pytest.raises(ValueError, match="inputs"):
        verl_tests_to_suite({"outputs": []})
    with pytest.raises(ValueError):
        compute_score("apps", "print(1)", json.dumps({"inputs": ["1"], "outputs": []}))


def test_batch_matches_single_calls(sandbox):
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    items = [
        ("openai/gsm8k", GSM_RESPONSE, "72"),
        ("math_dapo", "Answer: 3", "4"),
        ("apps", good, STDIO_GT),
        ("HuggingFaceH4/MATH-500", MATH_RESPONSE, "5"),
        ("aime24", "Answer: 4", "4"),
    ]
    batch = compute_score_batch(*map(list, zip(*items)), threads=2)
    assert batch == [compute_score(*i) for i in items]
    assert batch[0] == 1.0 and batch[1]["score"] == -1.0 and batch[2] == 1.0 and batch[4]["acc"] is True
    with pytest.raises(ValueError, match="differ in length"):
        compute_score_batch(["gsm8k"], ["x", "y"], ["1"])
