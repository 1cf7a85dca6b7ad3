//! Running a plan end to end: pre-flight checks, execution phase by phase, re-runs of
//! inconclusive checks, verdicts, reports, the `latest` pointer, the run log and the
//! exit code.
//!
//! Exit codes (also in the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every check passed (or is not applicable, skipped or waived) |
//! | 1 | a check failed, or could not be measured |
//! | 2 | the spec or the command line is invalid (nothing ran), or a passing run's CI output cannot be written |
//! | 3 | a workload crashed (error, panic or timeout) |
//! | 4 | a check stayed inconclusive after its re-runs |
//! | 130 | interrupted (SIGTERM, or SIGINT or SIGHUP unless ignored when the run started) |
//!
//! When several apply, the first of 2, 3, 1, 4 wins (`worst`); 130 ends the
//! process whatever else applied.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

use crate::clock::{self, DateTime};
use crate::env::{self, Environment};
use crate::error::SpecError;
use crate::execute::{self, ExecutionOptions, Observer, RunResult};
use crate::plan::{PhasePlan, Plan};
use crate::report::{self, PhaseReport, files, markdown};
use crate::snapshot;
use crate::spec::{Calibration, CalibrationMode, Mode, Source};
use crate::verdict::{self, Facts, Snapshots, Status, Verdict};

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Pass = 0,
    Failed = 1,
    Usage = 2,
    Crashed = 3,
    Inconclusive = 4,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit status of a set of phase reports.
    pub fn of(reports: &[PhaseReport]) -> Exit {
        Exit::of_totals(reports.iter().map(|report| &report.totals))
    }

    /// The exit status of phases with these totals: the worst phase's, where a crash
    /// is worse than a failure and a failure worse than an inconclusive result.
    pub fn of_totals<'a>(totals: impl IntoIterator<Item = &'a report::Totals>) -> Exit {
        let mut exit = Exit::Pass;
        for total in totals {
            let this = if total.failed_runs > 0 {
                Exit::Crashed
            } else if total.fail + total.not_measured > 0 {
                Exit::Failed
            } else if total.inconclusive > 0 {
                Exit::Inconclusive
            } else {
                Exit::Pass
            };
            exit = worst(exit, this);
        }
        exit
    }
}

