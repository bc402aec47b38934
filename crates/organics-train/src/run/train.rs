//! A training run with Burn's Learner: data, model, optimizer, schedule, checkpoints,
//! resume, the non-finite-loss guard, test evaluation and `results.json`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::prelude::*;
use burn::train::checkpoint::{
    ComposedCheckpointingStrategy, KeepLastNCheckpoints, MetricCheckpointingStrategy,
};
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{ExecutionStrategy, Interrupter, Learner, MultiDeviceOptim, SupervisedTraining};
use organics_data::{
    DataSource, DatasetName, DigitItem, EpochLoader, ImageSet, Mnist, PixelOrder, pixel_permutation,
};
use organics_model::{
    OrganicsCellConfig, RecurrenceConfig, SeqClassifierConfig, StaticClassifierConfig,
};

use crate::config::TrainConfig;
use crate::error::{TrainError, file_err};
use crate::harness::guard::{Divergence, FiniteGuard, GuardContext, GuardedSplit, StopRequest};
use crate::harness::metric_log::{METRICS_FILE, MetricLog, WriteFailure};
use crate::harness::models::HarnessModel;
use crate::harness::output::{GRAD_NORM, MAX_REAL_EIGENVALUE, MaxMetric};
use crate::harness::patience::RunPatience;
use crate::options::Task;
use crate::run::checkpoint::{
    AtomicCheckpointer, last_complete_epoch, newest_intact_epoch, write_atomic,
};
use crate::run::dispatch::{ModelJob, RunBatcher, RunModel, with_model};
use crate::run::lock::RunLock;
use crate::run::results::{RunResults, RunStatus, TestScore};

// Guards Burn's process-wide random generator while a model's parameters are drawn (see
// `seeded_init`); it guards no state of ours.
static SEEDED_INIT: Mutex<()> = Mutex::new(());

/// Builds a model with the backend's generator seeded by `seed`, with no other draw in
/// between. Burn keeps a backend's random generator per process (ndarray's is one global),
/// so two runs initialising their models at the same time in one process, as tests and
/// embedding programs do, would draw from each other's stream; seeding and drawing under one
/// lock makes a run's initial weights a function of its seed alone. Burn's own layers
/// (`Linear`, `Lstm`) draw their parameters lazily, on first use, so every parameter is drawn
/// here, before the lock is released.
pub fn seeded_init<M: Module>(device: &Device, seed: u64, init: impl FnOnce() -> M) -> M {
    struct Draw;
    impl burn::module::ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            // `val` runs a lazy parameter's initialiser once; clones share the result.
            let _ = param.val();
        }
    }
    // A panic while another run held the lock leaves nothing half-written that matters here:
    // the next run reseeds before drawing.
    let _guard = SEEDED_INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(seed);
    let model = init();
    model.visit(&mut Draw);
    model
}

/// Where a run lives and how to start it.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The artifact directory (config, checkpoints, metrics, results).
    pub artifact_dir: PathBuf,
    /// Continue from the newest intact checkpoint.
    pub resume: bool,
    /// Replace a run already in the artifact directory (its checkpoints, metrics, weights
    /// and results) instead of refusing to.
    pub overwrite: bool,
    /// An explicit data folder (else `ORGANICS_DATA_DIR`, the repository's copy, the cache,
    /// or a download).
    pub data_dir: Option<PathBuf>,
    /// Force plain-text progress even on a terminal.
    pub plain: bool,
    /// Train on wgpu even when its only adapter is a software renderer.
    pub allow_software_gpu: bool,
    /// Set from elsewhere (a signal handler) to stop the run cleanly after the current step:
    /// its complete epochs stay checkpointed and [`TrainError::Stopped`] is returned.
    pub stop: StopRequest,
}

impl RunOptions {
    /// Options for a new run in `artifact_dir` (no resume, no overwrite, default data).
    pub fn new(artifact_dir: impl Into<PathBuf>) -> Self {
        Self {
            artifact_dir: artifact_dir.into(),
            ..Self::default()
        }
    }
}

