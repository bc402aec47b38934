//! The trained-model analyses on tiny runs of real data: `analyze stability` on a static
//! ORGaNICs run, `plot trajectories` and `analyze inputs` on a sequence run, and clear errors
//! on the wrong kind.

use crate::common;

use organics_train::analysis::inputs::input_units;
use organics_train::analysis::stability::trained_stability;
use organics_train::figures::stability::stability_histograms;
use organics_train::figures::trajectories::trajectories;
use organics_train::{BackendKind, ModelKind, Task};

fn svg(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).expect("figure written");
    roxmltree::Document::parse(&text).expect("decodable SVG");
    text
}

#[test]
fn stability_of_a_trained_static_model_layer_by_layer() {
    for learned in [false, true] {
        let dir = tempfile::tempdir().expect("tmp");
        let config = common::small(Task::Mnist, ModelKind::Organics, BackendKind::Flex)
            .with_epochs(1)
            .with_layers(vec![12, 6])
            .with_learn_recurrence(learned)
            .with_train_limit(Some(256))
            .with_test_limit(Some(30));
        organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
        let mut calls = 0;
        let report =
            trained_stability(dir.path(), Some(common::data_dir()), Some(20), 8, |d, t| {
                calls += 1;
                assert_eq!((d, t), (20, 20));
            })
            .expect("analysis runs");
        assert_eq!(calls, 1);
        assert_eq!(report.images, 20);
        assert_eq!(report.layers.len(), 2);
        assert_eq!(
            report.recurrence,
            if learned { "learned" } else { "identity" }
        );
        for (k, l) in report.layers.iter().enumerate() {
            assert_eq!((l.layer, l.neurons, l.images), (k, [12, 6][k], 20));
            assert_eq!(l.histogram.counts.iter().sum::<usize>(), 20, "{l:?}");
            assert!(l.min <= l.mean && l.mean <= l.max, "{l:?}");
            if !learned {
                // Theorem 4.1: with W_r = I every fixed point is stable.
                assert_eq!(l.not_stable, 0, "{l:?}");
                assert!(l.max < 0.0, "{l:?}");
            }
        }
        let figure = dir.path().join("fig/stability.svg");
        stability_histograms(&report, &figure).expect("figure");
        let text = svg(&figure);
        assert!(text.contains("layer 2 (6 neurons)"));
    }
}

#[test]
fn trajectories_of_a_trained_sequence_model() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::small(Task::Psmnist, ModelKind::Organics, BackendKind::Flex)
        .with_epochs(1)
        .with_hidden(Some(8))
        .with_train_limit(Some(64))
        .with_valid_limit(Some(32))
        .with_test_limit(Some(8));
    organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
    let out = dir.path().join("traj.svg");
    let s = trajectories(dir.path(), Some(common::data_dir()), 2, 3, &out).expect("plots");
    assert_eq!(s.steps, 784);
    assert_eq!(s.images.len(), 2);
    assert_eq!(s.neurons.len(), 3);
    assert!(s.neurons.iter().all(|&j| j < 8));
    assert!(s.images.iter().all(|i| i.label < 10 && i.predicted < 10));
    let text = svg(&out);
    let doc = roxmltree::Document::parse(&text).expect("decodable");
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(lines >= 6, "2 panels x 3 neurons, got {lines} polylines");

    // the same run's input weights: every unit counted once, as receiving input or not
    let units = input_units(dir.path()).expect("counts");
    assert_eq!(units.units, 8);
    assert_eq!(units.receiving + units.silent, 8);
    assert_eq!(
        units.receiving,
        units.largest_weight.iter().filter(|&&w| w > 0.0).count()
    );
    assert!(units.weights.ends_with(".bpk"), "{}", units.weights);

    // the wrong kind of run, or none at all, is a clear error
    let e = trained_stability(dir.path(), Some(common::data_dir()), Some(5), 8, |_, _| {})
        .expect_err("a sequence run has no fixed points");
    assert!(e.to_string().contains("static ORGaNICs"), "{e}");
    let e = trajectories(
        &dir.path().join("nothing"),
        Some(common::data_dir()),
        2,
        3,
        &out,
    )
    .expect_err("no run");
    assert!(e.to_string().contains("not a training run"), "{e}");
    assert!(trajectories(dir.path(), Some(common::data_dir()), 0, 3, &out).is_err());
}

#[test]
fn trajectories_refuse_a_static_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::small(Task::Mnist, ModelKind::Mlp, BackendKind::Flex)
        .with_epochs(1)
        .with_train_limit(Some(64));
    organics_train::train(&config, &common::opts(dir.path(), false)).expect("trains");
    let out = dir.path().join("traj.svg");
    let e = trajectories(dir.path(), Some(common::data_dir()), 2, 3, &out).expect_err("static");
    assert!(e.to_string().contains("sequence ORGaNICs"), "{e}");
    assert!(!out.exists());
    let e = input_units(dir.path()).expect_err("static");
    assert!(e.to_string().contains("sequence ORGaNICs"), "{e}");
}
