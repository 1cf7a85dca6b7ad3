//! Baselines: comparing a run with an earlier report of the same experiment.
//!
//! For every run (workload and matrix point) measured now, the baseline's counterpart
//! is the newest baseline report of the phase that measured the same work: the run of
//! the same name, thread count and parameters (those both reports record). When none
//! did, it is the newest that measured a run of the name, and the verdict's reason
//! names the parameters that differ (an injected slowdown or a tuning knob may be the
//! point of the comparison). `--baseline latest` keeps, per phase, the newest report
//! to measure each run with the same work, and the newest to measure it with other
//! parameters when that is newer; a directory or a git ref gives one report per
//! phase. A run without a counterpart gets a `not_applicable` verdict saying so. For
//! every mode present in both, and for every compared quantity (`time`
//! and the metrics listed in `[baseline] quantities`), the change is the ratio of
//! medians, current / baseline, with a 95% percentile
//! bootstrap interval (2000 resamples of each side, ChaCha8 seeded from the names, so
//! the interval is reproducible). With tolerance `t` and a quantity where lower is
//! better (time), the verdict is:
//!
//! - **inconclusive** when either side has fewer than 5 samples: a bootstrap of so few
//!   resamples little, and the coverage reported is what the smaller side's
//!   distribution-free median interval reaches (1 - 2^(1-n)), below
//!   [`crate::verdict::MIN_COVERAGE`];
//! - **fail** (a regression) when the whole interval lies above `1 + t`;
//! - **inconclusive** when the ratio itself is above `1 + t` but the interval is not;
//! - **pass** otherwise: no evidence of a regression beyond the tolerance.
//!
//! For higher-is-better metrics the same rule applies to `baseline / current`. When the
//! two environments' fingerprints differ (CPU model, core count, build profile, debug
//! assertions, compiler), the comparison is computed and shown but not trusted: its
//! verdict is `not_applicable` with the differences as the reason.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::execute::value_json;
use crate::kernel::Better;
use crate::kernels;
use crate::plan::Plan;
use crate::report::{PhaseReport, RunReport};
use crate::spec::{Mode, fnv1a_hex};
use crate::stats::Summary;
use crate::verdict::{Measured, Method, Status, Verdict};

/// `[baseline]` settings of a spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineSettings {
    /// Relative change tolerated before a regression fails.
    pub tolerance: f64,
    /// Quantities compared: `time` and metric names.
    pub quantities: Vec<String>,
}

impl Default for BaselineSettings {
    fn default() -> Self {
        BaselineSettings { tolerance: 0.05, quantities: vec!["time".to_owned()] }
    }
}

/// The check id of baseline verdicts.
pub const CHECK: &str = "baseline";

const RESAMPLES: usize = 2000;

/// Compares `current` with `baseline`; see [`compare_earlier`].
pub fn compare(
    current: &PhaseReport,
    baseline: &PhaseReport,
    settings: &BaselineSettings,
    label: &str,
) -> Vec<Verdict> {
    compare_with(current, &[(baseline, label)], settings)
}

/// Compares each run of `current` that was measured with its counterpart in `earlier`
/// (newest first): the first report that measured the same [`Work`], else the first
/// that measured a run of its name. One verdict per mode and quantity found in both. A
/// run measured now that none of them measured gets a `not_applicable` verdict saying
/// so, rather than no verdict at all.
pub fn compare_earlier(current: &PhaseReport, earlier: &[&Earlier], settings: &BaselineSettings) -> Vec<Verdict> {
    let earlier: Vec<(&PhaseReport, &str)> =
        earlier.iter().map(|earlier| (&earlier.report, earlier.label.as_str())).collect();
    compare_with(current, &earlier, settings)
}

fn compare_with(current: &PhaseReport, earlier: &[(&PhaseReport, &str)], settings: &BaselineSettings) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for run in current.runs.iter().filter(|run| run.measured()) {
        let work = Work::of_report(run);
        for mode in [Mode::Cold, Mode::Warm].into_iter().filter(|&mode| run.timed(mode).next().is_some()) {
            // The newest report that measured the same work in this mode, else the newest
            // that measured a run of the name in it (the verdict names the parameters
            // that differ).
            let counterpart = work.counterpart(earlier, mode, true).or_else(|| work.counterpart(earlier, mode, false));
            let Some((baseline, old, label)) = counterpart else {
                verdicts.push(without_counterpart(run, mode, settings.tolerance));
                continue;
            };
            let differences = fingerprint_differences(current, baseline);
            let parameters = work.differences(old);
            for quantity in &settings.quantities {
                let (Some(now), Some(before)) = (values(run, mode, quantity), values(old, mode, quantity)) else {
                    continue;
                };
                let better = better_of(&run.kernel, quantity);
                if better == Better::Neither {
                    continue;
                }
                verdicts.push(judge(
                    run,
                    mode,
                    quantity,
                    &now,
                    &before,
                    better,
                    settings.tolerance,
                    label,
                    &differences,
                    &parameters,
                ));
            }
        }
    }
    verdicts
}

