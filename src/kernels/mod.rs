//! The registry of built-in kernels.
//!
//! A spec names a kernel by its [`Kernel::name`]; [`find`] resolves it. Adding a kernel
//! means implementing [`Kernel`] in a module here and listing it in [`all`].

use crate::kernel::Kernel;

pub mod command;
pub mod io;
pub mod mock;
pub mod simulator;
pub mod tree;

/// Every built-in kernel, in the order `list` shows them.
pub fn all() -> Vec<&'static dyn Kernel> {
    vec![&command::Command, &io::Io, &mock::Mock, &simulator::Simulator, &tree::Tree]
}

pub fn find(name: &str) -> Option<&'static dyn Kernel> {
    all().into_iter().find(|kernel| kernel.name() == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|kernel| kernel.name()).collect()
}

/// The metric the harness records beside every kernel's own.
const SETUP_METRIC: &str = "Every kernel's cold samples also record the metric `setup_s` (s): the set-up's share \
     of the sample, which checks read as `ID.cold.setup_s.median` (or another statistic).";

/// The kernels section of `docs/spec.md`: a table of parameters, metrics and outputs
/// per kernel.
pub fn describe_markdown() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "\n{SETUP_METRIC}");
    for kernel in all() {
        let _ = writeln!(out, "\n### `{}`\n\n{}.\n", kernel.name(), kernel.summary());
        let _ = writeln!(out, "| parameter | type | default | meaning |\n|---|---|---|---|");
        for param in kernel.params() {
            let default = default_value(&param).map_or_else(|| "required".to_owned(), |value| format!("`{value}`"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {default} | {} |",
                param.name,
                param.kind.describe(),
                param.doc.replace('|', "\\|")
            );
        }
        if kernel.accepts_extra_params() {
            let _ = writeln!(out, "| any other | a single value | | a variable for `{{name}}` placeholders |");
        }
        let metrics = kernel.metrics();
        if !metrics.is_empty() {
            let _ = writeln!(out, "\n| metric | unit | better | meaning |\n|---|---|---|---|");
            for metric in metrics {
                let better = match metric.better {
                    crate::kernel::Better::Higher => "higher",
                    crate::kernel::Better::Lower => "lower",
                    crate::kernel::Better::Neither => "",
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {better} | {} |",
                    metric.name,
                    metric.unit,
                    metric.doc.replace('|', "\\|")
                );
            }
        }
        let outputs = kernel.output_names();
        if !outputs.is_empty() {
            let names: Vec<String> = outputs.iter().map(|name| format!("`{name}`")).collect();
            let _ = writeln!(out, "\nOutputs: {}.", names.join(", "));
        }
    }
    out
}

/// A parameter's default as written in a spec (strings quoted), or `None` when the
/// parameter is required.
fn default_value(param: &crate::kernel::ParamSpec) -> Option<String> {
    param.default.as_ref().map(|value| match value {
        crate::kernel::Value::Text(text) => format!("\"{text}\""),
        value => value.to_string(),
    })
}

/// `cargo xtask kernels`: every kernel with its parameters, metrics and outputs.
pub fn describe() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", SETUP_METRIC.replace('`', ""));
    for kernel in all() {
        let _ = writeln!(out, "{}: {}", kernel.name(), kernel.summary());
        for param in kernel.params() {
            let default =
                default_value(&param).map_or_else(|| "required".to_owned(), |value| format!("default {value}"));
            let _ = writeln!(out, "  param  {:<22} {}; {default}: {}", param.name, param.kind.describe(), param.doc);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_listing_states_each_parameter_in_words() {
        let text = super::describe();
        let points = text.lines().find(|line| line.trim_start().starts_with("param  points")).expect("tree's points");
        assert!(points.contains("an integer in 1..=16777216; default 8192: n,"), "{points}");
        let metric = text.lines().find(|line| line.trim_start().starts_with("param  metric")).expect("tree's metric");
        assert!(metric.contains("one of euclidean, residual; default \"euclidean\":"), "{metric}");
        // No parameter kind is printed in its debug form (`Int { min: 1, .. }`).
        assert!(!text.lines().any(|line| line.starts_with("  param") && line.contains(" { ")), "{text}");
    }
}
