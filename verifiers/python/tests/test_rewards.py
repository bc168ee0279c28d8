"""TRL reward functions: plain and conversational completions."""

from __future__ import annotations

import pytest

from cove_verifiers.rewards import code_accuracy, code_pass_rate, completion_text, math_accuracy


def chat(text):
    return [{"role": "assistant", "content": text}]


def test_math_accuracy_plain_and_conversational():
    completions = ["so \\boxed{4}", "it is 5", "#### 1,000"]
    solution = ["4", "4", "1000"]
    assert math_accuracy(completions, solution=solution) == [1.0, 0.0, 1.0]
    conv = [chat(c) for c in completions]
    assert math_accuracy(conv, solution=solution, prompts=["p"] * 3, trainer_state=None) == [1.0, 0.0, 1.0]
    # The last message counts, not an earlier one.
    two = [[{"role": "assistant", "content": "\\boxed{4}"}, {"role": "assistant", "content": "\\boxed{5}"}]]
    assert math_accuracy(two, solution=["4"]) == [0.0]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{"}, {"type": "text", "text": "4}"}]}]]
    assert math_accuracy(parts, solution=["4"]) == [1.0]
    assert math_accuracy(["\\boxed{4}", "\\boxed{4}"], solution=[None, 4]) == [None, 1.0]


def test_math_accuracy_errors():
    with pytest.raises(ValueError, match="2 items but there are 1"):
        math_accuracy(["x"], solution=["1", "2"])
    with pytest.raises(TypeError):
        math_accuracy([3], solution=["1"])
    with pytest.raises(TypeError):
        math_accuracy(["x"], solution="1")
    with pytest.raises(TypeError):
        completion_text([])


STDIO = {"kind": "stdio", "inputs": ["2\n", "3\n"], "outputs": ["4\n", "9\n"]}


def test_code_rewards(sandbox):
    good = "```python\nn = int(input())\nprint(n * n)\n```"
    half = "```python\nn = int(input())\nprint(4)\n```"
    completions = [good, half, chat(good)]
    assert code_accuracy(completions, tests=[STDIO] * 3) == [1.0, 0.0, 1.0]
    assert code_pass_rate(completions, tests=[STDIO] * 3) == [1.0, 0.5, 1.0]
    verl_style = '{"inputs": ["2\\n"], "outputs": ["4\\n"]}'
    assert code_accuracy([good, good], tests=[verl_style, None]) == [1.0, None]
