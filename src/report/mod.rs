//! Reports: the result of one phase as plain data, and its renderers.
//!
//! [`PhaseReport`] is what `report.json` holds (versioned by [`SCHEMA_VERSION`]) and
//! what every renderer takes: [`markdown::render`] for `report.md`, the summary for
//! pull-request comments, and the plan regenerator. Renderers are pure functions from
//! a report to text; the only file I/O of the crate's outputs is in [`files`].

pub mod charts;
mod command_line;
pub mod files;
pub mod float;
pub mod junit;
pub mod markdown;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use command_line::{CommandLine, OUTPUTS, VALUED};

use crate::env::Environment;
use crate::execute::{RunResult, RunStatus, Sample, value_json};
use crate::kernel::{Event, OutputData};
use crate::plan::{PhasePlan, Run};
use crate::spec::{Experiment, Mode, Settings, Source, Spec, fnv1a_hex};
use crate::stats::{self, Summary};
use crate::verdict::{Status, Verdict};

/// Version of the `report.json` layout; bumped on incompatible changes. Schema 2 writes
/// non-finite floats as strings (see [`float`]) where schema 1 wrote `null`; both are
/// read.
pub const SCHEMA_VERSION: u32 = 2;

/// The schema versions [`crate::run::read_report`] reads.
pub const READABLE_SCHEMA_VERSIONS: [u32; 2] = [1, 2];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub schema_version: u32,
    pub experiment: Experiment,
    pub phase: PhaseInfo,
    pub spec: SpecInfo,
    pub invocation: Invocation,
    pub config: ConfigInfo,
    pub environment: Environment,
    pub runs: Vec<RunReport>,
    pub verdicts: Vec<Verdict>,
    pub totals: Totals,
}

impl PhaseReport {
    /// The runs that failed, with their error messages, in run order.
    pub fn crashed_runs(&self) -> impl Iterator<Item = (&RunReport, &str)> {
        self.runs.iter().filter_map(|run| match &run.status {
            RunStatus::Failed(message) => Some((run, message.as_str())),
            _ => None,
        })
    }

    /// How the run departed from its spec as written: its `--filter`, its `--profile`
    /// and every override (`--set`, `PHASEGATE_*`), as [`alterations`] words them;
    /// empty for a run of the spec as written. A report written before the filter was
    /// recorded shows one by the runs it left out.
    pub fn alterations(&self) -> Vec<String> {
        let mut found =
            alterations(self.spec.profile.as_deref(), self.invocation.filter.as_deref(), &self.config.sources);
        let filtered =
            |run: &RunReport| matches!(&run.status, RunStatus::Skipped(reason) if reason == crate::plan::FILTERED);
        if self.invocation.filter.is_none() && self.runs.iter().any(filtered) {
            found.insert(0, "--filter".to_owned());
        }
        found
    }
}

/// How a run departs from its spec as written, one phrase each: `--filter GLOB`,
/// `--profile NAME` and the layer of every other value an override set (`--set
/// KEY=VALUE`, `environment variable PHASEGATE_...`), each once. A `--phase` selection
/// is none: the phases it runs are run as written. Only runs with none feed living plans.
pub fn alterations(profile: Option<&str>, filter: Option<&str>, sources: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(filter) = filter {
        found.push(format!("--filter {filter}"));
    }
    if let Some(profile) = profile {
        found.push(format!("--profile {profile}"));
    }
    found.extend(override_origins(sources, |_| true));
    found
}

