//! The fused CPU kernel of [`crate::grad::lstm`]: an LSTM over a sequence and its
//! backpropagation through time as `f32` loops over preallocated buffers, with the products
//! handed to `gemm`.
//!
//! Burn's `nn::Lstm` through autodiff runs, per step, eight small products (an input and a
//! hidden transform for each of the four gates), a slice-assign of the hidden state into the
//! output tensor and a graph node for every element-wise op. Here the four gates' weights are
//! stacked into one `[n_in, 4n]` and one `[n, 4n]` matrix, so a step is two products and one
//! pass over the gates, forward and back. The batch is split into one shard per core, as in
//! [`super::sequence`]: the samples of a shard never interact, so each core runs its shard
//! through every step without synchronising, and the weight gradients `Σ_t stateᵀ δ` are
//! taken every [`CHUNK`] steps as one larger product.

use std::cell::RefCell;

use crate::kernels::elementwise::{sigmoid, tanh, transpose};
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};
use crate::kernels::pool::Spare;
use crate::kernels::simd::{Isa, by_isa, row_copies, vectorized};
#[cfg(test)]
use crate::kernels::simd::{TEST_ROW_LENGTHS, bits, test_row};
use crate::kernels::threads::{first_rows, on_threads, shard_rows, time_major_rows};

/// Steps whose weight gradients are accumulated in one product.
const CHUNK: usize = 16;

/// Gates per unit, in the order of their columns: input `i`, forget `f`, output `o`, and the
/// candidate cell value `g`.
pub(crate) const GATES: usize = 4;

/// An LSTM's weights on the host, row-major, the gates' columns side by side.
#[derive(Debug, Clone)]
pub(crate) struct HostLstm {
    pub(crate) n_in: usize,
    pub(crate) n: usize,
    /// Input weights, `[n_in, 4n]`.
    pub(crate) w_x: Vec<f32>,
    /// Hidden weights, `[n, 4n]`.
    pub(crate) w_h: Vec<f32>,
    /// The input and hidden transforms' biases added, `[4n]`.
    pub(crate) bias: Vec<f32>,
}

