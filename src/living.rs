//! Living plan documents: Markdown files under `plans/` whose marked regions are
//! regenerated from the latest reports.
//!
//! A region is delimited by
//!
//! ```text
//! <!-- phasegate:begin EXPERIMENT/PHASE -->
//! ...generated...
//! <!-- phasegate:end -->
//! ```
//!
//! and is replaced by [`render_region`] of that phase's newest `report.json` from a run
//! of the spec as written (`<output>/<experiment>/<run>/<phase>/report.json`, under the
//! output root of the spec that names the experiment, see [`locate`]; runs with
//! `--filter`, `--profile`, `--set` or `PHASEGATE_*` overrides are passed over, and a
//! run that left the phase out with `--phase` holds none): a stamp (report, revision,
//! date, machine), a checklist with `[x]` for every check that passes, the check table
//! and the results table. Text outside the markers is never touched, and regeneration
//! is a pure function of the document and the reports, so running it twice changes
//! nothing.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::report::PhaseReport;
use crate::spec::Mode;
use crate::stats::format_seconds;
use crate::verdict::{Status, format_pair};

const BEGIN: &str = "<!-- phasegate:begin ";
const END: &str = "<!-- phasegate:end -->";

/// A marked region: `experiment/phase` and the byte range of its body.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub experiment: String,
    pub phase: String,
    pub body: std::ops::Range<usize>,
}

/// Finds the marked regions of a document.
pub fn regions(text: &str) -> Result<Vec<Region>> {
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(start) = text[offset..].find(BEGIN) {
        let start = offset + start;
        // Errors name the marker's line.
        let line = text[..start].matches('\n').count() + 1;
        let header_end = text[start..]
            .find("-->")
            .map(|end| start + end + 3)
            .with_context(|| format!("line {line}: unterminated phasegate:begin marker"))?;
        let target = text[start + BEGIN.len()..header_end - 3].trim();
        let (experiment, phase) = target
            .split_once('/')
            .with_context(|| format!("line {line}: marker `{target}` must name EXPERIMENT/PHASE"))?;
        let body_start = header_end;
        let end = text[body_start..]
            .find(END)
            .map(|end| body_start + end)
            .with_context(|| format!("line {line}: marker for `{target}` has no `{END}`"))?;
        if text[body_start..end].contains(BEGIN) {
            bail!("line {line}: marker for `{target}` is not closed before the next phasegate:begin");
        }
        found.push(Region { experiment: experiment.to_owned(), phase: phase.to_owned(), body: body_start..end });
        offset = end + END.len();
    }
    Ok(found)
}

/// What a region is regenerated from.
#[derive(Clone, Debug)]
pub enum Found {
    /// The phase's newest report from a run of the spec as written, and its path
    /// relative to the project.
    Report(Box<PhaseReport>, String),
    /// There is none. `left_out` is the newest report passed over, if any: its path and
    /// how its run departed from the spec (see [`PhaseReport::alterations`]); `spec` is
    /// the spec to run, relative to the project, if one names the experiment.
    Missing { left_out: Option<(String, Vec<String>)>, spec: Option<String> },
}

