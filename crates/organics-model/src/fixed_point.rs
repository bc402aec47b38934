//! The static ORGaNICs layer: the circuit's fixed point for a static input (docs/MODEL.md §7).
//!
//! For an input `u` (`[batch, m]`), `n` neurons:
//!
//! ```text
//! z  = W_zx u / ‖W_zx u‖        b1 = sigmoid(W_bx u)        b0 = sigmoid(β0)
//! W  = exp(L)                   σ = 1 (fixed)               output = ⌊y_s⌋²
//! ```
//!
//! With `W_r = I` the fixed point is closed form (docs/MODEL.md §3):
//! `a_s = σ² b0² + W (b1 ⊙ z)²`, `y_s = (b1 ⊙ z) / √a_s`. With a learned `W_r`
//! (parametrized to largest singular value 1) it is paper Algorithm 1:
//!
//! ```text
//! a ← σ² b0² + W (W_r (b1 ⊙ z))²
//! repeat K times:  y ← (I − D(1 − √a) W_r)⁻¹ (b1 ⊙ z);   a ← σ² b0² + W (a ⊙ y²)
//! ```
//!
//! unrolled, so gradients flow through every iteration (the `solve` module explains the differentiable solve).

use burn::module::{Content, DisplaySettings, ModuleDisplay, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, activation};

use crate::error::ModelError;
use crate::host::{from_f32, to_f32};
use crate::init::{kaiming_uniform_a5, log_weights_zero_diagonal};
use crate::kernels::algorithm1::{self, Recurrence};
use crate::solve::solve_gated;
use crate::spectral::spectral_normalize;

/// Where `‖W_zx u‖` is clamped from below, so that a zero drive gives `z = 0`, not NaN.
pub(crate) const NORM_FLOOR: f32 = 1e-12;

/// Iterations `K` of Algorithm 1 by default (the paper sees convergence in < 5).
pub const DEFAULT_ITERATIONS: usize = 10;

/// The recurrence `W_r` of a fixed-point layer: learned and solved by Algorithm 1, or fixed
/// at `I` with the closed-form fixed point. Shared by [`FixedPointLayerConfig`] and
/// [`crate::StaticClassifierConfig`], so each default has one home.
///
/// ```
/// use burn::prelude::*;
/// use organics_model::{FixedPointLayerConfig, RecurrenceConfig};
///
/// let device = Device::flex();
/// let learned = FixedPointLayerConfig::new(10, 6).init(&device); // Algorithm 1, K = 10
/// let closed_form = FixedPointLayerConfig::new(10, 6)
///     .with_recurrence(RecurrenceConfig::identity())
///     .init(&device);
/// assert!(learned.recurrence().is_some() && closed_form.recurrence().is_none());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct RecurrenceConfig {
    /// Learn `W_r` (spectral norm 1, Algorithm 1). `false`: `W_r = I` and the closed form.
    /// Default: `true`, the paper's static model.
    #[config(default = true)]
    pub learned: bool,
    /// Iterations `K` of Algorithm 1. Default: [`DEFAULT_ITERATIONS`].
    #[config(default = "DEFAULT_ITERATIONS")]
    pub iterations: usize,
    /// Gate Algorithm 1's solve with `1 − a`, as the authors' static-task code does, instead
    /// of the circuit's `1 − √a` (docs/MODEL.md §11). Default: false (the circuit); `true`
    /// exists to measure what the difference does to training.
    #[config(default = false)]
    pub linear_gate: bool,
}

impl RecurrenceConfig {
    /// `W_r = I`: the closed-form fixed point, no Algorithm 1.
    pub fn identity() -> Self {
        Self::new().with_learned(false)
    }
}

/// Configuration of a [`FixedPointLayer`].
#[derive(Config, Debug)]
pub struct FixedPointLayerConfig {
    /// Input size (`m` in docs/MODEL.md).
    pub d_input: usize,
    /// Number of neurons (`n` in docs/MODEL.md).
    pub d_hidden: usize,
    /// The recurrence. Default: learned, [`DEFAULT_ITERATIONS`] iterations, the circuit's gate.
    #[config(default = "RecurrenceConfig::new()")]
    pub recurrence: RecurrenceConfig,
    /// Semi-saturation constant `σ` (fixed). Default: 1.0.
    #[config(default = 1.0)]
    pub sigma: f64,
}