/// File names inside an artifact directory.
pub mod files {
    /// The run's configuration.
    pub const CONFIG: &str = "config.json";
    /// The final weights.
    pub const MODEL: &str = "model.bpk";
    /// The results of the run.
    pub const RESULTS: &str = "results.json";
    /// The psMNIST permutation, recorded for evaluation.
    pub const PERMUTATION: &str = "permutation.json";
    /// Checkpoint folder.
    pub const CHECKPOINTS: &str = "checkpoint";
    /// The per-epoch metrics.
    pub const METRICS: &str = super::METRICS_FILE;
}

/// Removes what a run writes into its artifact directory (not the lock, nor files of others).
fn remove_run_files(dir: &Path) -> Result<(), TrainError> {
    let checkpoints = dir.join(files::CHECKPOINTS);
    if checkpoints.exists() {
        std::fs::remove_dir_all(&checkpoints).map_err(file_err(&checkpoints))?;
    }
    crate::harness::metric_log::legacy::remove(dir);
    for name in [
        files::METRICS,
        files::MODEL,
        files::RESULTS,
        files::PERMUTATION,
        files::CONFIG,
    ] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(file_err(&path))?;
        }
    }
    Ok(())
}

/// The data of a run: train, valid and test sets and how to batch them.
pub struct RunData {
    /// Training images.
    pub train: ImageSet,
    /// Validation images.
    pub valid: ImageSet,
    /// Test images.
    pub test: ImageSet,
    /// Pixel order for the sequence tasks.
    pub order: PixelOrder,
}

/// Loads the data set and makes the seeded split, limits and pixel order of `config`.
pub fn load_data(config: &TrainConfig, data_dir: Option<PathBuf>) -> Result<RunData, TrainError> {
    let name: DatasetName = config.dataset.parse()?;
    let source = DataSource::new(name).with_data_dir(data_dir);
    let files = source.locate()?;
    for file in source.unrecognised(&files) {
        eprintln!("warning: {file}");
    }
    let data = Mnist::load_files(&files)?;
    let (train, valid) = data.train.split(config.valid_size, config.seed)?;
    let order = match config.task {
        Task::Psmnist => PixelOrder::Permuted(Arc::new(pixel_permutation(config.permutation_seed))),
        _ => PixelOrder::ScanLine,
    };
    Ok(RunData {
        train: train.limit(config.train_limit),
        valid: valid.limit(config.valid_limit),
        test: data.test.limit(config.test_limit),
        order,
    })
}

/// Reads `config.json` of an artifact directory.
pub fn read_config(dir: &Path) -> Result<TrainConfig, TrainError> {
    let path = dir.join(files::CONFIG);
    let text = std::fs::read_to_string(&path).map_err(file_err(&path))?;
    TrainConfig::from_json(&text).map_err(|e| TrainError::File {
        path,
        message: format!("not a training config: {e}"),
    })
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::File {
        path: path.into(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes()).map_err(file_err(path))
}

/// Checks the artifact directory against `config`; returns whether a run is resumed (the
/// epoch is chosen by [`newest_intact_epoch`] once the model exists).
fn prepare_artifact_dir(config: &TrainConfig, opts: &RunOptions) -> Result<bool, TrainError> {
    let dir = &opts.artifact_dir;
    let checkpoints = dir.join(files::CHECKPOINTS);
    if opts.overwrite {
        if opts.resume {
            return Err(TrainError::Invalid(
                "--overwrite and --resume exclude each other".into(),
            ));
        }
        remove_run_files(dir)?;
    }
    let earlier: Vec<&str> = [files::CHECKPOINTS, files::MODEL, files::RESULTS]
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect();
    if !dir.join(files::CONFIG).exists() && !earlier.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} holds files of an earlier run ({}) but no {}; pass --overwrite to replace them, or choose another --artifact-dir",
            dir.display(),
            earlier.join(", "),
            files::CONFIG
        )));
    }
    if dir.join(files::CONFIG).exists() {
        let existing = read_config(dir)?;
        if !existing.same_run(config) {
            let detail = existing.differences(config).join("; ");
            return Err(TrainError::ConfigMismatch {
                dir: dir.clone(),
                detail,
            });
        }
        let last = last_complete_epoch(&checkpoints);
        if !opts.resume && (last.is_some() || !earlier.is_empty()) {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run ({}); pass --resume to continue it, --overwrite to replace it, or choose another --artifact-dir",
                dir.display(),
                earlier.join(", ")
            )));
        }
        if opts.resume {
            return match last {
                Some(epoch) if epoch >= config.epochs => Err(TrainError::Invalid(format!(
                    "the run in {} has trained {epoch} epochs already; pass --epochs greater than {epoch} to train it further (cargo xtask eval scores it as it is)",
                    dir.display()
                ))),
                Some(_) => Ok(true),
                None => Err(TrainError::NoCheckpoint(checkpoints)),
            };
        }
    } else if opts.resume {
        return Err(TrainError::NoCheckpoint(checkpoints));
    }
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    write_json(&dir.join(files::CONFIG), config)?;
    Ok(false)
}

