//! Verdicts: a pure function of the checks, the samples and a few facts about the
//! machine.
//!
//! A check is evaluated at each of its points (see `plan`). How a condition decides:
//!
//! - **Paired ratio** (`A.warm.q.S / B.warm.q.S CMP c`, A and B interleaved partners
//!   or the same run): the ratios r_i = A_i / B_i of the i-th samples are formed and
//!   the statistic S is taken over them. For S = median the decision is tri-state on
//!   the distribution-free confidence interval of the median ratio (`stats`): pass
//!   when the whole interval satisfies the comparison, fail when none of it does,
//!   otherwise inconclusive. An interval whose coverage is below [`MIN_COVERAGE`]
//!   (fewer than 5 samples: [min, max] of n covers the median with 1 - 2^(1-n)) decides
//!   nothing: the check is inconclusive, and re-runs pool samples until it can decide.
//! - **Medians** (an expression of medians against a constant, such as
//!   `A.warm.q.median CMP c` or `A.warm.q.median / B.warm.q.median CMP c` for runs
//!   that are not partners): the same tri-state rule on the expression's range when
//!   each of its k medians lies in its own interval, taken at level 1 - 5%/k so that
//!   all k hold together with at least 95%. Two medians need 6 samples each to reach
//!   [`MIN_COVERAGE`], four need 7.
//! - **Anything else**: the point value of each side (pass or fail).
//!
//! A parity comparison passes when every declared comparator holds. A check with both
//! a condition and a parity comparison fails when either fails: a fast but wrong
//! result is never a speedup. A check whose values could not be measured (a run
//! failed, a metric was not recorded) is `not_measured`, never a pass. Unmet
//! `requires` or a false `applies_if` make it `not_applicable`, skipped workloads
//! make it `skipped`. A waiver (`xfail`) turns a failure or an inconclusive result
//! into `xfail` (the target is known not to be met yet, and the run did not show
//! otherwise) and a pass into `xpass` until its date; after that the check fails,
//! unless it was not applicable or skipped.

use serde::{Deserialize, Serialize};

use crate::execute::{RunResult, RunStatus};
use crate::expr::{Cmp, Condition, Reference, Selected, Stat};
use crate::kernel::{Output, OutputData};
use crate::plan::{CheckPlan, CheckPoint, PhasePlan};
use crate::spec::{Comparators, Experiment, Mode, Parity, Xfail};
use crate::stats::{self, Summary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Inconclusive,
    NotMeasured,
    NotApplicable,
    Skipped,
    /// Failed, under an active waiver.
    Xfail,
    /// Passed, under an active waiver: the threshold or the waiver needs updating.
    Xpass,
    /// A snapshot check without a stored snapshot: it was recorded for review.
    New,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Inconclusive => "inconclusive",
            Status::NotMeasured => "not measured",
            Status::NotApplicable => "not applicable",
            Status::Skipped => "skipped",
            Status::Xfail => "xfail",
            Status::Xpass => "XPASS",
            Status::New => "new snapshot",
        }
    }

    /// Whether this verdict fails a gate.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::NotMeasured)
    }
}

/// The least coverage of an interval that may decide a check: [min, max] of 5 samples
/// (93.75%) may, of 4 (87.5%) may not. Below it a verdict would rest on chance.
pub const MIN_COVERAGE: f64 = 0.9;

/// How a condition was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    PairedRatio,
    MedianInterval,
    Point,
}

/// The evaluated condition of a verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub method: Method,
    #[serde(with = "crate::report::float")]
    pub observed: f64,
    #[serde(with = "crate::report::float")]
    pub threshold: f64,
    pub cmp: String,
    /// Relative distance from the threshold, positive on the passing side
    /// (`None` for `==` and `!=`).
    #[serde(with = "crate::report::float::option")]
    pub margin: Option<f64>,
    /// Confidence interval of the observed value, when the method has one.
    #[serde(with = "crate::report::float::pair")]
    pub interval: Option<(f64, f64)>,
    #[serde(with = "crate::report::float::option")]
    pub coverage: Option<f64>,
    /// For paired ratios: the summary of the per-pair ratios.
    pub ratios: Option<Summary>,
    /// For [`Method::MedianInterval`]: the terms whose intervals decided, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<Term>,
    pub status: Status,
}

/// One term of a condition decided on its terms' intervals: the median of one run's
/// samples, or the median of the per-pair ratios of two runs taken together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// The term as written: a reference, or `A / B` for a ratio of two runs taken
    /// together.
    pub expr: String,
    pub paired: bool,
    /// Samples, or pairs for a paired ratio.
    pub n: usize,
    #[serde(with = "crate::report::float")]
    pub median: f64,
    #[serde(with = "crate::report::float")]
    pub low: f64,
    #[serde(with = "crate::report::float")]
    pub high: f64,
    /// Coverage of `[low, high]` alone.
    #[serde(with = "crate::report::float")]
    pub coverage: f64,
}

/// Figures of a parity comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityFigures {
    pub of: String,
    pub against: String,
    pub output: String,
    pub n: usize,
    pub identical: bool,
    #[serde(with = "crate::report::float::option")]
    pub max_abs_diff: Option<f64>,
    #[serde(with = "crate::report::float::option")]
    pub correlation: Option<f64>,
    /// sum(of) / sum(against) - 1.
    #[serde(with = "crate::report::float::option")]
    pub sum_ratio_deviation: Option<f64>,
    /// Elements outside allclose(rtol, atol).
    pub allclose_violations: Option<usize>,
    /// Comparators that failed, with their figures.
    pub failures: Vec<String>,
    pub status: Status,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: String,
    /// Matrix point label (empty when the check has one point).
    pub point: String,
    pub status: Status,
    pub rationale: String,
    pub expr: Option<String>,
    pub measured: Option<Measured>,
    pub parity: Option<ParityFigures>,
    /// The comparison with the stored snapshot (`against` is `snapshot`).
    pub snapshot: Option<ParityFigures>,
    /// Why the verdict is not a plain pass or fail.
    pub reason: Option<String>,
    pub waiver: Option<Xfail>,
    /// The A/A noise floor of the compared runs (how far the interval of their median
    /// ratio reaches from 1), when calibrated.
    #[serde(default, with = "crate::report::float::option")]
    pub noise_floor: Option<f64>,
}

impl Verdict {
    pub fn name(&self) -> String {
        if self.point.is_empty() { self.check.clone() } else { format!("{}[{}]", self.check, self.point) }
    }

