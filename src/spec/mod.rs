//! Experiment specs: loading, layering and validation.
//!
//! A [`Spec`] can only be obtained from [`load`] (or [`load_str`]), which checks
//! everything that can be checked before a run: TOML syntax, unknown keys (with the
//! nearest valid one), value types, kernels and their parameters, references between
//! workloads and phases, and the syntax of check expressions. Errors are
//! [`SpecError`]s pointing at the line that caused them. Matrix expansion and the
//! resolution of check references into runs happen in `plan`, which reports its errors
//! through the same locator.
//!
//! # Layering
//!
//! Values come from four layers, merged with figment; a later layer wins:
//!
//! 1. built-in defaults (see [`Settings::builtin`]);
//! 2. the spec file, then the selected `[profile.NAME]` of the spec file, if any
//!    (every profile is checked at load, as if it were selected);
//! 3. environment variables `PHASEGATE_<PATH>`, where `__` separates path segments
//!    (`PHASEGATE_DEFAULTS__REPEATS=3`, `PHASEGATE_PHASE__A__WORKLOAD__FAST__REPEATS=9`),
//!    read without regard to case: each segment takes the spelling the spec file (its
//!    selected profile included) gives it, else lower case (see `respelled`);
//! 4. command-line `--set key.path=value`, in the order given.
//!
//! Override paths address phases, workloads and checks by id
//! (`phase.a.workload.fast.params.size`), and values are TOML values (`[64, 128]`,
//! `"text"`, `3`); a value that does not parse as TOML is taken as a string. Every value
//! keeps the name of the layer it came from, and [`Spec::sources`] lists them for the
//! report.

mod document;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::providers::Serialized;
use figment::value::{Dict, Value as FigmentValue};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

pub use self::document::Locator;
use self::document::{Document, FileOrder, valid_id};
use crate::baseline::BaselineSettings;
use crate::error::{SpecError, nearest};
use crate::expr::{self, Condition, Selected};
use crate::kernel::{Better, SETUP_METRIC, Value};
use crate::kernels;

/// Cold: a fresh instance, timed over set-up and its first step. Warm: repeated steps
/// of one set-up instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Cold,
    Warm,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Warm => "warm",
        }
    }
}

/// How the runs of a group of compared workloads are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// A B A B ...: one sample of each partner in turn, so drift hits both alike.
    Interleaved,
    /// All samples of A, then all of B.
    Sequential,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Order::Interleaved => "interleaved",
            Order::Sequential => "sequential",
        }
    }
}

/// The measurement settings of a workload, resolved through the layers and the
/// per-phase and per-workload overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Untimed steps before the warm samples.
    pub warmup: u32,
    /// Samples per mode.
    pub repeats: u32,
    pub order: Order,
    /// Thread counts; more than one makes a matrix axis.
    pub threads: Vec<usize>,
    /// Per-sample timeout in seconds.
    pub timeout_s: f64,
    pub modes: Vec<Mode>,
    /// Extra rounds of samples a check may request when its verdict is inconclusive.
    pub reruns: u32,
}

impl Settings {
    /// The built-in defaults: layer 1.
    pub fn builtin() -> Settings {
        Settings {
            warmup: 1,
            repeats: 5,
            order: Order::Interleaved,
            threads: vec![1],
            timeout_s: 600.0,
            modes: vec![Mode::Warm],
            reruns: 0,
        }
    }

    pub const KEYS: [&'static str; 7] = ["warmup", "repeats", "order", "threads", "timeout", "modes", "reruns"];
}

/// What an A/A calibration does with a check whose margin is inside the noise floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMode {
    Off,
    Warn,
    Fail,
}

/// `[calibration]`: before each phase, the reference run of every paired-ratio check
/// is run against a second instance of itself (A/A) for `repeats` interleaved pairs;
/// how far the interval of their median ratio reaches from 1, on its farther side, is
/// this machine's noise floor for that comparison. A check whose observed margin from its threshold is smaller
/// than the floor is flagged (`warn`) or failed (`fail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub mode: CalibrationMode,
    pub repeats: u32,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { mode: CalibrationMode::Off, repeats: 10 }
    }
}

/// Command-line and environment overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Environment variables; only those starting with `PHASEGATE_` are used.
    pub env: Vec<(String, String)>,
    /// `key.path=value` assignments, in order.
    pub sets: Vec<String>,
    /// A `[profile.NAME]` of the spec to apply.
    pub profile: Option<String>,
}

impl Overrides {
    /// The overrides from this process's environment. Other variables are not read,
    /// so one that is not UTF-8 does no harm; a `PHASEGATE_` one that is not is an
    /// error.
    pub fn from_env() -> Result<Overrides, String> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
                continue;
            }
            let name = name.to_string_lossy().into_owned();
            let value = value
                .into_string()
                .map_err(|value| format!("environment variable {name} is not UTF-8: {}", value.to_string_lossy()))?;
            env.push((name, value));
        }
        Ok(Overrides { env, ..Overrides::default() })
    }
}

const ENV_PREFIX: &str = "PHASEGATE_";
/// The most runs one workload's matrix may expand to.
pub const MAX_RUNS_PER_WORKLOAD: usize = 100_000;
const BUILTIN: &str = "built-in default";
const FILE: &str = "spec file";
/// How the layer of a profile's values is named, before the profile's name.
const PROFILE_LAYER: &str = "profile ";

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub key: String,
    pub value: String,
    pub origin: String,
}

impl Source {
    /// Whether a layer above the spec file set the value: a profile, an environment
    /// variable or `--set`.
    pub fn is_override(&self) -> bool {
        self.origin != FILE && self.origin != BUILTIN
    }

    /// Whether a `[profile.NAME]` set the value.
    pub fn is_from_profile(&self) -> bool {
        self.origin.starts_with(PROFILE_LAYER)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub title: String,
    pub description: String,
    pub seed: u64,
    /// The living plan document this experiment feeds, relative to the project root.
    pub plan: Option<PathBuf>,
    /// Output root for reports, relative to the project root.
    pub output: PathBuf,
    /// Why this spec's sizes cannot be timed, when they cannot (a profile made for
    /// tests sets it): checks with `requires = ["build:optimized"]` are then not
    /// applicable, with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untimed: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Phase {
    pub id: String,
    pub title: String,
    pub goal: String,
    pub needs: Vec<String>,
    pub workloads: Vec<Workload>,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub id: String,
    pub title: String,
    pub kernel: String,
    /// Parameters in file order, each with its values: one value is a fixed parameter,
    /// several make a matrix axis.
    pub params: Vec<(String, Vec<Value>)>,
    pub reference: Option<String>,
    /// The workload runs only when this environment variable is set.
    pub requires_env: Option<String>,
    pub settings: Settings,
    /// Where each setting came from (`Settings::KEYS` order).
    pub setting_sources: Vec<Source>,
    pub seed: u64,
}

impl Workload {
    /// The names of the matrix axes: parameters with several values, then `threads`
    /// when it has several.
    pub fn axes(&self) -> Vec<&str> {
        let mut axes: Vec<&str> =
            self.params.iter().filter(|(_, values)| values.len() > 1).map(|(name, _)| name.as_str()).collect();
        if self.settings.threads.len() > 1 {
            axes.push("threads");
        }
        axes
    }
}

/// Comparators of a parity check; every one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparators {
    /// Every element (or the digest) equal.
    #[serde(default)]
    pub exact: bool,
    /// Digests equal (the same as `exact`, for digest outputs).
    #[serde(default)]
    pub digest: bool,
    pub max_abs: Option<f64>,
    /// With `atol`: |a - b| <= atol + rtol |b| for every element (numpy's allclose).
    pub rtol: Option<f64>,
    pub atol: Option<f64>,
    /// Pearson correlation at least this.
    pub corr_min: Option<f64>,
    /// |sum(a) / sum(b) - 1| at most this.
    pub sum_ratio: Option<f64>,
}

impl Comparators {
    pub fn is_empty(&self) -> bool {
        *self == Comparators::default()
    }
}

/// Compare an output of one workload's runs with the same output of another's (or of
/// other runs of the same workload, told apart by selectors), run by run. A snapshot
/// check has no `against` (an empty workload id).
#[derive(Clone, Debug, PartialEq)]
pub struct Parity {
    pub of: Selected,
    pub against: Selected,
    pub output: String,
    pub comparators: Comparators,
}