/// A layer whose output is the firing rate `⌊y_s⌋²` of the circuit's fixed point.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct FixedPointLayer {
    /// Input drive `W_zx`, `[n, m]`.
    pub w_zx: Param<Tensor<2>>,
    /// Input gain weights `W_bx`, `[n, m]`.
    pub w_bx: Param<Tensor<2>>,
    /// Modulator gain parameter `β0`, `[n]` (`b0 = sigmoid(β0)`).
    pub beta0: Param<Tensor<1>>,
    /// Log normalization weights `L`, `[n, n]` (`W = exp(L)`).
    pub log_w: Param<Tensor<2>>,
    /// Unnormalized recurrent weights `V` (`W_r = V / σ_max(V)`); `None` means `W_r = I`.
    pub w_r_raw: Option<Param<Tensor<2>>>,
    /// Iterations of Algorithm 1.
    pub iterations: usize,
    /// The gate of Algorithm 1's solve is `1 − a` (the authors' code), not `1 − √a`.
    pub linear_gate: bool,
    /// Semi-saturation constant.
    pub sigma: f64,
}

impl ModuleDisplay for FixedPointLayer {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        crate::cell::compact_display()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let recurrence = if self.w_r_raw.is_some() {
            "learned (Algorithm 1)".to_string()
        } else {
            "identity (closed form)".to_string()
        };
        let content = content
            .add("d_input", &self.input_size())
            .add("d_hidden", &self.size())
            .add("recurrence", &recurrence)
            .add("sigma", &self.sigma);
        let content = if self.w_r_raw.is_some() {
            let gate = if self.linear_gate {
                "1 − a"
            } else {
                "1 − √a"
            }
            .to_string();
            content
                .add("iterations", &self.iterations)
                .add("gate", &gate)
        } else {
            content
        };
        content.optional()
    }
}

/// The fixed point of a batch: `y_s` and `a_s`, each `[batch, n]`.
#[derive(Debug, Clone)]
pub struct FixedPoint {
    /// Principal-neuron potentials.
    pub y: Tensor<2>,
    /// Modulator potentials.
    pub a: Tensor<2>,
}

impl FixedPointLayerConfig {
    /// Initializes the layer (docs/MODEL.md §7): `W_zx` Kaiming-uniform (a = √5), `W_bx`
    /// `N(0, 1)` (the authors' Kaiming init is overwritten by a normal draw), `β0 = 0`,
    /// `L ~ U(−1, 0)` with zero diagonal, `V = I`.
    pub fn init(&self, device: &Device) -> FixedPointLayer {
        let (n, m) = (self.d_hidden, self.d_input);
        let log_w = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 0.0), device);
        FixedPointLayer {
            w_zx: Param::from_tensor(kaiming_uniform_a5(n, m, device)),
            w_bx: Param::from_tensor(Tensor::random(
                [n, m],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            beta0: Param::from_tensor(Tensor::zeros([n], device)),
            log_w: Param::from_tensor(log_weights_zero_diagonal(log_w)),
            w_r_raw: self
                .recurrence
                .learned
                .then(|| Param::from_tensor(Tensor::eye(n, device))),
            iterations: self.recurrence.iterations,
            linear_gate: self.recurrence.linear_gate,
            sigma: self.sigma,
        }
    }
}

/// The quantities of the circuit that a batch of inputs fixes.
struct Drive {
    /// `b1 ⊙ z`, `[batch, n]`.
    drive: Tensor<2>,
    /// `σ² b0²`, `[1, n]`.
    base: Tensor<2>,
    /// `Wᵀ`, `[n, n]`.
    w_t: Tensor<2>,
}

impl FixedPointLayer {
    /// Number of neurons `n`.
    pub fn size(&self) -> usize {
        self.w_zx.lazy_shape()[0]
    }

    /// Input size `m`.
    pub fn input_size(&self) -> usize {
        self.w_zx.lazy_shape()[1]
    }

    /// The recurrent weights `W_r` (spectral norm 1), or `None` for the identity.
    pub fn recurrence(&self) -> Option<Result<Tensor<2>, ModelError>> {
        self.w_r_raw.as_ref().map(|v| spectral_normalize(v.val()))
    }

