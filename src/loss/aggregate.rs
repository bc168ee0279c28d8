//! Loss aggregation: how per-token losses become one scalar.
//!
//! Every mode is written as a *sum over tokens divided by a normaliser*
//! ([`AggNorm`]) so that a mini-batch split into micro-batches, each normalised by the
//! mini-batch's normaliser, sums to exactly the mini-batch loss (gradient accumulation
//! that does not depend on the micro-batch size). An all-masked batch gives 0, never
//! NaN: every denominator is at least 1 and masked tokens are zeroed, not multiplied.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The aggregation modes of verl / the paper's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    /// `sum(l * m) / sum(m)`: every valid token weighs the same (paper's choice).
    #[default]
    TokenMean,
    /// Mean over sequences of each sequence's token sum.
    SeqMeanTokenSum,
    /// Mean over sequences of each sequence's token mean (GRPO's original form).
    SeqMeanTokenMean,
    /// `sum(l * m) / max_len` (Dr.GRPO's constant normaliser; verl's
    /// `seq-mean-token-sum-norm`).
    SeqMeanTokenSumNorm,
}

/// The normalisers of one aggregation scope (a mini-batch, or a micro-batch in
/// verl-compatible `micro_batch` scope).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggNorm {
    /// Number of valid tokens.
    pub tokens: f64,
    /// Number of sequences with at least one valid token.
    pub seqs: f64,
    /// The constant length of `seq-mean-token-sum-norm` (the padded response width).
    pub max_len: f64,
}

impl AggNorm {
    /// The normalisers of a `[B, T]` boolean mask (one host sync); `max_len` is
    /// `seq_norm_len` when given, else the padded width `T`.
    pub fn of(valid: &Tensor, seq_norm_len: Option<usize>) -> AggNorm {
        let per_seq = valid.sum_dim_intlist(-1, false, Kind::Int64);
        let tokens = per_seq.sum(Kind::Int64).int64_value(&[]) as f64;
        let seqs = per_seq.gt(0).sum(Kind::Int64).int64_value(&[]) as f64;
        AggNorm {
            tokens,
            seqs,
            max_len: seq_norm_len.map_or(valid.size()[1] as f64, |l| l as f64),
        }
    }
}

/// Aggregates a `[B, T]` per-token tensor under `valid` with the scope normaliser
/// `norm`. The result is the scope's loss restricted to these rows, so summing it over
/// the micro-batches of a mini-batch gives the mini-batch's loss.
pub fn aggregate(values: &Tensor, valid: &Tensor, mode: LossAgg, norm: &AggNorm) -> Tensor {
    let zeroed = values.masked_fill(&valid.logical_not(), 0.0);
    match mode {
        LossAgg::TokenMean => zeroed.sum(values.kind()) / norm.tokens.max(1.0),
        LossAgg::SeqMeanTokenSum => zeroed.sum(values.kind()) / norm.seqs.max(1.0),
        LossAgg::SeqMeanTokenMean => {
            let lens = valid
                .sum_dim_intlist(-1, false, values.kind())
                .clamp_min(1.0);
            (zeroed.sum_dim_intlist(-1, false, values.kind()) / lens).sum(values.kind())
                / norm.seqs.max(1.0)
        }
        LossAgg::SeqMeanTokenSumNorm => zeroed.sum(values.kind()) / norm.max_len.max(1.0),
    }
}
