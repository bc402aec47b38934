//! Times the matrix products of one static-MNIST training step (batch 256, the paper's
//! 784-360-120-40 autoencoder and 128 + 64 ORGaNICs layers) on one core with the `gemm`
//! crate, for half the batch: the share of each of 2 cores. It is the floor under the fused
//! static kernel's step (README, Speed).
//!
//! `cargo run --example static_products` (from the repository root, so the build is the
//! workspace's). Prints each product and the total.

use std::time::Instant;

#[path = "common/product.rs"]
mod common;
use common::product;

fn main() {
    let rows = 128; // half of a batch of 256
    // (inputs, outputs) of every product-bearing layer: encoder, decoder, the two ORGaNICs
    // layers' input drive ([W_zx; W_bx]) and normalization pool, readout.
    let layers = [
        ("encoder 784-360", 784, 360),
        ("encoder 360-120", 360, 120),
        ("encoder 120-40", 120, 40),
        ("decoder 40-120", 40, 120),
        ("decoder 120-360", 120, 360),
        ("decoder 360-784", 360, 784),
        ("layer 1 drive 40-256", 40, 256),
        ("layer 1 pool 128-128", 128, 128),
        ("layer 2 drive 128-128", 128, 128),
        ("layer 2 pool 64-64", 64, 64),
        ("readout 64-10", 64, 10),
    ];
    let big = 784 * 784;
    let a = vec![0.5f32; big];
    let b = vec![0.25f32; big];
    let mut c = vec![0.0f32; big];
    let mut total = 0.0;
    let mut flops = 0.0;
    for (i, &(name, k, n)) in layers.iter().enumerate() {
        // forward x·W; input gradient δ·Wᵀ (none for the images); weight gradient xᵀ·δ
        let mut shapes = vec![("forward", rows, k, n, false, false)];
        if i != 0 {
            shapes.push(("input grad", rows, n, k, false, true));
        }
        shapes.push(("weight grad", k, rows, n, true, false));
        for (what, m, kk, nn, ta, tb) in shapes {
            let reps = 100;
            product(&mut c, &a, &b, m, kk, nn, ta, tb);
            let start = Instant::now();
            for _ in 0..reps {
                product(&mut c, &a, &b, m, kk, nn, ta, tb);
            }
            let sec = start.elapsed().as_secs_f64() / reps as f64;
            let f = 2.0 * (m * kk * nn) as f64;
            println!(
                "{name:22} {what:11} {:8.1} us {:6.1} GFLOP/s",
                sec * 1e6,
                f / sec / 1e9
            );
            total += sec;
            flops += f;
        }
    }
    println!(
        "total {:.2} ms for {rows} rows ({:.0} MFLOP, {:.1} GFLOP/s)",
        total * 1e3,
        flops / 1e6,
        flops / total / 1e9
    );
}
