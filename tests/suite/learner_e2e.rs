//! End to end on CPU with the tiny policy: the reward rises within a few dozen steps,
//! and on a fixed seed entropy falls faster under plain GRPO than under KL-Cov.

use crate::learner_common;

use cove::loss::ControlConfig;
use learner_common::{small_config, trainer};
use std::ops::ControlFlow;

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn reward_rises_within_a_few_dozen_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.steps = 20;
    let mut t = trainer(cfg);
    let mut rewards = Vec::new();
    t.run(|m| {
        println!("{}", m.summary());
        rewards.push(m.reward_mean);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(rewards.len(), 20);
    let first = mean(&rewards[..5]);
    let last = mean(&rewards[15..]);
    println!("reward: first 5 steps {first:.3}, last 5 steps {last:.3}");
    assert!(
        last > first + 0.2,
        "reward did not rise: {first:.3} -> {last:.3}"
    );
    // Metrics file and final checkpoint exist.
    let lines = cove::metrics::read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), 20);
    assert!(
        cove::checkpoint::latest(&dir.path().join("checkpoints"))
            .unwrap()
            .is_some()
    );
}

fn entropy_curve(control: ControlConfig, steps: u64) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.steps = steps;
    cfg.loss.control = control;
    let mut t = trainer(cfg);
    let mut h = Vec::new();
    t.run(|m| {
        h.push(m.entropy);
        ControlFlow::Continue(())
    })
    .unwrap();
    h
}

#[test]
fn entropy_falls_faster_under_grpo_than_kl_cov() {
    let steps = 18;
    let grpo = entropy_curve(ControlConfig::None, steps);
    // k scaled up for this toy batch (~200 tokens): the paper's 2e-3 would penalise one.
    let kl = entropy_curve(
        ControlConfig::KlCov {
            ratio: 0.2.into(),
            beta: 1.0,
        },
        steps,
    );
    println!(
        "entropy GRPO   {:?}",
        grpo.iter().map(|h| format!("{h:.3}")).collect::<Vec<_>>()
    );
    println!(
        "entropy KL-Cov {:?}",
        kl.iter().map(|h| format!("{h:.3}")).collect::<Vec<_>>()
    );
    assert_eq!(grpo[0], kl[0], "same seed, same first batch");
    let drop_grpo = grpo[0] - mean(&grpo[14..]);
    let drop_kl = kl[0] - mean(&kl[14..]);
    println!("entropy drop: GRPO {drop_grpo:.3}, KL-Cov {drop_kl:.3}");
    assert!(
        drop_grpo > drop_kl,
        "GRPO {drop_grpo:.3} vs KL-Cov {drop_kl:.3}"
    );
}
