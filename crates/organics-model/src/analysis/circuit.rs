//! The continuous-time ORGaNICs circuit on the host, in `f64`.
//!
//! This is the mathematical reference that the Burn modules are tested against, and the
//! object the stability tools work on: one circuit with fixed input gains and a fixed
//! input drive (docs/MODEL.md §2 with `b0`, `b1`, `z` held constant):
//!
//! ```text
//! main:       τ_y ⊙ dy/dt = −y + b1 ⊙ z + (1 − √⌊a⌋) ⊙ (W_r y)
//!             τ_a ⊙ da/dt = −a + σ² ⊙ b0² + W (y² ⊙ ⌊a⌋)
//! rectified:  τ_y ⊙ dy/dt = −y + b1 ⊙ z + (1 − √⌊a⌋) ⊙ ⌊W_r y⌋
//!             τ_a ⊙ da/dt = −a + σ² ⊙ b0² + W (⌊y⌋² ⊙ ⌊a⌋)
//! ```

use nalgebra::{DMatrix, DVector};

use crate::error::ModelError;

/// One ORGaNICs circuit with constant input, in `f64` on the host.
#[derive(Debug, Clone)]
pub struct Circuit {
    /// Recurrent weights `W_r` (n x n).
    pub w_r: DMatrix<f64>,
    /// Normalization weights `W` (n x n, entries >= 0).
    pub w: DMatrix<f64>,
    /// Semi-saturation constants `σ` (> 0).
    pub sigma: DVector<f64>,
    /// Input gain of the modulators, `b0` in (0, 1).
    pub b0: DVector<f64>,
    /// Input gain of the principal neurons, `b1` in (0, 1).
    pub b1: DVector<f64>,
    /// Time constants of `y` (> 0).
    pub tau_y: DVector<f64>,
    /// Time constants of `a` (> 0).
    pub tau_a: DVector<f64>,
    /// Input drive `z`.
    pub z: DVector<f64>,
    /// Rectified model (Appendix F) instead of the main model.
    pub rectified: bool,
}

/// A state `(y, a)` of the circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitState {
    /// Membrane potentials of the principal neurons.
    pub y: DVector<f64>,
    /// Membrane potentials of the modulator neurons.
    pub a: DVector<f64>,
}

impl CircuitState {
    /// The largest absolute difference between two states.
    pub fn max_abs_diff(&self, other: &CircuitState) -> f64 {
        (&self.y - &other.y).amax().max((&self.a - &other.a).amax())
    }
}

/// Result of a long Euler simulation.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The final state.
    pub state: CircuitState,
    /// Steps taken.
    pub steps: usize,
    /// Whether the largest time derivative fell below the tolerance.
    pub converged: bool,
}

fn relu(v: f64) -> f64 {
    v.max(0.0)
}

impl Circuit {
    /// Number of principal neurons `n`.
    pub fn size(&self) -> usize {
        self.z.len()
    }

    /// `a_0 = σ² ⊙ b0²`, the constant drive of the modulators.
    fn modulator_drive(&self) -> DVector<f64> {
        self.sigma
            .component_mul(&self.sigma)
            .component_mul(&self.b0.component_mul(&self.b0))
    }

    /// The time derivatives `(dy/dt, da/dt)` at a state.
    pub fn drift(&self, state: &CircuitState) -> CircuitState {
        let (y, a) = (&state.y, &state.a);
        let mut recurrent = &self.w_r * y;
        if self.rectified {
            recurrent.apply(|v| *v = relu(*v));
        }
        let gate = a.map(|v| 1.0 - relu(v).sqrt());
        let dy = (-y + self.b1.component_mul(&self.z) + gate.component_mul(&recurrent))
            .component_div(&self.tau_y);
        let y_sq = if self.rectified {
            y.map(|v| relu(v).powi(2))
        } else {
            y.map(|v| v * v)
        };
        let pooled = &self.w * y_sq.component_mul(&a.map(relu));
        let da = (-a + self.modulator_drive() + pooled).component_div(&self.tau_a);
        CircuitState { y: dy, a: da }
    }

    /// Forward-Euler simulation from `start` with step `dt` until `max |d state/dt| < tol`
    /// or `max_steps`.
    pub fn simulate(&self, start: CircuitState, dt: f64, tol: f64, max_steps: usize) -> Simulation {
        let mut state = start;
        for step in 0..max_steps {
            let d = self.drift(&state);
            if d.y.amax().max(d.a.amax()) < tol {
                return Simulation {
                    state,
                    steps: step,
                    converged: true,
                };
            }
            state.y += d.y * dt;
            state.a += d.a * dt;
        }
        Simulation {
            state,
            steps: max_steps,
            converged: false,
        }
    }

