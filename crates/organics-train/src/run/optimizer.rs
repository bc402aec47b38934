//! The optimizer a run's configuration names: Adam (the paper's, with L2 weight decay, as
//! PyTorch's `Adam(weight_decay=…)`) or RMSprop (the LSTM literature's), with optional
//! gradient-norm clipping.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{ModuleOptimizer, RmsPropConfig};
use organics_model::HostAdam;

use crate::config::TrainConfig;
use crate::options::OptimizerKind;

/// The optimizer of a run with `config`.
pub(crate) fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let optimizer = match config.optimizer {
        OptimizerKind::Adam => {
            HostAdam::new(Some(config.weight_decay as f32), config.backend.is_cpu())
                .with_epsilon(config.adam_epsilon as f32)
                .init()
        }
        // Keras' RMSprop of the LSTM papers (docs/RESULTS.md): ρ 0.9, no momentum, ε 1e-8.
        OptimizerKind::Rmsprop => RmsPropConfig::new()
            .with_alpha(0.9)
            .with_momentum(0.0)
            .with_epsilon(1e-8)
            .with_weight_decay(
                (config.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
            )
            .init(),
    };
    match config.clip {
        Some(c) => optimizer.with_grad_clipping(GradientClippingConfig::Norm(c as f32).init()),
        None => optimizer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// Six steps of `config`'s optimizer on a linear layer whose gradients are about 1e-6,
    /// where Adam's `ε` decides the step's size; the weights after.
    fn trained(config: &TrainConfig) -> Vec<f32> {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut layer: Linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::random([2, 4], Distribution::Normal(0.0, 1.0), &device);
        let mut optim = optimizer(config);
        for _ in 0..6 {
            let loss = layer.forward(x.clone()).powi_scalar(2).sum() * 1e-6;
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.01, layer, grads);
        }
        layer
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32")
    }

    #[test]
    fn adam_takes_the_configured_epsilon() {
        let config = TrainConfig::new().with_weight_decay(0.0);
        let pytorch = trained(&config);
        let burn = trained(&config.clone().with_adam_epsilon(1e-5));
        assert_eq!(
            pytorch,
            trained(&config),
            "the same settings, the same steps"
        );
        let moved = pytorch.iter().zip(&burn).map(|(a, b)| (a - b).abs());
        // With gradients of 1e-6 a step is about lr with ε = 1e-8, a tenth of it with 1e-5.
        assert!(moved.fold(0.0f32, f32::max) > 1e-3, "{pytorch:?} {burn:?}");
    }
}
