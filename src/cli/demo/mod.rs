//! The demo (`cove demo`): entropy collapse and the Cov methods, on the tiny policy or on
//! a real pretrained model.
//!
//! The task is a slice of the synthetic math set ([`crate::data::synth`]): the problems of
//! the configured levels. Two embedded set-ups:
//! - **real model** (the default, [`REAL_MODEL_DEFAULTS`]): SmolLM2-135M-Instruct from its
//!   pretrained weights, no warm start; GRPO on the training split of levels 1 and 4,
//!   accuracy on the held-out test split of the same levels. `--model NAME` takes another
//!   named model or a Hugging Face folder with the same budget.
//! - **tiny** (`--model tiny`, [`TINY_DEFAULTS`]): levels 1 and 4 (the 164 one-digit sum
//!   and product facts), both splits. From nothing: build the tiny policy
//!   ([`crate::model::tiny`]), warm-start it with a short supervised phase on the task
//!   until its accuracy is inside the target window (10–60% by default), then the arms
//!   from that same warm start. Accuracy is over the task itself.
//!
//! Each set-up runs its arms (each a whole loss: GRPO, GRPO with the Cov arms' clip,
//! Clip-Cov, KL-Cov) with the same seed and budget, and writes a report folder:
//!
//! ```text
//! OUT/config.toml                    resolved configuration
//! OUT/sft.safetensors                the warm-start weights (tiny set-up)
//! OUT/<method>/                      each run's folder: metrics.jsonl (with `eval`),
//!                                    checkpoints/ (a rerun resumes), plots/
//! OUT/plots/entropy_vs_step.png      entropy of the three runs
//! OUT/plots/accuracy_vs_step.png     task accuracy of the three runs
//! OUT/plots/cov_vs_step.png          mean token covariance of the three runs
//! OUT/plots/accuracy_vs_entropy.png  all points + the law fitted on plain GRPO
//! OUT/summary.md                     figures, fits, the 15%-fit prediction error
//! ```
//!
//! Accuracy is measured with one sample per problem at the training temperature (the
//! expected pass@1 of the policy being trained), every `eval_every` steps. On the tiny
//! policy it is not a held-out score: a 0.4M-parameter character-level model does not
//! learn to generalise arithmetic to unseen problems in minutes on a CPU (tried: 1,500
//! supervised steps on two-digit ± one-digit problems stayed under 10% held-out). What
//! it can do is what the paper studies: trade policy entropy for reward on the prompts it
//! trains on. The real model is measured on held-out problems.
//!
//! The paper's Cov ratios (2e-4, 2e-3) select `max(int(r·N), 1)` = 1 token of a
//! mini-batch of a few hundred tokens, which does nothing; the demo's defaults use larger
//! ratios, and the summary says so with the measured `N`.

mod config;
mod paired;
mod report;
mod sft;

pub use config::{
    DemoArgs, DemoConfig, DemoOutcome, Method, MethodResult, PairedResult, SftConfig,
};

/// The tiny demo's embedded defaults (`configs/demo.toml`, `cove demo --model tiny`).
pub const TINY_DEFAULTS: &str = include_str!("../../../configs/demo.toml");

/// The default demo's embedded defaults (`configs/demo-smollm2.toml`): SmolLM2-135M-
/// Instruct from its pretrained weights, four arms in under 30 minutes on 2 CPU cores.
/// `cove demo --model NAME` uses them for any model but `tiny`;
/// `configs/demo-smollm2-gpu.toml` is the budget for a GPU.
pub const REAL_MODEL_DEFAULTS: &str = include_str!("../../../configs/demo-smollm2.toml");

use super::train::{LoopOptions, LoopOutcome, interrupt_flag, train_loop};
use crate::config::resolve;
use crate::data::synth::{self, SynthProblem};
use crate::dist::Launch;
use crate::eval::{EvalScores, Probe, scores};
use crate::law::{self, LawPoint};
use crate::metrics::read_metrics;
use crate::model::{Message, Policy};
use crate::rollout::SamplingConfig;
use crate::run_dir::RunDir;
use crate::trainer::{Evaluation, Example, Trainer};
use crate::verifiers::math::{MathOptions, MathVerifier};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why the demo failed.
pub type DemoError = Box<dyn std::error::Error>;

