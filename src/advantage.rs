//! Advantage estimators: per-response advantages from scalar rewards and group ids.
//!
//! Outcome-reward RL for reasoning samples several responses per prompt (a *group*)
//! and turns their rewards into advantages without a value model. Each estimator is a
//! small pure function over `f64` slices (verl `core_algos.py` style) selected by name
//! through [`AdvantageEstimator`]; users can plug their own by implementing
//! [`Advantage`]. The trainer broadcasts a response's advantage to its tokens.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Added to the group standard deviation in GRPO (as in verl and the paper's code).
pub const GRPO_EPS: f64 = 1e-6;

/// Added to the batch variance when whitening REINFORCE++ advantages (verl's value).
pub const WHITEN_EPS: f64 = 1e-8;

/// Turns the rewards of a batch of responses into one advantage per response.
///
/// `scores[i]` is response `i`'s reward, `groups[i]` the id of the prompt it answers
/// (responses with the same id form a group) and `lengths[i]` its number of response
/// tokens (only estimators that weigh by tokens use it). All three have equal length.
pub trait Advantage: Send + Sync {
    /// A short stable name for logs and metrics.
    fn name(&self) -> &str;
    /// One advantage per response.
    fn compute(&self, scores: &[f64], groups: &[usize], lengths: &[usize]) -> Vec<f64>;
}

/// The built-in estimators, selected by name in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageEstimator {
    /// GRPO: `(r - group mean) / (unbiased group std + 1e-6)`; the paper's choice.
    #[default]
    Grpo,
    /// Dr.GRPO: `r - group mean` (no division by the standard deviation).
    DrGrpo,
    /// RLOO: `r - mean of the other responses of the group`.
    Rloo,
    /// REINFORCE++ with baseline: `r - group mean`, then whitened over the batch's tokens.
    ReinforcePlusPlusBaseline,
}

impl Advantage for AdvantageEstimator {
    fn name(&self) -> &str {
        match self {
            AdvantageEstimator::Grpo => "grpo",
            AdvantageEstimator::DrGrpo => "dr-grpo",
            AdvantageEstimator::Rloo => "rloo",
            AdvantageEstimator::ReinforcePlusPlusBaseline => "reinforce-plus-plus-baseline",
        }
    }

    fn compute(&self, scores: &[f64], groups: &[usize], lengths: &[usize]) -> Vec<f64> {
        match self {
            AdvantageEstimator::Grpo => grpo(scores, groups),
            AdvantageEstimator::DrGrpo => dr_grpo(scores, groups),
            AdvantageEstimator::Rloo => rloo(scores, groups),
            AdvantageEstimator::ReinforcePlusPlusBaseline => {
                reinforce_pp_baseline(scores, groups, lengths)
            }
        }
    }
}

/// Per-group statistics of the rewards.
struct GroupStats {
    count: usize,
    mean: f64,
    /// Unbiased (n - 1) standard deviation; 0 for a group of one.
    std: f64,
    /// Whether every reward of the group is the same value.
    all_equal: bool,
}

fn group_stats(scores: &[f64], groups: &[usize]) -> HashMap<usize, GroupStats> {
    assert_eq!(scores.len(), groups.len(), "one group id per score");
    let mut members: HashMap<usize, Vec<f64>> = HashMap::new();
    for (&s, &g) in scores.iter().zip(groups) {
        members.entry(g).or_default().push(s);
    }
    members
        .into_iter()
        .map(|(g, v)| {
            let n = v.len();
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = if n > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            let all_equal = v.iter().all(|&x| x == v[0]);
            (
                g,
                GroupStats {
                    count: n,
                    mean,
                    std,
                    all_equal,
                },
            )
        })
        .collect()
}

/// Maps each score through `f(score, its group's statistics)`.
fn per_group(scores: &[f64], groups: &[usize], f: impl Fn(f64, &GroupStats) -> f64) -> Vec<f64> {
    let stats = group_stats(scores, groups);
    scores
        .iter()
        .zip(groups)
        .map(|(&s, g)| f(s, &stats[g]))
        .collect()
}

/// GRPO advantages: `(r - mean) / (std + 1e-6)` per group, unbiased std. A group whose
/// rewards are all equal (a group of one included) gets exactly 0: it carries no
/// learning signal. (verl gives a group of one its raw score; Cove does not.)
pub fn grpo(scores: &[f64], groups: &[usize]) -> Vec<f64> {
    per_group(scores, groups, |s, st| {
        if st.all_equal {
            0.0
        } else {
            (s - st.mean) / (st.std + GRPO_EPS)
        }
    })
}

