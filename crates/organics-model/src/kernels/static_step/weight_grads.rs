//! Phase 2 of the step: every weight gradient `inputᵀ δ` over the whole batch, each core
//! computing one band of rows of every gradient from all shards' deltas.

use super::work::ShardWork;
use super::{FixedPointGrads, HostLinear, HostStatic, LinearGrads, StaticGrads};
use crate::kernels::algorithm1::SolveWork;
use crate::kernels::mat::{Mat, matmul};
use crate::kernels::threads::on_threads;

impl HostStatic {
    /// Every weight gradient `inputᵀ δ` over all shards; biases and `β0` zero (the caller
    /// adds the shards' column sums).
    pub(super) fn weight_grads(&self, inputs: &[&[f32]], works: &[ShardWork]) -> StaticGrads {
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
