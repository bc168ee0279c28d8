#!/usr/bin/env python3
"""Writes datasets/code-synth/{train,test}.jsonl: Cove's graded synthetic code set (README.md).

Short function tasks in six levels, from one arithmetic expression to a loop, plus a
stdin/stdout level. Every task is a family (what the function computes) with a number
that makes it unique (`add_7` vs `add_9`); a task's key is (family, number), and the
held-out split shares no key with the training split. Each task has a reference
solution and wrong solutions labelled with the verdict the sandbox must give them.
Expected outputs are computed by running the reference solution with native CPython
here, so they cannot drift from it; a wrong solution is checked here to differ from the
reference on at least one case. Deterministic for the seed: running it again rewrites
the same bytes.

Run: python3 datasets/code-synth/make_problems.py [OUT_DIR]   (default: this folder)
"""

import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 2026
TRAIN_PER_LEVEL = 120
TEST_PER_LEVEL = 40
INSTRUCTION = "Answer with the function in a ```python code block."


def ints(rng, n, lo=-9, hi=20):
    return [rng.randint(lo, hi) for _ in range(n)]


def word(rng, n):
    return "".join(rng.choice("abcdeghilmnoprstu") for _ in range(n))


# Each family: level, the function's name and parameter list (from the task's number c),
# what it returns (prompt text), the body of the reference, wrong bodies with verdicts,
# and a maker of argument lists. `c` ranges over `numbers`.
FAMILIES = [
    # Level 1: one argument, one expression.
    dict(level=1, key="add", numbers=range(2, 40), name="add_{c}", params="x",
         what="x plus {c}", body="return x + {c}",
         wrong=[("return x + {c1}", "WrongAnswer")], args=lambda r, c: [r.randint(-20, 50)]),
    dict(level=1, key="times", numbers=range(2, 40), name="times_{c}", params="x",
         what="x multiplied by {c}", body="return x * {c}",
         wrong=[("return x + {c}", "WrongAnswer")], args=lambda r, c: [r.randint(-20, 50)]),
    dict(level=1, key="minus", numbers=range(2, 40), name="minus_{c}", params="x",
         what="x minus {c}", body="return x - {c}",
         wrong=[("return {c} - x", "WrongAnswer")], args=lambda r, c: [r.randint(-20, 50)]),
    # Level 2: two arguments, or a square, or a comparison.
    dict(level=2, key="affine", numbers=range(2, 40), name="scale_add_{c}", params="a, b",
         what="a times {c}, plus b", body="return a * {c} + b",
         wrong=[("return (a + b) * {c}", "WrongAnswer")],
         args=lambda r, c: [r.randint(-9, 20), r.randint(-9, 20)]),
    dict(level=2, key="square", numbers=range(2, 40), name="square_plus_{c}", params="x",
         what="x squared plus {c}", body="return x * x + {c}",
         wrong=[("return x * 2 + {c}", "WrongAnswer")], args=lambda r, c: [r.randint(-12, 12)]),
    dict(level=2, key="clamp", numbers=range(2, 40), name="at_most_{c}", params="x",
         what="x, or {c} if x is greater than {c}", body="return min(x, {c})",
         wrong=[("return max(x, {c})", "WrongAnswer")], args=lambda r, c: [r.randint(-10, 60)]),
    # Level 3: a list.
    dict(level=3, key="count_above", numbers=range(0, 50), name="count_above_{c}", params="nums",
         what="how many numbers in the list nums are greater than {c}",
         body="return sum(1 for n in nums if n > {c})",
         wrong=[("return sum(1 for n in nums if n >= {c})", "WrongAnswer")],
         args=lambda r, c: [ints(r, r.randint(0, 8), c - 10, c + 10) + [c]]),
    dict(level=3, key="sum_above", numbers=range(0, 50), name="sum_above_{c}", params="nums",
         what="the sum of the numbers in the list nums that are greater than {c}",
         body="return sum(n for n in nums if n > {c})",
         wrong=[("return sum(nums)", "WrongAnswer")],
         args=lambda r, c: [ints(r, r.randint(1, 8), c - 10, c + 10)]),
    dict(level=3, key="multiples", numbers=range(2, 20), name="count_multiples_of_{c}", params="nums",
         what="how many numbers in the list nums are divisible by {c}",
         body="return sum(1 for n in nums if n % {c} == 0)",
         wrong=[("return sum(1 for n in nums if n % {c} != 0)", "WrongAnswer")],
         args=lambda r, c: [ints(r, r.randint(1, 8), 1, 40)]),
    # Level 4: a string.
    dict(level=4, key="count_char", numbers="abcdeghilmnoprstu", name="count_{c}", params="s",
         what="how many times the letter '{c}' appears in the string s",
         body="return s.count('{c}')",
         wrong=[("return s.count(letter)", "RuntimeError")],
         args=lambda r, c: [word(r, r.randint(0, 6)) + c + word(r, r.randint(0, 6))]),
    dict(level=4, key="repeat", numbers=range(2, 30), name="repeat_{c}", params="s",
         what="the string s repeated {c} times", body="return s * {c}",
         wrong=[("return s * {c1}", "WrongAnswer")], args=lambda r, c: [word(r, r.randint(1, 5))]),
    dict(level=4, key="remove_char", numbers="abcdeghilmnoprstu", name="remove_{c}", params="s",
         what="the string s with every letter '{c}' removed", body="return s.replace('{c}', '')",
         wrong=[("return s.replace('{c}', ' ')", "WrongAnswer")],
         args=lambda r, c: [word(r, r.randint(0, 6)) + c + word(r, r.randint(0, 6))]),
    dict(level=4, key="every_kth", numbers=range(2, 12), name="every_{c}th_letter", params="s",
         what="every {c}th letter of the string s, starting with the first (s[0], s[{c}], ...)",
         body="return s[::{c}]",
         wrong=[("return s[{c}::{c}]", "WrongAnswer")], args=lambda r, c: [word(r, r.randint(3, 14))]),
    # Level 5: a loop.
    dict(level=5, key="sum_multiples", numbers=range(2, 40), name="sum_multiples_of_{c}", params="n",
         what="the sum of all multiples of {c} from 1 to n inclusive",
         body="return sum(i for i in range(1, n + 1) if i % {c} == 0)",
         wrong=[("return sum(i for i in range(1, n) if i % {c} == 0)", "WrongAnswer")],
         args=lambda r, c: [r.randint(1, 6) * c]),
    dict(level=5, key="power_sum", numbers=range(2, 5), name="sum_of_powers_{c}", params="n",
         what="1**{c} + 2**{c} + ... + n**{c} (0 when n is 0)",
         body="return sum(i ** {c} for i in range(1, n + 1))",
         wrong=[("return sum(i * {c} for i in range(1, n + 1))", "WrongAnswer")],
         args=lambda r, c: [r.randint(0, 9)]),
    dict(level=5, key="digit_count", numbers=range(0, 10), name="count_digit_{c}", params="n",
         what="how many digits of the non-negative integer n are equal to {c}",
         body="return str(n).count('{c}')",
         wrong=[("return str(n).count('{c1}')", "WrongAnswer")],
         args=lambda r, c: [int(str(r.randint(0, 99)) + str(c) + str(r.randint(0, 999)))]),
    dict(level=5, key="collatz", numbers=range(2, 12), name="halving_steps_{c}", params="n",
         what="how many times the positive integer n can be divided by {c} (integer division) "
              "before it drops below {c}",
         body="steps = 0\n    while n >= {c}:\n        n //= {c}\n        steps += 1\n    return steps",
         wrong=[("steps = 0\n    while n > {c}:\n        n //= {c}\n        steps += 1\n    return steps",
                 "WrongAnswer")],
         args=lambda r, c: [r.randint(1, 500)]),
]

