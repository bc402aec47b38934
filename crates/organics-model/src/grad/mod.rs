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
