//! The two-dimensional circuit (one `y`, one `a`) of the paper's phase-plane analysis
//! (Section 5.1, Fig. 1; Theorems 5.1 and 5.2): its fixed points, their stability and its
//! nullclines.
//!
//! With scalar parameters the fixed points reduce to roots of one function of `y`. Setting
//! `da/dt = 0` gives, since `a > 0` at any fixed point (`a = σ²b0² + w y² a` has no
//! solution with `a <= 0`),
//!
//! ```text
//! a(y) = σ² b0² / (1 − w q(y)),   q(y) = y² (main) or ⌊y⌋² (rectified),  w q(y) < 1
//! ```
//!
//! and then `dy/dt = 0` is `h(y) = −y + b1 z + (1 − √a(y)) r(y) = 0` with `r = w_r y`
//! (main) or `⌊w_r y⌋` (rectified). `h` is continuous on its interval and diverges at its
//! ends, so its roots are bracketed by sign changes on a grid (dense near both `y = 0` and
//! the ends) and refined by bisection.

use nalgebra::{DMatrix, DVector};

use super::circuit::{Circuit, CircuitState};
use super::stability::{Eigenvalue, eigenvalues};
use crate::error::ModelError;

/// A circuit of one principal neuron and one modulator, all parameters scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanarCircuit {
    /// Recurrent weight `w_r`.
    pub w_r: f64,
    /// Normalization weight `w` (> 0).
    pub w: f64,
    /// Semi-saturation constant `σ` (> 0).
    pub sigma: f64,
    /// Input gain of the modulator, `b0`.
    pub b0: f64,
    /// Input gain of the principal neuron, `b1`.
    pub b1: f64,
    /// Time constant of `y`.
    pub tau_y: f64,
    /// Time constant of `a`.
    pub tau_a: f64,
    /// Input drive `z`.
    pub z: f64,
    /// Rectified model (Appendix F) instead of the main model.
    pub rectified: bool,
}

/// A fixed point of the 2-D circuit with its Jacobian's eigenvalues.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanarFixedPoint {
    /// `y` at the fixed point.
    pub y: f64,
    /// `a` at the fixed point.
    pub a: f64,
    /// The two eigenvalues of the Jacobian there.
    pub eigenvalues: Vec<Eigenvalue>,
}

impl PlanarFixedPoint {
    /// Locally asymptotically stable: both eigenvalues have a negative real part.
    pub fn is_stable(&self) -> bool {
        self.eigenvalues.iter().all(|e| e.re < 0.0)
    }
}

impl PlanarCircuit {
    /// The paper's Fig. 1 parameters (`b0 = b1 = 0.5`, `τ_y = τ_a = 2 ms`, `w = 1`, `z = 1`)
    /// with the given `w_r` and `σ`.
    pub fn figure1(w_r: f64, sigma: f64, rectified: bool) -> Self {
        Self {
            w_r,
            w: 1.0,
            sigma,
            b0: 0.5,
            b1: 0.5,
            tau_y: 0.002,
            tau_a: 0.002,
            z: 1.0,
            rectified,
        }
    }

    /// The same circuit as a 1-neuron [`Circuit`], for its drift and Jacobian.
    pub fn circuit(&self) -> Circuit {
        let s = |v: f64| DVector::from_element(1, v);
        Circuit {
            w_r: DMatrix::from_element(1, 1, self.w_r),
            w: DMatrix::from_element(1, 1, self.w),
            sigma: s(self.sigma),
            b0: s(self.b0),
            b1: s(self.b1),
            tau_y: s(self.tau_y),
            tau_a: s(self.tau_a),
            z: s(self.z),
            rectified: self.rectified,
        }
    }

    /// `(dy/dt, da/dt)` at `(y, a)`.
    pub fn drift(&self, y: f64, a: f64) -> (f64, f64) {
        let d = self.circuit().drift(&point(y, a));
        (d.y[0], d.a[0])
    }

