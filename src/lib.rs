//! Cove: reinforcement learning with verifiable rewards for reasoning language models.
//!
//! The learner crate: a GRPO trainer on libtorch whose loss implements the
//! covariance-based entropy controls Clip-Cov and KL-Cov. Verifiers live in the
//! separate `cove-verifiers` crate, re-exported here as [`verifiers`].

pub mod advantage;
pub mod app;
pub mod batching;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod demo;
pub mod dist;
pub mod doctor;
pub mod law;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod report;
pub mod rollout;
pub mod tiny;
pub mod trainer;

pub use cove_verifiers as verifiers;
