//! Helpers shared by the training tests.
#![allow(dead_code)]

use std::path::PathBuf;

use organics_train::{BackendKind, ModelKind, RunOptions, Task, TrainConfig};

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
