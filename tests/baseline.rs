//! Baseline comparisons of fixed reports (`support::fixed_report`): which runs, modes
//! and quantities are compared, the direction of a regression, the samples too few to
//! decide, untrusted environments and where a baseline is read from.

use phasegate::baseline::{self, BaselineSettings};
use phasegate::execute::RunStatus;
use phasegate::report::PhaseReport;
use phasegate::spec::Mode;
use phasegate::verdict::{Status, Verdict};

use crate::support::{expand, fixed_report, fixed_spec};

/// Compares `current` with `earlier` on `quantities` at the default tolerance of 5%.
fn compare(current: &PhaseReport, earlier: &PhaseReport, quantities: &[&str]) -> Vec<Verdict> {
    let settings = BaselineSettings {
        quantities: quantities.iter().map(|&quantity| quantity.to_owned()).collect(),
        ..BaselineSettings::default()
    };
    baseline::compare(current, earlier, &settings, "earlier")
}

/// `(point, status)` of every verdict, in order.
fn statuses(verdicts: &[Verdict]) -> Vec<(String, Status)> {
    verdicts.iter().map(|verdict| (verdict.point.clone(), verdict.status)).collect()
}

/// `report` with every timed (not warm-up) sample of `mode` in the runs whose name
/// starts with `runs` taking `factor` times as long, and its rates `1 / factor` as high.
fn scaled(report: &PhaseReport, runs: &str, mode: Mode, factor: f64) -> PhaseReport {
    let mut report = report.clone();
    for run in report.runs.iter_mut().filter(|run| run.name().starts_with(runs)) {
        for sample in run.samples.iter_mut().filter(|sample| sample.mode == mode && !sample.warmup) {
            sample.seconds *= factor;
            let rate = sample.metrics["items_per_s"].as_f64().unwrap();
            sample.metrics["items_per_s"] = serde_json::json!(rate / factor);
        }
    }
    report
}

/// A report compared with itself: every run and mode of the report, each with itself
/// (a ratio of exactly 1), whatever its matrix point; quantities without a better
/// direction are left out.
#[test]
fn every_run_and_mode_is_compared_with_the_same_run() {
    let report = fixed_report();
    let verdicts = compare(&report, &report, &["time", "sample_index"]);
    assert_eq!(
        statuses(&verdicts),
        [
            pass("slow[size=8] cold time"),
            pass("slow[size=8] warm time"),
            pass("slow[size=16] cold time"),
            pass("slow[size=16] warm time"),
            pass("fast[size=8] warm time"),
            pass("fast[size=16] warm time"),
        ]
    );
    for verdict in &verdicts {
        let measured = verdict.measured.as_ref().unwrap();
        assert_eq!((measured.observed, measured.threshold), (1.0, 1.05), "{}", verdict.name());
        assert_eq!(verdict.reason, None, "{}", verdict.name());
        // With no reason to show, the rationale names the baseline.
        assert_eq!(verdict.rationale, "no regression beyond 5% against the baseline earlier", "{}", verdict.name());
    }
    // The mock's times do not depend on the size: only the matrix point tells the runs
    // of a workload apart. Here only `fast[size=16]` was faster before.
    let earlier = scaled(&report, "fast[size=16]", Mode::Warm, 1.0 / 1.2);
    let verdicts = compare(&report, &earlier, &["time"]);
    assert_eq!(
        statuses(&verdicts[4..]),
        [pass("fast[size=8] warm time"), ("fast[size=16] warm time".to_owned(), Status::Fail)]
    );
}

/// Warm-up samples are kept in a report but are not measurements: however slow they
/// were, the change is that of the timed samples.
#[test]
fn warm_up_samples_are_left_out() {
    let report = fixed_report();
    let mut slow_warm_ups = report.clone();
    for sample in slow_warm_ups.runs.iter_mut().flat_map(|run| &mut run.samples).filter(|sample| sample.warmup) {
        sample.seconds *= 100.0;
    }
    for verdict in compare(&slow_warm_ups, &report, &["time"]) {
        assert_eq!(verdict.measured.unwrap().observed, 1.0, "{}", verdict.point);
    }
}

