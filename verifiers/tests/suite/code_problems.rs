//! The project's own problem set (datasets/code/problems.jsonl): every reference
//! solution passes, every wrong solution fails with its labelled verdict.

use cove_verifiers::code::{CodeConfig, CodeVerifier, Limits, TestSuite, Verdict};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Wrong {
    code: String,
    verdict: Verdict,
}

#[derive(serde::Deserialize)]
struct Problem {
    id: String,
    tests: TestSuite,
    solution: String,
    wrong: Vec<Wrong>,
}

fn problems() -> Vec<Problem> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/code/problems.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("datasets/code/problems.jsonl")
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

fn verifier() -> CodeVerifier {
    let config = CodeConfig {
        limits: Limits {
            time: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            ..Limits::default()
        },
        stop_at_first_failure: true,
        ..CodeConfig::default()
    };
    CodeVerifier::new(config).expect("run scripts/setup.sh to build the sandbox component")
}

#[test]
fn the_problem_set_covers_all_three_formats() {
    let problems = problems();
    assert!(problems.len() >= 30, "{} problems", problems.len());
    for kind in ["stdio", "call", "assert"] {
        let n = problems
            .iter()
            .filter(|p| serde_json::to_value(&p.tests).unwrap()["kind"] == kind)
            .count();
        assert!(n >= 8, "only {n} {kind} problems");
    }
    for p in &problems {
        assert!(!p.wrong.is_empty(), "{} has no wrong solution", p.id);
        p.tests
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
    }
}

#[test]
fn reference_solutions_pass_and_wrong_ones_fail_with_their_verdict() {
    let problems = problems();
    let verifier = verifier();
    let mut items: Vec<(&str, &TestSuite)> = Vec::new();
    let mut expected: Vec<(String, Verdict)> = Vec::new();
    for p in &problems {
        items.push((&p.solution, &p.tests));
        expected.push((format!("{} reference", p.id), Verdict::Accepted));
        for (i, w) in p.wrong.iter().enumerate() {
            items.push((&w.code, &p.tests));
            expected.push((format!("{} wrong #{i}", p.id), w.verdict));
        }
    }
    let reports = verifier.verify_batch(&items);
    let mut failures = Vec::new();
    for ((name, want), report) in expected.iter().zip(&reports) {
        let got = if report.all_passed() {
            Verdict::Accepted
        } else {
            report
                .verdicts
                .iter()
                .find(|v| v.verdict != Verdict::Accepted)
                .unwrap()
                .verdict
        };
        if got != *want {
            failures.push(format!(
                "{name}: expected {want:?}, got {got:?} ({:?})",
                report.verdicts
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
