//! The contract between rollout and learning: [`Trajectory`] records, made by a
//! [`RolloutEngine`].

use super::{FinishReason, RolloutError, SamplingConfig};
use crate::model::{Message, Policy};
use cove_verifiers::Score;

/// One sampled episode, as the learner needs it and nothing about how it was sampled.
///
/// `tokens` is the whole sequence: the prompt (`tokens[..prompt_len]`) and then
/// everything after it, the policy's own tokens and, in a multi-turn episode, the
/// tokens an environment or a tool wrote. `loss_mask` says which of them the policy is
/// trained on (true) and which it only reads (false: the prompt, observations, tool
/// output). Every pass of the learner (packing, selection, normalisers, metrics) counts
/// only the tokens whose mask is true.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Index of its task in the trainer's dataset (the request's `tasks[i]`).
    pub task: usize,
    /// Its group: trajectories of one prompt share one, and GRPO normalises within it.
    pub group: usize,
    /// The whole sequence's token ids: prompt, then response (and observations).
    pub tokens: Vec<i64>,
    /// Length of the prompt at the start of `tokens`.
    pub prompt_len: usize,
    /// One per token of `tokens`: whether the loss trains on it.
    pub loss_mask: Vec<bool>,
    /// The behaviour policy's log-prob of each token after the prompt
    /// (`tokens[prompt_len..]`), when the engine has them (0 for tokens it did not
    /// sample: observations).
    pub logprobs: Option<Vec<f32>>,
    /// The behaviour policy's entropy at each token after the prompt, when known.
    pub entropies: Option<Vec<f32>>,
    /// The version (optimizer steps done) of the policy that sampled it.
    pub policy_version: u64,
    /// The response text as the reward reads it (special tokens skipped).
    pub text: String,
    /// Its reward and details, once scored.
    pub score: Option<Score>,
    /// Why it ended.
    pub finish: FinishReason,
    /// What a multi-turn episode did besides its tokens (`None` from a single-turn
    /// engine).
    pub episode: Option<Episode>,
}

/// What a multi-turn episode did besides its tokens: its messages and its tool calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Episode {
    /// The messages after the prompt, in order: each assistant turn (`assistant`) and
    /// each observation (`tool` for an inline tool output, else the role it was given).
    pub messages: Vec<Message>,
    /// Tool calls made.
    pub tool_calls: usize,
    /// Tool calls that failed (an exception, a limit, a sandbox failure).
    pub tool_errors: usize,
    /// Seconds spent in tool calls.
    pub tool_seconds: f64,
    /// Offsets into the response (`tokens[prompt_len..]`) where the policy's tokens
    /// resume after an observation: where agentic-RL work finds entropy spikes.
    pub resumes: Vec<usize>,
}

impl Trajectory {
    /// The tokens after the prompt.
    pub fn response(&self) -> &[i64] {
        &self.tokens[self.prompt_len..]
    }

    /// The prompt's tokens.
    pub fn prompt(&self) -> &[i64] {
        &self.tokens[..self.prompt_len]
    }

    /// The loss mask of the tokens after the prompt.
    pub fn response_mask(&self) -> &[bool] {
        &self.loss_mask[self.prompt_len..]
    }

    /// Checks the lengths agree (mask per token, log-probs and entropies per response
    /// token, a prompt inside the sequence); the error says which does not.
    pub fn check(&self) -> Result<(), String> {
        let n = self.tokens.len();
        if self.prompt_len == 0 || self.prompt_len > n {
            return Err(format!("prompt_len {} for {n} tokens", self.prompt_len));
        }
        if self.loss_mask.len() != n {
            return Err(format!(
                "{} mask values for {n} tokens",
                self.loss_mask.len()
            ));
        }
        if self.loss_mask[..self.prompt_len].iter().any(|&m| m) {
            return Err("the loss mask covers prompt tokens".into());
        }
        let after = n - self.prompt_len;
        for (what, v) in [
            ("log-probs", &self.logprobs),
            ("entropies", &self.entropies),
        ] {
            if let Some(v) = v
                && v.len() != after
            {
                return Err(format!("{} {what} for {after} response tokens", v.len()));
            }
        }
        Ok(())
    }
}

/// What an engine is asked for: `sampling.n` trajectories of each prompt.
#[derive(Debug, Clone)]
pub struct RolloutRequest<'a> {
    /// Token ids of each prompt.
    pub prompts: &'a [Vec<i64>],
    /// Each prompt's task index in the dataset (copied into [`Trajectory::task`]).
    pub tasks: &'a [usize],
    /// Each prompt's random-stream key: sample `j` of prompt `i` draws from stream
    /// `keys[i] * n + j` of `sampling.seed` (a prompt's global position, so data-parallel
    /// ranks sample what one process samples).
    pub keys: &'a [u64],
    /// How to sample.
    pub sampling: &'a SamplingConfig,
    /// The version of `policy` (recorded in each trajectory).
    pub policy_version: u64,
}

impl RolloutRequest<'_> {
    /// Checks that there is one task per prompt; the error names `tasks`.
    pub fn check_tasks(&self) -> Result<(), RolloutError> {
        if self.tasks.len() == self.prompts.len() {
            return Ok(());
        }
        Err(RolloutError::Config {
            field: "tasks".into(),
            message: format!(
                "{} tasks for {} prompts",
                self.tasks.len(),
                self.prompts.len()
            ),
        })
    }
}

/// Makes trajectories from the trainer's policy, on the trainer's thread: the in-process
/// sampler ([`super::LocalEngine`]), the multi-turn loop with an environment and its
/// tools ([`super::MultiTurnEngine`]). Returns prompt-major order (all
/// trajectories of prompt 0, then prompt 1, ...), `group` set to the prompt's index in
/// the request and `score` unset.
pub trait RolloutEngine: Send {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// Samples the request from `policy`. (An engine with weights of its own is a
    /// [`super::RemoteEngine`] instead.)
    fn generate(
        &mut self,
        policy: &Policy,
        request: &RolloutRequest,
    ) -> Result<Vec<Trajectory>, RolloutError>;
}
