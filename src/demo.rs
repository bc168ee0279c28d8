//! The demo (`cove demo`): entropy collapse and the Cov methods, on the tiny policy or on
//! a real pretrained model.
//!
//! The task is a slice of the synthetic math set ([`crate::data::synth`]): the problems of
//! the configured levels. Two embedded set-ups:
//! - **tiny** (default, [`DEFAULTS`]): levels 1 and 4 (the 164 one-digit sum and product
//!   facts), both splits. From nothing: build the tiny policy ([`crate::tiny`]),
//!   warm-start it with a short supervised phase on the task until its accuracy is inside
//!   the target window (10–60% by default), then run GRPO three times from that same warm
//!   start. Accuracy is over the task itself.
//! - **real model** (`cove demo --model smollm2-135m-instruct`, [`REAL_MODEL_DEFAULTS`]):
//!   the pretrained weights, no warm start; GRPO on the training split of levels 1 and 4,
//!   accuracy on the held-out test split of the same levels.
//!
//! Each set-up runs GRPO with no entropy control, Clip-Cov and KL-Cov, with the same seed
//! and budget, and writes a report folder:
//!
//! ```text
//! OUT/config.toml                    resolved configuration
//! OUT/sft.safetensors                the warm-start weights (tiny set-up)
//! OUT/<method>/metrics.jsonl         trainer metrics per step + task accuracy
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

use crate::app::training::ModelSpec;
use crate::app::{self, RunDir};
use crate::data::synth::{self, SynthProblem};
use crate::law::{self, EntropyWatch, LawPoint};
use crate::loss::ControlConfig;
use crate::model::{LogprobOptions, Message, Policy, response_logprobs};
use crate::optim::{AdamW, OptimConfig};
use crate::report::{self, Series};
use crate::rollout::{SamplingConfig, generate};
use crate::trainer::{Example, Trainer};
use crate::verifiers::Reward;
use crate::verifiers::math::{MathOptions, MathVerifier};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The demo's embedded defaults (`configs/demo.toml`): the tiny policy.
pub const DEFAULTS: &str = include_str!("../configs/demo.toml");

/// The real-model demo's embedded defaults (`configs/demo-smollm2.toml`): SmolLM2-135M-
/// Instruct from its pretrained weights, sized for 45 minutes on 2 CPU cores. `cove demo
/// --model NAME` uses them for any model but `tiny`; `configs/demo-smollm2-gpu.toml` is
/// the budget for a GPU.
pub const REAL_MODEL_DEFAULTS: &str = include_str!("../configs/demo-smollm2.toml");

/// Everything the demo does, resolved from [`DEFAULTS`], `--config` and `--set`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// The policy: `tiny` (built in code, initialised from `model.tiny_seed`), a named
    /// pretrained model or a Hugging Face folder.
    pub model: ModelSpec,
    /// Seed of the SFT batches, GRPO runs and evaluations.
    pub seed: u64,
    /// libtorch intra-op threads (the target machine has 2 cores).
    pub threads: i32,
    /// The task: the problems of these levels of the synthetic set.
    pub levels: Vec<u32>,
    /// Where accuracy is measured. `false`: on the task itself, both splits (the warm
    /// start, GRPO and the accuracy all use every problem of the levels). `true`: GRPO
    /// trains on the training split's problems of the levels and accuracy is measured on
    /// the test split's (held out: never trained on).
    pub held_out: bool,
    /// Problems used for accuracy (the first N of the evaluation set).
    pub eval_problems: usize,
    /// Evaluate every this many GRPO steps (and at step 0).
    pub eval_every: u64,
    /// Warn when entropy falls below this fraction of its start value.
    pub entropy_warn_fraction: f64,
    /// Fraction of steps the early law fit uses (the paper: 0.15).
    pub fit_fraction: f64,
    /// The supervised warm start (absent: GRPO starts from the model as loaded).
    pub sft: Option<SftConfig>,
    /// GRPO settings shared by the three runs (their `loss.control` is replaced).
    pub grpo: crate::config::TrainConfig,
    /// The runs: name and entropy control.
    pub methods: Vec<Method>,
}

/// The supervised warm-start phase.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Problems per step.
    pub batch_size: usize,
    /// Give up (and go on with what was reached) after this many steps.
    pub max_steps: usize,
    /// Measure task accuracy every this many steps.
    pub eval_every: usize,
    /// Stop as soon as accuracy reaches this (the lower end of the target window).
    pub target_accuracy: f64,
    /// Upper end of the target window (reported when overshot).
    pub max_accuracy: f64,
}