fn worst(a: Exit, b: Exit) -> Exit {
    let rank = |exit: Exit| match exit {
        Exit::Pass => 0,
        Exit::Inconclusive => 1,
        Exit::Failed => 2,
        Exit::Crashed => 3,
        Exit::Usage => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Relative output paths resolve against it, and outputs must stay inside it.
    pub project_root: PathBuf,
    /// The command line, for the run log and the reports' "reproduce" section.
    pub command: crate::report::CommandLine,
    /// Allow an output root outside the project.
    pub allow_outside: bool,
    pub facts: Facts,
    /// Keep every run's outputs (snapshots need them).
    pub keep_all_outputs: bool,
    /// Reports to compare with (`--baseline`).
    pub baseline: Option<crate::baseline::Loaded>,
    /// Regenerate the experiment's living plan (`experiment.plan`) from this run.
    pub update_plan: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub reports: Vec<PhaseReport>,
    pub exit: Exit,
}

/// The directory reports of `plan` go to: `<project>/<output>/<experiment>`.
pub fn experiment_root(plan: &Plan, options: &RunOptions) -> PathBuf {
    let output = &plan.spec.experiment.output;
    let root = if output.is_absolute() { output.clone() } else { options.project_root.join(output) };
    normalize(&root).join(&plan.spec.experiment.name)
}

/// Checks everything about the environment that can fail before running: the output
/// location and the resources every group needs.
pub fn preflight(plan: &Plan, options: &RunOptions) -> Result<PathBuf, SpecError> {
    checked(plan, options).map(|(root, _)| root)
}

/// [`preflight`], giving also the stored snapshots of each phase, which it reads to
/// check them.
fn checked(plan: &Plan, options: &RunOptions) -> Result<(PathBuf, Vec<Snapshots>), SpecError> {
    let spec = &plan.spec;
    let root = experiment_root(plan, options);
    // Compared where the files would land: through the symbolic links on the way.
    let (project, resolved) = (through_links(&normalize(&options.project_root)), through_links(&root));
    if !options.allow_outside && !resolved.starts_with(&project) {
        let through =
            if resolved == root { String::new() } else { format!(" (through a link: {})", resolved.display()) };
        return Err(spec
            .value_error(
                "experiment.output",
                format!("reports would be written outside the project, to {}{through}", root.display()),
            )
            .with_hint("use a path inside the project, or pass --allow-outside to the command"));
    }
    files::check_writable(&root).map_err(|error| SpecError::new(&spec.file, format!("{error:#}")))?;
    let available_memory = env::meminfo_bytes("MemAvailable:");
    // The output root may not exist yet: its nearest existing ancestor holds the disk.
    let free_disk = env::free_disk_bytes(root.ancestors().find(|ancestor| ancestor.exists()).unwrap_or(&root));
    for phase in &plan.phases {
        for group in &phase.groups {
            let runs: Vec<_> = group.iter().map(|&index| &phase.runs[index]).filter(|run| run.skip.is_none()).collect();
            let memory: u64 = runs.iter().map(|run| run.resources.memory_bytes).sum();
            let disk: u64 = runs.iter().map(|run| run.resources.disk_bytes).sum();
            let names = runs.iter().map(|run| format!("`{}`", run.name())).collect::<Vec<_>>().join(", ");
            if available_memory > 0 && memory > available_memory {
                return Err(spec.locator().key_error(
                    &format!("phase.{}.workload.{}.params", phase.phase.id, runs[0].workload),
                    format!(
                        "{names} would need {} of memory; this machine has {} available",
                        markdown::format_bytes(memory as f64),
                        markdown::format_bytes(available_memory as f64)
                    ),
                ));
            }
            if free_disk > 0 && disk > free_disk {
                return Err(spec.locator().key_error(
                    &format!("phase.{}.workload.{}.params", phase.phase.id, runs[0].workload),
                    format!(
                        "{names} would need {} of scratch disk; {} is free under {}",
                        markdown::format_bytes(disk as f64),
                        markdown::format_bytes(free_disk as f64),
                        root.display()
                    ),
                ));
            }
        }
    }
    // The variables a run reads by name: one it would fail to read stops the run here.
    for phase in &plan.phases {
        for run in phase.runs.iter().filter(|run| run.skip.is_none()) {
            let kernel = crate::kernels::find(&run.kernel).expect("a validated kernel");
            for variable in kernel.variables(&run.params) {
                let problem = match std::env::var(&variable) {
                    Ok(_) => continue,
                    Err(std::env::VarError::NotPresent) => "is not set",
                    Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
                };
                let key = format!("phase.{}.workload.{}.params", phase.phase.id, run.workload);
                return Err(spec
                    .locator()
                    .key_error(
                        &key,
                        format!("run `{}` reads the environment variable {variable}, which {problem}", run.name()),
                    )
                    .with_hint(format!(
                        "set it, or add `requires_env = \"{variable}\"` to the workload to skip it where it is not set"
                    )));
            }
        }
    }
    // A damaged stored snapshot stops the run before anything runs, not at its phase.
    let store = snapshot::Store::for_spec(spec);
    let snapshots = plan.phases.iter().map(|phase| load_snapshots(phase, &store)).collect::<Result<Vec<_>>>();
    let snapshots = snapshots.map_err(|error| {
        SpecError::new(&spec.file, format!("{error:#}"))
            .with_hint("remove the snapshot's .json and .bin to record it anew, or restore them")
    })?;
    Ok((root, snapshots))
}

/// A plan that passed the checks before running, with what they found (the output
/// root and the stored snapshots): only [`prepare`] makes one, and [`run_prepared`]
/// runs it.
pub struct Prepared<'a> {
    plan: &'a Plan,
    options: &'a RunOptions,
    root: PathBuf,
    snapshots: Vec<Snapshots>,
}

