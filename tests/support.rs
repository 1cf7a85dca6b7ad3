//! Helpers shared by the test modules: loading specs from strings and running them
//! in process with the mock kernel.

use std::collections::BTreeMap;
use std::path::Path;

use phasegate::env::Environment;
use phasegate::error::SpecError;
use phasegate::execute::{ExecutionOptions, RunResult, RunStatus, Silent};
use phasegate::plan::{self, Plan, Selection};
use phasegate::report::{self, PhaseReport, Totals};
use phasegate::spec::{self, Overrides, Spec};
use phasegate::verdict::{self, Facts, Status, Verdict};

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
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    plan.phases
        .iter()
        .map(|phase| {
            let results = phasegate::execute::execute_phase(phase, &options, &Silent);
            let verdicts = verdict::evaluate(phase, &results, facts, &verdict::Snapshots::new());
            (results, verdicts)
        })
        .collect()
}

fn fixed_environment() -> Environment {
    Environment {
        phasegate_version: "0.0.0".into(),
        git_sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        git_dirty: Some(false),
        rustc: "rustc 1.0.0".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        build_profile: "measure".into(),
        opt_level: "3".into(),
        debug_assertions: false,
        cpu_model: "Test CPU".into(),
        cpu_features: vec!["avx2".into()],
        cores: 2,
        memory_bytes: 8 << 30,
        memory_available_bytes: 6 << 30,
        os: "Test OS".into(),
        kernel: "6.0".into(),
        hostname: "testhost".into(),
        crate_versions: BTreeMap::new(),
    }
}

/// The spec of [`fixed_report`]: two workloads at two sizes, `slow` cold and warm,
/// and three checks (a paired ratio with parity, a median and an expression of
/// ratios).
pub fn fixed_spec() -> String {
    let text = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\", \"warm\"]")
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]")
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]");
    // Less jitter for `fast` (the seed, and so the outputs, stay shared), so the pairs'
    // ratios vary and the report shows a real interval of them.
    let text =
        text.replace("time_ms = 1.0\nsize = [8, 16]\njitter = 0.05", "time_ms = 1.0\nsize = [8, 16]\njitter = 0.02");
    assert!(text.contains("jitter = 0.02"));
    format!(
        "{text}\n[[phase.check]]\nid = \"speedup\"\nexpr = \"slow.warm.median / fast.warm.median >= 3\"\nparity = {{ of = \"fast\", against = \"slow\", output = \"values\", exact = true }}\nrationale = \"fast is at least 3x slow\"\n\n[[phase.check]]\nid = \"budget\"\nexpr = \"fast[size=8].warm.median <= 0.0009\"\nrationale = \"fast stays under 0.9 ms\"\n\n[[phase.check]]\nid = \"steady\"\nexpr = \"slow[size=16].warm.median / fast[size=16].warm.median / (slow[size=8].warm.median / fast[size=8].warm.median) <= 1.5\"\nrationale = \"the speed-up does not depend on the size\"\n"
    )
}

/// The report of phase `a` of [`fixed_spec`], run with the mock kernel in a fixed
/// environment at a fixed date: two checks pass, one fails and one is inconclusive.
pub fn fixed_report() -> PhaseReport {
    report_of(&fixed_spec(), &Overrides::default(), "cargo xtask run spec.toml")
}

/// The report of the first phase of a spec run with `overrides`, as `command` started
/// it, in the fixed environment and at the fixed date of [`fixed_report`].
pub fn report_of(text: &str, overrides: &Overrides, command: &str) -> PhaseReport {
    let spec = load_with(text, overrides).unwrap();
    let plan = plan::expand(spec, Selection::default(), &|_| false).unwrap();
    let (results, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    let environment = fixed_environment();
    let context = report::Context {
        spec: &plan.spec,
        environment: &environment,
        command: report::CommandLine::of(command.split(' ').skip(2)),
        started: "2026-01-01T00:00:00Z".into(),
        duration_s: 1.5,
        rounds: 1,
        report_dir: "reports/demo/2026-01-01T000000Z-testhost".into(),
        filter: None,
    };
    report::build(&plan.phases[0], &results, verdicts, &context)
}

/// [`fixed_report`] gone wrong in every way a report shows: the parity of
/// `speedup[size=8]` failed, a check could not be measured, `slow[size=16]` was
/// skipped and `fast[size=16]` crashed (its totals follow).
pub fn troubled_report() -> PhaseReport {
    let mut report = fixed_report();
    let speedup = &mut report.verdicts[0];
    assert_eq!(speedup.name(), "speedup[size=8]");
    speedup.status = Status::Fail;
    speedup.parity.as_mut().unwrap().status = Status::Fail;
    let mut missing = report.verdicts[2].clone();
    assert_eq!(missing.name(), "budget");
    missing.check = "missing".into();
    missing.status = Status::NotMeasured;
    missing.measured = None;
    missing.rationale = "fast[size=16] has a median".into();
    missing.reason = Some("`fast[size=16]` has no samples".into());
    report.verdicts.push(missing);
    for (name, status) in [
        ("slow[size=16]", RunStatus::Skipped("NB_C_BIN is not set".into())),
        ("fast[size=16]", RunStatus::Failed("step failed: out of memory\ndetails".into())),
    ] {
        let run = report.runs.iter_mut().find(|run| run.name() == name).unwrap();
        run.status = status;
        run.summaries.clear();
    }
    report.totals = Totals::of(&report.verdicts, &report.runs);
    report
}