# Level 6: standard input and output.
STDIO = [
    dict(key="stdio_count_above", numbers=range(0, 40),
         what="Read one line of space-separated integers from standard input and print how "
              "many of them are greater than {c}.",
         solution="nums = list(map(int, input().split()))\nprint(sum(1 for n in nums if n > {c}))\n",
         wrong=[("nums = list(map(int, input().split()))\nprint(len(nums))\n", "WrongAnswer"),
                ("print(sum(1 for n in input().split() if n > {c}))\n", "RuntimeError")],
         line=lambda r, c: ints(r, r.randint(1, 8), c - 10, c + 10) + [c + 1]),
    dict(key="stdio_sum_times", numbers=range(2, 40),
         what="Read one line of space-separated integers from standard input and print their "
              "sum multiplied by {c}.",
         solution="nums = list(map(int, input().split()))\nprint(sum(nums) * {c})\n",
         wrong=[("nums = list(map(int, input().split()))\nprint(sum(nums) + {c})\n", "WrongAnswer")],
         line=lambda r, c: ints(r, r.randint(1, 8))),
]

CASES = 5


def fill(text, c):
    c1 = c + 1 if isinstance(c, int) else c
    return text.format(c=c, c1=c1)


def literal(value):
    return repr(value)


def call_task(fam, c, rng):
    name = fill(fam["name"], c)
    params = fam["params"]
    solution = f"def {name}({params}):\n    {fill(fam['body'], c)}\n"
    wrong = [(f"def {name}({params}):\n    {fill(b, c)}\n", v) for b, v in fam["wrong"]]
    ns = {}
    exec(compile(solution, "solution.py", "exec"), ns)
    fn = ns[name]
    inputs = []
    while len(inputs) < CASES:
        args = fam["args"](rng, c)
        if args not in inputs:
            inputs.append(args)
    outputs = [fn(*a) for a in inputs]
    for code, verdict in wrong:
        if verdict == "WrongAnswer":
            ws = {}
            exec(compile(code, "wrong.py", "exec"), ws)
            # Make sure some case tells the wrong solution apart (add one if needed).
            tries = 0
            while all(ws[name](*a) == o for a, o in zip(inputs, outputs)):
                args = fam["args"](rng, c)
                inputs[-1], outputs[-1] = args, fn(*args)
                tries += 1
                assert tries < 1000, f"{name}: wrong solution never differs"
    example_args = inputs[0]
    example = f"{name}({', '.join(literal(a) for a in example_args)})"
    prompt = (f"Write a Python function `{name}({params})` that returns {fill(fam['what'], c)}. "
              f"For example, `{example}` returns `{literal(outputs[0])}`. {INSTRUCTION}")
    tests = {"kind": "call", "fn_name": name, "inputs": inputs,
             "outputs": json.loads(json.dumps(outputs))}
    return prompt, tests, solution, wrong