    /// Adds `note` after the reason, if any.
    pub fn add_note(&mut self, note: String) {
        self.reason = Some(match self.reason.take() {
            Some(reason) => format!("{reason}; {note}"),
            None => note,
        });
    }

    /// Puts `note` before the reason, if any.
    fn lead_with(&mut self, note: String) {
        self.reason = Some(match self.reason.take() {
            Some(reason) => format!("{note}; {reason}"),
            None => note,
        });
    }

    /// The terms a median-interval verdict was decided on (none for other methods).
    pub fn terms(&self) -> &[Term] {
        self.measured.as_ref().map_or(&[], |measured| &measured.terms)
    }
}

/// Facts about the machine that checks may depend on.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// CPU feature names, lowercase (as /proc/cpuinfo or `is_x86_feature_detected!`
    /// spell them; underscores are ignored when comparing).
    pub cpu_features: Vec<String>,
    /// Environment variables that are set and non-empty.
    pub env_set: Vec<String>,
    /// Today, `YYYY-MM-DD` (UTC), for waivers.
    pub today: String,
    /// Why this process cannot time the spec's workloads, if it cannot: a build that is
    /// not optimized (opt-level 2 or 3, no debug assertions), or sizes made for tests
    /// (`experiment.untimed`, see [`Facts::for_spec`]). Checks with
    /// `requires = ["build:optimized"]` are then not applicable.
    pub untimed: Option<String>,
    /// Running under CI (`CI=true`): a missing snapshot fails instead of being recorded.
    pub ci: bool,
}

impl Facts {
    /// These facts for a spec whose `experiment.untimed` says why its sizes cannot be
    /// timed: that reason joins the machine's own, if any.
    pub fn for_spec(&self, experiment: &Experiment) -> Facts {
        let mut facts = self.clone();
        if let Some(why) = &experiment.untimed {
            facts.untimed = Some(match &self.untimed {
                Some(machine) => format!("{machine}; {why}"),
                None => why.clone(),
            });
        }
        facts
    }
}

/// Stored snapshots by (run index, output name); `None` when none is stored.
pub type Snapshots = std::collections::HashMap<(usize, String), Option<OutputData>>;

/// Evaluates every check of `phase` against `results` (and the stored `snapshots`), in
/// check order, then point order, waivers applied (see [`waive`]).
pub fn evaluate(phase: &PhasePlan, results: &[RunResult], facts: &Facts, snapshots: &Snapshots) -> Vec<Verdict> {
    let mut verdicts = evaluate_unwaived(phase, results, facts, snapshots);
    for verdict in &mut verdicts {
        waive(verdict, facts);
    }
    verdicts
}

/// [`evaluate`] before waivers: the statuses the checks earned, which decide re-runs
/// and meet the noise floors before a waiver covers them.
pub fn evaluate_unwaived(
    phase: &PhasePlan,
    results: &[RunResult],
    facts: &Facts,
    snapshots: &Snapshots,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for check in &phase.checks {
        for point in &check.points {
            verdicts.push(evaluate_point(phase, check, point, results, facts, snapshots));
        }
    }
    verdicts
}

fn evaluate_point(
    phase: &PhasePlan,
    plan: &CheckPlan,
    point: &CheckPoint,
    results: &[RunResult],
    facts: &Facts,
    snapshots: &Snapshots,
) -> Verdict {
    let check = &plan.check;
    let mut verdict = Verdict {
        check: check.id.clone(),
        point: point.label.clone(),
        status: Status::Pass,
        rationale: check.rationale.clone(),
        expr: check.condition.as_ref().map(|condition| condition.text.clone()),
        measured: None,
        parity: None,
        snapshot: None,
        reason: None,
        waiver: check.xfail.clone(),
        noise_floor: None,
    };
    if let Some(reason) = unmet_requirement(&check.requires, facts) {
        return finish(verdict, Status::NotApplicable, Some(reason));
    }
    let mut all_runs: Vec<usize> = point.condition_runs.clone();
    all_runs.extend(&point.applies_runs);
    if let Some((of, against)) = point.parity_runs {
        all_runs.extend([of, against]);
    }
    all_runs.extend(point.snapshot_run);
    for &run in &all_runs {
        if let RunStatus::Skipped(reason) = &results[run].status {
            let reason = format!("{}: {reason}", phase.runs[run].name());
            return finish(verdict, Status::Skipped, Some(reason));
        }
    }
    if let Some(condition) = &check.applies_if {
        match point_value(condition, &point.applies_runs, results) {
            Ok((left, right)) if !left.is_finite() || !right.is_finite() => {
                let reason = format!("`{}` is not a finite number ({left} vs {right})", condition.text);
                return finish(verdict, Status::NotMeasured, Some(reason));
            }
            Ok((left, right)) if !condition.cmp.holds(left, right) => {
                let reason = format!(
                    "applies only if `{}` (observed {} vs {})",
                    condition.text,
                    format_number(left),
                    format_number(right)
                );
                return finish(verdict, Status::NotApplicable, Some(reason));
            }
            Ok(_) => {}
            Err(reason) => return finish(verdict, Status::NotMeasured, Some(reason)),
        }
    }
    let mut statuses = Vec::new();
    let mut reasons = Vec::new();
    if let Some(condition) = &check.condition {
        match measure(condition, point, results) {
            Ok(measured) => {
                statuses.push(measured.status);
                if !measured.observed.is_finite() {
                    reasons.push(format!(
                        "`{}` is not a finite number ({}): a term under a division is zero, or a term is not finite",
                        condition.text, measured.observed
                    ));
                }
                if !measured.threshold.is_finite() {
                    reasons.push(format!(
                        "the threshold of `{}` is not a finite number ({}), so it decides nothing",
                        condition.text, measured.threshold
                    ));
                }
                if measured.status == Status::Inconclusive {
                    let (low, high) = measured.interval.unwrap_or((f64::NAN, f64::NAN));
                    let coverage = measured.coverage.unwrap_or(0.0);
                    let [low, high, threshold] = format_apart([low, high, measured.threshold]);
                    reasons.push(if coverage < MIN_COVERAGE {
                        format!(
                            "the interval [{low}, {high}] holds the value with only {:.1}% (below {:.0}%): more repeats are needed to decide",
                            100.0 * coverage,
                            100.0 * MIN_COVERAGE
                        )
                    } else {
                        format!("the {:.1}% interval [{low}, {high}] straddles the threshold {threshold}", 100.0 * coverage)
                    });
                }
                verdict.measured = Some(measured);
            }
            Err(reason) => {
                statuses.push(Status::NotMeasured);
                reasons.push(reason);
            }
        }
    }
    if let (Some(parity), Some((of, against))) = (&check.parity, point.parity_runs) {
        match compare_outputs(parity, &results[of], &results[against]) {
            Ok(figures) => {
                statuses.push(figures.status);
                if !figures.failures.is_empty() {
                    reasons.push(format!("parity: {}", figures.failures.join("; ")));
                }
                verdict.parity = Some(figures);
            }
            Err(reason) => {
                statuses.push(Status::NotMeasured);
                reasons.push(reason);
            }
        }
    }
    if let (Some(snapshot), Some(run)) = (&check.snapshot, point.snapshot_run) {
        let stored = snapshots.get(&(run, snapshot.output.clone())).cloned().flatten();
        match (output_of(&results[run], &snapshot.of, &snapshot.output), stored) {
            (Err(reason), _) => {
                statuses.push(Status::NotMeasured);
                reasons.push(reason);
            }
            (Ok(_), None) if facts.ci => {
                statuses.push(Status::Fail);
                reasons.push("no stored snapshot, and CI=true: record it outside CI and review it".to_owned());
            }
            (Ok(_), None) => {
                statuses.push(Status::New);
                // The run adds whether it recorded this output.
                reasons.push("no stored snapshot".to_owned());
            }
            (Ok(output), Some(stored)) => {
                let mut figures = compare(snapshot, &output.data, &stored);
                figures.against = "snapshot".to_owned();
                statuses.push(figures.status);
                if !figures.failures.is_empty() {
                    // The run adds where the new output is pending once it stored it.
                    reasons.push(format!("snapshot: {}", figures.failures.join("; ")));
                }
                verdict.snapshot = Some(figures);
            }
        }
    }
    let status = if statuses.contains(&Status::Fail) {
        Status::Fail
    } else if statuses.contains(&Status::NotMeasured) {
        Status::NotMeasured
    } else if statuses.contains(&Status::Inconclusive) {
        Status::Inconclusive
    } else if statuses.contains(&Status::New) {
        Status::New
    } else {
        Status::Pass
    };
    let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    finish(verdict, status, reason)
}

