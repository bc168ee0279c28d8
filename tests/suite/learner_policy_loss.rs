//! GSPO, CISPO and the rollout-correction weights (TIS, MIS, sequence masking) against an
//! independent plain-Rust transcription of the published formulas: values, gradients,
//! and the on-policy case where every weight is 1; their composition with Clip-Cov and
//! KL-Cov; and a trainer step with each.
// The transcriptions index rows and tokens as the papers' formulas do.
#![allow(clippy::needless_range_loop)]

use crate::learner_common::{small_config, trainer};
use cove::loss::policy::{cispo_surrogate, gspo_surrogate};
use cove::loss::rollout_correction::{mismatch, rollout_weights};
use cove::loss::{
    ControlConfig, CorrectionKind, LossAgg, LossConfig, Objective, PolicyLoss, PpoClip,
    RolloutCorrection, TokenTensors,
};
use tch::{Kind, Tensor};

/// Rows of per-token values with a mask; `adv` per row.
struct Case {
    logp: Vec<Vec<f64>>,
    old: Vec<Vec<f64>>,
    adv: Vec<f64>,
    valid: Vec<Vec<bool>>,
}

fn case() -> Case {
    Case {
        logp: vec![
            vec![-0.5, -1.2, -0.1, -2.0, -0.7],
            vec![-0.3, -0.9, -1.5, -0.2, 0.0],
            vec![-2.2, -0.4, -0.8, -1.1, -0.6],
        ],
        old: vec![
            vec![-0.6, -1.0, -0.1, -2.3, -0.5],
            vec![-0.2, -1.4, -1.1, -0.2, 0.0],
            vec![-1.0, -0.4, -0.8, -1.1, -0.6],
        ],
        adv: vec![1.0, -0.5, 2.0],
        valid: vec![
            vec![true, true, true, true, false],
            vec![true, true, true, false, false],
            vec![true, true, true, true, true],
        ],
    }
}

fn tensor(rows: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
}

fn mask(rows: &[Vec<bool>]) -> Tensor {
    let flat: Vec<bool> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
}

fn rows_of(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.to_kind(Kind::Double);
    (0..t.size()[0])
        .map(|i| Vec::<f64>::try_from(&t.get(i)).unwrap())
        .collect()
}

/// The per-token loss, and its gradient with respect to `logp` under `agg`, of `f`.
fn loss_and_grad(
    c: &Case,
    agg: LossAgg,
    f: impl Fn(&TokenTensors) -> Tensor,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let logp = tensor(&c.logp).set_requires_grad(true);
    let old = tensor(&c.old);
    let n = c.logp[0].len() as i64;
    let adv = Tensor::from_slice(&c.adv)
        .view([-1, 1])
        .expand([c.adv.len() as i64, n], false);
    let valid = mask(&c.valid);
    let t = TokenTensors {
        logp: &logp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let per_token = f(&t);
    let norm = cove::loss::AggNorm::of(&valid, None);
    cove::loss::aggregate(&per_token, &valid, agg, &norm).backward();
    (rows_of(&per_token.detach()), rows_of(&logp.grad()))
}

fn close(a: &[Vec<f64>], b: &[Vec<f64>], what: &str) {
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
            assert!((x - y).abs() < 1e-9, "{what}[{i}][{j}]: {x} vs {y}");
        }
    }
}

/// GSPO, transcribed from the paper: `s_i = exp(mean_t(logp - old))` over the valid
/// tokens, `J = 1/G sum_i min(s_i A_i, clip(s_i, 1 - e_lo, 1 + e_hi) A_i)`; the loss is
/// `-J`, so with `seq-mean-token-mean` each token's loss is `-min(...)` and the gradient
/// of `-J` with respect to `logp_i,t` is `-A_i s_i / (G |y_i|)` where the unclipped term
/// is the minimum and 0 where the clipped one is.
fn gspo_reference(c: &Case, e_lo: f64, e_hi: f64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let g = c.logp.len() as f64;
    let mut loss = vec![vec![0.0; c.logp[0].len()]; c.logp.len()];
    let mut grad = loss.clone();
    for i in 0..c.logp.len() {
        let idx: Vec<usize> = (0..c.logp[i].len()).filter(|&t| c.valid[i][t]).collect();
        let len = idx.len() as f64;
        let s = (idx.iter().map(|&t| c.logp[i][t] - c.old[i][t]).sum::<f64>() / len).exp();
        let a = c.adv[i];
        let unclipped = s * a;
        let clipped = s.clamp(1.0 - e_lo, 1.0 + e_hi) * a;
        for &t in &idx {
            loss[i][t] = -unclipped.min(clipped);
            if unclipped <= clipped {
                grad[i][t] = -a * s / (g * len);
            }
        }
    }
    (loss, grad)
}