    /// The closed-form fixed point for `W_r = I` (docs/MODEL.md §3):
    /// `a_s = σ² ⊙ b0² + W (b1 ⊙ z)²`, `y_s = (b1 ⊙ z) / √a_s`.
    ///
    /// Only a fixed point when `W_r` is the identity; the formula is evaluated regardless.
    pub fn closed_form_fixed_point(&self) -> CircuitState {
        let drive = self.b1.component_mul(&self.z);
        let a = self.modulator_drive() + &self.w * drive.component_mul(&drive);
        let y = drive.component_div(&a.map(f64::sqrt));
        CircuitState { y, a }
    }

    /// Paper Algorithm 1 for a general `W_r` (main model), `iterations` rounds.
    ///
    /// Returns the iterate after every round (`iterations` entries), so that convergence
    /// can be studied per iteration.
    pub fn algorithm1(&self, iterations: usize) -> Result<Vec<CircuitState>, ModelError> {
        let n = self.size();
        let drive = self.b1.component_mul(&self.z);
        let base = self.modulator_drive();
        let first = &self.w_r * &drive;
        let mut a = &base + &self.w * first.component_mul(&first);
        let mut out = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let gate = a.map(|v| 1.0 - relu(v).sqrt());
            let mut system = DMatrix::<f64>::identity(n, n);
            for i in 0..n {
                for j in 0..n {
                    system[(i, j)] -= gate[i] * self.w_r[(i, j)];
                }
            }
            let y = system
                .lu()
                .solve(&drive)
                .ok_or(ModelError::SingularSystem)?;
            a = &base + &self.w * a.component_mul(&y.component_mul(&y));
            out.push(CircuitState { y, a: a.clone() });
        }
        Ok(out)
    }

    /// The Jacobian of the vector field at a state (docs/MODEL.md §3), 2n x 2n, ordered
    /// `(y, a)`. Main model, with `g = 1 − √⌊a⌋` and `r = W_r y`:
    ///
    /// ```text
    /// ∂ẏ/∂y = D(1/τ_y) (−I + D(g) W_r)
    /// ∂ẏ/∂a = D(1/τ_y) D(−r / (2√a))              (a > 0; 0 where a <= 0)
    /// ∂ȧ/∂y = D(1/τ_a) W D(2 y ⊙ ⌊a⌋)
    /// ∂ȧ/∂a = D(1/τ_a) (−I + W D(y² ⊙ 1[a > 0]))
    /// ```
    ///
    /// The rectified model replaces `r` by `⌊W_r y⌋` (so `W_r`'s rows count only where
    /// `W_r y > 0`) and `y` by `⌊y⌋` in the `a` equation.
    pub fn jacobian(&self, state: &CircuitState) -> DMatrix<f64> {
        let n = self.size();
        let (y, a) = (&state.y, &state.a);
        let wr_y = &self.w_r * y;
        let (recurrent, active_row): (DVector<f64>, DVector<f64>) = if self.rectified {
            (
                wr_y.map(relu),
                wr_y.map(|v| if v > 0.0 { 1.0 } else { 0.0 }),
            )
        } else {
            (wr_y.clone(), DVector::from_element(n, 1.0))
        };
        let y_eff = if self.rectified {
            y.map(relu)
        } else {
            y.clone()
        };
        let mut j = DMatrix::<f64>::zeros(2 * n, 2 * n);
        for i in 0..n {
            let gate = 1.0 - relu(a[i]).sqrt();
            let inv_ty = 1.0 / self.tau_y[i];
            let inv_ta = 1.0 / self.tau_a[i];
            for k in 0..n {
                let delta = if i == k { 1.0 } else { 0.0 };
                j[(i, k)] = inv_ty * (-delta + gate * active_row[i] * self.w_r[(i, k)]);
                j[(n + i, k)] = inv_ta * self.w[(i, k)] * 2.0 * y_eff[k] * relu(a[k]);
                let active = if a[k] > 0.0 { 1.0 } else { 0.0 };
                j[(n + i, n + k)] =
                    inv_ta * (-delta + self.w[(i, k)] * y_eff[k] * y_eff[k] * active);
            }
            j[(i, n + i)] = if a[i] > 0.0 {
                inv_ty * (-recurrent[i] / (2.0 * a[i].sqrt()))
            } else {
                0.0
            };
        }
        j
    }

    /// A random circuit with positive parameters for the stability experiments:
    /// `W_r` a Gaussian matrix scaled to spectral norm `wr_norm` (or the identity when
    /// `wr_norm` is `None`), `W`, `b0`, `b1` ~ U(0, 1), `σ` ~ U(0.1, 1), `τ` ~ U(0.5, 2),
    /// and `z` a Gaussian direction scaled to a norm drawn from U(0, 1].
    pub fn random(n: usize, wr_norm: Option<f64>, rng: &mut SplitMix64) -> Circuit {
        let w_r = match wr_norm {
            None => DMatrix::identity(n, n),
            Some(norm) => {
                let m = DMatrix::from_fn(n, n, |_, _| rng.normal());
                let top = m.singular_values().max();
                m * (norm / top)
            }
        };
        let uniform = |rng: &mut SplitMix64, lo: f64, hi: f64| {
            DVector::from_fn(n, |_, _| lo + (hi - lo) * rng.uniform_open())
        };
        let w = DMatrix::from_fn(n, n, |_, _| rng.uniform_open());
        let sigma = uniform(rng, 0.1, 1.0);
        let b0 = uniform(rng, 0.0, 1.0);
        let b1 = uniform(rng, 0.0, 1.0);
        let tau_y = uniform(rng, 0.5, 2.0);
        let tau_a = uniform(rng, 0.5, 2.0);
        let direction = DVector::from_fn(n, |_, _| rng.normal());
        let z = &direction * (rng.uniform_open() / direction.norm());
        Circuit {
            w_r,
            w,
            sigma,
            b0,
            b1,
            tau_y,
            tau_a,
            z,
            rectified: false,
        }
    }
}

