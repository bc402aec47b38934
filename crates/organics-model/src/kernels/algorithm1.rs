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
//! Most of the factorisations are not needed. Algorithm 1 converges, so after the first
//! iterations `A_k` differs little from an earlier `A_f` of the same sample: for the trained
//! two-layer model, `‖A_2⁻¹(A_2 − A_k)‖_F` is at most 0.08 (first layer) and 0.03 (second) for
//! every `k ≥ 3` over 128 test images, and the gates change by less than 1e-3 from the fifth
//! iteration on. Such an `A_k x = b` is solved by iterative refinement with `A_f`'s factors,
//! `x ← x + A_f⁻¹(b − A_k x)`, starting from the previous iterate, each step a product with
//! `W_r` and two triangular solves (`3n²` multiply-adds against `2n³/3` for a factorisation).
//! It stops once a correction is below [`REFINE_TOL`] of the solution, which is the accuracy
//! of a direct solve in `f32`; a sample whose corrections shrink by less than
//! [`REFINE_RATE`] a step, or that needs more than [`REFINE_STEPS`] of them, gets its own
//! factorisation instead, which later iterations then refine from. The backward pass solves
//! `A_kᵀ λ = ȳ` with the same factors the same way (the iteration matrices of the two
//! refinements are similar, so they converge alike), and factorises `A_k` after all should
//! that refinement stall. Each decision is per sample, so the result does not depend on how
//! the batch is split over the cores.
//!
//! The shard's `W̄` and `W̄_r` are not formed here: [`SolveWork`] keeps the stacked factors
//! (`ā_k` beside `s_k`, `g_k ⊙ λ_k` beside `y_k`) so that the kernel's weight-gradient phase
//! forms each as one product over all shards and iterations.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::lu::partial_pivoting::{factor, solve};
use faer::perm::PermRef;
use faer::{MatMut, MatRef, Par};

use crate::kernels::elementwise::relu;

/// Iterative refinement stops once a correction is at most this fraction of the largest
/// entry of the solution (about eight `f32` rounding units).
const REFINE_TOL: f32 = 1e-6;

/// Refinement gives up (and factorises) when a correction is more than this fraction of
/// the one before: at that rate the steps cost about as much as a factorisation.
const REFINE_RATE: f32 = 0.15;

/// Refinement gives up after this many corrections.
const REFINE_STEPS: usize = 6;

/// Marks "no factorisation yet" in [`SolveWork`]'s per-sample bookkeeping.
const NONE: u32 = u32::MAX;
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
    /// Solve later iterations by refinement (see the module docs); off only to compare.
    refinement: bool,
}

