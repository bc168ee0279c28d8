//! Selection by covariance share: `ratio = { share = s }` takes the fewest tokens that
//! carry share `s` of the scope's positive covariance mass (KL-Cov: top tokens by
//! covariance; Clip-Cov: candidates in random-key order), checked against a plain-Rust
//! computation of the covariance; and the step metrics that report the share.

use crate::learner_common::{small_config, trainer};
use cove::loss::Objective;
use cove::loss::control::{
    Ratio, clip_cov_candidates, clip_cov_select, covariance_share, hash_keys, kl_cov_select,
    token_covariance,
};
use cove::loss::{ControlConfig, PpoClip, TokenTensors};
use tch::{Device, Kind, Tensor};

struct Batch {
    logp: Tensor,
    old: Tensor,
    adv: Tensor,
    valid: Tensor,
}

impl Batch {
    fn scope(&self) -> TokenTensors<'_> {
        TokenTensors {
            logp: &self.logp,
            old_logp: &self.old,
            adv: &self.adv,
            valid: &self.valid,
        }
    }
}

/// 16 rows of up to 64 tokens with a spread of log-probs, one advantage per row and
/// ragged lengths; `adv_scale` 0 gives a batch with no covariance at all.
fn batch(seed: i64, adv_scale: f64) -> Batch {
    let _lock = crate::global_rng_lock();
    tch::manual_seed(seed);
    let (b, t) = (16i64, 64i64);
    let opts = (Kind::Double, Device::Cpu);
    let logp = -Tensor::rand([b, t], opts) * 6.0;
    let old = &logp + Tensor::randn([b, t], opts) * 0.1;
    let adv = (Tensor::randn([b, 1], opts) * adv_scale)
        .expand([b, t], false)
        .contiguous();
    let lens = Tensor::randint_low(t / 4, t + 1, [b, 1], (Kind::Int64, Device::Cpu));
    let valid = Tensor::arange(t, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&lens);
    Batch {
        logp,
        old,
        adv,
        valid,
    }
}

/// Per-token covariance in plain Rust over flat positions: `(logp - mean) * (A - mean)`
/// with means over valid tokens; `None` at invalid positions.
fn plain_covariance(x: &Batch) -> Vec<Option<f64>> {
    let logp = Vec::<f64>::try_from(x.logp.flatten(0, -1)).unwrap();
    let adv = Vec::<f64>::try_from(x.adv.flatten(0, -1)).unwrap();
    let valid = Vec::<bool>::try_from(x.valid.flatten(0, -1)).unwrap();
    let n = valid.iter().filter(|&&v| v).count() as f64;
    let mean = |v: &[f64]| {
        v.iter()
            .zip(&valid)
            .filter(|(_, ok)| **ok)
            .map(|(x, _)| x)
            .sum::<f64>()
            / n
    };
    let (ml, ma) = (mean(&logp), mean(&adv));
    (0..logp.len())
        .map(|i| valid[i].then(|| (logp[i] - ml) * (adv[i] - ma)))
        .collect()
}

fn flat_selected(selected: &Tensor) -> Vec<bool> {
    Vec::<bool>::try_from(selected.flatten(0, -1)).unwrap()
}

/// The positive mass of the tokens at `positions`.
fn mass(cov: &[Option<f64>], positions: impl Iterator<Item = usize>) -> f64 {
    positions.map(|i| cov[i].unwrap_or(0.0).max(0.0)).sum()
}

#[test]
fn kl_cov_share_takes_the_fewest_top_tokens_that_carry_it() {
    for seed in [1, 2, 3] {
        let x = batch(seed, 1.5);
        let cov = plain_covariance(&x);
        let total = mass(&cov, 0..cov.len());
        let mut by_cov: Vec<usize> = (0..cov.len()).filter(|&i| cov[i].is_some()).collect();
        by_cov.sort_by(|&a, &b| cov[b].unwrap().total_cmp(&cov[a].unwrap()));
        for share in [0.01, 0.2, 0.5, 0.9, 1.0] {
            let selected = kl_cov_select(&x.scope(), Ratio::Share { share });
            let chosen = flat_selected(&selected);
            let n = chosen.iter().filter(|&&c| c).count();
            assert!(n >= 1, "seed {seed} share {share}: nothing selected");
            // The selection is the top n by covariance ...
            let mut expect = vec![false; cov.len()];
            for &i in &by_cov[..n] {
                expect[i] = true;
            }
            assert_eq!(chosen, expect, "seed {seed} share {share}: not the top {n}");
            // ... carrying the share, where the top n - 1 do not.
            let carried = mass(&cov, by_cov[..n].iter().copied());
            let short = mass(&cov, by_cov[..n - 1].iter().copied());
            let target = share * total;
            assert!(
                carried >= target * (1.0 - 1e-12),
                "seed {seed} share {share}"
            );
            assert!(
                short < target * (1.0 + 1e-12),
                "seed {seed} share {share}: not the fewest"
            );
            let reported = covariance_share(&x.scope(), &selected);
            assert!(
                (reported - carried / total).abs() < 1e-9,
                "{reported} vs {}",
                carried / total
            );
        }
    }
}

