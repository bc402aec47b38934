//! The machine's memory bandwidth as the sequence kernels use it: every core streams through
//! its own buffer far larger than the caches, writing it once (the forward pass filling its
//! tape) and reading it once (the backward pass reading the tape back), in `f32` loops the
//! compiler vectorises, as the kernels' element-wise passes are.
//!
//! The second measurement is the non-temporal write: stores that skip reading each line in
//! first, what a tape written once and read back only at the end of the sequence could use.
//!
//! `cargo run --example memory_bandwidth` (from the repository root: the workspace's dev
//! profile optimises this crate). docs/SPEED.md ("distance to the limit") divides the
//! sMNIST step's tape traffic by the rates printed here.

use std::hint::black_box;
use std::time::Instant;

/// Floats per core: 1 GiB, well past any cache.
const LEN: usize = 1 << 28;

/// Seconds for one pass of `f` over a fresh buffer on each core at once (the slowest
/// core's time: the cores of a training step wait for each other).
fn all_cores(cores: usize, f: fn(&mut [f32]) -> f32) -> f64 {
    // Every pass starts on all cores at once, so that each is timed while the others stream.
    let together = &std::sync::Barrier::new(cores);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                s.spawn(move || {
                    // Touched once first, so that page faults are not timed.
                    let mut buf = vec![1.0f32; LEN];
                    let mut best = f64::INFINITY;
                    for _ in 0..3 {
                        together.wait();
                        let start = Instant::now();
                        black_box(f(black_box(&mut buf)));
                        best = best.min(start.elapsed().as_secs_f64());
                    }
                    best
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a timing thread"))
            .fold(0.0, f64::max)
    })
}

/// Writes every element (stores into lines not in the cache: each is read in first).
fn write(buf: &mut [f32]) -> f32 {
    for (i, v) in buf.iter_mut().enumerate() {
        *v = i as f32;
    }
    buf[0]
}

/// Writes every element with non-temporal stores, which skip the read of each line and
/// bypass the caches (where the CPU has AVX-512; otherwise as [`write`]).
fn write_streaming(buf: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present; the buffer is split into 16-float chunks, each stored
        // whole (unaligned chunks at the ends are written by plain stores).
        unsafe { stream(buf) };
        return buf[0];
    }
    write(buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stream(buf: &mut [f32]) {
    use std::arch::x86_64::*;
    // SAFETY: `align_to_mut` yields a middle part of 64-byte-aligned 16-float chunks; every
    // bit pattern is a valid value both as 16 `f32` and as an `__m512`.
    let (head, middle, tail) = unsafe { buf.align_to_mut::<__m512>() };
    head.fill(1.0);
    tail.fill(1.0);
    let mut value = _mm512_set1_ps(1.0);
    let step = _mm512_set1_ps(16.0);
    for chunk in middle {
        // SAFETY: `chunk` is an aligned, writable 64-byte location.
        unsafe { _mm512_stream_ps(chunk as *mut __m512 as *mut f32, value) };
        value = _mm512_add_ps(value, step);
    }
    _mm_sfence();
}

/// Reads every element (sixteen partial sums, so that the adds do not wait on each other).
fn read(buf: &mut [f32]) -> f32 {
    let mut sums = [0.0f32; 16];
    for chunk in buf.chunks_exact(16) {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    sums.iter().sum()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let bytes = (LEN * 4) as f64;
    println!(
        "{cores} cores, {:.0} MiB per core",
        bytes / (1 << 20) as f64
    );
    let patterns = [
        ("write", write as fn(&mut [f32]) -> f32),
        ("write, non-temporal", write_streaming),
        ("read", read),
    ];
    for (name, f) in patterns {
        let seconds = all_cores(cores, f);
        let rate = cores as f64 * bytes / seconds / 1e9;
        println!("{name:20} {rate:6.1} GB/s on all cores ({seconds:.3} s a pass)");
    }
}
