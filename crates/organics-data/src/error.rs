//! Errors of the data crate: each names the file and what is wrong with it.

use std::path::PathBuf;

/// What can go wrong when finding, downloading or reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The explicitly given data directory does not exist or is not a directory.
    #[error("data directory {path} {problem}")]
    BadDataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// A file named `.gz` is not gzip.
    #[error(
        "{path} is named .gz but is not a gzip file (first bytes {first:02x?}); re-download it or remove the .gz suffix if it is raw IDX"
    )]
    NotGzip {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        first: Vec<u8>,
    },
    /// A gzip stream is corrupt or truncated.
    #[error("{path} is a corrupt or truncated gzip file: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The IDX magic number is not the expected one.
    #[error("{path} has IDX magic number {found}, expected {expected} ({kind} file)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number required.
        expected: u32,
        /// The magic number found.
        found: u32,
        /// "images" or "labels".
        kind: &'static str,
    },
    /// Images are not 28 x 28.
    #[error("{path} holds {rows} x {cols} images, expected 28 x 28")]
    BadDims {
        /// The file.
        path: PathBuf,
        /// Rows in the header.
        rows: u32,
        /// Columns in the header.
        cols: u32,
    },
    /// The header claims more items than any MNIST-like set holds; refused before allocating.
    #[error("{path} claims {count} items, more than the {max} allowed (corrupt header?)")]
    TooManyItems {
        /// The file.
        path: PathBuf,
        /// Items claimed.
        count: u64,
        /// The cap.
        max: u64,
    },
    /// The file is shorter or longer than its header says.
    #[error("{path} is {actual} bytes but its header implies {expected} (truncated or corrupt)")]
    Length {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// A label is not a digit class.
    #[error("{path}: label {value} at index {index} is not in 0..=9")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Item index.
        index: usize,
        /// The value.
        value: u8,
    },
    /// Image and label files disagree on the number of items.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images in it.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels in it.
        label_count: usize,
    },
    /// A downloaded file does not have the published checksum.
    #[error(
        "{path}: SHA-256 {found} does not match the published {expected}; the download is corrupt and was discarded"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Digest found.
        found: String,
    },
    /// Something other than a regular file stands where a data file is expected (a folder, a
    /// link that leads nowhere or in a loop).
    #[error("{path} is not a regular file (a folder, or a link that leads nowhere or in a loop)")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file holds as many images as the other split of the standard set: most likely the
    /// test file copied over the training file, or the other way round.
    #[error(
        "{path} holds {count} items, the size of the standard {other} set, where the {role} set belongs; was the {other} file copied in its place?"
    )]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// Items in it.
        count: usize,
        /// The split it stands for.
        role: &'static str,
        /// The split whose size it has.
        other: &'static str,
    },
    /// A file of the copy shipped in the repository differs from the shipped one.
    #[error(
        "{path}: SHA-256 {found} differs from the shipped file's {expected}; restore it (git checkout -- data) or pass --data-dir for other files"
    )]
    ShippedChanged {
        /// The file.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Digest found (or why none was computed).
        found: String,
    },
    /// The files are not anywhere and could not be downloaded.
    #[error(
        "{dataset} files not found: missing {missing:?} (looked in {searched:?}){download}. Provide them either by \
         (1) passing --data-dir DIR (or setting ORGANICS_DATA_DIR=DIR) for a folder holding the four IDX files, raw or .gz, or \
         (2) running once with internet access so they are downloaded to {cache}"
    )]
    NotFound {
        /// Which data set.
        dataset: String,
        /// Files not found.
        missing: Vec<String>,
        /// Folders searched.
        searched: Vec<PathBuf>,
        /// Why the download failed, if one was tried.
        download: String,
        /// The cache folder downloads go to.
        cache: String,
    },
    /// An argument is out of range (split sizes, limits).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}
