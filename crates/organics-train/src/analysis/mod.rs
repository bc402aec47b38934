//! `cargo xtask analyze`: [`experiments`] (the paper's random-circuit experiments) and
//! [`stability`] (the fixed points of a trained static model).

pub mod experiments;
pub mod stability;
