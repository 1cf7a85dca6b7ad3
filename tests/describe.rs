//! The text of `list`, `run --dry-run` and the end of a run, from the fixed plan and
//! report of `support`.

use phasegate::baseline::{Earlier, Loaded};
use phasegate::describe;
use phasegate::plan::{Plan, Selection};
use phasegate::report::PhaseReport;
use phasegate::spec::Mode;

use crate::support::{expand, fixed_report, fixed_spec, load, troubled_report};

/// [`fixed_spec`] with `slow` at a third size the fixed report never measured, and
/// only `slow` selected: the `fast` runs are skipped.
fn slow_only() -> Plan {
    let text = fixed_spec().replacen("size = [8, 16]", "size = [8, 16, 32]", 1);
    let selection = Selection { phase: None, filter: Some("slow".into()) };
    phasegate::plan::expand(load(&text).unwrap(), selection, &|_| false).unwrap()
}

/// `reports` as the earlier reports a baseline or an estimate reads, newest first.
fn earlier(reports: &[PhaseReport]) -> Loaded {
    let reports = reports
        .iter()
        .enumerate()
        .map(|(index, report)| Earlier { label: format!("run {index}"), report: report.clone() })
        .collect();
    Loaded { label: "run 0".into(), reports }
}

#[test]
fn the_estimate_counts_every_planned_step_of_the_recorded_runs() {
    let report = fixed_report();
    let estimate = describe::estimate(&slow_only(), Some(&earlier(std::slice::from_ref(&report))));
    // `slow` has 5 cold samples and 1 + 5 warm steps at each recorded size; size 32 was
    // never measured, and the skipped `fast` runs take no time.
    let median = |point: &str, mode| {
        let run = report.runs.iter().find(|run| run.workload == "slow" && run.point == point).unwrap();
        run.summary(mode, "time").unwrap().median
    };
    let expected: f64 = ["size=8", "size=16"]
        .iter()
        .map(|point| 5.0 * median(point, Mode::Cold) + 6.0 * median(point, Mode::Warm))
        .sum();
    assert_eq!((estimate.known_runs, estimate.unknown_runs), (2, 1));
    assert!((estimate.seconds - expected).abs() < 1e-12 * expected, "{} s, not {expected} s", estimate.seconds);
    // Without a report nothing is known.
    let unknown = describe::estimate(&slow_only(), None);
    assert_eq!((unknown.seconds, unknown.known_runs, unknown.unknown_runs), (0.0, 0, 3));
    // A newer report that measured `slow[size=8]` with other parameters (as `--set`
    // gives) is passed over for the one that measured the same work; a run measured only
    // with other parameters is not known.
    let mut tuned = report.clone();
    for run in tuned.runs.iter_mut().filter(|run| run.workload == "slow") {
        run.params["time_ms"] = serde_json::json!(400.0);
    }
    let estimate = describe::estimate(&slow_only(), Some(&earlier(&[tuned.clone(), report.clone()])));
    assert_eq!((estimate.known_runs, estimate.unknown_runs), (2, 1));
    assert!((estimate.seconds - expected).abs() < 1e-12 * expected, "{} s, not {expected} s", estimate.seconds);
    let estimate = describe::estimate(&slow_only(), Some(&earlier(&[tuned])));
    assert_eq!((estimate.seconds, estimate.known_runs, estimate.unknown_runs), (0.0, 0, 3));
}