/// Gradients with respect to a [`HostLstm`]'s weights, same shapes.
#[derive(Debug)]
pub(crate) struct LstmGrads {
    pub(crate) w_x: Vec<f32>,
    pub(crate) w_h: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl LstmGrads {
    fn zeros(c: &HostLstm) -> Self {
        LstmGrads {
            w_x: vec![0.0; c.w_x.len()],
            w_h: vec![0.0; c.w_h.len()],
            bias: vec![0.0; c.bias.len()],
        }
    }

    fn add(mut self, other: &LstmGrads) -> Self {
        for (acc, g) in [
            (&mut self.w_x, &other.w_x),
            (&mut self.w_h, &other.w_h),
            (&mut self.bias, &other.bias),
        ] {
            acc.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        self
    }
}

/// What a shard's forward pass keeps for its backward pass, time-major: index `t` of a
/// per-step array is the block of step `t`, `[rows, width]` row-major.
#[derive(Debug)]
struct ShardTape {
    rows: usize,
    steps: usize,
    /// Inputs, `[T, rows, n_in]`.
    x: Vec<f32>,
    /// Hidden and cell states before each step and after the last, `[T + 1, rows, n]`.
    h: Vec<f32>,
    c: Vec<f32>,
    /// The activated gates of each step, `[T, rows, 4n]`: `σ(i), σ(f), σ(o), tanh(g)`.
    gates: Vec<f32>,
}

thread_local! {
    /// Tape buffers of finished sequences, kept for the next one on this thread
    /// (see [`Spare`]).
    static SPARE: RefCell<Spare<Vec<f32>>> = const { RefCell::new(Spare::new()) };
}

/// A recorded LSTM sequence on the host: one tape per shard of the batch.
#[derive(Debug)]
pub(crate) struct LstmSequence {
    pub(crate) cell: HostLstm,
    shards: Vec<ShardTape>,
}

impl Drop for LstmSequence {
    fn drop(&mut self) {
        let buffers: Vec<Vec<f32>> = self
            .shards
            .drain(..)
            .flat_map(|t| [t.h, t.c, t.gates])
            .collect();
        SPARE.with_borrow_mut(|spare| spare.give(buffers));
    }
}

impl LstmSequence {
    /// Runs the LSTM from zero hidden and cell states over `input`, row-major
    /// `[batch, steps, n_in]`.
    pub(crate) fn forward(cell: HostLstm, input: &[f32], batch: usize, steps: usize) -> Self {
        let (n, n_in) = (cell.n, cell.n_in);
        assert_eq!(input.len(), batch * steps * n_in, "input length");
        assert_eq!(cell.w_x.len(), n_in * GATES * n, "input weights");
        assert_eq!(cell.w_h.len(), n * GATES * n, "hidden weights");
        assert_eq!(cell.bias.len(), GATES * n, "biases");
        let tapes: Vec<_> = SPARE.with_borrow_mut(|spare| {
            shard_rows(batch)
                .into_iter()
                .map(|(first, rows)| {
                    // The forward pass writes every element of the tape but the states
                    // before the first step, which are zero.
                    let (mut h, mut c) = (
                        spare.reused((steps + 1) * rows * n),
                        spare.reused((steps + 1) * rows * n),
                    );
                    h[..rows * n].fill(0.0);
                    c[..rows * n].fill(0.0);
                    let tape = ShardTape {
                        rows,
                        steps,
                        x: vec![0.0; steps * rows * n_in],
                        h,
                        c,
                        gates: spare.reused(steps * rows * GATES * n),
                    };
                    (first, tape)
                })
                .collect()
        });
        let shards = on_threads(tapes, |(first, mut tape)| {
            time_major_rows(input, first, tape.rows, steps, n_in, &mut tape.x);
            forward_shard(&cell, &mut tape);
            tape
        });
        LstmSequence { cell, shards }
    }

    /// The hidden state after the last step, `[batch, n]` row-major.
    pub(crate) fn last_hidden(&self) -> Vec<f32> {
        let n = self.cell.n;
        let mut out = Vec::new();
        for s in &self.shards {
            let at = s.steps * s.rows * n;
            out.extend_from_slice(&s.h[at..at + s.rows * n]);
        }
        out
    }

    /// Backpropagates `grad_h` (`[batch, n]`, row-major), the loss gradient with respect to
    /// the last hidden state, through every step.
    pub(crate) fn backward(&self, grad_h: &[f32]) -> LstmGrads {
        let n = self.cell.n;
        let (starts, batch) = first_rows(&self.shards, |s| s.rows);
        assert_eq!(grad_h.len(), batch * n, "gradient length");
        // `W_hᵀ`, `[4n, n]`, once per sequence: the backward products read contiguous rows.
        let w_h_t = transpose(&self.cell.w_h, n, GATES * n);
        let parts = on_threads(starts, |(shard, first)| {
            backward_shard(
                &self.cell,
                &w_h_t,
                shard,
                &grad_h[first * n..(first + shard.rows) * n],
            )
        });
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_else(|| LstmGrads::zeros(&self.cell));
        parts.fold(first, |acc, g| acc.add(&g))
    }
}

/// One shard through every step (equations in [`crate::grad::lstm`]).
fn forward_shard(c: &HostLstm, tape: &mut ShardTape) {
    vectorized(
        #[inline(always)]
        || forward_shard_body(c, tape),
    )
}

#[inline(always)]
fn forward_shard_body(c: &HostLstm, tape: &mut ShardTape) {
    let (n, n_in, w) = (c.n, c.n_in, GATES * c.n);
    let ShardTape {
        rows,
        steps,
        x,
        h,
        c: cells,
        gates,
    } = tape;
    let (rows, steps) = (*rows, *steps);
    let block = rows * n;
    let w_x = Mat::new(&c.w_x, 0, n_in, w);
    let w_h = Mat::new(&c.w_h, 0, n, w);
    for t in 0..steps {
        let g_at = t * rows * w;
        for r in 0..rows {
            gates[g_at + r * w..][..w].copy_from_slice(&c.bias);
        }
        matmul(
            gates,
            g_at,
            w,
            Mat::new(x, t * rows * n_in, rows, n_in),
            w_x,
            true,
        );
        matmul(gates, g_at, w, Mat::new(h, t * block, rows, n), w_h, true);

        // The states after the step go to slot t + 1.
        let h_next = &mut h[(t + 1) * block..(t + 2) * block];
        let (c_now, c_next) = cells.split_at_mut((t + 1) * block);
        for r in 0..rows {
            let pre = &mut gates[g_at + r * w..][..w];
            let (i, rest) = pre.split_at_mut(n);
            let (f, rest) = rest.split_at_mut(n);
            let (o, g) = rest.split_at_mut(n);
            let c_prev = &c_now[t * block + r * n..][..n];
            let (c2, h2) = (&mut c_next[r * n..][..n], &mut h_next[r * n..][..n]);
            cut!(n; c_prev);
            cut_mut!(n; i, f, o, g, c2, h2);
            for j in 0..n {
                i[j] = sigmoid(i[j]);
                f[j] = sigmoid(f[j]);
                o[j] = sigmoid(o[j]);
                g[j] = tanh(g[j]);
                c2[j] = f[j] * c_prev[j] + i[j] * g[j];
                h2[j] = o[j] * tanh(c2[j]);
            }
        }
    }
}

/// One shard back through every step (equations in [`crate::grad::lstm`]).
fn backward_shard(c: &HostLstm, w_h_t: &[f32], tape: &ShardTape, grad_h: &[f32]) -> LstmGrads {
    vectorized(
        #[inline(always)]
        || backward_shard_body(c, w_h_t, tape, grad_h),
    )
}

#[inline(always)]
fn backward_shard_body(c: &HostLstm, w_h_t: &[f32], tape: &ShardTape, grad_h: &[f32]) -> LstmGrads {
    let (n, n_in, w) = (c.n, c.n_in, GATES * c.n);
    let (rows, steps) = (tape.rows, tape.steps);
    let block = rows * n;
    let mut acc = LstmGrads::zeros(c);
    let mut gh = grad_h.to_vec();
    let mut gc = vec![0.0f32; block];
    // The gates' pre-activation deltas of a chunk of steps, `[CHUNK·rows, 4n]`.
    let mut d_pre = vec![0.0f32; CHUNK * rows * w];
    let w_h_t = Mat::new(w_h_t, 0, w, n);
    let isa = Isa::detect();

    let mut end = steps;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        for t in (start..end).rev() {
            let slot = t - start;
            for r in 0..rows {
                let act = &tape.gates[(t * rows + r) * w..][..w];
                let (i, rest) = act.split_at(n);
                let (f, rest) = rest.split_at(n);
                let (o, g) = rest.split_at(n);
                let c_prev = &tape.c[t * block + r * n..][..n];
                let c_next = &tape.c[(t + 1) * block + r * n..][..n];
                let d = &mut d_pre[(slot * rows + r) * w..][..w];
                let (d_i, rest) = d.split_at_mut(n);
                let (d_f, rest) = rest.split_at_mut(n);
                let (d_o, d_g) = rest.split_at_mut(n);
                // The biases' gradient, Σ over steps and samples of the gates' deltas, is
                // summed in the same pass.
                let (b_i, rest) = acc.bias.split_at_mut(n);
                let (b_f, rest) = rest.split_at_mut(n);
                let (b_o, b_g) = rest.split_at_mut(n);
                let inputs = RowIn {
                    i,
                    f,
                    o,
                    g,
                    c_prev,
                    c_next,
                };
                by_isa!(
                    isa,
                    backward_row_avx512,
                    backward_row_avx2,
                    backward_row_baseline,
                    (
                        &inputs,
                        d_i,
                        d_f,
                        d_o,
                        d_g,
                        &mut gh[r * n..][..n],
                        &mut gc[r * n..][..n],
                        b_i,
                        b_f,
                        b_o,
                        b_g,
                    )
                );
            }
            // ḡ_h before the step: the deltas through the hidden weights (the new hidden
            // state depends on the old one only through the gates).
            let deltas = Mat::new(&d_pre, slot * rows * w, rows, w);
            matmul(&mut gh, 0, n, deltas, w_h_t, false);
        }

        // Weight gradients of the chunk: Σ_t stateᵀ δ as one product over its samples.
        let samples = (end - start) * rows;
        let deltas = Mat::new(&d_pre, 0, samples, w);
        let states = |v, width| Mat::new(v, start * rows * width, samples, width).t();
        matmul(&mut acc.w_h, 0, w, states(&tape.h, n), deltas, true);
        matmul(&mut acc.w_x, 0, w, states(&tape.x, n_in), deltas, true);
        end = start;
    }
    acc
}

/// What [`backward_row`] reads: one row's gate activations at a step and the cell state
/// before and after it.
struct RowIn<'a> {
    i: &'a [f32],
    f: &'a [f32],
    o: &'a [f32],
    g: &'a [f32],
    c_prev: &'a [f32],
    c_next: &'a [f32],
}

