//! [`TrainError`]: what a training run can fail on, each naming its source.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::dist::DistError;
use crate::model::ModelError;
use crate::rollout::RolloutError;
use std::path::PathBuf;

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
    /// A trajectory given to [`super::Trainer::learn`] is unusable.
    #[error("trajectory {index}: {why}")]
    Batch {
        /// Index of the trajectory.
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
    /// The reward's endpoint (`[reward] url`) failed.
    #[error(transparent)]
    Reward(#[from] crate::reward::RemoteError),
    /// An evaluation during training failed.
    #[error("evaluation at step {step}: {why}")]
    Eval {
        /// The step after which it ran.
        step: u64,
        /// What failed.
        why: String,
    },
}
