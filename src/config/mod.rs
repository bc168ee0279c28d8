//! The training configuration: one serde struct, loadable from TOML.
//!
//! Every field has a default; where the paper (Cui et al., 2025, built on verl) sets a
//! value, that value is the default: group size 8, temperature 1, clip 0.2 / 0.2,
//! token-mean aggregation, no KL penalty, no entropy bonus, KL-Cov with k = 2e-3 and
//! beta = 1 (Clip-Cov: r = 2e-4, bounds 1 and 5). Unknown keys are errors, so a typo
//! cannot silently fall back to a default.

pub mod layers;

pub use layers::{apply_set, from_table, merge, parse_set, resolve, resolve_table};

use crate::advantage::AdvantageEstimator;
use crate::loss::LossConfig;
use crate::optim::OptimConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How responses are sampled during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Sampling temperature (also used by the training forward so old and new
    /// log-probabilities are of the same distribution).
    pub temperature: f64,
    /// Nucleus sampling threshold (1 = off).
    pub top_p: f64,
    /// Longest response in tokens.
    pub max_new_tokens: usize,
    /// Strings that end a response.
    pub stop: Vec<String>,
    /// Which engine samples: `local` (Cove's own, in process) or `vllm` (a vLLM server,
    /// `[trainer.rollout.vllm]`).
    pub engine: crate::rollout::EngineKind,
    /// The vLLM server, when `engine = "vllm"`.
    pub vllm: crate::rollout::VllmConfig,
}

impl RolloutConfig {
    /// The sampler's settings for `n` samples per prompt from `seed` (no top-k: the
    /// rollout samples from the whole distribution the trainer optimises).
    pub fn sampling(&self, n: usize, seed: u64) -> crate::rollout::SamplingConfig {
        crate::rollout::SamplingConfig {
            n,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: 0,
            max_new_tokens: self.max_new_tokens,
            stop: self.stop.clone(),
            seed,
        }
    }
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 8192,
            stop: Vec::new(),
            engine: crate::rollout::EngineKind::Local,
            vllm: crate::rollout::VllmConfig::default(),
        }
    }
}

/// Which reference-KL estimator to add to the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `logp - ref_logp`.
    K1,
    /// `exp(ref - logp) - (ref - logp) - 1` (non-negative, low variance).
    K3,
}

/// Reference-model KL penalty (off by default, as in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefKlConfig {
    /// Coefficient of the per-token KL added to the loss.
    pub coef: f64,
    /// Estimator.
    pub estimator: KlEstimator,
}

/// Dynamic sampling (DAPO): drop groups whose rewards are all equal (no signal) and
/// sample more prompts to refill the batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicSampling {
    /// On or off (off by default).
    pub enabled: bool,
    /// At most this many rollout rounds per step; the batch may stay short after.
    pub max_rounds: usize,
}

impl Default for DynamicSampling {
    fn default() -> Self {
        DynamicSampling {
            enabled: false,
            max_rounds: 3,
        }
    }
}

/// Asynchronous training: `[trainer.async]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncConfig {
    /// How many policy versions (training steps) a trajectory may lag behind the policy
    /// it trains: the rollouts of the next `max_staleness` steps are sampled while the
    /// current step trains, step `s`'s by the policy of step `s - max_staleness`. 0:
    /// synchronous. Needs an engine with weights of its own (`rollout.engine = "vllm"`).
    pub max_staleness: u64,
}

/// Checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every this many steps (0 = only at the end).
    pub every: u64,
    /// Keep the newest this many checkpoints.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 50, keep: 2 }
    }
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of everything random (data order, sampling, Clip-Cov's choice).
    pub seed: u64,
    /// Training steps (one rollout batch each).
    pub steps: u64,
    /// Prompts per step (the paper: 256).
    pub prompts_per_step: usize,
    /// Responses per prompt (the paper: 8).
    pub group_size: usize,
    /// Responses per optimizer mini-batch (the paper: 256 = 32 prompts x 8).
    pub mini_batch_size: usize,
    /// Responses per forward/backward micro-batch (gradient accumulation).
    pub micro_batch_size: usize,
    /// Passes over the rollout batch per step.
    pub ppo_epochs: usize,
    /// Rows per forward when recomputing old or reference log-probabilities.
    pub logprob_batch_size: usize,
    /// Form micro-batches (training, old-log-prob and reference passes) by this budget
    /// of prompt + response tokens instead of by row counts, first-fit decreasing;
    /// `None`: `micro_batch_size` / `logprob_batch_size` rows. Changes speed and
    /// memory only: the loss is normalised and selected over the mini-batch.
    pub max_tokens_per_micro_batch: Option<usize>,
    /// Take the old log-probs from the rollout (Cove's own sampler, same weights, dtype
    /// and temperature) instead of recomputing them with a no-grad forward.
    pub reuse_rollout_logprobs: bool,
    /// Compute each group's prompt once per micro-batch in the training, old-log-prob
    /// and reference passes; its responses attend to the one copy.
    pub share_prompt_prefix: bool,
    /// Keep only each decoder layer's input in the training forward and recompute
    /// the layer in the backward (activation checkpointing): activation memory of one
    /// layer instead of all, for one more forward of the layers. Gradients are equal.
    pub activation_checkpointing: bool,
    /// Compute the log-probs and entropies of the training forward over the LM head in
    /// chunks of at most [`crate::model::LOGIT_BUDGET`] logits that keep nothing for the
    /// backward, which recomputes each chunk: no full-vocabulary tensor outlives its
    /// chunk, for one more `lm_head` matmul. Values and gradients are equal.
    pub recompute_logits: bool,
    /// Numeric precision: `f32`, `bf16` or `bf16-mixed` (bf16 compute and rollout, f32
    /// master weights, gradient sums and moments; checkpoints keep the masters).
    pub precision: crate::optim::Precision,
    /// Render prompts with the policy's chat template as one user message (else the
    /// prompt text is tokenized as is).
    pub chat_template: bool,
    /// Advantage estimator.
    pub advantage: AdvantageEstimator,
    /// Policy loss and entropy control.
    pub loss: LossConfig,
    /// Optimizer and learning-rate schedule.
    pub optim: OptimConfig,
    /// Sampling.
    pub rollout: RolloutConfig,
    /// Dynamic sampling.
    pub dynamic_sampling: DynamicSampling,
    /// Asynchronous training (rollouts ahead of the update).
    #[serde(rename = "async")]
    pub asynchronous: AsyncConfig,
    /// Reference-model KL penalty (`None`: off).
    pub ref_kl: Option<RefKlConfig>,
    /// Checkpointing.
    pub checkpoint: CheckpointConfig,
    /// Data-parallel training (used when a launcher starts several ranks).
    pub dist: DistConfig,
    /// Run folder: `metrics.jsonl` and `checkpoints/` go here.
    pub out_dir: PathBuf,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1,
            steps: 100,
            prompts_per_step: 256,
            group_size: 8,
            mini_batch_size: 256,
            micro_batch_size: 8,
            ppo_epochs: 1,
            logprob_batch_size: 16,
            max_tokens_per_micro_batch: None,
            reuse_rollout_logprobs: true,
            share_prompt_prefix: true,
            activation_checkpointing: false,
            recompute_logits: true,
            precision: crate::optim::Precision::F32,
            chat_template: true,
            advantage: AdvantageEstimator::Grpo,
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            rollout: RolloutConfig::default(),
            dynamic_sampling: DynamicSampling::default(),
            asynchronous: AsyncConfig::default(),
            ref_kl: None,
            checkpoint: CheckpointConfig::default(),
            dist: DistConfig::default(),
            out_dir: PathBuf::from("runs/cove"),
        }
    }
}

