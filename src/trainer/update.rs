//! The update of a step: `ppo_epochs` passes of optimizer mini-batches over the step's
//! rows. One mini-batch is: plan its micro-batches ([`crate::batching`]); select
//! Clip-Cov / KL-Cov tokens over the whole (global) mini-batch; forward and backward
//! each micro-batch under the mini-batch's normaliser; correct the selection where it
//! came late; sum gradients across ranks; clip; step.

use super::TrainError;
use super::batch::{Seqs, StepTokens, row_index};
use super::correction::{correct_selection, jaccard, selection_digest};
use super::forward::{forward, shapes, step_tokens};
use super::learner::Learner;
use super::shard::{GlobalBatch, gather_rows};
use crate::batching::{MicroBatch, plan_micro_batches};
use crate::config::KlEstimator;
use crate::dist::{ReduceOp, all_reduce_buckets};
use crate::loss::control::covariance_share;
use crate::loss::{
    AggNorm, LossSums, MiniBatchPlan, SelectionLogp, SelectionScope, TokenTensors, cov_stats,
    micro_batch_loss, plan_mini_batch,
};
use crate::metrics::{PhaseSeconds, StepMetrics};
use crate::model::ModelError;
use crate::rollout::Trajectory;
use crate::seed::mix_seed;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What one optimizer mini-batch reports.
#[derive(Default)]
struct MiniBatchOutcome {
    loss: f64,
    grad_norm: f64,
    lr: f64,
    sums: LossSums,
    /// Jaccard overlap of the current-policy selection with the old-policy one.
    overlap_old: Option<f64>,
    /// [`selection_digest`] of the global mini-batch's selection.
    digest: Option<u64>,
    /// Covariance share and token count of the global mini-batch's selection.
    selection: Option<(f64, f64)>,
}

/// Sums over a step's mini-batches.
#[derive(Default)]
struct UpdateTotals {
    loss: f64,
    grad_norm: f64,
    optimizer_steps: usize,
    sums: LossSums,
    overlap_sum: f64,
    overlaps: usize,
    /// The mini-batches' selection digests, folded in order.
    digest: Option<u64>,
    /// Sums of the selections' covariance shares and token counts, and their number.
    share_sum: f64,
    tokens_sum: f64,
    selections: usize,
}

impl UpdateTotals {
    fn add(&mut self, o: &MiniBatchOutcome) {
        self.loss += o.loss;
        self.grad_norm += o.grad_norm;
        self.optimizer_steps += 1;
        self.sums += o.sums;
        if let Some(j) = o.overlap_old {
            self.overlap_sum += j;
            self.overlaps += 1;
        }
        if let Some(d) = o.digest {
            self.digest = Some(mix_seed(self.digest.unwrap_or(0), d));
        }
        if let Some((share, tokens)) = o.selection {
            self.share_sum += share;
            self.tokens_sum += tokens;
            self.selections += 1;
        }
    }
}

