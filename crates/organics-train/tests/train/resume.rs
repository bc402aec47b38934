//! Resume, atomic checkpoints and the non-finite-loss guard.

use crate::common;

use organics_train::run::checkpoint::last_complete_epoch;
use organics_train::{BackendKind, ModelKind, OptimizerKind, Task, TrainConfig, TrainError};

fn mlp() -> TrainConfig {
    common::small(Task::Mnist, ModelKind::Mlp, BackendKind::Ndarray)
        .with_lr_step_epochs(1)
        .with_lr_gamma(0.5)
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    resumes_as_if_uninterrupted(mlp());
}

/// RMSprop keeps its own state (the running average of squared gradients): a resume
/// restores it as it does Adam's.
#[test]
fn a_resumed_rmsprop_run_matches_an_uninterrupted_one() {
    resumes_as_if_uninterrupted(mlp().with_optimizer(OptimizerKind::Rmsprop));
}

fn resumes_as_if_uninterrupted(mlp: TrainConfig) {
    let mlp = || mlp.clone();
    let straight = tempfile::tempdir().expect("tmp");
    let full =
        organics_train::train(&mlp(), &common::opts(straight.path(), false)).expect("two epochs");

    let split = tempfile::tempdir().expect("tmp");
    organics_train::train(&mlp().with_epochs(1), &common::opts(split.path(), false))
        .expect("one epoch");
    assert_eq!(
        last_complete_epoch(&split.path().join("checkpoint")),
        Some(1)
    );
    let resumed = organics_train::train(&mlp(), &common::opts(split.path(), true)).expect("resume");
    assert_eq!(resumed.resumed_from_epoch, Some(1));
    assert_eq!(resumed.epochs, 2);
    assert_eq!(
        last_complete_epoch(&split.path().join("checkpoint")),
        Some(2)
    );
    assert!(
        (resumed.test_loss.unwrap() - full.test_loss.unwrap()).abs() < 1e-5,
        "{} vs {}",
        resumed.test_loss.unwrap(),
        full.test_loss.unwrap()
    );
    assert_eq!(resumed.test_accuracy, full.test_accuracy);
    // the learning rate of epoch 2 continues the schedule (halved after epoch 1)
    let lr = |dir: &std::path::Path| {
        organics_train::run::results::read_epoch_metric(dir, "train", "Learning Rate", 2)[1]
    };
    let (a, b) = (
        lr(straight.path()).expect("lr logged"),
        lr(split.path()).expect("lr logged"),
    );
    assert!(
        (a - b).abs() < 1e-12 && (a - 0.0005).abs() < 1e-9,
        "lr {a} vs {b}"
    );
}

/// Copies a folder tree (the run folders of `runs/` travel this way: committed on one
/// machine, checked out in another place).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn a_run_copied_to_another_folder_resumes_as_if_uninterrupted() {
    let straight = tempfile::tempdir().expect("tmp");
    let full =
        organics_train::train(&mlp(), &common::opts(straight.path(), false)).expect("two epochs");

    let first = tempfile::tempdir().expect("tmp");
    organics_train::train(&mlp().with_epochs(1), &common::opts(first.path(), false))
        .expect("one epoch");
    // Only what a committed run folder holds: no temporary files, no final weights.
    let moved = tempfile::tempdir().expect("tmp");
    let moved = moved.path().join("elsewhere").join("run");
    copy_tree(first.path(), &moved);
    drop(first);
    let resumed = organics_train::train(&mlp(), &common::opts(&moved, true)).expect("resume");
    assert_eq!(resumed.resumed_from_epoch, Some(1));
    assert_eq!(resumed.epochs, 2);
    assert_eq!(resumed.test_accuracy, full.test_accuracy);
    assert!(
        (resumed.test_loss.unwrap() - full.test_loss.unwrap()).abs() < 1e-5,
        "{} vs {}",
        resumed.test_loss.unwrap(),
        full.test_loss.unwrap()
    );
    // Every weight equal to the last bit (the files themselves differ only in the random
    // parameter ids Burn stores beside the values).
    assert_eq!(
        weights(&moved.join("model.bpk")),
        weights(&straight.path().join("model.bpk")),
        "the final weights differ from the uninterrupted run's"
    );
}

/// Every weight of the small MLP saved at `path`, as bits, in the module's order.
fn weights(path: &std::path::Path) -> Vec<u32> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;
    struct Collect(Vec<u32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 weights");
            self.0.extend(values.iter().map(|v| v.to_bits()));
        }
    }
    #[allow(deprecated)] // the runs above train on ndarray
    let device = Device::ndarray();
    let config = mlp();
    let model =
        organics_train::harness::models::StaticMlp::new(784, config.hidden_units(), 10, &device)
            .try_load_file(path)
            .expect("loads");
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    assert!(!collect.0.is_empty());
    collect.0
}

