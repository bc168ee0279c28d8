//! The policy-gradient objectives a control builds its per-token loss from, selected by
//! `trainer.loss.policy`: PPO's token-level clipped ratio, GSPO's sequence-level ratio and
//! clipping, and CISPO's clipped, detached importance weight on a REINFORCE term. Each is
//! a small pure function over `[B, T]` tensors; [`Objective`] picks one with the clip
//! ranges, so Clip-Cov and KL-Cov compose with any of them.

use super::control::TokenTensors;
use super::surrogate::{PpoClip, Surrogate, ppo_clipped, ppo_surrogate_dropping};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Which policy-gradient objective the loss uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyLoss {
    /// PPO's clipped surrogate on the token-level ratio (GRPO, DAPO).
    #[default]
    Ppo,
    /// GSPO (Zheng et al., 2025): the length-normalised sequence ratio
    /// `s_i = exp(mean_t(logp - old_logp))`, clipped per sequence; in its token form,
    /// whose gradient is GSPO's: token `t` carries `sg(s_i) * pi(y_t) / sg(pi(y_t))`.
    /// The paper aggregates with `seq-mean-token-mean` and clips at 3e-4 / 4e-4.
    Gspo,
    /// CISPO (MiniMax-M1, 2025): `-sg(clip(r, 1 - eps_low, 1 + eps_high)) * A * logp`,
    /// a REINFORCE term whose importance weight is clipped and detached, so clipped
    /// tokens keep their gradient. The paper sets no lower bound (`eps_low = 1`).
    Cispo,
}

impl PolicyLoss {
    /// Whether a token's loss depends on the log-probs of the other tokens of its
    /// sequence (GSPO's sequence ratio): a pass over part of a sequence cannot build it.
    pub fn is_sequence_level(self) -> bool {
        self == PolicyLoss::Gspo
    }
}

/// The policy objective of a loss: which one and its clip ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// The objective.
    pub policy: PolicyLoss,
    /// Its clip ranges (PPO and GSPO clip the ratio, CISPO the weight).
    pub clip: PpoClip,
}

impl Objective {
    /// PPO with `clip`.
    pub fn ppo(clip: PpoClip) -> Objective {
        Objective {
            policy: PolicyLoss::Ppo,
            clip,
        }
    }

    /// The clipped per-token loss, with the terms of the `dropped` tokens multiplied by 0
    /// (Clip-Cov).
    pub fn surrogate(&self, t: &TokenTensors, dropped: Option<&Tensor>) -> Surrogate {
        let clip = &self.clip;
        match self.policy {
            PolicyLoss::Ppo => {
                ppo_surrogate_dropping(t.logp, t.old_logp, t.adv, t.valid, dropped, clip)
            }
            PolicyLoss::Gspo => gspo_surrogate(t, dropped, clip),
            PolicyLoss::Cispo => cispo_surrogate(t, dropped, clip),
        }
    }

    /// The objective's per-token term without any clipping (what KL-Cov adds its penalty
    /// to): `-A * ratio` for PPO, `-A * s_i,t` for GSPO, `-A * sg(ratio) * logp` for
    /// CISPO. `clipped` is all false.
    pub fn unclipped(&self, t: &TokenTensors) -> Surrogate {
        let invalid = t.valid.logical_not();
        let (ratio, term) = match self.policy {
            PolicyLoss::Ppo => {
                let ratio = token_ratio(t.logp, t.old_logp, &invalid);
                (ratio.shallow_clone(), ratio)
            }
            PolicyLoss::Gspo => {
                let ratio = gspo_token_ratio(t.logp, t.old_logp, t.valid);
                (ratio.shallow_clone(), ratio)
            }
            PolicyLoss::Cispo => {
                let ratio = token_ratio(t.logp, t.old_logp, &invalid);
                let term = ratio.detach() * t.logp.masked_fill(&invalid, 0.0);
                (ratio, term)
            }
        };
        Surrogate {
            loss: (-t.adv * term).masked_fill(&invalid, 0.0),
            ratio,
            clipped: t.valid.zeros_like(),
        }
    }

