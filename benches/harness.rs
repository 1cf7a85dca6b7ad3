//! Harness overhead benchmarks.
fn main() {}
