//! Backpropagation through time for the ORGaNICs cell, derived by hand.
//!
//! Autodiff records every element-wise op of every one of the 784 steps as a graph node
//! and keeps its operands; most of a training step's time went into that bookkeeping. This
//! path runs the sequence with no graph (the states of every step are saved once), then walks
//! back through the steps with the derivatives of the [cell update](crate::cell) written out:
//!
//! ```text
//! ḡ_y' , ḡ_a', ḡ_b0', ḡ_b1'          gradients with respect to the state after step t
//! δy = r_y ⊙ ḡ_y'    δa = r_a ⊙ ḡ_a'    δG0 = r_b0 ⊙ ḡ_b0'    δG1 = r_b1 ⊙ ḡ_b1'
//! u  = ⌊y⌋² ⊙ ⌊a⌋,   δu = δa W                       (pooled = u Wᵀ)
//! δrec = δy ⊙ (1 − √⌊a⌋) ⊙ [W_r y > 0]                (rec = ⌊W_r y⌋)
//! δh_k = δG_k ⊙ G_k ⊙ (1 − G_k)                        (G_k = sigmoid(h_k), k = 0, 1)
//! δ⌊a⌋ = −δy ⊙ rec / (2 √⌊a⌋) + δu ⊙ ⌊y⌋²
//! ḡ_y = ḡ_y' − δy + δu ⊙ ⌊a⌋ ⊙ 2⌊y⌋ + [δrec, δh0, δh1] [W_r; W_b0y; W_b1y]
//! ḡ_a = ḡ_a' − δa + δ⌊a⌋ ⊙ [a > 0] + [δh0, δh1] [W_b0a; W_b1a]
//! ḡ_b0 = (1 − r_b0) ⊙ ḡ_b0' + 2σ² b0 ⊙ δa          ḡ_b1 = (1 − r_b1) ⊙ ḡ_b1' + z ⊙ δy
//! ```
//!
//! (main model: `W_r y` and `y²` in place of `⌊W_r y⌋` and `⌊y⌋²`, with the masks dropped).
//! The weight gradients are sums over steps of `stateᵀ δ`, the step-ratio gradients sums of
//! `Δstate ⊙ ḡ`. They are gradients with respect to the [`PreparedCell`]'s derived
//! tensors; one small autodiff pass through [`OrganicsCell::prepare`](crate::OrganicsCell::prepare) carries them to the
//! parameters (the exponential, clamp and mask of `W`, the sigmoids of the time
//! constants), so the result equals the plain autodiff path. A test checks that to 1e-5.

use burn::prelude::*;
use burn::tensor::{Gradients, activation};

use crate::cell::{CellWeights, OrganicsState, PreparedCell, StepRecord};
use crate::host::{from_f32, to_f32};
use crate::kernels::sequence::{HostCell, HostSequence};
use crate::rnn::OrganicsRnn;

/// Where [`OrganicsRnn::forward_recorded_with`] runs a sequence and its backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BpttKernel {
    /// Burn tensor ops on the input's device: any backend (on wgpu,
    /// [`FusedGpu`](Self::FusedGpu) launches far fewer kernels).
    #[default]
    TensorOps,
    /// The fused `f32` kernel on the host's cores (`kernels/sequence.rs`); inputs, final state
    /// and gradients are copied between the device and the host once per sequence. The
    /// choice on the CPU backends (flex, ndarray), where it is several times faster.
    FusedCpu,
    /// The fused CubeCL kernels on a wgpu device (`kernels/cube.rs`, cargo feature `wgpu`):
    /// a step's element-wise work in one kernel each way, the products in Burn's matmul.
    /// The choice on wgpu. On any other device (or without the feature), and for a sequence
    /// whose whole-sequence buffers exceed the device's largest allocation, it runs
    /// [`TensorOps`](Self::TensorOps).
    FusedGpu,
}

