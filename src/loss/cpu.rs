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
    /// [`clip_bits`] of one full block; f32 overrides it with an AVX2 version where the
    /// CPU has AVX2.
    fn clip_block(l: &[Self], o: &[Self], a: &[Self], v: &[bool], t: &ClipTest<Self>) -> u64 {
        clip_bits(l, o, a, v, t)
    }
    /// [`kl_bits`] of one full block; f32 overrides it like `clip_block`.
    fn kl_block(l: &[Self], a: &[Self], v: &[bool], ml: Self, ma: Self, bar: Self) -> u64 {
        kl_bits(l, a, v, ml, ma, bar)
    }
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
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn clip_block(l: &[f32], o: &[f32], a: &[f32], v: &[bool], t: &ClipTest<f32>) -> u64 {
        if avx2::available() {
            // SAFETY: the CPU has AVX2; the caller passes full blocks.
            return unsafe { avx2::clip_block(l, o, a, v, t) };
        }
        clip_bits(l, o, a, v, t)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn kl_block(l: &[f32], a: &[f32], v: &[bool], ml: f32, ma: f32, bar: f32) -> u64 {
        if avx2::available() {
            // SAFETY: the CPU has AVX2; the caller passes full blocks.
            return unsafe { avx2::kl_block(l, a, v, ml, ma, bar) };
        }
        kl_bits(l, a, v, ml, ma, bar)
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

/// Tokens per block of the candidate passes: a branch-free test gives one bit per
/// token, then only the tokens whose bit is set are visited.
const BLOCK: usize = 64;

/// The thresholds of the Clip-Cov candidate test, in the tensors' precision.
pub struct ClipTest<T> {
    /// Masked mean of logp.
    pub ml: T,
    /// Masked mean of the advantage.
    pub ma: T,
    /// Strict lower covariance bound.
    pub lb: T,
    /// Strict upper covariance bound.
    pub ub: T,
    /// `ln(1 - eps_low)`: below it, a negative-advantage token is PPO-clipped.
    pub ln_lo: T,
    /// `ln(1 + eps_high)`: above it, a positive-advantage token is PPO-clipped.
    pub ln_hi: T,
}

/// Clip-Cov candidate bits of up to 64 tokens: valid, not PPO-clipped, `lb < cov < ub`.
#[inline(always)]
pub fn clip_bits<T: Real>(l: &[T], o: &[T], a: &[T], v: &[bool], t: &ClipTest<T>) -> u64 {
    let zero = T::from_f64(0.0);
    let mut bits = 0u64;
    for k in 0..l.len() {
        let (li, ai) = (l[k], a[k]);
        let cov = (li - t.ml) * (ai - t.ma);
        let d = li - o[k];
        let clipped = ((ai > zero) & (d > t.ln_hi)) | ((ai < zero) & (d < t.ln_lo));
        let candidate = v[k] & (cov > t.lb) & (cov < t.ub) & !clipped;
        bits |= (candidate as u64) << k;
    }
    bits
}

/// KL-Cov bits of up to 64 tokens: valid with a covariance above `bar`.
#[inline(always)]
pub fn kl_bits<T: Real>(l: &[T], a: &[T], v: &[bool], ml: T, ma: T, bar: T) -> u64 {
    let mut bits = 0u64;
    for k in 0..l.len() {
        let cov = (l[k] - ml) * (a[k] - ma);
        bits |= ((v[k] & (cov > bar)) as u64) << k;
    }
    bits
}

/// Of the candidate bits of a full block at `base`, those whose key can beat `bar`
/// (a superset of those that do; the caller checks each exactly). With AVX2 the keys'
/// hashes are computed 8 at a time and most candidates are dropped here; without it,
/// all bits are kept.
#[inline(always)]
fn key_prefilter(bits: u64, base: usize, seed: u64, bar: i64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2::key_prefilter(bits, base, seed, bar) };
    }
    let _ = (base, seed, bar);
    bits
}

