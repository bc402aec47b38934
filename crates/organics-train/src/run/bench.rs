//! Seconds per training step on random data of the real shape: the yardstick against the
//! PyTorch and JAX implementations of the same models in `bench/` (`bench/bench.py`).

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::train::TrainStep;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::harness::models::{HarnessModel, Truncate};
use crate::options::{BackendKind, GradientPath, ModelKind, Task};
use crate::run::dispatch::{ModelJob, RunBatcher, RunModel, with_model};
use crate::run::gpu::LaunchCount;
use organics_data::{DigitItem, PIXELS, PixelOrder};
use organics_model::HostAdam;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `mnist` (static) or `smnist` (sequence).
    pub task: Task,
    /// Model.
    pub model: ModelKind,
    /// Backend.
    pub backend: BackendKind,
    /// Hidden units (sequence) or ignored (static uses `layers`).
    pub hidden: usize,
    /// ORGaNICs layers of the static model.
    pub layers: Vec<usize>,
    /// Learn `W_r` in the static model.
    pub learn_recurrence: bool,
    /// Batch size.
    pub batch: usize,
    /// Sequence length (sequence tasks; at most [`PIXELS`]).
    pub seq: usize,
    /// Timed steps after one warm-up step.
    pub steps: usize,
    /// ORGaNICs and the LSTM: how the gradients are computed (`None`: the backend's default,
    /// [`GradientPath::for_backend`]).
    pub gradients: Option<GradientPath>,
    /// Use Burn's tensor-op `Adam` instead of [`HostAdam`] on a CPU backend.
    pub burn_adam: bool,
    /// Time wgpu even on a software adapter (llvmpipe, lavapipe).
    pub allow_software_gpu: bool,
}

impl Default for BenchOptions {
    /// The speed yardstick's shapes: an ORGaNICs sMNIST step of 128 units on flex, or the
    /// static model of [`TrainConfig`]'s layers, batch as in training, 3 timed steps.
    fn default() -> Self {
        let train = TrainConfig::new();
        BenchOptions {
            task: Task::Smnist,
            model: ModelKind::Organics,
            backend: train.backend,
            hidden: 128,
            layers: train.layers,
            learn_recurrence: train.learn_recurrence,
            batch: train.batch_size,
            seq: PIXELS,
            steps: 3,
            gradients: None,
            burn_adam: false,
            allow_software_gpu: false,
        }
    }
}

/// One JSON line of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Task.
    pub task: Task,
    /// Model.
    pub model: ModelKind,
    /// Backend.
    pub backend: BackendKind,
    /// Hidden units.
    pub hidden: usize,
    /// Batch size.
    pub batch: usize,
    /// Sequence length (784 for static images).
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// How the model computed its gradients (the MLP: always autodiff).
    pub gradients: GradientPath,
    /// The optimizer: `host-adam` (one pass per parameter on the CPU) or `burn-adam`.
    #[serde(default)]
    pub optimizer: String,
    /// Mean seconds per step (forward, backward, Adam).
    pub sec_per_step: f64,
    /// Median and fastest step, which a shared machine's load spikes disturb less.
    #[serde(default)]
    pub step_sec_median: Option<f64>,
    /// The fastest step.
    #[serde(default)]
    pub step_sec_min: Option<f64>,
    /// Samples per second.
    pub samples_per_sec: f64,
    /// Peak resident memory of the process in MB (Linux `VmHWM`), as the peers'
    /// `bench.py` reports it.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// The wgpu adapter timed (name, kind, graphics API); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// GPU kernels launched per timed step (wgpu only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_launches_per_step: Option<f64>,
    /// The same by kernel (the kernel's type name), per timed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_launches_by_kernel: Option<std::collections::BTreeMap<String, f64>>,
}

