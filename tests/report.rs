//! Report rendering from a fixed result: the mock kernel's timings are deterministic,
//! and the environment and dates are fixed (`support::fixed_report`), so the Markdown
//! is snapshot-tested whole, the charts are drawn to scale and the JSON must
//! round-trip.

use phasegate::report::{self, PhaseReport, Totals, markdown};
use phasegate::spec::{Mode, Overrides};
use phasegate::verdict::{Method, ParityFigures, Status};

use crate::support::{BASE, fixed_report, report_of, troubled_report};

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

/// The summary's columns count as the end of a run and a living plan's region do (the
/// `describe` and `plans` tests show the same report's 1, 3, 1 and 0): a check that
/// could not be measured is a fail.
#[test]
fn the_summary_counts_a_check_not_measured_as_a_fail() {
    let summary = markdown::render_summary(&[troubled_report()]);
    assert!(summary.contains("| `a` Phase A | **CRASHED** | 1 | 3 | 1 | 0 |"), "{summary}");
}

/// A crashed run is named in the summary with its error, as stdout, report.md and the
/// JUnit file name it.
#[test]
fn the_summary_names_the_crashed_runs() {
    let summary = markdown::render_summary(&[troubled_report()]);
    assert!(
        summary.contains("| Crashed run | Error |\n|---|---|\n| `a/fast[size=16]` | step failed: out of memory |\n"),
        "{summary}"
    );
    assert!(!markdown::render_summary(&[fixed_report()]).contains("Crashed run"));
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

/// Every status in its JUnit element: not measured and inconclusive fail a gate as a
/// fail does, waived failures and checks not judged here are skipped, and the counts
/// of each suite add up to those of the whole file.
#[test]
fn junit_sorts_every_status_into_failures_skipped_and_passes() {
    use phasegate::verdict::Status;
    let with = |phase: &str, statuses: [Status; 4]| {
        let mut report = fixed_report();
        report.phase.id = phase.into();
        for (verdict, status) in report.verdicts.iter_mut().zip(statuses) {
            verdict.status = status;
        }
        report
    };
    let first = with("a", [Status::NotMeasured, Status::Xfail, Status::Skipped, Status::New]);
    let second = with("b", [Status::Inconclusive, Status::Pass, Status::NotApplicable, Status::Xpass]);
    let junit = report::junit::render(&[first, second]);
    assert!(junit.contains("<testsuites name=\"demo\" tests=\"8\" failures=\"2\" errors=\"0\">"), "{junit}");
    assert!(
        junit.contains("<testsuite name=\"demo.a\" tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\""),
        "{junit}"
    );
    assert!(
        junit.contains("<testsuite name=\"demo.b\" tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"1\""),
        "{junit}"
    );
    for (suite, name, element) in [
        ("a", "speedup[size=8]", "<failure type=\"not measured\" message=\"not measured: observed "),
        ("a", "speedup[size=16]", "<skipped message=\"xfail: observed "),
        ("a", "budget", "<skipped message=\"skipped: observed "),
        ("a", "steady", "<system-out>new snapshot: observed "),
        ("b", "speedup[size=8]", "<failure type=\"inconclusive\" message=\"inconclusive: observed "),
        ("b", "speedup[size=16]", "<system-out>pass: observed "),
        ("b", "budget", "<skipped message=\"not applicable: observed "),
        ("b", "steady", "<system-out>XPASS: observed "),
    ] {
        let testcase = format!("<testcase classname=\"demo.{suite}\" name=\"{name}\">\n      {element}");
        assert!(junit.contains(&testcase), "{testcase}\n{junit}");
    }
}

/// A machine of one core is said in the singular, in the report, the summary and a
/// living plan's region.
#[test]
fn one_core_is_said_in_the_singular() {
    let mut report = fixed_report();
    report.environment.cores = 1;
    let text = markdown::render(&report, &[]);
    assert!(text.contains("| Machine | Test CPU, 1 core, "), "{text}");
    let summary = markdown::render_summary(std::slice::from_ref(&report));
    assert!(summary.contains(" on Test CPU (1 core); "), "{summary}");
    let region = phasegate::living::render_region(&report, "reports/demo/latest/a/report.json");
    assert!(region.contains(", Test CPU (1 core), profile "), "{region}");
}

#[test]
fn the_report_warns_of_uncommitted_changes_and_debug_builds() {
    let mut report = fixed_report();
    let clean = markdown::render(&report, &[]);
    assert!(!clean.contains("uncommitted") && clean.contains("debug assertions off"), "{clean}");
    report.environment.git_dirty = Some(true);
    report.environment.debug_assertions = true;
    let warned = markdown::render(&report, &[]);
    assert!(warned.contains("| Revision | `0123456789ab-dirty` (uncommitted changes) |"), "{warned}");
    assert!(warned.contains("debug assertions **on** (figures are not measurements)"), "{warned}");
    // So does the revision the reproducing command is to run at.
    assert!(warned.contains("At revision `0123456789abcdef0123456789abcdef01234567` with uncommitted changes:"));
}

/// The header's verdict line for [`fixed_report`] with its four verdicts given
/// `statuses`.
fn check_header(statuses: [Status; 4], expect: &str) {
    let mut report = fixed_report();
    for (verdict, status) in report.verdicts.iter_mut().zip(statuses) {
        verdict.status = status;
    }
    report.totals = Totals::of(&report.verdicts, &report.runs);
    let markdown = markdown::render(&report, &[]);
    let line = markdown.lines().find(|line| line.starts_with("| Verdict |")).unwrap();
    assert_eq!(line, expect, "{statuses:?}");
}

/// A check not measured fails the phase; every other status is counted under its own
/// name, and only a failure or an undecided check keeps the phase from passing.
#[test]
fn the_header_names_the_phase_verdict_and_counts_every_status() {
    use Status::*;
    check_header([NotMeasured, Pass, Pass, Pass], "| Verdict | **FAIL** (3 pass, 1 not measured) |");
    check_header(
        [Pass, Fail, Inconclusive, NotMeasured],
        "| Verdict | **FAIL** (1 pass, 1 fail, 1 inconclusive, 1 not measured) |",
    );
    check_header([Xfail, Xfail, Xpass, Skipped], "| Verdict | **PASS** (0 pass, 1 skipped, 2 xfail, 1 xpass) |");
    check_header(
        [NotApplicable, NotApplicable, Skipped, New],
        "| Verdict | **PASS** (0 pass, 2 not applicable, 1 skipped, 1 new snapshot) |",
    );
    check_header(
        [New, New, Inconclusive, Pass],
        "| Verdict | **INCONCLUSIVE** (1 pass, 1 inconclusive, 2 new snapshots) |",
    );
}

/// Outputs that differ show their figures, a comparison with the stored snapshot says
/// so, and a check decided on point values says that too.
#[test]
fn checks_show_differing_outputs_snapshots_and_point_values() {
    let mut report = fixed_report();
    let differing = ParityFigures {
        of: "fast".into(),
        against: "slow".into(),
        output: "values".into(),
        n: 8,
        identical: false,
        max_abs_diff: Some(0.25),
        correlation: Some(0.987654321),
        sum_ratio_deviation: Some(-0.0125),
        allclose_violations: Some(3),
        failures: vec!["3 of 8 elements outside allclose(rtol=0.01, atol=0)".into()],
        status: Status::Fail,
    };
    report.verdicts[0].parity = Some(differing.clone());
    report.verdicts[0].status = Status::Fail;
    let snapshot = ParityFigures { against: "snapshot".into(), identical: true, status: Status::Pass, ..differing };
    report.verdicts[1].snapshot = Some(snapshot);
    let budget = report.verdicts[2].measured.as_mut().unwrap();
    (budget.method, budget.interval, budget.coverage) = (Method::Point, None, None);
    let markdown = markdown::render(&report, &[]);
    let lines: Vec<&str> =
        markdown.lines().filter(|line| line.starts_with("| `speedup") || line.starts_with("- `budget")).collect();
    insta::assert_snapshot!(lines.join("\n"), @r"
    | `speedup[size=8]` | **FAIL** | 4.024 (pairs min 3.919, max 4.054) | >= 3.000 | +34.1% | [3.919, 4.054] (93.8%) | **FAIL**: `fast` vs `slow` `values`, corr 0.9876543, sum ratio−1 -0.01250, max abs diff 0.2500, allclose violations 3 | fast is at least 3x slow |
    | `speedup[size=16]` | pass | 4.024 (pairs min 3.919, max 4.054) | >= 3.000 | +34.1% | [3.919, 4.054] (93.8%) | ok: `fast` vs `slow` `values`, identical<br>ok: `fast` vs its snapshot `values`, identical | fast is at least 3x slow |
    - `budget`: `fast[size=8].warm.median <= 0.0009` (point values)
    ");
    let budget = markdown.lines().find(|line| line.starts_with("| `budget`")).unwrap();
    assert!(budget.contains("| 0.001004 | <= 9.000e-4 | -11.6% | – | – |"), "{budget}");
}

/// The header counts every kind of verdict and crash, the results say which runs were
/// skipped and which crashed, and a crash's whole message follows.
#[test]
fn skipped_and_crashed_runs_in_the_report() {
    let markdown = markdown::render(&troubled_report(), &[]);
    assert!(
        markdown.contains("| Verdict | **CRASHED** (1 pass, 2 fail, 1 inconclusive, 1 not measured, 1 failed run) |"),
        "{markdown}"
    );
    let start = markdown.find("## Results").unwrap();
    let end = markdown.find("## Configuration").unwrap();
    insta::assert_snapshot!(&markdown[start..end], @r"
    ## Results

    Times per step. The CI of the median is distribution-free at 95% (with fewer than 6 samples it is [min, max], covering 1 - 2^(1-n)).

    ### `slow` (kernel `mock`)

    | size | mode | median | 95% CI of median | mean | stddev | min | max | MAD | n |
    |---|---|---|---|---|---|---|---|---|---|
    | 8 | cold | 4.076 ms | [3.873 ms, 4.197 ms] | 4.052 ms | 151.456 µs | 3.873 ms | 4.197 ms | 121.090 µs | 5 |
    | 8 | warm | 4.041 ms | [3.867 ms, 4.091 ms] | 4.005 ms | 96.476 µs | 3.867 ms | 4.091 ms | 50.193 µs | 5 |
    | 16 | – | skipped: NB_C_BIN is not set |  |  |  |  |  |  |  |

    | size | mode | items_per_s (median) | sample_index (median) | setup_s (median) |
    |---|---|---|---|---|
    | 8 | cold | 2.454e8 | 2.000 | 0 |
    | 8 | warm | 2.475e8 | 3.000 | – |

    ### `fast` (kernel `mock`)

    | size | mode | median | 95% CI of median | mean | stddev | min | max | MAD | n |
    |---|---|---|---|---|---|---|---|---|---|
    | 8 | warm | 1.004 ms | [986.720 µs, 1.009 ms] | 1.000 ms | 9.647 µs | 986.720 µs | 1.009 ms | 5.020 µs | 5 |
    | 16 | – | **failed**: step failed: out of memory |  |  |  |  |  |  |  |

    | size | mode | items_per_s (median) | sample_index (median) |
    |---|---|---|---|
    | 8 | warm | 9.960e8 | 3.000 |

    ## Failed runs

    ### `fast[size=16]`

    ```text
    step failed: out of memory
    details
    ```
    ");
}

/// The lines of `svg` that draw `element` with `style` (e.g. its colour), in order.
fn drawn<'a>(svg: &'a str, element: &str, style: &str) -> Vec<&'a str> {
    svg.lines().filter(|line| line.starts_with(&format!("<{element} ")) && line.contains(style)).collect()
}

/// The number of attribute `name` of an SVG element's line.
fn attribute(line: &str, name: &str) -> f64 {
    let start = line.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 3;
    line[start..][..line[start..].find('"').unwrap()].parse().unwrap()
}

/// The y pixels of the `points="x0,y0 x1,y1 "` of an SVG polyline's line.
fn polyline_ys(line: &str) -> Vec<f64> {
    let points = &line[line.find("points=\"").unwrap() + 8..];
    let points = &points[..points.find('"').unwrap()];
    points.split_whitespace().map(|point| point.split_once(',').unwrap().1.parse().unwrap()).collect()
}

/// Where `values[1]` lies between `values[0]` and `values[2]`, as a fraction.
fn fraction(values: [f64; 3]) -> f64 {
    (values[1] - values[0]) / (values[2] - values[0])
}

/// The time chart of `slow` alone at three sizes, with warm medians of 1, 10 and
/// 100 ms: the medians' circles, `(x, y)` pixels, in the order of the sizes.
fn time_points(sizes: [u32; 3]) -> Vec<(f64, f64)> {
    let mut report = fixed_report();
    report.runs.retain(|run| run.workload == "slow");
    report.runs.push(report.runs[1].clone());
    for ((run, size), median) in report.runs.iter_mut().zip(sizes).zip([1e-3, 1e-2, 1e-1]) {
        run.coords.insert("size".into(), size.into());
        run.point = format!("size={size}");
        let time = run.summaries.get_mut(&Mode::Warm).unwrap().get_mut("time").unwrap();
        (time.median, time.ci_low, time.ci_high) = (median, 0.9 * median, 1.1 * median);
    }
    let charts = report::charts::render(&report);
    assert_eq!(charts[0].file, "time_size.svg");
    let circles = drawn(&charts[0].svg, "circle", "fill=\"#1F77B4\"");
    assert_eq!(circles.len(), 3, "{}", charts[0].svg);
    circles.iter().map(|circle| (attribute(circle, "cx"), attribute(circle, "cy"))).collect()
}

#[test]
fn the_time_chart_is_logarithmic_in_time_and_in_a_wide_axis() {
    // Sizes 1, 10, 100 span more than a factor of 4: 10 lies halfway on a log axis;
    // 10 ms lies halfway between 1 and 100 ms on the time axis, which is always
    // logarithmic, and higher up (smaller y).
    let points = time_points([1, 10, 100]);
    let (x, y): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
    assert!((fraction([x[0], x[1], x[2]]) - 0.5).abs() < 0.01, "{x:?}");
    assert!((fraction([y[0], y[1], y[2]]) - 0.5).abs() < 0.01 && y[0] > y[2], "{y:?}");
    // Sizes 10, 12, 20 span a factor of 2: a linear axis, where 12 is a fifth of the way.
    let (x, _): (Vec<f64>, Vec<f64>) = time_points([10, 12, 20]).into_iter().unzip();
    assert!((fraction([x[0], x[1], x[2]]) - 0.2).abs() < 0.01, "{x:?}");
}

/// A paired ratio's bars rise from 0 to the observed ratio, its whisker spans the
/// interval, and the threshold line lies at the threshold, on one linear scale; a bar
/// whose interval straddles the threshold has the second colour.
#[test]
fn the_check_chart_draws_ratios_intervals_and_threshold_to_scale() {
    let mut report = fixed_report();
    for (verdict, (observed, interval)) in report.verdicts.iter_mut().zip([(4.0, (3.5, 5.0)), (2.0, (1.5, 3.5))]) {
        let name = verdict.name();
        let measured = verdict.measured.as_mut().unwrap();
        assert_eq!(measured.threshold, 3.0, "{name}");
        (measured.observed, measured.interval) = (observed, Some(interval));
    }
    let charts = report::charts::render(&report);
    let svg = &charts.iter().find(|chart| chart.file == "check_speedup.svg").unwrap().svg;
    let bars = drawn(svg, "rect", "opacity=\"0.7\"");
    let whiskers = drawn(svg, "polyline", "stroke=\"#000000\" stroke-width=\"2\"");
    let threshold = polyline_ys(drawn(svg, "polyline", "stroke=\"#D62728\"")[0])[0];
    assert_eq!((bars.len(), whiskers.len()), (2, 2), "{svg}");
    let zero = attribute(bars[0], "y") + attribute(bars[0], "height");
    // Pixels above the axis, in units of the threshold (3).
    let ratio = |y: f64| 3.0 * (zero - y) / (zero - threshold);
    let expected = [(4.0, 3.5, 5.0, "#1F77B4"), (2.0, 1.5, 3.5, "#FF7F0E")];
    for (bar, (whisker, (observed, low, high, fill))) in bars.iter().zip(whiskers.iter().zip(expected)) {
        assert!(bar.contains(&format!(" fill=\"{fill}\"")), "{bar}: not {fill}");
        assert_eq!(attribute(bar, "y") + attribute(bar, "height"), zero, "{bar}");
        assert!((ratio(attribute(bar, "y")) - observed).abs() < 0.03, "{bar}: not {observed}");
        let ends = polyline_ys(whisker);
        assert!((ratio(ends[0]) - low).abs() < 0.03 && (ratio(ends[1]) - high).abs() < 0.03, "{whisker}");
    }
}

/// The warnings of `run` (by name) in a report.
fn run_warnings(report: &PhaseReport, run: &str) -> Vec<String> {
    report.runs.iter().find(|candidate| candidate.name() == run).unwrap().warnings.clone()
}

/// A first step much slower than the rest is warned about where a warm-up step would
/// have absorbed it: in warm mode without one. A cold sample is a fresh instance, which
/// no warm-up precedes, so it is not.
#[test]
fn a_slow_first_step_is_warned_about_where_a_warm_up_would_take_it() {
    // Without jitter, so the times are exact.
    let slow_first = |settings: &str| {
        BASE.replace("id = \"slow\"", &format!("id = \"slow\"\n{settings}"))
            .replace("time_ms = 4.0\njitter = 0.05", "time_ms = 4.0\nfirst_ms = 20.0\njitter = 0.0")
    };
    let first_sample = |report: &PhaseReport| {
        let warnings = run_warnings(report, "slow");
        warnings.into_iter().filter(|warning| warning.contains("the first sample")).collect::<Vec<_>>()
    };
    let cold = |report: &PhaseReport| report.runs[0].summary(Mode::Cold, "time").unwrap().clone();
    let command = "cargo xtask run spec.toml";
    let report = report_of(&slow_first("warmup = 0"), &Overrides::default(), command);
    assert_eq!(
        first_sample(&report),
        ["warm: the first sample (24.000 ms) was much slower than the median (4.000 ms): caches may not have been \
          warm; consider `warmup = 1`"]
    );
    let report = report_of(&slow_first("warmup = 1"), &Overrides::default(), command);
    assert_eq!(first_sample(&report), Vec::<String>::new());
    // In cold mode the first sample is as slow, and it is the run's median that shows it
    // (one of five), not a warning about warming up.
    let report = report_of(&slow_first("warmup = 0\nmodes = [\"cold\"]"), &Overrides::default(), command);
    let summary = cold(&report);
    assert!(
        (summary.max - 0.024).abs() < 1e-12 && (summary.median - 0.004).abs() < 1e-12,
        "the first cold sample is the slow one: {summary:?}"
    );
    assert_eq!(first_sample(&report), Vec::<String>::new());
}

/// Run warnings are listed by run, with table-breaking characters escaped, and values
/// from layers above the spec file are listed with their layer.
#[test]
fn warnings_and_overrides_in_the_report() {
    let text = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nwarmup = 0")
        .replace("time_ms = 4.0", "time_ms = 4.0\nfirst_ms = 20.0");
    let overrides = Overrides {
        env: vec![("PHASEGATE_DEFAULTS__TIMEOUT".to_owned(), "90".to_owned())],
        sets: vec!["phase.a.workload.fast.params.time_ms=0.5".to_owned()],
        profile: None,
    };
    let report = report_of(&text, &overrides, "cargo xtask run spec.toml");
    let markdown = markdown::render(&report, &[]);
    let start = markdown.find("## Warnings").expect("a warnings section");
    let section = &markdown[start..markdown[start..].find("\n## ").map_or(markdown.len(), |end| start + end)];
    assert!(
        section.contains("- `slow`: warm: the first sample (23.863 ms) was much slower than the median (4.082 ms)"),
        "{section}"
    );
    assert!(!section.contains("`fast`"), "{section}");
    let start = markdown.find("## Configuration").unwrap();
    let configuration = &markdown[start..markdown.find("## Reproduce").unwrap()];
    assert!(configuration.contains("Values overriding the spec file:"), "{configuration}");
    assert!(
        configuration.contains(
            "| `phase.a.workload.fast.params.time_ms` | `0.5` | --set phase.a.workload.fast.params.time_ms=0.5 |"
        ),
        "{configuration}"
    );
    assert!(
        configuration.contains("| `defaults.timeout` | `90` | environment variable PHASEGATE_DEFAULTS__TIMEOUT |"),
        "{configuration}"
    );
    assert!(!configuration.contains("`defaults.repeats`"), "the file's own values are not overrides: {configuration}");
    // A warning holding a `|` keeps the table's columns.
    let mut report = report;
    report.runs[1].warnings = vec!["a | b\nc".to_owned()];
    let markdown = markdown::render(&report, &[]);
    assert!(markdown.contains("- `fast`: a \\| b c\n"), "{markdown}");
}

/// The command that reproduces a phase alone is the run's, with its own `--phase`
/// replaced by this phase's (the cases are `CommandLine`'s own tests).
#[test]
fn the_reproducing_command_selects_its_phase() {
    let report = report_of(BASE, &Overrides::default(), "cargo xtask run spec.toml --phase b --set x=1");
    assert_eq!(report.invocation.command, "cargo xtask run spec.toml --phase b --set x=1");
    assert_eq!(report.invocation.reproduce, "cargo xtask run spec.toml --set x=1 --phase a");
}

/// Parameter values and check names holding `|` keep the tables' columns, an axis named
/// like a column of the table is told apart from it, and a run that failed after some
/// samples says so under them.
#[test]
fn tables_keep_their_columns_and_mark_failures_after_samples() {
    let mut report = fixed_report();
    for (index, run) in report.runs.iter_mut().enumerate() {
        run.coords.insert("n".into(), serde_json::Value::String(format!("{index}|x")));
    }
    let slow =
        report.runs.iter_mut().find(|run| run.name().starts_with("slow[") && run.name().contains("size=8")).unwrap();
    slow.status = phasegate::execute::RunStatus::Failed("mock failure at sample 3\ndetails".into());
    report.verdicts[0].check = "speed|up".into();
    let markdown = markdown::render(&report, &[]);
    // Every row of a table has as many cells as its header.
    let mut width = None;
    for line in markdown.lines() {
        let cells = line.replace("\\|", "").matches('|').count();
        match (line.starts_with('|'), width) {
            (false, _) => width = None,
            (true, None) => width = Some(cells),
            (true, Some(width)) => assert_eq!(cells, width, "{line}"),
        }
    }
    assert!(markdown.contains("| size | n (parameter) | mode | median |"), "{markdown}");
    assert!(markdown.contains("| size | n | mode | items_per_s (median) |"), "no clash there: {markdown}");
    assert!(
        markdown.contains("| 8 | 0\\|x | – | **failed** after the samples above: mock failure at sample 3 |"),
        "{markdown}"
    );
    assert!(markdown.contains("| `speed\\|up[size=8]` |"), "{markdown}");
}
