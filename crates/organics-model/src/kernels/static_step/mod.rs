//! The fused CPU kernel of [`crate::grad::static_step`]: a static classifier's forward pass, loss
//! and hand-derived backward pass (autoencoder, closed-form fixed-point layers with
//! `W_r = I`, readout) as plain `f32` loops and direct matrix products on the host.
//!
//! Through Burn's autodiff on a CPU backend about half of this step went to per-op passes
//! over memory, allocations and libm calls around the products (perf). Here the products
//! go straight to the `gemm` crate, and the element-wise work of a layer is one pass that
//! also applies its bias and activation. The step runs in two phases, each on one thread
//! per core:
//!
//! 1. Each core takes a shard of the batch through the forward pass, the loss and the
//!    backward pass down to every layer's delta (the gradient at its pre-activation). The
//!    samples of a shard never interact, so the cores do not wait for one another.
//! 2. The weight gradients `inputᵀ δ` over the whole batch: each core computes one band of
//!    rows of every weight gradient from all shards' deltas, so no partial gradients are
//!    summed.
//!
//! The equations and their order are those of [`crate::fixed_point`] and
//! [`crate::classifier`]; a test checks the loss and every gradient against Burn's
//! autodiff to 1e-5.
//!
//! Files: this one holds the host copies of the weights and the step's two phases;
//! [`work`] the shard buffers, [`dense`] the autoencoder's and readout's layers,
//! [`fixed_point`] the fixed-point layers' passes, [`weight_grads`] phase 2.

mod dense;
mod fixed_point;
mod weight_grads;
mod work;

use std::cell::RefCell;

use crate::host::HostValues;
use crate::kernels::algorithm1::Recurrence;
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};
use crate::kernels::pool::Spare;
use crate::kernels::simd::vectorized;
use crate::kernels::threads::{on_threads, shard_rows};
use dense::{Activation, activation, column_sums, dense, times_derivative};
use fixed_point::{fixed_point_backward, fixed_point_forward};
use work::ShardWork;

/// A linear layer on the host: `out = input · w + b`, `w` row-major `[n_in, n_out]`.
#[derive(Debug, Clone)]
pub(crate) struct HostLinear {
    pub(crate) n_in: usize,
    pub(crate) n_out: usize,
    pub(crate) w: HostValues,
    pub(crate) b: HostValues,
}

/// A fixed-point layer on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostFixedPoint {
    /// Input size `m`.
    pub(crate) m: usize,
    /// Neurons `n`.
    pub(crate) n: usize,
    /// `W_zx` stacked on `W_bx`, row-major `[2n, m]`.
    pub(crate) w_cat: Vec<f32>,
    /// `W = exp(L)`, row-major `[n, n]`.
    pub(crate) w_norm: Vec<f32>,
    /// `b0 = sigmoid(β0)`, `[n]`.
    pub(crate) b0: Vec<f32>,
    /// `σ²`.
    pub(crate) sigma_sq: f32,
    /// A learned `W_r` (Algorithm 1); `None` for `W_r = I` (the closed form).
    pub(crate) recurrence: Option<Recurrence>,
}

impl HostFixedPoint {
    /// `σ² b0²`, `[n]`.
    fn base(&self) -> Vec<f32> {
        self.b0.iter().map(|b| b * b * self.sigma_sq).collect()
    }
}

/// A [`crate::StaticClassifier`] on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostStatic {
    /// Encoder layers: ReLU after each but the last, sigmoid after the last (the code).
    pub(crate) encoder: Vec<HostLinear>,
    /// Decoder layers, activated like the encoder's.
    pub(crate) decoder: Vec<HostLinear>,
    pub(crate) layers: Vec<HostFixedPoint>,
    pub(crate) readout: HostLinear,
}