    fn q(&self, y: f64) -> f64 {
        if self.rectified {
            y.max(0.0).powi(2)
        } else {
            y * y
        }
    }

    fn r(&self, y: f64) -> f64 {
        if self.rectified {
            (self.w_r * y).max(0.0)
        } else {
            self.w_r * y
        }
    }

    /// The `a`-nullcline: `a` with `da/dt = 0` at this `y`, if any (`w q(y) < 1`).
    pub fn a_nullcline(&self, y: f64) -> Option<f64> {
        let denominator = 1.0 - self.w * self.q(y);
        (denominator > 0.0).then(|| self.sigma.powi(2) * self.b0.powi(2) / denominator)
    }

    /// The `y`-nullcline: `a >= 0` with `dy/dt = 0` at this `y`, if any:
    /// `√a = 1 − (y − b1 z) / r(y)`.
    pub fn y_nullcline(&self, y: f64) -> Option<f64> {
        let r = self.r(y);
        if r == 0.0 {
            return None;
        }
        let root = 1.0 - (y - self.b1 * self.z) / r;
        (root >= 0.0).then_some(root * root)
    }

    /// `h(y)`: `dy/dt · τ_y` on the `a`-nullcline; its roots are the fixed points.
    fn h(&self, y: f64) -> Option<f64> {
        let a = self.a_nullcline(y)?;
        Some(-y + self.b1 * self.z + (1.0 - a.sqrt()) * self.r(y))
    }

    /// Points of increasing `y` along the `a`-nullcline, dense where it matters: `a` runs over
    /// `a0 (1 + s)` with `s` log-spaced over 28 decades, so fixed points that sit next to the
    /// edge `w q(y) = 1` (small `σ b0`, strong input) are bracketed as well as those near 0.
    fn y_grid(&self) -> Vec<f64> {
        const PER_BRANCH: usize = 30_000;
        let (lo, hi) = (-12.0f64, 16.0f64);
        let positive: Vec<f64> = (0..=PER_BRANCH)
            .map(|k| {
                let s = 10f64.powf(lo + (hi - lo) * k as f64 / PER_BRANCH as f64);
                ((s / (1.0 + s)) / self.w).sqrt()
            })
            .collect();
        let mut ys: Vec<f64> = if self.rectified {
            // y <= 0: h = −y + b1 z, linear; its root (if b1 z <= 0) is added by the caller.
            Vec::new()
        } else {
            positive.iter().rev().map(|y| -y).collect()
        };
        ys.push(0.0);
        ys.extend(positive);
        ys
    }

    /// All fixed points, in increasing `y`, each with the Jacobian's eigenvalues.
    pub fn fixed_points(&self) -> Result<Vec<PlanarFixedPoint>, ModelError> {
        let mut roots = Vec::new();
        if self.rectified && self.b1 * self.z < 0.0 {
            roots.push(self.b1 * self.z);
        }
        let mut previous: Option<(f64, f64)> = None;
        for y in self.y_grid() {
            let Some(hy) = self.h(y) else {
                previous = None;
                continue;
            };
            if hy == 0.0 {
                roots.push(y);
            } else if let Some((y0, h0)) = previous
                && h0 != 0.0
                && h0.signum() != hy.signum()
            {
                roots.push(self.bisect(y0, h0, y));
            }
            previous = Some((y, hy));
        }
        let circuit = self.circuit();
        roots
            .into_iter()
            .map(|y| {
                let a = self.a_nullcline(y).ok_or(ModelError::SingularSystem)?;
                let eigenvalues = eigenvalues(&circuit.jacobian(&point(y, a)))?;
                Ok(PlanarFixedPoint { y, a, eigenvalues })
            })
            .collect()
    }

    fn bisect(&self, mut lo: f64, h_lo: f64, mut hi: f64) -> f64 {
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            match self.h(mid) {
                Some(0.0) => return mid,
                Some(h) if h.signum() == h_lo.signum() => lo = mid,
                _ => hi = mid,
            }
        }
        0.5 * (lo + hi)
    }
}

