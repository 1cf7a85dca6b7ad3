//! The kernel interface: what the harness needs from a workload implementation.
//!
//! A [`Kernel`] is a stateless description (name, parameters, metrics, outputs) plus a
//! factory. For every run the harness hands it a validated [`Params`] set and a
//! [`RunContext`]; the kernel returns an [`Instance`] whose `setup` is untimed in warm
//! mode and whose `run` is the timed step. Everything a kernel wants to report goes
//! through the [`Probe`]: named metrics per sample, telemetry events, warnings, and
//! sub-phase timings taken with the probe's clock (the harness's clock module is the
//! only place that reads clocks).
//!
//! Kernels know nothing of TOML, serde or reports: parameters arrive as plain
//! [`Value`]s already checked against the kernel's [`ParamSpec`]s (kind, range,
//! choices), and outputs leave as plain vectors ([`Output`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::{self, Stamp};

/// A plain parameter or telemetry value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Value>),
}

impl Value {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "a string",
            Value::List(_) => "a list",
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(value) => Some(value as f64),
            Value::Float(value) => Some(value),
            _ => None,
        }
    }

    /// The value as a run's name writes it (`size=1`), which is what tells matrix
    /// points apart: `1`, `1.0` and `"1"` have one key, and so are one point. Every
    /// comparison of parameter values (partners, check points, selectors, repeated
    /// values of an axis) goes through this key or [`Value::same_point`], never `==`,
    /// which tells an integer from a float.
    pub fn point_key(&self) -> String {
        self.to_string()
    }

    /// Whether two values are one matrix point: whether their [`Value::point_key`]s
    /// are equal.
    pub fn same_point(&self, other: &Value) -> bool {
        self.point_key() == other.point_key()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(value) => write!(f, "{value}"),
            Value::Int(value) => write!(f, "{value}"),
            Value::Float(value) => write!(f, "{value}"),
            Value::Text(value) => write!(f, "{value}"),
            Value::List(values) => {
                f.write_str("[")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}
impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}
impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

/// The type of a parameter. A list-typed parameter takes a list as its value, so a
/// matrix axis over it is written as a list of lists.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    Bool,
    /// An integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A finite float within `min..=max`.
    Float {
        min: f64,
        max: f64,
    },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// Free text (paths, program names).
    Text,
    /// A list of finite floats, of exactly `len` entries when given.
    FloatList {
        len: Option<usize>,
    },
    /// A list of strings.
    TextList,
}

impl ParamKind {
    /// The kind in words, for errors and the spec reference.
    pub fn describe(&self) -> String {
        match self {
            ParamKind::Bool => "a boolean".into(),
            ParamKind::Int { min, max } => format!("an integer in {min}..={max}"),
            ParamKind::Float { min, max } => format!("a number in {min}..={max}"),
            ParamKind::Choice(choices) => format!("one of {}", choices.join(", ")),
            ParamKind::Text => "a string".into(),
            ParamKind::FloatList { len: Some(len) } => format!("a list of {len} numbers"),
            ParamKind::FloatList { len: None } => "a list of numbers".into(),
            ParamKind::TextList => "a list of strings".into(),
        }
    }

    /// Whether `value` is a single value of this kind (as opposed to a matrix axis).
    pub fn is_single(&self, value: &Value) -> bool {
        match (self, value) {
            (ParamKind::FloatList { .. } | ParamKind::TextList, Value::List(items)) => {
                items.iter().all(|item| !matches!(item, Value::List(_)))
            }
            (_, Value::List(_)) => false,
            _ => true,
        }
    }