/// Dr.GRPO advantages: `r - group mean`; equal-reward groups get exactly 0.
pub fn dr_grpo(scores: &[f64], groups: &[usize]) -> Vec<f64> {
    per_group(
        scores,
        groups,
        |s, st| {
            if st.all_equal { 0.0 } else { s - st.mean }
        },
    )
}

/// RLOO advantages: `r_i - mean_{j != i} r_j = n/(n-1) * (r_i - mean)`; a group of one
/// (no other response to compare with) or of equal rewards gets 0.
pub fn rloo(scores: &[f64], groups: &[usize]) -> Vec<f64> {
    per_group(scores, groups, |s, st| {
        if st.all_equal || st.count < 2 {
            0.0
        } else {
            let n = st.count as f64;
            let others = (st.mean * n - s) / (n - 1.0);
            s - others
        }
    })
}

/// REINFORCE++ with baseline (verl's `reinforce_plus_plus_baseline`): subtract the
/// group mean, then whiten over the batch's valid tokens (each response weighs by its
/// `lengths[i]`): `(x - mean) / sqrt(unbiased var + 1e-8)`. A batch with fewer than two
/// tokens gets zeros.
pub fn reinforce_pp_baseline(scores: &[f64], groups: &[usize], lengths: &[usize]) -> Vec<f64> {
    assert_eq!(scores.len(), lengths.len(), "one length per score");
    let centred = dr_grpo(scores, groups);
    let total: f64 = lengths.iter().map(|&l| l as f64).sum();
    if total < 2.0 {
        return vec![0.0; scores.len()];
    }
    let mean = centred
        .iter()
        .zip(lengths)
        .map(|(x, &l)| x * l as f64)
        .sum::<f64>()
        / total;
    let var = centred
        .iter()
        .zip(lengths)
        .map(|(x, &l)| (x - mean).powi(2) * l as f64)
        .sum::<f64>()
        / total
        * (total / (total - 1.0));
    let scale = 1.0 / (var + WHITEN_EPS).sqrt();
    centred.iter().map(|x| (x - mean) * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpo_hand_checked() {
        // Group 0: [1, 0, 0, 1] -> mean 0.5, unbiased std sqrt(1/3).
        let a = grpo(&[1.0, 0.0, 0.0, 1.0, 0.3, 0.3], &[0, 0, 0, 0, 1, 1]);
        let s = (1.0f64 / 3.0).sqrt() + GRPO_EPS;
        assert!((a[0] - 0.5 / s).abs() < 1e-12);
        assert!((a[1] + 0.5 / s).abs() < 1e-12);
        assert_eq!(&a[4..], &[0.0, 0.0]);
    }

    #[test]
    fn group_of_one_and_equal_groups_get_zero() {
        for est in [
            AdvantageEstimator::Grpo,
            AdvantageEstimator::DrGrpo,
            AdvantageEstimator::Rloo,
        ] {
            let a = est.compute(&[0.7, 0.1, 0.1, 0.1], &[3, 5, 5, 5], &[1, 1, 1, 1]);
            assert_eq!(a, vec![0.0; 4], "{}", est.name());
        }
    }

    #[test]
    fn rloo_is_leave_one_out() {
        let a = rloo(&[1.0, 0.0, 0.0], &[0, 0, 0]);
        assert!((a[0] - 1.0).abs() < 1e-12);
        assert!((a[1] + 0.5).abs() < 1e-12);
    }

    #[test]
    fn reinforce_pp_is_token_weighted_whitening() {
        let a = reinforce_pp_baseline(&[1.0, 0.0], &[0, 0], &[3, 1]);
        // centred: [0.5, -0.5] over 3 + 1 tokens; token mean 0.25; deviations
        // 0.25 (x3), -0.75: biased var 0.1875, unbiased (x 4/3) 0.25.
        let sd = (0.25f64 + WHITEN_EPS).sqrt();
        assert!((a[0] - 0.25 / sd).abs() < 1e-12);
        assert!((a[1] + 0.75 / sd).abs() < 1e-12);
        assert_eq!(reinforce_pp_baseline(&[1.0], &[0], &[1]), vec![0.0]);
    }
}
