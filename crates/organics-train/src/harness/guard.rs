//! The run's guard: a metric on every training and validation step that stops the run at
//! the first NaN or infinite loss or gradient norm (before that epoch is checkpointed), and
//! when a stop was requested from outside (Ctrl-C, SIGTERM).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::Interrupter;
use burn::train::metric::{Adaptor, Metric, MetricMetadata, MetricName, SerializedEntry};

use crate::harness::output::StepOutput;

/// The first non-finite value the guard saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DivergencePoint {
    /// What was not finite: `"loss"`, `"gradient norm"` or `"validation loss"`.
    pub quantity: &'static str,
    /// The value (NaN or ±inf).
    pub value: f64,
    /// Epoch (1-based).
    pub epoch: usize,
    /// Iteration within the epoch's split (1-based).
    pub iteration: usize,
}

/// Where the guard records the first bad step.
pub type Divergence = Arc<Mutex<Option<DivergencePoint>>>;

/// A stop requested from outside the training loop (a signal handler sets it); the guard
/// turns it into a clean stop at the end of the current step.
pub type StopRequest = Arc<AtomicBool>;

/// What the guard reads from one step.
pub struct GuardInput {
    loss: Tensor<1>,
    grad_norm: Option<Tensor<1>>,
}

impl Adaptor<GuardInput> for StepOutput {
    fn adapt(&self) -> GuardInput {
        GuardInput {
            loss: self.class.loss.clone(),
            grad_norm: self.grad_norm.clone(),
        }
    }
}

/// Which steps a guard watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedSplit {
    /// Training steps: the loss and the gradient norm.
    Train,
    /// Validation steps: the loss.
    Valid,
}

/// What the guards of one run share: where they stop the run, where they record the first
/// bad step, the outside stop request, and the run's first epoch (so that a resumed run
/// reports its true epoch numbers).
#[derive(Clone)]
pub struct GuardContext {
    /// Stops the run.
    pub interrupter: Interrupter,
    /// Where the first non-finite value is recorded.
    pub divergence: Divergence,
    /// Set from outside (a signal handler) to stop at the end of the current step.
    pub stop: StopRequest,
    /// The epoch this invocation starts with.
    pub first_epoch: usize,
}

/// Stops training through the [`Interrupter`] at the first non-finite value, or when
/// [`StopRequest`] is set.
#[derive(Clone)]
pub struct FiniteGuard {
    name: MetricName,
    split: GuardedSplit,
    context: GuardContext,
    iterations_per_epoch: usize,
    steps: usize,
}

impl FiniteGuard {
    /// A guard of `split` with `iterations_per_epoch` steps of that split per epoch.
    pub fn new(split: GuardedSplit, context: GuardContext, iterations_per_epoch: usize) -> Self {
        let name = match split {
            GuardedSplit::Train => "Finite loss",
            GuardedSplit::Valid => "Finite valid loss",
        };
        Self {
            name: Arc::new(name.into()),
            split,
            context,
            iterations_per_epoch: iterations_per_epoch.max(1),
            steps: 0,
        }
    }

    fn record(&self, quantity: &'static str, value: f64, metadata: &MetricMetadata) {
        let epoch = self.context.first_epoch + (self.steps - 1) / self.iterations_per_epoch;
        let iteration = metadata
            .iteration
            .unwrap_or((self.steps - 1) % self.iterations_per_epoch + 1);
        if let Ok(mut slot) = self.context.divergence.lock()
            && slot.is_none()
        {
            *slot = Some(DivergencePoint {
                quantity,
                value,
                epoch,
                iteration,
            });
        }
        self.context.interrupter.stop(Some("non-finite value"));
    }
}

impl Metric for FiniteGuard {
    type Input = GuardInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &GuardInput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.steps += 1;
        let loss = item.loss.clone().mean().try_into_scalar::<f64>()?;
        let grad_norm = match &item.grad_norm {
            Some(g) => Some(g.clone().try_into_scalar::<f64>()?),
            None => None,
        };
        let mut text = "ok".to_string();
        match self.split {
            GuardedSplit::Train if !loss.is_finite() => {
                self.record("loss", loss, metadata);
                text = format!("loss {loss} (stopping)");
            }
            GuardedSplit::Train if grad_norm.is_some_and(|g| !g.is_finite()) => {
                let g = grad_norm.unwrap_or(f64::NAN);
                self.record("gradient norm", g, metadata);
                text = format!("gradient norm {g} (stopping)");
            }
            GuardedSplit::Valid if !loss.is_finite() => {
                self.record("validation loss", loss, metadata);
                text = format!("validation loss {loss} (stopping)");
            }
            _ => {}
        }
        if self.context.stop.load(Ordering::Relaxed) {
            self.context.interrupter.stop(Some("stop requested"));
        }
        Ok(SerializedEntry::new(text.clone(), text))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(SerializedEntry::new("ok".into(), "ok".into()))
    }

    fn clear(&mut self) {}
}
