//! A static classifier's training step with hand-derived gradients, for the CPU.
//!
//! [`StaticClassifier::fused_loss_and_grads`] returns the paper's loss
//! (cross-entropy + MSE of the reconstruction), the logits and the gradient of every
//! parameter in one call, computed by a fused host kernel instead of Burn's autodiff:
//! the same equations ([`crate::fixed_point`]: the closed form for `W_r = I`, Algorithm 1
//! with per-sample LU factorisations for a learned `W_r`), with the products running
//! straight on the `gemm` crate and each layer's element-wise work in one pass.
//! On a CPU backend it is several times faster than autodiff; on a GPU it would copy the
//! weights to the host and back, so use autodiff there.
//!
//! ```
//! use burn::optim::{AdamConfig, Optimizer};
//! use burn::prelude::*;
//! use organics_model::StaticClassifierConfig;
//!
//! let device = Device::flex().autodiff();
//! let mut model = StaticClassifierConfig::new().init(&device); // learned W_r, Algorithm 1
//! let mut optim = AdamConfig::new().init();
//! let images = Tensor::<2>::ones([8, 784], &device) * 0.5;
//! let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 4, 5, 6, 7], &device);
//! let step = model.fused_loss_and_grads(images, labels).unwrap();
//! assert!(step.cross_entropy > 0.0 && step.logits.dims() == [8, 10]);
//! model = optim.step(1e-3, model, step.grads);
//! ```

use burn::module::Param;
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::classifier::StaticClassifier;
use crate::error::ModelError;
use crate::fixed_point::FixedPointLayer;
use crate::host::{HostValues, from_f32, to_matrix};
use crate::kernels::algorithm1::Recurrence;
use crate::kernels::static_step::{HostFixedPoint, HostLinear, HostStatic, LinearGrads};
use crate::spectral::HostSpectral;

/// Loss, logits and parameter gradients of one training step of a [`StaticClassifier`].
#[derive(Debug)]
pub struct StaticLossGrads {
    /// `cross_entropy + mse`, shape `[1]`, on the input's device without autodiff.
    pub loss: Tensor<1>,
    /// Mean cross-entropy of the batch.
    pub cross_entropy: f64,
    /// Mean squared reconstruction error over every pixel of the batch.
    pub mse: f64,
    /// Logits, `[batch, classes]`, on the input's device without autodiff.
    pub logits: Tensor<2>,
    /// The gradient of the loss with respect to every parameter, ready for an optimizer.
    pub grads: GradientsParams,
}

