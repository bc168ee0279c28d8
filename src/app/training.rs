//! Training-binary glue on top of the model, rollout and trainer: the `[model]` section,
//! the training loop with progress bar, entropy warning and Ctrl-C checkpointing, the
//! shared `train-*` command line, and `cove eval`.

use super::{RunDir, interrupt_flag, resolve};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Which policy a training binary loads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `tiny` (the built-in tiny policy), a named model set-up installs
    /// (`smollm2-135m-instruct`; see [`crate::model::named`]), or a Hugging Face folder.
    pub path: String,
    /// Parameter dtype (`f32`, `bf16`, `f16`).
    pub dtype: crate::model::Dtype,
    /// `cpu`, `cuda` (first GPU) or `auto` (CUDA when available).
    pub device: String,
    /// Initialisation seed of the tiny policy.
    pub tiny_seed: u64,
    /// Weights to load over the initial ones (a `.safetensors` written by the demo or
    /// a previous run), if any.
    pub weights: Option<PathBuf>,
    /// LoRA adapters (`[model.lora]`): when present, only they are trained and
    /// checkpoints hold them in PEFT's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<crate::model::LoraConfig>,
}

impl ModelSpec {
    /// The libtorch device.
    pub fn device(&self) -> Result<tch::Device, String> {
        match self.device.as_str() {
            "cpu" => Ok(tch::Device::Cpu),
            "cuda" => Ok(tch::Device::Cuda(0)),
            "auto" => Ok(tch::Device::cuda_if_available()),
            other => Err(format!("model.device: `{other}` is not cpu, cuda or auto")),
        }
    }

    /// Builds or loads the policy.
    pub fn load(&self) -> Result<crate::model::Policy, Box<dyn std::error::Error>> {
        let device = self.device()?;
        use crate::model::named::{ModelSource, resolve};
        let mut policy = match resolve(&self.path).map_err(|e| format!("model.path: {e}"))? {
            ModelSource::Tiny => {
                crate::tiny::policy(&crate::tiny::TinyConfig::default(), self.tiny_seed, device)?
            }
            ModelSource::Folder(dir) => {
                crate::model::Policy::from_hf_dir(&dir, self.dtype, device)?
            }
        };
        if let Some(weights) = &self.weights {
            policy
                .model
                .var_store_mut()
                .load(weights)
                .map_err(|e| format!("{}: {e}", weights.display()))?;
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
            policy.model.attach_lora(lora, &self.base_model_name())?;
        }
        Ok(policy)
    }

    /// The base model as an adapter's `base_model_name_or_path` records it: the model
    /// name as given, or a folder as an absolute path (so `cove merge-lora` finds it
    /// from anywhere).
    pub fn base_model_name(&self) -> String {
        use crate::model::named::{ModelSource, NAMED_MODELS, TINY, resolve};
        let named = self.path == TINY || NAMED_MODELS.iter().any(|m| m.name == self.path);
        match resolve(&self.path) {
            Ok(ModelSource::Folder(dir)) if !named => std::path::absolute(&dir)
                .unwrap_or(dir)
                .display()
                .to_string(),
            _ => self.path.clone(),
        }
    }
}

/// Options of [`train_loop`].
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Draw the indicatif progress bar (else log lines only).
    pub progress: bool,
    /// Entropy-collapse warning threshold, as a fraction of the start entropy.
    pub entropy_warn_fraction: f64,
}

/// How a [`train_loop`] ended.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopOutcome {
    /// Steps done (including resumed ones).
    pub steps: u64,
    /// Whether Ctrl-C stopped it (a checkpoint was saved).
    pub interrupted: bool,
    /// The entropy-collapse warning, if raised.
    pub warning: Option<String>,
}

