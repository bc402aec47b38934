//! Moving small tensors between a Burn device and nalgebra on the host.

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::error::ModelError;

/// Values of a tensor as `f32`, row-major.
pub(crate) fn to_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Values of a tensor as `f64`, row-major.
pub(crate) fn to_f64<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f64>, ModelError> {
    Ok(to_f32(tensor)?.into_iter().map(f64::from).collect())
}

/// A 2-D tensor as an nalgebra matrix.
pub(crate) fn to_matrix(tensor: Tensor<2>) -> Result<DMatrix<f64>, ModelError> {
    let [rows, cols] = tensor.dims();
    Ok(DMatrix::from_row_slice(rows, cols, &to_f64(tensor)?))
}

/// Row-major `f32` values as a tensor on `device`.
pub(crate) fn from_f32<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Row-major `f64` values as a tensor on `device`.
pub(crate) fn from_f64<const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    from_f32(values.iter().map(|&v| v as f32).collect(), shape, device)
}

/// An nalgebra matrix as a 2-D tensor on `device`.
pub(crate) fn from_matrix(m: &DMatrix<f64>, device: &Device) -> Tensor<2> {
    let rows: Vec<f64> = m.transpose().as_slice().to_vec();
    from_f64(&rows, [m.nrows(), m.ncols()], device)
}
