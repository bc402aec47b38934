//! Embedding organics-model in another Burn project.
//!
//! A model of our own (a linear front end, an ORGaNICs fixed-point layer with a learned
//! recurrence, and a readout) trained with a hand-written loop on a toy task: tell which of
//! two noisy prototype patterns an input is. Exits non-zero unless the loss falls.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use organics_model::prelude::*;

/// The downstream model: any Burn module can hold an ORGaNICs layer.
#[derive(Module, Debug)]
struct Net {
    front: Linear,
    organics: FixedPointLayer,
    readout: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            front: LinearConfig::new(16, 12).init(device),
            organics: FixedPointLayerConfig::new(12, 8).init(device),
            readout: LinearConfig::new(8, 2).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = burn::tensor::activation::sigmoid(self.front.forward(x));
        self.readout.forward(self.organics.forward(h))
    }
}

/// Two fixed prototypes plus noise; the label says which.
fn batch(device: &Device, n: usize) -> (Tensor<2>, Tensor<1, Int>) {
    let labels = Tensor::<1>::random([n], Distribution::Bernoulli(0.5), device);
    let proto_a = Tensor::<2>::from_floats([[1.0f32; 8], [0.0; 8]], device).reshape([1, 16]);
    let proto_b = Tensor::<2>::from_floats([[0.0f32; 8], [1.0; 8]], device).reshape([1, 16]);
    let l = labels.clone().unsqueeze_dim::<2>(1);
    let x = proto_a * (l.clone().neg() + 1.0) + proto_b * l;
    let x = x + Tensor::random([n, 16], Distribution::Normal(0.0, 0.5), device);
    (x, labels.int())
}

/// Trains for `steps` steps; returns the first and the last loss.
fn train(steps: usize) -> (f32, f32) {
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut net = Net::new(&device);
    let mut optim = AdamConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    for step in 0..steps {
        let (x, y) = batch(&device, 64);
        let loss = ce.forward(net.forward(x), y);
        last = loss.clone().into_scalar();
        if step == 0 {
            first = last;
        }
        if step % 10 == 0 {
            println!("step {step:3}  loss {last:.4}");
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(0.02, net, grads);
    }
    (first, last)
}

fn main() -> std::process::ExitCode {
    let (first, last) = train(60);
    println!("loss {first:.4} -> {last:.4}");
    if last < 0.5 * first {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("error: the loss did not fall by half");
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    /// CI runs the example through this test (part of `cargo test --workspace`).
    #[test]
    fn the_example_learns() {
        let (first, last) = super::train(60);
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }
}
