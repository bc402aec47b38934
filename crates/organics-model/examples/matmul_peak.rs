//! The machine's matrix-product rate through the `gemm` crate (the kernel of every product
//! of the fused CPU kernels), on one core and on all cores at once, for a large square
//! product (the machine's practical peak) and for the shapes of an sMNIST step (a shard of
//! 128 rows, 128 neurons: the forward and backward products of one time step, and the
//! weight-gradient product over a chunk of 16 steps).
//!
//! `cargo run --example matmul_peak` (from the repository root: the workspace's dev profile
//! optimises the dependencies and this crate). `gemm` picks its
//! AVX-512, AVX2 or baseline kernels at run time; docs/SPEED.md ("distance to the limit")
//! divides each step's FLOP count by the all-core rate printed here.

use std::time::Instant;

#[path = "common/product.rs"]
mod common;
use common::{Library, product};

/// Seconds per `[m, k] · [k, n]` product on this thread (best of five timed batches).
fn seconds(m: usize, k: usize, n: usize) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e9 / flops) as usize).max(5);
    let mut run = || product(Library::Gemm, &mut c, &a, &b, m, k, n, false, false);
    run();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..reps {
            run();
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let shapes = [
        ("square 1024", 1024, 1024, 1024),
        ("smnist step y·[W_r;W_b0y;W_b1y]", 128, 128, 384),
        ("smnist step pool", 128, 128, 128),
        ("smnist weight grad, 16 steps", 128, 2048, 384),
    ];
    println!("{cores} cores");
    for (name, m, k, n) in shapes {
        let flops = 2.0 * (m * k * n) as f64;
        let one = flops / seconds(m, k, n) / 1e9;
        // Every core at once, each on its own product, as the kernels' shards run.
        let all: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..cores)
                .map(|_| s.spawn(move || seconds(m, k, n)))
                .collect();
            handles
                .into_iter()
                .map(|h| flops / h.join().expect("a timing thread") / 1e9)
                .sum()
        });
        println!("{name:34} {m}x{k}x{n}: {one:6.1} GFLOP/s on one core, {all:6.1} on all");
    }
}
