//! One code path for every task and model: [`with_model`] builds the model and batcher that a
//! configuration names and hands them to a [`ModelJob`], whose one generic method is then
//! the same code for each model (training, evaluation, benchmarks).

use std::fmt::Display;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::train::{InferenceStep, TrainStep};
use organics_data::{CLASSES, DigitItem, PIXELS, PixelOrder, SequenceBatcher, StaticBatcher};

use crate::config::TrainConfig;
use crate::harness::models::{HarnessModel, SeqLstm, SeqOrganics, StaticMlp, StaticOrganics};
use crate::harness::output::StepOutput;
use crate::options::{GradientPath, ModelKind, Task};
use crate::run::train::{seeded_init, seq_config, static_config};

/// Inputs of a sequence model per time step: one pixel.
const STEP_INPUTS: usize = 1;

/// Everything the harness asks of a model: Burn's training and inference steps on its
/// batches, and the harness's own methods. Every model of [`with_model`] has it.
pub trait RunModel:
    HarnessModel
    + TrainStep<Input = <Self as HarnessModel>::Batch, Output = StepOutput>
    + InferenceStep<Input = <Self as HarnessModel>::Batch, Output = StepOutput>
    + Display
{
}

impl<M> RunModel for M where
    M: HarnessModel
        + TrainStep<Input = <M as HarnessModel>::Batch, Output = StepOutput>
        + InferenceStep<Input = <M as HarnessModel>::Batch, Output = StepOutput>
        + Display
{
}

/// What makes the batches of a model `M` from data items.
pub trait RunBatcher<M: HarnessModel>:
    Batcher<DigitItem, <M as HarnessModel>::Batch> + Clone + 'static
{
}

impl<M: HarnessModel, Bt> RunBatcher<M> for Bt where
    Bt: Batcher<DigitItem, <M as HarnessModel>::Batch> + Clone + 'static
{
}

/// Work to do with a run's model, whichever model the run has.
pub trait ModelJob {
    /// What the work returns.
    type Output;

    /// Does the work with `model` and the `batcher` that makes its batches.
    fn run<M: RunModel, Bt: RunBatcher<M>>(self, model: M, batcher: Bt) -> Self::Output;
}

/// Builds the model of `config` on `device`, its parameters drawn from `seed` (see
/// [`seeded_init`]), and its batcher (sequence models read pixels in `order`), and runs
/// `job` with them.
pub fn with_model<J: ModelJob>(
    config: &TrainConfig,
    device: &Device,
    seed: u64,
    order: PixelOrder,
    job: J,
) -> J::Output {
    match (config.task, config.model) {
        (Task::Mnist, ModelKind::Mlp) => job.run(
            seeded_init(device, seed, || {
                StaticMlp::new(PIXELS, config.hidden_units(), CLASSES, device)
            }),
            StaticBatcher,
        ),
        (Task::Mnist, _) => job.run(
            seeded_init(device, seed, || {
                StaticOrganics::new(
                    static_config(config).init(device),
                    GradientPath::for_static(config.backend),
                )
            }),
            StaticBatcher,
        ),
        (_, ModelKind::Lstm) => job.run(
            seeded_init(device, seed, || {
                let lstm = SeqLstm::new(STEP_INPUTS, config.hidden_units(), CLASSES, device)
                    .with_gradients(GradientPath::for_lstm(config.backend));
                match config.forget_bias {
                    Some(bias) => lstm.with_forget_bias(bias),
                    None => lstm,
                }
            }),
            SequenceBatcher { order },
        ),
        _ => job.run(
            seeded_init(device, seed, || seq_organics(config, device)),
            SequenceBatcher { order },
        ),
    }
}

/// The sequence ORGaNICs model of `config` (freshly initialised).
pub fn seq_organics(config: &TrainConfig, device: &Device) -> SeqOrganics {
    SeqOrganics {
        inner: seq_config(config).init(device),
        gradients: GradientPath::for_backend(config.backend),
        grad_scale: 1.0,
    }
}
