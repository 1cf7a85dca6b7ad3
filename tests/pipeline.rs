//! The whole pipeline in process with the mock kernel: execution, interleaving,
//! statistics, verdicts of every kind, parity, failures and re-runs.

use phasegate::execute::{ExecutionOptions, RunStatus, Sample};
use phasegate::verdict::{self, Facts, Method, Status, Verdict};

use crate::support::{BASE, expand, run_plan};

fn with_checks(base: &str, checks: &[(&str, &str)]) -> String {
    let mut text = base.to_owned();
    for (id, body) in checks {
        text.push_str(&format!("\n[[phase.check]]\nid = \"{id}\"\n{body}\nrationale = \"test\"\n"));
    }
    text
}

fn verdicts(text: &str, facts: &Facts) -> Vec<Verdict> {
    let plan = expand(text).unwrap();
    run_plan(&plan, facts).remove(0).1
}

/// Runs a phase with its re-runs, as `cargo xtask run` does: results, verdicts, rounds.
fn with_reruns(phase: &phasegate::plan::PhasePlan) -> (Vec<phasegate::execute::RunResult>, Vec<Verdict>, u32) {
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    phasegate::run::execute_with_reruns(
        phase,
        &options,
        &phasegate::execute::Silent,
        &Facts::default(),
        &phasegate::verdict::Snapshots::new(),
    )
}

/// The order in which the steps of a phase finish: (workload, warm-up, index).
fn step_order(phase: &phasegate::plan::PhasePlan) -> Vec<(String, bool, u32)> {
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    let order = StepOrder::default();
    phasegate::execute::execute_phase(phase, &options, &order);
    order.0.into_inner().unwrap()
}

/// [`step_order`] as labels: `slow 0`, `fast warm-up 1`, ...
fn step_labels(phase: &phasegate::plan::PhasePlan) -> Vec<String> {
    step_order(phase)
        .into_iter()
        .map(|(workload, warmup, index)| format!("{workload}{}{index}", if warmup { " warm-up " } else { " " }))
        .collect()
}

/// The verdict named `name` (a check's id, with its point's label if it has one).
fn verdict_of<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
    verdicts.iter().find(|verdict| verdict.name() == name).unwrap_or_else(|| panic!("no verdict {name}"))
}

fn status_of(verdicts: &[Verdict], name: &str) -> Status {
    verdict_of(verdicts, name).status
}

#[test]
fn interleaved_samples_pair_by_index() {
    let plan = expand(BASE).unwrap();
    let (results, _) = run_plan(&plan, &Facts::default()).remove(0);
    for result in &results {
        let indices: Vec<u32> = result.timed(phasegate::spec::Mode::Warm).map(|sample| sample.index).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4]);
        assert_eq!(result.samples.iter().filter(|sample| sample.warmup).count(), 1);
    }
    // Mock times are deterministic: the seeded jitter gives the same sequence twice.
    let again = run_plan(&plan, &Facts::default()).remove(0).0;
    assert_eq!(results[0].samples, again[0].samples);
}

/// Records the order in which steps finish: (workload, warm-up, index).
#[derive(Default)]
struct StepOrder(std::sync::Mutex<Vec<(String, bool, u32)>>);

impl phasegate::execute::Observer for StepOrder {
    fn step_finished(&self, _phase: &phasegate::plan::PhasePlan, run: &phasegate::plan::Run, sample: &Sample) {
        self.0.lock().unwrap().push((run.workload.clone(), sample.warmup, sample.index));
    }
}

#[test]
fn a_workload_and_its_reference_take_turns_sample_by_sample() {
    let text = BASE.replace("repeats = 5", "repeats = 3\nwarmup = 2");
    let plan = expand(&text).unwrap();
    assert_eq!(
        step_labels(&plan.phases[0]),
        [
            "slow warm-up 0",
            "fast warm-up 0",
            "slow warm-up 1",
            "fast warm-up 1",
            "slow 0",
            "fast 0",
            "slow 1",
            "fast 1",
            "slow 2",
            "fast 2",
        ]
    );
}

#[test]
fn cold_samples_take_turns_too() {
    let text = BASE
        .replace("repeats = 5", "repeats = 3")
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\"]")
        .replace("id = \"fast\"", "id = \"fast\"\nmodes = [\"cold\"]");
    let plan = expand(&text).unwrap();
    assert_eq!(step_labels(&plan.phases[0]), ["slow 0", "fast 0", "slow 1", "fast 1", "slow 2", "fast 2"]);
}

#[test]
fn sequential_order_runs_one_workload_after_the_other() {
    let text = BASE.replace("repeats = 5", "repeats = 2\norder = \"sequential\"");
    let plan = expand(&text).unwrap();
    let workloads: Vec<String> = step_order(&plan.phases[0]).into_iter().map(|(workload, ..)| workload).collect();
    assert_eq!(workloads, ["slow", "slow", "slow", "fast", "fast", "fast"]);
}

#[test]
fn paired_ratio_verdicts_are_tri_state() {
    let text = with_checks(
        BASE,
        &[
            ("clears", "expr = \"slow.warm.median / fast.warm.median >= 3\""),
            ("misses", "expr = \"slow.warm.median / fast.warm.median >= 5\""),
            ("straddles", "expr = \"slow.warm.median / fast.warm.median >= 4\""),
            ("point", "expr = \"slow.warm.mean - fast.warm.mean >= 0.002\""),
        ],
    );
    // Different jitter for the two workloads, so their ratio varies around 4.
    let text = text.replacen("jitter = 0.05", "jitter = 0.05\nslowdown = 1.0", 1).replace("seed = 7", "seed = 7\n");
    let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let verdicts = verdicts(&text, &Facts::default());
    assert_eq!(status_of(&verdicts, "clears"), Status::Pass);
    assert_eq!(status_of(&verdicts, "misses"), Status::Fail);
    assert_eq!(status_of(&verdicts, "straddles"), Status::Inconclusive);
    let straddles = verdict_of(&verdicts, "straddles");
    let measured = straddles.measured.as_ref().unwrap();
    assert_eq!(measured.method, Method::PairedRatio);
    let (low, high) = measured.interval.unwrap();
    assert!(low < 4.0 && high > 4.0, "{low} {high}");
    assert_eq!(measured.ratios.as_ref().unwrap().n, 5);
    // The reason gives the interval's coverage as the report's table does, to a tenth.
    let expected = format!("the {:.1}% interval [", 100.0 * measured.coverage.unwrap());
    let reason = straddles.reason.as_ref().unwrap();
    assert!(reason.starts_with(&expected) && reason.contains("straddles the threshold 4"), "{reason}");
    let point = verdict_of(&verdicts, "point");
    assert_eq!(point.measured.as_ref().unwrap().method, Method::Point);
    assert_eq!(point.status, Status::Pass);
}