/// Starts a run: the checks of [`preflight`], keeping what they read for
/// [`run_prepared`]. Between the two, the caller may do what only a run that is about
/// to start should (the command line opens its `--log-file`).
pub fn prepare<'a>(plan: &'a Plan, options: &'a RunOptions) -> Result<Prepared<'a>, SpecError> {
    // From the start: an interrupt before the first phase (while the environment is
    // probed) exits with 130 too, and the run log lists it from the moment the run's
    // directory exists.
    execute::install_interrupt_cleanup();
    let (root, snapshots) = checked(plan, options)?;
    Ok(Prepared { plan, options, root, snapshots })
}

/// Runs `plan`, writing reports as each phase finishes: [`prepare`], then
/// [`run_prepared`].
pub fn run(plan: &Plan, options: &RunOptions, observer: &dyn Observer) -> Result<Outcome> {
    run_prepared(prepare(plan, options)?, observer)
}

/// Runs a prepared plan, writing reports as each phase finishes.
pub fn run_prepared(prepared: Prepared<'_>, observer: &dyn Observer) -> Result<Outcome> {
    let Prepared { plan, options, root, snapshots } = prepared;
    let store = snapshot::Store::for_spec(&plan.spec);
    let environment = Environment::probe(&options.project_root);
    let started_at = DateTime::from_unix(clock::wall_time());
    let run_dir = files::create_run_dir(&root, &started_at.compact(), &environment.hostname)?;
    let relative_dir = run_dir.strip_prefix(&options.project_root).unwrap_or(&run_dir).display().to_string();
    // `DATE exit=N DIR a=pass b=fail [interrupted] rev=REV :: COMMAND`
    let log_line = |exit: i32, reports: &[PhaseReport]| {
        let mut fields: Vec<String> =
            reports.iter().map(|report| format!("{}={}", report.phase.id, report.totals.verdict())).collect();
        if exit == execute::INTERRUPTED_EXIT {
            fields.push("interrupted".into());
        }
        let revision = environment.revision();
        let fields = fields.join(" ");
        format!(
            "{} exit={exit} {relative_dir} {fields} rev={revision} :: {}",
            started_at.rfc3339(),
            options.command.render()
        )
    };
    let interrupted = |reports: &[PhaseReport]| Some((root.clone(), log_line(execute::INTERRUPTED_EXIT, reports)));
    let mut reports = Vec::new();
    execute::set_interrupt_record(interrupted(&reports));
    let execution = ExecutionOptions {
        scratch_root: run_dir.join("scratch"),
        keep_all_outputs: options.keep_all_outputs,
        calibration: false,
    };
    files::write_atomic(&run_dir.join("env.json"), &serde_json::to_vec_pretty(&environment)?)?;
    // Where the run stores pending snapshots, which need not be where `snapshot review`
    // looks by default.
    let review_command = || snapshot::review_command(&snapshot::dir_for_spec(&plan.spec), &options.project_root);
    let facts = options.facts.for_spec(&plan.spec.experiment);
    for (phase, snapshots) in plan.phases.iter().zip(&snapshots) {
        let phase_started = DateTime::from_unix(clock::wall_time());
        let stamp = clock::now();
        observer.phase_started(phase, phase.n_steps());
        let floors = calibrate(phase, &execution, &plan.spec.calibration);
        let (results, mut verdicts, rounds) = execute_with_reruns(phase, &execution, observer, &facts, snapshots);
        settle(phase, &mut verdicts, &floors, plan.spec.calibration.mode, &facts);
        let recording = Recording { ci: facts.ci, sources: &plan.spec.sources, review_command: &review_command };
        record_snapshots(phase, &results, &mut verdicts, &store, snapshots, &recording);
        let context = report::Context {
            spec: &plan.spec,
            environment: &environment,
            command: options.command.clone(),
            started: phase_started.rfc3339(),
            duration_s: stamp.elapsed().as_secs_f64(),
            rounds,
            report_dir: relative_dir.clone(),
            filter: plan.selection.filter.clone(),
        };
        let mut report = report::build(phase, &results, verdicts, &context);
        if let Some(baseline) = &options.baseline {
            let earlier = baseline.phase(&report.phase.id);
            if earlier.is_empty() {
                tracing::warn!("the baseline {} has no phase `{}`", baseline.label, report.phase.id);
            }
            let compared = crate::baseline::compare_earlier(&report, &earlier, &plan.spec.baseline);
            report.verdicts.extend(compared);
            report.totals = report::Totals::of(&report.verdicts, &report.runs);
        }
        let phase_dir = run_dir.join(&phase.phase.id);
        files::write_atomic(&phase_dir.join("report.json"), &serde_json::to_vec_pretty(&report)?)?;
        let charts = report::charts::render(&report);
        for chart in &charts {
            files::write_atomic(&phase_dir.join(&chart.file), chart.svg.as_bytes())?;
        }
        files::write_atomic(&phase_dir.join("report.md"), markdown::render(&report, &charts).as_bytes())?;
        observer.phase_finished(phase);
        reports.push(report);
        execute::set_interrupt_record(interrupted(&reports));
    }
    let _ = std::fs::remove_dir(run_dir.join("scratch"));
    // The phases' reports are written and the verdict stands: what fails from here on
    // is said, and the rest is still done.
    let exit = Exit::of(&reports);
    execute::set_interrupt_record(None);
    let finish = [
        (
            "cannot write the run's summary",
            files::write_atomic(&run_dir.join("summary.md"), markdown::render_summary(&reports).as_bytes()),
        ),
        ("cannot update the `latest` link", files::update_latest(&root, &run_dir)),
        ("cannot append to the run log", files::append_run_log(&root, &log_line(exit.code(), &reports))),
    ];
    for (what, result) in finish {
        if let Err(error) = result {
            tracing::warn!("{what}: {error:#}");
        }
    }
    if options.update_plan
        && let Err(error) = update_plan(plan, options, &root)
    {
        tracing::warn!("the plan is not updated: {error:#}");
    }
    Ok(Outcome { run_dir, reports, exit })
}

