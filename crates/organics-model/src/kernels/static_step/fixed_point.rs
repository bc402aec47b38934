//! A fixed-point layer's forward and backward pass on a shard: the closed form for
//! `W_r = I`, Algorithm 1 ([`crate::kernels::algorithm1`]) for a learned `W_r`.

use super::HostFixedPoint;
use super::dense::column_sums;
use super::work::FixedPointWork;
use crate::fixed_point::NORM_FLOOR;
use crate::kernels::algorithm1;
use crate::kernels::elementwise::{relu, sigmoid};
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};

/// The closed-form fixed point of a shard (see [`crate::fixed_point`]):
/// `z = W_zx u / ‖W_zx u‖`, `b1 = sigmoid(W_bx u)`, `a = σ² b0² + (b1 ⊙ z)² Wᵀ`,
/// `y = b1 ⊙ z / √a`, rates `⌊y⌋²`.
#[inline(always)]
pub(super) fn fixed_point_forward(l: &HostFixedPoint, u: Mat, f: &mut FixedPointWork, rows: usize) {
    let (n, m) = (l.n, l.m);
    let w_cat = Mat::new(&l.w_cat, 0, 2 * n, m);
    matmul(&mut f.zb, 0, 2 * n, u, w_cat.t(), false);
    for r in 0..rows {
        let (p, q) = f.zb[r * 2 * n..(r + 1) * 2 * n].split_at_mut(n);
        let s = &mut f.s[r * n..(r + 1) * n];
        cut_mut!(n; p, q, s);
        let sum_sq: f32 = p.iter().map(|v| v * v).sum();
        // Not `max(NORM_FLOOR)`: f32::max drops a NaN, and a NaN norm must reach the loss.
        let norm = sum_sq.sqrt();
        let norm = if norm < NORM_FLOOR { NORM_FLOOR } else { norm };
        f.norm[r] = norm;
        for j in 0..n {
            let z = p[j] / norm;
            let b1 = sigmoid(q[j]);
            p[j] = z;
            q[j] = b1;
            let d = b1 * z;
            s[j] = d * d;
        }
    }
    if let (Some(rec), Some(solve)) = (&l.recurrence, f.solve.as_mut()) {
        let drive = solve.drive_mut();
        for r in 0..rows {
            let (z, b1) = f.zb[r * 2 * n..(r + 1) * 2 * n].split_at(n);
            let d = &mut drive[r * n..(r + 1) * n];
            cut!(n; z, b1);
            cut_mut!(n; d);
            for j in 0..n {
                d[j] = b1[j] * z[j];
            }
        }
        algorithm1::forward(rec, &l.w_norm, &l.base(), solve);
        for (out, &y) in f.out[..rows * n].iter_mut().zip(solve.output()) {
            let rate = relu(y);
            *out = rate * rate;
        }
        return;
    }
    let w_norm = Mat::new(&l.w_norm, 0, n, n);
    matmul(
        &mut f.a,
        0,
        n,
        Mat::new(&f.s, 0, rows, n),
        w_norm.t(),
        false,
    );
    let sigma_sq = l.sigma_sq;
    let b0 = &l.b0[..n];
    for r in 0..rows {
        let (z, b1) = f.zb[r * 2 * n..(r + 1) * 2 * n].split_at(n);
        let a = &mut f.a[r * n..(r + 1) * n];
        let out = &mut f.out[r * n..(r + 1) * n];
        cut!(n; z, b1);
        cut_mut!(n; a, out);
        for j in 0..n {
            let base = b0[j] * b0[j] * sigma_sq;
            let a_j = base + a[j];
            a[j] = a_j;
            let y = (b1[j] * z[j]) / a_j.sqrt();
            let rate = relu(y);
            out[j] = rate * rate;
        }
    }
}