fn point(y: f64, a: f64) -> CircuitState {
    CircuitState {
        y: DVector::from_element(1, y),
        a: DVector::from_element(1, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid of positive parameters and inputs around the paper's Fig. 1 values.
    fn grid(w_rs: &[f64], rectified: bool) -> Vec<PlanarCircuit> {
        let mut out = Vec::new();
        for &w_r in w_rs {
            for sigma in [0.05, 0.1, 0.5, 1.0] {
                for b in [0.1, 0.5, 0.9] {
                    for b1 in [0.2, 0.5, 0.9] {
                        for z in [0.05, 0.5, 1.0, 2.0] {
                            for w in [0.5, 1.0, 2.0] {
                                out.push(PlanarCircuit {
                                    w_r,
                                    w,
                                    sigma,
                                    b0: b,
                                    b1,
                                    tau_y: 0.002,
                                    tau_a: 0.004,
                                    z,
                                    rectified,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn fixed_points_are_zeros_of_the_drift() {
        for c in grid(&[0.5, 2.0], false).into_iter().step_by(7) {
            for fp in c.fixed_points().unwrap() {
                let (dy, da) = c.drift(fp.y, fp.a);
                assert!(
                    dy.abs() * c.tau_y < 1e-9 && da.abs() * c.tau_a < 1e-9,
                    "{c:?}"
                );
            }
        }
    }

    #[test]
    fn theorem_5_1_contractive_recurrence_has_one_stable_fixed_point() {
        for rectified in [false, true] {
            for c in grid(&[0.1, 0.5, 0.9, 0.99], rectified) {
                let fps = c.fixed_points().unwrap();
                assert_eq!(fps.len(), 1, "{c:?}: {fps:?}");
                assert!(fps[0].is_stable(), "{c:?}: {fps:?}");
            }
        }
    }

    #[test]
    fn theorem_5_2_expansive_recurrence_has_one_or_three_fixed_points_one_stable() {
        let mut three = 0;
        for rectified in [false, true] {
            for c in grid(&[1.01, 1.5, 2.0, 4.0], rectified) {
                let fps = c.fixed_points().unwrap();
                assert!(fps.len() == 1 || fps.len() == 3, "{c:?}: {fps:?}");
                assert!(fps.iter().any(|f| f.is_stable()), "{c:?}: {fps:?}");
                three += usize::from(fps.len() == 3);
            }
        }
        // the grid reaches the bistable regime, so the count above is really tested
        assert!(three > 0);
    }

    #[test]
    fn figure_1_cases() {
        // (w_r, σ) = (0.5, 0.1): one stable fixed point; (2.0, 0.1): three in the main model
        let one = PlanarCircuit::figure1(0.5, 0.1, false)
            .fixed_points()
            .unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].is_stable());
        let three = PlanarCircuit::figure1(2.0, 0.1, false)
            .fixed_points()
            .unwrap();
        assert_eq!(three.len(), 3, "{three:?}");
        assert!(three.iter().any(|f| f.is_stable()));
        // the rectified model has no unstable fixed point for positive input (Appendix F)
        for (w_r, sigma) in [(0.5, 0.1), (2.0, 0.1), (2.0, 1.0)] {
            let fps = PlanarCircuit::figure1(w_r, sigma, true)
                .fixed_points()
                .unwrap();
            assert!(
                !fps.is_empty() && fps.iter().all(|f| f.is_stable()),
                "{fps:?}"
            );
        }
    }

    #[test]
    fn nullclines_cross_at_the_fixed_points() {
        let c = PlanarCircuit::figure1(2.0, 0.1, false);
        for fp in c.fixed_points().unwrap() {
            let (ya, aa) = (c.y_nullcline(fp.y), c.a_nullcline(fp.y));
            assert!((ya.unwrap() - fp.a).abs() < 1e-6 && (aa.unwrap() - fp.a).abs() < 1e-9);
        }
    }
}