/// Executes a phase, then re-runs the groups behind inconclusive checks while their
/// budget (`reruns`) lasts, waived or not (a waived check that becomes a pass is an
/// xpass to report). Returns the results, the verdicts before waivers (see
/// [`verdict::waive`]) and the rounds used.
pub fn execute_with_reruns(
    phase: &PhasePlan,
    execution: &ExecutionOptions,
    observer: &dyn Observer,
    facts: &Facts,
    snapshots: &Snapshots,
) -> (Vec<RunResult>, Vec<Verdict>, u32) {
    let mut results = execute::execute_phase(phase, execution, observer);
    let mut verdicts = verdict::evaluate_unwaived(phase, &results, facts, snapshots);
    let mut round = 1;
    loop {
        let mut groups: Vec<usize> = Vec::new();
        for (check, point) in phase.checks.iter().flat_map(|check| check.points.iter().map(move |point| (check, point)))
        {
            let inconclusive = verdicts.iter().any(|verdict| {
                verdict.check == check.check.id
                    && verdict.point == point.label
                    && verdict.status == Status::Inconclusive
            });
            if !inconclusive {
                continue;
            }
            for &run in &point.condition_runs {
                let budget = phase.runs[run].settings.reruns;
                if round <= budget {
                    let group = phase.group_of(run);
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
            }
        }
        if groups.is_empty() {
            return (results, verdicts, round);
        }
        groups.sort_unstable();
        tracing::info!(target: "phasegate::run", phase = %phase.phase.id, round, groups = groups.len(), "re-running groups of inconclusive checks");
        execute::execute_groups(phase, execution, observer, &mut results, Some(&groups), round);
        verdicts = verdict::evaluate_unwaived(phase, &results, facts, snapshots);
        round += 1;
    }
}

/// Regenerates the experiment's plan document, when it has one and this run is a run of
/// the spec as written (no `--filter`, `--profile` or override), from the reports under
/// this run's output root.
fn update_plan(plan: &Plan, options: &RunOptions, root: &Path) -> Result<()> {
    let Some(document) = &plan.spec.experiment.plan else { return Ok(()) };
    let spec = &plan.spec;
    let altered = report::alterations(spec.profile.as_deref(), plan.selection.filter.as_deref(), &spec.sources);
    if !altered.is_empty() {
        // The plan shows runs of the spec as written; this run's figures are not those.
        tracing::warn!("the plan {} is not updated: this run used {}", document.display(), altered.join(", "));
        return Ok(());
    }
    let path = options.project_root.join(document);
    if !path.is_file() {
        tracing::warn!("the plan document {} does not exist", path.display());
        return Ok(());
    }
    // The spec as the project names it, for the hint of a region with no report.
    let spec_file = std::fs::canonicalize(&spec.file)
        .ok()
        .and_then(|file| {
            let project = std::fs::canonicalize(&options.project_root).ok()?;
            Some(file.strip_prefix(project).ok()?.to_owned())
        })
        .unwrap_or_else(|| spec.file.clone());
    let located = crate::living::Located { root: root.to_owned(), spec: Some(spec_file.display().to_string()) };
    crate::living::update_file_after_run(&options.project_root, &path, &spec.experiment.name, located)?;
    Ok(())
}

/// A/A noise floors by (reference run, mode, quantity): see [`crate::spec::Calibration`].
/// An error says why a floor could not be measured (an instance failed).
pub type Floors = HashMap<(usize, Mode, String), Result<f64, String>>;

/// Runs the A/A calibration of the phase's paired-ratio checks.
pub fn calibrate(phase: &PhasePlan, execution: &ExecutionOptions, calibration: &Calibration) -> Floors {
    let mut floors = Floors::new();
    for twin in phase.calibration_twins(calibration) {
        let (reference, mode, quantity) = &twin.key;
        let calibration = ExecutionOptions { calibration: true, ..execution.clone() };
        let results = execute::execute_phase(&twin.plan, &calibration, &execute::Silent);
        let name = phase.runs[*reference].name();
        // A floor from the pairs before an instance failed would pass for a measured one.
        if let Some(message) = results.iter().find_map(RunResult::failed) {
            let reason = format!("the A/A calibration of `{name}` failed ({message}): no noise floor");
            floors.insert(twin.key, Err(reason));
            continue;
        }
        let a = verdict::keyed_values(&results[0], *mode, quantity);
        let b: HashMap<(u32, u32), f64> = verdict::keyed_values(&results[1], *mode, quantity).into_iter().collect();
        let ratios: Vec<f64> = a.iter().filter_map(|(key, value)| b.get(key).map(|other| value / other)).collect();
        if let Some(floor) = noise_floor(&ratios) {
            tracing::info!(target: "phasegate::calibration", run = %name, floor, "A/A noise floor");
            floors.insert(twin.key, Ok(floor));
        }
    }
    floors
}

/// The noise floor of A/A ratios, which are 1 in truth: how far from 1 the interval of
/// their median reaches, on the farther side.
pub fn noise_floor(ratios: &[f64]) -> Option<f64> {
    let summary = crate::stats::Summary::of(ratios)?;
    Some((1.0 - summary.ci_low).abs().max((summary.ci_high - 1.0).abs()))
}

/// Settles the verdicts of a phase after its last re-run: the noise floors meet the
/// statuses the checks earned, then each waiver covers the result (so a waived check
/// whose margin lies inside the floor is still waived).
pub fn settle(phase: &PhasePlan, verdicts: &mut [Verdict], floors: &Floors, mode: CalibrationMode, facts: &Facts) {
    apply_noise_floors(phase, verdicts, floors, mode);
    for verdict in verdicts.iter_mut() {
        verdict::waive(verdict, facts);
    }
}

/// Flags (or, in `fail` mode, fails) paired-ratio verdicts whose margin lies inside the
/// noise floor; a floor that could not be measured is said, and in `fail` mode leaves
/// the check not measured.
pub fn apply_noise_floors(phase: &PhasePlan, verdicts: &mut [Verdict], floors: &Floors, mode: CalibrationMode) {
    if mode == CalibrationMode::Off {
        return;
    }
    let points = phase.checks.iter().flat_map(|check| check.points.iter().map(move |point| (check, point)));
    for ((check, point), verdict) in points.zip(verdicts.iter_mut()) {
        let Some(condition) = check.check.condition.as_ref() else { continue };
        let (Some((_, reference)), Some((_, denominator))) = (point.paired(condition), condition.ratio()) else {
            continue;
        };
        let floor = match floors.get(&(reference, denominator.mode, denominator.quantity.clone())) {
            None => continue,
            Some(Ok(floor)) => *floor,
            Some(Err(reason)) => {
                verdict.add_note(reason.clone());
                // Only a result the floor could have turned into a failure is unsettled.
                if mode == CalibrationMode::Fail && matches!(verdict.status, Status::Pass | Status::Inconclusive) {
                    verdict.status = Status::NotMeasured;
                }
                continue;
            }
        };
        verdict.noise_floor = Some(floor);
        let Some(margin) = verdict.measured.as_ref().and_then(|measured| measured.margin) else { continue };
        if margin.abs() >= floor {
            continue;
        }
        verdict.add_note(format!(
                "the margin {:+.1}% is inside this machine's A/A noise floor of ±{:.1}%: the threshold is tighter than the machine resolves",
                100.0 * margin,
                100.0 * floor
            ),
        );
        if mode == CalibrationMode::Fail && verdict.status != Status::Fail {
            verdict.status = Status::Fail;
        }
    }
}

/// The stored snapshots the phase's snapshot checks compare with.
fn load_snapshots(phase: &PhasePlan, store: &snapshot::Store) -> Result<Snapshots> {
    let mut snapshots = Snapshots::new();
    for check in &phase.checks {
        let Some(wanted) = &check.check.snapshot else { continue };
        for run in check.points.iter().filter_map(|point| point.snapshot_run) {
            let stored = store.load(&phase.phase.id, &phase.runs[run].name(), &wanted.output)?;
            snapshots.insert((run, wanted.output.clone()), stored);
        }
    }
    Ok(snapshots)
}

/// What a run does with outputs that have no stored snapshot or no longer match it.
struct Recording<'a> {
    /// Under `CI=true` nothing is recorded: a missing snapshot fails its check.
    ci: bool,
    /// Where the spec's values came from: a run that an override (`--set`,
    /// `PHASEGATE_*`) reaches computes something else than the spec says, so its
    /// outputs are compared with the stored snapshots but never stored, nor left
    /// pending.
    sources: &'a [Source],
    /// The command that reviews pending snapshots, for the verdicts that leave one.
    review_command: &'a dyn Fn() -> String,
}

