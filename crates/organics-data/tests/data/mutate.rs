//! Random damage to a byte string, for the property tests of every file reader in the
//! workspace (the data crate's IDX reader; the training crate's config, results and
//! checkpoint readers include this file by path, so there is one copy).

use proptest::prelude::*;

/// One edit of a byte string.
#[derive(Debug, Clone)]
pub enum Edit {
    /// XOR the byte at this position (modulo the length) with a non-zero value.
    Flip(usize, u8),
    /// Cut the string at this position (modulo the length).
    Cut(usize),
    /// Insert these bytes at this position (modulo the length + 1).
    Insert(usize, Vec<u8>),
}

/// One to five edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
            any::<usize>().prop_map(Edit::Cut),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(i, b)| Edit::Insert(i, b)),
        ],
        1..6,
    )
}

/// `bytes` after `edits`.
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Flip(i, x) => {
                if !bytes.is_empty() {
                    bytes[i % len] ^= x;
                }
            }
            Edit::Cut(i) => bytes.truncate(i % len),
            Edit::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
        }
    }
    bytes
}