/// Regenerates every region of `text` with `lookup(experiment, phase)`, which finds
/// the phase's report. A report that cannot be read is an error, not a missing report,
/// so a region never loses its results to a broken file.
pub fn regenerate(text: &str, lookup: &mut dyn FnMut(&str, &str) -> Result<Found>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for region in regions(text)? {
        out.push_str(&text[last..region.body.start]);
        let body = match lookup(&region.experiment, &region.phase)? {
            Found::Report(report, path) => render_region(&report, &path),
            Found::Missing { left_out, spec } => {
                let why = left_out.map_or_else(String::new, |(path, alterations)| {
                    format!(
                        " from a run of the spec as written (the newest, `{path}`, ran with {})",
                        alterations.join(", ")
                    )
                });
                let hint = match spec {
                    Some(spec) => format!("run `cargo xtask run {spec}`, then `cargo xtask plan --all`"),
                    None => format!("no spec in the project names experiment `{}`", region.experiment),
                };
                format!("\n_No report yet for `{}/{}`{why}: {hint}._\n", region.experiment, region.phase)
            }
        };
        out.push_str(&body);
        last = region.body.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// The generated body of one region.
pub fn render_region(report: &PhaseReport, path: &str) -> String {
    let mut out = String::new();
    let environment = &report.environment;
    let date = report.invocation.started.get(..10).unwrap_or(&report.invocation.started);
    let _ = writeln!(
        out,
        "\n_Generated by `cargo xtask plan` from `{path}`: revision `{}`, {date}, {} ({}), profile `{}`._\n",
        environment.revision(),
        environment.cpu_model,
        crate::describe::counted(environment.cores, "core"),
        environment.build_profile
    );
    let totals = &report.totals;
    let [pass, fail, inconclusive, other] = totals.columns();
    let _ = writeln!(
        out,
        "Verdict: **{}** ({pass} pass, {fail} fail, {inconclusive} inconclusive, {other} other).\n",
        totals.verdict().to_uppercase()
    );
    for verdict in &report.verdicts {
        let mark = if verdict.status == Status::Pass { "x" } else { " " };
        let figures = verdict.measured.as_ref().map_or_else(String::new, |measured| {
            format!(
                ": {} {} {}",
                format_pair(measured.observed, measured.threshold).0,
                measured.cmp,
                format_pair(measured.observed, measured.threshold).1
            )
        });
        let parity = verdict.parity.as_ref().map_or_else(String::new, |parity| {
            if parity.status == Status::Pass {
                format!(", parity with `{}` ok", parity.against)
            } else {
                format!(", parity with `{}` FAILED", parity.against)
            }
        });
        let status =
            if verdict.status == Status::Pass { String::new() } else { format!(" — **{}**", verdict.status.name()) };
        let _ = writeln!(out, "- [{mark}] `{}`{figures}{parity}{status} — {}", verdict.name(), verdict.rationale);
    }
    let _ = writeln!(out, "\n| Workload | Point | Mode | Median | CI of median | n |\n|---|---|---|---|---|---|");
    for run in &report.runs {
        for mode in [Mode::Cold, Mode::Warm] {
            if let Some(time) = run.summary(mode, "time") {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | [{}, {}] | {} |",
                    run.workload,
                    if run.point.is_empty() { "–" } else { &run.point },
                    mode.name(),
                    format_seconds(time.median),
                    format_seconds(time.ci_low),
                    format_seconds(time.ci_high),
                    time.n
                );
            }
        }
        if run.summaries.is_empty() {
            let _ = writeln!(
                out,
                "| `{}` | {} | – | {} | | |",
                run.workload,
                if run.point.is_empty() { "–" } else { &run.point },
                status_word(&run.status)
            );
        }
    }
    out
}

fn status_word(status: &crate::execute::RunStatus) -> String {
    match status {
        crate::execute::RunStatus::Completed => "no samples".into(),
        crate::execute::RunStatus::Skipped(reason) => format!("skipped ({reason})"),
        crate::execute::RunStatus::Failed(message) => format!("failed: {}", crate::verdict::first_line(message)),
    }
}

/// Where an experiment's reports are, and the spec that writes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// `<output>/<experiment>` under the project.
    pub root: PathBuf,
    /// The spec, relative to the project; `None` when no spec names the experiment.
    pub spec: Option<String>,
}

/// Finds the spec whose `[experiment] name` is `experiment`, and so its output root:
/// `experiments/<experiment>.toml` when it is that spec, else the first TOML file of the
/// project that is (those git lists, tracked or not ignored, in path order; without
/// git, those in `experiments/` and at the top). Without one, reports are looked for
/// under the default root, `reports/<experiment>`.
pub fn locate(project_root: &Path, experiment: &str) -> Located {
    let named = |path: &Path| -> Option<PathBuf> {
        let table = std::fs::read_to_string(path).ok()?.parse::<toml::Table>().ok()?;
        let section = table.get("experiment")?;
        (section.get("name")?.as_str()? == experiment)
            .then(|| PathBuf::from(section.get("output").and_then(|output| output.as_str()).unwrap_or("reports")))
    };
    let conventional = PathBuf::from("experiments").join(format!("{experiment}.toml"));
    let candidates = std::iter::once(conventional.clone())
        .chain(spec_candidates(project_root).into_iter().filter(|path| *path != conventional));
    for candidate in candidates {
        if let Some(output) = named(&project_root.join(&candidate)) {
            return Located {
                root: project_root.join(output).join(experiment),
                spec: Some(candidate.display().to_string()),
            };
        }
    }
    Located { root: project_root.join("reports").join(experiment), spec: None }
}

