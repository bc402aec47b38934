//! Adam with L2 weight decay (PyTorch's `Adam(weight_decay=...)`, Burn's [`Adam`]), as one
//! pass over each parameter on the CPU backends.
//!
//! Burn's `Adam` evaluates its update as a dozen tensor operations, each a pass over the
//! parameter's memory; for the static model's 0.7 M parameters that was about 2.5 ms of a
//! training step on flex (measured), more than the whole forward pass. [`HostAdam`]
//! computes the update in one loop per parameter, and keeps Burn's [`AdamState`] (the same
//! two moments and step count) so checkpoints are interchangeable with Burn's `Adam`. On a
//! GPU backend it hands each step to Burn's `Adam`, which keeps the values on the device.
//!
//! The loop evaluates `torch.optim.Adam`'s expressions in its order, the optimizer of the
//! authors' code: the step's scalars (bias corrections, step size) in `f64`, each rounded
//! once to `f32`. Burn's `Adam` computes the same update from `f32` scalars, `β^t` by
//! `powi`, whose roundings shrink the early steps by up to 7e-6 relative, always in the same
//! direction: enough to make 20 steps of the main model end measurably further from
//! PyTorch's than PyTorch's own `f32` steps (docs/RESULTS.md, "The training step against
//! PyTorch").

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::prelude::*;
use burn::tensor::DType;

use crate::kernels::simd::vectorized_ieee;
use crate::kernels::threads::{on_threads, parallelism};

/// Adam as in [`AdamConfig`] and `torch.optim.Adam` (`β1 = 0.9`, `β2 = 0.999`, no
/// AMSGrad), with optional L2 weight decay and `ε` from [`HostAdam::with_epsilon`] (default
/// Burn's, 1e-5).
#[derive(Clone)]
pub struct HostAdam {
    epsilon: f32,
    weight_decay: Option<f32>,
    /// Update on the host (CPU backends); otherwise delegate to `fallback`.
    host: bool,
    fallback: Adam,
}

impl HostAdam {
    /// Burn's default Adam with `weight_decay` (L2, added to the gradient); `host` selects
    /// the one-pass update (for tensors that live in host memory anyway).
    pub fn new(weight_decay: Option<f32>, host: bool) -> Self {
        // AdamConfig's defaults (its fields are private; a test checks the update against
        // Burn's Adam, so a change there would show).
        Self::build(weight_decay, 1e-5, host)
    }

    /// The same with `ε = epsilon` in the denominator `√v̂ + ε` (PyTorch's default is 1e-8);
    /// it must be positive, or a parameter whose gradient has always been 0 becomes NaN.
    pub fn with_epsilon(self, epsilon: f32) -> Self {
        Self::build(self.weight_decay, epsilon, self.host)
    }

    fn build(weight_decay: Option<f32>, epsilon: f32, host: bool) -> Self {
        let config = AdamConfig::new()
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .with_epsilon(epsilon);
        HostAdam {
            epsilon,
            weight_decay,
            host,
            fallback: config.build(),
        }
    }

    /// As a module optimizer.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

/// An `f32` tensor's values, reusing its buffer when nothing else holds it.
fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // Only called on f32 tensors of a CPU backend, whose values are in host memory.
    t.into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_else(|e| panic!("an f32 tensor on a CPU backend could not be read: {e:?}"))
}

impl Optimizer for HostAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !self.host {
            return self.fallback.step(lr, tensor, grad, state);
        }
        if tensor.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let device = tensor.device();
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        // Moved, not cloned: a tensor nobody else holds gives up its buffer without a copy.
        let mut p = host_values(tensor);
        let g = host_values(grad);
        let n = p.len();
        let (mut m, mut v) = match moments {
            Some((m, v)) => (host_values(m), host_values(v)),
            None => (vec![0.0; n], vec![0.0; n]),
        };
        adam_parallel(&mut p, &g, &mut m, &mut v, AdamScalars::new(self, lr, time));
        let back =
            |values: Vec<f32>| Tensor::from_data(TensorData::new(values, shape.clone()), &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, back(m), back(v)));
        (back(p), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

/// Adam's `β1` and `β2` (Burn's and PyTorch's defaults).
const BETA_1: f64 = 0.9;
const BETA_2: f64 = 0.999;

/// The scalars of one step, computed as `torch.optim.Adam` computes them: in `f64`, then
/// rounded to `f32` where they meet the parameter's values.
#[derive(Clone, Copy)]
struct AdamScalars {
    /// `1 − β1`, the weight of `m`'s step toward the gradient.
    weight_1: f32,
    beta_2: f32,
    /// `1 − β2`.
    weight_2: f32,
    penalty: Option<f32>,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `√(1 − β2^t)`.
    bias_correction2_sqrt: f32,
    epsilon: f32,
}

impl AdamScalars {
    fn new(o: &HostAdam, lr: LearningRate, time: usize) -> Self {
        let t = i32::try_from(time).unwrap_or(i32::MAX);
        AdamScalars {
            weight_1: (1.0 - BETA_1) as f32,
            beta_2: BETA_2 as f32,
            weight_2: (1.0 - BETA_2) as f32,
            penalty: o.weight_decay,
            step_size: (lr / (1.0 - BETA_1.powi(t))) as f32,
            bias_correction2_sqrt: (1.0 - BETA_2.powi(t)).sqrt() as f32,
            epsilon: o.epsilon,
        }
    }
}

/// Parameters at least this large are updated on every core.
const PARALLEL_FROM: usize = 1 << 16;

/// [`adam_update`] with large parameters split over the cores.
fn adam_parallel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
    let n = p.len();
    let cores = parallelism();
    if n < PARALLEL_FROM || cores < 2 {
        return adam_update(p, g, m, v, s);
    }
    let chunk = n.div_ceil(cores);
    let parts: Vec<_> = p
        .chunks_mut(chunk)
        .zip(g.chunks(chunk))
        .zip(m.chunks_mut(chunk))
        .zip(v.chunks_mut(chunk))
        .collect();
    on_threads(parts, |(((p, g), m), v)| adam_update(p, g, m, v, s));
}

