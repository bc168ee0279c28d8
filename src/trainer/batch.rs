//! The step's data as the learner sees it: the sequences ([`Seqs`]) and the per-token
//! tensors ([`StepTokens`]) of a step or a slice of it.

use crate::loss::TokenTensors;
use crate::rollout::Trajectory;
use tch::Tensor;

/// The sequences of a step (or a slice of it) in row order: group, prompt ids and
/// response ids of each.
pub(crate) struct Seqs<'a> {
    pub groups: Vec<usize>,
    pub prompts: Vec<&'a [i64]>,
    pub responses: Vec<&'a [i64]>,
}

impl<'a> Seqs<'a> {
    /// The sequences of `trajectories`, in order.
    pub fn of(trajectories: &'a [Trajectory]) -> Seqs<'a> {
        Seqs {
            groups: trajectories.iter().map(|t| t.group).collect(),
            prompts: trajectories.iter().map(Trajectory::prompt).collect(),
            responses: trajectories.iter().map(Trajectory::response).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn slice(&self, range: std::ops::Range<usize>) -> Seqs<'a> {
        Seqs {
            groups: self.groups[range.clone()].to_vec(),
            prompts: self.prompts[range.clone()].to_vec(),
            responses: self.responses[range].to_vec(),
        }
    }
}

/// Per-token tensors `[rows, width]` of a step or a mini-batch of it: old log-probs,
/// the loss mask (`valid`), advantages, the reference policy's log-probs and the rollout
/// correction's weights.
pub(crate) struct StepTokens {
    pub old: Tensor,
    pub valid: Tensor,
    pub adv: Tensor,
    pub reference: Option<Tensor>,
    pub weight: Option<Tensor>,
}

impl StepTokens {
    /// The same rows of every tensor, taken by `take`.
    fn map(&self, take: impl Fn(&Tensor) -> Tensor) -> StepTokens {
        StepTokens {
            old: take(&self.old),
            valid: take(&self.valid),
            adv: take(&self.adv),
            reference: self.reference.as_ref().map(&take),
            weight: self.weight.as_ref().map(&take),
        }
    }

    pub fn slice(&self, range: std::ops::Range<usize>) -> StepTokens {
        self.map(|x| x.narrow(0, range.start as i64, range.len() as i64))
    }

    pub fn rows(&self, idx: &Tensor) -> StepTokens {
        self.map(|x| x.index_select(0, idx))
    }

    /// The loss's view with `logp` as the current log-probs.
    pub fn with_logp<'a>(&'a self, logp: &'a Tensor) -> TokenTensors<'a> {
        TokenTensors {
            logp,
            old_logp: &self.old,
            adv: &self.adv,
            valid: &self.valid,
        }
    }
}

/// `x` `[rows, r]` zero-padded on the right to `[rows, width]`.
pub(crate) fn pad_to(x: &Tensor, width: i64) -> Tensor {
    let r = x.size()[1];
    if r < width {
        x.constant_pad_nd([0, width - r])
    } else {
        x.shallow_clone()
    }
}

/// `rows` as an i64 index tensor on `device`.
pub(crate) fn row_index(rows: &[usize], device: tch::Device) -> Tensor {
    Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(device)
}
