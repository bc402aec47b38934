#![warn(missing_docs)]
//! # organics-train
//!
//! Training, evaluation and benchmarking of the ORGaNICs models (and LSTM / MLP baselines)
//! with Burn's Learner, on any backend chosen at run time: atomic per-epoch checkpoints,
//! `--resume`, a non-finite-loss guard, `results.json` per run.

pub mod analyze;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod convergence_plot;
pub mod curves_plot;
pub mod dispatch;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod guard;
pub mod lock;
pub mod memory;
pub mod metric_log;
pub mod models;
pub mod options;
pub mod output;
pub mod patience;
pub mod phase_plot;
pub mod progress;
pub mod report;
pub mod results;
pub mod stability_analysis;
pub mod stability_plot;
pub mod train;
pub mod trajectory_plot;

pub use bench::{BenchOptions, BenchResult, bench};
pub use config::TrainConfig;
pub use error::TrainError;
pub use eval::{EvalResults, evaluate};
pub use options::{BackendKind, CurveMetric, GradientPath, ModelKind, Task};
pub use results::{RunResults, RunStatus};
pub use train::{RunOptions, train};
