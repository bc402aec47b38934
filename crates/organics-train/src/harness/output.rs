//! What one training or validation step hands to the metrics, and the two metrics that
//! report an epoch's maximum: the gradient norm (issue: no clipping needed) and the leading
//! Jacobian eigenvalue of the static layers (stability held during training, paper Fig. 6).

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::{ExecutionError, TensorReadError};
use burn::train::ClassificationOutput;
use burn::train::metric::{
    AccuracyInput, Adaptor, ItemLazy, LossInput, Metric, MetricAttributes, MetricMetadata,
    MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};

/// Name of the gradient-norm metric (and of its log files).
pub const GRAD_NORM: &str = "Grad norm";
/// Name of the stability metric (and of its log files).
pub const MAX_REAL_EIGENVALUE: &str = "Max Re eig";

/// Loss, logits and targets of a step, plus what the maximum metrics read.
pub struct StepOutput {
    /// The classification output.
    pub class: ClassificationOutput,
    /// Global L2 norm of the step's gradients (training steps).
    pub grad_norm: Option<Tensor<1>>,
    /// Per static layer, the largest real part of the Jacobian's eigenvalues over the probe
    /// images (validation steps of static ORGaNICs).
    pub stability: Option<Vec<f64>>,
}

impl StepOutput {
    /// A training step's output.
    pub fn train(class: ClassificationOutput, grad_norm: Option<Tensor<1>>) -> Self {
        Self {
            class,
            grad_norm,
            stability: None,
        }
    }

    /// A validation step's output.
    pub fn valid(class: ClassificationOutput, stability: Option<Vec<f64>>) -> Self {
        Self {
            class,
            grad_norm: None,
            stability,
        }
    }
}

impl ItemLazy for StepOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(Self {
            class: self.class.sync()?,
            grad_norm: self.grad_norm.map(|g| g.without_autodiff()),
            stability: self.stability,
        })
    }
}

impl Adaptor<AccuracyInput> for StepOutput {
    fn adapt(&self) -> AccuracyInput {
        self.class.adapt()
    }
}

impl Adaptor<LossInput> for StepOutput {
    fn adapt(&self) -> LossInput {
        self.class.adapt()
    }
}

/// The values a maximum metric reads from one step.
pub trait StepValues: Send + Sync {
    /// The step's values (empty: nothing to report).
    fn values(&self) -> Result<Vec<f64>, TensorReadError>;
}

/// Input of the gradient-norm metric.
pub struct GradNormInput(Option<Tensor<1>>);

impl StepValues for GradNormInput {
    fn values(&self) -> Result<Vec<f64>, TensorReadError> {
        match &self.0 {
            Some(t) => Ok(vec![t.clone().try_into_scalar::<f64>()?]),
            None => Ok(Vec::new()),
        }
    }
}

impl Adaptor<GradNormInput> for StepOutput {
    fn adapt(&self) -> GradNormInput {
        GradNormInput(self.grad_norm.clone())
    }
}

/// Input of the stability metric.
pub struct StabilityInput(Vec<f64>);

impl StepValues for StabilityInput {
    fn values(&self) -> Result<Vec<f64>, TensorReadError> {
        Ok(self.0.clone())
    }
}

impl Adaptor<StabilityInput> for StepOutput {
    fn adapt(&self) -> StabilityInput {
        StabilityInput(self.stability.clone().unwrap_or_default())
    }
}

/// The larger of two values, NaN if either is NaN: a NaN norm or eigenvalue must show, not
/// vanish in a maximum (`f64::max` would drop it).
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Reports the largest value seen in an epoch; each batch's own maximum is logged, so the
/// logs keep the whole history (see [`crate::run::results::read_epoch_max`]).
pub struct MaxMetric<I> {
    name: MetricName,
    higher_is_better: bool,
    batch: Option<f64>,
    epoch: Option<f64>,
    _input: std::marker::PhantomData<fn() -> I>,
}

impl<I> Clone for MaxMetric<I> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            higher_is_better: self.higher_is_better,
            batch: self.batch,
            epoch: self.epoch,
            _input: std::marker::PhantomData,
        }
    }
}

impl<I> MaxMetric<I> {
    fn named(name: &str, higher_is_better: bool) -> Self {
        Self {
            name: Arc::new(name.to_string()),
            higher_is_better,
            batch: None,
            epoch: None,
            _input: std::marker::PhantomData,
        }
    }
}

impl MaxMetric<GradNormInput> {
    /// The largest global gradient norm of an epoch.
    pub fn grad_norm() -> Self {
        Self::named(GRAD_NORM, false)
    }
}

impl MaxMetric<StabilityInput> {
    /// The largest real part of the Jacobian's eigenvalues over the probe images and layers.
    pub fn stability() -> Self {
        Self::named(MAX_REAL_EIGENVALUE, false)
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

impl<I: StepValues + 'static> Metric for MaxMetric<I> {
    type Input = I;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.higher_is_better,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &I,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let Some(batch) = item.values()?.into_iter().reduce(nan_max) else {
            return Ok(SerializedEntry::not_available(None));
        };
        self.batch = Some(batch);
        self.epoch = Some(self.epoch.map_or(batch, |e| nan_max(e, batch)));
        Ok(SerializedEntry::new(
            format!(
                "epoch max {} - batch {}",
                show(self.epoch),
                show(self.batch)
            ),
            batch.to_string(),
        ))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(match self.epoch {
            Some(e) => SerializedEntry::new(format!("epoch max {}", show(Some(e))), e.to_string()),
            None => SerializedEntry::not_available(None),
        })
    }

    fn clear(&mut self) {
        self.batch = None;
        self.epoch = None;
    }
}

impl<I: StepValues + 'static> Numeric for MaxMetric<I> {
    fn value(&self) -> Option<NumericEntry> {
        self.batch.map(NumericEntry::Value)
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.epoch.map(NumericEntry::Value)
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.epoch.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::train::metric::MetricMetadata;

    fn meta() -> MetricMetadata {
        MetricMetadata {
            progress: burn::data::dataloader::Progress {
                items_processed: 1,
                items_total: 1,
                unit: None,
            },
            iteration: Some(1),
            lr: None,
        }
    }

    #[test]
    fn keeps_the_epoch_maximum_and_resets() {
        let mut m = MaxMetric::stability();
        m.update(&StabilityInput(vec![-0.5, -0.2]), &meta())
            .unwrap();
        let e = m.update(&StabilityInput(vec![-0.9]), &meta()).unwrap();
        assert_eq!(e.serialized, "-0.9");
        assert_eq!(m.running_value().map(|v| v.current()), Some(-0.2));
        assert_eq!(m.compute().unwrap().serialized, "-0.2");
        m.clear();
        assert!(m.running_value().is_none());
        assert!(
            m.update(&StabilityInput(vec![]), &meta())
                .unwrap()
                .is_not_available()
        );
    }

    #[test]
    fn nan_is_never_hidden_by_the_maximum() {
        let mut m = MaxMetric::stability();
        m.update(&StabilityInput(vec![1.0, f64::NAN, 2.0]), &meta())
            .unwrap();
        m.update(&StabilityInput(vec![3.0]), &meta()).unwrap();
        assert!(m.compute().unwrap().serialized.contains("NaN"));
    }
}