/// The update phase of a step: old log-probs, then `ppo_epochs` passes of optimizer
/// mini-batches over the rows; fills the step's entropy, covariance and loss metrics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update(
    l: &mut Learner,
    rows: &[Trajectory],
    adv: &[f64],
    batch: &GlobalBatch,
    width: i64,
    step_seed: u64,
    secs: &mut PhaseSeconds,
    m: &mut StepMetrics,
) -> Result<(), TrainError> {
    let seqs = Seqs::of(rows);
    let t = Instant::now();
    let inputs = step_tokens(l, rows, &seqs, adv, width)?;
    let (tokens, entropy) = (inputs.tokens, inputs.entropy);
    secs.old_logprob += t.elapsed().as_secs_f64();
    if let Some(gap) = inputs.mismatch {
        let comm = l.comm.as_ref();
        let mut sums = Tensor::from_slice(&[gap.kl_sum, gap.tokens]);
        comm.all_reduce(&mut sums, ReduceOp::Sum, "summing the rollout mismatch")?;
        let mut max = Tensor::from_slice(&[gap.ratio_max]);
        comm.all_reduce(&mut max, ReduceOp::Max, "the largest rollout ratio")?;
        m.rollout_mismatch_kl = Some(sums.double_value(&[0]) / sums.double_value(&[1]).max(1.0));
        m.rollout_ratio_max = Some(max.double_value(&[0]));
    }
    // The whole step's tokens (every rank's, in single-process order): what the
    // selection, the normalisers and the step's statistics are taken over.
    let order = Tensor::from_slice(&batch.order.iter().map(|&i| i as i64).collect::<Vec<_>>())
        .to_device(tokens.valid.device());
    let comm = l.comm.as_ref();
    let global = StepTokens {
        old: gather_rows(comm, &tokens.old, &order, "gathering old log-probs")?,
        valid: gather_rows(comm, &tokens.valid, &order, "gathering token masks")?,
        adv: gather_rows(comm, &tokens.adv, &order, "gathering advantages")?,
        reference: None,
        weight: None,
    };
    let entropy = gather_rows(comm, &entropy, &order, "gathering entropies")?;
    let n_tok = global.valid.sum(Kind::Double).double_value(&[]);
    m.entropy = entropy
        .masked_fill(&global.valid.logical_not(), 0.0)
        .sum(Kind::Double)
        .double_value(&[])
        / n_tok.max(1.0);
    let lb = l.cfg.loss.control.cov_lower_bound();
    m.cov = cov_stats(&global.old, &global.adv, &global.valid, lb);

    let t = Instant::now();
    let world = l.comm.world_size();
    let (n, mb) = (rows.len(), l.cfg.mini_batch_size / world);
    let mut totals = UpdateTotals::default();
    // The training forwards (adapter dropout on, its masks drawn from libtorch's
    // generator seeded by the step, so a resumed run draws the same) until this guard
    // drops.
    let _train = l.policy.model.train_switch().on();
    if let Some(lora) = l.policy.model.lora()
        && lora.config.dropout > 0.0
    {
        tch::manual_seed(mix_seed(step_seed, 0x4C6F_5241) as i64);
    }
    // The step's first update runs on the policy that sampled the rows (when they all
    // come from this policy version): its old log-probs are the current ones.
    let sampled_by_current = rows.iter().all(|t| t.policy_version == l.opt.step);
    for epoch in 0..l.cfg.ppo_epochs {
        for (index, start) in (0..n).step_by(mb).enumerate() {
            let range = start..(start + mb).min(n);
            // This rank's rows are the `rank`-th share of global mini-batch `index`.
            let global_start = index * l.cfg.mini_batch_size;
            let global_range = global_start..(global_start + l.cfg.mini_batch_size).min(n * world);
            let offset = l.comm.rank() * range.len();
            let seed = mix_seed(step_seed, ((epoch as u64) << 32) | (index as u64 + 1));
            let first = epoch == 0 && start == 0;
            let out = optimize_mini_batch(
                l,
                &seqs.slice(range.clone()),
                &tokens.slice(range),
                &global.slice(global_range),
                offset as i64,
                seed,
                first,
                first && sampled_by_current,
            )?;
            m.lr = out.lr;
            totals.add(&out);
        }
    }
    secs.update += t.elapsed().as_secs_f64();
    let s = &totals.sums;
    let mut sums = Tensor::from_slice(&[totals.loss, s.tokens, s.selected, s.clipped, s.approx_kl]);
    l.comm
        .all_reduce(&mut sums, ReduceOp::Sum, "summing step metrics")?;
    let sums = Vec::<f64>::try_from(&sums).map_err(ModelError::Torch)?;
    let tok = sums[1].max(1.0);
    m.selected_frac = sums[2] / tok;
    m.clip_frac = sums[3] / tok;
    m.approx_kl = sums[4] / tok;
    let opt_steps = totals.optimizer_steps.max(1) as f64;
    m.loss = sums[0] / opt_steps;
    m.selection_digest = totals.digest.map(|d| format!("{d:016x}"));
    m.grad_norm = totals.grad_norm / opt_steps;
    m.selection_overlap_old =
        (totals.overlaps > 0).then(|| totals.overlap_sum / totals.overlaps as f64);
    let selections = totals.selections as f64;
    m.selected_share = (totals.selections > 0).then(|| totals.share_sum / selections);
    m.selected_tokens = (totals.selections > 0).then(|| totals.tokens_sum / selections);
    Ok(())
}

/// Whether this mini-batch's selection needs the current policy's log-probs that only
/// its own training forward yields (`mini_batch` scope, `current`, after the first
/// optimizer step of the step, when the old log-probs stop being current).
fn selection_from_training_forward(l: &Learner, first_update: bool) -> bool {
    l.control.selects()
        && l.cfg.loss.scope == SelectionScope::MiniBatch
        && l.cfg.loss.selection_logp == SelectionLogp::Current
        && !first_update
}

/// The mini-batch plan (selection, normaliser) over `scope`.
fn plan(l: &Learner, scope: &TokenTensors, micro_batches: usize, seed: u64) -> MiniBatchPlan {
    plan_mini_batch(&l.cfg.loss, l.control.as_ref(), scope, micro_batches, seed)
}

/// The per-token reference-KL penalty of `logp` against `reference` (when `ref_kl` is
/// configured).
fn ref_kl_penalty(l: &Learner, logp: &Tensor, reference: Option<&Tensor>) -> Option<Tensor> {
    let (cfg, reference) = (l.cfg.ref_kl.as_ref()?, reference?);
    let d = logp - reference;
    let kl = match cfg.estimator {
        KlEstimator::K1 => d,
        KlEstimator::K3 => (-&d).exp() + &d - 1.0,
    };
    Some(kl * cfg.coef)
}