/// Backward through a fixed-point layer from `f.g_out` to `g_u` (the gradient with respect
/// to its input, added to `g_u` when `accumulate`); fills `f.g_a`, `f.g_pq` and returns
/// the column sums of `g_a` (the gradient with respect to `σ² b0²`).
#[inline(always)]
pub(super) fn fixed_point_backward(
    l: &HostFixedPoint,
    f: &mut FixedPointWork,
    rows: usize,
    g_u: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    let (n, m) = (l.n, l.m);
    let g_base = match (&l.recurrence, f.solve.as_mut()) {
        (Some(rec), Some(solve)) => {
            solve.seed_output_grad(&f.g_out[..rows * n]);
            // d̄ goes to the first half of g_pq, as the closed form's direct part does;
            // no `s = d²` term here.
            algorithm1::backward(rec, &l.w_norm, solve, &mut f.g_s);
            for r in 0..rows {
                f.g_pq[r * 2 * n..r * 2 * n + n].copy_from_slice(&f.g_s[r * n..(r + 1) * n]);
            }
            f.g_s[..rows * n].fill(0.0);
            column_sums(solve.modulator_grads(), n)
        }
        _ => closed_form_backward(l, f, rows),
    };
    drive_backward(f, rows, n);
    let w_cat = Mat::new(&l.w_cat, 0, 2 * n, m);
    matmul(
        g_u,
        0,
        m,
        Mat::new(&f.g_pq, 0, rows, 2 * n),
        w_cat,
        accumulate,
    );
    g_base
}

/// The closed form's backward pass from `f.g_out` to `f.g_a`, `f.g_s` and the direct part
/// of `∂/∂(b1 ⊙ z)` (in the first half of `f.g_pq`); returns the column sums of `g_a`.
#[inline(always)]
fn closed_form_backward(l: &HostFixedPoint, f: &mut FixedPointWork, rows: usize) -> Vec<f32> {
    let n = l.n;
    for r in 0..rows {
        let (z, b1) = f.zb[r * 2 * n..(r + 1) * 2 * n].split_at(n);
        let a = &f.a[r * n..(r + 1) * n];
        let g_out = &f.g_out[r * n..(r + 1) * n];
        let g_a = &mut f.g_a[r * n..(r + 1) * n];
        // The direct part of ∂/∂(b1 ⊙ z) waits in the first half of g_pq.
        let g_d = &mut f.g_pq[r * 2 * n..r * 2 * n + n];
        cut!(n; z, b1, a, g_out);
        cut_mut!(n; g_a, g_d);
        for j in 0..n {
            let sqrt_a = a[j].sqrt();
            let y = (b1[j] * z[j]) / sqrt_a;
            // rates = ⌊y⌋²; y = d / √a.
            let g_y = 2.0 * relu(y) * g_out[j];
            g_d[j] = g_y / sqrt_a;
            g_a[j] = -0.5 * g_y * y / a[j];
        }
    }
    // a = s Wᵀ + base: ∂s = g_a W.
    let w_norm = Mat::new(&l.w_norm, 0, n, n);
    matmul(
        &mut f.g_s,
        0,
        n,
        Mat::new(&f.g_a, 0, rows, n),
        w_norm,
        false,
    );
    column_sums(&f.g_a[..rows * n], n)
}

/// From `∂/∂(b1 ⊙ z) = g_p + 2 (b1 ⊙ z) ⊙ g_s` (first half of `f.g_pq`, and `f.g_s`) to
/// the gradients with respect to `W_zx u` and `W_bx u` (both halves of `f.g_pq`).
#[inline(always)]
fn drive_backward(f: &mut FixedPointWork, rows: usize, n: usize) {
    for r in 0..rows {
        let (z, b1) = f.zb[r * 2 * n..(r + 1) * 2 * n].split_at(n);
        let g_s = &f.g_s[r * n..(r + 1) * n];
        let (g_p, g_q) = f.g_pq[r * 2 * n..(r + 1) * 2 * n].split_at_mut(n);
        cut!(n; z, b1, g_s);
        cut_mut!(n; g_p, g_q);
        let mut dot = 0.0f32;
        for j in 0..n {
            let d = b1[j] * z[j];
            // s = d², d = b1 ⊙ z.
            let g_d = g_p[j] + 2.0 * d * g_s[j];
            let g_z = g_d * b1[j];
            g_q[j] = g_d * z[j] * b1[j] * (1.0 - b1[j]);
            g_p[j] = g_z;
            dot += z[j] * g_z;
        }
        // z = p / ‖p‖: ∂p = (∂z − z (z · ∂z)) / ‖p‖; where the norm is clamped it is a
        // constant and only the first term remains.
        let norm = f.norm[r];
        if norm <= NORM_FLOOR {
            dot = 0.0;
        }
        for j in 0..n {
            g_p[j] = (g_p[j] - z[j] * dot) / norm;
        }
    }
}
