//! `cargo xtask analyze`: [`experiments`] (the paper's random-circuit experiments),
//! [`stability`] (the fixed points of a trained static model) and [`inputs`] (which units
//! of a trained sequence model receive input).

pub mod experiments;
pub mod inputs;
pub mod stability;
