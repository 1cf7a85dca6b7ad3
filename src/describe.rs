//! Text for `list`, `check` and `run --dry-run`: what a spec expands to, where each
//! setting comes from, and how long a run should take.
//!
//! The time estimate uses the earlier reports of the same experiment, when there are
//! some: for each run, the newest report that measured the same work (its name, thread
//! count and parameters, see [`crate::baseline::Work`]) gives the median cold and warm
//! step times, times the steps planned, A/A calibration included. Runs no report
//! measured with their parameters are counted as unknown rather than guessed. Re-runs
//! of inconclusive checks are not in the estimate, as they may not happen; their most is
//! said beside it.

use std::fmt::Write;

use crate::baseline::{Loaded, Work};
use crate::plan::{Plan, Run};
use crate::report::PhaseReport;
use crate::spec::{Mode, Order, Spec};
use crate::stats::format_seconds;

/// An estimate of a plan's duration from earlier reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The steps of the known runs, and of the A/A calibration of those among them
    /// that are calibrated (`calibration_seconds` of it).
    pub seconds: f64,
    pub calibration_seconds: f64,
    /// Not in `seconds`: the most the re-runs of inconclusive checks may add to the known
    /// runs' steps, each group re-run as often as the largest `reruns` among its runs
    /// that checks read, and the most rounds any group may take.
    pub rerun_seconds: f64,
    pub rerun_rounds: u32,
    pub known_runs: usize,
    pub unknown_runs: usize,
}

/// Estimates `plan`'s time in steps from `earlier` (see the module's documentation).
pub fn estimate(plan: &Plan, earlier: Option<&Loaded>) -> Estimate {
    let mut estimate = Estimate {
        seconds: 0.0,
        calibration_seconds: 0.0,
        rerun_seconds: 0.0,
        rerun_rounds: 0,
        known_runs: 0,
        unknown_runs: 0,
    };
    for phase in &plan.phases {
        let reports: Vec<(&PhaseReport, &str)> = earlier
            .map(|loaded| loaded.phase(&phase.phase.id))
            .unwrap_or_default()
            .into_iter()
            .map(|earlier| (&earlier.report, earlier.label.as_str()))
            .collect();
        let median = |run: &Run, mode: Mode| {
            let (_, old, _) = Work::of_plan(run).counterpart(&reports, mode, true)?;
            Some(old.summary(mode, "time")?.median)
        };
        let mut known_runs = Vec::new();
        let mut known_seconds = vec![0.0; phase.runs.len()];
        for run in phase.runs.iter().filter(|run| run.skip.is_none()) {
            let mut seconds = 0.0;
            let mut known = true;
            for &mode in &run.settings.modes {
                match median(run, mode) {
                    Some(median) => seconds += run.steps(mode) as f64 * median,
                    None => known = false,
                }
            }
            if known {
                estimate.seconds += seconds;
                estimate.known_runs += 1;
                known_runs.push(run.index);
                known_seconds[run.index] = seconds;
            } else {
                estimate.unknown_runs += 1;
            }
        }
        let checked: Vec<usize> = phase
            .checks
            .iter()
            .flat_map(|check| &check.points)
            .flat_map(|point| point.condition_runs.clone())
            .collect();
        for group in &phase.groups {
            let budget = group.iter().filter(|run| checked.contains(run)).map(|&run| phase.runs[run].settings.reruns);
            let budget = budget.max().unwrap_or(0);
            estimate.rerun_seconds += f64::from(budget) * group.iter().map(|&run| known_seconds[run]).sum::<f64>();
            estimate.rerun_rounds = estimate.rerun_rounds.max(budget);
        }
        // The calibration of the known runs only, as the estimate covers only those.
        for twin in phase.calibration_twins(&plan.spec.calibration) {
            let (reference, mode, _) = twin.key;
            if let (true, Some(median)) = (known_runs.contains(&reference), median(&phase.runs[reference], mode)) {
                estimate.calibration_seconds += twin.plan.n_steps() as f64 * median;
            }
        }
    }
    estimate.seconds += estimate.calibration_seconds;
    estimate
}

