//! Early stopping over a run's whole history, resumed invocations included.
//!
//! Burn's `MetricEarlyStoppingStrategy` counts from the epochs its own invocation has seen,
//! so a long run resumed again and again (say, once a day) would never stop early. This strategy
//! reads the validation accuracy of every epoch from the run's `metrics.jsonl` instead.

use std::path::PathBuf;

use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::{Aggregate, Direction, EventStoreClient, Split};

use crate::run::results::read_epoch_metric;

/// Stops once the validation accuracy has not improved for `patience` epochs.
#[derive(Debug, Clone)]
pub struct RunPatience {
    dir: PathBuf,
    patience: usize,
}

impl RunPatience {
    /// Patience of `patience` epochs for the run in `dir`.
    pub fn new(dir: impl Into<PathBuf>, patience: usize) -> Self {
        Self {
            dir: dir.into(),
            patience,
        }
    }

    /// Whether early stopping ends the run after `epoch`: its best validation accuracy so far
    /// is `patience` or more epochs old.
    pub fn fires_after(&self, epoch: usize) -> bool {
        let accuracy = read_epoch_metric(&self.dir, "valid", "Accuracy", epoch);
        best_epoch(&accuracy).is_some_and(|best| epoch - best >= self.patience)
    }
}

/// The earliest epoch (1-based) with the highest value, as early stopping counts from it.
pub fn best_epoch(values: &[Option<f64>]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i + 1, v)))
        .fold(None, |best: Option<(usize, f64)>, (e, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((e, v)),
        })
        .map(|(e, _)| e)
}

impl EarlyStoppingStrategy for RunPatience {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        // The store handles events on its own thread, in order; a query through it returns
        // only once the end of this epoch (and so its line in metrics.jsonl) is processed.
        let _ = store.find_epoch(
            "Accuracy",
            Aggregate::Mean,
            Direction::Highest,
            &Split::Valid,
        );
        self.fires_after(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_best_epoch_counts() {
        assert_eq!(
            best_epoch(&[Some(0.5), Some(0.7), None, Some(0.7)]),
            Some(2)
        );
        assert_eq!(best_epoch(&[None, None]), None);
        assert_eq!(best_epoch(&[]), None);
    }
}
