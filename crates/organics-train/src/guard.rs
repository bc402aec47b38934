//! The non-finite-loss guard: a training metric that stops the run at the first NaN or
//! infinite loss, before that epoch is checkpointed.

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::Interrupter;
use burn::train::metric::{Adaptor, Metric, MetricMetadata, MetricName, SerializedEntry};

use crate::output::StepOutput;

/// Where the guard records the first bad step: `(loss, epoch, iteration)`.
pub type Divergence = Arc<Mutex<Option<(f64, usize, usize)>>>;

/// The loss of one step, for the guard.
pub struct GuardInput {
    loss: Tensor<1>,
}

impl Adaptor<GuardInput> for StepOutput {
    fn adapt(&self) -> GuardInput {
        GuardInput {
            loss: self.class.loss.clone(),
        }
    }
}

/// Stops training through the [`Interrupter`] at the first non-finite loss.
#[derive(Clone)]
pub struct FiniteLossGuard {
    name: MetricName,
    interrupter: Interrupter,
    divergence: Divergence,
    first_epoch: usize,
    iterations_per_epoch: usize,
    steps: usize,
}

impl FiniteLossGuard {
    /// A guard for a run whose first epoch is `first_epoch`, of `iterations_per_epoch` steps.
    pub fn new(
        interrupter: Interrupter,
        divergence: Divergence,
        first_epoch: usize,
        iterations_per_epoch: usize,
    ) -> Self {
        Self {
            name: Arc::new("Finite loss".into()),
            interrupter,
            divergence,
            first_epoch,
            iterations_per_epoch: iterations_per_epoch.max(1),
            steps: 0,
        }
    }
}

impl Metric for FiniteLossGuard {
    type Input = GuardInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &GuardInput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let loss = item.loss.clone().mean().try_into_scalar::<f64>()?;
        self.steps += 1;
        if !loss.is_finite() {
            let epoch = self.first_epoch + (self.steps - 1) / self.iterations_per_epoch;
            let iteration = metadata
                .iteration
                .unwrap_or((self.steps - 1) % self.iterations_per_epoch + 1);
            if let Ok(mut slot) = self.divergence.lock()
                && slot.is_none()
            {
                *slot = Some((loss, epoch, iteration));
            }
            self.interrupter.stop(Some("non-finite loss"));
        }
        let text = if loss.is_finite() {
            "ok".to_string()
        } else {
            format!("{loss} (stopping)")
        };
        Ok(SerializedEntry::new(text.clone(), text))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(SerializedEntry::new("ok".into(), "ok".into()))
    }

    fn clear(&mut self) {}
}