/// Trains as `config` says, in `opts.artifact_dir`; returns what `results.json` holds.
pub fn train(config: &TrainConfig, opts: &RunOptions) -> Result<RunResults, TrainError> {
    config.validate()?;
    // Held until training returns: a second writer is refused, and the folder is known to be
    // writable before anything else is done.
    let _lock = RunLock::acquire(&opts.artifact_dir)?;
    let (devices, adapter) = config
        .backend
        .training_devices(config.devices, opts.allow_software_gpu)?;
    let device = devices[0].clone();
    if let Some(adapter) = &adapter {
        eprintln!("wgpu adapter: {adapter}");
    }
    let data = load_data(config, opts.data_dir.clone())?;
    crate::run::memory::check_fits(config, &data)?;
    let resume = prepare_artifact_dir(config, opts)?;
    if let PixelOrder::Permuted(perm) = &data.order {
        write_json(&opts.artifact_dir.join(files::PERMUTATION), perm.as_ref())?;
    }
    let ad = device.clone().autodiff();
    let order = data.order.clone();
    let mut results = with_model(
        config,
        &ad,
        config.seed,
        order,
        Fit {
            config,
            opts,
            data,
            resume,
            devices,
        },
    )?;
    if let Some(adapter) = adapter {
        results.adapter = Some(adapter.to_string());
        write_json(&opts.artifact_dir.join(files::RESULTS), &results)?;
    }
    Ok(results)
}

/// The sequence classifier of a run.
pub fn seq_config(config: &TrainConfig) -> SeqClassifierConfig {
    let mut cell = OrganicsCellConfig::new(1, config.hidden_units())
        .with_learn_time_constants(config.learn_time_constants)
        .with_rectified_input(config.rectified_input)
        .with_rectified(config.rectified);
    // Unset step ratios keep the cell's defaults (the paper's), which live there only.
    if let Some(r) = config.r_max_y {
        cell = cell.with_r_max_y(r);
    }
    if let Some(r) = config.r_max_a {
        cell = cell.with_r_max_a(r);
    }
    if let Some(r) = config.r_max_b {
        cell = cell.with_r_max_b(r);
    }
    SeqClassifierConfig::new(cell)
}

/// The static classifier of a run.
pub fn static_config(config: &TrainConfig) -> StaticClassifierConfig {
    StaticClassifierConfig::new()
        .with_layers(config.layers.clone())
        .with_recurrence(
            RecurrenceConfig::new()
                .with_learned(config.learn_recurrence)
                .with_linear_gate(config.linear_gate),
        )
}

/// Trains a model: the [`ModelJob`] of [`train`].
struct Fit<'a> {
    config: &'a TrainConfig,
    opts: &'a RunOptions,
    data: RunData,
    resume: bool,
    /// The devices to train on; the model lives on the first.
    devices: Vec<Device>,
}

impl ModelJob for Fit<'_> {
    type Output = Result<RunResults, TrainError>;

    fn run<M: RunModel, Bt: RunBatcher<M>>(self, model: M, batcher: Bt) -> Self::Output {
        fit(
            model,
            batcher,
            self.config,
            self.opts,
            self.data,
            self.resume,
            self.devices,
        )
    }
}

