//! Loss, control, aggregation and advantage tests against `tests/golden/loss.json`
//! (written by `scripts/golden_loss.py`, an independent float64 PyTorch transcription
//! of verl's code) and small hand-checked cases.

use cove::advantage::{Advantage, AdvantageEstimator};
use cove::loss::Objective;
use cove::loss::compare::{LossInputs, compute_loss};
use cove::loss::control::{
    clip_cov_candidates, clip_cov_select, clip_cov_select_tensor, hash_keys, kl_cov_select,
    kl_cov_select_tensor, selection_count, token_covariance,
};
use cove::loss::{
    AggNorm, ControlConfig, LossAgg, LossConfig, PpoClip, SelectionScope, TokenTensors, aggregate,
    ppo_surrogate,
};
use serde_json::Value;
use tch::{Kind, Tensor};

fn golden() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/loss.json"
    ))
    .expect("tests/golden/loss.json (run scripts/golden_loss.py golden)");
    serde_json::from_str(&text).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn t2(r: &[Vec<f64>]) -> Tensor {
    let b = r.len() as i64;
    let t = r[0].len() as i64;
    Tensor::from_slice(&r.iter().flatten().copied().collect::<Vec<_>>()).view([b, t])
}

fn to_rows(x: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(x.to_kind(Kind::Double)).unwrap()
}

fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>], tol: f64, what: &str) {
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}][{j}]: {x} vs {y}"
            );
        }
    }
}

struct Inputs {
    logp: Tensor,
    old: Tensor,
    adv: Tensor,
    valid: Tensor,
    raw: LossInputs,
}

fn inputs(g: &Value) -> Inputs {
    let raw: LossInputs = serde_json::from_value(g["inputs"].clone()).unwrap();
    Inputs {
        logp: t2(&raw.logp),
        old: t2(&raw.old_logp),
        adv: t2(&raw.advantages),
        valid: t2(&raw.mask).ne(0.0),
        raw,
    }
}

fn cfg(control: ControlConfig) -> LossConfig {
    LossConfig {
        control,
        ..LossConfig::default()
    }
}

#[test]
fn covariance_matches_golden() {
    let g = golden();
    let x = inputs(&g);
    let cov = token_covariance(&x.logp, &x.adv, &x.valid);
    assert_close(&to_rows(&cov), &rows(&g["cov"]), 1e-12, "cov");
}

#[test]
fn ppo_surrogate_matches_golden_with_clip_higher_and_dual_clip() {
    let g = golden();
    let x = inputs(&g);
    for case in g["ppo"].as_array().unwrap() {
        let clip = PpoClip {
            eps_low: case["eps_low"].as_f64().unwrap(),
            eps_high: case["eps_high"].as_f64().unwrap(),
            dual_clip: case["dual_clip"].as_f64(),
        };
        let s = ppo_surrogate(&x.logp, &x.old, &x.adv, &x.valid, &clip);
        assert_close(
            &to_rows(&s.loss),
            &rows(&case["token_loss"]),
            1e-12,
            "ppo loss",
        );
        assert_eq!(
            to_rows(&s.clipped),
            rows(&case["clipped"]),
            "ppo clipped {clip:?}"
        );
    }
}

