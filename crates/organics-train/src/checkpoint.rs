//! Atomic checkpoints: written under a temporary name, flushed, then renamed, so that a run
//! killed at any moment leaves either a whole checkpoint or none, and `--resume` never reads
//! a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Bytes;
use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

/// The three records of one epoch's checkpoint.
pub const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// Saves records as `<dir>/<name>-<epoch>.bpk`, atomically.
#[derive(Debug, Clone)]
pub struct AtomicCheckpointer {
    dir: PathBuf,
    name: &'static str,
}

impl AtomicCheckpointer {
    /// A checkpointer of one record kind in `dir`.
    pub fn new(dir: &Path, name: &'static str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name,
        }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.dir, self.name, epoch)
    }
}

/// `<dir>/<name>-<epoch>.bpk`.
pub fn checkpoint_path(dir: &Path, name: &str, epoch: usize) -> PathBuf {
    dir.join(format!("{name}-{epoch}.bpk"))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        write_atomic(&self.path(epoch), &bytes).map_err(CheckpointerError::IOError)
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
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

/// The last epoch whose model, optimizer and scheduler checkpoints are all present
/// (temporary files of an interrupted write are not checkpoints).
pub fn last_complete_epoch(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut epochs: Vec<usize> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("model-")?.strip_suffix(".bpk")?;
            rest.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs.into_iter().rev().find(|&epoch| {
        PARTS
            .iter()
            .all(|part| checkpoint_path(dir, part, epoch).is_file())
    })
}
