//! Entropy controls: None, Clip-Cov, KL-Cov, entropy bonus and an adaptive controller.
//!
//! A control sees the per-token `logp`, `old_logp`, advantage and mask of a selection
//! scope, chooses the tokens whose loss it changes ([`EntropyControl::select`]) and
//! then builds the per-token loss of any rows of that scope
//! ([`EntropyControl::token_loss`]). Selection and loss are separate so that one
//! selection over an optimizer mini-batch can be applied across its micro-batches.
//!
//! Selection runs on the tensors' own device: on the CPU a fused two-pass kernel
//! ([`super::cpu`]); elsewhere covariance, candidate test, hash-keyed random choice and
//! top-k are tensor ops and only scalar counts are read back.

use super::cpu;
use super::policy::{Objective, PolicyLoss};
use super::surrogate::Surrogate;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The per-token tensors of a selection scope or of some of its rows, all `[B, T]`.
/// Selection reads `logp` detached; the loss keeps its gradient.
pub struct TokenTensors<'a> {
    /// Current-policy log-probabilities (with grad when building a loss).
    pub logp: &'a Tensor,
    /// Log-probabilities of the policy that generated the batch.
    pub old_logp: &'a Tensor,
    /// Per-token advantages.
    pub adv: &'a Tensor,
    /// Boolean mask of valid (response) tokens.
    pub valid: &'a Tensor,
}

impl<'a> TokenTensors<'a> {
    /// The same tokens with `logp` replaced (a detached copy, for selection).
    pub fn with_logp<'b>(&self, logp: &'b Tensor) -> TokenTensors<'b>
    where
        'a: 'b,
    {
        TokenTensors { logp, ..*self }
    }
}

/// Per-token covariance `(logp - mean logp) * (A - mean A)`, means over valid tokens;
/// 0 at masked-out tokens. Computed on detached values.
pub fn token_covariance(logp: &Tensor, adv: &Tensor, valid: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let kind = logp.kind();
    let invalid = valid.logical_not();
    let n = valid.sum(kind).clamp_min(1.0);
    let logp0 = logp.detach().masked_fill(&invalid, 0.0);
    let adv0 = adv.masked_fill(&invalid, 0.0);
    let mean_logp = logp0.sum(kind) / &n;
    let mean_adv = adv0.sum(kind) / &n;
    ((logp0 - mean_logp) * (adv0 - mean_adv)).masked_fill(&invalid, 0.0)
}

/// `max(int(ratio * n), 1)`: Python's `int()` truncation of the float product, at least
/// one token (the paper's count for Clip-Cov and KL-Cov).
pub fn selection_count(ratio: f64, n_valid: i64) -> i64 {
    ((ratio * n_valid as f64).floor() as i64).max(1)
}

/// How many tokens Clip-Cov or KL-Cov select over a scope. In TOML, `ratio = 2e-4` (a
/// token fraction, the paper's) or `ratio = { share = 0.2 }` (a covariance share).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ratio {
    /// `max(int(r * N), 1)` of the scope's `N` valid tokens ([`selection_count`]).
    Fraction(f64),
    /// The fewest tokens that carry this share of the scope's positive covariance mass
    /// (the sum of `max(cov, 0)` over valid tokens; [`covariance_share`]): KL-Cov takes
    /// the top tokens by covariance, Clip-Cov random candidates in its band, until the
    /// share is reached (all candidates if they carry less). With no positive mass
    /// nothing is selected. The token count then follows how concentrated the batch's
    /// covariance is instead of its size.
    Share {
        /// The share, in (0, 1].
        share: f64,
    },
}

impl Ratio {
    /// The number it holds (fraction or share): the control's adjustable strength.
    pub fn value(self) -> f64 {
        match self {
            Ratio::Fraction(r) => r,
            Ratio::Share { share } => share,
        }
    }

    /// The same kind of ratio holding `value`.
    pub fn with_value(self, value: f64) -> Ratio {
        match self {
            Ratio::Fraction(_) => Ratio::Fraction(value),
            Ratio::Share { .. } => Ratio::Share { share: value },
        }
    }

