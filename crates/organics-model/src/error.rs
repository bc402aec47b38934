//! Errors of the model crate.

/// What can go wrong in the model crate.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// A per-sample linear system `I − D(1 − √a) W_r` of the fixed-point iteration is singular.
    #[error("the fixed-point linear system I - D(1 - sqrt(a)) W_r is singular for sample {sample}")]
    SingularSystemAt {
        /// Index of the sample in the batch.
        sample: usize,
    },
    /// A linear system of the host reference circuit is singular.
    #[error("the fixed-point linear system I - D(1 - sqrt(a)) W_r is singular")]
    SingularSystem,
    /// The eigenvalue iteration did not converge.
    #[error("the eigenvalue (Schur) iteration did not converge for a {0} x {0} matrix")]
    EigenNoConvergence(usize),
    /// A tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// Reading tensor values back to the host failed.
    #[error("reading tensor data back to the host failed: {0}")]
    Data(String),
    /// A class label outside `0..classes`.
    #[error("label {label} is not a class index (expected 0..{classes})")]
    Label {
        /// The label received.
        label: i64,
        /// Number of classes.
        classes: usize,
    },
    /// The operation does not apply to this model.
    #[error("{0}")]
    Unsupported(String),
}
