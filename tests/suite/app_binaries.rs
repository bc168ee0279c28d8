//! The training binaries end to end on their embedded defaults (the bundled datasets),
//! cut to one step: `train-code` checks reference solutions in the WebAssembly sandbox
//! and scores its rollouts there; `train-math` scores with the math verifier. Both must
//! leave a complete run folder.

use std::path::Path;
use std::process::Command;

/// Runs a binary from the repository root (the defaults name `datasets/...`).
fn run(binary: &str, out: &Path) -> String {
    let output = Command::new(binary)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--steps", "1", "--quiet", "--out"])
        .arg(out)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the binary starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{binary} failed:\n{text}");
    text
}

/// The one metrics line of a one-step run, after checking the run folder.
fn one_step_metrics(out: &Path) -> serde_json::Value {
    for f in ["config.toml", "metrics.jsonl", "plots/entropy.png"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let m: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(m["step"], 1);
    let reward = m["reward_mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&reward), "{m}");
    assert!(m["entropy"].as_f64().unwrap() > 0.0, "{m}");
    let ckpts = cove::checkpoint::list(&out.join("checkpoints")).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1]);
    m
}

#[test]
fn train_code_checks_solutions_and_trains_a_step_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let text = run(env!("CARGO_BIN_EXE_train-code"), &out);
    assert!(
        text.contains("sandbox check: 4/4 reference solutions accepted"),
        "{text}"
    );
    let m = one_step_metrics(&out);
    assert!(m["seconds"]["reward"].as_f64().unwrap() > 0.0, "{m}");
}

#[test]
fn train_math_trains_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    run(env!("CARGO_BIN_EXE_train-math"), &out);
    one_step_metrics(&out);
}
