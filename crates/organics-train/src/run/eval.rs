//! Evaluation of a trained run: reload its config and weights, score the test set with the
//! same data, split and pixel permutation.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::options::{BackendKind, Task};
use crate::run::checkpoint::{checkpoint_path, last_complete_epoch};
use crate::run::dispatch::{ModelJob, RunBatcher, RunModel, with_model};
use crate::run::train::{files, load_data, read_config};
use organics_data::PixelOrder;

/// What `cargo xtask eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// The run's configuration file.
    pub config: String,
    /// The weights evaluated.
    pub weights: String,
    /// Backend used.
    pub backend: BackendKind,
    /// Test images.
    pub test_samples: usize,
    /// Test accuracy (fraction).
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
}

/// A trained (or checkpointed) run on disk: its configuration and the weights to load.
#[derive(Debug, Clone)]
pub struct TrainedRun {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Where the configuration was read.
    pub config_path: PathBuf,
    /// The final weights, or those of the last complete checkpoint.
    pub weights: PathBuf,
}

/// Finds the configuration and weights of the run in `dir`.
pub fn trained_run(dir: &Path) -> Result<TrainedRun, TrainError> {
    let config_path = dir.join(files::CONFIG);
    if !config_path.is_file() {
        return Err(TrainError::Invalid(format!(
            "{} is not a training run: it has no {}",
            dir.display(),
            files::CONFIG
        )));
    }
    let config = read_config(dir)?;
    let weights = match dir.join(files::MODEL) {
        p if p.is_file() => p,
        _ => {
            let checkpoints = dir.join(files::CHECKPOINTS);
            let epoch = last_complete_epoch(&checkpoints)
                .ok_or_else(|| TrainError::NoCheckpoint(checkpoints.clone()))?;
            checkpoint_path(&checkpoints, "model", epoch)
        }
    };
    Ok(TrainedRun {
        config,
        config_path,
        weights,
    })
}

/// The trained sequence ORGaNICs model of the run in `dir`, with its run and device, for the analyses
/// that need one (`what` names the analysis in the error for any other kind of run).
pub(crate) fn trained_sequence_organics(
    dir: &Path,
    what: &str,
) -> Result<(TrainedRun, organics_model::SeqClassifier, Device), TrainError> {
    let run = trained_run(dir)?;
    let config = &run.config;
    if config.task == Task::Mnist || config.model != crate::options::ModelKind::Organics {
        return Err(TrainError::Invalid(format!(
            "{} holds a {} {} run: {what} a sequence ORGaNICs run (--task smnist|psmnist \
             --model organics)",
            dir.display(),
            config.task,
            config.model
        )));
    }
    let device = config.backend.device()?;
    let model = crate::run::dispatch::seq_organics(config, &device);
    let model = load_weights(model, &run)?.inner;
    Ok((run, model, device))
}

/// Checks that the psMNIST permutation recorded in `dir` is the one `order` applies, so a
/// reloaded run sees its pixels in the order it was trained on.
pub fn check_permutation(
    dir: &Path,
    config: &TrainConfig,
    order: &PixelOrder,
) -> Result<(), TrainError> {
    let (Task::Psmnist, PixelOrder::Permuted(perm)) = (config.task, order) else {
        return Ok(());
    };
    let recorded_path = dir.join(files::PERMUTATION);
    let text = std::fs::read_to_string(&recorded_path).map_err(|e| TrainError::File {
        path: recorded_path.clone(),
        message: e.to_string(),
    })?;
    let recorded: Vec<usize> = serde_json::from_str(&text).map_err(|e| TrainError::File {
        path: recorded_path.clone(),
        message: e.to_string(),
    })?;
    if recorded != *perm.as_ref() {
        return Err(TrainError::Invalid(format!(
            "{} does not match the permutation of seed {}: the run cannot be evaluated faithfully",
            recorded_path.display(),
            config.permutation_seed
        )));
    }
    Ok(())
}

/// Loads the weights of `run` into `model`, with a readable error when they do not fit.
pub(crate) fn load_weights<M: Module>(model: M, run: &TrainedRun) -> Result<M, TrainError> {
    model
        .try_load_file(&run.weights)
        .map_err(|e| TrainError::File {
            path: run.weights.clone(),
            message: format!("weights do not fit this run's model: {e}"),
        })
}

/// Loads a run's weights and scores a data set: the [`ModelJob`] of [`evaluate`].
struct Score<'a> {
    run: &'a TrainedRun,
    test: &'a organics_data::ImageSet,
    batch_size: usize,
    device: &'a Device,
}

impl ModelJob for Score<'_> {
    type Output = Result<crate::run::results::TestScore, TrainError>;

    fn run<M: RunModel, Bt: RunBatcher<M>>(self, model: M, batcher: Bt) -> Self::Output {
        let model = load_weights(model, self.run)?;
        crate::run::train::evaluate_model(&model, &batcher, self.test, self.batch_size, self.device)
    }
}

/// Scores the test set of the run in `dir` on `backend` (default: the run's own).
pub fn evaluate(
    dir: &Path,
    data_dir: Option<std::path::PathBuf>,
    backend: Option<BackendKind>,
) -> Result<EvalResults, TrainError> {
    let run = trained_run(dir)?;
    let mut config = run.config.clone();
    if let Some(b) = backend {
        config.backend = b;
    }
    let device = config.backend.device()?;
    let data = load_data(&config, data_dir)?;
    check_permutation(dir, &config, &data.order)?;
    let order = data.order.clone();
    let score = with_model(
        &config,
        &device,
        config.seed,
        order,
        Score {
            run: &run,
            test: &data.test,
            batch_size: config.batch_size,
            device: &device,
        },
    )?;
    Ok(EvalResults {
        config: run.config_path.display().to_string(),
        weights: run.weights.display().to_string(),
        backend: config.backend,
        test_samples: data.test.len(),
        test_accuracy: score.accuracy,
        test_loss: score.loss,
    })
}
