//! The same tiny training on wgpu (lavapipe in CI), so both backends are exercised.

mod common;

use organics_train::{BackendKind, ModelKind, Task};

#[test]
fn tiny_training_on_wgpu() {
    if BackendKind::Wgpu.device().is_err() {
        eprintln!(
            "SKIPPED tiny_training_on_wgpu: no wgpu adapter on this machine (install mesa-vulkan-drivers)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::small(Task::Mnist, ModelKind::Organics, BackendKind::Wgpu)
        .with_layers(vec![16])
        .with_epochs(1)
        .with_train_limit(Some(256))
        .with_valid_limit(Some(64))
        .with_test_limit(Some(64));
    let results =
        organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains on wgpu");
    assert_eq!(results.backend, BackendKind::Wgpu);
    assert!(results.test_loss.is_finite());
}