#[test]
fn gspo_matches_the_sequence_level_formula() {
    let c = case();
    // Row 0's sequence ratio is exp(0.05) = 1.051: clipped at 1 + 0.03 for its positive
    // advantage; row 1's (A < 0) and row 2's stay inside.
    let clip = PpoClip {
        eps_low: 0.03,
        eps_high: 0.03,
        dual_clip: None,
    };
    let (loss, grad) = loss_and_grad(&c, LossAgg::SeqMeanTokenMean, |t| {
        gspo_surrogate(t, None, &clip).loss
    });
    let (want_loss, want_grad) = gspo_reference(&c, 0.03, 0.03);
    close(&loss, &want_loss, "GSPO loss");
    close(&grad, &want_grad, "GSPO gradient");
    assert!(grad[0].iter().all(|&g| g == 0.0), "row 0 is clipped whole");
    assert!(grad[2].iter().all(|&g| g != 0.0), "row 2 is not");
}

/// CISPO, transcribed from MiniMax-M1: `J = sum_i,t sg(clip(r_i,t, 1 - e_lo, 1 + e_hi))
/// A_i log pi(y_i,t) / sum_i |y_i|`; the token loss is `-w A logp`, its gradient
/// `-w A / N`, clipped tokens included (with the clipped weight).
#[test]
fn cispo_matches_the_clipped_weight_reinforce_formula() {
    let c = case();
    let clip = PpoClip {
        eps_low: 1.0,
        eps_high: 0.2,
        dual_clip: None,
    };
    let (loss, grad) = loss_and_grad(&c, LossAgg::TokenMean, |t| {
        cispo_surrogate(t, None, &clip).loss
    });
    let n: f64 = c.valid.iter().flatten().filter(|&&v| v).count() as f64;
    let mut clipped_seen = 0;
    for i in 0..3 {
        for t in 0..5 {
            let (want_l, want_g) = if c.valid[i][t] {
                let r = (c.logp[i][t] - c.old[i][t]).exp();
                let w = r.clamp(0.0, 1.2);
                clipped_seen += (r > 1.2) as usize;
                (-w * c.adv[i] * c.logp[i][t], -w * c.adv[i] / n)
            } else {
                (0.0, 0.0)
            };
            assert!((loss[i][t] - want_l).abs() < 1e-9, "loss [{i}][{t}]");
            assert!((grad[i][t] - want_g).abs() < 1e-9, "grad [{i}][{t}]");
        }
    }
    assert!(clipped_seen >= 2, "the case clips some tokens");
}

#[test]
fn on_policy_every_objective_has_the_plain_policy_gradient() {
    // logp == old: PPO's and GSPO's ratios and CISPO's weight are 1; all three give the
    // REINFORCE gradient -A / N under token-mean.
    let mut c = case();
    c.old = c.logp.clone();
    let n: f64 = c.valid.iter().flatten().filter(|&&v| v).count() as f64;
    for policy in [PolicyLoss::Ppo, PolicyLoss::Gspo, PolicyLoss::Cispo] {
        let objective = Objective {
            policy,
            clip: PpoClip::default(),
        };
        let (_, grad) = loss_and_grad(&c, LossAgg::TokenMean, |t| {
            objective.surrogate(t, None).loss
        });
        for i in 0..3 {
            for t in 0..5 {
                let want = if c.valid[i][t] { -c.adv[i] / n } else { 0.0 };
                assert!(
                    (grad[i][t] - want).abs() < 1e-12,
                    "{policy:?} [{i}][{t}]: {} vs {want}",
                    grad[i][t]
                );
            }
        }
    }
}

