//! The `cov_overhead` loss ratios measured interleaved: GRPO, Clip-Cov and KL-Cov loss
//! forward + backward on the bench's 64x1024 and 256x2048 inputs, each method timed in
//! turn (rotating the order every round), medians per method. On a noisy machine this
//! gives steadier ratios than criterion's one-bench-after-another runs.
//!
//! With `--kernels`, times the fused CPU selection kernels alone instead.
//!
//! `cargo run --example loss_overhead_interleaved -- [ROUNDS] [--kernels]` (default 300
//! rounds at 64x1024, a quarter of that at 256x2048).

use cove::loss::control::{paper_controls, selection_count};
use cove::loss::cpu::{clip_cov_choose, kl_cov_top};
use cove::loss::{LossConfig, PpoClip, TokenTensors, single_batch_loss};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The `cov_overhead` bench's inputs: logp, old logp, per-row advantages, all valid.
fn inputs(b: i64, t: i64) -> [Tensor; 4] {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let logp = -Tensor::rand([b, t], opts) * 6.0;
    let old = &logp + Tensor::randn([b, t], opts) * 0.25;
    let adv = (Tensor::randn([b, 1], opts) * 1.5)
        .expand([b, t], false)
        .contiguous();
    let valid = Tensor::ones([b, t], (Kind::Bool, Device::Cpu));
    [logp, old, adv, valid]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn losses(rounds: usize) {
    let methods = paper_controls();
    for (b, t) in [(64i64, 1024i64), (256, 2048)] {
        let [logp0, old, adv, valid] = inputs(b, t);
        let cfgs: Vec<LossConfig> = methods
            .iter()
            .map(|(_, control)| LossConfig {
                control: control.clone(),
                ..LossConfig::default()
            })
            .collect();
        let controls: Vec<_> = cfgs.iter().map(|c| c.control.build().unwrap()).collect();
        let mut times = vec![Vec::new(); methods.len()];
        let rounds = if b == 64 { rounds } else { rounds / 4 };
        let warm_up = 5;
        for round in 0..rounds + warm_up {
            for k in 0..methods.len() {
                let m = (k + round) % methods.len();
                let start = Instant::now();
                let logp = logp0.detach().set_requires_grad(true);
                let tokens = TokenTensors {
                    logp: &logp,
                    old_logp: &old,
                    adv: &adv,
                    valid: &valid,
                };
                let out = single_batch_loss(&cfgs[m], controls[m].as_ref(), &tokens, None, 3);
                out.loss.backward();
                let _ = logp.grad().double_value(&[0, 0]);
                if round >= warm_up {
                    times[m].push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let line: Vec<String> = methods
            .iter()
            .zip(&medians)
            .map(|((name, _), ms)| format!("{name} {ms:.3} ms ({:.3}x)", ms / medians[0]))
            .collect();
        println!("{b}x{t}, {rounds} rounds: {}", line.join(", "));
    }
}

fn kernels() {
    let clip = PpoClip::default();
    for (b, t) in [(64i64, 1024i64), (256, 2048)] {
        let [logp, old, adv, valid] = inputs(b, t);
        let (mut clip_ms, mut kl_ms) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let start = Instant::now();
            let count = |n| selection_count(2e-4, n);
            let chosen =
                clip_cov_choose::<f32>(&logp, &old, &adv, &valid, 1.0, 5.0, &clip, count, 3);
            clip_ms.push(start.elapsed().as_secs_f64() * 1e3);
            let start = Instant::now();
            let top = kl_cov_top::<f32>(&logp, &adv, &valid, |n| selection_count(2e-3, n));
            kl_ms.push(start.elapsed().as_secs_f64() * 1e3);
            drop((chosen, top));
        }
        println!(
            "{b}x{t}: Clip-Cov selection kernel {:.3} ms, KL-Cov {:.3} ms (medians of 50)",
            median(clip_ms),
            median(kl_ms)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--kernels") {
        kernels();
        return;
    }
    let rounds = args.iter().find_map(|a| a.parse().ok()).unwrap_or(300);
    losses(rounds);
}
