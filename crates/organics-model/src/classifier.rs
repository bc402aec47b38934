//! The paper's two classifiers: sequential (Table 2) and static (Table 1) MNIST.
//!
//! [`SeqClassifier`]: an [`OrganicsRnn`] over the pixels, then `Linear(y_T)` to the class
//! logits (docs/MODEL.md §5). [`StaticClassifier`]: an autoencoder whose code feeds one or
//! more [`FixedPointLayer`]s and a linear readout, trained on cross-entropy plus the
//! reconstruction's mean squared error ([`StaticClassifier::loss`]; docs/MODEL.md §7).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation;

use crate::cell::OrganicsCellConfig;
use crate::fixed_point::{FixedPointLayer, FixedPointLayerConfig, RecurrenceConfig};
use crate::rnn::{OrganicsRnn, OrganicsRnnConfig};

/// Configuration of a [`SeqClassifier`].
#[derive(Config, Debug)]
pub struct SeqClassifierConfig {
    /// The recurrent cell (`d_input` = 1 for pixel-by-pixel MNIST).
    pub cell: OrganicsCellConfig,
    /// Number of classes. Default: 10.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// ORGaNICs over a sequence, then `Linear(n, classes)` on `y` at the last step.
#[derive(Module, Debug)]
pub struct SeqClassifier {
    /// The recurrent circuit.
    pub rnn: OrganicsRnn,
    /// The readout.
    pub readout: Linear,
}

impl SeqClassifierConfig {
    /// Initializes the classifier.
    pub fn init(&self, device: &Device) -> SeqClassifier {
        SeqClassifier {
            rnn: OrganicsRnnConfig::new(self.cell.clone()).init(device),
            readout: LinearConfig::new(self.cell.d_hidden, self.num_classes).init(device),
        }
    }
}

impl SeqClassifier {
    /// Logits `[batch, classes]` for an input `[batch, seq, n_in]`.
    pub fn forward(&self, input: Tensor<3>) -> Tensor<2> {
        self.readout.forward(self.rnn.forward_final(input, None).y)
    }

