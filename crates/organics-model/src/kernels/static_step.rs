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

use std::cell::RefCell;

use crate::kernels::algorithm1::{self, Recurrence, SolveWork};
use crate::kernels::elementwise::{relu, sigmoid};
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};
use crate::kernels::pool::Spare;
use crate::kernels::simd::vectorized;
use crate::kernels::threads::{on_threads, shard_rows};

/// Where `‖W_zx u‖` is clamped, as in [`crate::fixed_point`].
const NORM_FLOOR: f32 = 1e-12;

/// A linear layer on the host: `out = input · w + b`, `w` row-major `[n_in, n_out]`.
#[derive(Debug, Clone)]
pub(crate) struct HostLinear {
    pub(crate) n_in: usize,
    pub(crate) n_out: usize,
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
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

/// A fixed-point layer's buffers for one shard, `[rows, ·]` row-major each.
#[derive(Debug)]
struct FixedPointWork {
    /// `W_zx u` then `W_bx u`, overwritten by `z` and `b1`: `[rows, 2n]`.
    zb: Vec<f32>,
    /// `max(‖W_zx u‖, 1e-12)`, `[rows]`.
    norm: Vec<f32>,
    /// `(b1 ⊙ z)²`.
    s: Vec<f32>,
    /// `a_s`.
    a: Vec<f32>,
    /// The rates `⌊y_s⌋²`.
    out: Vec<f32>,
    /// Loss gradient with respect to the rates.
    g_out: Vec<f32>,
    /// With respect to `a_s`.
    g_a: Vec<f32>,
    /// With respect to `s` (`g_a W`).
    g_s: Vec<f32>,
    /// With respect to `W_zx u` then `W_bx u`, `[rows, 2n]`.
    g_pq: Vec<f32>,
    /// Algorithm 1's buffers, for a learned `W_r`.
    solve: Option<SolveWork>,
}

/// One shard's buffers. They live from one step to the next (see [`Spare`]).
#[derive(Debug)]
struct ShardWork {
    rows: usize,
    /// Activations of each encoder layer, `[rows, n_out]`; the last is the code.
    enc: Vec<Vec<f32>>,
    /// Deltas of each encoder layer (gradient at the pre-activation).
    enc_d: Vec<Vec<f32>>,
    dec: Vec<Vec<f32>>,
    dec_d: Vec<Vec<f32>>,
    fp: Vec<FixedPointWork>,
    logits: Vec<f32>,
    g_logits: Vec<f32>,
    /// Loss gradient with respect to the code (from the decoder and the first layer).
    g_code: Vec<f32>,
    /// Layout key: the widths this work was allocated for.
    key: Vec<usize>,
}

impl ShardWork {
    /// The autoencoder's code, `[rows, code]`.
    fn code(&self) -> &[f32] {
        self.enc.last().map_or(&[], |c| c)
    }

    /// The input of fixed-point layer `li`: the code, or the previous layer's rates.
    fn layer_input(&self, li: usize) -> &[f32] {
        match li.checked_sub(1) {
            Some(prev) => &self.fp[prev].out,
            None => self.code(),
        }
    }
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

    /// The widths that fix a shard's buffer layout.
    fn key(&self, rows: usize) -> Vec<usize> {
        let mut key = vec![rows];
        key.extend(self.encoder.iter().map(|l| l.n_out));
        key.extend(self.decoder.iter().map(|l| l.n_out));
        key.extend(self.layers.iter().flat_map(|l| {
            let iterations = l.recurrence.as_ref().map_or(0, |r| r.iterations);
            [l.m, l.n, iterations]
        }));
        key.push(self.classes());
        key
    }

