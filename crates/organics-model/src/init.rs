//! Initialisations of the paper (docs/MODEL.md §6 and §7).

use crate::host::{from_matrix, to_matrix};
use burn::prelude::*;
use burn::tensor::Distribution;

/// Kaiming-uniform with `a = √5` (PyTorch's `nn.Linear` default):
/// `U(−1/√fan_in, 1/√fan_in)` for a `[fan_out, fan_in]` weight.
pub(crate) fn kaiming_uniform_a5(fan_out: usize, fan_in: usize, device: &Device) -> Tensor<2> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::random(
        [fan_out, fan_in],
        Distribution::Uniform(-bound, bound),
        device,
    )
}

/// Divides a matrix by its largest singular value (spectral norm 1).
///
/// Init-time only, so the host SVD's cost does not matter; if the values cannot be read
/// back the matrix is returned unscaled, which only changes the starting point.
pub(crate) fn to_unit_spectral_norm(m: Tensor<2>) -> Tensor<2> {
    match to_matrix(m.clone()) {
        Ok(host) => {
            let top = host.singular_values().max();
            if top > 0.0 { m / top } else { m }
        }
        Err(_) => m,
    }
}

/// A random orthogonal matrix (gain 1): the Q factor of a Gaussian matrix, with the signs
/// of R's diagonal folded in so that Q is Haar-distributed (as `torch.nn.init.orthogonal_`).
pub(crate) fn orthogonal(n: usize, device: &Device) -> Tensor<2> {
    let gaussian = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
    let host = match to_matrix(gaussian) {
        Ok(h) => h,
        Err(_) => return Tensor::eye(n, device),
    };
    let qr = host.qr();
    let (mut q, r) = (qr.q(), qr.r());
    for j in 0..n {
        if r[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    from_matrix(&q, device)
}

/// Log normalization weights with a zero diagonal: `L_ij` from `draw`, `L_ii = 0`.
pub(crate) fn log_weights_zero_diagonal(logs: Tensor<2>) -> Tensor<2> {
    let n = logs.dims()[0];
    let off_diagonal = Tensor::<2>::ones([n, n], &logs.device()) - Tensor::eye(n, &logs.device());
    logs * off_diagonal
}
