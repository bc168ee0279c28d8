//! The forwards of a step: the packed training forward of a micro-batch, the no-grad
//! log-probs of whole sequences (old or reference policy), and the step's per-token
//! tensors.

use super::TrainError;
use super::batch::{Seqs, StepTokens, pad_to, row_index};
use super::learner::{Learner, Reference};
use crate::batching::{MicroBatch, SeqShape, plan_micro_batches};
use crate::loss::rollout_correction::{Mismatch, mismatch, rollout_weights};
use crate::model::lora::AdaptersOff;
use crate::model::{
    LogprobOptions, PackedItem, Policy, ResponseLogprobs, packed_response_logprobs,
};
use crate::rollout::Trajectory;
use tch::{Kind, Tensor};

/// The planner's view of `seqs`.
pub(crate) fn shapes(seqs: &Seqs) -> Vec<SeqShape> {
    (0..seqs.len())
        .map(|i| SeqShape {
            group: seqs.groups[i],
            prompt_len: seqs.prompts[i].len(),
            response_len: seqs.responses[i].len(),
        })
        .collect()
}

/// The packed forward of micro-batch `micro` of `seqs` under `policy`, in the current
/// grad mode: log-probs and entropies `[rows of micro, width]`, rows in `micro.rows()`
/// order, and their backward (with the configured activation checkpointing and logit
/// recomputation).
pub(crate) fn forward<'p>(
    l: &Learner,
    policy: &'p Policy,
    seqs: &Seqs,
    micro: &MicroBatch,
    width: i64,
    entropy_grad: bool,
) -> Result<ResponseLogprobs<'p>, TrainError> {
    let items: Vec<PackedItem> = micro
        .units
        .iter()
        .map(|unit| PackedItem {
            prompt: seqs.prompts[unit[0]],
            responses: unit.iter().map(|&i| seqs.responses[i]).collect(),
        })
        .collect();
    let mut out = packed_response_logprobs(
        policy.model.as_ref(),
        &items,
        l.cfg.share_prompt_prefix,
        &LogprobOptions {
            temperature: l.cfg.rollout.temperature,
            entropy_grad,
            recompute_logits: l.cfg.recompute_logits,
            activation_checkpointing: l.cfg.activation_checkpointing,
            ..LogprobOptions::default()
        },
    )?;
    out.logprobs = pad_to(&out.logprobs, width);
    out.entropies = pad_to(&out.entropies, width);
    Ok(out)
}

/// Log-probs and entropies `[rows, width]` of every sequence under `policy`, no
/// gradient, in micro-batches of `logprob_batch_size` rows or the token budget.
pub(crate) fn logprobs_no_grad(
    l: &Learner,
    policy: &Policy,
    seqs: &Seqs,
    width: i64,
) -> Result<(Tensor, Tensor), TrainError> {
    let _guard = tch::no_grad_guard();
    let device = policy.model.device();
    let n = seqs.len() as i64;
    let mut logp = Tensor::zeros([n, width], (Kind::Float, device));
    let mut entropy = logp.zeros_like();
    let rule = l.micro_batching(l.cfg.logprob_batch_size);
    for micro in plan_micro_batches(&shapes(seqs), rule, l.cfg.share_prompt_prefix) {
        let out = forward(l, policy, seqs, &micro, width, false)?;
        let idx = row_index(&micro.rows(), device);
        logp = logp.index_copy(0, &idx, &out.logprobs);
        entropy = entropy.index_copy(0, &idx, &out.entropies);
    }
    Ok((logp, entropy))
}

/// What [`step_tokens`] computes: the step's per-token tensors, the old policy's
/// entropies, and the gap between the recomputed old log-probs and the behaviour
/// policy's when both are known.
pub(crate) struct StepInputs {
    pub tokens: StepTokens,
    pub entropy: Tensor,
    pub mismatch: Option<Mismatch>,
}

/// The step's per-token tensors (old log-probs: the behaviour policy's when configured
/// and every trajectory has them, else recomputed; the loss mask; advantages; reference
/// log-probs; the rollout correction's weights), the old policy's entropies and the
/// behaviour mismatch.
pub(crate) fn step_tokens(
    l: &Learner,
    trajectories: &[Trajectory],
    seqs: &Seqs,
    adv: &[f64],
    width: i64,
) -> Result<StepInputs, TrainError> {
    let device = l.device();
    let n = trajectories.len() as i64;
    let w = width as usize;
    let padded = |values: &dyn Fn(&Trajectory) -> &[f32]| {
        let mut flat = vec![0f32; n as usize * w];
        for (i, t) in trajectories.iter().enumerate() {
            let v = values(t);
            flat[i * w..i * w + v.len()].copy_from_slice(v);
        }
        Tensor::from_slice(&flat).view([n, width]).to_device(device)
    };
    let valid = {
        let mut flat = vec![false; n as usize * w];
        for (i, t) in trajectories.iter().enumerate() {
            let mask = t.response_mask();
            flat[i * w..i * w + mask.len()].copy_from_slice(mask);
        }
        Tensor::from_slice(&flat).view([n, width]).to_device(device)
    };
    let behaviour_known = trajectories
        .iter()
        .all(|t| t.logprobs.is_some() && t.entropies.is_some());
    let behaviour = || padded(&|t| t.logprobs.as_deref().unwrap_or_default());
    let reused = l.cfg.reuse_rollout_logprobs && behaviour_known;
    let (old, entropy) = if reused {
        (
            behaviour(),
            padded(&|t| t.entropies.as_deref().unwrap_or_default()),
        )
    } else {
        logprobs_no_grad(l, &l.policy, seqs, width)?
    };
    let behaviour = (!reused && trajectories.iter().all(|t| t.logprobs.is_some())).then(behaviour);
    let weight = match (&l.cfg.loss.rollout_correction, &behaviour) {
        (Some(rc), Some(b)) => Some(rollout_weights(&old, b, &valid, rc)),
        (Some(_), None) => {
            return Err(TrainError::Batch {
                index: trajectories
                    .iter()
                    .position(|t| t.logprobs.is_none())
                    .unwrap_or_default(),
                why: "trainer.loss.rollout_correction needs the behaviour log-probs, and \
                      the rollout engine gave this trajectory none"
                    .into(),
            });
        }
        (None, _) => None,
    };
    let mismatch = behaviour.as_ref().map(|b| mismatch(&old, b, &valid));
    let reference = match (&l.cfg.ref_kl, &l.reference) {
        (Some(_), Some(Reference::Policy(r))) => Some(logprobs_no_grad(l, r, seqs, width)?.0),
        (Some(_), Some(Reference::AdapterBase)) => {
            let _base = AdaptersOff::new(l.policy.model.as_ref());
            Some(logprobs_no_grad(l, &l.policy, seqs, width)?.0)
        }
        (Some(_), None) => return Err(l.missing_reference()),
        _ => None,
    };
    let adv = Tensor::from_slice(&adv.iter().map(|&a| a as f32).collect::<Vec<_>>())
        .to_device(device)
        .view([n, 1])
        .expand([n, width], false)
        .contiguous();
    Ok(StepInputs {
        tokens: StepTokens {
            old,
            valid,
            adv,
            reference,
            weight,
        },
        entropy,
        mismatch,
    })
}
