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
    let _flush = FlushSubnormals::new();
    pulp::Arch::new().dispatch(f)
}

/// Subnormal `f32` values flushed to zero (MXCSR's FTZ and DAZ bits) while a kernel runs on
/// this thread, and the caller's setting restored after.
///
/// Why: a trained sequence model drives some gradients through hundreds of steps of decay
/// into the subnormal range, where every multiply and add takes a microcode assist; a
/// training step on trained weights then ran ten times slower than on fresh ones. Values
/// below `1.2e-38` contribute nothing to a sum of normal numbers in `f32` anyway.
struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushSubnormals {
    /// FTZ (bit 15) and DAZ (bit 6) of MXCSR.
    #[cfg(target_arch = "x86_64")]
    const BITS: u32 = 0x8040;

    #[inline(always)]
    fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR needs only SSE, which every x86-64 CPU has;
            // the bits set change how subnormal results round, nothing else, and `drop`
            // restores the previous value on this same thread.
            #[allow(deprecated)]
            let saved = unsafe { std::arch::x86_64::_mm_getcsr() };
            #[allow(deprecated)]
            unsafe {
                std::arch::x86_64::_mm_setcsr(saved | Self::BITS)
            };
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `new`: restores the value read there.
        #[allow(deprecated)]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}