/// The math reward the demo uses: the project's verifier, bare numbers accepted.
fn reward() -> MathVerifier {
    MathVerifier::new(MathOptions::default())
}

/// Token ids of each problem as a chat-templated user turn.
fn prompt_ids(policy: &Policy, problems: &[SynthProblem]) -> Result<Vec<Vec<i64>>, DemoError> {
    problems
        .iter()
        .map(|p| Ok(policy.prompt_ids(&[Message::user(&p.problem)], true)?))
        .collect()
}

/// Task accuracy: one sample per problem at `temperature` (0 = greedy); its `pass@1`
/// is the fraction of problems solved.
pub fn accuracy(
    policy: &Policy,
    prompts: &[Vec<i64>],
    problems: &[SynthProblem],
    temperature: f64,
    max_new_tokens: usize,
    seed: u64,
) -> Result<EvalScores, DemoError> {
    let cfg = SamplingConfig {
        n: 1,
        temperature,
        max_new_tokens,
        seed,
        ..Default::default()
    };
    let answers: Vec<String> = problems.iter().map(|p| p.answer.clone()).collect();
    let verifier = MathVerifier::new(Default::default());
    Ok(scores(policy, prompts, &answers, &verifier, &cfg)?)
}

/// The task's problems (training) and the evaluation's.
fn task_split(cfg: &DemoConfig) -> Result<(Vec<SynthProblem>, Vec<SynthProblem>), DemoError> {
    let (train, test) = synth::generate_splits(
        synth::DEFAULT_SEED,
        synth::DEFAULT_TRAIN,
        synth::DEFAULT_TEST,
    );
    let in_task = |p: &&SynthProblem| cfg.levels.contains(&p.level);
    let (task, test): (Vec<SynthProblem>, Vec<SynthProblem>) = if cfg.held_out {
        (
            train.iter().filter(in_task).cloned().collect(),
            test.iter().filter(in_task).cloned().collect(),
        )
    } else {
        let task: Vec<SynthProblem> = train.iter().chain(&test).filter(in_task).cloned().collect();
        let eval = task.clone();
        (task, eval)
    };
    if task.is_empty() || test.is_empty() {
        return Err(format!(
            "levels {:?} select no training or no evaluation problem",
            cfg.levels
        )
        .into());
    }
    Ok((task, test.into_iter().take(cfg.eval_problems).collect()))
}

