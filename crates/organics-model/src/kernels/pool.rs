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
    /// A buffer of `len` values holding whatever an earlier call left in it (every value
    /// initialised, most of them stale), reusing a kept one with enough capacity: for callers
    /// that write every element before reading it, which then skip a pass over memory that
    /// zeroing would cost (for an LSTM tape at batch 256, 200 MB per training step).
    pub(crate) fn reused(&mut self, len: usize) -> Vec<f32> {
        match self.take(|v| v.capacity() >= len) {
            Some(mut v) => {
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, 0.0);
                }
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
        let mut first = spare.reused(1000);
        assert!(first.iter().all(|&v| v == 0.0), "a new buffer is zero");
        first.fill(3.0);
        let address = first.as_ptr();
        spare.give([first]);
        let again = spare.reused(500);
        assert_eq!(again.as_ptr(), address, "a kept buffer is reused");
        assert!(again.iter().all(|&v| v == 3.0) && again.len() == 500);
        assert_eq!(spare.len(), 0);
        spare.give([again]);
        let longer = spare.reused(800);
        assert_eq!(longer.len(), 800);
        assert!(longer[..500].iter().all(|&v| v == 3.0));
        assert!(longer[500..].iter().all(|&v| v == 0.0));
        // Calls of three buffers each, many times: at most two calls' worth is kept.
        for _ in 0..10 {
            spare.give((0..3).map(|_| vec![1.0f32; 8]));
            assert!(spare.len() <= 6, "kept {}", spare.len());
        }
        assert_eq!(spare.len(), 6);
        assert!(spare.take(|v| v.capacity() >= 9).is_none());
    }
}
