//! The fused CPU kernels: the hand-derived forward and backward passes of
//! [`crate::grad`] as plain `f32` loops over preallocated buffers, with the matrix
//! products handed to the `gemm` crate and the batch split over the cores.
//!
//! One file per job: [`sequence`] (a sequence's backpropagation through time), [`lstm`]
//! (the same for the LSTM baseline),
//! [`static_step`] (a static classifier's training step) with [`algorithm1`] (the fixed
//! point of a learned `W_r`), [`adam`] (the optimizer step in one pass), and their shared
//! primitives: [`mat`] (checked matrix views and products), [`elementwise`], [`simd`] (the
//! run-time choice of vector instructions: loops run inside a dispatched closure, or
//! row functions compiled once per instruction set), [`threads`] (shards of the batch),
//! [`pool`] (buffers reused between calls). `cube` (cargo feature `wgpu`) holds the GPU
//! counterpart of [`sequence`]: the step's element-wise work as CubeCL kernels.

pub(crate) mod adam;
pub(crate) mod algorithm1;
#[cfg(feature = "wgpu")]
pub(crate) mod cube;
pub(crate) mod elementwise;
pub(crate) mod lstm;
pub(crate) mod mat;
pub(crate) mod pool;
pub(crate) mod sequence;
pub(crate) mod simd;
pub(crate) mod static_step;
pub(crate) mod threads;
