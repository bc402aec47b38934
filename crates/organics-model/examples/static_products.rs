//! Times the matrix products of one static-MNIST training step (batch 256, the paper's
//! 784-360-120-40 autoencoder and 128 + 64 ORGaNICs layers) on one core, for half the batch
//! (the share of each of 2 cores), with `gemm` (what the fused kernel calls) and with
//! `faer`'s matmul, interleaved product by product over several rounds. It is the floor under
//! the fused static kernel's step (docs/SPEED.md, "Distance to the limit").
//!
//! `cargo run --example static_products` (from the repository root, so the build is the
//! workspace's). Prints each product's best time of the rounds with both crates, and the
//! totals.

use std::time::Instant;

#[path = "common/product.rs"]
mod common;
use common::{Library, product};

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
    let mut total = [0.0f64; 2];
    let mut flops = 0.0;
    for (i, &(name, k, n)) in layers.iter().enumerate() {
        // forward x·W; input gradient δ·Wᵀ (none for the images); weight gradient xᵀ·δ
        let mut shapes = vec![("forward", rows, k, n, false, false)];
        if i != 0 {
            shapes.push(("input grad", rows, n, k, false, true));
        }
        shapes.push(("weight grad", k, rows, n, true, false));
        for (what, m, kk, nn, ta, tb) in shapes {
            // Best of 5 rounds of 40 calls each, the two crates alternating round by round.
            let mut best = [f64::INFINITY; 2];
            for _round in 0..5 {
                for (which, best) in best.iter_mut().enumerate() {
                    let lib = [Library::Gemm, Library::Faer][which];
                    let call = |c: &mut [f32]| product(lib, c, &a, &b, m, kk, nn, ta, tb);
                    call(&mut c);
                    let reps = 40;
                    let start = Instant::now();
                    for _ in 0..reps {
                        call(&mut c);
                    }
                    *best = best.min(start.elapsed().as_secs_f64() / reps as f64);
                }
            }
            let f = 2.0 * (m * kk * nn) as f64;
            println!(
                "{name:22} {what:11} gemm {:8.1} us {:6.1} GFLOP/s | faer {:8.1} us {:6.1} GFLOP/s",
                best[0] * 1e6,
                f / best[0] / 1e9,
                best[1] * 1e6,
                f / best[1] / 1e9
            );
            total[0] += best[0];
            total[1] += best[1];
            flops += f;
        }
    }
    for (crate_name, t) in ["gemm", "faer"].iter().zip(total) {
        println!(
            "total {crate_name}: {:.2} ms for {rows} rows ({:.0} MFLOP, {:.1} GFLOP/s)",
            t * 1e3,
            flops / 1e6,
            flops / t / 1e9
        );
    }
}
