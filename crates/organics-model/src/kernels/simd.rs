//! The kernels' loops compiled for the widest vector instructions the CPU has, chosen at
//! run time.
//!
//! The crate is built for the x86-64 baseline (4-lane SSE), so the element-wise loops of
//! the kernels run 8 or 16 lanes wide only inside a function compiled for AVX2 or AVX-512.
//! `pulp` (the crate behind `gemm` and `faer`'s own dispatch) detects the CPU once and
//! runs a closure inside such a function ([`vectorized`]). Loops that read and update many
//! arrays at once are written as row functions instead, compiled once per instruction set
//! ([`row_copies`], [`by_isa`]: see there for why). Multiplies and adds are never contracted
//! into FMAs by Rust, so the results are bit-identical whichever instruction set runs.

/// Runs `f` compiled for the best instruction set the CPU has (x86-64-v4: AVX-512;
/// x86-64-v3: AVX2 and FMA; otherwise the baseline).
///
/// `f` must be an `#[inline(always)]` closure that calls `#[inline(always)]` functions, so
/// that its loops are generated inside the dispatched function.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    let _flush = FlushSubnormals::new(true);
    pulp::Arch::new().dispatch(f)
}

/// [`vectorized`] with subnormal values kept (IEEE arithmetic down to the smallest `f32`),
/// whatever the thread's setting: for an update whose small values must evolve as in
/// PyTorch, whose CPU and GPU arithmetic keeps them. Adam's is one: a weight that only the
/// weight decay moves shrinks into the subnormal range before it can change sign
/// (kernels/adam.rs), and flushed to zero it would stay there for good.
#[inline(always)]
pub(crate) fn vectorized_ieee<R>(f: impl FnOnce() -> R) -> R {
    let _keep = FlushSubnormals::new(false);
    pulp::Arch::new().dispatch(f)
}

/// Subnormal `f32` values flushed to zero (MXCSR's FTZ and DAZ bits set), or kept (both
/// cleared), while a kernel runs on this thread, and the caller's setting restored after.
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
    fn new(flush: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR needs only SSE, which every x86-64 CPU has;
            // the bits changed decide how subnormal values are read and rounded, nothing
            // else, and `drop` restores the previous value on this same thread.
            #[allow(deprecated)]
            let saved = unsafe { std::arch::x86_64::_mm_getcsr() };
            let mode = if flush {
                saved | Self::BITS
            } else {
                saved & !Self::BITS
            };
            #[allow(deprecated)]
            unsafe {
                std::arch::x86_64::_mm_setcsr(mode)
            };
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = flush;
            FlushSubnormals {}
        }
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

/// An instruction set [`row_copies`] compiles a kernel's row function for, and that this CPU
/// runs: only [`Isa::detect`] (and [`Isa::available`] in tests) make one, so holding an
/// `Isa` is the proof [`by_isa`] relies on to call a copy compiled for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Isa(Kind);

/// The instruction sets, narrowest first (see [`Isa`]; matched on by [`by_isa`]).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub(crate) enum Kind {
    /// The target's baseline.
    Baseline,
    /// AVX2 and FMA (with the AVX and SSE levels below them).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F, VL, DQ and BW, with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest of them this CPU runs (`std` caches what it detects).
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // `avx2` and `fma` imply AVX and the SSE levels below it when enabled; they are
            // checked too rather than assumed of the CPU (or virtual machine).
            let avx2 = has!("avx") && has!("avx2") && has!("fma");
            if avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512dq") && has!("avx512bw") {
                return Isa(Kind::Avx512);
            }
            if avx2 {
                return Isa(Kind::Avx2);
            }
        }
        Isa(Kind::Baseline)
    }

    /// Which copy to call.
    pub(crate) fn kind(self) -> Kind {
        self.0
    }

    /// Every instruction set this CPU runs, the baseline first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let widest = Isa::detect().0;
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut all = vec![Kind::Baseline];
        #[cfg(target_arch = "x86_64")]
        all.extend([Kind::Avx2, Kind::Avx512]);
        let runs: Vec<Isa> = all
            .iter()
            .filter(|kind| **kind <= widest)
            .map(|kind| Isa(*kind))
            .collect();
        if runs.len() < all.len() || cfg!(not(target_arch = "x86_64")) {
            // Said aloud, so that a passing test on such a CPU is not read as covering them.
            eprintln!("row copies compared: {runs:?}; the wider ones cannot run on this CPU");
        }
        runs
    }
}

