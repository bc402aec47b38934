//! Element-wise functions of the kernels, written so that the loops around them vectorise.

/// `max(x, 0)`, keeping a NaN as NaN: a diverged weight must show in the loss, and the
/// comparison the other way round (`x > 0 ? x : 0`) would turn it into a harmless 0.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// `1 / (1 + e^(−x))`, as [`crate::cell`] computes it.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (exp(-x) + 1.0)
}

/// `e^x` to about 2 ulp (Cephes' `expf`: `x = k ln 2 + r`, a degree-7 polynomial in `r`,
/// `2^k` assembled in the exponent bits). `f32::exp` is a call into libm for every element,
/// which keeps the loops around it scalar; this is plain arithmetic the compiler vectorises.
/// Below −87.3 it returns about 1e-38 rather than 0 or a subnormal (where `sigmoid` is 0 to
/// f32 precision either way); above 88.3, `f32::MAX`-scale values rather than infinity.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5·2²³ rounds to an integer in the low mantissa bits, without a libm `floor`.
    const ROUND: f32 = 12_582_912.0;
    let x = if x > 88.3 { 88.3 } else { x };
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let k_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits((k_int.wrapping_add(127) << 23) as u32)
}

/// `tanh x` to about 1e-7 relative (Cephes' `tanhf`): an odd polynomial below |x| = 0.625,
/// where `1 − 2 / (e^{2|x|} + 1)` would cancel, that expression above it. Both branches are
/// plain arithmetic, so a loop over it vectorises (with a blend for the choice), where
/// `f32::tanh` calls into libm for every element.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let ax = if x < 0.0 { -x } else { x };
    let z = x * x;
    let p = -5.704_988_7e-3;
    let p = p * z + 2.063_909e-2;
    let p = p * z - 5.373_971_6e-2;
    let p = p * z + 1.333_144_2e-1;
    let p = p * z - 3.333_328e-1;
    let small = p * z * x + x;
    let large = -2.0 / (exp(ax + ax) + 1.0) + 1.0;
    let large = if x < 0.0 { -large } else { large };
    if ax < 0.625 { small } else { large }
}

/// The transpose of a row-major `rows × cols` matrix, row-major.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = m[i * cols + j];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3 + 1e-4;
            let exact = f64::from(x).exp();
            let rel = ((f64::from(exp(x)) - exact) / exact).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-6, "largest relative error {worst:e}");
        assert_eq!(sigmoid(-200.0), 1.0 / (exp(88.3) + 1.0));
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
    }

    #[test]
    fn tanh_matches_libm() {
        let mut worst = 0.0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3 + 1e-5;
            let exact = f64::from(x).tanh();
            let rel = ((f64::from(tanh(x)) - exact) / exact).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-6, "largest relative error {worst:e}");
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(-200.0) == -1.0 && tanh(200.0) == 1.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
