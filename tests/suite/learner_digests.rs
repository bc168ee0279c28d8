//! The restructuring guard: fixed-seed runs whose metrics (timings aside) and checkpoints
//! must not change when the code is reorganised. The tiny policy on the learner tests'
//! digits task runs GRPO, Clip-Cov and KL-Cov with two optimizer mini-batches per step,
//! stopped after step 2 and resumed to step 4 (each part in a child process of this test
//! binary); `train-math` runs one step of SmolLM2-135M-Instruct. All at one libtorch
//! thread.
//!
//! `tests/golden/digests.json` holds, per case, the metrics lines and, per CPU (libtorch
//! picks its kernels by instruction set, so bits differ between CPUs), the SHA-256 of the
//! metrics without timings and of the checkpoint files. On a recorded CPU the run must
//! match bit for bit. On another CPU the bitwise comparison cannot apply; the test then
//! checks the run against the recorded metrics loosely (same step count and keys, rewards
//! in range) and says so. `COVE_RECORD_DIGESTS=1` records this CPU's digests (only when a
//! change is meant to move the numbers; the commit says why).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/digests.json");

/// Runs `train-math` into `out` up to `steps`, one libtorch thread, with `sets`.
fn train_math(out: &Path, steps: u64, sets: &[String]) {
    let output = Command::new(env!("CARGO_BIN_EXE_train-math"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--quiet", "--steps", &steps.to_string(), "--out"])
        .arg(out)
        .args(["--set", "run.threads=1"])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .output()
        .expect("train-math starts");
    assert!(
        output.status.success(),
        "train-math failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The metrics lines with the wall-clock fields removed, re-serialised (sorted keys).
fn metrics_without_timings(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).unwrap();
            v.remove("seconds");
            v.remove("tokens_per_s");
            serde_json::to_string(&v).unwrap()
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 over every file under `checkpoints/` (relative path, then contents), in path
/// order.
fn checkpoints_digest(out: &Path) -> String {
    fn files(dir: &Path, acc: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, acc);
            } else {
                acc.push(path);
            }
        }
    }
    let root = out.join("checkpoints");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    assert!(!all.is_empty(), "no checkpoint under {}", root.display());
    let mut h = Sha256::new();
    for path in all {
        h.update(
            path.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        h.update(std::fs::read(&path).unwrap());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// This CPU as far as libtorch's kernel choice goes: its model name and SIMD extensions.
fn cpu_signature() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let mut simd: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| f.starts_with("avx") || f.starts_with("amx") || f.starts_with("fma"))
        .collect();
    simd.sort_unstable();
    format!("{} [{}]", field("model name"), simd.join(" "))
}

/// One guarded run: its metrics without timings and its checkpoints' digest.
struct Outcome {
    metrics: Vec<String>,
    checkpoints: String,
}

/// Checks `outcome` against the golden file's `case` (or records it).
fn check(case: &str, outcome: &Outcome) {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|_| "{}".into());
    let mut golden: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let cpu = cpu_signature();
    let metrics_sha = sha256_hex(outcome.metrics.join("\n").as_bytes());
    if std::env::var_os("COVE_RECORD_DIGESTS").is_some() {
        let entry = golden
            .entry(case.to_string())
            .or_insert_with(|| serde_json::json!({"metrics": [], "bitwise": {}}));
        entry["metrics"] = serde_json::json!(outcome.metrics);
        entry["bitwise"][&cpu] = serde_json::json!({"metrics_sha256": metrics_sha, "checkpoints_sha256": outcome.checkpoints});
        std::fs::write(
            GOLDEN,
            serde_json::to_string_pretty(&golden).unwrap() + "\n",
        )
        .unwrap();
        eprintln!("{case}: recorded the digests of `{cpu}`");
        return;
    }
    let entry = golden
        .get(case)
        .unwrap_or_else(|| panic!("{GOLDEN} has no case `{case}`"));
    match entry["bitwise"].get(&cpu) {
        Some(bits) => {
            let recorded: Vec<String> = serde_json::from_value(entry["metrics"].clone()).unwrap();
            if bits["metrics_sha256"] != metrics_sha.as_str() {
                for (k, (now, then)) in outcome.metrics.iter().zip(&recorded).enumerate() {
                    if now != then {
                        eprintln!("{case} line {}:\n  now  {now}\n  then {then}", k + 1);
                    }
                }
                panic!("{case}: the metrics changed (see the lines above)");
            }
            assert_eq!(
                bits["checkpoints_sha256"],
                outcome.checkpoints.as_str(),
                "{case}: the checkpoints changed"
            );
        }
        None => {
            // Another CPU: the same shape of run, with sane values.
            let recorded = entry["metrics"].as_array().unwrap();
            assert_eq!(outcome.metrics.len(), recorded.len(), "{case}: step count");
            for (now, then) in outcome.metrics.iter().zip(recorded) {
                let now: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(now).unwrap();
                let then: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(then.as_str().unwrap()).unwrap();
                assert_eq!(
                    now.keys().collect::<Vec<_>>(),
                    then.keys().collect::<Vec<_>>(),
                    "{case}: metric keys"
                );
                assert_eq!(now["step"], then["step"], "{case}");
                let reward = now["reward_mean"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&reward), "{case}: reward {reward}");
                assert!(now["loss"].as_f64().unwrap().is_finite(), "{case}");
            }
            eprintln!(
                "{case}: no digests recorded for `{cpu}`; bitwise comparison skipped (loose check \
                 passed)"
            );
        }
    }
}

