//! The metric logs of a run, written so that a full disk or a read-only folder ends the run
//! with an error instead of a panic.
//!
//! Burn's `FileMetricLogger` writes each metric from a background thread that panics when a
//! write fails (`"Can log an item."`), which aborts the whole process. [`MetricFiles`] writes
//! the same layout (`<dir>/<split>/epoch-<n>/<Metric_Name>.log`, one serialized entry per
//! line), which the rest of the crate reads back (`results::read_epoch_metric`, the run's
//! patience, `report`), but on the calling thread and without panicking: the first failed
//! write is recorded in a [`WriteFailure`] slot, the run is asked to stop, and `train`
//! turns the record into [`crate::TrainError::WriteFailed`]. The checkpointer records its
//! failures in the same slot.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};

/// The first write of a run that failed (the file and the operating system's message), and
/// the run's interrupter, through which a failure stops the run.
#[derive(Clone)]
pub struct WriteFailure {
    first: Arc<Mutex<Option<(PathBuf, String)>>>,
    interrupter: Interrupter,
}

impl std::fmt::Debug for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WriteFailure").field(&self.get()).finish()
    }
}

impl WriteFailure {
    /// No failure yet; one will stop the run through `interrupter`.
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            first: Arc::default(),
            interrupter,
        }
    }

    /// Records a failed write (only the first one is kept: later ones follow from it) and asks
    /// the run to stop.
    pub fn record(&self, path: &Path, error: &std::io::Error) {
        if let Ok(mut slot) = self.first.lock()
            && slot.is_none()
        {
            *slot = Some((path.to_path_buf(), error.to_string()));
        }
        self.interrupter
            .stop(Some(&format!("could not write {}", path.display())));
    }

    /// The recorded failure, if any.
    pub fn get(&self) -> Option<(PathBuf, String)> {
        self.first.lock().ok().and_then(|slot| slot.clone())
    }
}

/// The log file of metric `name` (spaces become underscores) of `split` (`train`, `valid`)
/// at `epoch`: `<dir>/<split>/epoch-<epoch>/<Metric_Name>.log`, the one home of the layout
/// that the writer below and the readers of `results` share.
pub fn log_path(dir: &Path, split: &str, name: &str, epoch: usize) -> PathBuf {
    dir.join(split)
        .join(format!("epoch-{epoch}"))
        .join(format!("{}.log", name.replace(' ', "_")))
}

/// A [`MetricLogger`] that writes Burn's file layout and reports write failures instead of
/// panicking (see the module documentation).
pub struct MetricFiles {
    directory: PathBuf,
    definitions: HashMap<MetricId, MetricDefinition>,
    /// The open log of each file of the current epoch.
    open: HashMap<PathBuf, File>,
    epoch: Option<usize>,
    failure: WriteFailure,
}

impl MetricFiles {
    /// Logs under `directory`; a failed write is recorded in `failure`, which stops the run.
    pub fn new(directory: &Path, failure: WriteFailure) -> Self {
        Self {
            directory: directory.to_path_buf(),
            definitions: HashMap::new(),
            open: HashMap::new(),
            epoch: None,
            failure,
        }
    }

    /// The log file of metric `name` in `split` at `epoch`, as Burn names it.
    pub fn path(directory: &Path, name: &str, epoch: usize, split: &Split) -> PathBuf {
        let split_dir = match split {
            Split::Test(Some(tag)) => {
                format!("{split}/{}", tag.trim().replace(' ', "-").to_lowercase())
            }
            other => other.to_string(),
        };
        log_path(directory, &split_dir, name, epoch)
    }

    fn append(&mut self, path: PathBuf, line: &str) -> std::io::Result<()> {
        let file = match self.open.get_mut(&path) {
            Some(file) => file,
            None => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Truncated like Burn's logger: an epoch that is rerun after a resume starts
                // its logs afresh.
                let file = File::create(&path)?;
                self.open.entry(path.clone()).or_insert(file)
            }
        };
        writeln!(file, "{line}")
    }
}

impl MetricLogger for MetricFiles {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        if self.failure.get().is_some() {
            return;
        }
        if self.epoch != Some(epoch) {
            self.open.clear();
            self.epoch = Some(epoch);
        }
        let entries = update
            .entries
            .iter()
            .chain(update.entries_numeric.iter().map(|n| &n.entry));
        for entry in entries {
            if entry.serialized_entry.is_not_available() {
                continue;
            }
            let Some(definition) = self.definitions.get(&entry.metric_id) else {
                continue;
            };
            let path = Self::path(&self.directory, &definition.name, epoch, split);
            if let Err(e) = self.append(path.clone(), &entry.serialized_entry.serialized) {
                self.failure.record(&path, &e);
                return;
            }
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        // Every line is written straight to the file (no buffer), so the file is current.
        let path = Self::path(&self.directory, name, epoch, split);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter(|line| !line.is_empty())
            .map(NumericEntry::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.definitions
            .insert(definition.metric_id.clone(), definition);
    }

    fn log_epoch_summary(&mut self, _summary: EpochSummary) {
        self.open.clear();
    }
}