/// Applies the waiver, if any, and sets status and reason.
fn finish(mut verdict: Verdict, status: Status, reason: Option<String>) -> Verdict {
    verdict.status = status;
    verdict.reason = reason;
    verdict
}

/// Applies the verdict's waiver, if it has one: until the end of its day (UTC) a
/// failure or an inconclusive result is xfail and a pass is xpass, each saying so;
/// after it, any judged result fails, saying the waiver expired. A check that was not
/// judged here (not applicable, skipped) keeps its status and its reason.
pub fn waive(verdict: &mut Verdict, facts: &Facts) {
    let Some(waiver) = &verdict.waiver else { return };
    let expired = !facts.today.is_empty() && facts.today.as_str() > waiver.until.as_str();
    let judged = !matches!(verdict.status, Status::NotApplicable | Status::Skipped);
    let waived = format!("waived until {}: {}", waiver.until, waiver.reason);
    if expired && judged {
        verdict.lead_with(format!("waiver expired on {}: {}", waiver.until, waiver.reason));
        verdict.status = Status::Fail;
    } else if !expired {
        match verdict.status {
            Status::Fail => {
                verdict.status = Status::Xfail;
                verdict.lead_with(waived);
            }
            Status::Inconclusive => {
                verdict.status = Status::Xfail;
                verdict.reason = Some(format!(
                    "inconclusive ({}), {waived}",
                    verdict.reason.as_deref().unwrap_or("the interval straddles the threshold")
                ));
            }
            Status::Pass => {
                verdict.status = Status::Xpass;
                // A note the pass carries (a noise floor's) stays.
                verdict.lead_with(format!(
                    "passes although waived until {}: tighten the check or drop the waiver",
                    waiver.until
                ));
            }
            _ => {}
        }
    }
}

fn unmet_requirement(requires: &[String], facts: &Facts) -> Option<String> {
    let normalize = |name: &str| name.to_ascii_lowercase().replace(['_', '.', '-'], "");
    for requirement in requires {
        if let Some(feature) = requirement.strip_prefix("cpu:") {
            if !facts.cpu_features.iter().any(|have| normalize(have) == normalize(feature)) {
                return Some(format!("requires CPU feature `{feature}`, which this machine lacks"));
            }
        } else if requirement == "build:optimized" {
            if let Some(why) = &facts.untimed {
                return Some(format!(
                    "requires an optimized build timing the spec's sizes (as `cargo xtask run` makes): {why}"
                ));
            }
        } else if let Some(variable) = requirement.strip_prefix("env:")
            && !facts.env_set.iter().any(|set| set == variable)
        {
            return Some(format!("requires environment variable {variable}, which is not set"));
        }
    }
    None
}

/// A sample's value with its `(round, index)`, the key that pairs partners' samples.
pub type Keyed = ((u32, u32), f64);

/// The per-sample values of a quantity (`time` or a metric) in `result`, with each
/// sample's `(round, index)`.
pub fn keyed_values(result: &RunResult, mode: Mode, quantity: &str) -> Vec<Keyed> {
    result
        .timed(mode)
        .filter_map(|sample| {
            let value = if quantity == "time" {
                Some(sample.seconds)
            } else {
                sample.metrics.iter().find(|(name, _)| name == quantity).map(|(_, value)| *value)
            };
            value.map(|value| ((sample.round, sample.index), value))
        })
        .collect()
}

/// The per-sample values of a quantity in `result`, in order.
pub fn quantity_values(result: &RunResult, mode: Mode, quantity: &str) -> Vec<f64> {
    keyed_values(result, mode, quantity).into_iter().map(|(_, value)| value).collect()
}

fn values_of(reference: &Reference, run: usize, results: &[RunResult]) -> Result<Vec<Keyed>, String> {
    let result = &results[run];
    if let Some(message) = result.failed() {
        return Err(format!("run `{}` failed: {}", result.name, first_line(message)));
    }
    let values = keyed_values(result, reference.mode, &reference.quantity);
    if values.is_empty() {
        return Err(format!(
            "`{reference}` was not measured (no {} samples with `{}`)",
            reference.mode.name(),
            reference.quantity
        ));
    }
    // A NaN or an infinity has no place in an order statistic: deciding on the others
    // would pass a check that a broken sample should fail.
    let non_finite = values.iter().filter(|(_, value)| !value.is_finite()).count();
    if non_finite > 0 {
        return Err(format!("`{reference}` has {non_finite} non-finite samples of {}", values.len()));
    }
    Ok(values)
}