/// A waived check: it runs and is reported, but its failure does not fail the run
/// until `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xfail {
    pub reason: String,
    /// `YYYY-MM-DD`; the waiver expires at the end of that day (UTC).
    pub until: String,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub id: String,
    pub rationale: String,
    pub condition: Option<Condition>,
    pub parity: Option<Parity>,
    /// Compare an output with its stored snapshot (`against` is empty).
    pub snapshot: Option<Parity>,
    /// Conditions on the machine (`cpu:FEATURE`, `env:VAR`); unmet means not applicable.
    pub requires: Vec<String>,
    /// A condition on measured values; false means not applicable.
    pub applies_if: Option<Condition>,
    pub xfail: Option<Xfail>,
}

/// A validated experiment spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub file: PathBuf,
    /// FNV-1a 64 of the file's bytes, hex.
    pub hash: String,
    pub experiment: Experiment,
    pub defaults: Settings,
    /// How runs compare with a baseline (`--baseline`).
    pub baseline: BaselineSettings,
    /// The A/A noise-floor calibration of paired-ratio checks.
    pub calibration: Calibration,
    pub phases: Vec<Phase>,
    /// The profiles the file declares.
    pub profiles: Vec<String>,
    /// The profile applied, if any.
    pub profile: Option<String>,
    /// Every value that does not come from the built-in defaults, with its layer.
    pub sources: Vec<Source>,
    /// What loading noticed that does not stop a run: overrides of a default that no
    /// workload takes, because each sets the value in a more specific place.
    pub warnings: Vec<String>,
    pub(crate) locator: Locator,
}

impl Spec {
    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// An error about the value at `path`: at its place in the file, or naming the
    /// override that set it.
    pub fn value_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        match self.overrides().find(|source| source.key == path) {
            Some(source) => override_error(&self.locator, &source.origin, path, message),
            None => self.locator.value_error(path, message),
        }
    }

    /// An error about the table at `path` under a phase (a workload's `params`, a
    /// check): at its place in the file, whichever override set a key inside it,
    /// unless overrides brought the table in (the file does not write it); the error
    /// then names them.
    pub fn table_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        let message = message.into();
        if !self.locator.has_place(path) {
            let inside = format!("{path}.");
            let mut origins: Vec<&str> = Vec::new();
            for source in self.overrides().filter(|source| source.key.starts_with(&inside)) {
                if !origins.contains(&source.origin.as_str()) {
                    origins.push(&source.origin);
                }
            }
            if !origins.is_empty() {
                return override_error(&self.locator, &origins.join(", "), path, message);
            }
        }
        self.locator.key_error(path, message)
    }

    pub fn phase(&self, id: &str) -> Option<&Phase> {
        self.phases.iter().find(|phase| phase.id == id)
    }

    /// The values set by layers above the spec file (profile, environment, `--set`).
    pub fn overrides(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter().filter(|source| source.is_override())
    }
}

/// Loads and validates the spec at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| SpecError::new(path, format!("cannot read the spec: {error}")))?;
    load_str(path, &text, overrides)
}

/// Loads and validates a spec from `text`, reporting errors against `path`.
///
/// Every profile of the file is checked too, as if it were selected (under the same
/// environment and `--set`): a broken profile is an error of the file, found before
/// anyone selects it. Its errors name it, and point at its line.
pub fn load_str(path: &Path, text: &str, overrides: &Overrides) -> Result<Spec, SpecError> {
    let document = document::parse(path, text)?;
    let spec = load_document(path, text, &document, overrides)?;
    for profile in document.profiles.keys().filter(|&profile| overrides.profile.as_ref() != Some(profile)) {
        let selected = Overrides { profile: Some(profile.clone()), ..overrides.clone() };
        load_document(path, text, &document, &selected).map_err(|mut error| {
            let named = format!("{PROFILE_LAYER}`{profile}`");
            if !error.message.contains(&named) {
                error.message = format!("{named}: {}", error.message);
            }
            error
        })?;
    }
    Ok(spec)
}

/// Loads the spec of `document` under `overrides`.
fn load_document(path: &Path, text: &str, document: &Document, overrides: &Overrides) -> Result<Spec, SpecError> {
    let mut figment = Figment::from(Layer::new(BUILTIN, builtin_tree())).merge(Layer::new(FILE, document.tree.clone()));
    let profiles: Vec<String> = document.profiles.keys().cloned().collect();
    // The keys the file spells, its selected profile's among them, for the names of
    // environment variables (see `respelled`).
    let mut spelled = document.tree.clone();
    if let Some(profile) = &overrides.profile {
        let Some(entries) = document.profiles.get(profile) else {
            let hint = if profiles.is_empty() {
                "this spec declares no `[profile.NAME]` tables".to_owned()
            } else {
                format!("profiles in this spec: {}", profiles.join(", "))
            };
            return Err(SpecError::new(path, format!("unknown profile `{profile}`")).with_hint(hint));
        };
        let mut tree = Dict::new();
        for (key, value) in entries.iter().flat_map(|(key, value)| leaves(key, value)) {
            let origin = format!("profile.{profile}.{key}");
            check_override_path(document, &key).map_err(|message| {
                document.locator.key_error(&origin, format!("{PROFILE_LAYER}`{profile}`: {message}"))
            })?;
            insert_path(&mut spelled, &key, value.clone());
            insert_path(&mut tree, &key, value);
        }
        figment = figment.merge(Layer::new(&format!("{PROFILE_LAYER}`{profile}`"), tree));
    }
    let mut env: Vec<&(String, String)> =
        overrides.env.iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (name, raw) in env {
        let key = respelled(&spelled, &name[ENV_PREFIX.len()..].replace("__", "."));
        let mut tree = Dict::new();
        for (key, value) in leaves(&key, &parse_override_value(raw)) {
            check_override_path(document, &key)
                .map_err(|message| SpecError::new(path, format!("environment variable {name}: {message}")))?;
            insert_path(&mut tree, &key, value);
        }
        figment = figment.merge(Layer::new(&format!("environment variable {name}"), tree));
    }
    for assignment in &overrides.sets {
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(SpecError::new(path, format!("`--set {assignment}` is not of the form key.path=value")));
        };
        let mut tree = Dict::new();
        for (key, value) in leaves(key.trim(), &parse_override_value(raw.trim())) {
            check_override_path(document, &key)
                .map_err(|message| SpecError::new(path, format!("`--set {assignment}`: {message}")))?;
            insert_path(&mut tree, &key, value);
        }
        figment = figment.merge(Layer::new(&format!("--set {assignment}"), tree));
    }
    let layers = Layers::new(figment);
    let raw: RawSpec = layers.figment.extract().map_err(|error| figment_error(document, &layers, error))?;
    let mut sources = Vec::new();
    for key in ["experiment", "defaults", "baseline", "calibration", "phase"] {
        if let Some(value) = layers.find(key) {
            collect_sources(&layers, key, value, &mut sources);
        }
    }
    Resolver { document, layers: &layers, path }.resolve(raw, text, profiles, overrides, sources)
}

/// The merged layers: the figment, which knows the layer of every value, and the tree
/// it merges to, merged once (`Figment::find_value` merges every layer again at each
/// call, which made loading a spec with many workloads slow).
struct Layers {
    figment: Figment,
    tree: Dict,
}

impl Layers {
    fn new(figment: Figment) -> Layers {
        let tree = figment.data().ok().and_then(|mut data| data.remove(&Profile::Default)).unwrap_or_default();
        Layers { figment, tree }
    }

    /// The merged value at the dotted `path`.
    fn find(&self, path: &str) -> Option<&FigmentValue> {
        find_in(&self.tree, path)
    }

    /// The name of the layer that set `value`, a merged value.
    fn layer_of(&self, value: &FigmentValue) -> Option<String> {
        self.figment.get_metadata(value.tag()).map(|meta| meta.name.to_string())
    }
}

/// A figment provider for one layer of the normalized tree, named for provenance.
struct Layer {
    name: String,
    tree: Dict,
}

impl Layer {
    fn new(name: &str, tree: Dict) -> Layer {
        Layer { name: name.to_owned(), tree }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.tree.clone()))
    }
}