/// The A/A calibration's steps are counted and estimated: two instances of the
/// reference run of each paired-ratio check, each of `[calibration] repeats` steps after
/// its warm-up.
#[test]
fn the_estimate_counts_the_calibration_steps() {
    let text = fixed_spec().replace("[defaults]", "[calibration]\nmode = \"warn\"\nrepeats = 4\n\n[defaults]");
    let plan = phasegate::plan::expand(load(&text).unwrap(), Selection::default(), &|_| false).unwrap();
    // `speedup` and `steady` divide by `fast` at sizes 8 and 16: two references, each
    // calibrated once, 2 x (1 + 4) warm steps apiece.
    assert_eq!(plan.n_calibration_steps(), 2 * 2 * 5);
    let report = fixed_report();
    let without = describe::estimate(&expand(&fixed_spec()).unwrap(), Some(&earlier(std::slice::from_ref(&report))));
    let with = describe::estimate(&plan, Some(&earlier(std::slice::from_ref(&report))));
    let fast = |point: &str| {
        let run = report.runs.iter().find(|run| run.workload == "fast" && run.point == point).unwrap();
        run.summary(Mode::Warm, "time").unwrap().median
    };
    let calibration = 10.0 * (fast("size=8") + fast("size=16"));
    assert_eq!((with.known_runs, with.unknown_runs), (without.known_runs, 0));
    assert!((with.seconds - without.seconds - calibration).abs() < 1e-12 * with.seconds, "{with:?} {without:?}");
    assert!((with.calibration_seconds - calibration).abs() < 1e-12 * calibration, "{with:?}");
    assert_eq!(without.calibration_seconds, 0.0);
    // A reference no report measured with its parameters has no calibration time either.
    let mut other = report.clone();
    for run in other.runs.iter_mut().filter(|run| run.workload == "fast") {
        run.params["time_ms"] = serde_json::json!(7.0);
    }
    let unknown = describe::estimate(&plan, Some(&earlier(std::slice::from_ref(&other))));
    assert_eq!((unknown.unknown_runs, unknown.calibration_seconds), (2, 0.0));
    assert!(!describe::dry_run(&plan, &unknown).contains("calibration included"));
    let text = describe::dry_run(&plan, &with);
    assert!(
        text.contains(
            "4 runs, 34 timed steps (warm-up included), plus 20 steps of A/A calibration\nestimated time in steps: "
        ),
        "{text}"
    );
}

/// Re-runs are not in the estimate, but their most is said: every group a check reads
/// re-run `reruns` times.
#[test]
fn the_estimate_bounds_the_reruns() {
    let report = fixed_report();
    let once = describe::estimate(&expand(&fixed_spec()).unwrap(), Some(&earlier(std::slice::from_ref(&report))));
    assert_eq!((once.rerun_seconds, once.rerun_rounds), (0.0, 0));
    assert!(!describe::dry_run(&expand(&fixed_spec()).unwrap(), &once).contains("re-runs"));
    let text = fixed_spec().replace("[defaults]", "[defaults]\nreruns = 2");
    let plan = expand(&text).unwrap();
    let estimate = describe::estimate(&plan, Some(&earlier(std::slice::from_ref(&report))));
    // The checks read `slow` and `fast` at both sizes: every run may re-run twice.
    assert_eq!(estimate.seconds, once.seconds);
    assert!((estimate.rerun_seconds - 2.0 * once.seconds).abs() < 1e-12 * once.seconds, "{estimate:?}");
    assert_eq!(estimate.rerun_rounds, 2);
    let text = describe::dry_run(&plan, &estimate);
    assert!(text.contains("; re-runs of inconclusive checks may add up to "), "{text}");
    assert!(text.trim_end().ends_with("(2 rounds at most)"), "{text}");
}

