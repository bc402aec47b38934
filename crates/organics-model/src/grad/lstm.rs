//! Backpropagation through time for Burn's `nn::Lstm`, derived by hand: the sequence baseline
//! of the paper's Table 2 trained at the speed of the ORGaNICs kernel.
//!
//! Burn's LSTM step, for the gates `k ∈ {i, f, o, g}` with input and hidden transforms
//! `W_xk` (`[n_in, n]`), `W_hk` (`[n, n]`) and their biases:
//!
//! ```text
//! i = σ(x W_xi + h W_hi + b_i)   f = σ(… f …)   o = σ(… o …)   g = tanh(… g …)
//! c' = f ⊙ c + i ⊙ g             h' = o ⊙ tanh(c')
//! ```
//!
//! with `b_k = b_xk + b_hk` and zero initial states. Going back through a step, with `ḡ_h'`,
//! `ḡ_c'` the loss gradients with respect to the state after it:
//!
//! ```text
//! ĉ = ḡ_c' + ḡ_h' ⊙ o ⊙ (1 − tanh²c')          (everything that reaches c')
//! δi = ĉ ⊙ g ⊙ i(1 − i)     δf = ĉ ⊙ c ⊙ f(1 − f)
//! δo = ḡ_h' ⊙ tanh c' ⊙ o(1 − o)     δg = ĉ ⊙ i ⊙ (1 − g²)
//! ḡ_c = ĉ ⊙ f               ḡ_h = [δi, δf, δo, δg] [W_hi, W_hf, W_ho, W_hg]ᵀ
//! ```
//!
//! The weight gradients are sums over steps: `Σ_t x_tᵀ δ_k` for `W_xk`, `Σ_t h_tᵀ δ_k` for
//! `W_hk`, and `Σ_t Σ_batch δ_k` for both biases of gate `k`. The fused CPU kernel
//! (`kernels/lstm.rs`) runs both passes; [`RecordedLstm::backward`] hands its gradients to
//! Burn's autodiff through the surrogate loss `Σ ⟨W, ḡ_W⟩`, whose gradient with respect to
//! each parameter `W` is exactly `ḡ_W`. A test checks every gradient against autodiff.

use burn::nn::activation::Activation;
use burn::nn::{Linear, Lstm};
use burn::prelude::*;
use burn::tensor::Gradients;

use crate::error::ModelError;
use crate::host::{from_f32, to_f32};
use crate::kernels::lstm::{GATES, HostLstm, LstmSequence};

/// An LSTM sequence run on the fused CPU kernel without an autodiff graph, ready to be
/// backpropagated.
#[derive(Debug)]
pub struct RecordedLstm {
    /// The four gates' transforms, in the kernel's order `i, f, o, g` (tracked: the bridge to
    /// the parameters).
    gates: [(Linear, Linear); GATES],
    /// The hidden state after the last step, without autodiff.
    last: Tensor<2>,
    sequence: LstmSequence,
}

/// The gates of `lstm` in the kernel's order, or why the kernel does not apply.
fn gates(lstm: &Lstm) -> Result<[(Linear, Linear); GATES], ModelError> {
    let unsupported = |what: &str| {
        Err(ModelError::Unsupported(format!(
            "the fused LSTM kernel needs {what}"
        )))
    };
    let sigmoid = matches!(lstm.gate_activation, Activation::Sigmoid(_));
    let tanh = |a: &Activation| matches!(a, Activation::Tanh(_));
    if !(sigmoid && tanh(&lstm.cell_activation) && tanh(&lstm.hidden_activation)) {
        return unsupported("sigmoid gates and tanh cell and hidden activations");
    }
    if lstm.clip.is_some() || lstm.reverse || !lstm.batch_first {
        return unsupported("no cell clipping, forward order and batch-first inputs");
    }
    let Some(forget) = lstm.forget_gate.as_ref().filter(|_| !lstm.input_forget) else {
        return unsupported("a forget gate of its own");
    };
    let all = [&lstm.input_gate, forget, &lstm.output_gate, &lstm.cell_gate];
    if all
        .iter()
        .any(|g| g.input_transform.bias.is_none() || g.hidden_transform.bias.is_none())
    {
        return unsupported("biases");
    }
    Ok(all.map(|g| (g.input_transform.clone(), g.hidden_transform.clone())))
}

