//! The GRPO trainer, as a chain of stages:
//!
//! ```text
//! step  = experience  (experience.rs: data order → RolloutEngine → scores → dynamic sampling)
//!       + learn       (this file: global batch → advantages → update → metrics)
//! update              (update.rs: old log-probs → ppo_epochs × mini-batches:
//!                      plan + select → micro-batch forward/backward (forward.rs)
//!                      → correction pass (correction.rs) → all-reduce → clip → AdamW)
//! shard.rs            data-parallel placement and gathers
//! checkpointing.rs    save, resume
//! ```
//!
//! The learner consumes [`Trajectory`] records only ([`Trainer::learn`]); where they come
//! from is a [`RolloutEngine`] ([`LocalEngine`] unless [`Trainer::with_engine`] says
//! otherwise). It composes a [`Reward`] (what a task needs: one implementation and a
//! dataset of [`Example`]s), an [`Advantage`] estimator and an [`EntropyControl`], all
//! chosen by the [`TrainConfig`] or replaced with [`Trainer::with_advantage`] /
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
//! let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
//! let data = vec![Example { prompt: "What is 2+2?".into(), task: "4".to_string() }];
//! let mut trainer = Trainer::new(Default::default(), policy, Exact, data).unwrap();
//! trainer.resume().unwrap();
//! trainer.run(|m| { println!("{}", m.summary()); std::ops::ControlFlow::Continue(()) }).unwrap();
//! ```
//!
//! Reproducibility: every random choice of step `s` is keyed by `(seed, s)` (rollout
//! streams, Clip-Cov's choice) and the data order by `(seed, epoch)` ([`crate::seed`]),
//! so a run resumed from a checkpoint continues the same trajectory as an uninterrupted
//! one (on the same device; on CPUs at any thread count once
//! [`crate::reproducible::strict_cpu_math`] is on, as the binaries do).
//!
//! Data parallelism ([`Trainer::with_collective`], [`crate::dist`]): each rank samples
//! and trains on its share of every optimizer mini-batch (whole groups); rewards, the
//! step's per-token tensors and, when deferred, the current log-probs are gathered, so
//! advantages, normalisers, the selection and the metrics are the single-process ones;
//! gradients are summed across ranks before clipping.

mod batch;
mod checkpointing;
mod correction;
mod error;
mod evaluation;
mod experience;
mod forward;
mod learner;
mod pipeline;
mod shard;
mod update;

pub use error::TrainError;
pub use evaluation::{Evaluation, Measure};
pub use experience::Example;

use crate::advantage::Advantage;
use crate::checkpoint::TrainState;
use crate::config::{ConfigError, TrainConfig};
use crate::dist::{Collective, ReduceOp, Single};
use crate::loss::EntropyControl;
use crate::metrics::{MetricsFile, PhaseSeconds, StepMetrics, ToolMetrics};
use crate::model::Policy;
use crate::optim::{AdamW, Precision, cast_variables};
use crate::reward::Shaping;
use crate::rollout::{
    LocalEngine, RemoteEngine, RolloutEngine, Trajectory, VllmEngine, WeightUpdate,
};
use crate::run_dir::RunDir;
use crate::seed::mix_seed;
use cove_verifiers::Reward;
use experience::{Experience, Sampler};
use learner::{Learner, Reference};
use pipeline::Pipeline;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};

