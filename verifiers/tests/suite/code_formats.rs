//! The three test formats, scoring options, extraction, the Reward impl, the JSONL front
//! end, the runtime checks and the preview1 fallback.

use cove_verifiers::Reward;
use cove_verifiers::code::{
    CodeConfig, CodeError, CodeVerifier, Limits, RuntimeKind, Sandbox, Scoring, Termination,
    TestSuite, Verdict, jsonl::verify_jsonl,
};
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            Arc::new(Sandbox::new(RuntimeKind::Component).expect("run scripts/setup.sh first"))
        })
        .clone()
}

fn verifier(config: CodeConfig) -> CodeVerifier {
    let config = CodeConfig {
        limits: Limits {
            time: Duration::from_secs(2),
            ..Limits::default()
        },
        ..config
    };
    CodeVerifier::with_sandbox(sandbox(), config).unwrap()
}

fn suite(v: serde_json::Value) -> TestSuite {
    serde_json::from_value(v).unwrap()
}

fn verdicts(report: &cove_verifiers::code::Report) -> Vec<Verdict> {
    report.verdicts.iter().map(|v| v.verdict).collect()
}

#[test]
fn stdio_reports_the_first_differing_line() {
    let tests =
        suite(json!({"kind": "stdio", "inputs": ["2\n", "3\n"], "outputs": ["4\n5\n", "9\n10\n"]}));
    let v = verifier(CodeConfig::default());
    let good = v.verify("n = int(input())\nprint(n * n)\nprint(n * n + 1)", &tests);
    assert_eq!((good.score, good.passed, good.total), (1.0, 2, 2));
    let bad = v.verify("n = int(input())\nprint(n * n)\nprint(n * 2)", &tests);
    assert_eq!(verdicts(&bad), [Verdict::WrongAnswer, Verdict::WrongAnswer]);
    assert_eq!(bad.verdicts[1].detail, "line 2: expected `10`, got `6`");
}

#[test]
fn stdin_idioms_work() {
    let tests = suite(json!({"kind": "stdio", "inputs": ["3\n1 2 3\n"], "outputs": ["6\n"]}));
    let v = verifier(CodeConfig::default());
    for program in [
        "import os\nd = os.read(0, os.fstat(0).st_size).split()\nprint(sum(map(int, d[1:])))",
        "import sys, io\ninput = io.BytesIO(__import__('os').read(0, __import__('os').fstat(0).st_size)).readline\nn = int(input())\nprint(sum(map(int, input().split())))",
        "import sys\ninput = sys.stdin.readline\nn = int(input())\nprint(sum(map(int, input().split())))",
        "d = open(0).read().split()\nprint(sum(map(int, d[1:])))",
        "import sys\nd = sys.stdin.buffer.read().split()\nprint(sum(map(int, d[1:])))",
        "input()\nprint(sum(map(int, input().split())))",
    ] {
        let r = v.verify(program, &tests);
        assert!(r.all_passed(), "{program}\n{:?}", r.verdicts);
    }
}