/// The verdict on a run no baseline report measured in `mode`: nothing to compare,
/// said aloud.
fn without_counterpart(run: &RunReport, mode: Mode, tolerance: f64) -> Verdict {
    Verdict {
        check: CHECK.to_owned(),
        point: format!("{} {}", run.name(), mode.name()),
        status: Status::NotApplicable,
        rationale: format!("no regression beyond {:.0}% against the baseline", 100.0 * tolerance),
        expr: None,
        measured: None,
        parity: None,
        snapshot: None,
        reason: Some(format!("not compared: no report of the baseline measured this run in {} mode", mode.name())),
        waiver: None,
        noise_floor: None,
    }
}

/// The verdict on a regression ratio (growing with the regression) and its interval.
fn regression_status(
    top: &[f64],
    bottom: &[f64],
    ratio: f64,
    (low, high): (f64, f64),
    limit: f64,
    coverage: f64,
) -> Status {
    // A NaN sample would sort to one end and leave the median finite, and a NaN ratio
    // compares false with the limit: either would pass.
    let finite = top.iter().chain(bottom).all(|value| value.is_finite());
    if !(finite && ratio.is_finite() && low.is_finite() && high.is_finite()) {
        Status::NotMeasured
    } else if coverage < crate::verdict::MIN_COVERAGE {
        Status::Inconclusive
    } else if low > limit {
        Status::Fail
    } else if ratio > limit {
        Status::Inconclusive
    } else {
        Status::Pass
    }
}

#[allow(clippy::too_many_arguments)]
fn judge(
    run: &RunReport,
    mode: Mode,
    quantity: &str,
    now: &[f64],
    before: &[f64],
    better: Better,
    tolerance: f64,
    label: &str,
    differences: &[String],
    parameters: &[String],
) -> Verdict {
    let point = format!("{} {} {}", run.name(), mode.name(), quantity);
    let seed_text = format!("{point}/{label}");
    let seed = u64::from_str_radix(&fnv1a_hex(seed_text.as_bytes()), 16).unwrap_or(0);
    // The ratio that grows with a regression.
    let (top, bottom) = if better == Better::Lower { (now, before) } else { (before, now) };
    let median = |values: &[f64]| Summary::of(values).map_or(f64::NAN, |summary| summary.median);
    let ratio = median(top) / median(bottom);
    let (low, high) = bootstrap_ratio_interval(top, bottom, seed);
    let fewest = top.len().min(bottom.len());
    let coverage = crate::stats::median_interval_rank(fewest, crate::stats::CONFIDENCE).1.min(crate::stats::CONFIDENCE);
    let limit = 1.0 + tolerance;
    let status = regression_status(top, bottom, ratio, (low, high), limit, coverage);
    let change = median(now) / median(before) - 1.0;
    let direction = if better == Better::Lower { "lower is better" } else { "higher is better" };
    let mut reason = format!(
        "vs {label}: {:+.1}% ({direction}); regression ratio {:.3} [{:.3}, {:.3}], tolerance {:.0}%",
        100.0 * change,
        ratio,
        low,
        high,
        100.0 * tolerance
    );
    if status == Status::NotMeasured {
        reason.push_str("; a sample or the ratio is not a finite number");
    } else if coverage < crate::verdict::MIN_COVERAGE {
        let samples = if fewest == 1 {
            "1 sample on one side covers".to_owned()
        } else {
            format!("{fewest} samples on one side cover")
        };
        reason.push_str(&format!(
            "; {samples} the median with only {:.1}%: more repeats are needed to decide",
            100.0 * coverage
        ));
    }
    let mut final_status = status;
    if !parameters.is_empty() {
        // Said even when it passes: a change of parameters may be what is being compared
        // (a tuning knob, an injected slowdown), or a different workload by mistake.
        reason.push_str(&format!("; its run had other parameters ({})", parameters.join("; ")));
    }
    if !differences.is_empty() {
        reason = format!("not trusted, environments differ ({}); {reason}", differences.join("; "));
        final_status = Status::NotApplicable;
    }
    Verdict {
        check: CHECK.to_owned(),
        point,
        status: final_status,
        // The rationale names the baseline, which a passing verdict's (absent) reason
        // would otherwise be the only place to say.
        rationale: format!("no regression beyond {:.0}% against the baseline {label}", 100.0 * tolerance),
        expr: None,
        measured: Some(Measured {
            method: Method::MedianInterval,
            observed: ratio,
            threshold: limit,
            cmp: "<=".to_owned(),
            margin: Some((limit - ratio) / limit),
            interval: Some((low, high)),
            coverage: Some(coverage),
            ratios: None,
            terms: Vec::new(),
            status,
        }),
        parity: None,
        snapshot: None,
        reason: (status != Status::Pass || !differences.is_empty() || !parameters.is_empty()).then_some(reason),
        waiver: None,
        noise_floor: None,
    }
}

