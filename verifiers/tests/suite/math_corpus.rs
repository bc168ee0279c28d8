//! The project's own math-verifier corpus: `testdata/math/corpus.jsonl`, one case a line
//! (`gold`, full `response`, expected `correct`, a `category`, and optionally `options`,
//! the [`MathOptions`] fields the case sets). At least 300 cases, at least 50 of them
//! "close but wrong" responses that must be judged incorrect, and every group of answer
//! shapes real models write (issue 17: Minerva anchors, several boxes, named answers,
//! chains, `≠`, choice letters, braces and text, units, intervals, digits inside words;
//! issue 30: matrix forms and expressions, intervals against inequalities, decimal
//! commas, several answers, relation golds, text and choice letters in sentences,
//! final-answer tails, clock times and sets against tuples, stated precision) with both
//! an equal and a close-but-wrong case. Each issue-30 group has its own test, which
//! fails when the group lacks an accepted or a rejected case.

use cove_verifiers::math::{MathOptions, verify};

/// One corpus line.
struct Case {
    line: usize,
    category: String,
    gold: String,
    response: String,
    expected: bool,
    options: MathOptions,
}

fn corpus() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/math/corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("corpus.jsonl is part of the repository");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let case: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("corpus.jsonl:{}: {e}", i + 1));
            let options = match case.get("options") {
                Some(o) => serde_json::from_value(o.clone())
                    .unwrap_or_else(|e| panic!("corpus.jsonl:{}: options: {e}", i + 1)),
                None => MathOptions::default(),
            };
            Case {
                line: i + 1,
                category: case["category"].as_str().unwrap_or("").to_string(),
                gold: case["gold"].as_str().expect("gold is a string").to_string(),
                response: case["response"]
                    .as_str()
                    .expect("response is a string")
                    .to_string(),
                expected: case["correct"].as_bool().expect("correct is a bool"),
                options,
            }
        })
        .collect()
}

/// The cases whose verdict differs from the expected one, described.
fn failures<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Vec<String> {
    cases
        .into_iter()
        .filter_map(|c| {
            let v = verify(&c.gold, &c.response, &c.options);
            (v.correct != c.expected).then(|| {
                format!(
                    "line {} [{}]: gold {:?} response {:?}: expected {}, got {} ({}; extracted {:?})",
                    c.line,
                    c.category,
                    c.gold,
                    c.response,
                    c.expected,
                    v.correct,
                    v.reason,
                    v.extracted
                )
            })
        })
        .collect()
}

#[test]
fn corpus_cases_all_pass() {
    let cases = corpus();
    let total = cases.len();
    let must_fail = cases.iter().filter(|c| !c.expected).count();
    assert!(total >= 300, "corpus has {total} cases, want at least 300");
    assert!(
        must_fail >= 50,
        "corpus has {must_fail} close-but-wrong cases, want at least 50"
    );
    for group in [
        "minerva",
        "multi_boxed",
        "named",
        "chain",
        "neq",
        "choice",
        "braces_text",
        "units",
        "intervals",
        "false_positive",
    ] {
        for expected in [true, false] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.category == group && c.expected == expected),
                "corpus has no {group} case with correct = {expected}"
            );
        }
    }
    let failed = failures(&cases);
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Checks one category: it has an accepted and a rejected case, and every case passes.
fn category(name: &str) {
    let cases: Vec<Case> = corpus()
        .into_iter()
        .filter(|c| c.category == name)
        .collect();
    for expected in [true, false] {
        assert!(
            cases.iter().any(|c| c.expected == expected),
            "corpus has no {name} case with correct = {expected}"
        );
    }
    let failed = failures(&cases);
    assert!(
        failed.is_empty(),
        "{} of {} {name} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// `\left[\begin{array}{cc}…\end{array}\right]`, `bmatrix`, `matrix` in parentheses, and
/// matrix expressions (`A + B`, `2v`, `AB`, `A^2`) against the matrix they compute.
#[test]
fn matrix_forms() {
    category("matrix_forms");
}

/// `x \in [a, b]` against `a \le x \le b` both ways, rays, unions of rays, and the
/// same written with doubled backslashes.
#[test]
fn interval_relation() {
    category("interval_relation");
}

/// `2,74` and `1000,99` against decimal points; `10,455` stays ten thousand and `1,2` a
/// list.
#[test]
fn decimal_comma() {
    category("decimal_comma");
}

/// Separate boxes, "and" / "or" joins, sets and lists of tuples against each other.
#[test]
fn several_answers() {
    category("several_answers");
}

/// `NAME = value` and `f(x) = …` golds against the bare value; an equation such as
/// `7 = 11a + c` against one of its sides is rejected.
#[test]
fn relation_gold() {
    category("relation_gold");
}

/// Text answers with and without `\text{}`; choice letters inside a sentence.
#[test]
fn text_choice() {
    category("text_choice");
}

/// "Final Answer: The final answer is …" after earlier boxes, thousands separators,
/// chat-template tokens that start another turn, doubled backslashes.
#[test]
fn final_answer_tail() {
    category("final_answer_tail");
}

/// Clock times are times (`12:00` is not `1:00`); a set answered for a tuple keeps the
/// tuple's order (`{1, 3}` is not `(3, 1)`), a gold set is order-free.
#[test]
fn clock_set() {
    category("clock_set");
}

/// `decimal_places`: `1/3` against `0.333` at three places, not at four, nor by default.
#[test]
fn precision() {
    category("precision");
}
