//! The fused CPU kernel of [`crate::grad::sequence`]: the same forward and backward pass, written as
//! plain `f32` loops and direct matrix-multiply calls on the host.
//!
//! On the CPU backends a 784-step sequence spent about half of its time outside the matrix
//! products: an allocation, a strided copy or a separate pass over memory for each of the
//! dozens of element-wise ops of a step. Here a step is a few passes over preallocated
//! buffers, and the products go straight to the `gemm` crate (the kernel Burn's `flex`
//! backend uses itself). The batch is split into one shard per core; the samples of a
//! shard never interact, so each core runs its shard through all steps, forward and back,
//! without synchronising, and the weight gradients of the shards are summed at the end.
//!
//! The equations and their order of evaluation are those of [`crate::cell`] and
//! [`crate::grad::sequence`], so the values agree with the tensor path to rounding (a test checks
//! every gradient against Burn's autodiff to 1e-5). Weight gradients `Σ_t stateᵀ δ` are
//! accumulated every [`CHUNK`] steps as one product over `CHUNK · rows` samples, which keeps
//! the products large without holding the deltas of all 784 steps.

use std::cell::RefCell;

use crate::cell::CellWeights;
use crate::kernels::elementwise::{relu, sigmoid, transpose};
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};
use crate::kernels::pool::Spare;
use crate::kernels::simd::{Isa, by_isa, row_copies, vectorized};
#[cfg(test)]
use crate::kernels::simd::{TEST_ROW_LENGTHS, bits, test_row};
use crate::kernels::threads::{first_rows, on_threads, shard_rows, time_major_rows};

/// Steps whose weight gradients are accumulated in one product.
const CHUNK: usize = 16;

/// The derived weights of a [`crate::PreparedCell`] on the host, row-major.
#[derive(Debug, Clone)]
pub(crate) struct HostCell {
    pub(crate) n: usize,
    pub(crate) n_in: usize,
    pub(crate) w: CellWeights<Vec<f32>>,
    pub(crate) sigma_sq: f32,
    pub(crate) rectified: bool,
    /// `z = ⌊W_zx x⌋` (else `W_zx x`).
    pub(crate) rectified_input: bool,
}

/// The weights the backward pass multiplies by, transposed once per sequence (not per
/// shard or step) so that every product reads contiguous rows.
struct Transposed {
    /// `w_yᵀ`, `[3n, n]`.
    w_y: Vec<f32>,
    /// `w_aᵀ`, `[2n, n]`.
    w_a: Vec<f32>,
    /// `W = (Wᵀ)ᵀ`, `[n, n]`.
    w_norm: Vec<f32>,
}

impl Transposed {
    fn of(c: &HostCell) -> Self {
        let n = c.n;
        Transposed {
            w_y: transpose(&c.w.w_y, n, 3 * n),
            w_a: transpose(&c.w.w_a, n, 2 * n),
            w_norm: transpose(&c.w.w_norm_t, n, n),
        }
    }
}

/// What a shard's forward pass keeps for its backward pass. Index `t` of a per-step array
/// is the block `[t·rows·n, (t+1)·rows·n)`, row-major `[rows, n]`.
#[derive(Debug)]
pub(crate) struct ShardTape {
    rows: usize,
    steps: usize,
    /// Inputs, `[T, rows, n_in]`.
    x: Vec<f32>,
    /// The states before each step and after the last, `[T + 1, rows, n]` each.
    y: Vec<f32>,
    a: Vec<f32>,
    b0: Vec<f32>,
    b1: Vec<f32>,
    /// Per step: `W_zx x`, `W_r y` (before rectification), the gain targets and `da/dt`.
    zx: Vec<f32>,
    ry: Vec<f32>,
    g0: Vec<f32>,
    g1: Vec<f32>,
    da: Vec<f32>,
}

thread_local! {
    /// Tape buffers of finished sequences, kept for the next one on this thread
    /// (see [`Spare`]).
    static SPARE: RefCell<Spare<Vec<f32>>> = const { RefCell::new(Spare::new()) };
}

