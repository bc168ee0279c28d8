//! Peak resident memory and update throughput of one GRPO update (trainer only: no
//! rollout) at 8 × 1,024 response tokens, for each memory switch on its own and the
//! best combination, on two models:
//!
//! - `smollm2`: SmolLM2-135M-Instruct (installed by `scripts/setup.sh`), 30 layers,
//!   width 576, vocabulary 49,152;
//! - `qwen0.5b`: a randomly initialised model of Qwen2.5-0.5B's shape (24 layers, width
//!   896, MLP 4,864, 14 query / 2 key-value heads, q/k/v bias, tied embeddings,
//!   vocabulary 151,936).
//!
//! One group of 8 responses of 1,024 random tokens to a 32-token prompt, one optimizer
//! mini-batch of the 8, one response per micro-batch (gradient accumulation over 8),
//! GRPO, AdamW. The old log-probs are computed before the timed update (as the
//! rollout's would be) so the update is forward + backward + optimizer step only.
//! Each case runs in its own process, so its peak resident set (`VmHWM`, reset just
//! before the update) is its own; it includes the weights, gradients and optimizer
//! state that live through the update, and what the process held before it (libtorch,
//! the weights, the heap glibc kept from the old-log-prob pass: the `RSS before` column).
//!
//! ```text
//! cargo bench --profile dev --bench train_memory -- --models smollm2,qwen0.5b
//! cargo bench --profile dev --bench train_memory -- --models smollm2 --cases plain,recompute-logits --tokens 256
//! ```
//! Cases: `plain` (f32, every weight trained, logits and activations kept),
//! `checkpointing`, `recompute-logits`, `bf16-mixed`, `lora-r16` (LoRA r = 16, alpha 32,
//! every projection) and `best` (LoRA r = 16 + checkpointing + recomputed logits). Prints
//! a Markdown table.

use std::process::Command;
use std::time::Instant;

use cove::config::TrainConfig;
use cove::model::{LogprobOptions, PackedItem, Policy, packed_response_logprobs};
use cove::optim::Precision;
use cove::rollout::FinishReason;
use cove::rollout::Trajectory;
use cove::trainer::{Example, Trainer};
use cove::verifiers::{Reward, Score};
use tch::Device;

const CHILD_FLAG: &str = "--child";
const PROMPT_TOKENS: usize = 32;
const RESPONSES: usize = 8;

/// A reward the benchmark never calls (its batch comes scored).
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

/// The memory switches of one case; returns whether it trains LoRA adapters (r = 16,
/// alpha = 32, every projection) instead of every weight.
fn configure(case: &str, cfg: &mut TrainConfig) -> bool {
    cfg.recompute_logits = false;
    match case {
        "plain" => false,
        "checkpointing" => {
            cfg.activation_checkpointing = true;
            false
        }
        "recompute-logits" => {
            cfg.recompute_logits = true;
            false
        }
        "bf16-mixed" => {
            cfg.precision = Precision::Bf16Mixed;
            false
        }
        "lora-r16" => true,
        "best" => {
            cfg.activation_checkpointing = true;
            cfg.recompute_logits = true;
            true
        }
        other => panic!("unknown case {other}"),
    }
}

/// The policy of `model` (see the module docs).
fn policy(model: &str) -> Policy {
    match model {
        "smollm2" => {
            let source = cove::model::named::resolve(cove::model::named::DEFAULT_MODEL)
                .unwrap_or_else(|e| panic!("{e}"));
            let cove::model::named::ModelSource::Folder(dir) = source else {
                unreachable!("the default model is a folder")
            };
            Policy::from_hf_dir(&dir, cove::model::Dtype::F32, Device::Cpu).unwrap()
        }
        "qwen0.5b" => cove::model::tiny::qwen2_5_0_5b_shaped(1, Device::Cpu).unwrap(),
        other => panic!("unknown model {other} (smollm2, qwen0.5b)"),
    }
}

/// `N cores, CPU model` of this machine.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// A `/proc/self/status` field in bytes: `VmHWM` (peak resident set since the last
/// reset) or `VmRSS` (resident now).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    kb * 1024
}

