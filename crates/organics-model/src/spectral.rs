//! Spectral-norm parametrization: `W_r = V / σ_max(V)`.
//!
//! Keeps the largest singular value of the recurrent weights at 1 (docs/MODEL.md §4;
//! Conjecture 5.3), as PyTorch's `spectral_norm` does. The top singular pair `(u, v)` is
//! taken exactly from a host SVD of the detached `V` (n is small), and `σ_max = uᵀ V v` is
//! evaluated with tensor ops so that its gradient, `u vᵀ`, reaches `V`.
//!
//! The fused static kernel needs the same map on the host, and its backward pass
//! ([`HostSpectral::raw_grad`]): from `dW_r = dV / σ − V dσ / σ²` and `dσ = uᵀ dV v`,
//!
//! ```text
//! V̄ = W̄_r / σ − (⟨W̄_r, V⟩ / σ²) u vᵀ
//! ```

use burn::prelude::*;
use nalgebra::{DMatrix, DVector};

use crate::error::ModelError;
use crate::host::{from_f64, to_matrix};

/// `σ_max` of `m` and its singular vectors `(u, v)`.
fn top_singular(m: &DMatrix<f64>) -> Result<(f64, DVector<f64>, DVector<f64>), ModelError> {
    let svd = m.clone().svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u.as_ref(), svd.v_t.as_ref()) else {
        return Err(ModelError::Data("SVD returned no singular vectors".into()));
    };
    let top = svd.singular_values.imax();
    Ok((
        svd.singular_values[top],
        u.column(top).into_owned(),
        v_t.row(top).transpose(),
    ))
}

/// `v / σ_max(v)`, differentiable in `v`.
pub(crate) fn spectral_normalize(v: Tensor<2>) -> Result<Tensor<2>, ModelError> {
    let [rows, cols] = v.dims();
    let device = v.device();
    let (_, left, right) = top_singular(&to_matrix(v.clone())?)?;
    let left = from_f64(left.as_slice(), [1, rows], &device);
    let right = from_f64(right.as_slice(), [cols, 1], &device);
    let sigma = left.matmul(v.clone()).matmul(right); // [1, 1]
    Ok(v / sigma)
}

/// The parametrization of one square `V` on the host, for the fused static kernel.
#[derive(Debug, Clone)]
pub(crate) struct HostSpectral {
    raw: DMatrix<f64>,
    sigma: f64,
    u: DVector<f64>,
    v: DVector<f64>,
}

impl HostSpectral {
    pub(crate) fn new(raw: DMatrix<f64>) -> Result<Self, ModelError> {
        let (sigma, u, v) = top_singular(&raw)?;
        Ok(HostSpectral { raw, sigma, u, v })
    }

    /// `W_r = V / σ`, row-major.
    pub(crate) fn normalized(&self) -> Vec<f32> {
        let n = self.raw.ncols();
        (0..self.raw.nrows() * n)
            .map(|k| (self.raw[(k / n, k % n)] / self.sigma) as f32)
            .collect()
    }

    /// `V̄` from `W̄_r`, both row-major (see the module documentation).
    pub(crate) fn raw_grad(&self, g_w: &[f32]) -> Vec<f32> {
        let n = self.raw.ncols();
        let at = |k: usize| (k / n, k % n);
        let inner: f64 = g_w
            .iter()
            .enumerate()
            .map(|(k, &g)| f64::from(g) * self.raw[at(k)])
            .sum();
        let scale = inner / (self.sigma * self.sigma);
        g_w.iter()
            .enumerate()
            .map(|(k, &g)| {
                let (i, j) = at(k);
                (f64::from(g) / self.sigma - scale * self.u[i] * self.v[j]) as f32
            })
            .collect()
    }
}
