//! The selection's correction pass, and the selection's fingerprints (digest, overlap).
//!
//! When the Clip-Cov / KL-Cov selection needs the current policy's log-probs, it is known
//! only after the mini-batch's last training forward; micro-batches whose backward ran
//! earlier assumed no selection. [`correct_selection`] adds what their selected tokens
//! change in the loss, without a second forward of the whole mini-batch.

use super::TrainError;
use super::batch::{Seqs, StepTokens, row_index};
use super::forward::{forward, shapes};
use super::learner::Learner;
use crate::batching::plan_micro_batches;
use crate::loss::{MiniBatchPlan, aggregate};
use crate::model::ModelError;
use crate::seed::mix_seed;
use tch::{Kind, Tensor};

/// Adds to the gradients what the selected tokens among `rows` (mini-batch rows whose
/// backward ran before the selection was known) change in the loss: the selected
/// per-token loss minus the unselected one, over the same normaliser. Each sequence with
/// a selected token is run up to its last selected token (a log-prob depends on nothing
/// after it), or whole under a sequence-level objective (GSPO). Returns the loss change
/// and the number of selected tokens.
pub(crate) fn correct_selection(
    l: &mut Learner,
    seqs: &Seqs,
    t: &StepTokens,
    plan: &MiniBatchPlan,
    rows: &[usize],
) -> Result<(f64, f64), TrainError> {
    let (Some(selected), Some(norm)) = (&plan.selected, plan.norm) else {
        return Ok((0.0, 0.0));
    };
    let device = l.device();
    let width = t.valid.size()[1];
    // Per row: one past its last selected token (0: none selected).
    let positions = Tensor::arange(width, (Kind::Int64, device)).unsqueeze(0);
    let ends = (selected.to_kind(Kind::Int64) * (&positions + 1)).amax([1], false);
    let mut ends = Vec::<i64>::try_from(&ends).map_err(ModelError::Torch)?;
    if l.cfg.loss.policy.is_sequence_level() {
        for (end, response) in ends.iter_mut().zip(&seqs.responses) {
            if *end > 0 {
                *end = response.len() as i64;
            }
        }
    }
    let touched: Vec<usize> = rows.iter().copied().filter(|&r| ends[r] > 0).collect();
    if touched.is_empty() {
        return Ok((0.0, 0.0));
    }
    let cut = Seqs {
        groups: touched.iter().map(|&r| seqs.groups[r]).collect(),
        prompts: touched.iter().map(|&r| seqs.prompts[r]).collect(),
        responses: touched
            .iter()
            .map(|&r| &seqs.responses[r][..ends[r] as usize])
            .collect(),
    };
    let rule = l.micro_batching(l.cfg.micro_batch_size);
    let (mut loss_change, mut count) = (0.0, 0.0);
    for micro in plan_micro_batches(&shapes(&cut), rule, l.cfg.share_prompt_prefix) {
        let local = micro.rows();
        let idx = row_index(
            &local.iter().map(|&i| touched[i]).collect::<Vec<_>>(),
            device,
        );
        let fwd = forward(l, &l.policy, &cut, &micro, width, false)?;
        let rows = t.rows(&idx);
        let sel = selected.index_select(0, &idx);
        // Positions after the cut are never selected; hold their ratio at 1 there (a
        // zero log-prob could overflow exp and poison the backward with NaN).
        let cut_ends =
            Tensor::from_slice(&local.iter().map(|&i| ends[touched[i]]).collect::<Vec<_>>())
                .to_device(device);
        let inside = positions.lt_tensor(&cut_ends.unsqueeze(1));
        let logp = fwd.logprobs.where_self(&inside, &rows.old);
        let tokens = rows.with_logp(&logp);
        let objective = l.cfg.loss.objective();
        let with = l.control.token_loss(&tokens, &sel, &objective).loss;
        let without = l
            .control
            .token_loss(&tokens, &sel.zeros_like(), &objective)
            .loss;
        let mut change = (with - without).masked_fill(&sel.logical_not(), 0.0);
        if let Some(weight) = &rows.weight {
            change *= weight;
        }
        let loss = aggregate(&change, &rows.valid, l.cfg.loss.agg, &norm);
        fwd.backward(&loss);
        l.opt.accumulate_grads();
        loss_change += loss.double_value(&[]);
        count += sel
            .logical_and(&rows.valid)
            .sum(Kind::Double)
            .double_value(&[]);
    }
    Ok((loss_change, count))
}

/// A 64-bit digest of a `[B, T]` selection: its selected tokens' flat positions, hashed
/// in order (see `StepMetrics::selection_digest`).
pub(crate) fn selection_digest(selected: &Tensor) -> Result<u64, TrainError> {
    let flat = selected.reshape([-1]).nonzero().reshape([-1]);
    let positions = Vec::<i64>::try_from(&flat).map_err(ModelError::Torch)?;
    Ok(positions.iter().fold(
        mix_seed(positions.len() as u64, selected.size()[1] as u64),
        |h, &p| mix_seed(h, p as u64),
    ))
}

/// `|a ∧ b| / |a ∨ b|` of two boolean selections (1 when both are empty).
pub(crate) fn jaccard(a: &Tensor, b: &Tensor) -> f64 {
    let both = a.logical_and(b).sum(Kind::Double).double_value(&[]);
    let either = a.logical_or(b).sum(Kind::Double).double_value(&[]);
    if either == 0.0 { 1.0 } else { both / either }
}
