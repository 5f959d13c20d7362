//! pasa: a training engine for sequential recommenders whose attention carries a learnable
//! kernel in position space. See DESIGN.md for the maths, layout and contracts.

pub mod backend;
pub mod data;
pub mod error;
pub mod rng;

pub use error::{Error, Result};
