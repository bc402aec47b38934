//! The dynamical cell and the sequence classifier.

use crate::common;
use common::values;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, Gradients};
use organics_model::{OrganicsCellConfig, OrganicsState, SeqClassifier, SeqClassifierConfig};

/// Counts the parameters whose tensors require a gradient (exact on an autodiff device).
struct TrainableCounter(usize);
impl ModuleVisitor for TrainableCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.0 += param.val().shape().num_elements();
        }
    }
}

#[test]
fn parameter_counts_match_the_paper() {
    let device = Device::flex().autodiff();
    for (n, expected) in [(64, 25_674), (128, 100_490)] {
        let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, n)).init(&device);
        assert_eq!(model.num_trainable_params(), expected, "n = {n}");
        assert_eq!(6 * n * n + 17 * n + 10, expected);
        let mut counter = TrainableCounter(0);
        model.visit(&mut counter);
        assert_eq!(
            counter.0, expected,
            "parameters requiring a gradient, n = {n}"
        );
    }
    // fixed time constants: θ is stored but not trained
    let fixed =
        SeqClassifierConfig::new(OrganicsCellConfig::new(1, 64).with_learn_time_constants(false))
            .init(&device);
    assert_eq!(fixed.num_trainable_params(), 25_674 - 4 * 64);
    let mut counter = TrainableCounter(0);
    fixed.visit(&mut counter);
    assert_eq!(counter.0, 25_674 - 4 * 64);
}

/// Checks every gradient of a module for presence and finiteness.
struct FiniteGrads<'a> {
    grads: &'a Gradients,
    checked: usize,
    bad: Vec<String>,
}
impl ModuleVisitor for FiniteGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        match value.grad(self.grads) {
            Some(g) => {
                let v = values(g);
                self.checked += v.len();
                if v.iter().any(|x| !x.is_finite()) {
                    self.bad
                        .push(format!("{:?} has a non-finite gradient", param.id));
                }
            }
            None => self.bad.push(format!("{:?} has no gradient", param.id)),
        }
    }
}

#[test]
fn full_length_backward_gives_finite_gradients_without_clipping() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 64)).init(&device);
    let x = Tensor::<3>::random([8, 784, 1], Distribution::Uniform(0.0, 1.0), &device);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(vec![0i64, 1, 2, 3, 4, 5, 6, 7], [8]),
        &device,
    );
    let logits = model.forward(x);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets);
    assert!(values(loss.clone().unsqueeze::<2>())[0].is_finite());
    let grads = loss.backward();
    let mut check = FiniteGrads {
        grads: &grads,
        checked: 0,
        bad: vec![],
    };
    model.visit(&mut check);
    assert!(check.bad.is_empty(), "{:?}", check.bad);
    assert_eq!(check.checked, model.num_trainable_params());
}

#[test]
fn normalization_diagonal_is_one_and_gets_no_gradient() {
    let device = Device::flex().autodiff();
    let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 16)).init(&device);
    let w = values(model.rnn.cell.normalization_weights());
    for i in 0..16 {
        assert_eq!(w[i * 16 + i], 1.0);
    }
    assert!(w.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let x = Tensor::<3>::random([4, 30, 1], Distribution::Uniform(0.0, 1.0), &device);
    let grads = model.forward(x).square().sum().backward();
    let g = values(model.rnn.cell.log_w.val().grad(&grads).expect("gradient"));
    let off_diagonal: f64 = (0..256).filter(|k| k % 17 != 0).map(|k| g[k].abs()).sum();
    assert!(off_diagonal > 0.0, "off-diagonal entries must learn");
    for i in 0..16 {
        assert_eq!(g[i * 16 + i], 0.0, "diagonal entry {i} got a gradient");
    }
}

