//! Report rendering from a fixed result: the mock kernel's timings are deterministic,
//! and the environment and dates are fixed here, so the Markdown is snapshot-tested
//! whole and the JSON must round-trip.

use std::collections::BTreeMap;

use phasegate::env::Environment;
use phasegate::report::{self, PhaseReport, markdown};
use phasegate::verdict::Facts;

use crate::support::{BASE, expand, run_plan};

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

fn fixed_report() -> PhaseReport {
    let text = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\", \"warm\"]")
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]")
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]");
    // Less jitter for `fast` (the seed, and so the outputs, stay shared), so the pairs'
    // ratios vary and the report shows a real interval of them.
    let text =
        text.replace("time_ms = 1.0\nsize = [8, 16]\njitter = 0.05", "time_ms = 1.0\nsize = [8, 16]\njitter = 0.02");
    assert!(text.contains("jitter = 0.02"));
    let text = format!(
        "{text}\n[[phase.check]]\nid = \"speedup\"\nexpr = \"slow.warm.median / fast.warm.median >= 3\"\nparity = {{ of = \"fast\", against = \"slow\", output = \"values\", exact = true }}\nrationale = \"fast is at least 3x slow\"\n\n[[phase.check]]\nid = \"budget\"\nexpr = \"fast[size=8].warm.median <= 0.0009\"\nrationale = \"fast stays under 0.9 ms\"\n\n[[phase.check]]\nid = \"steady\"\nexpr = \"slow[size=16].warm.median / fast[size=16].warm.median / (slow[size=8].warm.median / fast[size=8].warm.median) <= 1.5\"\nrationale = \"the speed-up does not depend on the size\"\n"
    );
    let plan = expand(&text).unwrap();
    let (results, verdicts) = run_plan(&plan, &Facts::default()).remove(0);
    let environment = fixed_environment();
    let context = report::Context {
        spec: &plan.spec,
        environment: &environment,
        command: "cargo xtask run spec.toml".into(),
        started: "2026-01-01T00:00:00Z".into(),
        duration_s: 1.5,
        rounds: 1,
        report_dir: "reports/demo/2026-01-01T000000Z-testhost".into(),
    };
    report::build(&plan.phases[0], &results, verdicts, &context)
}

#[test]
fn markdown_report() {
    let report = fixed_report();
    let charts = report::charts::render(&report);
    insta::assert_snapshot!("report_md", markdown::render(&report, &charts));
}

#[test]
fn charts_of_times_and_checks() {
    let report = fixed_report();
    let charts = report::charts::render(&report);
    let files: Vec<&str> = charts.iter().map(|chart| chart.file.as_str()).collect();
    assert_eq!(files, ["time_size.svg", "check_speedup.svg"]);
    for chart in &charts {
        assert!(chart.svg.starts_with("<svg") && chart.svg.trim_end().ends_with("</svg>"), "{}", chart.file);
    }
    assert!(charts[0].svg.contains("\nslow\n") && charts[0].svg.contains("\nfast\n"), "the legend names the workloads");
    assert!(
        charts[1].svg.contains("\nsize=8\n") && charts[1].svg.contains("\nsize=16\n"),
        "the bars are labelled by point"
    );
    assert_eq!(report::charts::render(&report), charts, "deterministic");
}

/// Draws the charts on a thread, so an axis plotters cannot lay out fails the test
/// instead of hanging it.
fn charts_in_time(report: &PhaseReport) -> Vec<String> {
    let report = report.clone();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(report::charts::render(&report)));
    let charts =
        receiver.recv_timeout(std::time::Duration::from_secs(60)).expect("the charts were drawn within a minute");
    charts.into_iter().map(|chart| chart.file).collect()
}