    /// Checks one value against this kind, converting integers to floats where a float
    /// is expected.
    pub fn check(&self, value: &Value) -> Result<Value, String> {
        let mismatch = || format!("expected {}, found {}", self.describe(), value.kind_name());
        match (self, value) {
            (ParamKind::Bool, Value::Bool(_)) => Ok(value.clone()),
            (ParamKind::Int { min, max }, Value::Int(number)) => {
                if number < min || number > max {
                    Err(format!("{number} is out of range: expected {}", self.describe()))
                } else {
                    Ok(value.clone())
                }
            }
            (ParamKind::Float { min, max }, Value::Int(_) | Value::Float(_)) => {
                let number = value.as_f64().unwrap_or(f64::NAN);
                if !number.is_finite() || number < *min || number > *max {
                    Err(format!("{number} is out of range: expected {}", self.describe()))
                } else {
                    Ok(Value::Float(number))
                }
            }
            (ParamKind::Choice(choices), Value::Text(text)) => {
                if choices.contains(&text.as_str()) {
                    Ok(value.clone())
                } else {
                    Err(format!("`{text}` is not {}", self.describe()))
                }
            }
            (ParamKind::Text, Value::Text(_)) => Ok(value.clone()),
            (ParamKind::FloatList { len }, Value::List(items)) => {
                let numbers: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
                let numbers = numbers.ok_or_else(mismatch)?;
                if numbers.iter().any(|number| !number.is_finite()) {
                    return Err("every number must be finite".into());
                }
                if len.is_some_and(|len| len != numbers.len()) {
                    return Err(format!("expected {}, found a list of {}", self.describe(), numbers.len()));
                }
                Ok(Value::List(numbers.into_iter().map(Value::Float).collect()))
            }
            (ParamKind::TextList, Value::List(items)) => {
                if items.iter().all(|item| matches!(item, Value::Text(_))) {
                    Ok(value.clone())
                } else {
                    Err(mismatch())
                }
            }
            _ => Err(mismatch()),
        }
    }
}

/// One parameter a kernel accepts.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// `None` makes the parameter required.
    pub default: Option<Value>,
    pub doc: &'static str,
}

impl ParamSpec {
    pub fn new(name: &'static str, kind: ParamKind, default: impl Into<Option<Value>>, doc: &'static str) -> Self {
        ParamSpec { name, kind, default: default.into(), doc }
    }
}

/// Which direction of a metric is better; used by reports and baseline comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// Neither: counters and correctness figures.
    Neither,
}

/// The metric the harness records for every cold sample: its set-up's time, in seconds.
pub const SETUP_METRIC: &str = "setup_s";

/// One named metric a kernel may record per sample.
#[derive(Clone, Debug)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub doc: &'static str,
}

impl MetricSpec {
    pub const fn new(name: &'static str, unit: &'static str, better: Better, doc: &'static str) -> Self {
        MetricSpec { name, unit, better, doc }
    }
}

