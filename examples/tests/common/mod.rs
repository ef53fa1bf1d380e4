//! Helpers shared by the example tests.

pub mod cluster;
pub mod kafka;
