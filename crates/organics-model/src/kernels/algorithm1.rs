//! Paper Algorithm 1 on the host, forward and backward: the fixed point of a fixed-point
//! layer with a learned `W_r`, for the fused static kernel ([`crate::kernels::static_step`]).
//!
//! Forward, per sample (`d = b1 ⊙ z`, `base = σ² b0²`, `W = exp(L)`, `K` iterations), the
//! equations of [`crate::fixed_point`]:
//!
//! ```text
//! r = W_r d,   s_0 = r²,   a_0 = base + W s_0
//! for k = 1..K:   g_k = 1 − √a_{k−1},   A_k = I − D(g_k) W_r,   y_k = A_k⁻¹ d,
//!                 s_k = a_{k−1} ⊙ y_k²,   a_k = base + W s_k        (a_K is never read)
//! output y_K
//! ```
//!
//! Backward through the unrolled iterations, from `ȳ_K`, for `k = K, …, 1`:
//!
//! ```text
//! if k < K:  s̄_k = Wᵀ ā_k,   ȳ_k = 2 a_{k−1} ⊙ y_k ⊙ s̄_k,   ā_{k−1} = y_k² ⊙ s̄_k
//!            W̄ += ā_k s_kᵀ,   b̄ase += ā_k
//! λ_k = A_k⁻ᵀ ȳ_k,   d̄ += λ_k,   ā_{k−1} += −λ_k ⊙ (W_r y_k) / (2√a_{k−1}),
//! W̄_r += (g_k ⊙ λ_k) y_kᵀ
//! ```
//!
//! then `s̄_0 = Wᵀ ā_0`, `W̄ += ā_0 s_0ᵀ`, `b̄ase += ā_0`, `r̄ = 2 r ⊙ s̄_0`, `d̄ += W_rᵀ r̄`,
//! `W̄_r += r̄ dᵀ`. The solve's lines come from `dy = −A⁻¹ dA y` with
//! `dA = −D(dg) W_r − D(g) dW_r`: for `λ = A⁻ᵀ ȳ`, `ȳ·dy = −λᵀ dA y`, so `ḡ = λ ⊙ (W_r y)` and
//! `W̄_r = (g ⊙ λ) yᵀ`; `g = 1 − √a` gives `ā = −ḡ / (2√a)` (with the authors' gate
//! `g = 1 − a`, an option kept for comparison, `ā = −ḡ`).
//!
//! Why the unrolled gradient rather than implicit differentiation at the fixed point: it is
//! the gradient of exactly what the forward pass computes, with any `K` (early in training
//! ten iterations need not have converged), as the authors' code and the Burn path of
//! [`crate::fixed_point`] get it from autodiff. It costs little more: each `A_k` is
//! factorised once (faer's partial-pivoting LU, `f32`, one core per shard) and its factors
//! are kept for the adjoint solve, so the backward pass adds only triangular solves and
//! products over the whole shard. The factors are the bulk of the memory: `K · rows · n²`
//! floats per layer and shard.
//!
//! The shard's `W̄` and `W̄_r` are not formed here: [`SolveWork`] keeps the stacked factors
//! (`ā_k` beside `s_k`, `g_k ⊙ λ_k` beside `y_k`) so that the kernel's weight-gradient phase
//! forms each as one product over all shards and iterations.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::lu::partial_pivoting::{factor, solve};
use faer::perm::PermRef;
use faer::{MatMut, MatRef, Par};

use crate::kernels::elementwise::relu;
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};

/// A learned recurrence on the host.
#[derive(Debug, Clone)]
pub(crate) struct Recurrence {
    /// `W_r` (spectral norm 1), row-major `[n, n]`.
    pub(crate) w_r: Vec<f32>,
    /// `W_r` column-major, so each column of `A_k` is built from contiguous values.
    w_r_cols: Vec<f32>,
    /// Iterations `K` of Algorithm 1, at least 1.
    pub(crate) iterations: usize,
    /// `g = 1 − a` (the authors' static code) instead of the circuit's `g = 1 − √a`.
    linear_gate: bool,
}

