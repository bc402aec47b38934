//! Helpers shared by the training tests.
#![allow(dead_code)]

use std::path::PathBuf;

use organics_train::{BackendKind, ModelKind, RunOptions, RunResults, Task, TrainConfig};

/// Checks that the run in `dir` scores on the test set exactly the accuracy `reported`
/// says, and its loss to 1e-6 (`name` for messages).
pub fn assert_scores_as_reported(name: &str, dir: &std::path::Path, reported: &RunResults) {
    let eval = organics_train::evaluate(dir, Some(data_dir()), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(Some(eval.test_accuracy), reported.test_accuracy, "{name}");
    let loss = reported.test_loss.expect("reported loss");
    assert!(
        (eval.test_loss - loss).abs() <= 1e-6 * loss.abs(),
        "{name}: {} vs {loss}",
        eval.test_loss
    );
}

/// The MNIST folder shipped in the repository.
pub fn data_dir() -> PathBuf {
    organics_data::DatasetName::Mnist
        .shipped_dir()
        .expect("the repository's data/mnist folder: these tests need it")
}

/// A small, fast configuration.
pub fn small(task: Task, model: ModelKind, backend: BackendKind) -> TrainConfig {
    TrainConfig::new()
        .with_task(task)
        .with_model(model)
        .with_backend(backend)
        .with_epochs(2)
        .with_batch_size(32)
        .with_train_limit(Some(640))
        .with_valid_limit(Some(128))
        .with_test_limit(Some(256))
}

/// Options for a run in `dir`.
pub fn opts(dir: &std::path::Path, resume: bool) -> RunOptions {
    RunOptions {
        resume,
        data_dir: Some(data_dir()),
        plain: true,
        ..RunOptions::new(dir)
    }
}