impl RecordedLstm {
    /// Whether [`RecordedLstm::forward`] runs `lstm`: sigmoid gates, tanh cell and hidden
    /// activations, a forget gate, biases, no cell clipping, batch-first, forward order (the
    /// defaults of `LstmConfig`).
    pub fn supports(lstm: &Lstm) -> bool {
        gates(lstm).is_ok()
    }

    /// Runs `lstm` over `input` (`[batch, seq, d_input]`) from zero states on the host's
    /// cores and records what [`backward`](Self::backward) needs. The input is data: no
    /// gradient flows back to it. The last hidden state is
    /// [`last_hidden`](Self::last_hidden); it equals `lstm.forward(input, None).1.hidden`.
    ///
    /// # Errors
    /// [`ModelError::Unsupported`] for an LSTM [`supports`](Self::supports) rejects,
    /// [`ModelError::Shape`] for an input of the wrong width, [`ModelError::Data`] when the
    /// values cannot be read back.
    pub fn forward(lstm: &Lstm, input: Tensor<3>) -> Result<Self, ModelError> {
        let gates = gates(lstm)?;
        let [batch, steps, n_in] = input.dims();
        let n = lstm.d_hidden;
        let [d_input, _] = gates[0].0.weight.dims();
        if n_in != d_input {
            return Err(ModelError::Shape {
                what: "LSTM input",
                expected: format!("[batch, seq, {d_input}]"),
                got: vec![batch, steps, n_in],
            });
        }
        let device = input.device();
        let stacked = |f: &dyn Fn(&(Linear, Linear)) -> Tensor<2>| {
            to_f32(Tensor::cat(gates.iter().map(f).collect(), 1).inner())
        };
        let bias = |l: &Linear| l.bias.as_ref().map(|b| b.val());
        let host = HostLstm {
            n_in,
            n,
            w_x: stacked(&|(x, _)| x.weight.val())?,
            w_h: stacked(&|(_, h)| h.weight.val())?,
            bias: stacked(&|(x, h)| {
                let sum = bias(x).zip(bias(h)).map(|(a, b)| a + b);
                // `gates` checked that both biases exist.
                sum.unwrap_or_else(|| Tensor::zeros([n], &x.weight.device()))
                    .unsqueeze()
            })?,
        };
        let sequence = LstmSequence::forward(host, &to_f32(input.inner())?, batch, steps);
        let last = from_f32(sequence.last_hidden(), [batch, n], &device.inner());
        Ok(RecordedLstm {
            gates,
            last,
            sequence,
        })
    }

    /// The hidden state after the last step, `[batch, d_hidden]` (no autodiff).
    pub fn last_hidden(&self) -> &Tensor<2> {
        &self.last
    }

