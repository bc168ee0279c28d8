//! Experience: the data order, the rollout engine's call, parallel scoring and the
//! dynamic-sampling filter, which together turn a step's seed into scored trajectories;
//! with an engine of its own weights ([`Sampler::Remote`]), the weight updates it loads
//! and, asynchronously, the batches it samples ahead ([`super::pipeline`]).

use super::TrainError;
use super::learner::Learner;
use super::pipeline::{InFlight, Pipeline, Request};
use super::shard::global_prompt;
use crate::checkpoint::TrainState;
use crate::data::Prompt;
use crate::metrics::PhaseSeconds;
use crate::reward::Shaping;
use crate::rollout::{RolloutEngine, Trajectory};
use crate::seed::mix_seed;
use cove_verifiers::{Reward, Score};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// One training example: the prompt and what the reward needs to score it.
#[derive(Debug, Clone)]
pub struct Example<T> {
    /// The prompt: text (one user turn) or chat messages, system prompts included
    /// (rendered by [`crate::model::Policy::prompt_ids`]; `"text".into()` makes one).
    pub prompt: Prompt,
    /// The task data given to [`Reward::score`].
    pub task: T,
}

/// What samples the rollouts.
pub(crate) enum Sampler {
    /// An engine on the trainer's thread, sampling from the policy being trained.
    InProcess(Box<dyn RolloutEngine>),
    /// An engine with weights of its own on its own thread.
    Remote(Box<Pipeline>),
}

/// Where experience comes from: the dataset with its prompts' token ids, the reward
/// that scores it (and the trajectory-level terms added after it), the engine that
/// samples it, and the data order.
pub(crate) struct Experience<R: Reward> {
    pub reward: R,
    pub shaping: Option<Shaping>,
    pub data: Vec<Example<R::Task>>,
    /// Token ids of every example's prompt.
    pub prompt_ids: Vec<Vec<i64>>,
    pub sampler: Sampler,
    /// The epoch whose shuffle `order.1` is.
    order: (u64, Vec<usize>),
}

impl<R: Reward> Experience<R> {
    /// Experience over `data` (prompts already tokenized) from `engine`.
    pub fn new(
        reward: R,
        data: Vec<Example<R::Task>>,
        prompt_ids: Vec<Vec<i64>>,
        engine: Box<dyn RolloutEngine>,
    ) -> Self {
        Experience {
            reward,
            shaping: None,
            data,
            prompt_ids,
            sampler: Sampler::InProcess(engine),
            order: (u64::MAX, Vec::new()),
        }
    }

