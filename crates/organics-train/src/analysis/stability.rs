//! `cargo xtask analyze stability`: on a trained static ORGaNICs model, the largest real
//! part of the Jacobian's eigenvalues at every test image's fixed point, layer by layer
//! (paper Fig. 5). Negative everywhere means every fixed point the classifier uses is
//! locally asymptotically stable.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::harness::models::StaticOrganics;
use crate::options::{GradientPath, ModelKind, Task};
use crate::run::eval::{load_weights, trained_run};
use crate::run::train::{load_data, static_config};
use organics_data::StaticBatcher;

/// Images whose fixed points are analysed together (one forward pass of the layers).
const CHUNK: usize = 250;

/// Counts of values in equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges, one more than `counts`.
    pub edges: Vec<f64>,
    /// Values per bin (the last bin includes its right edge).
    pub counts: Vec<usize>,
}

impl Histogram {
    /// `bins` equal bins spanning the finite `values` (a single value gets a narrow bin
    /// around it); non-finite values are not counted.
    pub fn new(values: &[f64], bins: usize) -> Self {
        let bins = bins.max(1);
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return Self {
                edges: Vec::new(),
                counts: Vec::new(),
            };
        }
        let pad = if hi > lo {
            0.0
        } else {
            1e-3 * lo.abs().max(1e-3)
        };
        let (lo, hi) = (lo - pad, hi + pad);
        let width = (hi - lo) / bins as f64;
        let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
        let mut counts = vec![0; bins];
        for v in values.iter().filter(|v| v.is_finite()) {
            let k = (((v - lo) / width) as usize).min(bins - 1);
            counts[k] += 1;
        }
        Self { edges, counts }
    }
}

/// What one ORGaNICs layer's fixed points look like over the analysed images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStability {
    /// Layer index (0 = the one fed by the encoder).
    pub layer: usize,
    /// Neurons `n` (the Jacobian is `2n x 2n`).
    pub neurons: usize,
    /// Images analysed.
    pub images: usize,
    /// The largest leading real part over the images (negative: all stable).
    pub max: f64,
    /// The smallest.
    pub min: f64,
    /// The mean.
    pub mean: f64,
    /// Images whose fixed point has an eigenvalue with real part >= 0 (not stable).
    pub not_stable: usize,
    /// Distribution of the leading real part.
    pub histogram: Histogram,
}

/// What `analyze stability` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedStability {
    /// The run analysed.
    pub artifact_dir: String,
    /// The weights analysed.
    pub weights: String,
    /// `"identity"` (closed form) or `"learned"` (Algorithm 1).
    pub recurrence: String,
    /// Test images analysed.
    pub images: usize,
    /// One entry per ORGaNICs layer.
    pub layers: Vec<LayerStability>,
}

/// Analyses the first `limit` test images (all when `None`) of the static ORGaNICs run in
/// `dir`, with `bins` histogram bins; `progress(done, total)` is called after each chunk.
pub fn trained_stability(
    dir: &Path,
    data_dir: Option<std::path::PathBuf>,
    limit: Option<usize>,
    bins: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<TrainedStability, TrainError> {
    let run = trained_run(dir)?;
    let config = &run.config;
    if (config.task, config.model) != (Task::Mnist, ModelKind::Organics) {
        return Err(TrainError::Invalid(format!(
            "{} holds a {} {} run: stability analysis needs a static ORGaNICs run (--task mnist --model organics)",
            dir.display(),
            config.task,
            config.model
        )));
    }
    let device = config.backend.device()?;
    let model = StaticOrganics::new(static_config(config).init(&device), GradientPath::Autodiff);
    let model = load_weights(model, &run)?.inner;
    let test = load_data(config, data_dir)?.test.limit(limit);
    let total = test.len();
    if total == 0 {
        return Err(TrainError::Invalid("no test images to analyse".into()));
    }
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(total); model.layers.len()];
    let indices: Vec<usize> = (0..total).collect();
    for chunk in indices.chunks(CHUNK) {
        let items = chunk
            .iter()
            .map(|&i| test.get(i).map_err(|e| TrainError::Training(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let images = StaticBatcher.batch(items, &device).images;
        for ((layer, input), out) in model
            .layers
            .iter()
            .zip(model.layer_inputs(images))
            .zip(values.iter_mut())
        {
            let leading = layer
                .max_real_eigenvalues(input)
                .map_err(|e| TrainError::Training(format!("fixed points of a layer: {e}")))?;
            out.extend(leading);
        }
        progress(chunk[chunk.len() - 1] + 1, total);
    }
    let layers = values
        .iter()
        .zip(&model.layers)
        .enumerate()
        .map(|(k, (v, layer))| LayerStability {
            layer: k,
            neurons: layer.size(),
            images: v.len(),
            max: v
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, crate::harness::output::nan_max),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            // NaN (no fixed point to speak of) counts as not stable.
            not_stable: v.iter().filter(|&&x| x.is_nan() || x >= 0.0).count(),
            histogram: Histogram::new(v, bins),
        })
        .collect();
    Ok(TrainedStability {
        artifact_dir: dir.display().to_string(),
        weights: run.weights.display().to_string(),
        recurrence: if config.learn_recurrence {
            "learned"
        } else {
            "identity"
        }
        .into(),
        images: total,
        layers,
    })
}

/// The table `analyze stability` prints.
pub fn stability_table(r: &TrainedStability) -> String {
    let mut out = format!(
        "{:>5} {:>7} {:>7} {:>12} {:>12} {:>12} {:>10}\n",
        "layer", "neurons", "images", "max Re", "mean Re", "min Re", "not stable"
    );
    for l in &r.layers {
        out.push_str(&format!(
            "{:>5} {:>7} {:>7} {:>12.4e} {:>12.4e} {:>12.4e} {:>10}\n",
            l.layer, l.neurons, l.images, l.max, l.mean, l.min, l.not_stable
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_finite_value_once() {
        let v = [-3.0, -2.5, -2.0, -1.0, -1.0, 0.5, f64::NAN];
        let h = Histogram::new(&v, 4);
        assert_eq!(h.edges.len(), 5);
        assert_eq!(h.counts.iter().sum::<usize>(), 6);
        assert_eq!((h.edges[0], h.edges[4]), (-3.0, 0.5));
        assert_eq!(h.counts[3], 1); // 0.5 sits on the right edge of the last bin
        let single = Histogram::new(&[-1.0, -1.0], 3);
        assert_eq!(single.counts.iter().sum::<usize>(), 2);
        assert!(single.edges[0] < -1.0 && single.edges[3] > -1.0);
        assert!(Histogram::new(&[f64::NAN], 3).counts.is_empty());
    }
}
