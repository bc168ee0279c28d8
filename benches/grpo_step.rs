//! Whole GRPO steps on SmolLM2-135M-Instruct (installed by `scripts/setup.sh`), f32 on
//! the CPU, on `train-math`'s data (levels 1 and 4 of the bundled synthetic set, chat
//! template with the model's default system prompt). Three cases:
//!
//! - `selection`: GRPO, Clip-Cov and KL-Cov (paper ratios), steps timed interleaved in
//!   one process, at 4 and 8 optimizer mini-batches per step (4 prompts × 8 samples,
//!   32 new tokens; micro-batch = mini-batch, and 2 micro-batches per mini-batch, where
//!   selected tokens of the first get a correction pass), lr 0 so that all three
//!   sample the same responses. Mini-batch selection must cost nothing beyond GRPO's
//!   passes.
//! - `packing`: one real rollout batch (4 × 8) at each `--new-tokens` (default 96 and
//!   256), then the update's forward + backward (loss `-Σ A·logp` over the batch) timed
//!   padded, packed, packed with shared prompts, and packed by a token budget; the
//!   losses are printed to show they are equal.
//! - `workload`: the step that `scripts/bench_trl_grpo.py` times in TRL: 4 prompts × 8
//!   samples, `--new-tokens` (default 32), 4 optimizer steps of 8 completions, lr 1e-6,
//!   no KL; `--method grpo|clip_cov|kl_cov` (one per process, so the peak RSS is the
//!   method's own), `--set key=value` for any trainer field; phases and peak RSS.
//!
//! ```text
//! cargo bench --profile dev --bench grpo_step -- selection --reps 3
//! cargo bench --profile dev --bench grpo_step -- packing --new-tokens 96,256
//! cargo bench --profile dev --bench grpo_step -- workload --method clip_cov --steps 3
//! ```
//! `scripts/bench_vs_trl.sh` runs `workload` for GRPO and Clip-Cov and TRL's script in
//! one go and prints them side by side.

use std::time::Instant;

use cove::batching::{MicroBatch, MicroBatching, SeqShape, plan_micro_batches};
use cove::loss::control::paper_controls;
use cove::model::{
    LogprobOptions, PackedItem, Policy, ResponseLogprobs, packed_response_logprobs,
    response_logprobs,
};
use cove::recipe::{MATH_DEFAULTS, MathReward, MathRun};
use cove::rollout::generate;
use cove::trainer::Trainer;
use tch::{Kind, Tensor};

/// Command-line options (everything after `--`).
struct Args {
    case: String,
    reps: usize,
    steps: usize,
    new_tokens: Vec<usize>,
    method: String,
    sets: Vec<String>,
    json: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        case: String::new(),
        reps: 3,
        steps: 3,
        new_tokens: Vec::new(),
        method: "grpo".into(),
        sets: Vec::new(),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--reps" => a.reps = value().parse().expect("--reps N"),
            "--steps" => a.steps = value().parse().expect("--steps N"),
            "--new-tokens" => {
                a.new_tokens = value()
                    .split(',')
                    .map(|v| v.parse().expect("--new-tokens N[,N...]"))
                    .collect()
            }
            "--method" => a.method = value(),
            "--set" => a.sets.push(value()),
            "--json" => a.json = Some(value().into()),
            case if !case.starts_with('-') && a.case.is_empty() => a.case = case.to_string(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// A `train-math` trainer on SmolLM2 with the embedded defaults plus `sets`, without
/// the held-out evaluation; `None` (with a note) when SmolLM2 is not installed.
fn trainer(sets: &[String]) -> Option<Trainer<MathReward>> {
    let mut all = vec![
        "trainer.steps=1000".to_string(),
        "trainer.optim.lr=1e-6".to_string(),
        "trainer.checkpoint.every=0".to_string(),
        format!(
            "trainer.out_dir=\"{}\"",
            std::env::temp_dir().join("cove-bench-step").display()
        ),
    ];
    all.extend_from_slice(sets);
    let (mut run, _): (MathRun, _) = cove::config::resolve(MATH_DEFAULTS, None, &all).unwrap();
    run.data.eval = None;
    match run.build(&cove::dist::Launch::from_env().unwrap()) {
        Ok((t, _)) => Some(t),
        Err(e) => {
            eprintln!("grpo_step: skipped ({e}); run `bash scripts/setup.sh` first");
            None
        }
    }
}

fn control_set(method: &str) -> String {
    let (_, control) = paper_controls()
        .into_iter()
        .find(|(name, _)| *name == method)
        .unwrap_or_else(|| panic!("--method must be grpo, clip_cov or kl_cov, got {method}"));
    let kind = toml::Value::try_from(&control).unwrap();
    format!("trainer.loss.control={}", inline(&kind))
}

/// A TOML value as one inline line (for `--set`).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let parts: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident set of this process (`VmHWM`), GiB.
fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / (1024.0 * 1024.0))
}

