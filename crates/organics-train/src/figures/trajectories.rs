//! `cargo xtask plot trajectories`: the principal-neuron potentials `y(t)` of a trained
//! sequence ORGaNICs model over the 784 pixel steps of a few test images (paper Fig. 7).

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use plotters::prelude::*;

use super::style;
use crate::error::TrainError;
use crate::run::eval::{check_permutation, trained_sequence_organics};
use crate::run::train::load_data;
use organics_data::SequenceBatcher;

/// One test image of the figure.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryImage {
    /// Index in the test set.
    pub index: usize,
    /// The digit.
    pub label: usize,
    /// The model's class.
    pub predicted: usize,
}

/// What `plot trajectories` drew.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectorySummary {
    /// The images, one panel each.
    pub images: Vec<TrajectoryImage>,
    /// The neurons drawn: those whose `y` varies most over time on these images.
    pub neurons: Vec<usize>,
    /// Time steps per image.
    pub steps: usize,
}

/// Draws `y(t)` of `neurons` neurons for the first `images` test images of the sequence
/// ORGaNICs run in `dir` into the SVG `out`.
pub fn trajectories(
    dir: &Path,
    data_dir: Option<std::path::PathBuf>,
    images: usize,
    neurons: usize,
    out: &Path,
) -> Result<TrajectorySummary, TrainError> {
    if images == 0 || neurons == 0 {
        return Err(TrainError::Invalid(
            "--images and --neurons must be at least 1".into(),
        ));
    }
    let (run, model, device) = trained_sequence_organics(dir, "trajectories need")?;
    let config = &run.config;
    let data = load_data(config, data_dir)?;
    check_permutation(dir, config, &data.order)?;
    let count = images.min(data.test.len());
    let items = (0..count)
        .map(|i| {
            data.test
                .get(i)
                .map_err(|e| TrainError::Training(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<usize> = items.iter().map(|i| usize::from(i.label)).collect();
    let batch = SequenceBatcher {
        order: data.order.clone(),
    }
    .batch(items, &device);
    let (last, trajectory) = model.rnn.forward_trajectory(batch.inputs);
    let predicted = model.readout.forward(last.y).argmax(1).reshape([count]);
    let predicted: Vec<i64> = predicted
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| TrainError::Training(format!("{e:?}")))?;
    let [_, steps, n] = trajectory.y.dims();
    let y: Vec<f32> = trajectory
        .y
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Training(format!("{e:?}")))?;
    let at = |img: usize, t: usize, j: usize| f64::from(y[(img * steps + t) * n + j]);
    let chosen = most_varying(count, steps, n, neurons, &at);
    let summary = TrajectorySummary {
        images: (0..count)
            .map(|i| TrajectoryImage {
                index: i,
                label: labels[i],
                predicted: usize::try_from(predicted[i]).unwrap_or(usize::MAX),
            })
            .collect(),
        neurons: chosen,
        steps,
    };
    draw(&summary, &at, out)?;
    Ok(summary)
}

/// The `k` neurons whose `y` has the largest variance over time, summed over images.
fn most_varying(
    images: usize,
    steps: usize,
    n: usize,
    k: usize,
    at: &impl Fn(usize, usize, usize) -> f64,
) -> Vec<usize> {
    let variance = |j: usize| -> f64 {
        (0..images)
            .map(|img| {
                let mean = (0..steps).map(|t| at(img, t, j)).sum::<f64>() / steps as f64;
                (0..steps)
                    .map(|t| (at(img, t, j) - mean).powi(2))
                    .sum::<f64>()
                    / steps as f64
            })
            .sum()
    };
    let mut order: Vec<(usize, f64)> = (0..n).map(|j| (j, variance(j))).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().take(k).map(|(j, _)| j).collect()
}

fn draw(
    s: &TrajectorySummary,
    at: &impl Fn(usize, usize, usize) -> f64,
    out: &Path,
) -> Result<(), TrainError> {
    let err = crate::error::draw_err(out);
    let rows = s.images.len();
    let root = style::canvas(out, (1000, 240 * rows as u32))?;
    for (area, img) in root.split_evenly((rows, 1)).iter().zip(&s.images) {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &j in &s.neurons {
            for t in 0..s.steps {
                let v = at(img.index, t, j);
                if v.is_finite() {
                    (lo, hi) = (lo.min(v), hi.max(v));
                }
            }
        }
        if lo > hi {
            (lo, hi) = (-1.0, 1.0);
        }
        let pad = 0.05 * (hi - lo).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "test image {}: digit {}, predicted {}",
                    img.index, img.label, img.predicted
                ),
                (style::FONT, style::PANEL_CAPTION),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..s.steps as f64, lo - pad..hi + pad)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time step (pixel)")
            .y_desc("y")
            .draw()
            .map_err(err)?;
        for (k, &j) in s.neurons.iter().enumerate() {
            let color = style::series_color(k);
            chart
                .draw_series(LineSeries::new(
                    (0..s.steps).map(|t| ((t + 1) as f64, at(img.index, t, j))),
                    // 784 points per line: thinner than the figures' usual lines.
                    color.stroke_width(style::LINE_WIDTH / 2),
                ))
                .map_err(err)?
                .label(format!("neuron {j}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        style::legend(&mut chart, SeriesLabelPosition::UpperLeft, out)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_varying_neurons_come_first() {
        // neuron 2 swings widely, neuron 0 a little, neuron 1 not at all
        let at = |_: usize, t: usize, j: usize| match j {
            0 => 0.1 * (t % 2) as f64,
            1 => 0.5,
            _ => 3.0 * (t % 2) as f64,
        };
        assert_eq!(most_varying(2, 10, 3, 2, &at), vec![2, 0]);
        assert_eq!(most_varying(1, 10, 3, 5, &at), vec![2, 0, 1]);
    }
}