impl ShardTape {
    /// A tape for `rows` samples over `steps` steps of `n` neurons, its buffers taken from
    /// `spare` where it can, with stale contents: the forward pass writes every element
    /// (the first state included) before anything reads it.
    fn new(spare: &mut Spare<Vec<f32>>, x: Vec<f32>, rows: usize, steps: usize, n: usize) -> Self {
        let block = rows * n;
        let mut states = || spare.reused((steps + 1) * block);
        let (y, a, b0, b1) = (states(), states(), states(), states());
        let mut per_step = || spare.reused(steps * block);
        ShardTape {
            rows,
            steps,
            x,
            y,
            a,
            b0,
            b1,
            zx: per_step(),
            ry: per_step(),
            g0: per_step(),
            g1: per_step(),
            da: per_step(),
        }
    }

    /// The buffers worth keeping for the next sequence.
    fn into_buffers(self) -> [Vec<f32>; 9] {
        [
            self.y, self.a, self.b0, self.b1, self.zx, self.ry, self.g0, self.g1, self.da,
        ]
    }

    /// The state after the last step: `y, a, b0, b1`, `[rows, n]` each.
    pub(crate) fn last(&self, n: usize) -> [&[f32]; 4] {
        let block = self.rows * n;
        let at = self.steps * block;
        [
            &self.y[at..at + block],
            &self.a[at..at + block],
            &self.b0[at..at + block],
            &self.b1[at..at + block],
        ]
    }
}

/// Gradients with respect to a [`HostCell`]'s weights, same shapes.
pub(crate) type HostGrads = CellWeights<Vec<f32>>;

impl HostGrads {
    fn zeros(c: &HostCell) -> Self {
        CellWeights::shapes(c.n_in, c.n).map(|[rows, cols]| vec![0.0; rows * cols])
    }

    fn add(self, other: &HostGrads) -> Self {
        self.zip(other.as_ref()).map(|(mut acc, g)| {
            acc.iter_mut().zip(g).for_each(|(a, b)| *a += b);
            acc
        })
    }
}

/// A recorded sequence on the host: one tape per shard of the batch.
#[derive(Debug)]
pub(crate) struct HostSequence {
    pub(crate) cell: HostCell,
    pub(crate) shards: Vec<ShardTape>,
}

impl Drop for HostSequence {
    fn drop(&mut self) {
        let buffers: Vec<Vec<f32>> = self
            .shards
            .drain(..)
            .flat_map(ShardTape::into_buffers)
            .collect();
        SPARE.with_borrow_mut(|spare| spare.give(buffers));
    }
}

impl HostSequence {
    /// Runs the circuit from `initial` (`y, a, b0, b1`, `[n]` each, the same for every
    /// sample) over `input`, row-major `[batch, steps, n_in]`.
    pub(crate) fn forward(
        cell: HostCell,
        initial: [&[f32]; 4],
        input: &[f32],
        batch: usize,
        steps: usize,
    ) -> Self {
        let n_in = cell.n_in;
        assert_eq!(input.len(), batch * steps * n_in, "input length");
        // The tapes are taken on this thread, which keeps the spare buffers between calls.
        let tapes: Vec<_> = SPARE.with_borrow_mut(|spare| {
            shard_rows(batch)
                .into_iter()
                .map(|(first, rows)| {
                    let x = vec![0.0; steps * rows * n_in];
                    (first, ShardTape::new(spare, x, rows, steps, cell.n))
                })
                .collect()
        });
        let shards = on_threads(tapes, |(first, mut tape)| {
            time_major_rows(input, first, tape.rows, steps, n_in, &mut tape.x);
            forward_shard(&cell, initial, &mut tape);
            tape
        });
        HostSequence { cell, shards }
    }

    /// The rows of the final `y, a, b0, b1` of all shards, `[batch, n]` each, row-major.
    pub(crate) fn last(&self) -> [Vec<f32>; 4] {
        let mut out: [Vec<f32>; 4] = Default::default();
        for shard in &self.shards {
            for (o, part) in out.iter_mut().zip(shard.last(self.cell.n)) {
                o.extend_from_slice(part);
            }
        }
        out
    }

    /// Backpropagates `grad_y` (`[batch, n]`, row-major), the loss gradient with respect to
    /// the final `y`, through every step.
    pub(crate) fn backward(&self, grad_y: &[f32]) -> HostGrads {
        let n = self.cell.n;
        let (starts, batch) = first_rows(&self.shards, |s| s.rows);
        assert_eq!(grad_y.len(), batch * n, "gradient length");
        let transposed = Transposed::of(&self.cell);
        let parts = on_threads(starts, |(shard, first)| {
            backward_shard(
                &self.cell,
                &transposed,
                shard,
                &grad_y[first * n..(first + shard.rows) * n],
            )
        });
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_else(|| HostGrads::zeros(&self.cell));
        parts.fold(first, |acc, g| acc.add(&g))
    }
}