#[test]
fn rollout_weights_truncate_mask_and_mask_sequences() {
    let c = case();
    // The case's `old` plays the behaviour policy and `logp` the trainer's old policy.
    let (old, behaviour, valid) = (tensor(&c.logp), tensor(&c.old), mask(&c.valid));
    let rho = |i: usize, t: usize| (c.logp[i][t] - c.old[i][t]).exp();
    let cap = 1.2;
    let weights = |kind| {
        rows_of(&rollout_weights(
            &old,
            &behaviour,
            &valid,
            &RolloutCorrection { kind, cap },
        ))
    };
    let (tis, mis, seq) = (
        weights(CorrectionKind::Tis),
        weights(CorrectionKind::Mis),
        weights(CorrectionKind::SeqMask),
    );
    for i in 0..3 {
        let seq_log: f64 = (0..5)
            .filter(|&t| c.valid[i][t])
            .map(|t| rho(i, t).ln())
            .sum();
        for t in 0..5 {
            if !c.valid[i][t] {
                assert_eq!((tis[i][t], mis[i][t], seq[i][t]), (0.0, 0.0, 0.0));
                continue;
            }
            let r = rho(i, t);
            assert!((tis[i][t] - r.min(cap)).abs() < 1e-6, "TIS [{i}][{t}]");
            let want_mis = if r > cap { 0.0 } else { r };
            assert!((mis[i][t] - want_mis).abs() < 1e-6, "MIS [{i}][{t}]");
            let want_seq = if seq_log.exp() > cap { 0.0 } else { 1.0 };
            assert_eq!(seq[i][t], want_seq, "seq-mask [{i}][{t}]");
        }
    }
    // Token [1][1] has rho = e^0.5: MIS drops it, TIS caps it. Row 0's sequence ratio
    // e^0.2 = 1.22 is above the cap: seq-mask drops the row; row 1's, e^0, keeps it.
    assert_eq!(mis[1][1], 0.0);
    assert!((tis[1][1] - cap).abs() < 1e-6);
    assert!(seq[0][..4].iter().all(|&w| w == 0.0) && seq[1][0] == 1.0);
    // The mismatch: k3 of KL(behaviour || old) and the largest ratio.
    let m = mismatch(&old, &behaviour, &valid);
    let mut k3 = 0.0;
    let mut max: f64 = 0.0;
    for i in 0..3 {
        for t in (0..5).filter(|&t| c.valid[i][t]) {
            let r = rho(i, t);
            k3 += r - 1.0 - r.ln();
            max = max.max(r);
        }
    }
    assert!((m.kl_sum - k3).abs() < 1e-6 && (m.ratio_max - max).abs() < 1e-6);
    assert_eq!(m.tokens, 12.0);
    // On-policy (the behaviour log-probs are the trainer's): every weight is 1.
    for kind in [
        CorrectionKind::Tis,
        CorrectionKind::Mis,
        CorrectionKind::SeqMask,
    ] {
        let w = rows_of(&rollout_weights(
            &old,
            &old,
            &valid,
            &RolloutCorrection { kind, cap },
        ));
        for i in 0..3 {
            for t in 0..5 {
                assert_eq!(w[i][t], if c.valid[i][t] { 1.0 } else { 0.0 }, "{kind:?}");
            }
        }
    }
    let m = mismatch(&old, &old, &valid);
    assert_eq!((m.kl_sum, m.ratio_max), (0.0, 1.0));
}

