//! Integration tests of the training crate.
//!
//! One test binary for the crate: each integration-test file would otherwise link
//! Burn on its own, which costs build time and disk.

mod analysis;
mod common;
mod compat;
mod devices;
mod end_to_end;
mod faults;
mod properties;
mod published;
mod resume;
mod wgpu;