fn builtin_tree() -> Dict {
    let defaults = Settings::builtin();
    let mut tree = Dict::new();
    let settings = Serialized::defaults(RawSettings {
        warmup: Some(defaults.warmup),
        repeats: Some(defaults.repeats),
        order: Some(defaults.order),
        threads: Some(OneOrMany::Many(defaults.threads)),
        timeout: Some(defaults.timeout_s),
        modes: Some(defaults.modes),
        reruns: Some(defaults.reruns),
    });
    let settings = settings.data().ok().and_then(|mut data| data.remove(&Profile::Default)).unwrap_or_default();
    tree.insert("defaults".into(), FigmentValue::from(settings));
    let baseline = BaselineSettings::default();
    let calibration = Serialized::defaults(Calibration::default());
    let calibration = calibration.data().ok().and_then(|mut data| data.remove(&Profile::Default)).unwrap_or_default();
    tree.insert("calibration".into(), FigmentValue::from(calibration));
    let baseline = Serialized::defaults(RawBaseline { tolerance: baseline.tolerance, quantities: baseline.quantities });
    let baseline = baseline.data().ok().and_then(|mut data| data.remove(&Profile::Default)).unwrap_or_default();
    tree.insert("baseline".into(), FigmentValue::from(baseline));
    let mut experiment = Dict::new();
    experiment.insert("output".into(), FigmentValue::from("reports".to_owned()));
    tree.insert("experiment".into(), FigmentValue::from(experiment));
    tree
}