/// One case in this process: prints `RESULT <peak bytes> <seconds> <resident bytes
/// before the update>`.
fn child(model: &str, case: &str, tokens: usize) {
    let mut policy = policy(model);
    let vocab = policy.model.vocab_size();
    let mut cfg = TrainConfig {
        prompts_per_step: 1,
        group_size: RESPONSES,
        mini_batch_size: RESPONSES,
        micro_batch_size: 1,
        chat_template: false,
        reuse_rollout_logprobs: true,
        out_dir: std::env::temp_dir().join("cove-bench-train-memory"),
        ..TrainConfig::default()
    };
    cfg.loss.control = cove::loss::ControlConfig::None;
    if configure(case, &mut cfg) {
        let lora = cove::model::lora::LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..Default::default()
        };
        policy.model.attach_lora(&lora, model).unwrap();
    }
    let data = vec![Example {
        prompt: "x".repeat(PROMPT_TOKENS).into(),
        task: (),
    }];
    let mut trainer = Trainer::new(cfg, policy, Unused, data).unwrap();
    let prompt = trainer.prompt_ids(0).to_vec();
    // Random responses; their old log-probs and entropies from the policy itself.
    let responses: Vec<Vec<i64>> = (0..RESPONSES as i64)
        .map(|r| {
            (0..tokens as i64)
                .map(|j| (r * 1_000_003 + j * 7919 + 11) % vocab)
                .collect()
        })
        .collect();
    let mut rows = Vec::new();
    for (i, response) in responses.iter().enumerate() {
        let _no_grad = tch::no_grad_guard();
        let out = packed_response_logprobs(
            trainer.policy().model.as_ref(),
            &[PackedItem {
                prompt: &prompt,
                responses: vec![response],
            }],
            true,
            &LogprobOptions::default(),
        )
        .unwrap();
        let tokens: Vec<i64> = prompt.iter().chain(response).copied().collect();
        let mut loss_mask = vec![false; prompt.len()];
        loss_mask.resize(tokens.len(), true);
        rows.push(Trajectory {
            task: 0,
            group: 0,
            prompt_len: prompt.len(),
            tokens,
            loss_mask,
            logprobs: Some(Vec::<f32>::try_from(out.logprobs.squeeze_dim(0)).unwrap()),
            entropies: Some(Vec::<f32>::try_from(out.entropies.squeeze_dim(0)).unwrap()),
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
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS");
    let t = Instant::now();
    trainer.learn(&rows).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("RESULT {} {secs} {before}", status_bytes("VmHWM"));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_FLAG) {
        child(&args[i + 1], &args[i + 2], args[i + 3].parse().unwrap());
        return;
    }
    let mut models = vec!["smollm2".to_string(), "qwen0.5b".to_string()];
    let mut cases: Vec<String> = [
        "plain",
        "checkpointing",
        "recompute-logits",
        "bf16-mixed",
        "best",
    ]
    .map(String::from)
    .to_vec();
    let mut tokens = 1024usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut list = || -> Vec<String> {
            it.next()
                .unwrap_or_else(|| panic!("{arg} needs a value"))
                .split(',')
                .map(String::from)
                .collect()
        };
        match arg.as_str() {
            "--bench" => {}
            "--models" => models = list(),
            "--cases" => cases = list(),
            "--tokens" => tokens = list()[0].parse().expect("--tokens N"),
            other => panic!("unknown argument {other}"),
        }
    }
    println!(
        "one GRPO update, {RESPONSES} x {tokens} response tokens, one response per micro-batch, \
         on {}",
        machine()
    );
    println!(
        "\n| model | case | peak RSS (GiB) | × plain | RSS before (GiB) | update (s) | tokens/s \
         | × plain time |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for model in &models {
        let mut plain: Option<(f64, f64)> = None;
        for case in &cases {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([CHILD_FLAG, model, case, &tokens.to_string()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(result) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
                println!(
                    "| {model} | {case} | failed: {} | | | | | |",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("no output")
                );
                continue;
            };
            let mut parts = result.split_whitespace().map(|v| v.parse::<f64>().unwrap());
            let (peak, secs) = (parts.next().unwrap(), parts.next().unwrap());
            let before = parts.next().unwrap() / (1u64 << 30) as f64;
            let gib = peak / (1u64 << 30) as f64;
            if case == "plain" {
                plain = Some((gib, secs));
            }
            let (rel_mem, rel_time) =
                plain.map_or((f64::NAN, f64::NAN), |(m, s)| (gib / m, secs / s));
            println!(
                "| {model} | {case} | {gib:.2} | {rel_mem:.2} | {before:.2} | {secs:.1} | {:.0} \
                 | {rel_time:.2} |",
                (RESPONSES * tokens) as f64 / secs
            );
        }
    }
}
