//! The paper's random-circuit experiments, on the host in `f64`:
//!
//! - [`stability_trials`]: how often a random circuit has a stable fixed point (Theorem 4.1
//!   for `W_r = I`, Conjecture 5.3 for a general `W_r` of spectral norm 1, 2, 3).
//! - [`convergence_trials`]: the error of Algorithm 1 per iteration against a long
//!   simulation (paper Fig. 4).

use nalgebra::DVector;

use super::circuit::{Circuit, CircuitState, SplitMix64};
use super::stability::max_real_eigenvalue;
use crate::error::ModelError;

/// Time step of the reference simulations, as a fraction of the smallest time constant.
const DT_FRACTION: f64 = 0.05;
/// A state counts as a fixed point when its largest `|τ ⊙ d state/dt|` is below this.
const FIXED_POINT_TOL: f64 = 1e-9;
/// Step limit of the reference simulations.
const MAX_STEPS: usize = 400_000;

/// How one random circuit's fixed point was found and whether it is stable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrialOutcome {
    /// A fixed point, with the largest real part of the Jacobian's eigenvalues there.
    FixedPoint {
        /// Largest real part (negative: locally asymptotically stable).
        max_real: f64,
        /// Found by Algorithm 1 (or the closed form); otherwise by a long simulation.
        by_algorithm: bool,
    },
    /// Neither Algorithm 1 nor a long simulation settled: no stable fixed point was reached.
    NotFound,
}

impl TrialOutcome {
    /// Whether the trial found a stable fixed point.
    pub fn is_stable(&self) -> bool {
        matches!(self, TrialOutcome::FixedPoint { max_real, .. } if *max_real < 0.0)
    }
}

/// Largest scaled residual `max |τ ⊙ d state/dt|` (zero exactly at a fixed point).
pub fn residual(c: &Circuit, s: &CircuitState) -> f64 {
    let d = c.drift(s);
    let dy = d.y.component_mul(&c.tau_y).amax();
    let da = d.a.component_mul(&c.tau_a).amax();
    if dy.is_finite() && da.is_finite() {
        dy.max(da)
    } else {
        f64::INFINITY
    }
}

/// A long forward-Euler simulation from rest (`y = 0`, `a = σ²b0²`), if it settles.
pub fn simulate_to_rest(c: &Circuit) -> Option<CircuitState> {
    let n = c.size();
    let start = CircuitState {
        y: DVector::zeros(n),
        a: c.sigma
            .component_mul(&c.sigma)
            .component_mul(&c.b0.component_mul(&c.b0)),
    };
    let dt = DT_FRACTION * c.tau_y.min().min(c.tau_a.min());
    let sim = c.simulate(start, dt, 1e-11, MAX_STEPS);
    (residual(c, &sim.state) < FIXED_POINT_TOL).then_some(sim.state)
}

/// Whether the circuit has a stable fixed point, and how it was found: closed form for
/// `W_r = I`; otherwise Algorithm 1 (`iterations` rounds) when its result is a fixed
/// point. When that point is missing or unstable, a long simulation from rest looks for
/// another one (a general `W_r` can have several fixed points; Conjecture 5.3 asks whether
/// a stable one exists).
pub fn classify(
    c: &Circuit,
    identity: bool,
    iterations: usize,
) -> Result<TrialOutcome, ModelError> {
    let found = if identity {
        Some(c.closed_form_fixed_point())
    } else {
        c.algorithm1(iterations)
            .ok()
            .and_then(|states| states.last().cloned())
            .filter(|s| residual(c, s) < FIXED_POINT_TOL)
    };
    let by_algorithm = match found {
        Some(s) => Some(TrialOutcome::FixedPoint {
            max_real: max_real_eigenvalue(c, &s)?,
            by_algorithm: true,
        }),
        None => None,
    };
    if let Some(outcome) = by_algorithm
        && (outcome.is_stable() || identity)
    {
        return Ok(outcome);
    }
    match simulate_to_rest(c) {
        Some(s) => {
            let max_real = max_real_eigenvalue(c, &s)?;
            match by_algorithm {
                // keep Algorithm 1's (unstable) point unless simulation found a stable one
                Some(outcome) if max_real >= 0.0 => Ok(outcome),
                _ => Ok(TrialOutcome::FixedPoint {
                    max_real,
                    by_algorithm: false,
                }),
            }
        }
        None => Ok(by_algorithm.unwrap_or(TrialOutcome::NotFound)),
    }
}

/// Counts of a stability experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct StabilitySummary {
    /// Spectral norm of `W_r` (`None`: `W_r = I`).
    pub wr_norm: Option<f64>,
    /// Circuits drawn.
    pub trials: usize,
    /// Trials with a stable fixed point.
    pub stable: usize,
    /// Trials whose fixed point has an eigenvalue with a real part >= 0.
    pub unstable: usize,
    /// Trials where no fixed point was reached.
    pub not_found: usize,
    /// Trials whose fixed point came from a long simulation (Algorithm 1 did not settle, or
    /// settled on an unstable point).
    pub by_simulation: usize,
    /// The largest real part over all trials with a fixed point.
    pub worst_max_real: f64,
}

