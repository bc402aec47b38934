//! The matrix products the product examples time: `gemm` (what the kernels call) and
//! `faer`'s matmul on the same operands, for comparison.

/// The crate a product runs on.
#[derive(Clone, Copy)]
#[allow(dead_code)] // matmul_peak times gemm only
pub enum Library {
    Gemm,
    Faer,
}

/// `c = a · b` for row-major `a` `[m, k]` (or `aᵀ` when `ta`) and `b` `[k, n]` (or `bᵀ`), on
/// one thread.
#[allow(clippy::too_many_arguments)]
pub fn product(
    lib: Library,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    match lib {
        Library::Gemm => {
            let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
            // SAFETY: the three buffers hold at least the elements the strides reach (checked
            // above).
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    a_cs,
                    a_rs,
                    b.as_ptr(),
                    b_cs,
                    b_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        Library::Faer => {
            use faer::{Accum, MatMut, MatRef, Par};
            let lhs = if ta {
                MatRef::from_row_major_slice(&a[..k * m], k, m).transpose()
            } else {
                MatRef::from_row_major_slice(&a[..m * k], m, k)
            };
            let rhs = if tb {
                MatRef::from_row_major_slice(&b[..n * k], n, k).transpose()
            } else {
                MatRef::from_row_major_slice(&b[..k * n], k, n)
            };
            let dst = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
            faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
        }
    }
}
