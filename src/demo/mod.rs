//! Demonstrations built on the library, shared by the CLI, the examples and
//! the tests (the top layer, beside the CLI).
//!
//! - [`hunt`]: the treasure hunt, four ways.

pub mod hunt;
