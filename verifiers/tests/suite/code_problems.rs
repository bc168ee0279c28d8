//! The project's own problem sets: every reference solution passes, every wrong solution
//! fails with its labelled verdict. `datasets/code/problems.jsonl` (33 problems in all
//! three formats) and the graded synthetic set `datasets/code-synth/` (its levels, its
//! disjoint splits, and a generator that rewrites the same bytes).

use cove_verifiers::code::{CodeConfig, CodeVerifier, Limits, TestSuite, Verdict};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Wrong {
    code: String,
    verdict: Verdict,
}

#[derive(serde::Deserialize)]
struct Problem {
    id: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    level: Option<u32>,
    tests: TestSuite,
    solution: String,
    wrong: Vec<Wrong>,
}

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(file: &str) -> Vec<Problem> {
    let path = root().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1)))
        .collect()
}

fn problems() -> Vec<Problem> {
    read("datasets/code/problems.jsonl")
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
    check_verdicts(&problems());
}

/// Runs every reference and wrong solution of `problems` and checks each verdict (the
/// first failing case's).
fn check_verdicts(problems: &[Problem]) {
    let verifier = verifier();
    let mut items: Vec<(&str, &TestSuite)> = Vec::new();
    let mut expected: Vec<(String, Verdict)> = Vec::new();
    for p in problems {
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

/// The graded set: six levels, at least 40 held-out tasks each, every task with a wrong
/// solution, and no task (family and number: the id without its split) in both splits.
#[test]
fn the_graded_set_has_levels_and_disjoint_splits() {
    let (train, test) = (
        read("datasets/code-synth/train.jsonl"),
        read("datasets/code-synth/test.jsonl"),
    );
    for level in 1..=6 {
        let n = test.iter().filter(|p| p.level == Some(level)).count();
        assert!(n >= 40, "level {level}: {n} held-out tasks");
        assert!(
            train.iter().any(|p| p.level == Some(level)),
            "level {level}"
        );
    }
    let key = |p: &Problem| p.id.split_once('-').unwrap().1.to_string();
    let held_out: HashSet<String> = test.iter().map(key).collect();
    let prompts: HashSet<&str> = test.iter().map(|p| p.prompt.as_str()).collect();
    assert_eq!(
        held_out.len(),
        test.len(),
        "a task twice in the held-out split"
    );
    for p in &train {
        assert!(!held_out.contains(&key(p)), "{} is in both splits", p.id);
        assert!(
            !prompts.contains(p.prompt.as_str()),
            "{}: prompt in both",
            p.id
        );
        assert!(!p.wrong.is_empty(), "{} has no wrong solution", p.id);
    }
}

#[test]
fn the_graded_sets_solutions_get_their_verdicts() {
    let mut all = read("datasets/code-synth/train.jsonl");
    all.extend(read("datasets/code-synth/test.jsonl"));
    check_verdicts(&all);
}

/// `make_problems.py` is deterministic: run again, it writes the committed bytes.
#[test]
fn the_graded_sets_generator_rewrites_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg(root().join("datasets/code-synth/make_problems.py"))
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    for split in ["train.jsonl", "test.jsonl"] {
        let committed = std::fs::read(root().join("datasets/code-synth").join(split)).unwrap();
        let again = std::fs::read(dir.path().join(split)).unwrap();
        assert!(
            committed == again,
            "{split} differs from the generator's output"
        );
    }
}