#[test]
fn partial_checkpoints_are_ignored_on_resume() {
    let dir = tempfile::tempdir().expect("tmp");
    organics_train::train(&mlp().with_epochs(1), &common::opts(dir.path(), false))
        .expect("one epoch");
    let ck = dir.path().join("checkpoint");
    // a write killed half way: a temporary file, and an epoch missing two of its records
    std::fs::write(ck.join("model-2.bpk.tmp"), b"half a record").expect("w");
    std::fs::write(ck.join("model-2.bpk"), b"").expect("w");
    assert_eq!(last_complete_epoch(&ck), Some(1));
    let resumed = organics_train::train(&mlp(), &common::opts(dir.path(), true))
        .expect("resume from epoch 1");
    assert_eq!(resumed.resumed_from_epoch, Some(1));
}

#[test]
fn divergence_stops_with_an_error_and_keeps_the_last_checkpoint() {
    // The run in a folder of its own, so that the report below sees it alone.
    let root = tempfile::tempdir().expect("tmp");
    let dir = root.path().join("row");
    organics_train::train(&mlp().with_epochs(1), &common::opts(&dir, false))
        .expect("one good epoch");
    let ck = dir.join("checkpoint");
    let before = std::fs::read(ck.join("model-1.bpk")).expect("checkpoint 1");
    // the same run with a learning rate that overflows f32 at once
    let diverging = mlp().with_learning_rate(Some(1e38));
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&diverging).expect("json"),
    )
    .expect("w");
    let err = organics_train::train(&diverging, &common::opts(&dir, true)).expect_err("diverges");
    match &err {
        TrainError::NonFinite {
            epoch, iteration, ..
        } => {
            assert_eq!(*epoch, 2, "{err}");
            assert!(*iteration >= 1, "{err}");
        }
        other => panic!("expected a non-finite-loss error, got {other}"),
    }
    assert!(err.to_string().contains("non-finite loss"));
    assert_eq!(
        std::fs::read(ck.join("model-1.bpk")).expect("still there"),
        before
    );
    assert_eq!(
        last_complete_epoch(&ck),
        Some(1),
        "the diverged epoch must not be checkpointed"
    );
    // The folder says how the run ended, and the report shows it.
    let results: organics_train::RunResults = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results.json")).expect("results.json"),
    )
    .expect("parses");
    assert_eq!(results.status, organics_train::RunStatus::Diverged);
    assert_eq!((results.epochs, results.diverged_in_epoch), (1, Some(2)));
    assert_eq!(results.test_accuracy, None);
    // runs/run.sh's progress log, which gives the report its wall times: a training row's
    // cell would add the time it may still need.
    std::fs::write(
        dir.join("train.log"),
        "training epochs 1..=2\nepoch 1/2 valid 128/128 items (5 s)\n",
    )
    .expect("log");
    let rows = organics_train::run::report::run_rows(root.path()).expect("report");
    let table = organics_train::run::report::runs_table(&rows);
    let line = table
        .lines()
        .find(|l| l.starts_with("| `row` |"))
        .expect("the run's row");
    assert!(line.contains("| 1 / 2 (diverged in epoch 2) |"), "{line}");
    assert!(!line.contains("left"), "{line}");
}

#[test]
fn another_config_in_the_artifact_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    organics_train::train(&mlp().with_epochs(1), &common::opts(dir.path(), false))
        .expect("one epoch");
    let err = organics_train::train(
        &mlp().with_hidden(Some(20)),
        &common::opts(dir.path(), true),
    )
    .expect_err("other config");
    assert!(matches!(err, TrainError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("hidden"), "{err}");
}

#[test]
fn early_stopping_tests_the_best_validation_epoch() {
    let dir = tempfile::tempdir().expect("tmp");
    // a high learning rate makes validation accuracy move around between epochs
    let config = mlp()
        .with_epochs(6)
        .with_patience(Some(2))
        .with_learning_rate(Some(0.05))
        .with_train_limit(Some(320))
        .with_valid_limit(Some(64))
        .with_test_limit(Some(128));
    let r = organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
    let tested = r.tested_epoch.expect("an epoch was tested");
    let valid: Vec<f64> = r
        .valid_accuracy
        .iter()
        .map(|a| a.expect("logged"))
        .collect();
    assert_eq!(valid.len(), r.epochs);
    let best = valid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(
        valid[tested - 1],
        best,
        "tested epoch {tested} of {valid:?}"
    );
    // model.bpk holds the tested weights: evaluating it gives the reported test score
    let eval = organics_train::evaluate(dir.path(), Some(common::data_dir()), None).expect("eval");
    assert_eq!(
        Some(eval.test_accuracy),
        r.test_accuracy,
        "{eval:?} vs {r:?}"
    );
}
