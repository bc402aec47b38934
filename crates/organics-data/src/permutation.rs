//! The fixed pixel permutation of permuted sequential MNIST (psMNIST).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::idx::PIXELS;

/// A permutation of the 784 pixel positions, the same for every image and every split,
/// determined by `seed` alone (ChaCha8, whose stream is fixed across platforms and versions).
///
/// Element `t` is the scan-line index of the pixel presented at step `t`.
pub fn pixel_permutation(seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..PIXELS).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}
