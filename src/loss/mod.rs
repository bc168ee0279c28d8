//! The policy loss: PPO surrogate, entropy controls (Clip-Cov, KL-Cov, ...), selection
//! scope and aggregation.
//!
//! Pure tensor functions selected by name (verl `core_algos.py` style):
//! - [`surrogate`]: the clipped surrogate with Clip-higher and dual-clip;
//! - [`policy`]: the policy objective, PPO, GSPO or CISPO ([`Objective`]);
//! - [`rollout_correction`]: TIS / MIS / sequence-mask weights between the trainer's
//!   and the behaviour policy's log-probs;
//! - [`control`]: the [`EntropyControl`] trait, covariance, Clip-Cov / KL-Cov selection
//!   and their per-token losses;
//! - [`aggregate`](mod@aggregate): the four aggregation modes;
//! - [`compare`]: one public entry point that computes the per-token loss, the selected
//!   tokens and the metrics from given tensors (for comparing with other
//!   implementations, `cove loss`).
//!
//! A mini-batch is processed as [`plan_mini_batch`] (one selection and one normaliser
//! over the whole optimizer mini-batch in the default `mini_batch` scope) followed by
//! [`micro_batch_loss`] for each micro-batch, whose losses sum to the mini-batch's.

pub mod aggregate;
pub mod compare;
pub mod control;
pub mod cpu;
pub mod policy;
pub mod rollout_correction;
pub mod surrogate;

pub use aggregate::{AggNorm, LossAgg, aggregate};
pub use control::{ControlConfig, EntropyControl, TokenTensors};
pub use policy::{Objective, PolicyLoss};
pub use rollout_correction::{CorrectionKind, RolloutCorrection};
pub use surrogate::{PpoClip, Surrogate, ppo_surrogate};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Over which tokens Clip-Cov / KL-Cov select and the loss is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SelectionScope {
    /// The paper's definition: one selection over the optimizer mini-batch (global
    /// token indices, means and N), applied across its micro-batches; the update does
    /// not depend on the micro-batch size.
    #[default]
    MiniBatch,
    /// What verl does: each micro-batch selects and normalises on its own and the
    /// micro-batch losses are averaged; results change with the micro-batch size.
    MicroBatch,
}

/// Whose log-probs Clip-Cov / KL-Cov select from in `mini_batch` scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SelectionLogp {
    /// The current policy's, as the paper defines the covariance: exact for every
    /// mini-batch (taken from the training forward; tokens of micro-batches whose
    /// backward already ran get a correction pass over their sequences).
    #[default]
    Current,
    /// The rollout policy's (the old log-probs): exact for the first mini-batch of a
    /// step, an approximation after it, and free.
    Old,
}

/// Everything that defines the policy loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// The policy objective: `ppo` (default), `gspo` or `cispo`.
    pub policy: PolicyLoss,
    /// Clip ranges of the objective (PPO's and GSPO's ratio, CISPO's weight).
    pub clip: PpoClip,
    /// Importance weights between the trainer's old log-probs and the behaviour
    /// policy's (`None`: the loss takes the old log-probs as the behaviour's).
    pub rollout_correction: Option<RolloutCorrection>,
    /// Aggregation mode.
    pub agg: LossAgg,
    /// Entropy control.
    pub control: ControlConfig,
    /// Selection scope.
    pub scope: SelectionScope,
    /// Whose log-probs the `mini_batch` scope selects from.
    pub selection_logp: SelectionLogp,
    /// The constant length of `seq-mean-token-sum-norm` (Dr.GRPO uses the maximum
    /// response length); `None`: the padded width of the batch.
    pub seq_norm_len: Option<usize>,
}

impl LossConfig {
    /// The policy objective the controls build their loss from.
    pub fn objective(&self) -> Objective {
        Objective {
            policy: self.policy,
            clip: self.clip,
        }
    }
}

/// The selection and normaliser of one optimizer mini-batch.
pub struct MiniBatchPlan {
    /// `[B, T]` selected tokens of the whole mini-batch (`mini_batch` scope with a
    /// selecting control), else `None`.
    pub selected: Option<Tensor>,
    /// The mini-batch normaliser (`mini_batch` scope), else `None`.
    pub norm: Option<AggNorm>,
    /// Number of micro-batches (verl's gradient-accumulation divisor in `micro_batch`
    /// scope).
    pub micro_batches: usize,
    /// Seed of this mini-batch's random choices.
    pub seed: u64,
}

