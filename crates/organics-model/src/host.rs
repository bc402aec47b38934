//! Moving small tensors between a Burn device and nalgebra on the host, and reading a
//! tensor's values in place where its backend keeps them in host memory.

use std::ops::Deref;

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::error::ModelError;

/// The `f32` values of a tensor, row-major: borrowed from the tensor's own memory where
/// that can be done safely (a contiguous `f32` tensor of Burn's flex backend, with this
/// crate's `flex` feature), a copy otherwise.
///
/// Reading a tensor that a module still holds through `into_data` copies its values three
/// times on flex (to a byte vector, to an aligned buffer, then to a `Vec<f32>`); the fused
/// static step reads every parameter each step, 0.4 ms of a 4.6 ms step before this view
/// (docs/SPEED.md).
#[derive(Clone)]
pub(crate) struct HostValues(Values);

#[derive(Clone)]
enum Values {
    Owned(Vec<f32>),
    /// The flex tensor, kept alive, and where its values lie in its bytes.
    #[cfg(feature = "flex")]
    Flex {
        tensor: burn::backend::flex::FlexTensor,
        start: usize,
        len: usize,
    },
}

impl HostValues {
    /// The values of `tensor` (which must be a float tensor; an autodiff tensor's values).
    pub(crate) fn of<const D: usize>(tensor: Tensor<D>) -> Result<Self, ModelError> {
        let tensor = tensor.inner();
        #[cfg(feature = "flex")]
        if let Some(values) = Self::in_place(tensor.clone()) {
            return Ok(values);
        }
        to_f32(tensor).map(Self::from)
    }

    /// A view of a contiguous `f32` flex tensor whose values are aligned for `f32`.
    #[cfg(feature = "flex")]
    fn in_place<const D: usize>(tensor: Tensor<D>) -> Option<Self> {
        use burn::backend::Flex;
        use burn::tensor::DType;
        let len = tensor.shape().num_elements();
        let tensor = tensor.try_into_primitive::<Flex>().ok()?;
        let layout = tensor.layout();
        if tensor.dtype() != DType::F32 || !layout.is_contiguous() {
            return None;
        }
        let start = layout.start_offset();
        let size = std::mem::size_of::<f32>();
        let bytes = tensor.bytes().get(start * size..(start + len) * size)?;
        // The same check `Deref` relies on: the cast cannot fail there once it passes here.
        bytemuck::try_cast_slice::<u8, f32>(bytes).ok()?;
        Some(HostValues(Values::Flex { tensor, start, len }))
    }

    /// Whether the values are read in place (for tests).
    #[cfg(test)]
    pub(crate) fn is_borrowed(&self) -> bool {
        !matches!(self.0, Values::Owned(_))
    }
}

impl From<Vec<f32>> for HostValues {
    fn from(values: Vec<f32>) -> Self {
        HostValues(Values::Owned(values))
    }
}

impl Deref for HostValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Values::Owned(v) => v,
            #[cfg(feature = "flex")]
            Values::Flex { tensor, start, len } => {
                let size = std::mem::size_of::<f32>();
                bytemuck::cast_slice(&tensor.bytes()[start * size..(start + len) * size])
            }
        }
    }
}

impl std::fmt::Debug for HostValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostValues")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Every way of reading gives the tensor's values in row-major order: in place for a
    /// contiguous flex tensor (with or without autodiff), copied for a view that is not
    /// contiguous and on other backends.
    #[test]
    fn host_values_equal_the_tensors_values() {
        #[allow(deprecated)]
        let ndarray = Device::ndarray();
        for device in [Device::flex(), Device::flex().autodiff(), ndarray] {
            let t = Tensor::<2>::random([7, 5], Distribution::Normal(0.0, 1.0), &device);
            let expected = to_f32(t.clone()).expect("f32");
            let values = HostValues::of(t.clone()).expect("values");
            assert_eq!(&*values, &expected[..]);
            let on_flex = device.clone().inner() == Device::flex().inner();
            assert_eq!(values.is_borrowed(), cfg!(feature = "flex") && on_flex);
            // The tensor held by someone else (a module's parameter) is still read in place,
            // and the view outlives the caller's handle.
            let kept = t.clone();
            let view = HostValues::of(t).expect("values");
            drop(kept);
            assert_eq!(&*view, &expected[..]);

            // Rows 2..5: contiguous at an offset.
            let rows = Tensor::<2>::from_data(TensorData::new(expected.clone(), [7, 5]), &device)
                .slice([2..5, 0..5]);
            assert_eq!(&*HostValues::of(rows).expect("rows"), &expected[10..25]);
            // A transposed view: copied in row-major order of the transpose.
            let t = Tensor::<2>::from_data(TensorData::new(expected.clone(), [7, 5]), &device);
            let transposed = HostValues::of(t.transpose()).expect("transpose");
            assert!(!transposed.is_borrowed());
            let want: Vec<f32> = (0..5)
                .flat_map(|j| (0..7).map(move |i| (i, j)))
                .map(|(i, j)| expected[i * 5 + j])
                .collect();
            assert_eq!(&*transposed, &want[..]);
        }
    }
}