/// [`adam_body`] compiled for the CPU's vector instructions, with subnormal values kept as
/// PyTorch's Adam keeps them (see [`vectorized_ieee`]).
fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
    vectorized_ieee(
        #[inline(always)]
        || adam_body(p, g, m, v, s),
    )
}

/// `torch.optim.Adam`'s single-tensor step: `g' = g + λ p; m = m + (1 − β1)(g' − m);
/// v = β2 v + ((1 − β2) g') g'; p −= (s m) / (√v / √(1 − β2^t) + ε)` with the step size
/// `s = lr / (1 − β1^t)`. A first step starts from `m = v = 0`.
#[inline(always)]
fn adam_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let grad = match s.penalty {
            Some(penalty) => g[i] + penalty * p[i],
            None => g[i],
        };
        // PyTorch's lerp for a weight below 0.5.
        let m_i = m[i] + s.weight_1 * (grad - m[i]);
        let v_i = v[i] * s.beta_2 + s.weight_2 * grad * grad;
        m[i] = m_i;
        v[i] = v_i;
        let denominator = v_i.sqrt() / s.bias_correction2_sqrt + s.epsilon;
        p[i] -= s.step_size * m_i / denominator;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    fn weights(l: &Linear) -> Vec<f32> {
        let read = |t: Tensor<2>| t.into_data().try_into_vec_as::<f32>().expect("f32");
        let mut v = read(l.weight.val());
        if let Some(b) = &l.bias {
            v.extend(read(b.val().unsqueeze()));
        }
        v
    }

    fn close(a: &Linear, b: &Linear) -> bool {
        let (a, b) = (weights(a), weights(b));
        a.iter()
            .zip(&b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0))
    }

    /// The weight of a unit that gets no gradient from the task, only the weight decay's
    /// `λ w` (λ = 1e-5, lr 0.01, the paper's), from the state training leaves it in (step
    /// 2,000, `v` from task gradients of about 1e-3). The step is at most `lr · λ|w| / ε`
    /// (with `m̂ ≈ λ w`): with `ε = 1e-5` (= λ) at most `lr · |w|`, so the weight shrinks
    /// without changing sign while it is a normal `f32`; with `ε = 1e-8` the step outgrows
    /// `|w|` once `v` has forgotten the task gradients, and the weight turns positive while
    /// still a normal number, which the kernels (reading subnormals as zero) see as input
    /// (docs/MODEL.md §11, item 8). The first step at which the weight is positive and
    /// normal, if any within `steps`.
    fn first_normal_positive_step(epsilon: f32, steps: usize) -> Option<usize> {
        let adam = HostAdam::new(Some(1e-5), true).with_epsilon(epsilon);
        let (mut p, mut m, mut v) = ([-0.05f32], [0.0f32], [1e-6f32]);
        let start = 2_000;
        (1..=steps).find(|&k| {
            let s = AdamScalars::new(&adam, 0.01, start + k);
            adam_update(&mut p, &[0.0], &mut m, &mut v, s);
            p[0] >= f32::MIN_POSITIVE
        })
    }

    /// Twenty steps of the host update against `torch.optim.Adam`'s formula in `f64`: the
    /// parameters' total displacement agrees to 1e-6 relative. With the step's scalars in
    /// `f32` (`β^t` by `powi`, Burn's formulation) the early steps are shorter by up to 7e-6
    /// relative, all in the same direction, and the displacement falls short by more.
    #[test]
    fn host_adam_follows_pytorch_adam() {
        let (lr, decay, epsilon) = (0.005, 1e-5, 1e-8);
        let adam = HostAdam::new(Some(decay as f32), true).with_epsilon(epsilon as f32);
        let start = [0.5f32, -0.25, 0.125];
        let grad = |k: usize, j: usize| 0.01 * (1.0 + 0.1 * ((k * 7 + j) as f64).sin());
        let (mut p, mut m, mut v) = (start, [0.0f32; 3], [0.0f32; 3]);
        let (mut p64, mut m64, mut v64) = (start.map(f64::from), [0.0f64; 3], [0.0f64; 3]);
        for k in 1..=20 {
            let g: Vec<f32> = (0..3).map(|j| grad(k, j) as f32).collect();
            adam_update(&mut p, &g, &mut m, &mut v, AdamScalars::new(&adam, lr, k));
            let (c1, c2) = (1.0 - 0.9f64.powi(k as i32), 1.0 - 0.999f64.powi(k as i32));
            for j in 0..3 {
                let g = f64::from(g[j]) + decay * p64[j];
                m64[j] = 0.9 * m64[j] + 0.1 * g;
                v64[j] = 0.999 * v64[j] + 0.001 * g * g;
                p64[j] -= lr / c1 * m64[j] / (v64[j].sqrt() / c2.sqrt() + epsilon);
            }
        }
        for j in 0..3 {
            let (moved, moved64) = (f64::from(p[j] - start[j]), p64[j] - f64::from(start[j]));
            let err = (moved - moved64).abs() / moved64.abs();
            assert!(
                err < 1e-6,
                "parameter {j}: moved {moved} against {moved64} ({err:e})"
            );
        }
    }

    #[test]
    fn only_a_small_epsilon_lets_a_decaying_weight_turn_positive() {
        // 100 epochs of the sequence tasks' 223 steps.
        let steps = 22_300;
        assert_eq!(first_normal_positive_step(1e-5, steps), None);
        let turned = first_normal_positive_step(1e-8, steps).expect("turns with ε = 1e-8");
        // v must first forget the task gradients (β2 = 0.999: thousands of steps); with
        // subnormals flushed to zero the weight would stop short of it, stuck near -5e-33.
        assert!(turned > 2_000, "turned after {turned} steps");
    }

    /// Several steps of the host pass (or, `host` false, of its fallback) against Burn's
    /// `Adam` from the same start, then a step of Burn's `Adam` resumed from the record.
    /// Gradients scaled to about 1e-6 make `ε` matter: there the result with `ε = 1e-8`
    /// must also differ from the one with Burn's 1e-5, so a dropped `ε` would show.
    #[test]
    fn host_adam_equals_burn_adam() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let cases = [
            (None, None, 1.0, true),
            (Some(1e-2), None, 1.0, true),
            (None, Some(1e-8), 1e-6, true),
            (None, Some(1e-8), 1e-6, false),
        ];
        let start = LinearConfig::new(7, 5).init(&device);
        let x = Tensor::<2>::random([3, 7], Distribution::Normal(0.0, 1.0), &device);
        for (decay, epsilon, scale, on_host) in cases {
            let burn_adam = || {
                let config = AdamConfig::new().with_weight_decay(decay.map(WeightDecayConfig::new));
                match epsilon {
                    Some(e) => config.with_epsilon(e),
                    None => config,
                }
                .init()
            };
            let host_adam = |epsilon: Option<f32>| {
                let host = HostAdam::new(decay, on_host);
                match epsilon {
                    Some(e) => host.with_epsilon(e),
                    None => host,
                }
                .init()
            };
            let grads = |m: &Linear, power: i32| {
                let loss = m.forward(x.clone()).powi_scalar(power).sum() * scale;
                GradientsParams::from_grads(loss.backward(), m)
            };
            let mut host = host_adam(epsilon);
            let mut burn = burn_adam();
            let mut default_epsilon = host_adam(None);
            let (mut ours, mut theirs, mut other) = (start.clone(), start.clone(), start.clone());
            for step in 0..6 {
                let lr = 0.01 / (step + 1) as f64;
                let (g_ours, g_theirs) = (grads(&ours, 2), grads(&theirs, 2));
                let g_other = grads(&other, 2);
                ours = host.step(lr, ours, g_ours);
                theirs = burn.step(lr, theirs, g_theirs);
                other = default_epsilon.step(lr, other, g_other);
            }
            let case = format!("decay {decay:?}, ε {epsilon:?}, host {on_host}");
            assert!(close(&ours, &theirs), "{case}: differs from Burn's Adam");
            assert!(!close(&ours, &start), "{case}: the steps moved nothing");
            if epsilon.is_some() {
                assert!(!close(&ours, &other), "{case}: ε made no difference");
            }
            let mut resumed = burn_adam().load_record(host.to_record());
            let (g_ours, g_theirs) = (grads(&ours, 3), grads(&theirs, 3));
            let ours = host.step(1e-3, ours, g_ours);
            let theirs = resumed.step(1e-3, theirs, g_theirs);
            assert!(close(&ours, &theirs), "{case}: resumed step differs");
        }
    }
}