    fn check(self) -> Result<(), ControlError> {
        match self {
            Ratio::Fraction(r) => check("ratio", r, (0.0..=1.0).contains(&r), "must be in [0, 1]"),
            Ratio::Share { share } => check(
                "ratio.share",
                share,
                share > 0.0 && share <= 1.0,
                "must be in (0, 1]",
            ),
        }
    }
}

impl From<f64> for Ratio {
    fn from(r: f64) -> Self {
        Ratio::Fraction(r)
    }
}

impl std::fmt::Display for Ratio {
    /// `0.0002` for a fraction, `share 0.2` for a share (report tables).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ratio::Fraction(r) => write!(f, "{r}"),
            Ratio::Share { share } => write!(f, "share {share}"),
        }
    }
}

/// The share of the scope's positive covariance mass that the `selected` tokens carry:
/// `sum(max(cov, 0) over selected) / sum(max(cov, 0) over valid)`, covariance from
/// `scope.logp` (read detached) as in [`token_covariance`]; 0 when there is no positive
/// mass. What a selection took out of the batch's entropy-lowering covariance.
pub fn covariance_share(scope: &TokenTensors, selected: &Tensor) -> f64 {
    let _guard = tch::no_grad_guard();
    let positive = token_covariance(scope.logp, scope.adv, scope.valid)
        .to_kind(Kind::Double)
        .clamp_min(0.0);
    let chosen = positive.masked_fill(&selected.logical_and(scope.valid).logical_not(), 0.0);
    let [carried, total] = read_sums(&chosen, &positive);
    if total > 0.0 { carried / total } else { 0.0 }
}

/// The sums of `a` and `b` (any shapes) as f64, read back from the device in one go.
fn read_sums(a: &Tensor, b: &Tensor) -> [f64; 2] {
    let sums = Tensor::stack(&[a.sum(Kind::Double), b.sum(Kind::Double)], 0);
    let sums = Vec::<f64>::try_from(&sums).expect("two doubles");
    [sums[0], sums[1]]
}

/// How many of `masses` (non-negative, in the order they would be taken) the fewest
/// that reach `share` of `total` are: the first index where the running sum reaches
/// the target, plus one, at most `available`; 0 when `total` is not positive.
fn count_for_share(masses: &Tensor, total: f64, share: f64, available: i64) -> i64 {
    if total <= 0.0 || available == 0 {
        return 0;
    }
    let below = masses
        .cumsum(0, Kind::Double)
        .lt(share * total)
        .sum(Kind::Int64)
        .int64_value(&[]);
    (below + 1).min(available)
}

const M32: i64 = 0xFFFF_FFFF;

/// `(x * c) mod 2^32` for `0 <= x, c < 2^32` without int64 overflow (split in halves).
fn mul_mod32(x: &Tensor, c: i64) -> Tensor {
    let hi = (x * (c >> 16))
        .bitwise_and(0xFFFF)
        .bitwise_left_shift_tensor_scalar(16);
    (hi + x * (c & 0xFFFF)).bitwise_and(M32)
}

fn xorshift(x: &Tensor, s: i64) -> Tensor {
    x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(s))
}

/// Seeded, position-keyed random keys: a 32-bit avalanche hash of `(seed, index)` with
/// the index appended, so keys are unique and the same on every device. Choosing the
/// `n` smallest keys among candidates is a uniform random choice of `n` of them that
/// depends only on the seed and the tokens' indices in the scope.
pub fn hash_keys(index: &Tensor, seed: u64) -> Tensor {
    let lo = (seed & 0xFFFF_FFFF) as i64;
    let hi = (seed >> 32) as i64;
    let mut x = (mul_mod32(&index.bitwise_and(M32), 0x9E37_79B1) + lo).bitwise_and(M32);
    x = mul_mod32(&xorshift(&x, 16), 0x85EB_CA6B);
    x = (xorshift(&x, 13).bitwise_xor(hi)).bitwise_and(M32);
    x = mul_mod32(&x, 0xC2B2_AE35);
    x = mul_mod32(&xorshift(&x, 16), 0x27D4_EB2D);
    x = xorshift(&x, 15);
    x.bitwise_left_shift_tensor_scalar(31) + index.bitwise_and(0x7FFF_FFFF)
}

