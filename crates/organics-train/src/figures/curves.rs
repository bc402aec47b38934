//! `cargo xtask plot curves`: per-epoch curves of finished runs, as SVG: validation
//! accuracy, or the stability metric (the leading Jacobian eigenvalue at the fixed points of
//! the validation probe images, paper Fig. 6).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::style;
use crate::error::TrainError;
use crate::options::CurveMetric;
use crate::run::results::RunResults;

/// Draws `metric` per epoch of each run's `results.json` into `out`.
pub fn learning_curves(
    runs: &[PathBuf],
    metric: CurveMetric,
    title: &str,
    out: &Path,
) -> Result<(), TrainError> {
    if runs.is_empty() {
        return Err(TrainError::Invalid(
            "give at least one --artifact-dir".into(),
        ));
    }
    let mut curves = Vec::new();
    for dir in runs {
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(crate::error::file_err(&path))?;
        let r: RunResults = serde_json::from_str(&text).map_err(|e| TrainError::File {
            path: path.clone(),
            message: format!("not a results.json: {e}"),
        })?;
        let (values, scale) = match metric {
            CurveMetric::Accuracy => (&r.valid_accuracy, 100.0),
            CurveMetric::Stability => (&r.max_real_eigenvalue, 1.0),
        };
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.filter(|a| a.is_finite())
                    .map(|a| ((i + 1) as f64, scale * a))
            })
            .collect();
        if points.is_empty() {
            return Err(TrainError::Invalid(format!(
                "{} has no per-epoch {metric} values to draw{}",
                path.display(),
                match metric {
                    CurveMetric::Stability => " (only static ORGaNICs runs log it)",
                    CurveMetric::Accuracy => "",
                }
            )));
        }
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        curves.push((name, points));
    }
    draw_curves(curves, metric, title, out)
}

/// Draws named per-epoch curves `(epoch, value)` of `metric` (accuracy in %) into `out`.
pub(crate) fn draw_curves(
    curves: Vec<(String, Vec<(f64, f64)>)>,
    metric: CurveMetric,
    title: &str,
    out: &Path,
) -> Result<(), TrainError> {
    let epochs = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(e, _)| *e))
        .fold(1.0f64, f64::max);
    let (y_range, y_desc) = match metric {
        CurveMetric::Accuracy => (0.0..100.0, "validation accuracy (%)"),
        CurveMetric::Stability => {
            // Always show the stability boundary Re = 0.
            let values = curves.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v));
            let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let pad = 0.08 * (hi - lo).max(1e-3);
            (lo - pad..hi + pad, "largest Re(eigenvalue), probe images")
        }
    };
    let err = crate::error::draw_err(out);
    let root = style::canvas(out, (900, 560))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (style::FONT, style::CAPTION))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(1.0..epochs.max(2.0), y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    if metric == CurveMetric::Stability {
        chart
            .draw_series(LineSeries::new(
                [(1.0, 0.0), (epochs.max(2.0), 0.0)],
                RED.stroke_width(style::LINE_WIDTH / 2),
            ))
            .map_err(err)?;
    }
    for (k, (name, points)) in curves.into_iter().enumerate() {
        style::line_with_markers(&mut chart, &name, points, style::series_color(k), out)?;
    }
    let position = match metric {
        CurveMetric::Accuracy => SeriesLabelPosition::LowerRight,
        CurveMetric::Stability => SeriesLabelPosition::UpperRight,
    };
    style::legend(&mut chart, position, out)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{BackendKind, ModelKind, Task};

    #[test]
    fn curves_of_a_run_make_valid_svg_and_bad_dirs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run-a");
        std::fs::create_dir_all(&run).unwrap();
        let mut r = RunResults {
            status: crate::run::results::RunStatus::Finished,
            adapter: None,
            task: Task::Mnist,
            model: ModelKind::Mlp,
            dataset: "mnist".into(),
            backend: BackendKind::Flex,
            epochs: 3,
            tested_epoch: Some(3),
            diverged_in_epoch: None,
            resumed_from_epoch: None,
            train_samples: 10,
            params: 1,
            hidden: 50,
            test_samples: 10,
            test_accuracy: Some(0.5),
            test_loss: Some(1.0),
            wall_seconds: 1.0,
            seconds_per_epoch: 0.3,
            seed: 42,
            permutation_seed: None,
            valid_accuracy: vec![Some(0.3), None, Some(0.6)],
            train_loss: vec![Some(2.0); 3],
            max_grad_norm: Some(1.0),
            max_real_eigenvalue: vec![Some(-0.3), Some(-0.25), None],
        };
        std::fs::write(run.join("results.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let out = dir.path().join("figs/curves.svg");
        learning_curves(
            std::slice::from_ref(&run),
            CurveMetric::Accuracy,
            "test",
            &out,
        )
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
        assert!(
            doc.descendants()
                .any(|n| n.text().map(str::trim) == Some("run-a"))
        );
        // two measured epochs, two markers
        let markers = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert_eq!(markers, 2);
        let acc = CurveMetric::Accuracy;
        assert!(learning_curves(&[dir.path().join("missing")], acc, "t", &out).is_err());
        assert!(learning_curves(&[], acc, "t", &out).is_err());

        // the stability metric: two logged epochs, and a run without it is refused
        let stab = dir.path().join("figs/stability.svg");
        learning_curves(
            std::slice::from_ref(&run),
            CurveMetric::Stability,
            "s",
            &stab,
        )
        .unwrap();
        let text = std::fs::read_to_string(&stab).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
        let markers = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert_eq!(markers, 2);
        r.max_real_eigenvalue.clear();
        std::fs::write(run.join("results.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let e = learning_curves(&[run], CurveMetric::Stability, "s", &stab).unwrap_err();
        assert!(e.to_string().contains("static ORGaNICs"), "{e}");
    }
}
