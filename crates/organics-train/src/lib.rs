#![warn(missing_docs)]
//! # organics-train
//!
//! Training, evaluation and benchmarking of the ORGaNICs models (and LSTM / MLP baselines)
//! with Burn's Learner, on any backend chosen at run time: atomic per-epoch checkpoints,
//! `--resume`, a non-finite-loss guard, `results.json` per run.

pub mod analysis;
pub mod config;
pub mod error;
pub mod figures;
pub mod harness;
pub mod options;
pub mod run;

pub use config::TrainConfig;
pub use error::TrainError;
pub use options::{BackendKind, CurveMetric, GradientPath, ModelKind, OptimizerKind, Task};
pub use run::bench::{BenchOptions, BenchResult, bench};
pub use run::eval::{EvalResults, evaluate};
pub use run::results::{RunResults, RunStatus};
pub use run::train::{RunOptions, train};