#[test]
fn the_objectives_compose_with_clip_cov_and_kl_cov() {
    let c = case();
    let logp = tensor(&c.logp).set_requires_grad(true);
    let old = tensor(&c.old);
    let adv = Tensor::from_slice(&c.adv)
        .view([3, 1])
        .expand([3, 5], false);
    let valid = mask(&c.valid);
    let t = TokenTensors {
        logp: &logp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let selected = mask(&[
        vec![false, true, false, false, false],
        vec![false, false, true, false, false],
        vec![true, false, false, false, false],
    ]);
    for policy in [PolicyLoss::Gspo, PolicyLoss::Cispo] {
        let objective = Objective {
            policy,
            clip: PpoClip::default(),
        };
        // Clip-Cov: the selected tokens' terms are zero with zero gradient; the others
        // are the objective's.
        let dropped = cove::loss::control::clip_cov_loss(&t, &selected, &objective).loss;
        let plain = objective.surrogate(&t, None).loss;
        let want = plain.masked_fill(&selected, 0.0);
        assert!(dropped.allclose(&want, 1e-12, 1e-12, false), "{policy:?}");
        let (grad,) = {
            let g = Tensor::run_backward(&[dropped.sum(Kind::Double)], &[&logp], false, false);
            (g[0].shallow_clone(),)
        };
        assert_eq!(
            grad.masked_select(&selected)
                .abs()
                .sum(Kind::Double)
                .double_value(&[]),
            0.0,
            "{policy:?}"
        );
        // KL-Cov: the unclipped objective plus beta |logp - old| on the selected tokens.
        let kl = cove::loss::control::kl_cov_loss(&t, &selected, 0.5, &objective).loss;
        let penalty = (&logp - &old)
            .abs()
            .masked_fill(&selected.logical_not(), 0.0)
            * 0.5;
        let want = (objective.unclipped(&t).loss + penalty).masked_fill(&valid.logical_not(), 0.0);
        assert!(kl.allclose(&want, 1e-12, 1e-12, false), "{policy:?}");
    }
}

#[test]
fn a_loss_config_with_gspo_and_rollout_correction_is_checked_by_name() {
    let bad = |edit: &dyn Fn(&mut cove::config::TrainConfig)| {
        let mut cfg = cove::config::TrainConfig::default();
        edit(&mut cfg);
        cfg.validate(std::path::Path::new("x.toml"))
            .unwrap_err()
            .to_string()
    };
    let e = bad(&|c| {
        c.loss.policy = PolicyLoss::Gspo;
        c.loss.clip.dual_clip = Some(3.0);
    });
    assert!(e.contains("loss.clip.dual_clip"), "{e}");
    let e = bad(&|c| {
        c.loss.rollout_correction = Some(RolloutCorrection {
            kind: CorrectionKind::Tis,
            cap: 2.0,
        })
    });
    assert!(e.contains("reuse_rollout_logprobs = false"), "{e}");
    let e = bad(&|c| {
        c.reuse_rollout_logprobs = false;
        c.loss.rollout_correction = Some(RolloutCorrection {
            kind: CorrectionKind::Mis,
            cap: 0.5,
        })
    });
    assert!(e.contains("loss.rollout_correction.cap"), "{e}");
    let e = bad(&|c| c.asynchronous.max_staleness = 1);
    assert!(
        e.contains("async.max_staleness") && e.contains("vllm"),
        "{e}"
    );
    let parsed = cove::config::TrainConfig::from_toml_str(
        "reuse_rollout_logprobs = false\n[loss]\npolicy = \"cispo\"\nrollout_correction = { kind = \"seq-mask\", cap = 4.0 }\n\
         [async]\nmax_staleness = 0\n",
        std::path::Path::new("x.toml"),
    )
    .unwrap();
    assert_eq!(parsed.loss.policy, PolicyLoss::Cispo);
    assert_eq!(
        parsed.loss.rollout_correction,
        Some(RolloutCorrection {
            kind: CorrectionKind::SeqMask,
            cap: 4.0
        })
    );
}

/// A trainer step with each objective, KL-Cov selecting and TIS weighting: finite
/// metrics, the behaviour mismatch measured, and (the local engine's log-probs are the
/// trainer's up to rounding) a ratio of 1.
#[test]
fn trainer_steps_with_each_objective_and_correction() {
    for policy in [PolicyLoss::Ppo, PolicyLoss::Gspo, PolicyLoss::Cispo] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small_config(&dir.path().join("run"));
        cfg.steps = 2;
        cfg.reuse_rollout_logprobs = false;
        cfg.loss = LossConfig {
            policy,
            control: ControlConfig::KlCov {
                ratio: 0.05.into(),
                beta: 1.0,
            },
            rollout_correction: Some(RolloutCorrection {
                kind: CorrectionKind::Tis,
                cap: 2.0,
            }),
            ..LossConfig::default()
        };
        let mut t = trainer(cfg);
        for _ in 0..2 {
            let m = t.step().unwrap();
            assert!(
                m.loss.is_finite() && m.grad_norm.is_finite(),
                "{policy:?}: {m:?}"
            );
            assert!(m.selected_frac > 0.0, "{policy:?}");
            let kl = m.rollout_mismatch_kl.unwrap();
            let max = m.rollout_ratio_max.unwrap();
            assert!(
                kl < 1e-6 && (max - 1.0).abs() < 1e-3,
                "{policy:?}: {kl} {max}"
            );
        }
    }
}