/// One shard through every step (see [`crate::cell`] for the equations).
fn forward_shard(c: &HostCell, initial: [&[f32]; 4], tape: &mut ShardTape) {
    vectorized(
        #[inline(always)]
        || forward_shard_body(c, initial, tape),
    )
}

#[inline(always)]
fn forward_shard_body(c: &HostCell, initial: [&[f32]; 4], tape: &mut ShardTape) {
    let (n, n_in) = (c.n, c.n_in);
    let (rows, steps) = (tape.rows, tape.steps);
    let block = rows * n;
    for (state, init) in [&mut tape.y, &mut tape.a, &mut tape.b0, &mut tape.b1]
        .into_iter()
        .zip(initial)
    {
        for r in 0..rows {
            state[r * n..(r + 1) * n].copy_from_slice(init);
        }
    }
    let w_x = Mat::new(&c.w.w_x, 0, n_in, 3 * n);
    let w_y = Mat::new(&c.w.w_y, 0, n, 3 * n);
    let w_a = Mat::new(&c.w.w_a, 0, n, 2 * n);
    let w_norm_t = Mat::new(&c.w.w_norm_t, 0, n, n);
    // Pre-activations of both gains, `[rows, 2n]`; the normalization pool's input and output.
    let mut gains = vec![0.0f32; rows * 2 * n];
    let mut u = vec![0.0f32; block];
    let mut pooled = vec![0.0f32; block];
    let sigma_sq = c.sigma_sq;
    let (r_y, r_a, r_b0, r_b1) = (&c.w.r_y[..], &c.w.r_a[..], &c.w.r_b0[..], &c.w.r_b1[..]);
    for t in 0..steps {
        let at = t * block;
        let x_t = Mat::new(&tape.x, t * rows * n_in, rows, n_in);
        let y_t = Mat::new(&tape.y, at, rows, n);
        let a_t = Mat::new(&tape.a, at, rows, n);
        matmul(&mut tape.zx, at, n, x_t, w_x.cols(0, n), false);
        matmul(&mut tape.ry, at, n, y_t, w_y.cols(0, n), false);
        matmul(&mut gains, 0, 2 * n, x_t, w_x.cols(n, 2 * n), false);
        matmul(&mut gains, 0, 2 * n, y_t, w_y.cols(n, 2 * n), true);
        matmul(&mut gains, 0, 2 * n, a_t, w_a, true);
        for ((u, y), a) in u
            .iter_mut()
            .zip(&tape.y[at..at + block])
            .zip(&tape.a[at..at + block])
        {
            let y_act = if c.rectified { relu(*y) } else { *y };
            *u = y_act * y_act * relu(*a);
        }
        matmul(&mut pooled, 0, n, Mat::new(&u, 0, rows, n), w_norm_t, false);

        // The state after the step goes to slot t + 1.
        let (y_now, y_next) = tape.y.split_at_mut(at + block);
        let (a_now, a_next) = tape.a.split_at_mut(at + block);
        let (b0_now, b0_next) = tape.b0.split_at_mut(at + block);
        let (b1_now, b1_next) = tape.b1.split_at_mut(at + block);
        for r in 0..rows {
            let row = at + r * n..at + (r + 1) * n;
            let local = r * n..(r + 1) * n;
            let (y, a, b0, b1) = (
                &y_now[row.clone()],
                &a_now[row.clone()],
                &b0_now[row.clone()],
                &b1_now[row.clone()],
            );
            let (y2, a2, b02, b12) = (
                &mut y_next[local.clone()],
                &mut a_next[local.clone()],
                &mut b0_next[local.clone()],
                &mut b1_next[local.clone()],
            );
            let (zx, ry) = (&tape.zx[row.clone()], &tape.ry[row.clone()]);
            let (g0, g1, da) = (
                &mut tape.g0[row.clone()],
                &mut tape.g1[row.clone()],
                &mut tape.da[row.clone()],
            );
            let (h0, h1) = gains[r * 2 * n..(r + 1) * 2 * n].split_at(n);
            let p = &pooled[local];
            // Every slice cut to exactly n, so the loop carries no bounds checks and vectorises.
            cut!(n; y, a, b0, b1, zx, ry, h0, h1, p, r_y, r_a, r_b0, r_b1);
            cut_mut!(n; y2, a2, b02, b12, g0, g1, da);
            for j in 0..n {
                let z = if c.rectified_input {
                    relu(zx[j])
                } else {
                    zx[j]
                };
                let rec = if c.rectified { relu(ry[j]) } else { ry[j] };
                let gate = -relu(a[j]).sqrt() + 1.0;
                let dy = b1[j] * z + gate * rec - y[j];
                let d_a = b0[j] * b0[j] * sigma_sq + p[j] - a[j];
                g0[j] = sigmoid(h0[j]);
                g1[j] = sigmoid(h1[j]);
                da[j] = d_a;
                y2[j] = y[j] + r_y[j] * dy;
                a2[j] = a[j] + r_a[j] * d_a;
                b02[j] = b0[j] + r_b0[j] * (g0[j] - b0[j]);
                b12[j] = b1[j] + r_b1[j] * (g1[j] - b1[j]);
            }
        }
    }
}

