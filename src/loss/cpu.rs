//! Fused CPU kernels for Clip-Cov / KL-Cov selection.
//!
//! On the CPU, selection written as tensor ops walks the `[B, T]` tensors about twenty
//! times (means, covariance, PPO-clip test, bounds, masks) and allocates a tensor per
//! step. These kernels do the same work in two sequential passes over the raw data on
//! the calling thread: masked sums (vectorised), then covariance, candidate test and a
//! streaming top-n ([`TopN`]) that keeps only the chosen tokens. One thread on purpose:
//! libtorch's OpenMP workers spin for a while after each op, and a second pool (rayon)
//! racing them for the same cores made these kernels several times slower.
//!
//! They are used only for contiguous CPU tensors of one float kind; other devices use
//! the tensor-op path in [`super::control`], and the tests check that both paths
//! select the same tokens.

use std::cmp::Ordering;
use tch::{Device, Kind, Tensor};

use super::surrogate::PpoClip;

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

/// A float element the kernels read; covariance and tests are computed in its own
/// precision, as the tensor-op path does (sums are accumulated in f64).
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + tch::kind::Element
{
    /// Widening conversion.
    fn f(self) -> f64;
    /// Narrowing conversion (round to nearest).
    fn from_f64(x: f64) -> Self;
    /// `self` where `keep`, else +0, by masking the bits (no branch, and a NaN or
    /// infinity that is not kept cannot leak into a sum).
    fn keep(self, keep: bool) -> Self;
}
impl Real for f32 {
    #[inline(always)]
    fn f(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn keep(self, keep: bool) -> Self {
        f32::from_bits(self.to_bits() & (keep as u32).wrapping_neg())
    }
}
impl Real for f64 {
    #[inline(always)]
    fn f(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn keep(self, keep: bool) -> Self {
        f64::from_bits(self.to_bits() & (keep as u64).wrapping_neg())
    }
}

/// Tokens per block of the candidate passes: a branch-free, vectorisable test writes
/// one flag byte per token, then only the flagged tokens are visited.
const BLOCK: usize = 64;

/// Calls `hit(i)` for every `i` in `0..flags.len()` whose flag byte is non-zero,
/// skipping eight clear flags at a time.
#[inline(always)]
fn for_each_flagged(flags: &[u8], base: usize, mut hit: impl FnMut(usize)) {
    for (g, word) in flags.chunks(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes[..word.len()].copy_from_slice(word);
        let mut w = u64::from_le_bytes(bytes);
        while w != 0 {
            let j = (w.trailing_zeros() / 8) as usize;
            hit(base + g * 8 + j);
            w &= !(0xFFu64 << (j * 8));
        }
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
    let n = valid.iter().map(|&b| b as u32).sum::<u32>() as i64;
    let d = n.max(1) as f64;
    (masked_sum(logp, valid) / d, masked_sum(adv, valid) / d, n)
}

/// Sum of `x` over the valid tokens: blocks of [`BLOCK`] summed in eight lanes of `T`
/// (vectorised; invalid tokens are zeroed by bit masking, since padding may hold -inf
/// or NaN), block sums accumulated in f64.
fn masked_sum<T: Real>(x: &[T], valid: &[bool]) -> f64 {
    const LANES: usize = 8;
    let zero = T::from_f64(0.0);
    let mut total = 0.0f64;
    let blocks = x.chunks_exact(BLOCK).zip(valid.chunks_exact(BLOCK));
    for (xb, vb) in blocks {
        let mut lanes = [zero; LANES];
        for (xl, vl) in xb.chunks_exact(LANES).zip(vb.chunks_exact(LANES)) {
            for k in 0..LANES {
                lanes[k] = lanes[k] + xl[k].keep(vl[k]);
            }
        }
        total += lanes.iter().map(|l| l.f()).sum::<f64>();
    }
    let tail = x.len() - x.len() % BLOCK;
    total
        + (tail..x.len())
            .map(|i| x[i].keep(valid[i]).f())
            .sum::<f64>()
}

/// The `n` best items of a stream under `order` (`Less` = better), in one pass and
/// `O(n)` memory: items are buffered until the buffer holds `2n`, then the buffer is cut
/// to its best `n` and everything not better than the `n`-th is refused on sight.
/// Amortised O(1) per item whatever `n` is; with a total order the kept set is exactly
/// the `n` best.
pub struct TopN<K, F> {
    n: usize,
    buf: Vec<K>,
    bar: Option<K>,
    order: F,
}

impl<K: Copy, F: Fn(&K, &K) -> Ordering> TopN<K, F> {
    /// An empty selection of the `n` best under `order`.
    pub fn new(n: usize, order: F) -> Self {
        TopN {
            n,
            buf: Vec::with_capacity(2 * n.max(1)),
            bar: None,
            order,
        }
    }

    /// Offers one item.
    #[inline]
    pub fn push(&mut self, item: K) {
        if let Some(bar) = &self.bar
            && (self.order)(&item, bar) != Ordering::Less
        {
            return;
        }
        self.buf.push(item);
        if self.buf.len() >= 2 * self.n.max(1) {
            self.cut();
            self.bar = self.buf.last().copied();
        }
    }

    fn cut(&mut self) {
        if self.n == 0 {
            self.buf.clear();
        } else if self.buf.len() > self.n {
            self.buf.select_nth_unstable_by(self.n - 1, &self.order);
            self.buf.truncate(self.n);
        }
    }

    /// The item every new one must beat (`None` until the buffer first fills). The
    /// hot loops test against a copy of it and call [`TopN::push`] only on success,
    /// which after the first fill is rare and so a well-predicted branch.
    pub fn bar(&self) -> Option<&K> {
        self.bar.as_ref()
    }

    /// The kept items (at most `n`, in no particular order).
    pub fn finish(mut self) -> Vec<K> {
        self.cut();
        self.buf
    }
}

/// Clip-Cov: the flat indices of the tokens chosen among the candidates (valid, not
/// PPO-clipped, `lb < cov < ub`), `count(n_valid)` of them with the smallest
/// [`hash_key`]s (all candidates if fewer), and the number of valid tokens.
///
/// The PPO-clip test is done on the log-ratio: `-A * clamp(r) > -A * r` holds exactly
/// when `A > 0` and `logp - old > ln(1 + eps_high)`, or `A < 0` and
/// `logp - old < ln(1 - eps_low)`, so no `exp` is needed.
#[allow(clippy::too_many_arguments)]
pub fn clip_cov_choose<T: Real>(
    logp: &Tensor,
    old: &Tensor,
    adv: &Tensor,
    valid: &Tensor,
    lb: f64,
    ub: f64,
    clip: &PpoClip,
    count: impl Fn(i64) -> i64,
    seed: u64,
) -> (Vec<i64>, i64) {
    let (l, o, a, v) = (
        slice::<T>(logp),
        slice::<T>(old),
        slice::<T>(adv),
        bools(valid),
    );
    let (ml, ma, n_valid) = means(l, a, v);
    let (ml, ma) = (T::from_f64(ml), T::from_f64(ma));
    let (lb, ub) = (T::from_f64(lb), T::from_f64(ub));
    let zero = T::from_f64(0.0);
    let ln_lo = T::from_f64((1.0 - clip.eps_low).ln());
    let ln_hi = T::from_f64((1.0 + clip.eps_high).ln());
    let mut top = TopN::new(count(n_valid) as usize, |x: &i64, y: &i64| x.cmp(y));
    let mut bar = i64::MAX;
    let mut flags = [0u8; BLOCK];
    let blocks = l.chunks(BLOCK).zip(o.chunks(BLOCK)).zip(a.chunks(BLOCK));
    for (b, ((lc, oc), ac)) in blocks.enumerate() {
        let base = b * BLOCK;
        let vc = &v[base..base + lc.len()];
        for k in 0..lc.len() {
            let (li, ai) = (lc[k], ac[k]);
            let cov = (li - ml) * (ai - ma);
            let d = li - oc[k];
            // Non-short-circuit `&`/`|`, so the block compiles to vector compares.
            let clipped = ((ai > zero) & (d > ln_hi)) | ((ai < zero) & (d < ln_lo));
            flags[k] = (vc[k] & (cov > lb) & (cov < ub) & !clipped) as u8;
        }
        for_each_flagged(&flags[..lc.len()], base, |i| {
            let key = hash_key(i as i64, seed);
            if key < bar {
                top.push(key);
                bar = top.bar().copied().unwrap_or(i64::MAX);
            }
        });
    }
    let chosen = top.finish().into_iter().map(|k| k & 0x7FFF_FFFF).collect();
    (chosen, n_valid)
}

/// The same 32-bit avalanche key as [`super::control::hash_keys`], on the host: the
/// hash in the high bits, the index in the low 31.
#[inline]
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
    // Descending covariance, then ascending index: a total order.
    let order = |x: &(T, i64), y: &(T, i64)| y.0.f().total_cmp(&x.0.f()).then(x.1.cmp(&y.1));
    let mut top = TopN::new(count(n_valid) as usize, order);
    // Later tokens lose ties (higher index), so beating the bar means a larger
    // covariance. A NaN covariance (a NaN log-prob at a valid token, whose loss is NaN
    // anyway) never beats it.
    let (ml, ma) = (T::from_f64(ml), T::from_f64(ma));
    let mut bar = T::from_f64(f64::NEG_INFINITY);
    let mut covs = [T::from_f64(0.0); BLOCK];
    let mut flags = [0u8; BLOCK];
    for (b, (lc, ac)) in l.chunks(BLOCK).zip(a.chunks(BLOCK)).enumerate() {
        let base = b * BLOCK;
        let vc = &v[base..base + lc.len()];
        for k in 0..lc.len() {
            covs[k] = (lc[k] - ml) * (ac[k] - ma);
            flags[k] = (vc[k] & (covs[k] > bar)) as u8;
        }
        for_each_flagged(&flags[..lc.len()], base, |i| {
            let cov = covs[i - base];
            if cov > bar {
                top.push((cov, i as i64));
                bar = top.bar().map_or(bar, |b| b.0);
            }
        });
    }
    let chosen = top.finish().into_iter().map(|(_, i)| i).collect();
    (chosen, n_valid)
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
