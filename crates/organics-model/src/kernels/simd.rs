//! The kernels' loops compiled for the widest vector instructions the CPU has, chosen at
//! run time.
//!
//! The crate is built for the x86-64 baseline (4-lane SSE), so the element-wise loops of
//! the kernels run 8 or 16 lanes wide only inside a function compiled for AVX2 or AVX-512.
//! `pulp` (the crate behind `gemm` and `faer`'s own dispatch) detects the CPU once and
//! runs a closure inside such a function. Multiplies and adds are never contracted into FMAs by Rust, so
//! the results are bit-identical whichever instruction set runs.

/// Runs `f` compiled for the best instruction set the CPU has (x86-64-v4: AVX-512;
/// x86-64-v3: AVX2 and FMA; otherwise the baseline).
///
/// `f` must be an `#[inline(always)]` closure that calls `#[inline(always)]` functions, so
/// that its loops are generated inside the dispatched function.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
