//! The models the harness trains: ORGaNICs and the baselines, each with its training step.
//!
//! The model crate stays free of burn-train; these thin wrappers add the loss and the
//! `TrainStep` / `InferenceStep` the Learner needs.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

use crate::harness::output::StepOutput;
use crate::options::GradientPath;
use burn::tensor::Gradients;
use organics_data::{SequenceBatch, StaticBatch};
use organics_model::{BpttKernel, RecordedLstm};
use organics_model::{SeqClassifier, StaticClassifier};

/// Cross-entropy of `logits` against `targets`: the loss of every model but the static
/// ORGaNICs classifier (whose loss is [`StaticClassifier::loss`]).
fn classification(logits: Tensor<2>, targets: Tensor<1, Int>) -> ClassificationOutput {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), targets.clone());
    ClassificationOutput {
        loss,
        output: logits,
        targets,
    }
}

/// ORGaNICs on pixel sequences (sMNIST, psMNIST).
///
/// Training backpropagates through time with the model crate's hand-derived backward pass
/// ([`organics_model::grad::sequence`]), which gives the gradients of the plain autodiff path (a test
/// checks them to 1e-5) several times faster: on the CPU backends in its fused host kernel,
/// on wgpu in its fused CubeCL kernels. `gradients` picks the path, for comparison.
#[derive(Module, Debug)]
pub struct SeqOrganics {
    /// The classifier of the model crate.
    pub inner: SeqClassifier,
    /// How the gradients are computed.
    #[module(skip)]
    pub gradients: GradientPath,
    /// The factor every gradient is multiplied by before the optimizer sees it: `1/N` when
    /// `N` devices each train on a batch and Burn sums their gradients, so that a step follows
    /// the mean over the global batch as on one device ([`HarnessModel::with_grad_scale`]).
    #[module(skip)]
    pub grad_scale: f32,
}

/// Burn's LSTM with a linear readout of the last hidden state (sequence baseline).
///
/// On the CPU backends training backpropagates through time with the model crate's fused
/// LSTM kernel ([`organics_model::grad::lstm`]; a test checks every gradient against
/// autodiff); `gradients` picks the path.
#[derive(Module, Debug)]
pub struct SeqLstm {
    /// The recurrent layer.
    pub lstm: Lstm,
    /// The readout.
    pub readout: Linear,
    /// How the gradients are computed ([`GradientPath::Tensor`] means autodiff here: the LSTM
    /// has no separate tensor-op backward).
    #[module(skip)]
    pub gradients: GradientPath,
    /// The factor every gradient is multiplied by before the optimizer sees it: `1/N` when
    /// `N` devices each train on a batch and Burn sums their gradients, so that a step follows
    /// the mean over the global batch as on one device ([`HarnessModel::with_grad_scale`]).
    #[module(skip)]
    pub grad_scale: f32,
}

impl SeqLstm {
    /// An LSTM of `hidden` units on `n_in` inputs per step, `classes` outputs.
    pub fn new(n_in: usize, hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            lstm: LstmConfig::new(n_in, hidden, true).init(device),
            readout: LinearConfig::new(hidden, classes).init(device),
            gradients: GradientPath::Autodiff,
            grad_scale: 1.0,
        }
    }

    /// The forget gate's bias set to `bias`: its input transform's bias holds it, its hidden
    /// transform's bias is zero (the gate adds the two).
    pub fn with_forget_bias(mut self, bias: f64) -> Self {
        if let Some(gate) = self.lstm.forget_gate.as_mut() {
            let set = |linear: &mut Linear, value: f64| {
                if let Some(b) = linear.bias.take() {
                    let filled = b.val().ones_like().mul_scalar(value);
                    linear.bias = Some(Param::from_tensor(filled));
                }
            };
            set(&mut gate.input_transform, bias);
            set(&mut gate.hidden_transform, 0.0);
        }
        self
    }

    /// The forget gate's total bias per unit (input plus hidden transform).
    pub fn forget_bias(&self) -> Option<Tensor<1>> {
        let gate = self.lstm.forget_gate.as_ref()?;
        let bias = |l: &Linear| l.bias.as_ref().map(|b| b.val());
        Some(bias(&gate.input_transform)? + bias(&gate.hidden_transform)?)
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, input: Tensor<3>) -> Tensor<2> {
        let (_, state) = self.lstm.forward(input, None);
        self.readout.forward(state.hidden)
    }
}

