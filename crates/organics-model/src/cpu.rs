//! Host-side building blocks of the fused CPU kernels ([`crate::bptt_cpu`],
//! [`crate::static_cpu`]): strided matrix views, products through the `gemm` crate (the
//! kernel Burn's `flex` backend uses itself), element-wise functions that vectorise, and
//! one shard of a batch per core.

/// Re-slices each named slice to its first `n` elements, so that the compiler sees equal
/// lengths and drops the bounds checks of the loops that follow.
macro_rules! cut {
    ($n:expr; $($s:ident),*) => { $(let $s = &$s[..$n];)* };
}

/// [`cut`] for mutable slices.
macro_rules! cut_mut {
    ($n:expr; $($s:ident),*) => { $(let $s = &mut $s[..$n];)* };
}
pub(crate) use {cut, cut_mut};

/// A strided view of a matrix inside a slice: element `(i, j)` is at
/// `offset + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a row-major `rows × cols` matrix starting at `offset`.
    pub(crate) fn new(data: &'a [f32], offset: usize, rows: usize, cols: usize) -> Self {
        Mat {
            data,
            offset,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Columns `start..start + len`.
    pub(crate) fn cols(self, start: usize, len: usize) -> Self {
        Mat {
            offset: self.offset + start * self.cs,
            cols: len,
            ..self
        }
    }

    /// The transpose (a view; nothing moves).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    pub(crate) fn in_bounds(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < len
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`; `dst` is row-major with row
/// stride `dst_rs`, starting at `dst_offset`.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_offset: usize,
    dst_rs: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let dst_view = Mat {
        data: &[],
        offset: dst_offset,
        rows: m,
        cols: n,
        rs: dst_rs,
        cs: 1,
    };
    // Internal invariants of this module (shapes are checked where tensors come in); the
    // checks keep the unsafe call below sound whatever a caller in this file gets wrong.
    assert!(
        rhs.rows == k,
        "matmul: inner dimensions {k} and {}",
        rhs.rows
    );
    assert!(
        lhs.in_bounds(lhs.data.len())
            && rhs.in_bounds(rhs.data.len())
            && dst_view.in_bounds(dst.len()),
        "matmul: view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[dst_offset + i * dst_rs..][..n].fill(0.0);
            }
        }
        return;
    }
    let stride = |s: usize| s as isize;
    // SAFETY: all three views were checked to lie inside their slices, `dst` is borrowed
    // mutably and cannot alias `lhs` or `rhs`, and `gemm` reads and writes only the
    // elements of the views it is given.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_offset),
            1,
            stride(dst_rs),
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            stride(lhs.cs),
            stride(lhs.rs),
            rhs.data.as_ptr().add(rhs.offset),
            stride(rhs.cs),
            stride(rhs.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `max(x, 0)`, keeping a NaN as NaN: a diverged weight must show in the loss, and the
/// comparison the other way round (`x > 0 ? x : 0`) would turn it into a harmless 0.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// `1 / (1 + e^(−x))`, as [`crate::cell`] computes it.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (exp(-x) + 1.0)
}

/// `e^x` to about 2 ulp (Cephes' `expf`: `x = k ln 2 + r`, a degree-7 polynomial in `r`,
/// `2^k` assembled in the exponent bits). `f32::exp` is a call into libm for every element,
/// which keeps the loops around it scalar; this is plain arithmetic the compiler vectorises.
/// Below −87.3 it returns about 1e-38 rather than 0 or a subnormal (where `sigmoid` is 0 to
/// f32 precision either way); above 88.3, `f32::MAX`-scale values rather than infinity.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5·2²³ rounds to an integer in the low mantissa bits, without a libm `floor`.
    const ROUND: f32 = 12_582_912.0;
    let x = if x > 88.3 { 88.3 } else { x };
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let k_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits((k_int.wrapping_add(127) << 23) as u32)
}

pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = m[i * cols + j];
        }
    }
    out
}

/// The number of cores this process may use, looked up once: `available_parallelism`
/// reads the cgroup quota files on every call (about 40 µs, measured), which added up to
/// a millisecond per training step when it was called per parameter.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// Splits `batch` rows into at most one shard per core, as `(first row, rows)`.
pub(crate) fn shard_rows(batch: usize) -> Vec<(usize, usize)> {
    let cores = cores();
    let shards = cores.clamp(1, batch.max(1));
    let per = batch.div_ceil(shards);
    (0..batch)
        .step_by(per.max(1))
        .map(|start| (start, per.min(batch - start)))
        .collect()
}

/// Runs `f` on every item on its own thread (the first on this one), results in order.
pub(crate) fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.map(|it| s.spawn(move || f(it))).collect();
        let mut out = vec![f(first)];
        // A panic in `f` is a bug, not an input error: pass it on.
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        );
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3 + 1e-4;
            let exact = f64::from(x).exp();
            let rel = ((f64::from(exp(x)) - exact) / exact).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-6, "largest relative error {worst:e}");
        assert_eq!(sigmoid(-200.0), 1.0 / (exp(88.3) + 1.0));
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
    }
}