/// Calls `hit(base + k)` for every set bit `k` of `bits`, in increasing order.
#[inline(always)]
fn for_each_bit(mut bits: u64, base: usize, mut hit: impl FnMut(usize)) {
    while bits != 0 {
        hit(base + bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

/// AVX2 versions of the block kernels for f32: the same IEEE operations in the same
/// order as the generic code, eight tokens at a time, so results are bit-identical.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK, ClipTest};
    use std::arch::x86_64::*;

    /// Whether the CPU has AVX2 (detected once, then cached by std).
    #[inline(always)]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// The valid flags of 8 tokens as 8 bits.
    #[inline(always)]
    unsafe fn valid8(v: &[bool], i: usize) -> u32 {
        // SAFETY: the caller guarantees 8 readable bytes at `i`; bools are 0 or 1.
        unsafe {
            let bytes = _mm_loadl_epi64(v.as_ptr().add(i) as *const __m128i);
            (_mm_movemask_epi8(_mm_cmpgt_epi8(bytes, _mm_setzero_si128())) & 0xFF) as u32
        }
    }

    /// [`super::clip_bits`] of one full block.
    ///
    /// # Safety
    /// The CPU has AVX2 and every slice holds at least [`BLOCK`] elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn clip_block(
        l: &[f32],
        o: &[f32],
        a: &[f32],
        v: &[bool],
        t: &ClipTest<f32>,
    ) -> u64 {
        let zero = _mm256_setzero_ps();
        let (ml, ma) = (_mm256_set1_ps(t.ml), _mm256_set1_ps(t.ma));
        let (lb, ub) = (_mm256_set1_ps(t.lb), _mm256_set1_ps(t.ub));
        let (ln_lo, ln_hi) = (_mm256_set1_ps(t.ln_lo), _mm256_set1_ps(t.ln_hi));
        let mut bits = 0u64;
        // SAFETY: every load reads 8 elements inside `0..BLOCK`.
        unsafe {
            for i in (0..BLOCK).step_by(8) {
                let lv = _mm256_loadu_ps(l.as_ptr().add(i));
                let ov = _mm256_loadu_ps(o.as_ptr().add(i));
                let av = _mm256_loadu_ps(a.as_ptr().add(i));
                let cov = _mm256_mul_ps(_mm256_sub_ps(lv, ml), _mm256_sub_ps(av, ma));
                let d = _mm256_sub_ps(lv, ov);
                let up = _mm256_and_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(av, zero),
                    _mm256_cmp_ps::<_CMP_GT_OQ>(d, ln_hi),
                );
                let down = _mm256_and_ps(
                    _mm256_cmp_ps::<_CMP_LT_OQ>(av, zero),
                    _mm256_cmp_ps::<_CMP_LT_OQ>(d, ln_lo),
                );
                let inside = _mm256_and_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(cov, lb),
                    _mm256_cmp_ps::<_CMP_LT_OQ>(cov, ub),
                );
                let candidate = _mm256_andnot_ps(_mm256_or_ps(up, down), inside);
                let m = _mm256_movemask_ps(candidate) as u32 & valid8(v, i);
                bits |= (m as u64) << i;
            }
        }
        bits
    }

    /// Of the tokens `base + k` with bit `k` set, keeps those whose [`super::hash_key`]
    /// can be below `bar`: its hash part, computed 8 at a time, is at most `bar >> 31`.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn key_prefilter(bits: u64, base: usize, seed: u64, bar: i64) -> u64 {
        let set = |c: u32| _mm256_set1_epi32(c as i32);
        let mul = |x: __m256i, c: u32| _mm256_mullo_epi32(x, set(c));
        let shift_xor =
            |x: __m256i, s: i32| _mm256_xor_si256(x, _mm256_srlv_epi32(x, _mm256_set1_epi32(s)));
        let (lo, hi) = (set(seed as u32), set((seed >> 32) as u32));
        let limit = set((bar >> 31).min(u32::MAX as i64) as u32);
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mut kept = 0u64;
        for g in (0..BLOCK).step_by(8) {
            if (bits >> g) & 0xFF == 0 {
                continue;
            }
            let index = _mm256_add_epi32(set((base + g) as u32), lanes);
            let mut x = _mm256_add_epi32(mul(index, 0x9E37_79B1), lo);
            x = mul(shift_xor(x, 16), 0x85EB_CA6B);
            x = _mm256_xor_si256(shift_xor(x, 13), hi);
            x = mul(x, 0xC2B2_AE35);
            x = mul(shift_xor(x, 16), 0x27D4_EB2D);
            x = shift_xor(x, 15);
            let at_most = _mm256_cmpeq_epi32(_mm256_min_epu32(x, limit), x);
            let m = _mm256_movemask_ps(_mm256_castsi256_ps(at_most)) as u64;
            kept |= m << g;
        }
        bits & kept
    }

    /// [`super::kl_bits`] of one full block.
    ///
    /// # Safety
    /// The CPU has AVX2 and every slice holds at least [`BLOCK`] elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn kl_block(l: &[f32], a: &[f32], v: &[bool], ml: f32, ma: f32, bar: f32) -> u64 {
        let (ml, ma, bar) = (_mm256_set1_ps(ml), _mm256_set1_ps(ma), _mm256_set1_ps(bar));
        let mut bits = 0u64;
        // SAFETY: every load reads 8 elements inside `0..BLOCK`.
        unsafe {
            for i in (0..BLOCK).step_by(8) {
                let lv = _mm256_loadu_ps(l.as_ptr().add(i));
                let av = _mm256_loadu_ps(a.as_ptr().add(i));
                let cov = _mm256_mul_ps(_mm256_sub_ps(lv, ml), _mm256_sub_ps(av, ma));
                let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(cov, bar)) as u32;
                bits |= ((m & valid8(v, i)) as u64) << i;
            }
        }
        bits
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
    // SAFETY: a bool is one byte holding 0 or 1, so the flags read as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(valid.as_ptr().cast::<u8>(), valid.len()) };
    // Byte sums over chunks short enough not to overflow: vectorised adds.
    let n: i64 = bytes
        .chunks(255)
        .map(|c| c.iter().fold(0u8, |s, &b| s.wrapping_add(b)) as i64)
        .sum();
    let d = n.max(1) as f64;
    (masked_sum(logp, valid) / d, masked_sum(adv, valid) / d, n)
}

