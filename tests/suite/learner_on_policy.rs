//! The update whose policy is the rollout policy is exactly on-policy: the ratio is 1
//! and KL-Cov's penalty has zero gradient, so KL-Cov there updates like (unclipped)
//! GRPO; and Clip-Cov's selected tokens get exactly zero gradient under every
//! aggregation.

use crate::learner_common::{small_config, trainer};
use cove::loss::compare::{LossInputs, compute_loss};
use cove::loss::{ControlConfig, LossAgg, LossConfig};

/// Parameters and the step's metrics after one step of one update (the whole batch is
/// one mini-batch) with `control`. AdamW's eps = 1 makes the update nearly linear in
/// the gradient, so parameters compare gradients.
fn one_update(control: ControlConfig) -> (Vec<(String, tch::Tensor)>, cove::metrics::StepMetrics) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.steps = 1;
    cfg.mini_batch_size = cfg.prompts_per_step * cfg.group_size;
    cfg.optim.eps = 1.0;
    cfg.loss.control = control;
    let mut t = trainer(cfg);
    let m = t.step().unwrap();
    (t.named_params(), m)
}

#[test]
fn kl_cov_on_policy_updates_like_grpo() {
    let before = {
        let dir = tempfile::tempdir().unwrap();
        trainer(small_config(dir.path())).named_params()
    };
    let (grpo, g) = one_update(ControlConfig::None);
    let (kl, k) = one_update(ControlConfig::KlCov {
        ratio: 0.05.into(),
        beta: 1.0,
    });
    assert!(k.selected_frac > 0.0, "KL-Cov selected nothing");
    assert_eq!(g.approx_kl, 0.0, "the first update's ratio is exactly 1");
    assert_eq!(g.clip_frac, 0.0);
    let mut largest = 0f64;
    let mut gap = 0f64;
    for (((name, b), (_, x)), (_, y)) in before.iter().zip(&grpo).zip(&kl) {
        largest = largest.max((x - b).abs().max().double_value(&[]));
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d.is_finite(), "{name}");
        gap = gap.max(d);
    }
    assert!(largest > 0.0);
    eprintln!("KL-Cov vs GRPO on-policy: max |gap| {gap:e}, largest update {largest:e}");
    assert!(
        gap <= 1e-6 * largest,
        "KL-Cov's on-policy update differs from GRPO's by {gap:e} (largest update {largest:e})"
    );
}

#[test]
fn clip_cov_selected_tokens_get_exactly_zero_gradient_under_every_aggregation() {
    // A batch with a spread of log-probs and advantages, some padding.
    let (b, t) = (6usize, 40usize);
    let value = |i: usize, j: usize, salt: usize| {
        ((i * 7919 + j * 104_729 + salt * 1_299_709) % 1000) as f64 / 1000.0
    };
    let inputs = LossInputs {
        logp: (0..b)
            .map(|i| (0..t).map(|j| -6.0 * value(i, j, 1)).collect())
            .collect(),
        old_logp: (0..b)
            .map(|i| {
                (0..t)
                    .map(|j| -6.0 * value(i, j, 1) + 0.01 * (value(i, j, 2) - 0.5))
                    .collect()
            })
            .collect(),
        advantages: (0..b)
            .map(|i| vec![if i % 2 == 0 { 1.5 } else { -1.0 }; t])
            .collect(),
        mask: (0..b)
            .map(|i| {
                (0..t)
                    .map(|j| if j < t - i * 3 { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect(),
    };
    for agg in [
        LossAgg::TokenMean,
        LossAgg::SeqMeanTokenSum,
        LossAgg::SeqMeanTokenMean,
        LossAgg::SeqMeanTokenSumNorm,
    ] {
        let cfg = LossConfig {
            control: ControlConfig::ClipCov {
                ratio: 0.1.into(),
                lb: 0.0,
                ub: 100.0,
            },
            agg,
            ..LossConfig::default()
        };
        let r = compute_loss(&inputs, &cfg, 3).unwrap();
        let mut selected = 0;
        let mut moving = 0;
        for i in 0..b {
            for j in 0..t {
                if r.selected[i][j] {
                    selected += 1;
                    assert_eq!(r.grad_logp[i][j], 0.0, "{agg:?}: selected ({i}, {j})");
                } else if inputs.mask[i][j] > 0.0 && r.grad_logp[i][j] != 0.0 {
                    moving += 1;
                }
            }
        }
        assert!(
            selected > 0 && moving > 0,
            "{agg:?}: {selected} selected, {moving} moving"
        );
    }
}
