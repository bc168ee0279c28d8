//! The rollout pipeline of an engine with weights of its own ([`RemoteEngine`]): the
//! engine runs on its own thread and takes jobs in order, each a rollout request and,
//! when the policy changed, the [`WeightUpdate`] to load first. Synchronous training
//! sends a job and waits for it; asynchronous training (`trainer.async.max_staleness =
//! k`) keeps the jobs of the next `k` steps in flight, so step `s` is sampled by the
//! policy of step `s - k` while steps `s - k .. s` train.
//!
//! A batch in flight belongs to no checkpoint: resuming discards it and samples those
//! steps again from the checkpoint's policy (same prompts and seeds, deterministically).

use super::TrainError;
use crate::rollout::{
    RemoteEngine, RolloutError, RolloutRequest, SamplingConfig, Trajectory, WeightUpdate,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

/// An owned rollout request (a job crosses to the engine's thread).
pub(crate) struct Request {
    pub prompts: Vec<Vec<i64>>,
    pub tasks: Vec<usize>,
    pub keys: Vec<u64>,
    pub sampling: SamplingConfig,
    pub policy_version: u64,
}

impl Request {
    /// The request as engines take it.
    pub fn borrowed(&self) -> RolloutRequest<'_> {
        RolloutRequest {
            prompts: &self.prompts,
            tasks: &self.tasks,
            keys: &self.keys,
            sampling: &self.sampling,
            policy_version: self.policy_version,
        }
    }
}

struct Job {
    update: Option<WeightUpdate>,
    request: Request,
}

/// What a job produced.
pub(crate) struct Sampled {
    pub trajectories: Vec<Trajectory>,
    /// Seconds the engine spent loading the job's weights (0 without an update).
    pub load_seconds: f64,
}

/// A job sent and not yet taken.
pub(crate) struct InFlight {
    /// The step it samples for.
    pub step: u64,
    /// The data cursor after its prompts.
    pub cursor_after: u64,
    /// The step whose policy samples it.
    pub policy_step: u64,
}

/// The engine's thread and the jobs in flight.
pub(crate) struct Pipeline {
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
    results: mpsc::Receiver<Result<Sampled, RolloutError>>,
    name: String,
    /// Where weight updates are written.
    sync_dir: PathBuf,
    /// The probe tokens scored after each load.
    probe: Vec<i64>,
    /// The update to send with the next job (published, not yet sent).
    pending: Option<WeightUpdate>,
    /// The version of the newest update published.
    published: Option<u64>,
    /// Jobs sent and not yet taken, oldest first.
    pub in_flight: VecDeque<InFlight>,
}

impl Pipeline {
    /// Starts `engine`'s thread; `first`, when given, is the update its first job loads.
    pub fn start(
        engine: Box<dyn RemoteEngine>,
        sync_dir: PathBuf,
        probe: Vec<i64>,
        first: Option<WeightUpdate>,
    ) -> Self {
        let name = engine.name();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (result_tx, results) = mpsc::channel();
        let mut engine = engine;
        let worker = std::thread::Builder::new()
            .name("cove-rollout".into())
            .spawn(move || {
                for job in job_rx {
                    let out = run_job(engine.as_mut(), job);
                    if result_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the rollout thread");
        Pipeline {
            jobs: Some(jobs),
            worker: Some(worker),
            results,
            name,
            sync_dir,
            probe,
            published: first.as_ref().map(|update| update.version),
            pending: first,
            in_flight: VecDeque::new(),
        }
    }

    /// Writes the policy of `version` for the engine (it is loaded before the next job
    /// sent) unless that version was the last published; returns the seconds it took.
    pub fn publish(
        &mut self,
        policy: &crate::model::Policy,
        version: u64,
    ) -> Result<f64, TrainError> {
        if self.published == Some(version) {
            return Ok(0.0);
        }
        let update = WeightUpdate::publish(policy, &self.sync_dir, version, &self.probe)?;
        let seconds = update.seconds;
        self.pending = Some(update);
        self.published = Some(version);
        Ok(seconds)
    }

    /// Sends a job: `request`, after the pending weight update if any.
    pub fn send(&mut self, request: Request, in_flight: InFlight) -> Result<(), TrainError> {
        let job = Job {
            update: self.pending.take(),
            request,
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(self.gone());
        }
        self.in_flight.push_back(in_flight);
        Ok(())
    }

    /// Waits for the oldest job in flight.
    pub fn take(&mut self) -> Result<(InFlight, Sampled), TrainError> {
        let Some(front) = self.in_flight.pop_front() else {
            return Err(self.gone());
        };
        match self.results.recv() {
            Ok(out) => Ok((front, out?)),
            Err(_) => Err(self.gone()),
        }
    }

    /// Waits for every job in flight and drops their batches (a resume starts from the
    /// checkpoint's data cursor and policy). The next job reloads the weights.
    pub fn discard(&mut self) -> Result<(), TrainError> {
        while !self.in_flight.is_empty() {
            self.take()?;
        }
        self.published = None;
        self.pending = None;
        Ok(())
    }

    fn gone(&self) -> TrainError {
        TrainError::Rollout(RolloutError::Server {
            url: self.name.clone(),
            message: "the rollout thread stopped".into(),
        })
    }
}

/// One job on the engine's thread: load, then sample.
fn run_job(engine: &mut dyn RemoteEngine, job: Job) -> Result<Sampled, RolloutError> {
    let start = Instant::now();
    if let Some(update) = &job.update {
        engine.load(update)?;
    }
    let load_seconds = start.elapsed().as_secs_f64();
    let trajectories = engine.generate(&job.request.borrowed())?;
    Ok(Sampled {
        trajectories,
        load_seconds,
    })
}

impl Drop for Pipeline {
    /// Ends the engine's thread after the job it is on, so the engine (a launched
    /// server) is dropped before the trainer is.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
