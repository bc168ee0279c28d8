//! GPU check: the things only a CUDA machine can show, in one run.
//!
//! 1. CUDA is available through the libtorch this binary links.
//! 2. Forward parity: the tiny policy's response log-probs and entropies on CPU and CUDA
//!    (same weights), max |Δ|.
//! 3. Loss parity: GRPO, Clip-Cov and KL-Cov loss, selected-token set and gradient on CPU
//!    and CUDA for the same inputs (KL-Cov selects on the tensors' own device).
//! 4. `cov_overhead` on CUDA: loss forward + backward of each method at 64x1024 and
//!    256x2048 tokens, median of timed repetitions after a warm-up.
//! 5. A training step: one GRPO step of `train-math` (tiny policy) with
//!    `model.device=cuda`.
//! 6. Rollout throughput on CUDA: the tiny policy (16 prompts x 8 samples x 32 tokens)
//!    and a random-weight model of Qwen2.5-0.5B's body (24 layers, width 896; the tiny
//!    tokenizer's vocabulary), 64 prompts x 8 samples x 128 tokens.
//!
//! `cargo run --example gpu_check -- [RUN_DIR]`; exits 1 on the first failed check.

use cove::cli::train::{TrainArgs, run_training};
use cove::loss::{LossConfig, TokenTensors, single_batch_loss};
use cove::model::tiny::TinyConfig;
use cove::model::{LogprobOptions, Message, Policy, response_logprobs};
use cove::recipe::{MATH_DEFAULTS, MathRun};
use cove::rollout::{SamplingConfig, generate};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

type CheckResult = Result<(), String>;

/// A named check, run once.
type Check = (&'static str, Box<dyn FnOnce() -> CheckResult>);

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu).to_kind(Kind::Double)
        - b.to_device(Device::Cpu).to_kind(Kind::Double))
    .abs()
    .max()
    .double_value(&[])
}

fn prompts(policy: &Policy, n: usize) -> Vec<Vec<i64>> {
    (0..n)
        .map(|i| {
            let q = format!("What is {}+{}?", 7 * i + 3, 130 - 11 * (i % 12));
            let text = policy
                .apply_chat_template(&[Message::user(&q)], true)
                .expect("chat template");
            policy.encode(&text).expect("encode")
        })
        .collect()
}

fn forward_parity() -> CheckResult {
    let cpu = cove::model::tiny::policy(&TinyConfig::default(), 0, Device::Cpu)
        .map_err(|e| e.to_string())?;
    let gpu = cove::model::tiny::policy(&TinyConfig::default(), 0, Device::Cuda(0))
        .map_err(|e| e.to_string())?;
    let ps = prompts(&cpu, 8);
    let responses: Vec<Vec<i64>> = (0..8)
        .map(|r| (0..(20 + 3 * r)).map(|i| 4 + (i * 7 + r) % 90).collect())
        .collect();
    let pairs: Vec<(&[i64], &[i64])> = ps
        .iter()
        .zip(&responses)
        .map(|(p, r)| (p.as_slice(), r.as_slice()))
        .collect();
    let opts = LogprobOptions::default();
    let run = |p: &Policy| {
        tch::no_grad(|| response_logprobs(p.model.as_ref(), &pairs, p.pad_token_id, &opts))
            .map(|out| (out.logprobs, out.entropies, out.mask))
            .map_err(|e| e.to_string())
    };
    let (a, b) = (run(&cpu)?, run(&gpu)?);
    let dl = max_abs_diff(&(&a.0 * &a.2), &(&b.0 * &b.2));
    let dh = max_abs_diff(&(&a.1 * &a.2), &(&b.1 * &b.2));
    println!("forward parity (tiny, f32, 8 rows): max|dlogp| {dl:.3e}, max|dH| {dh:.3e}");
    if dl > 1e-4 || dh > 1e-4 {
        return Err(format!("CPU and CUDA forward differ: {dl:.3e} / {dh:.3e}"));
    }
    Ok(())
}

struct Inputs {
    logp: Tensor,
    old: Tensor,
    adv: Tensor,
    valid: Tensor,
}

fn inputs(b: i64, t: i64, device: Device) -> Inputs {
    tch::manual_seed(0);
    let cpu = (Kind::Float, Device::Cpu);
    let logp = -Tensor::rand([b, t], cpu) * 6.0;
    let old = &logp + Tensor::randn([b, t], cpu) * 0.25;
    let adv = (Tensor::randn([b, 1], cpu) * 1.5)
        .expand([b, t], false)
        .contiguous();
    let lens = Tensor::randint_low(t / 4, t + 1, [b, 1], (Kind::Int64, Device::Cpu));
    let valid = Tensor::arange(t, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&lens);
    Inputs {
        logp: logp.to_device(device),
        old: old.to_device(device),
        adv: adv.to_device(device),
        valid: valid.to_device(device),
    }
}

/// Loss, selected mask and gradient of `method` on `x`.
fn loss_of(cfg: &LossConfig, x: &Inputs) -> (f64, Tensor, Tensor) {
    let ctl = cfg.control.build().expect("control");
    let logp = x.logp.detach().set_requires_grad(true);
    let tokens = TokenTensors {
        logp: &logp,
        old_logp: &x.old,
        adv: &x.adv,
        valid: &x.valid,
    };
    let m = single_batch_loss(cfg, ctl.as_ref(), &tokens, None, 3);
    m.loss.backward();
    (m.loss.double_value(&[]), m.selected, logp.grad())
}

