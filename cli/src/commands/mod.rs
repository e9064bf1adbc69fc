//! The commands: argument parsing and output over the engine.

pub mod archive;
pub mod image;
pub mod network;
pub mod volume;
