//! The images and labels of a data set in memory, its splits, and the Burn `Dataset` view.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;
use crate::idx::{PIXELS, read_images, read_labels};
use crate::source::{DataFiles, DataSource};

/// One image and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct DigitItem {
    /// 784 pixels, row-major, 0..=255.
    pub pixels: Vec<u8>,
    /// Class 0..=9.
    pub label: u8,
}

/// A set of images, shared cheaply between clones; `indices` selects and orders them.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pixels: Arc<Vec<u8>>,
    labels: Arc<Vec<u8>>,
    indices: Arc<Vec<usize>>,
}

impl ImageSet {
    /// A set from raw pixels (`count * 784`) and labels (`count`).
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        if pixels.len() != labels.len() * PIXELS {
            return Err(DataError::Invalid(format!(
                "{} pixels do not make {} images of {PIXELS}",
                pixels.len(),
                labels.len()
            )));
        }
        let indices = (0..labels.len()).collect();
        Ok(Self {
            pixels: Arc::new(pixels),
            labels: Arc::new(labels),
            indices: Arc::new(indices),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let k = self.indices[i];
        &self.pixels[k * PIXELS..(k + 1) * PIXELS]
    }

    /// The label of image `i`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[self.indices[i]]
    }

    /// Images per class.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for i in 0..self.len() {
            counts[usize::from(self.label(i)).min(9)] += 1;
        }
        counts
    }

    /// The indices into the underlying file that this set holds, in order.
    pub fn source_indices(&self) -> &[usize] {
        &self.indices
    }

    fn select(&self, indices: Vec<usize>) -> Self {
        Self {
            pixels: self.pixels.clone(),
            labels: self.labels.clone(),
            indices: Arc::new(indices),
        }
    }

    /// Images `start..end` of this set (clamped to its length).
    pub fn range(&self, start: usize, end: usize) -> Self {
        let end = end.min(self.len());
        self.select(self.indices[start.min(end)..end].to_vec())
    }

    /// The first `limit` images (all when `None` or larger than the set).
    pub fn limit(&self, limit: Option<usize>) -> Self {
        match limit {
            Some(l) if l < self.len() => self.select(self.indices[..l].to_vec()),
            _ => self.clone(),
        }
    }

    /// A seeded, deterministic split into `(train, valid)` with `valid` images held out.
    pub fn split(&self, valid: usize, seed: u64) -> Result<(Self, Self), DataError> {
        if valid == 0 || valid >= self.len() {
            return Err(DataError::Invalid(format!(
                "validation size {valid} must be between 1 and {} (the set has {} images)",
                self.len().saturating_sub(1),
                self.len()
            )));
        }
        let mut order = self.indices.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let held_out = order.split_off(self.len() - valid);
        Ok((self.select(order), self.select(held_out)))
    }
}

impl Dataset<DigitItem> for ImageSet {
    fn get(&self, index: usize) -> Result<DigitItem, DatasetError> {
        if index >= self.len() {
            return Err(DatasetError::new(DataError::Invalid(format!(
                "index {index} out of range for {} images",
                self.len()
            ))));
        }
        Ok(DigitItem {
            pixels: self.image(index).to_vec(),
            label: self.label(index),
        })
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

/// Training and test sets of an IDX data set.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The 60,000 training images.
    pub train: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
}

/// Images of the standard training split (MNIST and Fashion-MNIST).
pub const TRAIN_SIZE: usize = 60_000;
/// Images of the standard test split.
pub const TEST_SIZE: usize = 10_000;

/// Validation images held out of the training set (paper: 57,000 / 3,000).
pub const VALID_SIZE: usize = 3_000;

fn read_set(images: &std::path::Path, labels: &std::path::Path) -> Result<ImageSet, DataError> {
    let pixels = read_images(images)?;
    let label_bytes = read_labels(labels)?;
    if pixels.len() / PIXELS != label_bytes.len() {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            image_count: pixels.len() / PIXELS,
            labels: labels.to_path_buf(),
            label_count: label_bytes.len(),
        });
    }
    ImageSet::new(pixels, label_bytes)
}

impl Mnist {
    /// Reads the four files.
    pub fn from_files(files: &DataFiles) -> Result<Self, DataError> {
        Ok(Self {
            train: read_set(&files.train_images, &files.train_labels)?,
            test: read_set(&files.test_images, &files.test_labels)?,
        })
    }

    /// Finds (or downloads) and reads the data set, and refuses a training or test file that
    /// has exactly the other split's standard size (MNIST and Fashion-MNIST: 60,000 and
    /// 10,000), the mark of one file copied over the other. Smaller custom sets pass.
    pub fn load(source: &DataSource) -> Result<Self, DataError> {
        Self::load_files(&source.locate()?)
    }

    /// [`Mnist::from_files`] with [`Mnist::load`]'s check of each file's role.
    pub fn load_files(files: &DataFiles) -> Result<Self, DataError> {
        let data = Self::from_files(files)?;
        let checks = [
            (
                &files.train_images,
                data.train.len(),
                "training",
                TEST_SIZE,
                "test",
            ),
            (
                &files.test_images,
                data.test.len(),
                "test",
                TRAIN_SIZE,
                "training",
            ),
        ];
        for (path, count, role, other_size, other) in checks {
            if count == other_size {
                return Err(DataError::WrongRole {
                    path: path.clone(),
                    count,
                    role,
                    other,
                });
            }
        }
        Ok(data)
    }
}
