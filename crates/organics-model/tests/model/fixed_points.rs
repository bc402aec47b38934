//! The fixed points of the circuit against the math: closed form, Algorithm 1, long
//! simulations and the stability theorem.

use crate::common;
use common::values;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use organics_model::analysis::nalgebra::DVector;
use organics_model::analysis::{Circuit, CircuitState, SplitMix64, max_real_eigenvalue};
use organics_model::{FixedPointLayer, FixedPointLayerConfig, RecurrenceConfig};

const DT: f64 = 0.01;

fn simulate_from_rest(c: &Circuit) -> CircuitState {
    let n = c.size();
    let start = CircuitState {
        y: DVector::zeros(n),
        a: DVector::zeros(n),
    };
    let sim = c.simulate(start, DT, 1e-11, 2_000_000);
    assert!(
        sim.converged,
        "simulation did not settle in {} steps",
        sim.steps
    );
    sim.state
}

#[test]
fn identity_recurrence_closed_form_equals_long_simulation_and_normalizes() {
    let mut rng = SplitMix64::new(11);
    for trial in 0..20 {
        let c = Circuit::random(10, None, &mut rng);
        let closed = c.closed_form_fixed_point();
        let simulated = simulate_from_rest(&c);
        let err = closed.max_abs_diff(&simulated);
        assert!(
            err < 1e-6,
            "trial {trial}: closed form vs simulation differ by {err}"
        );
        // firing rates: ⌊y⌋² = ⌊b1 z⌋² / (σ² b0² + W (b1 z)²)
        let drive = c.b1.component_mul(&c.z);
        let denom = c
            .sigma
            .component_mul(&c.sigma)
            .component_mul(&c.b0.component_mul(&c.b0))
            + &c.w * drive.component_mul(&drive);
        for i in 0..c.size() {
            let rate = simulated.y[i].max(0.0).powi(2);
            let normalized = drive[i].max(0.0).powi(2) / denom[i];
            assert!(
                (rate - normalized).abs() < 1e-4,
                "trial {trial} neuron {i}: {rate} vs {normalized}"
            );
        }
    }
}

#[test]
fn algorithm1_converges_to_long_simulation() {
    let mut rng = SplitMix64::new(2024);
    let trials = 100;
    let mut good = 0;
    for _ in 0..trials {
        let c = Circuit::random(10, Some(1.0), &mut rng);
        let simulated = simulate_from_rest(&c);
        let iterates = c.algorithm1(10).expect("non-singular");
        if iterates.iter().any(|s| s.max_abs_diff(&simulated) < 1e-3) {
            good += 1;
        }
    }
    assert!(
        good >= 99,
        "Algorithm 1 reached 1e-3 in only {good} of {trials} circuits"
    );
}

#[test]
fn theorem_4_1_identity_recurrence_is_always_stable() {
    let mut rng = SplitMix64::new(41);
    let mut worst = f64::NEG_INFINITY;
    for trial in 0..1000 {
        let c = Circuit::random(10, None, &mut rng);
        let lead = max_real_eigenvalue(&c, &c.closed_form_fixed_point()).expect("eigenvalues");
        assert!(lead < 0.0, "trial {trial}: leading eigenvalue {lead} >= 0");
        worst = worst.max(lead);
    }
    assert!(worst.is_finite());
}

#[test]
fn an_unstable_point_is_detected() {
    // With W_r = 3 I the point y = 0, a = σ² b0² has ∂ẏ/∂y = −1 + 3(1 − √a) > 0 for small a:
    // guards against a stability test that always says "stable".
    let mut rng = SplitMix64::new(5);
    let mut c = Circuit::random(4, None, &mut rng);
    c.w_r *= 3.0;
    c.b0.fill(0.1);
    c.sigma.fill(0.1);
    let n = c.size();
    let state = CircuitState {
        y: DVector::zeros(n),
        a: DVector::from_element(n, 1e-4),
    };
    assert!(max_real_eigenvalue(&c, &state).expect("eigenvalues") > 0.0);
}

fn random_input(batch: usize, m: usize, device: &Device) -> Tensor<2> {
    Tensor::random([batch, m], Distribution::Uniform(0.0, 1.0), device)
}

