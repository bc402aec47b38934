//! Integration tests of the data crate.
//!
//! One test binary for the crate: each integration-test file would otherwise link
//! Burn on its own, which costs build time and disk.

mod corrupt;
mod identity;
mod mutate;
mod properties;
mod real_data;