/// The ratios `numerator / denominator` of the samples of `runs` (the numerator's and
/// the denominator's) taken together: equal round and index. At least one.
fn pair_ratios(
    numerator: &Reference,
    denominator: &Reference,
    runs: &[usize],
    results: &[RunResult],
) -> Result<Vec<f64>, String> {
    let top = values_of(numerator, runs[0], results)?;
    let bottom: std::collections::HashMap<(u32, u32), f64> =
        values_of(denominator, runs[1], results)?.into_iter().collect();
    let ratios: Vec<f64> = top.iter().filter_map(|(key, a)| bottom.get(key).map(|b| a / b)).collect();
    if ratios.is_empty() {
        return Err(format!("`{numerator}` and `{denominator}` have no samples taken together"));
    }
    // A zero sample under the division: a statistic of the other pairs would hide it.
    let infinite = ratios.iter().filter(|ratio| !ratio.is_finite()).count();
    if infinite > 0 {
        return Err(format!(
            "`{numerator} / {denominator}` is not a finite number in {infinite} of {} pairs: a sample of `{}` is zero",
            ratios.len(),
            denominator.selected()
        ));
    }
    Ok(ratios)
}

fn plain(values: &[Keyed]) -> Vec<f64> {
    values.iter().map(|(_, value)| *value).collect()
}

fn point_value(condition: &Condition, runs: &[usize], results: &[RunResult]) -> Result<(f64, f64), String> {
    let references = condition.references();
    let mut values = Vec::with_capacity(references.len());
    for (reference, &run) in references.iter().zip(runs) {
        let samples = values_of(reference, run, results)?;
        let summary = Summary::of(&plain(&samples)).expect("non-empty");
        values.push(summary.stat(reference.stat));
    }
    let mut left_values = values.into_iter();
    let left = condition.left.eval(&mut |_| left_values.next()).ok_or("incomplete values")?;
    let right = condition.right.eval(&mut |_| left_values.next()).ok_or("incomplete values")?;
    Ok((left, right))
}

fn measure(condition: &Condition, point: &CheckPoint, results: &[RunResult]) -> Result<Measured, String> {
    let cmp = condition.cmp;
    if let (Some((numerator, denominator)), Some(_)) = (condition.ratio(), point.paired(condition)) {
        let ratios = pair_ratios(numerator, denominator, &point.condition_runs[..2], results)?;
        let threshold = condition.right.eval(&mut |_| None).ok_or("the threshold is not a constant")?;
        let summary = Summary::of(&ratios).expect("pair_ratios gives at least one ratio");
        let observed = summary.stat(numerator.stat);
        let interval = (numerator.stat == Stat::Median).then_some((summary.ci_low, summary.ci_high));
        let coverage = interval.map(|_| summary.ci_coverage);
        return Ok(decide(Method::PairedRatio, observed, threshold, cmp, interval, coverage, Some(summary)));
    }
    let references = condition.left.references();
    if condition.right.references().is_empty() && references.iter().all(|reference| reference.stat == Stat::Median) {
        return medians(condition, &references, point, results);
    }
    let (left, right) = point_value(condition, &point.condition_runs, results)?;
    Ok(decide(Method::Point, left, right, cmp, None, None, None))
}

/// A condition on medians (not a paired ratio), against a constant, decided on its
/// terms: each reference's median, except that a ratio `A / B` of two runs taken
/// together (in one execution group) is one term, the median of its per-pair ratios,
/// which a drift of the machine moves far less than either median. Each of the k
/// terms gets its distribution-free interval at level 1 - (1 - CONFIDENCE)/k, so that
/// all k cover their medians together with at least CONFIDENCE (Bonferroni's
/// inequality, which holds whatever the runs' dependence), and the expression's
/// range over those intervals is the interval that decides. The coverage reported is
/// that joint lower bound, 1 - sum of the intervals' misses.
fn medians(
    condition: &Condition,
    references: &[&Reference],
    point: &CheckPoint,
    results: &[RunResult],
) -> Result<Measured, String> {
    let runs = &point.condition_runs;
    let threshold = condition.right.eval(&mut |_| None).ok_or("the threshold is not a constant")?;
    let mut inputs: Vec<(String, bool, Vec<f64>)> = Vec::with_capacity(references.len());
    let mut position = 0;
    while position < references.len() {
        let reference = references[position];
        if point.paired_ratios.contains(&position) {
            let denominator = references[position + 1];
            let ratios = pair_ratios(reference, denominator, &runs[position..position + 2], results)?;
            inputs.push((format!("{reference} / {denominator}"), true, ratios));
            position += 2;
        } else {
            inputs.push((reference.to_string(), false, plain(&values_of(reference, runs[position], results)?)));
            position += 1;
        }
    }
    let level = 1.0 - (1.0 - stats::CONFIDENCE) / inputs.len() as f64;
    let mut terms = Vec::with_capacity(inputs.len());
    for (expr, paired, mut values) in inputs {
        values.sort_by(f64::total_cmp);
        let (low, high, coverage) = stats::median_interval(&values, level);
        let median = stats::median_of_sorted(&values);
        terms.push(Term { expr, paired, n: values.len(), median, low, high, coverage });
    }
    let expression = condition.left.fold_ratios(&point.paired_ratios);
    let mut medians = terms.iter().map(|term| term.median);
    let observed = expression.eval(&mut |_| medians.next()).ok_or("incomplete values")?;
    let mut intervals = terms.iter().map(|term| (term.low, term.high));
    let interval = expression.eval_interval(&mut |_| intervals.next()).ok_or("incomplete values")?;
    let miss: f64 = terms.iter().map(|term| 1.0 - term.coverage).sum();
    let coverage = (1.0 - miss).max(0.0);
    let mut measured =
        decide(Method::MedianInterval, observed, threshold, condition.cmp, Some(interval), Some(coverage), None);
    measured.terms = terms;
    Ok(measured)
}