/// Records new snapshots (outside CI, whatever the rest of the check found), the
/// outputs that no longer match as pending ones (telling their verdicts the command
/// that reviews them), and drops the pending output of a comparison that passes or that
/// a recording supersedes. A run that overrides reach stores nothing, and its verdicts
/// say so.
fn record_snapshots(
    phase: &PhasePlan,
    results: &[RunResult],
    verdicts: &mut [Verdict],
    store: &snapshot::Store,
    snapshots: &Snapshots,
    recording: &Recording,
) {
    let points = phase.checks.iter().flat_map(|check| check.points.iter().map(move |point| (check, point)));
    for ((check, point), verdict) in points.zip(verdicts) {
        let (Some(wanted), Some(run)) = (&check.check.snapshot, point.snapshot_run) else { continue };
        let Some(output) = results[run].outputs.iter().find(|output| output.name == wanted.output) else { continue };
        let name = phase.runs[run].name();
        let stored = snapshots.get(&(run, wanted.output.clone())).is_some_and(Option::is_some);
        let overrides = overrides_reaching(recording.sources, &phase.phase.id, &phase.runs[run].workload);
        let not_kept = || format!("the run is overridden ({})", overrides.join(", "));
        if !stored && !recording.ci {
            if !overrides.is_empty() {
                verdict.add_note(format!("this output was not recorded: {}", not_kept()));
                continue;
            }
            let saved = store.save(&phase.phase.id, &name, output, false);
            match saved.and_then(|path| store.discard_pending(&phase.phase.id, &name, &wanted.output).map(|()| path)) {
                Ok(path) => {
                    tracing::info!(target: "phasegate::snapshot", "recorded a new snapshot {}", path.display());
                    verdict.add_note("this output was recorded as the snapshot".to_owned());
                }
                Err(error) => unsaved(verdict, error, "this output was not recorded"),
            }
        } else if verdict.snapshot.as_ref().is_some_and(|figures| figures.status == Status::Fail) {
            if !overrides.is_empty() {
                verdict.add_note(format!("the new output is not kept: {}", not_kept()));
                continue;
            }
            match store.save(&phase.phase.id, &name, output, true) {
                Ok(path) => {
                    tracing::warn!(
                        "snapshot mismatch for {name} `{}`: the new output is pending at {}",
                        wanted.output,
                        path.display()
                    );
                    verdict.add_note(format!("the new output is pending: `{}`", (recording.review_command)()));
                }
                Err(error) => unsaved(verdict, error, "the new output is not pending"),
            }
        } else if verdict.snapshot.as_ref().is_some_and(|figures| figures.status == Status::Pass)
            && overrides.is_empty()
            && let Err(error) = store.discard_pending(&phase.phase.id, &name, &wanted.output)
        {
            tracing::warn!("{error:#}");
        }
    }
}