#[test]
fn a_dry_run_lists_the_matrix_settings_and_estimate() {
    let plan = slow_only();
    let estimate = describe::estimate(&plan, Some(&earlier(&[fixed_report()])));
    insta::assert_snapshot!(describe::dry_run(&plan, &estimate), @r#"
    demo (spec.toml): Demo

    phase a: Phase A
      workload slow (kernel mock, 3 runs, cold+warm, 5 repeats)
        slow[size=8]  time_ms=4 size=8 jitter=0.05 threads=1
        slow[size=16]  time_ms=4 size=16 jitter=0.05 threads=1
        slow[size=32]  time_ms=4 size=32 jitter=0.05 threads=1
      workload fast (kernel mock, 2 runs, warm, 5 repeats, interleaved with slow)
        fast[size=8]  time_ms=1 size=8 jitter=0.02 threads=1  [excluded by --filter]
        fast[size=16]  time_ms=1 size=16 jitter=0.02 threads=1  [excluded by --filter]
      check speedup: slow.warm.median / fast.warm.median >= 3 and parity fast vs slow on `values` at [size=8], [size=16]
      check budget: fast[size=8].warm.median <= 0.0009
      check steady: slow[size=16].warm.median / fast[size=16].warm.median / (slow[size=8].warm.median / fast[size=8].warm.median) <= 1.5

    resolved settings (value, source):
      a/slow:
        warmup   = 1                (built-in default)
        repeats  = 5                (spec file)
        order    = "interleaved"    (built-in default)
        threads  = [1]              (built-in default)
        timeout  = 600              (built-in default)
        modes    = ["cold", "warm"] (spec file)
        reruns   = 0                (built-in default)
      a/fast:
        warmup   = 1                (built-in default)
        repeats  = 5                (spec file)
        order    = "interleaved"    (built-in default)
        threads  = [1]              (built-in default)
        timeout  = 600              (built-in default)
        modes    = ["warm"]         (built-in default)
        reruns   = 0                (built-in default)

    3 runs, 33 timed steps (warm-up included)
    estimated time in steps: 89.244 ms for 2 runs from earlier reports of the same work, plus 1 run never measured with these parameters (set-up of warm runs excluded)
    "#);
}

#[test]
fn the_outcome_names_every_check_that_did_not_pass_and_every_crash() {
    let outcome = phasegate::run::Outcome {
        run_dir: "reports/demo/2026-01-01T000000Z-testhost".into(),
        reports: vec![troubled_report()],
        exit: phasegate::run::Exit::Crashed,
    };
    insta::assert_snapshot!(describe::outcome(&outcome), @r"
    phase a (Phase A): CRASHED  [1 pass, 3 fail, 1 inconclusive, 0 other]  reports/demo/2026-01-01T000000Z-testhost/a/report.md
      FAIL           speedup[size=8] observed 4.024 >= 3.000
      pass           speedup[size=16] observed 4.024 >= 3.000
      FAIL           budget observed 0.001004 <= 9.000e-4
      inconclusive   steady observed 1.000 <= 1.500: the interval [0.9668, 1.034] holds the value with only 87.5% (below 90%): more repeats are needed to decide
      not measured   missing: `fast[size=16]` has no samples
      run fast[size=16] failed: step failed: out of memory
    reports: reports/demo/2026-01-01T000000Z-testhost
    exit 3: a workload crashed
    ");
}

/// A run that passes says "all checks pass" only when every check passed; otherwise
/// it says what the pass rests on: waivers, and checks that were not decided.
#[test]
fn an_outcome_says_what_its_pass_rests_on() {
    use phasegate::report::Totals;
    let cases = [
        (Totals { pass: 1, xfail: 1, ..Default::default() }, "no check failed (1 pass; 1 waived)"),
        (Totals { pass: 2, ..Default::default() }, "all checks pass"),
        (
            Totals { not_applicable: 1, new: 1, ..Default::default() },
            "no check failed (2 not applicable, skipped or new)",
        ),
        (
            Totals { pass: 1, skipped: 1, xpass: 1, ..Default::default() },
            "no check failed (1 pass; 1 waived; 1 not applicable, skipped or new)",
        ),
        (Totals::default(), "no checks"),
    ];
    for (totals, meaning) in cases {
        let mut report = fixed_report();
        report.totals = totals;
        let outcome = phasegate::run::Outcome {
            run_dir: "reports/demo/2026-01-01T000000Z-testhost".into(),
            reports: vec![report],
            exit: phasegate::run::Exit::Pass,
        };
        let text = describe::outcome(&outcome);
        assert!(text.ends_with(&format!("exit 0: {meaning}\n")), "{text}");
    }
}