impl Recurrence {
    /// `w_r` row-major `[n, n]`.
    pub(crate) fn new(w_r: Vec<f32>, n: usize, iterations: usize, linear_gate: bool) -> Self {
        Recurrence {
            w_r_cols: crate::kernels::elementwise::transpose(&w_r, n, n),
            w_r,
            iterations,
            linear_gate,
        }
    }

    /// The gate `g(a)` of the solve and its derivative `g'(a)`.
    #[inline(always)]
    fn gate(&self, a: f32) -> (f32, f32) {
        if self.linear_gate {
            (1.0 - a, -1.0)
        } else {
            let root = a.sqrt();
            (1.0 - root, -0.5 / root)
        }
    }
}

/// One shard's buffers for Algorithm 1 of one layer, each stacked over iterations and
/// row-major `[rows, n]` per iteration.
pub(crate) struct SolveWork {
    rows: usize,
    n: usize,
    iterations: usize,
    /// `r = W_r d`.
    r: Vec<f32>,
    /// `a_0 … a_{K−1}`.
    a: Vec<f32>,
    /// `s_0 … s_{K−1}`, beside `ā_0 … ā_{K−1}` for `W̄`.
    s: Vec<f32>,
    /// `d, y_1 … y_K`, beside `r̄, g_1 ⊙ λ_1 … g_K ⊙ λ_K` for `W̄_r`.
    y: Vec<f32>,
    /// `ā_0 … ā_{K−1}`.
    g_a: Vec<f32>,
    /// `r̄, g_1 ⊙ λ_1 … g_K ⊙ λ_K`.
    g_w: Vec<f32>,
    /// `ȳ_k` of the iteration being differentiated.
    g_y: Vec<f32>,
    /// `s̄_k` or `W_r y_k`.
    tmp: Vec<f32>,
    /// The LU factors of `A_1 … A_K`, column-major `n × n` per sample.
    lu: Vec<f32>,
    /// Their row permutations and inverses, `n` per sample.
    perm: Vec<usize>,
    perm_inv: Vec<usize>,
    /// faer's scratch space for one factorisation or solve.
    stack: MemBuffer,
}

/// By hand: faer's scratch buffer has no `Debug`.
impl std::fmt::Debug for SolveWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolveWork")
            .field("rows", &self.rows)
            .field("n", &self.n)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl SolveWork {
    pub(crate) fn new(rows: usize, n: usize, iterations: usize) -> Self {
        assert!(
            iterations >= 1,
            "Algorithm 1 kernel: at least one iteration"
        );
        let len = rows * n;
        let scratch = StackReq::any_of(&[
            factor::lu_in_place_scratch::<usize, f32>(n, n, Par::Seq, Default::default()),
            solve::solve_in_place_scratch::<usize, f32>(n, 1, Par::Seq),
            solve::solve_transpose_in_place_scratch::<usize, f32>(n, 1, Par::Seq),
        ]);
        SolveWork {
            rows,
            n,
            iterations,
            r: vec![0.0; len],
            a: vec![0.0; iterations * len],
            s: vec![0.0; iterations * len],
            y: vec![0.0; (iterations + 1) * len],
            g_a: vec![0.0; iterations * len],
            g_w: vec![0.0; (iterations + 1) * len],
            g_y: vec![0.0; len],
            tmp: vec![0.0; len],
            lu: vec![0.0; iterations * rows * n * n],
            perm: vec![0; iterations * len],
            perm_inv: vec![0; iterations * len],
            stack: MemBuffer::new(scratch),
        }
    }

    /// The drive `d = b1 ⊙ z`, `[rows, n]`, to be filled before [`forward`].
    pub(crate) fn drive_mut(&mut self) -> &mut [f32] {
        &mut self.y[..self.rows * self.n]
    }

    /// The layer's fixed point `y_K`, `[rows, n]`, after [`forward`].
    pub(crate) fn output(&self) -> &[f32] {
        let len = self.rows * self.n;
        &self.y[self.iterations * len..]
    }

    /// Sets `ȳ_K` before [`backward`] from the gradient with respect to the rates
    /// `⌊y_K⌋²`, `[rows, n]`.
    pub(crate) fn seed_output_grad(&mut self, g_rates: &[f32]) {
        let len = self.rows * self.n;
        let y = &self.y[self.iterations * len..];
        for ((g_y, &y), &g) in self.g_y.iter_mut().zip(y).zip(&g_rates[..len]) {
            *g_y = 2.0 * relu(y) * g;
        }
    }

    /// `(ā_k, s_k)` for `k < K`, each `[K · rows, n]`: `W̄ = Σ ā_kᵀ s_k` (as row vectors),
    /// and `b̄ase` is the column sum of the first.
    pub(crate) fn normalization_factors(&self) -> (Mat<'_>, Mat<'_>) {
        let rows = self.iterations * self.rows;
        (
            Mat::new(&self.g_a, 0, rows, self.n),
            Mat::new(&self.s, 0, rows, self.n),
        )
    }

    /// `(r̄ | g_k ⊙ λ_k, d | y_k)`, each `[(K + 1) · rows, n]`: `W̄_r = Σ` first`ᵀ` second.
    pub(crate) fn recurrence_factors(&self) -> (Mat<'_>, Mat<'_>) {
        let rows = (self.iterations + 1) * self.rows;
        (
            Mat::new(&self.g_w, 0, rows, self.n),
            Mat::new(&self.y, 0, rows, self.n),
        )
    }

    /// `ā_0 … ā_{K−1}` stacked, `[K · rows, n]`.
    pub(crate) fn modulator_grads(&self) -> &[f32] {
        &self.g_a
    }
}

