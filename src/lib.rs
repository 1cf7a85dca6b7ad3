//! phasegate: declarative performance experiments.
//!
//! A TOML spec names phases, workloads and acceptance checks; the pipeline turns it
//! into per-phase reports and a verdict a CI job can gate on:
//!
//! spec (validated input) -> plan (expanded runs) -> execution (the only place that
//! reads clocks) -> samples and summaries -> verdicts -> reports.
//!
//! See `ARCHITECTURE.md` for the module map and its invariants.

pub mod baseline;
pub mod clock;
pub mod describe;
pub mod env;
pub mod error;
pub mod execute;
pub mod expr;
pub mod kernel;
pub mod kernels;
pub mod living;
pub mod plan;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod spec;
pub mod stats;
pub mod verdict;
