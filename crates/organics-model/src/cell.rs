//! The ORGaNICs cell: one forward-Euler step of the circuit with dynamic input gains.
//!
//! Per time step, for the states `s ∈ {y, a, b0, b1}` with step ratios `r_s = Δt/τ_s`
//! (docs/MODEL.md §2 and §5; all four states update from the values at time t):
//!
//! ```text
//! z     = ⌊W_zx x⌋
//! y'    = y  + r_y  ⊙ (−y + b1 ⊙ z + (1 − √⌊a⌋) ⊙ ⌊W_r y⌋)
//! a'    = a  + r_a  ⊙ (−a + σ² b0² + W (⌊y⌋² ⊙ ⌊a⌋))
//! b0'   = b0 + r_b0 ⊙ (−b0 + sigmoid(W_b0x x + W_b0y y + W_b0a a))
//! b1'   = b1 + r_b1 ⊙ (−b1 + sigmoid(W_b1x x + W_b1y y + W_b1a a))
//! ```
//!
//! This is the rectified model (paper Appendix F), the default. The main model
//! (`rectified = false`) uses `W_r y` and `y²` in place of `⌊W_r y⌋` and `⌊y⌋²`. With
//! `rectified_input = false` the input drive is `z = W_zx x`, not rectified: a variant of
//! the authors' code (docs/MODEL.md §11), not the model of the paper's equations.
//! Normalization weights are `W = clamp(exp(L), 0, 1)` with the diagonal held at exactly 1.

use burn::module::{Content, DisplaySettings, ModuleDisplay, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, activation};

use crate::init::{
    kaiming_uniform_a5, log_weights_zero_diagonal, orthogonal, to_unit_spectral_norm,
};
use crate::time_constant::TimeConstant;

/// Configuration of an [`OrganicsCell`], with the paper's defaults (docs/MODEL.md §5, §6).
#[derive(Config, Debug)]
pub struct OrganicsCellConfig {
    /// Size of the input `x` at one time step (`n_in` in docs/MODEL.md; 1 for
    /// pixel-by-pixel MNIST).
    pub d_input: usize,
    /// Number of principal neurons (`n` in docs/MODEL.md), and of modulators.
    pub d_hidden: usize,
    /// Rectified model (Appendix F). Default: `true`, as in the paper's sequence tasks.
    #[config(default = "true")]
    pub rectified: bool,
    /// Rectified input drive `z = ⌊W_zx x⌋`. Default: `true`, the model of docs/MODEL.md
    /// §6; `false` gives `z = W_zx x` (the input drive of a branch of the authors' code,
    /// §11), with which a unit whose input weight is negative still receives the input.
    #[config(default = "true")]
    pub rectified_input: bool,
    /// Learn the time constants (`θ ~ N(0,1)`), or hold them fixed (`θ = 1`). Default: `true`.
    #[config(default = "true")]
    pub learn_time_constants: bool,
    /// Largest step ratio of `y`. Default: 0.02.
    #[config(default = 0.02)]
    pub r_max_y: f64,
    /// Largest step ratio of `a`. Default: 0.005.
    #[config(default = 0.005)]
    pub r_max_a: f64,
    /// Largest step ratio of `b0` and `b1`. Default: 0.1.
    #[config(default = 0.1)]
    pub r_max_b: f64,
    /// Semi-saturation constant `σ`, the same for every neuron and not learned.
    /// Default: 1.0. (The circuit has one σ per neuron, all 1 and fixed, docs/MODEL.md §6:
    /// a scalar is the same model without a tensor to save.)
    #[config(default = 1.0)]
    pub sigma: f64,
}