/// lr 0 keeps the three policies equal, so every step samples the same responses for
/// each method (same seed, same weights) and the methods time the same work; the
/// selection still runs as in training (it cannot know the weights did not move).
fn selection(args: &Args) {
    for (mini, micro) in [(8usize, 8usize), (4, 4), (8, 4)] {
        let mut runs: Vec<(&str, Trainer<MathReward>)> = Vec::new();
        for (name, _) in paper_controls() {
            let sets = vec![
                format!("trainer.mini_batch_size={mini}"),
                format!("trainer.micro_batch_size={micro}"),
                "trainer.optim.lr=0.0".to_string(),
                control_set(name),
            ];
            match trainer(&sets) {
                Some(t) => runs.push((name, t)),
                None => return,
            }
        }
        let mut totals = vec![Vec::new(); runs.len()];
        let mut updates = vec![Vec::new(); runs.len()];
        let mut notes = vec![Vec::new(); runs.len()];
        for rep in 0..args.reps + 1 {
            for (k, (_, t)) in runs.iter_mut().enumerate() {
                let m = t.step().unwrap();
                if rep > 0 {
                    // The first step of each trainer warms its allocator up.
                    totals[k].push(m.seconds.total);
                    updates[k].push(m.seconds.update);
                    notes[k].push(format!(
                        "{:.1} tokens, {:.4} selected",
                        m.response_len_mean, m.selected_frac
                    ));
                }
            }
        }
        println!(
            "selection, {} mini-batches per step (mini-batch {mini}, micro-batch {micro}), {} timed steps each:",
            32 / mini,
            args.reps
        );
        let (base_total, base_update) = (median(totals[0].clone()), median(updates[0].clone()));
        for (k, (name, _)) in runs.iter().enumerate() {
            let (total, update) = (median(totals[k].clone()), median(updates[k].clone()));
            println!(
                "  {name:9} step {total:6.2} s ({:.3}x GRPO)   update {update:6.2} s ({:.3}x)   steps {:?}",
                total / base_total,
                update / base_update,
                totals[k]
                    .iter()
                    .map(|s| (s * 100.0).round() / 100.0)
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// `-Σ A·logp` over the batch's valid tokens, forward + backward, by micro-batch.
fn packing(args: &Args) {
    let tokens = if args.new_tokens.is_empty() {
        vec![96, 256]
    } else {
        args.new_tokens.clone()
    };
    for new_tokens in tokens {
        let Some(t) = trainer(&[format!("trainer.rollout.max_new_tokens={new_tokens}")]) else {
            return;
        };
        let policy: &Policy = t.policy();
        let cfg = t.config();
        let prompts: Vec<Vec<i64>> = (0..4).map(|i| t.prompt_ids(i).to_vec()).collect();
        let samples = generate(policy, &prompts, &cfg.rollout.sampling(8, 11)).unwrap();
        let lens: Vec<usize> = samples.iter().map(|s| s.token_ids.len()).collect();
        let advantages: Vec<f32> = (0..samples.len())
            .map(|i| if i % 3 == 0 { 1.0 } else { -0.5 })
            .collect();
        println!(
            "packing, {new_tokens} new tokens: prompt {} tokens, response lengths {lens:?}",
            prompts[0].len()
        );
        let opts = LogprobOptions::default();
        let micro = 8;
        let shapes: Vec<SeqShape> = samples
            .iter()
            .map(|s| SeqShape {
                group: s.prompt_index,
                prompt_len: prompts[s.prompt_index].len(),
                response_len: s.token_ids.len(),
            })
            .collect();
        let plan = |rule, share| plan_micro_batches(&shapes, rule, share);
        // Padded, packed and packed + shared in micro-batches of `micro` rows; then
        // packed + shared under a token budget equal to the padded micro-batch's
        // footprint (rows x longest sequence), first-fit decreasing. `None`: padded.
        let budget = micro * (prompts[0].len() + new_tokens);
        let by_budget = plan(MicroBatching::Tokens(budget), true);
        let layouts: Vec<(String, Vec<MicroBatch>, Option<bool>)> = vec![
            (
                format!("padded, {micro} rows"),
                plan(MicroBatching::Rows(micro), false),
                None,
            ),
            (
                format!("packed, {micro} rows"),
                plan(MicroBatching::Rows(micro), false),
                Some(false),
            ),
            (
                format!("packed+shared, {micro} rows"),
                plan(MicroBatching::Rows(micro), true),
                Some(true),
            ),
            (
                format!(
                    "packed+shared, {budget} tokens ({} micro-batches)",
                    by_budget.len()
                ),
                by_budget,
                Some(true),
            ),
        ];
        let forward = |mb: &MicroBatch, packing: Option<bool>| -> ResponseLogprobs {
            let model = policy.model.as_ref();
            match packing {
                None => {
                    let pairs: Vec<(&[i64], &[i64])> = mb
                        .rows()
                        .iter()
                        .map(|&i| {
                            let s = &samples[i];
                            (prompts[s.prompt_index].as_slice(), s.token_ids.as_slice())
                        })
                        .collect();
                    response_logprobs(model, &pairs, policy.pad_token_id, &opts).unwrap()
                }
                Some(share) => {
                    let items: Vec<PackedItem> = mb
                        .units
                        .iter()
                        .map(|unit| PackedItem {
                            prompt: &prompts[samples[unit[0]].prompt_index],
                            responses: unit
                                .iter()
                                .map(|&i| samples[i].token_ids.as_slice())
                                .collect(),
                        })
                        .collect();
                    packed_response_logprobs(model, &items, share, &opts).unwrap()
                }
            }
        };
        let mut times = vec![Vec::new(); layouts.len()];
        let mut losses = vec![0.0; layouts.len()];
        for rep in 0..args.reps + 1 {
            for (k, (_, plan, packing)) in layouts.iter().enumerate() {
                let start = Instant::now();
                let mut total = 0.0;
                for mb in plan {
                    let out = forward(mb, *packing);
                    let adv = Tensor::from_slice(
                        &mb.rows().iter().map(|&i| advantages[i]).collect::<Vec<_>>(),
                    )
                    .unsqueeze(1);
                    let loss = -(&out.logprobs * &out.mask * adv).sum(Kind::Float);
                    loss.backward();
                    total += loss.double_value(&[]);
                }
                if rep > 0 {
                    times[k].push(start.elapsed().as_secs_f64());
                }
                losses[k] = total;
            }
            policy
                .model
                .var_store()
                .trainable_variables()
                .iter()
                .for_each(|v| {
                    let mut g = v.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                });
        }
        let base = median(times[0].clone());
        for (k, (name, _, _)) in layouts.iter().enumerate() {
            let med = median(times[k].clone());
            println!(
                "  {name:40} fwd+bwd of the 32 sequences: {med:6.2} s ({:.2}x padded's speed)   loss {:.6}",
                base / med,
                losses[k]
            );
        }
    }
}

fn workload(args: &Args) {
    let new_tokens = args.new_tokens.first().copied().unwrap_or(32);
    let mut sets = vec![
        "trainer.prompts_per_step=4".to_string(),
        "trainer.group_size=8".to_string(),
        "trainer.mini_batch_size=8".to_string(),
        "trainer.micro_batch_size=8".to_string(),
        "trainer.logprob_batch_size=32".to_string(),
        "trainer.optim.weight_decay=0.0".to_string(),
        format!("trainer.rollout.max_new_tokens={new_tokens}"),
        control_set(&args.method),
    ];
    sets.extend(args.sets.iter().cloned());
    let Some(mut t) = trainer(&sets) else {
        return;
    };
    let mut steps = Vec::new();
    for i in 0..args.steps + 1 {
        let m = t.step().unwrap();
        if i > 0 {
            steps.push(m);
        }
    }
    let phase = |f: fn(&cove::metrics::StepMetrics) -> f64| median(steps.iter().map(f).collect());
    let row = serde_json::json!({
        "method": args.method,
        "new_tokens": new_tokens,
        "steps_timed": steps.len(),
        "generation_s": phase(|m| m.seconds.rollout),
        "reward_s": phase(|m| m.seconds.reward),
        "old_logprob_s": phase(|m| m.seconds.old_logprob),
        "update_s": phase(|m| m.seconds.update),
        "total_s": phase(|m| m.seconds.total),
        "response_len_mean": phase(|m| m.response_len_mean),
        "peak_rss_gib": peak_rss_gib(),
        "trainer": serde_json::to_value(t.config()).unwrap(),
    });
    println!(
        "workload {} ({new_tokens} new tokens, median of {} steps): generation {:.2} s, old log-probs {:.2} s, update {:.2} s, total {:.2} s, mean response {:.1} tokens, peak RSS {:.2} GiB",
        args.method,
        steps.len(),
        row["generation_s"].as_f64().unwrap(),
        row["old_logprob_s"].as_f64().unwrap(),
        row["update_s"].as_f64().unwrap(),
        row["total_s"].as_f64().unwrap(),
        row["response_len_mean"].as_f64().unwrap(),
        row["peak_rss_gib"].as_f64().unwrap(),
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&row).unwrap()).unwrap();
    }
}

fn main() {
    let args = parse_args();
    match args.case.as_str() {
        "selection" => selection(&args),
        "packing" => packing(&args),
        "workload" => workload(&args),
        "" => {
            selection(&args);
            packing(&args);
        }
        other => panic!("unknown case {other}: selection, packing or workload"),
    }
}
