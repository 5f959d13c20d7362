//! pasa: a training engine for sequential recommenders whose attention carries a learnable
//! kernel in position space. See DESIGN.md for the maths, layout and contracts.

pub mod backend;
pub mod checkpoint;
pub mod error;
pub mod eval;
pub mod models;
pub mod optim;
pub mod params;
pub mod rng;
pub mod tape;

pub use error::{Error, Result};
