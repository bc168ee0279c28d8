//! A [`Reward`] as an [`Environment`]: one assistant turn, no observations.

use super::{Environment, Reply};
use cove_verifiers::{Reward, Score};

/// The single-turn task as an environment: the episode ends after the first turn, which
/// `reward` scores. With it the multi-turn engine samples exactly what the local engine
/// does (the tests check token for token), so single-turn and multi-turn training are
/// one path.
#[derive(Debug, Clone)]
pub struct SingleTurn<R>(pub R);

impl<R: Reward> Environment for SingleTurn<R> {
    type Task = R::Task;
    type Session = ();

    fn name(&self) -> &str {
        self.0.name()
    }

    fn start(&self, _task: &R::Task) {}

    fn reply(&self, _task: &R::Task, _session: &mut (), _turn: &str, _calls_left: usize) -> Reply {
        Reply::End
    }

    fn score(&self, task: &R::Task, _session: &(), transcript: &str) -> Score {
        self.0.score(task, transcript)
    }
}