/// One step of the ORGaNICs circuit (see the [module docs](self) for the equations).
///
/// Weights are stored `[out, in]` as in PyTorch, so that the initialisations read like the
/// paper's; the forward pass multiplies row-vector states by their transposes.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct OrganicsCell {
    /// Input drive `W_zx`, `[d_hidden, d_input]`.
    pub w_zx: Param<Tensor<2>>,
    /// Recurrent weights `W_r`, `[n, n]`.
    pub w_r: Param<Tensor<2>>,
    /// Input to `b0`, `[d_hidden, d_input]`.
    pub w_b0x: Param<Tensor<2>>,
    /// `y` to `b0`, `[n, n]`.
    pub w_b0y: Param<Tensor<2>>,
    /// `a` to `b0`, `[n, n]`.
    pub w_b0a: Param<Tensor<2>>,
    /// Input to `b1`, `[d_hidden, d_input]`.
    pub w_b1x: Param<Tensor<2>>,
    /// `y` to `b1`, `[n, n]`.
    pub w_b1y: Param<Tensor<2>>,
    /// `a` to `b1`, `[n, n]`.
    pub w_b1a: Param<Tensor<2>>,
    /// Log normalization weights `L`, `[n, n]`; its diagonal stays 0.
    pub log_w: Param<Tensor<2>>,
    /// Step ratio of `y`.
    pub tau_y: TimeConstant,
    /// Step ratio of `a`.
    pub tau_a: TimeConstant,
    /// Step ratio of `b0`.
    pub tau_b0: TimeConstant,
    /// Step ratio of `b1`.
    pub tau_b1: TimeConstant,
    /// Semi-saturation constant `σ`.
    pub sigma: f64,
    /// Rectified model.
    pub rectified: bool,
    /// Rectified input drive `⌊W_zx x⌋` (else `W_zx x`).
    pub rectified_input: bool,
}

/// The display settings of the crate's modules: attributes on one line, as burn-nn's
/// recurrent modules show theirs.
pub(crate) fn compact_display() -> Option<DisplaySettings> {
    DisplaySettings::new()
        .with_new_line_after_attribute(false)
        .optional()
}

impl ModuleDisplay for OrganicsCell {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        crate::cell::compact_display()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("d_input", &self.input_size())
            .add("d_hidden", &self.size())
            .add("sigma", &self.sigma)
            .add("rectified", &self.rectified)
            .add("rectified_input", &self.rectified_input)
            .add("learned_time_constants", &self.tau_y.learned)
            .optional()
    }
}

/// The circuit's four state variables, as tensors of rank `D`: [`OrganicsState`] (one time
/// step, `[batch, n]` each) or [`OrganicsTrajectory`](crate::OrganicsTrajectory) (every
/// step, `[batch, seq, n]` each, the state after step t at index t).
#[derive(Debug, Clone)]
pub struct CircuitVariables<const D: usize> {
    /// Principal-neuron membrane potentials.
    pub y: Tensor<D>,
    /// Modulator membrane potentials.
    pub a: Tensor<D>,
    /// Input gain of the modulators.
    pub b0: Tensor<D>,
    /// Input gain of the principal neurons.
    pub b1: Tensor<D>,
}

/// The circuit's state at one time step, each variable `[batch, n]`.
pub type OrganicsState = CircuitVariables<2>;

impl OrganicsCellConfig {
    /// Initializes a cell with the paper's initialisation (docs/MODEL.md §6):
    /// `W_zx` Kaiming-uniform (a = √5) scaled to spectral norm 1, `W_r` orthogonal, the
    /// gain weights Kaiming-uniform (a = √5), `L = ln(max(U(0,1), 1e-8))` with zero
    /// diagonal, time-constant parameters `N(0, 1)` (or 1 when fixed).
    pub fn init(&self, device: &Device) -> OrganicsCell {
        let (n, n_in) = (self.d_hidden, self.d_input);
        let uniform = Tensor::<2>::random([n, n], Distribution::Uniform(0.0, 1.0), device);
        let log_w = log_weights_zero_diagonal(uniform.clamp_min(1e-8).log());
        let learned = self.learn_time_constants;
        OrganicsCell {
            w_zx: Param::from_tensor(to_unit_spectral_norm(kaiming_uniform_a5(n, n_in, device))),
            w_r: Param::from_tensor(orthogonal(n, device)),
            w_b0x: Param::from_tensor(kaiming_uniform_a5(n, n_in, device)),
            w_b0y: Param::from_tensor(kaiming_uniform_a5(n, n, device)),
            w_b0a: Param::from_tensor(kaiming_uniform_a5(n, n, device)),
            w_b1x: Param::from_tensor(kaiming_uniform_a5(n, n_in, device)),
            w_b1y: Param::from_tensor(kaiming_uniform_a5(n, n, device)),
            w_b1a: Param::from_tensor(kaiming_uniform_a5(n, n, device)),
            log_w: Param::from_tensor(log_w),
            tau_y: TimeConstant::new(n, self.r_max_y, learned, device),
            tau_a: TimeConstant::new(n, self.r_max_a, learned, device),
            tau_b0: TimeConstant::new(n, self.r_max_b, learned, device),
            tau_b1: TimeConstant::new(n, self.r_max_b, learned, device),
            sigma: self.sigma,
            rectified: self.rectified,
            rectified_input: self.rectified_input,
        }
    }
}

