//! The experiments' acceptance checks as tests: one trial per check of every
//! `experiments/*.toml`, named `experiment::phase::check`, runnable and filterable
//! under `cargo test` and `cargo nextest`.
//!
//! Each experiment runs with its `[profile.ci]` (small sizes, few repeats); a phase is
//! executed once, when the first of its trials runs, and its reports go to
//! `target/tmp/acceptance/`. Trials run one at a time so that no two experiments
//! compete for the cores while they are timed. A check passes when every point of it
//! passes (or is waived); not applicable and skipped checks are reported as ignored
//! with their reason (a profile whose sizes are too small to time says so with
//! `experiment.untimed`, and its checks that require `build:optimized` are then not
//! applicable in any build); fail, not measured and inconclusive fail the trial with
//! the measured value, the threshold and the report file. Each phase also has a trial
//! `experiment::phase::runs`, which fails when any of its runs failed, whether or not a
//! check names that run (as `cargo xtask run` exits non-zero for a crashed run).
//! `EXPERIMENTS_DIR` points the harness at another directory of specs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use phasegate::execute::Silent;
use phasegate::plan::{self, Selection};
use phasegate::report::PhaseReport;
use phasegate::run::{self, RunOptions};
use phasegate::spec::{self, Overrides, Spec};
use phasegate::verdict::{Status, Verdict, format_number, format_pair};

/// The profile experiments run with under `cargo test`.
const PROFILE: &str = "ci";

fn main() {
    let mut arguments = Arguments::from_args();
    arguments.test_threads = Some(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("EXPERIMENTS_DIR").map_or_else(|| root.join("experiments"), PathBuf::from);
    let trials = trials(&dir, &root);
    libtest_mimic::run(&arguments, trials).exit();
}

type PhaseOutcome = Result<(PhaseReport, PathBuf), String>;
/// One cell per (spec file, phase id).
type PhaseCells = HashMap<(PathBuf, String), Arc<OnceLock<PhaseOutcome>>>;

/// Phase results shared by the trials of one phase: run once, on first use.
#[derive(Default)]
struct Cache {
    phases: Mutex<PhaseCells>,
}

impl Cache {
    fn phase(&self, spec: &Spec, phase: &str, root: &Path) -> PhaseOutcome {
        let cell = {
            let mut phases = self.phases.lock().unwrap_or_else(|poison| poison.into_inner());
            phases.entry((spec.file.clone(), phase.to_owned())).or_default().clone()
        };
        cell.get_or_init(|| run_phase(spec, phase, root)).clone()
    }
}

fn run_phase(spec: &Spec, phase: &str, root: &Path) -> PhaseOutcome {
    let plan = plan::expand(spec.clone(), Selection { phase: Some(phase.to_owned()), filter: None }, &|name| {
        std::env::var_os(name).is_some_and(|value| !value.is_empty())
    })
    .map_err(|error| error.to_string())?;
    let output = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("acceptance");
    let mut plan = plan;
    plan.spec.experiment.output = output;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let options = RunOptions {
        project_root: root.to_owned(),
        command: phasegate::report::CommandLine::of([
            "run".into(),
            spec.file.clone().into_os_string(),
            "--profile".into(),
            PROFILE.into(),
            "--phase".into(),
            phase.into(),
        ]),
        allow_outside: true,
        facts: run::machine_facts(&vars),
        keep_all_outputs: false,
        baseline: None,
        update_plan: false,
    };
    let outcome = run::run(&plan, &options, &Silent).map_err(|error| format!("{error:#}"))?;
    let report = outcome.reports.into_iter().next().ok_or("the phase produced no report")?;
    let file = outcome.run_dir.join(phase).join("report.md");
    Ok((report, file))
}

fn trials(dir: &Path, root: &Path) -> Vec<Trial> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|extension| extension == "toml"));
    files.sort();
    let cache = Arc::new(Cache::default());
    let mut trials = Vec::new();
    for file in files {
        let name = file.file_stem().and_then(|stem| stem.to_str()).unwrap_or("spec").to_owned();
        let overrides = Overrides {
            profile: Some(PROFILE.into()),
            ..Overrides::from_env().expect("PHASEGATE_ variables are UTF-8")
        };
        let spec = match spec::load(&file, &overrides) {
            Ok(spec) => Arc::new(spec),
            Err(error) => {
                let message = error.to_string();
                trials.push(Trial::test(format!("{name}::spec"), move || Err(Failed::from(message))).with_kind("spec"));
                continue;
            }
        };
        for phase in &spec.phases {
            let (phase_spec, phase_cache, phase_root) = (Arc::clone(&spec), Arc::clone(&cache), root.to_owned());
            let phase_id = phase.id.clone();
            trials.push(
                Trial::test(format!("{}::{phase_id}::runs", spec.experiment.name), move || {
                    let (report, file) =
                        phase_cache.phase(&phase_spec, &phase_id, &phase_root).map_err(Failed::from)?;
                    runs_completed(&report, &file)
                })
                .with_kind("runs"),
            );
            for check in &phase.checks {
                let (spec, cache, root) = (Arc::clone(&spec), Arc::clone(&cache), root.to_owned());
                let (phase_id, check_id) = (phase.id.clone(), check.id.clone());
                let kind = match (&check.condition, &check.parity) {
                    (Some(_), Some(_)) => "timing+parity",
                    (Some(_), None) => "check",
                    _ => "parity",
                };
                let trial_name = format!("{}::{phase_id}::{check_id}", spec.experiment.name);
                trials.push(
                    Trial::ignorable_test(trial_name, move || {
                        let (report, file) = cache.phase(&spec, &phase_id, &root).map_err(Failed::from)?;
                        judge(&report, &check_id, &file)
                    })
                    .with_kind(kind),
                );
            }
        }
    }
    trials
}