/// `list`: phases, workloads with their matrix points, and checks.
pub fn list(plan: &Plan) -> String {
    let mut out = String::new();
    let spec = &plan.spec;
    let _ = writeln!(out, "{} ({}): {}", spec.experiment.name, spec.file.display(), spec.experiment.title);
    if !spec.profiles.is_empty() {
        let _ = writeln!(out, "profiles: {}", spec.profiles.join(", "));
    }
    for phase in &plan.phases {
        let needs = if phase.phase.needs.is_empty() {
            String::new()
        } else {
            format!(" (needs {})", phase.phase.needs.join(", "))
        };
        let _ = writeln!(out, "\nphase {}: {}{needs}", phase.phase.id, phase.phase.title);
        for workload in &phase.phase.workloads {
            let runs: Vec<_> = phase.runs.iter().filter(|run| run.workload == workload.id).collect();
            let reference = match (&workload.reference, workload.settings.order) {
                (Some(reference), Order::Sequential) => format!(", unpaired with {reference} (order sequential)"),
                (Some(reference), Order::Interleaved) => format!(", interleaved with {reference}"),
                (None, _) => String::new(),
            };
            let modes: Vec<&str> = workload.settings.modes.iter().map(|mode| mode.name()).collect();
            let _ = writeln!(
                out,
                "  workload {} (kernel {}, {}, {}, {}{reference})",
                workload.id,
                workload.kernel,
                counted(runs.len(), "run"),
                modes.join("+"),
                counted(workload.settings.repeats as usize, "repeat")
            );
            for run in runs {
                let skip = run.skip.as_ref().map(|reason| format!("  [{reason}]")).unwrap_or_default();
                let coords: Vec<String> = run.coords.iter().map(|(name, value)| format!("{name}={value}")).collect();
                let _ = writeln!(out, "    {}  {}{skip}", run.name(), coords.join(" "));
            }
        }
        for check in &phase.checks {
            let mut parts = Vec::new();
            if let Some(condition) = &check.check.condition {
                parts.push(condition.text.clone());
            }
            if let Some(parity) = &check.check.parity {
                parts.push(format!("parity {} vs {} on `{}`", parity.of, parity.against, parity.output));
            }
            if let Some(snapshot) = &check.check.snapshot {
                parts.push(format!("snapshot of {} on `{}`", snapshot.of, snapshot.output));
            }
            let what = parts.join(" and ");
            let points: Vec<&str> =
                check.points.iter().map(|point| point.label.as_str()).filter(|label| !label.is_empty()).collect();
            let at = if points.is_empty() { String::new() } else { format!(" at [{}]", points.join("], [")) };
            let _ = writeln!(out, "  check {}: {what}{at}", check.check.id);
        }
    }
    out
}

/// `run --dry-run`: the expanded matrix, the resolved configuration with the source
/// of every value, and the time estimate.
pub fn dry_run(plan: &Plan, estimate: &Estimate) -> String {
    let mut out = list(plan);
    let _ = writeln!(out, "\nresolved settings (value, source):");
    for phase in &plan.phases {
        for workload in &phase.phase.workloads {
            let _ = writeln!(out, "  {}/{}:", phase.phase.id, workload.id);
            for source in &workload.setting_sources {
                let _ = writeln!(out, "    {:<8} = {:<16} ({})", source.key, source.value, source.origin);
            }
        }
    }
    overrides(&mut out, &plan.spec);
    let steps = counted(plan.n_steps() as usize, "timed step");
    let _ = write!(out, "\n{}, {steps} (warm-up included)", counted(plan.n_runs(), "run"));
    let calibration = plan.n_calibration_steps();
    if calibration > 0 {
        let _ = write!(out, ", plus {} of A/A calibration", counted(calibration as usize, "step"));
    }
    let _ = writeln!(out);
    if estimate.known_runs > 0 {
        let _ = write!(
            out,
            "estimated time in steps: {} for {} from earlier reports of the same work",
            format_seconds(estimate.seconds),
            counted(estimate.known_runs, "run")
        );
        if estimate.unknown_runs > 0 {
            let _ =
                write!(out, ", plus {} never measured with these parameters", counted(estimate.unknown_runs, "run"));
        }
        let calibrated = if estimate.calibration_seconds > 0.0 { "A/A calibration included, " } else { "" };
        let _ = write!(out, " ({calibrated}set-up of warm runs excluded)");
        if estimate.rerun_seconds > 0.0 {
            let _ = write!(
                out,
                "; re-runs of inconclusive checks may add up to {} ({} at most)",
                format_seconds(estimate.rerun_seconds),
                counted(estimate.rerun_rounds as usize, "round")
            );
        }
        let _ = writeln!(out);
    } else {
        let _ = writeln!(
            out,
            "estimated time: unknown (no earlier report of this experiment measured the same work to estimate from)"
        );
    }
    out
}

