#![warn(missing_docs)]
//! # organics-model
//!
//! ORGaNICs (oscillatory recurrent gated neural integrator circuits) as [Burn](https://burn.dev)
//! modules: the recurrent circuit that implements divisive normalization dynamically and is
//! provably stable (Rawat, Heeger, Martiniani, NeurIPS 2024).
//!
//! - [`OrganicsCell`] / [`OrganicsRnn`]: the dynamical circuit, one forward-Euler step and its
//!   unrolling over a sequence (sequential MNIST).
//! - [`FixedPointLayer`]: the circuit's fixed point for a static input, closed form for
//!   `W_r = I` and paper Algorithm 1 otherwise (static MNIST).
//! - [`SeqClassifier`], [`StaticClassifier`]: the paper's classifiers.
//! - [`bptt`], [`static_grad`]: hand-derived gradients (backpropagation through time for the
//!   sequence model, the static classifier's loss and gradients), with fused CPU kernels.
//! - [`circuit`], [`stability`]: the continuous-time circuit on the host, its Jacobian and
//!   the eigenvalue with the largest real part; [`planar`]: the 2-D circuit's fixed points
//!   and nullclines; [`experiments`]: the paper's random-circuit experiments.
//!
//! The crate depends on `burn` without any backend feature: pick the backend in your own
//! crate and pass its `Device`.
//!
//! ```
//! use burn::prelude::*;
//! use organics_model::prelude::*;
//!
//! let device = Device::flex();
//! // A circuit of 32 neurons reading one input per time step.
//! let rnn = OrganicsRnnConfig::new(OrganicsCellConfig::new(1, 32)).init(&device);
//! let input = Tensor::<3>::zeros([4, 100, 1], &device); // [batch, seq, d_input]
//! let state = rnn.forward(input);
//! assert_eq!(state.y.dims(), [4, 32]);
//! ```

mod algorithm1_cpu;
pub mod bptt;
mod bptt_cpu;
pub mod cell;
pub mod circuit;
pub mod classifier;
mod cpu;
pub mod error;
pub mod experiments;
pub mod fixed_point;
mod host;
mod init;
pub mod planar;
pub mod rnn;
mod solve;
mod spectral;
pub mod stability;
mod static_cpu;
pub mod static_grad;
pub mod time_constant;

pub use cell::{OrganicsCell, OrganicsCellConfig, OrganicsState, PreparedCell};
pub use circuit::{Circuit, CircuitState, SplitMix64};
pub use classifier::{
    SeqClassifier, SeqClassifierConfig, StaticClassifier, StaticClassifierConfig, StaticOutput,
};
pub use error::ModelError;
pub use fixed_point::{FixedPoint, FixedPointLayer, FixedPointLayerConfig};
/// The linear algebra crate of the host-side tools, re-exported so users need no own copy.
pub use nalgebra;
pub use planar::{PlanarCircuit, PlanarFixedPoint};
pub use rnn::{OrganicsRnn, OrganicsRnnConfig, OrganicsTrajectory};
pub use static_grad::StaticLossGrads;
pub use time_constant::TimeConstant;

/// The items most users need.
pub mod prelude {
    pub use crate::{
        FixedPointLayer, FixedPointLayerConfig, OrganicsCell, OrganicsCellConfig, OrganicsRnn,
        OrganicsRnnConfig, OrganicsState, SeqClassifier, SeqClassifierConfig, StaticClassifier,
        StaticClassifierConfig,
    };
}