#[test]
fn clip_cov_candidates_and_selection_match_golden() {
    let g = golden();
    let x = inputs(&g);
    let scope = TokenTensors {
        logp: &x.logp,
        old_logp: &x.old,
        adv: &x.adv,
        valid: &x.valid,
    };
    let n_valid = g["n_valid"].as_i64().unwrap();
    for case in g["clip_cov"].as_array().unwrap() {
        let (r, lb, ub) = (
            case["ratio"].as_f64().unwrap(),
            case["lb"].as_f64().unwrap(),
            case["ub"].as_f64().unwrap(),
        );
        let clip = PpoClip::default();
        let cov = token_covariance(&x.logp, &x.adv, &x.valid);
        let cand = to_rows(&clip_cov_candidates(
            &scope,
            &cov,
            lb,
            ub,
            &Objective::ppo(clip),
        ));
        assert_eq!(cand, rows(&case["candidates"]), "candidates r={r}");
        let count = case["count"].as_i64().unwrap();
        assert_eq!(
            selection_count(r, n_valid)
                .min(cand.iter().flatten().filter(|&&c| c != 0.0).count() as i64),
            count
        );
        for seed in [0u64, 1, 77, u64::MAX] {
            let sel = to_rows(&clip_cov_select(
                &scope,
                r.into(),
                lb,
                ub,
                &Objective::ppo(clip),
                seed,
            ));
            let mut n = 0;
            for (sr, cr) in sel.iter().zip(&cand) {
                for (s, c) in sr.iter().zip(cr) {
                    if *s != 0.0 {
                        assert!(
                            *c != 0.0,
                            "selected token is not a candidate (r={r}, seed={seed})"
                        );
                        n += 1;
                    }
                }
            }
            assert_eq!(n, count, "selected count r={r} seed={seed}");
        }
        // The full loss: golden surrogate with Cove's selection zeroed, token-mean.
        let report = compute_loss(
            &x.raw,
            &cfg(ControlConfig::ClipCov {
                ratio: r.into(),
                lb,
                ub,
            }),
            5,
        )
        .unwrap();
        let pg = rows(&case["pg"]);
        let mut expect = 0.0;
        for (i, row) in pg.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = if report.selected[i][j] { 0.0 } else { *v };
                assert!((report.token_loss[i][j] - want).abs() < 1e-12);
                expect += want;
                if report.selected[i][j] {
                    assert_eq!(
                        report.grad_logp[i][j], 0.0,
                        "Clip-Cov-selected gradient is exactly zero"
                    );
                }
            }
        }
        expect /= n_valid as f64;
        assert!(
            (report.loss - expect).abs() < 1e-12,
            "{} vs {expect}",
            report.loss
        );
    }
}

#[test]
fn clip_cov_selection_is_seeded() {
    let g = golden();
    let x = inputs(&g);
    let scope = TokenTensors {
        logp: &x.logp,
        old_logp: &x.old,
        adv: &x.adv,
        valid: &x.valid,
    };
    let clip = PpoClip::default();
    let a = to_rows(&clip_cov_select(
        &scope,
        0.02.into(),
        1.0,
        5.0,
        &Objective::ppo(clip),
        9,
    ));
    let b = to_rows(&clip_cov_select(
        &scope,
        0.02.into(),
        1.0,
        5.0,
        &Objective::ppo(clip),
        9,
    ));
    assert_eq!(a, b, "same seed, same selection");
    let differs = (0..20u64).any(|s| {
        to_rows(&clip_cov_select(
            &scope,
            0.02.into(),
            1.0,
            5.0,
            &Objective::ppo(clip),
            s,
        )) != a
    });
    assert!(differs, "the seed changes the selection");
}

#[test]
fn hash_keys_are_unique_and_spread() {
    let idx = Tensor::arange(4096, (Kind::Int64, tch::Device::Cpu));
    let k = hash_keys(&idx, 42);
    let mut keys: Vec<i64> = Vec::try_from(&k).unwrap();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4096);
    // The first-ranked indices are not just the smallest indices.
    let (_, order) = k.topk(64, 0, false, true);
    let picked: Vec<i64> = Vec::try_from(order).unwrap();
    assert!(picked.iter().any(|&i| i > 2048));
}

#[test]
fn kl_cov_topk_and_penalty_match_golden() {
    let g = golden();
    let x = inputs(&g);
    let scope = TokenTensors {
        logp: &x.logp,
        old_logp: &x.old,
        adv: &x.adv,
        valid: &x.valid,
    };
    for case in g["kl_cov"].as_array().unwrap() {
        let (k, beta) = (
            case["ratio"].as_f64().unwrap(),
            case["beta"].as_f64().unwrap(),
        );
        assert_eq!(
            to_rows(&kl_cov_select(&scope, k.into())),
            rows(&case["selected"]),
            "top-k k={k}"
        );
        let report = compute_loss(
            &x.raw,
            &cfg(ControlConfig::KlCov {
                ratio: k.into(),
                beta,
            }),
            0,
        )
        .unwrap();
        assert_close(
            &report.token_loss,
            &rows(&case["token_loss"]),
            1e-12,
            "kl-cov loss",
        );
        let want = case["loss_token_mean"].as_f64().unwrap();
        assert!((report.loss - want).abs() < 1e-12);
        // Analytic gradient: (-A * ratio + beta * sign(logp - old) [selected]) / N.
        let n = g["n_valid"].as_f64().unwrap();
        for i in 0..x.raw.logp.len() {
            for j in 0..x.raw.logp[0].len() {
                let (lp, old, a, m) = (
                    x.raw.logp[i][j],
                    x.raw.old_logp[i][j],
                    x.raw.advantages[i][j],
                    x.raw.mask[i][j],
                );
                let mut want = if m != 0.0 {
                    -a * (lp - old).exp() / n
                } else {
                    0.0
                };
                if report.selected[i][j] {
                    want += beta * (lp - old).signum() / n;
                }
                assert!(
                    (report.grad_logp[i][j] - want).abs() < 1e-12,
                    "grad [{i}][{j}]"
                );
            }
        }
    }
}