fn overrides(out: &mut String, spec: &Spec) {
    let overrides: Vec<_> = spec.overrides().collect();
    if overrides.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nvalues overriding the spec file:");
    for source in overrides {
        let _ = writeln!(out, "  {} = {} ({})", source.key, source.value, source.origin);
    }
}

/// The text printed after a run: each phase's verdict, its non-passing checks and
/// where its report is.
pub fn outcome(outcome: &crate::run::Outcome) -> String {
    use crate::verdict::format_pair;
    let mut out = String::new();
    for report in &outcome.reports {
        let totals = &report.totals;
        let [pass, fail, inconclusive, other] = totals.columns();
        let _ = writeln!(
            out,
            "phase {} ({}): {}  [{pass} pass, {fail} fail, {inconclusive} inconclusive, {other} other]  {}/{}/report.md",
            report.phase.id,
            report.phase.title,
            totals.verdict().to_uppercase(),
            report.invocation.report_dir,
            report.phase.id
        );
        for verdict in &report.verdicts {
            let figures = verdict.measured.as_ref().map_or_else(String::new, |measured| {
                let (observed, threshold) = format_pair(measured.observed, measured.threshold);
                format!(" observed {observed} {} {threshold}", measured.cmp)
            });
            let why = verdict.reason.as_ref().map_or_else(String::new, |reason| format!(": {reason}"));
            let _ = writeln!(out, "  {:<14} {}{figures}{why}", verdict.status.name(), verdict.name());
        }
        for run in &report.runs {
            if let crate::execute::RunStatus::Failed(message) = &run.status {
                let _ = writeln!(out, "  run {} failed: {}", run.name(), crate::verdict::first_line(message));
            }
        }
    }
    let sum = |count: fn(&crate::report::Totals) -> usize| -> usize {
        outcome.reports.iter().map(|report| count(&report.totals)).sum()
    };
    let waived = sum(|totals| totals.xfail + totals.xpass);
    let undecided = sum(|totals| totals.not_applicable + totals.skipped + totals.new);
    // A pass says what it rests on when not every check passed: waivers, and checks
    // that were not decided.
    let passed = sum(|totals| totals.pass);
    let parts: Vec<String> = [(passed, "pass"), (waived, "waived"), (undecided, "not applicable, skipped or new")]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
    let pass_meaning = match (waived + undecided, passed) {
        (0, 0) => "no checks".to_owned(),
        (0, _) => "all checks pass".to_owned(),
        _ => format!("no check failed ({})", parts.join("; ")),
    };
    let meaning = match outcome.exit {
        crate::run::Exit::Pass => pass_meaning.as_str(),
        crate::run::Exit::Failed => "a check failed or could not be measured",
        crate::run::Exit::Crashed => "a workload crashed",
        crate::run::Exit::Inconclusive => "a check is inconclusive",
        crate::run::Exit::Usage => "usage error",
    };
    let _ = writeln!(out, "reports: {}\nexit {}: {meaning}", outcome.run_dir.display(), outcome.exit.code());
    out
}

/// `count` and the noun, plural unless the count is one: "1 run", "3 runs".
pub fn counted(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// `arg` as a POSIX shell reads it back: as it is when it holds only characters the
/// shell takes literally, in single quotes otherwise.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}