#[test]
fn medians_of_runs_not_taken_together_decide_on_their_joint_interval() {
    // Sequential runs are not paired: the ratio of their medians is decided on the
    // range of the ratio when each median lies in its 97.5% interval.
    let unpaired = |repeats: u32| {
        let text = BASE.replace("repeats = 5", &format!("repeats = {repeats}\norder = \"sequential\""));
        let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
        with_checks(
            &text,
            &[
                ("clears", "expr = \"slow.warm.median / fast.warm.median >= 3\""),
                ("misses", "expr = \"slow.warm.median / fast.warm.median >= 5\""),
                ("straddles", "expr = \"slow.warm.median / fast.warm.median >= 4\""),
            ],
        )
    };
    let six = verdicts(&unpaired(6), &Facts::default());
    assert_eq!(status_of(&six, "clears"), Status::Pass);
    assert_eq!(status_of(&six, "misses"), Status::Fail);
    assert_eq!(status_of(&six, "straddles"), Status::Inconclusive);
    let measured = six[0].measured.as_ref().unwrap();
    assert_eq!(measured.method, Method::MedianInterval);
    // [min, max] of 6 samples misses a median with 1/32, so both hold with 15/16.
    assert_eq!(measured.coverage, Some(0.9375));
    let (low, high) = measured.interval.unwrap();
    assert!(low < measured.observed && measured.observed < high, "{measured:?}");
    assert!(low > 3.0 && high < 5.0, "{measured:?}");
    // With 5 samples each the two intervals hold together with only 87.5%: nothing is
    // decided, however clear the point values.
    let five = verdicts(&unpaired(5), &Facts::default());
    assert_eq!(status_of(&five, "clears"), Status::Inconclusive);
    assert!(five[0].reason.as_ref().unwrap().contains("holds the value with only 87.5% (below 90%)"));
}

#[test]
fn each_median_gets_its_share_of_the_misses() {
    // With 20 samples the intervals of level 97.5% and 95% differ: [5th, 16th] covers a
    // median with 98.8%, [6th, 15th] with 95.9%. Two medians need the wider ones to hold
    // together with 95%.
    let text = BASE.replace("repeats = 5", "repeats = 20\norder = \"sequential\"");
    let text = with_checks(&text, &[("clears", "expr = \"slow.warm.median / fast.warm.median >= 3\"")]);
    let verdicts = verdicts(&text, &Facts::default());
    let measured = verdicts[0].measured.as_ref().unwrap();
    assert_eq!(measured.method, Method::MedianInterval);
    assert_eq!(measured.terms.len(), 2);
    for term in &measured.terms {
        assert_eq!(term.n, 20);
        assert!((term.coverage - 0.98818).abs() < 1e-5, "{term:?}");
    }
    let joint = measured.coverage.unwrap();
    assert!((joint - (1.0 - 2.0 * (1.0 - measured.terms[0].coverage))).abs() < 1e-12, "{measured:?}");
    assert!(joint >= 0.95, "{measured:?}");
    assert_eq!(verdicts[0].status, Status::Pass);
}

/// A check of several parts takes the worst of their statuses: a failure, then a value
/// not measured, then an undecided interval, then a new snapshot.
#[test]
fn a_check_of_several_parts_takes_the_worst_status() {
    // Partners with seeds of their own: their ratio straddles 4, and their outputs differ;
    // a third workload fails, so no output of it can be compared.
    let text = BASE.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1)
        + "\n[[phase.workload]]\nid = \"broken\"\nkernel = \"mock\"\n[phase.workload.params]\nfail_at = 1\n";
    let condition = |threshold: u32| format!("expr = \"slow.warm.median / fast.warm.median >= {threshold}\"");
    let parity = |against: &str| {
        format!("parity = {{ of = \"fast\", against = \"{against}\", output = \"values\", exact = true }}")
    };
    let snapshot = "snapshot = { of = \"fast\", output = \"values\", max_abs = 1e-12 }";
    let cases = [
        ("fails_and_unmeasured", format!("{}\n{}", condition(5), parity("broken")), Status::Fail),
        ("straddles_and_differs", format!("{}\n{}", condition(4), parity("slow")), Status::Fail),
        ("straddles_and_unmeasured", format!("{}\n{}", condition(4), parity("broken")), Status::NotMeasured),
        ("straddles_and_new", format!("{}\n{snapshot}", condition(4)), Status::Inconclusive),
        ("unmeasured_and_new", format!("{}\n{snapshot}", parity("broken")), Status::NotMeasured),
        ("clears_and_new", format!("{}\n{snapshot}", condition(3)), Status::New),
    ];
    let checks: Vec<(&str, &str)> = cases.iter().map(|(id, body, _)| (*id, body.as_str())).collect();
    let verdicts = verdicts(&with_checks(&text, &checks), &Facts::default());
    for (id, _, status) in &cases {
        let verdict = verdict_of(&verdicts, id);
        assert_eq!(verdict.status, *status, "{id}: {verdict:?}");
    }
    // Every part that is not a plain pass gives its reason.
    let reason = verdict_of(&verdicts, "straddles_and_unmeasured").reason.as_ref();
    assert!(
        reason
            .is_some_and(|reason| reason.contains("straddles the threshold") && reason.contains("run `broken` failed")),
        "{reason:?}"
    );
}

#[test]
fn ratios_of_partners_inside_an_expression_are_terms_of_paired_samples() {
    // Two sizes (slowdown 1 and 8) of a workload and its partner: the same seed gives
    // partners the same noise, as a drift of the machine would, so each ratio of
    // partners is exactly 2 while every median moves by up to 50%.
    let text = BASE
        .replace("repeats = 5", "repeats = 7")
        .replace("jitter = 0.05", "jitter = 0.5\nslowdown = [1.0, 8.0]")
        .replace("time_ms = 4.0", "time_ms = 2.0");
    let growth = |numerator: &str, denominator: &str| format!("expr = \"{numerator} / ({denominator}) <= 1.05\"",);
    let text = with_checks(
        &text,
        &[
            (
                "paired",
                &growth(
                    "slow[slowdown=8].warm.median / fast[slowdown=8].warm.median",
                    "slow[slowdown=1].warm.median / fast[slowdown=1].warm.median",
                ),
            ),
            (
                "unpaired",
                &growth(
                    "slow[slowdown=8].warm.median / slow[slowdown=1].warm.median",
                    "fast[slowdown=8].warm.median / fast[slowdown=1].warm.median",
                ),
            ),
        ],
    );
    let verdicts = verdicts(&text, &Facts::default());
    // The same growth over the same samples, taken as four medians: their intervals
    // leave it undecided.
    assert_eq!(status_of(&verdicts, "unpaired"), Status::Inconclusive);
    assert!(verdicts[1].reason.as_ref().unwrap().contains("straddles the threshold"), "{:?}", verdicts[1].reason);
    let unpaired = verdicts[1].measured.as_ref().unwrap();
    assert_eq!(unpaired.terms.len(), 4);
    assert!(unpaired.terms.iter().all(|term| !term.paired && term.n == 7 && term.low < term.high));
    // As two ratios of partners it is decided on their paired ratios.
    assert_eq!(status_of(&verdicts, "paired"), Status::Pass);
    let paired = verdicts[0].measured.as_ref().unwrap();
    assert_eq!(paired.method, Method::MedianInterval);
    let terms: Vec<(&str, bool, usize)> =
        paired.terms.iter().map(|term| (term.expr.as_str(), term.paired, term.n)).collect();
    assert_eq!(
        terms,
        [
            ("slow[slowdown=8].warm.time.median / fast[slowdown=8].warm.time.median", true, 7),
            ("slow[slowdown=1].warm.time.median / fast[slowdown=1].warm.time.median", true, 7),
        ]
    );
    // Only the nanosecond rounding of the reported times is left of the noise.
    let near = |value: f64, target: f64| (value - target).abs() < 1e-5;
    assert!(paired.terms.iter().all(|term| near(term.low, 2.0) && near(term.high, 2.0)), "{paired:?}");
    let (low, high) = paired.interval.unwrap();
    assert!(near(paired.observed, 1.0) && near(low, 1.0) && near(high, 1.0), "{paired:?}");
    // Two intervals of 7 pairs, each [min, max] missing its median with 1/64.
    assert_eq!(paired.coverage, Some(1.0 - 2.0 / 64.0));
}

