//! Property tests of what a run reads back from its folder: `config.json`, `results.json`
//! and checkpoints, each mutated thousands of times (bytes flipped, cut, inserted). Reading
//! either succeeds or gives an error; nothing panics.

use crate::common;
#[path = "../../../organics-data/tests/data/mutate.rs"]
mod mutate;

use std::sync::OnceLock;

use mutate::{apply, edits};
use organics_train::harness::models::StaticMlp;
use organics_train::run::checkpoint::{checkpoint_path, verify_checkpoint};
use organics_train::run::train::read_config;
use organics_train::{BackendKind, ModelKind, RunResults, Task, TrainConfig};
use proptest::prelude::*;

/// A finished one-epoch MLP run, trained once for all cases.
fn finished_run() -> &'static std::path::Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let config = common::small(Task::Mnist, ModelKind::Mlp, BackendKind::Ndarray)
            .with_epochs(1)
            .with_hidden(Some(8));
        organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
        dir
    })
    .path()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_config_files_never_panic(e in edits()) {
        let text = serde_json::to_vec(&TrainConfig::new()).expect("json");
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), apply(text, &e)).expect("write");
        if let Ok(config) = read_config(dir.path()) {
            // whatever parsed is checked before use
            let _ = config.validate();
        }
    }

    #[test]
    fn mutated_results_files_never_panic(e in edits()) {
        let text = std::fs::read(finished_run().join("results.json")).expect("results");
        let _ = serde_json::from_slice::<RunResults>(&apply(text, &e));
    }
}

proptest! {
    // Each case decodes and loads a model record: fewer cases.
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn mutated_checkpoints_are_verified_without_panicking(
        part in prop_oneof![Just("model"), Just("optim"), Just("scheduler")],
        e in edits(),
    ) {
        let run = finished_run();
        let dir = tempfile::tempdir().expect("tmp");
        for name in ["model", "optim", "scheduler"] {
            let from = checkpoint_path(&run.join("checkpoint"), name, 1);
            let bytes = std::fs::read(from).expect("checkpoint");
            let bytes = if name == part { apply(bytes, &e) } else { bytes };
            std::fs::write(checkpoint_path(dir.path(), name, 1), bytes).expect("write");
        }
        #[allow(deprecated)] // ndarray stays supported, and it is what the run trained on
        let device = burn::prelude::Device::ndarray();
        let model = StaticMlp::new(784, 8, 10, &device);
        let _ = verify_checkpoint(&model, dir.path(), 1);
    }
}
