//! The project's own math-verifier corpus: `testdata/math/corpus.jsonl`, one case a line
//! (`gold`, full `response`, expected `correct`, a `category`). At least 300 cases, at
//! least 50 of them "close but wrong" responses that must be judged incorrect, and every
//! group of answer shapes real models write (issue 17: Minerva anchors, several boxes,
//! named answers, chains, `≠`, choice letters, braces and text, units, intervals, digits
//! inside words) with both an equal and a close-but-wrong case.

use cove_verifiers::math::{MathOptions, verify};

#[test]
fn corpus_cases_all_pass() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/math/corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("corpus.jsonl is part of the repository");
    let opts = MathOptions::default();
    let (mut total, mut must_fail, mut failures) = (0, 0, Vec::new());
    let mut seen: std::collections::HashSet<(String, bool)> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let case: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus.jsonl:{}: {e}", i + 1));
        let gold = case["gold"].as_str().expect("gold is a string");
        let response = case["response"].as_str().expect("response is a string");
        let expected = case["correct"].as_bool().expect("correct is a bool");
        total += 1;
        must_fail += usize::from(!expected);
        seen.insert((
            case["category"].as_str().unwrap_or("").to_string(),
            expected,
        ));
        let v = verify(gold, response, &opts);
        if v.correct != expected {
            failures.push(format!(
                "line {} [{}]: gold {gold:?} response {response:?}: expected {expected}, got {} ({}; extracted {:?})",
                i + 1,
                case["category"].as_str().unwrap_or(""),
                v.correct,
                v.reason,
                v.extracted
            ));
        }
    }
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
                seen.contains(&(group.to_string(), expected)),
                "corpus has no {group} case with correct = {expected}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
