//! The registry of built-in kernels.
//!
//! A spec names a kernel by its [`Kernel::name`]; [`find`] resolves it. Adding a kernel
//! means implementing [`Kernel`] in a module here and listing it in [`all`].

use crate::kernel::Kernel;

pub mod command;
pub mod io;
pub mod mock;

/// Every built-in kernel, in the order `list` shows them.
pub fn all() -> Vec<&'static dyn Kernel> {
    vec![&command::Command, &io::Io, &mock::Mock]
}

pub fn find(name: &str) -> Option<&'static dyn Kernel> {
    all().into_iter().find(|kernel| kernel.name() == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|kernel| kernel.name()).collect()
}

/// `cargo xtask kernels`: every kernel with its parameters, metrics and outputs.
pub fn describe() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for kernel in all() {
        let _ = writeln!(out, "{}: {}", kernel.name(), kernel.summary());
        for param in kernel.params() {
            let default =
                param.default.as_ref().map_or_else(|| "required".to_owned(), |value| format!("default {value}"));
            let _ = writeln!(out, "  param  {:<22} {:?} ({default}): {}", param.name, param.kind, param.doc);
        }
        if kernel.accepts_extra_params() {
            let _ = writeln!(out, "  param  <any other>            substitution variables for {{name}} placeholders");
        }
        for metric in kernel.metrics() {
            let _ = writeln!(out, "  metric {:<22} [{}]: {}", metric.name, metric.unit, metric.doc);
        }
        for output in kernel.output_names() {
            let _ = writeln!(out, "  output {output}");
        }
    }
    out
}
