//! What Burn's Learner runs each step: [`models`] (ORGaNICs and the baselines with their
//! training steps), [`output`] (what a step hands to the metrics), [`guard`] (the
//! non-finite-loss stop), [`patience`] (early stopping), [`progress`] (plain log lines),
//! [`metric_log`] (the per-epoch metric files).

pub mod guard;
pub mod metric_log;
pub mod models;
pub mod output;
pub mod patience;
pub mod progress;
