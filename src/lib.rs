//! Cove: reinforcement learning with verifiable rewards for reasoning language models.
//!
//! The learner crate: a GRPO trainer on libtorch whose loss implements the
//! covariance-based entropy controls Clip-Cov and KL-Cov. Verifiers live in the
//! separate `cove-verifiers` crate, re-exported here as [`verifiers`].
//!
//! One step flows through the crate as: [`data`] (a task's examples) → [`model`] (the
//! prompt's token ids) → [`rollout`] (a [`rollout::RolloutEngine`] makes
//! [`rollout::Trajectory`] records) → reward ([`verifiers`]) → [`advantage`] → [`loss`]
//! (Clip-Cov / KL-Cov over [`batching`]'s micro-batches) → [`optim`]; [`trainer`] chains
//! these stages, [`checkpoint`] and [`metrics`] record them, [`dist`] spreads them over
//! ranks. [`recipe`] builds the bundled tasks' trainers from configuration. Everything
//! that parses arguments, draws or prints progress is in [`cli`] (feature `cli`, on by
//! default), so the library builds without a command line.

pub mod advantage;
pub mod batching;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod data;
pub mod dist;
pub mod doctor;
pub mod env;
pub mod eval;
pub mod law;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod recipe;
pub mod reproducible;
pub mod reward;
pub mod rollout;
pub mod run_dir;
pub mod seed;
pub mod tensorboard;
pub mod trainer;

pub use cove_verifiers as verifiers;