    fn work(&self, rows: usize) -> ShardWork {
        let key = self.key(rows);
        if let Some(work) = SPARE.with_borrow_mut(|spare| spare.take(|w| w.key == key)) {
            return work;
        }
        let buf = |width: usize| vec![0.0; rows * width];
        let acts = |layers: &[HostLinear]| layers.iter().map(|l| buf(l.n_out)).collect();
        ShardWork {
            rows,
            enc: acts(&self.encoder),
            enc_d: acts(&self.encoder),
            dec: acts(&self.decoder),
            dec_d: acts(&self.decoder),
            fp: self
                .layers
                .iter()
                .map(|l| FixedPointWork {
                    zb: buf(2 * l.n),
                    norm: buf(1),
                    s: buf(l.n),
                    a: buf(l.n),
                    out: buf(l.n),
                    g_out: buf(l.n),
                    g_a: buf(l.n),
                    g_s: buf(l.n),
                    g_pq: buf(2 * l.n),
                    solve: l
                        .recurrence
                        .as_ref()
                        .map(|r| SolveWork::new(rows, l.n, r.iterations)),
                })
                .collect(),
            logits: buf(self.classes()),
            g_logits: buf(self.classes()),
            g_code: buf(self.code()),
            key,
        }
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

    /// Every weight gradient `inputᵀ δ` over all shards; biases and `β0` zero (the caller
    /// adds the shards' column sums).
    fn weight_grads(&self, inputs: &[&[f32]], works: &[ShardWork]) -> StaticGrads {
        let zeros = |len: usize| vec![0.0f32; len];
        let linear = |l: &HostLinear| LinearGrads {
            w: zeros(l.n_in * l.n_out),
            b: zeros(l.n_out),
        };
        let mut grads = StaticGrads {
            encoder: self.encoder.iter().map(linear).collect(),
            decoder: self.decoder.iter().map(linear).collect(),
            layers: self
                .layers
                .iter()
                .map(|l| FixedPointGrads {
                    w_zx: zeros(l.n * l.m),
                    w_bx: zeros(l.n * l.m),
                    beta0: zeros(l.n),
                    log_w: zeros(l.n * l.n),
                    w_r: zeros(if l.recurrence.is_some() { l.n * l.n } else { 0 }),
                })
                .collect(),
            readout: linear(&self.readout),
        };

        // Each product: gradient = Σ_shards Aᵀ D, `[k, n]`, optionally scaled element-wise.
        let mut products: Vec<Product> = Vec::new();
        let mut dsts: Vec<&mut [f32]> = Vec::new();
        for (i, (l, g)) in self.encoder.iter().zip(&mut grads.encoder).enumerate() {
            let parts = works
                .iter()
                .zip(inputs)
                .map(|(w, x)| {
                    let a: &[f32] = if i == 0 { x } else { &w.enc[i - 1] };
                    (
                        Mat::new(a, 0, w.rows, l.n_in),
                        Mat::new(&w.enc_d[i], 0, w.rows, l.n_out),
                    )
                })
                .collect();
            products.push(Product::new(l.n_in, l.n_out, parts));
            dsts.push(&mut g.w);
        }
        for (i, (l, g)) in self.decoder.iter().zip(&mut grads.decoder).enumerate() {
            let parts = works
                .iter()
                .map(|w| {
                    let a: &[f32] = if i == 0 { w.code() } else { &w.dec[i - 1] };
                    (
                        Mat::new(a, 0, w.rows, l.n_in),
                        Mat::new(&w.dec_d[i], 0, w.rows, l.n_out),
                    )
                })
                .collect();
            products.push(Product::new(l.n_in, l.n_out, parts));
            dsts.push(&mut g.w);
        }
        for (li, (l, g)) in self.layers.iter().zip(&mut grads.layers).enumerate() {
            let (n, m) = (l.n, l.m);
            // pq = u [W_zx; W_bx]ᵀ: ∂W_zx = g_pᵀ u, ∂W_bx = g_qᵀ u.
            for half in 0..2 {
                let parts = works
                    .iter()
                    .map(|w| {
                        let g_pq = Mat::new(&w.fp[li].g_pq, 0, w.rows, 2 * n).cols(half * n, n);
                        (g_pq, Mat::new(w.layer_input(li), 0, w.rows, m))
                    })
                    .collect();
                products.push(Product::new(n, m, parts));
            }
            // a = s Wᵀ: ∂W = g_aᵀ s, and ∂L = ∂W ⊙ W since W = exp(L). Algorithm 1
            // evaluates it once per iteration: its factors are stacked over iterations.
            let parts = works
                .iter()
                .map(|w| match &w.fp[li].solve {
                    Some(solve) => solve.normalization_factors(),
                    None => (
                        Mat::new(&w.fp[li].g_a, 0, w.rows, n),
                        Mat::new(&w.fp[li].s, 0, w.rows, n),
                    ),
                })
                .collect();
            products.push(Product {
                scale: Some(&l.w_norm),
                ..Product::new(n, n, parts)
            });
            dsts.push(&mut g.w_zx);
            dsts.push(&mut g.w_bx);
            dsts.push(&mut g.log_w);
            if l.recurrence.is_some() {
                let parts = works
                    .iter()
                    .filter_map(|w| w.fp[li].solve.as_ref())
                    .map(SolveWork::recurrence_factors)
                    .collect();
                products.push(Product::new(n, n, parts));
                dsts.push(&mut g.w_r);
            }
        }
        let r = &self.readout;
        let parts = works
            .iter()
            .map(|w| {
                let h: &[f32] = match w.fp.last() {
                    Some(f) => &f.out,
                    None => w.code(),
                };
                (
                    Mat::new(h, 0, w.rows, r.n_in),
                    Mat::new(&w.g_logits, 0, w.rows, r.n_out),
                )
            })
            .collect();
        products.push(Product::new(r.n_in, r.n_out, parts));
        dsts.push(&mut grads.readout.w);

        run_products(&products, dsts, works.len().max(1));
        grads
    }
}

/// `Σ_parts Aᵀ D` (`A` `[rows, k]`, `D` `[rows, n]` per part) into a row-major `[k, n]`
/// gradient, then `⊙ scale` when given.
struct Product<'a> {
    k: usize,
    n: usize,
    parts: Vec<(Mat<'a>, Mat<'a>)>,
    scale: Option<&'a [f32]>,
}

impl<'a> Product<'a> {
    fn new(k: usize, n: usize, parts: Vec<(Mat<'a>, Mat<'a>)>) -> Self {
        Product {
            k,
            n,
            parts,
            scale: None,
        }
    }