/// Runs the whole demo into `out`: warm start (or the base model's accuracy), then each
/// method through the same training loop as the `train-*` binaries (its own run folder
/// under `out`, checkpoints, resume, Ctrl-C), then the report.
pub fn run(
    cfg: &DemoConfig,
    table: &toml::Table,
    out: &Path,
    progress: bool,
) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    tch::set_num_threads(cfg.threads);
    tch::manual_seed(cfg.seed as i64);
    let run_dir = RunDir::create(out, table)?;
    let log = |line: String| eprintln!("[demo {:>6.1}s] {line}", started.elapsed().as_secs_f64());
    let interrupted = interrupt_flag();
    crate::recipe::check_precision(&cfg.model, &cfg.grpo)?;
    // Every arm's loss resolves before any run starts (an error names the arm).
    for method in &cfg.methods {
        method.loss_config(&cfg.grpo.loss)?;
    }
    let (task, test) = task_split(cfg)?;
    let launch = Launch::from_env()?;
    let policy = cfg.model.load(&launch)?;
    log(format!(
        "policy {} ({} parameters); GRPO on {} problems of levels {:?}, accuracy on {} {}",
        cfg.model.path,
        parameter_count(&policy),
        task.len(),
        cfg.levels,
        test.len(),
        if cfg.held_out {
            "held-out problems of the test split"
        } else {
            "problems of the task"
        }
    ));
    let test_prompts = prompt_ids(&policy, &test)?;
    let rollout = &cfg.grpo.rollout;
    let seeds: Vec<u64> = (0..cfg.seeds.max(1) as u64).map(|k| cfg.seed + k).collect();
    let start_accuracy = |policy: &Policy, seed: u64| {
        accuracy(
            policy,
            &test_prompts,
            &test,
            rollout.temperature,
            rollout.max_new_tokens,
            seed,
        )
        .map(|s| s.pass_at_1)
    };
    // With a warm start, every run starts from its weights; else from the model as loaded.
    let (sft_steps, warm_weights) = match &cfg.sft {
        Some(sft) => {
            let (_, steps) = sft::warm_start(cfg, sft, &policy, &task, &test_prompts, &test, &log)?;
            let path = out.join("sft.safetensors");
            policy.model.var_store().save(&path)?;
            (steps, Some(path))
        }
        None => (0, None),
    };
    // Each seed's runs start from the starting policy's accuracy under that seed.
    let start_accuracies: Vec<f64> = seeds
        .iter()
        .map(|&seed| start_accuracy(&policy, seed))
        .collect::<Result<_, _>>()?;
    log(format!(
        "starting accuracy {:.1}% (seed {})",
        start_accuracies[0] * 100.0,
        seeds[0]
    ));
    // The fixed entropy probe: held-out prompts, responses sampled once from the
    // starting policy (the same for every arm and seed).
    let probe_sampling = rollout.sampling(1, cfg.seed ^ 0x9E0B);
    let probe_count = cfg.probe_prompts.min(test_prompts.len());
    let probe = Probe::sample(&policy, &test_prompts[..probe_count], &probe_sampling)?;
    let probe_start = probe.entropy(&policy)?;
    log(format!(
        "probe: {probe_count} held-out prompts, entropy {probe_start:.4}"
    ));
    drop(policy);

    let data: Vec<Example<String>> = task
        .iter()
        .map(|p| Example {
            prompt: p.problem.clone().into(),
            task: p.answer.clone(),
        })
        .collect();
    let mut results = Vec::new();
    for (&seed, &start) in seeds.iter().zip(&start_accuracies) {
        for method in &cfg.methods {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            let run_started = Instant::now();
            let policy = start_policy(cfg, &launch, warm_weights.as_ref())?;
            let mut tcfg = cfg.grpo.clone();
            tcfg.seed = seed;
            tcfg.loss = method.loss_config(&cfg.grpo.loss)?;
            tcfg.out_dir = match seeds.len() {
                1 => out.join(&method.name),
                _ => out.join(&method.name).join(format!("seed-{seed}")),
            };
            let method_dir = RunDir::create(&tcfg.out_dir, &toml::Table::try_from(&tcfg)?)?;
            let (test_prompts, test) = (test_prompts.clone(), test.clone());
            let (temperature, max_new_tokens) = (rollout.temperature, rollout.max_new_tokens);
            let evaluation = Evaluation {
                every: cfg.eval_every,
                probe: Some(probe.clone()),
                measure: Box::new(move |policy: &Policy, step: u64| {
                    accuracy(
                        policy,
                        &test_prompts,
                        &test,
                        temperature,
                        max_new_tokens,
                        seed ^ step,
                    )
                    .map_err(|e| e.to_string())
                }),
            };
            let mut trainer =
                Trainer::new(tcfg, policy, reward(), data.clone())?.with_evaluation(evaluation);
            let outcome = train_loop(
                &mut trainer,
                &LoopOptions {
                    progress,
                    entropy_warn_fraction: cfg.entropy_warn_fraction,
                    tensorboard: false,
                },
            )?;
            let result = method_result(
                (&method.name, seed),
                &method_dir,
                (start, probe_start),
                cfg.grpo.mini_batch_size,
                &outcome,
                run_started.elapsed().as_secs_f64(),
            )?;
            log(format!(
                "{} (seed {seed}): {} steps in {:.0}s, probe entropy {:.4} -> {:.4}, accuracy \
                 {:.1}% -> {:.1}%",
                method.name,
                result.entropy.len(),
                result.seconds,
                result.probe_entropy.first().map_or(f64::NAN, |e| e.1),
                result.probe_entropy.last().map_or(f64::NAN, |e| e.1),
                result.accuracy.first().map_or(f64::NAN, |a| a.1) * 100.0,
                result.accuracy.last().map_or(f64::NAN, |a| a.1) * 100.0,
            ));
            results.push(result);
        }
    }
    let paired = if cfg.paired && !interrupted.load(Ordering::SeqCst) {
        let setup = paired::PairedSetup {
            cfg,
            launch: &launch,
            data: &data,
            warm_weights: warm_weights.as_ref(),
            probe: &probe,
            out,
        };
        let (paired, changes) = paired::run(&setup, &log)?;
        std::fs::write(
            out.join("paired.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "arms": cfg.methods.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "probe_entropy_change": changes,
                "results": paired,
            }))?,
        )?;
        paired
    } else {
        Vec::new()
    };

    let base_points = results
        .first()
        .map(|r| r.points.clone())
        .unwrap_or_default();
    let outcome = DemoOutcome {
        task_problems: task.len(),
        eval_problems: test.len(),
        sft_accuracy: start_accuracies[0],
        sft_steps,
        law: law::fit(&base_points).ok(),
        extrapolation: law::fit_fraction(&base_points, cfg.fit_fraction).ok(),
        methods: results,
        paired,
        seconds: started.elapsed().as_secs_f64(),
    };
    report::write_report(cfg, &run_dir, &outcome)?;
    log(format!("report: {}", out.join("summary.md").display()));
    Ok(outcome)
}

