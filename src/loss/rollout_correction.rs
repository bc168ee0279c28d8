//! Rollout correction: importance weights between the trainer's old log-probs and the
//! behaviour policy's (the log-probs the rollout engine sampled with), for the gap an
//! inference engine, another precision or an older policy version leaves between them.
//!
//! `trainer.loss.rollout_correction = { kind = "tis" | "mis" | "seq-mask", cap = ... }`
//! multiplies each token's policy loss by a detached weight from
//! `rho_t = pi_old(y_t) / pi_behaviour(y_t)`:
//! - `tis` (truncated importance sampling): `min(rho_t, cap)`;
//! - `mis` (masked importance sampling): `rho_t`, or 0 where `rho_t > cap`;
//! - `seq-mask`: 1, or 0 for every token of a sequence whose importance ratio
//!   `prod_t rho_t` exceeds `cap`.
//!
//! Masked tokens stay in the loss normaliser (their term is 0, as Clip-Cov's dropped
//! tokens). [`mismatch`] measures the gap every step, corrected or not.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How rollout correction weighs each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorrectionKind {
    /// Truncated importance weights `min(rho, cap)`.
    Tis,
    /// Masked importance weights: `rho`, 0 above `cap`.
    Mis,
    /// Whole sequences masked when their importance ratio exceeds `cap`; weight 1 else.
    SeqMask,
}

/// `trainer.loss.rollout_correction`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutCorrection {
    /// The weighting.
    pub kind: CorrectionKind,
    /// The truncation or masking threshold on the ratio (> 1; default 2).
    #[serde(default = "default_cap")]
    pub cap: f64,
}

fn default_cap() -> f64 {
    2.0
}

/// The per-token weights `[B, T]` (detached, 0 at invalid tokens) of `correction` between
/// the trainer's `old_logp` and the `behaviour` log-probs.
pub fn rollout_weights(
    old_logp: &Tensor,
    behaviour: &Tensor,
    valid: &Tensor,
    correction: &RolloutCorrection,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let invalid = valid.logical_not();
    let log_rho = (old_logp - behaviour).masked_fill(&invalid, 0.0);
    let cap = correction.cap;
    let weights = match correction.kind {
        CorrectionKind::Tis => log_rho.exp().clamp_max(cap),
        CorrectionKind::Mis => {
            let rho = log_rho.exp();
            rho.masked_fill(&rho.gt(cap), 0.0)
        }
        CorrectionKind::SeqMask => {
            let seq = log_rho.sum_dim_intlist([1i64].as_slice(), true, Kind::Double);
            let over = seq.gt(cap.ln()).expand_as(valid);
            valid.to_kind(old_logp.kind()).masked_fill(&over, 0.0)
        }
    };
    weights.masked_fill(&invalid, 0.0)
}

/// Sums over valid tokens of the gap between the trainer's old log-probs and the
/// behaviour log-probs (added across ranks and mini-batches, then read as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mismatch {
    /// Sum of the k3 estimate of `KL(behaviour || old)`, `rho - 1 - log rho` per token.
    pub kl_sum: f64,
    /// Valid tokens.
    pub tokens: f64,
    /// Largest `rho = pi_old / pi_behaviour` (0 with no valid token).
    pub ratio_max: f64,
}

/// The [`Mismatch`] of `old_logp` against `behaviour` over `valid`.
pub fn mismatch(old_logp: &Tensor, behaviour: &Tensor, valid: &Tensor) -> Mismatch {
    let _guard = tch::no_grad_guard();
    let invalid = valid.logical_not();
    let log_rho = (old_logp - behaviour)
        .to_kind(Kind::Double)
        .masked_fill(&invalid, 0.0);
    let rho = log_rho.exp();
    let k3 = (&rho - 1.0 - &log_rho).masked_fill(&invalid, 0.0);
    let tokens = valid.sum(Kind::Double).double_value(&[]);
    Mismatch {
        kl_sum: k3.sum(Kind::Double).double_value(&[]),
        tokens,
        ratio_max: if tokens > 0.0 {
            rho.masked_fill(&invalid, 0.0).max().double_value(&[])
        } else {
            0.0
        },
    }
}