/// Clip-Cov candidates: valid tokens not clipped by the policy objective (PPO's clipped
/// term, GSPO's clipped sequence, CISPO's clipped weight) with `lb < cov < ub` (strict).
pub fn clip_cov_candidates(
    scope: &TokenTensors,
    cov: &Tensor,
    lb: f64,
    ub: f64,
    objective: &Objective,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let clipped = objective.clipped(scope);
    cov.gt(lb)
        .logical_and(&cov.lt(ub))
        .logical_and(scope.valid)
        .logical_and(&clipped.logical_not())
}

/// Clip-Cov selection: `max(int(ratio * N), 1)` tokens drawn uniformly at random (keyed
/// by `seed`) among the candidates, or all candidates if fewer; for a share, random
/// candidates until they carry it ([`clip_cov_select_share`]). Returns a `[B, T]` bool
/// on the scope's device (fused kernel for CPU tensors under PPO, tensor ops elsewhere).
pub fn clip_cov_select(
    scope: &TokenTensors,
    ratio: Ratio,
    lb: f64,
    ub: f64,
    objective: &Objective,
    seed: u64,
) -> Tensor {
    let ratio = match ratio {
        Ratio::Fraction(r) => r,
        Ratio::Share { share } => {
            return clip_cov_select_share(scope, share, lb, ub, objective, seed);
        }
    };
    if objective.policy != PolicyLoss::Ppo
        || !cpu::applicable(scope.valid, &[scope.logp, scope.old_logp, scope.adv])
    {
        return clip_cov_select_tensor(scope, ratio, lb, ub, objective, seed);
    }
    let clip = &objective.clip;
    let count = |n| selection_count(ratio, n);
    let (t, v) = (scope, scope.valid);
    let (chosen, _) = match scope.logp.kind() {
        Kind::Float => {
            cpu::clip_cov_choose::<f32>(t.logp, t.old_logp, t.adv, v, lb, ub, clip, count, seed)
        }
        _ => cpu::clip_cov_choose::<f64>(t.logp, t.old_logp, t.adv, v, lb, ub, clip, count, seed),
    };
    cpu::mask_from_indices(&chosen, scope.valid)
}

/// [`clip_cov_select`] written as tensor ops (any device). One host sync (the valid
/// count, which fixes `n`): every position gets its key, non-candidates the largest
/// key, the `n` smallest are taken and non-candidates dropped again, so fewer
/// candidates than `n` select them all without a data-dependent `nonzero`.
pub fn clip_cov_select_tensor(
    scope: &TokenTensors,
    ratio: f64,
    lb: f64,
    ub: f64,
    objective: &Objective,
    seed: u64,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let cov = token_covariance(scope.logp, scope.adv, scope.valid);
    let candidates = clip_cov_candidates(scope, &cov, lb, ub, objective).flatten(0, -1);
    let n_valid = scope.valid.sum(Kind::Int64).int64_value(&[]);
    let n = selection_count(ratio, n_valid).min(candidates.size()[0]);
    let positions = Tensor::arange(candidates.size()[0], (Kind::Int64, candidates.device()));
    let keys = hash_keys(&positions, seed).masked_fill(&candidates.logical_not(), i64::MAX);
    let (_, chosen) = keys.topk(n, 0, false, false);
    candidates
        .zeros_like()
        .index_fill(0, &chosen, 1)
        .logical_and(&candidates)
        .view_as(scope.valid)
}

/// Clip-Cov by covariance share: the candidates in the order of their random keys
/// (the order [`clip_cov_select_tensor`] draws them in), taken until they carry `share`
/// of the scope's positive covariance mass, or all of them. Tensor ops on any device;
/// two host reads.
pub fn clip_cov_select_share(
    scope: &TokenTensors,
    share: f64,
    lb: f64,
    ub: f64,
    objective: &Objective,
    seed: u64,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let cov = token_covariance(scope.logp, scope.adv, scope.valid).to_kind(Kind::Double);
    let candidates = clip_cov_candidates(scope, &cov, lb, ub, objective).flatten(0, -1);
    let positive = cov.clamp_min(0.0).flatten(0, -1);
    let [total, n_candidates] = read_sums(&positive, &candidates);
    let positions = Tensor::arange(candidates.size()[0], (Kind::Int64, candidates.device()));
    let keys = hash_keys(&positions, seed).masked_fill(&candidates.logical_not(), i64::MAX);
    let (_, order) = keys.sort(0, false);
    let masses = positive
        .masked_fill(&candidates.logical_not(), 0.0)
        .index_select(0, &order);
    let n = count_for_share(&masses, total, share, n_candidates as i64);
    candidates
        .zeros_like()
        .index_fill(0, &order.narrow(0, 0, n), 1)
        .view_as(scope.valid)
}