/// 20% slower is a regression of time and of the rate alike: time is better lower, the
/// rate higher, so the rate's regression ratio is baseline / current. 20% faster is none.
#[test]
fn a_regression_is_judged_in_the_quantity_s_better_direction() {
    let report = fixed_report();
    let slower = scaled(&report, "fast", Mode::Warm, 1.2);
    let verdicts = compare(&slower, &report, &["time", "items_per_s"]);
    let fast: Vec<Verdict> =
        verdicts.iter().filter(|verdict| verdict.point.starts_with("fast[size=8]")).cloned().collect();
    assert_eq!(
        statuses(&fast),
        [
            ("fast[size=8] warm time".to_owned(), Status::Fail),
            ("fast[size=8] warm items_per_s".to_owned(), Status::Fail)
        ]
    );
    for verdict in &fast {
        let observed = verdict.measured.as_ref().unwrap().observed;
        assert!((observed - 1.2).abs() < 1e-9, "{}: {observed}", verdict.name());
    }
    // `slow` did not change, and its cold samples are not its warm ones.
    assert!(
        verdicts
            .iter()
            .filter(|verdict| verdict.point.starts_with("slow"))
            .all(|verdict| verdict.status == Status::Pass),
        "{:?}",
        statuses(&verdicts)
    );
    let faster = scaled(&report, "fast", Mode::Warm, 1.0 / 1.2);
    for verdict in compare(&faster, &report, &["time", "items_per_s"]) {
        assert_eq!(verdict.status, Status::Pass, "{}", verdict.name());
    }
    // Only the cold samples of `slow` slowed down: its warm ones pass.
    let cold = scaled(&report, "slow", Mode::Cold, 1.2);
    let verdicts = compare(&cold, &report, &["time"]);
    assert_eq!(
        statuses(&verdicts)[..2],
        [("slow[size=8] cold time".to_owned(), Status::Fail), ("slow[size=8] warm time".to_owned(), Status::Pass)]
    );
}

/// The report's runs have 5 timed samples each, which cover the median with 1 - 2^-4 =
/// 93.75%, enough to decide; 4 reach only 87.5%, below 90%, whichever side has them.
#[test]
fn fewer_than_five_samples_on_either_side_decide_nothing() {
    let report = fixed_report();
    let mut fewer = report.clone();
    for run in &mut fewer.runs {
        let last = run.samples.iter().rposition(|sample| sample.mode == Mode::Warm && !sample.warmup).unwrap();
        run.samples.remove(last);
    }
    for (current, earlier) in [(&fewer, &report), (&report, &fewer)] {
        let verdicts = compare(current, earlier, &["time"]);
        for verdict in &verdicts {
            let expected = if verdict.point.contains("warm") { Status::Inconclusive } else { Status::Pass };
            assert_eq!(verdict.status, expected, "{}", verdict.name());
        }
        let warm = verdicts.iter().find(|verdict| verdict.point == "fast[size=8] warm time").unwrap();
        assert_eq!(warm.measured.as_ref().unwrap().coverage, Some(0.875));
        assert!(warm.reason.as_ref().unwrap().contains("4 samples on one side cover the median with only 87.5%"));
    }
}

/// Each field of the fingerprint that differs makes the comparison untrusted (not
/// applicable, whatever its figures say) and is named in the reason; fields outside
/// it (the host, the memory) do not.
#[test]
fn environments_that_differ_make_the_comparison_not_applicable() {
    let report = fixed_report();
    let mut elsewhere = report.clone();
    elsewhere.environment.hostname = "otherhost".into();
    elsewhere.environment.memory_bytes *= 2;
    assert!(compare(&report, &elsewhere, &["time"]).iter().all(|verdict| verdict.status == Status::Pass));
    type Change = fn(&mut PhaseReport);
    let changes: [(Change, &str); 5] = [
        (|report| report.environment.cpu_model = "Other CPU".into(), "CPU Other CPU vs Test CPU"),
        (|report| report.environment.cores = 4, "4 vs 2 cores"),
        (|report| report.environment.build_profile = "release".into(), "build release vs measure"),
        (|report| report.environment.debug_assertions = true, "build measure with debug assertions vs measure"),
        (|report| report.environment.rustc = "rustc 1.1.0".into(), "rustc 1.1.0 vs rustc 1.0.0"),
    ];
    for (change, difference) in changes {
        let mut current = report.clone();
        change(&mut current);
        for verdict in compare(&current, &report, &["time"]) {
            assert_eq!(verdict.status, Status::NotApplicable, "{difference}: {}", verdict.name());
            // The figures are still computed and shown.
            assert_eq!(verdict.measured.as_ref().unwrap().status, Status::Pass, "{difference}");
            let reason = verdict.reason.unwrap();
            assert!(
                reason.starts_with(&format!("not trusted, environments differ ({difference}); vs earlier: ")),
                "{reason}"
            );
        }
    }
}

