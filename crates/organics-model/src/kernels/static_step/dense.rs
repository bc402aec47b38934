//! The autoencoder's and the readout's dense layers: product, bias and activation in one
//! pass, and the activation's derivative on the way back.

use super::HostLinear;
use crate::kernels::elementwise::{relu, sigmoid};
use crate::kernels::mat::{Mat, cut, cut_mut, matmul};

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Activation {
    Relu,
    Sigmoid,
    /// None (the readout).
    Identity,
}

/// The activation after layer `i` of `len`: ReLU, and a sigmoid after the last.
pub(super) fn activation(i: usize, len: usize) -> Activation {
    if i + 1 == len {
        Activation::Sigmoid
    } else {
        Activation::Relu
    }
}

/// `out = act(input · w + b)`.
#[inline(always)]
pub(super) fn dense(out: &mut [f32], input: Mat, l: &HostLinear, act: Activation) {
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
pub(super) fn times_derivative(g: &mut [f32], out: &[f32], act: Activation) {
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
pub(super) fn column_sums(m: &[f32], n: usize) -> Vec<f32> {
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
