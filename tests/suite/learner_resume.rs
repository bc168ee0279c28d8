//! Crash and resume: a run killed between checkpoint writes (a child process that
//! aborts after step 3, with checkpoints every 2 steps, plus a torn temporary
//! checkpoint folder as a kill during a write would leave) resumes from the last good
//! checkpoint and ends with parameters bit-identical to an uninterrupted run.

use crate::learner_common;

use learner_common::{small_config, trainer};
use std::ops::ControlFlow;
use std::path::Path;

const CHILD_ENV: &str = "COVE_LEARNER_CRASH_CHILD";
const STEPS: u64 = 4;

fn config(out: &Path) -> cove::config::TrainConfig {
    let mut cfg = small_config(out);
    cfg.steps = STEPS;
    cfg.checkpoint.every = 2;
    cfg.checkpoint.keep = 10;
    cfg.loss.control = cove::loss::ControlConfig::ClipCov {
        ratio: 0.02.into(),
        lb: 0.1,
        ub: 5.0,
    };
    cfg.optim.warmup_steps = 2;
    cfg.optim.schedule = cove::optim::LrSchedule::Cosine;
    cfg
}

#[test]
fn killed_run_resumes_to_identical_parameters() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: train, and die abruptly after step 3 (checkpoint 2 is the last).
        let mut t = trainer(config(Path::new(&dir)));
        t.run(|m| {
            if m.step == 3 {
                std::fs::create_dir_all(Path::new(&dir).join("checkpoints/.tmp-step-00000004-1"))
                    .unwrap();
                std::fs::write(
                    Path::new(&dir).join("checkpoints/.tmp-step-00000004-1/model.safetensors"),
                    b"torn",
                )
                .unwrap();
                std::process::abort();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        unreachable!("the child aborts at step 3");
    }
    let crashed = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "learner_resume::killed_run_resumes_to_identical_parameters",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, crashed.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die");
    let ckpts = cove::checkpoint::list(&crashed.path().join("checkpoints")).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2]);

    let mut resumed = trainer(config(crashed.path()));
    assert_eq!(resumed.resume().unwrap(), Some(2));
    resumed.run(|_| ControlFlow::Continue(())).unwrap();
    assert_eq!(resumed.state().step, STEPS);
    let steps: Vec<u64> = cove::metrics::read_metrics(&crashed.path().join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|m| m.step)
        .collect();
    assert_eq!(
        steps,
        (1..=STEPS).collect::<Vec<_>>(),
        "metrics after the checkpoint are rewritten once"
    );

    let clean = tempfile::tempdir().unwrap();
    let mut straight = trainer(config(clean.path()));
    straight.run(|_| ControlFlow::Continue(())).unwrap();
    for ((na, a), (nb, b)) in resumed.named_params().iter().zip(&straight.named_params()) {
        assert_eq!(na, nb);
        assert!(a.equal(b), "parameter {na} differs after resume");
    }
    // And training did move the parameters.
    let fresh = trainer(config(clean.path()));
    assert!(
        fresh
            .named_params()
            .iter()
            .zip(&straight.named_params())
            .any(|((_, a), (_, b))| !a.equal(b))
    );
}
