//! Research tools on the host, in `f64`: the continuous-time circuit ([`Circuit`]), its
//! Jacobian and eigenvalues ([`stability`]), the 2-D circuit's fixed points and nullclines
//! ([`PlanarCircuit`]), the paper's random-circuit experiments ([`experiments`]), and the
//! per-sample stability of a trained [`FixedPointLayer`](crate::FixedPointLayer).
//!
//! Behind the default-on cargo feature `analysis`: a project that only embeds the modules
//! can leave it out (`default-features = false`).

pub mod circuit;
pub mod experiments;
mod fixed_point;
pub mod planar;
pub mod stability;

pub use circuit::{Circuit, CircuitState, SplitMix64};
/// The linear algebra crate of these tools, re-exported so users need no own copy.
pub use nalgebra;
pub use planar::{PlanarCircuit, PlanarFixedPoint};
pub use stability::{Eigenvalue, eigenvalues, leading_eigenvalue, max_real_eigenvalue};