/// One optimizer step over a mini-batch: plan micro-batches, select, forward and
/// backward each micro-batch, correct the selection where it came late, clip, step.
///
/// When the selection needs the current policy's log-probs, every micro-batch's
/// training forward stores its detached log-probs; the last one completes them, the
/// selection is made before its backward, and the tokens selected in earlier
/// micro-batches get a correction pass ([`correct_selection`]). No extra forward of the
/// mini-batch, exact selection, memory bounded by one micro-batch.
///
/// On the update whose policy is the rollout policy (`on_policy`: the step's first, on
/// rows this policy version sampled), the loss takes the current forward's log-probs,
/// detached, as the old ones, as verl does: the ratio is exactly 1 and KL-Cov's penalty
/// `beta * |logp - old|` has exactly zero gradient, so KL-Cov's update there is
/// unclipped GRPO's. (The rollout's log-probs differ from the training forward's by
/// rounding, which gave every selected token a gradient of `+-beta` with a sign chosen by
/// that rounding.) The selection, the statistics and the metrics keep the rollout's.
///
/// Data-parallel, `t` holds this rank's rows and `global` the whole global mini-batch's
/// (this rank's at row `offset`): the selection and the normaliser come from `global`
/// (the current log-probs gathered when deferred), so they are the single-process ones,
/// and the gradients are summed across ranks before clipping.
#[allow(clippy::too_many_arguments)]
fn optimize_mini_batch(
    l: &mut Learner,
    seqs: &Seqs,
    t: &StepTokens,
    global: &StepTokens,
    offset: i64,
    seed: u64,
    first_update: bool,
    on_policy: bool,
) -> Result<MiniBatchOutcome, TrainError> {
    let device = l.device();
    let width = t.valid.size()[1];
    let rows = t.valid.size()[0];
    let rule = l.micro_batching(l.cfg.micro_batch_size);
    let micro = plan_micro_batches(&shapes(seqs), rule, l.cfg.share_prompt_prefix);
    let deferred = selection_from_training_forward(l, first_update);
    // `micro_batch` scope averages the micro-batches of every rank.
    let micro_batches = micro.len() * l.comm.world_size();
    // Until the selection is known (deferred), no token counts as selected.
    let mut global_plan = if deferred {
        MiniBatchPlan {
            selected: None,
            norm: Some(AggNorm::of(&global.valid, l.cfg.loss.seq_norm_len)),
            micro_batches,
            seed,
        }
    } else {
        plan(l, &global.with_logp(&global.old), micro_batches, seed)
    };
    // The log-probs the selection is made from (the gathered current ones once known).
    let mut selection_logp = global.old.shallow_clone();
    let mut mb_plan = global_plan.rows(offset, rows);
    let mut current = t.old.zeros_like();
    let entropy_grad = l.control.entropy_coef() != 0.0;
    let mut out = MiniBatchOutcome::default();
    for (k, mb) in micro.iter().enumerate() {
        let idx = row_index(&mb.rows(), device);
        let fwd = forward(l, &l.policy, seqs, mb, width, entropy_grad)?;
        let logp = fwd.logprobs.shallow_clone();
        if deferred {
            current = current.index_copy(0, &idx, &logp.detach());
            if k + 1 == micro.len() {
                let everyone = l.comm.all_gather(&current, "gathering current log-probs")?;
                global_plan = plan(l, &global.with_logp(&everyone), micro_batches, seed);
                mb_plan = global_plan.rows(offset, rows);
                selection_logp = everyone;
            }
        }
        let mut rows = t.rows(&idx);
        if on_policy {
            rows.old = logp.detach();
        }
        let extra = ref_kl_penalty(l, &logp, rows.reference.as_ref());
        let micro_loss = micro_batch_loss(
            &l.cfg.loss,
            l.control.as_ref(),
            &mb_plan,
            k,
            &idx,
            &rows.with_logp(&logp),
            Some(&fwd.entropies),
            rows.weight.as_ref(),
            extra.as_ref(),
        );
        fwd.backward(&micro_loss.loss);
        l.opt.accumulate_grads();
        out.loss += micro_loss.loss.double_value(&[]);
        out.sums += micro_loss.sums;
    }
    if deferred {
        let earlier: Vec<usize> = micro[..micro.len() - 1]
            .iter()
            .flat_map(MicroBatch::rows)
            .collect();
        let (loss, selected) = correct_selection(l, seqs, t, &mb_plan, &earlier)?;
        out.loss += loss;
        out.sums.selected += selected;
        let old_plan = plan(l, &global.with_logp(&global.old), micro_batches, seed);
        out.overlap_old = Some(jaccard(
            global_plan
                .selected
                .as_ref()
                .expect("a selecting control's plan selects"),
            old_plan
                .selected
                .as_ref()
                .expect("a selecting control's plan selects"),
        ));
    }
    out.digest = global_plan
        .selected
        .as_ref()
        .map(selection_digest)
        .transpose()?;
    out.selection = global_plan.selected.as_ref().map(|s| {
        let share = covariance_share(&global.with_logp(&selection_logp), s);
        (share, s.sum(Kind::Double).double_value(&[]))
    });
    if l.comm.world_size() > 1 {
        let mut grads = l.opt.gradients();
        all_reduce_buckets(
            l.comm.as_ref(),
            &mut grads,
            ReduceOp::Sum,
            "gradient all-reduce",
        )?;
    }
    out.grad_norm = l.opt.clip_grad_norm();
    out.lr = l
        .cfg
        .optim
        .lr_at(l.opt.step as usize, l.total_optimizer_steps());
    l.opt.step(out.lr);
    l.opt.zero_grad();
    Ok(out)
}
