"""cove_verifiers.math: same verdicts as the CLI, options, errors, batches."""

from __future__ import annotations

import json

import pytest

from conftest import CORPUS, run_cli
from cove_verifiers import math

FIELDS = ("correct", "extracted", "gold_normalized", "reason")


def corpus():
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    assert len(rows) > 600
    return rows


def test_batch_gives_exactly_the_cli_verdicts_on_the_corpus(cove_bin):
    rows = corpus()
    out = run_cli(cove_bin, "verify", "math", "--input", str(CORPUS))
    cli = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(cli) == len(rows)
    got = math.verify_batch([(r["gold"], r["response"]) for r in rows])
    mismatches = [
        (r["id"], {k: c[k] for k in FIELDS}, g)
        for r, c, g in zip(rows, cli, got)
        if {k: c[k] for k in FIELDS} != g
    ]
    assert mismatches == []
    # And the corpus labels themselves (the CLI matches all of them); a case with
    # options (a stated precision) is labelled under them.
    wrong = [
        r["id"]
        for r, g in zip(rows, got)
        if "options" not in r and g["correct"] != r["correct"]
    ]
    wrong += [
        r["id"]
        for r in rows
        if "options" in r
        and math.verify(r["gold"], r["response"], **r["options"])["correct"] != r["correct"]
    ]
    assert wrong == []
    assert any("options" in r for r in rows)


def test_batch_threads_and_single_calls_agree():
    rows = corpus()
    pairs = [(r["gold"], r["response"]) for r in rows]
    two = math.verify_batch(pairs, threads=2)
    one = math.verify_batch(pairs, threads=1)
    seq = [math.verify(g, r) for g, r in pairs]
    assert two == seq
    assert one == seq
    assert len({v["correct"] for v in seq}) == 2  # the corpus has both verdicts


def test_verdict_shape():
    v = math.verify("\\frac{1}{2}", "So the answer is $\\boxed{0.5}$.")
    assert set(v) == set(FIELDS)
    assert v["correct"] is True and v["extracted"] == "0.5"
    none = math.verify("5", "I cannot say.", last_number_fallback=False)
    assert none["correct"] is False and none["extracted"] is None
    assert "no answer" in none["reason"]


def test_numeric_gold_is_read_like_the_cli():
    assert math.verify(27.0, "so \\boxed{27}")["correct"]
    assert math.verify(27, "so \\boxed{27}")["gold_normalized"] == "27"
    assert not math.verify(28, "so \\boxed{27}")["correct"]


def test_options_change_the_verdict():
    r = "roots: \\boxed{2} and \\boxed{1}"
    assert math.verify("1", r)["correct"]
    assert not math.verify("1", r, boxed="first")["correct"]
    assert math.verify("2", r, boxed="first")["correct"]
    assert math.verify("1, 2", r, boxed="all")["correct"]
    assert math.verify("15", "so she has 15 apples")["correct"]
    assert not math.verify("15", "so she has 15 apples", last_number_fallback=False)["correct"]
    assert math.verify("50\\%", "\\boxed{0.5}")["correct"]
    assert not math.verify("50\\%", "\\boxed{0.5}", percent_as_fraction=False)["correct"]
    assert not math.verify("0.3333", "\\boxed{1/3}")["correct"]
    assert math.verify("0.3333", "\\boxed{1/3}", rel_tol=1e-3)["correct"]
    assert math.verify("x^2+1", "\\boxed{1+x^2}", eval_points=1)["correct"]
    assert not math.verify("\\frac{1}{3}", "\\boxed{0.333}")["correct"]
    assert math.verify("\\frac{1}{3}", "\\boxed{0.333}", decimal_places=3)["correct"]
    assert not math.verify("\\frac{1}{3}", "\\boxed{0.333}", decimal_places=4)["correct"]
    batch = math.verify_batch([("1", r), ("2", r)], boxed="first")
    assert [v["correct"] for v in batch] == [False, True]


def test_default_options():
    d = math.default_options()
    assert d == {
        "boxed": "last",
        "last_number_fallback": True,
        "rel_tol": 1e-6,
        "percent_as_fraction": True,
        "eval_points": 4,
        "decimal_places": None,
    }
    assert math.verify("1", "\\boxed{1}", **d)["correct"]


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="boxxed"):
        math.verify("1", "1", boxxed="last")
    with pytest.raises(TypeError, match="tolerance"):
        math.verify_batch([("1", "1")], tolerance=0.1)
    with pytest.raises(TypeError, match="tolerance"):
        math.verify_batch([], tolerance=0.1)


@pytest.mark.parametrize(
    "options, error, text",
    [
        ({"boxed": "middle"}, ValueError, "unknown variant `middle`, expected one of `last`, `first`, `all`"),
        ({"boxed": 1}, TypeError, "boxed must be a str"),
        ({"rel_tol": -1.0}, ValueError, "rel_tol"),
        ({"rel_tol": float("nan")}, ValueError, "rel_tol"),
        ({"rel_tol": "0.1"}, TypeError, "rel_tol must be a float"),
        ({"rel_tol": True}, TypeError, "rel_tol must be a float"),
        ({"eval_points": 0}, ValueError, "between 1 and 11"),
        ({"eval_points": 12}, ValueError, "between 1 and 11"),
        ({"eval_points": 10**30}, ValueError, "between 1 and 11"),
        ({"eval_points": 2.0}, TypeError, "eval_points must be an int"),
        ({"last_number_fallback": 1}, TypeError, "must be a bool"),
        ({"percent_as_fraction": "yes"}, TypeError, "must be a bool"),
        ({"decimal_places": -1}, ValueError, "between 0 and 15"),
        ({"decimal_places": 16}, ValueError, "between 0 and 15"),
        ({"decimal_places": 2.0}, TypeError, "decimal_places must be an int or None"),
    ],
)
def test_bad_option_values(options, error, text):
    with pytest.raises(error, match=text.replace("`", ".").replace("(", ".").replace(")", ".")):
        math.verify("1", "\\boxed{1}", **options)
    with pytest.raises(error):
        math.verify_batch([("1", "\\boxed{1}")], **options)


def test_non_str_arguments():
    with pytest.raises(TypeError, match="response must be a str"):
        math.verify("1", 1)
    with pytest.raises(TypeError, match="gold must be a str or a number"):
        math.verify(None, "1")
    with pytest.raises(TypeError, match="gold must be a str or a number"):
        math.verify(True, "1")
    with pytest.raises(TypeError, match="item 1"):
        math.verify_batch([("1", "1"), ("2", b"2")])
    with pytest.raises(TypeError, match="item 0 must be a"):
        math.verify_batch([("1", "1", "extra")])
    with pytest.raises(TypeError):
        math.verify_batch("11")
    with pytest.raises(TypeError, match="threads"):
        math.verify_batch([("1", "1")], threads="2")
    with pytest.raises(ValueError, match="threads"):
        math.verify_batch([("1", "1")], threads=-1)
    with pytest.raises(ValueError, match="threads"):
        math.verify_batch([("1", "1")], threads=10**6)


def test_hostile_inputs_do_not_crash():
    for response in ["\\boxed{" * 10000, "9" * 100000, "\x00\ud7ff\U0010ffff", "$" * 5000, "\\frac{1}{0}"]:
        v = math.verify("1", response)
        assert v["correct"] is False
    assert math.verify_batch([]) == []


def test_lists_are_accepted_as_pairs():
    assert math.verify_batch([["3", "\\boxed{3}"]])[0]["correct"]
