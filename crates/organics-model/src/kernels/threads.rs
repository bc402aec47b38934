//! The batch split over the cores: one shard of rows per core, the first on the calling
//! thread and the others on threads of rayon's pool.
//!
//! The threads are rayon's (the pool Burn's flex backend runs on), not new ones per call:
//! the static step hands work to the other core four times in a few milliseconds, and a
//! freshly spawned thread there often started only once the calling thread's own share
//! was done (measured with timers: in 83 of 101 steps the second shard of the forward and
//! backward phase began more than 1 ms late, so that phase ran on one core), while a pool
//! thread woken for the same work began 0.04 ms after the call (median) and more than 1 ms
//! late in 1 step of 101 (docs/SPEED.md, "What makes the static step faster").
//!
//! What an embedding application should know: the shards go to rayon's global pool, so
//! they wait while its own jobs keep every worker busy, and a call never returns if every
//! worker blocks on something the calling thread holds (a lock, a channel). Called from
//! inside a pool worker, the call's worker may run other queued jobs while it waits for
//! its shards. A pool sized below the core count (`RAYON_NUM_THREADS`) gets fewer shards
//! ([`parallelism`]).

use rayon::prelude::*;

/// The number of cores this process may use, looked up once: `available_parallelism`
/// reads the cgroup quota files on every call (about 40 µs, measured), which added up to
/// a millisecond per training step when it was called per parameter.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// How many shards can run at once: one per core, but no more than rayon's pool runs
/// beside the calling thread, which runs the first shard itself unless it is one of the
/// pool's workers.
pub(crate) fn parallelism() -> usize {
    let beside =
        rayon::current_num_threads() + usize::from(rayon::current_thread_index().is_none());
    cores().min(beside).max(1)
}

/// Splits `batch` rows into at most one shard per [`parallelism`], as `(first row, rows)`.
pub(crate) fn shard_rows(batch: usize) -> Vec<(usize, usize)> {
    let shards = parallelism().clamp(1, batch.max(1));
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

/// Runs `f` on every item, the first on this thread and each other one as a job of rayon's
/// pool, and returns the results in order. A panic in `f` (a bug, not an input error)
/// passes on to the caller once every item has run.
pub(crate) fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let f = &f;
    rayon::in_place_scope(|s| {
        let mut slots = out.iter_mut();
        let mut items = items.into_iter();
        let first = items.next().zip(slots.next());
        for (item, slot) in items.zip(slots) {
            s.spawn(move |_| *slot = Some(f(item)));
        }
        if let Some((item, slot)) = first {
            *slot = Some(f(item));
        }
    });
    out.into_iter()
        .map(|r| r.expect("the scope returns once every job has filled its slot"))
        .collect()
}

/// `f` over `items` on every available core, results in order. Eigenvalue problems of
/// one sample are independent and cost milliseconds each, so analysing a test set is
/// worth spreading over the cores.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = parallelism();
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    // At most one piece per core, as the rows of a batch are split; rayon's `collect`
    // keeps the order, and a panic in `f` passes on.
    let per = items.len().div_ceil(threads);
    items.par_iter().with_min_len(per).map(&f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_threads_keeps_order_and_runs_the_items_side_by_side() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let caller = std::thread::current().id();
        // The first item waits for the second to start: if the items ran one after the
        // other on the calling thread this would time out.
        let second_started = AtomicBool::new(false);
        let out = on_threads(vec![0usize, 1, 2], |i| {
            if i == 0 {
                let start = Instant::now();
                while !second_started.load(Ordering::Acquire) {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "items ran serially"
                    );
                    std::hint::spin_loop();
                }
            } else if i == 1 {
                second_started.store(true, Ordering::Release);
            }
            (i * 10, std::thread::current().id() == caller)
        });
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [0, 10, 20]);
        assert!(
            out[0].1 && !out[1].1,
            "the first item on the calling thread only"
        );
        assert!(on_threads(Vec::<u8>::new(), |x| x).is_empty());
    }

    #[test]
    fn on_threads_passes_a_panic_on_once_every_item_has_run() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // The panicking item on this thread (0) and on the pool (1).
        for panicking in [0usize, 1] {
            let others_done = AtomicUsize::new(0);
            let caught = std::panic::catch_unwind(|| {
                on_threads(vec![0usize, 1, 2], |i| {
                    if i == panicking {
                        panic!("item {i}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    others_done.fetch_add(1, Ordering::SeqCst);
                    i
                })
            });
            let payload = caught.expect_err("the panic reaches the caller");
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            assert_eq!(message, Some(format!("item {panicking}").as_str()));
            assert_eq!(others_done.load(Ordering::SeqCst), 2, "the other items ran");
        }
    }

    #[test]
    fn a_smaller_pool_gets_fewer_shards() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool");
        // Inside a one-thread pool the caller is its only worker: nothing runs beside it.
        assert_eq!(one.install(parallelism), 1);
        assert_eq!(one.install(|| shard_rows(256)), vec![(0, 256)]);
        // Outside any pool the caller runs a shard beside the global pool's workers.
        assert_eq!(parallelism(), cores().min(rayon::current_num_threads() + 1));
    }

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = par_map(&items, |&x| x * x);
        assert_eq!(squares, items.iter().map(|x| x * x).collect::<Vec<_>>());
        assert!(par_map(&[] as &[u64], |&x| x).is_empty());
    }
}