impl StabilitySummary {
    /// Fraction of trials with a stable fixed point.
    pub fn stable_fraction(&self) -> f64 {
        self.stable as f64 / self.trials.max(1) as f64
    }
}

/// `trials` random circuits of `n` neurons ([`Circuit::random`]: positive parameters,
/// `‖z‖ <= 1`) with `W_r = I` (`wr_norm = None`) or a Gaussian `W_r` of that spectral norm.
pub fn stability_trials(
    n: usize,
    wr_norm: Option<f64>,
    trials: usize,
    seed: u64,
) -> Result<StabilitySummary, ModelError> {
    let mut rng = SplitMix64::new(seed);
    let mut s = StabilitySummary {
        wr_norm,
        trials,
        stable: 0,
        unstable: 0,
        not_found: 0,
        by_simulation: 0,
        worst_max_real: f64::NEG_INFINITY,
    };
    for _ in 0..trials {
        let c = Circuit::random(n, wr_norm, &mut rng);
        match classify(&c, wr_norm.is_none(), 50)? {
            TrialOutcome::FixedPoint {
                max_real,
                by_algorithm,
            } => {
                if max_real < 0.0 {
                    s.stable += 1;
                } else {
                    s.unstable += 1;
                }
                s.by_simulation += usize::from(!by_algorithm);
                s.worst_max_real = s.worst_max_real.max(max_real);
            }
            TrialOutcome::NotFound => s.not_found += 1,
        }
    }
    Ok(s)
}

/// Per-iteration error statistics of Algorithm 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceSummary {
    /// Trials compared (those whose reference simulation settled).
    pub trials: usize,
    /// Trials left out because the reference simulation did not settle.
    pub skipped: usize,
    /// Mean relative error `‖s_k − s*‖ / ‖s*‖` after iteration k (index 0 = iteration 1).
    pub mean: Vec<f64>,
    /// Standard deviation of the relative error.
    pub std: Vec<f64>,
    /// Largest relative error.
    pub max: Vec<f64>,
}

/// Algorithm 1 against a long simulation on `trials` random circuits of `n` principal and
/// `n` modulator neurons, `‖W_r‖₂ = 1`, `‖z‖ < 1` (paper Fig. 4).
pub fn convergence_trials(
    n: usize,
    trials: usize,
    iterations: usize,
    seed: u64,
) -> Result<ConvergenceSummary, ModelError> {
    let mut rng = SplitMix64::new(seed);
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); iterations];
    let mut skipped = 0;
    for _ in 0..trials {
        let c = Circuit::random(n, Some(1.0), &mut rng);
        let Some(reference) = simulate_to_rest(&c) else {
            skipped += 1;
            continue;
        };
        let scale = reference.y.norm_squared() + reference.a.norm_squared();
        let states = c.algorithm1(iterations)?;
        for (k, s) in states.iter().enumerate() {
            let diff = (&s.y - &reference.y).norm_squared() + (&s.a - &reference.a).norm_squared();
            let e = (diff / scale).sqrt();
            errors[k].push(if e.is_finite() { e } else { f64::INFINITY });
        }
    }
    let stat = |v: &Vec<f64>| {
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let var = v.iter().map(|e| (e - m).powi(2)).sum::<f64>() / v.len().max(1) as f64;
        (m, var.sqrt(), v.iter().copied().fold(0.0, f64::max))
    };
    let stats: Vec<_> = errors.iter().map(stat).collect();
    Ok(ConvergenceSummary {
        trials: trials - skipped,
        skipped,
        mean: stats.iter().map(|s| s.0).collect(),
        std: stats.iter().map(|s| s.1).collect(),
        max: stats.iter().map(|s| s.2).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_recurrence_is_stable_in_every_trial() {
        let s = stability_trials(10, None, 50, 1).unwrap();
        assert_eq!((s.stable, s.trials), (50, 50), "{s:?}");
        assert!(s.worst_max_real < 0.0);
    }

    #[test]
    fn unit_norm_recurrence_is_stable_and_algorithm1_finds_it() {
        let s = stability_trials(10, Some(1.0), 30, 2).unwrap();
        assert_eq!(s.stable, 30, "{s:?}");
    }

    #[test]
    fn an_unstable_circuit_is_counted_as_such() {
        // W_r = 3 I with weak normalization: Algorithm 1 lands on a saddle (the gate
        // 1 − √a stays near 1, so ∂ẏ/∂y ≈ 2/τ_y > 0), and simulation from rest finds no
        // stable point either within reach.
        let mut rng = SplitMix64::new(5);
        let mut c = Circuit::random(4, None, &mut rng);
        c.w_r *= 3.0;
        c.sigma.fill(0.01);
        c.w.fill(0.01);
        let outcome = classify(&c, false, 50).unwrap();
        assert!(!outcome.is_stable(), "{outcome:?}");
    }

    #[test]
    fn algorithm1_error_falls_to_zero() {
        let s = convergence_trials(10, 10, 8, 3).unwrap();
        assert!(s.trials >= 9, "{s:?}");
        assert!(s.mean[0] > 1e-4, "first iterate is not yet exact: {s:?}");
        assert!(s.max[7] < 1e-6, "{s:?}");
        assert!(s.mean.windows(2).take(4).all(|w| w[1] <= w[0]), "{s:?}");
    }
}
