//! The `Reward` trait: how a task's response is scored.
//!
//! A reward sees the task's own data (a gold answer, a test suite; the associated type
//! [`Reward::Task`]) and one model response, and returns a [`Score`]. The math and code
//! verifiers implement it, and a user adding a custom task implements it once. It lives
//! in this crate (no libtorch) so that rewards can be used and tested on their own.

/// The outcome of scoring one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// The scalar reward fed to the advantage estimator.
    pub reward: f64,
    /// Whether the response solves the task (drives the accuracy metric).
    pub correct: bool,
    /// A short human-readable explanation (extracted answer, failing test, ...).
    pub details: String,
}

/// Scores responses for one kind of task. Implementations must be callable from many
/// threads at once: the trainer scores a batch of responses in parallel.
pub trait Reward: Send + Sync {
    /// What the reward needs to know about a task besides the response.
    type Task: Send + Sync;

    /// A short stable name, used in metrics and logs.
    fn name(&self) -> &str;

    /// Scores one response to `task`. Never panics on model output.
    fn score(&self, task: &Self::Task, response: &str) -> Score;
}