/// A method's figures, read back from its run folder's metrics.
fn method_result(
    (name, seed): (&str, u64),
    run: &RunDir,
    (start_accuracy, start_probe): (f64, f64),
    mini_batch_size: usize,
    outcome: &LoopOutcome,
    seconds: f64,
) -> Result<MethodResult, DemoError> {
    let steps = read_metrics(&run.metrics())?;
    let per_step = |f: fn(&crate::metrics::StepMetrics) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|m| (m.step as f64, f(m))).collect()
    };
    // Step 0 is the starting policy, measured before with the same seed.
    let mut accuracy = vec![(0.0, start_accuracy)];
    let mut probe_entropy = vec![(0.0, start_probe)];
    let mut points = Vec::new();
    for m in &steps {
        if let Some(h) = m.probe_entropy {
            probe_entropy.push((m.step as f64, h));
        }
        if let Some(acc) = m.eval.map(|e| e.pass_at_1) {
            accuracy.push((m.step as f64, acc));
            points.push(LawPoint {
                step: m.step as f64,
                entropy: m.entropy,
                perf: acc,
            });
        }
    }
    let tokens: f64 = steps
        .iter()
        .map(|m| m.response_len_mean * mini_batch_size as f64)
        .sum();
    Ok(MethodResult {
        name: name.to_string(),
        seed,
        entropy: per_step(|m| m.entropy),
        probe_entropy,
        cov_mean: per_step(|m| m.cov.mean),
        selected_frac: per_step(|m| m.selected_frac),
        tokens_per_mini_batch: tokens / steps.len().max(1) as f64,
        accuracy,
        points,
        warning: outcome.warning.clone(),
        seconds,
        interrupted: outcome.interrupted,
    })
}

/// The starting policy of every run: the model as loaded, over the warm-start weights
/// when there are some.
fn start_policy(
    cfg: &DemoConfig,
    launch: &Launch,
    warm_weights: Option<&PathBuf>,
) -> Result<Policy, DemoError> {
    let mut policy = cfg.model.load(launch)?;
    if let Some(weights) = warm_weights {
        policy.model.var_store_mut().load(weights)?;
    }
    Ok(policy)
}

/// Number of parameters of the policy's network.
fn parameter_count(policy: &Policy) -> i64 {
    policy
        .model
        .var_store()
        .variables()
        .values()
        .map(|t| t.numel() as i64)
        .sum()
}

/// Runs `cove demo`.
pub fn run_cli(args: &DemoArgs) -> Result<String, DemoError> {
    let (defaults, mut sets) = match args.model.as_deref() {
        Some(crate::model::named::TINY) => (TINY_DEFAULTS, vec![]),
        None => (REAL_MODEL_DEFAULTS, vec![]),
        Some(model) => (
            REAL_MODEL_DEFAULTS,
            vec![format!(
                "model.path={}",
                toml::Value::String(model.to_string())
            )],
        ),
    };
    sets.extend(args.sets.iter().cloned());
    if let Some(n) = args.seeds {
        sets.push(format!("seeds={n}"));
    }
    if args.paired {
        sets.push("paired=true".into());
    }
    let (cfg, table): (DemoConfig, _) = resolve(defaults, args.config.as_deref(), &sets)?;
    let o = run(&cfg, &table, &args.out, !args.quiet)?;
    Ok(format!(
        "{}\nreport folder: {}\n",
        report::summary(&cfg, &o),
        args.out.display()
    ))
}