/// `a = s Wᵀ + base` for a shard (`s`, `a` `[rows, n]`).
#[inline(always)]
fn normalize(a: &mut [f32], s: &[f32], w_norm: &[f32], base: &[f32], rows: usize, n: usize) {
    matmul(
        a,
        0,
        n,
        Mat::new(s, 0, rows, n),
        Mat::new(w_norm, 0, n, n).t(),
        false,
    );
    for row in a.chunks_exact_mut(n) {
        cut_mut!(n; row);
        cut!(n; base);
        for j in 0..n {
            row[j] += base[j];
        }
    }
}

/// The permutation a factorisation left in `perm`, `perm_inv`.
fn permutation<'a>(perm: &'a [usize], perm_inv: &'a [usize], n: usize) -> PermRef<'a, usize> {
    PermRef::new_checked(perm, perm_inv, n)
}

/// Algorithm 1 for a shard whose drive is in [`SolveWork::drive_mut`]; `w_norm` is `W`
/// (row-major `[n, n]`), `base` is `σ² b0²`. A singular `A_k` gives non-finite values,
/// which reach the loss (and the training loop's guard).
#[inline(always)]
pub(crate) fn forward(rec: &Recurrence, w_norm: &[f32], base: &[f32], w: &mut SolveWork) {
    let (rows, n, iterations) = (w.rows, w.n, w.iterations);
    assert_eq!(rec.iterations, iterations, "Algorithm 1 kernel: iterations");
    let len = rows * n;
    let w_r = Mat::new(&rec.w_r, 0, n, n);
    matmul(&mut w.r, 0, n, Mat::new(&w.y, 0, rows, n), w_r.t(), false);
    for (s, r) in w.s[..len].iter_mut().zip(&w.r) {
        *s = r * r;
    }
    normalize(&mut w.a[..len], &w.s[..len], w_norm, base, rows, n);
    let stack = MemStack::new(&mut w.stack);
    for k in 1..=iterations {
        let (done, next) = w.y.split_at_mut(k * len);
        let (d, y_k) = (&done[..len], &mut next[..len]);
        let a_prev = &w.a[(k - 1) * len..k * len];
        let lu = &mut w.lu[(k - 1) * rows * n * n..k * rows * n * n];
        let perm = &mut w.perm[(k - 1) * len..k * len];
        let perm_inv = &mut w.perm_inv[(k - 1) * len..k * len];
        let gate = &mut w.tmp[..n];
        for i in 0..rows {
            let a_i = &a_prev[i * n..(i + 1) * n];
            cut!(n; a_i);
            for row in 0..n {
                gate[row] = rec.gate(a_i[row]).0;
            }
            let lu_i = &mut lu[i * n * n..(i + 1) * n * n];
            // Column j of A = e_j − g ⊙ W_r[:, j].
            for (j, (col, w_col)) in lu_i
                .chunks_exact_mut(n)
                .zip(rec.w_r_cols.chunks_exact(n))
                .enumerate()
            {
                cut_mut!(n; col);
                cut!(n; w_col);
                for row in 0..n {
                    col[row] = -gate[row] * w_col[row];
                }
                col[j] += 1.0;
            }
            let (perm_i, perm_inv_i) = (
                &mut perm[i * n..(i + 1) * n],
                &mut perm_inv[i * n..(i + 1) * n],
            );
            factor::lu_in_place(
                MatMut::from_column_major_slice_mut(lu_i, n, n),
                perm_i,
                perm_inv_i,
                Par::Seq,
                stack,
                Default::default(),
            );
            let y_i = &mut y_k[i * n..(i + 1) * n];
            y_i.copy_from_slice(&d[i * n..(i + 1) * n]);
            let lu_i = MatRef::from_column_major_slice(lu_i, n, n);
            solve::solve_in_place_with_conj(
                lu_i,
                lu_i,
                permutation(perm_i, perm_inv_i, n),
                faer::Conj::No,
                MatMut::from_column_major_slice_mut(y_i, n, 1),
                Par::Seq,
                stack,
            );
        }
        if k < iterations {
            let s_k = &mut w.s[k * len..(k + 1) * len];
            let (a_done, a_next) = w.a.split_at_mut(k * len);
            let a_prev = &a_done[(k - 1) * len..];
            for ((s, &a), &y) in s_k.iter_mut().zip(a_prev).zip(y_k.iter()) {
                *s = a * y * y;
            }
            normalize(&mut a_next[..len], s_k, w_norm, base, rows, n);
        }
    }
}

