//! GPU check: the things only a CUDA machine can show, in one run.
//!
//! 1. CUDA is available through the libtorch this binary links.
//! 2. Forward parity: the tiny policy's response log-probs and entropies on CPU and CUDA
//!    (same weights), max |Δ|.
//! 3. Loss parity: GRPO, Clip-Cov and KL-Cov loss, selected-token set and gradient on CPU
//!    and CUDA for the same inputs (KL-Cov selects on the tensors' own device).
//! 4. `cov_overhead` on CUDA: loss forward + backward of each method at 64x1024 and
//!    256x2048 tokens, median of timed repetitions after a warm-up.
//! 5. Today's trainer on CUDA: two `train-math` steps on a SmolLM2-135M-shaped folder
//!    (the real tokenizer, chat template and configuration; seeded random weights),
//!    bf16-mixed, packed micro-batches, Clip-Cov, 32 prompts x 8 responses of up to 256
//!    tokens, four optimizer mini-batches per step.
//! 6. Update throughput and peak device memory of a Qwen2.5-0.5B-shaped model: one
//!    Clip-Cov update of 64 x 1,024 response tokens per memory switch (f32; bf16-mixed;
//!    bf16-mixed with activation checkpointing and recomputed logits), each in its own
//!    process.
//! 7. Rollout throughput on CUDA: the tiny policy (16 prompts x 8 samples x 32 tokens)
//!    and a random-weight model of Qwen2.5-0.5B's body (24 layers, width 896; the tiny
//!    tokenizer's vocabulary), 64 prompts x 8 samples x 128 tokens.
//!
//! `cargo run --release --example gpu_check -- RUN_DIR SMOLLM2_SHAPE_DIR`, where
//! `SMOLLM2_SHAPE_DIR` holds the converted SmolLM2 folder's files except
//! `model.safetensors` (`scripts/gpu_check.sh` builds the binary against the GPU
//! machine's libtorch, gathers that folder and runs it there); exits 1 if a check failed.

use cove::cli::train::{TrainArgs, run_training};
use cove::config::TrainConfig;
use cove::loss::{ControlConfig, LossConfig, TokenTensors, single_batch_loss};
use cove::model::config::Qwen2Config;
use cove::model::qwen2::Qwen2;
use cove::model::tiny::TinyConfig;
use cove::model::weights::RandomInit;
use cove::model::{
    CausalLm, LogprobOptions, Message, PackedItem, Policy, packed_response_logprobs,
    response_logprobs,
};
use cove::optim::Precision;
use cove::recipe::{MATH_DEFAULTS, MathRun};
use cove::rollout::{FinishReason, SamplingConfig, Trajectory, generate};
use cove::trainer::{Example, Trainer};
use cove::verifiers::{Reward, Score};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
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