row_copies! {
    /// The element-wise part of one row's step back: the gates' pre-activation deltas, the cell
    /// state's gradient before the step, and the biases' gradient sums. It runs through the
    /// copies [`row_copies`] makes of it, one per instruction set (see there for why).
    fn backward_row(
        inputs: &RowIn,
        d_i: &mut [f32],
        d_f: &mut [f32],
        d_o: &mut [f32],
        d_g: &mut [f32],
        gh: &mut [f32],
        gc: &mut [f32],
        b_i: &mut [f32],
        b_f: &mut [f32],
        b_o: &mut [f32],
        b_g: &mut [f32],
    ) {
        let RowIn {
            i,
            f,
            o,
            g,
            c_prev,
            c_next,
        } = *inputs;
        let n = gh.len();
        cut!(n; i, f, o, g, c_prev, c_next);
        cut_mut!(n; d_i, d_f, d_o, d_g, gh, gc, b_i, b_f, b_o, b_g);
        for j in 0..n {
            let tc = tanh(c_next[j]);
            let d_out = gh[j] * tc;
            let g_cell = gc[j] + gh[j] * o[j] * (-(tc * tc) + 1.0);
            d_i[j] = g_cell * g[j] * i[j] * (-i[j] + 1.0);
            d_f[j] = g_cell * c_prev[j] * f[j] * (-f[j] + 1.0);
            d_o[j] = d_out * o[j] * (-o[j] + 1.0);
            d_g[j] = g_cell * i[j] * (-(g[j] * g[j]) + 1.0);
            gc[j] = g_cell * f[j];
            b_i[j] += d_i[j];
            b_f[j] += d_f[j];
            b_o[j] += d_o[j];
            b_g[j] += d_g[j];
        }
    }
    => backward_row_avx512, backward_row_avx2, backward_row_baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(n_in: usize, n: usize) -> HostLstm {
        let values = |len: usize, seed: usize| {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.6)
                .collect()
        };
        HostLstm {
            n_in,
            n,
            w_x: values(n_in * GATES * n, 1),
            w_h: values(n * GATES * n, 2),
            bias: values(GATES * n, 3),
        }
    }

    /// Every compiled copy of the row's step back this CPU can run gives the same bits as
    /// the baseline copy, at lengths that run the vector loops and their remainders (the
    /// equivalence tests against autodiff run only the copy the CPU picks).
    #[test]
    fn every_copy_of_the_row_step_back_agrees() {
        for n in TEST_ROW_LENGTHS {
            let ins: Vec<Vec<f32>> = (0..6).map(|k| test_row(k, n)).collect();
            let inputs = RowIn {
                i: &ins[0],
                f: &ins[1],
                o: &ins[2],
                g: &ins[3],
                c_prev: &ins[4],
                c_next: &ins[5],
            };
            let run = |isa: Isa| {
                let mut outs: Vec<Vec<f32>> = (0..10).map(|k| test_row(10 + k, n)).collect();
                let [d_i, d_f, d_o, d_g, gh, gc, b_i, b_f, b_o, b_g] = &mut outs[..] else {
                    unreachable!("ten outputs")
                };
                by_isa!(
                    isa,
                    backward_row_avx512,
                    backward_row_avx2,
                    backward_row_baseline,
                    (&inputs, d_i, d_f, d_o, d_g, gh, gc, b_i, b_f, b_o, b_g)
                );
                bits(&outs)
            };
            let isas = Isa::available();
            let want = run(isas[0]);
            for &isa in &isas[1..] {
                assert!(run(isa) == want, "{isa:?}, n {n}");
            }
        }
    }

    /// Tape buffers left by earlier calls hold stale values: the forward pass must write
    /// every element it later reads (and zero the states before the first step) whatever
    /// they held.
    #[test]
    fn stale_spare_buffers_do_not_leak_into_a_sequence() {
        let (batch, steps, n_in, n) = (4, 12, 2, 5);
        let input: Vec<f32> = (0..batch * steps * n_in)
            .map(|i| (i % 7) as f32 / 7.0)
            .collect();
        let fresh = LstmSequence::forward(cell(n_in, n), &input, batch, steps);
        let (h_fresh, g_fresh) = (fresh.last_hidden(), fresh.backward(&vec![1.0; batch * n]));
        drop(fresh);
        // Replace every buffer this thread keeps for the next call by poisoned ones.
        SPARE.with_borrow_mut(|spare| {
            while spare.take(|_| true).is_some() {}
            spare.give((0..12).map(|_| vec![f32::NAN; 10_000]).collect::<Vec<_>>())
        });
        let stale = LstmSequence::forward(cell(n_in, n), &input, batch, steps);
        assert_eq!(stale.last_hidden(), h_fresh);
        let g_stale = stale.backward(&vec![1.0; batch * n]);
        assert_eq!(g_stale.w_h, g_fresh.w_h);
        assert_eq!(g_stale.w_x, g_fresh.w_x);
        assert_eq!(g_stale.bias, g_fresh.bias);
    }
}
