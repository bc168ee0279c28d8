//! Property tests: random strings and random LaTeX soup never make the math verifier
//! panic, and every item returns. The work per item is bounded by construction (caps on
//! answer length, tokens, nesting, exponents, factorials, radicands and term counts; no
//! timeouts), so these tests assert only that each call returns a verdict; the slowest
//! item seen is printed for information (speed claims live in the `math_verify` bench).

use cove_verifiers::math::{MathOptions, verify};
use proptest::prelude::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SLOWEST: Mutex<(Duration, String)> = Mutex::new((Duration::ZERO, String::new()));

fn check(gold: &str, response: &str) {
    let opts = MathOptions::default();
    let t = Instant::now();
    let v = verify(gold, response, &opts);
    let dt = t.elapsed();
    // A verdict always explains itself.
    assert!(!v.reason.is_empty());
    let mut s = SLOWEST.lock().unwrap_or_else(|e| e.into_inner());
    if dt > s.0 {
        *s = (dt, format!("gold {gold:?} response {response:?}"));
    }
}

const SOUP: &[&str] = &[
    "\\frac",
    "{",
    "}",
    "\\sqrt",
    "[",
    "]",
    "(",
    ")",
    "^",
    "_",
    "\\boxed{",
    "\\fbox{",
    "1",
    "23",
    "0.5",
    "1e-7",
    "x",
    "y",
    "\\pi",
    "i",
    "e",
    "+",
    "-",
    "*",
    "/",
    "!",
    "\\%",
    "%",
    ",",
    ";",
    "=",
    "<",
    ">",
    "\\le",
    "\\ge",
    "\\ne",
    "\\pm",
    "\\cup",
    "\\in",
    "\\infty",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "\\begin{array}{cc}",
    "\\end{array}",
    "&",
    "\\\\",
    "\\left(",
    "\\right)",
    "\\left[",
    "\\right]",
    "\\{",
    "\\}",
    "\\text{",
    "cm",
    "$",
    "\\$",
    "####",
    "The answer is ",
    "Answer:",
    "\\log_",
    "\\ln",
    "\\sin",
    "\\cos^2",
    "\\binom",
    "999999999999",
    "99",
    "|",
    "°",
    "−",
    "1,000",
    "\\,",
    "\\!",
    "{,}",
    ".",
    " ",
    "\n",
    "\\dfrac",
    "\\cdot",
    "\\times",
    "\\div",
    "(C)",
    "\\text{(B)}",
    "\\mbox{ inches}^2",
    "^\\circ",
    "\\alpha",
    "x_1",
    "204_5",
    "1\\frac12",
    "\\lfloor",
    "\\rfloor",
    "\\sqrt[3]",
    "\\sqrt[0]",
    "0",
    "-0",
    "\\\\end",
    "\\",
    "\\left.",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SOUP), 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_strings_never_panic(gold in ".{0,80}", response in ".{0,300}") {
        check(&gold, &response);
    }

    #[test]
    fn latex_soup_never_panics(gold in soup(), response in soup()) {
        check(&gold, &response);
        let boxed = format!("\\boxed{{{response}}}");
        check(&gold, &boxed);
        check(&response, &format!("\\boxed{{{gold}}}"));
    }
}

#[test]
fn adversarial_inputs_return() {
    let deep = "(".repeat(5000) + "1" + &")".repeat(5000);
    let fracs = "\\frac{".repeat(3000) + "1";
    let long_number = "9".repeat(100_000);
    let many_boxes = "\\boxed{1}".repeat(20_000);
    let unclosed = "\\boxed{".repeat(20_000);
    let radicals = (2..200)
        .map(|p| format!("\\sqrt{{{p}}}"))
        .collect::<Vec<_>>()
        .join("+");
    let tower = "2^".repeat(300) + "2";
    let cases: Vec<(&str, String)> = vec![
        ("1", format!("\\boxed{{{deep}}}")),
        ("1", format!("\\boxed{{{fracs}}}")),
        ("1", format!("\\boxed{{{long_number}}}")),
        ("1", many_boxes),
        ("1", unclosed),
        ("1", format!("\\boxed{{{radicals}}}")),
        ("1", format!("\\boxed{{({radicals})^{{4096}}}}")),
        ("1", format!("\\boxed{{{tower}}}")),
        ("1", "\\boxed{9^{9^{9^{9}}}}".into()),
        ("1", "\\boxed{1000000!}".into()),
        ("1", "\\boxed{\\binom{10^{9}}{5\\cdot 10^8}}".into()),
        ("1", "\\boxed{2^{10000000}}".into()),
        ("1", "\\boxed{10^{-1000000}}".into()),
        ("1", "\\boxed{1e999999}".into()),
        ("x^{100000}", "\\boxed{x^{99999}\\cdot x}".into()),
        ("1", "\\boxed{\\sqrt{99999999999999999999999999}}".into()),
        ("1", "\\boxed{\\sqrt{99999999967}}".into()),
        ("1", "\\boxed{\\frac{1}{\\sqrt{2}+\\sqrt{3}+\\sqrt{5}+\\sqrt{7}+\\sqrt{11}+\\sqrt{13}+\\sqrt{17}}}".into()),
        ("1", format!("\\boxed{{{}}}", vec!["x"; 2000].join(","))),
        ("1", format!("\\boxed{{{}}}", "1\\pm ".repeat(50) + "1")),
        (&deep, "1".into()),
    ];
    for (gold, response) in &cases {
        check(gold, response);
    }
    let s = SLOWEST.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "slowest item seen in this process: {:?} ({})",
        s.0,
        s.1.chars().take(160).collect::<String>()
    );
}