impl BpttKernel {
    /// The fused kernel for `device`: [`FusedGpu`](Self::FusedGpu) on wgpu (with the cargo
    /// feature `wgpu`), [`FusedCpu`](Self::FusedCpu) otherwise.
    pub fn fused_for(device: &Device) -> Self {
        if gpu_kernels_run_on(device) {
            BpttKernel::FusedGpu
        } else {
            BpttKernel::FusedCpu
        }
    }
}

/// Whether [`BpttKernel::FusedGpu`] runs its own kernels on `device`.
fn gpu_kernels_run_on(device: &Device) -> bool {
    #[cfg(feature = "wgpu")]
    return crate::kernels::cube::available(device);
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = device;
        false
    }
}

/// A sequence run without an autodiff graph, ready to be backpropagated.
#[derive(Debug)]
pub struct RecordedSequence {
    /// The cell's derived weights, tracked (the autodiff bridge to the parameters).
    tracked: PreparedCell,
    /// The state after the last step, without autodiff.
    last: OrganicsState,
    /// What the backward pass needs, from whichever kernel ran the sequence.
    tape: Tape,
}

#[derive(Debug)]
enum Tape {
    Tensor(Box<TensorTape>),
    Host(Box<HostSequence>),
    #[cfg(feature = "wgpu")]
    Cube(Box<crate::kernels::cube::CubeTape>),
}

/// The recorded sequence of [`BpttKernel::TensorOps`].
#[derive(Debug)]
struct TensorTape {
    /// The derived weights without autodiff, for the recorded forward and backward steps.
    cell: PreparedCell,
    /// Inputs of every step, `[batch, n_in]` each, without autodiff.
    inputs: Vec<Tensor<2>>,
    /// The state before every step (index t: before step t), without autodiff.
    states: Vec<OrganicsState>,
    /// The intermediate values of every step.
    records: Vec<StepRecord>,
}

/// Values of a tensor as row-major `f32`.
fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // `to_f32` converts to f32 first: the element type cannot mismatch.
    to_f32(t).unwrap_or_else(|e| panic!("f32 tensor data: {e}"))
}

impl OrganicsRnn {
    /// Runs the circuit over `input` (`[batch, seq, n_in]`) without an autodiff graph and
    /// records what [`RecordedSequence::backward`] needs, with Burn tensor ops
    /// ([`BpttKernel::TensorOps`]). The final state is [`RecordedSequence::last`]; its values
    /// equal [`forward`](Self::forward)'s.
    pub fn forward_recorded(&self, input: Tensor<3>) -> RecordedSequence {
        self.forward_recorded_with(input, BpttKernel::TensorOps)
    }

    /// [`forward_recorded`](Self::forward_recorded) on the chosen kernel.
    ///
    /// # Panics
    /// On a wrong input shape, like [`forward`](Self::forward).
    pub fn forward_recorded_with(&self, input: Tensor<3>, kernel: BpttKernel) -> RecordedSequence {
        match kernel {
            BpttKernel::TensorOps => self.record_tensor_ops(input),
            BpttKernel::FusedCpu => self.record_fused_cpu(input),
            #[cfg(feature = "wgpu")]
            BpttKernel::FusedGpu if gpu_kernels_run_on(&input.device()) => self.record_cube(input),
            BpttKernel::FusedGpu => self.record_tensor_ops(input),
        }
    }

    #[cfg(feature = "wgpu")]
    fn record_cube(&self, input: Tensor<3>) -> RecordedSequence {
        let [batch, steps, _] = input.dims();
        let fits = crate::kernels::cube::CubeTape::fits(&input, steps, batch, self.cell.size());
        if !fits {
            return self.record_tensor_ops(input);
        }
        let tracked = self.cell.prepare();
        let cell = tracked.without_autodiff();
        let initial = self.initial_state(batch);
        let initial = OrganicsState {
            y: initial.y.inner(),
            a: initial.a.inner(),
            b0: initial.b0.inner(),
            b1: initial.b1.inner(),
        };
        let tape = crate::kernels::cube::CubeTape::forward(cell, initial, input.inner());
        RecordedSequence {
            tracked,
            last: tape.last(),
            tape: Tape::Cube(Box::new(tape)),
        }
    }

