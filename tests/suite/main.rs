//! Cove's integration tests, one binary (one link of libtorch, wasmtime and the
//! tokenizers stack instead of one per file): each module is one area of the crate.

mod app_binaries;
mod app_data;
mod app_demo;
mod app_export;
mod app_reward;
mod data_parallel;
mod doctor;
mod env_tools;
mod learner_common;
mod learner_cov_share;
mod learner_digests;
mod learner_e2e;
mod learner_loss;
mod learner_memory;
mod learner_on_policy;
mod learner_packing;
mod learner_policy_loss;
mod learner_resume;
mod learner_scope;
mod learner_trajectories;
mod lora;
mod model_errors;
mod model_parity;
mod model_rollout;
mod model_smollm2;
mod serve;
mod tch_smoke;
mod test_util;
mod vllm_engine;

/// Serialises the tests that seed and draw from libtorch's process-global generator
/// (`tch::manual_seed`), which would otherwise race now that they share a process.
pub fn global_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
