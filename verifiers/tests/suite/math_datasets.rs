//! Real-data checks of the math verifier against the reference datasets in
//! `../shared/datasets` (relative to the repository root; `COVE_SHARED_DIR` overrides).
//! Each test prints a note and passes when the datasets are absent (fresh clones, CI).
//!
//! - MATH-500: every `solution` (a full worked solution with `\boxed{}`) is verified
//!   against its own `answer`.
//! - GSM8K test: every `answer` text (worked solution ending in `#### N`) is verified
//!   against its own `N`.

use cove_verifiers::math::{MathOptions, verify_batch};
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("COVE_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    dir.join("datasets").is_dir().then_some(dir)
}

fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn field(v: &serde_json::Value, name: &str) -> String {
    match &v[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Verifies (gold, response) pairs and returns the indices that disagree, printing them.
fn disagreements(name: &str, pairs: &[(String, String)]) -> Vec<usize> {
    let verdicts = verify_batch(pairs, &MathOptions::default());
    let bad: Vec<usize> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.correct)
        .map(|(i, _)| i)
        .collect();
    println!(
        "{name}: {}/{} agree ({:.2}%)",
        pairs.len() - bad.len(),
        pairs.len(),
        100.0 * (pairs.len() - bad.len()) as f64 / pairs.len().max(1) as f64
    );
    for &i in &bad {
        println!(
            "  #{i}: gold {:?} extracted {:?} reason {}",
            pairs[i].0, verdicts[i].extracted, verdicts[i].reason
        );
    }
    bad
}

#[test]
fn math500_solutions_match_their_answers() {
    let Some(dir) = shared_dir() else {
        println!("note: ../shared/datasets absent; MATH-500 check skipped");
        return;
    };
    let rows = read_jsonl(&dir.join("datasets/math500/test.jsonl"));
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| (field(r, "answer"), field(r, "solution")))
        .collect();
    assert_eq!(pairs.len(), 500);
    let bad = disagreements("MATH-500 solution vs answer", &pairs);
    assert!(bad.is_empty(), "{} disagreements", bad.len());
}

#[test]
fn gsm8k_answers_match_their_final_numbers() {
    let Some(dir) = shared_dir() else {
        println!("note: ../shared/datasets absent; GSM8K check skipped");
        return;
    };
    let rows = read_jsonl(&dir.join("datasets/gsm8k/test.jsonl"));
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let text = field(r, "answer");
            let n = text.rsplit("####").next().unwrap_or("").trim().to_string();
            (n, text)
        })
        .collect();
    assert_eq!(pairs.len(), 1319);
    let bad = disagreements("GSM8K answer text vs #### N", &pairs);
    assert!(bad.is_empty(), "{} disagreements", bad.len());
}

#[test]
fn competition_answers_match_themselves_in_other_shapes() {
    let Some(dir) = shared_dir() else {
        println!("note: ../shared/datasets absent; AMC/AIME check skipped");
        return;
    };
    // AMC golds are JSON floats (27.0), AIME golds zero-padded strings (025): a response
    // boxing the plain integer must match.
    let mut pairs = Vec::new();
    for set in ["amc23", "aime24", "aime25"] {
        for r in read_jsonl(&dir.join(format!("datasets/{set}/test.jsonl"))) {
            let gold = field(&r, "answer");
            let n: f64 = gold.parse().unwrap_or(f64::NAN);
            pairs.push((
                gold,
                format!("The final answer is $\\boxed{{{}}}$.", n as i64),
            ));
        }
    }
    let bad = disagreements("AMC23/AIME24/AIME25 integer responses", &pairs);
    assert!(bad.is_empty(), "{} disagreements", bad.len());
}