/// The static ORGaNICs classifier; loss = cross-entropy + MSE(reconstruction, image).
///
/// On a CPU backend, training takes its loss and gradients from the model crate's fused
/// kernel ([`organics_model::grad::static_step`]: the closed form for `W_r = I`, Algorithm 1 for
/// a learned `W_r`; tests check every gradient against autodiff); otherwise, and with
/// `gradients` other than `Fused`, from Burn's autodiff.
#[derive(Module, Debug)]
pub struct StaticOrganics {
    /// The classifier of the model crate.
    pub inner: StaticClassifier,
    /// How the gradients are computed ([`GradientPath::Tensor`] means autodiff here: the
    /// closed form has no separate tensor-op backward).
    #[module(skip)]
    pub gradients: GradientPath,
    /// The factor every gradient is multiplied by before the optimizer sees it: `1/N` when
    /// `N` devices each train on a batch and Burn sums their gradients, so that a step follows
    /// the mean over the global batch as on one device ([`HarnessModel::with_grad_scale`]).
    #[module(skip)]
    pub grad_scale: f32,
}

impl StaticOrganics {
    /// The model on `path`.
    pub fn new(inner: StaticClassifier, path: GradientPath) -> Self {
        StaticOrganics {
            inner,
            gradients: path,
            grad_scale: 1.0,
        }
    }
}

/// One hidden layer of ReLU units (static baseline; the paper's MLP has 50).
#[derive(Module, Debug)]
pub struct StaticMlp {
    /// Input to hidden.
    pub hidden: Linear,
    /// Hidden to classes.
    pub readout: Linear,
    /// The factor every gradient is multiplied by before the optimizer sees it: `1/N` when
    /// `N` devices each train on a batch and Burn sums their gradients, so that a step follows
    /// the mean over the global batch as on one device ([`HarnessModel::with_grad_scale`]).
    #[module(skip)]
    pub grad_scale: f32,
}

impl StaticMlp {
    /// An MLP `input → hidden → classes`.
    pub fn new(input: usize, hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(input, hidden).init(device),
            readout: LinearConfig::new(hidden, classes).init(device),
            grad_scale: 1.0,
        }
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.readout
            .forward(activation::relu(self.hidden.forward(images)))
    }
}

/// A model the harness can train: its output for a batch, and its trained-parameter count.
pub trait HarnessModel: Module + Clone + core::fmt::Debug + 'static {
    /// The batch type.
    type Batch: Send + Clone + Truncate + 'static;
    /// Loss, logits and targets for a batch.
    fn classify(&self, batch: Self::Batch) -> ClassificationOutput;
    /// Loss, logits and targets for a batch, and the gradients of the loss.
    fn loss_and_grads(&self, batch: Self::Batch) -> (ClassificationOutput, GradientsParams) {
        autodiff_grads(self, batch)
    }
    /// The same model computing its gradients along `path` (models without a hand-derived
    /// backward pass always use autodiff).
    fn with_gradients(self, _path: GradientPath) -> Self {
        self
    }
    /// The path the gradients actually take (what [`with_gradients`](Self::with_gradients)
    /// asked for, where the model has it).
    fn effective_gradients(&self) -> GradientPath {
        GradientPath::Autodiff
    }
    /// The factor applied to every gradient (see the models' `grad_scale`).
    fn grad_scale(&self) -> f32;
    /// The same model with its gradients multiplied by `scale`.
    fn with_grad_scale(self, scale: f32) -> Self;
    /// Parameters that training changes.
    fn num_trainable_params(&self) -> usize {
        self.num_params()
    }
    /// Whether [`HarnessModel::probe_stability`] measures anything for this model.
    fn has_stability_probe(&self) -> bool {
        false
    }
    /// The largest real part of the Jacobian's eigenvalues at the fixed points of the first
    /// [`PROBE_IMAGES`] images of a batch, per layer (static ORGaNICs only).
    fn probe_stability(&self, _batch: &Self::Batch) -> Option<Vec<f64>> {
        None
    }
}

/// Cuts a batch's time axis to `seq` steps (no-op for static batches).
pub trait Truncate {
    /// The batch with at most `seq` time steps.
    fn truncate(self, seq: usize) -> Self;
}

impl Truncate for organics_data::SequenceBatch {
    fn truncate(self, seq: usize) -> Self {
        let [b, t, f] = self.inputs.dims();
        if seq >= t {
            return self;
        }
        Self {
            inputs: self.inputs.slice(s![0..b, 0..seq, 0..f]),
            targets: self.targets,
        }
    }
}

impl Truncate for organics_data::StaticBatch {
    fn truncate(self, _seq: usize) -> Self {
        self
    }
}