fn values(run: &RunReport, mode: Mode, quantity: &str) -> Option<Vec<f64>> {
    let values: Vec<f64> = run
        .timed(mode)
        .filter_map(|sample| {
            if quantity == "time" {
                Some(sample.seconds)
            } else {
                crate::report::float::from_json(sample.metrics.get(quantity)?).ok()
            }
        })
        .collect();
    (!values.is_empty()).then_some(values)
}

fn better_of(kernel: &str, quantity: &str) -> Better {
    if quantity == "time" {
        return Better::Lower;
    }
    kernels::find(kernel)
        .and_then(|kernel| kernel.metrics().into_iter().find(|metric| metric.name == quantity))
        .map_or(Better::Neither, |metric| metric.better)
}

/// The 95% percentile bootstrap interval of median(top) / median(bottom).
pub fn bootstrap_ratio_interval(top: &[f64], bottom: &[f64], seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut scratch_top = vec![0.0; top.len()];
    let mut scratch_bottom = vec![0.0; bottom.len()];
    let mut ratios = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for slot in scratch_top.iter_mut() {
            *slot = top[rng.random_range(0..top.len())];
        }
        for slot in scratch_bottom.iter_mut() {
            *slot = bottom[rng.random_range(0..bottom.len())];
        }
        ratios.push(median_in_place(&mut scratch_top) / median_in_place(&mut scratch_bottom));
    }
    ratios.sort_by(f64::total_cmp);
    let at = |quantile: f64| ratios[((quantile * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

fn median_in_place(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { 0.5 * (values[n / 2 - 1] + values[n / 2]) }
}

/// The work a run measures, by which earlier reports are searched for its counterpart:
/// its name, thread count and parameters.
pub struct Work {
    name: String,
    threads: usize,
    params: serde_json::Map<String, serde_json::Value>,
}

impl Work {
    /// The work a planned run will measure.
    pub fn of_plan(run: &crate::plan::Run) -> Work {
        let params = run.params.iter().map(|(name, value)| (name.to_owned(), value_json(value))).collect();
        Work { name: run.name(), threads: run.threads, params }
    }

    /// The work a reported run measured.
    pub fn of_report(run: &RunReport) -> Work {
        Work { name: run.name(), threads: run.threads, params: run.params.clone() }
    }

    /// How the work `old` measured differs from this one: `name now vs before` for the
    /// thread count and every parameter both record (a parameter one side lacks, as one
    /// a kernel gained since, is not compared). Empty when they are the same work.
    pub fn differences(&self, old: &RunReport) -> Vec<String> {
        let mut differences = Vec::new();
        if self.threads != old.threads {
            differences.push(format!("threads {} vs {}", self.threads, old.threads));
        }
        for (name, now) in &self.params {
            if let Some(before) = old.params.get(name)
                && before != now
            {
                differences.push(format!("{name} {now} vs {before}"));
            }
        }
        differences
    }

    /// The first of `earlier` (newest first) with a run of this name measured in
    /// `mode`: of the same work when `same_work`, else of any parameters.
    pub fn counterpart<'a>(
        &self,
        earlier: &[(&'a PhaseReport, &'a str)],
        mode: Mode,
        same_work: bool,
    ) -> Option<(&'a PhaseReport, &'a RunReport, &'a str)> {
        earlier.iter().find_map(|&(report, label)| {
            let old = report.runs.iter().find(|old| {
                old.timed(mode).next().is_some()
                    && old.name() == self.name
                    && (!same_work || self.differences(old).is_empty())
            })?;
            Some((report, old, label))
        })
    }
}

fn fingerprint_differences(current: &PhaseReport, baseline: &PhaseReport) -> Vec<String> {
    let (now, before) = (current.environment.fingerprint(), baseline.environment.fingerprint());
    let mut differences = Vec::new();
    if now.cpu_model != before.cpu_model {
        differences.push(format!("CPU {} vs {}", now.cpu_model, before.cpu_model));
    }
    if now.cores != before.cores {
        differences.push(format!("{} vs {} cores", now.cores, before.cores));
    }
    if now.build_profile != before.build_profile || now.debug_assertions != before.debug_assertions {
        differences.push(format!(
            "build {}{} vs {}{}",
            now.build_profile,
            if now.debug_assertions { " with debug assertions" } else { "" },
            before.build_profile,
            if before.debug_assertions { " with debug assertions" } else { "" }
        ));
    }
    if now.rustc != before.rustc {
        differences.push(format!("{} vs {}", now.rustc, before.rustc));
    }
    differences
}

/// Where a baseline comes from: a run directory, `latest`, or a git ref.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub label: String,
    /// Phase reports, each phase's newest first.
    pub reports: Vec<Earlier>,
}

/// One phase's baseline report and the run it comes from.
#[derive(Clone, Debug)]
pub struct Earlier {
    pub label: String,
    pub report: PhaseReport,
}

impl Loaded {
    /// The baseline reports of `phase`, newest first (none when the baseline has none).
    pub fn phase(&self, phase: &str) -> Vec<&Earlier> {
        self.reports.iter().filter(|earlier| earlier.report.phase.id == phase).collect()
    }
}

/// Loads the baseline named by `spec` for the runs of `plan`: `latest` (for each run,
/// the experiment's newest earlier report of its phase that measured the same work, as
/// a run of some phases or some workloads, or with other parameters, leaves the others
/// in earlier runs), a directory
/// holding `<phase>/report.json` files, or a git ref whose committed `latest` run is
/// read with `git show`.
pub fn load(
    spec: &str,
    experiment_root: &std::path::Path,
    project_root: &std::path::Path,
    plan: &Plan,
) -> Result<Loaded> {
    let relative = |dir: &std::path::Path| dir.strip_prefix(project_root).unwrap_or(dir).display().to_string();
    let phases_in = |dir: &std::path::Path| -> Result<Vec<String>> {
        let mut phases = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            if entry.path().join("report.json").is_file() {
                phases.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        phases.sort();
        if phases.is_empty() {
            anyhow::bail!("{} holds no <phase>/report.json", dir.display());
        }
        Ok(phases)
    };
    let read = |dir: &std::path::Path, phase: &str, label: String| -> Result<Earlier> {
        Ok(Earlier { label, report: crate::run::read_report(&dir.join(phase).join("report.json"))? })
    };
    if spec == "latest" {
        let mut reports = Vec::new();
        for phase in &plan.phases {
            let id = &phase.phase.id;
            // From the newest report: a run stops looking once a report measured the same
            // work, and the first that measured it with other parameters is its fallback.
            // A report is kept when it is some run's counterpart or fallback. Once every
            // run still looking has a fallback, a report that cannot be read (an older
            // schema, a damaged file) ends the search instead of the comparison.
            let mut wanted: Vec<(Work, Mode, bool)> = phase
                .runs
                .iter()
                .filter(|run| run.skip.is_none())
                .flat_map(|run| run.settings.modes.iter().map(move |&mode| (Work::of_plan(run), mode, false)))
                .collect();
            for dir in crate::report::files::runs_with_phase(experiment_root, id) {
                if wanted.is_empty() {
                    break;
                }
                let earlier = match read(&dir, id, relative(&dir)) {
                    Ok(earlier) => earlier,
                    Err(error) if wanted.iter().all(|(_, _, fallback)| *fallback) => {
                        tracing::warn!("{error:#}: the search for reports of the same work stops there");
                        break;
                    }
                    Err(error) => return Err(error),
                };
                let one = [(&earlier.report, "")];
                let mut kept = false;
                wanted.retain_mut(|(work, mode, fallback)| {
                    if work.counterpart(&one, *mode, true).is_some() {
                        kept = true;
                        return false;
                    }
                    if !*fallback && work.counterpart(&one, *mode, false).is_some() {
                        (kept, *fallback) = (true, true);
                    }
                    true
                });
                if kept {
                    reports.push(earlier);
                }
            }
        }
        // Named after the newest finished run, or the newest report read when only
        // interrupted runs hold some.
        let label = match crate::report::files::latest_run_dir(experiment_root) {
            Some(latest) => relative(&latest),
            None => match reports.first() {
                Some(earlier) => earlier.label.clone(),
                None => anyhow::bail!("no earlier run under {} to use as the baseline", experiment_root.display()),
            },
        };
        return Ok(Loaded { label, reports });
    }
    let path = std::path::Path::new(spec);
    if path.is_dir() {
        let reports =
            phases_in(path)?.iter().map(|phase| read(path, phase, spec.to_owned())).collect::<Result<Vec<_>>>()?;
        return Ok(Loaded { label: spec.to_owned(), reports });
    }
    // A git ref: the committed `latest` link names the run directory.
    let relative = experiment_root.strip_prefix(project_root).unwrap_or(experiment_root).display().to_string();
    let git_show = |object: &str| -> Result<String> {
        let output = std::process::Command::new("git")
            .args(["show", object])
            .current_dir(project_root)
            .output()
            .context("cannot run git")?;
        if !output.status.success() {
            anyhow::bail!("`git show {object}` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let target = git_show(&format!("{spec}:{relative}/latest")).with_context(|| {
        format!("`{spec}` is neither `latest`, a report directory, nor a git ref with committed reports")
    })?;
    let run = format!("{relative}/{}", target.trim());
    // Every committed report under the experiment, as `RUN/PHASE/report.json`: each
    // phase is read from the newest run that holds it, as for `latest`.
    let listing = std::process::Command::new("git")
        .args(["ls-tree", "-r", "--name-only", &format!("{spec}:{relative}")])
        .current_dir(project_root)
        .output()
        .context("cannot run git")?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut holding: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in listing.lines() {
        if let [run_name, phase, "report.json"] = path.split('/').collect::<Vec<_>>()[..] {
            holding.entry(phase).or_default().push(run_name);
        }
    }
    let label = format!("{spec}:{run}");
    let mut reports = Vec::new();
    for (phase, runs) in holding {
        let Some(run_name) = crate::report::files::newest_run_name(runs.into_iter()) else { continue };
        let path = format!("{relative}/{run_name}/{phase}/report.json");
        let text = git_show(&format!("{spec}:{path}"))?;
        let report = serde_json::from_str(&text).with_context(|| format!("cannot parse {path} at {spec}"))?;
        reports.push(Earlier { label: format!("{spec}:{relative}/{run_name}"), report });
    }
    if reports.is_empty() {
        anyhow::bail!("{run} at {spec} holds no phase reports");
    }
    Ok(Loaded { label, reports })
}

#[cfg(test)]
mod tests {
    use super::{bootstrap_ratio_interval, regression_status};
    use crate::verdict::Status;

    #[test]
    fn bootstrap_interval_brackets_the_ratio_and_is_reproducible() {
        let top: Vec<f64> = (0..15).map(|index| 1.15 + 0.01 * f64::from(index % 5)).collect();
        let bottom: Vec<f64> = (0..15).map(|index| 1.0 + 0.01 * f64::from(index % 5)).collect();
        let (low, high) = bootstrap_ratio_interval(&top, &bottom, 7);
        assert!(low > 1.1 && high < 1.2 && low < high, "{low} {high}");
        assert_eq!(bootstrap_ratio_interval(&top, &bottom, 7), (low, high));
    }

    #[test]
    fn regression_status_decides_and_refuses_non_finite_values() {
        let same = [1.0; 9];
        let status =
            |top: &[f64], ratio: f64, interval: (f64, f64)| regression_status(top, &same, ratio, interval, 1.05, 0.95);
        assert_eq!(status(&same, 1.0, (0.98, 1.02)), Status::Pass);
        assert_eq!(status(&same, 1.2, (1.1, 1.3)), Status::Fail);
        assert_eq!(status(&same, 1.06, (1.0, 1.1)), Status::Inconclusive);
        assert_eq!(regression_status(&same, &same, 1.0, (1.0, 1.0), 1.05, 0.5), Status::Inconclusive);
        // One NaN sample of nine leaves a finite median that would pass.
        let mut one_nan = same;
        one_nan[4] = f64::NAN;
        assert_eq!(status(&one_nan, 1.0, (0.98, 1.02)), Status::NotMeasured);
        assert_eq!(status(&same, f64::NAN, (f64::NAN, f64::NAN)), Status::NotMeasured);
        assert_eq!(status(&same, 1.0, (0.9, f64::INFINITY)), Status::NotMeasured);
    }
}
