//! A data loader whose shuffle is a function of (seed, epoch) alone.
//!
//! Burn's shuffling loader draws each epoch's order from one running generator, and forks it
//! when the Learner moves the loader to its device; a run resumed at epoch k therefore sees
//! other orders than the uninterrupted run. Here epoch e's order is drawn from a ChaCha8
//! stream numbered e, so a resumed run sees exactly the batches it would have seen.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{DigitItem, ImageSet};

/// Batches an [`ImageSet`] in order, or shuffled per epoch from a seed.
pub struct EpochLoader<B> {
    set: ImageSet,
    batcher: Arc<B>,
    batch_size: usize,
    device: Device,
    shuffle: Option<u64>,
    /// The epoch the next pass over the data belongs to (1-based); shared by device copies.
    next_epoch: Arc<AtomicUsize>,
}

impl<B> EpochLoader<B> {
    /// A loader over `set` in batches of `batch_size` (at least 1) on `device`.
    pub fn new(set: ImageSet, batcher: B, batch_size: usize, device: Device) -> Self {
        Self {
            set,
            batcher: Arc::new(batcher),
            batch_size: batch_size.max(1),
            device,
            shuffle: None,
            next_epoch: Arc::new(AtomicUsize::new(1)),
        }
    }

    /// Shuffle each epoch with an order drawn from `(seed, epoch)`.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// The first pass over the data is epoch `epoch` (for resumed runs).
    pub fn starting_at_epoch(self, epoch: usize) -> Self {
        self.next_epoch.store(epoch.max(1), Ordering::SeqCst);
        self
    }

    /// The order of the items in `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        if let Some(seed) = self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(epoch as u64);
            order.shuffle(&mut rng);
        }
        order
    }

    fn copy(&self, set: ImageSet, device: Device) -> Self {
        Self {
            set,
            batcher: self.batcher.clone(),
            batch_size: self.batch_size,
            device,
            shuffle: self.shuffle,
            next_epoch: self.next_epoch.clone(),
        }
    }
}

struct EpochIter<'a, B, O> {
    loader: &'a EpochLoader<B>,
    order: Vec<usize>,
    position: usize,
    output: PhantomData<fn() -> O>,
}

impl<B, O> Iterator for EpochIter<'_, B, O>
where
    B: Batcher<DigitItem, O>,
{
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.order.len() {
            return None;
        }
        let end = (self.position + self.loader.batch_size).min(self.order.len());
        let items: Result<Vec<DigitItem>, DatasetError> = self.order[self.position..end]
            .iter()
            .map(|&i| self.loader.set.get(i))
            .collect();
        self.position = end;
        Some(items.map(|items| self.loader.batcher.batch(items, &self.loader.device)))
    }
}

impl<B, O> DataLoaderIterator<O> for EpochIter<'_, B, O>
where
    B: Batcher<DigitItem, O>,
{
    fn progress(&self) -> Progress {
        Progress::new(self.position, self.order.len(), Some("items".to_string()))
    }
}

impl<B, O> DataLoader<O> for EpochLoader<B>
where
    B: Batcher<DigitItem, O> + 'static,
    O: 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        Box::new(EpochIter {
            loader: self,
            order: self.order(epoch),
            position: 0,
            output: PhantomData,
        })
    }

    fn num_items(&self) -> usize {
        self.set.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.copy(self.set.clone(), device.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.copy(self.set.range(start, end), self.device.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batcher::StaticBatcher;

    fn set(n: usize) -> ImageSet {
        ImageSet::new(vec![0; n * 784], (0..n).map(|i| (i % 10) as u8).collect()).expect("valid")
    }

    #[test]
    fn orders_depend_on_seed_and_epoch_only() {
        let a = EpochLoader::new(set(50), StaticBatcher, 8, Device::flex()).shuffled(3);
        let b = EpochLoader::new(set(50), StaticBatcher, 8, Device::flex())
            .shuffled(3)
            .starting_at_epoch(2);
        assert_ne!(a.order(1), a.order(2));
        assert_ne!(a.order(1), (0..50).collect::<Vec<_>>());
        // a resumed loader's first pass is the uninterrupted loader's second
        let first_a = DataLoader::<crate::StaticBatch>::iter(&a).count();
        assert_eq!(first_a, 7);
        let sizes: Vec<usize> = DataLoader::<crate::StaticBatch>::iter(&a)
            .map(|r| r.expect("batch").targets.dims()[0])
            .collect();
        let resumed: Vec<usize> = DataLoader::<crate::StaticBatch>::iter(&b)
            .map(|r| r.expect("batch").targets.dims()[0])
            .collect();
        assert_eq!(sizes, resumed);
        assert_eq!(b.order(2), a.order(2));
        let unshuffled = EpochLoader::new(set(5), StaticBatcher, 2, Device::flex());
        assert_eq!(unshuffled.order(4), vec![0, 1, 2, 3, 4]);
    }
}
