//! `report.md`: a phase report for people, rendered from [`PhaseReport`].
//!
//! Sections: a header table (verdict, command, revision, machine, build), the checks
//! with their observed values, thresholds, margins and parity figures, one results
//! table per workload (time statistics per matrix point and mode, then the medians of
//! its metrics), warnings, failed runs, non-default configuration and the command to
//! reproduce the phase. The output depends only on the report, so it is
//! snapshot-tested.

use std::fmt::Write;

use crate::describe::counted;
use crate::execute::RunStatus;
use crate::report::charts::Chart;
use crate::report::{PhaseReport, RunReport};
use crate::spec::Mode;
use crate::stats::format_seconds;
use crate::verdict::{Measured, Method, ParityFigures, Status, Verdict, format_apart, format_number, format_pair};

/// The phase report, linking the `charts` written beside it.
pub fn render(report: &PhaseReport, charts: &[Chart]) -> String {
    let mut out = String::new();
    let phase = &report.phase;
    let _ = writeln!(out, "# {} — phase `{}`: {}\n", report.experiment.title, phase.id, phase.title);
    if !phase.goal.is_empty() {
        let _ = writeln!(out, "{}\n", phase.goal);
    }
    header(&mut out, report);
    checks(&mut out, &report.verdicts);
    if !charts.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for chart in charts {
            let _ = writeln!(out, "![{}]({})\n", chart.title, chart.file);
        }
    }
    results(&mut out, &report.runs);
    warnings(&mut out, &report.runs);
    failures(&mut out, report);
    configuration(&mut out, report);
    let _ = writeln!(out, "## Reproduce\n");
    let revision = report.environment.git_sha.as_deref().unwrap_or("(unknown revision)");
    // The revision alone does not hold what ran from a tree with uncommitted changes.
    let dirty = if report.environment.git_dirty == Some(true) { " with uncommitted changes" } else { "" };
    let _ = writeln!(out, "At revision `{revision}`{dirty}:\n\n```sh\n{}\n```", report.invocation.reproduce);
    out
}

/// `summary.md`: every phase's verdict, its crashed runs (with the first line of their
/// error) and its checks that did not pass on one page, short enough for a
/// pull-request comment or `$GITHUB_STEP_SUMMARY`.
pub fn render_summary(reports: &[PhaseReport]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else { return "No phases ran.\n".into() };
    let _ = writeln!(out, "## phasegate: {}\n", first.experiment.title);
    let _ = writeln!(
        out,
        "Revision `{}` on {} ({}); `{}`\n",
        first.environment.revision(),
        first.environment.cpu_model,
        counted(first.environment.cores, "core"),
        first.invocation.command
    );
    let _ = writeln!(
        out,
        "| Phase | Verdict | Pass | Fail | Inconclusive | Other | Report |\n|---|---|---|---|---|---|---|"
    );
    for report in reports {
        let totals = &report.totals;
        let [pass, fail, inconclusive, other] = totals.columns();
        let _ = writeln!(
            out,
            "| `{}` {} | **{}** | {pass} | {fail} | {inconclusive} | {other} | `{}/{}/report.md` |",
            report.phase.id,
            escape(&report.phase.title),
            totals.verdict().to_uppercase(),
            report.invocation.report_dir,
            report.phase.id
        );
    }
    out.push('\n');
    let crashed: Vec<(&PhaseReport, &RunReport, &str)> = reports
        .iter()
        .flat_map(|report| report.crashed_runs().map(move |(run, message)| (report, run, message)))
        .collect();
    if !crashed.is_empty() {
        let _ = writeln!(out, "| Crashed run | Error |\n|---|---|");
        for (report, run, message) in crashed {
            let first_line = crate::verdict::first_line(message);
            let _ = writeln!(out, "| `{}/{}` | {} |", report.phase.id, escape(&run.name()), escape(first_line));
        }
        out.push('\n');
    }
    let notable: Vec<(&PhaseReport, &Verdict)> = reports
        .iter()
        .flat_map(|report| report.verdicts.iter().map(move |verdict| (report, verdict)))
        .filter(|(_, verdict)| verdict.status != Status::Pass)
        .collect();
    if !notable.is_empty() {
        let _ = writeln!(out, "| Check | Verdict | Observed | Threshold | Why |\n|---|---|---|---|---|");
        for (report, verdict) in notable {
            let (observed, threshold, _, _) = verdict
                .measured
                .as_ref()
                .map_or_else(|| ("–".into(), "–".into(), String::new(), String::new()), measured_cells);
            let _ = writeln!(
                out,
                "| `{}/{}` | **{}** | {observed} | {threshold} | {} |",
                report.phase.id,
                escape(&verdict.name()),
                verdict.status.name(),
                escape(verdict.reason.as_deref().unwrap_or(&verdict.rationale))
            );
        }
        out.push('\n');
    }
    out
}