    /// Which valid tokens the objective clips, read detached (Clip-Cov leaves them out
    /// of its candidates).
    pub fn clipped(&self, t: &TokenTensors) -> Tensor {
        let _guard = tch::no_grad_guard();
        match self.policy {
            PolicyLoss::Ppo => ppo_clipped(t.logp, t.old_logp, t.adv, t.valid, &self.clip),
            PolicyLoss::Gspo | PolicyLoss::Cispo => self.surrogate(t, None).clipped,
        }
    }
}

/// `exp(logp - old_logp)` with the positions of `invalid` held at 1.
fn token_ratio(logp: &Tensor, old_logp: &Tensor, invalid: &Tensor) -> Tensor {
    (logp - old_logp).masked_fill(invalid, 0.0).exp()
}

/// GSPO's length-normalised sequence log-ratio `mean_t(logp - old_logp)` over each row's
/// valid tokens, `[B, 1]`, detached (0 for a row with none).
pub fn sequence_log_ratio(logp: &Tensor, old_logp: &Tensor, valid: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let invalid = valid.logical_not();
    let kind = logp.kind();
    let sum = (logp - old_logp)
        .masked_fill(&invalid, 0.0)
        .sum_dim_intlist([1i64].as_slice(), true, kind);
    sum / valid
        .sum_dim_intlist([1i64].as_slice(), true, kind)
        .clamp_min(1.0)
}

/// GSPO-token's ratio `sg(s_i) * exp(logp - sg(logp))`: the sequence ratio `s_i` in
/// value, the gradient of token `t`'s own log-prob scaled by `s_i`; 1 at invalid tokens.
fn gspo_token_ratio(logp: &Tensor, old_logp: &Tensor, valid: &Tensor) -> Tensor {
    let invalid = valid.logical_not();
    let seq = sequence_log_ratio(logp, old_logp, valid);
    let own = (logp - logp.detach()).masked_fill(&invalid, 0.0);
    (own + seq).masked_fill(&invalid, 0.0).exp()
}

/// GSPO's clipped loss in token form: `max(-A * s_i,t, -A * clip(s_i,t, 1 - eps_low,
/// 1 + eps_high))` with `s_i,t` from [`sequence_log_ratio`]; a sequence is clipped
/// whole. Dual-clip is not part of GSPO (the configuration refuses it).
pub fn gspo_surrogate(t: &TokenTensors, dropped: Option<&Tensor>, clip: &PpoClip) -> Surrogate {
    let ratio = gspo_token_ratio(t.logp, t.old_logp, t.valid);
    let neg_adv = -t.adv;
    let pg1 = &neg_adv * &ratio;
    let pg2 = &neg_adv * ratio.clamp(1.0 - clip.eps_low, 1.0 + clip.eps_high);
    let clipped = pg2.gt_tensor(&pg1).logical_and(t.valid);
    Surrogate {
        loss: pg1
            .maximum(&pg2)
            .masked_fill(&zeroed(t.valid, dropped), 0.0),
        ratio,
        clipped,
    }
}

/// CISPO's loss: `-sg(clip(r, 1 - eps_low, 1 + eps_high)) * A * logp` with the token
/// ratio `r`; `clipped` marks the tokens whose weight the clip changed (they keep their
/// gradient, with the clipped weight).
pub fn cispo_surrogate(t: &TokenTensors, dropped: Option<&Tensor>, clip: &PpoClip) -> Surrogate {
    let invalid = t.valid.logical_not();
    let ratio = token_ratio(t.logp, t.old_logp, &invalid);
    let detached = ratio.detach();
    let (low, high) = (1.0 - clip.eps_low, 1.0 + clip.eps_high);
    let weight = detached.clamp(low, high);
    let clipped = detached
        .lt(low)
        .logical_or(&detached.gt(high))
        .logical_and(t.valid);
    let loss = -t.adv * weight * t.logp.masked_fill(&invalid, 0.0);
    Surrogate {
        loss: loss.masked_fill(&zeroed(t.valid, dropped), 0.0),
        ratio,
        clipped,
    }
}

/// The tokens whose loss is 0: the invalid ones and the `dropped` ones.
fn zeroed(valid: &Tensor, dropped: Option<&Tensor>) -> Tensor {
    let invalid = valid.logical_not();
    match dropped {
        Some(d) => invalid.logical_or(d),
        None => invalid,
    }
}
