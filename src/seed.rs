//! Seed derivation: every random choice of a run is drawn from a stream keyed by what it
//! is for, so a resumed or data-parallel run draws what an uninterrupted single process
//! draws. Conventions: step `s` uses `mix_seed(seed, s)`; its rollout round `r` uses
//! `mix_seed(step_seed, r)`; the data order of epoch `e` uses `mix_seed(seed, e)`; a
//! mini-batch's Clip-Cov choice uses `mix_seed(step_seed, epoch << 32 | index + 1)`.

/// SplitMix64 of `a` combined with `b`: derives independent seeds.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