impl Recurrence {
    /// `w_r` row-major `[n, n]`.
    pub(crate) fn new(w_r: Vec<f32>, n: usize, iterations: usize, linear_gate: bool) -> Self {
        Recurrence {
            w_r_cols: crate::kernels::elementwise::transpose(&w_r, n, n),
            w_r,
            iterations,
            linear_gate,
            refinement: true,
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
    /// For iteration `k` and sample `i` (index `(k − 1) · rows + i`), the iteration whose
    /// factors solve `A_k` (`k` itself where `A_k` was factorised).
    source: Vec<u32>,
    /// Per sample, the iteration of its latest factorisation, or [`NONE`].
    latest: Vec<u32>,
    /// Factorisations by the last forward and backward pass.
    factorisations: usize,
    /// Three vectors of `n` for a refinement (residual, `g ⊙ x`, a product).
    refine: Vec<f32>,
    /// One factorisation outside the stack, for a backward refinement that stalls.
    spare_lu: Vec<f32>,
    spare_perm: Vec<usize>,
    spare_perm_inv: Vec<usize>,
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
            source: vec![NONE; iterations * rows],
            latest: vec![NONE; rows],
            factorisations: 0,
            refine: vec![0.0; 3 * n],
            spare_lu: vec![0.0; n * n],
            spare_perm: vec![0; n],
            spare_perm_inv: vec![0; n],
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

/// `A = I − D(g) W_r`, column-major, into `lu` (`n²`).
#[inline(always)]
fn build(rec: &Recurrence, gate: &[f32], lu: &mut [f32], n: usize) {
    cut!(n; gate);
    // Column j of A = e_j − g ⊙ W_r[:, j].
    for (j, (col, w_col)) in lu
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
}

/// The largest absolute entry, or NaN when any entry is not finite.
#[inline(always)]
fn amax(v: &[f32]) -> f32 {
    let mut m = 0.0f32;
    let mut finite = true;
    for &x in v {
        finite &= x.is_finite();
        m = m.max(x.abs());
    }
    if finite { m } else { f32::NAN }
}

/// Solves `A x = b` (`transposed`: `Aᵀ x = b`) for `A = I − D(gate) W_r` by iterative
/// refinement with the factors of an earlier matrix of the same sample (see the module
/// docs), starting from `x`. Returns whether it converged; if not, `x` is to be discarded.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn refine(
    rec: &Recurrence,
    transposed: bool,
    gate: &[f32],
    b: &[f32],
    x: &mut [f32],
    (lu, perm): (MatRef<'_, f32>, PermRef<'_, usize>),
    scratch: &mut [f32],
    stack: &mut MemStack,
) -> bool {
    let n = x.len();
    let (resid, rest) = scratch.split_at_mut(n);
    let (gx, acc) = rest.split_at_mut(n);
    cut_mut!(n; resid, gx, acc);
    cut!(n; gate, b);
    let mut last = f32::INFINITY;
    for _ in 0..REFINE_STEPS {
        // The products as sums of columns (axpy), which vectorise, where a dot product per
        // row would be a sequential sum.
        acc.fill(0.0);
        if transposed {
            // Aᵀ x = x − W_rᵀ (g ⊙ x) = x − Σ_i (g_i x_i) W_r[i, :].
            for i in 0..n {
                gx[i] = gate[i] * x[i];
            }
            for (&c, w_row) in gx.iter().zip(rec.w_r.chunks_exact(n)) {
                cut!(n; w_row);
                for j in 0..n {
                    acc[j] += c * w_row[j];
                }
            }
            for j in 0..n {
                resid[j] = b[j] - x[j] + acc[j];
            }
        } else {
            // A x = x − g ⊙ (W_r x), W_r x = Σ_j x_j W_r[:, j].
            for (&c, w_col) in x.iter().zip(rec.w_r_cols.chunks_exact(n)) {
                cut!(n; w_col);
                for i in 0..n {
                    acc[i] += c * w_col[i];
                }
            }
            for i in 0..n {
                resid[i] = b[i] - x[i] + gate[i] * acc[i];
            }
        }
        solve_with((lu, perm), transposed, resid, stack);
        for i in 0..n {
            x[i] += resid[i];
        }
        let (step, size) = (amax(resid), amax(x));
        if !(step.is_finite() && size.is_finite()) || step > REFINE_RATE * last {
            return false;
        }
        if step <= REFINE_TOL * size {
            return true;
        }
        last = step;
    }
    false
}

/// Factorises `lu` (holding `A`, column-major) in place and solves `A x = b` or `Aᵀ x = b`
/// with `x` holding `b`.
#[inline(always)]
fn factor_and_solve(
    lu: &mut [f32],
    perm: &mut [usize],
    perm_inv: &mut [usize],
    transposed: bool,
    x: &mut [f32],
    stack: &mut MemStack,
) {
    let n = x.len();
    factor::lu_in_place(
        MatMut::from_column_major_slice_mut(lu, n, n),
        perm,
        perm_inv,
        Par::Seq,
        stack,
        Default::default(),
    );
    let factors = (
        MatRef::from_column_major_slice(lu, n, n),
        permutation(perm, perm_inv, n),
    );
    solve_with(factors, transposed, x, stack);
}

/// `x ← A⁻¹ x` (`transposed`: `A⁻ᵀ x`) with `A`'s LU factors.
#[inline(always)]
fn solve_with(
    (lu, perm): (MatRef<'_, f32>, PermRef<'_, usize>),
    transposed: bool,
    x: &mut [f32],
    stack: &mut MemStack,
) {
    let rhs = MatMut::from_column_major_slice_mut(x, x.len(), 1);
    if transposed {
        solve::solve_transpose_in_place_with_conj(
            lu,
            lu,
            perm,
            faer::Conj::No,
            rhs,
            Par::Seq,
            stack,
        );
    } else {
        solve::solve_in_place_with_conj(lu, lu, perm, faer::Conj::No, rhs, Par::Seq, stack);
    }
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
    w.latest.fill(NONE);
    w.factorisations = 0;
    let nn = n * n;
    for k in 1..=iterations {
        let (done, next) = w.y.split_at_mut(k * len);
        let (d, y_prev, y_k) = (&done[..len], &done[(k - 1) * len..], &mut next[..len]);
        let a_prev = &w.a[(k - 1) * len..k * len];
        let (lu_done, lu_rest) = w.lu.split_at_mut((k - 1) * rows * nn);
        let (perm_done, perm_rest) = w.perm.split_at_mut((k - 1) * len);
        let (perm_inv_done, perm_inv_rest) = w.perm_inv.split_at_mut((k - 1) * len);
        let gate = &mut w.tmp[..n];
        for i in 0..rows {
            let a_i = &a_prev[i * n..(i + 1) * n];
            cut!(n; a_i);
            for row in 0..n {
                gate[row] = rec.gate(a_i[row]).0;
            }
            let (d_i, y_i) = (&d[i * n..(i + 1) * n], &mut y_k[i * n..(i + 1) * n]);
            let refined = match w.latest[i] {
                _ if !rec.refinement => false,
                NONE => false,
                f => {
                    // From y_{k−1}, with the factors of A_f (f < k).
                    y_i.copy_from_slice(&y_prev[i * n..(i + 1) * n]);
                    let slot = (f as usize - 1) * rows + i;
                    let factors = (
                        MatRef::from_column_major_slice(&lu_done[slot * nn..(slot + 1) * nn], n, n),
                        permutation(
                            &perm_done[slot * n..(slot + 1) * n],
                            &perm_inv_done[slot * n..(slot + 1) * n],
                            n,
                        ),
                    );
                    refine(rec, false, gate, d_i, y_i, factors, &mut w.refine, stack)
                }
            };
            if !refined {
                let lu_i = &mut lu_rest[i * nn..(i + 1) * nn];
                build(rec, gate, lu_i, n);
                y_i.copy_from_slice(d_i);
                factor_and_solve(
                    lu_i,
                    &mut perm_rest[i * n..(i + 1) * n],
                    &mut perm_inv_rest[i * n..(i + 1) * n],
                    false,
                    y_i,
                    stack,
                );
                w.latest[i] = k as u32;
                w.factorisations += 1;
            }
            w.source[(k - 1) * rows + i] = w.latest[i];
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
        // λ_k = A_k⁻ᵀ ȳ_k, with the factors the forward pass solved A_k with.
        let lambda = &mut w.g_w[k * len..(k + 1) * len];
        lambda.copy_from_slice(&w.g_y);
        let nn = n * n;
        for i in 0..rows {
            let f = w.source[(k - 1) * rows + i] as usize;
            let slot = (f - 1) * rows + i;
            let factors = (
                MatRef::from_column_major_slice(&w.lu[slot * nn..(slot + 1) * nn], n, n),
                permutation(
                    &w.perm[slot * n..(slot + 1) * n],
                    &w.perm_inv[slot * n..(slot + 1) * n],
                    n,
                ),
            );
            let lambda_i = &mut lambda[i * n..(i + 1) * n];
            solve_with(factors, true, lambda_i, stack);
            if f == k {
                continue;
            }
            let gate = &mut w.tmp[..n];
            for (g, &a) in gate.iter_mut().zip(&a_prev[i * n..(i + 1) * n]) {
                *g = rec.gate(a).0;
            }
            let g_y_i = &w.g_y[i * n..(i + 1) * n];
            if !refine(
                rec,
                true,
                gate,
                g_y_i,
                lambda_i,
                factors,
                &mut w.refine,
                stack,
            ) {
                build(rec, gate, &mut w.spare_lu, n);
                lambda_i.copy_from_slice(g_y_i);
                w.factorisations += 1;
                factor_and_solve(
                    &mut w.spare_lu,
                    &mut w.spare_perm,
                    &mut w.spare_perm_inv,
                    true,
                    lambda_i,
                    stack,
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform draws in `[-1, 1)` from a fixed seed (a linear congruential generator).
    fn draws(seed: u64, len: usize) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Forward and backward of one shard; returns the output, `d̄`, the weight-gradient
    /// factors and the number of factorisations.
    fn run(rec: &Recurrence, rows: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, usize) {
        // A drive like the layer's (b1 ⊙ z with ‖z‖ = 1), W = exp(L) with L in (−1, 0] and a
        // unit diagonal, base = σ² b0² with b0 = 1/2.
        let drive: Vec<f32> = draws(1, rows * n)
            .iter()
            .map(|v| v / (n as f32).sqrt())
            .collect();
        let w_norm: Vec<f32> = draws(2, n * n)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i % (n + 1) == 0 {
                    1.0
                } else {
                    (0.5 * (v - 1.0)).exp()
                }
            })
            .collect();
        let base = vec![0.25; n];
        let mut w = SolveWork::new(rows, n, rec.iterations);
        w.drive_mut().copy_from_slice(&drive);
        forward(rec, &w_norm, &base, &mut w);
        let out = w.output().to_vec();
        w.seed_output_grad(&draws(3, rows * n));
        let mut g_d = vec![0.0; rows * n];
        backward(rec, &w_norm, &mut w, &mut g_d);
        let mut factors = w.g_a.clone();
        factors.extend(&w.g_w);
        (out, g_d, factors, w.factorisations)
    }

    fn relative(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Refinement with earlier factors gives what a factorisation of every `A_k` gives,
    /// forward and backward, with fewer factorisations.
    #[test]
    fn refinement_matches_factorising_every_iteration() {
        let (rows, n, iterations) = (6, 24, 10);
        for (linear_gate, scale) in [(false, 1.0), (true, 0.5), (false, 0.2)] {
            // W_r with spectral norm at most `scale` (Frobenius normalised).
            let v = draws(4, n * n);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let w_r: Vec<f32> = v.iter().map(|x| x * scale / norm * 4.0).collect();
            let refined = Recurrence::new(w_r.clone(), n, iterations, linear_gate);
            let mut direct = refined.clone();
            direct.refinement = false;
            let (out, g_d, factors, count) = run(&refined, rows, n);
            let (out_ref, g_d_ref, factors_ref, count_ref) = run(&direct, rows, n);
            assert_eq!(count_ref, rows * iterations);
            assert!(
                count < count_ref / 2,
                "{count} factorisations of {count_ref}"
            );
            assert!(
                relative(&out, &out_ref) < 1e-5,
                "{}",
                relative(&out, &out_ref)
            );
            assert!(
                relative(&g_d, &g_d_ref) < 1e-5,
                "{}",
                relative(&g_d, &g_d_ref)
            );
            let err = relative(&factors, &factors_ref);
            assert!(err < 1e-5, "weight-gradient factors: {err}");
        }
    }
}
