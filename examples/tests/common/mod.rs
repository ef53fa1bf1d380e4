//! Helpers shared by the example tests.

pub mod kafka;
