//! The training binaries end to end on their embedded defaults (the bundled datasets),
//! cut to one step: `train-code` checks reference solutions in the WebAssembly sandbox
//! and scores its rollouts there; `train-math` scores with the math verifier. Both must
//! leave a complete run folder.

use crate::test_util::run_binary;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs a binary from the repository root (the defaults name `datasets/...`), one step,
/// with extra `--set` flags.
fn run(binary: &str, out: &Path, sets: &[&str]) -> String {
    let args = ["--steps", "1", "--quiet", "--out"].map(OsStr::new);
    let sets = sets.iter().flat_map(|s| ["--set", s]).map(OsStr::new);
    let (ok, text) = run_binary(
        binary,
        args.into_iter().chain([out.as_os_str()]).chain(sets),
    );
    assert!(ok, "{binary} failed:\n{text}");
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
    let text = run(
        env!("CARGO_BIN_EXE_train-code"),
        &out,
        &["model.path=\"tiny\"", "data.eval_limit=8"],
    );
    assert!(
        text.contains("sandbox check: 4/4 reference solutions accepted"),
        "{text}"
    );
    assert!(text.contains("train-code: starting pass@1"), "{text}");
    let m = one_step_metrics(&out);
    assert!(m["seconds"]["reward"].as_f64().unwrap() > 0.0, "{m}");
}

/// `train-math` without a model flag trains the real model (SmolLM2-135M-Instruct): its
/// first lines name the policy, the data and the starting held-out pass@1. Cut to one
/// small step (2 prompts x 4 samples x 16 tokens; the held-out check on 4 problems).
#[test]
fn train_math_trains_the_real_model_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let text = run(
        env!("CARGO_BIN_EXE_train-math"),
        &out,
        &[
            "trainer.prompts_per_step=2",
            "trainer.group_size=4",
            "trainer.mini_batch_size=8",
            "trainer.micro_batch_size=8",
            "trainer.rollout.max_new_tokens=16",
            "data.eval_limit=4",
        ],
    );
    assert!(
        text.contains("train-math: policy smollm2-135m-instruct (")
            && text.contains("GRPO on 64 problems of datasets/math/train.jsonl (levels [1, 4])"),
        "{text}"
    );
    assert!(
        text.contains("starting pass@1 at T = 1 on 4 problems of datasets/math/test.jsonl"),
        "{text}"
    );
    one_step_metrics(&out);
}

#[test]
fn train_math_trains_the_tiny_model_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    run(
        env!("CARGO_BIN_EXE_train-math"),
        &out,
        &["model.path=tiny", "data.eval_limit=4"],
    );
    one_step_metrics(&out);
}

/// Every reference and wrong solution of `datasets/code/problems.jsonl` as
/// `cove verify code` input lines, with the verdict each must get.
fn problem_set_lines() -> (String, Vec<(f64, String)>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/code/problems.jsonl"),
    )
    .unwrap();
    let (mut lines, mut expected) = (String::new(), Vec::new());
    for row in text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
    {
        let mut add = |code: &str, score: f64, verdict: &str| {
            let response = format!("Here it is:\n```python\n{code}```\n");
            let line = serde_json::json!({"response": response, "tests": row["tests"]});
            lines.push_str(&format!("{line}\n"));
            expected.push((score, verdict.to_string()));
        };
        add(row["solution"].as_str().unwrap(), 1.0, "Accepted");
        for wrong in row["wrong"].as_array().unwrap() {
            add(
                wrong["code"].as_str().unwrap(),
                0.0,
                wrong["verdict"].as_str().unwrap(),
            );
        }
    }
    (lines, expected)
}

/// `cove verify code` output lines as (score, first non-accepted verdict or Accepted).
fn verify_code(input: &Path, extra: &[&str]) -> Vec<(f64, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(["verify", "code", "--threads", "2", "--input"])
        .arg(input)
        .args(extra)
        .output()
        .expect("cove starts");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let verdicts = v["verdicts"].as_array().unwrap();
            let first_bad = verdicts
                .iter()
                .map(|c| c["verdict"].as_str().unwrap())
                .find(|&k| k != "Accepted")
                .unwrap_or("Accepted");
            (v["score"].as_f64().unwrap(), first_bad.to_string())
        })
        .collect()
}

#[test]
fn verify_code_gives_the_same_verdicts_in_worker_processes_and_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("responses.jsonl");
    let (lines, expected) = problem_set_lines();
    std::fs::write(&input, lines).unwrap();
    assert!(expected.len() > 60, "{}", expected.len());
    let processes = verify_code(&input, &[]);
    assert_eq!(processes, expected);
    assert_eq!(verify_code(&input, &["--in-process"]), processes);
}

#[test]
fn a_worker_command_that_is_not_a_worker_is_refused() {
    use cove::verifiers::code::{CodeConfig, CodeVerifier, WorkerCommand};
    let command = WorkerCommand {
        program: "/bin/true".into(),
        args: Vec::new(),
        env: Vec::new(),
    };
    let err = CodeVerifier::with_worker_processes(CodeConfig::default(), command)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("/bin/true") && err.contains("serve_if_worker"),
        "{err}"
    );
}