#[test]
fn aggregation_modes_match_golden() {
    let g = golden();
    let x = inputs(&g);
    let s = ppo_surrogate(&x.logp, &x.old, &x.adv, &x.valid, &PpoClip::default());
    let norm = AggNorm::of(&x.valid, None);
    for case in g["agg"].as_array().unwrap() {
        let mode: LossAgg = serde_json::from_value(case["mode"].clone()).unwrap();
        let got = aggregate(&s.loss, &x.valid, mode, &norm).double_value(&[]);
        let want = case["loss"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{mode:?}: {got} vs {want}");
        if mode == LossAgg::SeqMeanTokenSumNorm {
            // A configured constant length (Dr.GRPO: the maximum response length).
            let width = x.raw.mask[0].len();
            let fixed = AggNorm::of(&x.valid, Some(4 * width));
            let got = aggregate(&s.loss, &x.valid, mode, &fixed).double_value(&[]);
            assert!((got - want / 4.0).abs() < 1e-12);
        }
    }
}

#[test]
fn advantages_match_golden() {
    let g = golden();
    let a = &g["advantages"];
    let scores: Vec<f64> = serde_json::from_value(a["scores"].clone()).unwrap();
    let groups: Vec<usize> = serde_json::from_value(a["groups"].clone()).unwrap();
    let lengths: Vec<usize> = serde_json::from_value(a["lengths"].clone()).unwrap();
    for est in [
        AdvantageEstimator::Grpo,
        AdvantageEstimator::DrGrpo,
        AdvantageEstimator::Rloo,
        AdvantageEstimator::ReinforcePlusPlusBaseline,
    ] {
        let want: Vec<f64> = serde_json::from_value(a[est.name()].clone()).unwrap();
        let got = est.compute(&scores, &groups, &lengths);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-9, "{}: {got:?} vs {want:?}", est.name());
        }
    }
}

fn hand(logp: &[f64], old: &[f64], adv: &[f64]) -> (Tensor, Tensor, Tensor, Tensor) {
    let n = logp.len() as i64;
    (
        Tensor::from_slice(logp).view([1, n]),
        Tensor::from_slice(old).view([1, n]),
        Tensor::from_slice(adv).view([1, n]),
        Tensor::ones([1, n], (Kind::Bool, tch::Device::Cpu)),
    )
}

