//! The first training steps of a run, recorded so that another implementation can repeat
//! them: `cargo xtask trace`.
//!
//! From a run's `config.json` it builds the model exactly as `train` does (same seed, same
//! initialisation), takes the first batches of epoch 1 in the order `train` would see them,
//! and runs the training step of `train` (the same optimizer and, unless another is asked
//! for, the same gradient path) on them. It writes the starting parameters (every float
//! parameter of the module, by its path, trained or not), the loss of every step, the
//! parameters after the last step, and the batches' inputs and labels.
//! `bench/trace_check.py` loads the starting parameters into the repository's PyTorch
//! model, repeats the steps with PyTorch's Adam and compares.
//!
//! Files in the output folder: `trace.json` (settings, labels, losses, parameters) and
//! `inputs.f32` (the batches' inputs, `[steps, batch, seq, 1]` as little-endian `f32`).

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoader;
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use organics_data::{EpochLoader, SequenceBatch, SequenceBatcher};
use serde::Serialize;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::harness::models::{HarnessModel, SeqOrganics};
use crate::options::{GradientPath, ModelKind, Task};
use crate::run::dispatch::seq_organics;
use crate::run::train::{load_data, read_config, seeded_init, seq_config};

/// Largest number of steps a trace records (each step's batch is written out).
pub const MAX_TRACE_STEPS: usize = 200;

/// One float parameter: its path in the module (`inner.rnn.cell.w_zx`), shape and values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedParam {
    /// Field names from the module's root, joined by dots.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Whether the optimizer updates it.
    pub trained: bool,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// What `trace.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The run's settings, as `train` took them.
    pub config: TrainConfig,
    /// How the steps computed their gradients.
    pub gradients: GradientPath,
    /// The cell's largest step ratios `r_max` for `y`, `a`, and `b0`/`b1` (the run's or the
    /// model's defaults).
    pub r_max: [f64; 3],
    /// The cell's `σ` (the same for every neuron).
    pub sigma: f64,
    /// The learning rate of the steps (that of the first epoch).
    pub lr: f64,
    /// The steps recorded.
    pub steps: usize,
    /// Samples per batch and time steps per sample of `inputs.f32`.
    pub batch: usize,
    /// Time steps of each sequence.
    pub seq: usize,
    /// Class labels of every batch, `[steps][batch]`.
    pub labels: Vec<Vec<i64>>,
    /// The mean cross-entropy of each step's batch, before that step's update.
    pub losses: Vec<f64>,
    /// Every float parameter before the first step.
    pub initial: Vec<NamedParam>,
    /// Every float parameter after the last step.
    pub last: Vec<NamedParam>,
}

/// Every float parameter of a module, with its path.
pub fn named_params<M: Module>(module: &M) -> Result<Vec<NamedParam>, TrainError> {
    struct Collect {
        path: Vec<String>,
        out: Vec<NamedParam>,
        error: Option<String>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val();
            let shape = tensor.dims().to_vec();
            let trained = tensor.is_require_grad();
            match tensor.into_data().convert::<f32>().try_into_vec::<f32>() {
                Ok(values) => self.out.push(NamedParam {
                    name: self.path.join("."),
                    shape,
                    trained,
                    values,
                }),
                Err(e) => self.error = Some(format!("{e:?}")),
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
        error: None,
    };
    module.visit(&mut c);
    match c.error {
        Some(e) => Err(TrainError::Training(format!("reading a parameter: {e}"))),
        None => Ok(c.out),
    }
}

/// Records the first `steps` training steps of the run in `run_dir` into `out`, with the
/// gradients of `gradients` (`None`: the path `train` takes).
///
/// # Errors
/// [`TrainError::Invalid`] for a run that is not a sequence ORGaNICs run or a step count
/// outside `1..=MAX_TRACE_STEPS`, [`TrainError::File`] for an unreadable config or an
/// unwritable output, [`TrainError::Data`] when the data cannot be loaded.
pub fn trace(
    run_dir: &Path,
    steps: usize,
    out: &Path,
    data_dir: Option<PathBuf>,
    gradients: Option<GradientPath>,
) -> Result<Trace, TrainError> {
    let config = read_config(run_dir)?;
    trace_config(&config, steps, out, data_dir, gradients)
}

/// [`trace`] for a configuration.
pub fn trace_config(
    config: &TrainConfig,
    steps: usize,
    out: &Path,
    data_dir: Option<PathBuf>,
    gradients: Option<GradientPath>,
) -> Result<Trace, TrainError> {
    config.validate()?;
    if !matches!(config.task, Task::Smnist | Task::Psmnist) || config.model != ModelKind::Organics {
        return Err(TrainError::Invalid(format!(
            "trace records sequence ORGaNICs runs (smnist or psmnist, model organics), not {} with {}",
            config.task, config.model
        )));
    }
    if config.devices != 1 {
        return Err(TrainError::Invalid(format!(
            "trace repeats training on one device; this run trains on {} (--devices)",
            config.devices
        )));
    }
    if !(1..=MAX_TRACE_STEPS).contains(&steps) {
        return Err(TrainError::Invalid(format!(
            "--steps {steps}: a trace records 1 to {MAX_TRACE_STEPS} steps"
        )));
    }
    let data = load_data(config, data_dir)?;
    // Full batches only: every step of `inputs.f32` has `batch_size` samples.
    let full_batches = data.train.len() / config.batch_size;
    if steps > full_batches {
        return Err(TrainError::Invalid(format!(
            "--steps {steps}: epoch 1 of this run has {full_batches} full batches"
        )));
    }
    let file_err = |path: PathBuf| {
        move |e: std::io::Error| TrainError::File {
            path,
            message: e.to_string(),
        }
    };
    std::fs::create_dir_all(out).map_err(file_err(out.to_path_buf()))?;
    // A trace.json beside new inputs would describe other batches: gone before they are
    // written, and the new one appears whole (renamed into place) once they are.
    let path = out.join(TRACE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_err(path)(e)),
        _ => {}
    }
    let ad = config.backend.device()?.autodiff();
    let cell = seq_config(config).cell;
    // The model and batcher `train` builds for this configuration (`with_model`'s).
    let model = seeded_init(&ad, config.seed, || seq_organics(config, &ad));
    // Another path computes the same gradients with other roundings: comparing traces of
    // two paths separates what a kernel rounds from what the model is.
    let model = match gradients {
        Some(path) => model.with_gradients(path),
        None => model,
    };
    let path_taken = model.effective_gradients();
    let batcher = SequenceBatcher { order: data.order };
    let recorded = record_steps(
        config,
        model,
        EpochLoader::new(data.train, batcher, config.batch_size, ad.clone()),
        steps,
        &out.join(INPUTS),
    )?;
    let trace = Trace {
        config: config.clone(),
        gradients: path_taken,
        r_max: [cell.r_max_y, cell.r_max_a, cell.r_max_b],
        sigma: cell.sigma,
        lr: config.lr(),
        steps,
        batch: config.batch_size,
        seq: recorded.seq,
        labels: recorded.labels,
        losses: recorded.losses,
        initial: recorded.initial,
        last: recorded.last,
    };
    let text = serde_json::to_string(&trace)
        .map_err(|e| TrainError::Training(format!("trace as JSON: {e}")))?;
    let partial = out.join(format!("{TRACE}.partial"));
    std::fs::write(&partial, text).map_err(file_err(partial.clone()))?;
    std::fs::rename(&partial, &path).map_err(file_err(path))?;
    Ok(trace)
}

