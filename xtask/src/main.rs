//! The `cargo xtask` command line: a thin layer over the `phasegate` library.

fn main() {}