fn decide(
    method: Method,
    observed: f64,
    threshold: f64,
    cmp: Cmp,
    interval: Option<(f64, f64)>,
    coverage: Option<f64>,
    ratios: Option<Summary>,
) -> Measured {
    // A threshold that is not a finite number decides nothing (nothing exceeds
    // infinity, NaN equals nothing): a spec's constant one is refused at load, and one
    // computed from medians fails here, as a value that is not finite does.
    let status = if !observed.is_finite() || !threshold.is_finite() {
        Status::Fail
    } else {
        match (interval, cmp) {
            (Some(_), Cmp::Ge | Cmp::Gt | Cmp::Le | Cmp::Lt) if coverage.is_none_or(|value| value < MIN_COVERAGE) => {
                Status::Inconclusive
            }
            (Some((low, high)), Cmp::Ge | Cmp::Gt | Cmp::Le | Cmp::Lt) => {
                match (cmp.holds(low, threshold), cmp.holds(high, threshold)) {
                    (true, true) => Status::Pass,
                    (false, false) => Status::Fail,
                    _ => Status::Inconclusive,
                }
            }
            _ if cmp.holds(observed, threshold) => Status::Pass,
            _ => Status::Fail,
        }
    };
    let margin = match cmp {
        _ if !observed.is_finite() || !threshold.is_finite() => None,
        Cmp::Ge | Cmp::Gt if threshold != 0.0 => Some((observed - threshold) / threshold.abs()),
        Cmp::Le | Cmp::Lt if threshold != 0.0 => Some((threshold - observed) / threshold.abs()),
        _ => None,
    };
    Measured {
        method,
        observed,
        threshold,
        cmp: cmp.symbol().to_owned(),
        margin,
        interval,
        coverage,
        ratios,
        terms: Vec::new(),
        status,
    }
}

fn output_named<'a>(result: &'a RunResult, name: &str) -> Option<&'a Output> {
    result.outputs.iter().find(|output| output.name == name)
}

/// The output `name` of a run of workload `id`, or why there is none.
fn output_of<'a>(result: &'a RunResult, selected: &Selected, name: &str) -> Result<&'a Output, String> {
    if let Some(message) = result.failed() {
        return Err(format!("run `{selected}` failed: {}", first_line(message)));
    }
    output_named(result, name).ok_or_else(|| format!("`{selected}` produced no output `{name}`"))
}

fn compare_outputs(parity: &Parity, of: &RunResult, against: &RunResult) -> Result<ParityFigures, String> {
    let a = output_of(of, &parity.of, &parity.output)?;
    let b = output_of(against, &parity.against, &parity.output)?;
    Ok(compare(parity, &a.data, &b.data))
}

/// Compares two outputs with the declared comparators.
pub fn compare(parity: &Parity, a: &OutputData, b: &OutputData) -> ParityFigures {
    let comparators = &parity.comparators;
    let mut figures = ParityFigures {
        of: parity.of.to_string(),
        against: parity.against.to_string(),
        output: parity.output.clone(),
        n: a.len(),
        identical: a.bit_identical(b),
        max_abs_diff: None,
        correlation: None,
        sum_ratio_deviation: None,
        allclose_violations: None,
        failures: Vec::new(),
        status: Status::Pass,
    };
    if a.is_empty() && b.is_empty() {
        // Every comparator holds on nothing: that is no evidence of parity.
        figures.failures.push("both outputs are empty: nothing was compared".into());
    }
    if (comparators.exact || comparators.digest) && !figures.identical {
        figures.failures.push(match (a, b) {
            (OutputData::Digest(x), OutputData::Digest(y)) => format!("digests differ ({x} vs {y})"),
            _ if a.dtype() != b.dtype() => format!("types differ ({} vs {})", a.dtype(), b.dtype()),
            _ if a.len() != b.len() => format!("lengths differ ({} vs {})", a.len(), b.len()),
            _ => format!("not identical ({} of {} elements differ)", count_different(a, b), a.len()),
        });
    }
    let numeric = numeric_comparators(comparators);
    if numeric {
        match (a.to_f64(), b.to_f64()) {
            (Some(x), Some(y)) if x.len() == y.len() => numeric_figures(comparators, &x, &y, &mut figures),
            (Some(x), Some(y)) => figures.failures.push(format!("lengths differ ({} vs {})", x.len(), y.len())),
            _ => figures.failures.push("numeric comparators need numeric outputs, not digests".into()),
        }
    }
    figures.status = if figures.failures.is_empty() { Status::Pass } else { Status::Fail };
    figures
}

fn numeric_comparators(comparators: &Comparators) -> bool {
    comparators.max_abs.is_some()
        || comparators.rtol.is_some()
        || comparators.corr_min.is_some()
        || comparators.sum_ratio.is_some()
}

fn count_different(a: &OutputData, b: &OutputData) -> usize {
    match (a, b) {
        (OutputData::F32(x), OutputData::F32(y)) => x.iter().zip(y).filter(|(p, q)| p.to_bits() != q.to_bits()).count(),
        (OutputData::F64(x), OutputData::F64(y)) => x.iter().zip(y).filter(|(p, q)| p.to_bits() != q.to_bits()).count(),
        // Compared as integers: through f64, values above 2^53 would read as equal.
        (OutputData::I64(x), OutputData::I64(y)) => x.iter().zip(y).filter(|(p, q)| p != q).count(),
        _ => 1,
    }
}

fn numeric_figures(comparators: &Comparators, x: &[f64], y: &[f64], figures: &mut ParityFigures) {
    // `f64::max` returns the number of a NaN and a number: once a difference is NaN,
    // the maximum stays NaN, wherever that element lies.
    let max_abs = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, |max, diff| if max.is_nan() || diff.is_nan() { f64::NAN } else { max.max(diff) });
    figures.max_abs_diff = Some(max_abs);
    if let Some(limit) = comparators.max_abs
        && !(max_abs <= limit)
    {
        let (max_abs, limit) = format_pair(max_abs, limit);
        figures.failures.push(format!("max |diff| {max_abs} > {limit}"));
    }
    if let Some(rtol) = comparators.rtol {
        let atol = comparators.atol.unwrap_or(0.0);
        let violations = x.iter().zip(y).filter(|(a, b)| !((*a - *b).abs() <= atol + rtol * b.abs())).count();
        figures.allclose_violations = Some(violations);
        if violations > 0 {
            figures
                .failures
                .push(format!("{violations} of {} elements outside allclose(rtol={rtol}, atol={atol})", x.len()));
        }
    }
    let correlation = pearson(x, y);
    figures.correlation = Some(correlation);
    if let Some(minimum) = comparators.corr_min
        && !(correlation >= minimum)
    {
        let (correlation, minimum) = format_pair(correlation, minimum);
        figures.failures.push(format!("correlation {correlation} < {minimum}"));
    }
    let (sum_x, sum_y) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
    let deviation = if sum_y != 0.0 {
        sum_x / sum_y - 1.0
    } else if sum_x == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    figures.sum_ratio_deviation = Some(deviation);
    if let Some(limit) = comparators.sum_ratio
        && !(deviation.abs() <= limit)
    {
        let (deviation, limit) = format_pair(deviation.abs(), limit);
        figures.failures.push(format!("|sum ratio - 1| = {deviation} > {limit}"));
    }
}