#[test]
fn clip_cov_bounds_are_strict() {
    // A = [1, -1, 2, -2] (mean 0), logp mean 0: cov = [1, 1, 5, 5], exactly on the bounds.
    let (lp, old, adv, valid) = hand(
        &[1.0, -1.0, 2.5, -2.5],
        &[1.0, -1.0, 2.5, -2.5],
        &[1.0, -1.0, 2.0, -2.0],
    );
    let scope = TokenTensors {
        logp: &lp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let cov = token_covariance(&lp, &adv, &valid);
    assert_eq!(to_rows(&cov), vec![vec![1.0, 1.0, 5.0, 5.0]]);
    let cand = clip_cov_candidates(&scope, &cov, 1.0, 5.0, &Objective::ppo(PpoClip::default()));
    assert_eq!(
        cand.sum(Kind::Int64).int64_value(&[]),
        0,
        "lb and ub are excluded"
    );
    let (lp, old, adv, valid) = hand(
        &[1.5, -1.5, 2.0, -2.0],
        &[1.5, -1.5, 2.0, -2.0],
        &[1.0, -1.0, 2.0, -2.0],
    );
    let scope = TokenTensors {
        logp: &lp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let cov = token_covariance(&lp, &adv, &valid);
    let cand = clip_cov_candidates(&scope, &cov, 1.0, 5.0, &Objective::ppo(PpoClip::default()));
    assert_eq!(cand.sum(Kind::Int64).int64_value(&[]), 4);
}

#[test]
fn clip_cov_excludes_ppo_clipped_tokens() {
    // Token 0 has cov 1.5 but ratio e^0.5 > 1.2 with A > 0: PPO clipped, not a candidate.
    let (lp, old, adv, valid) = hand(
        &[1.5, -1.5, 2.0, -2.0],
        &[1.0, -1.5, 2.0, -2.0],
        &[1.0, -1.0, 2.0, -2.0],
    );
    let scope = TokenTensors {
        logp: &lp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let cov = token_covariance(&lp, &adv, &valid);
    let cand = to_rows(&clip_cov_candidates(
        &scope,
        &cov,
        1.0,
        5.0,
        &Objective::ppo(PpoClip::default()),
    ));
    assert_eq!(cand, vec![vec![0.0, 1.0, 1.0, 1.0]]);
}

#[test]
fn selection_count_floors_and_keeps_one() {
    assert_eq!(selection_count(2e-4, 121), 1, "max(int(0.0242), 1)");
    assert_eq!(selection_count(0.049, 121), 5, "int(5.929) truncates");
    assert_eq!(
        selection_count(0.05, 60),
        3,
        "0.05 * 60 = 3.0000000000000004"
    );
    assert_eq!(selection_count(2e-3, 10_000), 20);
    assert_eq!(selection_count(0.0, 5), 1);
}

#[test]
fn all_masked_batch_gives_zero_loss_and_zero_grads() {
    let b = 3;
    let t = 5;
    let inputs = LossInputs {
        logp: vec![vec![f64::NEG_INFINITY; t]; b],
        old_logp: vec![vec![f64::NEG_INFINITY; t]; b],
        advantages: vec![vec![1.0; t]; b],
        mask: vec![vec![0.0; t]; b],
    };
    for control in [
        ControlConfig::None,
        ControlConfig::default(),
        ControlConfig::ClipCov {
            ratio: 2e-4.into(),
            lb: 1.0,
            ub: 5.0,
        },
        ControlConfig::EntropyBonus { coef: 0.01 },
    ] {
        for agg in [
            LossAgg::TokenMean,
            LossAgg::SeqMeanTokenSum,
            LossAgg::SeqMeanTokenMean,
            LossAgg::SeqMeanTokenSumNorm,
        ] {
            for scope in [SelectionScope::MiniBatch, SelectionScope::MicroBatch] {
                let c = LossConfig {
                    control: control.clone(),
                    agg,
                    scope,
                    ..LossConfig::default()
                };
                let r = compute_loss(&inputs, &c, 0).unwrap();
                assert_eq!(r.loss, 0.0, "{control:?} {agg:?}");
                assert!(r.grad_logp.iter().flatten().all(|g| *g == 0.0));
                assert!(r.selected.iter().flatten().all(|s| !s));
            }
        }
    }
}

#[test]
fn bad_inputs_name_the_field() {
    let mut inputs = LossInputs {
        logp: vec![vec![0.0; 3]; 2],
        old_logp: vec![vec![0.0; 3]; 2],
        advantages: vec![vec![0.0; 3]; 2],
        mask: vec![vec![1.0; 3]; 2],
    };
    inputs.old_logp[1].pop();
    let e = compute_loss(&inputs, &LossConfig::default(), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("old_logp") && e.contains("row 1"), "{e}");
    inputs.old_logp[1].push(f64::NAN);
    let e = compute_loss(&inputs, &LossConfig::default(), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("old_logp") && e.contains("not finite"), "{e}");
}

#[test]
fn fused_cpu_selection_equals_tensor_ops() {
    let _rng = crate::global_rng_lock();
    for kind in [Kind::Float, Kind::Double] {
        tch::manual_seed(3);
        let opts = (kind, tch::Device::Cpu);
        // 16 x 301: not a multiple of the kernels' 64-token block, so the tail runs too.
        let (b, t) = (16, 301);
        let logp = -Tensor::rand([b, t], opts) * 6.0;
        let old = &logp + Tensor::randn([b, t], opts) * 0.25;
        let adv = (Tensor::randn([b, 1], opts) * 1.5)
            .expand([b, t], false)
            .contiguous();
        let lens = Tensor::randint_low(0, t + 1, [b, 1], (Kind::Int64, tch::Device::Cpu));
        let valid = Tensor::arange(t, (Kind::Int64, tch::Device::Cpu))
            .view([1, t])
            .lt_tensor(&lens);
        // Padding holds what a model's padding may hold: -inf and NaN.
        let invalid = valid.logical_not();
        let logp = logp.masked_fill(&invalid, f64::NEG_INFINITY);
        let old = old.masked_fill(&invalid, f64::NAN);
        let scope = TokenTensors {
            logp: &logp,
            old_logp: &old,
            adv: &adv,
            valid: &valid,
        };
        let clip = PpoClip::default();
        for (r, lb, ub) in [(2e-4, 1.0, 5.0), (0.01, 0.5, 5.0), (0.9, 0.1, 2.0)] {
            for seed in [0u64, 5, 1 << 40] {
                let fused = clip_cov_select(&scope, r.into(), lb, ub, &Objective::ppo(clip), seed);
                let ops = clip_cov_select_tensor(&scope, r, lb, ub, &Objective::ppo(clip), seed);
                assert!(fused.equal(&ops), "{kind:?} clip-cov r={r} seed={seed}");
                assert!(fused.sum(Kind::Int64).int64_value(&[]) > 0);
            }
        }
        for k in [2e-3, 0.05, 0.5] {
            let fused = kl_cov_select(&scope, k.into());
            let ops = kl_cov_select_tensor(&scope, k);
            assert!(fused.equal(&ops), "{kind:?} kl-cov k={k}");
        }
    }
}

#[test]
fn top_n_keeps_exactly_the_n_best() {
    use cove::loss::cpu::TopN;
    let items: Vec<i64> = (0..5000).map(|i| (i * 7919 + 13) % 10007).collect();
    for n in [1usize, 2, 7, 100, 2499, 5000, 6000] {
        let mut top = TopN::new(n, |a: &i64, b: &i64| a.cmp(b));
        for &x in &items {
            top.push(x);
        }
        let mut kept = top.finish();
        kept.sort();
        let mut expected = items.clone();
        expected.sort();
        expected.truncate(n);
        assert_eq!(kept, expected, "n={n}");
    }
}

#[test]
fn block_kernels_match_their_generic_versions() {
    use cove::loss::cpu::{ClipTest, Real, clip_bits, kl_bits};
    // Deterministic pseudo-random f32 data with NaN/-inf sprinkled in (as padding holds).
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    for round in 0..200 {
        let l: Vec<f32> = (0..64)
            .map(|k| match (round + k) % 37 {
                0 => f32::NEG_INFINITY,
                1 => f32::NAN,
                _ => -6.0 * next(),
            })
            .collect();
        let o: Vec<f32> = l.iter().map(|&v| v + (next() - 0.5) * 0.8).collect();
        let a: Vec<f32> = (0..64).map(|_| (next() - 0.5) * 4.0).collect();
        let v: Vec<bool> = (0..64).map(|_| next() < 0.8).collect();
        let test = ClipTest {
            ml: -3.0f32,
            ma: 0.1,
            lb: 0.5,
            ub: 3.0,
            ln_lo: (0.8f64).ln() as f32,
            ln_hi: (1.2f64).ln() as f32,
        };
        assert_eq!(
            f32::clip_block(&l, &o, &a, &v, &test),
            clip_bits(&l, &o, &a, &v, &test),
            "round {round}"
        );
        let bar = (next() - 0.5) * 2.0;
        assert_eq!(
            f32::kl_block(&l, &a, &v, -3.0, 0.1, bar),
            kl_bits(&l, &a, &v, -3.0, 0.1, bar),
            "round {round}"
        );
    }
}