/// Images of each validation batch whose fixed points the stability probe analyses. The
/// validation set is not shuffled, so these are the same images every epoch (48 of the
/// 3,000 at batch 256); each costs one 2n x 2n eigenvalue problem per layer on the host.
pub const PROBE_IMAGES: usize = 4;

/// Sums the squares of every parameter gradient.
struct SquaredGradNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredGradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies every parameter gradient in `grads` by `scale`.
struct ScaleGrads {
    grads: GradientsParams,
    scale: f32,
}

impl ModuleVisitor for ScaleGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.scale));
        }
    }
}

/// `grads` times `scale` (unchanged for a scale of 1).
fn scale_grads<M: Module>(model: &M, grads: GradientsParams, scale: f32) -> GradientsParams {
    if scale == 1.0 {
        return grads;
    }
    let mut visitor = ScaleGrads { grads, scale };
    model.visit(&mut visitor);
    visitor.grads
}

/// The global L2 norm of the gradients, the quantity gradient clipping would act on.
pub fn grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredGradNorm { grads, total: None };
    model.visit(&mut visitor);
    visitor.total.map(|t| t.sqrt())
}

/// Loss and gradients through Burn's autodiff.
fn autodiff_grads<M: HarnessModel>(
    model: &M,
    batch: M::Batch,
) -> (ClassificationOutput, GradientsParams) {
    let out = model.classify(batch);
    let grads = GradientsParams::from_grads(out.loss.backward(), model);
    (out, grads)
}

/// Moves every gradient of `module`'s parameters from `from` into `to`.
struct MoveGrads<'a> {
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
}

impl ModuleVisitor for MoveGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            self.to.register::<D>(param.id, g);
        }
    }
}

impl HarnessModel for SeqOrganics {
    fn grad_scale(&self) -> f32 {
        self.grad_scale
    }
    fn with_grad_scale(self, grad_scale: f32) -> Self {
        Self { grad_scale, ..self }
    }
    type Batch = SequenceBatch;
    fn classify(&self, b: SequenceBatch) -> ClassificationOutput {
        classification(self.inner.forward(b.inputs), b.targets)
    }
    fn with_gradients(self, path: GradientPath) -> Self {
        Self {
            gradients: path,
            ..self
        }
    }
    fn effective_gradients(&self) -> GradientPath {
        self.gradients
    }
    fn loss_and_grads(&self, b: SequenceBatch) -> (ClassificationOutput, GradientsParams) {
        let kernel = match self.gradients {
            _ if !b.inputs.device().is_autodiff() => return autodiff_grads(self, b),
            GradientPath::Autodiff => return autodiff_grads(self, b),
            GradientPath::Tensor => BpttKernel::TensorOps,
            GradientPath::Fused => BpttKernel::fused_for(&b.inputs.device()),
        };
        let recorded = self.inner.rnn.forward_recorded_with(b.inputs, kernel);
        let last = recorded.last().y.clone();
        let readout = |y| self.inner.readout.forward(y);
        through_readout(self, &self.inner.rnn, last, readout, b.targets, |g| {
            Ok::<_, std::convert::Infallible>(recorded.backward(g))
        })
        .unwrap_or_else(|never| match never {})
    }
    fn num_trainable_params(&self) -> usize {
        self.inner.num_trainable_params()
    }
}

impl HarnessModel for SeqLstm {
    fn grad_scale(&self) -> f32 {
        self.grad_scale
    }
    fn with_grad_scale(self, grad_scale: f32) -> Self {
        Self { grad_scale, ..self }
    }
    type Batch = SequenceBatch;
    fn classify(&self, b: SequenceBatch) -> ClassificationOutput {
        classification(self.forward(b.inputs), b.targets)
    }
    fn with_gradients(self, path: GradientPath) -> Self {
        Self {
            gradients: path,
            ..self
        }
    }
    /// `Fused` where the kernel applies (Burn's default LSTM), autodiff otherwise.
    fn effective_gradients(&self) -> GradientPath {
        fused_where_supported(self.gradients, || RecordedLstm::supports(&self.lstm))
    }
    fn loss_and_grads(&self, b: SequenceBatch) -> (ClassificationOutput, GradientsParams) {
        if self.effective_gradients() != GradientPath::Fused || !b.inputs.device().is_autodiff() {
            return autodiff_grads(self, b);
        }
        let fused = RecordedLstm::forward(&self.lstm, b.inputs.clone()).and_then(|recorded| {
            let last = recorded.last_hidden().clone();
            let readout = |h| self.readout.forward(h);
            through_readout(self, &self.lstm, last, readout, b.targets.clone(), |g| {
                recorded.backward(g)
            })
        });
        // The kernel rejects nothing the checks above let through; should it, autodiff
        // computes the same gradients.
        fused.unwrap_or_else(|_| autodiff_grads(self, b))
    }
}

