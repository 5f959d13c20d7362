//! pasa: a training engine for sequential recommenders whose attention carries a learnable
//! kernel in position space. See DESIGN.md for the maths, layout and contracts.

pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod models;
pub mod optim;
pub mod params;
pub mod progress;
pub mod rng;
pub mod score;
pub mod tape;
pub mod train;

pub use error::{Error, Result};
