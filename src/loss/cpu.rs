//! Fused CPU kernels for Clip-Cov / KL-Cov selection.
//!
//! On the CPU, selection written as tensor ops walks the `[B, T]` tensors about twenty
//! times (means, covariance, PPO-clip test, bounds, masks). These kernels do the same
//! work in two parallel passes over the raw data (masked sums, then covariance and
//! candidate test), which is what keeps Clip-Cov and KL-Cov close to the cost of the
//! plain loss. They are used only for contiguous CPU tensors of one float kind; other
//! devices use the tensor-op path in [`super::control`], and the tests check that both
//! paths select the same tokens.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::surrogate::PpoClip;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// Whether the fused kernels apply: all tensors contiguous on the CPU, `valid` bool,
/// the others one float kind.
pub fn applicable(valid: &Tensor, floats: &[&Tensor]) -> bool {
    let kind = floats[0].kind();
    valid.device() == Device::Cpu
        && valid.kind() == Kind::Bool
        && valid.is_contiguous()
        && matches!(kind, Kind::Float | Kind::Double)
        && floats.iter().all(|t| {
            t.device() == Device::Cpu
                && t.kind() == kind
                && t.is_contiguous()
                && t.size() == valid.size()
        })
}

/// A float element the kernels read.
pub trait Real: Copy + Send + Sync + tch::kind::Element {
    /// Widening conversion.
    fn f(self) -> f64;
}
impl Real for f32 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl Real for f64 {
    fn f(self) -> f64 {
        self
    }
}

fn slice<T: Real>(t: &Tensor) -> &[T] {
    let n = t.numel();
    // SAFETY: `applicable` checked the tensor is contiguous, on the CPU and of kind T;
    // the borrow of `t` keeps its storage alive and nothing writes to it meanwhile.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, n) }
}

fn bools(t: &Tensor) -> &[bool] {
    let n = t.numel();
    // SAFETY: as in `slice`; torch stores bool tensors as one byte holding 0 or 1.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const bool, n) }
}

/// Masked means of logp and adv and the number of valid tokens.
fn means<T: Real>(logp: &[T], adv: &[T], valid: &[bool]) -> (f64, f64, i64) {
    let (sl, sa, n) = logp
        .par_chunks(CHUNK)
        .zip(adv.par_chunks(CHUNK))
        .zip(valid.par_chunks(CHUNK))
        .map(|((l, a), v)| {
            let (mut sl, mut sa, mut n) = (0.0f64, 0.0f64, 0i64);
            for i in 0..l.len() {
                if v[i] {
                    sl += l[i].f();
                    sa += a[i].f();
                    n += 1;
                }
            }
            (sl, sa, n)
        })
        .reduce(|| (0.0, 0.0, 0), |x, y| (x.0 + y.0, x.1 + y.1, x.2 + y.2));
    let d = (n.max(1)) as f64;
    (sl / d, sa / d, n)
}

/// Clip-Cov candidates (valid, not PPO-clipped, `lb < cov < ub`) as flat indices in
/// increasing order, and the number of valid tokens.
pub fn clip_cov_candidates<T: Real>(
    logp: &Tensor,
    old: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    lb: f64,
    ub: f64,
    clip: &PpoClip,
) -> (Vec<i64>, i64) {
    let (l, o, a, v) = (
        slice::<T>(logp),
        slice::<T>(old),
        slice::<T>(adv),
        bools(valid),
    );
    let (ml, ma, n) = means(l, a, v);
    let (lo, hi) = (1.0 - clip.eps_low, 1.0 + clip.eps_high);
    let idx: Vec<i64> = l
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(c, lc)| {
            let base = c * CHUNK;
            (0..lc.len()).filter_map(move |j| {
                let i = base + j;
                if !v[i] {
                    return None;
                }
                let cov = (l[i].f() - ml) * (a[i].f() - ma);
                if !(cov > lb && cov < ub) {
                    return None;
                }
                let ratio = (l[i].f() - o[i].f()).exp();
                let neg = -a[i].f();
                let clipped = neg * ratio.clamp(lo, hi) > neg * ratio;
                (!clipped).then_some(i as i64)
            })
        })
        .collect();
    (idx, n)
}

/// The same 32-bit avalanche key as [`super::control::hash_keys`], on the host.
pub fn hash_key(index: i64, seed: u64) -> i64 {
    const M: u64 = 0xFFFF_FFFF;
    let lo = seed & M;
    let hi = seed >> 32;
    let i = index as u64;
    let mut x = ((i & M).wrapping_mul(0x9E37_79B1) & M).wrapping_add(lo) & M;
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B) & M;
    x = ((x ^ (x >> 13)) ^ hi) & M;
    x = x.wrapping_mul(0xC2B2_AE35) & M;
    x ^= x >> 16;
    x = x.wrapping_mul(0x27D4_EB2D) & M;
    x ^= x >> 15;
    ((x << 31) + (i & 0x7FFF_FFFF)) as i64
}

/// The `n` candidates with the smallest keys (all of them if there are at most `n`).
pub fn choose(mut candidates: Vec<i64>, n: usize, seed: u64) -> Vec<i64> {
    if candidates.len() <= n {
        return candidates;
    }
    let mut keyed: Vec<(i64, i64)> = candidates.iter().map(|&i| (hash_key(i, seed), i)).collect();
    keyed.select_nth_unstable(n - 1);
    candidates.clear();
    candidates.extend(keyed[..n].iter().map(|&(_, i)| i));
    candidates
}

/// KL-Cov: flat indices of the `n` valid tokens with the largest covariance (ties
/// broken towards the lower index), and the number of valid tokens; `n` is computed
/// from it by `count`.
pub fn kl_cov_top<T: Real>(
    logp: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    count: impl Fn(i64) -> i64,
) -> (Vec<i64>, i64) {
    let (l, a, v) = (slice::<T>(logp), slice::<T>(adv), bools(valid));
    let (ml, ma, n_valid) = means(l, a, v);
    if n_valid == 0 {
        return (Vec::new(), 0);
    }
    let n = count(n_valid) as usize;
    // Descending covariance, then ascending index: a total order.
    let order = |x: &(f64, i64), y: &(f64, i64)| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1));
    let top: Vec<(f64, i64)> = l
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, lc)| {
            let base = c * CHUNK;
            let mut vals: Vec<(f64, i64)> = (0..lc.len())
                .filter(|&j| v[base + j])
                .map(|j| {
                    let i = base + j;
                    ((l[i].f() - ml) * (a[i].f() - ma), i as i64)
                })
                .collect();
            if vals.len() > n {
                vals.select_nth_unstable_by(n - 1, order);
                vals.truncate(n);
            }
            vals
        })
        .reduce(Vec::new, |mut x, y| {
            x.extend(y);
            if x.len() > n {
                x.select_nth_unstable_by(n - 1, order);
                x.truncate(n);
            }
            x
        });
    (top.into_iter().map(|(_, i)| i).collect(), n_valid)
}

/// A `[B, T]` bool mask with the flat indices `idx` set, shaped like `like`.
pub fn mask_from_indices(idx: &[i64], like: &Tensor) -> Tensor {
    let out = Tensor::zeros(like.size(), (Kind::Bool, like.device()));
    if idx.is_empty() {
        return out;
    }
    out.flatten(0, -1)
        .index_fill(0, &Tensor::from_slice(idx), 1)
        .view_as(like)
}
