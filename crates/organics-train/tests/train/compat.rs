//! Runs written by an earlier version of the crate (before the source reorganisation and
//! the move to `metrics.jsonl`) still load, score exactly what they reported, and keep their
//! metrics: published weights in `runs/` stay usable.

use crate::common;

use std::path::{Path, PathBuf};

use organics_train::RunResults;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/earlier-runs")
        .join(name)
}

/// A copy of the fixture, so that nothing the test does can change the committed files.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn runs_of_an_earlier_version_load_score_and_keep_their_metrics() {
    // A sequence model (cell, RNN, time constants) and a static model with a learned W_r.
    for name in ["smnist8", "mnist-learned8"] {
        let dir = tempfile::tempdir().expect("tmp");
        copy(&fixture(name), dir.path());
        let text = std::fs::read_to_string(dir.path().join("results.json")).expect("results");
        let reported: RunResults = serde_json::from_str(&text).expect("parses");

        common::assert_scores_as_reported(name, dir.path(), &reported);

        // Its metric logs (Burn's old per-file layout) read as they were reported.
        let valid =
            organics_train::run::results::read_epoch_metric(dir.path(), "valid", "Accuracy", 1);
        let reported_valid = reported.valid_accuracy[0].expect("reported") * 100.0;
        let read = valid[0].expect("read");
        assert!(
            (read - reported_valid).abs() < 1e-9,
            "{name}: {read} vs {reported_valid}"
        );
        let max_grad =
            organics_train::run::results::read_epoch_max(dir.path(), "train", "Grad norm", 1)[0];
        assert_eq!(max_grad, reported.max_grad_norm, "{name}");
    }
}