#[test]
fn clip_cov_share_takes_random_candidates_until_they_carry_it() {
    let clip = PpoClip::default();
    let (lb, ub) = (0.2, 5.0);
    for seed in [1, 4] {
        let x = batch(seed, 1.5);
        let cov = plain_covariance(&x);
        let total = mass(&cov, 0..cov.len());
        let tensor_cov = token_covariance(&x.logp, &x.adv, &x.valid);
        let candidates = flat_selected(&clip_cov_candidates(
            &x.scope(),
            &tensor_cov,
            lb,
            ub,
            &Objective::ppo(clip),
        ));
        let n_candidates = candidates.iter().filter(|&&c| c).count();
        assert!(n_candidates > 10, "the batch has candidates");
        for key_seed in [0u64, 9, 1 << 40] {
            // The candidates in the order of their random keys.
            let positions = Tensor::arange(cov.len() as i64, (Kind::Int64, Device::Cpu));
            let keys = Vec::<i64>::try_from(hash_keys(&positions, key_seed)).unwrap();
            let mut order: Vec<usize> = (0..cov.len()).filter(|&i| candidates[i]).collect();
            order.sort_by_key(|&i| keys[i]);
            for share in [0.05, 0.3, 1.0] {
                let selected = clip_cov_select(
                    &x.scope(),
                    Ratio::Share { share },
                    lb,
                    ub,
                    &Objective::ppo(clip),
                    key_seed,
                );
                let chosen = flat_selected(&selected);
                let n = chosen.iter().filter(|&&c| c).count();
                let mut expect = vec![false; cov.len()];
                for &i in &order[..n] {
                    expect[i] = true;
                }
                assert_eq!(
                    chosen, expect,
                    "share {share}: not a prefix of the key order"
                );
                let target = share * total;
                let carried = mass(&cov, order[..n].iter().copied());
                if n < n_candidates {
                    assert!(carried >= target * (1.0 - 1e-12), "share {share}");
                } else {
                    assert!(share == 1.0 || carried >= target * (1.0 - 1e-12));
                }
                assert!(n >= 1);
                let short = mass(&cov, order[..n - 1].iter().copied());
                assert!(
                    short < target * (1.0 + 1e-12),
                    "share {share}: not the fewest"
                );
            }
        }
    }
}

#[test]
fn a_batch_without_covariance_selects_nothing_by_share() {
    let x = batch(5, 0.0);
    let share = Ratio::Share { share: 0.5 };
    assert_eq!(
        kl_cov_select(&x.scope(), share)
            .sum(Kind::Int64)
            .int64_value(&[]),
        0
    );
    let clip = PpoClip::default();
    let selected = clip_cov_select(&x.scope(), share, -1.0, 5.0, &Objective::ppo(clip), 3);
    assert_eq!(selected.sum(Kind::Int64).int64_value(&[]), 0);
    // A token fraction still takes its max(int(r * N), 1) tokens.
    assert!(
        kl_cov_select(&x.scope(), 0.01.into())
            .sum(Kind::Int64)
            .int64_value(&[])
            >= 1
    );
}

#[test]
fn ratio_reads_as_a_fraction_or_a_share_and_is_checked() {
    let read = |text: &str| toml::from_str::<ControlConfig>(text);
    assert_eq!(
        read("kind = \"kl-cov\"\nratio = { share = 0.25 }").unwrap(),
        ControlConfig::KlCov {
            ratio: Ratio::Share { share: 0.25 },
            beta: 1.0
        }
    );
    assert_eq!(
        read("kind = \"clip-cov\"\nratio = 2e-4").unwrap(),
        ControlConfig::ClipCov {
            ratio: Ratio::Fraction(2e-4),
            lb: 1.0,
            ub: 5.0
        }
    );
    let bad = read("kind = \"clip-cov\"\nratio = { share = 1.5 }")
        .unwrap()
        .build();
    let message = bad.err().expect("a share above 1 is refused").to_string();
    assert!(message.contains("ratio.share"), "{message}");
    assert!(read("kind = \"clip-cov\"\nratio = { shares = 0.5 }").is_err());
    // Written back, a share stays a share.
    let cfg = ControlConfig::KlCov {
        ratio: Ratio::Share { share: 0.3 },
        beta: 1.0,
    };
    assert_eq!(read(&toml::to_string(&cfg).unwrap()).unwrap(), cfg);
}

#[test]
fn step_metrics_report_the_share_the_selection_carried() {
    let run = |control: ControlConfig| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small_config(dir.path());
        cfg.loss.control = control;
        trainer(cfg).step().unwrap()
    };
    let share = 0.3;
    let kl = run(ControlConfig::KlCov {
        ratio: Ratio::Share { share },
        beta: 1.0,
    });
    // Every mini-batch's selection carries at least the share, so their mean does.
    let carried = kl.selected_share.expect("KL-Cov reports its share");
    assert!(carried >= share - 1e-9 && carried <= 1.0, "{carried}");
    assert!(kl.selected_tokens.expect("and its token count") >= 1.0);
    let grpo = run(ControlConfig::None);
    assert_eq!(grpo.selected_share, None);
    assert_eq!(grpo.selected_tokens, None);
    // The batch's own concentration is reported for every control.
    for m in [&kl, &grpo] {
        let c = &m.cov;
        assert!(c.top_share_2e4 > 0.0 && c.top_share_2e4 <= c.top_share_2e3);
        assert!(c.top_share_2e3 <= 1.0);
        assert!(c.half_share_frac > 0.0 && c.half_share_frac <= 1.0);
    }
}
