//! CPU math that gives the same bits at any thread count.
//!
//! libtorch's CPU matrix products run on Intel MKL, whose kernels choose their blocking
//! by the number of threads, so a product's rounding (and, through sampling, whole
//! rollouts) changed with `run.threads`: measured on SmolLM2-135M, an `[8, 576] x [576,
//! 576]` product differs in its last bits between 1 and 2 threads, while transformers'
//! prefill shapes happen not to. MKL's strict conditional numerical reproducibility
//! (`MKL_CBWR=AUTO,STRICT`: the fastest code path for this CPU, results independent of
//! the thread count) removes that. It must be switched on before MKL's first call, so
//! the binaries call [`strict_cpu_math`] first thing in `main`; a library user calls it
//! before creating any tensor. The other thread-dependent operation of a step, a sum
//! with a single output over more than 32,768 elements (split across threads by
//! libtorch), is avoided where it feeds a rollout (the sampler's entropy of one row).

use std::ffi::{CStr, c_int};

/// MKL's `MKL_CBWR_AUTO | MKL_CBWR_STRICT` (mkl_service.h).
const CBWR_AUTO_STRICT: c_int = 2 | 0x10000;

/// What [`strict_cpu_math`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMath {
    /// MKL's strict reproducible mode is on: CPU products give the same bits at any
    /// thread count.
    Strict,
    /// This libtorch has no MKL (an ARM or a non-MKL build): nothing to switch.
    NoMkl,
    /// MKL was already in use (a tensor product ran before the call), so its mode could
    /// not change; the code MKL returned is kept.
    TooLate(i32),
}

/// Switches MKL (inside libtorch) to its strict reproducible mode; see the module docs.
/// Idempotent: a second call after a successful one returns [`CpuMath::Strict`].
pub fn strict_cpu_math() -> CpuMath {
    static MODE: std::sync::OnceLock<CpuMath> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        const SET: &CStr = c"mkl_serv_cbwr_set";
        // SAFETY: dlsym with RTLD_DEFAULT looks a symbol up in the loaded objects;
        // a null result means absent.
        let set = unsafe { libc::dlsym(libc::RTLD_DEFAULT, SET.as_ptr()) };
        if set.is_null() {
            return CpuMath::NoMkl;
        }
        // SAFETY: `mkl_serv_cbwr_set` is MKL's `int mkl_cbwr_set(int)` (the function
        // behind the public name), which libtorch links statically and exports.
        let set: extern "C" fn(c_int) -> c_int = unsafe { std::mem::transmute(set) };
        match set(CBWR_AUTO_STRICT) {
            0 => CpuMath::Strict,
            code => CpuMath::TooLate(code),
        }
    })
}
