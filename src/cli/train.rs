//! The training loop of the bundled binaries and the demo: progress bar, entropy
//! warning, Ctrl-C checkpointing, final plots; and the shared `train-*` command line.

use super::plot::{Series, line_chart};
use crate::config::{from_table, resolve_table};
use crate::dist::Launch;
use crate::recipe::RunOptions;
use crate::reproducible::{CpuMath, strict_cpu_math};
use crate::run_dir::RunDir;
use crate::tensorboard::TensorBoardWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Installs a Ctrl-C handler and returns the flag it raises. The training loops check the
/// flag between steps, save a checkpoint and exit cleanly; a second Ctrl-C aborts at once.
/// Installing twice in one process returns the first flag.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let raised = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if raised.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: aborting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: finishing the current step, then saving a checkpoint");
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C handler not installed ({e}); Ctrl-C will not checkpoint");
        }
        flag
    })
    .clone()
}

/// Options of [`train_loop`].
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Draw the indicatif progress bar (else log lines only).
    pub progress: bool,
    /// Entropy-collapse warning threshold, as a fraction of the start entropy.
    pub entropy_warn_fraction: f64,
    /// Also write each step's metrics as TensorBoard scalars into the run folder.
    pub tensorboard: bool,
}

/// The `[logging]` section every training binary accepts: where metrics go besides
/// `metrics.jsonl` and the plots. The training loop owns it, so the loop takes it off the
/// resolved configuration before a task's own sections are read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    /// TensorBoard event files in the run folder (`tensorboard --logdir runs/`).
    pub tensorboard: bool,
}

