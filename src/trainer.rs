//! The GRPO trainer: rollout → rewards (in parallel) → advantages → old log-probs
//! recomputed with the training forward → `ppo_epochs` × mini-batches × micro-batches
//! with gradient accumulation → AdamW (grad-norm clipping, lr schedule); metrics per
//! step and atomic, resumable checkpoints.
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

use crate::advantage::Advantage;
use crate::checkpoint::{self, CheckpointError, TrainState};
use crate::config::{ConfigError, KlEstimator, TrainConfig};
use crate::loss::{
    ControlConfig, EntropyControl, LossSums, SelectionScope, TokenTensors, cov_stats,
    micro_batch_loss, plan_mini_batch,
};
use crate::metrics::{MetricsWriter, PhaseSeconds, StepMetrics};
use crate::model::{LogprobOptions, Message, ModelError, Policy, response_logprobs};
use crate::optim::AdamW;
use crate::rollout::{FinishReason, RolloutError, generate};
use cove_verifiers::{Reward, Score};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::ControlFlow;
use std::path::PathBuf;
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

/// One sampled response with its score.
struct Row {
    example: usize,
    group: usize,
    response: Vec<i64>,
    score: Score,
    finish: FinishReason,
}

/// The GRPO trainer (see the module docs).
pub struct Trainer<R: Reward> {
    cfg: TrainConfig,
    policy: Policy,
    reference: Option<Policy>,
    reward: R,
    data: Vec<Example<R::Task>>,
    prompt_ids: Vec<Vec<i64>>,
    advantage: Box<dyn Advantage>,
    control: Box<dyn EntropyControl>,
    opt: AdamW,
    state: TrainState,
    order: (u64, Vec<usize>),
    metrics: Option<MetricsWriter>,
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
        let opt = AdamW::new(policy.model.var_store(), cfg.optim.clone());
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
            prompt_ids,
            control,
            opt,
            state,
            order: (u64::MAX, Vec::new()),
            metrics: None,
        })
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

    /// The configuration in use.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.cfg.out_dir.join("checkpoints")
    }

    fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .policy
            .model
            .var_store()
            .variables()
            .into_iter()
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
        checkpoint::copy_into(&model, &self.named_params(), &path)?;
        self.opt
            .load_state(&optim, state.optimizer_step)
            .map_err(|why| TrainError::Resume {
                path: path.clone(),
                why,
            })?;
        self.control.set_strength(state.control_strength);
        self.state = state;
        self.truncate_metrics()?;
        Ok(Some(self.state.step))
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

    /// Writes a checkpoint of the current state now (atomically) and prunes old ones.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let dir = self.checkpoint_dir();
        let path = checkpoint::save(
            &dir,
            &self.named_params(),
            &self.opt.state_tensors(),
            &self.state,
        )?;
        checkpoint::prune(&dir, self.cfg.checkpoint.keep)?;
        Ok(path)
    }

    /// Runs steps until `cfg.steps` are done (or `on_step` breaks), writing
    /// `out_dir/metrics.jsonl` and checkpoints every `checkpoint.every` steps and at
    /// the end.
    pub fn run(
        &mut self,
        mut on_step: impl FnMut(&StepMetrics) -> ControlFlow<()>,
    ) -> Result<(), TrainError> {
        let path = self.cfg.out_dir.join("metrics.jsonl");
        if self.metrics.is_none() {
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
            if on_step(&m).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn next_example(&mut self) -> usize {
        let n = self.data.len() as u64;
        let epoch = self.state.data_cursor / n;
        if self.order.0 != epoch {
            let mut perm: Vec<usize> = (0..self.data.len()).collect();
            perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(
                self.cfg.seed,
                epoch,
            )));
            self.order = (epoch, perm);
        }
        let i = self.order.1[(self.state.data_cursor % n) as usize];
        self.state.data_cursor += 1;
        i
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
            let examples: Vec<usize> = (0..need).map(|_| self.next_example()).collect();
            let prompts: Vec<Vec<i64>> = examples
                .iter()
                .map(|&i| self.prompt_ids[i].clone())
                .collect();
            let sampling = self
                .cfg
                .rollout
                .sampling(g, mix_seed(step_seed, round as u64));
            let t = Instant::now();
            let samples = generate(&self.policy, &prompts, &sampling)?;
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
                        score: score.clone(),
                        finish: s.finish_reason,
                    });
                }
                groups += 1;
            }
        }
        Ok((rows, dropped))
    }

    /// Per-token log-probs / entropies / mask of `rows` under `policy`, in chunks of
    /// `batch` rows, padded to `width`; no gradient.
    fn logprobs_no_grad(
        &self,
        policy: &Policy,
        rows: &[Row],
        batch: usize,
        width: i64,
    ) -> Result<(Tensor, Tensor, Tensor), TrainError> {
        let _guard = tch::no_grad_guard();
        let (mut lp, mut ent, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in rows.chunks(batch) {
            let pairs: Vec<(&[i64], &[i64])> = chunk
                .iter()
                .map(|r| (self.prompt_ids[r.example].as_slice(), r.response.as_slice()))
                .collect();
            let out = response_logprobs(
                policy.model.as_ref(),
                &pairs,
                policy.pad_token_id,
                &LogprobOptions {
                    temperature: self.cfg.rollout.temperature,
                    ..LogprobOptions::default()
                },
            )?;
            lp.push(pad_to(&out.logprobs, width));
            ent.push(pad_to(&out.entropies, width));
            mask.push(pad_to(&out.mask, width));
        }
        Ok((
            Tensor::cat(&lp, 0),
            Tensor::cat(&ent, 0),
            Tensor::cat(&mask, 0).gt(0.5),
        ))
    }

    /// Runs one training step and returns its metrics.
    pub fn step(&mut self) -> Result<StepMetrics, TrainError> {
        let t_step = Instant::now();
        let mut secs = PhaseSeconds::default();
        let step_seed = mix_seed(self.cfg.seed, self.state.step);
        let (rows, dropped) = self.collect(step_seed, &mut secs)?;
        let n = rows.len();
        let mut m = StepMetrics {
            groups_dropped: dropped,
            ..StepMetrics::default()
        };
        if n > 0 {
            let scores: Vec<f64> = rows.iter().map(|r| r.score.reward).collect();
            let group_ids: Vec<usize> = rows.iter().map(|r| r.group).collect();
            let lengths: Vec<usize> = rows.iter().map(|r| r.response.len()).collect();
            let adv = self.advantage.compute(&scores, &group_ids, &lengths);
            m.reward_mean = scores.iter().sum::<f64>() / n as f64;
            m.accuracy = rows.iter().filter(|r| r.score.correct).count() as f64 / n as f64;
            m.response_len_mean = lengths.iter().sum::<usize>() as f64 / n as f64;
            m.response_len_max = lengths.iter().copied().max().unwrap_or(0);
            m.truncation_rate = rows
                .iter()
                .filter(|r| r.finish == FinishReason::Length)
                .count() as f64
                / n as f64;
            let width = m.response_len_max as i64;
            if width > 0 {
                self.update(&rows, &adv, width, step_seed, &mut secs, &mut m)?;
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

    fn update(
        &mut self,
        rows: &[Row],
        adv: &[f64],
        width: i64,
        step_seed: u64,
        secs: &mut PhaseSeconds,
        m: &mut StepMetrics,
    ) -> Result<(), TrainError> {
        let device = self.policy.model.device();
        let t = Instant::now();
        let lb_batch = self.cfg.logprob_batch_size;
        let (old, entropy, valid) = self.logprobs_no_grad(&self.policy, rows, lb_batch, width)?;
        let ref_logp = match (&self.cfg.ref_kl, &self.reference) {
            (Some(_), Some(r)) => Some(self.logprobs_no_grad(r, rows, lb_batch, width)?.0),
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
        secs.old_logprob += t.elapsed().as_secs_f64();
        let n = rows.len() as i64;
        let adv_t = Tensor::from_slice(&adv.iter().map(|&a| a as f32).collect::<Vec<_>>())
            .to_device(device)
            .view([n, 1])
            .expand([n, width], false)
            .contiguous();
        let n_tok = valid.sum(Kind::Double).double_value(&[]);
        m.entropy = entropy
            .masked_fill(&valid.logical_not(), 0.0)
            .sum(Kind::Double)
            .double_value(&[])
            / n_tok.max(1.0);
        let lb = match &self.cfg.loss.control {
            ControlConfig::ClipCov { lb, .. } => *lb,
            ControlConfig::Adaptive { base, .. } => match **base {
                ControlConfig::ClipCov { lb, .. } => lb,
                _ => 1.0,
            },
            _ => 1.0,
        };
        m.cov = cov_stats(&old, &adv_t, &valid, lb);

        let t = Instant::now();
        let mb = self.cfg.mini_batch_size as i64;
        let mu = self.cfg.micro_batch_size as i64;
        let mbs_per_step =
            (self.cfg.prompts_per_step * self.cfg.group_size).div_ceil(self.cfg.mini_batch_size);
        let total_opt = self.cfg.steps as usize * mbs_per_step * self.cfg.ppo_epochs;
        let entropy_grad = self.control.entropy_coef() != 0.0;
        let mut sums = LossSums::default();
        let (mut loss_sum, mut gnorm_sum, mut n_opt) = (0.0, 0.0, 0usize);
        for epoch in 0..self.cfg.ppo_epochs {
            let mut start = 0;
            let mut mi = 0u64;
            while start < n {
                let len = mb.min(n - start);
                let old_mb = old.narrow(0, start, len);
                let adv_mb = adv_t.narrow(0, start, len);
                let valid_mb = valid.narrow(0, start, len);
                let n_micro = (len as usize).div_ceil(mu as usize);
                let mb_seed = mix_seed(step_seed, ((epoch as u64) << 32) | (mi + 1));
                let first_update = epoch == 0 && start == 0;
                let needs_current = self.control.selects()
                    && self.cfg.loss.scope == SelectionScope::MiniBatch
                    && !first_update;
                // Before the first optimizer step of a step the current policy is the
                // old one: its log-probs are `old`. Later mini-batches need a fresh pass.
                let current = if needs_current {
                    let r = &rows[start as usize..(start + len) as usize];
                    self.logprobs_no_grad(&self.policy, r, mu as usize, width)?
                        .0
                } else {
                    old_mb.shallow_clone()
                };
                let scope = TokenTensors {
                    logp: &current,
                    old_logp: &old_mb,
                    adv: &adv_mb,
                    valid: &valid_mb,
                };
                let plan = plan_mini_batch(
                    &self.cfg.loss,
                    self.control.as_ref(),
                    &scope,
                    n_micro,
                    mb_seed,
                );
                let mut mb_loss = 0.0;
                let mut ms = 0;
                let mut k = 0;
                while ms < len {
                    let ml = mu.min(len - ms);
                    let lo = (start + ms) as usize;
                    let pairs: Vec<(&[i64], &[i64])> = rows[lo..lo + ml as usize]
                        .iter()
                        .map(|r| (self.prompt_ids[r.example].as_slice(), r.response.as_slice()))
                        .collect();
                    let out = response_logprobs(
                        self.policy.model.as_ref(),
                        &pairs,
                        self.policy.pad_token_id,
                        &LogprobOptions {
                            temperature: self.cfg.rollout.temperature,
                            entropy_grad,
                            ..LogprobOptions::default()
                        },
                    )?;
                    let logp = pad_to(&out.logprobs, width);
                    let ent = pad_to(&out.entropies, width);
                    let old_mu = old_mb.narrow(0, ms, ml);
                    let extra = match (&self.cfg.ref_kl, &ref_logp) {
                        (Some(kl_cfg), Some(r)) => {
                            let d = &logp - r.narrow(0, start + ms, ml);
                            let kl = match kl_cfg.estimator {
                                KlEstimator::K1 => d,
                                KlEstimator::K3 => (-&d).exp() + &d - 1.0,
                            };
                            Some(kl * kl_cfg.coef)
                        }
                        _ => None,
                    };
                    let tokens = TokenTensors {
                        logp: &logp,
                        old_logp: &old_mu,
                        adv: &adv_mb.narrow(0, ms, ml),
                        valid: &valid_mb.narrow(0, ms, ml),
                    };
                    let micro = micro_batch_loss(
                        &self.cfg.loss,
                        self.control.as_ref(),
                        &plan,
                        k,
                        (ms, ml),
                        &tokens,
                        Some(&ent),
                        extra.as_ref(),
                    );
                    micro.loss.backward();
                    mb_loss += micro.loss.double_value(&[]);
                    sums += micro.sums;
                    ms += ml;
                    k += 1;
                }
                let gnorm = self.opt.clip_grad_norm();
                let lr = self.cfg.optim.lr_at(self.opt.step as usize, total_opt);
                self.opt.step(lr);
                self.opt.zero_grad();
                m.lr = lr;
                loss_sum += mb_loss;
                gnorm_sum += gnorm;
                n_opt += 1;
                start += len;
                mi += 1;
            }
        }
        secs.update += t.elapsed().as_secs_f64();
        let tok = sums.tokens.max(1.0);
        m.selected_frac = sums.selected / tok;
        m.clip_frac = sums.clipped / tok;
        m.approx_kl = sums.approx_kl / tok;
        m.loss = loss_sum / n_opt.max(1) as f64;
        m.grad_norm = gnorm_sum / n_opt.max(1) as f64;
        Ok(())
    }
}