/// An independent f64 implementation of one Euler step (docs/MODEL.md §2 and §5): the
/// rectified and the main model, and the input drive without rectification (§11 item 12).
#[test]
fn one_step_matches_the_equations() {
    let device = Device::flex();
    device.seed(9);
    let (n, n_in, batch) = (6, 2, 3);
    for (rectified, rectified_input) in [(true, true), (false, true), (true, false)] {
        let cell = OrganicsCellConfig::new(n_in, n)
            .with_rectified(rectified)
            .with_rectified_input(rectified_input)
            .init(&device);
        let rand = |shape: [usize; 2], lo: f64, hi: f64| {
            Tensor::<2>::random(shape, Distribution::Uniform(lo, hi), &device)
        };
        let state = OrganicsState {
            y: rand([batch, n], -1.0, 1.0),
            a: rand([batch, n], -0.2, 1.0),
            b0: rand([batch, n], 0.0, 1.0),
            b1: rand([batch, n], 0.0, 1.0),
        };
        let x = rand([batch, n_in], 0.0, 1.0);
        let next = cell.step(x.clone(), state.clone());

        let m = |p: &Param<Tensor<2>>| values(p.val());
        let (wzx, wr, wb0x, wb0y, wb0a, wb1x, wb1y, wb1a) = (
            m(&cell.w_zx),
            m(&cell.w_r),
            m(&cell.w_b0x),
            m(&cell.w_b0y),
            m(&cell.w_b0a),
            m(&cell.w_b1x),
            m(&cell.w_b1y),
            m(&cell.w_b1a),
        );
        let l = m(&cell.log_w);
        let r = |t: &organics_model::TimeConstant| values(t.ratio().unsqueeze::<2>());
        let (ry, ra, rb0, rb1) = (
            r(&cell.tau_y),
            r(&cell.tau_a),
            r(&cell.tau_b0),
            r(&cell.tau_b1),
        );
        let (y, a, b0, b1, xs) = (
            values(state.y),
            values(state.a),
            values(state.b0),
            values(state.b1),
            values(x),
        );
        let (ny, na, nb0, nb1) = (
            values(next.y),
            values(next.a),
            values(next.b0),
            values(next.b1),
        );
        let relu = |v: f64| v.max(0.0);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let dot = |w: &[f64], row: usize, cols: usize, v: &[f64]| -> f64 {
            (0..cols).map(|j| w[row * cols + j] * v[j]).sum()
        };
        for s in 0..batch {
            let (ys, as_, xs_) = (
                &y[s * n..(s + 1) * n],
                &a[s * n..(s + 1) * n],
                &xs[s * n_in..(s + 1) * n_in],
            );
            for i in 0..n {
                let k = s * n + i;
                let zx = dot(&wzx, i, n_in, xs_);
                let z = if rectified_input { relu(zx) } else { zx };
                let rec = dot(&wr, i, n, ys);
                let rec = if rectified { relu(rec) } else { rec };
                let wrow = |j: usize| {
                    if i == j {
                        1.0
                    } else {
                        l[i * n + j].exp().clamp(0.0, 1.0)
                    }
                };
                let pooled: f64 = (0..n)
                    .map(|j| {
                        let yj = if rectified {
                            relu(ys[j]).powi(2)
                        } else {
                            ys[j].powi(2)
                        };
                        wrow(j) * yj * relu(as_[j])
                    })
                    .sum();
                let g0 =
                    sig(dot(&wb0x, i, n_in, xs_) + dot(&wb0y, i, n, ys) + dot(&wb0a, i, n, as_));
                let g1 =
                    sig(dot(&wb1x, i, n_in, xs_) + dot(&wb1y, i, n, ys) + dot(&wb1a, i, n, as_));
                let ey = y[k] + ry[i] * (-y[k] + b1[k] * z + (1.0 - relu(a[k]).sqrt()) * rec);
                let ea = a[k] + ra[i] * (-a[k] + b0[k] * b0[k] + pooled);
                let eb0 = b0[k] + rb0[i] * (g0 - b0[k]);
                let eb1 = b1[k] + rb1[i] * (g1 - b1[k]);
                for (name, got, want) in [
                    ("y", ny[k], ey),
                    ("a", na[k], ea),
                    ("b0", nb0[k], eb0),
                    ("b1", nb1[k], eb1),
                ] {
                    assert!(
                        (got - want).abs() < 1e-5,
                        "rectified={rectified} (input {rectified_input}) {name}[{s},{i}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn initial_state_and_time_constants_follow_docs_model() {
    let device = Device::flex();
    let model: SeqClassifier =
        SeqClassifierConfig::new(OrganicsCellConfig::new(1, 32)).init(&device);
    let y0 = values(model.rnn.y0.val().unsqueeze::<2>());
    let norm: f64 = y0.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5 && y0.iter().all(|&v| v >= 0.0));
    assert!(
        values(model.rnn.b0_0.val().unsqueeze::<2>())
            .iter()
            .all(|&v| v == 1.0)
    );
    let ry = values(model.rnn.cell.tau_y.ratio().unsqueeze::<2>());
    assert!(ry.iter().all(|&r| r > 0.0 && r < 0.02));
    let fixed = OrganicsCellConfig::new(1, 4)
        .with_learn_time_constants(false)
        .init(&device);
    let ra = values(fixed.tau_a.ratio().unsqueeze::<2>());
    let expected = 0.005 / (1.0 + (-1.0f64).exp());
    assert!(ra.iter().all(|&r| (r - expected).abs() < 1e-8));
}

#[test]
fn rejects_a_wrong_input_shape() {
    let device = Device::flex();
    let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 8)).init(&device);
    let bad = Tensor::<3>::zeros([2, 5, 3], &device);
    let err = model.rnn.check_input(&bad).expect_err("n_in 3 is not 1");
    assert!(err.to_string().contains("[2, 5, 3]"), "{err}");
    assert!(
        model
            .rnn
            .check_input(&Tensor::<3>::zeros([2, 5, 1], &device))
            .is_ok()
    );
}

#[test]
fn trajectory_ends_at_the_final_state() {
    let device = Device::flex();
    let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 8)).init(&device);
    let x = Tensor::<3>::random([3, 12, 1], Distribution::Uniform(0.0, 1.0), &device);
    let (last, traj) = model.rnn.forward_trajectory(x.clone());
    assert_eq!(traj.y.dims(), [3, 12, 8]);
    let every_y = values(traj.y.clone());
    let end = values(traj.y.slice(s![.., 11..12, ..]).reshape([3, 8]));
    assert_eq!(end, values(last.y.clone()));
    assert_eq!(
        values(model.rnn.forward_final(x.clone(), None).y),
        values(last.y.clone())
    );
    let (outputs, state) = model.rnn.forward(x, None);
    assert_eq!(values(state.y), values(last.y));
    assert_eq!(values(outputs), every_y);
}

#[test]
fn modules_display_their_sizes_in_burn_nn_vocabulary() {
    let device = Device::flex();
    let model = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 8)).init(&device);
    let shown = format!("{}", model.rnn);
    for part in [
        "d_input: 1",
        "d_hidden: 8",
        "rectified: true",
        "rectified_input: true",
        "learned_time_constants: true",
    ] {
        assert!(shown.contains(part), "{part} missing from:\n{shown}");
    }
    let layer = organics_model::FixedPointLayerConfig::new(10, 6).init(&device);
    let shown = format!("{layer}");
    for part in [
        "d_input: 10",
        "d_hidden: 6",
        "learned (Algorithm 1)",
        "iterations: 10",
        "1 − √a",
    ] {
        assert!(shown.contains(part), "{part} missing from:\n{shown}");
    }
}
