//! The same tiny training on wgpu (lavapipe in CI), so both backends are exercised.

use crate::common;

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
    // CI has only lavapipe, a software adapter: refused by default, accepted when allowed.
    let adapter = organics_train::run::gpu::default_adapter().expect("an adapter");
    if adapter.software {
        let err = organics_train::train(&config, &common::opts(dir.path(), false))
            .expect_err("a software adapter is refused");
        assert!(err.to_string().contains("--allow-software-gpu"), "{err}");
        assert!(!dir.path().join("config.json").exists());
    }
    let opts = organics_train::RunOptions {
        allow_software_gpu: true,
        ..common::opts(dir.path(), false)
    };
    let results = organics_train::train(&config, &opts).expect("trains on wgpu");
    assert_eq!(results.backend, BackendKind::Wgpu);
    assert!(results.test_loss.is_some_and(f64::is_finite));
    // the adapter is named in results.json
    assert_eq!(results.adapter, Some(adapter.to_string()));
    let saved: organics_train::RunResults = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results"),
    )
    .expect("json");
    assert_eq!(saved.adapter, results.adapter);
}
