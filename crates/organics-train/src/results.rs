//! What a run reports: `results.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::options::{BackendKind, ModelKind, Task};

/// Loss and accuracy on a test set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestScore {
    /// Mean cross-entropy (plus reconstruction MSE for static ORGaNICs).
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// The contents of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// Task.
    pub task: Task,
    /// Model.
    pub model: ModelKind,
    /// Data set.
    pub dataset: String,
    /// Backend of this invocation.
    pub backend: BackendKind,
    /// Epochs trained in total.
    pub epochs: usize,
    /// The checkpoint this invocation resumed from, if any.
    pub resumed_from_epoch: Option<usize>,
    /// Training images.
    pub train_samples: usize,
    /// Trained parameters.
    pub params: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Test images.
    pub test_samples: usize,
    /// Test accuracy (fraction).
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Wall time of this invocation (training, validation, test), seconds.
    pub wall_seconds: f64,
    /// `wall_seconds` per epoch run by this invocation.
    pub seconds_per_epoch: f64,
    /// Seed.
    pub seed: u64,
    /// psMNIST permutation seed.
    pub permutation_seed: Option<u64>,
    /// Validation accuracy (fraction) per epoch (index 0 = epoch 1), from Burn's metric logs.
    pub valid_accuracy: Vec<Option<f64>>,
    /// Mean training loss per epoch.
    pub train_loss: Vec<Option<f64>>,
}

/// The mean of a metric over an epoch, from Burn's `<split>/epoch-N/<Metric>.log` files
/// (one `value[,count]` line per batch), for epochs 1..=epochs.
pub fn read_epoch_metric(dir: &Path, split: &str, metric: &str, epochs: usize) -> Vec<Option<f64>> {
    (1..=epochs)
        .map(|epoch| {
            let path = dir
                .join(split)
                .join(format!("epoch-{epoch}"))
                .join(format!("{metric}.log"));
            let text = std::fs::read_to_string(path).ok()?;
            let (mut sum, mut weight) = (0.0, 0.0);
            for line in text.lines() {
                let mut parts = line.split(',');
                let value: f64 = parts.next()?.trim().parse().ok()?;
                let count: f64 = parts
                    .next()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(1.0);
                sum += value * count;
                weight += count;
            }
            (weight > 0.0).then(|| sum / weight)
        })
        .collect()
}