/// Lengths the row functions' tests run: one element, remainders of every vector width, the
/// kernels' real row lengths.
#[cfg(test)]
pub(crate) const TEST_ROW_LENGTHS: [usize; 5] = [1, 37, 64, 128, 133];

/// Test input `k` of a row function, `n` values in [-1, 1) with exact zeros of both signs
/// among them, so that every `<= 0` branch is taken both ways.
#[cfg(test)]
pub(crate) fn test_row(k: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match (i + k) % 11 {
            0 => 0.0,
            5 => -0.0,
            _ => ((i * 7919 + k * 104_729) % 2000) as f32 / 1000.0 - 1.0,
        })
        .collect()
}

/// The bits of every value: equal bits, not just equal values (−0.0 ≠ 0.0 here).
#[cfg(test)]
pub(crate) fn bits(rows: &[Vec<f32>]) -> Vec<Vec<u32>> {
    rows.iter()
        .map(|row| row.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// A row function `$body`, `#[inline(always)]`, and copies of it, one per [`Isa`], each a
/// function of its own (`#[inline(never)]`) compiled for its instruction set; [`by_isa`]
/// calls the one the CPU runs.
///
/// Why not a loop inline in the kernel, inside [`vectorized`]: a row function receives
/// everything it writes as separate `&mut` parameters, which Rust marks as aliasing nothing
/// else. Written inline among a step's dozens of slices, the backward passes' loops (which
/// read and update many arrays at once) were left scalar by LLVM, which could not rule out
/// overlaps between them; in a profile the scalar backward loop took a fifth of the sMNIST
/// step and two fifths of the LSTM step. As functions of their own they run 16 lanes wide
/// on AVX-512. The copies compute the same bits (no contraction into FMAs).
macro_rules! row_copies {
    (
        $(#[$meta:meta])*
        fn $body:ident $(<$(const $c:ident: $ct:ty),+>)? ($($arg:ident: $ty:ty),* $(,)?) $block:block
        => $avx512:ident, $avx2:ident, $baseline:ident
    ) => {
        $(#[$meta])*
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn $body $(<$(const $c: $ct),+>)? ($($arg: $ty),*) $block

        $crate::kernels::simd::row_copies!(
            @one $body $(<$($c: $ct),+>)? ($($arg: $ty),*) $baseline
        );
        #[cfg(target_arch = "x86_64")]
        $crate::kernels::simd::row_copies!(
            @one $body $(<$($c: $ct),+>)? ($($arg: $ty),*) $avx2, "avx2,fma"
        );
        #[cfg(target_arch = "x86_64")]
        $crate::kernels::simd::row_copies!(
            @one $body $(<$($c: $ct),+>)? ($($arg: $ty),*) $avx512,
            "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"
        );
    };
    (
        @one $body:ident $(<$($c:ident: $ct:ty),+>)? ($($arg:ident: $ty:ty),*)
        $name:ident $(, $features:literal)?
    ) => {
        $(#[target_feature(enable = $features)])?
        #[inline(never)]
        #[allow(clippy::too_many_arguments)]
        fn $name $(<$(const $c: $ct),+>)? ($($arg: $ty),*) {
            $body $(::<$($c),+>)? ($($arg),*)
        }
    };
}

/// Calls the copy of a [`row_copies`] function that `isa` (an [`Isa`]) names: `by_isa!(isa,
/// avx512, avx2, baseline, (arguments))`. The arguments are evaluated inside the `unsafe`
/// block the call needs; they must be safe expressions (all callers are in this crate).
macro_rules! by_isa {
    ($isa:expr, $avx512:expr, $avx2:expr, $baseline:expr, ($($arg:expr),* $(,)?)) => {{
        let isa: $crate::kernels::simd::Isa = $isa;
        match isa.kind() {
            // SAFETY: an `Isa` is only made by `Isa::detect` (or `available`), which found
            // the instructions the copy for its kind is compiled for.
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::simd::Kind::Avx512 => unsafe { $avx512($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::simd::Kind::Avx2 => unsafe { $avx2($($arg),*) },
            $crate::kernels::simd::Kind::Baseline => $baseline($($arg),*),
        }
    }};
}
pub(crate) use {by_isa, row_copies};
