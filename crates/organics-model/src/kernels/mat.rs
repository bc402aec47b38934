//! Strided matrix views inside `f32` slices and their products through the `gemm` crate
//! (the kernel Burn's `flex` backend uses itself): the one `unsafe` call of the kernels,
//! behind views checked to lie inside their slices.

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
