//! procvisor: run jobs in supervised worker processes.
#![warn(missing_docs)]

pub mod process;
pub mod wire;
