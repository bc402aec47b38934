//! Atomic checkpoints: written under a temporary name, flushed, then renamed, so that a run
//! killed at any moment leaves either a whole checkpoint or none, and `--resume` never reads
//! a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::OptimizerRecord;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

use crate::harness::metric_log::WriteFailure;

/// The three records of one epoch's checkpoint.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// Saves records as `<dir>/<name>-<epoch>.bpk`, atomically.
#[derive(Debug, Clone)]
pub struct AtomicCheckpointer {
    dir: PathBuf,
    name: &'static str,
    report: Option<WriteFailure>,
}

impl AtomicCheckpointer {
    /// A checkpointer of one record kind in `dir`.
    pub fn new(dir: &Path, name: &'static str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name,
            report: None,
        }
    }

    /// Also records a failed write in `failure` and stops the run at once: Burn reports a
    /// checkpoint error only when training ends, an epoch or more later.
    pub fn reporting_to(mut self, failure: WriteFailure) -> Self {
        self.report = Some(failure);
        self
    }

    fn path(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.dir, self.name, epoch)
    }
}

/// `<dir>/<name>-<epoch>.bpk`.
pub fn checkpoint_path(dir: &Path, name: &str, epoch: usize) -> PathBuf {
    dir.join(format!("{name}-{epoch}.bpk"))
}

/// Writes `bytes` to `path` through a temporary file and a rename. On any failure (a full
/// disk, a read-only folder) the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl AtomicCheckpointer {
    /// Whether a write of the run has failed. Then this epoch's checkpoint is not written
    /// and no older one is deleted: an epoch whose metrics could not be written must not be
    /// resumed from as if complete. (Burn checks the run's stop request before it
    /// checkpoints, but the metric log writes on Burn's event-store thread, which may record
    /// its failure after that check; Burn's checkpointing strategy queries that thread
    /// before any save or delete, so by then the failure is recorded.)
    fn run_failed(&self) -> bool {
        self.report.as_ref().is_some_and(|f| f.get().is_some())
    }
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        if self.run_failed() {
            return Ok(());
        }
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        let path = self.path(epoch);
        write_atomic(&path, &bytes).map_err(|e| {
            if let Some(failure) = &self.report {
                failure.record(&path, &e);
            }
            CheckpointerError::IOError(e)
        })
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        if self.run_failed() {
            return Ok(());
        }
        let path = self.path(epoch);
        if path.exists() {
            std::fs::remove_file(path).map_err(CheckpointerError::IOError)?;
        }
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let bytes = std::fs::read(self.path(epoch)).map_err(CheckpointerError::IOError)?;
        R::checkpoint_from_bytes(Bytes::from_bytes_vec(bytes)).map_err(CheckpointerError::Record)
    }
}

/// The epochs whose model, optimizer and scheduler checkpoints are all present, newest
/// first (temporary files of an interrupted write are not checkpoints).
pub fn complete_epochs(dir: &Path) -> Vec<usize> {
    let mut epochs: Vec<usize> = checkpoint_files(dir)
        .into_iter()
        .filter(|(part, _)| part == "model")
        .map(|(_, epoch)| epoch)
        .filter(|&epoch| {
            PARTS
                .iter()
                .all(|part| checkpoint_path(dir, part, epoch).is_file())
        })
        .collect();
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    epochs
}

/// Every `<part>-<epoch>.bpk` in `dir` whose part is one of [`PARTS`], as `(part, epoch)`.
fn checkpoint_files(dir: &Path) -> Vec<(String, usize)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (part, epoch) = name.strip_suffix(".bpk")?.rsplit_once('-')?;
            PARTS.contains(&part).then_some(())?;
            Some((part.to_string(), epoch.parse().ok()?))
        })
        .collect()
}

/// Removes every checkpoint file of the epochs older than the newest complete one, except
/// the two newest complete epochs (what `--resume` falls back on when the newest is
/// damaged) and `best` (the best validation epoch, whose weights early stopping tests).
/// Burn's checkpointing strategy deletes only the checkpoints it wrote in the same process,
/// so a run resumed many times would otherwise keep an epoch or two from every invocation.
/// A file that cannot be removed is left (it costs disk, not correctness). Returns the
/// epochs removed, newest first.
pub fn prune_checkpoints(dir: &Path, best: Option<usize>) -> Vec<usize> {
    let complete = complete_epochs(dir);
    let Some(&newest) = complete.first() else {
        return Vec::new();
    };
    let keep: Vec<usize> = complete.iter().copied().take(2).chain(best).collect();
    let mut stale: Vec<usize> = checkpoint_files(dir)
        .into_iter()
        .map(|(_, epoch)| epoch)
        .filter(|epoch| *epoch < newest && !keep.contains(epoch))
        .collect();
    stale.sort_unstable_by(|a, b| b.cmp(a));
    stale.dedup();
    for &epoch in &stale {
        for part in PARTS {
            let _ = std::fs::remove_file(checkpoint_path(dir, part, epoch));
        }
    }
    stale
}

/// The last epoch whose model, optimizer and scheduler checkpoints are all present.
pub fn last_complete_epoch(dir: &Path) -> Option<usize> {
    complete_epochs(dir).first().copied()
}

