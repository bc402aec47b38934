//! Integration tests of the model crate.
//!
//! One test binary for the crate: each integration-test file would otherwise link
//! Burn on its own, which costs build time and disk.

mod backends;
mod cell;
mod common;
mod dependencies;
mod fixed_points;
