//! Errors of the training crate.

use std::path::{Path, PathBuf};

/// What can stop a training, evaluation or benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad argument or combination (unknown task, batch 0, ...).
    #[error("{0}")]
    Invalid(String),
    /// The data could not be found or read.
    #[error(transparent)]
    Data(#[from] organics_data::DataError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] organics_model::ModelError),
    /// The artifact directory holds a run with another configuration.
    #[error(
        "{dir} holds a run with another configuration ({detail}); use another --artifact-dir, the same flags to resume, or --overwrite to replace it"
    )]
    ConfigMismatch {
        /// The artifact directory.
        dir: PathBuf,
        /// What differs.
        detail: String,
    },
    /// The loss, the gradient norm or the validation loss became NaN or infinite.
    #[error(
        "training diverged: non-finite {quantity} ({value}) at epoch {epoch}, iteration {iteration}; {kept}"
    )]
    NonFinite {
        /// What was not finite.
        quantity: String,
        /// The value.
        value: f64,
        /// Epoch (1-based).
        epoch: usize,
        /// Iteration within the epoch (1-based).
        iteration: usize,
        /// What is kept: the last good checkpoint, or that none exists (and, if recording
        /// the divergence in `results.json` failed, why).
        kept: String,
    },
    /// The run was stopped on request (Ctrl-C, SIGTERM, the dashboard's stop) before its
    /// last epoch; its complete epochs are checkpointed.
    #[error("stopped during epoch {epoch} ({reason}); {kept}")]
    Stopped {
        /// The epoch in progress (1-based).
        epoch: usize,
        /// Why.
        reason: String,
        /// What is kept and how to continue.
        kept: String,
    },
    /// Another process is writing to the artifact directory.
    #[error(
        "{dir} is in use by another run ({holder}); wait for it to finish or choose another --artifact-dir"
    )]
    Locked {
        /// The artifact directory.
        dir: PathBuf,
        /// Who holds it, as far as known.
        holder: String,
    },
    /// A write during training failed (a full disk, a read-only folder, a file size limit);
    /// the run stopped at once.
    #[error("could not write {path}: {message}; training stopped; {kept}")]
    WriteFailed {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
        /// What is kept: the last complete checkpoint, or that none exists.
        kept: String,
    },
    /// Nothing to resume from or evaluate.
    #[error("no complete checkpoint in {0}")]
    NoCheckpoint(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Burn's training loop reported an error.
    #[error("training failed: {0}")]
    Training(String),
}

pub(crate) fn file_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Creates the folder that will hold `path`, if it has one.
pub(crate) fn create_parent(path: &Path) -> Result<(), TrainError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(file_err(parent)),
        None => Ok(()),
    }
}

/// The error of drawing the figure at `path`.
pub(crate) fn draw_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> TrainError + Copy + '_ {
    move |e| TrainError::File {
        path: path.into(),
        message: format!("drawing the figure: {e}"),
    }
}