/// Sum of `x` over the valid tokens: 32 lanes of `T` over chunks of 1024 tokens (which
/// vectorises; invalid tokens are zeroed by bit masking, since padding may hold -inf or
/// NaN), the chunk sums accumulated in f64.
fn masked_sum<T: Real>(x: &[T], valid: &[bool]) -> f64 {
    const LANES: usize = 32;
    const CHUNK: usize = 1024;
    let zero = T::from_f64(0.0);
    let mut total = 0.0f64;
    for (xc, vc) in x.chunks(CHUNK).zip(valid.chunks(CHUNK)) {
        let mut lanes = [zero; LANES];
        let full = xc.len() - xc.len() % LANES;
        for (xl, vl) in xc[..full]
            .chunks_exact(LANES)
            .zip(vc[..full].chunks_exact(LANES))
        {
            for k in 0..LANES {
                lanes[k] = lanes[k] + xl[k].keep(vl[k]);
            }
        }
        for k in full..xc.len() {
            lanes[0] = lanes[0] + xc[k].keep(vc[k]);
        }
        total += lanes.iter().map(|l| l.f()).sum::<f64>();
    }
    total
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
    let test = ClipTest {
        ml: T::from_f64(ml),
        ma: T::from_f64(ma),
        lb: T::from_f64(lb),
        ub: T::from_f64(ub),
        ln_lo: T::from_f64((1.0 - clip.eps_low).ln()),
        ln_hi: T::from_f64((1.0 + clip.eps_high).ln()),
    };
    let mut top = TopN::new(count(n_valid) as usize, |x: &i64, y: &i64| x.cmp(y));
    let mut bar = i64::MAX;
    let n = l.len();
    for base in (0..n).step_by(BLOCK) {
        let r = base..(base + BLOCK).min(n);
        let (lc, oc, ac, vc) = (&l[r.clone()], &o[r.clone()], &a[r.clone()], &v[r]);
        let bits = if lc.len() == BLOCK {
            key_prefilter(T::clip_block(lc, oc, ac, vc, &test), base, seed, bar)
        } else {
            clip_bits(lc, oc, ac, vc, &test)
        };
        for_each_bit(bits, base, |i| {
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
    let n = l.len();
    for base in (0..n).step_by(BLOCK) {
        let r = base..(base + BLOCK).min(n);
        let (lc, ac, vc) = (&l[r.clone()], &a[r.clone()], &v[r]);
        let bits = if lc.len() == BLOCK {
            T::kl_block(lc, ac, vc, ml, ma, bar)
        } else {
            kl_bits(lc, ac, vc, ml, ma, bar)
        };
        for_each_bit(bits, base, |i| {
            let cov = (l[i] - ml) * (a[i] - ma);
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