/// Runs `train-math` on the tiny policy into `out` with extra arguments; returns whether
/// it succeeded and its output.
fn tiny_math(out: &Path, extra: &[&str]) -> (bool, String) {
    let fixed = [
        "--quiet",
        "--set",
        "model.path=\"tiny\"",
        "--set",
        "data.eval_limit=2",
        "--set",
        "trainer.checkpoint.every=1",
        "--out",
    ];
    let args = fixed.map(OsStr::new).into_iter().chain([out.as_os_str()]);
    run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        args.chain(extra.iter().map(OsStr::new)),
    )
}

/// A new run into a folder that holds one is refused; `--resume` continues it with the
/// stored configuration (only `trainer.steps` may change) and names any field that
/// differs.
#[test]
fn a_run_folder_is_never_silently_reused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, text) = tiny_math(&out, &["--steps", "1"]);
    assert!(ok, "{text}");
    let (ok, text) = tiny_math(&out, &["--steps", "2"]);
    assert!(
        !ok && text.contains("already holds a run") && text.contains("--resume"),
        "{text}"
    );
    let (ok, text) = tiny_math(
        &out,
        &["--steps", "2", "--resume", "--set", "trainer.optim.lr=1e-3"],
    );
    assert!(
        !ok && text.contains("trainer.optim.lr: ") && !text.contains("trainer.steps: "),
        "{text}"
    );
    let (ok, text) = tiny_math(&out, &["--steps", "2", "--resume"]);
    assert!(
        ok && text.contains("resumed from the checkpoint of step 1"),
        "{text}"
    );
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let fresh = dir.path().join("fresh");
    let (ok, text) = tiny_math(&fresh, &["--steps", "1", "--resume"]);
    assert!(!ok && text.contains("holds no run to resume"), "{text}");
}

/// The metrics lines of a tiny `train-math` run of 2 steps (one optimizer update per
/// step) with extra `--set`s, without timings.
fn ref_kl_run(extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec!["--steps", "2", "--set", "trainer.mini_batch_size=32"];
    args.extend(["--set", "trainer.optim.lr=1e-2"]);
    for s in extra {
        args.extend(["--set", s]);
    }
    let (ok, text) = tiny_math(&out, &args);
    assert!(ok, "{text}");
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v.as_object_mut().unwrap().remove("tokens_per_s");
            v
        })
        .collect()
}

/// `trainer.ref_kl` works from the binaries, with the starting model as the frozen
/// reference: the first update (policy = reference) is the run without the penalty's,
/// the second is not. Under LoRA the reference is the base with the adapters off.
#[test]
fn ref_kl_runs_from_the_binaries_against_the_starting_model() {
    let ref_kl = "trainer.ref_kl={coef=1.0,estimator=\"k3\"}";
    for lora in [None, Some("model.lora={rank=4,alpha=8.0}")] {
        let base: Vec<&str> = lora.into_iter().collect();
        let plain = ref_kl_run(&base);
        let with_kl = ref_kl_run(&[base.as_slice(), &[ref_kl]].concat());
        assert_eq!(
            plain[0], with_kl[0],
            "lora {lora:?}: the first update is GRPO's"
        );
        assert_ne!(
            plain[1]["loss"], with_kl[1]["loss"],
            "lora {lora:?}: the penalty acts once the policy moved"
        );
    }
}

/// `[eval]`: held-out scores every `every` steps and after the last, from `samples`
/// samples per problem, in `metrics.jsonl` and `plots/eval.png`.
#[test]
fn eval_during_training_writes_pass_at_1_pass_at_k_and_mean_at_k() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, text) = tiny_math(
        &out,
        &[
            "--steps",
            "3",
            "--set",
            "eval.every=2",
            "--set",
            "eval.samples=3",
        ],
    );
    assert!(ok, "{text}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evals: Vec<(u64, serde_json::Value)> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|m| Some((m["step"].as_u64()?, m.get("eval")?.clone())))
        .collect();
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3]);
    for (_, e) in &evals {
        let (k, problems, correct) = (
            e["k"].as_f64().unwrap(),
            e["problems"].as_f64().unwrap(),
            e["correct"].as_f64().unwrap(),
        );
        assert_eq!((k, problems), (3.0, 2.0), "{e}");
        let (p1, pk, mean) = (
            e["pass@1"].as_f64().unwrap(),
            e["pass@k"].as_f64().unwrap(),
            e["mean@k"].as_f64().unwrap(),
        );
        assert!((p1 - correct / (k * problems)).abs() < 1e-12, "{e}");
        assert!(pk >= p1 && pk <= 1.0 && (0.0..=1.0).contains(&mean), "{e}");
    }
    assert!(out.join("plots/eval.png").is_file());
    // Off, and a measure without a held-out file is refused before any work.
    let (ok, text) = tiny_math(
        &dir.path().join("no-file"),
        &[
            "--steps",
            "1",
            "--set",
            "eval.every=1",
            "--set",
            "data = { train = \"datasets/math/train.jsonl\" }",
        ],
    );
    assert!(
        !ok && text.contains("eval.every is set but there is no held-out file"),
        "{text}"
    );
    assert!(
        !text.contains("train-math: policy"),
        "refused before the model loads: {text}"
    );
}
