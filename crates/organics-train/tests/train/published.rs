//! The weights published in `runs/` score on the test set exactly what their `results.json`
//! reports, as `cargo xtask eval --artifact-dir runs/ROW` does: a change to the model, the
//! data pipeline or the evaluation that moved a published number fails here. Their
//! parameter counts are those the runs report shows.

use crate::common;

use std::path::Path;

use organics_train::{RunResults, RunStatus};

#[test]
fn every_finished_run_in_runs_scores_its_published_test_accuracy() {
    let runs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runs");
    let mut dirs: Vec<_> = std::fs::read_dir(&runs)
        .expect("runs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    dirs.sort();
    let mut checked = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(dir.join("results.json")).expect("results");
        let reported: RunResults =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if reported.status != RunStatus::Finished {
            continue;
        }
        common::assert_scores_as_reported(&name, &dir, &reported);
        // The report counts the parameters of a row from its config: the same number.
        let config = organics_train::run::train::read_config(&dir).expect("config");
        let counted = organics_train::run::report::trainable_params(&config).expect("count");
        assert_eq!(counted, reported.params, "{name}");
        checked.push(name);
    }
    // The rows finished when this test was written (more finish as the runs go on).
    for name in [
        "mnist-learned-128-64",
        "mnist-learned-128-64-authors-gate",
        "mnist-learned-50",
        "mnist-learned-80",
        "smnist-lstm128",
        "smnist-organics64-eps1e-5",
    ] {
        assert!(checked.iter().any(|c| c == name), "{name}: {checked:?}");
    }
}

/// The first sMNIST run, trained with Burn's Adam `ε` of 1e-5, left most units without
/// input (docs/MODEL.md §11, item 8): what `cargo xtask analyze inputs` shows of its
/// published weights.
#[test]
fn the_smnist_run_with_adam_epsilon_1e_5_left_most_units_without_input() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runs/smnist-organics64-eps1e-5");
    let units = organics_train::analysis::inputs::input_units(&dir).expect("count");
    assert_eq!(units.units, 64);
    assert_eq!(
        (units.receiving, units.decayed),
        (11, 51),
        "{}",
        units.table()
    );
    // The runs report shows the count beside each sequence ORGaNICs run, and no count for
    // the other kinds.
    let rows = organics_train::run::report::run_rows(dir.parent().expect("runs/")).expect("rows");
    let inputs = |name: &str| rows.iter().find(|r| r.name == name).expect(name).inputs;
    assert_eq!(inputs("smnist-organics64-eps1e-5"), Some((11, 64)));
    assert_eq!(inputs("smnist-lstm128"), None);
    assert_eq!(inputs("mnist-learned-50"), None);
}