/// The cell's eight derived weights, in one container for every form they take: Burn
/// tensors in a [`PreparedCell`], their gradients, host buffers of the fused kernel.
#[derive(Debug, Clone)]
pub(crate) struct CellWeights<T> {
    /// `[W_zx; W_b0x; W_b1x]ᵀ`, `[d_input, 3 d_hidden]`.
    pub(crate) w_x: T,
    /// `[W_r; W_b0y; W_b1y]ᵀ`, `[n, 3n]`: every product with `y` in one matmul.
    pub(crate) w_y: T,
    /// `[W_b0a; W_b1a]ᵀ`, `[n, 2n]`.
    pub(crate) w_a: T,
    /// `Wᵀ`, `[n, n]`.
    pub(crate) w_norm_t: T,
    /// The step ratios `Δt/τ_s`, `[1, n]` each.
    pub(crate) r_y: T,
    pub(crate) r_a: T,
    pub(crate) r_b0: T,
    pub(crate) r_b1: T,
}

impl<T> CellWeights<T> {
    /// `f` applied to each weight.
    pub(crate) fn map<U>(self, mut f: impl FnMut(T) -> U) -> CellWeights<U> {
        CellWeights {
            w_x: f(self.w_x),
            w_y: f(self.w_y),
            w_a: f(self.w_a),
            w_norm_t: f(self.w_norm_t),
            r_y: f(self.r_y),
            r_a: f(self.r_a),
            r_b0: f(self.r_b0),
            r_b1: f(self.r_b1),
        }
    }

    /// The weights by reference.
    pub(crate) fn as_ref(&self) -> CellWeights<&T> {
        CellWeights {
            w_x: &self.w_x,
            w_y: &self.w_y,
            w_a: &self.w_a,
            w_norm_t: &self.w_norm_t,
            r_y: &self.r_y,
            r_a: &self.r_a,
            r_b0: &self.r_b0,
            r_b1: &self.r_b1,
        }
    }

    /// Each weight paired with its counterpart in `other`.
    pub(crate) fn zip<U>(self, other: CellWeights<U>) -> CellWeights<(T, U)> {
        CellWeights {
            w_x: (self.w_x, other.w_x),
            w_y: (self.w_y, other.w_y),
            w_a: (self.w_a, other.w_a),
            w_norm_t: (self.w_norm_t, other.w_norm_t),
            r_y: (self.r_y, other.r_y),
            r_a: (self.r_a, other.r_a),
            r_b0: (self.r_b0, other.r_b0),
            r_b1: (self.r_b1, other.r_b1),
        }
    }

    /// The weights in declaration order.
    pub(crate) fn into_array(self) -> [T; 8] {
        [
            self.w_x,
            self.w_y,
            self.w_a,
            self.w_norm_t,
            self.r_y,
            self.r_a,
            self.r_b0,
            self.r_b1,
        ]
    }
}

