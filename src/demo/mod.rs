//! Demonstrations built on the library, shared by the CLI, the examples and
//! the tests (the top layer, beside the CLI).
//!
//! - [`hunt`]: the treasure hunt, four ways.
//! - [`producer`]: a producer of test jobs (periodic or Gaussian).

pub mod hunt;
pub mod producer;
