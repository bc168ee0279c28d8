//! Selection scope: with `mini_batch` scope the accumulated gradient of a mini-batch
//! is the same for micro-batch sizes 1, 2, 4 (and 8 = the whole mini-batch); with
//! verl's `micro_batch` scope it is not, and this test documents by how much.

use cove::loss::{
    ControlConfig, LossAgg, LossConfig, SelectionScope, TokenTensors, micro_batch_loss,
    plan_mini_batch,
};
use tch::{Device, Kind, Tensor};

const B: i64 = 8;
const T: i64 = 16;

struct Batch {
    logp: Tensor,
    old: Tensor,
    adv: Tensor,
    valid: Tensor,
    entropy: Tensor,
}

fn batch() -> Batch {
    let _rng = crate::global_rng_lock();
    tch::manual_seed(7);
    let opts = (Kind::Double, Device::Cpu);
    let logp = -Tensor::rand([B, T], opts) * 6.0;
    let old = &logp + Tensor::randn([B, T], opts) * 0.2;
    let adv = (Tensor::randn([B, 1], opts) * 1.5)
        .expand([B, T], false)
        .contiguous();
    let lens = Tensor::randint_low(2, T + 1, [B, 1], (Kind::Int64, Device::Cpu));
    let valid = Tensor::arange(T, (Kind::Int64, Device::Cpu))
        .view([1, T])
        .lt_tensor(&lens);
    let entropy = Tensor::rand([B, T], opts);
    Batch {
        logp,
        old,
        adv,
        valid,
        entropy,
    }
}

/// The accumulated gradient of the whole mini-batch processed in micro-batches of `m`
/// rows; the policy's log-probabilities are the parameters themselves.
fn accumulated_grad(b: &Batch, cfg: &LossConfig, m: i64) -> (Tensor, f64) {
    let control = cfg.control.build().unwrap();
    let param = b.logp.detach().set_requires_grad(true);
    let ent_param = b.entropy.detach().set_requires_grad(true);
    let scope = TokenTensors {
        logp: &param,
        old_logp: &b.old,
        adv: &b.adv,
        valid: &b.valid,
    };
    let n_micro = (B / m) as usize;
    let plan = plan_mini_batch(cfg, control.as_ref(), &scope, n_micro, 11);
    let mut selected = 0.0;
    for i in 0..n_micro as i64 {
        let rows = (i * m, m);
        let logp = param.narrow(0, rows.0, m);
        let old = b.old.narrow(0, rows.0, m);
        let adv = b.adv.narrow(0, rows.0, m);
        let valid = b.valid.narrow(0, rows.0, m);
        let ent = ent_param.narrow(0, rows.0, m);
        let t = TokenTensors {
            logp: &logp,
            old_logp: &old,
            adv: &adv,
            valid: &valid,
        };
        let micro = micro_batch_loss(
            cfg,
            control.as_ref(),
            &plan,
            i as usize,
            &Tensor::arange_start(rows.0, rows.0 + m, (tch::Kind::Int64, tch::Device::Cpu)),
            &t,
            Some(&ent),
            None,
            None,
        );
        micro.loss.backward();
        selected += micro.sums.selected;
    }
    (Tensor::cat(&[param.grad(), ent_param.grad()], 0), selected)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn controls() -> Vec<ControlConfig> {
    vec![
        ControlConfig::None,
        ControlConfig::ClipCov {
            ratio: 0.05.into(),
            lb: 0.5,
            ub: 5.0,
        },
        ControlConfig::KlCov {
            ratio: 0.05.into(),
            beta: 1.0,
        },
        ControlConfig::EntropyBonus { coef: 0.1 },
    ]
}

#[test]
fn mini_batch_scope_update_does_not_depend_on_micro_batch_size() {
    let b = batch();
    for control in controls() {
        for agg in [
            LossAgg::TokenMean,
            LossAgg::SeqMeanTokenSum,
            LossAgg::SeqMeanTokenMean,
            LossAgg::SeqMeanTokenSumNorm,
        ] {
            let cfg = LossConfig {
                control: control.clone(),
                agg,
                scope: SelectionScope::MiniBatch,
                ..LossConfig::default()
            };
            let (full, sel_full) = accumulated_grad(&b, &cfg, B);
            assert!(full.abs().sum(Kind::Double).double_value(&[]) > 0.0);
            for m in [1, 2, 4] {
                let (g, sel) = accumulated_grad(&b, &cfg, m);
                let d = max_diff(&g, &full);
                assert!(d < 1e-14, "{control:?} {agg:?} micro {m}: max |diff| {d}");
                assert_eq!(sel, sel_full);
            }
        }
    }
}

#[test]
fn micro_batch_scope_documents_the_difference() {
    let b = batch();
    for control in [
        ControlConfig::ClipCov {
            ratio: 0.05.into(),
            lb: 0.5,
            ub: 5.0,
        },
        ControlConfig::KlCov {
            ratio: 0.05.into(),
            beta: 1.0,
        },
    ] {
        let cfg = LossConfig {
            control: control.clone(),
            scope: SelectionScope::MicroBatch,
            ..LossConfig::default()
        };
        let (g1, s1) = accumulated_grad(&b, &cfg, 1);
        let (g4, s4) = accumulated_grad(&b, &cfg, 4);
        let (g8, s8) = accumulated_grad(&b, &cfg, 8);
        let d14 = max_diff(&g1, &g4);
        let d18 = max_diff(&g1, &g8);
        println!(
            "micro_batch scope, {control:?}: selected tokens {s1} / {s4} / {s8} for micro 1 / 4 / 8; \
             max |grad diff| micro1 vs micro4 {d14:.3e}, vs whole {d18:.3e}"
        );
        // Means, N and the normaliser are per micro-batch: with one sequence per
        // micro-batch the advantage is constant, every covariance is 0, Clip-Cov finds
        // no candidate and KL-Cov picks one arbitrary token per sequence. The selection
        // and the update change with the micro-batch size.
        assert_ne!(s1, s8, "{control:?}");
        assert!(d18 > 1e-6, "{control:?}: {d18}");
    }
}
