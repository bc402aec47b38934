//! The stability of a trained [`FixedPointLayer`]: each sample's fixed point as a host
//! [`Circuit`] and the largest real part of its Jacobian's eigenvalues.

use burn::prelude::*;
use burn::tensor::activation;
use nalgebra::{DMatrix, DVector};

use super::circuit::{Circuit, CircuitState};
use super::stability::max_real_eigenvalue;
use crate::error::ModelError;
use crate::fixed_point::FixedPointLayer;
use crate::host::{to_f64, to_matrix};
use crate::kernels::threads::par_map;

impl FixedPointLayer {
    /// The host circuits of each sample (main model, `τ_y = τ_a = 1`), for stability analysis
    /// of the layer's fixed points with [`super::stability`].
    pub fn circuits(&self, input: Tensor<2>) -> Result<Vec<Circuit>, ModelError> {
        let [batch, _] = input.dims();
        let n = self.size();
        let (z, b1) = self.input_terms(input);
        let (z, b1) = (to_f64(z)?, to_f64(b1)?);
        let b0 = DVector::from_vec(to_f64(activation::sigmoid(self.beta0.val()))?);
        let w = to_matrix(self.log_w.val().exp())?;
        let w_r = match self.recurrence() {
            None => DMatrix::identity(n, n),
            Some(w_r) => to_matrix(w_r?)?,
        };
        Ok((0..batch)
            .map(|i| Circuit {
                w_r: w_r.clone(),
                w: w.clone(),
                sigma: DVector::from_element(n, self.sigma),
                b0: b0.clone(),
                b1: DVector::from_row_slice(&b1[i * n..(i + 1) * n]),
                tau_y: DVector::from_element(n, 1.0),
                tau_a: DVector::from_element(n, 1.0),
                z: DVector::from_row_slice(&z[i * n..(i + 1) * n]),
                rectified: false,
            })
            .collect())
    }

    /// For each sample, the largest real part of the Jacobian's eigenvalues at the layer's
    /// fixed point (negative: stable).
    ///
    /// ```
    /// use burn::prelude::*;
    /// use organics_model::{FixedPointLayerConfig, RecurrenceConfig};
    ///
    /// let device = Device::flex();
    /// let layer = FixedPointLayerConfig::new(10, 6)
    ///     .with_recurrence(RecurrenceConfig::identity())
    ///     .init(&device);
    /// let leading = layer.max_real_eigenvalues(Tensor::ones([3, 10], &device)).unwrap();
    /// assert!(leading.iter().all(|&re| re < 0.0)); // W_r = I: always stable (Theorem 4.1)
    /// ```
    pub fn max_real_eigenvalues(&self, input: Tensor<2>) -> Result<Vec<f64>, ModelError> {
        let fp = self.try_fixed_point(input.clone())?;
        let n = self.size();
        let (y, a) = (to_f64(fp.y)?, to_f64(fp.a)?);
        let samples: Vec<(Circuit, CircuitState)> = self
            .circuits(input)?
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let state = CircuitState {
                    y: DVector::from_row_slice(&y[i * n..(i + 1) * n]),
                    a: DVector::from_row_slice(&a[i * n..(i + 1) * n]),
                };
                (c, state)
            })
            .collect();
        par_map(&samples, |(c, state)| max_real_eigenvalue(c, state))
            .into_iter()
            .collect()
    }
}