impl CellWeights<[usize; 2]> {
    /// The shapes of a cell's weights for `d_input` inputs and `d_hidden` neurons.
    pub(crate) fn shapes(d_input: usize, d_hidden: usize) -> Self {
        let n = d_hidden;
        CellWeights {
            w_x: [d_input, 3 * n],
            w_y: [n, 3 * n],
            w_a: [n, 2 * n],
            w_norm_t: [n, n],
            r_y: [1, n],
            r_a: [1, n],
            r_b0: [1, n],
            r_b1: [1, n],
        }
    }
}

/// The cell's derived weights, computed once per sequence rather than once per step:
/// the concatenated projections, the normalization matrix and the step ratios.
#[derive(Debug, Clone)]
pub struct PreparedCell {
    pub(crate) n: usize,
    pub(crate) w: CellWeights<Tensor<2>>,
    pub(crate) sigma_sq: f64,
    pub(crate) rectified: bool,
    pub(crate) rectified_input: bool,
}

impl PreparedCell {
    /// The same weights as constants without autodiff: steps taken with them build no graph.
    pub fn without_autodiff(&self) -> PreparedCell {
        PreparedCell {
            n: self.n,
            w: self.w.clone().map(|t| t.inner()),
            sigma_sq: self.sigma_sq,
            rectified: self.rectified,
            rectified_input: self.rectified_input,
        }
    }
}

impl OrganicsCell {
    /// Number of principal neurons `n`.
    pub fn size(&self) -> usize {
        self.w_r.lazy_shape()[0]
    }

    /// Size of the input at one time step.
    pub fn input_size(&self) -> usize {
        self.w_zx.lazy_shape()[1]
    }

    /// Normalization weights `W = clamp(exp(L), 0, 1)` off the diagonal and exactly 1 on it.
    ///
    /// The diagonal is masked rather than left to the clamp, so that `W_ii = 1` and
    /// `L_ii = 0` receive no gradient by construction (docs/MODEL.md §6), whatever the
    /// backend's clamp does at its edge.
    pub fn normalization_weights(&self) -> Tensor<2> {
        let n = self.size();
        let device = self.log_w.device();
        let eye = Tensor::<2>::eye(n, &device);
        let off_diagonal = Tensor::<2>::ones([n, n], &device) - eye.clone();
        self.log_w.val().exp().clamp(0.0, 1.0) * off_diagonal + eye
    }

    /// Number of parameters that are stored but not trained (fixed time constants).
    pub fn num_fixed_params(&self) -> usize {
        [&self.tau_y, &self.tau_a, &self.tau_b0, &self.tau_b1]
            .iter()
            .map(|t| t.num_fixed_params())
            .sum()
    }

    /// Derives the per-sequence weights; call once, then [`PreparedCell::step`] per time step.
    pub fn prepare(&self) -> PreparedCell {
        let row = |t: Tensor<1>| t.unsqueeze::<2>();
        let w = CellWeights {
            w_x: Tensor::cat(vec![self.w_zx.val(), self.w_b0x.val(), self.w_b1x.val()], 0)
                .transpose(),
            w_y: Tensor::cat(vec![self.w_r.val(), self.w_b0y.val(), self.w_b1y.val()], 0)
                .transpose(),
            w_a: Tensor::cat(vec![self.w_b0a.val(), self.w_b1a.val()], 0).transpose(),
            w_norm_t: self.normalization_weights().transpose(),
            r_y: row(self.tau_y.ratio()),
            r_a: row(self.tau_a.ratio()),
            r_b0: row(self.tau_b0.ratio()),
            r_b1: row(self.tau_b1.ratio()),
        };
        PreparedCell {
            n: self.size(),
            w,
            sigma_sq: self.sigma * self.sigma,
            rectified: self.rectified,
            rectified_input: self.rectified_input,
        }
    }