/// Rows `first..first + rows` of a row-major matrix of `width` columns.
fn time_major(v: &[f32], first: usize, rows: usize, width: usize) -> Mat<'_> {
    Mat::new(v, first * width, rows, width)
}

/// One shard back through every step (see [`crate::grad::sequence`] for the equations).
fn backward_shard(c: &HostCell, tr: &Transposed, tape: &ShardTape, grad_y: &[f32]) -> HostGrads {
    vectorized(
        #[inline(always)]
        || backward_shard_body(c, tr, tape, grad_y),
    )
}

#[inline(always)]
fn backward_shard_body(
    c: &HostCell,
    tr: &Transposed,
    tape: &ShardTape,
    grad_y: &[f32],
) -> HostGrads {
    let (n, n_in, rows, steps) = (c.n, c.n_in, tape.rows, tape.steps);
    let block = rows * n;
    let mut acc = HostGrads::zeros(c);
    let mut gy = grad_y.to_vec();
    let mut ga = vec![0.0f32; block];
    let mut gb0 = vec![0.0f32; block];
    let mut gb1 = vec![0.0f32; block];
    let mut d_u = vec![0.0f32; block];
    // Per chunk of steps: the deltas of the products with y and a (`[δrec, δh0, δh1]`,
    // `[CHUNK·rows, 3n]`), of `W_zx x`, and the pool's input and output delta.
    let mut d_from_y = vec![0.0f32; CHUNK * rows * 3 * n];
    let mut d_zx = vec![0.0f32; CHUNK * block];
    let mut pool_in = vec![0.0f32; CHUNK * block];
    let mut d_pool = vec![0.0f32; CHUNK * block];
    let sigma2 = 2.0 * c.sigma_sq;
    let isa = Isa::detect();
    let (r_y, r_a, r_b0, r_b1) = (&c.w.r_y[..], &c.w.r_a[..], &c.w.r_b0[..], &c.w.r_b1[..]);
    let w_norm = Mat::new(&tr.w_norm, 0, n, n);
    let w_y_t = Mat::new(&tr.w_y, 0, 3 * n, n);
    let w_a_t = Mat::new(&tr.w_a, 0, 2 * n, n);

    let mut end = steps;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        for t in (start..end).rev() {
            let slot = t - start;
            let at = t * block;
            let sb = slot * block;
            let (y_all, a_all) = (&tape.y[at..at + block], &tape.a[at..at + block]);
            // The pool: its input u = ⌊y⌋²⌊a⌋ and output delta δa = r_a ⊙ ḡ_a'.
            for r in 0..rows {
                let (y, a) = (&y_all[r * n..(r + 1) * n], &a_all[r * n..(r + 1) * n]);
                let u = &mut pool_in[sb + r * n..sb + (r + 1) * n];
                let d_a = &mut d_pool[sb + r * n..sb + (r + 1) * n];
                let g = &ga[r * n..(r + 1) * n];
                cut!(n; y, a, g, r_a);
                cut_mut!(n; u, d_a);
                for j in 0..n {
                    let y_act = if c.rectified { relu(y[j]) } else { y[j] };
                    u[j] = y_act * y_act * relu(a[j]);
                    d_a[j] = r_a[j] * g[j];
                }
            }
            matmul(
                &mut d_u,
                0,
                n,
                Mat::new(&d_pool, sb, rows, n),
                w_norm,
                false,
            );

            for r in 0..rows {
                let row = at + r * n..at + (r + 1) * n;
                let local = r * n..(r + 1) * n;
                let deltas = &mut d_from_y[(slot * rows + r) * 3 * n..][..3 * n];
                let (d_rec, d_h) = deltas.split_at_mut(n);
                let (d_h0, d_h1) = d_h.split_at_mut(n);
                let inputs = RowIn {
                    y: &tape.y[row.clone()],
                    a: &tape.a[row.clone()],
                    b0: &tape.b0[row.clone()],
                    b1: &tape.b1[row.clone()],
                    zx: &tape.zx[row.clone()],
                    ry: &tape.ry[row.clone()],
                    g0: &tape.g0[row.clone()],
                    g1: &tape.g1[row.clone()],
                    da: &tape.da[row],
                    du: &d_u[local.clone()],
                    d_a: &d_pool[sb + r * n..sb + (r + 1) * n],
                    r_y,
                    r_b0,
                    r_b1,
                };
                row_back(
                    isa,
                    c.rectified,
                    c.rectified_input,
                    sigma2,
                    &inputs,
                    d_rec,
                    d_h0,
                    d_h1,
                    &mut d_zx[sb + r * n..sb + (r + 1) * n],
                    &mut gy[local.clone()],
                    &mut ga[local.clone()],
                    &mut gb0[local.clone()],
                    &mut gb1[local],
                    &mut acc.r_y,
                    &mut acc.r_a,
                    &mut acc.r_b0,
                    &mut acc.r_b1,
                );
            }
            let deltas = Mat::new(&d_from_y, slot * rows * 3 * n, rows, 3 * n);
            matmul(&mut gy, 0, n, deltas, w_y_t, true);
            matmul(&mut ga, 0, n, deltas.cols(n, 2 * n), w_a_t, true);
        }

        // Weight gradients of the chunk: Σ_t stateᵀ δ as one product over its samples.
        let samples = (end - start) * rows;
        let states = |v, width| time_major(v, start * rows, samples, width).t();
        let deltas = Mat::new(&d_from_y, 0, samples, 3 * n);
        matmul(&mut acc.w_y, 0, 3 * n, states(&tape.y, n), deltas, true);
        matmul(
            &mut acc.w_a,
            0,
            2 * n,
            states(&tape.a, n),
            deltas.cols(n, 2 * n),
            true,
        );
        let (pool, d_pool_m) = (
            Mat::new(&pool_in, 0, samples, n),
            Mat::new(&d_pool, 0, samples, n),
        );
        matmul(&mut acc.w_norm_t, 0, n, pool.t(), d_pool_m, true);
        let x = states(&tape.x, n_in);
        matmul(
            &mut acc.w_x,
            0,
            3 * n,
            x,
            Mat::new(&d_zx, 0, samples, n),
            true,
        );
        matmul(&mut acc.w_x, n, 3 * n, x, deltas.cols(n, 2 * n), true);
        end = start;
    }
    acc
}

