//! Large buffers kept from one kernel call to the next, by the thread that makes the calls.
//!
//! A sequence's tape or a static step's shard buffers hold megabytes, which the allocator
//! maps fresh from the operating system every time; the page faults of first touching them
//! cost about 10% of a 784-step training step (perf). So each kernel keeps what its last
//! calls gave back in a thread-local [`Spare`]: no state shared between threads (a library
//! others embed holds no global buffers), the buffers go when the thread ends, and a
//! [`Spare`] holds at most twice what one call gives back, so two shapes in turn (training
//! and validation batches) both reuse their buffers and nothing grows without bound,
//! whatever the number of cores.

/// Items given back by earlier calls, oldest first.
#[derive(Debug)]
pub(crate) struct Spare<T> {
    items: Vec<T>,
}

impl<T> Spare<T> {
    /// An empty pool.
    pub(crate) const fn new() -> Self {
        Spare { items: Vec::new() }
    }

    /// Removes and returns the first kept item that `fits` accepts.
    pub(crate) fn take(&mut self, fits: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.items.iter().position(fits)?;
        Some(self.items.remove(i))
    }

    /// Keeps `items` (one call's worth), dropping the oldest kept items beyond twice their
    /// number.
    pub(crate) fn give(&mut self, items: impl IntoIterator<Item = T>) {
        let before = self.items.len();
        self.items.extend(items);
        let limit = 2 * (self.items.len() - before);
        let excess = self.items.len().saturating_sub(limit);
        self.items.drain(..excess);
    }

    /// Number of kept items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

impl Spare<Vec<f32>> {
    /// A zeroed buffer of `len` values, reusing a kept one with enough capacity.
    pub(crate) fn zeroed(&mut self, len: usize) -> Vec<f32> {
        match self.take(|v| v.capacity() >= len) {
            Some(mut v) => {
                v.clear();
                v.resize(len, 0.0);
                v
            }
            None => vec![0.0; len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_reuses_and_stays_bounded() {
        let mut spare = Spare::new();
        let first = spare.zeroed(1000);
        let address = first.as_ptr();
        spare.give([first]);
        let again = spare.zeroed(500);
        assert_eq!(again.as_ptr(), address, "a kept buffer is reused");
        assert!(again.iter().all(|&v| v == 0.0) && again.len() == 500);
        assert_eq!(spare.len(), 0);
        // Calls of three buffers each, many times: at most two calls' worth is kept.
        for _ in 0..10 {
            spare.give((0..3).map(|_| vec![1.0f32; 8]));
            assert!(spare.len() <= 6, "kept {}", spare.len());
        }
        assert_eq!(spare.len(), 6);
        assert!(spare.take(|v| v.capacity() >= 9).is_none());
    }
}
