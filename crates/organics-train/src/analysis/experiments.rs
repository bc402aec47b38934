//! `cargo xtask analyze`: the paper's random-circuit experiments as JSON and a printed table.
//!
//! The experiments themselves live in [`organics_model::analysis::experiments`]; this module runs
//! them with the settings and writes what they measured.

use std::path::Path;

use organics_model::analysis::experiments::{convergence_trials, stability_trials};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// One row of the stability experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoremRow {
    /// `"identity"` or the spectral norm of `W_r`.
    pub recurrence: String,
    /// Circuits drawn.
    pub trials: usize,
    /// Circuits whose fixed point is stable.
    pub stable: usize,
    /// Circuits whose fixed point has an eigenvalue with real part >= 0.
    pub unstable: usize,
    /// Circuits where neither Algorithm 1 nor a long simulation reached a fixed point.
    pub not_found: usize,
    /// Fixed points found by simulation because Algorithm 1 did not settle.
    pub by_simulation: usize,
    /// `stable / trials`.
    pub stable_fraction: f64,
    /// The largest real part of any Jacobian eigenvalue at a found fixed point.
    pub worst_max_real: f64,
    /// What the paper reports.
    pub paper: String,
}

/// `analyze theorem`: Theorem 4.1 (`W_r = I`) and Conjecture 5.3 (`‖W_r‖₂` = 1, 2, 3).
pub fn theorem(n: usize, trials: usize, seed: u64) -> Result<Vec<TheoremRow>, TrainError> {
    if n == 0 || trials == 0 {
        return Err(TrainError::Invalid(
            "n and trials must be at least 1".into(),
        ));
    }
    let cases = [
        (None, "100% (Theorem 4.1)"),
        (Some(1.0), "100% (Conjecture 5.3)"),
        (Some(2.0), "100%"),
        (Some(3.0), "below 100%"),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (norm, paper))| {
            let s = stability_trials(n, *norm, trials, seed.wrapping_add(i as u64))
                .map_err(|e| TrainError::Training(e.to_string()))?;
            Ok(TheoremRow {
                recurrence: norm.map_or_else(|| "identity".into(), |v| format!("norm {v}")),
                trials: s.trials,
                stable: s.stable,
                unstable: s.unstable,
                not_found: s.not_found,
                by_simulation: s.by_simulation,
                stable_fraction: s.stable_fraction(),
                worst_max_real: s.worst_max_real,
                paper: (*paper).into(),
            })
        })
        .collect()
}

/// The table `analyze theorem` prints.
pub fn theorem_table(rows: &[TheoremRow]) -> String {
    let mut out = format!(
        "{:<10} {:>7} {:>7} {:>9} {:>10} {:>9} {:>12}  paper\n",
        "W_r", "trials", "stable", "unstable", "not found", "stable %", "worst Re"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>7} {:>7} {:>9} {:>10} {:>8.1}% {:>12.3e}  {}\n",
            r.recurrence,
            r.trials,
            r.stable,
            r.unstable,
            r.not_found,
            100.0 * r.stable_fraction,
            r.worst_max_real,
            r.paper
        ));
    }
    out
}

/// What `analyze convergence` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceReport {
    /// Principal neurons (and as many modulators).
    pub n: usize,
    /// Trials compared with their simulation.
    pub trials: usize,
    /// Trials whose reference simulation did not settle (left out).
    pub skipped: usize,
    /// Relative error `‖s_k − s*‖ / ‖s*‖` per iteration (index 0 = iteration 1): mean.
    pub mean: Vec<f64>,
    /// Standard deviation.
    pub std: Vec<f64>,
    /// Maximum.
    pub max: Vec<f64>,
}

/// `analyze convergence`: Algorithm 1 against a long simulation (paper Fig. 4).
pub fn convergence(
    n: usize,
    trials: usize,
    iterations: usize,
    seed: u64,
) -> Result<ConvergenceReport, TrainError> {
    if n == 0 || trials == 0 || iterations == 0 {
        return Err(TrainError::Invalid(
            "n, trials and iterations must be at least 1".into(),
        ));
    }
    let s = convergence_trials(n, trials, iterations, seed)
        .map_err(|e| TrainError::Training(e.to_string()))?;
    Ok(ConvergenceReport {
        n,
        trials: s.trials,
        skipped: s.skipped,
        mean: s.mean,
        std: s.std,
        max: s.max,
    })
}

/// The table `analyze convergence` prints.
pub fn convergence_table(r: &ConvergenceReport) -> String {
    let mut out = format!(
        "{:>9} {:>12} {:>12} {:>12}\n",
        "iteration", "mean", "std", "max"
    );
    for k in 0..r.mean.len() {
        out.push_str(&format!(
            "{:>9} {:>12.3e} {:>12.3e} {:>12.3e}\n",
            k + 1,
            r.mean[k],
            r.std[k],
            r.max[k]
        ));
    }
    out
}

/// Writes a report as pretty JSON (atomically).
pub fn write_report<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    crate::error::create_parent(path)?;
    crate::run::train::write_json(path, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theorem_reports_full_stability_for_identity_and_unit_norm() {
        let rows = theorem(10, 20, 11).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].stable, 20, "{rows:?}");
        assert_eq!(rows[1].stable, 20, "{rows:?}");
        for r in &rows {
            assert_eq!(r.stable + r.unstable + r.not_found, r.trials);
        }
        assert!(theorem_table(&rows).contains("identity"));
        assert!(theorem(0, 5, 1).is_err());
    }

    #[test]
    fn convergence_report_has_one_row_per_iteration() {
        let r = convergence(10, 5, 6, 1).unwrap();
        assert_eq!((r.mean.len(), r.std.len(), r.max.len()), (6, 6, 6));
        assert!(r.max[5] < r.max[0]);
        assert_eq!(convergence_table(&r).lines().count(), 7);
    }
}
