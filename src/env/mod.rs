//! Environments: tasks the policy solves over several turns.
//!
//! An [`Environment`] answers each assistant turn of an episode with an [`Observation`]
//! (text that goes back to the policy: a tool's output, a user's reply) or ends it, and
//! scores the finished episode. The multi-turn engine
//! ([`crate::rollout::MultiTurnEngine`]) runs many episodes at once on the policy's KV
//! cache and writes each as one [`crate::rollout::Trajectory`], the observation tokens in
//! the sequence with loss mask 0.
//!
//! - [`SingleTurn`]: any [`Reward`](cove_verifiers::Reward) as an environment with no observations (one
//!   assistant turn, scored by the reward): a single-turn task is the degenerate episode.
//! - [`code_interpreter::CodeInterpreter`]: tool-integrated reasoning: the policy calls a
//!   Python tool (fenced programs, or its chat template's `<tool_call>` format), each
//!   call runs in the code verifier's sandbox in a session that keeps its state for the
//!   episode, and the output comes back as a fenced `output` block or a `tool` message;
//!   the final answer is scored by a [`Reward`](cove_verifiers::Reward) (the math
//!   verifier in `train-math`).
//!
//! A user's environment is one implementation of [`Environment`] plus a dataset loader,
//! as a [`Reward`](cove_verifiers::Reward) is; [`crate::trainer::Trainer::with_engine`]
//! trains on its episodes. A guessing game that answers "higher" or "lower" as a user
//! turn, rewarded by how few guesses it took:
//!
//! ```no_run
//! use cove::env::{Environment, Observation, Placement, Reply};
//! use cove::rollout::{EpisodeLimits, MultiTurnEngine};
//! use cove::trainer::{Example, Trainer};
//! use cove::verifiers::{Reward, Score};
//!
//! struct Guess;
//! impl Environment for Guess {
//!     type Task = i64; // the secret
//!     type Session = usize; // guesses so far
//!     fn name(&self) -> &str { "guess" }
//!     fn start(&self, _secret: &i64) -> usize { 0 }
//!     fn reply(&self, secret: &i64, guesses: &mut usize, turn: &str, _calls_left: usize) -> Reply {
//!         *guesses += 1;
//!         let text = match turn.trim().parse::<i64>() {
//!             Ok(g) if g == *secret => return Reply::End,
//!             Ok(g) if g < *secret => "Higher.",
//!             Ok(_) => "Lower.",
//!             Err(_) => "Answer with a number.",
//!         };
//!         let placement = Placement::Message("user".into());
//!         Reply::Observe(Observation { text: text.into(), placement, tool_call: None })
//!     }
//!     fn score(&self, secret: &i64, guesses: &usize, transcript: &str) -> Score {
//!         let won = transcript.trim_end().ends_with(&secret.to_string());
//!         let reward = if won { 1.0 / *guesses as f64 } else { 0.0 };
//!         Score { reward, correct: won, details: format!("{guesses} guesses") }
//!     }
//! }
//!
//! /// The trainer's own reward scores only trajectories that come unscored (none here).
//! struct Unused;
//! impl Reward for Unused {
//!     type Task = i64;
//!     fn name(&self) -> &str { "unused" }
//!     fn score(&self, _: &i64, _: &str) -> Score {
//!         Score { reward: 0.0, correct: false, details: String::new() }
//!     }
//! }
//!
//! let secrets: Vec<i64> = (1..=32).collect();
//! let data = secrets.iter()
//!     .map(|&s| Example { prompt: "Guess my number from 1 to 32.".into(), task: s })
//!     .collect();
//! let limits = EpisodeLimits { max_turns: 6, max_tool_calls: 0, max_total_tokens: 256 };
//! let engine = MultiTurnEngine::new(Guess, secrets.clone(), limits);
//! let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
//! let mut trainer = Trainer::new(Default::default(), policy, Unused, data)
//!     .unwrap()
//!     .with_engine(Box::new(engine));
//! trainer.run(|m| { println!("{}", m.summary()); std::ops::ControlFlow::Continue(()) }).unwrap();
//! ```

pub mod code_interpreter;
mod config;
mod single_turn;

pub use code_interpreter::{CodeInterpreter, ToolFormat};
pub use config::{EnvKind, EnvSection};
pub use single_turn::SingleTurn;

use crate::data::Prompt;
use cove_verifiers::Score;

/// What goes back to the policy after one of its turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The text the policy reads next.
    pub text: String,
    /// How the text enters the conversation.
    pub placement: Placement,
    /// The tool call that produced it, when one did (for the tool metrics).
    pub tool_call: Option<ToolCall>,
}

/// Where an observation's text goes in the token sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Right after the turn's last token, inside the assistant's own message (a fenced
    /// `output` block after a fenced program, as ReTool and SimpleTIR do); the policy
    /// continues the same message.
    Inline,
    /// A new message with this role (`user`, `tool`), rendered by the model's chat
    /// template after the assistant's message, followed by a new assistant header.
    Message(String),
}

/// One tool call's outcome, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolCall {
    /// Whether the call failed (an exception, a limit, a sandbox failure).
    pub error: bool,
    /// Wall-clock seconds it took.
    pub seconds: f64,
}

/// How an environment answers a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The episode goes on: the policy reads this and takes another turn.
    Observe(Observation),
    /// The episode is over: the turn was the policy's answer.
    End,
    /// The turn asks for a tool call beyond the episode's budget (`calls_left` was 0):
    /// the episode ends with finish reason `tool_calls`.
    OverBudget,
}

/// A multi-turn task: see the module docs. Implementations are shared across the
/// threads that run episodes' replies in parallel, so they are `Send + Sync`; all
/// per-episode state lives in its [`Environment::Session`].
pub trait Environment: Send + Sync {
    /// What the environment needs to know about a task (as [`Reward::Task`](cove_verifiers::Reward::Task)).
    type Task: Send + Sync;
    /// The state of one episode (a Python session's history, a game's board).
    type Session: Send;

    /// A short stable name for logs and errors.
    fn name(&self) -> &str;

    /// The opening messages of an episode whose dataset prompt is `prompt` (the default
    /// keeps it; a tool environment adds the system prompt that explains its tool).
    fn opening(&self, prompt: &Prompt) -> Prompt {
        prompt.clone()
    }

    /// Whether the assistant's turn so far (`turn`, special tokens skipped) is complete
    /// and waits for the environment (a closed program block): the engine stops the
    /// turn there. A turn also ends at an EOS token.
    fn turn_ends(&self, turn: &str) -> bool {
        let _ = turn;
        false
    }

    /// A fresh episode of `task`.
    fn start(&self, task: &Self::Task) -> Self::Session;

    /// Answers the assistant's latest `turn`. `calls_left` is how many tool calls the
    /// episode may still make ([`Reply::OverBudget`] when a turn asks for one at 0).
    /// Called on a worker thread, possibly at the same time as other episodes' replies.
    fn reply(
        &self,
        task: &Self::Task,
        session: &mut Self::Session,
        turn: &str,
        calls_left: usize,
    ) -> Reply;

    /// The reward of a finished episode whose text after the prompt (turns and
    /// observations, in order) is `transcript`.
    fn score(&self, task: &Self::Task, session: &Self::Session, transcript: &str) -> Score;
}