/// Checks that an override path names existing phases, workloads and checks.
fn check_override_path(document: &Document, key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|part| part.is_empty()) {
        return Err(format!("`{key}` is not a valid key path"));
    }
    match parts.as_slice() {
        ["profile", ..] => Err("profiles cannot be overridden".into()),
        ["phase", phase, rest @ ..] => {
            let phases = &document.order.phases;
            if !phases.iter().any(|id| id == phase) {
                return Err(unknown_id("phase", phase, phases));
            }
            match rest {
                [kind @ ("workload" | "check"), id, ..] => {
                    let ids = if *kind == "workload" {
                        document.order.workloads.get(*phase)
                    } else {
                        document.order.checks.get(*phase)
                    };
                    let ids = ids.cloned().unwrap_or_default();
                    if ids.iter().any(|existing| existing == id) { Ok(()) } else { Err(unknown_id(kind, id, &ids)) }
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The key path an environment variable's name spells (its `__` already turned into
/// `.`), in the case the spec file writes each segment: the name is upper-case by
/// custom, and so read without regard to case. A segment the file does not have, or
/// has in two spellings, is lower-cased.
fn respelled(tree: &Dict, path: &str) -> String {
    let mut table = Some(tree);
    let mut segments = Vec::new();
    for segment in path.split('.') {
        let mut matching =
            table.into_iter().flat_map(|table| table.iter()).filter(|(key, _)| key.eq_ignore_ascii_case(segment));
        let found = match (matching.next(), matching.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        };
        table = found.and_then(|(_, value)| value.as_dict());
        segments.push(found.map_or_else(|| segment.to_ascii_lowercase(), |(key, _)| key.clone()));
    }
    segments.join(".")
}

/// The leaves of an override value set at `key`: an inline table such as
/// `phase.a.check={speed={rationale="x"}}` sets `phase.a.check.speed.rationale`, so
/// every path it names is checked like a dotted one.
fn leaves(key: &str, value: &FigmentValue) -> Vec<(String, FigmentValue)> {
    match value {
        FigmentValue::Dict(_, dict) if !dict.is_empty() => {
            dict.iter().flat_map(|(name, child)| leaves(&format!("{key}.{name}"), child)).collect()
        }
        _ => vec![(key.to_owned(), value.clone())],
    }
}

fn unknown_id(kind: &str, id: &str, ids: &[String]) -> String {
    let mut message = format!("no {kind} with id `{id}`");
    match nearest(id, ids.iter().map(String::as_str)) {
        Some(close) => message.push_str(&format!(" (did you mean `{close}`?)")),
        None if !ids.is_empty() => message.push_str(&format!(" (ids: {})", ids.join(", "))),
        None => {}
    }
    message
}

fn insert_path(tree: &mut Dict, key: &str, value: FigmentValue) {
    let mut parts = key.split('.').peekable();
    let mut current = tree;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current.entry(part.to_owned()).or_insert_with(|| FigmentValue::from(Dict::new()));
        if !matches!(entry, FigmentValue::Dict(..)) {
            *entry = FigmentValue::from(Dict::new());
        }
        let FigmentValue::Dict(_, next) = entry else { unreachable!("just made a dict") };
        current = next;
    }
}

/// Parses an override as a TOML value; anything that does not parse is a string.
fn parse_override_value(raw: &str) -> FigmentValue {
    let wrapped = format!("value = {raw}");
    match document::parse(Path::new("<override>"), &wrapped) {
        Ok(mut parsed) => parsed.tree.remove("value").unwrap_or_else(|| FigmentValue::from(raw.to_owned())),
        Err(_) => FigmentValue::from(raw.to_owned()),
    }
}

fn collect_sources(layers: &Layers, path: &str, value: &FigmentValue, sources: &mut Vec<Source>) {
    if let FigmentValue::Dict(_, dict) = value {
        for (key, child) in dict {
            collect_sources(layers, &format!("{path}.{key}"), child, sources);
        }
        return;
    }
    let origin = layers.layer_of(value).unwrap_or_else(|| "unknown".to_owned());
    if origin != BUILTIN {
        sources.push(Source { key: path.to_owned(), value: display_value(value), origin });
    }
}

fn display_value(value: &FigmentValue) -> String {
    match value {
        FigmentValue::String(_, text) => format!("{text:?}"),
        FigmentValue::Array(_, items) => {
            format!("[{}]", items.iter().map(display_value).collect::<Vec<_>>().join(", "))
        }
        FigmentValue::Dict(_, dict) => {
            let parts: Vec<String> =
                dict.iter().map(|(key, value)| format!("{key} = {}", display_value(value))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        FigmentValue::Bool(_, flag) => flag.to_string(),
        FigmentValue::Num(_, number) => match number_value(*number) {
            Ok(value) => value.to_string(),
            Err(message) => message,
        },
        FigmentValue::Char(_, character) => character.to_string(),
        FigmentValue::Empty(..) => "none".into(),
    }
}

/// An error about the value or table at `path`, which `origin`, an override, set. A
/// profile is part of the file, so the error points at the profile's line that set it
/// (for a table, the first of its lines inside it); other overrides have no line.
fn override_error(locator: &Locator, origin: &str, path: &str, message: impl Into<String>) -> SpecError {
    let message = format!("{} (from {origin})", message.into());
    let profile = origin.strip_prefix(PROFILE_LAYER).and_then(|name| name.strip_prefix('`')?.strip_suffix('`'));
    match profile {
        Some(profile) => {
            let place = format!("profile.{profile}.{path}");
            let place = if locator.has_place(&place) { Some(place.as_str()) } else { locator.first_within(&place) };
            match place {
                Some(place) => locator.value_error(place, message).with_key(path),
                None => SpecError::new(locator.file(), message).with_key(path),
            }
        }
        None => SpecError::new(locator.file(), message).with_key(path),
    }
}

/// The value at `path` of `tree`, a dotted path.
fn find_in<'a>(tree: &'a Dict, path: &str) -> Option<&'a FigmentValue> {
    let mut parts = path.split('.');
    let mut value = tree.get(parts.next()?)?;
    for part in parts {
        value = value.as_dict()?.get(part)?;
    }
    Some(value)
}

/// Whether `value`, the merged value at `path`, is a table that the built-in defaults
/// or the spec file already have: an error about it (a key missing from it, say) is
/// the file's, whichever override set a key inside it (see [`Place`]).
fn table_of_the_file(document: &Document, value: &FigmentValue, path: &str) -> bool {
    let is_table = |value: Option<&FigmentValue>| matches!(value, Some(FigmentValue::Dict(..)));
    is_table(Some(value)) && (is_table(find_in(&document.tree, path)) || is_table(find_in(&builtin_tree(), path)))
}

/// The overrides that set `value`, the merged value at `path`, for a message: the layer
/// of a value when it is an override; for a table, none when the built-in defaults or
/// the file have it, else the overrides of the values inside it (see [`Place`]).
fn override_origins(document: &Document, layers: &Layers, value: &FigmentValue, path: &str) -> Option<String> {
    fn collect(layers: &Layers, value: &FigmentValue, origins: &mut Vec<String>) {
        if let FigmentValue::Dict(_, dict) = value {
            dict.values().for_each(|child| collect(layers, child, origins));
        } else if let Some(origin) = layers.layer_of(value)
            && origin != FILE
            && origin != BUILTIN
            && !origins.contains(&origin)
        {
            origins.push(origin);
        }
    }
    if table_of_the_file(document, value, path) {
        return None;
    }
    let mut origins = Vec::new();
    collect(layers, value, &mut origins);
    (!origins.is_empty()).then(|| origins.join(", "))
}

/// Turns a figment extraction error into a spec error at the offending key.
fn figment_error(document: &Document, layers: &Layers, error: figment::Error) -> SpecError {
    let error = error.into_iter().next().expect("a figment error has at least one entry");
    let path = error.path.join(".");
    // An error at a table (one missing a key) is the file's when the file has the table,
    // whatever override set a key inside it: merged, the table carries the layer that
    // did (see `Place`). Some errors (an unknown enum value) come without the layer of
    // their value: it is looked up, at the path or, for an element of a list, at the
    // list.
    let origin = match (layers.find(&path), &error.metadata) {
        (Some(table @ FigmentValue::Dict(..)), _) => {
            override_origins(document, layers, table, &path).unwrap_or_default()
        }
        (_, Some(meta)) => meta.name.to_string(),
        (_, None) => {
            let mut segments: &[String] = &error.path;
            while let [parent @ .., last] = segments
                && last.parse::<usize>().is_ok()
            {
                segments = parent;
            }
            layers.find(&segments.join(".")).and_then(|value| layers.layer_of(value)).unwrap_or_default()
        }
    };
    let overridden = !(origin.is_empty() || origin == FILE || origin == BUILTIN);
    // An error at `key` (at its value when `at_value`), or naming the override that set it.
    let at = |key: &str, message: String, at_value: bool| match (overridden, at_value) {
        (true, _) => override_error(&document.locator, &origin, key, message),
        (false, true) => document.locator.value_error(key, message),
        (false, false) => document.locator.key_error(key, message),
    };
    let located = |key: &str, message: String| at(key, message, false);
    let table = if path.is_empty() { "the top level".to_owned() } else { format!("`{path}`") };
    match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // The path of an unknown field already ends with the field.
            let parent = error.path.split_last().map(|(_, parent)| parent.join(".")).unwrap_or_default();
            let table = if parent.is_empty() { "the top level".to_owned() } else { format!("`{parent}`") };
            let mut spec_error = located(&path, format!("unknown key `{field}` in {table}"));
            spec_error.hint = Some(match nearest(field, expected.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("valid keys: {}", expected.join(", ")),
            });
            spec_error
        }
        figment::error::Kind::MissingField(field) => located(&path, format!("missing key `{field}` in {table}")),
        figment::error::Kind::InvalidType(actual, expected) => {
            // An integer beyond TOML's 64 bits is no TOML value, so an override reads
            // it as text.
            let beyond_toml = matches!(actual, figment::error::Actual::Str(text)
                if text.trim_start_matches(['-', '+']).parse::<u128>().is_ok_and(|_| text.parse::<i64>().is_err()));
            let hint = if path.ends_with(".xfail") && expected.starts_with("struct ") {
                Some("write `xfail = { reason = \"why\", until = \"YYYY-MM-DD\" }`".to_owned())
            } else if beyond_toml {
                Some(format!("TOML integers lie in {}..={}: a larger one is read as text", i64::MIN, i64::MAX))
            } else {
                None
            };
            let message = format!("`{path}` has the wrong type: found {actual}, expected {}", plain_type(expected));
            let mut spec_error = at(&path, message, true);
            spec_error.hint = hint;
            spec_error
        }
        figment::error::Kind::UnknownVariant(variant, expected) => {
            let mut spec_error = at(&path, format!("`{path}`: unknown value `{variant}`"), true);
            spec_error.hint = Some(format!("expected one of {}", expected.join(", ")));
            spec_error
        }
        figment::error::Kind::InvalidValue(actual, expected) => {
            at(&path, format!("`{path}`: invalid value {actual}, expected {}", plain_type(expected)), true)
        }
        _ => located(&path, format!("`{path}`: {}", error.kind)),
    }
}

/// A type as a spec's author knows it: `u32` is a whole number in its range, `f64` a
/// number and a struct a table. A range ends where TOML's integers do (64-bit signed),
/// so a `u64` goes up to `i64::MAX`: no spec can write more.
fn plain_type(expected: &str) -> String {
    let whole = |low: i128, high: i128| format!("a whole number in {low}..={}", high.min(i128::from(i64::MAX)));
    match expected {
        "u8" => whole(0, u8::MAX.into()),
        "u16" => whole(0, u16::MAX.into()),
        "u32" => whole(0, u32::MAX.into()),
        "u64" | "u128" | "usize" => whole(0, i64::MAX.into()),
        "i8" => whole(i8::MIN.into(), i8::MAX.into()),
        "i16" => whole(i16::MIN.into(), i16::MAX.into()),
        "i32" => whole(i32::MIN.into(), i32::MAX.into()),
        "i64" | "i128" | "isize" => whole(i64::MIN.into(), i64::MAX.into()),
        "f32" | "f64" => "a number".to_owned(),
        _ if expected.starts_with("struct ") => "a table".to_owned(),
        _ => expected.to_owned(),
    }
}

/// A value or a list of them (`threads = 2` or `threads = [1, 2]`).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// By hand rather than `#[serde(untagged)]`, whose error names the enum instead of
/// saying what was expected.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, IntoDeserializer, value::SeqAccessDeserializer};

        struct Visitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a whole number or a list of whole numbers")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                T::deserialize(value.into_deserializer()).map(OneOrMany::One)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                T::deserialize(value.into_deserializer()).map(OneOrMany::One)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }

        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // settings fields: see `RawSettings`
struct RawSpec {
    experiment: RawExperiment,
    defaults: RawSettings,
    baseline: RawBaseline,
    calibration: Calibration,
    #[serde(default)]
    phase: BTreeMap<String, RawPhase>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    tolerance: f64,
    quantities: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: String,
    title: Option<String>,
    description: Option<String>,
    seed: u64,
    plan: Option<String>,
    output: String,
    untimed: Option<String>,
}

/// Settings as written. Extraction checks their keys and types; the values themselves
/// are read back through figment by [`Resolver::settings`], which also knows their
/// layer.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawSettings {
    warmup: Option<u32>,
    repeats: Option<u32>,
    order: Option<Order>,
    threads: Option<OneOrMany<usize>>,
    timeout: Option<f64>,
    modes: Option<Vec<Mode>>,
    reruns: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // settings fields: see `RawSettings`
struct RawPhase {
    title: Option<String>,
    goal: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    workload: BTreeMap<String, RawWorkload>,
    #[serde(default)]
    check: BTreeMap<String, RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // settings fields: see `RawSettings`
struct RawWorkload {
    kernel: String,
    title: Option<String>,
    reference: Option<String>,
    requires_env: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    params: BTreeMap<String, FigmentValue>,
    warmup: Option<u32>,
    repeats: Option<u32>,
    order: Option<Order>,
    threads: Option<OneOrMany<usize>>,
    timeout: Option<f64>,
    modes: Option<Vec<Mode>>,
    reruns: Option<u32>,
}

/// Unknown keys are caught when `comparators` is converted (serde cannot deny unknown
/// fields next to a flattened map).
#[derive(Debug, Deserialize)]
struct RawParity {
    of: String,
    against: Option<String>,
    output: String,
    #[serde(flatten)]
    comparators: BTreeMap<String, FigmentValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    rationale: String,
    expr: Option<String>,
    parity: Option<RawParity>,
    snapshot: Option<RawParity>,
    #[serde(default)]
    requires: Vec<String>,
    applies_if: Option<String>,
    xfail: Option<Xfail>,
}

/// Errors about resolved values: at their place in the file when the file set them,
/// naming the override (`--set`, environment variable, profile) otherwise.
///
/// An error is about a value (a leaf: `repeats`, a parity check's `output`) or about a
/// table (a key missing from a workload, a kernel's complaint about its `params`). A
/// leaf names the override that set it. A table names an override only when one
/// brought it in, or put it in place of another value: merged, a table carries the
/// layer that last set any key inside it, which says nothing of the table itself.
struct Place<'a> {
    document: &'a Document,
    layers: &'a Layers,
}

impl Place<'_> {
    /// The layer that set the value at `path`, when it is an override (for a table:
    /// when an override brought the table in).
    fn override_of(&self, path: &str) -> Option<String> {
        let value = self.layers.find(path)?;
        override_origins(self.document, self.layers, value, path)
    }

    fn overridden(&self, path: &str, message: impl Into<String>) -> Option<SpecError> {
        let origin = self.override_of(path)?;
        Some(override_error(&self.document.locator, &origin, path, message))
    }

    fn key_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        let message = message.into();
        self.overridden(path, message.clone()).unwrap_or_else(|| self.document.locator.key_error(path, message))
    }

    fn value_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        let message = message.into();
        self.overridden(path, message.clone()).unwrap_or_else(|| self.document.locator.value_error(path, message))
    }

    fn string_error(&self, path: &str, text: &str, offset: Range<usize>, message: impl Into<String>) -> SpecError {
        let message = message.into();
        self.overridden(path, message.clone())
            .unwrap_or_else(|| self.document.locator.string_error(path, text, offset, message))
    }
}