    fn record_fused_cpu(&self, input: Tensor<3>) -> RecordedSequence {
        let [batch, steps, n_in] = input.dims();
        let n = self.cell.size();
        assert_eq!(n_in, self.cell.input_size(), "input size of the sequence");
        let tracked = self.cell.prepare();
        let c = tracked.without_autodiff();
        let device = c.w.w_y.device();
        let host = HostCell {
            n,
            n_in,
            w: c.w.map(host_values),
            sigma_sq: c.sigma_sq as f32,
            rectified: c.rectified,
            rectified_input: c.rectified_input,
        };
        let initial = [&self.y0, &self.a0, &self.b0_0, &self.b1_0].map(|p| host_values(p.val()));
        let values = host_values(input);
        let sequence = HostSequence::forward(
            host,
            [&initial[0], &initial[1], &initial[2], &initial[3]],
            &values,
            batch,
            steps,
        );
        let [y, a, b0, b1] = sequence.last().map(|v| from_f32(v, [batch, n], &device));
        RecordedSequence {
            tracked,
            last: OrganicsState { y, a, b0, b1 },
            tape: Tape::Host(Box::new(sequence)),
        }
    }

    fn record_tensor_ops(&self, input: Tensor<3>) -> RecordedSequence {
        let [batch, _, n_in] = input.dims();
        let tracked = self.cell.prepare();
        let cell = tracked.without_autodiff();
        let initial = self.initial_state(batch);
        let mut state = OrganicsState {
            y: initial.y.inner(),
            a: initial.a.inner(),
            b0: initial.b0.inner(),
            b1: initial.b1.inner(),
        };
        let inputs: Vec<Tensor<2>> = input
            .inner()
            .iter_dim(1)
            .map(|x| x.reshape([batch, n_in]))
            .collect();
        let mut states = Vec::with_capacity(inputs.len());
        let mut records = Vec::with_capacity(inputs.len());
        for x in &inputs {
            let (next, record) = cell.step_recorded(x.clone(), state.clone());
            states.push(state);
            records.push(record);
            state = next;
        }
        RecordedSequence {
            tracked,
            last: state,
            tape: Tape::Tensor(Box::new(TensorTape {
                cell,
                inputs,
                states,
                records,
            })),
        }
    }
}

/// Gradients with respect to the derived weights of a [`PreparedCell`].
type PreparedGrads = CellWeights<Tensor<2>>;

impl RecordedSequence {
    /// The state after the last step (no autodiff).
    pub fn last(&self) -> &OrganicsState {
        &self.last
    }

    /// Backpropagates `grad_y`, the loss gradient with respect to the final `y`
    /// (`[batch, n]`), through every step, and returns the autodiff gradients of the
    /// cell's parameters (read them with `GradientsParams::from_grads(grads, &rnn)`).
    pub fn backward(self, grad_y: Tensor<2>) -> Gradients {
        let g = match &self.tape {
            Tape::Tensor(tape) => tape.backward_prepared(grad_y.inner(), &self.last),
            Tape::Host(sequence) => host_backward(sequence, grad_y.inner()),
            #[cfg(feature = "wgpu")]
            Tape::Cube(tape) => tape.backward(grad_y.inner()),
        };
        let t = &self.tracked;
        // ⟨tracked, ḡ⟩ has exactly ḡ as its gradient with respect to each derived tensor,
        // so its backward pass carries ḡ through `prepare` to the parameters.
        let terms = t.w.as_ref().zip(g).into_array();
        let [first, rest @ ..] =
            terms.map(|(tracked, grad)| (tracked.clone() * grad.autodiff()).sum());
        rest.into_iter()
            .fold(first, |acc, term| acc + term)
            .backward()
    }
}