fn header(out: &mut String, report: &PhaseReport) {
    let totals = &report.totals;
    let environment = &report.environment;
    let mut counts = vec![format!("{} pass", totals.pass)];
    for (count, label) in [
        (totals.fail, "fail"),
        (totals.inconclusive, "inconclusive"),
        (totals.not_measured, "not measured"),
        (totals.not_applicable, "not applicable"),
        (totals.skipped, "skipped"),
        (totals.xfail, "xfail"),
        (totals.xpass, "xpass"),
    ] {
        if count > 0 {
            counts.push(format!("{count} {label}"));
        }
    }
    for (count, noun) in [(totals.new, "new snapshot"), (totals.failed_runs, "failed run")] {
        if count > 0 {
            counts.push(crate::describe::counted(count, noun));
        }
    }
    let dirty = match environment.git_dirty {
        Some(true) => " (uncommitted changes)",
        _ => "",
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Verdict | **{}** ({}) |", totals.verdict().to_uppercase(), counts.join(", "));
    let _ = writeln!(out, "| Command | `{}` |", report.invocation.command);
    let _ = writeln!(out, "| Revision | `{}`{dirty} |", environment.revision());
    let _ = writeln!(
        out,
        "| Machine | {}, {}, {}, {} ({}) |",
        environment.cpu_model,
        counted(environment.cores, "core"),
        format_bytes(environment.memory_bytes as f64),
        environment.os,
        environment.hostname
    );
    let _ = writeln!(
        out,
        "| Build | profile `{}`, opt-level {}, debug assertions {}, {} |",
        environment.build_profile,
        environment.opt_level,
        if environment.debug_assertions { "**on** (figures are not measurements)" } else { "off" },
        environment.rustc
    );
    let profile = report.spec.profile.as_deref().map(|profile| format!(", profile `{profile}`")).unwrap_or_default();
    let _ = writeln!(out, "| Spec | `{}` (hash `{}`{profile}) |", report.spec.file, report.spec.hash);
    let rounds =
        if report.invocation.rounds > 1 { format!(", {} rounds", report.invocation.rounds) } else { String::new() };
    let _ =
        writeln!(out, "| Started | {} ({:.1} s{rounds}) |\n", report.invocation.started, report.invocation.duration_s);
}

fn checks(out: &mut String, verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Checks\n");
    let _ = writeln!(out, "| Check | Verdict | Observed | Threshold | Margin | Interval | Parity | Rationale |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for verdict in verdicts {
        let status = match verdict.status {
            Status::Pass => "pass".to_owned(),
            other => format!("**{}**", other.name()),
        };
        let (observed, threshold, margin, interval) = match &verdict.measured {
            Some(measured) => measured_cells(measured),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        let comparisons: Vec<String> = verdict.parity.iter().chain(&verdict.snapshot).map(parity_cell).collect();
        let parity = if comparisons.is_empty() { "–".to_owned() } else { comparisons.join("<br>") };
        let mut rationale = escape(&verdict.rationale);
        if let Some(reason) = &verdict.reason {
            rationale.push_str(&format!("<br>_{}_", escape(reason)));
        }
        let _ = writeln!(
            out,
            "| `{}` | {status} | {observed} | {threshold} | {margin} | {interval} | {parity} | {rationale} |",
            escape(&verdict.name())
        );
    }
    out.push('\n');
    for verdict in verdicts.iter().filter(|verdict| verdict.expr.is_some()) {
        let method = match verdict.measured.as_ref().map(|measured| measured.method) {
            Some(Method::PairedRatio) => {
                let pairs = verdict
                    .measured
                    .as_ref()
                    .and_then(|measured| measured.ratios.as_ref())
                    .map_or(0, |ratios| ratios.n);
                format!(" (paired ratio over {pairs} interleaved pairs)")
            }
            Some(Method::MedianInterval) => median_interval_label(verdict),
            Some(Method::Point) => " (point values)".into(),
            None => String::new(),
        };
        let _ = writeln!(out, "- `{}`: `{}`{method}", verdict.name(), verdict.expr.as_deref().unwrap_or_default());
        let terms = verdict.terms();
        if terms.len() > 1 {
            for term in terms {
                let samples = if term.paired { "pairs" } else { "samples" };
                let _ = writeln!(
                    out,
                    "  - `{}`: {} [{}, {}] ({:.1}%, {} {samples})",
                    term.expr,
                    format_number(term.median),
                    format_number(term.low),
                    format_number(term.high),
                    100.0 * term.coverage,
                    term.n,
                );
            }
        }
    }
    out.push('\n');
}

/// How a [`Method::MedianInterval`] verdict was decided: on how many terms, and how
/// many of them paired ratios. Reports written before the terms were recorded give
/// only the expression, whose references are then all plain medians.
fn median_interval_label(verdict: &Verdict) -> String {
    let terms = verdict.terms();
    let (count, paired) = if terms.is_empty() {
        let references = verdict
            .expr
            .as_deref()
            .and_then(|expr| crate::expr::parse(expr).ok())
            .map_or(1, |condition| condition.references().len());
        (references, 0)
    } else {
        (terms.len(), terms.iter().filter(|term| term.paired).count())
    };
    match (count, paired) {
        (1, 0) => " (median with its confidence interval)".into(),
        (1, _) => " (median of the ratios of pairs taken together, with its confidence interval)".into(),
        (_, 0) => format!(" (its range over the intervals of its {count} medians)"),
        (_, _) if paired == count => {
            format!(
                " (its range over the intervals of its {count} terms, each a median of the ratios of pairs taken together)"
            )
        }
        (_, _) => format!(
            " (its range over the intervals of its {count} terms, {paired} of them medians of the ratios of pairs taken together)"
        ),
    }
}

fn measured_cells(measured: &Measured) -> (String, String, String, String) {
    let (observed_text, threshold_text) = format_pair(measured.observed, measured.threshold);
    let observed = match (&measured.ratios, measured.method) {
        (Some(ratios), Method::PairedRatio) => {
            format!("{observed_text} (pairs min {}, max {})", format_number(ratios.min), format_number(ratios.max))
        }
        _ => observed_text,
    };
    let threshold = format!("{} {threshold_text}", measured.cmp);
    let margin = measured.margin.map_or_else(|| "–".to_owned(), |margin| format!("{:+.1}%", 100.0 * margin));
    let interval = match (measured.interval, measured.coverage) {
        (Some((low, high)), Some(coverage)) => {
            let [low, high, _] = format_apart([low, high, measured.threshold]);
            format!("[{low}, {high}] ({:.1}%)", 100.0 * coverage)
        }
        _ => "–".into(),
    };
    (observed, threshold, margin, interval)
}

fn parity_cell(figures: &ParityFigures) -> String {
    let against =
        if figures.against == "snapshot" { "its snapshot".to_owned() } else { format!("`{}`", figures.against) };
    let mut parts = vec![format!("`{}` vs {against} `{}`", figures.of, figures.output)];
    if figures.identical {
        parts.push("identical".into());
    } else {
        if let Some(correlation) = figures.correlation {
            parts.push(format!("corr {correlation:.7}"));
        }
        if let Some(deviation) = figures.sum_ratio_deviation {
            parts.push(format!("sum ratio−1 {}", format_number(deviation)));
        }
        if let Some(max_abs) = figures.max_abs_diff {
            parts.push(format!("max abs diff {}", format_number(max_abs)));
        }
        if let Some(violations) = figures.allclose_violations {
            parts.push(format!("allclose violations {violations}"));
        }
    }
    let status = if figures.status == Status::Pass { "ok" } else { "**FAIL**" };
    format!("{status}: {}", parts.join(", "))
}

fn results(out: &mut String, runs: &[RunReport]) {
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "Times per step. The CI of the median is distribution-free at 95% (with fewer than 6 samples it is [min, max], covering 1 - 2^(1-n)).\n"
    );
    let mut workloads: Vec<&str> = Vec::new();
    for run in runs {
        if !workloads.contains(&run.workload.as_str()) {
            workloads.push(&run.workload);
        }
    }
    for workload in workloads {
        let runs: Vec<&RunReport> = runs.iter().filter(|run| run.workload == workload).collect();
        let kernel = &runs[0].kernel;
        let _ = writeln!(out, "### `{workload}` (kernel `{kernel}`)\n");
        let axes: Vec<&str> = axis_names(&runs);
        const COLUMNS: [&str; 9] = ["mode", "median", "95% CI of median", "mean", "stddev", "min", "max", "MAD", "n"];
        let mut head = axis_headers(&axes, &COLUMNS);
        head.extend(COLUMNS.map(str::to_owned));
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for run in &runs {
            let coords: Vec<String> = axes.iter().map(|axis| coordinate(run, axis)).collect();
            if let RunStatus::Skipped(reason) | RunStatus::Failed(reason) = &run.status
                && run.summaries.is_empty()
            {
                let mut row = coords.clone();
                row.push("–".into());
                let what = if matches!(run.status, RunStatus::Skipped(_)) { "skipped" } else { "**failed**" };
                row.push(format!("{what}: {}", escape(crate::verdict::first_line(reason))));
                row.extend(std::iter::repeat_n(String::new(), 7));
                let _ = writeln!(out, "| {} |", row.join(" | "));
                continue;
            }
            for mode in [Mode::Cold, Mode::Warm] {
                let Some(time) = run.summary(mode, "time") else { continue };
                let mut row = coords.clone();
                row.push(mode.name().into());
                row.push(format_seconds(time.median));
                row.push(format!("[{}, {}]", format_seconds(time.ci_low), format_seconds(time.ci_high)));
                for value in [time.mean, time.stddev, time.min, time.max, time.mad] {
                    row.push(format_seconds(value));
                }
                row.push(time.n.to_string());
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
            // A run that failed after some samples: they are above, the failure here.
            if let RunStatus::Failed(reason) = &run.status {
                let mut row = coords.clone();
                row.push("–".into());
                row.push(format!("**failed** after the samples above: {}", escape(crate::verdict::first_line(reason))));
                row.extend(std::iter::repeat_n(String::new(), 7));
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        out.push('\n');
        metrics_table(out, &runs, &axes);
    }
}

fn metrics_table(out: &mut String, runs: &[&RunReport], axes: &[&str]) {
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        for quantities in run.summaries.values() {
            for name in quantities.keys() {
                if name != "time" && !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
    }
    if names.is_empty() {
        return;
    }
    let mut head = axis_headers(axes, &["mode"]);
    head.push("mode".into());
    head.extend(names.iter().map(|name| format!("{name} (median)")));
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for run in runs {
        for mode in [Mode::Cold, Mode::Warm] {
            let Some(quantities) = run.summaries.get(&mode) else { continue };
            let mut row: Vec<String> = axes.iter().map(|axis| coordinate(run, axis)).collect();
            row.push(mode.name().into());
            for name in &names {
                row.push(quantities.get(*name).map_or_else(|| "–".to_owned(), |summary| format_number(summary.median)));
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }
    out.push('\n');
}

/// The coordinates that vary between the runs of one workload.
fn axis_names<'a>(runs: &[&'a RunReport]) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        for name in run.coords.keys() {
            let varies = runs.iter().any(|other| other.coords.get(name) != run.coords.get(name));
            if varies && !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names
}

/// The headers of the axis columns: an axis named like one of the table's own
/// `columns` (a parameter `n` beside the sample count) is marked as a parameter.
fn axis_headers(axes: &[&str], columns: &[&str]) -> Vec<String> {
    axes.iter()
        .map(|axis| if columns.contains(axis) { format!("{} (parameter)", escape(axis)) } else { escape(axis) })
        .collect()
}

fn coordinate(run: &RunReport, axis: &str) -> String {
    match run.coords.get(axis) {
        Some(serde_json::Value::String(text)) => escape(text),
        Some(value) => escape(&value.to_string()),
        None => "–".into(),
    }
}

fn warnings(out: &mut String, runs: &[RunReport]) {
    let lines: Vec<String> = runs
        .iter()
        .flat_map(|run| run.warnings.iter().map(move |warning| format!("- `{}`: {}", run.name(), escape(warning))))
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(out, "## Warnings\n\n{}\n", lines.join("\n"));
    }
}

fn failures(out: &mut String, report: &PhaseReport) {
    let failed: Vec<(&RunReport, &str)> = report.crashed_runs().collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Failed runs\n");
    for (run, message) in failed {
        let _ = writeln!(out, "### `{}`\n\n```text\n{}\n```\n", run.name(), message.trim_end());
    }
}

fn configuration(out: &mut String, report: &PhaseReport) {
    let overrides: Vec<_> = report.config.sources.iter().filter(|source| source.origin != "spec file").collect();
    let _ = writeln!(out, "## Configuration\n");
    let defaults = &report.config.defaults;
    let _ = writeln!(
        out,
        "Defaults: warmup {}, repeats {}, order {}, threads {}, timeout {} s, modes {}, re-runs {}.\n",
        defaults.warmup,
        defaults.repeats,
        defaults.order.name(),
        defaults.threads.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        defaults.timeout_s,
        defaults.modes.iter().map(|mode| mode.name()).collect::<Vec<_>>().join(", "),
        defaults.reruns
    );
    if overrides.is_empty() {
        let _ = writeln!(out, "Every value comes from the spec file or the built-in defaults.\n");
    } else {
        let _ = writeln!(out, "Values overriding the spec file:\n\n| Key | Value | Source |\n|---|---|---|");
        for source in overrides {
            let _ = writeln!(out, "| `{}` | `{}` | {} |", source.key, source.value, escape(&source.origin));
        }
        out.push('\n');
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Term;

    fn verdict(expr: &str, paired: &[bool]) -> Verdict {
        let terms = paired
            .iter()
            .enumerate()
            .map(|(index, &paired)| Term {
                expr: format!("term{index}"),
                paired,
                n: 5,
                median: 1.0,
                low: 0.9,
                high: 1.1,
                coverage: 0.9375,
            })
            .collect();
        Verdict {
            check: "check".into(),
            point: String::new(),
            status: Status::Pass,
            rationale: String::new(),
            expr: Some(expr.into()),
            measured: Some(Measured {
                method: Method::MedianInterval,
                observed: 1.0,
                threshold: 2.0,
                cmp: "<=".into(),
                margin: Some(0.5),
                interval: Some((0.9, 1.1)),
                coverage: Some(0.9375),
                ratios: None,
                terms,
                status: Status::Pass,
            }),
            parity: None,
            snapshot: None,
            reason: None,
            waiver: None,
            noise_floor: None,
        }
    }

    #[test]
    fn the_median_interval_label_counts_terms_and_paired_ones() {
        let cases: [(&str, &[bool], &str); 6] = [
            ("fast.warm.median <= 2", &[false], " (median with its confidence interval)"),
            (
                "-(fast.warm.median / slow.warm.median) >= -2",
                &[true],
                " (median of the ratios of pairs taken together, with its confidence interval)",
            ),
            ("a.warm.median / b.warm.median <= 2", &[false, false], " (its range over the intervals of its 2 medians)"),
            (
                "(a.warm.median / b.warm.median) / (c.warm.median / d.warm.median) <= 2",
                &[true, true],
                " (its range over the intervals of its 2 terms, each a median of the ratios of pairs taken together)",
            ),
            (
                "(a.warm.median / b.warm.median) / c.warm.median <= 2",
                &[true, false],
                " (its range over the intervals of its 2 terms, 1 of them medians of the ratios of pairs taken together)",
            ),
            // A report written before terms were recorded: the expression's references.
            (
                "a.warm.median / b.warm.median + c.warm.median <= 2",
                &[],
                " (its range over the intervals of its 3 medians)",
            ),
        ];
        for (expr, paired, label) in cases {
            assert_eq!(median_interval_label(&verdict(expr, paired)), label, "{expr}");
        }
    }
}