    /// The example at `position` of the run's data order (a fresh shuffle each epoch).
    fn example_at(&mut self, seed: u64, position: u64) -> usize {
        let n = self.data.len() as u64;
        let epoch = position / n;
        if self.order.0 != epoch {
            let mut perm: Vec<usize> = (0..self.data.len()).collect();
            perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(seed, epoch)));
            self.order = (epoch, perm);
        }
        self.order.1[(position % n) as usize]
    }

    /// Scores the unscored `trajectories` with the reward, in parallel, then adds the
    /// shaping's trajectory-level terms (an endpoint's batches included) to those it
    /// scored, or to all of them when they are `fresh` from this trainer's engine (a
    /// multi-turn engine's environment scores its own episodes).
    pub fn score(&self, trajectories: &mut [Trajectory], fresh: bool) -> Result<(), TrainError> {
        let (reward, data) = (&self.reward, &self.data);
        let mut shaped: Vec<&mut Trajectory> = trajectories
            .iter_mut()
            .filter(|t| fresh || t.score.is_none())
            .collect();
        shaped
            .par_iter_mut()
            .filter(|t| t.score.is_none())
            .for_each(|t| {
                let score: Score = reward.score(&data[t.task].task, &t.text);
                t.score = Some(score);
            });
        if let Some(shaping) = &self.shaping {
            shaping.apply(&mut shaped)?;
        }
        Ok(())
    }

    /// Samples and scores this rank's share of one step (with dynamic-sampling refills:
    /// groups whose rewards are all equal are dropped and replaced by new prompts, up to
    /// `max_rounds` rounds); advances `state.data_cursor`. Returns the trajectories, their
    /// `group` numbered from 0 in order, and the number of groups dropped.
    pub fn collect(
        &mut self,
        l: &Learner,
        state: &mut TrainState,
        step_seed: u64,
        secs: &mut PhaseSeconds,
    ) -> Result<(Vec<Trajectory>, usize), TrainError> {
        let g = l.cfg.group_size;
        let ds = l.cfg.dynamic_sampling;
        let rounds = if ds.enabled { ds.max_rounds } else { 1 };
        let mut kept: Vec<Trajectory> = Vec::new();
        let mut groups = 0;
        let mut dropped = 0;
        for round in 0..rounds {
            let need = l.cfg.prompts_per_step - groups;
            if need == 0 {
                break;
            }
            let request = self.plan(l, state, state.data_cursor, need, step_seed, round);
            state.data_cursor += need as u64;
            let tasks = request.tasks.clone();
            let t = Instant::now();
            let mut sync = 0.0;
            let mut sampled = match &mut self.sampler {
                Sampler::InProcess(engine) => engine.generate(&l.policy, &request.borrowed())?,
                Sampler::Remote(pipeline) => {
                    sync += pipeline.publish(&l.policy, state.optimizer_step)?;
                    let in_flight = InFlight {
                        step: state.step,
                        cursor_after: state.data_cursor,
                        policy_step: state.step,
                    };
                    pipeline.send(request, in_flight)?;
                    let (_, sampled) = pipeline.take()?;
                    sync += sampled.load_seconds;
                    sampled.trajectories
                }
            };
            secs.weight_sync += sync;
            secs.rollout += t.elapsed().as_secs_f64() - sync;
            let t = Instant::now();
            self.score(&mut sampled, true)?;
            secs.reward += t.elapsed().as_secs_f64();
            let mut sampled = sampled.into_iter();
            for _ in 0..tasks.len() {
                let group: Vec<Trajectory> = sampled.by_ref().take(g).collect();
                let first = group[0].score.as_ref().map(|s| s.reward);
                let equal = group
                    .iter()
                    .all(|t| t.score.as_ref().map(|s| s.reward) == first);
                if ds.enabled && equal && g > 1 {
                    dropped += 1;
                    continue;
                }
                kept.extend(group.into_iter().map(|t| Trajectory { group: groups, ..t }));
                groups += 1;
            }
        }
        Ok((kept, dropped))
    }

    /// The request of one sampling round: `need` prompts from data position `cursor` on
    /// (this rank's share, by single-process position), sampled with the round's seed
    /// by the policy of `state`.
    fn plan(
        &mut self,
        l: &Learner,
        state: &TrainState,
        cursor: u64,
        need: usize,
        step_seed: u64,
        round: usize,
    ) -> Request {
        let (world, rank) = (l.comm.world_size(), l.comm.rank());
        let keys: Vec<u64> = (0..need / world)
            .map(|q| global_prompt(&l.cfg, world, rank, q, need) as u64)
            .collect();
        let tasks: Vec<usize> = keys
            .iter()
            .map(|&p| self.example_at(l.cfg.seed, cursor + p))
            .collect();
        Request {
            prompts: tasks.iter().map(|&i| self.prompt_ids[i].clone()).collect(),
            tasks,
            keys,
            sampling: l
                .cfg
                .rollout
                .sampling(l.cfg.group_size, mix_seed(step_seed, round as u64)),
            policy_version: state.optimizer_step,
        }
    }

    /// Asynchronous experience (`trainer.async.max_staleness = k > 0`, a remote engine):
    /// publishes the current policy, keeps the batches of steps up to `state.step + k`
    /// in flight (each sampled by the newest policy published when it was sent), and
    /// takes this step's batch, scored. Returns it with its policy lag in steps.
    pub fn collect_ahead(
        &mut self,
        l: &Learner,
        state: &mut TrainState,
        secs: &mut PhaseSeconds,
    ) -> Result<(Vec<Trajectory>, u64), TrainError> {
        let k = l.cfg.asynchronous.max_staleness;
        let need = l.cfg.prompts_per_step;
        secs.weight_sync += self.pipeline()?.publish(&l.policy, state.optimizer_step)?;
        let last = (state.step + k).min(l.cfg.steps.saturating_sub(1));
        loop {
            let pipeline = self.pipeline()?;
            let next = state.step + pipeline.in_flight.len() as u64;
            if next > last {
                break;
            }
            let cursor = pipeline
                .in_flight
                .back()
                .map_or(state.data_cursor, |job| job.cursor_after);
            let step_seed = mix_seed(l.cfg.seed, next);
            let request = self.plan(l, state, cursor, need, step_seed, 0);
            let in_flight = InFlight {
                step: next,
                cursor_after: cursor + need as u64,
                policy_step: state.step,
            };
            self.pipeline()?.send(request, in_flight)?;
        }
        let t = Instant::now();
        let (job, sampled) = self.pipeline()?.take()?;
        secs.rollout += t.elapsed().as_secs_f64();
        secs.weight_sync += sampled.load_seconds;
        debug_assert_eq!(job.step, state.step);
        state.data_cursor = job.cursor_after;
        let mut trajectories = sampled.trajectories;
        let t = Instant::now();
        self.score(&mut trajectories, true)?;
        secs.reward += t.elapsed().as_secs_f64();
        Ok((trajectories, state.step - job.policy_step))
    }

    /// The remote engine's pipeline (asynchronous training needs one; the configuration
    /// refuses it with the local engine).
    fn pipeline(&mut self) -> Result<&mut Pipeline, TrainError> {
        match &mut self.sampler {
            Sampler::Remote(pipeline) => Ok(pipeline.as_mut()),
            Sampler::InProcess(_) => Err(TrainError::Config(crate::config::ConfigError::Invalid {
                path: "<config>".into(),
                field: "trainer.async.max_staleness",
                why: "needs an engine with weights of its own (Trainer::with_remote_engine)".into(),
            })),
        }
    }
}