#[test]
fn charts_leave_out_what_has_no_finite_scale() {
    let mut report = fixed_report();
    // A zero time under a ratio makes it infinite; the other point still scales the chart.
    let measured = report.verdicts[0].measured.as_mut().unwrap();
    measured.observed = f64::INFINITY;
    measured.interval = Some((f64::INFINITY, f64::INFINITY));
    assert_eq!(charts_in_time(&report), ["time_size.svg", "check_speedup.svg"]);
    // With no finite ratio and no finite time left, neither chart has a scale.
    for verdict in report.verdicts.iter_mut().filter(|verdict| verdict.check == "speedup") {
        let measured = verdict.measured.as_mut().unwrap();
        measured.observed = f64::INFINITY;
        measured.interval = Some((f64::INFINITY, f64::INFINITY));
    }
    for run in &mut report.runs {
        for time in run.summaries.values_mut().filter_map(|quantities| quantities.get_mut("time")) {
            (time.median, time.ci_low, time.ci_high) = (f64::NAN, f64::NAN, f64::INFINITY);
        }
    }
    assert!(charts_in_time(&report).is_empty());
}

#[test]
fn summary_for_pull_requests() {
    insta::assert_snapshot!("summary_md", markdown::render_summary(&[fixed_report()]));
}

#[test]
fn json_report_round_trips() {
    let report = fixed_report();
    let json = serde_json::to_string_pretty(&report).unwrap();
    let back: PhaseReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.schema_version, report::SCHEMA_VERSION);
    // Raw samples are kept, warm-ups included.
    let slow = &back.runs[0];
    assert_eq!(slow.samples.len(), 5 + 1 + 5);
    assert!(slow.samples.iter().any(|sample| sample.warmup));
}

#[test]
fn non_finite_values_round_trip_through_report_json() {
    let mut report = fixed_report();
    // An infinite ratio (a zero time) and NaN statistics, as a broken run can give.
    let measured = report.verdicts[0].measured.as_mut().unwrap();
    measured.observed = f64::INFINITY;
    measured.margin = Some(f64::INFINITY);
    measured.interval = Some((f64::NAN, f64::INFINITY));
    report.verdicts[0].parity.as_mut().unwrap().correlation = Some(f64::NAN);
    let time = report.runs[0].summaries.values_mut().next().unwrap().get_mut("time").unwrap();
    (time.median, time.min) = (f64::NAN, f64::NEG_INFINITY);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    let back = phasegate::run::read_report(&path).unwrap();
    let measured = back.verdicts[0].measured.as_ref().unwrap();
    assert_eq!((measured.observed, measured.margin), (f64::INFINITY, Some(f64::INFINITY)));
    let (low, high) = measured.interval.unwrap();
    assert!(low.is_nan() && high == f64::INFINITY, "{low} {high}");
    assert!(back.verdicts[0].parity.as_ref().unwrap().correlation.unwrap().is_nan());
    let time = back.runs[0].summaries.values().next().unwrap().get("time").unwrap();
    assert!(time.median.is_nan() && time.min == f64::NEG_INFINITY);
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&report).unwrap());
}

#[test]
fn junit_has_an_error_for_every_crashed_run() {
    let mut report = fixed_report();
    // A crash in a run that no check uses would otherwise leave no trace in the XML.
    report.runs[0].status = phasegate::execute::RunStatus::Failed("step failed: out of memory\ndetails".into());
    let junit = report::junit::render(&[report]);
    assert!(junit.contains(" tests=\"5\" failures=\"2\" errors=\"1\">"), "{junit}");
    assert!(junit.contains("<testsuite name=\"demo.a\" tests=\"5\" failures=\"2\" errors=\"1\""), "{junit}");
    assert!(
        junit.contains("<testcase classname=\"demo.a\" name=\"run slow[size=8]\">\n      <error type=\"crashed\" message=\"step failed: out of memory\">step failed: out of memory&#10;details</error>"),
        "{junit}"
    );
}

#[test]
fn the_header_warns_of_uncommitted_changes_and_debug_builds() {
    let mut report = fixed_report();
    let clean = markdown::render(&report, &[]);
    assert!(!clean.contains("uncommitted") && clean.contains("debug assertions off"), "{clean}");
    report.environment.git_dirty = Some(true);
    report.environment.debug_assertions = true;
    let warned = markdown::render(&report, &[]);
    assert!(warned.contains("| Revision | `0123456789ab-dirty` (uncommitted changes) |"), "{warned}");
    assert!(warned.contains("debug assertions **on** (figures are not measurements)"), "{warned}");
}