/// Writes a SmolLM2-135M-shaped folder with random weights into `out`: the tokenizer,
/// chat template and `config.json` of the real model (from `shape`, which holds every
/// file of the converted folder except the weights: they are 538 MB, over what the GPU
/// machine can be sent) and a seeded random `model.safetensors` in f32.
fn smollm2_shaped(shape: &Path, out: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(shape).map_err(|e| format!("{}: {e}", shape.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), out.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    let config = Qwen2Config::from_file(&out.join("config.json")).map_err(|e| e.to_string())?;
    let model = Qwen2::new(
        &config,
        &mut RandomInit::new(0, 0.02),
        Kind::Float,
        Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    model
        .var_store()
        .save(out.join("model.safetensors"))
        .map_err(|e| e.to_string())?;
    Ok(out.to_path_buf())
}

/// Two `train-math` steps on CUDA as a GPU user would run them: bf16-mixed, packed
/// micro-batches (16,384-token budget), Clip-Cov, 32 prompts x 8 responses of up to 256
/// tokens, four optimizer mini-batches per step, on the SmolLM2-shaped folder.
fn training_step(model_dir: PathBuf, run_dir: PathBuf) -> CheckResult {
    let model_path = toml::Value::String(model_dir.display().to_string());
    let args = TrainArgs {
        config: None,
        sets: vec![
            "model.device=\"cuda\"".into(),
            format!("model.path={model_path}"),
            "data.eval_limit=32".into(),
            "trainer.precision=\"bf16-mixed\"".into(),
            "trainer.max_tokens_per_micro_batch=16384".into(),
            "trainer.prompts_per_step=32".into(),
            "trainer.group_size=8".into(),
            "trainer.mini_batch_size=64".into(),
            "trainer.micro_batch_size=64".into(),
            "trainer.logprob_batch_size=256".into(),
            "trainer.rollout.max_new_tokens=256".into(),
            "trainer.loss.clip={eps_low=1.0,eps_high=1.0}".into(),
            "trainer.loss.control={kind=\"clip-cov\",ratio=2e-4,lb=1.0,ub=5.0}".into(),
        ],
        out: Some(run_dir.clone()),
        steps: Some(2),
        train: None,
        quiet: true,
        resume: false,
    };
    let start = Instant::now();
    let text = run_training(MATH_DEFAULTS, &args, MathRun::build).map_err(|e| e.to_string())?;
    print!(
        "train-math on cuda (SmolLM2-shaped, random weights, bf16-mixed, packed), 2 steps in {:.1} s: {text}",
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

/// Cases of the update measurement: name, precision, activation checkpointing,
/// recomputed logits.
const UPDATE_CASES: [(&str, Precision, bool, bool); 3] = [
    ("f32", Precision::F32, false, false),
    ("bf16-mixed", Precision::Bf16Mixed, false, false),
    (
        "bf16-mixed+checkpointing+recompute-logits",
        Precision::Bf16Mixed,
        true,
        true,
    ),
];

/// Responses and response tokens of one measured update.
const UPDATE_RESPONSES: usize = 64;
const UPDATE_TOKENS: usize = 1024;

/// A reward the update measurement never calls (its trajectories come scored).
struct Unused;

impl Reward for Unused {
    type Task = ();
    fn name(&self) -> &str {
        "unused"
    }
    fn score(&self, _: &(), _: &str) -> Score {
        Score {
            reward: 0.0,
            correct: false,
            details: String::new(),
        }
    }
}

/// One update case in this process (run by [`update_memory`] as a child): a GRPO step
/// with Clip-Cov over 64 responses of 1,024 tokens to one 32-token prompt, one optimizer
/// mini-batch, packed micro-batches of at most 16,384 tokens. Old log-probs are computed
/// first, as a rollout would supply them. The update runs twice; the second is timed.
/// Prints `RESULT <seconds> <loss> <grad_norm>`.
fn update_case(case: &str) -> CheckResult {
    let &(_, precision, checkpointing, recompute) = UPDATE_CASES
        .iter()
        .find(|c| c.0 == case)
        .ok_or_else(|| format!("unknown update case {case}"))?;
    let policy =
        cove::model::tiny::qwen2_5_0_5b_shaped(1, Device::Cuda(0)).map_err(|e| e.to_string())?;
    let vocab = policy.model.vocab_size();
    let mut cfg = TrainConfig {
        prompts_per_step: 1,
        group_size: UPDATE_RESPONSES,
        mini_batch_size: UPDATE_RESPONSES,
        micro_batch_size: UPDATE_RESPONSES,
        max_tokens_per_micro_batch: Some(16_384),
        chat_template: false,
        reuse_rollout_logprobs: true,
        activation_checkpointing: checkpointing,
        recompute_logits: recompute,
        precision,
        out_dir: std::env::temp_dir().join("cove-gpu-check-update"),
        ..TrainConfig::default()
    };
    cfg.loss.control = ControlConfig::ClipCov {
        ratio: 2e-4.into(),
        lb: 1.0,
        ub: 5.0,
    };
    let data = vec![Example {
        prompt: "x".repeat(32).into(),
        task: (),
    }];
    let mut trainer = Trainer::new(cfg, policy, Unused, data).map_err(|e| e.to_string())?;
    let prompt = trainer.prompt_ids(0).to_vec();
    let responses: Vec<Vec<i64>> = (0..UPDATE_RESPONSES as i64)
        .map(|r| {
            (0..UPDATE_TOKENS as i64)
                .map(|j| (r * 1_000_003 + j * 7919 + 11) % vocab)
                .collect()
        })
        .collect();
    let mut trajectories = Vec::new();
    for chunk in responses.chunks(16) {
        let _no_grad = tch::no_grad_guard();
        let out = packed_response_logprobs(
            trainer.policy().model.as_ref(),
            &[PackedItem {
                prompt: &prompt,
                responses: chunk.iter().map(Vec::as_slice).collect(),
            }],
            true,
            &LogprobOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        for (row, response) in chunk.iter().enumerate() {
            let i = trajectories.len();
            let tokens: Vec<i64> = prompt.iter().chain(response).copied().collect();
            let mut loss_mask = vec![false; prompt.len()];
            loss_mask.resize(tokens.len(), true);
            let to_vec = |t: &Tensor| {
                Vec::<f32>::try_from(
                    t.get(row as i64)
                        .to_kind(Kind::Float)
                        .to_device(Device::Cpu),
                )
                .map_err(|e| e.to_string())
            };
            trajectories.push(Trajectory {
                task: 0,
                group: 0,
                prompt_len: prompt.len(),
                tokens,
                loss_mask,
                logprobs: Some(to_vec(&out.logprobs)?),
                entropies: Some(to_vec(&out.entropies)?),
                policy_version: 0,
                text: String::new(),
                score: Some(Score {
                    reward: (i % 2) as f64,
                    correct: i % 2 == 1,
                    details: String::new(),
                }),
                finish: FinishReason::Length,
                episode: None,
            });
        }
    }
    trainer.learn(&trajectories).map_err(|e| e.to_string())?;
    tch::Cuda::synchronize(0);
    let start = Instant::now();
    let metrics = trainer.learn(&trajectories).map_err(|e| e.to_string())?;
    tch::Cuda::synchronize(0);
    let secs = start.elapsed().as_secs_f64();
    println!("RESULT {secs} {} {}", metrics.loss, metrics.grad_norm);
    Ok(())
}

/// Device memory in use now, MiB (nvidia-smi).
fn memory_used_mib() -> Result<u64, String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .map_err(|e| format!("nvidia-smi: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("nvidia-smi memory.used: {e}"))
}

/// Update throughput and peak device memory of a Qwen2.5-0.5B-shaped model per memory
/// switch. Each case runs in its own process; nvidia-smi samples the device's memory in
/// use every 20 ms while it runs, and the peak less what was in use before it started
/// is the case's peak (its CUDA context included, about 0.5 GiB).
fn update_memory() -> CheckResult {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let tokens = (UPDATE_RESPONSES * UPDATE_TOKENS) as f64;
    for (case, ..) in UPDATE_CASES {
        let before = memory_used_mib()?;
        let mut sampler = Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "20",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nvidia-smi: {e}"))?;
        let stdout = sampler.stdout.take().expect("piped");
        let peak = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        });
        let out = Command::new(&exe)
            .args(["--update-case", case])
            .output()
            .map_err(|e| e.to_string())?;
        sampler.kill().map_err(|e| e.to_string())?;
        sampler.wait().map_err(|e| e.to_string())?;
        let peak = peak.join().map_err(|_| "sampler thread panicked")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(result) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            return Err(format!(
                "{case}: no result\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        };
        let fields: Vec<f64> = result
            .split(' ')
            .map(|v| v.parse().map_err(|e| format!("{case}: {v}: {e}")))
            .collect::<Result<_, _>>()?;
        println!(
            "update qwen2.5-0.5b-shaped {UPDATE_RESPONSES}x{UPDATE_TOKENS} {case}: {:.2} s, {:.0} tokens/s, \
             peak {:.2} GiB (loss {:.4}, grad norm {:.3})",
            fields[0],
            tokens / fields[0],
            peak.saturating_sub(before) as f64 / 1024.0,
            fields[1],
            fields[2]
        );
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
    cove::reproducible::strict_cpu_math();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, case] = args.as_slice()
        && flag == "--update-case"
    {
        return match update_case(case) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{case}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let [run_dir, shape_dir] = args.as_slice() else {
        eprintln!("usage: gpu_check RUN_DIR SMOLLM2_SHAPE_DIR");
        return ExitCode::FAILURE;
    };
    let (run_dir, shape_dir) = (PathBuf::from(run_dir), PathBuf::from(shape_dir));
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
        (
            "train-math step",
            Box::new(move || {
                let model = smollm2_shaped(&shape_dir, &run_dir.join("smollm2-shaped"))?;
                training_step(model, run_dir.join("train-math"))
            }),
        ),
        ("update memory", Box::new(update_memory)),
        ("rollout", Box::new(rollout_throughput)),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        let start = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("panicked".into()))
        {
            Ok(()) => println!("[ok  ] {name} ({:.1} s)", start.elapsed().as_secs_f64()),
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
