//! Batchers: images to tensors on a device, in the three views of the paper.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

use crate::dataset::DigitItem;
use crate::idx::{PIXELS, SIDE};

/// A batch of static images: `images` `[B, 784]` in [0, 1], `targets` `[B]`.
#[derive(Debug, Clone)]
pub struct StaticBatch {
    /// Pixels scaled to [0, 1].
    pub images: Tensor<2>,
    /// Classes.
    pub targets: Tensor<1, Int>,
}

/// A batch of pixel sequences: `inputs` `[B, seq, features]` in [0, 1], `targets` `[B]`.
#[derive(Debug, Clone)]
pub struct SequenceBatch {
    /// Pixels scaled to [0, 1], one time step per row.
    pub inputs: Tensor<3>,
    /// Classes.
    pub targets: Tensor<1, Int>,
}

/// The order in which a sequence model sees an image.
#[derive(Debug, Clone, PartialEq)]
pub enum PixelOrder {
    /// One pixel a step in scan-line order: `[B, 784, 1]` (sMNIST).
    ScanLine,
    /// One pixel a step in a fixed permuted order: `[B, 784, 1]` (psMNIST).
    Permuted(Arc<Vec<usize>>),
    /// One row a step: `[B, 28, 28]` (a cheap variant).
    Rows,
}

fn targets(items: &[DigitItem], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = items.iter().map(|i| i64::from(i.label)).collect();
    Tensor::from_data(TensorData::new(labels, [items.len()]), device)
}

/// Batches images as `[B, 784]`.
#[derive(Debug, Clone, Default)]
pub struct StaticBatcher;

impl Batcher<DigitItem, StaticBatch> for StaticBatcher {
    fn batch(&self, items: Vec<DigitItem>, device: &Device) -> StaticBatch {
        let pixels: Vec<f32> = items
            .iter()
            .flat_map(|i| i.pixels.iter().map(|&p| f32::from(p) / 255.0))
            .collect();
        StaticBatch {
            images: Tensor::from_data(TensorData::new(pixels, [items.len(), PIXELS]), device),
            targets: targets(&items, device),
        }
    }
}

/// Batches images as pixel sequences in a [`PixelOrder`].
#[derive(Debug, Clone)]
pub struct SequenceBatcher {
    /// The order of presentation.
    pub order: PixelOrder,
}

impl Batcher<DigitItem, SequenceBatch> for SequenceBatcher {
    fn batch(&self, items: Vec<DigitItem>, device: &Device) -> SequenceBatch {
        let scale = |p: u8| f32::from(p) / 255.0;
        let pixels: Vec<f32> = match &self.order {
            PixelOrder::Permuted(perm) => items
                .iter()
                .flat_map(|i| perm.iter().map(|&k| scale(i.pixels[k])))
                .collect(),
            _ => items
                .iter()
                .flat_map(|i| i.pixels.iter().map(|&p| scale(p)))
                .collect(),
        };
        let shape = match self.order {
            PixelOrder::Rows => [items.len(), SIDE, SIDE],
            _ => [items.len(), PIXELS, 1],
        };
        SequenceBatch {
            inputs: Tensor::from_data(TensorData::new(pixels, shape), device),
            targets: targets(&items, device),
        }
    }
}