/// Gradients of a [`HostLinear`], same shapes.
#[derive(Debug, Clone)]
pub(crate) struct LinearGrads {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

/// Gradients of a fixed-point layer's parameters, in their shapes.
#[derive(Debug, Clone)]
pub(crate) struct FixedPointGrads {
    /// `[n, m]`.
    pub(crate) w_zx: Vec<f32>,
    /// `[n, m]`.
    pub(crate) w_bx: Vec<f32>,
    /// `[n]`.
    pub(crate) beta0: Vec<f32>,
    /// With respect to `L`, `[n, n]`.
    pub(crate) log_w: Vec<f32>,
    /// With respect to the normalized `W_r`, `[n, n]`; empty for `W_r = I`.
    pub(crate) w_r: Vec<f32>,
}

/// Gradients of every parameter of a [`HostStatic`].
#[derive(Debug, Clone)]
pub(crate) struct StaticGrads {
    pub(crate) encoder: Vec<LinearGrads>,
    pub(crate) decoder: Vec<LinearGrads>,
    pub(crate) layers: Vec<FixedPointGrads>,
    pub(crate) readout: LinearGrads,
}

/// One training step's loss terms, logits and gradients.
#[derive(Debug, Clone)]
pub(crate) struct StaticStep {
    /// Mean cross-entropy of the batch.
    pub(crate) cross_entropy: f64,
    /// Mean squared reconstruction error over all pixels.
    pub(crate) mse: f64,
    /// `[batch, classes]`, row-major.
    pub(crate) logits: Vec<f32>,
    pub(crate) grads: StaticGrads,
}

/// What a shard's pass sums over its samples.
#[derive(Debug, Default)]
struct ShardSums {
    cross_entropy: f64,
    squared_error: f64,
    /// Column sums of each layer's deltas: the bias gradients.
    enc_b: Vec<Vec<f32>>,
    dec_b: Vec<Vec<f32>>,
    readout_b: Vec<f32>,
    /// Column sums of `g_a` per fixed-point layer.
    g_base: Vec<Vec<f32>>,
}

thread_local! {
    /// Shard buffers of finished steps, kept for the next one on this thread (see
    /// [`Spare`]): fresh buffers would cost page faults on every step (a few MB each time,
    /// hundreds with Algorithm 1's factors).
    static SPARE: RefCell<Spare<ShardWork>> = const { RefCell::new(Spare::new()) };
}

impl HostStatic {
    fn input(&self) -> usize {
        self.encoder.first().map_or(0, |l| l.n_in)
    }

    fn code(&self) -> usize {
        self.encoder.last().map_or(0, |l| l.n_out)
    }

    fn classes(&self) -> usize {
        self.readout.n_out
    }