/// Pearson correlation; 1 for two identical constant vectors, 0 for one constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.is_empty() {
        return f64::NAN;
    }
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut covariance, mut variance_x, mut variance_y) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        covariance += dx * dy;
        variance_x += dx * dx;
        variance_y += dy * dy;
    }
    if variance_x == 0.0 && variance_y == 0.0 {
        return if x == y { 1.0 } else { 0.0 };
    }
    if variance_x == 0.0 || variance_y == 0.0 {
        return 0.0;
    }
    // The square root of the product, not the product of the roots: for identical
    // outputs `sqrt(v * v)` is `v` exactly, so their correlation is exactly 1 and
    // `corr_min = 1` holds for them. Where the product leaves the normal range, the
    // roots are taken apart.
    let product = variance_x * variance_y;
    let scale = if product.is_normal() { product.sqrt() } else { variance_x.sqrt() * variance_y.sqrt() };
    (covariance / scale).clamp(-1.0, 1.0)
}

/// The first line of `text` (a run's error, a check's reason), for one-line views.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Formats a number with four significant digits, switching to exponents outside
/// [1e-3, 1e6).
pub fn format_number(value: f64) -> String {
    format_digits(value, 4)
}

/// Formats an observed value and its threshold with four significant digits, or more
/// when four would print two different numbers the same way (up to 12).
pub fn format_pair(observed: f64, threshold: f64) -> (String, String) {
    let [observed, threshold] = format_apart([observed, threshold]);
    (observed, threshold)
}

/// `values` with 4 significant digits, or as many more (up to 12) as tell the
/// different ones apart: an interval that straddles a threshold must not read
/// "[4.000, 4.000] straddles 4.000".
pub fn format_apart<const N: usize>(values: [f64; N]) -> [String; N] {
    let mut digits = 4;
    loop {
        let texts = values.map(|value| format_digits(value, digits));
        let apart = (0..N).all(|i| (0..i).all(|j| texts[i] != texts[j] || values[i] == values[j]));
        if apart || digits >= 12 {
            return texts;
        }
        digits += 1;
    }
}

