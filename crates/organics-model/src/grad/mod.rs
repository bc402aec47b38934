//! Hand-derived gradients and their bridges to Burn's autodiff.
//!
//! The models compute their gradients without an autodiff graph (derivations in each
//! file) and hand them back to Burn as autodiff gradients of the parameters, through a
//! surrogate loss `Σ ⟨tracked, ḡ⟩` whose own gradient is exactly `ḡ`:
//!
//! - [`sequence`]: backpropagation through time for [`OrganicsRnn`](crate::OrganicsRnn)
//!   ([`RecordedSequence`]), on Burn tensor ops or the fused CPU kernel ([`BpttKernel`]);
//! - [`static_step`]: a [`StaticClassifier`](crate::StaticClassifier)'s loss and gradients
//!   ([`StaticLossGrads`]), on the fused CPU kernel;
//! - [`lstm`]: backpropagation through time for Burn's `nn::Lstm`, the sequence baseline
//!   ([`RecordedLstm`]), on a fused CPU kernel of its own.

pub mod lstm;
pub mod sequence;
pub mod static_step;

pub use lstm::RecordedLstm;
pub use sequence::{BpttKernel, RecordedSequence};
pub use static_step::StaticLossGrads;

/// What the tests of the gradient bridges share: every parameter's gradient read back, and
/// the distance between two of them.
#[cfg(test)]
pub(crate) mod test_support {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use burn::prelude::*;
    use burn::tensor::Gradients;

    struct Collect<'a> {
        grads: &'a Gradients,
        out: Vec<(ParamId, Vec<f32>)>,
    }

    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                let v = g
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32");
                self.out.push((param.id, v));
            }
        }
    }

    /// Every float parameter of `module` that has a gradient in `grads`: its id and values.
    pub(crate) fn grads_of<M: Module>(module: &M, grads: &Gradients) -> Vec<(ParamId, Vec<f32>)> {
        let mut c = Collect {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut c);
        c.out
    }

    /// `‖a − b‖ / ‖a‖`, for two vectors of the same length.
    pub(crate) fn relative(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len(), "lengths");
        let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
        (diff / norm.max(1e-30)).sqrt()
    }
}
