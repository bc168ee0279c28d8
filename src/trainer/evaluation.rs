//! [`Evaluation`]: held-out measures of the policy taken during training.

use crate::eval::{EvalScores, Probe};
use crate::model::Policy;

/// What an [`Evaluation`] runs: the policy and the step after which it is measured, to
/// its scores, or a message saying why it failed.
pub type Measure = Box<dyn FnMut(&Policy, u64) -> Result<EvalScores, String>>;

/// Held-out measures of the policy taken during training: every `every` steps (and
/// after the last), `measure(policy, step)` gives the scores written as the step's
/// `eval`; after every step, the entropy on `probe` is its `probe_entropy`.
pub struct Evaluation {
    /// Steps between measurements.
    pub every: u64,
    /// The measure (an error message stops the run with [`TrainError::Eval`]).
    pub measure: Measure,
    /// A fixed probe whose entropy is measured after every step.
    pub probe: Option<Probe>,
}