#[test]
fn burn_layer_identity_matches_host_closed_form_and_simulation() {
    let device = Device::flex();
    device.seed(1);
    let layer = FixedPointLayerConfig::new(12, 10)
        .with_recurrence(RecurrenceConfig::identity())
        .init(&device);
    let u = random_input(5, 12, &device);
    let fp = layer.try_fixed_point(u.clone()).expect("fixed point");
    let (y, a) = (values(fp.y), values(fp.a));
    for (i, c) in layer.circuits(u).expect("circuits").iter().enumerate() {
        let sim = simulate_from_rest(c);
        for k in 0..10 {
            assert!(
                (y[i * 10 + k] - sim.y[k]).abs() < 1e-4,
                "y mismatch sample {i}"
            );
            assert!(
                (a[i * 10 + k] - sim.a[k]).abs() < 1e-4,
                "a mismatch sample {i}"
            );
        }
    }
}

fn with_random_recurrence(
    mut layer: FixedPointLayer,
    n: usize,
    device: &Device,
) -> FixedPointLayer {
    let v = Tensor::<2>::eye(n, device)
        + Tensor::random([n, n], Distribution::Normal(0.0, 0.3), device);
    layer.w_r_raw = Some(Param::from_tensor(v));
    layer
}

#[test]
fn burn_layer_algorithm1_matches_host_and_simulation() {
    let device = Device::flex();
    device.seed(2);
    let layer =
        with_random_recurrence(FixedPointLayerConfig::new(8, 10).init(&device), 10, &device);
    let w_r = layer.recurrence().expect("learned").expect("svd");
    let top = w_r
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("data");
    let host = organics_model::analysis::nalgebra::DMatrix::from_row_slice(
        10,
        10,
        &top.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    assert!(
        (host.singular_values().max() - 1.0).abs() < 1e-5,
        "W_r not at spectral norm 1"
    );

    let u = random_input(6, 8, &device);
    let fp = layer.try_fixed_point(u.clone()).expect("fixed point");
    let (y, a) = (values(fp.y), values(fp.a));
    for (i, c) in layer.circuits(u).expect("circuits").iter().enumerate() {
        let host_fp = c
            .algorithm1(10)
            .expect("non-singular")
            .pop()
            .expect("10 iterates");
        let sim = simulate_from_rest(c);
        for k in 0..10 {
            assert!(
                (y[i * 10 + k] - host_fp.y[k]).abs() < 1e-4,
                "y vs host Algorithm 1, sample {i}"
            );
            assert!(
                (a[i * 10 + k] - host_fp.a[k]).abs() < 1e-4,
                "a vs host Algorithm 1, sample {i}"
            );
            assert!(
                (y[i * 10 + k] - sim.y[k]).abs() < 1e-3,
                "y vs simulation, sample {i}"
            );
        }
    }
}

/// Inference (no gradient asked for) runs Algorithm 1 on the host with `f32` LU
/// factorisations; training runs it as tensor ops with `f64` inverses. Both give the same
/// fixed point, over batches that span several blocks and shards.
#[test]
fn algorithm1_inference_path_equals_tensor_path() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let layer = FixedPointLayerConfig::new(20, 24)
        .with_recurrence(RecurrenceConfig::new().with_iterations(6))
        .init(&device);
    let layer = with_random_recurrence(layer, 24, &device);
    let u = random_input(80, 20, &device);
    let tracked = layer.try_fixed_point(u.clone()).expect("tensor path");
    assert!(tracked.y.is_tracked());
    let host = layer.valid().try_fixed_point(u.inner()).expect("host path");
    assert!(!host.y.is_tracked());
    for (name, t, h) in [("y", tracked.y, host.y), ("a", tracked.a, host.a)] {
        let (t, h) = (values(t), values(h));
        let diff: f64 = t.iter().zip(&h).map(|(x, y)| (x - y).powi(2)).sum();
        let norm: f64 = t.iter().map(|x| x * x).sum();
        let rel = (diff / norm).sqrt();
        assert!(
            rel < 1e-5,
            "{name}: host and tensor paths differ by {rel:e}"
        );
    }
}

/// Host copy of a layer's parameters, so that perturbed layers can be rebuilt exactly.
#[derive(Clone)]
struct Params {
    w_zx: Vec<f64>,
    w_bx: Vec<f64>,
    beta0: Vec<f64>,
    log_w: Vec<f64>,
    v: Vec<f64>,
}

