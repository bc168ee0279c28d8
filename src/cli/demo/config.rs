//! The demo's configuration (`configs/demo.toml`, `configs/demo-smollm2.toml`), its
//! command line and its figures.

use crate::config::ConfigError;
use crate::law::{self, LawPoint};
use crate::loss::LossConfig;
use crate::model::ModelSpec;
use std::path::PathBuf;

/// Everything the demo does, resolved from [`super::REAL_MODEL_DEFAULTS`] (or
/// [`super::TINY_DEFAULTS`]), `--config` and `--set`.
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
    /// Prompts of the fixed entropy probe (the first N of the evaluation set, one
    /// response each sampled once from the starting policy): its entropy is measured
    /// after every step.
    #[serde(default = "default_probe_prompts")]
    pub probe_prompts: usize,
    /// Runs of every arm, with seeds `seed`, `seed + 1`, ... (`--seeds N`).
    #[serde(default = "default_seeds")]
    pub seeds: usize,
    /// Also run the paired mechanism test (`--paired`; see `paired.rs`).
    #[serde(default)]
    pub paired: bool,
    /// Fixed rollout batches of the paired test.
    #[serde(default = "default_paired_batches")]
    pub paired_batches: usize,
    /// Warn when entropy falls below this fraction of its start value.
    pub entropy_warn_fraction: f64,
    /// Fraction of steps the early law fit uses (the paper: 0.15).
    pub fit_fraction: f64,
    /// The supervised warm start (absent: GRPO starts from the model as loaded).
    pub sft: Option<SftConfig>,
    /// GRPO settings shared by the runs (each method's `loss` is applied over `loss`).
    pub grpo: crate::config::TrainConfig,
    /// The runs (arms): name and loss.
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
    /// Its loss: any fields of `trainer.loss` (`clip`, `agg`, `control`, `scope`, ...),
    /// each replacing the shared `grpo.loss`'s whole, so arms can differ in their PPO clip as the
    /// paper's do (and an arm can separate that confound: GRPO with the Cov arms' clip).
    #[serde(default)]
    pub loss: toml::Table,
}

impl Method {
    /// The arm's whole loss: `base` with the fields of its `loss` table replaced; an
    /// unknown or mistyped field is an error naming the arm.
    pub fn loss_config(&self, base: &LossConfig) -> Result<LossConfig, ConfigError> {
        let unfit = |e: String| ConfigError::Unfit(format!("methods `{}`: loss: {e}", self.name));
        let mut table = toml::Table::try_from(base).map_err(|e| unfit(e.to_string()))?;
        // Field by field: a field the arm gives replaces the shared one whole (a control
        // of another kind shares none of its parameters).
        table.extend(self.loss.clone());
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| unfit(e.message().to_string()))
    }
}

/// Arguments of `cove demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Report folder.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// The policy: absent, SmolLM2-135M-Instruct (embedded defaults
    /// `configs/demo-smollm2.toml`, the 2-core CPU budget); a named pretrained model or a
    /// Hugging Face folder with the same budget; or `tiny` (embedded defaults
    /// `configs/demo.toml`, the fast toy).
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
    /// Run every arm with N seeds (same as `--set seeds=N`).
    #[arg(long, value_name = "N")]
    pub seeds: Option<usize>,
    /// Also run the paired mechanism test (same as `--set paired=true`).
    #[arg(long)]
    pub paired: bool,
}

fn default_probe_prompts() -> usize {
    16
}

fn default_seeds() -> usize {
    1
}

fn default_paired_batches() -> usize {
    16
}

/// The paired mechanism test's result for one Cov arm.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairedResult {
    /// The Cov arm.
    pub name: String,
    /// The GRPO arm with the same PPO clip.
    pub baseline: String,
    /// Batches compared.
    pub batches: usize,
    /// Mean over the batches of the arm's probe-entropy change across one step minus the
    /// baseline's on the same batch.
    pub mean_entropy_change: f64,
    /// Lower end of its 95% interval.
    pub ci95_low: f64,
    /// Upper end of its 95% interval.
    pub ci95_high: f64,
    /// The arm's own mean probe-entropy change per step.
    pub arm_mean_change: f64,
    /// The baseline's mean probe-entropy change per step.
    pub baseline_mean_change: f64,
}

/// Per-method results for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    /// The method's name.
    pub name: String,
    /// The run's seed.
    pub seed: u64,
    /// `(step, entropy)` of every step: the sampled batch's, under the policy that
    /// sampled it.
    pub entropy: Vec<(f64, f64)>,
    /// `(step, entropy on the fixed probe)`, step 0 (the start) included.
    pub probe_entropy: Vec<(f64, f64)>,
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
    /// The arms' runs, seed by seed (all arms of the first seed first).
    pub methods: Vec<MethodResult>,
    /// The paired mechanism test, per Cov arm (empty unless asked for).
    pub paired: Vec<PairedResult>,
    /// Law fitted on the first method's (plain GRPO's) points.
    pub law: Option<law::LawFit>,
    /// Early-fit check on the same points.
    pub extrapolation: Option<law::Extrapolation>,
    /// Total wall time in seconds.
    pub seconds: f64,
}
