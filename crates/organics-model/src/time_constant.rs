//! Per-neuron Euler step ratios `r = Δt/τ`, learned or fixed (docs/MODEL.md §5).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{Distribution, activation};

/// The step ratio `r = r_max · sigmoid(θ)` of one state variable, one value per neuron.
///
/// Learned: `θ ~ N(0, 1)` and trained. Fixed (paper Table 2 "fixed time constants"):
/// `θ = 1`, not trained.
#[derive(Module, Debug)]
pub struct TimeConstant {
    /// The raw parameter `θ` (`[n]`).
    pub theta: Param<Tensor<1>>,
    /// The largest step ratio `r_max`.
    pub r_max: f64,
    /// Whether `θ` is trained.
    pub learned: bool,
}

impl TimeConstant {
    /// A new step ratio for `n` neurons.
    pub fn new(n: usize, r_max: f64, learned: bool, device: &Device) -> Self {
        let theta = if learned {
            Param::from_tensor(Tensor::random([n], Distribution::Normal(0.0, 1.0), device))
        } else {
            Param::from_tensor(Tensor::ones([n], device)).set_require_grad(false)
        };
        Self {
            theta,
            r_max,
            learned,
        }
    }

    /// `r = r_max · sigmoid(θ)`, shape `[n]`.
    pub fn ratio(&self) -> Tensor<1> {
        activation::sigmoid(self.theta.val()) * self.r_max
    }

    /// Number of parameters that are not trained (`n` when fixed, else 0).
    pub fn num_fixed_params(&self) -> usize {
        if self.learned {
            0
        } else {
            self.theta.lazy_shape().num_elements()
        }
    }
}
