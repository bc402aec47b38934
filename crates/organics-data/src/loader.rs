//! A data loader whose shuffle is a function of (seed, epoch) alone.
//!
//! Burn's shuffling loader draws each epoch's order from one running generator, and forks it
//! when the Learner moves the loader to its device; a run resumed at epoch k therefore sees
//! other orders than the uninterrupted run. Here epoch e's order is drawn from a ChaCha8
//! stream numbered e, so a resumed run sees exactly the batches it would have seen.
//!
//! For training on several devices ([`EpochLoader::split_for_devices`]) the loader is cut
//! into one part per device by batch rather than by item range: part `i` of `N` yields the
//! batches `i, i + N, i + 2N, …` of the epoch's one order, so the `N` batches that the
//! devices train on together in step `k` are the epoch's items `[kNB, (k+1)NB)`, exactly one
//! device's batch `k` at batch size `NB`. The parts take whole global batches only: the
//! epoch's last `len mod NB` items (a different few each epoch) are left out.

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
    /// The devices the loader is split over, and which of them this part feeds (`None`:
    /// the whole loader, before the split).
    parts: usize,
    part: Option<usize>,
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
            parts: 1,
            part: None,
        }
    }

    /// The loader is to be split over `parts` devices (by Burn's `split_dataloader`, which
    /// slices it into equal item ranges): each slice becomes the part of the range's index,
    /// which yields every `parts`-th batch of the whole epoch, starting at its index.
    pub fn split_for_devices(mut self, parts: usize) -> Self {
        self.parts = parts.max(1);
        self
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
            parts: self.parts,
            part: self.part,
        }
    }

    /// The item ranges (into the epoch's order) of this part's batches. A part takes only
    /// whole global batches (`parts` full batches): the epoch's last `len mod (parts · B)`
    /// items, a different few each epoch, are left out, so every step averages `parts`
    /// batches of `B` items alike.
    fn batches(&self) -> Vec<(usize, usize)> {
        let len = self.set.len();
        let (first, every, count) = match self.part {
            None => (0, 1, len.div_ceil(self.batch_size)),
            Some(part) => (
                part,
                self.parts,
                len / (self.batch_size * self.parts) * self.parts,
            ),
        };
        (0..count)
            .skip(first)
            .step_by(every)
            .map(|j| (j * self.batch_size, ((j + 1) * self.batch_size).min(len)))
            .collect()
    }
}

struct EpochIter<'a, B, O> {
    loader: &'a EpochLoader<B>,
    order: Vec<usize>,
    batches: Vec<(usize, usize)>,
    next: usize,
    /// Items yielded so far, and in all of this part's batches.
    done: usize,
    total: usize,
    output: PhantomData<fn() -> O>,
}

impl<B, O> Iterator for EpochIter<'_, B, O>
where
    B: Batcher<DigitItem, O>,
{
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let &(start, end) = self.batches.get(self.next)?;
        self.next += 1;
        let items: Result<Vec<DigitItem>, DatasetError> = self.order[start..end]
            .iter()
            .map(|&i| self.loader.set.get(i))
            .collect();
        self.done += end - start;
        Some(items.map(|items| self.loader.batcher.batch(items, &self.loader.device)))
    }
}

impl<B, O> DataLoaderIterator<O> for EpochIter<'_, B, O>
where
    B: Batcher<DigitItem, O>,
{
    fn progress(&self) -> Progress {
        Progress::new(self.done, self.total, Some("items".to_string()))
    }
}

impl<B, O> DataLoader<O> for EpochLoader<B>
where
    B: Batcher<DigitItem, O> + 'static,
    O: 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        let batches = self.batches();
        let total = batches.iter().map(|(start, end)| end - start).sum();
        Box::new(EpochIter {
            loader: self,
            order: self.order(epoch),
            batches,
            next: 0,
            done: 0,
            total,
            output: PhantomData,
        })
    }

    fn num_items(&self) -> usize {
        match self.part {
            None => self.set.len(),
            Some(_) => self.batches().iter().map(|(start, end)| end - start).sum(),
        }
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.copy(self.set.clone(), device.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        if self.parts == 1 {
            return Arc::new(self.copy(self.set.range(start, end), self.device.clone()));
        }
        // Split for devices: the part whose equal share of the items starts at `start`, over
        // the whole set, with an epoch counter of its own (each part takes every epoch once).
        let share = (self.set.len() / self.parts).max(1);
        let part = (start / share).min(self.parts - 1);
        Arc::new(EpochLoader {
            part: Some(part),
            next_epoch: Arc::new(AtomicUsize::new(self.next_epoch.load(Ordering::SeqCst))),
            ..self.copy(self.set.clone(), self.device.clone())
        })
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

    /// The labels of each batch of a pass over `loader`.
    fn labels(loader: &dyn DataLoader<crate::StaticBatch>) -> Vec<Vec<i64>> {
        loader
            .iter()
            .map(|r| {
                let t = r.expect("batch").targets;
                t.into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .expect("i64")
            })
            .collect()
    }

    #[test]
    fn a_split_for_devices_deals_the_batches_of_one_order_in_turn() {
        // Labels 0..23 identify the items; 23 items in batches of 4: 6 batches, the last short.
        let set =
            ImageSet::new(vec![0; 23 * 784], (0..23).map(|i| i as u8).collect()).expect("valid");
        let whole = EpochLoader::new(set.clone(), StaticBatcher, 4, Device::flex())
            .shuffled(9)
            .starting_at_epoch(3);
        let split = EpochLoader::new(set, StaticBatcher, 4, Device::flex())
            .shuffled(9)
            .starting_at_epoch(3)
            .split_for_devices(2);
        let parts = burn::data::dataloader::split::split_dataloader(
            Arc::new(split) as Arc<dyn DataLoader<crate::StaticBatch>>,
            &[Device::flex(), Device::flex()],
        );
        assert_eq!(parts.len(), 2);
        // Two whole global batches of 2 x 4 items; the last 7 items of each epoch sit out.
        assert_eq!(parts[0].num_items() + parts[1].num_items(), 16);
        for _epoch in 3..5 {
            let expected = labels(&whole);
            let (even, odd) = (labels(parts[0].as_ref()), labels(parts[1].as_ref()));
            assert_eq!(even.len(), 2);
            assert_eq!(odd.len(), 2);
            for (k, batch) in expected.iter().take(4).enumerate() {
                let got = if k % 2 == 0 {
                    &even[k / 2]
                } else {
                    &odd[k / 2]
                };
                assert_eq!(got, batch, "batch {k}");
                assert_eq!(got.len(), 4);
            }
        }
    }
}
