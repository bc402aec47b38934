//! Training on several devices (`--devices`): two devices with a batch of B each train as one
//! device with a batch of 2B, and resume as if uninterrupted.
//!
//! CI has no GPUs, so the devices are two copies of the CPU device (burn-train's multi-device
//! strategy treats them as two devices, each trained by its own worker thread).

use organics_train::{BackendKind, ModelKind, Task, TrainConfig};

use crate::common;

fn config(model: ModelKind, backend: BackendKind) -> TrainConfig {
    common::small(Task::Mnist, model, backend)
        .with_lr_step_epochs(1)
        .with_lr_gamma(0.5)
}

/// Every weight of the run's final model, as `f32`.
fn weights(dir: &std::path::Path, config: &TrainConfig) -> Vec<f32> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_to_vec::<f32>().expect("f32");
            self.0.extend(values);
        }
    }
    let device = Device::flex();
    let path = dir.join("model.bpk");
    let mut collect = Collect(Vec::new());
    match config.model {
        ModelKind::Mlp => {
            organics_train::harness::models::StaticMlp::new(784, config.hidden_units(), 10, &device)
                .try_load_file(&path)
                .expect("loads")
                .visit(&mut collect)
        }
        _ => organics_train::harness::models::StaticOrganics::new(
            organics_train::run::train::static_config(config).init(&device),
            organics_train::GradientPath::Autodiff,
        )
        .try_load_file(&path)
        .expect("loads")
        .visit(&mut collect),
    }
    assert!(!collect.0.is_empty());
    collect.0
}

fn two_devices_train_as_one(base: TrainConfig) {
    let one = tempfile::tempdir().expect("tmp");
    let two = tempfile::tempdir().expect("tmp");
    let single = organics_train::train(
        &base.clone().with_batch_size(64),
        &common::opts(one.path(), false),
    )
    .expect("one device, batch 64");
    let pair = organics_train::train(
        &base.clone().with_batch_size(32).with_devices(2),
        &common::opts(two.path(), false),
    )
    .expect("two devices, batch 32 each");

    // The same learning-rate schedule: halved after epoch 1 in both (it steps once per
    // optimizer step, not per device batch).
    let lr = |dir: &std::path::Path| {
        organics_train::run::results::read_epoch_metric(dir, "train", "Learning Rate", 2)[1]
            .expect("lr logged")
    };
    assert!((lr(one.path()) - lr(two.path())).abs() < 1e-12);

    let (a, b) = (weights(one.path(), &base), weights(two.path(), &base));
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    let relative = (diff / norm).sqrt();
    // Equal up to the rounding of summing a batch in two halves (about 1e-7 per step,
    // grown over 20 Adam steps); a step on the summed gradient without the 1/N scale, or a
    // schedule counted in device batches, differs by far more.
    assert!(relative < 1e-4, "weights differ by {relative:e} (relative)");
    assert!(
        (single.test_loss.expect("loss") - pair.test_loss.expect("loss")).abs() < 1e-4,
        "test loss {:?} vs {:?}",
        single.test_loss,
        pair.test_loss
    );
}

#[test]
fn two_devices_train_as_one_with_twice_the_batch() {
    two_devices_train_as_one(config(ModelKind::Mlp, BackendKind::Flex));
    // The static ORGaNICs model: hand-derived gradients from the fused kernel on each worker.
    two_devices_train_as_one(config(ModelKind::Organics, BackendKind::Flex));
}

#[test]
fn a_two_device_run_resumes_as_if_uninterrupted() {
    let base = config(ModelKind::Mlp, BackendKind::Flex).with_devices(2);
    let straight = tempfile::tempdir().expect("tmp");
    organics_train::train(&base, &common::opts(straight.path(), false)).expect("two epochs");
    let split = tempfile::tempdir().expect("tmp");
    organics_train::train(
        &base.clone().with_epochs(1),
        &common::opts(split.path(), false),
    )
    .expect("one epoch");
    let resumed = organics_train::train(&base, &common::opts(split.path(), true)).expect("resume");
    assert_eq!(resumed.resumed_from_epoch, Some(1));
    // Two devices sum their gradients in whichever order they finish: equal to rounding.
    let (a, b) = (
        weights(straight.path(), &base),
        weights(split.path(), &base),
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "largest weight difference {worst:e}");
}

#[test]
fn zero_devices_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = organics_train::train(
        &config(ModelKind::Mlp, BackendKind::Flex).with_devices(0),
        &common::opts(dir.path(), false),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("devices"), "{err}");
}

/// 650 images in global batches of 2 x 32: ten steps an epoch, and the ten images that would
/// make a partial eleventh (a different ten each epoch) sit out, so every step averages two
/// full batches.
#[test]
fn a_ragged_epoch_leaves_out_the_last_partial_global_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = config(ModelKind::Mlp, BackendKind::Flex)
        .with_train_limit(Some(650))
        .with_devices(2);
    organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metric log");
    let train_items: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"] == "train")
        .map(|v| v["metrics"]["Accuracy"]["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(train_items, vec![640, 640]);
    // The schedule counts the ten steps: halved after epoch 1.
    let lr =
        organics_train::run::results::read_epoch_metric(dir.path(), "train", "Learning Rate", 2)[1]
            .expect("lr logged");
    assert!((lr - config.lr() * 0.5).abs() < 1e-12, "lr {lr}");

    let too_few = tempfile::tempdir().expect("tmp");
    let err = organics_train::train(
        &config.with_batch_size(512),
        &common::opts(too_few.path(), false),
    )
    .expect_err("no whole global batch");
    assert!(err.to_string().contains("needs at least 1024"), "{err}");
}