/// KL-Cov selection: the top `max(int(k * N), 1)` valid tokens by covariance (none if
/// no token is valid); for a share, the top tokens until they carry it
/// ([`kl_cov_select_share`]). Returns a `[B, T]` bool on the scope's device (fused
/// kernel for CPU tensors, tensor ops elsewhere).
pub fn kl_cov_select(scope: &TokenTensors, ratio: Ratio) -> Tensor {
    let k = match ratio {
        Ratio::Fraction(k) => k,
        Ratio::Share { share } => return kl_cov_select_share(scope, share),
    };
    if !cpu::applicable(scope.valid, &[scope.logp, scope.adv]) {
        return kl_cov_select_tensor(scope, k);
    }
    let count = |n| selection_count(k, n);
    let (top, _) = match scope.logp.kind() {
        Kind::Float => cpu::kl_cov_top::<f32>(scope.logp, scope.adv, scope.valid, count),
        _ => cpu::kl_cov_top::<f64>(scope.logp, scope.adv, scope.valid, count),
    };
    cpu::mask_from_indices(&top, scope.valid)
}

/// [`kl_cov_select`] written as tensor ops (any device).
pub fn kl_cov_select_tensor(scope: &TokenTensors, k: f64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n_valid = scope.valid.sum(Kind::Int64).int64_value(&[]);
    let flat_valid = scope.valid.flatten(0, -1);
    if n_valid == 0 {
        return scope.valid.zeros_like();
    }
    let n = selection_count(k, n_valid);
    let cov = token_covariance(scope.logp, scope.adv, scope.valid)
        .masked_fill(&scope.valid.logical_not(), f64::NEG_INFINITY)
        .flatten(0, -1);
    let (_, idx) = cov.topk(n, 0, true, false);
    flat_valid
        .zeros_like()
        .index_fill(0, &idx, 1)
        .view_as(scope.valid)
}

/// KL-Cov by covariance share: the fewest top tokens by covariance that carry `share` of
/// the scope's positive covariance mass. Tensor ops on any device; two host reads.
pub fn kl_cov_select_share(scope: &TokenTensors, share: f64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let cov = token_covariance(scope.logp, scope.adv, scope.valid)
        .to_kind(Kind::Double)
        .masked_fill(&scope.valid.logical_not(), f64::NEG_INFINITY)
        .flatten(0, -1);
    let (sorted, order) = cov.sort(0, true);
    let masses = sorted.clamp_min(0.0);
    let [total, n_positive] = read_sums(&masses, &masses.gt(0.0));
    let n = count_for_share(&masses, total, share, n_positive as i64);
    scope
        .valid
        .flatten(0, -1)
        .zeros_like()
        .index_fill(0, &order.narrow(0, 0, n), 1)
        .view_as(scope.valid)
}

/// Clip-Cov loss: the objective's clipped loss with the selected tokens' terms
/// multiplied by 0 (their gradient is exactly zero).
pub fn clip_cov_loss(t: &TokenTensors, selected: &Tensor, objective: &Objective) -> Surrogate {
    objective.surrogate(t, Some(selected))
}

/// KL-Cov loss: the objective's unclipped term everywhere (`-A * ratio` under PPO; no
/// clipping in this mode), plus `beta * |logp - old_logp|` on the selected tokens.
pub fn kl_cov_loss(
    t: &TokenTensors,
    selected: &Tensor,
    beta: f64,
    objective: &Objective,
) -> Surrogate {
    let policy = objective.unclipped(t);
    let kl = (t.logp - t.old_logp)
        .masked_fill(&selected.logical_not(), 0.0)
        .abs()
        * beta;
    Surrogate {
        loss: (policy.loss + kl).masked_fill(&t.valid.logical_not(), 0.0),
        ..policy
    }
}

