//! The ORGaNICs cell unrolled over a sequence, from a fixed initial state.
//!
//! For inputs `x_1 … x_T` (`[batch, seq, d_input]`) the state after step t is
//! `s_t = step(s_{t−1}, x_t)` with the [cell's Euler step](crate::cell) and `s_0` the stored
//! initial state (docs/MODEL.md §5, §6). [`OrganicsRnn::forward`] returns `y_1 … y_T` and
//! `s_T`, as burn-nn's recurrent modules return their outputs and state; training on the
//! CPU goes through [`forward_recorded_with`](OrganicsRnn::forward_recorded_with) and the
//! hand-derived backward pass of [`crate::grad::sequence`].

use burn::module::{Content, DisplaySettings, ModuleDisplay, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::cell::{CircuitVariables, OrganicsCell, OrganicsCellConfig, OrganicsState};
use crate::error::ModelError;

/// Configuration of an [`OrganicsRnn`].
#[derive(Config, Debug)]
pub struct OrganicsRnnConfig {
    /// The cell.
    pub cell: OrganicsCellConfig,
}

/// An [`OrganicsCell`] unrolled over `[batch, seq, d_input]` inputs.
///
/// The initial state is the same for every sample and not learned (docs/MODEL.md §6):
/// `y_0 ~ U(0,1)` scaled to unit norm, `a_0 ~ U(0,1)`, `b0_0 = 1`, `b1_0 ~ U(0,1)`.
/// It is stored with the weights, so a reloaded model starts from the same state.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct OrganicsRnn {
    /// The cell.
    pub cell: OrganicsCell,
    /// Initial `y`, `[n]` (not trained).
    pub y0: Param<Tensor<1>>,
    /// Initial `a`, `[n]` (not trained).
    pub a0: Param<Tensor<1>>,
    /// Initial `b0`, `[n]` (not trained).
    pub b0_0: Param<Tensor<1>>,
    /// Initial `b1`, `[n]` (not trained).
    pub b1_0: Param<Tensor<1>>,
}

impl ModuleDisplay for OrganicsRnn {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        crate::cell::compact_display()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("d_input", &self.cell.input_size())
            .add("d_hidden", &self.cell.size())
            .add("cell", &self.cell)
            .optional()
    }
}

/// Every state of a sequence, each variable `[batch, seq, n]` (the state after step t at
/// index t).
pub type OrganicsTrajectory = CircuitVariables<3>;

impl OrganicsRnnConfig {
    /// Initializes the cell and draws the fixed initial state.
    pub fn init(&self, device: &Device) -> OrganicsRnn {
        let n = self.cell.d_hidden;
        let fixed = |t: Tensor<1>| Param::from_tensor(t).set_require_grad(false);
        let uniform = || Tensor::<1>::random([n], Distribution::Uniform(0.0, 1.0), device);
        let y0 = uniform();
        let norm = y0.clone().square().sum().sqrt();
        OrganicsRnn {
            cell: self.cell.init(device),
            y0: fixed(y0 / norm),
            a0: fixed(uniform()),
            b0_0: fixed(Tensor::ones([n], device)),
            b1_0: fixed(uniform()),
        }
    }
}

impl OrganicsRnn {
    /// The initial state broadcast to `batch` samples.
    pub fn initial_state(&self, batch: usize) -> OrganicsState {
        let n = self.cell.size();
        let expand = |p: &Param<Tensor<1>>| p.val().unsqueeze::<2>().expand([batch, n]);
        OrganicsState {
            y: expand(&self.y0),
            a: expand(&self.a0),
            b0: expand(&self.b0_0),
            b1: expand(&self.b1_0),
        }
    }

    /// Number of stored parameters that are not trained: the initial state and, when the
    /// time constants are fixed, their parameters.
    pub fn num_fixed_params(&self) -> usize {
        4 * self.cell.size() + self.cell.num_fixed_params()
    }