/// The backward pass of [`forward`] from `ȳ_K` (see [`SolveWork::seed_output_grad`]):
/// writes `d̄` into `g_d` (`[rows, n]`) and leaves the factors of the weight gradients in
/// `w` (see [`SolveWork::normalization_factors`], [`SolveWork::recurrence_factors`]).
#[inline(always)]
pub(crate) fn backward(rec: &Recurrence, w_norm: &[f32], w: &mut SolveWork, g_d: &mut [f32]) {
    let (rows, n, iterations) = (w.rows, w.n, w.iterations);
    let len = rows * n;
    let g_d = &mut g_d[..len];
    g_d.fill(0.0);
    let w_r = Mat::new(&rec.w_r, 0, n, n);
    let w_mat = Mat::new(w_norm, 0, n, n);
    let stack = MemStack::new(&mut w.stack);
    for k in (1..=iterations).rev() {
        let a_prev = &w.a[(k - 1) * len..k * len];
        let y_k = &w.y[k * len..(k + 1) * len];
        let (g_a_prev, g_a_rest) = w.g_a.split_at_mut(k * len);
        let g_a_prev = &mut g_a_prev[(k - 1) * len..];
        if k < iterations {
            // a_k = base + W (a_{k−1} ⊙ y_k²), with ā_k complete.
            let g_a_k = &g_a_rest[..len];
            matmul(&mut w.tmp, 0, n, Mat::new(g_a_k, 0, rows, n), w_mat, false);
            for j in 0..len {
                let g_s = w.tmp[j];
                w.g_y[j] = 2.0 * a_prev[j] * y_k[j] * g_s;
                g_a_prev[j] = y_k[j] * y_k[j] * g_s;
            }
        } else {
            g_a_prev.fill(0.0);
        }
        // λ_k = A_k⁻ᵀ ȳ_k, with the forward pass's factors.
        let lambda = &mut w.g_w[k * len..(k + 1) * len];
        lambda.copy_from_slice(&w.g_y);
        let lu = &w.lu[(k - 1) * rows * n * n..k * rows * n * n];
        for i in 0..rows {
            let lu_i = MatRef::from_column_major_slice(&lu[i * n * n..(i + 1) * n * n], n, n);
            let at = (k - 1) * len + i * n;
            solve::solve_transpose_in_place_with_conj(
                lu_i,
                lu_i,
                permutation(&w.perm[at..at + n], &w.perm_inv[at..at + n], n),
                faer::Conj::No,
                MatMut::from_column_major_slice_mut(&mut lambda[i * n..(i + 1) * n], n, 1),
                Par::Seq,
                stack,
            );
        }
        matmul(&mut w.tmp, 0, n, Mat::new(y_k, 0, rows, n), w_r.t(), false);
        for j in 0..len {
            let l = lambda[j];
            g_d[j] += l;
            let (gate, slope) = rec.gate(a_prev[j]);
            // ḡ = λ ⊙ (W_r y_k) reaches a_{k−1} through g'(a).
            g_a_prev[j] += l * w.tmp[j] * slope;
            lambda[j] = gate * l;
        }
    }
    // a_0 = base + W r², r = W_r d.
    matmul(&mut w.tmp, 0, n, Mat::new(&w.g_a, 0, rows, n), w_mat, false);
    let g_r = &mut w.g_w[..len];
    for ((g, &r), &g_s) in g_r.iter_mut().zip(&w.r).zip(&w.tmp) {
        *g = 2.0 * r * g_s;
    }
    matmul(g_d, 0, n, Mat::new(g_r, 0, rows, n), w_r, true);
}