fn fit<M: RunModel, Bt: RunBatcher<M>>(
    model: M,
    batcher: Bt,
    config: &TrainConfig,
    opts: &RunOptions,
    data: RunData,
    resume: bool,
    devices: Vec<Device>,
) -> Result<RunResults, TrainError> {
    let start = Instant::now();
    // Burn sums the gradients of the devices' batches: scaled by 1/N, a step follows the
    // mean over the global batch, as one device with N times the batch would.
    let parts = devices.len().max(1);
    let model = model.with_grad_scale(1.0 / parts as f32);
    let dir = &opts.artifact_dir;
    let device = model
        .devices()
        .first()
        .cloned()
        .ok_or_else(|| TrainError::Training("model has no device".into()))?;
    let params = model.num_trainable_params();
    let has_probe = model.has_stability_probe();
    let train_samples = data.train.len();
    // Device batches and optimizer steps (the learning rate steps once per optimizer step)
    // per epoch. On N devices a step takes N full batches, and the epoch's last items that
    // do not fill one are left out (a different few each epoch).
    let (iterations_per_epoch, steps_per_epoch) = if parts == 1 {
        let n = train_samples.div_ceil(config.batch_size);
        (n, n)
    } else {
        let steps = train_samples / (config.batch_size * parts);
        if steps == 0 {
            return Err(TrainError::Invalid(format!(
                "--devices {parts} with --batch-size {} needs at least {} training images, and the run has {train_samples}",
                config.batch_size,
                config.batch_size * parts
            )));
        }
        (steps * parts, steps)
    };
    let valid_iterations = data.valid.len().div_ceil(config.batch_size);
    let checkpoints = dir.join(files::CHECKPOINTS);

    // Resume from the newest checkpoint that loads, fits the model and holds finite weights;
    // a damaged newer one is passed over with a note (Burn's own loader would panic on it).
    let resume_from = if resume {
        if let Some(problem) = crate::run::gpu::default_device_problem() {
            return Err(TrainError::Invalid(problem));
        }
        let (epoch, notes) = newest_intact_epoch(&model, &checkpoints)?;
        for note in notes {
            eprintln!("note: {note}; resuming from epoch {epoch}");
        }
        Some(epoch)
    } else {
        None
    };

    // Epoch e is shuffled from (seed, e) alone, so a resumed run sees the same batches as an
    // uninterrupted one.
    let first_epoch = resume_from.unwrap_or(0) + 1;
    let train_loader: Arc<dyn DataLoader<<M as HarnessModel>::Batch>> = Arc::new(
        EpochLoader::new(
            data.train.clone(),
            batcher.clone(),
            config.batch_size,
            device.clone(),
        )
        .shuffled(config.seed)
        .starting_at_epoch(first_epoch)
        .split_for_devices(parts),
    );
    let valid_loader: Arc<dyn DataLoader<<M as HarnessModel>::Batch>> = Arc::new(EpochLoader::new(
        data.valid.clone(),
        batcher.clone(),
        config.batch_size,
        device.clone(),
    ));

    let scheduler =
        StepLrSchedulerConfig::new(config.lr(), config.lr_step_epochs * steps_per_epoch)
            .with_gamma(config.lr_gamma)
            .init()
            .map_err(|e| TrainError::Invalid(format!("learning-rate schedule: {e}")))?;
    let optimizer = crate::run::optimizer::optimizer(config);

    let interrupter = Interrupter::new();
    let divergence: Divergence = Arc::new(Mutex::new(None));
    let failure = WriteFailure::new(interrupter.clone());
    let context = GuardContext {
        interrupter: interrupter.clone(),
        divergence: divergence.clone(),
        stop: opts.stop.clone(),
        first_epoch,
    };
    let guard = |split, iterations| FiniteGuard::new(split, context.clone(), iterations);
    let mut training = SupervisedTraining::new(dir, train_loader, valid_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(MaxMetric::grad_norm())
        .metric_train(guard(GuardedSplit::Train, iterations_per_epoch))
        .metric_valid(guard(GuardedSplit::Valid, valid_iterations))
        .with_metric_logger(MetricLog::open(
            dir,
            resume_from.unwrap_or(0),
            failure.clone(),
        ))
        .with_custom_checkpointers(
            AtomicCheckpointer::new(&checkpoints, "model").reporting_to(failure.clone()),
            AtomicCheckpointer::new(&checkpoints, "optim").reporting_to(failure.clone()),
            AtomicCheckpointer::new(&checkpoints, "scheduler").reporting_to(failure.clone()),
        )
        .with_interrupter(interrupter)
        .with_application_logger(None)
        .num_epochs(config.epochs);
    if let Some(n_epochs) = config.patience {
        training = training.early_stopping(RunPatience::new(dir, n_epochs));
        // Early stopping selects by validation accuracy, so keep that epoch's weights
        // (as well as the last two, for --resume).
        training = training.with_checkpointing_strategy(
            ComposedCheckpointingStrategy::builder()
                .add(KeepLastNCheckpoints::new(2))
                .add(MetricCheckpointingStrategy::new(
                    &AccuracyMetric::new(),
                    Aggregate::Mean,
                    Direction::Highest,
                    Split::Valid,
                ))
                .build(),
        );
    }
    if model.has_stability_probe() {
        training = training.metric_valid_numeric(MaxMetric::stability());
    }
    if opts.plain || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        training = training.renderer(Box::new(crate::harness::progress::PlainRenderer::new()));
    }
    if let Some(epoch) = resume_from {
        training = training.checkpoint(epoch);
    }
    if parts > 1 {
        training = training.with_training_strategy(
            ExecutionStrategy::MultiDevice(devices, MultiDeviceOptim::OptimMainDevice).into(),
        );
    }
    let result = training.launch(Learner::new(model, optimizer, scheduler));

    let kept = |last: Option<usize>| match last {
        Some(epoch) => format!(
            "the checkpoint of epoch {epoch} is kept in {}",
            checkpoints.display()
        ),
        None => "no epoch was complete, so no checkpoint exists".into(),
    };
    let outcome = |status, last_epoch, tested_epoch, test| Outcome {
        status,
        diverged_in_epoch: None,
        last_epoch,
        resumed_from: resume_from,
        tested_epoch,
        test,
        train_samples,
        params,
        test_samples: data.test.len(),
        wall_seconds: start.elapsed().as_secs_f64(),
        has_probe,
    };
    if let Some((path, message)) = failure.get() {
        return Err(TrainError::WriteFailed {
            path,
            message,
            kept: kept(last_complete_epoch(&checkpoints)),
        });
    }
    if let Some(point) = divergence.lock().ok().and_then(|d| *d) {
        let last = last_complete_epoch(&checkpoints);
        let outcome = Outcome {
            diverged_in_epoch: Some(point.epoch),
            ..outcome(RunStatus::Diverged, last.unwrap_or(0), None, None)
        };
        return Err(TrainError::NonFinite {
            quantity: point.quantity.into(),
            value: point.value,
            epoch: point.epoch,
            iteration: point.iteration,
            kept: record_divergence(config, dir, outcome, kept(last)),
        });
    }
    if let Some(error) = result.error {
        return Err(TrainError::Training(error.to_string()));
    }
    // A run that ended before its last epoch without early stopping was stopped. This is
    // judged from the checkpoints (all written once `launch` returns) rather than from
    // `result.interrupted`, which Burn's terminal dashboard empties when training ends, so a
    // stop there (its stop key, or Ctrl-C through `opts.stop`) would pass for a finished run.
    let completed = last_complete_epoch(&checkpoints).unwrap_or(0);
    let best = config.patience.and_then(|_| {
        let accuracy = crate::run::results::read_epoch_metric(dir, "valid", "Accuracy", completed);
        crate::harness::patience::best_epoch(&accuracy)
    });
    crate::run::checkpoint::prune_checkpoints(&checkpoints, best);
    let early_stopped = config
        .patience
        .is_some_and(|p| RunPatience::new(dir, p).fires_after(completed));
    let stopped = (completed < config.epochs && !early_stopped).then(|| {
        result
            .interrupted
            .as_ref()
            .and_then(|i| i.reason.clone())
            .unwrap_or_else(|| "stop requested".into())
    });
    if let Some(reason) = stopped {
        // The epoch in progress was not checkpointed (Burn checkpoints only complete epochs),
        // so nothing mid-epoch is saved as if it were a result.
        let last = last_complete_epoch(&checkpoints);
        let results = results_of(
            config,
            dir,
            outcome(RunStatus::Stopped, last.unwrap_or(0), None, None),
        );
        write_json(&dir.join(files::RESULTS), &results)?;
        let how = match last {
            Some(_) => format!(
                "{}; continue with the same command and --resume",
                kept(last)
            ),
            None => kept(last),
        };
        return Err(TrainError::Stopped {
            epoch: last.unwrap_or(0) + 1,
            reason,
            kept: how,
        });
    }
    // Early stopping ends `patience` epochs after the best validation accuracy: test the
    // weights of that epoch, as early stopping means (the test set plays no part in it).
    let checkpoint_epochs = last_complete_epoch(&checkpoints).unwrap_or(config.epochs);
    let (trained, tested_epoch) = match config.patience {
        Some(_) => best_valid_weights(result.model, dir, &checkpoints, checkpoint_epochs)?,
        None => (result.model, None),
    };
    let test = evaluate_model(
        &trained,
        &batcher,
        &data.test,
        config.batch_size,
        &device.inner(),
    )?;
    if !(test.loss.is_finite() && test.accuracy.is_finite()) {
        // Every epoch is trained, so the run ends here as diverged (no epoch of training
        // diverged: `diverged_in_epoch` stays empty).
        let last = last_complete_epoch(&checkpoints);
        let kept = format!("the weights are not saved as a result; {}", kept(last));
        return Err(TrainError::NonFinite {
            quantity: "test loss".into(),
            value: test.loss,
            epoch: tested_epoch.unwrap_or(checkpoint_epochs),
            iteration: 0,
            kept: record_divergence(
                config,
                dir,
                outcome(RunStatus::Diverged, last.unwrap_or(0), None, None),
                kept,
            ),
        });
    }
    let model_path = dir.join(files::MODEL);
    let bytes = trained
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::File {
            path: model_path.clone(),
            message: e.to_string(),
        })?;
    write_atomic(&model_path, &bytes).map_err(file_err(&model_path))?;

    // Early stopping may end the run before `config.epochs`.
    let last_epoch = last_complete_epoch(&checkpoints)
        .unwrap_or(config.epochs)
        .min(config.epochs);
    let results = results_of(
        config,
        dir,
        outcome(
            RunStatus::Finished,
            last_epoch,
            tested_epoch.or(Some(last_epoch)),
            Some(test),
        ),
    );
    write_json(&dir.join(files::RESULTS), &results)?;
    Ok(results)
}