/// Data-parallel settings (see [`crate::dist`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistConfig {
    /// How long a rank waits at a collective for the others before it stops with an
    /// error naming the missing ranks. It must cover the longest imbalance between
    /// ranks (a slow rollout, rank 0 writing a checkpoint); PyTorch's default is the
    /// same 30 minutes.
    pub timeout_s: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig { timeout_s: 1800.0 }
    }
}

/// Errors loading or checking a configuration; each names the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key (line and column
    /// included).
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: toml::de::Error,
    },
    /// A `--set` flag is not `key=value`, or its key crosses a non-table value.
    #[error("--set {flag}: {message}")]
    BadSet {
        /// The flag's text.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// The resolved layers do not fit the configuration type (unknown or mistyped
    /// field; the message names it).
    #[error("invalid configuration: {0}")]
    Unfit(String),
    /// A value is out of range.
    #[error("{path}: `{field}`: {why}")]
    Invalid {
        /// The file (or `<config>` for an in-memory configuration).
        path: PathBuf,
        /// The dotted field name.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl TrainConfig {
    /// Parses TOML text (`origin` names the source in errors) and validates it.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<TrainConfig, ConfigError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: origin.to_path_buf(),
            source,
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Loads and validates a TOML file.
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TrainConfig::from_toml_str(&text, path)
    }

    /// Checks ranges and consistency; `origin` names the source in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: String| {
            Err(ConfigError::Invalid {
                path: origin.to_path_buf(),
                field,
                why,
            })
        };
        let batch = self.prompts_per_step * self.group_size;
        if self.prompts_per_step == 0 {
            return bad("prompts_per_step", "must be at least 1".into());
        }
        if self.group_size == 0 {
            return bad("group_size", "must be at least 1".into());
        }
        if self.mini_batch_size == 0 || !batch.is_multiple_of(self.mini_batch_size) {
            return bad(
                "mini_batch_size",
                format!("must divide prompts_per_step x group_size = {batch}"),
            );
        }
        if self.micro_batch_size == 0 || !self.mini_batch_size.is_multiple_of(self.micro_batch_size)
        {
            return bad(
                "micro_batch_size",
                format!("must divide mini_batch_size = {}", self.mini_batch_size),
            );
        }
        if self.ppo_epochs == 0 {
            return bad("ppo_epochs", "must be at least 1".into());
        }
        if self.logprob_batch_size == 0 {
            return bad("logprob_batch_size", "must be at least 1".into());
        }
        if self.max_tokens_per_micro_batch == Some(0) {
            return bad("max_tokens_per_micro_batch", "must be at least 1".into());
        }
        if !(self.rollout.temperature > 0.0 && self.rollout.temperature.is_finite()) {
            return bad("rollout.temperature", "must be > 0 for training".into());
        }
        if !(self.optim.lr >= 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", "must be finite and >= 0".into());
        }
        let c = &self.loss.clip;
        // eps_low = 1 puts the lower clip at ratio 0, where it never binds: the paper's
        // "PPO clip 1.0" for Clip-Cov.
        if !(0.0..=1.0).contains(&c.eps_low) {
            return bad("loss.clip.eps_low", "must be in [0, 1]".into());
        }
        if !(c.eps_high >= 0.0 && c.eps_high.is_finite()) {
            return bad("loss.clip.eps_high", "must be >= 0".into());
        }
        if let Some(d) = c.dual_clip
            && d.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad("loss.clip.dual_clip", "must be > 1".into());
        }
        if c.dual_clip.is_some() && self.loss.policy != crate::loss::PolicyLoss::Ppo {
            return bad(
                "loss.clip.dual_clip",
                "is PPO's dual-clip: loss.policy = \"gspo\" and \"cispo\" have none".into(),
            );
        }
        if let Some(rc) = &self.loss.rollout_correction {
            if !(rc.cap > 1.0 && rc.cap.is_finite()) {
                return bad(
                    "loss.rollout_correction.cap",
                    "must be finite and > 1".into(),
                );
            }
            if self.reuse_rollout_logprobs {
                return bad(
                    "loss.rollout_correction",
                    "weighs the trainer's old log-probs against the behaviour policy's, so \
                     it needs them recomputed: set trainer.reuse_rollout_logprobs = false"
                        .into(),
                );
            }
        }
        if let Err(e) = self.loss.control.build() {
            return bad("loss.control", e.to_string());
        }
        if self.rollout.engine == crate::rollout::EngineKind::Vllm
            && let Err((field, why)) = self.rollout.vllm.check()
        {
            return bad(field, why);
        }
        if self.asynchronous.max_staleness > 0 {
            if self.rollout.engine == crate::rollout::EngineKind::Local {
                return bad(
                    "async.max_staleness",
                    "needs an engine with weights of its own, sampling while the trainer \
                     updates: set trainer.rollout.engine = \"vllm\""
                        .into(),
                );
            }
            if self.dynamic_sampling.enabled {
                return bad(
                    "async.max_staleness",
                    "does not combine with dynamic_sampling (its refills depend on the \
                     step's own scores)"
                        .into(),
                );
            }
        }
        if self.dynamic_sampling.enabled && self.dynamic_sampling.max_rounds == 0 {
            return bad("dynamic_sampling.max_rounds", "must be at least 1".into());
        }
        if !(self.dist.timeout_s > 0.0 && self.dist.timeout_s.is_finite()) {
            return bad("dist.timeout_s", "must be finite and > 0".into());
        }
        Ok(())
    }

    /// Checks that a step shards over `world` ranks by whole groups, each global
    /// optimizer mini-batch made of an equal share of every rank's: `prompts_per_step`
    /// and `mini_batch_size / group_size` multiples of `world`, and no dynamic
    /// sampling (its refills would differ per rank).
    pub fn validate_world(&self, world: usize) -> Result<(), ConfigError> {
        if world <= 1 {
            return Ok(());
        }
        let bad = |field: &'static str, why: String| {
            Err(ConfigError::Invalid {
                path: PathBuf::from("<config>"),
                field,
                why,
            })
        };
        let g = self.group_size;
        if !self.prompts_per_step.is_multiple_of(world) {
            return bad(
                "prompts_per_step",
                format!(
                    "{} is not a multiple of the {world} ranks",
                    self.prompts_per_step
                ),
            );
        }
        if !self.mini_batch_size.is_multiple_of(g * world) {
            return bad(
                "mini_batch_size",
                format!(
                    "{} is not a multiple of group_size x ranks = {g} x {world}: each rank \
                     takes whole groups of every mini-batch",
                    self.mini_batch_size
                ),
            );
        }
        if self.dynamic_sampling.enabled {
            return bad(
                "dynamic_sampling.enabled",
                format!("not supported with {world} ranks (each rank would refill differently)"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = TrainConfig::default();
        let text = toml::to_string(&cfg).unwrap();
        let back = TrainConfig::from_toml_str(&text, Path::new("x.toml")).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = TrainConfig::from_toml_str(
            "group_size = 8\nmicro_batch_size = 3\n",
            Path::new("run.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("run.toml") && e.contains("micro_batch_size"),
            "{e}"
        );
        let e = TrainConfig::from_toml_str("[loss]\nagg = \"token-sum\"\n", Path::new("run.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.toml") && e.contains("line 2"), "{e}");
        let e = TrainConfig::from_toml_str(
            "[loss.control]\nkind = \"clip-cov\"\nlb = 5.0\nub = 1.0\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ub"), "{e}");
    }

    #[test]
    fn control_kinds_parse() {
        let cfg = TrainConfig::from_toml_str(
            "[loss.control]\nkind = \"adaptive\"\ntarget_entropy = 0.5\nmin = 0.1\nmax = 10.0\n[loss.control.base]\nkind = \"kl-cov\"\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert!(matches!(
            cfg.loss.control,
            crate::loss::ControlConfig::Adaptive { .. }
        ));
    }
}
