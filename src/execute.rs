//! Execution: runs the plan's groups and collects raw samples.
//!
//! For every execution group (a workload and its interleaved partners, or a run on
//! its own):
//!
//! 1. **Cold** (when a run lists the mode): `repeats` times, a fresh instance is
//!    created and set up, and set-up plus the first step are timed together; the
//!    set-up share is kept as the metric `setup_s`.
//! 2. **Warm**: one instance per run is set up (untimed; its duration is kept as
//!    `setup_s` of a `setup` telemetry event), then `warmup` untimed steps and
//!    `repeats` timed steps. In a group of several runs the steps go round-robin
//!    (A B A B ...), so sample i of every run in the group was taken at about the same
//!    time and the samples pair up by index.
//! 3. The outputs of the last step of each run whose outputs a check needs.
//!
//! Each run executes inside a rayon pool of its `threads`. A run fails, and stops
//! sampling, when `setup` or `run` returns an error or panics, or when a sample takes
//! longer than the timeout (in-process kernels cannot be interrupted: each sample's
//! [`Probe::deadline`] lets a kernel give up long work between units of it, and a
//! sample that ignores it is allowed to finish first). Scratch directories are
//! removed after the group, and by the interrupt handler if the process is
//! interrupted; the handler first kills the process groups of running commands.

use std::collections::HashMap;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::kernel::{Deadline, Event, Instance, Kernel, Output, Probe, RunContext};
use crate::kernels;
use crate::plan::{PhasePlan, Run};
use crate::spec::Mode;

/// One timed (or warm-up) step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub mode: Mode,
    /// Warm-up steps are kept but excluded from statistics.
    pub warmup: bool,
    /// The execution round: 0 for the first, then one more per re-run.
    pub round: u32,
    /// The index among the round's samples of this mode (warm-ups counted separately).
    /// Interleaved partners' samples with equal round and index were taken together.
    pub index: u32,
    pub seconds: f64,
    pub metrics: Vec<(String, f64)>,
    /// Telemetry the kernel recorded during this step.
    #[serde(skip)]
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "message", rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    Skipped(String),
    Failed(String),
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub run: usize,
    /// The run's name (`workload[axis=value,...]`), for messages about it.
    pub name: String,
    pub status: RunStatus,
    pub samples: Vec<Sample>,
    /// Telemetry recorded during set-up (step telemetry is kept with its sample).
    pub events: Vec<Event>,
    pub warnings: Vec<String>,
    pub outputs: Vec<Output>,
}

impl RunResult {
    fn new(run: &Run) -> RunResult {
        RunResult {
            run: run.index,
            name: run.name(),
            status: RunStatus::Completed,
            samples: Vec::new(),
            events: Vec::new(),
            warnings: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The timed (non-warm-up) samples of `mode`, in order.
    pub fn timed(&self, mode: Mode) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |sample| sample.mode == mode && !sample.warmup)
    }

    pub fn failed(&self) -> Option<&str> {
        match &self.status {
            RunStatus::Failed(message) => Some(message),
            _ => None,
        }
    }
}