/// Writes the `results.json` of a diverged run, so that its folder says how it ended (the
/// report shows it and runs/run.sh leaves the row alone: resuming would repeat the same
/// steps), and returns `kept`, the error's account of what is kept, with a failed write
/// added: the divergence stays the error to report.
fn record_divergence(config: &TrainConfig, dir: &Path, outcome: Outcome, kept: String) -> String {
    match write_json(&dir.join(files::RESULTS), &results_of(config, dir, outcome)) {
        Ok(()) => kept,
        Err(e) => format!("{kept} ({e})"),
    }
}

/// How an invocation of a run ended, besides what its metric logs hold.
struct Outcome {
    status: RunStatus,
    diverged_in_epoch: Option<usize>,
    last_epoch: usize,
    resumed_from: Option<usize>,
    tested_epoch: Option<usize>,
    test: Option<TestScore>,
    train_samples: usize,
    params: usize,
    test_samples: usize,
    wall_seconds: f64,
    has_probe: bool,
}

/// `results.json` of a run: `o` and the per-epoch metrics logged in `dir`.
fn results_of(config: &TrainConfig, dir: &Path, o: Outcome) -> RunResults {
    let last_epoch = o.last_epoch;
    let epochs_run = last_epoch
        .saturating_sub(o.resumed_from.unwrap_or(0))
        .max(1);
    RunResults {
        status: o.status,
        adapter: None,
        task: config.task,
        model: config.model,
        dataset: config.dataset.clone(),
        backend: config.backend,
        epochs: last_epoch,
        tested_epoch: o.tested_epoch,
        diverged_in_epoch: o.diverged_in_epoch,
        resumed_from_epoch: o.resumed_from,
        train_samples: o.train_samples,
        params: o.params,
        hidden: config.hidden_units(),
        test_samples: o.test_samples,
        test_accuracy: o.test.map(|t| t.accuracy),
        test_loss: o.test.map(|t| t.loss),
        wall_seconds: o.wall_seconds,
        seconds_per_epoch: o.wall_seconds / epochs_run as f64,
        seed: config.seed,
        permutation_seed: matches!(config.task, Task::Psmnist).then_some(config.permutation_seed),
        // Burn logs accuracy in percent; results use fractions throughout.
        valid_accuracy: crate::run::results::read_epoch_metric(
            dir, "valid", "Accuracy", last_epoch,
        )
        .into_iter()
        .map(|a| a.map(|v| v / 100.0))
        .collect(),
        train_loss: crate::run::results::read_epoch_metric(dir, "train", "Loss", last_epoch),
        max_grad_norm: crate::run::results::read_run_max(dir, "train", GRAD_NORM, last_epoch),
        max_real_eigenvalue: if o.has_probe {
            crate::run::results::read_epoch_max(dir, "valid", MAX_REAL_EIGENVALUE, last_epoch)
        } else {
            Vec::new()
        },
    }
}

