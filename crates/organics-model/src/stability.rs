//! Stability tools: the eigenvalue of a Jacobian with the largest real part.
//!
//! A fixed point of the circuit is locally asymptotically stable when every eigenvalue of
//! the Jacobian there (see [`Circuit::jacobian`](crate::circuit::Circuit::jacobian)) has a
//! negative real part. The Jacobians are small (2n x 2n), so they are handled on the host in
//! `f64` with nalgebra's real Schur decomposition.

use nalgebra::DMatrix;

use crate::circuit::{Circuit, CircuitState};
use crate::error::ModelError;

/// An eigenvalue `re + i·im`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eigenvalue {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

/// All eigenvalues of a square matrix.
pub fn eigenvalues(m: &DMatrix<f64>) -> Result<Vec<Eigenvalue>, ModelError> {
    let n = m.nrows();
    let schur = m
        .clone()
        .try_schur(f64::EPSILON, 10_000)
        .ok_or(ModelError::EigenNoConvergence(n))?;
    Ok(schur
        .complex_eigenvalues()
        .iter()
        .map(|c| Eigenvalue { re: c.re, im: c.im })
        .collect())
}

/// The eigenvalue with the largest real part.
pub fn leading_eigenvalue(m: &DMatrix<f64>) -> Result<Eigenvalue, ModelError> {
    let all = eigenvalues(m)?;
    all.into_iter()
        .max_by(|a, b| a.re.total_cmp(&b.re))
        .ok_or(ModelError::EigenNoConvergence(0))
}

/// The largest real part of the Jacobian's eigenvalues of `circuit` at `state`: negative
/// means the state, if it is a fixed point, is locally asymptotically stable.
///
/// ```
/// use organics_model::{Circuit, SplitMix64, stability::max_real_eigenvalue};
///
/// let mut rng = SplitMix64::new(1);
/// let circuit = Circuit::random(10, None, &mut rng); // W_r = I
/// let fixed_point = circuit.closed_form_fixed_point();
/// assert!(max_real_eigenvalue(&circuit, &fixed_point).unwrap() < 0.0);
/// ```
pub fn max_real_eigenvalue(circuit: &Circuit, state: &CircuitState) -> Result<f64, ModelError> {
    Ok(leading_eigenvalue(&circuit.jacobian(state))?.re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenvalues_of_known_matrices() {
        // rotation-scaling block: eigenvalues -1 ± 2i; and a diagonal entry 3
        let m = DMatrix::from_row_slice(3, 3, &[-1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 0.0, 0.0, 3.0]);
        let lead = leading_eigenvalue(&m).expect("converges");
        assert!((lead.re - 3.0).abs() < 1e-12 && lead.im.abs() < 1e-12);
        let mut all = eigenvalues(&m).expect("converges");
        all.sort_by(|a, b| a.im.total_cmp(&b.im));
        assert!((all[0].re + 1.0).abs() < 1e-12 && (all[0].im + 2.0).abs() < 1e-12);
        // similarity transform keeps the spectrum
        let p = DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 0.5, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0]);
        let p_inv = p.clone().try_inverse().expect("invertible");
        let lead2 = leading_eigenvalue(&(&p * &m * p_inv)).expect("converges");
        assert!((lead2.re - 3.0).abs() < 1e-9);
    }
}