    /// The unit-norm input drive `z` and the input gain `b1` of each sample, `[batch, n]` each.
    pub(crate) fn input_terms(&self, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let projected = input.clone().matmul(self.w_zx.val().transpose());
        // The clamp only guards an all-zero projection, which would otherwise give 0/0.
        let norm = projected
            .clone()
            .square()
            .sum_dim(1)
            .sqrt()
            .clamp_min(NORM_FLOOR as f64);
        let b1 = activation::sigmoid(input.matmul(self.w_bx.val().transpose()));
        (projected / norm, b1)
    }

    fn drive(&self, input: Tensor<2>) -> Drive {
        let (z, b1) = self.input_terms(input);
        let b0 = activation::sigmoid(self.beta0.val()).unsqueeze::<2>();
        Drive {
            drive: b1 * z,
            base: b0.square() * (self.sigma * self.sigma),
            w_t: self.log_w.val().exp().transpose(),
        }
    }

    /// The fixed point `(y_s, a_s)` for `input` (`[batch, m]`).
    pub fn try_fixed_point(&self, input: Tensor<2>) -> Result<FixedPoint, ModelError> {
        let [batch, m] = input.dims();
        if m != self.input_size() {
            return Err(ModelError::Shape {
                what: "fixed-point layer input",
                expected: format!("[batch, {}]", self.input_size()),
                got: vec![batch, m],
            });
        }
        let Drive { drive, base, w_t } = self.drive(input);
        match self.recurrence() {
            None => {
                let a = base + drive.clone().square().matmul(w_t);
                let y = drive / a.clone().sqrt();
                Ok(FixedPoint { y, a })
            }
            Some(w_r) => {
                let w_r = w_r?;
                let tracked = drive.is_tracked() || w_r.is_tracked() || w_t.is_tracked();
                if self.iterations >= 1 && !tracked {
                    return self.fixed_point_on_host(drive, base, w_t, w_r);
                }
                let first = drive.clone().matmul(w_r.clone().transpose());
                let mut a = base.clone() + first.square().matmul(w_t.clone());
                let mut y = drive.clone();
                for _ in 0..self.iterations {
                    let gate = if self.linear_gate {
                        a.clone().neg() + 1.0
                    } else {
                        a.clone().sqrt().neg() + 1.0
                    };
                    y = solve_gated(gate, w_r.clone(), drive.clone())?;
                    a = base.clone() + (a * y.clone().square()).matmul(w_t.clone());
                }
                Ok(FixedPoint { y, a })
            }
        }
    }

    /// Algorithm 1 forward only, on the host ([`crate::kernels::algorithm1`]): per-sample `f32`
    /// LU factorisations on every core, where the tensor path inverts each system in `f64`
    /// for the sake of its gradient. Used when nothing asks for a gradient (validation,
    /// evaluation, analysis).
    fn fixed_point_on_host(
        &self,
        drive: Tensor<2>,
        base: Tensor<2>,
        w_t: Tensor<2>,
        w_r: Tensor<2>,
    ) -> Result<FixedPoint, ModelError> {
        let [batch, n] = drive.dims();
        let device = drive.device();
        let rec = Recurrence::new(to_f32(w_r)?, n, self.iterations, self.linear_gate);
        let w_norm = crate::kernels::elementwise::transpose(&to_f32(w_t)?, n, n);
        let (y, a) = algorithm1::fixed_points(&rec, &w_norm, &to_f32(base)?, &to_f32(drive)?, n);
        Ok(FixedPoint {
            y: from_f32(y, [batch, n], &device),
            a: from_f32(a, [batch, n], &device),
        })
    }

    /// Firing rates `⌊y_s⌋²` of the fixed point, `[batch, n]`.
    ///
    /// ```
    /// use burn::prelude::*;
    /// use organics_model::FixedPointLayerConfig;
    ///
    /// let device = Device::flex();
    /// let layer = FixedPointLayerConfig::new(10, 6).init(&device); // learned W_r, Algorithm 1
    /// let rates = layer.forward(Tensor::ones([2, 10], &device));
    /// assert_eq!(rates.dims(), [2, 6]);
    /// ```
    ///
    /// A singular linear system in Algorithm 1 (or a failed read-back of a tensor) gives
    /// NaN rates rather than a panic, so a training loop's non-finite-loss guard reports
    /// it; use [`try_fixed_point`](Self::try_fixed_point) to get the error itself.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let device = input.device();
        match self.try_fixed_point(input) {
            Ok(fp) => activation::relu(fp.y).square(),
            Err(_) => Tensor::full([batch, self.size()], f32::NAN, &device),
        }
    }
}
