//! What a run reports: `results.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::harness::metric_log::{epoch_summaries, read_records};
use crate::options::{BackendKind, ModelKind, Task};

/// Loss and accuracy on a test set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestScore {
    /// Mean cross-entropy (plus reconstruction MSE for static ORGaNICs).
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// How a run's last invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// It trained all its epochs, or early stopping ended it; the test set was scored.
    #[default]
    Finished,
    /// It was stopped on request before its last epoch (Ctrl-C, SIGTERM, the dashboard's
    /// stop); its complete epochs are checkpointed, nothing was tested, and `--resume`
    /// continues it.
    Stopped,
    /// Its loss, gradient norm or validation loss became NaN or infinite during training (no
    /// gradient clipping unless `--clip`), or its test loss did; its complete epochs are
    /// checkpointed and no weights are saved as a result. Training is deterministic, so on
    /// the same backend `--resume` repeats the same steps to the same point: `runs/run.sh`
    /// leaves such a row as it is.
    Diverged,
}

/// The contents of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// How the run ended (absent in files written before this field: finished).
    #[serde(default)]
    pub status: RunStatus,
    /// The wgpu adapter the run trained on (name, kind, graphics API); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Task.
    pub task: Task,
    /// Model.
    pub model: ModelKind,
    /// Data set.
    pub dataset: String,
    /// Backend of this invocation.
    pub backend: BackendKind,
    /// Epochs trained in total (fewer than configured when early stopping ended the run).
    pub epochs: usize,
    /// The epoch whose weights were tested (and saved as `model.bpk`): with `--patience`
    /// the one with the best validation accuracy, otherwise the last.
    #[serde(default)]
    pub tested_epoch: Option<usize>,
    /// The epoch in which a diverged run's loss, gradient norm or validation loss stopped
    /// being finite (none when only the test loss did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_in_epoch: Option<usize>,
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
    /// Test accuracy (fraction); `None` for a stopped or diverged run.
    pub test_accuracy: Option<f64>,
    /// Test loss; `None` for a stopped or diverged run.
    pub test_loss: Option<f64>,
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
    /// The largest global gradient norm of any training step logged in the run's folder
    /// (training uses no clipping unless `--clip` is given).
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Static ORGaNICs: per epoch, the largest real part of the Jacobian's eigenvalues at the
    /// fixed points of the validation probe images, over all layers (negative: stable).
    #[serde(default)]
    pub max_real_eigenvalue: Vec<Option<f64>>,
}

/// The mean of a metric over each of epochs 1..=epochs, from the run's `metrics.jsonl`
/// (see [`crate::harness::metric_log`]).
pub fn read_epoch_metric(dir: &Path, split: &str, metric: &str, epochs: usize) -> Vec<Option<f64>> {
    let records = read_records(dir);
    epoch_summaries(&records, split, metric, epochs)
        .into_iter()
        .map(|s| s.map(|s| s.mean))
        .collect()
}

/// The largest value of a metric in each of epochs 1..=epochs (NaN when any batch was
/// NaN), from the same file as [`read_epoch_metric`].
pub fn read_epoch_max(dir: &Path, split: &str, metric: &str, epochs: usize) -> Vec<Option<f64>> {
    let records = read_records(dir);
    epoch_summaries(&records, split, metric, epochs)
        .into_iter()
        .map(|s| s.map(|s| s.max))
        .collect()
}

/// The largest value of a metric over epochs 1..=epochs (NaN when any batch was NaN: a
/// diverged epoch must show, where `f64::max` would drop it).
pub fn read_run_max(dir: &Path, split: &str, metric: &str, epochs: usize) -> Option<f64> {
    read_epoch_max(dir, split, metric, epochs)
        .into_iter()
        .flatten()
        .reduce(crate::harness::output::nan_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_max_reads_every_line_and_keeps_nan() {
        let dir = std::env::temp_dir().join(format!("organics-max-{}", std::process::id()));
        for (epoch, text) in [(1, "0.5\n2.5\n1.0\n"), (2, "1.0\nNaN\n3.0\n")] {
            let d = dir.join("train").join(format!("epoch-{epoch}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Grad_norm.log"), text).unwrap();
        }
        let max = read_epoch_max(&dir, "train", "Grad norm", 3);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(max[0], Some(2.5));
        assert!(max[1].is_some_and(f64::is_nan));
        assert_eq!(max[2], None);
    }
}
