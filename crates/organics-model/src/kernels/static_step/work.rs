//! A shard's buffers: every layer's activations and deltas, kept between steps.

use super::{HostLinear, HostStatic, SPARE};
use crate::kernels::algorithm1::SolveWork;

/// A fixed-point layer's buffers for one shard, `[rows, ·]` row-major each.
#[derive(Debug)]
pub(super) struct FixedPointWork {
    /// `W_zx u` then `W_bx u`, overwritten by `z` and `b1`: `[rows, 2n]`.
    pub(super) zb: Vec<f32>,
    /// `max(‖W_zx u‖, 1e-12)`, `[rows]`.
    pub(super) norm: Vec<f32>,
    /// `(b1 ⊙ z)²`.
    pub(super) s: Vec<f32>,
    /// `a_s`.
    pub(super) a: Vec<f32>,
    /// The rates `⌊y_s⌋²`.
    pub(super) out: Vec<f32>,
    /// Loss gradient with respect to the rates.
    pub(super) g_out: Vec<f32>,
    /// With respect to `a_s`.
    pub(super) g_a: Vec<f32>,
    /// With respect to `s` (`g_a W`).
    pub(super) g_s: Vec<f32>,
    /// With respect to `W_zx u` then `W_bx u`, `[rows, 2n]`.
    pub(super) g_pq: Vec<f32>,
    /// Algorithm 1's buffers, for a learned `W_r`.
    pub(super) solve: Option<SolveWork>,
}

/// One shard's buffers. They live from one step to the next (see [`Spare`]).
#[derive(Debug)]
pub(super) struct ShardWork {
    pub(super) rows: usize,
    /// Activations of each encoder layer, `[rows, n_out]`; the last is the code.
    pub(super) enc: Vec<Vec<f32>>,
    /// Deltas of each encoder layer (gradient at the pre-activation).
    pub(super) enc_d: Vec<Vec<f32>>,
    pub(super) dec: Vec<Vec<f32>>,
    pub(super) dec_d: Vec<Vec<f32>>,
    pub(super) fp: Vec<FixedPointWork>,
    pub(super) logits: Vec<f32>,
    pub(super) g_logits: Vec<f32>,
    /// Loss gradient with respect to the code (from the decoder and the first layer).
    pub(super) g_code: Vec<f32>,
    /// Layout key: the widths this work was allocated for.
    pub(super) key: Vec<usize>,
}

impl ShardWork {
    /// The autoencoder's code, `[rows, code]`.
    pub(super) fn code(&self) -> &[f32] {
        self.enc.last().map_or(&[], |c| c)
    }

    /// The input of fixed-point layer `li`: the code, or the previous layer's rates.
    pub(super) fn layer_input(&self, li: usize) -> &[f32] {
        match li.checked_sub(1) {
            Some(prev) => &self.fp[prev].out,
            None => self.code(),
        }
    }
}

impl HostStatic {
    /// The widths that fix a shard's buffer layout.
    pub(super) fn key(&self, rows: usize) -> Vec<usize> {
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

    pub(super) fn work(&self, rows: usize) -> ShardWork {
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
}