/// A small, seedable generator (SplitMix64) for the random-circuit experiments, so that the
/// model crate needs no RNG dependency and experiments are reproducible across platforms.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1), never exactly 0 or 1.
    pub fn uniform_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform_open(), self.uniform_open());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(c: &Circuit, rng: &mut SplitMix64) -> CircuitState {
        let n = c.size();
        CircuitState {
            y: DVector::from_fn(n, |_, _| rng.normal()),
            a: DVector::from_fn(n, |_, _| 0.1 + rng.uniform_open()),
        }
    }

    #[test]
    fn analytic_jacobian_matches_finite_differences() {
        let mut rng = SplitMix64::new(7);
        for trial in 0..40 {
            let mut c = Circuit::random(6, Some(1.5), &mut rng);
            c.rectified = trial % 2 == 1;
            let s = state(&c, &mut rng);
            let j = c.jacobian(&s);
            let n = c.size();
            let h = 1e-6;
            for k in 0..2 * n {
                let mut plus = s.clone();
                let mut minus = s.clone();
                if k < n {
                    plus.y[k] += h;
                    minus.y[k] -= h;
                } else {
                    plus.a[k - n] += h;
                    minus.a[k - n] -= h;
                }
                let (dp, dm) = (c.drift(&plus), c.drift(&minus));
                for i in 0..2 * n {
                    let (p, m) = if i < n {
                        (dp.y[i], dm.y[i])
                    } else {
                        (dp.a[i - n], dm.a[i - n])
                    };
                    let fd = (p - m) / (2.0 * h);
                    assert!(
                        (fd - j[(i, k)]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "J[{i},{k}]: fd {fd} vs {}",
                        j[(i, k)]
                    );
                }
            }
        }
    }

    #[test]
    fn closed_form_is_a_zero_of_the_drift() {
        let mut rng = SplitMix64::new(3);
        let c = Circuit::random(10, None, &mut rng);
        let d = c.drift(&c.closed_form_fixed_point());
        assert!(d.y.amax() < 1e-12 && d.a.amax() < 1e-12);
        // and not for a perturbed point, so the check above can fail
        let mut off = c.closed_form_fixed_point();
        off.y[0] += 0.01;
        assert!(c.drift(&off).y.amax() > 1e-4);
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (SplitMix64::new(1), SplitMix64::new(1));
        for _ in 0..1000 {
            let u = a.uniform_open();
            assert!(u > 0.0 && u < 1.0);
            assert_eq!(u, b.uniform_open());
        }
        let mean: f64 = (0..20000).map(|_| a.normal()).sum::<f64>() / 20000.0;
        assert!(mean.abs() < 0.05);
    }
}