/// Receives progress as execution goes; the command line draws it.
pub trait Observer: Sync {
    fn phase_started(&self, _phase: &PhasePlan, _steps: u64) {}
    /// A re-run round (1, 2, ...) of the groups behind inconclusive checks starts, adding
    /// `steps` to those `phase_started` announced.
    fn rerun_started(&self, _phase: &PhasePlan, _round: u32, _steps: u64) {}
    fn step_finished(&self, _phase: &PhasePlan, _run: &Run, _sample: &Sample) {}
    fn run_failed(&self, _phase: &PhasePlan, _run: &Run, _message: &str) {}
    fn phase_finished(&self, _phase: &PhasePlan) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// Where scratch directories go, and whether outputs are kept for every run.
#[derive(Clone, Debug)]
pub struct ExecutionOptions {
    pub scratch_root: PathBuf,
    /// Keep the outputs of every run (for snapshots), not only those parity needs.
    pub keep_all_outputs: bool,
    /// The runs are A/A calibration instances, not the phase's runs: their samples and
    /// telemetry are logged under the targets `phasegate::calibration::sample` and
    /// `phasegate::calibration::telemetry`, each instance's run named `RUN (A/A N)`.
    pub calibration: bool,
}

/// Steps that finish faster than this get a "too short to time" warning.
pub const TOO_SHORT_S: f64 = 10e-6;

/// Executes every group of `phase`.
pub fn execute_phase(phase: &PhasePlan, options: &ExecutionOptions, observer: &dyn Observer) -> Vec<RunResult> {
    let mut results: Vec<RunResult> = phase.runs.iter().map(RunResult::new).collect();
    execute_groups(phase, options, observer, &mut results, None, 0);
    results
}

/// Executes the groups listed in `only` (all when `None`) as execution round `round`,
/// appending to `results`. Runs that already failed stay failed. A re-run round
/// (`round` > 0) first tells the observer the steps it will take.
pub fn execute_groups(
    phase: &PhasePlan,
    options: &ExecutionOptions,
    observer: &dyn Observer,
    results: &mut [RunResult],
    only: Option<&[usize]>,
    round: u32,
) {
    install_interrupt_cleanup();
    let mut pools = Pools::default();
    let wanted = if options.keep_all_outputs { (0..phase.runs.len()).collect() } else { phase.runs_with_outputs() };
    let selected =
        || phase.groups.iter().enumerate().filter(move |(index, _)| only.is_none_or(|only| only.contains(index)));
    // The runs of a group that execute: not the skipped or the failed ones.
    let executing = |group: &[usize], results: &[RunResult]| -> Vec<usize> {
        group.iter().copied().filter(|&run| phase.runs[run].skip.is_none() && results[run].failed().is_none()).collect()
    };
    if round > 0 {
        let steps =
            selected().flat_map(|(_, group)| executing(group, results)).map(|run| phase.runs[run].n_steps()).sum();
        observer.rerun_started(phase, round, steps);
    }
    for (_, group) in selected() {
        for &run_index in group {
            if let Some(reason) = &phase.runs[run_index].skip {
                results[run_index].status = RunStatus::Skipped(reason.clone());
            }
        }
        let members = executing(group, results);
        if members.is_empty() {
            continue;
        }
        let scratch = ScratchDirs::new(&options.scratch_root, &phase.phase.id);
        let context = GroupContext {
            phase,
            observer,
            scratch: &scratch,
            round,
            wanted: &wanted,
            calibration: options.calibration,
        };
        let mut states: Vec<(usize, RunResult)> = members
            .iter()
            .map(|&index| (index, std::mem::replace(&mut results[index], RunResult::new(&phase.runs[index]))))
            .collect();
        context.execute(&mut states, &mut pools);
        for (index, result) in states {
            results[index] = result;
        }
    }
}

/// A debug event at `$target`, or at `$twin` for an A/A calibration instance's (tracing
/// needs each target written out), built only when its target is enabled.
macro_rules! log_debug {
    ($calibration:expr, $target:literal, $twin:literal, $($fields:tt)*) => {
        if $calibration {
            if tracing::enabled!(target: $twin, tracing::Level::DEBUG) {
                tracing::debug!(target: $twin, $($fields)*);
            }
        } else if tracing::enabled!(target: $target, tracing::Level::DEBUG) {
            tracing::debug!(target: $target, $($fields)*);
        }
    };
}

struct GroupContext<'a> {
    phase: &'a PhasePlan,
    observer: &'a dyn Observer,
    scratch: &'a ScratchDirs,
    round: u32,
    wanted: &'a [usize],
    calibration: bool,
}

/// One rayon pool per thread count, reused across runs.
#[derive(Default)]
struct Pools {
    pools: HashMap<usize, rayon::ThreadPool>,
}