/// Plain GRPO, Clip-Cov and KL-Cov with the paper's defaults, named `grpo`, `clip_cov`
/// and `kl_cov`: the three methods that benchmarks and comparisons set side by side.
pub fn paper_controls() -> [(&'static str, ControlConfig); 3] {
    [
        ("grpo", ControlConfig::None),
        (
            "clip_cov",
            ControlConfig::ClipCov {
                ratio: default_clip_ratio(),
                lb: default_lb(),
                ub: default_ub(),
            },
        ),
        (
            "kl_cov",
            ControlConfig::KlCov {
                ratio: default_kl_ratio(),
                beta: default_beta(),
            },
        ),
    ]
}

/// An entropy control, composed by the trainer with a reward and an advantage.
pub trait EntropyControl: Send {
    /// A short stable name for logs.
    fn name(&self) -> &'static str;
    /// Whether [`EntropyControl::select`] picks tokens (false: the loss is the plain
    /// surrogate and no selection pass is needed).
    fn selects(&self) -> bool;
    /// Chooses, over one selection scope, the tokens whose loss term changes; a `[B, T]`
    /// bool on the scope's device. `seed` keys any random choice.
    fn select(&self, scope: &TokenTensors, objective: &Objective, seed: u64) -> Tensor;
    /// The per-token loss of some rows of a scope given their slice of the selection,
    /// built from `objective` (PPO, GSPO or CISPO).
    fn token_loss(&self, t: &TokenTensors, selected: &Tensor, objective: &Objective) -> Surrogate;
    /// Coefficient of the entropy bonus subtracted from the loss (0: none).
    fn entropy_coef(&self) -> f64 {
        0.0
    }
    /// Sees the step's measured entropy (masked token mean); adaptive controls adjust
    /// their strength here.
    fn observe_entropy(&mut self, _entropy: f64) {}
    /// The current adjustable strength (Clip-Cov's ratio or share, KL-Cov's beta, the bonus
    /// coefficient),
    /// stored in checkpoints and metrics.
    fn strength(&self) -> f64;
    /// Restores the strength saved by [`EntropyControl::strength`].
    fn set_strength(&mut self, value: f64);
}

/// The configuration of an entropy control, selected by `kind` in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ControlConfig {
    /// Plain PPO/GRPO surrogate.
    None,
    /// Clip-Cov (paper defaults: ratio 2e-4, lb 1, ub 5).
    ClipCov {
        /// How many tokens to detach: a fraction r of the valid tokens, or a covariance
        /// share.
        #[serde(default = "default_clip_ratio")]
        ratio: Ratio,
        /// Strict lower covariance bound.
        #[serde(default = "default_lb")]
        lb: f64,
        /// Strict upper covariance bound.
        #[serde(default = "default_ub")]
        ub: f64,
    },
    /// KL-Cov (paper defaults: k 2e-3, beta 1).
    KlCov {
        /// How many tokens to penalise: a fraction k of the valid tokens (2e-3 for 7B,
        /// 2e-4 for 32B models), or a covariance share.
        #[serde(default = "default_kl_ratio")]
        ratio: Ratio,
        /// Coefficient of `|logp - old_logp|`.
        #[serde(default = "default_beta")]
        beta: f64,
    },
    /// Entropy bonus: `loss - coef * entropy`.
    EntropyBonus {
        /// Bonus coefficient.
        coef: f64,
    },
    /// Adjusts the strength of a Clip-Cov (its ratio) or KL-Cov (its beta) control step
    /// by step so the policy entropy holds `target_entropy`.
    Adaptive {
        /// The controlled method: `clip-cov` or `kl-cov` with its starting parameters.
        base: Box<ControlConfig>,
        /// Entropy (nats, masked token mean) to hold.
        target_entropy: f64,
        /// Multiplicative step: strength *= exp(gain * (target - H) / target).
        #[serde(default = "default_gain")]
        gain: f64,
        /// Lower bound on the strength.
        min: f64,
        /// Upper bound on the strength.
        max: f64,
    },
}