/// [`backward_row`] for the model's variant (constants in each copy, so that each loop is
/// compiled without the other variants' branches), in the copy compiled for `isa`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_back(
    isa: Isa,
    rectified: bool,
    rectified_input: bool,
    sigma2: f32,
    inputs: &RowIn,
    d_rec: &mut [f32],
    d_h0: &mut [f32],
    d_h1: &mut [f32],
    dz: &mut [f32],
    gy: &mut [f32],
    ga: &mut [f32],
    gb0: &mut [f32],
    gb1: &mut [f32],
    acc_ry: &mut [f32],
    acc_ra: &mut [f32],
    acc_rb0: &mut [f32],
    acc_rb1: &mut [f32],
) {
    macro_rules! call {
        ($rectified:literal, $input:literal) => {
            by_isa!(
                isa,
                backward_row_avx512::<$rectified, $input>,
                backward_row_avx2::<$rectified, $input>,
                backward_row_baseline::<$rectified, $input>,
                (
                    sigma2, inputs, d_rec, d_h0, d_h1, dz, gy, ga, gb0, gb1, acc_ry, acc_ra,
                    acc_rb0, acc_rb1
                )
            )
        };
    }
    match (rectified, rectified_input) {
        (true, true) => call!(true, true),
        (true, false) => call!(true, false),
        (false, true) => call!(false, true),
        (false, false) => call!(false, false),
    }
}

