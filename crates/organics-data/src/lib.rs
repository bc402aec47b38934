#![warn(missing_docs)]
//! # organics-data
//!
//! MNIST and Fashion-MNIST for the ORGaNICs experiments: a validating IDX reader (raw or
//! gzip), file discovery (the repository's own copy of MNIST first) and download
//! ([`DataSource`]), the seeded 57,000 / 3,000 split,
//! and batchers for the three views of the paper: static images `[B, 784]`, pixel
//! sequences `[B, 784, 1]` in scan-line or permuted order, and rows `[B, 28, 28]`.

pub mod batcher;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod loader;
pub mod permutation;
pub mod source;

pub use batcher::{PixelOrder, SequenceBatch, SequenceBatcher, StaticBatch, StaticBatcher};
pub use dataset::{DigitItem, ImageSet, Mnist, TEST_SIZE, TRAIN_SIZE, VALID_SIZE};
pub use error::DataError;
pub use idx::{CLASSES, PIXELS};
pub use loader::EpochLoader;
pub use permutation::pixel_permutation;
pub use source::{DATA_DIR_ENV, DataFiles, DataSource, DatasetName, Unrecognised};