/// The validated parameters of one run: every declared parameter is present (from the
/// spec or its default) and of its declared kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    /// Builds a parameter set directly (tests, benchmarks). The harness builds it with
    /// [`Params::validate`].
    pub fn from_values(values: impl IntoIterator<Item = (String, Value)>) -> Self {
        Params { values: values.into_iter().collect() }
    }

    /// Checks `given` against `specs`: unknown names are errors naming the valid ones,
    /// missing required ones are errors, defaults fill the rest.
    /// With `allow_extra`, undeclared names are kept as given (the `command` kernel's
    /// substitution variables).
    pub fn validate(
        specs: &[ParamSpec],
        given: &BTreeMap<String, Value>,
        allow_extra: bool,
    ) -> Result<Params, ParamError> {
        let mut values = BTreeMap::new();
        for (name, value) in given {
            if allow_extra && !specs.iter().any(|spec| spec.name == name) {
                values.insert(name.clone(), value.clone());
            } else if !specs.iter().any(|spec| spec.name == name) {
                return Err(ParamError::Unknown {
                    name: name.clone(),
                    valid: specs.iter().map(|spec| spec.name.to_owned()).collect(),
                });
            }
        }
        for spec in specs {
            let value = match (given.get(spec.name), &spec.default) {
                (Some(value), _) => spec
                    .kind
                    .check(value)
                    .map_err(|message| ParamError::Invalid { name: spec.name.to_owned(), message })?,
                (None, Some(default)) => default.clone(),
                (None, None) => {
                    return Err(ParamError::Missing { name: spec.name.to_owned() });
                }
            };
            values.insert(spec.name.to_owned(), value);
        }
        Ok(Params { values })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(name, value)| (name.as_str(), value))
    }

    fn expect(&self, name: &str) -> &Value {
        self.values.get(name).unwrap_or_else(|| panic!("parameter `{name}` is not declared by this kernel"))
    }

    /// The value of an integer parameter. Panics when the kernel did not declare `name`
    /// as an integer: that is a kernel bug, not a user error.
    pub fn int(&self, name: &str) -> i64 {
        match self.expect(name) {
            Value::Int(value) => *value,
            other => panic!("parameter `{name}` is {}, not an integer", other.kind_name()),
        }
    }

    /// An integer parameter as `usize` (declared with a non-negative minimum).
    pub fn usize(&self, name: &str) -> usize {
        usize::try_from(self.int(name)).unwrap_or_else(|_| panic!("parameter `{name}` is negative"))
    }

    pub fn float(&self, name: &str) -> f64 {
        self.expect(name).as_f64().unwrap_or_else(|| panic!("parameter `{name}` is not a number"))
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.expect(name) {
            Value::Bool(value) => *value,
            other => panic!("parameter `{name}` is {}, not a boolean", other.kind_name()),
        }
    }

    pub fn text(&self, name: &str) -> &str {
        match self.expect(name) {
            Value::Text(value) => value,
            other => panic!("parameter `{name}` is {}, not a string", other.kind_name()),
        }
    }

    pub fn float_list(&self, name: &str) -> Vec<f64> {
        match self.expect(name) {
            Value::List(items) => items.iter().filter_map(Value::as_f64).collect(),
            other => panic!("parameter `{name}` is {}, not a list", other.kind_name()),
        }
    }

    pub fn text_list(&self, name: &str) -> Vec<String> {
        match self.expect(name) {
            Value::List(items) => items.iter().map(ToString::to_string).collect(),
            other => panic!("parameter `{name}` is {}, not a list", other.kind_name()),
        }
    }
}

/// A parameter set that does not fit a kernel's declaration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter `{name}`; valid parameters: {}", valid.join(", "))]
    Unknown { name: String, valid: Vec<String> },
    #[error("missing required parameter `{name}`")]
    Missing { name: String },
    #[error("parameter `{name}`: {message}")]
    Invalid { name: String, message: String },
}

/// What one run will need, estimated before anything executes, so absurd sizes are
/// refused up front.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Peak resident memory in bytes.
    pub memory_bytes: u64,
    /// Scratch disk space in bytes (in the run directory).
    pub disk_bytes: u64,
}

/// Where and how a run executes.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// The run's seed, derived from the experiment seed and the run's identity, so it is
    /// stable across invocations and independent of execution order.
    pub seed: u64,
    /// The size of the rayon pool the instance runs in.
    pub threads: usize,
    /// A directory the instance may write scratch files to; the harness removes it
    /// after the run, also when the run fails or is interrupted.
    pub scratch_dir: PathBuf,
    /// The execution round: 0 for the first, then one more per re-run. A kernel that
    /// draws seeded noise derives it from the round too, or a re-run would repeat the
    /// first round's samples and add no evidence.
    pub round: u32,
    /// The cold sample this instance is created for (each cold sample is a fresh
    /// instance), or `None` for the run's warm instance.
    pub cold_sample: Option<u32>,
    /// The A/A calibration instance this is (0 or 1), or `None` for a phase's own run.
    /// The two instances do the same work; a kernel that draws seeded noise draws it
    /// apart for each, as two instances on a real machine see different noise.
    pub twin: Option<u32>,
}