    /// Backpropagates `grad_h`, the loss gradient with respect to the last hidden state
    /// (`[batch, d_hidden]`), through every step and returns the autodiff gradients of the
    /// LSTM's parameters (read them with `GradientsParams::from_grads(grads, &lstm)`).
    ///
    /// # Errors
    /// [`ModelError::Shape`] for a gradient of the wrong shape, [`ModelError::Data`] when
    /// its values cannot be read back.
    pub fn backward(self, grad_h: Tensor<2>) -> Result<Gradients, ModelError> {
        let dims = grad_h.dims();
        if dims != self.last.dims() {
            return Err(ModelError::Shape {
                what: "gradient of the last hidden state",
                expected: format!("{:?}", self.last.dims()),
                got: dims.to_vec(),
            });
        }
        let device = grad_h.device().inner();
        let (n_in, n) = (self.sequence.cell.n_in, self.sequence.cell.n);
        let g = self.sequence.backward(&to_f32(grad_h.inner())?);
        let w_x = from_f32(g.w_x, [n_in, GATES * n], &device);
        let w_h = from_f32(g.w_h, [n, GATES * n], &device);
        let bias = from_f32(g.bias, [GATES * n], &device);
        // ⟨W, ḡ_W⟩ has exactly ḡ_W as its gradient with respect to W.
        let surrogate = self
            .gates
            .iter()
            .enumerate()
            .flat_map(|(k, (x, h))| {
                let gate = |t: Tensor<2>| t.narrow(1, k * n, n).autodiff();
                let b = bias.clone().narrow(0, k * n, n).autodiff();
                let weights = [
                    (x.weight.val() * gate(w_x.clone())).sum(),
                    (h.weight.val() * gate(w_h.clone())).sum(),
                ];
                let biases = [x, h]
                    .into_iter()
                    .filter_map(|l| l.bias.as_ref())
                    .map(move |p| (p.val() * b.clone()).sum());
                weights.into_iter().chain(biases).collect::<Vec<_>>()
            })
            .reduce(|acc, term| acc + term);
        surrogate
            .map(|s| s.backward())
            .ok_or_else(|| ModelError::Unsupported("an LSTM without parameters".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::test_support::{grads_of, relative};
    use burn::nn::LstmConfig;
    use burn::tensor::Distribution;

    /// Loss `Σ h_T ⊙ weight` through Burn's autodiff and through the fused kernel: the
    /// same last hidden state and the same gradient for each of the 16 parameters.
    fn check(batch: usize, seq: usize, n_in: usize, n: usize, scale: f64) {
        let device = Device::flex().autodiff();
        device.seed(11);
        let lstm = LstmConfig::new(n_in, n, true).init(&device);
        // Larger inputs push gates into saturation and cells beyond tanh's linear range.
        let input = Tensor::<3>::random(
            [batch, seq, n_in],
            Distribution::Uniform(-scale, scale),
            &device,
        );
        let weight = Tensor::<2>::random([batch, n], Distribution::Normal(0.0, 1.0), &device);

        let h_plain = lstm.forward(input.clone(), None).1.hidden;
        let plain = grads_of(&lstm, &(h_plain.clone() * weight.clone()).sum().backward());

        let recorded = RecordedLstm::forward(&lstm, input).expect("supported");
        let h_err = relative(
            &to_f32(h_plain.inner()).expect("f32"),
            &to_f32(recorded.last_hidden().clone()).expect("f32"),
        );
        assert!(h_err < 1e-6, "last hidden state differs: {h_err:e}");
        let fused = grads_of(&lstm, &recorded.backward(weight).expect("backward"));
        assert_eq!(plain.len(), 16);
        assert_eq!(fused.len(), plain.len());
        for ((id_p, p), (id_f, f)) in plain.iter().zip(&fused) {
            assert_eq!(id_p, id_f);
            let err = relative(p, f);
            assert!(err < 1e-5, "parameter {id_p}: relative error {err:e}");
        }
    }

    #[test]
    fn hand_derived_lstm_bptt_equals_autodiff() {
        // One shard per core and several chunks of steps, a batch that leaves a short shard.
        check(5, 40, 1, 7, 1.0);
        check(3, 9, 3, 4, 4.0);
        // A whole pixel sequence: gradients through 784 steps of the cell state.
        check(2, 784, 1, 8, 1.0);
    }

    #[test]
    fn the_kernel_rejects_what_it_does_not_compute() {
        let device = Device::flex();
        let coupled = LstmConfig::new(1, 3, true)
            .with_input_forget(true)
            .init(&device);
        assert!(!RecordedLstm::supports(&coupled));
        let clipped = LstmConfig::new(1, 3, true)
            .with_clip(Some(1.0))
            .init(&device);
        let err = RecordedLstm::forward(&clipped, Tensor::zeros([2, 3, 1], &device));
        assert!(matches!(err, Err(ModelError::Unsupported(_))));
        let plain = LstmConfig::new(1, 3, true).init(&device);
        assert!(RecordedLstm::supports(&plain));
        let wide = RecordedLstm::forward(&plain, Tensor::zeros([2, 3, 2], &device));
        assert!(matches!(wide, Err(ModelError::Shape { .. })));
    }
}