/// The process's peak resident set size in MB, where `/proc` tells it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Times `steps` training steps after one warm-up step.
pub fn bench(opts: &BenchOptions) -> Result<BenchResult, TrainError> {
    if opts.batch == 0 || opts.steps == 0 || opts.seq == 0 || opts.seq > PIXELS {
        return Err(TrainError::Invalid(format!(
            "batch and steps must be at least 1 and seq in 1..={PIXELS}"
        )));
    }
    let config = TrainConfig::new()
        .with_task(opts.task)
        .with_model(opts.model)
        .with_hidden(Some(opts.hidden))
        .with_layers(opts.layers.clone())
        .with_learn_recurrence(opts.learn_recurrence)
        .with_batch_size(opts.batch)
        .with_backend(opts.backend);
    config.validate()?;
    let gradients = match (opts.gradients, opts.model) {
        (_, ModelKind::Mlp) => GradientPath::Autodiff,
        (None, ModelKind::Lstm) => GradientPath::for_lstm(opts.backend),
        (Some(path), _) => path,
        (None, _) if opts.task == Task::Mnist => GradientPath::for_static(opts.backend),
        (None, _) => GradientPath::for_backend(opts.backend),
    };
    let host_adam = opts.backend.is_cpu() && !opts.burn_adam;
    let weight_decay = config.weight_decay;
    let adam_epsilon = config.adam_epsilon as f32;
    let (device, adapter) = opts.backend.training_device(opts.allow_software_gpu)?;
    let ad = device.clone().autodiff();
    // Random pixels; a sequence batch is cut to `seq` steps below.
    let items: Vec<DigitItem> = (0..opts.batch)
        .map(|i| DigitItem {
            pixels: (0..PIXELS)
                .map(|k| ((i * 7919 + k * 104_729) % 256) as u8)
                .collect(),
            label: (i % 10) as u8,
        })
        .collect();
    let seq_len = if opts.task.is_sequential() {
        opts.seq
    } else {
        PIXELS
    };
    let ((times, launches), gradients) = with_model(
        &config,
        &ad,
        0,
        PixelOrder::ScanLine,
        TimeSteps {
            gradients,
            host_adam,
            weight_decay,
            adam_epsilon,
            items,
            device: &ad,
            steps: opts.steps,
            seq: seq_len,
        },
    )?;
    let sec = times.iter().sum::<f64>() / times.len() as f64;
    let mut sorted = times;
    sorted.sort_by(f64::total_cmp);
    Ok(BenchResult {
        task: opts.task,
        model: opts.model,
        backend: opts.backend,
        hidden: config.hidden_units(),
        batch: opts.batch,
        seq: seq_len,
        steps: opts.steps,
        gradients,
        optimizer: if host_adam { "host-adam" } else { "burn-adam" }.into(),
        sec_per_step: sec,
        step_sec_median: Some(sorted[sorted.len() / 2]),
        step_sec_min: sorted.first().copied(),
        samples_per_sec: opts.batch as f64 / sec,
        peak_rss_mb: peak_rss_mb(),
        adapter: adapter.map(|a| a.to_string()),
        kernel_launches_per_step: launches
            .as_ref()
            .map(|k| k.values().sum::<usize>() as f64 / opts.steps as f64),
        kernel_launches_by_kernel: launches.map(|k| {
            k.into_iter()
                .map(|(name, n)| (name, n as f64 / opts.steps as f64))
                .collect()
        }),
    })
}

/// Kernel launches of the timed steps by kernel name (wgpu only).
type Launches = Option<std::collections::BTreeMap<String, usize>>;

/// Times training steps of a model: the [`ModelJob`] of [`bench`].
struct TimeSteps<'a> {
    gradients: GradientPath,
    host_adam: bool,
    weight_decay: f64,
    adam_epsilon: f32,
    items: Vec<DigitItem>,
    device: &'a Device,
    steps: usize,
    seq: usize,
}

impl ModelJob for TimeSteps<'_> {
    type Output = Result<((Vec<f64>, Launches), GradientPath), TrainError>;

    fn run<M: RunModel, Bt: RunBatcher<M>>(self, model: M, batcher: Bt) -> Self::Output {
        let model = model.with_gradients(self.gradients);
        let used = model.effective_gradients();
        let decay = self.weight_decay as f32;
        let optim = if self.host_adam {
            HostAdam::new(Some(decay), true)
                .with_epsilon(self.adam_epsilon)
                .init()
        } else {
            AdamConfig::new()
                .with_weight_decay(Some(WeightDecayConfig::new(decay)))
                .with_epsilon(self.adam_epsilon)
                .init()
        };
        let times = time_steps(
            model,
            optim,
            &batcher,
            self.items,
            self.device,
            self.steps,
            self.seq,
        )?;
        Ok((times, used))
    }
}

fn time_steps<M, Bt>(
    mut model: M,
    mut optim: ModuleOptimizer,
    batcher: &Bt,
    items: Vec<DigitItem>,
    device: &Device,
    steps: usize,
    seq: usize,
) -> Result<(Vec<f64>, Launches), TrainError>
where
    M: HarnessModel + TrainStep<Input = <M as HarnessModel>::Batch>,
    Bt: Batcher<DigitItem, <M as HarnessModel>::Batch>,
{
    let batch = batcher.batch(items, device).truncate(seq);
    let mut step = |model: M| -> M {
        let (_, grads) = model.loss_and_grads(batch.clone());
        optim.step(1e-3, model, grads)
    };
    model = step(model);
    device
        .sync()
        .map_err(|e| TrainError::Training(format!("device sync: {e:?}")))?;
    // Each step synchronised and timed on its own, as the peers' bench.py does.
    let mut times = Vec::with_capacity(steps);
    let launches = LaunchCount::start();
    for _ in 0..steps {
        let start = Instant::now();
        model = step(model);
        device
            .sync()
            .map_err(|e| TrainError::Training(format!("device sync: {e:?}")))?;
        times.push(start.elapsed().as_secs_f64());
    }
    drop(model);
    // The CPU backends launch no GPU kernels: nothing to report there.
    let counted = launches.by_kernel().filter(|k| !k.is_empty());
    Ok((times, counted))
}
