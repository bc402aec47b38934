//! `cargo xtask analyze inputs`: which units of a sequence ORGaNICs model can receive input.
//!
//! The cell's input drive is `z = ⌊W_zx x⌋`. The pixels `x` of MNIST are non-negative, so
//! unit `i` receives input from some image only if a weight of row `i` of `W_zx` is
//! positive; a unit whose row is `≤ 0` has `z_i = 0` at every step of every image, and
//! then the task gives its row no gradient either (the rectification's derivative is 0):
//! only the weight decay moves it, and with Burn's Adam `ε` of 1e-5 never back above zero
//! (docs/MODEL.md §11, item 8). This count shows how many units a trained model uses.
//! With the input drive not rectified (`--linear-input-drive`, item 12) a unit receives
//! input unless its input weights have all decayed to zero.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::run::eval::trained_sequence_organics;

/// Below this magnitude a weight counts as decayed to zero: far below any value training
/// leaves in a weight that gets a gradient from the task (those are about 1e-3 and up),
/// and what decades of geometric shrinking by the weight decay reach.
pub const DECAYED: f32 = 1e-20;

/// How the units of a model's input weights `W_zx` stand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputUnits {
    /// The weights read (the run's best epoch, or its newest checkpoint while it trains).
    pub weights: String,
    /// Units `n`.
    pub units: usize,
    /// Whether the model rectifies its input drive (`⌊W_zx x⌋`).
    pub rectified_input: bool,
    /// Units that receive input: with a positive input weight (rectified input drive), or
    /// with an input weight of magnitude at least [`DECAYED`] (not rectified).
    pub receiving: usize,
    /// The other units: every input weight `≤ 0` (rectified: no input from non-negative
    /// pixels), or every one decayed below [`DECAYED`].
    pub silent: usize,
    /// Of the silent units, those whose every input weight has decayed below [`DECAYED`].
    pub decayed: usize,
    /// Each unit's largest input weight, in unit order.
    pub largest_weight: Vec<f32>,
}

impl InputUnits {
    /// From `W_zx`, row-major `[n, d_input]`, of a model whose input drive is rectified
    /// (`⌊W_zx x⌋`) or not.
    pub fn from_weights(
        weights: String,
        w_zx: &[f32],
        d_input: usize,
        rectified_input: bool,
    ) -> Self {
        let rows = || w_zx.chunks(d_input.max(1));
        let largest_weight: Vec<f32> = rows()
            .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect();
        let receiving = if rectified_input {
            largest_weight.iter().filter(|&&w| w > 0.0).count()
        } else {
            rows()
                .filter(|row| row.iter().any(|w| w.abs() >= DECAYED))
                .count()
        };
        let decayed = rows()
            .filter(|row| {
                row.iter()
                    .all(|&w| (w <= 0.0 || !rectified_input) && w.abs() < DECAYED)
            })
            .count();
        InputUnits {
            weights,
            units: largest_weight.len(),
            rectified_input,
            receiving,
            silent: largest_weight.len() - receiving,
            decayed,
            largest_weight,
        }
    }

    /// A few lines for the terminal.
    pub fn table(&self) -> String {
        if self.rectified_input {
            format!(
                "weights: {}\nunits: {}\nreceiving input (a positive input weight): {}\n\
                 without input (every input weight <= 0): {}, of them decayed below {:e}: {}\n",
                self.weights, self.units, self.receiving, self.silent, DECAYED, self.decayed
            )
        } else {
            format!(
                "weights: {}\nunits: {}\ninput drive not rectified: receiving input (an input \
                 weight of magnitude {:e} or more): {}\nwithout input (every input weight \
                 decayed below {:e}): {}\n",
                self.weights, self.units, DECAYED, self.receiving, DECAYED, self.silent
            )
        }
    }
}

/// Counts the units of the sequence ORGaNICs run in `dir` that can receive input.
pub fn input_units(dir: &Path) -> Result<InputUnits, TrainError> {
    let (run, model, _) = trained_sequence_organics(dir, "the input count needs")?;
    let w = model.rnn.cell.w_zx.val();
    let [_, d_input] = w.dims();
    let values = w
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Training(format!("{e:?}")))?;
    Ok(InputUnits::from_weights(
        run.weights.display().to_string(),
        &values,
        d_input,
        model.rnn.cell.rectified_input,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_receives_input_when_one_of_its_weights_is_positive() {
        // Three units of two inputs: one positive weight; both negative; both decayed.
        let w = [-0.5, 0.1, -0.2, -0.3, -1e-32, 0.0];
        let u = InputUnits::from_weights("w".into(), &w, 2, true);
        assert_eq!((u.units, u.receiving, u.silent, u.decayed), (3, 1, 2, 1));
        assert_eq!(u.largest_weight, vec![0.1, -0.2, 0.0]);
        assert!(
            u.table()
                .contains("receiving input (a positive input weight): 1")
        );
        // Without the rectification a negative weight passes the input too.
        let u = InputUnits::from_weights("w".into(), &w, 2, false);
        assert_eq!((u.units, u.receiving, u.silent, u.decayed), (3, 2, 1, 1));
        assert!(u.table().contains("not rectified"));
    }
}