/// One GRPO run of the comparison.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// Folder and legend name.
    pub name: String,
    /// Its entropy control.
    pub control: ControlConfig,
}

/// Arguments of `cove demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Report folder.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// The policy: `tiny` (default; embedded defaults `configs/demo.toml`), or a named
    /// pretrained model such as `smollm2-135m-instruct` or a Hugging Face folder
    /// (embedded defaults `configs/demo-smollm2.toml`, the 2-core CPU budget).
    #[arg(long)]
    pub model: Option<String>,
    /// TOML file overriding the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any field: `--set grpo.steps=40` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// No progress bars (logs only).
    #[arg(long)]
    pub quiet: bool,
}

/// Per-method results for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    /// The method's name.
    pub name: String,
    /// `(step, entropy)` of every step.
    pub entropy: Vec<(f64, f64)>,
    /// `(step, mean token covariance of log-prob and advantage)` of every step.
    pub cov_mean: Vec<(f64, f64)>,
    /// `(step, fraction of valid tokens the entropy control selected)` of every step.
    pub selected_frac: Vec<(f64, f64)>,
    /// Valid response tokens per optimizer mini-batch, mean over the run (the `N` of the
    /// controls' `max(int(r*N), 1)`).
    pub tokens_per_mini_batch: f64,
    /// `(step, task accuracy)` at each evaluation.
    pub accuracy: Vec<(f64, f64)>,
    /// `(step, entropy, accuracy)` at the evaluated steps (law points).
    pub points: Vec<LawPoint>,
    /// The entropy-collapse warning, if raised.
    pub warning: Option<String>,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
}

/// The demo's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoOutcome {
    /// Problems GRPO trains on.
    pub task_problems: usize,
    /// Problems accuracy is measured on.
    pub eval_problems: usize,
    /// Accuracy before GRPO (after the warm start, when there is one).
    pub sft_accuracy: f64,
    /// SFT steps run (0 without a warm start).
    pub sft_steps: usize,
    /// The three runs.
    pub methods: Vec<MethodResult>,
    /// Law fitted on the first method's (plain GRPO's) points.
    pub law: Option<law::LawFit>,
    /// Early-fit check on the same points.
    pub extrapolation: Option<law::Extrapolation>,
    /// Total wall time in seconds.
    pub seconds: f64,
}

/// Why the demo failed.
pub type DemoError = Box<dyn std::error::Error>;

/// The math reward the demo uses: the project's verifier, bare numbers accepted.
fn reward() -> MathVerifier {
    MathVerifier::new(MathOptions::default())
}

fn prompt_ids(policy: &Policy, problems: &[SynthProblem]) -> Result<Vec<Vec<i64>>, DemoError> {
    problems
        .iter()
        .map(|p| {
            let text = policy.apply_chat_template(&[Message::user(&p.problem)], true)?;
            Ok(policy.encode(&text)?)
        })
        .collect()
}

/// Task accuracy: one sample per problem at `temperature` (0 = greedy).
pub fn accuracy(
    policy: &Policy,
    prompts: &[Vec<i64>],
    problems: &[SynthProblem],
    temperature: f64,
    max_new_tokens: usize,
    seed: u64,
) -> Result<f64, DemoError> {
    let cfg = SamplingConfig {
        n: 1,
        temperature,
        max_new_tokens,
        seed,
        ..Default::default()
    };
    let verifier = reward();
    let samples = generate(policy, prompts, &cfg)?;
    let correct = samples
        .iter()
        .filter(|s| {
            verifier
                .score(&problems[s.prompt_index].answer, &s.text)
                .correct
        })
        .count();
    Ok(correct as f64 / problems.len().max(1) as f64)
}