#[test]
fn call_supports_functions_and_solution_methods() {
    let tests = suite(
        json!({"kind": "call", "fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]}),
    );
    let v = verifier(CodeConfig::default());
    assert!(
        v.verify("def add(a, b):\n    return a + b", &tests)
            .all_passed()
    );
    assert!(
        v.verify(
            "class Solution:\n    def add(self, a, b):\n        return a + b",
            &tests
        )
        .all_passed()
    );
    // Printing inside the function does not disturb the result.
    assert!(
        v.verify(
            "def add(a, b):\n    print('debug', a)\n    return a + b",
            &tests
        )
        .all_passed()
    );
    let wrong = v.verify("def add(a, b):\n    return a * b", &tests);
    assert_eq!(
        verdicts(&wrong),
        [Verdict::WrongAnswer, Verdict::WrongAnswer]
    );
    assert_eq!(wrong.verdicts[0].detail, "case 1: expected `3`, got `2`");
    let missing = v.verify("def plus(a, b):\n    return a + b", &tests);
    assert_eq!(missing.verdicts[0].verdict, Verdict::RuntimeError);
    assert!(
        missing.verdicts[0]
            .detail
            .contains("no function or Solution method named add")
    );
    let syntax = v.verify("def add(a, b) return a", &tests);
    assert_eq!(verdicts(&syntax), [Verdict::SyntaxError]);
    let early_exit = v.verify("import os\nos._exit(0)", &tests);
    assert_eq!(early_exit.verdicts[0].verdict, Verdict::WrongAnswer);
}

#[test]
fn call_accepts_tuples_and_apps_style_wrapped_outputs() {
    let tests =
        suite(json!({"kind": "call", "fn_name": "f", "inputs": [[2]], "outputs": [[[2, 4]]]}));
    let v = verifier(CodeConfig::default());
    assert!(
        v.verify("def f(x):\n    return (x, 2 * x)", &tests)
            .all_passed()
    );
    let tests = suite(
        json!({"kind": "call", "fn_name": "f", "inputs": [[1]], "outputs": [0.3333333], "float_tolerance": 1e-6}),
    );
    assert!(v.verify("def f(x):\n    return x / 3", &tests).all_passed());
}

#[test]
fn assert_supports_humaneval_check_and_mbpp_asserts() {
    let v = verifier(CodeConfig::default());
    let humaneval = suite(json!({
        "kind": "assert",
        "code": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n",
        "entry_point": "square"
    }));
    assert!(
        v.verify("def square(x):\n    return x * x", &humaneval)
            .all_passed()
    );
    let wrong = v.verify("def square(x):\n    return 2 * x", &humaneval);
    assert_eq!(verdicts(&wrong), [Verdict::WrongAnswer]);
    assert!(
        wrong.verdicts[0]
            .detail
            .contains("assert candidate(-3) == 9"),
        "{}",
        wrong.verdicts[0].detail
    );
    let crash = v.verify("def square(x):\n    return x.bit_length(1)", &humaneval);
    assert_eq!(verdicts(&crash), [Verdict::RuntimeError]);
    let mbpp = suite(json!({"kind": "assert", "code": "assert inc(1) == 2\nassert inc(5) == 6\n"}));
    assert!(
        v.verify("def inc(x):\n    return x + 1", &mbpp)
            .all_passed()
    );
    assert_eq!(
        verdicts(&v.verify("def inc(x):\n    return x", &mbpp)),
        [Verdict::WrongAnswer]
    );
    assert_eq!(
        verdicts(&v.verify("import sys\nsys.exit(0)", &mbpp)),
        [Verdict::WrongAnswer]
    );
}

#[test]
fn scoring_and_early_stop_are_configurable() {
    let tests = suite(
        json!({"kind": "stdio", "inputs": ["1", "2", "3", "4"], "outputs": ["1", "2", "3", "0"]}),
    );
    let program = "print(input())";
    let all = verifier(CodeConfig::default()).verify(program, &tests);
    assert_eq!((all.score, all.passed, all.verdicts.len()), (0.0, 3, 4));
    let frac = verifier(CodeConfig {
        scoring: Scoring::PassFraction,
        ..CodeConfig::default()
    })
    .verify(program, &tests);
    assert_eq!(frac.score, 0.75);
    let tests =
        suite(json!({"kind": "stdio", "inputs": ["1", "2", "3"], "outputs": ["0", "2", "3"]}));
    let stop = verifier(CodeConfig {
        stop_at_first_failure: true,
        scoring: Scoring::PassFraction,
        ..CodeConfig::default()
    })
    .verify(program, &tests);
    assert_eq!(
        (stop.score, stop.passed, stop.total, stop.verdicts.len()),
        (0.0, 0, 3, 1)
    );
}

#[test]
fn responses_are_extracted_from_markdown_and_scored_through_reward() {
    let v = verifier(CodeConfig::default());
    let tests = suite(json!({"kind": "stdio", "inputs": ["5\n"], "outputs": ["10\n"]}));
    let response = "Let me think.\n```python\nprint(0)\n```\nFixed:\n```python\nprint(int(input()) * 2)\n```\n";
    let score = v.score(&tests, response);
    assert_eq!((score.reward, score.correct), (1.0, true));
    assert_eq!(v.name(), "code");
    let score = v.score(&tests, "```python\nprint(1)\n```");
    assert!(!score.correct);
    assert!(score.details.contains("WrongAnswer"), "{}", score.details);
}

#[test]
fn random_is_reseeded_per_run_and_preimported_modules_import() {
    let s = sandbox();
    let limits = Limits::default();
    let draw = || {
        String::from_utf8(
            s.run("import random\nprint(random.random())", b"", &limits)
                .stdout,
        )
        .unwrap()
    };
    assert_ne!(draw(), draw());
    let modules = "import sys, io, os, math, cmath, itertools, functools, collections, heapq, bisect, re, json, \
                   string, random, fractions, decimal, statistics, datetime, typing, dataclasses, copy, operator, \
                   array, enum, queue, textwrap\nfrom collections import deque, Counter, defaultdict\nprint('ok')";
    let e = s.run(modules, b"", &limits);
    assert_eq!(
        e.termination,
        Termination::Exited(0),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
}

#[test]
fn jsonl_reports_bad_lines_and_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let tests = json!({"kind": "stdio", "inputs": ["1 2\n"], "outputs": ["3\n"]});
    let lines = [
        json!({"response": "a, b = map(int, input().split())\nprint(a + b)", "tests": tests})
            .to_string(),
        "{not json".to_string(),
        String::new(),
        json!({"response": "print(0)", "tests": tests}).to_string(),
        json!({"response": "print(0)", "tests": {"kind": "stdio", "inputs": ["1"], "outputs": []}})
            .to_string(),
        json!({"tests": tests}).to_string(),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let mut out = Vec::new();
    let summary = verify_jsonl(&verifier(CodeConfig::default()), &input, &mut out).unwrap();
    assert_eq!((summary.verified, summary.all_passed), (2, 1));
    let bad: Vec<usize> = summary.errors.iter().map(|e| e.line).collect();
    assert_eq!(bad, [2, 5, 6]);
    assert!(
        summary.errors[0]
            .message
            .starts_with(&format!("{}:2:", input.display()))
    );
    assert!(
        summary.errors[2].message.contains("response"),
        "{}",
        summary.errors[2].message
    );
    let out: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0]["line"], 1);
    assert_eq!(out[0]["score"], 1.0);
    assert_eq!(out[0]["verdicts"][0]["verdict"], "Accepted");
    assert!(out[1]["error"].is_string());
    assert_eq!(out[2]["line"], 4);
    assert_eq!(out[2]["passed"], 0);
    assert_eq!(out[2]["verdicts"][0]["verdict"], "WrongAnswer");
}

#[test]
fn a_tampered_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Sandbox::from_dirs(RuntimeKind::Component, dir.path(), dir.path())
        .err()
        .unwrap();
    assert!(
        matches!(missing, CodeError::ComponentMissing(_)),
        "{missing}"
    );
    assert!(missing.to_string().contains("scripts/setup.sh"));
    std::fs::write(dir.path().join("cove-sandbox.wasm"), b"\0asm not really").unwrap();
    std::fs::write(dir.path().join("cove-sandbox.wasm.sha256"), "0000\n").unwrap();
    let err = Sandbox::from_dirs(RuntimeKind::Component, dir.path(), dir.path())
        .err()
        .unwrap();
    assert!(matches!(err, CodeError::ComponentHash { .. }), "{err}");
}

#[test]
fn the_preview1_fallback_runs_the_same_driver() {
    let s = Sandbox::new(RuntimeKind::Preview1).expect("run scripts/setup.sh first");
    let limits = Limits {
        time: Duration::from_secs(20),
        ..Limits::default()
    };
    let e = s.run(
        "import os\nd = os.read(0, os.fstat(0).st_size).split()\nprint(sum(map(int, d)))",
        b"1 2 3",
        &limits,
    );
    assert_eq!(
        e.termination,
        Termination::Exited(0),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&e.stdout).trim(), "6");
    assert_eq!(
        s.run("def f(:", b"", &limits).termination,
        Termination::SyntaxError
    );
    assert_eq!(
        s.run("import sys\nsys.exit(4)", b"", &limits).termination,
        Termination::Exited(4)
    );
}