impl Logging {
    /// Removes `[logging]` from `table` and reads it (absent: the defaults).
    pub fn take(table: &mut toml::Table) -> Result<Logging, Box<dyn std::error::Error>> {
        match table.remove("logging") {
            None => Ok(Logging::default()),
            Some(section) => section
                .try_into()
                .map_err(|e: toml::de::Error| format!("[logging]: {}", e.message()).into()),
        }
    }
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
    let mut board = match opts.tensorboard && main {
        true => Some(TensorBoardWriter::create(&trainer.run_dir().root)?),
        false => None,
    };
    let mut board_error = None;
    trainer.run(|m| {
        if main {
            bar.suspend(|| eprintln!("{}", m.summary()));
        }
        if let Some(writer) = board.as_mut()
            && let Err(e) = writer.write_step(m)
        {
            board_error = Some(format!("{}: {e}", writer.path().display()));
            return std::ops::ControlFlow::Break(());
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
    if let Some(e) = board_error {
        return Err(format!("writing TensorBoard events: {e}").into());
    }
    let stopped = interrupted.load(Ordering::SeqCst);
    if stopped {
        let path = trainer.save_checkpoint()?;
        if main {
            eprintln!(
                "interrupted: checkpoint saved to {}; the same command with --resume continues",
                path.display()
            );
        }
    }
    if main {
        plot_metrics(trainer.run_dir())?;
    }
    Ok(LoopOutcome {
        steps: trainer.state().step,
        interrupted: stopped,
        warning,
    })
}

/// Draws `plots/entropy.png`, `plots/accuracy.png` and, when the run measured held-out
/// scores, `plots/eval.png` (pass@1, and pass@k when k > 1) from the run's metrics.
pub fn plot_metrics(run: &RunDir) -> Result<(), Box<dyn std::error::Error>> {
    let steps = crate::metrics::read_metrics(&run.metrics())?;
    if steps.is_empty() {
        return Ok(());
    }
    let series = |f: fn(&crate::metrics::StepMetrics) -> f64, label: &str| Series {
        label: label.to_string(),
        points: steps.iter().map(|m| (m.step as f64, f(m))).collect(),
        ..Series::default()
    };
    line_chart(
        &run.plots().join("entropy.png"),
        "Policy entropy",
        "step",
        "entropy (nats/token)",
        &[series(|m| m.entropy, "entropy")],
    )?;
    line_chart(
        &run.plots().join("accuracy.png"),
        "Training accuracy",
        "step",
        "accuracy",
        &[series(|m| m.accuracy, "accuracy")],
    )?;
    let measured: Vec<(f64, crate::eval::EvalScores)> = steps
        .iter()
        .filter_map(|m| m.eval.map(|e| (m.step as f64, e)))
        .collect();
    if let Some((_, first)) = measured.first() {
        let eval_series = |f: fn(&crate::eval::EvalScores) -> f64, label: String| Series {
            label,
            points: measured.iter().map(|(step, e)| (*step, f(e))).collect(),
            ..Series::default()
        };
        let mut lines = vec![eval_series(|e| e.pass_at_1, "pass@1".into())];
        if first.k > 1 {
            lines.push(eval_series(|e| e.pass_at_k, format!("pass@{}", first.k)));
        }
        line_chart(
            &run.plots().join("eval.png"),
            "Held-out scores",
            "step",
            "score",
            &lines,
        )?;
    }
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
    /// Continue the run in the run folder from its newest checkpoint, with the
    /// configuration it was started with (only `trainer.steps` and `logging.tensorboard` may change). Without it,
    /// a run folder that already holds a run is refused.
    #[arg(long)]
    pub resume: bool,
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

/// Switches CPU math to its thread-count-independent mode
/// ([`crate::reproducible::strict_cpu_math`]), resolves the configuration, creates the
/// run folder (writing the resolved config), builds the trainer from `make` and runs
/// [`train_loop`]; returns the text to print.
pub fn run_training<C, R>(
    defaults: &str,
    args: &TrainArgs,
    make: impl FnOnce(
        &C,
        &Launch,
    )
        -> Result<(crate::trainer::Trainer<R>, RunOptions), Box<dyn std::error::Error>>,
) -> Result<String, Box<dyn std::error::Error>>
where
    C: serde::de::DeserializeOwned,
    R: crate::verifiers::Reward,
{
    if let CpuMath::TooLate(code) = strict_cpu_math() {
        eprintln!(
            "warning: MKL was in use before the run started (mkl_cbwr_set returned {code}); \
             CPU results may depend on the thread count"
        );
    }
    let table = resolve_table(defaults, args.config.as_deref(), &args.all_sets())?;
    let mut task = table.clone();
    let logging = Logging::take(&mut task)?;
    let cfg: C = from_table(task)?;
    let out_dir: PathBuf = table
        .get("trainer")
        .and_then(|t| t.get("out_dir"))
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .ok_or("the configuration has no trainer.out_dir")?;
    RunDir::check_start(&out_dir, &table, args.resume)?;
    let launch = Launch::from_env()?;
    let (trainer, run_opts) = make(&cfg, &launch)?;
    if run_opts.threads > 0 {
        tch::set_num_threads(run_opts.threads);
    } else if launch.local_world_size > 1 {
        // Ranks sharing a machine share its cores (oversubscribed, libtorch's OpenMP
        // threads stall each other).
        tch::set_num_threads(launch.cores_per_rank() as i32);
    }
    let timeout = std::time::Duration::from_secs_f64(trainer.config().dist.timeout_s);
    let mut trainer = trainer.with_collective(launch.connect(timeout)?)?;
    let run = if trainer.is_main_rank() {
        RunDir::create(&out_dir, &table)?
    } else {
        RunDir::new(&out_dir)
    };
    if trainer.config().rollout.engine == crate::rollout::EngineKind::Vllm {
        trainer = trainer.with_vllm()?;
    }
    let outcome = train_loop(
        &mut trainer,
        &LoopOptions {
            progress: !args.quiet,
            entropy_warn_fraction: run_opts.entropy_warn_fraction,
            tensorboard: logging.tensorboard,
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
        &Launch,
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