/// The layer of every value an override (`--set`, `PHASEGATE_*`, not a profile) set
/// at a key `keep` takes, each once, in the order of `sources`.
pub fn override_origins(sources: &[Source], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for source in sources.iter().filter(|source| source.is_override() && !source.is_from_profile()) {
        if keep(&source.key) && !found.contains(&source.origin) {
            found.push(source.origin.clone());
        }
    }
    found
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseInfo {
    pub id: String,
    pub title: String,
    pub goal: String,
    pub needs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecInfo {
    pub file: String,
    pub hash: String,
    pub profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The command as given, as a shell at the project root takes it.
    pub command: String,
    /// The command that reproduces this phase alone (without the run's log and CI
    /// output options).
    pub reproduce: String,
    /// RFC 3339, UTC.
    pub started: String,
    #[serde(with = "float")]
    pub duration_s: f64,
    /// Execution rounds (1 plus re-runs of inconclusive checks).
    pub rounds: u32,
    /// The report directory, relative to the project root.
    pub report_dir: String,
    /// The run's `--filter`, if it had one (older reports lack it: see
    /// [`PhaseReport::alterations`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub defaults: Settings,
    /// Every value not from the built-in defaults, with its layer.
    pub sources: Vec<Source>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub workload: String,
    pub kernel: String,
    /// The axis coordinates, `size=512,threads=2` (empty without axes).
    pub point: String,
    /// Every parameter the spec set, and `threads`.
    pub coords: serde_json::Map<String, serde_json::Value>,
    /// Every parameter the kernel received, defaults included.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub threads: usize,
    pub settings: Settings,
    pub setting_sources: Vec<Source>,
    pub status: RunStatus,
    /// mode -> quantity (`time` or a metric) -> summary of the timed samples.
    pub summaries: BTreeMap<Mode, BTreeMap<String, Summary>>,
    pub samples: Vec<SampleReport>,
    pub warnings: Vec<String>,
    /// Set-up telemetry and the telemetry of the last sample of each mode (every
    /// sample's telemetry is in the log file).
    pub events: Vec<EventReport>,
    pub outputs: Vec<OutputInfo>,
}

impl RunReport {
    pub fn name(&self) -> String {
        if self.point.is_empty() { self.workload.clone() } else { format!("{}[{}]", self.workload, self.point) }
    }

    /// Whether the run has timed samples (a skipped run has none).
    pub fn measured(&self) -> bool {
        self.samples.iter().any(|sample| !sample.warmup)
    }

    /// The timed (non-warm-up) samples of `mode`, in order, as `RunResult::timed` gives
    /// them.
    pub fn timed(&self, mode: Mode) -> impl Iterator<Item = &SampleReport> {
        self.samples.iter().filter(move |sample| sample.mode == mode && !sample.warmup)
    }

    pub fn summary(&self, mode: Mode, quantity: &str) -> Option<&Summary> {
        self.summaries.get(&mode).and_then(|quantities| quantities.get(quantity))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    pub mode: Mode,
    pub warmup: bool,
    pub round: u32,
    pub index: u32,
    #[serde(with = "float")]
    pub seconds: f64,
    /// Metric values, written as [`float::to_json`] does.
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    /// `setup`, or `<mode> <round>.<index>` of the sample.
    pub during: String,
    pub kind: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub len: usize,
    /// FNV-1a 64 of the little-endian bytes (or the digest itself).
    pub digest: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub not_measured: usize,
    pub not_applicable: usize,
    pub skipped: usize,
    pub xfail: usize,
    pub xpass: usize,
    #[serde(default)]
    pub new: usize,
    pub failed_runs: usize,
}

impl Totals {
    pub fn of(verdicts: &[Verdict], runs: &[RunReport]) -> Totals {
        let count = |status: Status| verdicts.iter().filter(|verdict| verdict.status == status).count();
        Totals {
            pass: count(Status::Pass),
            fail: count(Status::Fail),
            inconclusive: count(Status::Inconclusive),
            not_measured: count(Status::NotMeasured),
            not_applicable: count(Status::NotApplicable),
            skipped: count(Status::Skipped),
            xfail: count(Status::Xfail),
            xpass: count(Status::Xpass),
            new: count(Status::New),
            failed_runs: runs.iter().filter(|run| matches!(run.status, RunStatus::Failed(_))).count(),
        }
    }

    /// One word for the phase: `crashed`, `fail`, `inconclusive` or `pass`.
    pub fn verdict(&self) -> &'static str {
        if self.failed_runs > 0 {
            "crashed"
        } else if self.fail + self.not_measured > 0 {
            "fail"
        } else if self.inconclusive > 0 {
            "inconclusive"
        } else {
            "pass"
        }
    }

    /// The four columns every one-line tally shows (the summary, the end of a run, a
    /// living plan's region): pass, fail, inconclusive and other. A check that could
    /// not be measured fails the phase, so it counts as a fail; other holds what
    /// decides nothing: not applicable, skipped, waived (xfail, xpass) and new
    /// snapshots.
    pub fn columns(&self) -> [usize; 4] {
        [
            self.pass,
            self.fail + self.not_measured,
            self.inconclusive,
            self.not_applicable + self.skipped + self.xfail + self.xpass + self.new,
        ]
    }
}

/// What the report builder needs beyond the plan and the results.
pub struct Context<'a> {
    pub spec: &'a Spec,
    pub environment: &'a Environment,
    pub command: CommandLine,
    pub started: String,
    pub duration_s: f64,
    pub rounds: u32,
    pub report_dir: String,
    /// The run's `--filter`.
    pub filter: Option<String>,
}

/// Assembles the report of one phase.
pub fn build(phase: &PhasePlan, results: &[RunResult], verdicts: Vec<Verdict>, context: &Context<'_>) -> PhaseReport {
    let runs: Vec<RunReport> = phase
        .runs
        .iter()
        .zip(results)
        .map(|(run, result)| {
            let mut report = run_report(run, result);
            if let Some(workload) = phase.phase.workloads.iter().find(|workload| workload.id == run.workload) {
                report.setting_sources = workload.setting_sources.clone();
            }
            report
        })
        .collect();
    let totals = Totals::of(&verdicts, &runs);
    let spec = context.spec;
    PhaseReport {
        schema_version: SCHEMA_VERSION,
        experiment: spec.experiment.clone(),
        phase: PhaseInfo {
            id: phase.phase.id.clone(),
            title: phase.phase.title.clone(),
            goal: phase.phase.goal.clone(),
            needs: phase.phase.needs.clone(),
        },
        spec: SpecInfo {
            file: spec.file.display().to_string(),
            hash: spec.hash.clone(),
            profile: spec.profile.clone(),
        },
        invocation: Invocation {
            reproduce: context.command.for_phase(&phase.phase.id).render(),
            command: context.command.render(),
            started: context.started.clone(),
            duration_s: context.duration_s,
            rounds: context.rounds,
            report_dir: context.report_dir.clone(),
            filter: context.filter.clone(),
        },
        config: ConfigInfo { defaults: spec.defaults.clone(), sources: spec.sources.clone() },
        environment: context.environment.clone(),
        runs,
        verdicts,
        totals,
    }
}

fn run_report(run: &Run, result: &RunResult) -> RunReport {
    let mut summaries: BTreeMap<Mode, BTreeMap<String, Summary>> = BTreeMap::new();
    let mut warnings = result.warnings.clone();
    for mode in [Mode::Cold, Mode::Warm] {
        let timed: Vec<&Sample> = result.timed(mode).collect();
        if timed.is_empty() {
            continue;
        }
        let mut quantities = BTreeMap::new();
        let times: Vec<f64> = timed.iter().map(|sample| sample.seconds).collect();
        let time_summary = Summary::of(&times).expect("non-empty");
        let first = result.samples.iter().find(|sample| sample.mode == mode).map(|sample| sample.seconds);
        let warmup = if mode == Mode::Warm { run.settings.warmup } else { 1 };
        for warning in stats::warnings(&time_summary, first, warmup, crate::execute::TOO_SHORT_S) {
            warnings.push(format!("{}: {warning}", mode.name()));
        }
        quantities.insert("time".to_owned(), time_summary);
        let mut names: Vec<&str> =
            timed.iter().flat_map(|sample| sample.metrics.iter().map(|(name, _)| name.as_str())).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let values = crate::verdict::quantity_values(result, mode, name);
            if let Some(summary) = Summary::of(&values) {
                quantities.insert(name.to_owned(), summary);
            }
        }
        summaries.insert(mode, quantities);
    }
    let mut events: Vec<EventReport> = result.events.iter().map(|event| event_report("setup".into(), event)).collect();
    for mode in [Mode::Cold, Mode::Warm] {
        if let Some(last) = result.timed(mode).last() {
            let during = format!("{} {}.{}", mode.name(), last.round, last.index);
            events.extend(last.events.iter().map(|event| event_report(during.clone(), event)));
        }
    }
    RunReport {
        workload: run.workload.clone(),
        kernel: run.kernel.clone(),
        point: run.label.clone(),
        coords: run.coords.iter().map(|(name, value)| (name.clone(), value_json(value))).collect(),
        params: run.params.iter().map(|(name, value)| (name.to_owned(), value_json(value))).collect(),
        threads: run.threads,
        settings: run.settings.clone(),
        setting_sources: Vec::new(),
        status: result.status.clone(),
        summaries,
        samples: result
            .samples
            .iter()
            .map(|sample| SampleReport {
                mode: sample.mode,
                warmup: sample.warmup,
                round: sample.round,
                index: sample.index,
                seconds: sample.seconds,
                metrics: sample.metrics.iter().map(|(name, value)| (name.clone(), float::to_json(*value))).collect(),
            })
            .collect(),
        warnings,
        events,
        outputs: result
            .outputs
            .iter()
            .map(|output| OutputInfo {
                name: output.name.clone(),
                shape: output.shape.clone(),
                len: output.data.len(),
                digest: output_digest(&output.data),
            })
            .collect(),
    }
}

fn event_report(during: String, event: &Event) -> EventReport {
    EventReport {
        during,
        kind: event.kind.clone(),
        fields: event.fields.iter().map(|(name, value)| (name.clone(), value_json(value))).collect(),
    }
}

/// A content digest of an output: FNV-1a 64 of its little-endian bytes.
pub fn output_digest(data: &OutputData) -> String {
    match data {
        OutputData::Digest(digest) => digest.clone(),
        OutputData::F32(values) => fnv1a_hex(&values.iter().flat_map(|value| value.to_le_bytes()).collect::<Vec<u8>>()),
        OutputData::F64(values) => fnv1a_hex(&values.iter().flat_map(|value| value.to_le_bytes()).collect::<Vec<u8>>()),
        OutputData::I64(values) => fnv1a_hex(&values.iter().flat_map(|value| value.to_le_bytes()).collect::<Vec<u8>>()),
    }
}