    /// Rows `first..first + out.len() / n` of the gradient into `out`.
    fn rows_into(&self, out: &mut [f32], first: usize) {
        let rows = out.len() / self.n.max(1);
        if rows == 0 {
            return;
        }
        for (i, &(a, d)) in self.parts.iter().enumerate() {
            matmul(out, 0, self.n, a.cols(first, rows).t(), d, i > 0);
        }
        if let Some(scale) = self.scale {
            let scale = &scale[first * self.n..(first + rows) * self.n];
            out.iter_mut().zip(scale).for_each(|(g, s)| *g *= s);
        }
    }
}

/// Runs every product on `threads` threads, each computing one band of rows of each.
fn run_products(products: &[Product], dsts: Vec<&mut [f32]>, threads: usize) {
    let mut bands: Vec<Vec<(&Product, usize, &mut [f32])>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (p, dst) in products.iter().zip(dsts) {
        let mut rest = dst;
        let mut first = 0;
        for (t, band) in bands.iter_mut().enumerate() {
            let end = p.k * (t + 1) / threads;
            let (mine, tail) = rest.split_at_mut((end - first) * p.n);
            band.push((p, first, mine));
            rest = tail;
            first = end;
        }
    }
    on_threads(bands, |band| {
        for (p, first, out) in band {
            p.rows_into(out, first);
        }
    });
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

#[derive(Clone, Copy, PartialEq)]
enum Activation {
    Relu,
    Sigmoid,
    /// None (the readout).
    Identity,
}

/// The activation after layer `i` of `len`: ReLU, and a sigmoid after the last.
fn activation(i: usize, len: usize) -> Activation {
    if i + 1 == len {
        Activation::Sigmoid
    } else {
        Activation::Relu
    }
}

/// `out = act(input · w + b)`.
#[inline(always)]
fn dense(out: &mut [f32], input: Mat, l: &HostLinear, act: Activation) {
    let n = l.n_out;
    matmul(out, 0, n, input, Mat::new(&l.w, 0, l.n_in, n), false);
    let b = &l.b[..n];
    for row in out.chunks_exact_mut(n) {
        cut_mut!(n; row);
        match act {
            Activation::Relu => {
                for j in 0..n {
                    row[j] = relu(row[j] + b[j]);
                }
            }
            Activation::Sigmoid => {
                for j in 0..n {
                    row[j] = sigmoid(row[j] + b[j]);
                }
            }
            Activation::Identity => {
                for j in 0..n {
                    row[j] += b[j];
                }
            }
        }
    }
}

/// `g ⊙ act'` in place, from the activation's output `out`.
#[inline(always)]
fn times_derivative(g: &mut [f32], out: &[f32], act: Activation) {
    let len = g.len().min(out.len());
    cut_mut!(len; g);
    cut!(len; out);
    match act {
        Activation::Relu => {
            for j in 0..len {
                if out[j] <= 0.0 {
                    g[j] = 0.0;
                }
            }
        }
        Activation::Sigmoid => {
            for j in 0..len {
                g[j] *= out[j] * (1.0 - out[j]);
            }
        }
        Activation::Identity => {}
    }
}

/// Column sums of a row-major `[rows, n]` matrix.
#[inline(always)]
fn column_sums(m: &[f32], n: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; n];
    for row in m.chunks_exact(n) {
        cut!(n; row);
        let acc = &mut acc[..n];
        for j in 0..n {
            acc[j] += row[j];
        }
    }
    acc
}

/// The closed-form fixed point of a shard (see [`crate::fixed_point`]):
/// `z = W_zx u / ‖W_zx u‖`, `b1 = sigmoid(W_bx u)`, `a = σ² b0² + (b1 ⊙ z)² Wᵀ`,
/// `y = b1 ⊙ z / √a`, rates `⌊y⌋²`.
#[inline(always)]
fn fixed_point_forward(l: &HostFixedPoint, u: Mat, f: &mut FixedPointWork, rows: usize) {
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
fn fixed_point_backward(
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