impl Pools {
    fn get(&mut self, threads: usize) -> &rayon::ThreadPool {
        self.pools.entry(threads).or_insert_with(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |index| format!("phasegate-{threads}-{index}"))
                .build()
                .expect("cannot start a thread pool")
        })
    }
}

/// The live part of a run during warm sampling.
struct Live {
    instance: Option<Box<dyn Instance>>,
}

impl GroupContext<'_> {
    fn repeats(&self, run: &Run) -> u32 {
        run.settings.repeats
    }

    fn context(&self, run: &Run, cold_sample: Option<u32>) -> RunContext {
        RunContext {
            seed: run.seed,
            threads: run.threads,
            scratch_dir: self.scratch.dir(run.index),
            round: self.round,
            cold_sample,
            twin: self.calibration.then_some(run.index as u32),
        }
    }

    fn fail(&self, run: &Run, result: &mut RunResult, message: String) {
        // A run the interrupt ended (its command killed) did not fail on its own.
        halt_if_interrupted();
        tracing::warn!(target: "phasegate::run", run = %self.logged_name(run), "run failed: {message}");
        self.observer.run_failed(self.phase, run, &message);
        result.status = RunStatus::Failed(message);
    }

    fn execute(&self, states: &mut [(usize, RunResult)], pools: &mut Pools) {
        let runs: Vec<&Run> = states.iter().map(|(index, _)| &self.phase.runs[*index]).collect();
        // Cold samples, round-robin over the group.
        let cold_rounds = runs
            .iter()
            .filter(|run| run.settings.modes.contains(&Mode::Cold))
            .map(|run| self.repeats(run))
            .max()
            .unwrap_or(0);
        for round in 0..cold_rounds {
            for (slot, (_, result)) in states.iter_mut().enumerate() {
                let run = runs[slot];
                if result.failed().is_some() || !run.settings.modes.contains(&Mode::Cold) || round >= self.repeats(run)
                {
                    continue;
                }
                let keep_outputs = !run.settings.modes.contains(&Mode::Warm) && round + 1 == self.repeats(run);
                let pool = pools.get(run.threads);
                pool.install(|| self.cold_sample(run, result, round, keep_outputs));
            }
        }
        // Warm samples: set up every instance, then warm-up and timed rounds.
        let mut lives: Vec<Live> = Vec::with_capacity(states.len());
        for (slot, (_, result)) in states.iter_mut().enumerate() {
            let run = runs[slot];
            let warm = run.settings.modes.contains(&Mode::Warm) && result.failed().is_none();
            let instance = if warm { pools.get(run.threads).install(|| self.warm_setup(run, result)) } else { None };
            lives.push(Live { instance });
        }
        if states.len() == 1 {
            // A run on its own: one pool entry for the whole series keeps the
            // per-sample overhead to the clock reads.
            let run = runs[0];
            let (_, result) = &mut states[0];
            let live = &mut lives[0];
            let warmup = run.settings.warmup;
            let repeats = self.repeats(run);
            pools.get(run.threads).install(|| {
                for index in 0..warmup {
                    self.warm_step(run, result, live, index, true);
                }
                for index in 0..repeats {
                    self.warm_step(run, result, live, index, false);
                }
            });
        } else {
            let warmup_rounds = runs.iter().map(|run| run.settings.warmup).max().unwrap_or(0);
            for round in 0..warmup_rounds {
                for (slot, (_, result)) in states.iter_mut().enumerate() {
                    let run = runs[slot];
                    if round < run.settings.warmup {
                        pools.get(run.threads).install(|| self.warm_step(run, result, &mut lives[slot], round, true));
                    }
                }
            }
            let rounds = runs.iter().map(|run| self.repeats(run)).max().unwrap_or(0);
            for round in 0..rounds {
                for (slot, (_, result)) in states.iter_mut().enumerate() {
                    let run = runs[slot];
                    if round < self.repeats(run) {
                        pools.get(run.threads).install(|| self.warm_step(run, result, &mut lives[slot], round, false));
                    }
                }
            }
        }
        for (slot, (_, result)) in states.iter_mut().enumerate() {
            let run = runs[slot];
            if let Some(instance) = lives[slot].instance.as_mut()
                && self.wanted.contains(&run.index)
                && result.failed().is_none()
            {
                let outputs = pools.get(run.threads).install(|| catch_unwind(AssertUnwindSafe(|| instance.outputs())));
                match outputs {
                    Ok(outputs) => result.outputs = outputs,
                    Err(payload) => self.fail(
                        run,
                        result,
                        format!("panicked while collecting outputs: {}", panic_message(&payload)),
                    ),
                }
            }
        }
        drop(lives);
        for (index, _) in states.iter() {
            self.scratch.remove(*index);
        }
    }

    /// Instantiates the run's kernel (for cold sample `cold_sample`, or the warm
    /// instance) and runs the set-up, catching panics.
    fn instantiate(
        &self,
        kernel: &dyn Kernel,
        run: &Run,
        cold_sample: Option<u32>,
        probe: &mut Probe,
    ) -> std::thread::Result<anyhow::Result<Box<dyn Instance>>> {
        catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<Box<dyn Instance>> {
            let mut instance = kernel.instantiate(&run.params, &self.context(run, cold_sample))?;
            instance.setup(probe)?;
            Ok(instance)
        }))
    }

    fn cold_sample(&self, run: &Run, result: &mut RunResult, index: u32, keep_outputs: bool) {
        let kernel = kernels::find(&run.kernel).expect("validated kernel");
        self.scratch.create(run.index);
        let start = clock::now();
        let mut probe = Probe::until(self.deadline(run, start));
        let outcome = self.instantiate(kernel, run, Some(index), &mut probe);
        let setup_elapsed = start.elapsed();
        let mut instance = match outcome {
            Ok(Ok(instance)) => instance,
            Ok(Err(error)) => return self.fail(run, result, format!("set-up failed: {error:#}")),
            Err(payload) => return self.fail(run, result, format!("set-up panicked: {}", panic_message(&payload))),
        };
        // The set-up may have reported its own elapsed time (mock kernel); the step's
        // report replaces only the step's share.
        let setup_seconds = probe.elapsed_override.take().unwrap_or(setup_elapsed).as_secs_f64();
        let step_start = clock::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| instance.run(&mut probe)));
        let step_elapsed = step_start.elapsed();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return self.fail(run, result, format!("cold step failed: {error:#}")),
            Err(payload) => return self.fail(run, result, format!("cold step panicked: {}", panic_message(&payload))),
        }
        let step_seconds = probe.elapsed_override.unwrap_or(step_elapsed).as_secs_f64();
        probe.metric(crate::kernel::SETUP_METRIC, setup_seconds);
        self.record(run, result, probe, Mode::Cold, index, false, setup_seconds + step_seconds);
        if keep_outputs && self.wanted.contains(&run.index) {
            match catch_unwind(AssertUnwindSafe(|| instance.outputs())) {
                Ok(outputs) => result.outputs = outputs,
                Err(payload) => {
                    self.fail(run, result, format!("panicked while collecting outputs: {}", panic_message(&payload)))
                }
            }
        }
    }

    /// The deadline of a sample that starts at `start`.
    fn deadline(&self, run: &Run, start: clock::Stamp) -> Deadline {
        Deadline::new(start, Duration::from_secs_f64(run.settings.timeout_s))
    }

    fn warm_setup(&self, run: &Run, result: &mut RunResult) -> Option<Box<dyn Instance>> {
        let kernel = kernels::find(&run.kernel).expect("validated kernel");
        self.scratch.create(run.index);
        let mut probe = Probe::default();
        let start = clock::now();
        let outcome = self.instantiate(kernel, run, None, &mut probe);
        let elapsed = probe.elapsed_override.unwrap_or(start.elapsed());
        match outcome {
            Ok(Ok(instance)) => {
                probe.events.push(Event {
                    kind: "setup".into(),
                    fields: vec![("setup_s".into(), crate::kernel::Value::Float(elapsed.as_secs_f64()))],
                });
                self.log_events(run, &probe.events);
                result.events.append(&mut probe.events);
                for warning in probe.warnings.drain(..) {
                    if !result.warnings.contains(&warning) {
                        result.warnings.push(warning);
                    }
                }
                Some(instance)
            }
            Ok(Err(error)) => {
                self.fail(run, result, format!("set-up failed: {error:#}"));
                None
            }
            Err(payload) => {
                self.fail(run, result, format!("set-up panicked: {}", panic_message(&payload)));
                None
            }
        }
    }

    fn warm_step(&self, run: &Run, result: &mut RunResult, live: &mut Live, index: u32, warmup: bool) {
        if result.failed().is_some() {
            return;
        }
        let Some(instance) = live.instance.as_mut() else { return };
        let start = clock::now();
        let mut probe = Probe::until(self.deadline(run, start));
        let outcome = catch_unwind(AssertUnwindSafe(|| instance.run(&mut probe)));
        let elapsed = start.elapsed();
        match outcome {
            Ok(Ok(())) => {
                let seconds = probe.elapsed_override.unwrap_or(elapsed).as_secs_f64();
                self.record(run, result, probe, Mode::Warm, index, warmup, seconds);
            }
            Ok(Err(error)) => {
                live.instance = None;
                self.fail(run, result, format!("step failed: {error:#}"));
            }
            Err(payload) => {
                live.instance = None;
                self.fail(run, result, format!("step panicked: {}", panic_message(&payload)));
            }
        }
    }

    /// The run's name in the log: a calibration instance's says which it is.
    fn logged_name(&self, run: &Run) -> String {
        if self.calibration { format!("{} (A/A {})", run.name(), run.index + 1) } else { run.name() }
    }

    /// Logs telemetry as `phasegate::telemetry` events, set-up and step telemetry alike
    /// (`phasegate::calibration::telemetry` for a calibration instance's).
    fn log_events(&self, run: &Run, events: &[Event]) {
        for event in events {
            let fields = || -> serde_json::Value {
                serde_json::Value::Object(
                    event.fields.iter().map(|(name, value)| (name.clone(), value_json(value))).collect(),
                )
            };
            log_debug!(
                self.calibration,
                "phasegate::telemetry",
                "phasegate::calibration::telemetry",
                phase = %self.phase.phase.id,
                run = %self.logged_name(run),
                round = self.round,
                kind = %event.kind,
                fields = %fields(),
                "telemetry"
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        run: &Run,
        result: &mut RunResult,
        mut probe: Probe,
        mode: Mode,
        index: u32,
        warmup: bool,
        seconds: f64,
    ) {
        halt_if_interrupted();
        let mut sample = Sample {
            mode,
            warmup,
            round: self.round,
            index,
            seconds,
            metrics: std::mem::take(&mut probe.metrics),
            events: Vec::new(),
        };
        let metrics = || -> serde_json::Value {
            serde_json::Value::Object(
                sample.metrics.iter().map(|(name, value)| (name.clone(), serde_json::json!(value))).collect(),
            )
        };
        log_debug!(
            self.calibration,
            "phasegate::sample",
            "phasegate::calibration::sample",
            phase = %self.phase.phase.id,
            run = %self.logged_name(run),
            mode = mode.name(),
            warmup,
            round = self.round,
            index,
            seconds,
            metrics = %metrics(),
            "sample"
        );
        self.log_events(run, &probe.events);
        sample.events = std::mem::take(&mut probe.events);
        for warning in probe.warnings {
            if !result.warnings.contains(&warning) {
                result.warnings.push(warning);
            }
        }
        self.observer.step_finished(self.phase, run, &sample);
        result.samples.push(sample);
        if seconds > run.settings.timeout_s {
            self.fail(
                run,
                result,
                format!(
                    "a {} sample took {:.3} s, more than the timeout of {} s",
                    mode.name(),
                    seconds,
                    run.settings.timeout_s
                ),
            );
        }
    }
}

/// The fields of the `phasegate::sample` (`metrics`) and `phasegate::telemetry`
/// (`fields`) log events, and of their `phasegate::calibration::` twins, that hold a
/// JSON object. Tracing records a field as a number,
/// a boolean or a string, so they are recorded as JSON text; a JSON log writes them back
/// as objects with [`json_log_line`].
pub const JSON_LOG_FIELDS: [&str; 2] = ["metrics", "fields"];

/// A line of a JSON log (an object whose event fields are under `fields`) with the
/// [`JSON_LOG_FIELDS`] that hold JSON text turned into objects. Any other line is
/// returned as it is.
pub fn json_log_line(line: &str) -> String {
    let Ok(serde_json::Value::Object(mut record)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    let Some(serde_json::Value::Object(fields)) = record.get_mut("fields") else {
        return line.to_owned();
    };
    let mut changed = false;
    for name in JSON_LOG_FIELDS {
        if let Some(field) = fields.get_mut(name)
            && let Some(text) = field.as_str()
            && let Ok(object @ serde_json::Value::Object(_)) = serde_json::from_str(text)
        {
            *field = object;
            changed = true;
        }
    }
    if changed { serde_json::Value::Object(record).to_string() } else { line.to_owned() }
}

/// A kernel value as JSON.
pub fn value_json(value: &crate::kernel::Value) -> serde_json::Value {
    use crate::kernel::Value;
    match value {
        Value::Bool(flag) => serde_json::json!(flag),
        Value::Int(integer) => serde_json::json!(integer),
        Value::Float(float) => serde_json::json!(float),
        Value::Text(text) => serde_json::json!(text),
        Value::List(items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The scratch directories of one group: `<root>/<phase>/run-<index>`.
struct ScratchDirs {
    base: PathBuf,
}

impl ScratchDirs {
    fn new(root: &Path, phase: &str) -> ScratchDirs {
        ScratchDirs { base: root.join(phase) }
    }

    fn dir(&self, run: usize) -> PathBuf {
        self.base.join(format!("run-{run}"))
    }

    fn create(&self, run: usize) {
        let dir = self.dir(run);
        // A stale directory from an earlier sample of this run is replaced.
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_ok() {
            active_scratch().push(dir);
        }
    }

    fn remove(&self, run: usize) {
        let dir = self.dir(run);
        let _ = std::fs::remove_dir_all(&dir);
        active_scratch().retain(|existing| existing != &dir);
        remove_empty_parents(&dir);
    }
}

impl Drop for ScratchDirs {
    fn drop(&mut self) {
        active_scratch().retain(|dir| {
            if dir.starts_with(&self.base) {
                let _ = std::fs::remove_dir_all(dir);
                false
            } else {
                true
            }
        });
    }
}

fn active_scratch() -> MutexGuard<'static, Vec<PathBuf>> {
    static ACTIVE: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    ACTIVE.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Removes the phase and root directories above a removed run's scratch directory
/// (`<root>/<phase>/run-<index>`) once they are empty; a failure means they are not.
fn remove_empty_parents(run_dir: &Path) {
    for parent in run_dir.ancestors().skip(1).take(2) {
        let _ = std::fs::remove_dir(parent);
    }
}

/// Exit status after an interrupt (128 + SIGINT), as shells report it.
pub const INTERRUPTED_EXIT: i32 = 130;

/// The experiment's output root and the line an interrupt appends to its run log:
/// kept current by the run, so an interrupted run is listed with the phases it
/// finished.
fn interrupt_record() -> MutexGuard<'static, Option<(PathBuf, String)>> {
    static RECORD: OnceLock<Mutex<Option<(PathBuf, String)>>> = OnceLock::new();
    RECORD.get_or_init(|| Mutex::new(None)).lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Sets (or, with `None`, clears) what an interrupt appends to the run log.
pub fn set_interrupt_record(record: Option<(PathBuf, String)>) {
    *interrupt_record() = record;
}

/// Set for good when an interrupt is being handled.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Parks the calling thread for good once an interrupt is being handled, leaving the
/// exit to the handler. Every sample's outcome is recorded through it, so a run whose
/// command the handler killed is not recorded as failed, and a finished run does not
/// race the handler to exit the process (`main` calls it before it returns).
pub fn halt_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// Whether `signal` is ignored (`SIG_IGN`), as it was when the process started unless
/// something changed it since.
fn signal_ignored(signal: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction only reads the current one into
    // `current`, a plain C struct for which all zeros is a valid value.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0 && current.sa_sigaction == libc::SIG_IGN
    }
}

/// The signals that interrupt a run: SIGTERM always, SIGINT and SIGHUP unless the
/// process started with them ignored. A background job of a non-interactive shell
/// ignores SIGINT, so the terminal's Ctrl-C is not meant for it; `nohup` ignores SIGHUP.
fn interrupt_signals() -> Vec<libc::c_int> {
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .filter(|&signal| signal == libc::SIGTERM || !signal_ignored(signal))
        .collect()
}

/// On an interrupt (SIGTERM, and SIGINT and SIGHUP unless ignored when the process
/// started): kill the running commands' process groups, remove live scratch
/// directories, append the run log line and exit with 130. Reports written so far stay
/// intact (they are written atomically). Installed once, by the first of a run's start
/// and the first execution of a phase.
pub fn install_interrupt_cleanup() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let signals = signal_hook::iterator::Signals::new(interrupt_signals());
        let handler = signals.and_then(|mut signals| {
            std::thread::Builder::new().name("interrupt".into()).spawn(move || {
                if signals.forever().next().is_some() {
                    handle_interrupt();
                }
            })
        });
        if let Err(error) = handler {
            tracing::warn!("cannot handle interrupts ({error}): an interrupted run leaves its scratch files");
        }
    });
}

fn handle_interrupt() -> ! {
    // Marked before the kills, so the threads that see their commands die park
    // instead of recording failures (see `halt_if_interrupted`).
    INTERRUPTED.store(true, Ordering::SeqCst);
    // The children first: they may still be writing into their scratch directories.
    kernels::command::kill_running();
    let active = active_scratch();
    for dir in active.iter() {
        let _ = std::fs::remove_dir_all(dir);
    }
    // The phase and root directories too, once empty, as after a finished group.
    for dir in active.iter() {
        remove_empty_parents(dir);
    }
    // A closed or full stderr must not stop the handler before it exits: the
    // messages are dropped then.
    let mut stderr = std::io::stderr();
    if let Some((root, line)) = interrupt_record().take()
        && let Err(error) = crate::report::files::append_run_log(&root, &line)
    {
        let _ = writeln!(stderr, "\n{error:#}");
    }
    let _ = writeln!(stderr, "\ninterrupted: scratch files removed; reports of finished phases are kept");
    std::process::exit(INTERRUPTED_EXIT);
}

#[cfg(test)]
mod tests {
    use super::json_log_line;

    #[test]
    fn a_json_log_line_writes_json_fields_as_objects() {
        let sample =
            r#"{"fields":{"run":"slow","round":1,"metrics":"{\"items_per_s\":2.5}"},"target":"phasegate::sample"}"#;
        assert_eq!(
            json_log_line(sample),
            r#"{"fields":{"run":"slow","round":1,"metrics":{"items_per_s":2.5}},"target":"phasegate::sample"}"#
        );
        // Text that is not a JSON object, and lines that are not JSON, stay as they are.
        let warning = r#"{"fields":{"message":"run failed","metrics":"none"},"target":"phasegate::run"}"#;
        assert_eq!(json_log_line(warning), warning);
        assert_eq!(json_log_line("not json"), "not json");
    }
}