    /// Trained parameters: all stored parameters less the fixed initial state and any fixed
    /// time constants (σ is a constant, not a parameter). 25,674 for n = 64 and 100,490 for
    /// n = 128 with `d_input` = 1 and 10 classes (`6n² + 17n + 10`).
    pub fn num_trainable_params(&self) -> usize {
        self.num_params() - self.rnn.num_fixed_params()
    }
}

/// Configuration of a [`StaticClassifier`] (docs/MODEL.md §7).
#[derive(Config, Debug)]
pub struct StaticClassifierConfig {
    /// Input size. Default: 784.
    #[config(default = 784)]
    pub input: usize,
    /// Encoder widths, the last one being the code fed to the first ORGaNICs layer.
    /// Default: `[360, 120, 40]`; the decoder mirrors them.
    #[config(default = "vec![360, 120, 40]")]
    pub encoder: Vec<usize>,
    /// Neurons of each ORGaNICs layer. Default: `[128, 64]`, the paper's two-layer model.
    #[config(default = "vec![128, 64]")]
    pub layers: Vec<usize>,
    /// The recurrence of every ORGaNICs layer. Default: learned `W_r` (Algorithm 1), the
    /// paper's model; [`RecurrenceConfig::identity`] for `W_r = I`.
    #[config(default = "RecurrenceConfig::new()")]
    pub recurrence: RecurrenceConfig,
    /// Number of classes. Default: 10.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// Autoencoder front end, one or more fixed-point ORGaNICs layers, and a linear readout.
///
/// `784 → 360 → 120 → 40` (ReLU, ReLU, sigmoid) encodes; the decoder mirrors it
/// (ReLU, ReLU, sigmoid) and reconstructs the image; the code goes through the ORGaNICs
/// layers and `Linear → classes`. Loss in the paper: cross-entropy + MSE(reconstruction, image).
#[derive(Module, Debug)]
pub struct StaticClassifier {
    /// Encoder layers.
    pub encoder: Vec<Linear>,
    /// Decoder layers.
    pub decoder: Vec<Linear>,
    /// ORGaNICs fixed-point layers.
    pub layers: Vec<FixedPointLayer>,
    /// The readout.
    pub readout: Linear,
}

/// Output of a [`StaticClassifier`].
#[derive(Debug, Clone)]
pub struct StaticOutput {
    /// Logits `[batch, classes]`.
    pub logits: Tensor<2>,
    /// Reconstructed input `[batch, input]`.
    pub reconstruction: Tensor<2>,
}

/// The paper's training loss of a [`StaticClassifier`] and its terms, each `[1]`.
#[derive(Debug, Clone)]
pub struct StaticLoss {
    /// `cross_entropy + mse`.
    pub loss: Tensor<1>,
    /// Mean cross-entropy of the logits against the labels.
    pub cross_entropy: Tensor<1>,
    /// Mean squared reconstruction error over every pixel of the batch.
    pub mse: Tensor<1>,
    /// The logits it was computed from, `[batch, classes]`.
    pub logits: Tensor<2>,
}

impl StaticClassifierConfig {
    /// Initializes the classifier.
    pub fn init(&self, device: &Device) -> StaticClassifier {
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let mut widths = vec![self.input];
        widths.extend(&self.encoder);
        let encoder = widths.windows(2).map(|w| linear(w[0], w[1])).collect();
        let decoder = widths
            .windows(2)
            .rev()
            .map(|w| linear(w[1], w[0]))
            .collect();
        let code = *widths.last().unwrap_or(&self.input);
        let mut sizes = vec![code];
        sizes.extend(&self.layers);
        let layers = sizes
            .windows(2)
            .map(|w| {
                FixedPointLayerConfig::new(w[0], w[1])
                    .with_recurrence(self.recurrence.clone())
                    .init(device)
            })
            .collect();
        let last = *sizes.last().unwrap_or(&code);
        StaticClassifier {
            encoder,
            decoder,
            layers,
            readout: linear(last, self.num_classes),
        }
    }
}

/// ReLU between layers and a sigmoid after the last one.
fn mlp_sigmoid_out(layers: &[Linear], mut x: Tensor<2>) -> Tensor<2> {
    for (i, layer) in layers.iter().enumerate() {
        x = layer.forward(x);
        x = if i + 1 == layers.len() {
            activation::sigmoid(x)
        } else {
            activation::relu(x)
        };
    }
    x
}

impl StaticClassifier {
    /// The code of the autoencoder, `[batch, code]`.
    pub fn encode(&self, input: Tensor<2>) -> Tensor<2> {
        mlp_sigmoid_out(&self.encoder, input)
    }

    /// The inputs of every ORGaNICs layer (the code, then each layer's rates), for analysing
    /// the fixed points layer by layer.
    pub fn layer_inputs(&self, input: Tensor<2>) -> Vec<Tensor<2>> {
        let mut h = self.encode(input);
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            out.push(h.clone());
            h = layer.forward(h);
        }
        out
    }

    /// Logits and reconstruction for images `[batch, input]`.
    pub fn forward(&self, input: Tensor<2>) -> StaticOutput {
        let code = self.encode(input);
        let reconstruction = mlp_sigmoid_out(&self.decoder, code.clone());
        let mut h = code;
        for layer in &self.layers {
            h = layer.forward(h);
        }
        StaticOutput {
            logits: self.readout.forward(h),
            reconstruction,
        }
    }

    /// The paper's loss for images `[batch, input]` with class `labels` `[batch]`:
    /// `cross-entropy(logits, labels) + mean((reconstruction − images)²)`, in Burn tensor
    /// ops (differentiable on an autodiff device). The fused kernel of
    /// [`fused_loss_and_grads`](Self::fused_loss_and_grads) computes the same on the host.
    pub fn loss(&self, images: Tensor<2>, labels: Tensor<1, Int>) -> StaticLoss {
        let out = self.forward(images.clone());
        let cross_entropy = CrossEntropyLossConfig::new()
            .init(&out.logits.device())
            .forward(out.logits.clone(), labels);
        let mse = (out.reconstruction - images).square().mean();
        StaticLoss {
            loss: cross_entropy.clone() + mse.clone(),
            cross_entropy,
            mse,
            logits: out.logits,
        }
    }
}