    /// One Euler step from `state` with input `x` (`[batch, d_input]`).
    ///
    /// For many steps, [`prepare`](Self::prepare) once and call [`PreparedCell::step`].
    ///
    /// ```
    /// use burn::prelude::*;
    /// use organics_model::{OrganicsCellConfig, OrganicsState};
    ///
    /// let device = Device::flex();
    /// let cell = OrganicsCellConfig::new(2, 8).init(&device);
    /// let s = |v: f32| Tensor::<2>::full([3, 8], v, &device);
    /// let state = OrganicsState { y: s(0.1), a: s(0.5), b0: s(1.0), b1: s(0.5) };
    /// let next = cell.step(Tensor::ones([3, 2], &device), state);
    /// assert_eq!(next.a.dims(), [3, 8]);
    /// ```
    pub fn step(&self, x: Tensor<2>, state: OrganicsState) -> OrganicsState {
        self.prepare().step(x, state)
    }
}

/// What one step computes besides the next state, kept by [`crate::grad::sequence`] so that its
/// backward pass does not recompute the step.
#[derive(Debug, Clone)]
pub(crate) struct StepRecord {
    /// `W_zx x` before rectification.
    pub(crate) zx: Tensor<2>,
    /// `W_r y` before rectification.
    pub(crate) ry: Tensor<2>,
    /// The gain targets `sigmoid(h0)`, `sigmoid(h1)`.
    pub(crate) g0: Tensor<2>,
    pub(crate) g1: Tensor<2>,
    /// The Euler increments `dy/dt`, `da/dt` (before the step ratios).
    pub(crate) dy: Tensor<2>,
    pub(crate) da: Tensor<2>,
}

/// `1 / (1 + e^(−x))`: the same function as Burn's `sigmoid`, which on the CPU backends
/// costs about twice as much (measured 180 µs against 97 µs for 256 x 128 on flex).
fn sigmoid(x: Tensor<2>) -> Tensor<2> {
    (x.neg().exp() + 1.0).recip()
}

impl PreparedCell {
    /// One Euler step (see the [module docs](self) for the equations).
    pub fn step(&self, x: Tensor<2>, state: OrganicsState) -> OrganicsState {
        self.step_recorded(x, state).0
    }

    /// One Euler step and its intermediate values.
    pub(crate) fn step_recorded(
        &self,
        x: Tensor<2>,
        state: OrganicsState,
    ) -> (OrganicsState, StepRecord) {
        let n = self.n;
        let OrganicsState { y, a, b0, b1 } = state;
        let from_x = x.matmul(self.w.w_x.clone());
        let from_y = y.clone().matmul(self.w.w_y.clone());
        let from_a = a.clone().matmul(self.w.w_a.clone());

        let zx = from_x.clone().slice(s![.., 0..n]);
        let z = if self.rectified_input {
            activation::relu(zx.clone())
        } else {
            zx.clone()
        };
        let ry = from_y.clone().slice(s![.., 0..n]);
        let recurrent = if self.rectified {
            activation::relu(ry.clone())
        } else {
            ry.clone()
        };
        // Both gains in one pass over [batch, 2n].
        let gains =
            sigmoid(from_x.slice(s![.., n..3 * n]) + from_y.slice(s![.., n..3 * n]) + from_a);
        let g0 = gains.clone().slice(s![.., 0..n]);
        let g1 = gains.slice(s![.., n..2 * n]);

        let a_pos = activation::relu(a.clone());
        let gate = a_pos.clone().sqrt().neg() + 1.0;
        let dy = b1.clone() * z + gate * recurrent - y.clone();
        let y_sq = if self.rectified {
            activation::relu(y.clone()).square()
        } else {
            y.clone().square()
        };
        let pooled = (y_sq * a_pos).matmul(self.w.w_norm_t.clone());
        let da = b0.clone().square() * self.sigma_sq + pooled - a.clone();

        let next = OrganicsState {
            y: y + self.w.r_y.clone() * dy.clone(),
            a: a + self.w.r_a.clone() * da.clone(),
            b0: b0.clone() + self.w.r_b0.clone() * (g0.clone() - b0),
            b1: b1.clone() + self.w.r_b1.clone() * (g1.clone() - b1),
        };
        let record = StepRecord {
            zx,
            ry,
            g0,
            g1,
            dy,
            da,
        };
        (next, record)
    }
}
