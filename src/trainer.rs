//! The GRPO trainer: rollout → rewards (in parallel) → advantages → old log-probs (the
//! rollout's own, or recomputed with a no-grad training forward) → `ppo_epochs` ×
//! mini-batches × micro-batches with gradient accumulation → AdamW (grad-norm clipping,
//! lr schedule); metrics per step and atomic, resumable checkpoints.
//!
//! One optimizer mini-batch ([`Trainer::step`] → `optimize_mini_batch`) is: plan its
//! micro-batches ([`crate::batching`]: by rows or by a token budget, each group's
//! prompt shared); select Clip-Cov / KL-Cov tokens over the whole mini-batch (from the
//! old log-probs when they are current, else from the training forwards themselves,
//! with a correction pass for micro-batches whose backward came first); forward and
//! backward each packed micro-batch under the mini-batch's normaliser; clip, step.
//!
//! It composes a [`Reward`] (what a task needs: one implementation and a dataset of
//! [`Example`]s), an [`Advantage`] estimator and an [`EntropyControl`], all chosen by
//! the [`TrainConfig`] or replaced with [`Trainer::with_advantage`] /
//! [`Trainer::with_control`].
//!
//! ```no_run
//! use cove::trainer::{Example, Trainer};
//! use cove::verifiers::{Reward, Score};
//! struct Exact;
//! impl Reward for Exact {
//!     type Task = String;
//!     fn name(&self) -> &str { "exact" }
//!     fn score(&self, gold: &String, response: &str) -> Score {
//!         let ok = response.trim() == gold;
//!         Score { reward: ok as u8 as f64, correct: ok, details: String::new() }
//!     }
//! }
//! let policy = cove::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
//! let data = vec![Example { prompt: "What is 2+2?".into(), task: "4".to_string() }];
//! let mut trainer = Trainer::new(Default::default(), policy, Exact, data).unwrap();
//! trainer.resume().unwrap();
//! trainer.run(|m| { println!("{}", m.summary()); std::ops::ControlFlow::Continue(()) }).unwrap();
//! ```
//!
//! Reproducibility: every random choice of step `s` is keyed by `(seed, s)` (rollout
//! streams, Clip-Cov's choice) and the data order by `(seed, epoch)`, so a run resumed
//! from a checkpoint continues the same trajectory as an uninterrupted one (on the same
//! device and thread count).
//!
//! Data parallelism ([`Trainer::with_collective`], [`crate::dist`]): each rank samples
//! and trains on its share of every optimizer mini-batch (whole groups); rewards, the
//! step's per-token tensors and, when deferred, the current log-probs are gathered, so
//! advantages, normalisers, the selection and the metrics are the single-process ones;
//! gradients are summed across ranks before clipping. Each rollout stream is keyed by
//! its prompt's global position, so any world size samples what one process samples.

use crate::advantage::Advantage;
use crate::batching::{MicroBatch, MicroBatching, SeqShape, plan_micro_batches};
use crate::checkpoint::{self, CheckpointError, TrainState};
use crate::config::{ConfigError, KlEstimator, TrainConfig};
use crate::dist::{Collective, DistError, ReduceOp, Single, all_reduce_buckets};
use crate::loss::{
    AggNorm, ControlConfig, EntropyControl, LossSums, MiniBatchPlan, SelectionLogp, SelectionScope,
    TokenTensors, aggregate, cov_stats, micro_batch_loss, plan_mini_batch,
};
use crate::metrics::{MetricsWriter, PhaseSeconds, StepMetrics};
use crate::model::{
    LogprobOptions, Message, ModelError, PackedItem, Policy, ResponseLogprobs,
    packed_response_logprobs,
};
use crate::optim::{AdamW, Precision, cast_variables};
use crate::rollout::{FinishReason, RolloutError, generate_keyed};
use cove_verifiers::{Reward, Score};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::{Kind, Tensor};

/// One training example: the prompt text and what the reward needs to score it.
#[derive(Debug, Clone)]
pub struct Example<T> {
    /// The prompt (rendered with the chat template as a user message when
    /// `chat_template` is on).
    pub prompt: String,
    /// The task data given to [`Reward::score`].
    pub task: T,
}