/// `Fused` where `asked` says so and the model's kernel applies (`supported`); autodiff for
/// every other request, since these models have no separate tensor-op backward.
fn fused_where_supported(asked: GradientPath, supported: impl FnOnce() -> bool) -> GradientPath {
    match asked {
        GradientPath::Fused if supported() => GradientPath::Fused,
        _ => GradientPath::Autodiff,
    }
}

/// Loss and gradients of a sequence model whose recurrent part ran without an autodiff
/// graph: the readout and loss are small, so autodiff handles them and yields `dL/dh_T` for
/// the last state `last`; `backward` carries that through the recurrent part, whose
/// gradients join the readout's.
fn through_readout<M: Module, R: Module, E>(
    model: &M,
    recurrent: &R,
    last: Tensor<2>,
    readout: impl FnOnce(Tensor<2>) -> Tensor<2>,
    targets: Tensor<1, Int>,
    backward: impl FnOnce(Tensor<2>) -> Result<Gradients, E>,
) -> Result<(ClassificationOutput, GradientsParams), E> {
    let last = last.autodiff().require_grad();
    let out = classification(readout(last.clone()), targets);
    let mut grads = out.loss.backward();
    let grad_last = last
        .grad_remove(&mut grads)
        .unwrap_or_else(|| last.zeros_like().inner());
    let mut params = GradientsParams::from_grads(grads, model);
    let mut inner = GradientsParams::from_grads(backward(grad_last)?, recurrent);
    recurrent.visit(&mut MoveGrads {
        from: &mut inner,
        to: &mut params,
    });
    Ok((out, params))
}

impl HarnessModel for StaticOrganics {
    fn grad_scale(&self) -> f32 {
        self.grad_scale
    }
    fn with_grad_scale(self, grad_scale: f32) -> Self {
        Self { grad_scale, ..self }
    }
    type Batch = StaticBatch;
    fn classify(&self, b: StaticBatch) -> ClassificationOutput {
        let loss = self.inner.loss(b.images, b.targets.clone());
        ClassificationOutput {
            loss: loss.loss,
            output: loss.logits,
            targets: b.targets,
        }
    }
    fn with_gradients(self, path: GradientPath) -> Self {
        Self {
            gradients: path,
            ..self
        }
    }
    /// `Fused` only where the kernel applies.
    fn effective_gradients(&self) -> GradientPath {
        fused_where_supported(self.gradients, || self.inner.supports_fused_gradients())
    }
    fn loss_and_grads(&self, b: StaticBatch) -> (ClassificationOutput, GradientsParams) {
        if self.effective_gradients() != GradientPath::Fused {
            return autodiff_grads(self, b);
        }
        let targets = b.targets.clone();
        match self
            .inner
            .fused_loss_and_grads(b.images.clone(), b.targets.clone())
        {
            Ok(step) => (
                ClassificationOutput {
                    loss: step.loss,
                    output: step.logits,
                    targets: targets.inner(),
                },
                step.grads,
            ),
            // A batch the kernel rejects (a label out of range) goes through autodiff,
            // whose cross-entropy reports it the way every other model's does.
            Err(_) => autodiff_grads(self, b),
        }
    }
    fn has_stability_probe(&self) -> bool {
        true
    }
    fn probe_stability(&self, b: &StaticBatch) -> Option<Vec<f64>> {
        let [batch, _] = b.images.dims();
        let probe = b.images.clone().narrow(0, 0, batch.min(PROBE_IMAGES));
        let inputs = self.inner.layer_inputs(probe);
        self.inner
            .layers
            .iter()
            .zip(inputs)
            .map(|(layer, input)| {
                // A failed solve (singular system) is reported as +inf: not stable.
                let leading = layer
                    .max_real_eigenvalues(input)
                    .unwrap_or_else(|_| vec![f64::INFINITY]);
                Some(leading.into_iter().fold(f64::NEG_INFINITY, f64::max))
            })
            .collect()
    }
}