/// `--baseline DIR` reads every `<phase>/report.json` of the directory, labelled with
/// the directory; `latest` reads each phase from the experiment's newest run that holds
/// it.
#[test]
fn a_baseline_is_read_from_a_directory_or_the_latest_run() {
    let project = tempfile::tempdir().unwrap();
    let experiment = project.path().join("reports/demo");
    let report = fixed_report();
    let write = |run: &str| {
        let path = experiment.join(run).join("a/report.json");
        phasegate::report::files::write_atomic(&path, &serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    };
    write("2026-01-01T000000Z-testhost");
    std::fs::create_dir_all(experiment.join("2026-01-02T000000Z-testhost")).unwrap();
    phasegate::report::files::update_latest(&experiment, &experiment.join("2026-01-02T000000Z-testhost")).unwrap();
    let dir = experiment.join("2026-01-01T000000Z-testhost");
    let plan = expand(&fixed_spec()).unwrap();
    let loaded = baseline::load(dir.to_str().unwrap(), &experiment, project.path(), &plan).unwrap();
    assert_eq!(loaded.label, dir.to_str().unwrap());
    assert_eq!(loaded.reports.len(), 1);
    assert_eq!(loaded.phase("a")[0].report, report);
    assert!(loaded.phase("b").is_empty());
    // The latest run holds no phase a: the earlier one that does is read.
    let loaded = baseline::load("latest", &experiment, project.path(), &plan).unwrap();
    assert_eq!(loaded.label, "reports/demo/2026-01-02T000000Z-testhost");
    let [earlier] = loaded.phase("a")[..] else { panic!("one report of phase a") };
    assert_eq!((earlier.label.as_str(), &earlier.report), ("reports/demo/2026-01-01T000000Z-testhost", &report));
}

/// What `--baseline latest` reads for [`fixed_spec`] after a run that wrote `first`
/// and then one that wrote `second`, in a temporary project (kept alive by the first
/// value).
fn latest_after(first: &PhaseReport, second: &PhaseReport) -> (tempfile::TempDir, baseline::Loaded) {
    let project = tempfile::tempdir().unwrap();
    let experiment = project.path().join("reports/demo");
    for (run, report) in [("2026-01-01T000000Z-testhost", first), ("2026-01-02T000000Z-testhost", second)] {
        let path = experiment.join(run).join("a/report.json");
        phasegate::report::files::write_atomic(&path, &serde_json::to_vec_pretty(report).unwrap()).unwrap();
        phasegate::report::files::update_latest(&experiment, &experiment.join(run)).unwrap();
    }
    let plan = expand(&fixed_spec()).unwrap();
    let loaded = baseline::load("latest", &experiment, project.path(), &plan).unwrap();
    // Both are kept: each is the newest to measure some run.
    let labels: Vec<&str> = loaded.phase("a").iter().map(|earlier| earlier.label.as_str()).collect();
    assert_eq!(labels, ["reports/demo/2026-01-02T000000Z-testhost", "reports/demo/2026-01-01T000000Z-testhost"]);
    (project, loaded)
}

fn pass(point: &str) -> (String, Status) {
    (point.to_owned(), Status::Pass)
}

fn fail(point: &str) -> (String, Status) {
    (point.to_owned(), Status::Fail)
}

/// The statuses of a comparison where every `slow` run regressed and `fast` did not.
fn slow_regressed() -> Vec<(String, Status)> {
    vec![
        fail("slow[size=8] cold time"),
        fail("slow[size=8] warm time"),
        fail("slow[size=16] cold time"),
        fail("slow[size=16] warm time"),
        pass("fast[size=8] warm time"),
        pass("fast[size=16] warm time"),
    ]
}

/// `latest` compares each run with the newest earlier report that measured it: after a
/// full run and a run of `fast` alone (`--filter`), `slow` is compared with the full
/// run and `fast` with the filtered one. A run that no report of the baseline measured
/// is said to be not compared; a run not measured now is not compared either.
#[test]
fn each_run_is_compared_with_the_newest_report_that_measured_it() {
    let full = fixed_report();
    let mut filtered = fixed_report();
    for run in filtered.runs.iter_mut().filter(|run| run.workload == "slow") {
        run.status = RunStatus::Skipped(phasegate::plan::FILTERED.into());
        run.samples.clear();
        run.summaries.clear();
    }
    filtered.invocation.filter = Some("fast".into());
    let (_project, loaded) = latest_after(&full, &filtered);
    // `slow` three times as slow as in the full run: a regression, found.
    let current = scaled(&scaled(&full, "slow", Mode::Warm, 3.0), "slow", Mode::Cold, 3.0);
    let verdicts = baseline::compare_earlier(&current, &loaded.phase("a"), &BaselineSettings::default());
    assert_eq!(statuses(&verdicts), slow_regressed());
    let vs = |verdict: &Verdict| verdict.reason.as_deref().unwrap_or_default().split(':').next().unwrap().to_owned();
    assert_eq!(vs(&verdicts[0]), "vs reports/demo/2026-01-01T000000Z-testhost");
    // Compared with the filtered run alone, `slow` has no counterpart: said, not left out.
    let verdicts = compare(&current, &filtered, &["time"]);
    let not_compared = |point: &str| (point.to_owned(), Status::NotApplicable);
    assert_eq!(
        statuses(&verdicts),
        [
            not_compared("slow[size=8] cold"),
            not_compared("slow[size=8] warm"),
            not_compared("slow[size=16] cold"),
            not_compared("slow[size=16] warm"),
            pass("fast[size=8] warm time"),
            pass("fast[size=16] warm time"),
        ]
    );
    assert_eq!(
        verdicts[0].reason.as_deref(),
        Some("not compared: no report of the baseline measured this run in cold mode")
    );
    // Compared the other way round, the runs `--filter` left out are not compared at all.
    assert_eq!(
        statuses(&compare(&filtered, &full, &["time"])),
        [pass("fast[size=8] warm time"), pass("fast[size=16] warm time")]
    );
}

/// A run is compared mode by mode: a newer report that measured `slow` only cold is
/// its counterpart in cold mode, and the older full run in warm mode; compared with the
/// cold-only report alone, its warm samples are said to be not compared.
#[test]
fn each_mode_is_compared_with_the_newest_report_that_measured_it() {
    let full = fixed_report();
    // The newer report measured `slow` cold only, three times as slow as the full run.
    let mut cold_only = scaled(&full, "slow", Mode::Cold, 3.0);
    for run in cold_only.runs.iter_mut().filter(|run| run.workload == "slow") {
        run.samples.retain(|sample| sample.mode == Mode::Cold);
        run.summaries.remove(&Mode::Warm);
    }
    let (_project, loaded) = latest_after(&full, &cold_only);
    // Now `slow` is three times as slow as the full run in both modes: a regression
    // warm, against the full run, and none cold, against the cold-only run.
    let current = scaled(&scaled(&full, "slow", Mode::Warm, 3.0), "slow", Mode::Cold, 3.0);
    let verdicts = baseline::compare_earlier(&current, &loaded.phase("a"), &BaselineSettings::default());
    let warm = verdicts.iter().find(|verdict| verdict.point == "slow[size=8] warm time").expect("a warm verdict");
    assert_eq!(warm.status, Status::Fail, "{warm:?}");
    assert!(warm.reason.as_deref().unwrap().starts_with("vs reports/demo/2026-01-01T000000Z-testhost"), "{warm:?}");
    let cold = verdicts.iter().find(|verdict| verdict.point == "slow[size=8] cold time").expect("a cold verdict");
    assert_eq!(cold.status, Status::Pass, "{cold:?}");
    let verdicts = compare(&current, &cold_only, &["time"]);
    let warm = verdicts.iter().find(|verdict| verdict.point == "slow[size=8] warm").expect("said, not left out");
    assert_eq!(warm.status, Status::NotApplicable);
    assert_eq!(warm.reason.as_deref(), Some("not compared: no report of the baseline measured this run in warm mode"));
}

/// `latest` compares each run with the newest report that measured the same work: after
/// a full run and a newer one where `slow` took other parameters (as `--set` or a
/// profile gives), `slow` is compared with the full run and `fast` with the newer one.
/// A run compared with one of other parameters, with no report of the same work to
/// prefer, is still judged, and its verdicts name what differs, passing or not.
#[test]
fn latest_prefers_the_newest_report_of_the_same_work() {
    let full = fixed_report();
    let mut tuned = scaled(&scaled(&full, "slow", Mode::Warm, 2.0), "slow", Mode::Cold, 2.0);
    for run in tuned.runs.iter_mut().filter(|run| run.workload == "slow") {
        let time_ms = run.params["time_ms"].as_f64().unwrap();
        run.params["time_ms"] = serde_json::json!(2.0 * time_ms);
        run.threads += 1;
        // A parameter one report lacks (as one a kernel has lost since) is not compared.
        run.params.insert("dropped_since".into(), serde_json::json!(true));
    }
    let (_project, loaded) = latest_after(&full, &tuned);
    // `slow` twice as slow as in the full run: a regression, found against the full run
    // (against the tuned run it would be no change at all). Its kernel has gained a
    // parameter since, which the earlier report lacks: not compared either.
    let mut current = scaled(&scaled(&full, "slow", Mode::Warm, 2.0), "slow", Mode::Cold, 2.0);
    for run in current.runs.iter_mut().filter(|run| run.workload == "slow") {
        run.params.insert("added_since".into(), serde_json::json!(true));
    }
    let verdicts = baseline::compare_earlier(&current, &loaded.phase("a"), &BaselineSettings::default());
    assert_eq!(statuses(&verdicts), slow_regressed());
    let reason = verdicts[0].reason.as_deref().unwrap();
    assert!(reason.starts_with("vs reports/demo/2026-01-01T000000Z-testhost: +100.0%"), "{reason}");
    assert!(!reason.contains("other parameters"), "{reason}");
    // With only the tuned run to compare with, `slow` is judged against it: unchanged,
    // a pass, whose reason says the parameters differed.
    let verdicts = compare(&current, &tuned, &["time"]);
    assert_eq!(
        statuses(&verdicts)[..4],
        [
            pass("slow[size=8] cold time"),
            pass("slow[size=8] warm time"),
            pass("slow[size=16] cold time"),
            pass("slow[size=16] warm time"),
        ]
    );
    let slow = full.runs.iter().find(|run| run.workload == "slow").unwrap();
    let time_ms = slow.params["time_ms"].as_f64().unwrap();
    let reason = verdicts[0].reason.as_deref().unwrap();
    let expected = format!(
        "its run had other parameters (threads {} vs {}; time_ms {} vs {})",
        slow.threads,
        slow.threads + 1,
        serde_json::json!(time_ms),
        serde_json::json!(2.0 * time_ms)
    );
    assert!(reason.ends_with(&expected), "{reason}");
    assert_eq!(verdicts[4].reason, None, "fast measured the same work");
}

/// `latest` looks back for a report of the same work only while it must: once every run
/// still looking has a fallback (a newer report of other parameters), an older report
/// it cannot read ends the search instead of failing the comparison. Without a
/// fallback, the unreadable report is an error, as it always was.
#[test]
fn an_unreadable_old_report_ends_the_search_once_every_run_has_a_fallback() {
    let project = tempfile::tempdir().unwrap();
    let experiment = project.path().join("reports/demo");
    let mut tuned = fixed_report();
    for run in tuned.runs.iter_mut().filter(|run| run.workload == "slow") {
        run.params["time_ms"] = serde_json::json!(5.0);
    }
    let mut future = serde_json::to_value(fixed_report()).unwrap();
    future["schema_version"] = serde_json::json!(99);
    let write = |run: &str, report: &serde_json::Value| {
        let path = experiment.join(run).join("a/report.json");
        phasegate::report::files::write_atomic(&path, &serde_json::to_vec_pretty(report).unwrap()).unwrap();
    };
    write("2026-01-01T000000Z-testhost", &future);
    write("2026-01-02T000000Z-testhost", &serde_json::to_value(&tuned).unwrap());
    phasegate::report::files::update_latest(&experiment, &experiment.join("2026-01-02T000000Z-testhost")).unwrap();
    let plan = expand(&fixed_spec()).unwrap();
    let loaded = baseline::load("latest", &experiment, project.path(), &plan).unwrap();
    let labels: Vec<&str> = loaded.phase("a").iter().map(|earlier| earlier.label.as_str()).collect();
    assert_eq!(labels, ["reports/demo/2026-01-02T000000Z-testhost"]);
    // A run the newer report did not measure at all has no fallback: the search goes on,
    // and the unreadable report stops it with an error.
    let mut partial = tuned;
    partial.runs.retain(|run| run.workload != "slow");
    write("2026-01-02T000000Z-testhost", &serde_json::to_value(&partial).unwrap());
    let error = format!("{:#}", baseline::load("latest", &experiment, project.path(), &plan).unwrap_err());
    assert!(error.contains("2026-01-01T000000Z-testhost/a/report.json"), "{error}");
}