def run_stdio(code, stdin):
    with tempfile.TemporaryFile("w+") as f:
        f.write(stdin)
        f.seek(0)
        done = subprocess.run([sys.executable, "-c", code], stdin=f, capture_output=True,
                              text=True)
    return done.returncode, done.stdout


def stdio_task(fam, c, rng):
    solution = fill(fam["solution"], c)
    wrong = [(fill(code, c), v) for code, v in fam["wrong"]]
    inputs = []
    while len(inputs) < CASES:
        line = " ".join(map(str, fam["line"](rng, c))) + "\n"
        if line not in inputs:
            inputs.append(line)
    outputs = []
    for i in inputs:
        code, out = run_stdio(solution, i)
        assert code == 0, solution
        outputs.append(out)
    for code, verdict in wrong:
        if verdict == "WrongAnswer":
            assert any(run_stdio(code, i)[1] != o for i, o in zip(inputs, outputs)), code
    prompt = (f"Write a Python program. {fill(fam['what'], c)} For example, for the input "
              f"`{inputs[0].strip()}` it prints `{outputs[0].strip()}`. "
              "Answer with the program in a ```python code block.")
    tests = {"kind": "stdio", "inputs": inputs, "outputs": outputs}
    return prompt, tests, solution, wrong


def tasks_of_level(level):
    """Every (family, number) of a level, in a fixed order."""
    fams = [(f, call_task) for f in FAMILIES if f["level"] == level]
    if level == 6:
        fams = [(f, stdio_task) for f in STDIO]
    return [(f, make, c) for f, make in fams for c in f["numbers"]]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    rng = random.Random(SEED)
    splits = {"train": [], "test": []}
    for level in range(1, 7):
        keys = tasks_of_level(level)
        rng.shuffle(keys)
        assert len(keys) >= TEST_PER_LEVEL + 20, f"level {level}: only {len(keys)} tasks"
        test, train = keys[:TEST_PER_LEVEL], keys[TEST_PER_LEVEL:TEST_PER_LEVEL + TRAIN_PER_LEVEL]
        for split, chosen in (("test", test), ("train", train)):
            for fam, make, c in chosen:
                prompt, tests, solution, wrong = make(fam, c, rng)
                splits[split].append(dict(
                    id=f"{split}-{level}-{fam['key']}-{c}", level=level, prompt=prompt,
                    tests=tests, solution=solution,
                    wrong=[{"code": code, "verdict": v} for code, v in wrong]))
    for split, rows in splits.items():
        with open(os.path.join(out_dir, f"{split}.jsonl"), "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"{split}.jsonl: {len(rows)} tasks")


if __name__ == "__main__":
    main()