impl HarnessModel for StaticMlp {
    fn grad_scale(&self) -> f32 {
        self.grad_scale
    }
    fn with_grad_scale(self, grad_scale: f32) -> Self {
        Self { grad_scale, ..self }
    }
    type Batch = StaticBatch;
    fn classify(&self, b: StaticBatch) -> ClassificationOutput {
        classification(self.forward(b.images), b.targets)
    }
}

macro_rules! steps {
    ($($model:ty),*) => {$(
        impl TrainStep for $model {
            type Input = <$model as HarnessModel>::Batch;
            type Output = StepOutput;
            fn step(&self, batch: Self::Input) -> TrainOutput<StepOutput> {
                let (item, grads) = self.loss_and_grads(batch);
                // The norm of this batch's own gradient, before any scaling.
                let grad_norm = grad_norm(self, &grads);
                TrainOutput {
                    grads: scale_grads(self, grads, self.grad_scale()),
                    item: StepOutput::train(item, grad_norm),
                }
            }
        }
        impl InferenceStep for $model {
            type Input = <$model as HarnessModel>::Batch;
            type Output = StepOutput;
            fn step(&self, batch: Self::Input) -> StepOutput {
                let stability = self.probe_stability(&batch);
                StepOutput::valid(self.classify(batch), stability)
            }
        }
    )*};
}
steps!(SeqOrganics, SeqLstm, StaticOrganics, StaticMlp);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Every parameter's gradient in `grads`, in the module's order, as host values.
    struct Flatten<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }

    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.out
                    .push(g.into_data().try_to_vec::<f32>().expect("f32"));
            }
        }
    }

    /// The model's loss and every gradient along `Fused` equal autodiff's (readout included);
    /// autodiff gives `count` gradients, or at least 10 where `count` is `None`.
    fn fused_equals_autodiff<M: HarnessModel<Batch = SequenceBatch>>(
        model: M,
        count: Option<usize>,
    ) {
        let device = Device::flex().autodiff();
        device.seed(3);
        let batch = SequenceBatch {
            inputs: Tensor::<3>::random([5, 20, 1], Distribution::Uniform(0.0, 1.0), &device),
            targets: Tensor::from_data([1, 0, 9, 4, 4], &device),
        };
        let mut results = [GradientPath::Fused, GradientPath::Autodiff].map(|path| {
            let model = model.clone().with_gradients(path);
            assert_eq!(model.effective_gradients(), path);
            let (out, grads) = model.loss_and_grads(batch.clone());
            let mut flat = Flatten {
                grads: &grads,
                out: Vec::new(),
            };
            model.visit(&mut flat);
            let loss = out.loss.into_scalar::<f32>();
            (loss, flat.out)
        });
        let (auto_loss, auto) = results[1].clone();
        let (fused_loss, fused) = std::mem::take(&mut results[0]);
        assert!((fused_loss - auto_loss).abs() < 1e-5 * auto_loss.abs());
        match count {
            Some(count) => assert_eq!(auto.len(), count),
            None => assert!(auto.len() >= 10),
        }
        assert_eq!(fused.len(), auto.len());
        for (f, a) in fused.iter().zip(&auto) {
            let diff: f32 = f.iter().zip(a).map(|(x, y)| (x - y).powi(2)).sum();
            let norm: f32 = a.iter().map(|y| y * y).sum();
            assert!(
                diff.sqrt() <= 1e-5 * norm.sqrt().max(1e-12),
                "{diff} vs {norm}"
            );
        }
    }

    #[test]
    fn the_fused_lstm_and_organics_steps_equal_autodiff() {
        let device = Device::flex().autodiff();
        device.seed(5);
        // 16 LSTM parameters and the readout's two.
        fused_equals_autodiff(
            SeqLstm::new(1, 6, 10, &device).with_forget_bias(1.0),
            Some(18),
        );
        let config = crate::config::TrainConfig::new()
            .with_task(crate::options::Task::Smnist)
            .with_hidden(Some(6));
        fused_equals_autodiff(crate::run::dispatch::seq_organics(&config, &device), None);
    }

    #[test]
    fn the_forget_gate_starts_at_the_bias_asked_for() {
        let device = Device::flex();
        let lstm = SeqLstm::new(1, 6, 10, &device);
        let default = lstm.forget_bias().expect("a forget gate with biases");
        let ones = lstm.with_forget_bias(1.0).forget_bias().expect("bias");
        let (default, ones) = (
            default.into_data().try_to_vec::<f32>().expect("f32"),
            ones.into_data().try_to_vec::<f32>().expect("f32"),
        );
        assert_eq!(ones, vec![1.0; 6]);
        assert_ne!(default, ones);
    }
}