/// The backward pass of [`BpttKernel::FusedCpu`], its gradients moved to `grad_y`'s device.
fn host_backward(sequence: &HostSequence, grad_y: Tensor<2>) -> PreparedGrads {
    let device = grad_y.device();
    let (n, n_in) = (sequence.cell.n, sequence.cell.n_in);
    let g = sequence.backward(&host_values(grad_y));
    g.zip(CellWeights::shapes(n_in, n))
        .map(|(values, shape)| from_f32(values, shape, &device))
}

impl TensorTape {
    fn backward_prepared(&self, grad_y: Tensor<2>, last: &OrganicsState) -> PreparedGrads {
        let c = &self.cell;
        let zeros = |t: &Tensor<2>| t.zeros_like();
        let mut gy = grad_y;
        let mut ga = zeros(&last.a);
        let mut gb0 = zeros(&last.b0);
        let mut gb1 = zeros(&last.b1);
        // w_y, w_a and w_norm_t are filled after the loop.
        let mut acc: PreparedGrads = c.w.as_ref().map(zeros);
        let column_sum = |t: Tensor<2>| t.sum_dim(0);
        // The weight gradients Σ_t stateᵀ δ are taken after the loop as one matmul over all
        // steps, [n, T·batch] x [T·batch, k]: the same arithmetic in one large product, which
        // runs far closer to the CPU's peak than 784 small ones.
        let steps_total = self.inputs.len();
        let mut deltas_y = Vec::with_capacity(steps_total);
        let mut deltas_a = Vec::with_capacity(steps_total);
        let mut deltas_pool = Vec::with_capacity(steps_total);
        let mut pooled_inputs = Vec::with_capacity(steps_total);
        let steps = self.inputs.iter().zip(&self.states).zip(&self.records);
        for ((x, s), record) in steps.rev() {
            let OrganicsState { y, a, b0, b1 } = s.clone();
            let StepRecord {
                zx,
                ry,
                g0,
                g1,
                dy: dy_state,
                da: da_state,
            } = record.clone();
            // Cheap element-wise values are recomputed rather than stored.
            let z = if c.rectified_input {
                activation::relu(zx.clone())
            } else {
                zx.clone()
            };
            let rec = if c.rectified {
                activation::relu(ry.clone())
            } else {
                ry.clone()
            };
            let a_pos = activation::relu(a.clone());
            let sqrt_a = a_pos.clone().sqrt();
            let gate = sqrt_a.clone().neg() + 1.0;
            let y_act = if c.rectified {
                activation::relu(y.clone())
            } else {
                y.clone()
            };
            let y_sq = y_act.clone().square();
            let u = y_sq.clone() * a_pos.clone();

            // Step ratios: r ⊙ Δ, so ∂/∂r = Σ_batch Δ ⊙ ḡ'.
            acc.r_y = acc.r_y + column_sum(dy_state * gy.clone());
            acc.r_a = acc.r_a + column_sum(da_state * ga.clone());
            acc.r_b0 = acc.r_b0 + column_sum((g0.clone() - b0.clone()) * gb0.clone());
            acc.r_b1 = acc.r_b1 + column_sum((g1.clone() - b1.clone()) * gb1.clone());

            let d_y = c.w.r_y.clone() * gy.clone();
            let d_a = c.w.r_a.clone() * ga.clone();
            let d_g0 = c.w.r_b0.clone() * gb0.clone();
            let d_g1 = c.w.r_b1.clone() * gb1.clone();

            // Normalization pool.
            pooled_inputs.push(u);
            deltas_pool.push(d_a.clone());
            let d_u = d_a.clone().matmul(c.w.w_norm_t.clone().transpose());

            // Products with y, a and x.
            let mut d_rec = d_y.clone() * gate;
            if c.rectified {
                d_rec = d_rec.mask_fill(ry.lower_equal_elem(0.0), 0.0);
            }
            let d_h0 = d_g0 * g0.clone() * (g0.neg() + 1.0);
            let d_h1 = d_g1 * g1.clone() * (g1.neg() + 1.0);
            let mut d_zx = d_y.clone() * b1;
            if c.rectified_input {
                d_zx = d_zx.mask_fill(zx.lower_equal_elem(0.0), 0.0);
            }
            let d_from_y = Tensor::cat(vec![d_rec, d_h0.clone(), d_h1.clone()], 1);
            let d_from_a = Tensor::cat(vec![d_h0.clone(), d_h1.clone()], 1);
            let d_from_x = Tensor::cat(vec![d_zx, d_h0, d_h1], 1);
            deltas_y.push(d_from_y.clone());
            deltas_a.push(d_from_a.clone());
            acc.w_x = acc.w_x + x.clone().transpose().matmul(d_from_x);

            // Gradients with respect to the state before the step.
            let d_a_pos = (d_y.clone() * rec).neg() / (sqrt_a * 2.0) + d_u.clone() * y_sq;
            let mut d_y_act = d_u * a_pos * y_act * 2.0;
            if c.rectified {
                d_y_act = d_y_act.mask_fill(y.clone().lower_equal_elem(0.0), 0.0);
            }
            let new_gy = gy - d_y.clone() + d_y_act + d_from_y.matmul(c.w.w_y.clone().transpose());
            let new_ga = ga - d_a.clone()
                + d_a_pos.mask_fill(a.lower_equal_elem(0.0), 0.0)
                + d_from_a.matmul(c.w.w_a.clone().transpose());
            let new_gb0 = gb0.clone() - c.w.r_b0.clone() * gb0 + b0 * d_a * (2.0 * c.sigma_sq);
            let new_gb1 = gb1.clone() - c.w.r_b1.clone() * gb1 + z * d_y;
            gy = new_gy;
            ga = new_ga;
            gb0 = new_gb0;
            gb1 = new_gb1;
        }
        // The deltas were pushed last step first.
        let stacked = |mut v: Vec<Tensor<2>>| {
            v.reverse();
            Tensor::cat(v, 0)
        };
        let states_y = Tensor::cat(self.states.iter().map(|s| s.y.clone()).collect(), 0);
        let states_a = Tensor::cat(self.states.iter().map(|s| s.a.clone()).collect(), 0);
        acc.w_y = states_y.transpose().matmul(stacked(deltas_y));
        acc.w_a = states_a.transpose().matmul(stacked(deltas_a));
        acc.w_norm_t = stacked(pooled_inputs)
            .transpose()
            .matmul(stacked(deltas_pool));
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::OrganicsCellConfig;
    use crate::grad::test_support::{grads_of, relative};
    use crate::rnn::OrganicsRnnConfig;
    use burn::tensor::Distribution;

    /// Where the hand-derived paths run in [`check`]: the device, its kernels and the
    /// tolerance (relative, per parameter) against autodiff on flex.
    struct Target {
        device: Device,
        kernels: [BpttKernel; 2],
        tolerance: f64,
    }

    fn flex() -> Target {
        Target {
            device: Device::flex().autodiff(),
            kernels: [BpttKernel::TensorOps, BpttKernel::FusedCpu],
            tolerance: 1e-5,
        }
    }

    fn check(rectified: bool, learned: bool, r_scale: f64, seq: usize, rectified_input: bool) {
        check_on(&flex(), rectified, learned, r_scale, seq, rectified_input);
    }

    fn check_on(
        target: &Target,
        rectified: bool,
        learned: bool,
        r_scale: f64,
        seq: usize,
        rectified_input: bool,
    ) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let cell = OrganicsCellConfig::new(2, 6)
            .with_rectified(rectified)
            .with_rectified_input(rectified_input)
            .with_learn_time_constants(learned)
            .with_r_max_y(0.02 * r_scale)
            .with_r_max_a(0.005 * r_scale)
            .with_r_max_b(0.1 * r_scale);
        let rnn = OrganicsRnnConfig::new(cell).init(&device);
        // pixel-like inputs: many exact zeros, the rest in (0, 1]
        let input = Tensor::<3>::random([3, seq, 2], Distribution::Uniform(-1.0, 1.0), &device)
            .clamp_min(0.0);
        let weight = Tensor::<2>::random([3, 6], Distribution::Normal(0.0, 1.0), &device);

        let y_plain = rnn.forward_final(input.clone(), None).y;
        let loss = (y_plain.clone() * weight.clone()).sum();
        let plain = grads_of(&rnn, &loss.backward());
        let y_plain = y_plain
            .inner()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");

        let rnn = rnn.fork(&target.device);
        let (input, weight) = (
            input.to_device(&target.device),
            weight.to_device(&target.device),
        );
        for kernel in target.kernels {
            let recorded = rnn.forward_recorded_with(input.clone(), kernel);
            let y_fast = recorded.last().y.clone();
            let y_fast = y_fast.into_data().try_to_vec::<f32>().expect("f32");
            let y_err = relative(&y_plain, &y_fast);
            let y_tol = target.tolerance / 10.0;
            assert!(y_err < y_tol, "{kernel:?}: final y differs: {y_err:e}");
            let fast = grads_of(&rnn, &recorded.backward(weight.clone()));

            // 9 weight matrices, and 4 time constants when they are learned
            assert_eq!(plain.len(), if learned { 13 } else { 9 });
            assert_eq!(fast.len(), plain.len());
            for ((id_p, p), (id_f, f)) in plain.iter().zip(&fast) {
                assert_eq!(id_p, id_f);
                let err = relative(p, f);
                assert!(
                    err < target.tolerance,
                    "{kernel:?}, rectified {rectified} (input {rectified_input}), learned {learned}, r x{r_scale}, seq {seq}: parameter {id_p} differs by {err:e}"
                );
            }
        }
    }