/// Rows per [`SolveWork`] in [`fixed_points`]: the factors of a block take
/// `K · ROWS · n²` floats (21 MB for the paper's first layer), whatever the batch.
const BLOCK_ROWS: usize = 32;

/// The fixed points `(y_K, a_K)` of a batch (`drive` `[batch, n]`), forward only, in
/// blocks of rows spread over the cores: for inference, where no gradient is needed.
pub(crate) fn fixed_points(
    rec: &Recurrence,
    w_norm: &[f32],
    base: &[f32],
    drive: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let batch = drive.len() / n.max(1);
    let mut y = vec![0.0; batch * n];
    let mut a = vec![0.0; batch * n];
    let shards = crate::kernels::threads::shard_rows(batch);
    let mut jobs = Vec::with_capacity(shards.len());
    let (mut y_rest, mut a_rest) = (&mut y[..], &mut a[..]);
    for &(start, rows) in &shards {
        let (y_mine, y_tail) = y_rest.split_at_mut(rows * n);
        let (a_mine, a_tail) = a_rest.split_at_mut(rows * n);
        jobs.push((&drive[start * n..(start + rows) * n], y_mine, a_mine));
        (y_rest, a_rest) = (y_tail, a_tail);
    }
    crate::kernels::threads::on_threads(jobs, |(drive, y, a)| {
        let mut work: Option<SolveWork> = None;
        let blocks = drive
            .chunks(BLOCK_ROWS * n)
            .zip(y.chunks_mut(BLOCK_ROWS * n))
            .zip(a.chunks_mut(BLOCK_ROWS * n));
        for ((drive, y), a) in blocks {
            let rows = drive.len() / n;
            let w = match &mut work {
                Some(w) if w.rows == rows => w,
                _ => work.insert(SolveWork::new(rows, n, rec.iterations)),
            };
            w.drive_mut().copy_from_slice(drive);
            forward(rec, w_norm, base, w);
            y.copy_from_slice(w.output());
            // a_K = base + W (a_{K−1} ⊙ y_K²), which the training pass never needs.
            let len = rows * n;
            let last = (rec.iterations - 1) * len;
            for ((s, &a_prev), &y) in w.tmp.iter_mut().zip(&w.a[last..last + len]).zip(&*y) {
                *s = a_prev * y * y;
            }
            normalize(a, &w.tmp, w_norm, base, rows, n);
        }
    });
    (y, a)
}