/// The TOML files of the project, relative to it, in path order: those git lists
/// (tracked, or untracked and not ignored), or without git those in `experiments/` and
/// at the top.
fn spec_candidates(project_root: &Path) -> Vec<PathBuf> {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.toml"])
        .current_dir(project_root)
        .output()
        .ok()
        .filter(|output| output.status.success());
    let mut files: Vec<PathBuf> = match listed {
        Some(output) => output
            .stdout
            .split(|&byte| byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .collect(),
        None => {
            let mut files = Vec::new();
            for dir in ["experiments", ""] {
                for entry in std::fs::read_dir(project_root.join(dir)).into_iter().flatten().filter_map(Result::ok) {
                    files.push(Path::new(dir).join(entry.file_name()));
                }
            }
            files.retain(|path| path.extension().is_some_and(|extension| extension == "toml"));
            files
        }
    };
    files.sort();
    files.dedup();
    files
}

/// Finds the newest report of a phase under `located.root` from a run of the spec as
/// written: runs with a `--filter`, a `--profile` or overrides are passed over, as their
/// figures are not the spec's. A `--phase` run is one of the spec as written, so a run
/// of one phase leaves the others' figures in place.
pub fn latest_report(project_root: &Path, located: &Located, phase: &str) -> Result<Found> {
    let mut left_out = None;
    for run_dir in crate::report::files::runs_with_phase(&located.root, phase) {
        let path = run_dir.join(phase).join("report.json");
        let report = crate::run::read_report(&path)?;
        let relative = path.strip_prefix(project_root).unwrap_or(&path).display().to_string();
        let alterations = report.alterations();
        if alterations.is_empty() {
            return Ok(Found::Report(Box::new(report), relative));
        }
        left_out.get_or_insert((relative, alterations));
    }
    Ok(Found::Missing { left_out, spec: located.spec.clone() })
}

/// Regenerates the plan document at `path`, finding each experiment's reports with
/// [`locate`]; returns whether it changed. With `check_only`, the file is left alone.
pub fn update_file(project_root: &Path, path: &Path, check_only: bool) -> Result<bool> {
    update(project_root, path, check_only, HashMap::new())
}

/// Regenerates the plan document at `path` after a run of `experiment`, whose reports
/// and spec the run knows (`located`); other experiments' regions are found with
/// [`locate`]. Returns whether it changed.
pub fn update_file_after_run(project_root: &Path, path: &Path, experiment: &str, located: Located) -> Result<bool> {
    update(project_root, path, false, HashMap::from([(experiment.to_owned(), located)]))
}

fn update(project_root: &Path, path: &Path, check_only: bool, mut known: HashMap<String, Located>) -> Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let updated = regenerate(&text, &mut |experiment, phase| {
        let located = known.entry(experiment.to_owned()).or_insert_with(|| locate(project_root, experiment));
        latest_report(project_root, located, phase)
    })
    .with_context(|| format!("in {}", path.display()))?;
    let changed = updated != text;
    if changed && !check_only {
        crate::report::files::write_atomic(path, updated.as_bytes())?;
    }
    Ok(changed)
}

/// Every Markdown file in `plans/`.
pub fn all_plans(project_root: &Path) -> Vec<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(project_root.join("plans"))
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    plans.retain(|path| path.extension().is_some_and(|extension| extension == "md"));
    plans.sort();
    plans
}

#[cfg(test)]
mod tests {
    use super::{Found, regenerate, regions};

    #[test]
    fn regions_and_untouched_text() {
        let text = "# Plan\nintro\n<!-- phasegate:begin exp/a -->\nold\n<!-- phasegate:end -->\nmiddle [ ] keep\n<!-- phasegate:begin exp/b -->\n<!-- phasegate:end -->\ntail\n";
        let found = regions(text).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].experiment.as_str(), found[0].phase.as_str()), ("exp", "a"));
        let spec = Some("experiments/exp.toml".to_owned());
        let missing = &mut |_: &str, _: &str| Ok(Found::Missing { left_out: None, spec: spec.clone() });
        let regenerated = regenerate(text, missing).unwrap();
        assert!(regenerated.starts_with("# Plan\nintro\n<!-- phasegate:begin exp/a -->\n_No report yet for `exp/a`"));
        assert!(regenerated.contains("`cargo xtask run experiments/exp.toml`, then `cargo xtask plan --all`._\n"));
        assert!(regenerated.contains("<!-- phasegate:end -->\nmiddle [ ] keep\n<!-- phasegate:begin exp/b -->"));
        assert!(regenerated.ends_with("<!-- phasegate:end -->\ntail\n"));
        assert_eq!(regenerate(&regenerated, missing).unwrap(), regenerated, "idempotent");
    }

    /// Malformed markers are errors that name the marker's line.
    #[test]
    fn malformed_markers_are_errors() {
        let error = |text: &str| regions(text).unwrap_err().to_string();
        assert_eq!(
            error("# Plan\n\n<!-- phasegate:begin exp -->\n<!-- phasegate:end -->"),
            "line 3: marker `exp` must name EXPERIMENT/PHASE"
        );
        assert_eq!(
            error("<!-- phasegate:begin exp/a -->\nno end"),
            "line 1: marker for `exp/a` has no `<!-- phasegate:end -->`"
        );
        assert_eq!(
            error("<!-- phasegate:begin exp/a -->\n<!-- phasegate:begin exp/b -->\n<!-- phasegate:end -->"),
            "line 1: marker for `exp/a` is not closed before the next phasegate:begin"
        );
        assert_eq!(error("text\n<!-- phasegate:begin exp/a"), "line 2: unterminated phasegate:begin marker");
    }
}