/// The overrides (`--set`, `PHASEGATE_*`) that reach the runs of `workload` in `phase`,
/// each once: of the workload itself, of the defaults it may take, and of the seed.
/// Those of other workloads, other phases or the output root change none of its outputs.
fn overrides_reaching(sources: &[Source], phase: &str, workload: &str) -> Vec<String> {
    let own = format!("phase.{phase}.workload.{workload}.");
    let phase_defaults = format!("phase.{phase}.defaults.");
    report::override_origins(sources, |key| {
        key.starts_with(&own)
            || key.starts_with(&phase_defaults)
            || key.starts_with("defaults.")
            || key == "experiment.seed"
    })
}

/// Says on `verdict`, and as a warning, that a snapshot could not be written.
fn unsaved(verdict: &mut Verdict, error: anyhow::Error, what: &str) {
    tracing::warn!("{what}: {error:#}");
    verdict.add_note(format!("{what}: {error:#}"));
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normalized.pop();
            }
            Component::CurDir => {}
            other => normalized.push(other),
        }
    }
    normalized
}

/// `path` with its longest existing ancestor resolved through symbolic links, the
/// rest (which does not exist yet, so holds no link) as it is.
fn through_links(path: &Path) -> PathBuf {
    let Some((existing, resolved)) =
        path.ancestors().find_map(|ancestor| Some((ancestor, std::fs::canonicalize(ancestor).ok()?)))
    else {
        return path.to_owned();
    };
    resolved.join(path.strip_prefix(existing).unwrap_or(Path::new("")))
}

