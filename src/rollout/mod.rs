//! Rollouts: the seam between sampling and learning.
//!
//! A [`RolloutEngine`] turns a batch of prompts into [`Trajectory`] records, everything
//! the learner needs about each sampled response and nothing about how it was sampled.
//! The learner ([`crate::trainer`]) consumes trajectories only, so a new engine (an
//! inference server, a multi-turn loop with tools) is a new file beside [`local`].
//!
//! [`vllm::VllmEngine`] samples on a vLLM server over HTTP (token ids in and out, with
//! the behaviour log-probs); as a [`RemoteEngine`] it holds weights of its own, which
//! the trainer pushes as [`WeightUpdate`]s, and can sample ahead of the trainer
//! (`trainer.async.max_staleness`).
//!
//! [`multi_turn::MultiTurnEngine`] runs episodes of a [`crate::env::Environment`] (tools,
//! several turns) on the same KV-cached decoding.
//!
//! [`local::LocalEngine`] is the in-process engine: batched, KV-cached decoding on the
//! [`crate::model::Policy`] being trained ([`generate`], [`generate_keyed`]), with the sampling rules of
//! [`sampler`].
//!
//! ```no_run
//! use cove::rollout::{generate, SamplingConfig};
//! let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
//! let prompts = vec![policy.encode("What is 12+7?").unwrap()];
//! let cfg = SamplingConfig { n: 8, temperature: 1.0, max_new_tokens: 16, ..Default::default() };
//! for s in generate(&policy, &prompts, &cfg).unwrap() {
//!     println!("{} {:?} {}", s.prompt_index, s.finish_reason, s.text);
//! }
//! ```

pub mod local;
pub mod multi_turn;
pub mod remote;
pub mod sampler;
mod trajectory;
pub mod vllm;

pub use local::{LocalEngine, generate, generate_keyed};
pub use multi_turn::{EpisodeLimits, MultiTurnEngine};
pub use remote::{RemoteEngine, WeightUpdate};
pub use sampler::sample_step;
pub use trajectory::{Episode, RolloutEngine, RolloutRequest, Trajectory};
pub use vllm::{EngineKind, VllmConfig, VllmEngine};

use crate::model::ModelError;
use serde::{Deserialize, Serialize};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Samples per prompt (GRPO's group size); they share one prefill.
    pub n: usize,
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches
    /// `top_p` (1 = off).
    pub top_p: f64,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Longest response, in tokens.
    pub max_new_tokens: usize,
    /// Strings that end a response when its text contains one (the text is cut before
    /// it; the tokens are kept up to the one that completed it).
    pub stop: Vec<String>,
    /// Seed of the per-sample random streams.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |field: &str, message: &str| {
            Err(RolloutError::Config {
                field: field.into(),
                message: message.into(),
            })
        };
        if self.n == 0 {
            return bad("n", "must be at least 1");
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature", "must be finite and >= 0");
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad("top_p", "must lie in (0, 1]");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop strings must not be empty");
        }
        Ok(())
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It produced an EOS token (kept as its last token).
    Eos,
    /// Its text contains a stop string.
    Stop,
    /// It reached `max_new_tokens` (or, multi-turn, `env.max_total_tokens`).
    Length,
    /// Multi-turn: its last allowed turn (`env.max_turns`) waited for the environment.
    Turns,
    /// Multi-turn: a turn asked for a tool call beyond `env.max_tool_calls`.
    #[serde(rename = "tool_calls")]
    ToolCalls,
}

/// One generated response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Index of its prompt in the `prompts` argument.
    pub prompt_index: usize,
    /// Which of the `n` samples of that prompt it is.
    pub sample_index: usize,
    /// Response token ids (the EOS token included when `finish_reason` is `Eos`).
    pub token_ids: Vec<i64>,
    /// log π(token) under `softmax(logits / temperature)`, one per token.
    pub logprobs: Vec<f32>,
    /// Entropy of `softmax(logits / temperature)` at each step, one per token.
    pub entropies: Vec<f32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Decoded response, special tokens skipped, cut before the stop string if any.
    pub text: String,
}

/// Errors of [`generate`].
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A [`SamplingConfig`] field is out of range.
    #[error("sampling config field `{field}`: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A prompt is unusable.
    #[error("prompt {index}: {message}")]
    Prompt {
        /// Its index in `prompts`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The model or tokenizer failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An inference server failed, could not be reached or disagreed with the trainer.
    #[error("inference server {url}: {message}")]
    Server {
        /// The server's address (or the folder an update was written to).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// An environment failed (not a tool call's program: those fail into the episode).
    #[error("environment `{name}`: {message}")]
    Environment {
        /// The environment's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl From<tch::TchError> for RolloutError {
    fn from(e: tch::TchError) -> Self {
        RolloutError::Model(ModelError::Torch(e))
    }
}
