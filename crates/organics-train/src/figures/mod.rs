//! The SVG figures: [`curves`] (per-epoch curves of runs), [`trajectories`] (a trained
//! sequence model's `y(t)`), [`phase`] (2-D phase portraits), [`convergence`] (Algorithm 1's
//! error), [`stability`] (histograms of the largest eigenvalue).

pub mod convergence;
pub mod curves;
pub mod phase;
pub mod stability;
pub mod trajectories;

mod style;