/// What [`backward_row`] reads: one row of the tape at a step, the pool's deltas, the
/// step ratios.
struct RowIn<'a> {
    y: &'a [f32],
    a: &'a [f32],
    b0: &'a [f32],
    b1: &'a [f32],
    zx: &'a [f32],
    ry: &'a [f32],
    g0: &'a [f32],
    g1: &'a [f32],
    da: &'a [f32],
    du: &'a [f32],
    d_a: &'a [f32],
    r_y: &'a [f32],
    r_b0: &'a [f32],
    r_b1: &'a [f32],
}

row_copies! {
    /// The element-wise part of one row's step back: the deltas of the products, the gradients
    /// of the state before the step (before the products with the weights are added) and the
    /// step ratios' gradient sums. It runs through the copies [`row_copies`] makes of it, one
    /// per instruction set (see there for why).
    fn backward_row<const RECTIFIED: bool, const RECTIFIED_INPUT: bool>(
        sigma2: f32,
        inputs: &RowIn,
        d_rec: &mut [f32],
        d_h0: &mut [f32],
        d_h1: &mut [f32],
        dz: &mut [f32],
        gy: &mut [f32],
        ga: &mut [f32],
        gb0: &mut [f32],
        gb1: &mut [f32],
        acc_ry: &mut [f32],
        acc_ra: &mut [f32],
        acc_rb0: &mut [f32],
        acc_rb1: &mut [f32],
    ) {
        let RowIn {
            y,
            a,
            b0,
            b1,
            zx,
            ry,
            g0,
            g1,
            da,
            du,
            d_a,
            r_y,
            r_b0,
            r_b1,
        } = *inputs;
        let n = gy.len();
        cut!(n; y, a, b0, b1, zx, ry, g0, g1, da, du, d_a, r_y, r_b0, r_b1);
        cut_mut!(n; d_rec, d_h0, d_h1, dz, gy, ga, gb0, gb1, acc_ry, acc_ra, acc_rb0, acc_rb1);
        for j in 0..n {
            let z = if RECTIFIED_INPUT { relu(zx[j]) } else { zx[j] };
            let rec = if RECTIFIED { relu(ry[j]) } else { ry[j] };
            let a_pos = relu(a[j]);
            let sqrt_a = a_pos.sqrt();
            let gate = -sqrt_a + 1.0;
            let y_act = if RECTIFIED { relu(y[j]) } else { y[j] };
            let y_sq = y_act * y_act;
            let dy = b1[j] * z + gate * rec - y[j];

            // Step ratios: r ⊙ Δ, so ∂/∂r = Σ_batch Δ ⊙ ḡ'.
            acc_ry[j] += dy * gy[j];
            acc_ra[j] += da[j] * ga[j];
            acc_rb0[j] += (g0[j] - b0[j]) * gb0[j];
            acc_rb1[j] += (g1[j] - b1[j]) * gb1[j];

            let d_y = r_y[j] * gy[j];
            let d_g0 = r_b0[j] * gb0[j];
            let d_g1 = r_b1[j] * gb1[j];
            let mut dr = d_y * gate;
            if RECTIFIED && ry[j] <= 0.0 {
                dr = 0.0;
            }
            d_rec[j] = dr;
            d_h0[j] = d_g0 * g0[j] * (-g0[j] + 1.0);
            d_h1[j] = d_g1 * g1[j] * (-g1[j] + 1.0);
            dz[j] = if RECTIFIED_INPUT && zx[j] <= 0.0 {
                0.0
            } else {
                d_y * b1[j]
            };

            let d_a_pos = if a[j] <= 0.0 {
                0.0
            } else {
                -(d_y * rec) / (sqrt_a * 2.0) + du[j] * y_sq
            };
            let mut d_y_act = du[j] * a_pos * y_act * 2.0;
            if RECTIFIED && y[j] <= 0.0 {
                d_y_act = 0.0;
            }
            // The products with the weights are added below.
            gy[j] = gy[j] - d_y + d_y_act;
            ga[j] = ga[j] - d_a[j] + d_a_pos;
            gb0[j] = gb0[j] - r_b0[j] * gb0[j] + b0[j] * d_a[j] * sigma2;
            gb1[j] = gb1[j] - r_b1[j] * gb1[j] + z * d_y;
        }
    }
    => backward_row_avx512, backward_row_avx2, backward_row_baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(n_in: usize, n: usize) -> HostCell {
        let w = CellWeights::shapes(n_in, n).map(|[rows, cols]| {
            (0..rows * cols)
                .map(|i| ((i * 7919 % 1000) as f32 / 1000.0) * 0.2)
                .collect::<Vec<f32>>()
        });
        HostCell {
            n,
            n_in,
            w,
            sigma_sq: 0.01,
            rectified: true,
            rectified_input: true,
        }
    }

    /// Every compiled copy of the row's step back this CPU can run gives the same bits as
    /// the baseline copy, for the variants of the model, at lengths that run the vector
    /// loops and their remainders, with inputs on both sides of every branch (`a`, `W_r y`,
    /// `W_zx x` and `y` below, at and above zero). The equivalence tests against autodiff
    /// run whichever copy the CPU picks; this covers the others.
    #[test]
    fn every_copy_of_the_row_step_back_agrees() {
        for n in TEST_ROW_LENGTHS {
            let ins: Vec<Vec<f32>> = (0..14).map(|k| test_row(k, n)).collect();
            let inputs = RowIn {
                y: &ins[0],
                a: &ins[1],
                b0: &ins[2],
                b1: &ins[3],
                zx: &ins[4],
                ry: &ins[5],
                g0: &ins[6],
                g1: &ins[7],
                da: &ins[8],
                du: &ins[9],
                d_a: &ins[10],
                r_y: &ins[11],
                r_b0: &ins[12],
                r_b1: &ins[13],
            };
            let run = |isa: Isa, rectified: bool, rectified_input: bool| {
                let mut outs: Vec<Vec<f32>> = (0..12).map(|k| test_row(20 + k, n)).collect();
                let [d_rec, d_h0, d_h1, dz, gy, ga, gb0, gb1, ry, ra, rb0, rb1] = &mut outs[..]
                else {
                    unreachable!("twelve outputs")
                };
                row_back(
                    isa,
                    rectified,
                    rectified_input,
                    0.02,
                    &inputs,
                    d_rec,
                    d_h0,
                    d_h1,
                    dz,
                    gy,
                    ga,
                    gb0,
                    gb1,
                    ry,
                    ra,
                    rb0,
                    rb1,
                );
                bits(&outs)
            };
            let isas = Isa::available();
            for (rectified, input) in [(false, true), (true, true), (true, false)] {
                let want = run(isas[0], rectified, input);
                for &isa in &isas[1..] {
                    let got = run(isa, rectified, input);
                    assert!(
                        got == want,
                        "{isa:?}, rectified {rectified} (input {input}), n {n}"
                    );
                }
            }
        }
    }

    /// Tape buffers left by earlier calls hold stale values: the forward pass writes every
    /// element it later reads, whatever they held.
    #[test]
    fn stale_spare_buffers_do_not_leak_into_a_sequence() {
        let (batch, steps, n_in, n) = (4, 12, 1, 5);
        let input: Vec<f32> = (0..batch * steps * n_in)
            .map(|i| (i % 7) as f32 / 7.0)
            .collect();
        let initial = vec![0.1f32; n];
        let run = || {
            let init = [&initial[..], &initial[..], &initial[..], &initial[..]];
            let seq = HostSequence::forward(cell(n_in, n), init, &input, batch, steps);
            let g = seq.backward(&vec![1.0; batch * n]);
            (seq.last(), g.w_y, g.w_x, g.r_y)
        };
        let fresh = run();
        // Replace every buffer this thread keeps for the next call by poisoned ones.
        SPARE.with_borrow_mut(|spare| {
            while spare.take(|_| true).is_some() {}
            spare.give((0..20).map(|_| vec![f32::NAN; 10_000]).collect::<Vec<_>>())
        });
        assert_eq!(run(), fresh);
    }
}