/// The project root: the git top level of `start`, or `start` itself.
pub fn project_root(start: &Path) -> PathBuf {
    std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(start)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .unwrap_or_else(|| start.to_owned())
}

/// The facts of this machine and process, for verdicts.
pub fn machine_facts(environment_vars: &[(String, String)]) -> Facts {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let features = cpuinfo
        .lines()
        .find(|line| line.starts_with("flags") || line.starts_with("Features"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Facts {
        cpu_features: features,
        env_set: environment_vars.iter().filter(|(_, value)| !value.is_empty()).map(|(name, _)| name.clone()).collect(),
        today: DateTime::from_unix(clock::wall_time()).date(),
        untimed: (!crate::env::optimized_build()).then(|| "this build is not optimized".to_owned()),
        ci: environment_vars.iter().any(|(name, value)| name == "CI" && (value == "true" || value == "1")),
    }
}

/// Reads a phase report back.
pub fn read_report(path: &Path) -> Result<PhaseReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report: PhaseReport =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    if !report::READABLE_SCHEMA_VERSIONS.contains(&report.schema_version) {
        anyhow::bail!(
            "{} has report schema {}, this phasegate reads schemas {:?}",
            path.display(),
            report.schema_version,
            report::READABLE_SCHEMA_VERSIONS
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{Exit, machine_facts, noise_floor};
    use crate::report::Totals;

    #[test]
    fn the_noise_floor_is_the_farther_end_of_the_median_interval() {
        // Nine ratios: the 95% interval of the median is [2nd, 8th] (96.1%).
        let ratios = [1.05, 0.96, 1.0, 0.98, 1.04, 0.99, 1.01, 0.97, 1.02];
        assert!((noise_floor(&ratios).unwrap() - 0.04).abs() < 1e-12);
        let low_side = ratios.map(|ratio| 2.0 - ratio);
        assert!((noise_floor(&low_side).unwrap() - 0.04).abs() < 1e-12);
        assert_eq!(noise_floor(&[1.0; 6]), Some(0.0));
        assert_eq!(noise_floor(&[]), None);
    }

    #[test]
    fn the_worst_phase_sets_the_exit_status() {
        let pass = Totals { pass: 3, xfail: 1, not_applicable: 2, ..Totals::default() };
        let failed = Totals { fail: 1, inconclusive: 1, pass: 2, ..Totals::default() };
        let not_measured = Totals { not_measured: 1, ..Totals::default() };
        let inconclusive = Totals { inconclusive: 2, pass: 1, ..Totals::default() };
        let crashed = Totals { failed_runs: 1, pass: 4, ..Totals::default() };
        assert_eq!(Exit::of_totals([&pass]), Exit::Pass);
        assert_eq!(Exit::of_totals(&[] as &[Totals]), Exit::Pass);
        // Within a phase: a failure outranks an inconclusive check.
        assert_eq!(Exit::of_totals([&failed]), Exit::Failed);
        assert_eq!(Exit::of_totals([&not_measured]), Exit::Failed);
        // Across phases, in either order: crashed, then failed, then inconclusive.
        assert_eq!(Exit::of_totals([&inconclusive, &pass]), Exit::Inconclusive);
        assert_eq!(Exit::of_totals([&inconclusive, &failed]), Exit::Failed);
        assert_eq!(Exit::of_totals([&failed, &inconclusive]), Exit::Failed);
        assert_eq!(Exit::of_totals([&inconclusive, &crashed, &failed]), Exit::Crashed);
        assert_eq!(Exit::of_totals([&crashed, &inconclusive]), Exit::Crashed);
        assert_eq!(
            [Exit::Pass, Exit::Failed, Exit::Usage, Exit::Crashed, Exit::Inconclusive].map(Exit::code),
            [0, 1, 2, 3, 4]
        );
    }

    /// Whether `CI` holds `value` makes a CI run, and which variables count as set.
    fn check_facts_of_environment(vars: &[(&str, &str)], ci: bool, env_set: &[&str]) {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        let facts = machine_facts(&vars);
        assert_eq!(facts.ci, ci, "{vars:?}");
        assert_eq!(facts.env_set, env_set, "{vars:?}");
    }

    #[test]
    fn ci_and_set_variables_come_from_the_environment() {
        check_facts_of_environment(&[("CI", "true")], true, &["CI"]);
        check_facts_of_environment(&[("CI", "1")], true, &["CI"]);
        check_facts_of_environment(&[("CI", "false")], false, &["CI"]);
        check_facts_of_environment(&[("CI", "")], false, &[]);
        check_facts_of_environment(&[("NOT_CI", "true")], false, &["NOT_CI"]);
        // A variable set to nothing is not set, as for a workload's `requires_env`.
        check_facts_of_environment(&[("NB_C_BIN", ""), ("HOME", "/home/x")], false, &["HOME"]);
    }
}