/// Why the checkpoint of `epoch` cannot be resumed from, or `Ok` when each part decodes, the
/// model record fits `model` (every parameter present with its shape) and every weight is
/// finite. Burn's loader panics on a bad record; checking first turns that into a choice.
pub fn verify_checkpoint<M: Module>(model: &M, dir: &Path, epoch: usize) -> Result<(), String> {
    let read = |part: &str| {
        let path = checkpoint_path(dir, part, epoch);
        std::fs::read(&path)
            .map(Bytes::from_bytes_vec)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let record = ModuleRecord::checkpoint_from_bytes(read("model")?)
        .map_err(|e| format!("model record does not decode: {e}"))?;
    let loaded = model
        .clone()
        .try_load_record(record)
        .map_err(|e| format!("model record does not fit this model: {e}"))?;
    let mut finite = FiniteWeights { bad: None };
    loaded.visit(&mut finite);
    if let Some(name) = finite.bad {
        return Err(format!("model record holds non-finite weights ({name})"));
    }
    OptimizerRecord::checkpoint_from_bytes(read("optim")?)
        .map_err(|e| format!("optimizer record does not decode: {e}"))?;
    LrSchedulerRecord::checkpoint_from_bytes(read("scheduler")?)
        .map_err(|e| format!("scheduler record does not decode: {e}"))?;
    Ok(())
}

/// Finds the first parameter with a NaN or infinite value.
struct FiniteWeights {
    bad: Option<String>,
}

impl ModuleVisitor for FiniteWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.bad.is_some() {
            return;
        }
        // The sum of magnitudes is finite exactly when every value is (short of an overflow
        // of the sum itself, which no trained weight comes near).
        let total = param.val().abs().sum().into_scalar::<f64>();
        if !total.is_finite() {
            self.bad = Some(format!("parameter {}", param.id));
        }
    }
}

/// The newest epoch of `dir` whose checkpoint [`verify_checkpoint`] accepts, with one note
/// per newer epoch passed over; an error listing every epoch's problem when none is intact.
pub fn newest_intact_epoch<M: Module>(
    model: &M,
    dir: &Path,
) -> Result<(usize, Vec<String>), crate::TrainError> {
    let mut notes = Vec::new();
    for epoch in complete_epochs(dir) {
        match verify_checkpoint(model, dir, epoch) {
            Ok(()) => return Ok((epoch, notes)),
            Err(why) => notes.push(format!("checkpoint of epoch {epoch} is not usable: {why}")),
        }
    }
    if notes.is_empty() {
        return Err(crate::TrainError::NoCheckpoint(dir.to_path_buf()));
    }
    Err(crate::TrainError::File {
        path: dir.to_path_buf(),
        message: format!("no intact checkpoint to resume from ({})", notes.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_parts(dir: &Path, epoch: usize, parts: &[&str]) {
        for part in parts {
            std::fs::write(checkpoint_path(dir, part, epoch), b"x").expect("write");
        }
    }

    fn epochs_on_disk(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn after_a_failed_write_no_checkpoint_is_saved_or_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let failure = WriteFailure::new(burn::train::Interrupter::new());
        let checkpointer =
            AtomicCheckpointer::new(dir.path(), "model").reporting_to(failure.clone());
        Checkpointer::<()>::save(&checkpointer, 1, ()).expect("saved");
        assert_eq!(epochs_on_disk(dir.path()), vec!["model-1.bpk"]);
        // the metric log's write failed (on its own thread, after Burn's stop check)
        failure.record(
            &dir.path().join("metrics.jsonl"),
            &std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        Checkpointer::<()>::save(&checkpointer, 2, ()).expect("skipped");
        Checkpointer::<()>::delete(&checkpointer, 1).expect("skipped");
        assert_eq!(epochs_on_disk(dir.path()), vec!["model-1.bpk"]);
    }

    #[test]
    fn pruning_keeps_the_two_newest_complete_epochs_and_the_best() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        for epoch in [1, 2, 4, 6, 7] {
            write_parts(d, epoch, &PARTS);
        }
        // An epoch whose write was cut short between parts, and another program's file.
        write_parts(d, 5, &["model"]);
        std::fs::write(d.join("notes-3.bpk"), b"x").expect("write");
        assert_eq!(prune_checkpoints(d, Some(2)), vec![5, 4, 1]);
        let mut expected: Vec<String> = [2, 6, 7]
            .iter()
            .flat_map(|e| PARTS.map(|p| format!("{p}-{e}.bpk")))
            .chain(["notes-3.bpk".to_string()])
            .collect();
        expected.sort();
        assert_eq!(epochs_on_disk(d), expected);
        // Nothing more to remove; without a best epoch only the two newest stay.
        assert!(prune_checkpoints(d, Some(2)).is_empty());
        assert_eq!(prune_checkpoints(d, None), vec![2]);
        assert_eq!(complete_epochs(d), vec![7, 6]);
    }

    #[test]
    fn pruning_leaves_a_newer_incomplete_epoch_and_an_empty_folder_alone() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        assert!(prune_checkpoints(d, None).is_empty());
        for epoch in [1, 2, 3] {
            write_parts(d, epoch, &PARTS);
        }
        write_parts(d, 4, &["model", "optim"]);
        assert_eq!(prune_checkpoints(d, None), vec![1]);
        assert!(checkpoint_path(d, "optim", 4).is_file());
        assert_eq!(complete_epochs(d), vec![3, 2]);
    }
}