impl MiniBatchPlan {
    /// The plan restricted to `rows` rows from `offset` (a data-parallel rank's share of
    /// the global mini-batch): the same selection and normaliser.
    pub fn rows(&self, offset: i64, rows: i64) -> MiniBatchPlan {
        MiniBatchPlan {
            selected: self.selected.as_ref().map(|s| s.narrow(0, offset, rows)),
            norm: self.norm,
            micro_batches: self.micro_batches,
            seed: self.seed,
        }
    }
}

/// Plans a mini-batch: in `mini_batch` scope, selects over the whole mini-batch (the
/// tensors of `scope`; `logp` is the current policy's, read detached) and fixes the
/// normaliser. In `micro_batch` scope nothing is decided here. `scope.logp` is only
/// read when the control selects.
pub fn plan_mini_batch(
    cfg: &LossConfig,
    control: &dyn EntropyControl,
    scope: &TokenTensors,
    micro_batches: usize,
    seed: u64,
) -> MiniBatchPlan {
    match cfg.scope {
        SelectionScope::MiniBatch => MiniBatchPlan {
            selected: control.selects().then(|| {
                let detached = scope.logp.detach();
                control.select(&scope.with_logp(&detached), &cfg.objective(), seed)
            }),
            norm: Some(AggNorm::of(scope.valid, cfg.seq_norm_len)),
            micro_batches,
            seed,
        },
        SelectionScope::MicroBatch => MiniBatchPlan {
            selected: None,
            norm: None,
            micro_batches,
            seed,
        },
    }
}

/// Sums over valid tokens that the trainer adds up into step metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSums {
    /// Valid tokens.
    pub tokens: f64,
    /// Tokens whose PPO clipped term is active.
    pub clipped: f64,
    /// Tokens selected by the entropy control.
    pub selected: f64,
    /// Sum of `old_logp - logp` (approximate KL, k1).
    pub approx_kl: f64,
    /// Sum of per-token entropies (when given).
    pub entropy: f64,
}

impl std::ops::AddAssign for LossSums {
    fn add_assign(&mut self, o: LossSums) {
        self.tokens += o.tokens;
        self.clipped += o.clipped;
        self.selected += o.selected;
        self.approx_kl += o.approx_kl;
        self.entropy += o.entropy;
    }
}

/// The loss of one micro-batch and its per-token pieces.
pub struct MicroLoss {
    /// Scalar loss to back-propagate (its sum over the micro-batches is the
    /// mini-batch loss).
    pub loss: Tensor,
    /// Per-token policy loss `[b, T]` (before aggregation).
    pub token_loss: Tensor,
    /// Selected tokens `[b, T]`.
    pub selected: Tensor,
    /// Metric sums.
    pub sums: LossSums,
}

/// The loss of micro-batch number `index`, whose rows are `rows` (i64 indices into the
/// mini-batch, in the order of `t`'s rows). `entropy` (per-token, with grad) is needed
/// for the entropy bonus and the entropy metric; `weight` (per-token, detached: the
/// rollout correction's) multiplies the policy loss; `extra` (per-token, e.g. a
/// reference-KL penalty) is added to it before aggregation.
#[allow(clippy::too_many_arguments)]
pub fn micro_batch_loss(
    cfg: &LossConfig,
    control: &dyn EntropyControl,
    plan: &MiniBatchPlan,
    index: usize,
    rows: &Tensor,
    t: &TokenTensors,
    entropy: Option<&Tensor>,
    weight: Option<&Tensor>,
    extra: Option<&Tensor>,
) -> MicroLoss {
    let (selected, norm, scale) = match cfg.scope {
        SelectionScope::MiniBatch => (
            match &plan.selected {
                Some(s) => s.index_select(0, rows),
                None => t.valid.zeros_like(),
            },
            plan.norm.expect("mini_batch plan has a normaliser"),
            1.0,
        ),
        SelectionScope::MicroBatch => {
            let sel = if control.selects() {
                let detached = t.logp.detach();
                let scope = t.with_logp(&detached);
                control.select(&scope, &cfg.objective(), micro_seed(plan.seed, index))
            } else {
                t.valid.zeros_like()
            };
            (
                sel,
                AggNorm::of(t.valid, cfg.seq_norm_len),
                1.0 / plan.micro_batches.max(1) as f64,
            )
        }
    };
    let s = control.token_loss(t, &selected, &cfg.objective());
    let policy = match weight {
        Some(w) => &s.loss * w,
        None => s.loss.shallow_clone(),
    };
    let per_token = match extra {
        Some(e) => &policy + e,
        None => policy.shallow_clone(),
    };
    let mut loss = aggregate(&per_token, t.valid, cfg.agg, &norm);
    let coef = control.entropy_coef();
    if let Some(h) = entropy
        && coef != 0.0
    {
        loss = &loss - aggregate(h, t.valid, cfg.agg, &norm) * coef;
    }
    let loss = loss * scale;
    let sums = tch::no_grad(|| {
        let inv = t.valid.logical_not();
        let f = |x: &Tensor| x.masked_fill(&inv, 0.0).sum(Kind::Double).double_value(&[]);
        LossSums {
            tokens: t.valid.sum(Kind::Int64).int64_value(&[]) as f64,
            clipped: s.clipped.sum(Kind::Int64).int64_value(&[]) as f64,
            selected: selected
                .logical_and(t.valid)
                .sum(Kind::Int64)
                .int64_value(&[]) as f64,
            approx_kl: f(&(t.old_logp - t.logp.detach())),
            entropy: entropy.map(|h| f(&h.detach())).unwrap_or(0.0),
        }
    });
    MicroLoss {
        loss,
        token_loss: policy,
        selected,
        sums,
    }
}

