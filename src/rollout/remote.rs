//! Engines with weights of their own (an inference server): they sample without the
//! trainer's [`Policy`] object, so they can run on their own thread while the trainer
//! updates, and receive each new policy as a [`WeightUpdate`].

use super::{RolloutError, RolloutRequest, Trajectory};
use crate::model::{LogprobOptions, PackedItem, Policy, packed_response_logprobs};
use std::path::{Path, PathBuf};

/// A new policy version for a [`RemoteEngine`]: its full weights written as a Hugging
/// Face folder, and the trainer's log-probs of fixed probe tokens under it, which the
/// engine checks its own against after loading.
#[derive(Debug, Clone)]
pub struct WeightUpdate {
    /// The version (optimizer steps done).
    pub version: u64,
    /// The folder holding the weights (`model.safetensors`, config, tokenizer).
    pub dir: PathBuf,
    /// The probe's token ids: its first token is the context, the rest are scored.
    pub probe: Vec<i64>,
    /// The trainer's log-probs (temperature 1) of `probe[1..]`.
    pub probe_logprobs: Vec<f32>,
    /// Seconds the trainer spent writing the folder and computing the probe.
    pub seconds: f64,
}

impl WeightUpdate {
    /// Writes `policy` into `sync_dir/v{version}` atomically (a temporary sibling
    /// renamed into place) and scores `probe` under it.
    pub fn publish(
        policy: &Policy,
        sync_dir: &Path,
        version: u64,
        probe: &[i64],
    ) -> Result<WeightUpdate, RolloutError> {
        let start = std::time::Instant::now();
        let dir = sync_dir.join(format!("v{version}"));
        policy.save_pretrained_replacing(&dir)?;
        let probe_logprobs = probe_logprobs(policy, probe)?;
        Ok(WeightUpdate {
            version,
            dir,
            probe: probe.to_vec(),
            probe_logprobs,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// `policy`'s log-probs at temperature 1 of `ids[1..]`, each given the tokens before it.
pub fn probe_logprobs(policy: &Policy, ids: &[i64]) -> Result<Vec<f32>, RolloutError> {
    let _guard = tch::no_grad_guard();
    if ids.len() < 2 {
        return Err(RolloutError::Config {
            field: "probe".into(),
            message: "needs at least two tokens".into(),
        });
    }
    let out = packed_response_logprobs(
        policy.model.as_ref(),
        &[PackedItem {
            prompt: &ids[..1],
            responses: vec![&ids[1..]],
        }],
        false,
        &LogprobOptions::default(),
    )?;
    let row = out.logprobs.get(0).to_kind(tch::Kind::Float);
    Ok(Vec::<f32>::try_from(&row)?)
}

/// An engine that holds its own copy of the weights (an inference server).
pub trait RemoteEngine: Send {
    /// A short name for logs and errors (with the server's address).
    fn name(&self) -> String;

    /// Loads `update` and checks the engine's probe log-probs against the trainer's.
    /// Called before the first request of every version.
    fn load(&mut self, update: &WeightUpdate) -> Result<(), RolloutError>;

    /// Samples `request` from the loaded weights, as [`super::RolloutEngine::generate`]
    /// does (prompt-major order, `group` the prompt's index, `score` unset), with the
    /// behaviour log-probs.
    fn generate(&mut self, request: &RolloutRequest) -> Result<Vec<Trajectory>, RolloutError>;
}