fn default_clip_ratio() -> Ratio {
    Ratio::Fraction(2e-4)
}
fn default_lb() -> f64 {
    1.0
}
fn default_ub() -> f64 {
    5.0
}
fn default_kl_ratio() -> Ratio {
    Ratio::Fraction(2e-3)
}
fn default_beta() -> f64 {
    1.0
}
fn default_gain() -> f64 {
    0.5
}

impl Default for ControlConfig {
    /// KL-Cov with the paper's values (its best-performing method).
    fn default() -> Self {
        ControlConfig::KlCov {
            ratio: default_kl_ratio(),
            beta: default_beta(),
        }
    }
}

/// Errors of an invalid control configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    /// A parameter is out of its range.
    #[error("entropy control `{field}` = {value}: {why}")]
    Invalid {
        /// The TOML field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What is wrong.
        why: &'static str,
    },
    /// `adaptive` wraps something other than clip-cov or kl-cov.
    #[error("entropy control `adaptive`: `base` must be clip-cov or kl-cov")]
    AdaptiveBase,
}

fn check(field: &'static str, value: f64, ok: bool, why: &'static str) -> Result<(), ControlError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ControlError::Invalid { field, value, why })
    }
}

impl ControlConfig {
    /// Clip-Cov's lower covariance bound `lb` (also under an adaptive controller); 1, the
    /// paper's value, for the other controls. The covariance statistics report the
    /// fraction of tokens above it for every control.
    pub fn cov_lower_bound(&self) -> f64 {
        match self {
            ControlConfig::ClipCov { lb, .. } => *lb,
            ControlConfig::Adaptive { base, .. } => base.cov_lower_bound(),
            _ => 1.0,
        }
    }

    /// Checks the parameters and builds the control.
    pub fn build(&self) -> Result<Box<dyn EntropyControl>, ControlError> {
        let control: Box<dyn EntropyControl> = match *self {
            ControlConfig::None => Box::new(NoControl),
            ControlConfig::ClipCov { ratio, lb, ub } => {
                ratio.check()?;
                check("ub", ub, ub > lb, "must be greater than lb")?;
                Box::new(ClipCov { ratio, lb, ub })
            }
            ControlConfig::KlCov { ratio, beta } => {
                ratio.check()?;
                check("beta", beta, beta >= 0.0, "must be >= 0")?;
                Box::new(KlCov { ratio, beta })
            }
            ControlConfig::EntropyBonus { coef } => {
                check("coef", coef, true, "must be finite")?;
                Box::new(EntropyBonus { coef })
            }
            ControlConfig::Adaptive {
                ref base,
                target_entropy,
                gain,
                min,
                max,
            } => {
                check(
                    "target_entropy",
                    target_entropy,
                    target_entropy > 0.0,
                    "must be > 0",
                )?;
                check("gain", gain, gain > 0.0, "must be > 0")?;
                check("min", min, min > 0.0 && min <= max, "must be in (0, max]")?;
                let inner = match **base {
                    ControlConfig::ClipCov { .. } | ControlConfig::KlCov { .. } => base.build()?,
                    _ => return Err(ControlError::AdaptiveBase),
                };
                let mut a = Adaptive {
                    inner,
                    target_entropy,
                    gain,
                    min,
                    max,
                };
                let s = a.inner.strength().clamp(min, max);
                a.inner.set_strength(s);
                Box::new(a)
            }
        };
        Ok(control)
    }
}

/// No entropy control: the plain PPO surrogate.
pub struct NoControl;

impl EntropyControl for NoControl {
    fn name(&self) -> &'static str {
        "none"
    }
    fn selects(&self) -> bool {
        false
    }
    fn select(&self, scope: &TokenTensors, _objective: &Objective, _seed: u64) -> Tensor {
        scope.valid.zeros_like()
    }
    fn token_loss(&self, t: &TokenTensors, _selected: &Tensor, objective: &Objective) -> Surrogate {
        objective.surrogate(t, None)
    }
    fn strength(&self) -> f64 {
        0.0
    }
    fn set_strength(&mut self, _value: f64) {}
}

/// Clip-Cov: detach a random few high-covariance tokens from the gradient.
pub struct ClipCov {
    /// How many tokens to detach (fraction or covariance share).
    pub ratio: Ratio,
    /// Strict lower covariance bound.
    pub lb: f64,
    /// Strict upper covariance bound.
    pub ub: f64,
}