const N: usize = 5;
const M: usize = 4;

fn tensor<const D: usize>(v: &[f64], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(
        TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), shape),
        device,
    )
}

fn build(p: &Params, device: &Device) -> FixedPointLayer {
    FixedPointLayer {
        w_zx: Param::from_tensor(tensor(&p.w_zx, [N, M], device)),
        w_bx: Param::from_tensor(tensor(&p.w_bx, [N, M], device)),
        beta0: Param::from_tensor(tensor(&p.beta0, [N], device)),
        log_w: Param::from_tensor(tensor(&p.log_w, [N, N], device)),
        w_r_raw: Some(Param::from_tensor(tensor(&p.v, [N, N], device))),
        iterations: 10,
        linear_gate: false,
        sigma: 1.0,
    }
}

/// A copy of the parameters and input with entry `k` of `name` moved by `delta`.
fn perturb(p: &Params, u: &[f64], name: &str, k: usize, delta: f64) -> (Params, Vec<f64>) {
    let (mut q, mut u) = (p.clone(), u.to_vec());
    let target = match name {
        "w_zx" => &mut q.w_zx,
        "w_bx" => &mut q.w_bx,
        "beta0" => &mut q.beta0,
        "log_w" => &mut q.log_w,
        "w_r_raw" => &mut q.v,
        _ => &mut u,
    };
    target[k] += delta;
    (q, u)
}

fn loss(layer: &FixedPointLayer, u: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    (layer.forward(u) * weights).sum()
}

#[test]
fn fixed_point_layer_gradients_match_finite_differences() {
    let mut rng = SplitMix64::new(99);
    let mut draw = |len: usize, scale: f64, shift: f64| -> Vec<f64> {
        (0..len).map(|_| shift + scale * rng.normal()).collect()
    };
    let mut v = draw(N * N, 0.3, 0.0);
    for i in 0..N {
        v[i * N + i] += 1.0;
    }
    let p = Params {
        w_zx: draw(N * M, 0.5, 0.0),
        w_bx: draw(N * M, 1.0, 0.0),
        beta0: draw(N, 0.5, 0.0),
        log_w: draw(N * N, 0.3, -0.5),
        v,
    };
    let u_host = draw(3 * M, 0.3, 0.5);
    let weights_host = draw(3 * N, 1.0, 0.0);

    let ad = Device::flex().autodiff();
    let layer = build(&p, &ad);
    let u = tensor(&u_host, [3, M], &ad).require_grad();
    let grads = loss(&layer, u.clone(), tensor(&weights_host, [3, N], &ad)).backward();
    let grad_of = |t: Tensor<2>| values(t.grad(&grads).expect("gradient present").reshape([1, -1]));
    let analytic = [
        ("w_zx", grad_of(layer.w_zx.val())),
        ("w_bx", grad_of(layer.w_bx.val())),
        (
            "beta0",
            values(
                layer
                    .beta0
                    .val()
                    .grad(&grads)
                    .expect("gradient")
                    .unsqueeze::<2>(),
            ),
        ),
        ("log_w", grad_of(layer.log_w.val())),
        (
            "w_r_raw",
            grad_of(layer.w_r_raw.as_ref().expect("learned").val()),
        ),
        ("input", grad_of(u)),
    ];

    let plain = Device::flex();
    let eval = |p: &Params, u: &[f64]| -> f64 {
        let l = loss(
            &build(p, &plain),
            tensor(u, [3, M], &plain),
            tensor(&weights_host, [3, N], &plain),
        );
        values(l.unsqueeze::<2>())[0]
    };
    // small enough that no sample crosses the kink of ⌊y⌋ (1e-2 does for one input here)
    let h = 3e-3;
    let mut checked = 0;
    for (name, grad) in &analytic {
        for (k, &g) in grad.iter().enumerate() {
            let (plus, u_plus) = perturb(&p, &u_host, name, k, h);
            let (minus, u_minus) = perturb(&p, &u_host, name, k, -h);
            let fd = (eval(&plus, &u_plus) - eval(&minus, &u_minus)) / (2.0 * h);
            assert!(
                (fd - g).abs() <= 2e-3 + 3e-2 * fd.abs().max(g.abs()),
                "{name}[{k}]: analytic {g} vs finite difference {fd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * N * M + N + 2 * N * N + 3 * M);
}
