//! One writer per artifact folder: an OS file lock held for the whole run.
//!
//! The lock is the operating system's advisory lock on `<dir>/.run.lock` (std's
//! `File::try_lock`, stable since Rust 1.89, so no extra crate is needed): it is released
//! when the process ends in any way, kill -9 included, so a crashed run never leaves a stale
//! lock behind. The file itself stays (removing it would race with a second run opening it)
//! and names the process that holds it, for the refusal message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{TrainError, file_err};

/// The lock file's name inside an artifact directory.
pub const LOCK_FILE: &str = ".run.lock";

/// Held while a run writes to its artifact directory.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `dir` (created if need be) for this process, or says who holds it. Creating the
    /// lock file is also the first write into the folder, so a read-only folder or a full
    /// disk is reported here, before any data is loaded or epoch run.
    pub fn acquire(dir: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(file_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(file_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(TrainError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "process unknown".into()
                    } else {
                        holder.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(file_err(&path)(e)),
        }
        let note = format!("process {}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(file_err(&path))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_done() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = RunLock::acquire(dir.path()).expect("first lock");
        let err = RunLock::acquire(dir.path()).expect_err("second lock");
        let text = err.to_string();
        assert!(matches!(err, TrainError::Locked { .. }), "{text}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        assert!(first.path().is_file());
        drop(first);
        RunLock::acquire(dir.path()).expect("free again");
    }
}
