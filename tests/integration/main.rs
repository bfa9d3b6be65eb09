//! vellum's integration tests, as one test binary.

mod bad_input;
#[cfg(feature = "encoders")]
mod clip;
#[cfg(feature = "encoders")]
mod colbert;
mod common;
mod corruption;
mod crash;
mod crash_points;
#[cfg(feature = "encoders")]
mod encoder_seam;
#[cfg(feature = "encoders")]
mod encoders;
mod eval;
mod filters;
mod golden;
#[cfg(feature = "gpu")]
mod gpu;
mod hnsw;
mod hnsw_build;
mod interop;
mod lifecycle;
mod operations;
mod oracle;
mod plaid;
#[cfg(feature = "encoders")]
mod reencode;
mod robustness;
mod screening;
mod two_stage;
