//! A run from start to results: [`train`] (data, model, Learner, schedule), [`dispatch`]
//! (the model a configuration names), [`checkpoint`] and [`lock`] (the artifact folder),
//! [`results`] (`results.json`), [`eval`] (the test set), [`bench`](mod@bench) (seconds per step),
//! [`memory`] and [`gpu`] (what the machine can take), [`report`] (a folder of runs),
//! [`trace`] (the first steps of a run, for another implementation to repeat), `optimizer`
//! (the one a configuration names).

pub mod bench;
pub mod checkpoint;
pub mod dispatch;
pub mod eval;
pub mod gpu;
pub mod lock;
pub mod memory;
mod optimizer;
pub mod report;
pub mod results;
pub mod trace;
pub mod train;