#[test]
fn failed_runs_make_checks_not_measured() {
    let text = BASE.replace("time_ms = 1.0", "time_ms = 1.0\nfail_at = 3");
    let text = with_checks(&text, &[("speed", "expr = \"slow.warm.median / fast.warm.median >= 3\"")]);
    let plan = expand(&text).unwrap();
    let (results, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    let fast = &results[1];
    match &fast.status {
        RunStatus::Failed(message) => assert!(message.contains("mock failure at sample 3"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(status_of(&verdicts, "speed"), Status::NotMeasured);
    assert!(verdicts[0].reason.as_ref().unwrap().contains("run `fast` failed"));
    // The partner still ran to the end.
    assert_eq!(results[0].status, RunStatus::Completed);
    assert_eq!(results[0].timed(phasegate::spec::Mode::Warm).count(), 5);
}

#[test]
fn non_finite_samples_make_checks_not_measured() {
    let text = BASE.replace("repeats = 5", "repeats = 9");
    let text = with_checks(
        &text,
        &[
            ("ratio", "expr = \"slow.warm.median / fast.warm.median >= 3\""),
            ("metric_median", "expr = \"fast.warm.items_per_s.median >= 1\""),
            ("metric_max", "expr = \"fast.warm.items_per_s.max <= 1e12\""),
            ("metric_min", "expr = \"fast.warm.items_per_s.min >= 1\""),
            ("gated", "expr = \"slow.warm.median <= 1\"\napplies_if = \"fast.warm.items_per_s.mean > 0\""),
        ],
    );
    let plan = expand(&text).unwrap();
    let (results, clean) = run_plan(&plan, &Facts::default()).remove(0);
    for check in ["ratio", "metric_median", "metric_max", "metric_min", "gated"] {
        assert_eq!(status_of(&clean, check), Status::Pass, "{check} passes on clean samples");
    }
    // `0.0 / 0.0` gives a NaN with the sign bit set on x86, which `total_cmp` sorts
    // first; `f64::NAN` sorts last. Neither may vanish into an order statistic.
    let zero = std::hint::black_box(0.0f64);
    for nan in [zero / zero, f64::NAN, f64::INFINITY] {
        let mut broken = results.clone();
        let sample = broken[1].samples.iter_mut().filter(|sample| !sample.warmup).nth(4).unwrap();
        sample.seconds = nan;
        for (name, value) in &mut sample.metrics {
            if name == "items_per_s" {
                *value = nan;
            }
        }
        let verdicts = verdict::evaluate(&plan.phases[0], &broken, &Facts::default(), &verdict::Snapshots::new());
        for check in ["ratio", "metric_median", "metric_max", "metric_min", "gated"] {
            let found = verdict_of(&verdicts, check);
            assert_eq!(found.status, Status::NotMeasured, "{check} with {nan}: {:?}", found.reason);
            assert!(found.reason.as_ref().unwrap().contains("non-finite"), "{:?}", found.reason);
        }
    }
}

#[test]
fn parity_failure_fails_even_a_fast_result() {
    let text = BASE.replace("time_ms = 1.0", "time_ms = 1.0\nperturb = 1e-3");
    let text = with_checks(
        &text,
        &[
            (
                "fast_and_right",
                "expr = \"slow.warm.median / fast.warm.median >= 3\"\nparity = { of = \"fast\", against = \"slow\", output = \"values\", max_abs = 1e-6 }",
            ),
            (
                "loose",
                "parity = { of = \"fast\", against = \"slow\", output = \"values\", max_abs = 1e-2, corr_min = 0.999, rtol = 0.01, atol = 1e-3 }",
            ),
            ("sums", "parity = { of = \"fast\", against = \"slow\", output = \"values\", sum_ratio = 1e-9 }"),
        ],
    );
    let verdicts = verdicts(&text, &Facts::default());
    let strict = verdict_of(&verdicts, "fast_and_right");
    assert_eq!(strict.measured.as_ref().unwrap().status, Status::Pass, "the speedup alone passes");
    assert_eq!(strict.status, Status::Fail, "but the output is wrong");
    let figures = strict.parity.as_ref().unwrap();
    assert!((figures.max_abs_diff.unwrap() - 1e-3).abs() < 1e-12);
    assert!(figures.failures[0].starts_with("max |diff| 0.001000 > 1.000e-6"), "{:?}", figures.failures);
    assert_eq!(status_of(&verdicts, "loose"), Status::Pass);
    assert_eq!(status_of(&verdicts, "sums"), Status::Fail);
}

#[test]
fn requirements_applicability_and_skips() {
    let text = BASE.replace("id = \"fast\"", "id = \"fast\"\nrequires_env = \"EXAMPLE_TOOL_UNSET\"");
    let text = with_checks(
        &text,
        &[
            ("needs_cpu", "expr = \"slow.warm.median <= 1\"\nrequires = [\"cpu:avx512_vpopcntdq\"]"),
            ("only_if_fast", "expr = \"slow.warm.median <= 1\"\napplies_if = \"slow.warm.median < 0.001\""),
            ("uses_skipped", "expr = \"slow.warm.median / fast.warm.median >= 3\""),
            ("timed", "expr = \"slow.warm.median <= 1\"\nrequires = [\"build:optimized\"]"),
        ],
    );
    let plan = expand(&text).unwrap();
    let with_feature = Facts { cpu_features: vec!["avx512vpopcntdq".into()], ..Facts::default() };
    let untimed = Facts { untimed: Some("sizes made for tests".into()), ..Facts::default() };
    let verdicts = run_plan(&plan, &untimed).remove(0).1;
    let timed = verdict_of(&verdicts, "timed");
    assert_eq!(timed.status, Status::NotApplicable);
    assert!(timed.reason.as_ref().unwrap().ends_with(": sizes made for tests"), "{:?}", timed.reason);
    let verdicts = run_plan(&plan, &Facts::default()).remove(0).1;
    assert_eq!(status_of(&verdicts, "timed"), Status::Pass, "a process that can time evaluates the check");
    assert_eq!(status_of(&verdicts, "needs_cpu"), Status::NotApplicable);
    assert!(verdicts[0].reason.as_ref().unwrap().contains("avx512_vpopcntdq"));
    assert_eq!(status_of(&verdicts, "only_if_fast"), Status::NotApplicable);
    assert_eq!(status_of(&verdicts, "uses_skipped"), Status::Skipped);
    let skipped = verdict_of(&verdicts, "uses_skipped");
    assert_eq!(skipped.reason.as_deref(), Some("fast: EXAMPLE_TOOL_UNSET is not set"));
    let verdicts = run_plan(&plan, &with_feature).remove(0).1;
    assert_eq!(status_of(&verdicts, "needs_cpu"), Status::Pass, "underscores are ignored in feature names");
}

/// A comparison of outputs with a skipped run is skipped, as a condition on one is; an
/// `applies_if` that is no finite number cannot say whether the check applies.
#[test]
fn skipped_outputs_and_applies_if_beyond_numbers() {
    let text = BASE
        .replace("id = \"fast\"", "id = \"fast\"\nrequires_env = \"EXAMPLE_TOOL_UNSET\"")
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\", \"warm\"]");
    let text = with_checks(
        &text,
        &[
            (
                "parity_of_skipped",
                "parity = { of = \"fast\", against = \"slow\", output = \"values\", max_abs = 1e-9 }",
            ),
            ("snapshot_of_skipped", "snapshot = { of = \"fast\", output = \"values\", max_abs = 1e-9 }"),
            // The index of the first cold sample, 0, makes the ratio infinite.
            (
                "gated_by_infinity",
                "expr = \"slow.warm.median <= 1\"\napplies_if = \"slow.warm.median / slow.cold.sample_index.min < 1e9\"",
            ),
        ],
    );
    let verdicts = verdicts(&text, &Facts::default());
    for check in ["parity_of_skipped", "snapshot_of_skipped"] {
        let verdict = verdict_of(&verdicts, check);
        assert_eq!(verdict.status, Status::Skipped, "{check}: {:?}", verdict.reason);
        assert_eq!(verdict.reason.as_deref(), Some("fast: EXAMPLE_TOOL_UNSET is not set"), "{check}");
    }
    let gated = verdict_of(&verdicts, "gated_by_infinity");
    assert_eq!(gated.status, Status::NotMeasured, "{:?}", gated.reason);
    assert_eq!(
        gated.reason.as_deref(),
        Some("`slow.warm.median / slow.cold.sample_index.min < 1e9` is not a finite number (inf vs 1000000000)")
    );
}

#[test]
fn waivers_expire() {
    let waived = |until: &str, threshold: u32| {
        format!(
            "expr = \"slow.warm.median / fast.warm.median >= {threshold}\"\nxfail = {{ reason = \"known slow\", until = \"{until}\" }}"
        )
    };
    let text = with_checks(
        BASE,
        &[
            ("waived_fail", &waived("2030-01-01", 9)),
            ("waived_pass", &waived("2030-01-01", 2)),
            ("expired", &waived("2020-01-01", 2)),
            (
                "expired_not_applicable",
                &format!("{}\nrequires = [\"cpu:nonexistentfeature\"]", waived("2020-01-01", 2)),
            ),
        ],
    );
    let facts = Facts { today: "2026-11-21".into(), ..Facts::default() };
    let verdicts = verdicts(&text, &facts);
    assert_eq!(status_of(&verdicts, "waived_fail"), Status::Xfail);
    assert_eq!(status_of(&verdicts, "waived_pass"), Status::Xpass);
    assert_eq!(status_of(&verdicts, "expired"), Status::Fail);
    assert!(verdicts[2].reason.as_ref().unwrap().contains("waiver expired on 2020-01-01"));
    // A check this machine cannot judge is not failed by its expired waiver.
    assert_eq!(status_of(&verdicts, "expired_not_applicable"), Status::NotApplicable);
    assert!(verdicts[3].reason.as_ref().unwrap().contains("requires CPU feature `nonexistentfeature`"));
}

#[test]
fn a_waiver_covers_an_inconclusive_result() {
    let text = BASE.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let check = "expr = \"slow.warm.median / fast.warm.median >= 4\"";
    let waived = format!("{check}\nxfail = {{ reason = \"known slow\", until = \"2030-01-01\" }}");
    let text = with_checks(&text, &[("straddles", check), ("waived", &waived)]);
    let facts = Facts { today: "2026-11-21".into(), ..Facts::default() };
    let verdicts = verdicts(&text, &facts);
    assert_eq!(status_of(&verdicts, "straddles"), Status::Inconclusive);
    assert_eq!(status_of(&verdicts, "waived"), Status::Xfail);
    assert!(verdicts[1].reason.as_ref().unwrap().starts_with("inconclusive ("), "{:?}", verdicts[1].reason);
}

#[test]
fn inconclusive_checks_are_rerun_within_budget() {
    let text = BASE.replace("repeats = 5", "repeats = 5\nreruns = 2");
    let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let text = with_checks(&text, &[("straddles", "expr = \"slow.warm.median / fast.warm.median >= 4\"")]);
    let plan = expand(&text).unwrap();
    let (results, verdicts, rounds) = with_reruns(&plan.phases[0]);
    assert_eq!(rounds, 3, "one round plus two re-runs");
    assert_eq!(results[0].timed(phasegate::spec::Mode::Warm).count(), 15);
    assert_eq!(verdicts[0].measured.as_ref().unwrap().ratios.as_ref().unwrap().n, 15);
    // A re-run is new evidence: its seeded jitter differs from the first round's.
    let round = |number: u32| -> Vec<f64> {
        results[0]
            .timed(phasegate::spec::Mode::Warm)
            .filter(|sample| sample.round == number)
            .map(|sample| sample.seconds)
            .collect()
    };
    assert_ne!(round(0), round(1));
    assert_ne!(round(1), round(2));
    // And still reproducible: the same spec gives the same samples.
    let (again, _, _) = with_reruns(&plan.phases[0]);
    assert_eq!(results[0].samples, again[0].samples);
}

/// Counts the steps each round announces and the steps that finish in it.
#[derive(Default)]
struct RoundSteps(std::sync::Mutex<std::collections::BTreeMap<u32, (u64, u64)>>);

impl phasegate::execute::Observer for RoundSteps {
    fn rerun_started(&self, _phase: &phasegate::plan::PhasePlan, round: u32, steps: u64) {
        self.0.lock().unwrap().entry(round).or_default().0 += steps;
    }

    fn step_finished(&self, _phase: &phasegate::plan::PhasePlan, _run: &phasegate::plan::Run, sample: &Sample) {
        self.0.lock().unwrap().entry(sample.round).or_default().1 += 1;
    }
}

/// A re-run round announces the steps it takes (those of the re-run groups alone), so
/// a progress display can count them.
#[test]
fn a_rerun_round_announces_its_steps() {
    let text = BASE.replace("repeats = 5", "repeats = 5\nreruns = 2").replace("jitter = 0.05", "jitter = [0.0, 0.05]");
    let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let text = with_checks(&text, &[("straddles", "expr = \"slow.warm.median / fast.warm.median >= 4\"")]);
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    let steps = RoundSteps::default();
    let (_, _, rounds) = phasegate::run::execute_with_reruns(
        phase,
        &options,
        &steps,
        &Facts::default(),
        &phasegate::verdict::Snapshots::new(),
    );
    assert_eq!(rounds, 3);
    // One group of two runs (a warm-up and five samples each) is re-run, twice.
    let steps = steps.0.into_inner().unwrap();
    let expected: std::collections::BTreeMap<u32, (u64, u64)> =
        [(0, (0, phase.n_steps())), (1, (12, 12)), (2, (12, 12))].into();
    assert_eq!(steps, expected);
}

#[test]
fn too_few_samples_decide_nothing_until_reruns_pool_enough() {
    // A budget of six re-runs, and a second group (a workload no check names) that is
    // never re-run.
    let text = BASE.replace("repeats = 5", "repeats = 1\nreruns = 6")
        + "\n[[phase.workload]]\nid = \"alone\"\nkernel = \"mock\"\n[phase.workload.params]\ntime_ms = 1.0\n";
    let text = with_checks(&text, &[("clears", "expr = \"slow.warm.median / fast.warm.median >= 3\"")]);
    // One pair clears the threshold, but [min, max] of one sample covers the median never.
    let verdicts = verdicts(&text, &Facts::default());
    assert_eq!(status_of(&verdicts, "clears"), Status::Inconclusive);
    assert!(verdicts[0].reason.as_ref().unwrap().contains("more repeats are needed"), "{:?}", verdicts[0].reason);
    let plan = expand(&text).unwrap();
    let (results, verdicts, rounds) = with_reruns(&plan.phases[0]);
    assert_eq!(rounds, 5, "re-runs until five pairs decide, and no further");
    assert_eq!(verdicts[0].status, Status::Pass);
    assert_eq!(verdicts[0].measured.as_ref().unwrap().ratios.as_ref().unwrap().n, 5);
    let alone = &results[plan.phases[0].runs.iter().position(|run| run.name() == "alone").unwrap()];
    assert_eq!(alone.timed(phasegate::spec::Mode::Warm).count(), 1, "a group with nothing to decide is not re-run");
    // Waived, the check is re-run all the same, and its pass is an xpass to report.
    let waived = text.replace(
        "rationale = \"test\"",
        "rationale = \"test\"\nxfail = { reason = \"known\", until = \"2030-01-01\" }",
    );
    let plan = expand(&waived).unwrap();
    let (_, mut verdicts, rounds) = with_reruns(&plan.phases[0]);
    assert_eq!((rounds, verdicts[0].status), (5, Status::Pass));
    phasegate::verdict::waive(&mut verdicts[0], &Facts { today: "2026-11-21".into(), ..Facts::default() });
    assert_eq!(verdicts[0].status, Status::Xpass);
}

#[test]
fn only_the_groups_of_inconclusive_points_are_rerun() {
    // Two jitters, each a group of `slow` and `fast`: without jitter the ratio is
    // exactly 4 and clears `>= 4`, with it the ratio straddles 4. A third workload,
    // `lone`, is a group of its own at each jitter, judged by a check that passes.
    let text = BASE.replace("repeats = 5", "repeats = 5\nreruns = 1").replace("jitter = 0.05", "jitter = [0.0, 0.05]")
        + "\n[[phase.workload]]\nid = \"lone\"\nkernel = \"mock\"\n[phase.workload.params]\ntime_ms = 1.0\njitter = [0.0, 0.05]\n";
    let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let text = with_checks(
        &text,
        &[
            ("straddles", "expr = \"slow.warm.median / fast.warm.median >= 4\""),
            ("budget", "expr = \"lone.warm.median <= 0.002\""),
        ],
    );
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let (results, verdicts, rounds) = with_reruns(phase);
    let statuses: Vec<(String, Status)> = verdicts.iter().map(|verdict| (verdict.name(), verdict.status)).collect();
    assert_eq!(
        statuses,
        [
            ("straddles[jitter=0]".to_owned(), Status::Pass),
            ("straddles[jitter=0.05]".to_owned(), Status::Inconclusive),
            ("budget[jitter=0]".to_owned(), Status::Pass),
            ("budget[jitter=0.05]".to_owned(), Status::Pass),
        ]
    );
    assert_eq!(rounds, 2);
    // Neither the decided point of the same check nor the other check's point at the
    // same jitter is re-run.
    let samples: Vec<(String, usize)> = phase
        .runs
        .iter()
        .zip(&results)
        .map(|(run, result)| (run.name(), result.timed(phasegate::spec::Mode::Warm).count()))
        .collect();
    let expected = [
        ("slow[jitter=0]", 5),
        ("slow[jitter=0.05]", 10),
        ("fast[jitter=0]", 5),
        ("fast[jitter=0.05]", 10),
        ("lone[jitter=0]", 5),
        ("lone[jitter=0.05]", 5),
    ];
    assert_eq!(samples, expected.map(|(name, count)| (name.to_owned(), count)));
}

#[test]
fn cold_mode_times_setup_and_first_step() {
    let text = BASE
        .replace("time_ms = 4.0", "time_ms = 4.0\nsetup_ms = 10.0")
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\", \"warm\"]");
    let plan = expand(&text).unwrap();
    let (results, _) = run_plan(&plan, &Facts::default()).remove(0);
    let cold: Vec<f64> = results[0].timed(phasegate::spec::Mode::Cold).map(|sample| sample.seconds).collect();
    assert_eq!(cold.len(), 5);
    // Every cold sample is a fresh instance with jitter of its own.
    assert!(cold.iter().any(|&seconds| seconds != cold[0]), "{cold:?}");
    for seconds in cold {
        // 10 ms set-up plus the first step, 4 ms within 5% jitter.
        assert!((seconds - 0.014).abs() <= 0.0002 + 1e-12, "{seconds}");
    }
    let setup = results[0].timed(phasegate::spec::Mode::Cold).next().unwrap();
    assert_eq!(setup.metrics.iter().find(|(name, _)| name == "setup_s").unwrap().1, 0.010);
}

#[test]
fn calibration_measures_the_noise_floor_and_flags_tight_thresholds() {
    use phasegate::spec::{Calibration, CalibrationMode};
    // Real busy-waiting, so the A/A pairs carry this machine's noise.
    let spinning = BASE
        .replace("time_ms = 4.0", "time_ms = 0.4\nspin = true")
        .replace("time_ms = 1.0", "time_ms = 0.2\nspin = true");
    let spinning = with_checks(&spinning, &[("tight", "expr = \"slow.warm.median / fast.warm.median >= 2\"")]);
    let spinning = expand(&spinning).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let options = phasegate::execute::ExecutionOptions {
        scratch_root: scratch.path().to_owned(),
        keep_all_outputs: false,
        calibration: false,
    };
    let calibration = Calibration { mode: CalibrationMode::Fail, repeats: 6 };
    let floors = phasegate::run::calibrate(&spinning.phases[0], &options, &calibration);
    assert_eq!(floors.len(), 1, "one reference run, one quantity");
    let floor = floors.values().next().unwrap().clone().unwrap();
    // Its size is this machine's noise under the load of the other tests (0.7 seen on
    // a busy 2-core machine), so only its sanity is asserted here.
    assert!(floor > 0.0 && floor.is_finite(), "A/A noise floor {floor}");
    // The floors' effect on verdicts, with seeded mock timings whose check passes
    // clearly (ratio about 4 against 3) and floors set from its margin: a margin
    // inside the floor fails in `fail` mode and is only noted in `warn` mode.
    let text = with_checks(BASE, &[("tight", "expr = \"slow.warm.median / fast.warm.median >= 3\"")]);
    let text = text.replacen("kernel = \"mock\"\nreference", "kernel = \"mock\"\nseed = 99\nreference", 1);
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let (_, mut verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    assert_eq!(verdicts[0].status, Status::Pass, "{:?}", verdicts[0]);
    let margin = verdicts[0].measured.as_ref().unwrap().margin.unwrap();
    assert!(margin > 0.2, "margin {margin}");
    let narrow: phasegate::run::Floors = floors.keys().map(|key| (key.clone(), Ok(margin.abs() - 0.01))).collect();
    let mut outside = verdicts.clone();
    phasegate::run::apply_noise_floors(phase, &mut outside, &narrow, CalibrationMode::Fail);
    assert_eq!(outside[0].status, Status::Pass, "a margin outside the floor stands");
    let wide: phasegate::run::Floors = floors.keys().map(|key| (key.clone(), Ok(margin.abs() + 0.01))).collect();
    let mut warned = verdicts.clone();
    phasegate::run::apply_noise_floors(phase, &mut warned, &wide, CalibrationMode::Warn);
    assert_eq!(warned[0].status, verdicts[0].status);
    assert!(warned[0].reason.as_ref().unwrap().contains("inside this machine's A/A noise floor"));
    let earned = verdicts.clone();
    phasegate::run::apply_noise_floors(phase, &mut verdicts, &wide, CalibrationMode::Fail);
    assert_eq!(verdicts[0].status, Status::Fail);
    assert_eq!(verdicts[0].noise_floor, Some(margin.abs() + 0.01));
    // A waiver covers the result the floor gives: waived, the check is an xfail.
    let mut waived = earned;
    waived[0].waiver = Some(phasegate::spec::Xfail { reason: "known".into(), until: "2030-01-01".into() });
    phasegate::run::settle(phase, &mut waived, &wide, CalibrationMode::Fail, &Facts::default());
    assert_eq!(waived[0].status, Status::Xfail);
    let reason = waived[0].reason.as_deref().unwrap();
    assert!(reason.starts_with("waived until 2030-01-01: known; the margin "), "{reason}");
    // In `warn` mode the check passes, waived: an xpass that keeps the floor's note.
    waived[0].status = Status::Pass;
    waived[0].reason = None;
    phasegate::run::settle(phase, &mut waived, &wide, CalibrationMode::Warn, &Facts::default());
    assert_eq!(waived[0].status, Status::Xpass);
    let reason = waived[0].reason.as_deref().unwrap();
    assert!(reason.contains("tighten the check or drop the waiver; the margin "), "{reason}");
}

/// A gate's references take part in the check's points: a verdict per value of an
/// axis only the gate's workload varies, one when the gate selects its run.
#[test]
fn a_gate_over_an_axis_gives_a_verdict_per_value() {
    let text = BASE.replacen("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]", 1);
    for (gate, labels) in [("fast", vec!["size=8", "size=16"]), ("fast[size=8]", vec![""])] {
        let check = format!("expr = \"slow.warm.median <= 1\"\napplies_if = \"{gate}.warm.median > 0\"");
        let verdicts = verdicts(&with_checks(&text, &[("gated", &check)]), &Facts::default());
        let points: Vec<&str> = verdicts.iter().map(|verdict| verdict.point.as_str()).collect();
        assert_eq!(points, labels, "{gate}");
        assert!(verdicts.iter().all(|verdict| verdict.status == Status::Pass), "{verdicts:?}");
    }
}

/// A ratio of partners is paired only as a sub-expression of its own: a factor or a
/// sign written before its numerator makes two medians of it, as the grammar reads it.
#[test]
fn a_ratio_is_paired_as_a_sub_expression_of_its_own() {
    for (expr, paired) in [
        ("slow.warm.median / fast.warm.median * 2 >= 2", true),
        ("2 * (slow.warm.median / fast.warm.median) >= 2", true),
        ("-(slow.warm.median / fast.warm.median) <= -1", true),
        ("2 * slow.warm.median / fast.warm.median >= 2", false),
        ("-slow.warm.median / fast.warm.median <= -1", false),
    ] {
        let text = with_checks(BASE, &[("speed", &format!("expr = \"{expr}\""))]);
        let verdict = verdicts(&text, &Facts::default()).remove(0);
        let terms: Vec<bool> = verdict.terms().iter().map(|term| term.paired).collect();
        let expected = if paired { vec![true] } else { vec![false, false] };
        assert_eq!(terms, expected, "{expr}: {verdict:?}");
    }
}

/// The A/A twins of a seeded mock draw noise apart, as two instances on a machine see
/// different noise: its floor is not 0, and the same in every calibration.
#[test]
fn a_seeded_mock_calibrates_to_the_same_floor_every_time() {
    use phasegate::spec::{Calibration, CalibrationMode};
    let text = with_checks(BASE, &[("speed", "expr = \"slow.warm.median / fast.warm.median >= 2\"")]);
    let plan = expand(&text).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    let calibration = Calibration { mode: CalibrationMode::Fail, repeats: 10 };
    let floor = || {
        let floors = phasegate::run::calibrate(&plan.phases[0], &options, &calibration);
        assert_eq!(floors.len(), 1, "one reference run, one quantity");
        floors.into_values().next().unwrap().unwrap()
    };
    let first = floor();
    // Uniform noise of ±5% on each side: the median A/A ratio's interval reaches a few
    // percent from 1.
    assert!(first > 0.001 && first < 0.1, "A/A noise floor {first}");
    assert_eq!(floor().to_bits(), first.to_bits());
}

/// A calibration whose instance fails measures no floor: no floor from the pairs before
/// the failure. The check says so, and in `fail` mode is not measured.
#[test]
fn a_failed_calibration_gives_no_floor_and_says_so() {
    use phasegate::spec::{Calibration, CalibrationMode};
    // `fast` fails at its 8th sample: after its own 5, within the calibration's 10.
    let text = BASE.replace("time_ms = 1.0", "time_ms = 1.0\nfail_at = 8");
    let text = with_checks(&text, &[("speed", "expr = \"slow.warm.median / fast.warm.median >= 2\"")]);
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    let floors = phasegate::run::calibrate(phase, &options, &Calibration { mode: CalibrationMode::Fail, repeats: 10 });
    let [Err(reason)] = floors.values().collect::<Vec<_>>()[..] else { panic!("{floors:?}") };
    assert!(
        reason.starts_with("the A/A calibration of `fast` failed (step failed: mock failure at sample "),
        "{reason}"
    );
    assert!(reason.ends_with("): no noise floor"), "{reason}");
    let (_, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    assert_eq!(verdicts[0].status, Status::Pass);
    let mut warned = verdicts.clone();
    phasegate::run::apply_noise_floors(phase, &mut warned, &floors, CalibrationMode::Warn);
    assert_eq!((warned[0].status, warned[0].reason.as_ref()), (Status::Pass, Some(reason)));
    let mut failed = verdicts.clone();
    phasegate::run::apply_noise_floors(phase, &mut failed, &floors, CalibrationMode::Fail);
    assert_eq!((failed[0].status, failed[0].noise_floor), (Status::NotMeasured, None));
    // A failure stands: no floor could have made it pass.
    let mut failing = verdicts;
    failing[0].status = Status::Fail;
    phasegate::run::apply_noise_floors(phase, &mut failing, &floors, CalibrationMode::Fail);
    assert_eq!(failing[0].status, Status::Fail);
}

#[test]
fn parity_compares_runs_of_one_workload_told_apart_by_selectors() {
    let text = BASE.replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]\nperturb = [0.0, 1e-3]");
    let parity = |max_abs: &str| {
        format!(
            "parity = {{ of = \"slow[perturb=0.001]\", against = \"slow[perturb=0]\", output = \"values\", max_abs = {max_abs} }}"
        )
    };
    let text = with_checks(&text, &[("shifted", &parity("1e-6")), ("within", &parity("2e-3"))]);
    let verdicts = verdicts(&text, &Facts::default());
    // One verdict per value of the axis the selectors leave free.
    for size in [8, 16] {
        let shifted = verdicts.iter().find(|verdict| verdict.name() == format!("shifted[size={size}]")).unwrap();
        assert_eq!(shifted.status, Status::Fail);
        let figures = shifted.parity.as_ref().unwrap();
        assert!((figures.max_abs_diff.unwrap() - 1e-3).abs() < 1e-12, "{figures:?}");
        assert_eq!((figures.of.as_str(), figures.against.as_str()), ("slow[perturb=0.001]", "slow[perturb=0]"));
        assert_eq!(status_of(&verdicts, &format!("within[size={size}]")), Status::Pass);
    }
    assert_eq!(verdicts.len(), 4);
}

#[test]
fn partners_with_different_warm_ups_and_repeats_take_turns_while_both_have_steps_left() {
    let text = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nwarmup = 1\nrepeats = 2")
        .replace("id = \"fast\"", "id = \"fast\"\nwarmup = 2\nrepeats = 3");
    let plan = expand(&text).unwrap();
    assert_eq!(
        step_labels(&plan.phases[0]),
        ["slow warm-up 0", "fast warm-up 0", "fast warm-up 1", "slow 0", "fast 0", "slow 1", "fast 1", "fast 2",]
    );
}

#[test]
fn a_sample_longer_than_the_timeout_fails_its_run_in_either_mode() {
    // Mock times are reported, not spent. A warm sample of 2 s against a timeout of 1 s;
    // a cold sample of 0.6 s set-up and 0.6 s step, whose set-up counts.
    let text = BASE
        .replace("repeats = 5", "repeats = 3\nwarmup = 0\ntimeout = 1.0")
        .replace("time_ms = 4.0\njitter = 0.05", "time_ms = 600.0\nsetup_ms = 600.0")
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\"]")
        .replace("time_ms = 1.0\njitter = 0.05", "time_ms = 2000.0")
        .replace("reference = \"slow\"\n", "");
    let plan = expand(&text).unwrap();
    let (results, _) = run_plan(&plan, &Facts::default()).remove(0);
    for (result, mode, seconds) in [(&results[0], "cold", "1.200"), (&results[1], "warm", "2.000")] {
        let expected = format!("a {mode} sample took {seconds} s, more than the timeout of 1 s");
        assert_eq!(result.status, RunStatus::Failed(expected));
        // Sampling stops at the first sample past the timeout.
        assert_eq!(result.samples.len(), 1, "{mode}: {:?}", result.samples);
    }
}

#[test]
fn runs_measured_only_cold_keep_their_outputs_for_parity() {
    let text = BASE
        .replace("repeats = 5", "repeats = 2\nmodes = [\"cold\"]")
        .replace("time_ms = 1.0", "time_ms = 1.0\nperturb = 1e-3");
    let text = with_checks(
        &text,
        &[("same", "parity = { of = \"fast\", against = \"slow\", output = \"values\", max_abs = 1e-6 }")],
    );
    let plan = expand(&text).unwrap();
    let (results, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    assert!(results.iter().all(|result| result.outputs.len() == 1), "{:?}", results[0].outputs);
    assert_eq!(status_of(&verdicts, "same"), Status::Fail);
    let figures = verdicts[0].parity.as_ref().unwrap();
    assert!((figures.max_abs_diff.unwrap() - 1e-3).abs() < 1e-12, "{figures:?}");
}

#[test]
fn partners_get_scratch_directories_of_their_own_removed_after_the_group() {
    // Each command runs in a fresh directory of its run's scratch directory and fails
    // when its partner's mark is there.
    let command = |id: &str, other: &str, reference: &str| {
        format!(
            "\n[[phase.workload]]\nid = \"{id}\"\nkernel = \"command\"\n{reference}[phase.workload.params]\n\
             program = \"test ! -e {other}.mark && touch {id}.mark\"\nshell = true\nworkdir = \"fresh\"\n"
        )
    };
    let text = format!(
        "[experiment]\nname = \"demo\"\nseed = 7\n\n[defaults]\nrepeats = 2\nmodes = [\"cold\", \"warm\"]\n\n[[phase]]\nid = \"a\"\n{}{}",
        command("one", "two", ""),
        command("two", "one", "reference = \"one\"\n"),
    );
    let plan = expand(&text).unwrap();
    assert_eq!(plan.phases[0].groups, [vec![0, 1]], "the two runs are interleaved");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("scratch");
    let options = ExecutionOptions { scratch_root: root.clone(), keep_all_outputs: false, calibration: false };
    let results = phasegate::execute::execute_phase(&plan.phases[0], &options, &phasegate::execute::Silent);
    for result in &results {
        assert_eq!(result.status, RunStatus::Completed, "{:?}", result.status);
        assert_eq!(result.samples.len(), 5, "2 cold, 1 warm-up, 2 warm");
    }
    assert!(!root.join("a").exists(), "the phase's scratch directories are removed");
}

#[test]
fn each_run_executes_with_its_thread_count() {
    // The `tree` kernel reports the thread count it was given; the `io` kernel's stall
    // bound is `D + t_single` on one worker of the pool and `max(D + t_single / chunks,
    // t_single)` on more (16 chunks here, and a stall D far above t_single).
    let text = "[experiment]\nname = \"demo\"\nseed = 7\n\n[defaults]\nrepeats = 1\nwarmup = 0\nthreads = [1, 2]\n\n\
                [[phase]]\nid = \"a\"\n\n[[phase.workload]]\nid = \"tree\"\nkernel = \"tree\"\n[phase.workload.params]\n\
                points = 64\ndimension = 2\nqueries = 4\nk = 2\nverify = false\n\n\
                [[phase.workload]]\nid = \"sched\"\nkernel = \"io\"\n[phase.workload.params]\nfamily = \"sched\"\n\
                size = 65536\nchunk = 4096\nscheduler = \"static\"\ndelay = \"stall\"\nstall_ms = 20.0\n";
    let plan = expand(text).unwrap();
    let phase = &plan.phases[0];
    let (results, _) = run_plan(&plan, &Facts::default()).remove(0);
    assert_eq!(results.len(), 4);
    for (run, result) in phase.runs.iter().zip(&results) {
        assert_eq!(result.status, RunStatus::Completed, "{}", run.name());
        let sample = &result.samples[0];
        if run.workload == "tree" {
            let event = sample.events.iter().find(|event| event.kind == "run").expect("a run event");
            assert_eq!(event.field("threads"), Some(&phasegate::kernel::Value::from(run.threads)), "{}", run.name());
            continue;
        }
        let metric = |name: &str| sample.metrics.iter().find(|(metric, _)| metric == name).unwrap().1;
        let (stall, t_single, bound) = (metric("stall_s"), metric("t_single_s"), metric("bound_s"));
        let expected = if run.threads == 1 { stall + t_single } else { (stall + t_single / 16.0).max(t_single) };
        assert!((bound - expected).abs() <= 1e-6 * expected, "{}: bound {bound} s, not {expected} s", run.name());
    }
}

/// A condition that is not a finite number (a zero time under a division of runs that
/// are not partners, so of their medians) fails and says why.
#[test]
fn a_condition_that_is_not_finite_fails_with_its_reason() {
    let text = with_checks(
        &BASE.replace("time_ms = 1.0", "time_ms = 0.0").replace("reference = \"slow\"\n", ""),
        &[("speedup", "expr = \"slow.warm.median / fast.warm.median >= 3\"")],
    );
    let verdicts = verdicts(&text, &Facts::default());
    let speedup = verdict_of(&verdicts, "speedup");
    assert_eq!(speedup.status, Status::Fail);
    assert_eq!(
        speedup.reason.as_deref(),
        Some(
            "`slow.warm.median / fast.warm.median >= 3` is not a finite number (inf): a term under a division is \
             zero, or a term is not finite"
        )
    );
}

/// A threshold that is not a finite number decides nothing: a constant one is refused
/// when the spec loads, and one computed from medians (here a division by a zero time)
/// fails the check and says why, where `<= inf` would have passed whatever was measured.
#[test]
fn a_threshold_that_is_not_finite_fails_with_its_reason() {
    let text = with_checks(
        &BASE.replace("time_ms = 1.0", "time_ms = 0.0").replace("reference = \"slow\"\n", ""),
        &[("bounded", "expr = \"slow.warm.median <= slow.warm.median / fast.warm.median\"")],
    );
    let verdicts = verdicts(&text, &Facts::default());
    let bounded = verdict_of(&verdicts, "bounded");
    assert_eq!(bounded.status, Status::Fail);
    assert_eq!(
        bounded.reason.as_deref(),
        Some(
            "the threshold of `slow.warm.median <= slow.warm.median / fast.warm.median` is not a finite number \
             (inf), so it decides nothing"
        )
    );
}

/// Zero times under a paired division leave a check not measured, alone or as a term of
/// medians, although a median of the pairs' ratios would stay finite: an order
/// statistic of the other pairs would hide them.
#[test]
fn zero_times_under_a_paired_division_leave_a_check_not_measured() {
    // Samples of about 1 ns, give or take 99%: some round to 0.
    let text = BASE.replace("time_ms = 1.0\njitter = 0.05", "time_ms = 0.000001\njitter = 0.99");
    let checks = [
        ("paired", "expr = \"slow.warm.median / fast.warm.median >= 2\""),
        ("term", "expr = \"slow.warm.median / fast.warm.median - slow.warm.median >= 2\""),
        ("product", "expr = \"fast.warm.median * (slow.warm.median / fast.warm.median) >= 0.0005\""),
    ];
    let plan = expand(&with_checks(&text, &checks)).unwrap();
    let (results, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    let fast = results.iter().find(|result| result.name == "fast").unwrap();
    let zeros = fast.samples.iter().filter(|sample| !sample.warmup && sample.seconds == 0.0).count();
    assert!(zeros > 0 && zeros < fast.samples.len() / 2, "{zeros} zero samples of {}", fast.samples.len());
    for check in ["paired", "term", "product"] {
        let verdict = verdict_of(&verdicts, check);
        let expected = format!(
            "`slow.warm.time.median / fast.warm.time.median` is not a finite number in {zeros} of 5 pairs: a sample \
             of `fast` is zero"
        );
        assert_eq!(
            (verdict.status, verdict.reason.as_deref()),
            (Status::NotMeasured, Some(expected.as_str())),
            "{check}"
        );
    }
}

/// The set-up time the harness records for cold samples can be checked, in cold mode.
#[test]
fn checks_read_the_set_up_time_of_cold_samples() {
    let text = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\"]")
        .replace("time_ms = 4.0", "time_ms = 4.0\nsetup_ms = 2.0");
    let checks = [
        ("setup", "expr = \"slow.cold.setup_s.median >= 0.0019\""),
        ("setup_small", "expr = \"slow.cold.setup_s.median <= 0.0021\""),
    ];
    let verdicts = verdicts(&with_checks(&text, &checks), &Facts::default());
    assert_eq!((status_of(&verdicts, "setup"), status_of(&verdicts, "setup_small")), (Status::Pass, Status::Pass));
    let error =
        crate::support::spec_error(&with_checks(&text, &[("warm", "expr = \"fast.warm.setup_s.median >= 0\"")]));
    assert!(error.contains("`setup_s` is the set-up time of cold samples: write `fast.cold.setup_s`"), "{error}");
}

/// A check not measured because a run failed names that run, point and all.
#[test]
fn a_failed_run_is_named_with_its_point() {
    let text = BASE
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]\nfail_at = 3")
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]");
    let text = with_checks(&text, &[("speed", "expr = \"slow.warm.median / fast.warm.median >= 3\"")]);
    let verdicts = verdicts(&text, &Facts::default());
    let speed = verdict_of(&verdicts, "speed[size=16]");
    assert_eq!(speed.status, Status::NotMeasured);
    assert!(speed.reason.as_deref().unwrap().starts_with("run `fast[size=16]` failed: "), "{:?}", speed.reason);
}