    #[test]
    fn hand_derived_bptt_equals_autodiff() {
        check(true, true, 1.0, 30, true);
        check(true, false, 1.0, 30, true);
        check(false, true, 1.0, 30, true);
        // larger steps make the recurrence matter more within a short sequence
        check(true, true, 5.0, 60, true);
        check(false, true, 5.0, 60, true);
        // the input drive without rectification (a variant of the authors' code)
        check(true, true, 1.0, 30, false);
        check(true, false, 5.0, 60, false);
    }

    /// The fused CubeCL kernels and the tensor ops on wgpu (Mesa's lavapipe in CI) against
    /// autodiff on flex: main and rectified, learned and fixed time constants, the input
    /// drive with and without rectification.
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_wgpu_kernels_equal_autodiff() {
        // cubecl panics when no adapter can be found; a probe turns that into a skip.
        let probe = std::panic::catch_unwind(|| {
            let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            let ones = Tensor::<1>::ones([2], &device)
                .into_data()
                .try_to_vec::<f32>();
            (ones == Ok(vec![1.0, 1.0])).then_some(device)
        });
        let Some(device) = probe.ok().flatten() else {
            eprintln!("SKIPPED: no wgpu adapter on this machine (install mesa-vulkan-drivers)");
            return;
        };
        let device = device.autodiff();
        assert_eq!(BpttKernel::fused_for(&device), BpttKernel::FusedGpu);
        // The kernels really run for these shapes; a sequence too large for one allocation
        // (or for 32-bit indices) would take the tensor ops instead.
        use crate::kernels::cube::CubeTape;
        let probe = Tensor::<3>::zeros([1, 1, 1], &device);
        assert!(CubeTape::fits(&probe, 60, 3, 6));
        assert!(!CubeTape::fits(&probe, 784, 1 << 16, 1024));
        let target = Target {
            device,
            kernels: [BpttKernel::TensorOps, BpttKernel::FusedGpu],
            tolerance: 1e-4,
        };
        check_on(&target, true, true, 1.0, 30, true);
        check_on(&target, true, false, 1.0, 30, true);
        check_on(&target, false, true, 1.0, 30, true);
        check_on(&target, false, false, 5.0, 60, true);
        check_on(&target, true, true, 1.0, 30, false);
    }
}