fn loss_parity() -> CheckResult {
    let (cpu, gpu) = (
        inputs(64, 1024, Device::Cpu),
        inputs(64, 1024, Device::Cuda(0)),
    );
    for (name, control) in cove::loss::control::paper_controls() {
        let cfg = LossConfig {
            control,
            ..LossConfig::default()
        };
        let (la, sa, ga) = loss_of(&cfg, &cpu);
        let (lb, sb, gb) = loss_of(&cfg, &gpu);
        let sel_a = sa.sum(Kind::Int64).int64_value(&[]);
        let sel_diff = sa
            .logical_xor(&sb.to_device(Device::Cpu))
            .sum(Kind::Int64)
            .int64_value(&[]);
        let dg = max_abs_diff(&ga, &gb);
        println!(
            "loss parity {name:<8} (64x1024): loss cpu {la:.9} cuda {lb:.9} |d| {:.2e}; selected {sel_a}, differing {sel_diff}; max|dgrad| {dg:.2e}",
            (la - lb).abs()
        );
        if sel_diff != 0 || (la - lb).abs() > 1e-5 * la.abs().max(1.0) || dg > 1e-6 {
            return Err(format!("{name}: CPU and CUDA loss differ"));
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cov_overhead_cuda() -> CheckResult {
    let device = Device::Cuda(0);
    for (b, t) in [(64i64, 1024i64), (256, 2048)] {
        let x = inputs(b, t, device);
        let mut base = 0.0;
        for (name, control) in cove::loss::control::paper_controls() {
            let cfg = LossConfig {
                control,
                ..LossConfig::default()
            };
            let mut times = Vec::new();
            for rep in 0..60 {
                tch::Cuda::synchronize(0);
                let start = Instant::now();
                let (_, _, g) = loss_of(&cfg, &x);
                let _ = g.double_value(&[0, 0]);
                tch::Cuda::synchronize(0);
                if rep >= 10 {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            let ms = median(times);
            if name == "grpo" {
                base = ms;
            }
            println!(
                "cov_overhead cuda {b}x{t} {name:<8} {ms:.3} ms ({:.2}x GRPO)",
                ms / base
            );
        }
    }
    Ok(())
}

fn training_step(run_dir: PathBuf) -> CheckResult {
    let args = TrainArgs {
        config: None,
        // The tiny policy: the GPU machine has no converted SmolLM2 folder.
        sets: vec![
            "model.device=\"cuda\"".into(),
            "model.path=\"tiny\"".into(),
            "data.eval_limit=8".into(),
        ],
        out: Some(run_dir.clone()),
        steps: Some(2),
        train: None,
        quiet: true,
    };
    let start = Instant::now();
    let text = run_training(MATH_DEFAULTS, &args, MathRun::build).map_err(|e| e.to_string())?;
    print!(
        "train-math on cuda, 2 steps in {:.1} s: {text}",
        start.elapsed().as_secs_f64()
    );
    let metrics =
        std::fs::read_to_string(run_dir.join("metrics.jsonl")).map_err(|e| e.to_string())?;
    for line in metrics.lines() {
        println!("  metrics: {line}");
    }
    if metrics.lines().count() != 2 {
        return Err("train-math did not write two metric lines".into());
    }
    Ok(())
}

fn rollout_throughput() -> CheckResult {
    let body = TinyConfig {
        hidden_size: 896,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        intermediate_size: 4864,
        max_position_embeddings: 1024,
    };
    for (label, config, n_prompts, n, new_tokens) in [
        (
            "tiny 16x8x32",
            TinyConfig::default(),
            16usize,
            8usize,
            32usize,
        ),
        ("qwen2.5-0.5b-body 64x8x128", body, 64, 8, 128),
    ] {
        let mut policy =
            cove::model::tiny::policy(&config, 0, Device::Cuda(0)).map_err(|e| e.to_string())?;
        policy.eos_token_ids.clear();
        let ps = prompts(&policy, n_prompts);
        let cfg = SamplingConfig {
            n,
            max_new_tokens: new_tokens,
            seed: 1,
            ..Default::default()
        };
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            tch::Cuda::synchronize(0);
            let start = Instant::now();
            let out = generate(&policy, &ps, &cfg).map_err(|e| e.to_string())?;
            tch::Cuda::synchronize(0);
            let tokens: usize = out.iter().map(|s| s.token_ids.len()).sum();
            if tokens != n_prompts * n * new_tokens {
                return Err(format!("{label}: {tokens} tokens generated"));
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let tokens = (n_prompts * n * new_tokens) as f64;
        println!(
            "rollout cuda {label}: best of 3 {:.1} ms, {:.0} tokens/s",
            best * 1e3,
            tokens / best
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let run_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cove-gpu-check"));
    println!("libtorch: {}", cove::doctor::LIBTORCH_LIB_DIR);
    if !tch::Cuda::is_available() {
        println!("FAIL cuda: not available");
        return ExitCode::FAILURE;
    }
    println!("cuda: available, {} device(s)", tch::Cuda::device_count());
    let checks: Vec<Check> = vec![
        ("forward parity", Box::new(forward_parity)),
        ("loss parity", Box::new(loss_parity)),
        ("cov_overhead", Box::new(cov_overhead_cuda)),
        ("training step", Box::new(move || training_step(run_dir))),
        ("rollout", Box::new(rollout_throughput)),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("panicked".into()))
        {
            Ok(()) => println!("[ok  ] {name}"),
            Err(e) => {
                println!("[FAIL] {name}: {e}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
