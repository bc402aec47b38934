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
//! - [`grad`]: hand-derived gradients (backpropagation through time for the sequence
//!   model, the static classifier's loss and gradients) and their bridges to Burn's
//!   autodiff; the fused CPU kernels behind them live in the private `kernels` folder.
//! - [`analysis`] (cargo feature `analysis`, on by default): the continuous-time circuit on
//!   the host, its Jacobian and eigenvalues, the 2-D circuit's fixed points and nullclines,
//!   the paper's random-circuit experiments.
//!
//! The crate depends on `burn` without any backend feature: pick the backend in your own
//! crate and pass its `Device`. The cargo feature `flex` (off by default) lets the fused
//! static step read the weights of a model on Burn's flex backend in place instead of
//! copying them out every step; it turns on `burn/flex` (and `burn/extension`).
//!
//! ```
//! use burn::prelude::*;
//! use organics_model::prelude::*;
//!
//! let device = Device::flex();
//! // A circuit of 32 neurons reading one input per time step.
//! let rnn = OrganicsRnnConfig::new(OrganicsCellConfig::new(1, 32)).init(&device);
//! let input = Tensor::<3>::zeros([4, 100, 1], &device); // [batch, seq, d_input]
//! let (outputs, state) = rnn.forward(input, None); // like nn::Lstm: every step, and the last
//! assert_eq!(outputs.dims(), [4, 100, 32]);
//! assert_eq!(state.y.dims(), [4, 32]);
//! ```

#[cfg(feature = "analysis")]
pub mod analysis;
pub mod cell;
pub mod classifier;
pub mod error;
pub mod fixed_point;
pub mod grad;
mod host;
mod init;
mod kernels;
pub mod rnn;
mod solve;
mod spectral;
pub mod time_constant;

pub use cell::{CircuitVariables, OrganicsCell, OrganicsCellConfig, OrganicsState, PreparedCell};
pub use classifier::{
    SeqClassifier, SeqClassifierConfig, StaticClassifier, StaticClassifierConfig, StaticLoss,
    StaticOutput,
};
pub use error::ModelError;
pub use fixed_point::{FixedPoint, FixedPointLayer, FixedPointLayerConfig, RecurrenceConfig};
pub use grad::{BpttKernel, RecordedLstm, RecordedSequence, StaticLossGrads};
pub use kernels::adam::HostAdam;
pub use rnn::{OrganicsRnn, OrganicsRnnConfig, OrganicsTrajectory};
pub use time_constant::TimeConstant;

/// The items most users need.
pub mod prelude {
    pub use crate::{
        FixedPointLayer, FixedPointLayerConfig, OrganicsCell, OrganicsCellConfig, OrganicsRnn,
        OrganicsRnnConfig, OrganicsState, RecurrenceConfig, SeqClassifier, SeqClassifierConfig,
        StaticClassifier, StaticClassifierConfig,
    };
}