/// The weights of the epoch with the best validation accuracy among the checkpoints on
/// disk (the strategy keeps that epoch's), with that epoch; the trained model itself when
/// no checkpoint has a logged validation accuracy.
fn best_valid_weights<M: HarnessModel>(
    trained: M,
    dir: &Path,
    checkpoints: &Path,
    epochs: usize,
) -> Result<(M, Option<usize>), TrainError> {
    let accuracy = crate::run::results::read_epoch_metric(dir, "valid", "Accuracy", epochs);
    let path = |epoch| crate::run::checkpoint::checkpoint_path(checkpoints, "model", epoch);
    // Among the epochs whose weights are still on disk.
    let kept: Vec<Option<f64>> = accuracy
        .iter()
        .enumerate()
        .map(|(i, a)| a.filter(|_| path(i + 1).is_file()))
        .collect();
    let Some(epoch) = crate::harness::patience::best_epoch(&kept) else {
        return Ok((trained, None));
    };
    let model = trained
        .try_load_file(path(epoch))
        .map_err(|e| TrainError::File {
            path: path(epoch),
            message: format!("best-validation checkpoint does not load: {e}"),
        })?;
    Ok((model, Some(epoch)))
}

/// Test loss and accuracy of a model (in inference mode) on `set`.
pub fn evaluate_model<M, Bt>(
    model: &M,
    batcher: &Bt,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> Result<TestScore, TrainError>
where
    M: HarnessModel,
    Bt: Batcher<DigitItem, <M as HarnessModel>::Batch>,
{
    let model = model.valid().to_device(device);
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let items = chunk
            .iter()
            .map(|&i| set.get(i).map_err(|e| TrainError::Training(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let out = model.classify(batcher.batch(items, device));
        let n = chunk.len();
        let loss: f64 = out.loss.into_scalar::<f64>();
        let predicted = out.output.argmax(1).reshape([n]);
        let hits: i64 = predicted
            .equal(out.targets)
            .int()
            .sum()
            .into_scalar::<i64>();
        loss_sum += loss * n as f64;
        correct += hits as usize;
        seen += n;
    }
    let seen = seen.max(1) as f64;
    Ok(TestScore {
        loss: loss_sum / seen,
        accuracy: correct as f64 / seen,
    })
}
