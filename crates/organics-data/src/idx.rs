//! The IDX file format (MNIST, Fashion-MNIST): big-endian header, then u8 data.
//!
//! ```text
//! images: magic 2051 (0x00000803), count, rows, cols, count * rows * cols bytes
//! labels: magic 2049 (0x00000801), count, count bytes
//! ```
//!
//! Files may be raw or gzip-compressed (by name: `.gz`). Every check happens before the
//! data is trusted: a header count is capped before it sizes anything, and the length
//! must be exactly what the header says.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{DataError, io};

/// Image side length.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Classes: the digits 0-9 (Fashion-MNIST: ten garment kinds).
pub const CLASSES: usize = 10;
/// Magic number of an IDX image file.
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX label file.
pub const LABELS_MAGIC: u32 = 2049;
/// No MNIST-like split holds more items; larger header counts are treated as corrupt.
pub const MAX_ITEMS: u64 = 1_000_000;

/// Reads a whole file, gunzipping it when its name ends in `.gz`, never more than `limit` bytes
/// of decompressed data (so a corrupt or hostile file cannot exhaust memory).
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(io(path))?;
    if raw.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let gz = path.extension().is_some_and(|e| e == "gz");
    if !gz {
        return Ok(raw);
    }
    if raw.len() < 2 || raw[0..2] != [0x1f, 0x8b] {
        return Err(DataError::NotGzip {
            path: path.to_path_buf(),
            first: raw.iter().take(4).copied().collect(),
        });
    }
    let mut out = Vec::new();
    GzDecoder::new(&raw[..])
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn header(
    bytes: &[u8],
    path: &Path,
    len: usize,
    magic: u32,
    kind: &'static str,
) -> Result<u64, DataError> {
    if bytes.len() < len {
        return Err(DataError::Length {
            path: path.to_path_buf(),
            expected: len as u64,
            actual: bytes.len() as u64,
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
            kind,
        });
    }
    let count = u64::from(be_u32(bytes, 4));
    if count > MAX_ITEMS {
        return Err(DataError::TooManyItems {
            path: path.to_path_buf(),
            count,
            max: MAX_ITEMS,
        });
    }
    Ok(count)
}

fn check_length(bytes: &[u8], path: &Path, expected: u64) -> Result<(), DataError> {
    if bytes.len() as u64 != expected {
        return Err(DataError::Length {
            path: path.to_path_buf(),
            expected,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Parses an IDX image file's bytes into `count * 784` pixels.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let count = header(bytes, path, 16, IMAGES_MAGIC, "images")?;
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    if rows as usize != SIDE || cols as usize != SIDE {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            rows,
            cols,
        });
    }
    check_length(bytes, path, 16 + count * PIXELS as u64)?;
    Ok(bytes[16..].to_vec())
}

/// Parses an IDX label file's bytes; every label must be a digit class 0..=9.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let count = header(bytes, path, 8, LABELS_MAGIC, "labels")?;
    check_length(bytes, path, 8 + count)?;
    let labels = bytes[8..].to_vec();
    if let Some((index, &value)) = labels
        .iter()
        .enumerate()
        .find(|(_, v)| usize::from(**v) >= CLASSES)
    {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            value,
        });
    }
    Ok(labels)
}

/// Reads an image file (raw or `.gz`).
pub fn read_images(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_images(&read_maybe_gz(path, 16 + MAX_ITEMS * PIXELS as u64)?, path)
}

/// Reads a label file (raw or `.gz`).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_labels(&read_maybe_gz(path, 8 + MAX_ITEMS)?, path)
}