impl StaticClassifier {
    /// Whether [`fused_loss_and_grads`](Self::fused_loss_and_grads) applies: every
    /// fixed-point layer with a learned `W_r` runs at least one iteration of Algorithm 1,
    /// and the encoder and decoder have the same non-zero depth (as
    /// [`crate::StaticClassifierConfig::init`] builds them).
    pub fn supports_fused_gradients(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.w_r_raw.is_none() || l.iterations >= 1)
            && !self.encoder.is_empty()
            && self.encoder.len() == self.decoder.len()
    }

    /// The training loss `cross-entropy(logits, labels) + mean((reconstruction − images)²)`
    /// and its gradient with respect to every parameter, by the fused CPU kernel (see the
    /// [module documentation](crate::grad::static_step)). `images` is `[batch, input]`, `labels`
    /// `[batch]` class indices.
    ///
    /// # Errors
    /// [`ModelError::Unsupported`] for a model [`supports_fused_gradients`](Self::supports_fused_gradients)
    /// rejects (use autodiff),
    /// [`ModelError::Shape`] for inputs of the wrong shape, [`ModelError::Label`] for a label
    /// outside `0..classes`, [`ModelError::Data`] if tensor values cannot be read.
    pub fn fused_loss_and_grads(
        &self,
        images: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> Result<StaticLossGrads, ModelError> {
        if !self.supports_fused_gradients() {
            return Err(ModelError::Unsupported(
                "the fused static kernel needs an encoder and a decoder of equal depth \
                 and at least one iteration of Algorithm 1 in every layer with a learned \
                 W_r; use autodiff"
                    .into(),
            ));
        }
        let [batch, input] = images.dims();
        let expected_input = self.encoder[0].weight.dims()[0];
        if input != expected_input {
            return Err(ModelError::Shape {
                what: "static classifier images",
                expected: format!("[batch, {expected_input}]"),
                got: vec![batch, input],
            });
        }
        if labels.dims() != [batch] {
            return Err(ModelError::Shape {
                what: "static classifier labels",
                expected: format!("[{batch}]"),
                got: labels.dims().to_vec(),
            });
        }
        let classes = self.readout.weight.dims()[1];
        let labels = labels
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| ModelError::Data(format!("{e:?}")))?;
        let labels = labels
            .into_iter()
            .map(|l| {
                usize::try_from(l)
                    .ok()
                    .filter(|&c| c < classes)
                    .ok_or(ModelError::Label { label: l, classes })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let device = images.device().inner();
        let (host, spectral, pixels) = self.to_host(images)?;
        let step = host.step(&pixels, &labels, batch);

        let mut grads = GradientsParams::new();
        let mut linear = |l: &Linear, g: LinearGrads| {
            let [n_in, n_out] = l.weight.dims();
            grads.register::<2>(l.weight.id, from_f32(g.w, [n_in, n_out], &device));
            if let Some(b) = &l.bias {
                grads.register::<1>(b.id, from_f32(g.b, [n_out], &device));
            }
        };
        for (l, g) in self.encoder.iter().zip(step.grads.encoder) {
            linear(l, g);
        }
        for (l, g) in self.decoder.iter().zip(step.grads.decoder) {
            linear(l, g);
        }
        linear(&self.readout, step.grads.readout);
        for ((l, g), spectral) in self.layers.iter().zip(step.grads.layers).zip(&spectral) {
            let [n, m] = l.w_zx.dims();
            if let (Some(v), Some(spectral)) = (&l.w_r_raw, spectral) {
                grads.register::<2>(v.id, from_f32(spectral.raw_grad(&g.w_r), [n, n], &device));
            }
            grads.register::<2>(l.w_zx.id, from_f32(g.w_zx, [n, m], &device));
            grads.register::<2>(l.w_bx.id, from_f32(g.w_bx, [n, m], &device));
            grads.register::<1>(l.beta0.id, from_f32(g.beta0, [n], &device));
            grads.register::<2>(l.log_w.id, from_f32(g.log_w, [n, n], &device));
        }
        let loss = step.cross_entropy + step.mse;
        Ok(StaticLossGrads {
            loss: from_f32(vec![loss as f32], [1], &device),
            cross_entropy: step.cross_entropy,
            mse: step.mse,
            logits: from_f32(step.logits, [batch, classes], &device),
            grads,
        })
    }

    /// The parameters and `images` as host `f32` arrays; `W = exp(L)`, `b0 = sigmoid(β0)`,
    /// `W_r = V / σ_max(V)` evaluated here (with each layer's parametrization, for `V̄`).
    /// The weights and images are read in place where the backend allows it
    /// ([`HostValues`]); where it does not, reading 3.6 MB of values is a copy per
    /// parameter, so the decoder and the images are read on a second thread (rayon's, see
    /// [`crate::kernels::threads`]).
    #[allow(clippy::type_complexity)]
    fn to_host(
        &self,
        images: Tensor<2>,
    ) -> Result<(HostStatic, Vec<Option<HostSpectral>>, HostValues), ModelError> {
        let linear = |l: &Linear| -> Result<HostLinear, ModelError> {
            let [n_in, n_out] = l.weight.dims();
            let b = match &l.bias {
                Some(b) => HostValues::of(b.val())?,
                None => vec![0.0; n_out].into(),
            };
            Ok(HostLinear {
                n_in,
                n_out,
                w: HostValues::of(l.weight.val())?,
                b,
            })
        };
        let layer = |l: &FixedPointLayer| -> Result<_, ModelError> {
            let [n, m] = l.w_zx.dims();
            // One product reads both input weights, so they are copied into one array.
            let mut w_cat = Vec::with_capacity(2 * n * m);
            w_cat.extend_from_slice(&HostValues::of(l.w_zx.val())?);
            w_cat.extend_from_slice(&HostValues::of(l.w_bx.val())?);
            let values = |p: &Param<Tensor<1>>| HostValues::of(p.val());
            let spectral = match &l.w_r_raw {
                Some(v) => Some(HostSpectral::new(to_matrix(v.val())?)?),
                None => None,
            };
            let recurrence = spectral
                .as_ref()
                .map(|s| Recurrence::new(s.normalized(), n, l.iterations, l.linear_gate));
            let host = HostFixedPoint {
                m,
                n,
                w_cat,
                w_norm: HostValues::of(l.log_w.val())?
                    .iter()
                    .map(|l| l.exp())
                    .collect(),
                b0: values(&l.beta0)?
                    .iter()
                    .map(|b| 1.0 / ((-b).exp() + 1.0))
                    .collect(),
                sigma_sq: (l.sigma * l.sigma) as f32,
                recurrence,
            };
            Ok((host, spectral))
        };
        let decoder = &self.decoder;
        let mut other = None;
        let (encoder, layers, readout) = rayon::in_place_scope(|s| {
            s.spawn(|_| {
                other = Some((|| -> Result<_, ModelError> {
                    let decoder = decoder.iter().map(linear).collect::<Result<Vec<_>, _>>()?;
                    Ok((decoder, HostValues::of(images)?))
                })());
            });
            (
                self.encoder.iter().map(linear).collect::<Result<_, _>>(),
                self.layers.iter().map(layer).collect::<Result<Vec<_>, _>>(),
                linear(&self.readout),
            )
        });
        // A panic while reading (a bug, not an input error) passed on at the scope's end.
        let (decoder, pixels) = other.expect("the scope ran the spawned read")?;
        let (layers, spectral) = layers?.into_iter().unzip();
        let host = HostStatic {
            encoder: encoder?,
            decoder,
            layers,
            readout: readout?,
        };
        Ok((host, spectral, pixels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{StaticClassifierConfig, StaticLoss};
    use crate::fixed_point::RecurrenceConfig;
    use crate::grad::test_support::relative;
    use burn::module::{ModuleVisitor, ParamId};
    use burn::tensor::Distribution;

    /// Every float parameter's gradient in `grads`, in visiting order.
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<(ParamId, Option<Vec<f32>>)>,
    }

    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self.grads.get::<D>(param.id).map(|g| {
                g.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32")
            });
            self.out.push((param.id, g));
        }
    }

    fn collect(
        model: &StaticClassifier,
        grads: &GradientsParams,
    ) -> Vec<(ParamId, Option<Vec<f32>>)> {
        let mut c = Collect {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut c);
        c.out
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// Loss, logits and every gradient of the fused kernel against Burn's autodiff of the
    /// plain formulation ([`StaticClassifier::forward`], cross-entropy, MSE; Algorithm 1
    /// unrolled), to `tolerance` relative.
    fn check(config: StaticClassifierConfig, batch: usize, seed: u64, tolerance: f64) {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let mut model = config.init(&device);
        for layer in &mut model.layers {
            // V = I at initialisation makes A_k diagonal and σ_max degenerate: a random V
            // exercises every term of Algorithm 1's backward pass and of V̄.
            if let Some(v) = &mut layer.w_r_raw {
                let n = layer.w_zx.dims()[0];
                *v = Param::from_tensor(Tensor::random(
                    [n, n],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                ));
            }
        }
        let input = config.input;
        let images = Tensor::<2>::random([batch, input], Distribution::Uniform(0.0, 1.0), &device);
        let labels: Vec<i64> = (0..batch)
            .map(|i| ((i * 7 + 3) % config.num_classes) as i64)
            .collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);

        let StaticLoss {
            loss,
            cross_entropy: ce,
            mse,
            logits,
        } = model.loss(images.clone(), labels.clone());
        let plain = GradientsParams::from_grads(loss.backward(), &model);
        let fused = model
            .fused_loss_and_grads(images, labels)
            .expect("fused step");

        let scalar = |t: Tensor<1>| f64::from(values(t.inner())[0]);
        let (ce, mse, loss) = (scalar(ce), scalar(mse), scalar(loss));
        assert!(
            (fused.cross_entropy - ce).abs() <= tolerance * ce.abs(),
            "{} vs {ce}",
            fused.cross_entropy
        );
        assert!(
            (fused.mse - mse).abs() <= tolerance * mse.abs(),
            "{} vs {mse}",
            fused.mse
        );
        assert!((f64::from(values(fused.loss)[0]) - loss).abs() <= tolerance * loss.abs());
        let logit_err = relative(&values(logits.inner()), &values(fused.logits));
        assert!(
            logit_err < tolerance / 10.0,
            "logits differ by {logit_err:e}"
        );

        let plain = collect(&model, &plain);
        let fused = collect(&model, &fused.grads);
        let per_layer = if config.recurrence.learned { 5 } else { 4 };
        let expected = 2 * (2 * config.encoder.len() + 1) + per_layer * config.layers.len();
        assert_eq!(plain.len(), expected);
        for ((id, p), (_, f)) in plain.iter().zip(&fused) {
            let p = p.as_ref().expect("autodiff gradient");
            let f = f
                .as_ref()
                .unwrap_or_else(|| panic!("no fused gradient for {id}"));
            let err = relative(p, f);
            assert!(
                err < tolerance,
                "batch {batch}, layers {:?}: parameter {id} differs by {err:e}",
                config.layers
            );
        }
    }

    #[test]
    fn fused_static_step_equals_autodiff() {
        // The paper's two-layer model; a batch that splits unevenly over the cores.
        check(
            StaticClassifierConfig::new().with_recurrence(RecurrenceConfig::identity()),
            5,
            3,
            1e-5,
        );
        // Other widths, one layer, more classes.
        check(
            StaticClassifierConfig::new()
                .with_input(30)
                .with_encoder(vec![20, 11, 6])
                .with_layers(vec![9])
                .with_num_classes(4)
                .with_recurrence(RecurrenceConfig::identity()),
            13,
            5,
            1e-5,
        );
        // No ORGaNICs layer: the readout reads the code.
        check(
            StaticClassifierConfig::new()
                .with_input(16)
                .with_encoder(vec![8, 3])
                .with_layers(vec![])
                .with_recurrence(RecurrenceConfig::identity()),
            4,
            9,
            1e-5,
        );
    }

    /// Algorithm 1 (learned `W_r`): the fused forward pass and its backward pass through the
    /// unrolled iterations, `f32` LU against Burn's autodiff of the `f64`-inverse path.
    #[test]
    fn fused_learned_step_equals_autodiff() {
        // The paper's two-layer model with its ten iterations.
        check(StaticClassifierConfig::new(), 5, 3, 1e-4);
        // Other widths and iteration counts; one iteration; a batch split unevenly; the
        // authors' gate `1 − a`.
        for (iterations, seed, linear_gate) in [(3, 5, false), (1, 7, false), (4, 11, true)] {
            check(
                StaticClassifierConfig::new()
                    .with_input(30)
                    .with_encoder(vec![20, 11, 6])
                    .with_layers(vec![9, 7])
                    .with_recurrence(
                        RecurrenceConfig::new()
                            .with_iterations(iterations)
                            .with_linear_gate(linear_gate),
                    ),
                13,
                seed,
                1e-4,
            );
        }
    }

    #[test]
    fn fused_static_step_rejects_bad_input() {
        let device = Device::flex();
        let small = StaticClassifierConfig::new()
            .with_input(12)
            .with_encoder(vec![6, 4])
            .with_layers(vec![5]);
        let images = Tensor::<2>::ones([2, 12], &device);
        let labels = Tensor::<1, Int>::from_ints([0, 1], &device);
        let no_iterations = small
            .clone()
            .with_recurrence(RecurrenceConfig::new().with_iterations(0))
            .init(&device);
        assert!(matches!(
            no_iterations.fused_loss_and_grads(images.clone(), labels.clone()),
            Err(ModelError::Unsupported(_))
        ));
        let model = small
            .with_recurrence(RecurrenceConfig::identity())
            .init(&device);
        assert!(model.supports_fused_gradients() && !no_iterations.supports_fused_gradients());
        let wrong_width = Tensor::<2>::ones([2, 11], &device);
        assert!(matches!(
            model.fused_loss_and_grads(wrong_width, labels.clone()),
            Err(ModelError::Shape { .. })
        ));
        let three = Tensor::<1, Int>::from_ints([0, 1, 2], &device);
        assert!(matches!(
            model.fused_loss_and_grads(images.clone(), three),
            Err(ModelError::Shape { .. })
        ));
        for bad in [10, -1] {
            let labels = Tensor::<1, Int>::from_ints([0, bad], &device);
            assert_eq!(
                model.fused_loss_and_grads(images.clone(), labels).err(),
                Some(ModelError::Label {
                    label: bad,
                    classes: 10
                })
            );
        }
    }
}
