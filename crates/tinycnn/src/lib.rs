//! Work in progress.
pub mod data;
