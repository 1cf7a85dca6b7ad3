//! Helpers shared by the test modules: loading specs from strings and running them
//! in process with the mock kernel.

use std::path::Path;

use phasegate::error::SpecError;
use phasegate::execute::{ExecutionOptions, RunResult, Silent};
use phasegate::plan::{self, Plan, Selection};
use phasegate::spec::{self, Overrides, Spec};
use phasegate::verdict::{self, Facts, Verdict};

/// A small valid spec the tests extend or break.
pub const BASE: &str = r#"
[experiment]
name = "demo"
title = "Demo"
seed = 7

[defaults]
repeats = 5

[[phase]]
id = "a"
title = "Phase A"

[[phase.workload]]
id = "slow"
kernel = "mock"
[phase.workload.params]
time_ms = 4.0
jitter = 0.05

[[phase.workload]]
id = "fast"
kernel = "mock"
reference = "slow"
[phase.workload.params]
time_ms = 1.0
jitter = 0.05
"#;

pub fn load(text: &str) -> Result<Spec, SpecError> {
    spec::load_str(Path::new("spec.toml"), text, &Overrides::default())
}

pub fn load_with(text: &str, overrides: &Overrides) -> Result<Spec, SpecError> {
    spec::load_str(Path::new("spec.toml"), text, overrides)
}

pub fn expand(text: &str) -> Result<Plan, SpecError> {
    plan::expand(load(text)?, Selection::default(), &|_| false)
}

/// The rendered error of a spec that must not load or expand.
pub fn spec_error(text: &str) -> String {
    match expand(text) {
        Ok(_) => panic!("the spec was accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// Runs every phase of a plan in process and evaluates its checks.
pub fn run_plan(plan: &Plan, facts: &Facts) -> Vec<(Vec<RunResult>, Vec<Verdict>)> {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let options = ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false };
    plan.phases
        .iter()
        .map(|phase| {
            let results = phasegate::execute::execute_phase(phase, &options, &Silent);
            let verdicts = verdict::evaluate(phase, &results, facts, &verdict::Snapshots::new());
            (results, verdicts)
        })
        .collect()
}
