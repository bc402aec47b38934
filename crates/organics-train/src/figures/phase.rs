//! `cargo xtask plot phase`: phase portraits of the 2-D circuit (paper Fig. 1), as SVG.
//!
//! One panel per parameter set and model: the flow field, the `y`-nullcline (blue), the
//! `a`-nullcline (red) and the fixed points, filled when stable and hollow when unstable.

use std::path::Path;

use organics_model::analysis::PlanarCircuit;
use plotters::prelude::*;
use serde::Serialize;

use super::style;
use crate::error::TrainError;

/// The paper's three `(w_r, σ)` sets (docs/MODEL.md §8).
pub const FIGURE1_SETS: [(f64, f64); 3] = [(0.5, 0.1), (2.0, 0.1), (2.0, 1.0)];

/// A nullcline: `a` as a function of `y`, where defined.
type Curve<'a> = dyn Fn(f64) -> Option<f64> + 'a;

/// A fixed point as the figure marks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarkedPoint {
    /// Panel title.
    pub panel: String,
    /// `y` at the fixed point.
    pub y: f64,
    /// `a` at the fixed point.
    pub a: f64,
    /// Marked stable (filled).
    pub stable: bool,
}

/// Splits a curve into the runs where it is defined and inside the plotted `a` range.
fn segments(points: impl Iterator<Item = (f64, Option<f64>)>, a_max: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (y, a) in points {
        match a.filter(|a| a.is_finite() && *a <= a_max * 1.02) {
            Some(a) => out.last_mut().map(|s| s.push((y, a))).unwrap_or(()),
            None => {
                if out.last().is_some_and(|s| !s.is_empty()) {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|s| s.len() > 1);
    out
}

/// Draws the six panels (three parameter sets, main and rectified model) into `path`;
/// returns the fixed points it marked.
pub fn phase_portraits(path: &Path) -> Result<Vec<MarkedPoint>, TrainError> {
    let err = crate::error::draw_err(path);
    let root = style::canvas(path, (1500, 900))?;
    let panels = root.split_evenly((2, 3));
    let mut marked = Vec::new();
    let cases = [false, true]
        .into_iter()
        .flat_map(|rect| FIGURE1_SETS.iter().map(move |&(w_r, s)| (rect, w_r, s)));
    for (area, (rectified, w_r, sigma)) in panels.iter().zip(cases) {
        let c = PlanarCircuit::figure1(w_r, sigma, rectified);
        let fixed = c
            .fixed_points()
            .map_err(|e| TrainError::Training(e.to_string()))?;
        let title = format!(
            "{}, w_r = {w_r}, σ = {sigma}",
            if rectified { "rectified" } else { "main" }
        );
        let edge = 1.0 / c.w.sqrt();
        let (y_lo, y_hi) = (-1.1 * edge, 1.1 * edge);
        let a_max = fixed
            .iter()
            .map(|f| 1.6 * f.a)
            .fold(1.0f64, f64::max)
            .min(4.0);
        let mut chart = ChartBuilder::on(area)
            .caption(&title, (style::FONT, style::PANEL_CAPTION))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(y_lo..y_hi, 0.0..a_max)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("y")
            .y_desc("a")
            .light_line_style(WHITE)
            .draw()
            .map_err(&err)?;

        // Flow field: unit arrows in screen proportions, so direction is what they show.
        let grid = 17;
        let (dy_span, da_span) = (y_hi - y_lo, a_max);
        for i in 0..grid {
            for j in 0..grid {
                let y = y_lo + dy_span * (i as f64 + 0.5) / grid as f64;
                let a = da_span * (j as f64 + 0.5) / grid as f64;
                let (vy, va) = c.drift(y, a);
                let (sy, sa) = (vy / dy_span, va / da_span);
                let norm = (sy * sy + sa * sa).sqrt();
                if !norm.is_finite() || norm == 0.0 {
                    continue;
                }
                let len = 0.35 / grid as f64;
                let head = (y + dy_span * len * sy / norm, a + da_span * len * sa / norm);
                chart
                    .draw_series(LineSeries::new([(y, a), head], RGBColor(150, 150, 150)))
                    .map_err(&err)?;
                chart
                    .draw_series([Circle::new(head, 2, RGBColor(150, 150, 150).filled())])
                    .map_err(&err)?;
            }
        }

        let ys: Vec<f64> = (0..=2000)
            .map(|k| y_lo + (y_hi - y_lo) * k as f64 / 2000.0)
            .collect();
        let nullclines: [(&str, RGBColor, &Curve); 2] = [
            ("dy/dt = 0", BLUE, &|y| c.y_nullcline(y)),
            ("da/dt = 0", RED, &|y| c.a_nullcline(y)),
        ];
        for (label, color, curve) in nullclines {
            for (k, seg) in segments(ys.iter().map(|&y| (y, curve(y))), a_max)
                .into_iter()
                .enumerate()
            {
                let s = chart
                    .draw_series(LineSeries::new(seg, color.stroke_width(style::LINE_WIDTH)))
                    .map_err(&err)?;
                if k == 0 {
                    s.label(label)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                }
            }
        }
        for f in &fixed {
            let style = if f.is_stable() {
                BLACK.filled()
            } else {
                BLACK.stroke_width(style::LINE_WIDTH)
            };
            chart
                .draw_series([Circle::new((f.y, f.a), 6, style)])
                .map_err(&err)?;
            marked.push(MarkedPoint {
                panel: title.clone(),
                y: f.y,
                a: f.a,
                stable: f.is_stable(),
            });
        }
        style::legend(&mut chart, SeriesLabelPosition::UpperMiddle, path)?;
    }
    root.present().map_err(&err)?;
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_break_where_undefined_or_off_range() {
        let pts = [
            (0.0, Some(0.1)),
            (0.1, Some(0.2)),
            (0.2, None),
            (0.3, Some(0.3)),
            (0.4, Some(9.0)),
            (0.5, Some(0.1)),
            (0.6, Some(0.2)),
        ];
        let s = segments(pts.into_iter(), 1.0);
        assert_eq!(
            s,
            vec![vec![(0.0, 0.1), (0.1, 0.2)], vec![(0.5, 0.1), (0.6, 0.2)]]
        );
    }

    #[test]
    fn phase_figure_is_valid_svg_with_every_fixed_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phase.svg");
        let marked = phase_portraits(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        // main (2.0, 0.1) has three fixed points, every other panel at least one
        assert!(marked.len() >= 8, "{marked:?}");
        assert!(marked.iter().any(|m| !m.stable));
        assert!(
            marked
                .iter()
                .filter(|m| m.panel.starts_with("rectified"))
                .all(|m| m.stable)
        );
        let circles = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert!(circles > marked.len());
    }
}
