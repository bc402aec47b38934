//! The figure of `cargo xtask analyze stability`: one histogram per ORGaNICs layer of the
//! leading real part of the Jacobian's eigenvalues over test images (paper Fig. 5), with
//! the stability boundary `Re = 0` drawn in.

use std::path::Path;

use plotters::prelude::*;

use super::style;
use crate::analysis::stability::TrainedStability;
use crate::error::TrainError;

/// Draws `report`'s histograms side by side into the SVG `out`.
pub fn stability_histograms(report: &TrainedStability, out: &Path) -> Result<(), TrainError> {
    if report.layers.iter().all(|l| l.histogram.counts.is_empty()) {
        return Err(TrainError::Invalid(
            "no finite eigenvalue to draw: every fixed point failed".into(),
        ));
    }
    let err = crate::error::draw_err(out);
    let panels = report.layers.len();
    let root = style::canvas(out, (460 * panels as u32, 420))?;
    for (area, layer) in root.split_evenly((1, panels)).iter().zip(&report.layers) {
        let h = &layer.histogram;
        let (Some(&lo), Some(&hi)) = (h.edges.first(), h.edges.last()) else {
            continue;
        };
        // Show the boundary Re = 0, however far the values are from it.
        let (x0, x1) = (lo.min(0.0), hi.max(0.0));
        let pad = 0.05 * (x1 - x0).max(1e-6);
        let top = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "layer {} ({} neurons): max {:.3}",
                    layer.layer + 1,
                    layer.neurons,
                    layer.max
                ),
                (style::FONT, style::PANEL_CAPTION),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("largest Re(eigenvalue) of the Jacobian")
            .y_desc("test images")
            .draw()
            .map_err(err)?;
        let bars = h.counts.iter().enumerate().map(|(k, &c)| {
            Rectangle::new(
                [(h.edges[k], 0.0), (h.edges[k + 1], c as f64)],
                BLUE.mix(0.6).filled(),
            )
        });
        chart.draw_series(bars).map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (0.0, top)],
                RED.stroke_width(style::LINE_WIDTH),
            ))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