/// The supervised warm start; returns (task accuracy reached, steps run).
fn warm_start(
    cfg: &DemoConfig,
    sft: &SftConfig,
    policy: &Policy,
    pool: &[SynthProblem],
    test_prompts: &[Vec<i64>],
    test: &[SynthProblem],
    log: &dyn Fn(String),
) -> Result<(f64, usize), DemoError> {
    let eval = || {
        accuracy(
            policy,
            test_prompts,
            test,
            cfg.grpo.rollout.temperature,
            cfg.grpo.rollout.max_new_tokens,
            cfg.seed,
        )
    };
    let mut acc = eval()?;
    log(format!(
        "warm start: step 0, task accuracy {:.1}%",
        acc * 100.0
    ));
    if acc >= sft.target_accuracy {
        return Ok((acc, 0));
    }
    let mut opt = AdamW::new(
        policy.model.var_store(),
        OptimConfig {
            lr: sft.lr,
            weight_decay: 0.0,
            ..OptimConfig::default()
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5f7);
    let eos = policy.eos_token_ids[0];
    // (prompt, answer + EOS) token ids of every problem, tokenized once.
    let prompts = prompt_ids(policy, pool)?;
    let examples: Vec<(Vec<i64>, Vec<i64>)> = prompts
        .into_iter()
        .zip(pool)
        .map(|(prompt, p)| {
            let mut response = policy.encode(&p.answer)?;
            response.push(eos);
            Ok((prompt, response))
        })
        .collect::<Result<_, DemoError>>()?;
    for step in 1..=sft.max_steps {
        let pairs: Vec<(&[i64], &[i64])> = examples
            .choose_multiple(&mut rng, sft.batch_size)
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let out = response_logprobs(
            &*policy.model,
            &pairs,
            policy.pad_token_id,
            &LogprobOptions::default(),
        )?;
        let loss =
            -(&out.logprobs * &out.mask).sum(tch::Kind::Float) / out.mask.sum(tch::Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm();
        opt.step(sft.lr);
        if step % sft.eval_every == 0 || step == sft.max_steps {
            acc = eval()?;
            log(format!(
                "warm start: step {step}, loss {:.3}, task accuracy {:.1}%",
                loss.double_value(&[]),
                acc * 100.0
            ));
            if acc >= sft.target_accuracy {
                if acc > sft.max_accuracy {
                    log(format!(
                        "warm start overshot the window: {:.1}% > {:.0}%",
                        acc * 100.0,
                        sft.max_accuracy * 100.0
                    ));
                }
                return Ok((acc, step));
            }
        }
    }
    log(format!(
        "warm start: reached {:.1}% after sft.max_steps = {}, below the target {:.0}%",
        acc * 100.0,
        sft.max_steps,
        sft.target_accuracy * 100.0
    ));
    Ok((acc, sft.max_steps))
}

/// Runs the whole demo into `out`; `log` receives progress lines.
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
    let interrupted = app::interrupt_flag();

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
    let test: Vec<SynthProblem> = test.into_iter().take(cfg.eval_problems).collect();
    let policy = cfg.model.load()?;
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
    // With a warm start, every run starts from its weights; else from the model as loaded.
    let (sft_accuracy, sft_steps, warm_weights) = match &cfg.sft {
        Some(sft) => {
            let (acc, steps) = warm_start(cfg, sft, &policy, &task, &test_prompts, &test, &log)?;
            let path = out.join("sft.safetensors");
            policy.model.var_store().save(&path)?;
            (acc, steps, Some(path))
        }
        None => {
            let acc = accuracy(
                &policy,
                &test_prompts,
                &test,
                cfg.grpo.rollout.temperature,
                cfg.grpo.rollout.max_new_tokens,
                cfg.seed,
            )?;
            log(format!("base model: accuracy {:.1}%", acc * 100.0));
            (acc, 0, None)
        }
    };
    drop(policy);

    let data: Vec<Example<String>> = task
        .iter()
        .map(|p| Example {
            prompt: p.problem.clone(),
            task: p.answer.clone(),
        })
        .collect();
    let mut results = Vec::new();
    for method in &cfg.methods {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let run_started = Instant::now();
        let mut policy = cfg.model.load()?;
        if let Some(weights) = &warm_weights {
            policy.model.var_store_mut().load(weights)?;
        }
        let mut tcfg = cfg.grpo.clone();
        tcfg.loss.control = method.control.clone();
        tcfg.out_dir = out.join(&method.name);
        std::fs::create_dir_all(&tcfg.out_dir)?;
        let metrics_path = tcfg.out_dir.join("metrics.jsonl");
        let mut metrics = std::io::BufWriter::new(std::fs::File::create(&metrics_path)?);
        let steps = tcfg.steps;
        let mini_batch_size = tcfg.mini_batch_size;
        let mut trainer = Trainer::new(tcfg, policy, reward(), data.clone())?;
        let bar = progress_bar(progress, steps, &method.name);
        let mut watch = EntropyWatch::new(cfg.entropy_warn_fraction);
        let mut result = MethodResult {
            name: method.name.clone(),
            entropy: vec![],
            cov_mean: vec![],
            selected_frac: vec![],
            tokens_per_mini_batch: 0.0,
            accuracy: vec![],
            points: vec![],
            warning: None,
            seconds: 0.0,
            interrupted: false,
        };
        let eval = |trainer: &Trainer<MathVerifier>, step: u64| {
            accuracy(
                trainer.policy(),
                &test_prompts,
                &test,
                cfg.grpo.rollout.temperature,
                cfg.grpo.rollout.max_new_tokens,
                cfg.seed ^ step,
            )
        };
        // Step 0 is the starting policy, already measured with the same seed.
        let mut last_acc = sft_accuracy;
        result.accuracy.push((0.0, last_acc));
        for step in 1..=steps {
            let m = trainer.step()?;
            let mut line = serde_json::to_value(&m)?;
            if step % cfg.eval_every == 0 || step == steps {
                last_acc = eval(&trainer, step)?;
                result.accuracy.push((step as f64, last_acc));
                result.points.push(LawPoint {
                    step: step as f64,
                    entropy: m.entropy,
                    perf: last_acc,
                });
                line["task_accuracy"] = serde_json::json!(last_acc);
            }
            serde_json::to_writer(&mut metrics, &line)?;
            std::io::Write::write_all(&mut metrics, b"\n")?;
            // Flushed per step, so a long run can be followed and a crash keeps its steps.
            std::io::Write::flush(&mut metrics)?;
            result.entropy.push((step as f64, m.entropy));
            result.cov_mean.push((step as f64, m.cov.mean));
            result.selected_frac.push((step as f64, m.selected_frac));
            result.tokens_per_mini_batch += m.response_len_mean * mini_batch_size as f64;
            if let Some(warning) = watch.observe(step, m.entropy) {
                bar.suspend(|| log(format!("{}: warning: {warning}", method.name)));
                result.warning = Some(warning);
            }
            bar.set_message(format!(
                "H {:.3}  acc {:.0}%  reward {:.2}",
                m.entropy,
                last_acc * 100.0,
                m.reward_mean
            ));
            bar.inc(1);
            if interrupted.load(Ordering::SeqCst) {
                let path = trainer.save_checkpoint()?;
                bar.suspend(|| {
                    log(format!(
                        "{}: interrupted; checkpoint {}",
                        method.name,
                        path.display()
                    ))
                });
                result.interrupted = true;
                break;
            }
        }
        std::io::Write::flush(&mut metrics)?;
        bar.finish_and_clear();
        result.tokens_per_mini_batch /= result.entropy.len().max(1) as f64;
        result.seconds = run_started.elapsed().as_secs_f64();
        log(format!(
            "{}: {} steps in {:.0}s, entropy {:.3} -> {:.3}, task accuracy {:.1}% -> {:.1}%",
            method.name,
            result.entropy.len(),
            result.seconds,
            result.entropy.first().map_or(f64::NAN, |e| e.1),
            result.entropy.last().map_or(f64::NAN, |e| e.1),
            result.accuracy.first().map_or(f64::NAN, |a| a.1) * 100.0,
            result.accuracy.last().map_or(f64::NAN, |a| a.1) * 100.0,
        ));
        results.push(result);
    }

    let base_points = results
        .first()
        .map(|r| r.points.clone())
        .unwrap_or_default();
    let law = law::fit(&base_points).ok();
    let extrapolation = law::fit_fraction(&base_points, cfg.fit_fraction).ok();
    let outcome = DemoOutcome {
        task_problems: task.len(),
        eval_problems: test.len(),
        sft_accuracy,
        sft_steps,
        methods: results,
        law,
        extrapolation,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_report(cfg, &run_dir, &outcome)?;
    log(format!("report: {}", out.join("summary.md").display()));
    Ok(outcome)
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

fn progress_bar(enabled: bool, steps: u64, name: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>9} [{bar:30}] {pos}/{len} steps  {elapsed_precise} ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Writes the plots and `summary.md`.
fn write_report(cfg: &DemoConfig, run: &RunDir, o: &DemoOutcome) -> Result<(), DemoError> {
    let series = |f: &dyn Fn(&MethodResult) -> Vec<(f64, f64)>| -> Vec<Series> {
        o.methods
            .iter()
            .map(|m| Series {
                label: m.name.clone(),
                points: f(m),
            })
            .collect()
    };
    let plots = run.plots();
    report::line_chart(
        &plots.join("entropy_vs_step.png"),
        "Policy entropy during GRPO",
        "step",
        "entropy (nats/token)",
        &series(&|m| m.entropy.clone()),
    )?;
    report::line_chart(
        &plots.join("accuracy_vs_step.png"),
        "Task accuracy during GRPO (pass@1, T = 1)",
        "step",
        "task accuracy",
        &series(&|m| m.accuracy.clone()),
    )?;
    report::line_chart(
        &plots.join("cov_vs_step.png"),
        "Mean token covariance of log-prob and advantage",
        "step",
        "mean Cov(log pi, A)",
        &series(&|m| m.cov_mean.clone()),
    )?;
    if let Some(law) = &o.law {
        report::law_chart(
            &plots.join("accuracy_vs_entropy.png"),
            "Accuracy vs entropy, law fitted on plain GRPO",
            "task accuracy",
            &series(&|m| m.points.iter().map(|p| (p.entropy, p.perf)).collect()),
            law,
        )?;
    }
    std::fs::write(run.root.join("summary.md"), summary(cfg, o))?;
    std::fs::write(
        run.root.join("outcome.json"),
        serde_json::to_string_pretty(o)?,
    )?;
    Ok(())
}

fn control_text(c: &ControlConfig) -> String {
    match c {
        ControlConfig::ClipCov { ratio, lb, ub } => {
            format!("Clip-Cov r = {ratio}, lb = {lb}, ub = {ub}")
        }
        ControlConfig::KlCov { ratio, beta } => format!("KL-Cov k = {ratio}, beta = {beta}"),
        other => format!("{other:?}"),
    }
}

/// Mean of the second coordinate of `points` (0 when empty).
fn mean_of(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64
}

/// Mean of the second coordinate over the last tenth of `points` (at least one point):
/// the end of a noisy curve.
fn tail_mean(points: &[(f64, f64)]) -> Option<f64> {
    let k = points.len().div_ceil(10);
    (k > 0).then(|| points[points.len() - k..].iter().map(|p| p.1).sum::<f64>() / k as f64)
}

/// The markdown summary.
pub fn summary(cfg: &DemoConfig, o: &DemoOutcome) -> String {
    let f = |v: Option<f64>, pct: bool| match v {
        Some(x) if pct => format!("{:.1}%", x * 100.0),
        Some(x) => format!("{x:.3}"),
        None => "n/a".to_string(),
    };
    let rows: Vec<Vec<String>> = o
        .methods
        .iter()
        .map(|m| {
            let mut row = vec![
                m.name.clone(),
                f(m.entropy.first().map(|e| e.1), false),
                f(m.entropy.last().map(|e| e.1), false),
                f(tail_mean(&m.entropy), false),
                f(m.accuracy.first().map(|a| a.1), true),
                f(m.accuracy.last().map(|a| a.1), true),
                f(tail_mean(&m.accuracy), true),
                format!("{:.2e}", mean_of(&m.cov_mean)),
                format!("{:.2e}", mean_of(&m.selected_frac)),
            ];
            let fit = law::fit(&m.points).ok();
            row.push(f(fit.map(|l| l.a), false));
            row.push(f(fit.map(|l| l.b), false));
            row.push(format!("{:.0}", m.seconds));
            row
        })
        .collect();
    let mut s = String::from("# Cove demo: entropy collapse and the Cov methods\n\n");
    let start = match &cfg.sft {
        Some(_) => format!(
            "{} supervised warm-start steps on the task, to {:.1}% accuracy",
            o.sft_steps,
            o.sft_accuracy * 100.0
        ),
        None => format!(
            "no warm start: the pretrained weights, at {:.1}% accuracy",
            o.sft_accuracy * 100.0
        ),
    };
    let eval_set = if cfg.held_out {
        "held-out problems of the test split (never trained on)"
    } else {
        "problems of the task (pass@1 on the prompts GRPO trains on, not a held-out score)"
    };
    s.push_str(&format!(
        "Policy `{}`; {}. GRPO on {} problems of levels {:?} of the synthetic math set for {} \
         steps x {} prompts x {} samples per method ({} responses per optimizer mini-batch, \
         lr {:e}), same seed ({}) and budget. Accuracy: {} {}, one sample each at temperature \
         {}, every {} steps. \"Last 10%\" columns average the last tenth of the steps or \
         evaluations; \"mean cov\" and \"selected frac\" are means over the steps of the \
         batch's mean token covariance and of the fraction of tokens the control selected. \
         Total wall time {:.0} s.\n\n",
        cfg.model.path,
        start,
        o.task_problems,
        cfg.levels,
        cfg.grpo.steps,
        cfg.grpo.prompts_per_step,
        cfg.grpo.group_size,
        cfg.grpo.mini_batch_size,
        cfg.grpo.optim.lr,
        cfg.seed,
        o.eval_problems,
        eval_set,
        cfg.grpo.rollout.temperature,
        cfg.eval_every,
        o.seconds
    ));
    s.push_str(&report::markdown_table(
        &[
            "method",
            "entropy start",
            "entropy end",
            "entropy last 10%",
            "accuracy start",
            "accuracy end",
            "accuracy last 10%",
            "mean cov",
            "selected frac",
            "fit a",
            "fit b",
            "seconds",
        ],
        &rows,
    ));
    s.push_str("\nControls: ");
    s.push_str(
        &cfg.methods
            .iter()
            .map(|m| format!("`{}`: {}", m.name, control_text(&m.control)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    let tokens = mean_of(
        &o.methods
            .iter()
            .map(|m| (0.0, m.tokens_per_mini_batch))
            .collect::<Vec<_>>(),
    );
    s.push_str(&format!(
        ". Selection is per optimizer mini-batch, which here held about {tokens:.0} valid \
         response tokens, so the paper's ratios (Clip-Cov 2e-4, KL-Cov 2e-3 for 7B) would \
         select max(int(r*N), 1) = {} and {} tokens; the values above are the demo's. \
         Everything else is the paper's recipe (no KL to the reference, no entropy bonus, \
         beta 1, lb 1, ub 5).\n\n",
        ((2e-4 * tokens) as usize).max(1),
        ((2e-3 * tokens) as usize).max(1),
    ));
    match (&o.law, &o.extrapolation) {
        (Some(l), ex) => {
            s.push_str(&format!(
                "## Entropy-performance law (plain GRPO)\n\nR = -a*exp(H) + b fitted on {} points: \
                 a = {:.4}, b = {:.4}, RMSE = {:.4}, predicted ceiling -a + b = {:.1}%.\n",
                l.n,
                l.a,
                l.b,
                l.rmse,
                l.ceiling() * 100.0
            ));
            if let Some(ex) = ex {
                s.push_str(&format!(
                    "Fitted on the first {:.0}% of steps ({} points): a = {:.4}, b = {:.4}; on the \
                     other {} points the prediction RMSE is {:.4} (max |error| {:.4}); last step \
                     predicted {:.1}%, measured {:.1}%.\n",
                    ex.fraction * 100.0,
                    ex.fit.n,
                    ex.fit.a,
                    ex.fit.b,
                    ex.held_out,
                    ex.rmse_held_out,
                    ex.max_abs_err_held_out,
                    ex.final_predicted * 100.0,
                    ex.final_actual * 100.0
                ));
            }
        }
        (None, _) => s.push_str("The law could not be fitted (too few distinct points).\n"),
    }
    s.push_str("\n## Warnings\n\n");
    for m in &o.methods {
        s.push_str(&format!(
            "- {}: {}\n",
            m.name,
            m.warning
                .as_deref()
                .unwrap_or("no entropy-collapse warning")
        ));
    }
    s.push_str(
        "\n## Plots\n\n![entropy](plots/entropy_vs_step.png)\n![accuracy](plots/accuracy_vs_step.png)\n\
         ![covariance](plots/cov_vs_step.png)\n![law](plots/accuracy_vs_entropy.png)\n",
    );
    s
}

/// Runs `cove demo`.
pub fn run_cli(args: &DemoArgs) -> Result<String, DemoError> {
    let (defaults, mut sets) = match args.model.as_deref() {
        None | Some(crate::model::named::TINY) => (DEFAULTS, vec![]),
        Some(model) => (
            REAL_MODEL_DEFAULTS,
            vec![format!(
                "model.path={}",
                toml::Value::String(model.to_string())
            )],
        ),
    };
    sets.extend(args.sets.iter().cloned());
    let (cfg, table): (DemoConfig, _) = app::resolve(defaults, args.config.as_deref(), &sets)?;
    let o = run(&cfg, &table, &args.out, !args.quiet)?;
    Ok(format!(
        "{}\nreport folder: {}\n",
        summary(&cfg, &o),
        args.out.display()
    ))
}