/// The loss of a mini-batch processed whole, as its own single micro-batch: the plan
/// and [`micro_batch_loss`] in one call (for comparisons and benchmarks).
pub fn single_batch_loss(
    cfg: &LossConfig,
    control: &dyn EntropyControl,
    t: &TokenTensors,
    entropy: Option<&Tensor>,
    seed: u64,
) -> MicroLoss {
    let plan = plan_mini_batch(cfg, control, t, 1, seed);
    let rows = Tensor::arange(t.valid.size()[0], (Kind::Int64, t.valid.device()));
    micro_batch_loss(cfg, control, &plan, 0, &rows, t, entropy, None, None)
}

/// The seed of micro-batch `index` in `micro_batch` scope.
pub fn micro_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Covariance statistics over the valid tokens of a batch. The `top_share_*` and
/// `half_share_frac` fields describe how concentrated the positive covariance mass (the
/// sum of `max(cov, 0)`) is, whatever the control: what the Cov rules would take out of
/// a GRPO run's batch too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CovStats {
    /// Mean covariance.
    pub mean: f64,
    /// Maximum covariance.
    pub max: f64,
    /// 99.9th percentile (linear interpolation).
    pub p999: f64,
    /// Fraction of valid tokens with covariance above `lb`.
    pub frac_above_lb: f64,
    /// Share of the positive covariance mass carried by the top `max(int(2e-4 * N), 1)`
    /// tokens by covariance (the paper's Clip-Cov ratio as a top-k count).
    pub top_share_2e4: f64,
    /// The same for the top `max(int(2e-3 * N), 1)` tokens (the paper's KL-Cov ratio).
    pub top_share_2e3: f64,
    /// Fraction of valid tokens that the top tokens by covariance need to carry half of
    /// the positive covariance mass.
    pub half_share_frac: f64,
}

/// Covariance statistics of `logp` / `adv` under `valid` (zeros when nothing is valid).
pub fn cov_stats(logp: &Tensor, adv: &Tensor, valid: &Tensor, lb: f64) -> CovStats {
    let _guard = tch::no_grad_guard();
    let cov = control::token_covariance(logp, adv, valid)
        .masked_select(valid)
        .to_kind(Kind::Double);
    let n = cov.size()[0];
    if n == 0 {
        return CovStats::default();
    }
    let (sorted, _) = cov.sort(0, true);
    let running = sorted.clamp_min(0.0).cumsum(0, Kind::Double);
    let total = running.double_value(&[n - 1]);
    let top_share = |ratio: f64| {
        let k = control::selection_count(ratio, n).min(n);
        if total > 0.0 {
            running.double_value(&[k - 1]) / total
        } else {
            0.0
        }
    };
    let half_share_frac = if total > 0.0 {
        (running.lt(0.5 * total).sum(Kind::Int64).int64_value(&[]) + 1) as f64 / n as f64
    } else {
        0.0
    };
    CovStats {
        top_share_2e4: top_share(2e-4),
        top_share_2e3: top_share(2e-3),
        half_share_frac,
        mean: cov.mean(Kind::Double).double_value(&[]),
        max: cov.max().double_value(&[]),
        p999: cov
            .quantile_scalar(0.999, None, false, "linear")
            .double_value(&[]),
        frac_above_lb: cov.gt(lb).sum(Kind::Double).double_value(&[]) / n as f64,
    }
}
