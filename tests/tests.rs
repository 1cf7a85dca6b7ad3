//! Integration tests of the library, one module per boundary. The command line is
//! tested end to end in `xtask/tests/cli.rs`; the experiments' own acceptance checks
//! run through the `acceptance` harness.

mod baseline;
mod describe;
mod docs;
mod layering;
mod matrix;
mod pipeline;
mod plans;
mod report;
mod spec_errors;
mod support;
mod tidy;