const TRACE: &str = "trace.json";
const INPUTS: &str = "inputs.f32";

struct Recorded {
    seq: usize,
    labels: Vec<Vec<i64>>,
    losses: Vec<f64>,
    initial: Vec<NamedParam>,
    last: Vec<NamedParam>,
}

/// Trains `model` for `steps` steps of epoch 1 of `loader` (shuffled as `train` shuffles
/// it) with the run's optimizer, writing each batch's inputs to `inputs`.
fn record_steps(
    config: &TrainConfig,
    mut model: SeqOrganics,
    loader: EpochLoader<SequenceBatcher>,
    steps: usize,
    inputs: &Path,
) -> Result<Recorded, TrainError> {
    let write_err = |e: std::io::Error| TrainError::File {
        path: inputs.to_path_buf(),
        message: e.to_string(),
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(inputs).map_err(write_err)?);
    let loader = loader.shuffled(config.seed);
    let mut optim = crate::run::optimizer::optimizer(config);
    let initial = named_params(&model)?;
    let (mut labels, mut losses, mut seq) = (Vec::new(), Vec::new(), 0);
    for batch in DataLoader::<SequenceBatch>::iter(&loader).take(steps) {
        let batch = batch.map_err(|e| TrainError::Training(format!("reading a batch: {e}")))?;
        let [_, s, _] = batch.inputs.dims();
        seq = s;
        let values = batch
            .inputs
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Training(format!("batch inputs: {e:?}")))?;
        for v in values {
            file.write_all(&v.to_le_bytes()).map_err(write_err)?;
        }
        labels.push(
            batch
                .targets
                .clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| TrainError::Training(format!("batch labels: {e:?}")))?,
        );
        let (output, grads) = model.loss_and_grads(batch);
        let loss = output
            .loss
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .map_err(|e| TrainError::Training(format!("loss: {e:?}")))?;
        losses.push(loss.first().copied().unwrap_or(f64::NAN));
        model = optim.step(config.lr(), model, grads);
    }
    file.flush().map_err(write_err)?;
    Ok(Recorded {
        seq,
        labels,
        losses,
        initial,
        last: named_params(&model)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::BackendKind;
    use crate::run::eval::trained_sequence_organics;
    use crate::run::train::{RunOptions, train};

    /// One epoch of two batches of eight permuted sequences, six units.
    fn config() -> TrainConfig {
        TrainConfig::new()
            .with_task(Task::Psmnist)
            .with_model(ModelKind::Organics)
            .with_backend(BackendKind::Flex)
            .with_hidden(Some(6))
            .with_epochs(1)
            .with_batch_size(8)
            .with_train_limit(Some(16))
            .with_valid_limit(Some(8))
            .with_test_limit(Some(8))
    }

    fn data() -> PathBuf {
        organics_data::DatasetName::Mnist
            .shipped_dir()
            .expect("the repository's data/mnist folder")
    }

    /// The trace of a run's first steps is what `train` did in them: the weights `train`
    /// saved after its one epoch of two steps are the trace's last parameters, bit for bit.
    #[test]
    fn a_trace_repeats_the_first_steps_of_train() {
        let config = config();
        let run = tempfile::tempdir().expect("tmp");
        let opts = RunOptions {
            data_dir: Some(data()),
            plain: true,
            ..RunOptions::new(run.path())
        };
        train(&config, &opts).expect("training runs");
        let out = tempfile::tempdir().expect("tmp");
        let t = trace(run.path(), 2, out.path(), Some(data()), None).expect("trace");
        assert_eq!(t.gradients, GradientPath::Fused);

        assert_eq!(t.losses.len(), 2);
        assert!(t.losses.iter().all(|l| l.is_finite() && *l > 0.0));
        assert_eq!(t.labels.iter().map(Vec::len).collect::<Vec<_>>(), [8, 8]);
        assert_eq!((t.batch, t.seq), (8, 784));
        let inputs = std::fs::metadata(out.path().join(INPUTS)).expect("inputs.f32");
        assert_eq!(inputs.len(), 2 * 8 * 784 * 4);
        let text = std::fs::read_to_string(out.path().join(TRACE)).expect("trace.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("trace.json parses");
        assert_eq!(json["losses"].as_array().map(Vec::len), Some(2));

        let (_, trained, _) = trained_sequence_organics(run.path(), "the test needs").expect("run");
        let saved: Vec<(String, Vec<f32>)> = named_params(&trained)
            .expect("params")
            .into_iter()
            .map(|p| (p.name, p.values))
            .collect();
        let last: Vec<(String, Vec<f32>)> = t
            .last
            .iter()
            .map(|p| {
                (
                    p.name.trim_start_matches("inner.").to_string(),
                    p.values.clone(),
                )
            })
            .collect();
        assert_eq!(saved.len(), 19, "every float parameter of the classifier");
        assert_eq!(saved, last);
        // The trained parameters moved, the fixed ones (the initial state) did not.
        for (first, after) in t.initial.iter().zip(&t.last) {
            assert_eq!(
                first.trained,
                first.values != after.values,
                "{}",
                first.name
            );
        }
        assert_eq!(t.initial.iter().filter(|p| !p.trained).count(), 4);

        // The same again from the configuration alone.
        let again = tempfile::tempdir().expect("tmp");
        let t2 = trace_config(&config, 2, again.path(), Some(data()), None).expect("trace");
        assert_eq!((&t2.losses, &t2.initial), (&t.losses, &t.initial));

        // Through autodiff: the same start and batches, the same losses to rounding. (Not
        // the same weights to a tight bound: Adam's first steps move a weight by about
        // ±lr whatever its gradient's size, so a gradient at rounding level can step either
        // way on the two paths.)
        let autodiff = Some(GradientPath::Autodiff);
        let t3 = trace_config(&config, 2, again.path(), Some(data()), autodiff).expect("trace");
        assert_eq!(t3.gradients, GradientPath::Autodiff);
        assert_eq!(t3.initial, t.initial);
        assert_eq!(t3.losses.len(), t.losses.len());
        for (a, b) in t3.losses.iter().zip(&t.losses) {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "loss {a} against {b}");
        }
        let names = |t: &Trace| t.last.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&t3), names(&t));

        // A refused trace into a folder with an earlier one touches nothing.
        let failing = config.clone().with_train_limit(Some(8));
        assert!(trace_config(&failing, 2, out.path(), Some(data()), None).is_err());
        assert!(out.path().join(TRACE).is_file());
        assert!(!out.path().join(format!("{TRACE}.partial")).exists());
    }

    #[test]
    fn a_trace_refuses_what_it_cannot_record() {
        let out = tempfile::tempdir().expect("tmp");
        let invalid = |config: &TrainConfig, steps| {
            matches!(
                trace_config(config, steps, out.path(), Some(data()), None),
                Err(TrainError::Invalid(_))
            )
        };
        let config = config();
        assert!(invalid(&config.clone().with_task(Task::Mnist), 1));
        assert!(invalid(&config.clone().with_model(ModelKind::Lstm), 1));
        assert!(invalid(&config, 0));
        assert!(invalid(&config, MAX_TRACE_STEPS + 1));
        // Epoch 1 of sixteen samples in batches of eight has two batches, of 20 in batches
        // of eight also two full ones.
        assert!(invalid(&config, 3));
        assert!(invalid(&config.clone().with_train_limit(Some(20)), 3));
        assert!(invalid(&config.clone().with_devices(2), 1));
        assert!(std::fs::read_dir(out.path()).expect("dir").next().is_none());
        let missing = tempfile::tempdir().expect("tmp");
        assert!(matches!(
            trace(missing.path(), 1, out.path(), Some(data()), None),
            Err(TrainError::File { .. })
        ));
    }
}