/// Fails when a run of the phase failed.
fn runs_completed(report: &PhaseReport, file: &Path) -> Result<(), Failed> {
    let failed: Vec<String> =
        report.crashed_runs().map(|(run, message)| format!("run `{}` failed: {message}", run.name())).collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failed::from(format!("{}\nreport: {}", failed.join("\n"), file.display())))
}

/// The trial outcome of one check from its verdicts.
fn judge(report: &PhaseReport, check: &str, file: &Path) -> Result<Completion, Failed> {
    let verdicts: Vec<&Verdict> = report.verdicts.iter().filter(|verdict| verdict.check == check).collect();
    if verdicts.is_empty() {
        return Err(Failed::from(format!("no verdict for `{check}` in {}", file.display())));
    }
    let failures: Vec<String> = verdicts
        .iter()
        .filter(|verdict| matches!(verdict.status, Status::Fail | Status::NotMeasured | Status::Inconclusive))
        .map(|verdict| describe(verdict))
        .collect();
    if !failures.is_empty() {
        return Err(Failed::from(format!("{}\nreport: {}", failures.join("\n"), file.display())));
    }
    let ignored: Vec<String> = verdicts
        .iter()
        .filter(|verdict| matches!(verdict.status, Status::NotApplicable | Status::Skipped))
        .map(|verdict| format!("{}: {}", verdict.name(), verdict.reason.as_deref().unwrap_or(verdict.status.name())))
        .collect();
    if ignored.len() == verdicts.len() {
        return Ok(Completion::ignored_with(ignored.join("; ")));
    }
    Ok(Completion::Completed)
}

fn describe(verdict: &Verdict) -> String {
    let mut text = format!("{} is {}", verdict.name(), verdict.status.name());
    if let Some(measured) = &verdict.measured {
        let (observed, threshold) = format_pair(measured.observed, measured.threshold);
        text.push_str(&format!(": measured {observed}, threshold {} {threshold}", measured.cmp));
        if let Some((low, high)) = measured.interval {
            text.push_str(&format!(" (interval [{}, {}])", format_number(low), format_number(high)));
        }
    }
    if let Some(reason) = &verdict.reason {
        text.push_str(&format!("; {reason}"));
    }
    text
}
