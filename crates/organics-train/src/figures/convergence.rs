//! The figure of `cargo xtask analyze convergence`: Algorithm 1's relative error per
//! iteration against a long simulation, mean ± one standard deviation and the maximum over
//! the random circuits, on a log scale (paper Fig. 4).

use std::path::Path;

use plotters::prelude::*;

use super::style;
use crate::analysis::experiments::ConvergenceReport;
use crate::error::TrainError;

/// Draws `report` into the SVG `out`.
pub fn convergence_figure(report: &ConvergenceReport, out: &Path) -> Result<(), TrainError> {
    let iterations = report.mean.len();
    // Errors of exactly 0 (or NaN) cannot sit on a log axis; they are left out.
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let values: Vec<f64> = report
        .mean
        .iter()
        .chain(&report.max)
        .copied()
        .filter(|&v| positive(v))
        .collect();
    if iterations == 0 || values.is_empty() {
        return Err(TrainError::Invalid(
            "no positive error to draw: the report is empty".into(),
        ));
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min) / 3.0;
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 3.0;
    let err = crate::error::draw_err(out);
    let root = style::canvas(out, (800, 520))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Algorithm 1 vs simulation: {} circuits, n = {}",
                report.trials, report.n
            ),
            (style::FONT, style::CAPTION),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..iterations as f64 + 0.5, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("relative error ‖s_k − s*‖ / ‖s*‖")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(err)?;
    let series = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .filter(|(_, v)| positive(**v))
            .map(|(k, v)| ((k + 1) as f64, *v))
            .collect()
    };
    // mean ± std as vertical bars (the lower end clipped to the axis)
    let bars = report
        .mean
        .iter()
        .zip(&report.std)
        .enumerate()
        .filter(|(_, (m, _))| positive(**m))
        .map(|(k, (m, s))| {
            let x = (k + 1) as f64;
            let low = if m - s > lo { m - s } else { lo };
            PathElement::new(
                [(x, low), (x, m + s)],
                BLUE.mix(0.5).stroke_width(style::LINE_WIDTH),
            )
        });
    chart.draw_series(bars).map_err(err)?;
    for (name, points, color) in [
        ("mean (± std)", series(&report.mean), BLUE),
        ("max", series(&report.max), RED),
    ] {
        style::line_with_markers(&mut chart, name, points, color.to_rgba(), out)?;
    }
    style::legend(&mut chart, SeriesLabelPosition::UpperRight, out)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_figure_is_decodable_svg_with_a_marker_per_point() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("conv.svg");
        let report = ConvergenceReport {
            n: 10,
            trials: 5,
            skipped: 0,
            mean: vec![1e-2, 1e-4, 0.0],
            std: vec![5e-3, 1e-4, 0.0],
            max: vec![3e-2, 2e-4, 1e-7],
        };
        convergence_figure(&report, &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
        let markers = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        // the zero mean at iteration 3 is left out of the log plot
        assert_eq!(markers, 5);
        let empty = ConvergenceReport {
            mean: Vec::new(),
            std: Vec::new(),
            max: Vec::new(),
            ..report
        };
        assert!(convergence_figure(&empty, &out).is_err());
    }
}
