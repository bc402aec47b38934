//! One style for every figure: a white SVG canvas, sans-serif captions, lines two pixels
//! wide with a marker at each point, a framed legend.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{TrainError, create_parent, draw_err};

/// The font of captions, axes and legends.
pub(crate) const FONT: &str = "sans-serif";
/// Caption size of a single-panel figure; panels of a grid use [`PANEL_CAPTION`].
pub(crate) const CAPTION: u32 = 20;
/// Caption size of one panel among several.
pub(crate) const PANEL_CAPTION: u32 = 16;
/// Width of data lines, in pixels.
pub(crate) const LINE_WIDTH: u32 = 2;
/// Radius of the marker at each data point, in pixels.
pub(crate) const MARKER_RADIUS: i32 = 3;

/// A white SVG canvas of `size` pixels that will be written to `out` (its folder is
/// created).
pub(crate) fn canvas(
    out: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<SVGBackend<'_>, Shift>, TrainError> {
    create_parent(out)?;
    let root = SVGBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(out))?;
    Ok(root)
}

/// The color of the `k`-th series.
pub(crate) fn series_color(k: usize) -> RGBAColor {
    Palette99::pick(k).to_rgba()
}

/// `points` as a line with a marker at each point, named `name` in the legend.
pub(crate) fn line_with_markers<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    name: &str,
    points: Vec<(f64, f64)>,
    color: RGBAColor,
    out: &Path,
) -> Result<(), TrainError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    let err = draw_err(out);
    chart
        .draw_series(LineSeries::new(
            points.clone(),
            color.stroke_width(LINE_WIDTH),
        ))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| {
            PathElement::new([(x, y), (x + 20, y)], color.stroke_width(LINE_WIDTH))
        });
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, MARKER_RADIUS, color.filled())),
        )
        .map_err(err)?;
    Ok(())
}

/// The legend of `chart`, framed on a light background, at `position`.
pub(crate) fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    out: &Path,
) -> Result<(), TrainError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(draw_err(out))
}