    /// Loss and gradients for `images` (`[batch, input]`, row-major) with class `labels`
    /// (each below the number of classes; the caller checks).
    pub(crate) fn step(&self, images: &[f32], labels: &[usize], batch: usize) -> StaticStep {
        let input = self.input();
        assert!(
            !self.encoder.is_empty() && self.encoder.len() == self.decoder.len(),
            "static kernel: encoder and decoder of equal, non-zero depth"
        );
        assert_eq!(images.len(), batch * input, "static kernel: image length");
        assert_eq!(labels.len(), batch, "static kernel: label count");
        assert!(
            labels.iter().all(|&l| l < self.classes()),
            "static kernel: label out of range"
        );
        let shards = shard_rows(batch);
        let mut works: Vec<ShardWork> = shards.iter().map(|&(_, rows)| self.work(rows)).collect();

        // Phase 1: forward, loss and deltas, one shard per core.
        let jobs: Vec<_> = shards.iter().zip(works.iter_mut()).collect();
        let sums = on_threads(jobs, |(&(start, rows), work)| {
            let x = &images[start * input..(start + rows) * input];
            shard_pass(self, x, &labels[start..start + rows], batch, work)
        });

        // Phase 2: weight gradients, a band of rows of each per core.
        let inputs: Vec<&[f32]> = shards
            .iter()
            .map(|&(start, rows)| &images[start * input..(start + rows) * input])
            .collect();
        let mut grads = self.weight_grads(&inputs, &works);

        // Bias, β0 and loss terms from the shards' sums.
        let mut cross_entropy = 0.0;
        let mut squared_error = 0.0;
        for part in &sums {
            cross_entropy += part.cross_entropy;
            squared_error += part.squared_error;
            let add = |acc: &mut [f32], v: &[f32]| acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
            for (g, v) in grads.encoder.iter_mut().zip(&part.enc_b) {
                add(&mut g.b, v);
            }
            for (g, v) in grads.decoder.iter_mut().zip(&part.dec_b) {
                add(&mut g.b, v);
            }
            add(&mut grads.readout.b, &part.readout_b);
            for (g, v) in grads.layers.iter_mut().zip(&part.g_base) {
                add(&mut g.beta0, v);
            }
        }
        for (g, l) in grads.layers.iter_mut().zip(&self.layers) {
            // base = σ² b0², b0 = sigmoid(β0).
            for (gb, &b0) in g.beta0.iter_mut().zip(&l.b0) {
                *gb *= 2.0 * l.sigma_sq * b0 * b0 * (1.0 - b0);
            }
        }
        let classes = self.classes();
        let mut logits = Vec::with_capacity(batch * classes);
        for w in &works {
            logits.extend_from_slice(&w.logits[..w.rows * classes]);
        }
        SPARE.with_borrow_mut(|spare| spare.give(works));
        StaticStep {
            cross_entropy: cross_entropy / batch as f64,
            mse: squared_error / (batch * input) as f64,
            logits,
            grads,
        }
    }
}

/// One shard through the forward pass, the loss and the backward pass to every delta.
fn shard_pass(
    net: &HostStatic,
    x: &[f32],
    labels: &[usize],
    batch: usize,
    work: &mut ShardWork,
) -> ShardSums {
    vectorized(
        #[inline(always)]
        || shard_pass_body(net, x, labels, batch, work),
    )
}

#[inline(always)]
fn shard_pass_body(
    net: &HostStatic,
    x: &[f32],
    labels: &[usize],
    batch: usize,
    w: &mut ShardWork,
) -> ShardSums {
    let rows = w.rows;
    let input = net.input();
    let code = net.code();
    let e = net.encoder.len();
    let mut sums = ShardSums::default();

    // Autoencoder forward.
    for (i, l) in net.encoder.iter().enumerate() {
        let (done, rest) = w.enc.split_at_mut(i);
        let src: &[f32] = if i == 0 { x } else { &done[i - 1] };
        dense(
            &mut rest[0],
            Mat::new(src, 0, rows, l.n_in),
            l,
            activation(i, e),
        );
    }
    for (i, l) in net.decoder.iter().enumerate() {
        let (done, rest) = w.dec.split_at_mut(i);
        let src = if i == 0 { &w.enc[e - 1] } else { &done[i - 1] };
        dense(
            &mut rest[0],
            Mat::new(src, 0, rows, l.n_in),
            l,
            activation(i, e),
        );
    }

    // Fixed-point layers and readout.
    for (li, l) in net.layers.iter().enumerate() {
        let (done, rest) = w.fp.split_at_mut(li);
        let src = if li == 0 {
            &w.enc[e - 1]
        } else {
            &done[li - 1].out
        };
        fixed_point_forward(l, Mat::new(src, 0, rows, l.m), &mut rest[0], rows);
    }
    let r = &net.readout;
    let classes = r.n_out;
    {
        let h: &[f32] = match w.fp.last() {
            Some(f) => &f.out,
            None => &w.enc[e - 1],
        };
        dense(
            &mut w.logits,
            Mat::new(h, 0, rows, r.n_in),
            r,
            Activation::Identity,
        );
    }

    // Cross-entropy (mean over the batch) and its gradient.
    let inv_batch = 1.0 / batch as f32;
    for (i, &label) in labels.iter().enumerate().take(rows) {
        let lg = &w.logits[i * classes..(i + 1) * classes];
        let g = &mut w.g_logits[i * classes..(i + 1) * classes];
        let max = lg.iter().fold(f32::NEG_INFINITY, |acc, &v| acc.max(v));
        let mut total = 0.0f32;
        for (gj, &v) in g.iter_mut().zip(lg) {
            let ex = (v - max).exp();
            *gj = ex;
            total += ex;
        }
        sums.cross_entropy += f64::from(total.ln() + max - lg[label]);
        for gj in g.iter_mut() {
            *gj = *gj / total * inv_batch;
        }
        g[label] -= inv_batch;
    }
    sums.readout_b = column_sums(&w.g_logits[..rows * classes], classes);

    // Reconstruction error (mean over every pixel) and the decoder's last delta.
    let scale = 2.0 / (batch * input) as f32;
    {
        let rec = &w.dec[e - 1][..rows * input];
        let d_last = &mut w.dec_d[e - 1][..rows * input];
        let x = &x[..rows * input];
        let mut se = 0.0f64;
        for ((d_row, rec_row), x_row) in d_last
            .chunks_exact_mut(input)
            .zip(rec.chunks_exact(input))
            .zip(x.chunks_exact(input))
        {
            cut_mut!(input; d_row);
            cut!(input; rec_row, x_row);
            let mut row_se = 0.0f32;
            for j in 0..input {
                let diff = rec_row[j] - x_row[j];
                row_se += diff * diff;
                d_row[j] = scale * diff * rec_row[j] * (1.0 - rec_row[j]);
            }
            se += f64::from(row_se);
        }
        sums.squared_error = se;
    }

    // Readout backward into the last layer's rates (or the code).
    {
        let w_r = Mat::new(&r.w, 0, r.n_in, classes);
        let g = Mat::new(&w.g_logits, 0, rows, classes);
        match w.fp.last_mut() {
            Some(f) => matmul(&mut f.g_out, 0, r.n_in, g, w_r.t(), false),
            None => matmul(&mut w.g_code, 0, r.n_in, g, w_r.t(), false),
        }
    }

    // Fixed-point layers backward.
    sums.g_base = vec![Vec::new(); net.layers.len()];
    for li in (0..net.layers.len()).rev() {
        let l = &net.layers[li];
        let (before, rest) = w.fp.split_at_mut(li);
        let g_u: &mut [f32] = match before.last_mut() {
            Some(prev) => &mut prev.g_out,
            None => &mut w.g_code,
        };
        sums.g_base[li] = fixed_point_backward(l, &mut rest[0], rows, g_u, false);
    }

    // Decoder backward, into the code's gradient.
    for i in (0..e).rev() {
        let l = &net.decoder[i];
        let w_t = Mat::new(&l.w, 0, l.n_in, l.n_out).t();
        let (before, rest) = w.dec_d.split_at_mut(i);
        let delta = Mat::new(&rest[0], 0, rows, l.n_out);
        if i == 0 {
            matmul(&mut w.g_code, 0, code, delta, w_t, true);
        } else {
            matmul(&mut before[i - 1], 0, l.n_in, delta, w_t, false);
            times_derivative(&mut before[i - 1], &w.dec[i - 1], Activation::Relu);
        }
    }
    sums.dec_b = w
        .dec_d
        .iter()
        .zip(&net.decoder)
        .map(|(d, l)| column_sums(&d[..rows * l.n_out], l.n_out))
        .collect();

    // Encoder backward (no gradient for the images themselves).
    w.enc_d[e - 1][..rows * code].copy_from_slice(&w.g_code[..rows * code]);
    times_derivative(&mut w.enc_d[e - 1], &w.enc[e - 1], Activation::Sigmoid);
    for i in (1..e).rev() {
        let l = &net.encoder[i];
        let w_t = Mat::new(&l.w, 0, l.n_in, l.n_out).t();
        let (before, rest) = w.enc_d.split_at_mut(i);
        matmul(
            &mut before[i - 1],
            0,
            l.n_in,
            Mat::new(&rest[0], 0, rows, l.n_out),
            w_t,
            false,
        );
        times_derivative(&mut before[i - 1], &w.enc[i - 1], Activation::Relu);
    }
    sums.enc_b = w
        .enc_d
        .iter()
        .zip(&net.encoder)
        .map(|(d, l)| column_sums(&d[..rows * l.n_out], l.n_out))
        .collect();
    sums
}
