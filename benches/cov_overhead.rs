//! `cov_overhead`: what Clip-Cov and KL-Cov cost on top of the plain GRPO loss.
//!
//! - `loss/<B>x<T>/<method>`: loss forward + backward (selection, metric sums and
//!   normaliser included, exactly what the trainer runs per mini-batch) on float32
//!   `[B, T]` tensors, 64x1024 and 256x2048 tokens, CPU (or CUDA when available).
//! - `loss/<B>x<T>/<method>_selection_only`: the Clip-Cov / KL-Cov token selection
//!   alone (what the controls add before the loss).
//! - `tiny_step/<method>`: one optimizer step of the tiny policy on 16 fixed
//!   (prompt, response) pairs: training forward, loss, backward, AdamW.
//!
//! Target: Clip-Cov and KL-Cov within 1.10x of GRPO. Run:
//! `cargo bench --bench cov_overhead -- --warm-up-time 1 --measurement-time 5`

use cove::loss::{LossConfig, TokenTensors, micro_batch_loss, plan_mini_batch, single_batch_loss};
use cove::optim::{AdamW, OptimConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};

fn loss_benches(c: &mut Criterion) {
    let device = Device::cuda_if_available();
    for (b, t) in [(64i64, 1024i64), (256, 2048)] {
        tch::manual_seed(0);
        let opts = (Kind::Float, device);
        let logp0 = -Tensor::rand([b, t], opts) * 6.0;
        let old = &logp0 + Tensor::randn([b, t], opts) * 0.25;
        let adv = (Tensor::randn([b, 1], opts) * 1.5)
            .expand([b, t], false)
            .contiguous();
        let valid = Tensor::ones([b, t], (Kind::Bool, device));
        let mut group = c.benchmark_group(format!("loss/{b}x{t}"));
        for (name, control) in cove::loss::control::paper_controls() {
            let cfg = LossConfig {
                control,
                ..LossConfig::default()
            };
            let ctl = cfg.control.build().unwrap();
            group.bench_function(name, |bench| {
                bench.iter(|| {
                    let logp = logp0.detach().set_requires_grad(true);
                    let tokens = TokenTensors {
                        logp: &logp,
                        old_logp: &old,
                        adv: &adv,
                        valid: &valid,
                    };
                    let m = single_batch_loss(&cfg, ctl.as_ref(), &tokens, None, 3);
                    m.loss.backward();
                    logp.grad().double_value(&[0, 0])
                })
            });
            if ctl.selects() {
                group.bench_function(format!("{name}_selection_only"), |bench| {
                    let tokens = TokenTensors {
                        logp: &logp0,
                        old_logp: &old,
                        adv: &adv,
                        valid: &valid,
                    };
                    bench.iter(|| plan_mini_batch(&cfg, ctl.as_ref(), &tokens, 1, 3).selected)
                });
            }
        }
        group.finish();
    }
}

fn tiny_step_benches(c: &mut Criterion) {
    let device = Device::cuda_if_available();
    let policy = cove::model::tiny::policy(&Default::default(), 0, device).unwrap();
    let rows = 16usize;
    let prompt: Vec<i64> = (0..16).map(|i| 4 + i % 90).collect();
    let responses: Vec<Vec<i64>> = (0..rows)
        .map(|r| {
            (0..(32 + 2 * r as i64))
                .map(|i| 4 + (i * 7 + r as i64) % 90)
                .collect()
        })
        .collect();
    let pairs: Vec<(&[i64], &[i64])> = responses
        .iter()
        .map(|r| (prompt.as_slice(), r.as_slice()))
        .collect();
    let old = tch::no_grad(|| {
        cove::model::response_logprobs(
            policy.model.as_ref(),
            &pairs,
            policy.pad_token_id,
            &Default::default(),
        )
        .unwrap()
    });
    let width = old.logprobs.size()[1];
    let adv_vals: Vec<f32> = (0..rows)
        .map(|r| if r % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let adv = Tensor::from_slice(&adv_vals)
        .to_device(device)
        .view([rows as i64, 1])
        .expand([rows as i64, width], false)
        .contiguous();
    let valid = old.mask.gt(0.5);
    let mut group = c.benchmark_group("tiny_step");
    for (name, control) in cove::loss::control::paper_controls() {
        let cfg = LossConfig {
            control,
            ..LossConfig::default()
        };
        let ctl = cfg.control.build().unwrap();
        let mut opt = AdamW::new(
            policy.model.var_store(),
            OptimConfig {
                lr: 0.0,
                ..OptimConfig::default()
            },
        );
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let scope = TokenTensors {
                    logp: &old.logprobs,
                    old_logp: &old.logprobs,
                    adv: &adv,
                    valid: &valid,
                };
                let plan = plan_mini_batch(&cfg, ctl.as_ref(), &scope, 1, 3);
                let out = cove::model::response_logprobs(
                    policy.model.as_ref(),
                    &pairs,
                    policy.pad_token_id,
                    &Default::default(),
                )
                .unwrap();
                let tokens = TokenTensors {
                    logp: &out.logprobs,
                    old_logp: &old.logprobs,
                    adv: &adv,
                    valid: &valid,
                };
                let m = micro_batch_loss(
                    &cfg,
                    ctl.as_ref(),
                    &plan,
                    0,
                    &Tensor::arange(rows as i64, (tch::Kind::Int64, tch::Device::Cpu)),
                    &tokens,
                    Some(&out.entropies),
                    None,
                    None,
                );
                m.loss.backward();
                opt.clip_grad_norm();
                opt.step(0.0);
                opt.zero_grad();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = loss_benches, tiny_step_benches
}
criterion_main!(benches);