/// One part of a guarded tiny run, in a child process started by
/// [`tiny_runs_keep_their_metrics_and_checkpoints`]: `COVE_DIGEST_CONFIG` names the
/// trainer TOML; resumes from the run folder and trains to its `steps`, at one thread.
#[test]
#[ignore = "a child of the digest test; it starts it"]
fn digest_run_part() {
    let Ok(path) = std::env::var("COVE_DIGEST_CONFIG") else {
        return;
    };
    cove::reproducible::strict_cpu_math();
    tch::set_num_threads(1);
    let cfg = cove::config::TrainConfig::load(Path::new(&path)).unwrap();
    let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    let mut t = cove::trainer::Trainer::new(
        cfg,
        policy,
        crate::learner_common::Digits,
        crate::learner_common::dataset(),
    )
    .unwrap();
    t.resume().unwrap();
    t.run(|_| std::ops::ControlFlow::Continue(())).unwrap();
}

/// The tiny policy on the digits task, two optimizer mini-batches per step, stopped
/// after step 2 and resumed to step 4.
fn tiny_case(control: cove::loss::ControlConfig) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cfg = crate::learner_common::small_config(&out);
    cfg.loss.control = control;
    cfg.checkpoint.every = 2;
    cfg.checkpoint.keep = 4;
    for steps in [2, 4] {
        cfg.steps = steps;
        let path = dir.path().join(format!("part-{steps}.toml"));
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "learner_digests::digest_run_part",
                "--ignored",
                "--nocapture",
            ])
            .env("COVE_DIGEST_CONFIG", &path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "part to step {steps} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Outcome {
        metrics: metrics_without_timings(&out),
        checkpoints: checkpoints_digest(&out),
    }
}

#[test]
fn tiny_runs_keep_their_metrics_and_checkpoints() {
    use cove::loss::ControlConfig;
    for (name, control) in [
        ("none", ControlConfig::None),
        (
            "clip-cov",
            ControlConfig::ClipCov {
                ratio: 0.05.into(),
                lb: 1.0,
                ub: 5.0,
            },
        ),
        (
            "kl-cov",
            ControlConfig::KlCov {
                ratio: 0.05.into(),
                beta: 1.0,
            },
        ),
    ] {
        let outcome = tiny_case(control);
        assert_eq!(outcome.metrics.len(), 4, "{name}");
        check(&format!("tiny-{name}"), &outcome);
    }
}

#[test]
fn a_smollm2_step_keeps_its_metrics_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let sets: Vec<String> = [
        "trainer.prompts_per_step=2",
        "trainer.group_size=4",
        "trainer.mini_batch_size=8",
        "trainer.micro_batch_size=8",
        "trainer.rollout.max_new_tokens=16",
        "trainer.loss.control.kind=\"clip-cov\"",
        "trainer.loss.control.ratio=0.05",
        "data.eval_limit=4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    train_math(&out, 1, &sets);
    check(
        "smollm2-clip-cov",
        &Outcome {
            metrics: metrics_without_timings(&out),
            checkpoints: checkpoints_digest(&out),
        },
    );
}

/// The same SmolLM2 step at one and at two libtorch threads writes the same metrics, bit
/// for bit (`cove::reproducible`: MKL's strict mode, and a sampler whose sums do not
/// split across threads). Before, the two differed in the entropy's and the gradient
/// norm's last digits, and a sampled token could flip.
#[test]
fn a_smollm2_step_is_the_same_at_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<Vec<String>> = [1, 2]
        .iter()
        .map(|threads| {
            let out = dir.path().join(format!("threads-{threads}"));
            let sets = [
                "trainer.prompts_per_step=4".to_string(),
                "trainer.group_size=8".to_string(),
                "trainer.loss.control.kind=\"clip-cov\"".to_string(),
                "data.eval_limit=4".to_string(),
                format!("run.threads={threads}"),
            ];
            train_math(&out, 1, &sets);
            metrics_without_timings(&out)
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
}
