//! The PPO clipped surrogate with separate lower / upper clip ranges (Clip-higher) and
//! optional dual-clip, as a pure per-token function.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// PPO clipping of the importance ratio `exp(logp - old_logp)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoClip {
    /// The ratio is clipped below at `1 - eps_low` (paper: 0.2).
    pub eps_low: f64,
    /// The ratio is clipped above at `1 + eps_high` (paper: 0.2; DAPO's Clip-higher
    /// raises it, e.g. 0.28).
    pub eps_high: f64,
    /// Dual-clip constant `c > 1`: for negative advantages the loss is capped at
    /// `-A * c` (off by default, as in the paper's runs).
    pub dual_clip: Option<f64>,
}

impl Default for PpoClip {
    fn default() -> Self {
        PpoClip {
            eps_low: 0.2,
            eps_high: 0.2,
            dual_clip: None,
        }
    }
}

/// The per-token PPO surrogate of a batch, `[B, T]` tensors.
pub struct Surrogate {
    /// Per-token loss (to be minimised); 0 at masked-out tokens.
    pub loss: Tensor,
    /// `exp(logp - old_logp)`; 1 at masked-out tokens.
    pub ratio: Tensor,
    /// Tokens whose clipped term is the active one (`pg2 > pg1`, verl's
    /// `clip_by_origin`), restricted to valid tokens.
    pub clipped: Tensor,
}

/// The importance ratio with masked-out positions forced to 1, so padding holding
/// `-inf` or garbage log-probabilities can never produce NaN in values or gradients.
pub fn masked_ratio(logp: &Tensor, old_logp: &Tensor, valid: &Tensor) -> Tensor {
    ratio_outside(logp, old_logp, &valid.logical_not())
}

fn ratio_outside(logp: &Tensor, old_logp: &Tensor, invalid: &Tensor) -> Tensor {
    (logp - old_logp).masked_fill(invalid, 0.0).exp()
}

/// PPO surrogate: `max(-A * ratio, -A * clamp(ratio, 1 - eps_low, 1 + eps_high))`,
/// with optional dual-clip for `A < 0`. `valid` is the boolean token mask.
pub fn ppo_surrogate(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    clip: &PpoClip,
) -> Surrogate {
    ppo_surrogate_dropping(logp, old_logp, adv, valid, None, clip)
}

/// [`ppo_surrogate`] with the terms of the `dropped` tokens (a `[B, T]` bool) multiplied
/// by 0, as Clip-Cov does: their loss and gradient are exactly zero. The drop is folded
/// into the padding mask the surrogate applies anyway, so it costs one boolean `or`
/// instead of an extra float pass forward and backward.
pub fn ppo_surrogate_dropping(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    dropped: Option<&Tensor>,
    clip: &PpoClip,
) -> Surrogate {
    let invalid = valid.logical_not();
    let ratio = ratio_outside(logp, old_logp, &invalid);
    let neg_adv = -adv;
    let pg1 = &neg_adv * &ratio;
    let pg2 = &neg_adv * ratio.clamp(1.0 - clip.eps_low, 1.0 + clip.eps_high);
    let clipped = pg2.gt_tensor(&pg1).logical_and(valid);
    let mut loss = pg1.maximum(&pg2);
    if let Some(c) = clip.dual_clip {
        let pg3 = &neg_adv * c;
        loss = loss.minimum(&pg3).where_self(&adv.lt(0.0), &loss);
    }
    let zeroed = match dropped {
        Some(d) => invalid.logical_or(d),
        None => invalid,
    };
    Surrogate {
        loss: loss.masked_fill(&zeroed, 0.0),
        ratio,
        clipped,
    }
}

/// Which tokens PPO clips, without building the loss (used by Clip-Cov's selection on
/// detached tensors).
pub fn ppo_clipped(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    clip: &PpoClip,
) -> Tensor {
    let ratio = masked_ratio(logp, old_logp, valid);
    let neg_adv = -adv;
    let pg1 = &neg_adv * &ratio;
    let pg2 = &neg_adv * ratio.clamp(1.0 - clip.eps_low, 1.0 + clip.eps_high);
    pg2.gt_tensor(&pg1).logical_and(valid)
}
