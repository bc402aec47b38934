//! Stability tools: the eigenvalue of a Jacobian with the largest real part.
//!
//! A fixed point of the circuit is locally asymptotically stable when every eigenvalue of
//! the Jacobian there (see [`Circuit::jacobian`](super::circuit::Circuit::jacobian)) has a
//! negative real part. The Jacobians are small (2n x 2n), so they are handled on the host in
//! `f64` with nalgebra's real Schur decomposition.

use nalgebra::DMatrix;

use super::circuit::{Circuit, CircuitState};
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
    // nalgebra's shifted QR has no exceptional shifts and often stalls when it deflates at
    // machine precision on the Jacobians of trained layers (seen at 128 x 128 and 256 x 256;
    // balancing or a random orthogonal similarity did not help). Deflating at 1e-10 relative
    // converges in a few sweeps per eigenvalue; on a stalled 128 x 128 case the leading
    // eigenvalue it gave left M - λI with a smallest singular value of 8e-13, far below any
    // stability margin. The looser retry only guards a stall at that tolerance too.
    let sweeps = 30 * n.max(10);
    let schur = [1e-10, 1e-8]
        .iter()
        .find_map(|&eps| m.clone().try_schur(eps, sweeps))
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
/// use organics_model::analysis::{Circuit, SplitMix64, max_real_eigenvalue};
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

    /// Smallest singular value of `M − λI`, through the real embedding of the complex
    /// matrix: zero exactly when `λ` is an eigenvalue.
    fn distance_to_singular(m: &DMatrix<f64>, l: Eigenvalue) -> f64 {
        let n = m.nrows();
        let mut big = DMatrix::<f64>::zeros(2 * n, 2 * n);
        for i in 0..n {
            for j in 0..n {
                let v = m[(i, j)] - if i == j { l.re } else { 0.0 };
                big[(i, j)] = v;
                big[(i + n, j + n)] = v;
            }
            big[(i, i + n)] = l.im;
            big[(i + n, i)] = -l.im;
        }
        big.singular_values().min()
    }

    #[test]
    fn leading_eigenvalues_of_circuit_jacobians_are_eigenvalues() {
        let mut rng = crate::analysis::SplitMix64::new(5);
        for (n, norm) in [(32, None), (48, Some(1.0)), (64, None)] {
            let c = Circuit::random(n, norm, &mut rng);
            let fp = match norm {
                None => c.closed_form_fixed_point(),
                Some(_) => c.algorithm1(30).unwrap().pop().unwrap(),
            };
            let j = c.jacobian(&fp);
            let lead = leading_eigenvalue(&j).unwrap();
            assert!(distance_to_singular(&j, lead) < 1e-9, "n = {n}: {lead:?}");
            // the spectrum's sum is the trace
            let sum: f64 = eigenvalues(&j).unwrap().iter().map(|e| e.re).sum();
            assert!((sum - j.trace()).abs() < 1e-8 * j.trace().abs().max(1.0));
        }
    }
}