impl RunContext {
    /// The context of an instance made outside the harness: round 0, the warm
    /// instance.
    #[cfg(test)]
    pub(crate) fn outside_harness(seed: u64, threads: usize, scratch_dir: &std::path::Path) -> RunContext {
        RunContext { seed, threads, scratch_dir: scratch_dir.to_owned(), round: 0, cold_sample: None, twin: None }
    }
}

/// A named output of a run, compared between workloads (parity) or with a stored
/// snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    /// Logical shape, outermost first (e.g. `[rows, cols]` for an image).
    pub shape: Vec<usize>,
    pub data: OutputData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutputData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    /// An opaque digest (for example of a tree's structure); compared for equality.
    Digest(String),
}

impl OutputData {
    pub fn len(&self) -> usize {
        match self {
            OutputData::F32(values) => values.len(),
            OutputData::F64(values) => values.len(),
            OutputData::I64(values) => values.len(),
            OutputData::Digest(_) => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name, as snapshots store it.
    pub fn dtype(&self) -> &'static str {
        match self {
            OutputData::F32(_) => "f32",
            OutputData::F64(_) => "f64",
            OutputData::I64(_) => "i64",
            OutputData::Digest(_) => "digest",
        }
    }

    /// Whether both hold the same type and the same bits, element by element: -0.0 and
    /// 0.0 differ, a NaN equals a NaN of the same bits (`==` says the opposite of both).
    pub fn bit_identical(&self, other: &OutputData) -> bool {
        match (self, other) {
            (OutputData::F32(x), OutputData::F32(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
            }
            (OutputData::F64(x), OutputData::F64(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
            }
            (OutputData::I64(x), OutputData::I64(y)) => x == y,
            (OutputData::Digest(x), OutputData::Digest(y)) => x == y,
            _ => false,
        }
    }

    /// The values as f64, for numeric comparators; `None` for digests.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match self {
            OutputData::F32(values) => Some(values.iter().map(|&value| f64::from(value)).collect()),
            OutputData::F64(values) => Some(values.clone()),
            OutputData::I64(values) => Some(values.iter().map(|&value| value as f64).collect()),
            OutputData::Digest(_) => None,
        }
    }
}

/// A telemetry event: a kind and named fields, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: String,
    pub fields: Vec<(String, Value)>,
}

impl Event {
    /// The value of the field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(field, _)| field == name).map(|(_, value)| value)
    }
}

/// The moment the current sample runs out of time: its start plus the per-sample
/// timeout. The harness cannot interrupt an in-process kernel, so a kernel with long
/// work checks [`Deadline::passed`] between units of it and, once it has passed,
/// returns the error [`Deadline::stopped`] makes; one that does not is failed after
/// the sample.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: Stamp,
    timeout: Duration,
}

impl Deadline {
    pub fn new(start: Stamp, timeout: Duration) -> Deadline {
        Deadline { start, timeout }
    }

    /// A deadline that never passes (a probe outside the harness).
    pub fn never() -> Deadline {
        Deadline { start: clock::now(), timeout: Duration::MAX }
    }

    pub fn passed(&self) -> bool {
        self.start.elapsed() > self.timeout
    }

    /// Whether the deadline had passed at `now`, a time stamp the caller takes anyway.
    pub fn passed_at(&self, now: Stamp) -> bool {
        now.duration_since(self.start) > self.timeout
    }

    /// The time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.start.elapsed())
    }

    /// The error of `what` (a program) stopped at the deadline ("`solver` timed out:
    /// 10.002 s into the sample, past its timeout of 10 s").
    pub fn timed_out(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{what} timed out: {}", self.overrun())
    }

    /// The error of work given up at the deadline, `units` naming what `stopped`
    /// counts ("stopped after 37 of 64 insertion batches: 12.041 s into the sample,
    /// past its timeout of 10 s").
    pub fn stopped(&self, stopped: Stopped, units: &str) -> anyhow::Error {
        anyhow::anyhow!("stopped after {} of {} {units}: {}", stopped.done, stopped.total, self.overrun())
    }

    /// How far into the sample it is now, against the timeout.
    fn overrun(&self) -> String {
        format!(
            "{:.3} s into the sample, past its timeout of {} s",
            self.start.elapsed().as_secs_f64(),
            self.timeout.as_secs_f64()
        )
    }
}