/// Runs a trainer to the end of its configured steps with a progress bar (ETA), the
/// entropy-collapse warning and Ctrl-C handling (save a checkpoint, stop cleanly);
/// resumes from the newest checkpoint in the run folder first. Then draws the entropy
/// and accuracy curves into `plots/`.
pub fn train_loop<R: crate::verifiers::Reward>(
    trainer: &mut crate::trainer::Trainer<R>,
    run: &RunDir,
    opts: &LoopOptions,
) -> Result<LoopOutcome, Box<dyn std::error::Error>> {
    let interrupted = interrupt_flag();
    // Data-parallel, rank 0 alone reports (every rank's metrics are the global ones).
    let main = trainer.is_main_rank();
    if let Some(step) = trainer.resume()?
        && main
    {
        eprintln!("resumed from the checkpoint of step {step}");
    }
    let total = trainer.config().steps;
    let bar = if opts.progress && main {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[{bar:30}] {pos}/{len} steps  {elapsed_precise} ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(trainer.state().step);
    let mut watch = crate::law::EntropyWatch::new(opts.entropy_warn_fraction);
    let mut warning = None;
    trainer.run(|m| {
        if main {
            bar.suspend(|| eprintln!("{}", m.summary()));
        }
        if let Some(w) = watch.observe(m.step, m.entropy) {
            if main {
                bar.suspend(|| eprintln!("warning: {w}"));
            }
            warning = Some(w);
        }
        bar.set_message(format!("H {:.3} acc {:.0}%", m.entropy, m.accuracy * 100.0));
        bar.inc(1);
        if interrupted.load(Ordering::SeqCst) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })?;
    bar.finish_and_clear();
    let stopped = interrupted.load(Ordering::SeqCst);
    if stopped {
        let path = trainer.save_checkpoint()?;
        if main {
            eprintln!("interrupted: checkpoint saved to {}", path.display());
        }
    }
    if main {
        plot_metrics(run)?;
    }
    Ok(LoopOutcome {
        steps: trainer.state().step,
        interrupted: stopped,
        warning,
    })
}

/// Draws `plots/entropy.png` and `plots/accuracy.png` from the run's metrics.
pub fn plot_metrics(run: &RunDir) -> Result<(), Box<dyn std::error::Error>> {
    let entropy = crate::law::read_metrics(&run.metrics(), "entropy", "accuracy")?;
    if entropy.is_empty() {
        return Ok(());
    }
    let series = |f: fn(&crate::law::LawPoint) -> f64, label: &str| crate::report::Series {
        label: label.to_string(),
        points: entropy.iter().map(|p| (p.step, f(p))).collect(),
    };
    crate::report::line_chart(
        &run.plots().join("entropy.png"),
        "Policy entropy",
        "step",
        "entropy (nats/token)",
        &[series(|p| p.entropy, "entropy")],
    )?;
    crate::report::line_chart(
        &run.plots().join("accuracy.png"),
        "Training accuracy",
        "step",
        "accuracy",
        &[series(|p| p.perf, "accuracy")],
    )?;
    Ok(())
}

/// Command-line arguments shared by `train-math` and `train-code`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// TOML file overriding the binary's embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any field: `--set trainer.optim.lr=1e-6` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run folder (same as `--set trainer.out_dir=...`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Training steps (same as `--set trainer.steps=...`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Training data file (same as `--set data.train=...`).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The `--set` flags, with the shortcut flags turned into `--set`s after them.
    pub fn all_sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
        if let Some(out) = &self.out {
            sets.push(format!("trainer.out_dir={}", quote(out)));
        }
        if let Some(steps) = self.steps {
            sets.push(format!("trainer.steps={steps}"));
        }
        if let Some(train) = &self.train {
            sets.push(format!("data.train={}", quote(train)));
        }
        sets
    }
}

/// The `[run]` section of a training binary's configuration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Entropy-collapse warning threshold (fraction of the start entropy).
    pub entropy_warn_fraction: f64,
    /// libtorch intra-op threads (0: libtorch's default).
    pub threads: i32,
}