/// Errors of a training run; each names its source.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Sampling failed.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The metrics file could not be written.
    #[error("{path}: {source}")]
    Metrics {
        /// The metrics file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A dataset example is unusable.
    #[error("dataset example {index}: {why}")]
    Data {
        /// Index of the example.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A row given to [`Trainer::step_on`] is unusable.
    #[error("batch row {index}: {why}")]
    Batch {
        /// Index of the row.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A collective operation across data-parallel ranks failed.
    #[error(transparent)]
    Dist(#[from] DistError),
    /// The checkpoint does not belong to this configuration.
    #[error("{path}: {why}")]
    Resume {
        /// The checkpoint folder.
        path: PathBuf,
        /// What does not match.
        why: String,
    },
}

/// SplitMix64 of `a` combined with `b`: derives independent seeds.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One sampled response with its score: a row of a step's batch (what
/// [`Trainer::step`] samples itself, or what [`Trainer::step_on`] is given).
#[derive(Debug, Clone)]
pub struct Row {
    /// Index of its example (prompt) in the trainer's dataset.
    pub example: usize,
    /// Its group (responses to one prompt share one; GRPO normalises within it).
    pub group: usize,
    /// The response's token ids.
    pub response: Vec<i64>,
    /// The sampler's log-prob of each response token (the old log-probs when
    /// `reuse_rollout_logprobs` is on).
    pub logprobs: Vec<f32>,
    /// The sampler's entropy at each response token.
    pub entropies: Vec<f32>,
    /// Its reward.
    pub score: Score,
    /// Why it ended.
    pub finish: FinishReason,
}

/// The GRPO trainer (see the module docs).
pub struct Trainer<R: Reward> {
    cfg: TrainConfig,
    policy: Policy,
    reference: Option<Policy>,
    reward: R,
    data: Vec<Example<R::Task>>,
    /// Token ids of every example's prompt (shared with the step's sequence views).
    prompt_ids: Arc<Vec<Vec<i64>>>,
    advantage: Box<dyn Advantage>,
    control: Box<dyn EntropyControl>,
    opt: AdamW,
    state: TrainState,
    order: (u64, Vec<usize>),
    metrics: Option<MetricsWriter>,
    /// The data-parallel process group ([`Single`]: this process alone).
    comm: Box<dyn Collective>,
}

fn pad_to(x: &Tensor, width: i64) -> Tensor {
    let r = x.size()[1];
    if r < width {
        x.constant_pad_nd([0, width - r])
    } else {
        x.shallow_clone()
    }
}

impl<R: Reward> Trainer<R> {
    /// A trainer for `policy` on `data` scored by `reward`. Validates the
    /// configuration and tokenizes every prompt (an error names the example).
    pub fn new(
        cfg: TrainConfig,
        policy: Policy,
        reward: R,
        data: Vec<Example<R::Task>>,
    ) -> Result<Trainer<R>, TrainError> {
        cfg.validate(std::path::Path::new("<config>"))?;
        if data.is_empty() {
            return Err(TrainError::Data {
                index: 0,
                why: "the dataset is empty".into(),
            });
        }
        let mut prompt_ids = Vec::with_capacity(data.len());
        for (index, ex) in data.iter().enumerate() {
            let text = if cfg.chat_template {
                policy.apply_chat_template(&[Message::user(&ex.prompt)], true)?
            } else {
                ex.prompt.clone()
            };
            let ids = policy.encode(&text)?;
            if ids.is_empty() {
                return Err(TrainError::Data {
                    index,
                    why: "the prompt tokenizes to nothing".into(),
                });
            }
            prompt_ids.push(ids);
        }
        let opt = match cfg.precision {
            Precision::F32 => AdamW::new(policy.model.var_store(), cfg.optim.clone()),
            Precision::Bf16 => {
                cast_variables(policy.model.var_store(), Kind::BFloat16);
                AdamW::new(policy.model.var_store(), cfg.optim.clone())
            }
            Precision::Bf16Mixed => {
                let opt = AdamW::with_f32_masters(policy.model.var_store(), cfg.optim.clone());
                cast_variables(policy.model.var_store(), Kind::BFloat16);
                opt
            }
        };
        let control = cfg.loss.control.build().map_err(|e| ConfigError::Invalid {
            path: "<config>".into(),
            field: "loss.control",
            why: e.to_string(),
        })?;
        let state = TrainState {
            step: 0,
            data_cursor: 0,
            seed: cfg.seed,
            optimizer_step: 0,
            control_strength: control.strength(),
        };
        Ok(Trainer {
            advantage: Box::new(cfg.advantage),
            cfg,
            policy,
            reference: None,
            reward,
            data,
            prompt_ids: Arc::new(prompt_ids),
            control,
            opt,
            state,
            order: (u64::MAX, Vec::new()),
            metrics: None,
            comm: Box::new(Single),
        })
    }

    /// Trains as one rank of a data-parallel job (see [`crate::dist`]): each step this
    /// rank samples and trains on its share of the prompts, whole groups of every
    /// optimizer mini-batch; gradients, normalisers, the Clip-Cov / KL-Cov selection
    /// and the metrics are global, so the update is the single-process one. Rank 0
    /// alone writes metrics and checkpoints. Checks that the configuration shards over
    /// the world and that every rank starts from the same weights.
    pub fn with_collective(mut self, comm: Box<dyn Collective>) -> Result<Self, TrainError> {
        self.cfg.validate_world(comm.world_size())?;
        self.comm = comm;
        self.check_same_weights("the initial weights")?;
        Ok(self)
    }

    /// The data-parallel process group this trainer runs in.
    pub fn collective(&self) -> &dyn Collective {
        self.comm.as_ref()
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_main_rank(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Fails unless every rank holds the same trainable parameters (per tensor, the
    /// f64 sums of its values and of their squares, gathered and compared bitwise):
    /// ranks that load different weights would silently train different models. The
    /// sums reduce on the tensor's device without an f64 copy of the weights.
    fn check_same_weights(&self, what: &str) -> Result<(), TrainError> {
        let world = self.comm.world_size();
        if world == 1 {
            return Ok(());
        }
        let params = self.named_params();
        let prints: Vec<f64> = params
            .iter()
            .flat_map(|(_, t)| {
                let t = t.detach();
                [t.sum(Kind::Double), t.square().sum(Kind::Double)].map(|s| s.double_value(&[]))
            })
            .collect();
        let all = self
            .comm
            .all_gather(&Tensor::from_slice(&prints), "comparing parameters")?;
        let all = Vec::<f64>::try_from(&all).map_err(ModelError::Torch)?;
        let n = prints.len();
        for rank in 1..world {
            if let Some(i) = (0..n).find(|&i| all[rank * n + i].to_bits() != all[i].to_bits()) {
                return Err(DistError::Launch(format!(
                    "{what}: rank {rank}'s `{}` differs from rank 0's (do all ranks load the same \
                     model and checkpoint?)",
                    params[i / 2].0
                ))
                .into());
            }
        }
        Ok(())
    }

    /// The single-process position, among a step's (or a refill round's) `prompts`
    /// prompts, of rank `rank`'s `q`-th: each optimizer mini-batch's block of prompts
    /// is split into equal contiguous shares in rank order, so a global mini-batch is
    /// its ranks' local ones concatenated.
    fn global_prompt(&self, rank: usize, q: usize, prompts: usize) -> usize {
        let world = self.comm.world_size();
        if world == 1 {
            return q;
        }
        let block = self.cfg.mini_batch_size / self.cfg.group_size;
        let (k, j) = (q / (block / world), q % (block / world));
        let start = k * block;
        start + rank * (block.min(prompts - start) / world) + j
    }

    /// Replaces the advantage estimator chosen by the configuration.
    pub fn with_advantage(mut self, advantage: Box<dyn Advantage>) -> Self {
        self.advantage = advantage;
        self
    }

    /// Replaces the entropy control chosen by the configuration.
    pub fn with_control(mut self, control: Box<dyn EntropyControl>) -> Self {
        self.state.control_strength = control.strength();
        self.control = control;
        self
    }

    /// Sets the frozen reference policy of the `ref_kl` penalty (needed when
    /// `ref_kl` is configured; typically the initial policy loaded a second time).
    pub fn with_reference(mut self, reference: Policy) -> Self {
        self.reference = Some(reference);
        self
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Ends training and returns the policy.
    pub fn into_policy(self) -> Policy {
        self.policy
    }

    /// Where the run is (steps done, data cursor, ...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The token ids of example `index`'s prompt (chat-templated when configured).
    pub fn prompt_ids(&self, index: usize) -> &[i64] {
        &self.prompt_ids[index]
    }

    /// The configuration in use.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.cfg.out_dir.join("checkpoints")
    }

    /// The policy's parameters by Hugging Face name, sorted by name (what checkpoints
    /// store): with LoRA only the adapters (PEFT's key names), not the frozen base; in
    /// bf16-mixed training the f32 master weights.
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let lora = self.policy.model.lora().is_some();
        let masters = self.opt.master_weights().unwrap_or_default();
        let mut v: Vec<(String, Tensor)> = self
            .policy
            .model
            .var_store()
            .variables()
            .into_iter()
            .filter(|(name, _)| !lora || name.starts_with(crate::model::lora::PEFT_PREFIX))
            .map(|(name, t)| match masters.iter().find(|(n, _)| *n == name) {
                Some((_, master)) => (name, master.shallow_clone()),
                None => (name, t),
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Loads the newest checkpoint of `out_dir/checkpoints`, if any; returns its step.
    pub fn resume(&mut self) -> Result<Option<u64>, TrainError> {
        let Some(path) = checkpoint::latest(&self.checkpoint_dir())? else {
            return Ok(None);
        };
        let (state, model, optim) = checkpoint::load(&path)?;
        if state.seed != self.cfg.seed {
            return Err(TrainError::Resume {
                path,
                why: format!(
                    "checkpoint seed {} differs from the configuration's {}",
                    state.seed, self.cfg.seed
                ),
            });
        }
        self.check_adapter_config(&path)?;
        checkpoint::copy_into(&model, &self.named_params(), &path)?;
        let resume_err = |why| TrainError::Resume {
            path: path.clone(),
            why,
        };
        self.opt.load_master_weights(&model).map_err(resume_err)?;
        self.opt
            .load_state(&optim, state.optimizer_step)
            .map_err(resume_err)?;
        self.control.set_strength(state.control_strength);
        self.state = state;
        if self.is_main_rank() {
            self.truncate_metrics()?;
        }
        self.check_same_weights(&format!("the checkpoint {}", path.display()))?;
        Ok(Some(self.state.step))
    }

    /// A LoRA checkpoint resumes only into the same adapters (rank, alpha, dropout,
    /// targets), a full one only into a model without adapters.
    fn check_adapter_config(&self, path: &std::path::Path) -> Result<(), TrainError> {
        use crate::model::lora::{ADAPTER_CONFIG, LoraConfig};
        let file = path.join(ADAPTER_CONFIG);
        let why = match (self.policy.model.lora(), file.is_file()) {
            (None, false) => return Ok(()),
            (None, true) => "a LoRA checkpoint, but the model has no adapters".to_string(),
            (Some(_), false) => "a full checkpoint, but the model has LoRA adapters".into(),
            (Some(live), true) => {
                let (saved, _) =
                    LoraConfig::from_peft_file(&file).map_err(|e| TrainError::Resume {
                        path: path.to_path_buf(),
                        why: e.to_string(),
                    })?;
                let c = &live.config;
                let mut targets = (saved.targets.clone(), c.targets.clone());
                targets.0.sort();
                targets.1.sort();
                if (saved.rank, saved.alpha, saved.dropout) == (c.rank, c.alpha, c.dropout)
                    && targets.0 == targets.1
                {
                    return Ok(());
                }
                format!(
                    "adapter (rank {}, alpha {}, dropout {}, targets {:?}) differs from \
                     model.lora (rank {}, alpha {}, dropout {}, targets {:?})",
                    saved.rank,
                    saved.alpha,
                    saved.dropout,
                    saved.targets,
                    c.rank,
                    c.alpha,
                    c.dropout,
                    c.targets
                )
            }
        };
        Err(TrainError::Resume {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Drops metrics lines of steps after the resumed checkpoint (they are redone),
    /// rewriting the file atomically.
    fn truncate_metrics(&self) -> Result<(), TrainError> {
        let path = self.cfg.out_dir.join("metrics.jsonl");
        let err = |source| TrainError::Metrics {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(e)),
        };
        let keep: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= self.state.step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, keep).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Writes a checkpoint of the current state now (atomically) and prunes old ones;
    /// returns its folder. Data-parallel, rank 0 writes it and the other ranks (whose
    /// state is the same) only return where it goes.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let dir = self.checkpoint_dir();
        if !self.is_main_rank() {
            return Ok(dir.join(checkpoint::step_dir_name(self.state.step)));
        }
        let (params, optim) = (self.named_params(), self.opt.state_tensors());
        let path = match self.policy.model.lora() {
            Some(lora) => {
                checkpoint::save_adapter(&dir, &params, &lora.peft_config(), &optim, &self.state)?
            }
            None => checkpoint::save(&dir, &params, &optim, &self.state)?,
        };
        checkpoint::prune(&dir, self.cfg.checkpoint.keep)?;
        Ok(path)
    }

    /// Runs steps until `cfg.steps` are done (or `on_step` breaks), writing
    /// `out_dir/metrics.jsonl` and checkpoints every `checkpoint.every` steps and at
    /// the end (rank 0 only). Data-parallel, the ranks stop together: after a step
    /// where `on_step` breaks on any rank.
    pub fn run(
        &mut self,
        mut on_step: impl FnMut(&StepMetrics) -> ControlFlow<()>,
    ) -> Result<(), TrainError> {
        let path = self.cfg.out_dir.join("metrics.jsonl");
        if self.metrics.is_none() && self.is_main_rank() {
            self.metrics =
                Some(
                    MetricsWriter::open(&path).map_err(|source| TrainError::Metrics {
                        path: path.clone(),
                        source,
                    })?,
                );
        }
        while self.state.step < self.cfg.steps {
            let m = self.step()?;
            if let Some(w) = &mut self.metrics {
                w.write(&m).map_err(|source| TrainError::Metrics {
                    path: path.clone(),
                    source,
                })?;
            }
            let every = self.cfg.checkpoint.every;
            if (every > 0 && self.state.step.is_multiple_of(every))
                || self.state.step == self.cfg.steps
            {
                self.save_checkpoint()?;
            }
            let mut stop = Tensor::from_slice(&[on_step(&m).is_break() as i64]);
            self.comm
                .all_reduce(&mut stop, ReduceOp::Max, "agreeing to stop")?;
            if stop.int64_value(&[0]) != 0 {
                break;
            }
        }
        Ok(())
    }

    /// The example at `position` of the run's data order (a fresh shuffle each epoch).
    fn example_at(&mut self, position: u64) -> usize {
        let n = self.data.len() as u64;
        let epoch = position / n;
        if self.order.0 != epoch {
            let mut perm: Vec<usize> = (0..self.data.len()).collect();
            perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(
                self.cfg.seed,
                epoch,
            )));
            self.order = (epoch, perm);
        }
        self.order.1[(position % n) as usize]
    }

    /// Samples and scores one batch (with dynamic-sampling refills); returns the rows
    /// and the number of groups dropped.
    fn collect(
        &mut self,
        step_seed: u64,
        secs: &mut PhaseSeconds,
    ) -> Result<(Vec<Row>, usize), TrainError> {
        let g = self.cfg.group_size;
        let ds = self.cfg.dynamic_sampling;
        let rounds = if ds.enabled { ds.max_rounds } else { 1 };
        let mut rows: Vec<Row> = Vec::new();
        let mut groups = 0;
        let mut dropped = 0;
        for round in 0..rounds {
            let need = self.cfg.prompts_per_step - groups;
            if need == 0 {
                break;
            }
            // This rank's share of the round's prompts, by single-process position.
            let rank = self.comm.rank();
            let keys: Vec<u64> = (0..need / self.comm.world_size())
                .map(|q| self.global_prompt(rank, q, need) as u64)
                .collect();
            let base = self.state.data_cursor;
            let examples: Vec<usize> = keys.iter().map(|&p| self.example_at(base + p)).collect();
            self.state.data_cursor = base + need as u64;
            let prompts: Vec<Vec<i64>> = examples
                .iter()
                .map(|&i| self.prompt_ids[i].clone())
                .collect();
            let sampling = self
                .cfg
                .rollout
                .sampling(g, mix_seed(step_seed, round as u64));
            let t = Instant::now();
            let samples = generate_keyed(&self.policy, &prompts, &keys, &sampling)?;
            secs.rollout += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let (reward, data) = (&self.reward, &self.data);
            let scores: Vec<Score> = samples
                .par_iter()
                .map(|s| reward.score(&data[examples[s.prompt_index]].task, &s.text))
                .collect();
            secs.reward += t.elapsed().as_secs_f64();
            for (k, (chunk, sc)) in samples.chunks(g).zip(scores.chunks(g)).enumerate() {
                let equal = sc.iter().all(|s| s.reward == sc[0].reward);
                if ds.enabled && equal && g > 1 {
                    dropped += 1;
                    continue;
                }
                for (s, score) in chunk.iter().zip(sc) {
                    rows.push(Row {
                        example: examples[k],
                        group: groups,
                        response: s.token_ids.clone(),
                        logprobs: s.logprobs.clone(),
                        entropies: s.entropies.clone(),
                        score: score.clone(),
                        finish: s.finish_reason,
                    });
                }
                groups += 1;
            }
        }
        Ok((rows, dropped))
    }

    /// How micro-batches of `rows_per_micro_batch` rows, or the token budget, form.
    fn micro_batching(&self, rows_per_micro_batch: usize) -> MicroBatching {
        match self.cfg.max_tokens_per_micro_batch {
            Some(tokens) => MicroBatching::Tokens(tokens),
            None => MicroBatching::Rows(rows_per_micro_batch),
        }
    }

    /// The planner's view of `seqs`.
    fn shapes(&self, seqs: &Seqs) -> Vec<SeqShape> {
        (0..seqs.len())
            .map(|i| SeqShape {
                group: seqs.groups[i],
                prompt_len: seqs.prompts[i].len(),
                response_len: seqs.responses[i].len(),
            })
            .collect()
    }

    /// The packed forward of micro-batch `micro` of `seqs` under `policy`, in the
    /// current grad mode: log-probs and entropies `[rows of micro, width]`, rows in
    /// `micro.rows()` order, and their backward (with the configured activation
    /// checkpointing and logit recomputation).
    fn forward<'p>(
        &self,
        policy: &'p Policy,
        seqs: &Seqs,
        micro: &MicroBatch,
        width: i64,
        entropy_grad: bool,
    ) -> Result<ResponseLogprobs<'p>, TrainError> {
        let items: Vec<PackedItem> = micro
            .units
            .iter()
            .map(|unit| PackedItem {
                prompt: seqs.prompts[unit[0]],
                responses: unit.iter().map(|&i| seqs.responses[i]).collect(),
            })
            .collect();
        let mut out = packed_response_logprobs(
            policy.model.as_ref(),
            &items,
            self.cfg.share_prompt_prefix,
            &LogprobOptions {
                temperature: self.cfg.rollout.temperature,
                entropy_grad,
                recompute_logits: self.cfg.recompute_logits,
                activation_checkpointing: self.cfg.activation_checkpointing,
                ..LogprobOptions::default()
            },
        )?;
        out.logprobs = pad_to(&out.logprobs, width);
        out.entropies = pad_to(&out.entropies, width);
        Ok(out)
    }

    /// Log-probs and entropies `[rows, width]` of every sequence under `policy`, no
    /// gradient, in micro-batches of `logprob_batch_size` rows or the token budget.
    fn logprobs_no_grad(
        &self,
        policy: &Policy,
        seqs: &Seqs,
        width: i64,
    ) -> Result<(Tensor, Tensor), TrainError> {
        let _guard = tch::no_grad_guard();
        let device = policy.model.device();
        let n = seqs.len() as i64;
        let mut logp = Tensor::zeros([n, width], (Kind::Float, device));
        let mut entropy = logp.zeros_like();
        let rule = self.micro_batching(self.cfg.logprob_batch_size);
        for micro in plan_micro_batches(&self.shapes(seqs), rule, self.cfg.share_prompt_prefix) {
            let out = self.forward(policy, seqs, &micro, width, false)?;
            let idx = row_index(&micro.rows(), device);
            logp = logp.index_copy(0, &idx, &out.logprobs);
            entropy = entropy.index_copy(0, &idx, &out.entropies);
        }
        Ok((logp, entropy))
    }

    /// The step's per-token tensors (old log-probs, the rollout's or recomputed; the
    /// valid mask; advantages; reference log-probs) and the old policy's entropies.
    fn step_tokens(
        &self,
        rows: &[Row],
        seqs: &Seqs,
        adv: &[f64],
        width: i64,
    ) -> Result<(StepTokens, Tensor), TrainError> {
        let device = self.policy.model.device();
        let n = rows.len() as i64;
        let padded = |values: &dyn Fn(&Row) -> &[f32]| {
            let mut flat = vec![0f32; (n * width) as usize];
            for (i, r) in rows.iter().enumerate() {
                let v = values(r);
                flat[i * width as usize..i * width as usize + v.len()].copy_from_slice(v);
            }
            Tensor::from_slice(&flat).view([n, width]).to_device(device)
        };
        let valid = {
            let mut flat = vec![false; (n * width) as usize];
            for (i, r) in rows.iter().enumerate() {
                flat[i * width as usize..i * width as usize + r.response.len()].fill(true);
            }
            Tensor::from_slice(&flat).view([n, width]).to_device(device)
        };
        let (old, entropy) = if self.cfg.reuse_rollout_logprobs {
            (padded(&|r| &r.logprobs), padded(&|r| &r.entropies))
        } else {
            self.logprobs_no_grad(&self.policy, seqs, width)?
        };
        let reference = match (&self.cfg.ref_kl, &self.reference) {
            (Some(_), Some(r)) => Some(self.logprobs_no_grad(r, seqs, width)?.0),
            (Some(_), None) => {
                return Err(TrainError::Config(ConfigError::Invalid {
                    path: "<config>".into(),
                    field: "ref_kl",
                    why: "set, but the trainer has no reference policy (Trainer::with_reference)"
                        .into(),
                }));
            }
            _ => None,
        };
        let adv = Tensor::from_slice(&adv.iter().map(|&a| a as f32).collect::<Vec<_>>())
            .to_device(device)
            .view([n, 1])
            .expand([n, width], false)
            .contiguous();
        Ok((
            StepTokens {
                old,
                valid,
                adv,
                reference,
            },
            entropy,
        ))
    }

    /// Runs one training step and returns its metrics.
    pub fn step(&mut self) -> Result<StepMetrics, TrainError> {
        let t_step = Instant::now();
        let mut secs = PhaseSeconds::default();
        let step_seed = mix_seed(self.cfg.seed, self.state.step);
        let (rows, dropped) = self.collect(step_seed, &mut secs)?;
        self.learn(&rows, dropped, step_seed, secs, t_step)
    }

    /// Runs one training step on a batch sampled elsewhere (by another engine, or a
    /// benchmark's fixed batch): advantages, old log-probs, the update; no rollout.
    /// Every row's `example` must index the dataset and its `logprobs` / `entropies`
    /// hold one value per response token. Data-parallel, `rows` are this rank's share
    /// as [`Trainer::step`] lays it out: `prompts_per_step / world` whole groups of
    /// `group_size` rows, row `i` in group `i / group_size`.
    pub fn step_on(&mut self, rows: &[Row]) -> Result<StepMetrics, TrainError> {
        let (world, g) = (self.comm.world_size(), self.cfg.group_size);
        if world > 1 && rows.len() != self.cfg.prompts_per_step / world * g {
            return Err(TrainError::Batch {
                index: rows.len(),
                why: format!(
                    "{} rows, but this rank's share of a step is {} groups of {g}",
                    rows.len(),
                    self.cfg.prompts_per_step / world
                ),
            });
        }
        for (index, row) in rows.iter().enumerate() {
            if world > 1 && row.group != index / g {
                return Err(TrainError::Batch {
                    index,
                    why: format!(
                        "group {}, but row {index} lies in group {}",
                        row.group,
                        index / g
                    ),
                });
            }
            if row.example >= self.data.len()
                || row.logprobs.len() != row.response.len()
                || row.entropies.len() != row.response.len()
            {
                return Err(TrainError::Batch {
                    index,
                    why: format!(
                        "example {} of {}, {} tokens, {} log-probs, {} entropies",
                        row.example,
                        self.data.len(),
                        row.response.len(),
                        row.logprobs.len(),
                        row.entropies.len()
                    ),
                });
            }
        }
        let step_seed = mix_seed(self.cfg.seed, self.state.step);
        self.learn(rows, 0, step_seed, PhaseSeconds::default(), Instant::now())
    }

    /// The learning half of a step: advantages, the update, metrics (all over the
    /// global batch when data-parallel).
    fn learn(
        &mut self,
        rows: &[Row],
        dropped: usize,
        step_seed: u64,
        mut secs: PhaseSeconds,
        t_step: Instant,
    ) -> Result<StepMetrics, TrainError> {
        let mut m = StepMetrics {
            groups_dropped: dropped,
            ..StepMetrics::default()
        };
        let batch = self.global_batch(rows)?;
        let n = batch.scores.len();
        if n > 0 {
            let adv = self
                .advantage
                .compute(&batch.scores, &batch.groups, &batch.lengths);
            let adv: Vec<f64> = batch.local.iter().map(|&i| adv[i]).collect();
            m.reward_mean = batch.scores.iter().sum::<f64>() / n as f64;
            m.accuracy = batch.correct.iter().filter(|&&c| c).count() as f64 / n as f64;
            m.response_len_mean = batch.lengths.iter().sum::<usize>() as f64 / n as f64;
            m.response_len_max = batch.lengths.iter().copied().max().unwrap_or(0);
            m.truncation_rate = batch.truncated.iter().filter(|&&t| t).count() as f64 / n as f64;
            let width = m.response_len_max as i64;
            if width > 0 {
                self.update(rows, &adv, &batch, width, step_seed, &mut secs, &mut m)?;
            }
        }
        self.control.observe_entropy(m.entropy);
        self.state.control_strength = self.control.strength();
        m.control_strength = self.state.control_strength;
        self.state.step += 1;
        self.state.optimizer_step = self.opt.step;
        m.step = self.state.step;
        secs.total = t_step.elapsed().as_secs_f64();
        m.tokens_per_s = (m.response_len_mean * n as f64) / secs.total.max(1e-9);
        m.seconds = secs;
        Ok(m)
    }

    /// The step's rows of every rank in single-process order: the per-row values
    /// advantages and metrics need, gathered, with where this rank's rows sit.
    fn global_batch(&self, rows: &[Row]) -> Result<GlobalBatch, TrainError> {
        let (world, g, n) = (self.comm.world_size(), self.cfg.group_size, rows.len());
        // Rank `r`'s row `i`: its single-process position and group.
        let place = |r: usize, i: usize| -> (usize, usize) {
            if world == 1 {
                return (i, rows[i].group);
            }
            let prompt = self.global_prompt(r, i / g, n * world / g);
            (prompt * g + i % g, prompt)
        };
        let mut table = Vec::with_capacity(n * 4);
        for r in rows {
            table.extend([
                r.score.reward,
                r.score.correct as u8 as f64,
                r.response.len() as f64,
                (r.finish == FinishReason::Length) as u8 as f64,
            ]);
        }
        let all = self.comm.all_gather(
            &Tensor::from_slice(&table).view([n as i64, 4]),
            "gathering rewards",
        )?;
        let all = Vec::<f64>::try_from(&all.reshape([-1])).map_err(ModelError::Torch)?;
        let total = n * world;
        let mut batch = GlobalBatch {
            scores: vec![0.0; total],
            correct: vec![false; total],
            lengths: vec![0; total],
            truncated: vec![false; total],
            groups: vec![0; total],
            local: (0..n).map(|i| place(self.comm.rank(), i).0).collect(),
            order: vec![0; total],
        };
        for r in 0..world {
            for i in 0..n {
                let (pos, group) = place(r, i);
                let v = &all[(r * n + i) * 4..(r * n + i + 1) * 4];
                batch.scores[pos] = v[0];
                batch.correct[pos] = v[1] != 0.0;
                batch.lengths[pos] = v[2] as usize;
                batch.truncated[pos] = v[3] != 0.0;
                batch.groups[pos] = group;
                batch.order[pos] = r * n + i;
            }
        }
        Ok(batch)
    }

    /// Every rank's `[rows, T]` tensor in single-process row order (this rank's own
    /// at world size 1).
    fn gather_rows(&self, x: &Tensor, order: &Tensor, what: &str) -> Result<Tensor, TrainError> {
        if self.comm.world_size() == 1 {
            return Ok(x.shallow_clone());
        }
        Ok(self.comm.all_gather(x, what)?.index_select(0, order))
    }

    /// The update phase of a step: old log-probs, then `ppo_epochs` passes of
    /// optimizer mini-batches over the rows.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        rows: &[Row],
        adv: &[f64],
        batch: &GlobalBatch,
        width: i64,
        step_seed: u64,
        secs: &mut PhaseSeconds,
        m: &mut StepMetrics,
    ) -> Result<(), TrainError> {
        let prompt_ids = Arc::clone(&self.prompt_ids);
        let seqs = Seqs::of(rows, &prompt_ids);
        let t = Instant::now();
        let (tokens, entropy) = self.step_tokens(rows, &seqs, adv, width)?;
        secs.old_logprob += t.elapsed().as_secs_f64();
        // The whole step's tokens (every rank's, in single-process order): what the
        // selection, the normalisers and the step's statistics are taken over.
        let order = Tensor::from_slice(&batch.order.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(tokens.valid.device());
        let global = StepTokens {
            old: self.gather_rows(&tokens.old, &order, "gathering old log-probs")?,
            valid: self.gather_rows(&tokens.valid, &order, "gathering token masks")?,
            adv: self.gather_rows(&tokens.adv, &order, "gathering advantages")?,
            reference: None,
        };
        let entropy = self.gather_rows(&entropy, &order, "gathering entropies")?;
        let n_tok = global.valid.sum(Kind::Double).double_value(&[]);
        m.entropy = entropy
            .masked_fill(&global.valid.logical_not(), 0.0)
            .sum(Kind::Double)
            .double_value(&[])
            / n_tok.max(1.0);
        m.cov = cov_stats(&global.old, &global.adv, &global.valid, self.clip_cov_lb());

        let t = Instant::now();
        let world = self.comm.world_size();
        let (n, mb) = (rows.len(), self.cfg.mini_batch_size / world);
        let mut totals = UpdateTotals::default();
        // The training forwards (adapter dropout on, its masks drawn from libtorch's
        // generator seeded by the step, so a resumed run draws the same) until this
        // guard drops.
        let _train = self.policy.model.train_switch().on();
        if let Some(lora) = self.policy.model.lora()
            && lora.config.dropout > 0.0
        {
            tch::manual_seed(mix_seed(step_seed, 0x4C6F_5241) as i64);
        }
        for epoch in 0..self.cfg.ppo_epochs {
            for (index, start) in (0..n).step_by(mb).enumerate() {
                let range = start..(start + mb).min(n);
                // This rank's rows are the `rank`-th share of global mini-batch `index`.
                let global_start = index * self.cfg.mini_batch_size;
                let global_range =
                    global_start..(global_start + self.cfg.mini_batch_size).min(n * world);
                let offset = self.comm.rank() * range.len();
                let seed = mix_seed(step_seed, ((epoch as u64) << 32) | (index as u64 + 1));
                let first = epoch == 0 && start == 0;
                let out = self.optimize_mini_batch(
                    &seqs.slice(range.clone()),
                    &tokens.slice(range),
                    &global.slice(global_range),
                    offset as i64,
                    seed,
                    first,
                )?;
                m.lr = out.lr;
                totals.add(&out);
            }
        }
        secs.update += t.elapsed().as_secs_f64();
        let s = &totals.sums;
        let mut sums =
            Tensor::from_slice(&[totals.loss, s.tokens, s.selected, s.clipped, s.approx_kl]);
        self.comm
            .all_reduce(&mut sums, ReduceOp::Sum, "summing step metrics")?;
        let sums = Vec::<f64>::try_from(&sums).map_err(ModelError::Torch)?;
        let tok = sums[1].max(1.0);
        m.selected_frac = sums[2] / tok;
        m.clip_frac = sums[3] / tok;
        m.approx_kl = sums[4] / tok;
        let opt_steps = totals.optimizer_steps.max(1) as f64;
        m.loss = sums[0] / opt_steps;
        m.selection_digest = totals.digest.map(|d| format!("{d:016x}"));
        m.grad_norm = totals.grad_norm / opt_steps;
        m.selection_overlap_old =
            (totals.overlaps > 0).then(|| totals.overlap_sum / totals.overlaps as f64);
        Ok(())
    }

    /// Clip-Cov's lower covariance bound (the covariance statistics report the fraction
    /// above it); 1 for other controls.
    fn clip_cov_lb(&self) -> f64 {
        match &self.cfg.loss.control {
            ControlConfig::ClipCov { lb, .. } => *lb,
            ControlConfig::Adaptive { base, .. } => match **base {
                ControlConfig::ClipCov { lb, .. } => lb,
                _ => 1.0,
            },
            _ => 1.0,
        }
    }

    /// Whether this mini-batch's selection needs the current policy's log-probs that
    /// only its own training forward yields (`mini_batch` scope, `current`, after the
    /// first optimizer step of the step, when the old log-probs stop being current).
    fn selection_from_training_forward(&self, first_update: bool) -> bool {
        self.control.selects()
            && self.cfg.loss.scope == SelectionScope::MiniBatch
            && self.cfg.loss.selection_logp == SelectionLogp::Current
            && !first_update
    }

    /// One optimizer step over a mini-batch: plan micro-batches, select, forward and
    /// backward each micro-batch, correct the selection where it came late, clip, step.
    ///
    /// When the selection needs the current policy's log-probs, every micro-batch's
    /// training forward stores its detached log-probs; the last one completes them,
    /// the selection is made before its backward, and the tokens selected in earlier
    /// micro-batches (whose backward assumed no selection) get a correction pass over
    /// their sequences up to the last selected token. No extra forward of the
    /// mini-batch, exact selection, memory bounded by one micro-batch.
    ///
    /// Data-parallel, `t` holds this rank's rows and `global` the whole global
    /// mini-batch's (this rank's at row `offset`): the selection and the normaliser
    /// come from `global` (the current log-probs gathered when deferred), so they are
    /// the single-process ones, and the gradients are summed across ranks before
    /// clipping.
    fn optimize_mini_batch(
        &mut self,
        seqs: &Seqs,
        t: &StepTokens,
        global: &StepTokens,
        offset: i64,
        seed: u64,
        first_update: bool,
    ) -> Result<MiniBatchOutcome, TrainError> {
        let device = self.policy.model.device();
        let width = t.valid.size()[1];
        let rows = t.valid.size()[0];
        let rule = self.micro_batching(self.cfg.micro_batch_size);
        let micro = plan_micro_batches(&self.shapes(seqs), rule, self.cfg.share_prompt_prefix);
        let deferred = self.selection_from_training_forward(first_update);
        // `micro_batch` scope averages the micro-batches of every rank.
        let micro_batches = micro.len() * self.comm.world_size();
        // Until the selection is known (deferred), no token counts as selected.
        let mut global_plan = if deferred {
            MiniBatchPlan {
                selected: None,
                norm: Some(AggNorm::of(&global.valid, self.cfg.loss.seq_norm_len)),
                micro_batches,
                seed,
            }
        } else {
            self.plan(&global.with_logp(&global.old), micro_batches, seed)
        };
        let mut plan = global_plan.rows(offset, rows);
        let mut current = t.old.zeros_like();
        let entropy_grad = self.control.entropy_coef() != 0.0;
        let mut out = MiniBatchOutcome::default();
        for (k, mb) in micro.iter().enumerate() {
            let idx = row_index(&mb.rows(), device);
            let fwd = self.forward(&self.policy, seqs, mb, width, entropy_grad)?;
            let logp = fwd.logprobs.shallow_clone();
            if deferred {
                current = current.index_copy(0, &idx, &logp.detach());
                if k + 1 == micro.len() {
                    let everyone = self
                        .comm
                        .all_gather(&current, "gathering current log-probs")?;
                    global_plan = self.plan(&global.with_logp(&everyone), micro_batches, seed);
                    plan = global_plan.rows(offset, rows);
                }
            }
            let rows = t.rows(&idx);
            let extra = self.ref_kl_penalty(&logp, rows.reference.as_ref());
            let micro_loss = micro_batch_loss(
                &self.cfg.loss,
                self.control.as_ref(),
                &plan,
                k,
                &idx,
                &rows.with_logp(&logp),
                Some(&fwd.entropies),
                extra.as_ref(),
            );
            fwd.backward(&micro_loss.loss);
            self.opt.accumulate_grads();
            out.loss += micro_loss.loss.double_value(&[]);
            out.sums += micro_loss.sums;
        }
        if deferred {
            let earlier: Vec<usize> = micro[..micro.len() - 1]
                .iter()
                .flat_map(MicroBatch::rows)
                .collect();
            let (loss, selected) = self.correct_selection(seqs, t, &plan, &earlier)?;
            out.loss += loss;
            out.sums.selected += selected;
            let old_plan = self.plan(&global.with_logp(&global.old), micro_batches, seed);
            out.overlap_old = Some(jaccard(
                global_plan
                    .selected
                    .as_ref()
                    .expect("a selecting control's plan selects"),
                old_plan
                    .selected
                    .as_ref()
                    .expect("a selecting control's plan selects"),
            ));
        }
        out.digest = global_plan
            .selected
            .as_ref()
            .map(selection_digest)
            .transpose()?;
        if self.comm.world_size() > 1 {
            let mut grads = self.opt.gradients();
            all_reduce_buckets(
                self.comm.as_ref(),
                &mut grads,
                ReduceOp::Sum,
                "gradient all-reduce",
            )?;
        }
        out.grad_norm = self.opt.clip_grad_norm();
        out.lr = self
            .cfg
            .optim
            .lr_at(self.opt.step as usize, self.total_optimizer_steps());
        self.opt.step(out.lr);
        self.opt.zero_grad();
        Ok(out)
    }

    /// The mini-batch plan (selection, normaliser) over `scope`.
    fn plan(&self, scope: &TokenTensors, micro_batches: usize, seed: u64) -> MiniBatchPlan {
        plan_mini_batch(
            &self.cfg.loss,
            self.control.as_ref(),
            scope,
            micro_batches,
            seed,
        )
    }

    /// Optimizer steps of the whole run (the learning-rate schedule's length).
    fn total_optimizer_steps(&self) -> usize {
        let per_step =
            (self.cfg.prompts_per_step * self.cfg.group_size).div_ceil(self.cfg.mini_batch_size);
        self.cfg.steps as usize * per_step * self.cfg.ppo_epochs
    }

    /// The per-token reference-KL penalty of `logp` against `reference` (when
    /// `ref_kl` is configured).
    fn ref_kl_penalty(&self, logp: &Tensor, reference: Option<&Tensor>) -> Option<Tensor> {
        let (cfg, reference) = (self.cfg.ref_kl.as_ref()?, reference?);
        let d = logp - reference;
        let kl = match cfg.estimator {
            KlEstimator::K1 => d,
            KlEstimator::K3 => (-&d).exp() + &d - 1.0,
        };
        Some(kl * cfg.coef)
    }

    /// Adds to the gradients what the selected tokens among `rows` (mini-batch rows
    /// whose backward ran before the selection was known) change in the loss: the
    /// selected per-token loss minus the unselected one, over the same normaliser.
    /// Each sequence with a selected token is run up to its last selected token (a
    /// log-prob depends on nothing after it). Returns the loss change and the number
    /// of selected tokens.
    fn correct_selection(
        &mut self,
        seqs: &Seqs,
        t: &StepTokens,
        plan: &MiniBatchPlan,
        rows: &[usize],
    ) -> Result<(f64, f64), TrainError> {
        let (Some(selected), Some(norm)) = (&plan.selected, plan.norm) else {
            return Ok((0.0, 0.0));
        };
        let device = self.policy.model.device();
        let width = t.valid.size()[1];
        // Per row: one past its last selected token (0: none selected).
        let positions = Tensor::arange(width, (Kind::Int64, device)).unsqueeze(0);
        let ends = (selected.to_kind(Kind::Int64) * (&positions + 1)).amax([1], false);
        let ends = Vec::<i64>::try_from(&ends).map_err(ModelError::Torch)?;
        let touched: Vec<usize> = rows.iter().copied().filter(|&r| ends[r] > 0).collect();
        if touched.is_empty() {
            return Ok((0.0, 0.0));
        }
        let cut = Seqs {
            groups: touched.iter().map(|&r| seqs.groups[r]).collect(),
            prompts: touched.iter().map(|&r| seqs.prompts[r]).collect(),
            responses: touched
                .iter()
                .map(|&r| &seqs.responses[r][..ends[r] as usize])
                .collect(),
        };
        let rule = self.micro_batching(self.cfg.micro_batch_size);
        let (mut loss_change, mut count) = (0.0, 0.0);
        for micro in plan_micro_batches(&self.shapes(&cut), rule, self.cfg.share_prompt_prefix) {
            let local = micro.rows();
            let idx = row_index(
                &local.iter().map(|&i| touched[i]).collect::<Vec<_>>(),
                device,
            );
            let fwd = self.forward(&self.policy, &cut, &micro, width, false)?;
            let rows = t.rows(&idx);
            let sel = selected.index_select(0, &idx);
            // Positions after the cut are never selected; hold their ratio at 1 there
            // (a zero log-prob could overflow exp and poison the backward with NaN).
            let cut_ends =
                Tensor::from_slice(&local.iter().map(|&i| ends[touched[i]]).collect::<Vec<_>>())
                    .to_device(device);
            let inside = positions.lt_tensor(&cut_ends.unsqueeze(1));
            let logp = fwd.logprobs.where_self(&inside, &rows.old);
            let tokens = rows.with_logp(&logp);
            let with = self
                .control
                .token_loss(&tokens, &sel, &self.cfg.loss.clip)
                .loss;
            let without = self
                .control
                .token_loss(&tokens, &sel.zeros_like(), &self.cfg.loss.clip)
                .loss;
            let change = (with - without).masked_fill(&sel.logical_not(), 0.0);
            let loss = aggregate(&change, &rows.valid, self.cfg.loss.agg, &norm);
            fwd.backward(&loss);
            self.opt.accumulate_grads();
            loss_change += loss.double_value(&[]);
            count += sel
                .logical_and(&rows.valid)
                .sum(Kind::Double)
                .double_value(&[]);
        }
        Ok((loss_change, count))
    }
}

/// The sequences of a step (or a slice of it) in row order: group, prompt ids and
/// response ids of each.
struct Seqs<'a> {
    groups: Vec<usize>,
    prompts: Vec<&'a [i64]>,
    responses: Vec<&'a [i64]>,
}

impl<'a> Seqs<'a> {
    fn of(rows: &'a [Row], prompt_ids: &'a [Vec<i64>]) -> Seqs<'a> {
        Seqs {
            groups: rows.iter().map(|r| r.group).collect(),
            prompts: rows
                .iter()
                .map(|r| prompt_ids[r.example].as_slice())
                .collect(),
            responses: rows.iter().map(|r| r.response.as_slice()).collect(),
        }
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Seqs<'a> {
        Seqs {
            groups: self.groups[range.clone()].to_vec(),
            prompts: self.prompts[range.clone()].to_vec(),
            responses: self.responses[range].to_vec(),
        }
    }
}

/// Per-token tensors `[rows, width]` of a step or a mini-batch of it.
struct StepTokens {
    old: Tensor,
    valid: Tensor,
    adv: Tensor,
    reference: Option<Tensor>,
}

impl StepTokens {
    /// The same rows of every tensor, taken by `take`.
    fn map(&self, take: impl Fn(&Tensor) -> Tensor) -> StepTokens {
        StepTokens {
            old: take(&self.old),
            valid: take(&self.valid),
            adv: take(&self.adv),
            reference: self.reference.as_ref().map(&take),
        }
    }

    fn slice(&self, range: std::ops::Range<usize>) -> StepTokens {
        self.map(|x| x.narrow(0, range.start as i64, range.len() as i64))
    }

    fn rows(&self, idx: &Tensor) -> StepTokens {
        self.map(|x| x.index_select(0, idx))
    }

    /// The loss's view with `logp` as the current log-probs.
    fn with_logp<'a>(&'a self, logp: &'a Tensor) -> TokenTensors<'a> {
        TokenTensors {
            logp,
            old_logp: &self.old,
            adv: &self.adv,
            valid: &self.valid,
        }
    }
}

/// What one optimizer mini-batch reports.
#[derive(Default)]
struct MiniBatchOutcome {
    loss: f64,
    grad_norm: f64,
    lr: f64,
    sums: LossSums,
    /// Jaccard overlap of the current-policy selection with the old-policy one.
    overlap_old: Option<f64>,
    /// [`selection_digest`] of the global mini-batch's selection.
    digest: Option<u64>,
}

/// Sums over a step's mini-batches.
#[derive(Default)]
struct UpdateTotals {
    loss: f64,
    grad_norm: f64,
    optimizer_steps: usize,
    sums: LossSums,
    overlap_sum: f64,
    overlaps: usize,
    /// The mini-batches' selection digests, folded in order.
    digest: Option<u64>,
}

impl UpdateTotals {
    fn add(&mut self, o: &MiniBatchOutcome) {
        self.loss += o.loss;
        self.grad_norm += o.grad_norm;
        self.optimizer_steps += 1;
        self.sums += o.sums;
        if let Some(j) = o.overlap_old {
            self.overlap_sum += j;
            self.overlaps += 1;
        }
        if let Some(d) = o.digest {
            self.digest = Some(mix_seed(self.digest.unwrap_or(0), d));
        }
    }
}

/// A step's rows of every rank in single-process order (see `Trainer::global_batch`).
struct GlobalBatch {
    scores: Vec<f64>,
    correct: Vec<bool>,
    lengths: Vec<usize>,
    truncated: Vec<bool>,
    /// Group ids (at world size 1 the rows' own; else the global prompt index).
    groups: Vec<usize>,
    /// The single-process position of each of this rank's rows.
    local: Vec<usize>,
    /// For each single-process position, its row in the rank-major gather.
    order: Vec<usize>,
}

/// A 64-bit digest of a `[B, T]` selection: its selected tokens' flat positions,
/// hashed in order (see `StepMetrics::selection_digest`).
fn selection_digest(selected: &Tensor) -> Result<u64, TrainError> {
    let flat = selected.reshape([-1]).nonzero().reshape([-1]);
    let positions = Vec::<i64>::try_from(&flat).map_err(ModelError::Torch)?;
    Ok(positions.iter().fold(
        mix_seed(positions.len() as u64, selected.size()[1] as u64),
        |h, &p| mix_seed(h, p as u64),
    ))
}

/// `|a ∧ b| / |a ∨ b|` of two boolean selections (1 when both are empty).
fn jaccard(a: &Tensor, b: &Tensor) -> f64 {
    let both = a.logical_and(b).sum(Kind::Double).double_value(&[]);
    let either = a.logical_or(b).sum(Kind::Double).double_value(&[]);
    if either == 0.0 { 1.0 } else { both / either }
}

/// `rows` as an i64 index tensor on `device`.
fn row_index(rows: &[usize], device: tch::Device) -> Tensor {
    Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(device)
}