fn format_digits(value: f64, digits: usize) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let decimals = digits - 1;
    let scientific = format!("{value:.decimals$e}");
    // The upper bound is where the fixed notation without decimals would print 1000000.
    if !(1e-3..999_999.5).contains(&value.abs()) {
        return scientific;
    }
    // The decimals follow the exponent of the value rounded to `digits` significant
    // digits, so a value that rounds up to the next power of ten (999.96 to 1000)
    // gets the decimals of that power, not one digit too many.
    let exponent: i32 = scientific
        .rsplit_once('e')
        .and_then(|(_, exponent)| exponent.parse().ok())
        .expect("the `e` format of a finite number ends in its exponent");
    let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::{Method, Status, decide, format_number, pearson};
    use crate::expr::Cmp;

    #[test]
    fn tri_state_decisions() {
        let pass = decide(Method::PairedRatio, 5.0, 4.0, Cmp::Ge, Some((4.5, 5.5)), Some(0.95), None);
        assert_eq!(pass.status, Status::Pass);
        assert!((pass.margin.unwrap() - 0.25).abs() < 1e-12);
        let fail = decide(Method::PairedRatio, 3.0, 4.0, Cmp::Ge, Some((2.5, 3.5)), Some(0.95), None);
        assert_eq!(fail.status, Status::Fail);
        let unsure = decide(Method::PairedRatio, 4.1, 4.0, Cmp::Ge, Some((3.9, 4.3)), Some(0.95), None);
        assert_eq!(unsure.status, Status::Inconclusive);
        // [min, max] of 4 samples covers the median with 87.5%: too little to decide.
        let few = decide(Method::PairedRatio, 5.0, 4.0, Cmp::Ge, Some((4.5, 5.5)), Some(0.875), None);
        assert_eq!(few.status, Status::Inconclusive);
        let five = decide(Method::MedianInterval, 5.0, 4.0, Cmp::Ge, Some((4.5, 5.5)), Some(0.9375), None);
        assert_eq!(five.status, Status::Pass);
        let below = decide(Method::Point, 0.9, 1.0, Cmp::Le, None, None, None);
        assert_eq!(below.status, Status::Pass);
        assert!((below.margin.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(decide(Method::Point, f64::NAN, 1.0, Cmp::Le, None, None, None).status, Status::Fail);
        // An infinite ratio fails too, with no margin to show.
        let infinite = decide(
            Method::PairedRatio,
            f64::INFINITY,
            3.0,
            Cmp::Ge,
            Some((f64::INFINITY, f64::INFINITY)),
            Some(0.95),
            None,
        );
        assert_eq!((infinite.status, infinite.margin), (Status::Fail, None));
    }

    /// Margins are relative to the threshold's size and positive on the passing side,
    /// whatever the threshold's sign.
    /// A threshold that is not a finite number fails whatever is observed, with no margin,
    /// by every method: nothing exceeds infinity (`<= inf` held for every value), and
    /// NaN equals nothing (`!= NaN` held).
    #[test]
    fn a_threshold_that_is_not_finite_fails() {
        let cmps = [Cmp::Ge, Cmp::Gt, Cmp::Le, Cmp::Lt, Cmp::Eq, Cmp::Ne];
        let methods = [(Method::Point, None, None), (Method::PairedRatio, Some((3.0, 4.0)), Some(0.98))];
        for threshold in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            for cmp in cmps {
                for (method, interval, coverage) in methods {
                    let measured = decide(method, 3.5, threshold, cmp, interval, coverage, None);
                    let case = format!("3.5 {} {threshold} ({method:?})", cmp.symbol());
                    assert_eq!((measured.status, measured.margin), (Status::Fail, None), "{case}");
                }
            }
        }
    }

    #[test]
    fn margins_are_positive_on_the_passing_side() {
        let cases = [
            (Cmp::Ge, 5.0, 4.0, Some(0.25)),
            (Cmp::Gt, 3.0, 4.0, Some(-0.25)),
            (Cmp::Le, 0.9, 1.0, Some(0.1)),
            (Cmp::Lt, 1.1, 1.0, Some(-0.1)),
            // A negative threshold, as `-(a / b) >= -2` has.
            (Cmp::Ge, -1.0, -2.0, Some(0.5)),
            (Cmp::Gt, -3.0, -2.0, Some(-0.5)),
            (Cmp::Le, -3.0, -2.0, Some(0.5)),
            (Cmp::Lt, -1.0, -2.0, Some(-0.5)),
            // No relative distance from 0, nor for equality.
            (Cmp::Ge, 1.0, 0.0, None),
            (Cmp::Eq, 1.0, 1.0, None),
            (Cmp::Ne, 1.0, 2.0, None),
        ];
        for (cmp, observed, threshold, margin) in cases {
            let case = format!("{observed} {} {threshold}", cmp.symbol());
            let measured = decide(Method::Point, observed, threshold, cmp, None, None, None);
            match (measured.margin, margin) {
                (Some(got), Some(expected)) => {
                    assert!((got - expected).abs() < 1e-12, "{case}: margin {got}, not {expected}");
                    assert_eq!(measured.status == Status::Pass, got > 0.0, "{case}");
                }
                (got, expected) => assert_eq!(got, expected, "{case}"),
            }
        }
    }

    /// Applies a waiver until `until` to a verdict of `status`, on `today`.
    fn waived(status: Status, today: &str, until: &str) -> super::Verdict {
        let mut verdict = super::Verdict {
            check: "check".into(),
            point: String::new(),
            status,
            rationale: String::new(),
            expr: None,
            measured: None,
            parity: None,
            snapshot: None,
            reason: None,
            waiver: Some(crate::spec::Xfail { reason: "known slow".into(), until: until.into() }),
            noise_floor: None,
        };
        super::waive(&mut verdict, &super::Facts { today: today.into(), ..Default::default() });
        verdict
    }

    /// A waiver holds to the end of its date, covers failures and inconclusive results
    /// only, and then fails every check that was judged.
    #[test]
    fn waivers_hold_through_their_date() {
        let cases = [
            (Status::Fail, "2026-11-21", Status::Xfail),
            (Status::Fail, "2026-11-22", Status::Fail),
            (Status::Inconclusive, "2026-11-21", Status::Xfail),
            (Status::Inconclusive, "2026-11-22", Status::Fail),
            (Status::Pass, "2026-11-21", Status::Xpass),
            (Status::Pass, "2026-11-22", Status::Fail),
            // A value that could not be measured is no known shortfall: it stays a failure.
            (Status::NotMeasured, "2026-11-21", Status::NotMeasured),
            (Status::NotMeasured, "2026-11-22", Status::Fail),
            (Status::New, "2026-11-21", Status::New),
            (Status::NotApplicable, "2026-11-22", Status::NotApplicable),
            (Status::Skipped, "2026-11-22", Status::Skipped),
            // Without today's date no waiver has expired.
            (Status::Fail, "", Status::Xfail),
        ];
        for (status, today, expected) in cases {
            let verdict = waived(status, today, "2026-11-21");
            assert_eq!(verdict.status, expected, "{status:?} on {today:?}: {:?}", verdict.reason);
        }
        // Each result a waiver turns says so, with the waiver's date and reason.
        let reason = |status, today| waived(status, today, "2026-11-21").reason.unwrap_or_default();
        assert_eq!(reason(Status::Fail, "2026-11-21"), "waived until 2026-11-21: known slow");
        assert_eq!(
            reason(Status::Inconclusive, "2026-11-21"),
            "inconclusive (the interval straddles the threshold), waived until 2026-11-21: known slow"
        );
        assert_eq!(reason(Status::Fail, "2026-11-22"), "waiver expired on 2026-11-21: known slow");
    }

    /// A parity comparison of outputs `values` with these comparators.
    fn parity(comparators: crate::spec::Comparators) -> crate::spec::Parity {
        crate::spec::Parity {
            of: crate::expr::parse_selected("a").unwrap(),
            against: crate::expr::parse_selected("b").unwrap(),
            output: "values".into(),
            comparators,
        }
    }

    /// The status, figures and failures of comparing `of` against `against`.
    fn check_parity(comparators: crate::spec::Comparators, of: &[f64], against: &[f64], expect: &str) {
        use crate::kernel::OutputData;
        let figures =
            super::compare(&parity(comparators), &OutputData::F64(of.to_vec()), &OutputData::F64(against.to_vec()));
        let number = |value: Option<f64>| value.map_or_else(|| "–".to_owned(), format_number);
        let violations = figures.allclose_violations.map_or_else(|| "–".to_owned(), |count| count.to_string());
        let got = format!(
            "{}: max abs diff {}, sum ratio-1 {}, allclose violations {violations}; {}",
            figures.status.name(),
            number(figures.max_abs_diff),
            number(figures.sum_ratio_deviation),
            figures.failures.join("; ")
        );
        assert_eq!(got, expect, "{of:?} against {against:?}");
    }

    #[test]
    fn parity_figures_and_failures() {
        use crate::spec::Comparators;
        let max_abs = Comparators { max_abs: Some(1e-9), ..Default::default() };
        // A NaN anywhere is no match, wherever it lies.
        for of in [[f64::NAN, 1.0, 2.0], [0.0, f64::NAN, 2.0], [0.0, 1.0, f64::NAN]] {
            check_parity(
                max_abs.clone(),
                &of,
                &[0.0, 1.0, 2.0],
                "FAIL: max abs diff NaN, sum ratio-1 NaN, allclose violations –; max |diff| NaN > 1.000e-9",
            );
        }
        check_parity(
            max_abs,
            &[0.0, 1.0, 2.0],
            &[0.0, 1.0, 2.5],
            "FAIL: max abs diff 0.5000, sum ratio-1 -0.1429, allclose violations –; max |diff| 0.5000 > 1.000e-9",
        );
        // A miss by less than four digits show is printed with the digits that show it.
        check_parity(
            Comparators { max_abs: Some(1e-3), ..Default::default() },
            &[1.0010000001],
            &[1.0],
            "FAIL: max abs diff 0.001000, sum ratio-1 0.001000, allclose violations –; max |diff| 0.0010000001 > 0.0010000000",
        );
        // allclose is relative to the output compared against, as numpy's is.
        let rtol = Comparators { rtol: Some(0.095), ..Default::default() };
        check_parity(
            rtol.clone(),
            &[1.0],
            &[1.1],
            "pass: max abs diff 0.1000, sum ratio-1 -0.09091, allclose violations 0; ",
        );
        check_parity(
            rtol,
            &[1.1],
            &[1.0],
            "FAIL: max abs diff 0.1000, sum ratio-1 0.1000, allclose violations 1; 1 of 1 elements outside allclose(rtol=0.095, atol=0)",
        );
        let atol = Comparators { rtol: Some(0.0), atol: Some(0.25), ..Default::default() };
        check_parity(
            atol,
            &[1.0, 2.0, 3.0],
            &[1.25, 2.5, 3.0],
            "FAIL: max abs diff 0.5000, sum ratio-1 -0.1111, allclose violations 1; 1 of 3 elements outside allclose(rtol=0, atol=0.25)",
        );
        // The sum ratio is sum(of) / sum(against).
        let sums = Comparators { sum_ratio: Some(0.05), ..Default::default() };
        check_parity(
            sums.clone(),
            &[1.0, 2.0, 3.0, 4.0],
            &[1.0, 2.0, 3.0, 5.0],
            "FAIL: max abs diff 1.000, sum ratio-1 -0.09091, allclose violations –; |sum ratio - 1| = 0.09091 > 0.05000",
        );
        check_parity(
            sums.clone(),
            &[1.0, 2.0, 3.0, 4.25],
            &[1.0, 2.0, 3.0, 4.0],
            "pass: max abs diff 0.2500, sum ratio-1 0.02500, allclose violations –; ",
        );
        // Two sums of 0 are equal; a sum against one of 0 is infinitely far from it.
        check_parity(
            sums.clone(),
            &[1.0, -1.0],
            &[0.0, 0.0],
            "pass: max abs diff 1.000, sum ratio-1 0, allclose violations –; ",
        );
        check_parity(
            sums,
            &[1.0, 0.0],
            &[0.0, 0.0],
            "FAIL: max abs diff 1.000, sum ratio-1 inf, allclose violations –; |sum ratio - 1| = inf > 0.05000",
        );
        check_parity(
            Comparators { exact: true, max_abs: Some(1.0), ..Default::default() },
            &[1.0, 2.0, 3.0],
            &[1.0, 2.5, 3.5],
            "FAIL: max abs diff 0.5000, sum ratio-1 -0.1429, allclose violations –; not identical (2 of 3 elements differ)",
        );
        check_parity(
            Comparators { max_abs: Some(1.0), ..Default::default() },
            &[1.0, 2.0],
            &[1.0],
            "FAIL: max abs diff –, sum ratio-1 –, allclose violations –; lengths differ (2 vs 1)",
        );
        // `exact` compares bits: -0.0 is not 0.0, and a NaN is the same NaN.
        let exact = Comparators { exact: true, ..Default::default() };
        check_parity(
            exact.clone(),
            &[1.0, -0.0],
            &[1.0, 0.0],
            "FAIL: max abs diff –, sum ratio-1 –, allclose violations –; not identical (1 of 2 elements differ)",
        );
        check_parity(
            exact.clone(),
            &[f64::NAN, 2.0],
            &[f64::NAN, 2.0],
            "pass: max abs diff –, sum ratio-1 –, allclose violations –; ",
        );
        // The same value in two types is not the same bits.
        use crate::kernel::OutputData;
        let figures = super::compare(&parity(exact.clone()), &OutputData::F32(vec![1.0]), &OutputData::F64(vec![1.0]));
        assert_eq!(figures.failures, ["types differ (f32 vs f64)"]);
        // Integers beyond 2^53 are told apart.
        let big = 1_i64 << 53;
        let figures =
            super::compare(&parity(exact), &OutputData::I64(vec![big, 1]), &OutputData::I64(vec![big + 1, 1]));
        assert_eq!(figures.failures, ["not identical (1 of 2 elements differ)"]);
    }

    #[test]
    fn empty_outputs_are_no_parity() {
        use crate::kernel::OutputData;
        let parity = parity(crate::spec::Comparators { exact: true, max_abs: Some(1e-9), ..Default::default() });
        let empty = OutputData::F64(Vec::new());
        let figures = super::compare(&parity, &empty, &empty);
        assert_eq!(figures.status, Status::Fail);
        assert!(figures.failures[0].contains("empty"), "{:?}", figures.failures);
        let some = OutputData::F64(vec![1.0, 2.0]);
        assert_eq!(super::compare(&parity, &some, &some).status, Status::Pass);
    }

    #[test]
    fn correlation() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
        // Identical and mirrored outputs correlate exactly.
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i).sin() * 1e3 + 0.1 * f64::from(i)).collect();
        for x in [vec![1.0, 2.0, 3.0], values, vec![1e-50, -3e-50, 2e-50]] {
            let mirrored: Vec<f64> = x.iter().map(|value| -value).collect();
            assert_eq!(pearson(&x, &x), 1.0, "{x:?}");
            assert_eq!(pearson(&x, &mirrored), -1.0, "{x:?}");
        }
        // Where the product of the variances overflows, the roots are taken apart.
        let huge = [1e150, -3e150, 2e150];
        let correlation = pearson(&huge, &huge);
        assert!(correlation <= 1.0 && correlation > 1.0 - 1e-15, "{correlation}");
    }

    #[test]
    fn pairs_get_enough_digits_to_differ() {
        assert_eq!(super::format_pair(154.652466, 154.65246), ("154.65247".to_owned(), "154.65246".to_owned()));
        assert_eq!(super::format_pair(5.0, 4.0), ("5.000".to_owned(), "4.000".to_owned()));
        assert_eq!(super::format_pair(1.0, 1.0), ("1.000".to_owned(), "1.000".to_owned()));
        // An interval that straddles its threshold reads so.
        assert_eq!(
            super::format_apart([3.9999995, 4.0000012, 4.0]),
            ["3.999999", "4.000001", "4.000000"].map(String::from)
        );
        assert_eq!(super::format_apart([2.0, 2.0, 3.0]), ["2.000", "2.000", "3.000"].map(String::from));
    }

    #[test]
    fn numbers() {
        assert_eq!(format_number(4.0), "4.000");
        assert_eq!(format_number(123.456), "123.5");
        assert_eq!(format_number(1e-6), "1.000e-6");
        assert_eq!(format_number(0.0), "0");
        // Exponents outside [1e-3, 1e6), on either side and either sign.
        let bounds = [
            (999_999.0, "999999"),
            (1e6, "1.000e6"),
            (-2.5e6, "-2.500e6"),
            (0.001, "0.001000"),
            (9.99e-4, "9.990e-4"),
            (-0.0125, "-0.01250"),
            // Values that round up to the next power of ten take its decimals, and
            // its exponent where they are printed with one.
            (999.96, "1000"),
            (9.9996, "10.00"),
            (-99.996, "-100.0"),
            (0.0099996, "0.01000"),
            (999_999.5, "1.000e6"),
            (999_999.4, "999999"),
            (9.9996e-4, "1.000e-3"),
            (9.99996e6, "1.000e7"),
        ];
        for (value, text) in bounds {
            assert_eq!(format_number(value), text, "{value}");
        }
    }
}