/// Resolves the configuration, creates the run folder (writing the resolved config),
/// builds the trainer from `make` and runs [`train_loop`]; returns the text to print.
pub fn run_training<C, R>(
    defaults: &str,
    args: &TrainArgs,
    make: impl FnOnce(
        &C,
    )
        -> Result<(crate::trainer::Trainer<R>, RunOptions), Box<dyn std::error::Error>>,
) -> Result<String, Box<dyn std::error::Error>>
where
    C: serde::de::DeserializeOwned,
    R: crate::verifiers::Reward,
{
    let (cfg, table): (C, toml::Table) =
        resolve(defaults, args.config.as_deref(), &args.all_sets())?;
    let launch = crate::dist::Launch::from_env()?;
    let (trainer, run_opts) = make(&cfg)?;
    if run_opts.threads > 0 {
        tch::set_num_threads(run_opts.threads);
    } else if launch.local_world_size > 1 {
        // Ranks sharing a machine share its cores (oversubscribed, libtorch's OpenMP
        // threads stall each other).
        tch::set_num_threads(launch.cores_per_rank() as i32);
    }
    let timeout = std::time::Duration::from_secs_f64(trainer.config().dist.timeout_s);
    let mut trainer = trainer.with_collective(launch.connect(timeout)?)?;
    let out_dir = trainer.config().out_dir.clone();
    let run = if trainer.is_main_rank() {
        RunDir::create(&out_dir, &table)?
    } else {
        RunDir { root: out_dir }
    };
    let outcome = train_loop(
        &mut trainer,
        &run,
        &LoopOptions {
            progress: !args.quiet,
            entropy_warn_fraction: run_opts.entropy_warn_fraction,
        },
    )?;
    Ok(format!(
        "{} after {} steps; run folder {} (config.toml, metrics.jsonl, checkpoints/, plots/)\n{}",
        if outcome.interrupted {
            "stopped"
        } else {
            "finished"
        },
        outcome.steps,
        run.root.display(),
        outcome
            .warning
            .map(|w| format!("warning: {w}\n"))
            .unwrap_or_default(),
    ))
}

/// A training binary's `main`: [`run_training`], printing its summary (exit 0) or
/// `{binary}: error: ...` (exit 1).
pub fn training_main<C, R>(
    binary: &str,
    defaults: &str,
    args: &TrainArgs,
    make: impl FnOnce(
        &C,
    )
        -> Result<(crate::trainer::Trainer<R>, RunOptions), Box<dyn std::error::Error>>,
) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned,
    R: crate::verifiers::Reward,
{
    match run_training(defaults, args, make) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary}: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Arguments of `cove eval`: math accuracy of a policy on a dataset.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The dataset (JSONL or verl Parquet; layout detected).
    pub data: PathBuf,
    /// `tiny`, a named model (`smollm2-135m-instruct`) or a Hugging Face folder.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Weights to load over the model's (e.g. the demo's `sft.safetensors`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `cpu`, `cuda` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Parameter dtype.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Only the first N rows.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Samples per problem (accuracy is their mean).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Longest response in tokens.
    #[arg(long, default_value_t = 1024)]
    pub max_new_tokens: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `cove eval`: samples responses and scores them with the math verifier.
pub fn run_eval(args: &EvalArgs) -> Result<String, Box<dyn std::error::Error>> {
    let dtype: crate::model::Dtype = toml::Value::String(args.dtype.clone())
        .try_into()
        .map_err(|e| format!("--dtype {}: {e}", args.dtype))?;
    let spec = ModelSpec {
        path: args.model.clone(),
        dtype,
        device: args.device.clone(),
        tiny_seed: 0,
        weights: args.weights.clone(),
        lora: None,
    };
    let policy = spec.load()?;
    let mut rows = crate::data::math::load_math(&args.data, None)?;
    rows.truncate(args.limit.unwrap_or(usize::MAX));
    let cfg = crate::rollout::SamplingConfig {
        n: args.samples,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        ..Default::default()
    };
    let (correct, total) = math_accuracy(&policy, &rows, &cfg)?;
    Ok(format!(
        "{}: {} problems x {} samples, accuracy {:.2}% ({correct}/{total})\n",
        args.data.display(),
        rows.len(),
        args.samples,
        100.0 * correct as f64 / total.max(1) as f64,
    ))
}

/// Samples `cfg.n` responses per problem (rendered with the chat template when the policy
/// has one) and scores them with the math verifier: (correct, responses).
pub fn math_accuracy(
    policy: &crate::model::Policy,
    rows: &[crate::data::math::MathExample],
    cfg: &crate::rollout::SamplingConfig,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    use crate::verifiers::Reward;
    let prompts = rows
        .iter()
        .map(|r| {
            let messages: Vec<crate::model::Message> = r
                .prompt
                .messages()
                .iter()
                .map(|m| crate::model::Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            let text = match policy.chat_template {
                Some(_) => policy.apply_chat_template(&messages, true)?,
                None => r.prompt.user_text().to_string(),
            };
            Ok(policy.encode(&text)?)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let verifier = crate::verifiers::math::MathVerifier::new(Default::default());
    let samples = crate::rollout::generate(policy, &prompts, cfg)?;
    let correct = samples
        .iter()
        .filter(|s| {
            verifier
                .score(&rows[s.prompt_index].answer, &s.text)
                .correct
        })
        .count();
    Ok((correct, samples.len()))
}
