//! An up-front estimate of a run's memory, checked against what the machine has free, so
//! that sizes which cannot fit end with a clear error instead of an allocation abort.
//!
//! The estimate is coarse on purpose (a factor of two either way is fine): it only has to
//! separate runs that fit from runs that are off by orders of magnitude (`--hidden 100000`).

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::options::{ModelKind, Task};
use crate::run::train::RunData;

const F32: f64 = 4.0;
/// Pixels of an image, and steps of a pixel sequence.
const PIXELS: f64 = 784.0;
/// The static model's autoencoder parameters (784-360-120-40 and back).
const AUTOENCODER_PARAMS: f64 = 2.0 * (784.0 * 360.0 + 360.0 * 120.0 + 120.0 * 40.0);

/// Bytes a training step of `config` needs, roughly.
pub fn estimate_bytes(config: &TrainConfig) -> f64 {
    // On the CPU backends the devices' batches are in flight in the same memory at once (on
    // GPUs each device holds its own batch, so there this overestimates the host's share).
    let batch = (config.batch_size * config.devices) as f64;
    let n = config.hidden_units() as f64;
    // Weights, gradients and Adam's two moments.
    let state = |params: f64| 4.0 * F32 * params;
    match (config.task, config.model) {
        (Task::Mnist, ModelKind::Mlp) => state(PIXELS * n + 10.0 * n) + batch * PIXELS * F32 * 8.0,
        (Task::Mnist, _) => {
            let mut params = AUTOENCODER_PARAMS;
            let mut width = 40.0;
            for &layer in &config.layers {
                let m = layer as f64;
                // W_zx and W_bx (m x width), W_ay (m x m), and W_r (m x m) when learned.
                let square = if config.learn_recurrence { 2.0 } else { 1.0 };
                params += 2.0 * m * width + square * m * m;
                width = m;
            }
            // Activations of a batch through every layer, kept for the backward pass; a
            // learned W_r also keeps the LU factors of one m x m matrix per sample, layer and
            // iteration of Algorithm 1 (the fused kernel's buffers outlive a step, hence 2).
            let widest = config.layers.iter().copied().max().unwrap_or(1) as f64;
            let squares: f64 = config.layers.iter().map(|&m| (m * m) as f64).sum();
            let iterations = organics_model::RecurrenceConfig::new().iterations as f64;
            let solves = if config.learn_recurrence {
                batch * iterations * squares * F32 * 2.0
            } else {
                0.0
            };
            state(params) + batch * (PIXELS * 8.0 + widest * 16.0) * F32 + solves
        }
        // The BPTT tape: about ten values per unit, step and sample (measured peak 0.93 GB
        // for n = 128, batch 256, 784 steps, against 1.0 GB from this formula).
        (_, ModelKind::Organics) => state(6.0 * n * n + 17.0 * n) + batch * PIXELS * n * F32 * 10.0,
        // Autodiff keeps every gate of every step.
        (_, _) => state(4.0 * n * (n + 2.0)) + batch * PIXELS * n * F32 * 24.0,
    }
}

/// Memory the operating system reports as available, in bytes (Linux; `None` elsewhere).
pub fn available_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses a run whose estimated memory exceeds what is available, and empty data sets.
pub fn check_fits(config: &TrainConfig, data: &RunData) -> Result<(), TrainError> {
    for (set, len) in [
        ("training", data.train.len()),
        ("validation", data.valid.len()),
        ("test", data.test.len()),
    ] {
        if len == 0 {
            return Err(TrainError::Invalid(format!(
                "the {set} set is empty (0 images): check the data files and the limits"
            )));
        }
    }
    let need = estimate_bytes(config);
    if let Some(free) = available_bytes()
        && need > free
    {
        return Err(TrainError::Invalid(format!(
            "this run needs about {:.1} GB of memory (estimate), more than the {:.1} GB available; choose smaller --hidden, --layers or --batch-size",
            need / 1e9,
            free / 1e9
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_near_the_measured_peak_and_grows_with_the_sizes() {
        let smnist = TrainConfig::new()
            .with_task(Task::Smnist)
            .with_hidden(Some(128));
        let gb = estimate_bytes(&smnist) / 1e9;
        assert!((0.5..2.0).contains(&gb), "{gb} GB for n = 128");
        let huge = smnist.clone().with_hidden(Some(100_000));
        assert!(estimate_bytes(&huge) > 1e12);
        let wide = TrainConfig::new().with_layers(vec![100_000]);
        assert!(estimate_bytes(&wide) > 1e11);
        let default_static = estimate_bytes(&TrainConfig::new()) / 1e9;
        assert!(default_static < 0.5, "{default_static} GB");
    }
}
