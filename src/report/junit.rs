//! JUnit XML for CI systems: one `<testsuite>` per phase, one `<testcase>` per check
//! verdict. Failing, unmeasured and inconclusive verdicts are `<failure>`s (with the
//! verdict as `type`); not applicable and skipped ones, and waived checks that failed as
//! expected (xfail), are `<skipped>`. Passes, a waived check that passed (xpass) among
//! them, and new snapshots carry their figures in `<system-out>`. Every run that crashed
//! is a test case of its own with an `<error>`, so a crash shows even when no check uses
//! the run.

use std::fmt::Write;

use crate::report::PhaseReport;
use crate::verdict::{Status, Verdict, format_pair};

pub fn render(reports: &[PhaseReport]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errors: usize = reports.iter().map(|report| report.crashed_runs().count()).sum();
    let tests: usize = reports.iter().map(|report| report.verdicts.len()).sum::<usize>() + errors;
    let failures: usize =
        reports.iter().map(|report| report.verdicts.iter().filter(|verdict| failing(verdict)).count()).sum();
    let name = reports.first().map_or("phasegate", |report| report.experiment.name.as_str());
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">",
        escape(name)
    );
    for report in reports {
        let suite = format!("{}.{}", report.experiment.name, report.phase.id);
        let failures = report.verdicts.iter().filter(|verdict| failing(verdict)).count();
        let n_skipped = report.verdicts.iter().filter(|verdict| skipped(verdict)).count();
        let errors = report.crashed_runs().count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{n_skipped}\" time=\"{:.3}\" timestamp=\"{}\">",
            escape(&suite),
            report.verdicts.len() + errors,
            report.invocation.duration_s,
            escape(&report.invocation.started)
        );
        for (run, message) in report.crashed_runs() {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"run {}\">\n      <error type=\"crashed\" message=\"{}\">{}</error>\n    </testcase>",
                escape(&suite),
                escape(&run.name()),
                escape(crate::verdict::first_line(message)),
                escape(message)
            );
        }
        for verdict in &report.verdicts {
            let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\"", escape(&suite), escape(&verdict.name()));
            let detail = detail(verdict);
            if failing(verdict) {
                let _ = writeln!(
                    out,
                    ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>",
                    escape(verdict.status.name()),
                    escape(&detail),
                    escape(&format!("{}\n{}", detail, verdict.rationale))
                );
            } else if skipped(verdict) {
                let _ = writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", escape(&detail));
            } else {
                let _ = writeln!(out, ">\n      <system-out>{}</system-out>\n    </testcase>", escape(&detail));
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

fn failing(verdict: &Verdict) -> bool {
    matches!(verdict.status, Status::Fail | Status::NotMeasured | Status::Inconclusive)
}

fn skipped(verdict: &Verdict) -> bool {
    matches!(verdict.status, Status::NotApplicable | Status::Skipped | Status::Xfail)
}

fn detail(verdict: &Verdict) -> String {
    let mut text = verdict.status.name().to_owned();
    if let Some(measured) = &verdict.measured {
        text.push_str(&format!(
            ": observed {} {} {}",
            format_pair(measured.observed, measured.threshold).0,
            measured.cmp,
            format_pair(measured.observed, measured.threshold).1
        ));
    }
    if let Some(reason) = &verdict.reason {
        text.push_str(&format!("; {reason}"));
    }
    text
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\n' => escaped.push_str("&#10;"),
            other if other < ' ' && other != '\t' => {}
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a < b & \"c\""), "a &lt; b &amp; &quot;c&quot;");
        assert_eq!(escape("x\u{1}y"), "xy");
    }
}
