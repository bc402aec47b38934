//! The differentiable per-sample linear solve of Algorithm 1.
//!
//! Each sample needs `y = A⁻¹ b` with `A = I − D(g) W_r` (n x n, `g = 1 − √a`), and the
//! gradient must flow into `b`, `g` and `W_r`:
//!
//! ```text
//! dL/db = A⁻ᵀ ḡ,      dL/dA = −(A⁻ᵀ ḡ) yᵀ      (ḡ = dL/dy)
//! ```
//!
//! Why this method: burn 0.22 has no batched `solve` (burn-linalg offers `lu` but no
//! triangular solves with autodiff), and a custom autodiff op is backend plumbing that an
//! embedding user would have to trust. Instead the inverse `P = A⁻¹` of each sample is
//! computed *detached* on the host (nalgebra LU in f64; the systems are at most a few
//! hundred wide) and the solve is written as one step of iterative refinement,
//!
//! ```text
//! ŷ = P b   (detached),      y = ŷ + P (b − A ŷ)
//! ```
//!
//! whose value is `A⁻¹ b` (the residual `b − A ŷ` is zero up to rounding, and the step
//! removes that rounding) and whose derivative, with `P` and `ŷ` constants, is
//! `dy = P db − P dA ŷ = A⁻¹ db − A⁻¹ dA A⁻¹ b`: exactly the derivative of `A⁻¹ b`. Autodiff
//! then produces the formulas above with ordinary matmuls, on every backend.

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::error::ModelError;
use crate::host::{from_f64, to_f64, to_matrix};
use crate::kernels::threads::par_map;

/// Solves `(I − D(gate_i) W_r) y_i = rhs_i` for every row `i`, differentiably.
///
/// `gate` and `rhs` are `[batch, n]`, `w_r` is `[n, n]`; returns `[batch, n]`.
pub(crate) fn solve_gated(
    gate: Tensor<2>,
    w_r: Tensor<2>,
    rhs: Tensor<2>,
) -> Result<Tensor<2>, ModelError> {
    let [batch, n] = rhs.dims();
    let device = rhs.device();
    let gate_host = to_f64(gate.clone())?;
    let rhs_host = to_f64(rhs.clone())?;
    let w_r_host = to_matrix(w_r.clone())?;

    // Samples are independent: their inverses are spread over the cores.
    let samples: Vec<usize> = (0..batch).collect();
    let solved = par_map(&samples, |&sample| {
        let g = &gate_host[sample * n..(sample + 1) * n];
        let system = DMatrix::from_fn(n, n, |i, j| {
            let identity = if i == j { 1.0 } else { 0.0 };
            identity - g[i] * w_r_host[(i, j)]
        });
        let inverse = system
            .try_inverse()
            .ok_or(ModelError::SingularSystemAt { sample })?;
        let b = nalgebra::DVector::from_row_slice(&rhs_host[sample * n..(sample + 1) * n]);
        Ok::<_, ModelError>((&inverse * b, inverse))
    });
    let mut inverses = Vec::with_capacity(batch * n * n);
    let mut y_hat = Vec::with_capacity(batch * n);
    for result in solved {
        let (y, inverse) = result?;
        y_hat.extend(y.iter());
        // row-major for the tensor
        inverses.extend(inverse.transpose().iter());
    }
    let p = from_f64(&inverses, [batch, n, n], &device);
    let y_hat = from_f64(&y_hat, [batch, n], &device);

    // A ŷ = ŷ − g ⊙ (W_r ŷ), tracked through g and W_r.
    let a_y_hat = y_hat.clone() - gate * y_hat.clone().matmul(w_r.transpose());
    let residual = rhs - a_y_hat;
    let correction = p.matmul(residual.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    Ok(y_hat + correction)
}
