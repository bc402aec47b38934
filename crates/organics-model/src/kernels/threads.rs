//! The batch split over the cores: one shard of rows per core, each on its own thread.

/// The number of cores this process may use, looked up once: `available_parallelism`
/// reads the cgroup quota files on every call (about 40 µs, measured), which added up to
/// a millisecond per training step when it was called per parameter.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// Splits `batch` rows into at most one shard per core, as `(first row, rows)`.
pub(crate) fn shard_rows(batch: usize) -> Vec<(usize, usize)> {
    let cores = cores();
    let shards = cores.clamp(1, batch.max(1));
    let per = batch.div_ceil(shards);
    (0..batch)
        .step_by(per.max(1))
        .map(|start| (start, per.min(batch - start)))
        .collect()
}

/// Each shard with the batch row it starts at, and the rows of all shards together.
pub(crate) fn first_rows<T>(shards: &[T], rows: impl Fn(&T) -> usize) -> (Vec<(&T, usize)>, usize) {
    let mut row = 0;
    let starts = shards
        .iter()
        .map(|shard| {
            let first = row;
            row += rows(shard);
            (shard, first)
        })
        .collect();
    (starts, row)
}

/// Rows `first..first + rows` of a batch-major `[batch, steps, width]` input, time-major
/// (`[steps, rows, width]`) in `out`, so that a chunk of steps is one contiguous matrix.
pub(crate) fn time_major_rows(
    input: &[f32],
    first: usize,
    rows: usize,
    steps: usize,
    width: usize,
    out: &mut [f32],
) {
    for r in 0..rows {
        for t in 0..steps {
            let from = ((first + r) * steps + t) * width;
            out[(t * rows + r) * width..][..width].copy_from_slice(&input[from..from + width]);
        }
    }
}

/// Runs `f` on every item on its own thread (the first on this one), results in order.
pub(crate) fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.map(|it| s.spawn(move || f(it))).collect();
        let mut out = vec![f(first)];
        // A panic in `f` is a bug, not an input error: pass it on.
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        );
        out
    })
}

/// `f` over `items` on every available core, results in order. Eigenvalue problems of
/// one sample are independent and cost milliseconds each, so analysing a test set is
/// worth spreading over the cores.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = cores();
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            // A panic in `f` is a bug, not an input error: pass it on.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = par_map(&items, |&x| x * x);
        assert_eq!(squares, items.iter().map(|x| x * x).collect::<Vec<_>>());
        assert!(par_map(&[] as &[u64], |&x| x).is_empty());
    }
}
