//! Demonstrations built on the library, shared by the CLI, the examples and
//! the tests (the top layer, beside the CLI).
//!
//! - [`hunt`]: the treasure hunt, four ways.
//! - [`dataset`]: its data set on disk, safe on a shared machine.
//! - [`producer`]: a producer of test jobs (periodic or Gaussian).

pub mod dataset;
pub mod hunt;
pub mod producer;