struct Resolver<'a> {
    document: &'a Document,
    layers: &'a Layers,
    path: &'a Path,
}

impl Resolver<'_> {
    /// Where errors about a value point: its place in the file, or, for a value an
    /// override set, the override.
    fn locator(&self) -> Place<'_> {
        Place { document: self.document, layers: self.layers }
    }

    fn order(&self) -> &FileOrder {
        &self.document.order
    }

    /// The error for a requirement on a `PHASEGATE_*` variable (`requirement`, at
    /// `path`): set, such a variable is read as an override of the spec, so a workload
    /// or check that needs it can never run.
    fn overriding_variable(&self, path: &str, requirement: &str, hint: &str) -> SpecError {
        let message = format!("`{requirement}` can never be met: `{ENV_PREFIX}*` variables override settings");
        self.locator().value_error(path, message).with_hint(hint)
    }

    fn resolve(
        &self,
        raw: RawSpec,
        text: &str,
        profiles: Vec<String>,
        overrides: &Overrides,
        sources: Vec<Source>,
    ) -> Result<Spec, SpecError> {
        let experiment = self.experiment(raw.experiment)?;
        let defaults = self.settings(&["defaults"])?.0;
        let mut phases = Vec::new();
        let mut raw_phases = raw.phase;
        for id in &self.order().phases {
            let raw_phase = raw_phases.remove(id).expect("phase ids come from the file");
            phases.push(self.phase(id, raw_phase, &experiment)?);
        }
        if phases.is_empty() {
            return Err(SpecError::new(self.path, "the spec has no phases")
                .with_hint("add a `[[phase]]` with an `id` and at least one `[[phase.workload]]`"));
        }
        let phases = self.order_phases(phases)?;
        let warnings = self.unused_default_overrides(&phases);
        let baseline = self.baseline(raw.baseline, &phases)?;
        if raw.calibration.repeats < 2 {
            return Err(self.locator().value_error("calibration.repeats", "an A/A calibration needs at least 2 pairs"));
        }
        Ok(Spec {
            file: self.path.to_owned(),
            hash: fnv1a_hex(text.as_bytes()),
            experiment,
            defaults,
            baseline,
            calibration: raw.calibration,
            phases,
            profiles,
            profile: overrides.profile.clone(),
            sources,
            warnings,
            locator: self.document.locator.clone(),
        })
    }

    /// Overrides of `defaults.KEY` or `phase.ID.defaults.KEY` that no workload takes:
    /// each workload they reach sets KEY itself (or its phase does, under the global
    /// defaults), so they change no run.
    fn unused_default_overrides(&self, phases: &[Phase]) -> Vec<String> {
        let has = |path: &str, key: &str| self.layers.find(&format!("{path}.{key}")).is_some();
        // Where a workload takes KEY from: the first of its own table, its phase's
        // defaults and the global defaults that has it.
        let taken_from = |phase: &str, workload: &str, key: &str| -> String {
            let own = format!("phase.{phase}.workload.{workload}");
            let phase_defaults = format!("phase.{phase}.defaults");
            [own, phase_defaults].into_iter().find(|path| has(path, key)).unwrap_or_else(|| "defaults".to_owned())
        };
        let mut warnings = Vec::new();
        let scopes = std::iter::once(("defaults".to_owned(), None))
            .chain(phases.iter().map(|phase| (format!("phase.{}.defaults", phase.id), Some(phase.id.as_str()))));
        for (scope, only) in scopes {
            for key in Settings::KEYS {
                let path = format!("{scope}.{key}");
                let Some(origin) = self.locator().override_of(&path) else { continue };
                let mut reached = phases
                    .iter()
                    .filter(|phase| only.is_none_or(|id| phase.id == id))
                    .flat_map(|phase| phase.workloads.iter().map(|workload| taken_from(&phase.id, &workload.id, key)));
                let first = reached.next().unwrap_or_default();
                if first != scope && reached.all(|from| from != scope) {
                    warnings.push(format!(
                        "`{path}` (from {origin}) changes no run: every workload it reaches takes `{key}` from a \
                         more specific place, such as `{first}.{key}`"
                    ));
                }
            }
        }
        warnings
    }

    fn baseline(&self, raw: RawBaseline, phases: &[Phase]) -> Result<BaselineSettings, SpecError> {
        if !(0.0..=10.0).contains(&raw.tolerance) {
            return Err(self.locator().value_error(
                "baseline.tolerance",
                format!("tolerance {} is outside 0..=10 (a relative change)", raw.tolerance),
            ));
        }
        if raw.quantities.is_empty() {
            return Err(self
                .locator()
                .value_error("baseline.quantities", "no quantities: a baseline would compare nothing"));
        }
        for (index, quantity) in raw.quantities.iter().enumerate() {
            if raw.quantities[..index].contains(quantity) {
                return Err(self.locator().value_error("baseline.quantities", format!("`{quantity}` is listed twice")));
            }
            let metrics = || {
                phases.iter().flat_map(|phase| &phase.workloads).filter_map(|workload| kernels::find(&workload.kernel))
            };
            let known = quantity == "time"
                || metrics().any(|kernel| kernel.metrics().iter().any(|metric| metric.name == quantity));
            if !known {
                return Err(self.locator().value_error(
                    "baseline.quantities",
                    format!("`{quantity}` is neither `time` nor a metric of this spec's kernels"),
                ));
            }
            // A baseline compares only what has a better direction.
            let directed = quantity == "time"
                || metrics().any(|kernel| {
                    kernel.metrics().iter().any(|metric| metric.name == quantity && metric.better != Better::Neither)
                });
            if !directed {
                return Err(self.locator().value_error(
                    "baseline.quantities",
                    format!(
                        "metric `{quantity}` is neither better higher nor lower, so a change in it is no regression"
                    ),
                ));
            }
        }
        Ok(BaselineSettings { tolerance: raw.tolerance, quantities: raw.quantities })
    }

    fn experiment(&self, raw: RawExperiment) -> Result<Experiment, SpecError> {
        if !valid_id(&raw.name) {
            return Err(self
                .locator()
                .value_error("experiment.name", format!("invalid experiment name `{}`", raw.name))
                .with_hint("names start with a lowercase letter and contain only a-z, 0-9 and `_`"));
        }
        let output = PathBuf::from(&raw.output);
        if raw.output.trim().is_empty() {
            return Err(self.locator().value_error("experiment.output", "`experiment.output` is empty"));
        }
        if raw.untimed.as_ref().is_some_and(|why| why.trim().is_empty()) {
            return Err(self
                .locator()
                .value_error("experiment.untimed", "`experiment.untimed` is empty")
                .with_hint("give the reason the sizes cannot be timed, or leave the key out"));
        }
        Ok(Experiment {
            title: raw.title.unwrap_or_else(|| raw.name.clone()),
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            seed: raw.seed,
            plan: raw.plan.map(PathBuf::from),
            output,
            untimed: raw.untimed,
        })
    }

    /// Resolves the settings at the first of `paths` that has each key, with sources.
    fn settings(&self, paths: &[&str]) -> Result<(Settings, Vec<Source>), SpecError> {
        let mut settings = Settings::builtin();
        let mut sources = Vec::new();
        for key in Settings::KEYS {
            let Some((path, value)) =
                paths.iter().find_map(|path| self.layers.find(&format!("{path}.{key}")).map(|value| (*path, value)))
            else {
                continue;
            };
            let full = format!("{path}.{key}");
            let origin = self.layers.layer_of(value).unwrap_or_else(|| BUILTIN.to_owned());
            let invalid = |message: String| self.locator().value_error(&full, format!("`{full}`: {message}"));
            match key {
                "warmup" => settings.warmup = value.deserialize().map_err(|error| invalid(error.to_string()))?,
                "repeats" => {
                    settings.repeats = value.deserialize().map_err(|error| invalid(error.to_string()))?;
                    if settings.repeats == 0 {
                        return Err(invalid("must be at least 1".into()));
                    }
                }
                "order" => settings.order = value.deserialize().map_err(|error| invalid(error.to_string()))?,
                "threads" => {
                    let threads: OneOrMany<usize> = value.deserialize().map_err(|error| invalid(error.to_string()))?;
                    settings.threads = threads.into_vec();
                    if settings.threads.is_empty() {
                        return Err(invalid("empty list: give at least one thread count".into()));
                    }
                    if let Some(bad) = settings.threads.iter().find(|&&threads| threads == 0 || threads > 1024) {
                        return Err(invalid(format!("{bad} threads is out of range 1..=1024")));
                    }
                    let threads = &settings.threads;
                    if let Some((_, twice)) =
                        threads.iter().enumerate().find(|&(index, count)| threads[..index].contains(count))
                    {
                        return Err(invalid(format!("{twice} threads is listed twice")));
                    }
                }
                "timeout" => {
                    settings.timeout_s = value.deserialize().map_err(|error| invalid(error.to_string()))?;
                    if !(settings.timeout_s > 0.0 && settings.timeout_s <= 86_400.0) {
                        return Err(invalid("must be a number of seconds in (0, 86400]".into()));
                    }
                }
                "modes" => {
                    settings.modes = value.deserialize().map_err(|error| invalid(error.to_string()))?;
                    if settings.modes.is_empty() {
                        return Err(invalid("give at least one of \"cold\", \"warm\"".into()));
                    }
                    settings.modes.sort();
                    if let Some(twice) = settings.modes.windows(2).find(|pair| pair[0] == pair[1]) {
                        return Err(invalid(format!("\"{}\" is listed twice", twice[0].name())));
                    }
                }
                _ => settings.reruns = value.deserialize().map_err(|error| invalid(error.to_string()))?,
            }
            sources.push(Source { key: key.to_owned(), value: display_value(value), origin });
        }
        Ok((settings, sources))
    }

    fn phase(&self, id: &str, raw: RawPhase, experiment: &Experiment) -> Result<Phase, SpecError> {
        let base = format!("phase.{id}");
        // The phase's defaults are checked even where every workload overrides them.
        self.settings(&[&format!("{base}.defaults"), "defaults"])?;
        let mut workloads = Vec::new();
        let mut raw_workloads = raw.workload;
        let workload_ids = self.order().workloads.get(id).cloned().unwrap_or_default();
        for workload_id in &workload_ids {
            let raw_workload = raw_workloads.remove(workload_id).expect("workload ids come from the file");
            workloads.push(self.workload(id, workload_id, raw_workload, experiment)?);
        }
        if workloads.is_empty() {
            return Err(self
                .locator()
                .key_error(&base, format!("phase `{id}` has no workloads"))
                .with_hint("add a `[[phase.workload]]` after this phase's `[[phase]]` header"));
        }
        for workload in &workloads {
            if let Some(reference) = &workload.reference {
                let key = format!("{base}.workload.{}.reference", workload.id);
                if reference == &workload.id {
                    return Err(self.locator().value_error(&key, "a workload cannot be its own reference"));
                }
                if !workload_ids.contains(reference) {
                    return Err(self.locator().value_error(&key, unknown_id("workload", reference, &workload_ids)));
                }
            }
        }
        let needs = &raw.needs;
        if let Some((_, twice)) = needs.iter().enumerate().find(|&(index, need)| needs[..index].contains(need)) {
            return Err(self.locator().value_error(&format!("{base}.needs"), format!("`{twice}` is listed twice")));
        }
        let mut checks = Vec::new();
        let mut raw_checks = raw.check;
        for check_id in self.order().checks.get(id).cloned().unwrap_or_default() {
            let raw_check = raw_checks.remove(&check_id).expect("check ids come from the file");
            checks.push(self.check(id, &check_id, raw_check, &workloads)?);
        }
        Ok(Phase {
            id: id.to_owned(),
            title: raw.title.unwrap_or_else(|| id.to_owned()),
            goal: raw.goal.unwrap_or_default(),
            needs: raw.needs,
            workloads,
            checks,
        })
    }

    fn workload(
        &self,
        phase: &str,
        id: &str,
        raw: RawWorkload,
        experiment: &Experiment,
    ) -> Result<Workload, SpecError> {
        let base = format!("phase.{phase}.workload.{id}");
        let Some(kernel) = kernels::find(&raw.kernel) else {
            let names = kernels::names();
            let mut error =
                self.locator().value_error(&format!("{base}.kernel"), format!("unknown kernel `{}`", raw.kernel));
            error.hint = Some(match nearest(&raw.kernel, names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? kernels: {}", names.join(", ")),
                None => format!("kernels: {}", names.join(", ")),
            });
            return Err(error);
        };
        let specs = kernel.params();
        let mut names: Vec<String> = self.order().params.get(&base).cloned().unwrap_or_default();
        names.retain(|name| raw.params.contains_key(name));
        let mut extra: Vec<&String> = raw.params.keys().filter(|name| !names.contains(name)).collect();
        extra.sort();
        names.extend(extra.into_iter().cloned());
        let mut params = Vec::new();
        for name in names {
            let key = format!("{base}.params.{name}");
            if name == "threads" {
                return Err(self
                    .locator()
                    .key_error(&key, "`threads` is a setting of the workload, not a kernel parameter")
                    .with_hint("write `threads = [1, 2]` beside `kernel`, or in `[defaults]`"));
            }
            let value =
                convert_value(&raw.params[&name]).map_err(|message| self.locator().value_error(&key, message))?;
            let spec = specs.iter().find(|spec| spec.name == name);
            if spec.is_none() && !kernel.accepts_extra_params() {
                let valid: Vec<&str> = specs.iter().map(|spec| spec.name).collect();
                let mut error = self
                    .locator()
                    .key_error(&key, format!("unknown parameter `{name}` for kernel `{}`", kernel.name()));
                error.hint = Some(match nearest(&name, valid.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`? valid parameters: {}", valid.join(", ")),
                    None => format!("valid parameters: {}", valid.join(", ")),
                });
                return Err(error);
            }
            let single = spec.map_or(!matches!(value, Value::List(_)), |spec| spec.kind.is_single(&value));
            let values = match (single, value) {
                (true, value) => vec![value],
                (false, Value::List(values)) => values,
                (false, value) => vec![value],
            };
            if values.is_empty() {
                return Err(self
                    .locator()
                    .value_error(&key, format!("parameter `{name}` has an empty list: the matrix would be empty")));
            }
            let mut checked = Vec::with_capacity(values.len());
            let mut keys = HashSet::with_capacity(values.len());
            for value in values {
                let value = match spec {
                    Some(spec) => spec.kind.check(&value),
                    None if matches!(value, Value::List(_)) => Err("expected a single value".to_owned()),
                    None => Ok(value),
                }
                .map_err(|message| self.locator().value_error(&key, format!("parameter `{name}`: {message}")))?;
                if let Value::Float(number) = value
                    && !number.is_finite()
                {
                    return Err(self
                        .locator()
                        .value_error(&key, format!("parameter `{name}`: {number} is not finite")));
                }
                // Runs are named by their values as written out, so `1` and `1.0` are
                // the same point.
                if !keys.insert(value.point_key()) {
                    return Err(self.locator().value_error(&key, format!("parameter `{name}` lists {value} twice")));
                }
                checked.push(value);
            }
            params.push((name, checked));
        }
        for spec in &specs {
            if spec.default.is_none() && !params.iter().any(|(name, _)| name == spec.name) {
                return Err(self
                    .locator()
                    .key_error(&base, format!("workload `{id}` misses the required parameter `{}`", spec.name))
                    .with_hint(format!("{}: {}", spec.name, spec.doc)));
            }
        }
        if let Some(variable) = &raw.requires_env {
            if variable.is_empty() {
                return Err(self.locator().value_error(&format!("{base}.requires_env"), "empty variable name"));
            }
            if variable.starts_with(ENV_PREFIX) {
                let hint = format!("name a variable outside `{ENV_PREFIX}`");
                return Err(self.overriding_variable(&format!("{base}.requires_env"), variable, &hint));
            }
        }
        let phase_path = format!("phase.{phase}.defaults");
        let (settings, setting_sources) = self.settings(&[&base, &phase_path, "defaults"])?;
        let runs = params
            .iter()
            .map(|(_, values)| values.len())
            .chain([settings.threads.len()])
            .try_fold(1usize, |product, length| product.checked_mul(length))
            .filter(|&runs| runs <= MAX_RUNS_PER_WORKLOAD);
        if runs.is_none() {
            let axes: Vec<String> = params
                .iter()
                .map(|(name, values)| (name.as_str(), values.len()))
                .chain([("threads", settings.threads.len())])
                .filter(|&(_, length)| length > 1)
                .map(|(name, length)| format!("{name} ({length})"))
                .collect();
            return Err(self.locator().key_error(
                &format!("{base}.params"),
                format!("workload `{id}` expands to more than {MAX_RUNS_PER_WORKLOAD} runs: {}", axes.join(" x ")),
            ));
        }
        Ok(Workload {
            id: id.to_owned(),
            title: raw.title.unwrap_or_default(),
            kernel: kernel.name().to_owned(),
            params,
            reference: raw.reference,
            requires_env: raw.requires_env,
            settings,
            setting_sources,
            seed: raw.seed.unwrap_or(experiment.seed),
        })
    }

    fn check(&self, phase: &str, id: &str, raw: RawCheck, workloads: &[Workload]) -> Result<Check, SpecError> {
        let base = format!("phase.{phase}.check.{id}");
        let ids: Vec<String> = workloads.iter().map(|workload| workload.id.clone()).collect();
        let parse_condition = |key: &str, text: &str| -> Result<Condition, SpecError> {
            let path = format!("{base}.{key}");
            // Reports, plans and `list` show a condition inline, as they do a rationale.
            if text.trim().contains('\n') {
                return Err(self
                    .locator()
                    .value_error(&path, format!("`{key}` spans several lines: reports and plans show it as one"))
                    .with_hint("write it on one line; a TOML string may be as long as it needs"));
            }
            let mut condition = expr::parse(text)
                .map_err(|error| self.locator().string_error(&path, text, error.span, error.message))?;
            // Blank lines around it are no second line, and are not shown.
            condition.text = text.trim().to_owned();
            if condition.references().is_empty() {
                return Err(self
                    .locator()
                    .value_error(&path, "the condition names no workload, so no measurement can decide it")
                    .with_hint("reference a workload's statistic, e.g. `fast.warm.median <= 0.01`"));
            }
            for reference in condition.references() {
                let Some(workload) = workloads.iter().find(|workload| workload.id == reference.workload) else {
                    return Err(self.locator().string_error(
                        &path,
                        text,
                        reference.span.clone(),
                        unknown_id("workload", &reference.workload, &ids),
                    ));
                };
                if !workload.settings.modes.contains(&reference.mode) {
                    let modes = workload.settings.modes.iter().map(|mode| mode.name()).collect::<Vec<_>>().join(", ");
                    // The modes may come from an override, which is then the cause.
                    let origin = workload.setting_sources.iter().find(|source| source.key == "modes");
                    let origin = match origin.filter(|source| source.is_override()) {
                        Some(source) => format!(", from {}", source.origin),
                        None => String::new(),
                    };
                    return Err(self.locator().string_error(
                        &path,
                        text,
                        reference.span.clone(),
                        format!(
                            "workload `{}` does not run in {} mode (modes: {modes}{origin})",
                            workload.id,
                            reference.mode.name(),
                        ),
                    ));
                }
                if !reference.is_time() {
                    let kernel = kernels::find(&workload.kernel).expect("validated kernel");
                    let mut metrics: Vec<&str> = kernel.metrics().iter().map(|metric| metric.name).collect();
                    // The harness times every cold sample's set-up.
                    if reference.mode == Mode::Cold {
                        metrics.push(SETUP_METRIC);
                    }
                    if reference.quantity == SETUP_METRIC && reference.mode != Mode::Cold {
                        return Err(self.locator().string_error(
                            &path,
                            text,
                            reference.span.clone(),
                            format!(
                                "`{SETUP_METRIC}` is the set-up time of cold samples: write `{}.cold.{SETUP_METRIC}`",
                                reference.workload
                            ),
                        ));
                    }
                    if !metrics.contains(&reference.quantity.as_str()) {
                        let mut message = format!("kernel `{}` has no metric `{}`", kernel.name(), reference.quantity);
                        match nearest(&reference.quantity, metrics.iter().copied()) {
                            Some(close) => message.push_str(&format!(" (did you mean `{close}`?)")),
                            None if metrics.is_empty() => message.push_str(" (it records only `time`)"),
                            None => message.push_str(&format!(" (metrics: time, {})", metrics.join(", "))),
                        }
                        return Err(self.locator().string_error(&path, text, reference.span.clone(), message));
                    }
                }
                self.check_selectors(&path, text, reference.span.clone(), workload, &reference.selectors)?;
            }
            Ok(condition)
        };
        let condition = raw.expr.as_deref().map(|text| parse_condition("expr", text)).transpose()?;
        let applies_if = raw.applies_if.as_deref().map(|text| parse_condition("applies_if", text)).transpose()?;
        let parity = match raw.parity {
            Some(raw_parity) => Some(self.comparison(&base, "parity", raw_parity, workloads, &ids)?),
            None => None,
        };
        let snapshot = match raw.snapshot {
            Some(raw_snapshot) => Some(self.comparison(&base, "snapshot", raw_snapshot, workloads, &ids)?),
            None => None,
        };
        if condition.is_none() && parity.is_none() && snapshot.is_none() {
            return Err(self.locator().key_error(&base, format!("check `{id}` has no `expr`, `parity` or `snapshot`"))
                .with_hint("write `expr = \"a.warm.median / b.warm.median >= 2\"`, `parity = { of, against, output, ... }` or `snapshot = { of, output, ... }`"));
        }
        if raw.rationale.trim().is_empty() {
            return Err(self.locator().value_error(
                &format!("{base}.rationale"),
                "the rationale is empty: say in one line why this threshold",
            ));
        }
        if raw.rationale.trim().contains('\n') {
            return Err(self
                .locator()
                .value_error(
                    &format!("{base}.rationale"),
                    "the rationale spans several lines: reports and plans show it as one",
                )
                .with_hint("say it in one line; longer explanations belong in a comment above the check"));
        }
        for requirement in &raw.requires {
            // CPU feature names (`avx512f`, `sse4.2`) and variable names are words.
            let word = |rest: &str| {
                !rest.is_empty()
                    && rest.chars().all(|character| character.is_ascii_alphanumeric() || "._".contains(character))
            };
            let valid = requirement == "build:optimized"
                || requirement.strip_prefix("cpu:").or_else(|| requirement.strip_prefix("env:")).is_some_and(word);
            if requirement.strip_prefix("env:").is_some_and(|name| name.starts_with(ENV_PREFIX)) {
                let hint = format!("name a variable outside `{ENV_PREFIX}`, or use `build:optimized`");
                return Err(self.overriding_variable(&format!("{base}.requires"), requirement, &hint));
            }
            if !valid {
                return Err(self
                    .locator()
                    .value_error(&format!("{base}.requires"), format!("invalid requirement `{requirement}`"))
                    .with_hint(
                        "requirements are `cpu:FEATURE` (e.g. `cpu:avx2`), `env:VARIABLE` or `build:optimized`",
                    ));
            }
        }
        if let Some(xfail) = &raw.xfail
            && xfail.reason.trim().is_empty()
        {
            return Err(self.locator().value_error(
                &format!("{base}.xfail.reason"),
                "the waiver's reason is empty: say why the check may fail until then",
            ));
        }
        if let Some(xfail) = &raw.xfail
            && crate::clock::parse_date(&xfail.until).is_none()
        {
            return Err(self.locator().value_error(
                &format!("{base}.xfail.until"),
                format!("`until = \"{}\"` is not a date YYYY-MM-DD", xfail.until),
            ));
        }
        Ok(Check {
            id: id.to_owned(),
            rationale: raw.rationale,
            condition,
            parity,
            snapshot,
            requires: raw.requires,
            applies_if,
            xfail: raw.xfail,
        })
    }

    /// Selectors name parameters the workload sets (or `threads`); `span` is where the
    /// selected reference sits in `text`, the value at `path`.
    fn check_selectors(
        &self,
        path: &str,
        text: &str,
        span: Range<usize>,
        workload: &Workload,
        selectors: &[(String, Value)],
    ) -> Result<(), SpecError> {
        for (name, _) in selectors {
            let known = name == "threads" || workload.params.iter().any(|(param, _)| param == name);
            if !known {
                let given: Vec<&str> = workload.params.iter().map(|(param, _)| param.as_str()).collect();
                return Err(self.locator().string_error(
                    path,
                    text,
                    span,
                    format!(
                        "selector `{name}`: workload `{}` sets no parameter `{name}` (it sets: threads{}{})",
                        workload.id,
                        if given.is_empty() { "" } else { ", " },
                        given.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A `parity` (two workloads) or `snapshot` (one workload and its stored output)
    /// comparison.
    fn comparison(
        &self,
        base: &str,
        name: &str,
        raw: RawParity,
        workloads: &[Workload],
        ids: &[String],
    ) -> Result<Parity, SpecError> {
        let key = format!("{base}.{name}");
        let against = match (name, raw.against) {
            ("parity", Some(against)) => against,
            ("parity", None) => {
                return Err(self.locator().value_error(&key, "parity needs `against`, the workload to compare with"));
            }
            (_, Some(_)) => {
                return Err(self.locator().value_error(
                    &format!("{key}.against"),
                    "a snapshot compares with the stored output: drop `against`",
                ));
            }
            (_, None) => String::new(),
        };
        let select = |field: &str, text: &str| -> Result<(Selected, &Workload), SpecError> {
            let path = format!("{key}.{field}");
            let selected = expr::parse_selected(text)
                .map_err(|error| self.locator().string_error(&path, text, error.span, error.message))?;
            let Some(workload) = workloads.iter().find(|workload| workload.id == selected.workload) else {
                return Err(self.locator().value_error(&path, unknown_id("workload", &selected.workload, ids)));
            };
            self.check_selectors(&path, text, 0..text.len(), workload, &selected.selectors)?;
            Ok((selected, workload))
        };
        let mut compared = vec![select("of", &raw.of)?];
        if !against.is_empty() {
            compared.push(select("against", &against)?);
        }
        for (_, workload) in &compared {
            let workload_id = &workload.id;
            let kernel = kernels::find(&workload.kernel).expect("validated kernel");
            let outputs: Vec<String> = if kernel.name() == "command" {
                let names = workload.params.iter().find(|(name, _)| name == "output_name").map(|(_, values)| values);
                if names.is_some_and(|names| names.len() > 1) {
                    return Err(self.locator().value_error(
                        &key,
                        format!("workload `{workload_id}` varies `output_name`: a {name} check compares one output"),
                    ));
                }
                vec![names.map_or_else(|| "image".to_owned(), |names| names[0].to_string())]
            } else {
                kernel.output_names().iter().map(|name| (*name).to_owned()).collect()
            };
            if !outputs.contains(&raw.output) {
                return Err(self.locator().value_error(
                    &format!("{key}.output"),
                    format!(
                        "workload `{workload_id}` (kernel `{}`) has no output `{}`{}",
                        kernel.name(),
                        raw.output,
                        if outputs.is_empty() { String::new() } else { format!("; outputs: {}", outputs.join(", ")) }
                    ),
                ));
            }
        }
        let mut compared = compared.into_iter().map(|(selected, _)| selected);
        let of = compared.next().expect("`of` is always compared");
        let against = compared.next().unwrap_or_default();
        if of.same_runs(&against) {
            return Err(self
                .locator()
                .value_error(&key, format!("`of` and `against` both name `{of}`: parity compares two sets of runs"))
                .with_hint("name another workload, or other runs of this one: `of = \"k[variant=simd]\", against = \"k[variant=scalar]\"`"));
        }
        let mut dict = Dict::new();
        for (comparator, value) in raw.comparators {
            dict.insert(comparator, value);
        }
        let comparators: Comparators = FigmentValue::from(dict).deserialize().map_err(|error| {
            let message = match &error.kind {
                figment::error::Kind::UnknownField(field, _) => format!(
                    "unknown {name} key `{field}`; valid: of, {}output, exact, digest, max_abs, rtol, atol, corr_min, sum_ratio",
                    if name == "parity" { "against, " } else { "" }
                ),
                other => format!("{name}: {other}"),
            };
            // At the comparator the error is about (its path ends with it).
            let at = if error.path.is_empty() { key.clone() } else { format!("{key}.{}", error.path.join(".")) };
            self.locator().value_error(&at, message)
        })?;
        if comparators.is_empty() {
            return Err(self
                .locator()
                .value_error(&key, format!("{name} needs at least one comparator"))
                .with_hint("exact = true, digest = true, max_abs, rtol/atol, corr_min or sum_ratio"));
        }
        let limits = [
            ("max_abs", comparators.max_abs, 0.0..=f64::MAX),
            ("rtol", comparators.rtol, 0.0..=f64::MAX),
            ("atol", comparators.atol, 0.0..=f64::MAX),
            ("corr_min", comparators.corr_min, -1.0..=1.0),
            ("sum_ratio", comparators.sum_ratio, 0.0..=f64::MAX),
        ];
        for (comparator, value, range) in limits {
            if let Some(value) = value
                && !range.contains(&value)
            {
                let expected = if comparator == "corr_min" { "in -1..=1" } else { "finite and not negative" };
                return Err(self.locator().value_error(
                    &format!("{key}.{comparator}"),
                    format!("`{comparator} = {value}` must be {expected}"),
                ));
            }
        }
        if comparators.atol.is_some() && comparators.rtol.is_none() {
            return Err(self.locator().value_error(
                &format!("{key}.atol"),
                "`atol` needs `rtol` (write `rtol = 0` for an absolute tolerance)",
            ));
        }
        Ok(Parity { of, against, output: raw.output, comparators })
    }

    /// Orders phases so that every phase comes after those it `needs`, keeping file
    /// order otherwise; rejects unknown phases and cycles.
    fn order_phases(&self, phases: Vec<Phase>) -> Result<Vec<Phase>, SpecError> {
        let ids: Vec<String> = phases.iter().map(|phase| phase.id.clone()).collect();
        for phase in &phases {
            for need in &phase.needs {
                if !ids.contains(need) {
                    return Err(self
                        .locator()
                        .value_error(&format!("phase.{}.needs", phase.id), unknown_id("phase", need, &ids)));
                }
            }
        }
        let mut ordered: Vec<Phase> = Vec::with_capacity(phases.len());
        let mut pending = phases;
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|phase| phase.needs.iter().all(|need| ordered.iter().any(|done| &done.id == need)));
            match ready {
                Some(index) => ordered.push(pending.remove(index)),
                None => {
                    if let Some(phase) = pending.iter().find(|phase| phase.needs.contains(&phase.id)) {
                        return Err(self.locator().value_error(
                            &format!("phase.{}.needs", phase.id),
                            format!("phase `{}` needs itself", phase.id),
                        ));
                    }
                    // Every pending phase needs a pending one, so following the needs
                    // from any of them comes round to a phase seen before.
                    let mut path: Vec<&Phase> = vec![&pending[0]];
                    let start = loop {
                        let last = path[path.len() - 1];
                        let next = pending
                            .iter()
                            .find(|phase| last.needs.contains(&phase.id))
                            .expect("a pending phase needs a pending phase");
                        if let Some(seen) = path.iter().position(|phase| phase.id == next.id) {
                            break seen;
                        }
                        path.push(next);
                    };
                    let members = path.split_off(start);
                    let cycle: Vec<&Phase> =
                        pending.iter().filter(|phase| members.iter().any(|member| member.id == phase.id)).collect();
                    let ids: Vec<&str> = cycle.iter().map(|phase| phase.id.as_str()).collect();
                    // At a `needs` an override set, when one did: it closed the cycle.
                    let place = |phase: &&Phase| format!("phase.{}.needs", phase.id);
                    let at = cycle.iter().map(place).find(|path| self.locator().override_of(path).is_some());
                    return Err(self.locator().value_error(
                        &at.unwrap_or_else(|| place(&cycle[0])),
                        format!("phases {} need each other in a cycle", ids.join(", ")),
                    ));
                }
            }
        }
        Ok(ordered)
    }
}

/// Converts a figment value to a kernel parameter value.
fn convert_value(value: &FigmentValue) -> Result<Value, String> {
    Ok(match value {
        FigmentValue::String(_, text) => Value::Text(text.clone()),
        FigmentValue::Char(_, character) => Value::Text(character.to_string()),
        FigmentValue::Bool(_, flag) => Value::Bool(*flag),
        FigmentValue::Num(_, number) => number_value(*number)?,
        FigmentValue::Array(_, items) => Value::List(items.iter().map(convert_value).collect::<Result<_, _>>()?),
        FigmentValue::Dict(..) => return Err("parameters cannot be tables".into()),
        FigmentValue::Empty(..) => return Err("empty value".into()),
    })
}

/// A figment number as a kernel value: integers stay integers.
fn number_value(number: figment::value::Num) -> Result<Value, String> {
    use figment::value::Num;
    match number {
        Num::F32(float) => Ok(Value::Float(f64::from(float))),
        Num::F64(float) => Ok(Value::Float(float)),
        other => match (other.to_i128(), other.to_u128()) {
            (Some(integer), _) => {
                i64::try_from(integer).map(Value::Int).map_err(|_| format!("{integer} does not fit in 64 bits"))
            }
            (None, Some(integer)) => {
                i64::try_from(integer).map(Value::Int).map_err(|_| format!("{integer} does not fit in 64 bits"))
            }
            _ => Err("unsupported number".into()),
        },
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable content hash for reports.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