/// Long work given up between two of its units (asked to stop, as at a [`Deadline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Units finished.
    pub done: usize,
    pub total: usize,
}

impl Stopped {
    /// The outcome of work whose stop condition never holds.
    pub fn never<T>(result: Result<T, Stopped>) -> T {
        result.unwrap_or_else(|stopped| {
            unreachable!("work never asked to stop stopped after {} of {} units", stopped.done, stopped.total)
        })
    }
}

/// The kernel's window on the harness during `setup` and `run`.
#[derive(Debug, Default)]
pub struct Probe {
    pub(crate) metrics: Vec<(String, f64)>,
    pub(crate) events: Vec<Event>,
    pub(crate) warnings: Vec<String>,
    pub(crate) elapsed_override: Option<Duration>,
    pub(crate) deadline: Option<Deadline>,
}

impl Probe {
    /// Records a metric for the current sample (a later value of the same name wins).
    pub fn metric(&mut self, name: &str, value: f64) {
        match self.metrics.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value,
            None => self.metrics.push((name.to_owned(), value)),
        }
    }

    /// Records a telemetry event; it lands in the report and in the JSON-lines log.
    pub fn event(&mut self, kind: &str, fields: Vec<(&str, Value)>) {
        let fields = fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
        self.events.push(Event { kind: kind.to_owned(), fields });
    }

    /// Attaches a warning to the run (deduplicated).
    pub fn warn(&mut self, message: impl Into<String>) {
        let message = message.into();
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    /// When the current sample runs out of time ([`Deadline::never`] outside the
    /// harness). In cold mode the sample, and so the deadline, starts with the set-up.
    pub fn deadline(&self) -> Deadline {
        self.deadline.unwrap_or_else(Deadline::never)
    }

    /// A probe for a sample that runs out of time at `deadline`.
    pub(crate) fn until(deadline: Deadline) -> Probe {
        Probe { deadline: Some(deadline), ..Probe::default() }
    }

    /// A probe whose sample starts now and times out after `timeout`.
    #[cfg(test)]
    pub(crate) fn with_timeout(timeout: Duration) -> Probe {
        Probe::until(Deadline::new(clock::now(), timeout))
    }

    /// A probe whose sample is already past its deadline.
    #[cfg(test)]
    pub(crate) fn past_deadline() -> Probe {
        let probe = Probe::with_timeout(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        probe
    }

    /// Starts timing a sub-phase of the step (for example the transfer phase of an
    /// import); see [`Probe::phase`].
    pub fn start(&self) -> Stamp {
        clock::now()
    }

    /// Records the time since `since` as the metric `<name>_s` and returns it.
    pub fn phase(&mut self, name: &str, since: Stamp) -> Duration {
        let elapsed = since.elapsed();
        self.metric(&format!("{name}_s"), elapsed.as_secs_f64());
        elapsed
    }

    /// Replaces the harness's measure of the current step with the kernel's own: the
    /// mock kernel's deterministic fake time, or the `command` kernel's spawn-to-exit
    /// interval (which excludes its own bookkeeping).
    pub fn report_elapsed(&mut self, elapsed: Duration) {
        self.elapsed_override = Some(elapsed);
    }

    pub fn metrics(&self) -> &[(String, f64)] {
        &self.metrics
    }

    pub fn metric_value(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(existing, _)| existing == name).map(|(_, value)| *value)
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// One prepared run of a kernel.
pub trait Instance: Send {
    /// Untimed preparation (data generation, file loading). In cold mode it is timed
    /// together with the first `run`.
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()>;

    /// The timed step. Called once per sample after `setup`.
    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()>;

    /// The outputs of the last `run`, for parity and snapshot checks.
    fn outputs(&mut self) -> Vec<Output> {
        Vec::new()
    }
}

/// A built-in workload implementation.
pub trait Kernel: Send + Sync {
    fn name(&self) -> &'static str;

    /// One line for `list` and the spec reference.
    fn summary(&self) -> &'static str;

    fn params(&self) -> Vec<ParamSpec>;

    /// The metrics `run` may record (checks may only name these, or `time`).
    fn metrics(&self) -> Vec<MetricSpec>;

    /// Whether parameters beyond [`Kernel::params`] are accepted as free variables.
    fn accepts_extra_params(&self) -> bool {
        false
    }

    /// The outputs `outputs` may return (parity checks may only name these).
    fn output_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Cross-parameter validation and a resource estimate, for every run before
    /// anything executes. Must be cheap. An error that leads with a parameter's name
    /// (bare or in backticks) is shown at that parameter.
    fn check(&self, params: &Params) -> Result<Resources, String>;

    /// The environment variables a run of `params` reads by name (valid parameters):
    /// before anything runs, each must be set, as UTF-8, for every run that executes.
    fn variables(&self, _params: &Params) -> Vec<String> {
        Vec::new()
    }

    /// Creates the instance for one run. Must be cheap; heavy work belongs in `setup`.
    fn instantiate(&self, params: &Params, context: &RunContext) -> anyhow::Result<Box<dyn Instance>>;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ParamError, ParamKind, ParamSpec, Params, Probe, Value};

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("program", ParamKind::Text, None, "required"),
            ParamSpec::new("size", ParamKind::Int { min: 1, max: 8 }, Value::Int(4), "an integer"),
            ParamSpec::new("cell", ParamKind::FloatList { len: Some(3) }, Value::List(Vec::new()), "three numbers"),
        ]
    }

    fn given(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    #[test]
    fn validation_fills_defaults_and_refuses_unknown_and_missing_parameters() {
        let params = Params::validate(&specs(), &given(&[("program", "true".into())]), false).unwrap();
        assert_eq!(params.get("size"), Some(&Value::Int(4)));
        let unknown = given(&[("program", "true".into()), ("sise", Value::Int(2))]);
        assert_eq!(
            Params::validate(&specs(), &unknown, false),
            Err(ParamError::Unknown {
                name: "sise".into(),
                valid: vec!["program".into(), "size".into(), "cell".into()]
            })
        );
        // Extra parameters are kept where the kernel takes them as variables.
        let params = Params::validate(&specs(), &unknown, true).unwrap();
        assert_eq!(params.get("sise"), Some(&Value::Int(2)));
        assert_eq!(
            Params::validate(&specs(), &given(&[("size", Value::Int(2))]), true),
            Err(ParamError::Missing { name: "program".into() })
        );
        let out_of_range = given(&[("program", "true".into()), ("size", Value::Int(9))]);
        assert_eq!(
            Params::validate(&specs(), &out_of_range, false),
            Err(ParamError::Invalid {
                name: "size".into(),
                message: "9 is out of range: expected an integer in 1..=8".into()
            })
        );
    }

    #[test]
    fn lists_of_a_fixed_length_take_exactly_that_many_numbers() {
        let cell = ParamKind::FloatList { len: Some(3) };
        let numbers = |values: &[i64]| Value::List(values.iter().map(|&value| Value::Int(value)).collect());
        assert_eq!(
            cell.check(&numbers(&[1, 2, 3])),
            Ok(Value::List(vec![Value::Float(1.0), Value::Float(2.0), Value::Float(3.0)]))
        );
        for (wrong, length) in [(numbers(&[1, 2]), 2), (numbers(&[1, 2, 3, 4]), 4)] {
            let expected = format!("expected a list of 3 numbers, found a list of {length}");
            assert_eq!(cell.check(&wrong), Err(expected), "{wrong}");
        }
        assert_eq!(ParamKind::FloatList { len: None }.check(&numbers(&[1, 2])).map(|_| ()), Ok(()));
    }

    #[test]
    fn lists_hold_only_their_own_kind_of_item() {
        let words = Value::List(vec!["-n".into(), "4".into()]);
        assert_eq!(ParamKind::TextList.check(&words), Ok(words.clone()));
        let mixed = Value::List(vec!["-n".into(), Value::Int(4)]);
        assert_eq!(ParamKind::TextList.check(&mixed), Err("expected a list of strings, found a list".into()));
        let numbers = ParamKind::FloatList { len: None };
        assert_eq!(numbers.check(&words), Err("expected a list of numbers, found a list".into()));
        for not_finite in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let list = Value::List(vec![Value::Float(1.0), Value::Float(not_finite)]);
            assert_eq!(numbers.check(&list), Err("every number must be finite".into()), "{not_finite}");
        }
    }

    #[test]
    fn a_probe_keeps_the_last_value_of_a_metric_and_one_copy_of_a_warning() {
        let mut probe = Probe::default();
        probe.metric("rate", 1.0);
        probe.metric("size", 3.0);
        probe.metric("rate", 2.0);
        assert_eq!(probe.metrics(), [("rate".to_owned(), 2.0), ("size".to_owned(), 3.0)]);
        assert_eq!(probe.metric_value("rate"), Some(2.0));
        for warning in ["slow first run", "outliers", "slow first run"] {
            probe.warn(warning);
        }
        assert_eq!(probe.warnings(), ["slow first run", "outliers"]);
    }

    #[test]
    fn a_list_of_lists_is_an_axis_of_a_list_parameter() {
        let cell = ParamKind::FloatList { len: Some(3) };
        let one = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        assert!(cell.is_single(&one));
        assert!(!cell.is_single(&Value::List(vec![one.clone(), one])));
        assert!(ParamKind::TextList.is_single(&Value::List(vec!["a".into(), "b".into()])));
        assert!(!ParamKind::TextList.is_single(&Value::List(vec![Value::List(vec!["a".into()])])));
        // A list given to a single-valued kind is an axis.
        assert!(!ParamKind::Int { min: 1, max: 8 }.is_single(&Value::List(vec![Value::Int(1), Value::Int(2)])));
        assert!(ParamKind::Int { min: 1, max: 8 }.is_single(&Value::Int(1)));
    }

    #[test]
    fn ranges_include_both_ends_and_nothing_beyond() {
        let int = ParamKind::Int { min: 1, max: 8 };
        for inside in [1, 8] {
            assert_eq!(int.check(&Value::Int(inside)), Ok(Value::Int(inside)));
        }
        for outside in [0, 9] {
            assert!(int.check(&Value::Int(outside)).is_err(), "{outside}");
        }
        let float = ParamKind::Float { min: 0.5, max: 2.0 };
        for inside in [0.5, 2.0] {
            assert_eq!(float.check(&Value::Float(inside)), Ok(Value::Float(inside)));
        }
        for outside in [0.499_999, 2.000_001, f64::NAN, f64::INFINITY] {
            assert!(float.check(&Value::Float(outside)).is_err(), "{outside}");
        }
        // An integer is taken as a float where a float is expected.
        assert_eq!(float.check(&Value::Int(2)), Ok(Value::Float(2.0)));
        let choice = ParamKind::Choice(&["on", "off"]);
        assert_eq!(choice.check(&Value::from("on")), Ok(Value::from("on")));
        assert_eq!(choice.check(&Value::from("auto")), Err("`auto` is not one of on, off".into()));
        assert_eq!(ParamKind::Bool.check(&Value::Int(1)), Err("expected a boolean, found an integer".into()));
    }
}