impl EntropyControl for ClipCov {
    fn name(&self) -> &'static str {
        "clip-cov"
    }
    fn selects(&self) -> bool {
        true
    }
    fn select(&self, scope: &TokenTensors, objective: &Objective, seed: u64) -> Tensor {
        clip_cov_select(scope, self.ratio, self.lb, self.ub, objective, seed)
    }
    fn token_loss(&self, t: &TokenTensors, selected: &Tensor, objective: &Objective) -> Surrogate {
        clip_cov_loss(t, selected, objective)
    }
    fn strength(&self) -> f64 {
        self.ratio.value()
    }
    fn set_strength(&mut self, value: f64) {
        self.ratio = self.ratio.with_value(value);
    }
}

/// KL-Cov: a KL penalty on the top-k covariance tokens, no PPO clipping.
pub struct KlCov {
    /// How many tokens to penalise (fraction or covariance share).
    pub ratio: Ratio,
    /// Penalty coefficient.
    pub beta: f64,
}

impl EntropyControl for KlCov {
    fn name(&self) -> &'static str {
        "kl-cov"
    }
    fn selects(&self) -> bool {
        true
    }
    fn select(&self, scope: &TokenTensors, _objective: &Objective, _seed: u64) -> Tensor {
        kl_cov_select(scope, self.ratio)
    }
    fn token_loss(&self, t: &TokenTensors, selected: &Tensor, objective: &Objective) -> Surrogate {
        kl_cov_loss(t, selected, self.beta, objective)
    }
    fn strength(&self) -> f64 {
        self.beta
    }
    fn set_strength(&mut self, value: f64) {
        self.beta = value;
    }
}

/// Entropy bonus: the PPO surrogate minus `coef` times the aggregated entropy.
pub struct EntropyBonus {
    /// Bonus coefficient.
    pub coef: f64,
}

impl EntropyControl for EntropyBonus {
    fn name(&self) -> &'static str {
        "entropy-bonus"
    }
    fn selects(&self) -> bool {
        false
    }
    fn select(&self, scope: &TokenTensors, _objective: &Objective, _seed: u64) -> Tensor {
        scope.valid.zeros_like()
    }
    fn token_loss(&self, t: &TokenTensors, _selected: &Tensor, objective: &Objective) -> Surrogate {
        objective.surrogate(t, None)
    }
    fn entropy_coef(&self) -> f64 {
        self.coef
    }
    fn strength(&self) -> f64 {
        self.coef
    }
    fn set_strength(&mut self, value: f64) {
        self.coef = value;
    }
}

/// Holds a target entropy by scaling the strength of a Clip-Cov or KL-Cov control:
/// below the target the control gets stronger, above it weaker, by
/// `exp(gain * (target - H) / target)` per step, clamped to `[min, max]`.
pub struct Adaptive {
    /// The controlled Clip-Cov or KL-Cov.
    pub inner: Box<dyn EntropyControl>,
    /// Entropy to hold.
    pub target_entropy: f64,
    /// Multiplicative gain.
    pub gain: f64,
    /// Lower bound on the strength.
    pub min: f64,
    /// Upper bound on the strength.
    pub max: f64,
}

impl EntropyControl for Adaptive {
    fn name(&self) -> &'static str {
        "adaptive"
    }
    fn selects(&self) -> bool {
        true
    }
    fn select(&self, scope: &TokenTensors, objective: &Objective, seed: u64) -> Tensor {
        self.inner.select(scope, objective, seed)
    }
    fn token_loss(&self, t: &TokenTensors, selected: &Tensor, objective: &Objective) -> Surrogate {
        self.inner.token_loss(t, selected, objective)
    }
    fn observe_entropy(&mut self, entropy: f64) {
        if !entropy.is_finite() {
            return;
        }
        let factor = (self.gain * (self.target_entropy - entropy) / self.target_entropy).exp();
        let s = (self.inner.strength() * factor).clamp(self.min, self.max);
        self.inner.set_strength(s);
    }
    fn strength(&self) -> f64 {
        self.inner.strength()
    }
    fn set_strength(&mut self, value: f64) {
        self.inner.set_strength(value);
    }
}