    /// Checks that `input` is `[batch, seq, d_input]` with `d_input` matching the cell.
    pub fn check_input(&self, input: &Tensor<3>) -> Result<(), ModelError> {
        let [batch, seq, n_in] = input.dims();
        if n_in != self.cell.input_size() || batch == 0 || seq == 0 {
            return Err(ModelError::Shape {
                what: "sequence input",
                expected: format!("[batch > 0, seq > 0, {}]", self.cell.input_size()),
                got: vec![batch, seq, n_in],
            });
        }
        Ok(())
    }

    /// Runs the circuit over `input` (`[batch, seq, d_input]`) from `state` (the stored
    /// initial state when `None`), as `nn::Lstm::forward` does: returns the principal
    /// neurons' potentials `y` after every step, `[batch, seq, d_hidden]`, and the final
    /// state.
    ///
    /// ```
    /// use burn::prelude::*;
    /// use organics_model::{OrganicsCellConfig, OrganicsRnnConfig};
    ///
    /// let device = Device::flex();
    /// let rnn = OrganicsRnnConfig::new(OrganicsCellConfig::new(2, 8)).init(&device);
    /// let (outputs, state) = rnn.forward(Tensor::ones([3, 5, 2], &device), None);
    /// assert_eq!(outputs.dims(), [3, 5, 8]);
    /// // Continuing from the final state equals running both halves at once.
    /// let (_, resumed) = rnn.forward(Tensor::ones([3, 5, 2], &device), Some(state));
    /// let (_, whole) = rnn.forward(Tensor::ones([3, 10, 2], &device), None);
    /// resumed.y.into_data().assert_approx_eq::<f32>(&whole.y.into_data(), Default::default());
    /// ```
    ///
    /// # Panics
    /// On a wrong input shape, like Burn's own recurrent modules; see
    /// [`check_input`](Self::check_input) to validate first.
    pub fn forward(
        &self,
        input: Tensor<3>,
        state: Option<OrganicsState>,
    ) -> (Tensor<3>, OrganicsState) {
        let mut outputs = Vec::with_capacity(input.dims()[1]);
        let last = self.run(input, state, |s| outputs.push(s.y.clone()));
        (Tensor::stack(outputs, 1), last)
    }

    /// [`forward`](Self::forward) without the per-step outputs: only the final state, which
    /// is all a classifier reads (nothing is kept per step).
    pub fn forward_final(&self, input: Tensor<3>, state: Option<OrganicsState>) -> OrganicsState {
        self.run(input, state, |_| {})
    }

    /// Runs the circuit from the stored initial state and also returns every intermediate
    /// state (for trajectory plots).
    pub fn forward_trajectory(&self, input: Tensor<3>) -> (OrganicsState, OrganicsTrajectory) {
        let mut states: Vec<OrganicsState> = Vec::new();
        let last = self.run(input, None, |s| states.push(s.clone()));
        let stack = |f: fn(&OrganicsState) -> Tensor<2>| {
            Tensor::stack::<3>(states.iter().map(f).collect(), 1)
        };
        let trajectory = OrganicsTrajectory {
            y: stack(|s| s.y.clone()),
            a: stack(|s| s.a.clone()),
            b0: stack(|s| s.b0.clone()),
            b1: stack(|s| s.b1.clone()),
        };
        (last, trajectory)
    }

    fn run(
        &self,
        input: Tensor<3>,
        state: Option<OrganicsState>,
        mut observe: impl FnMut(&OrganicsState),
    ) -> OrganicsState {
        let [batch, _, n_in] = input.dims();
        let cell = self.cell.prepare();
        let mut state = state.unwrap_or_else(|| self.initial_state(batch));
        // Slicing the (untracked) input per step is cheap; slicing a tracked per-sequence
        // projection would make the backward pass quadratic in the length.
        for x_t in input.iter_dim(1) {
            state = cell.step(x_t.reshape([batch, n_in]), state);
            observe(&state);
        }
        state
    }
}
