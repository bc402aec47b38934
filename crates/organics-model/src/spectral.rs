//! Spectral-norm parametrization: `W_r = V / σ_max(V)`.
//!
//! Keeps the largest singular value of the recurrent weights at 1 (docs/MODEL.md §4;
//! Conjecture 5.3), as PyTorch's `spectral_norm` does. The top singular pair `(u, v)` is
//! taken exactly from a host SVD of the detached `V` (n is small), and `σ_max = uᵀ V v` is
//! evaluated with tensor ops so that its gradient, `u vᵀ`, reaches `V`.

use burn::prelude::*;

use crate::error::ModelError;
use crate::host::{from_f64, to_matrix};

/// `v / σ_max(v)`, differentiable in `v`.
pub(crate) fn spectral_normalize(v: Tensor<2>) -> Result<Tensor<2>, ModelError> {
    let [rows, cols] = v.dims();
    let device = v.device();
    let host = to_matrix(v.clone())?;
    let svd = host.svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u.as_ref(), svd.v_t.as_ref()) else {
        return Err(ModelError::Data("SVD returned no singular vectors".into()));
    };
    let top = svd.singular_values.imax();
    let left: Vec<f64> = u.column(top).iter().copied().collect();
    let right: Vec<f64> = v_t.row(top).iter().copied().collect();
    let left = from_f64(&left, [1, rows], &device);
    let right = from_f64(&right, [cols, 1], &device);
    let sigma = left.matmul(v.clone()).matmul(right); // [1, 1]
    Ok(v / sigma)
}
