//! The CPU backend: plain Rust on f32, the reference for every GPU kernel.
pub mod attention;