/// The GRPO trainer (see the module docs).
pub struct Trainer<R: Reward> {
    learner: Learner,
    experience: Experience<R>,
    advantage: Box<dyn Advantage>,
    state: TrainState,
    run_dir: RunDir,
    metrics: Option<MetricsFile>,
    evaluation: Option<Evaluation>,
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
            let ids = policy.prompt_ids(&ex.prompt.messages(), cfg.chat_template)?;
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
            run_dir: RunDir::new(&cfg.out_dir),
            experience: Experience::new(reward, data, prompt_ids, Box::new(LocalEngine)),
            learner: Learner {
                cfg,
                policy,
                reference: None,
                control,
                opt,
                comm: Box::new(Single),
            },
            state,
            metrics: None,
            evaluation: None,
        })
    }

    /// Trains as one rank of a data-parallel job (see [`crate::dist`]): each step this
    /// rank samples and trains on its share of the prompts, whole groups of every
    /// optimizer mini-batch; gradients, normalisers, the Clip-Cov / KL-Cov selection
    /// and the metrics are global, so the update is the single-process one. Rank 0
    /// alone writes metrics and checkpoints. Checks that the configuration shards over
    /// the world and that every rank starts from the same weights.
    pub fn with_collective(mut self, comm: Box<dyn Collective>) -> Result<Self, TrainError> {
        self.learner.cfg.validate_world(comm.world_size())?;
        self.learner.comm = comm;
        let params = checkpointing::named_params(&self.learner);
        shard::check_same_weights(self.learner.comm.as_ref(), &params, "the initial weights")?;
        Ok(self)
    }

    /// Measures the policy during training (see [`Evaluation`]); the scores land in the
    /// metrics of the steps they are taken after, as `eval`.
    pub fn with_evaluation(mut self, evaluation: Evaluation) -> Self {
        self.evaluation = Some(evaluation);
        self
    }

    /// Adds the reward terms that read whole trajectories or batches (DAPO's overlong
    /// punishment, a remote endpoint; see [`crate::reward`]) to every score, after the
    /// reward's own.
    pub fn with_shaping(mut self, shaping: Shaping) -> Self {
        self.experience.shaping = Some(shaping);
        self
    }

    /// Samples with `engine` instead of the in-process [`LocalEngine`].
    pub fn with_engine(mut self, engine: Box<dyn RolloutEngine>) -> Self {
        self.experience.sampler = Sampler::InProcess(engine);
        self
    }

    /// Samples with `engine`, which holds weights of its own (an inference server), on
    /// its own thread: before the first rollout of every policy version the trainer
    /// writes the policy into `trainer.rollout.vllm.sync_dir` (default `weights/` of the
    /// run folder) and the engine loads it and checks its probe log-probs (those of the
    /// first prompt) against the trainer's.
    /// With `trainer.async.max_staleness = k`, the rollouts of the next `k` steps are
    /// sampled while the current step trains. One process only (no data parallelism).
    pub fn with_remote_engine(self, engine: Box<dyn RemoteEngine>) -> Result<Self, TrainError> {
        self.with_pipeline(engine, None)
    }

    /// Puts `engine` on its pipeline; `first` is the update of the current policy when
    /// already written.
    fn with_pipeline(
        mut self,
        engine: Box<dyn RemoteEngine>,
        first: Option<WeightUpdate>,
    ) -> Result<Self, TrainError> {
        if self.learner.comm.world_size() > 1 {
            return Err(TrainError::Config(ConfigError::Invalid {
                path: "<config>".into(),
                field: "trainer.rollout.engine",
                why: "an inference server samples for one process; data-parallel runs use \
                      the local engine"
                    .into(),
            }));
        }
        self.experience.sampler = Sampler::Remote(Box::new(Pipeline::start(
            engine,
            self.sync_dir(),
            self.probe(),
            first,
        )));
        Ok(self)
    }

    /// Where policy versions are written for an inference server:
    /// `trainer.rollout.vllm.sync_dir`, or `weights/` of the run folder.
    fn sync_dir(&self) -> PathBuf {
        let configured = &self.learner.cfg.rollout.vllm.sync_dir;
        configured.clone().unwrap_or_else(|| self.run_dir.weights())
    }

    /// The tokens an inference server's log-probs are checked on after each weight
    /// load: the first example's prompt, at most 64 tokens.
    fn probe(&self) -> Vec<i64> {
        self.experience.prompt_ids[0]
            .iter()
            .take(64)
            .copied()
            .collect()
    }

    /// [`Trainer::with_remote_engine`] with the vLLM server of
    /// `trainer.rollout.vllm`: at its URL, or launched for the policy's current weights
    /// (written to `weights/v0` of the run folder; the server's log is `vllm.log`
    /// there).
    pub fn with_vllm(self) -> Result<Self, TrainError> {
        let cfg = &self.learner.cfg.rollout.vllm;
        let policy = &self.learner.policy;
        if policy.model.lora().is_some() {
            return Err(TrainError::Config(ConfigError::Invalid {
                path: "<config>".into(),
                field: "trainer.rollout.engine",
                why: "the vLLM engine pushes full weights; a policy with LoRA adapters \
                      samples on the local engine"
                    .into(),
            }));
        }
        let version = self.state.optimizer_step;
        let first = WeightUpdate::publish(policy, &self.sync_dir(), version, &self.probe())?;
        let dtype = match policy.model.kind() {
            Kind::BFloat16 => "bfloat16",
            _ => "float32",
        };
        let engine = VllmEngine::start(
            cfg,
            &first.dir,
            dtype,
            &self.run_dir.vllm_log(),
            policy.eos_token_ids.clone(),
        )?;
        self.with_pipeline(Box::new(engine), Some(first))
    }

    /// Replaces the advantage estimator chosen by the configuration.
    pub fn with_advantage(mut self, advantage: Box<dyn Advantage>) -> Self {
        self.advantage = advantage;
        self
    }

    /// Replaces the entropy control chosen by the configuration.
    pub fn with_control(mut self, control: Box<dyn EntropyControl>) -> Self {
        self.state.control_strength = control.strength();
        self.learner.control = control;
        self
    }

    /// Sets the frozen reference policy of the `ref_kl` penalty (needed when
    /// `ref_kl` is configured; typically the initial policy loaded a second time, in the
    /// policy's compute dtype).
    pub fn with_reference(mut self, reference: Policy) -> Self {
        self.learner.reference = Some(Reference::Policy(Box::new(reference)));
        self
    }

    /// Makes the `ref_kl` reference the policy's own base weights with its LoRA
    /// adapters switched off ([`crate::model::lora::AdaptersOff`]): the starting model,
    /// with no second copy of the weights. Refused for a policy without adapters.
    pub fn with_adapter_base_reference(mut self) -> Result<Self, TrainError> {
        if self.learner.policy.model.lora().is_none() {
            return Err(TrainError::Config(ConfigError::Invalid {
                path: "<config>".into(),
                field: "trainer.ref_kl",
                why: "the adapter-base reference needs a policy with LoRA adapters".into(),
            }));
        }
        self.learner.reference = Some(Reference::AdapterBase);
        Ok(self)
    }

    /// The data-parallel process group this trainer runs in.
    pub fn collective(&self) -> &dyn Collective {
        self.learner.comm.as_ref()
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_main_rank(&self) -> bool {
        self.learner.is_main_rank()
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        &self.learner.policy
    }

    /// Ends training and returns the policy.
    pub fn into_policy(self) -> Policy {
        self.learner.policy
    }

    /// Where the run is (steps done, data cursor, ...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The token ids of example `index`'s prompt (chat-templated when configured).
    pub fn prompt_ids(&self, index: usize) -> &[i64] {
        &self.experience.prompt_ids[index]
    }

    /// The configuration in use.
    pub fn config(&self) -> &TrainConfig {
        &self.learner.cfg
    }

    /// The run folder (`trainer.out_dir`).
    pub fn run_dir(&self) -> &RunDir {
        &self.run_dir
    }

    /// The policy's parameters by Hugging Face name, sorted by name (what checkpoints
    /// store): with LoRA only the adapters, not the frozen base; in bf16-mixed training
    /// the f32 master weights.
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        checkpointing::named_params(&self.learner)
    }

    /// Loads the newest checkpoint of the run folder, if any; returns its step. Batches
    /// an asynchronous run sampled ahead are discarded (sampled again from the
    /// checkpoint's policy).
    pub fn resume(&mut self) -> Result<Option<u64>, TrainError> {
        if let Sampler::Remote(pipeline) = &mut self.experience.sampler {
            pipeline.discard()?;
        }
        let resumed = checkpointing::resume(&mut self.learner, &self.run_dir)?;
        Ok(resumed.map(|state| {
            self.state = state;
            self.state.step
        }))
    }

    /// Writes a checkpoint of the current state now (atomically) and prunes old ones;
    /// returns its folder (rank 0 writes; other ranks only return where it goes).
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        checkpointing::save(&self.learner, &self.state, &self.run_dir)
    }

    /// Runs steps until `cfg.steps` are done (or `on_step` breaks), writing
    /// `metrics.jsonl` and checkpoints every `checkpoint.every` steps and at the end
    /// (rank 0 only), with the [`Evaluation`]'s value when one is due. Data-parallel, the
    /// ranks stop together: after a step where `on_step` breaks on any rank.
    pub fn run(
        &mut self,
        mut on_step: impl FnMut(&StepMetrics) -> ControlFlow<()>,
    ) -> Result<(), TrainError> {
        let path = self.run_dir.metrics();
        let metrics_err = |source| TrainError::Metrics {
            path: path.clone(),
            source,
        };
        if self.metrics.is_none() && self.is_main_rank() {
            self.metrics = Some(MetricsFile::open(&path).map_err(metrics_err)?);
        }
        while self.state.step < self.learner.cfg.steps {
            let mut m = self.step()?;
            let last = m.step == self.learner.cfg.steps;
            if let Some(eval) = &mut self.evaluation
                && self.learner.is_main_rank()
            {
                let policy = &self.learner.policy;
                if let Some(probe) = &eval.probe {
                    m.probe_entropy = Some(probe.entropy(policy)?);
                }
                if m.step.is_multiple_of(eval.every.max(1)) || last {
                    let scores = (eval.measure)(policy, m.step)
                        .map_err(|why| TrainError::Eval { step: m.step, why })?;
                    m.eval = Some(scores);
                }
            }
            let flow = on_step(&m);
            if let Some(w) = &mut self.metrics {
                w.write(&m).map_err(metrics_err)?;
            }
            let every = self.learner.cfg.checkpoint.every;
            if (every > 0 && self.state.step.is_multiple_of(every))
                || self.state.step == self.learner.cfg.steps
            {
                self.save_checkpoint()?;
            }
            let mut stop = Tensor::from_slice(&[flow.is_break() as i64]);
            self.learner
                .comm
                .all_reduce(&mut stop, ReduceOp::Max, "agreeing to stop")?;
            if stop.int64_value(&[0]) != 0 {
                break;
            }
        }
        Ok(())
    }

    /// Runs one training step (experience, then learning) and returns its metrics.
    pub fn step(&mut self) -> Result<StepMetrics, TrainError> {
        self.learner.check_reference()?;
        let t_step = Instant::now();
        let mut secs = PhaseSeconds::default();
        let step_seed = mix_seed(self.learner.cfg.seed, self.state.step);
        let (trajectories, dropped, lag) = if self.learner.cfg.asynchronous.max_staleness > 0 {
            let (trajectories, lag) =
                self.experience
                    .collect_ahead(&self.learner, &mut self.state, &mut secs)?;
            (trajectories, 0, lag)
        } else {
            let (trajectories, dropped) =
                self.experience
                    .collect(&self.learner, &mut self.state, step_seed, &mut secs)?;
            (trajectories, dropped, 0)
        };
        let mut m = self.learn_step(&trajectories, dropped, step_seed, secs, t_step)?;
        m.policy_lag = lag;
        Ok(m)
    }

    /// Runs one training step on trajectories sampled elsewhere (another engine, a
    /// benchmark's fixed batch): advantages, old log-probs, the update; no rollout.
    /// Unscored trajectories are scored with the trainer's reward. Every trajectory's
    /// `task` must index the dataset, and its lengths agree ([`Trajectory::check`]).
    /// Data-parallel, they are this rank's share as [`Trainer::step`] lays it out:
    /// `prompts_per_step / world` whole groups of `group_size`, trajectory `i` in group
    /// `i / group_size`.
    pub fn learn(&mut self, trajectories: &[Trajectory]) -> Result<StepMetrics, TrainError> {
        self.learner.check_reference()?;
        let world = self.learner.comm.world_size();
        shard::check_share(
            &self.learner.cfg,
            world,
            self.experience.data.len(),
            trajectories,
        )?;
        let mut scored = trajectories.to_vec();
        self.experience.score(&mut scored, false)?;
        let step_seed = mix_seed(self.learner.cfg.seed, self.state.step);
        self.learn_step(
            &scored,
            0,
            step_seed,
            PhaseSeconds::default(),
            Instant::now(),
        )
    }

    /// The step's [`ToolMetrics`], over every rank's episodes.
    fn tool_metrics(&self, trajectories: &[Trajectory]) -> Result<Option<ToolMetrics>, TrainError> {
        let mut sums = Tensor::from_slice(&ToolMetrics::sums(trajectories));
        self.learner
            .comm
            .all_reduce(&mut sums, ReduceOp::Sum, "tool metrics")?;
        let sums: Vec<f64> = Vec::try_from(&sums).map_err(crate::model::ModelError::Torch)?;
        Ok(ToolMetrics::from_sums(
            sums.try_into().expect("eight sums in, eight out"),
        ))
    }

    /// The learning half of a step: advantages, the update, metrics (all over the
    /// global batch when data-parallel).
    fn learn_step(
        &mut self,
        trajectories: &[Trajectory],
        dropped: usize,
        step_seed: u64,
        mut secs: PhaseSeconds,
        t_step: Instant,
    ) -> Result<StepMetrics, TrainError> {
        let mut m = StepMetrics {
            groups_dropped: dropped,
            ..StepMetrics::default()
        };
        let batch = shard::global_batch(&self.learner, trajectories)?;
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
                update::update(
                    &mut self.learner,
                    trajectories,
                    &adv,
                    &batch,
                    width,
                    step_seed,
                    &mut secs,
                    &mut m,
                )?;
            }
        }
        m.tools = self.tool_metrics(trajectories)?;
        let control = &mut self.learner.control;
        control.observe_entropy(m.entropy);
        self.state.control_strength = control.strength();
        m.control_strength = self.state.control_strength;
        self.state.step += 1;
        self.state.optimizer_step = self.learner.opt.step;
        m.step = self.state.step;
        secs.total = t_step.elapsed().as_secs_f64();
        m.tokens_per_s = (m.response_len_mean * n as f64) / secs.total.max(1e-9);
        m.seconds = secs;
        Ok(m)
    }
}
