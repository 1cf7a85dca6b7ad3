//! The plan: a validated spec expanded into runs, execution groups and check points.
//!
//! A *run* is one workload at one point of its parameter matrix (the cartesian
//! product of its list-valued parameters and thread counts, in file order). Two runs
//! *match* when they agree on every parameter that both workloads set and that is an
//! axis of either, and on the thread count when both workloads vary it (a thread count
//! is a setting every run has, so a workload run at one thread count matches every
//! thread count of another). A workload and its `reference` are *partners*: their
//! matching runs form an *execution group* that runs interleaved, so their samples
//! pair up by index. Values agree when they name the same run ([`Value::same_point`]:
//! `1` and `1.0` do). A check is evaluated at *points*: every combination of the axes
//! of the workloads it references at which each reference resolves to exactly one run
//! (by the same rule: a workload at one thread count resolves at every point of a
//! `threads` axis); a reference that would resolve to several runs is an error (add a
//! selector), and a combination where some reference has no run is skipped.
//!
//! Everything here happens before anything runs, so every error is a spec error that
//! points at the line responsible.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::error::SpecError;
use crate::expr::{Condition, Reference, Selected};
use crate::kernel::{Params, Resources, Value};
use crate::kernels;
use crate::spec::{Calibration, CalibrationMode, Check, Mode, Order, Phase, Settings, Spec, Workload};

/// Which parts of a spec to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Run only this phase (and report only it).
    pub phase: Option<String>,
    /// Run only workloads whose `phase/workload` or `workload` id matches this glob
    /// (`*` and `?`).
    pub filter: Option<String>,
}

/// One workload at one matrix point.
#[derive(Clone, Debug)]
pub struct Run {
    /// Index of the run within its phase plan.
    pub index: usize,
    pub workload: String,
    pub kernel: String,
    /// The matrix coordinates: every parameter the spec sets, then `threads`.
    pub coords: Vec<(String, Value)>,
    /// The axis coordinates only, `name=value` joined by `,` (empty without axes).
    pub label: String,
    pub params: Params,
    pub threads: usize,
    pub settings: Settings,
    pub seed: u64,
    pub resources: Resources,
    /// Why the run will not execute, if it will not.
    pub skip: Option<String>,
}

impl Run {
    pub fn name(&self) -> String {
        if self.label.is_empty() { self.workload.clone() } else { format!("{}[{}]", self.workload, self.label) }
    }

    /// The steps the run takes in `mode`: its repeats, and in warm mode its warm-ups.
    pub fn steps(&self, mode: Mode) -> u64 {
        let warmup = if mode == Mode::Warm { self.settings.warmup } else { 0 };
        u64::from(self.settings.repeats) + u64::from(warmup)
    }

    /// The steps the run takes in all its modes.
    pub fn n_steps(&self) -> u64 {
        self.settings.modes.iter().map(|&mode| self.steps(mode)).sum()
    }

    fn coord(&self, name: &str) -> Option<&Value> {
        self.coords.iter().find(|(coord, _)| coord == name).map(|(_, value)| value)
    }
}

/// A check resolved at one point.
#[derive(Clone, Debug)]
pub struct CheckPoint {
    /// `size=1024` style label of the point (empty when the check has one point).
    pub label: String,
    /// The run each reference of the condition (left to right) resolves to.
    pub condition_runs: Vec<usize>,
    /// The ratios of two references in the condition's left side whose runs are in one
    /// execution group (or are the same run), by their numerator's position in
    /// `condition_runs` (see [`crate::expr::Node::reference_ratios`]).
    pub paired_ratios: Vec<usize>,
    /// `(of, against)` runs of the parity comparison.
    pub parity_runs: Option<(usize, usize)>,
    /// The run whose output is compared with its stored snapshot.
    pub snapshot_run: Option<usize>,
    /// The runs `applies_if` references.
    pub applies_runs: Vec<usize>,
}

impl CheckPoint {
    /// For a paired-ratio condition ([`Condition::ratio`]): the numerator's and
    /// denominator's runs, when they are in one execution group (or are the same run).
    pub fn paired(&self, condition: &Condition) -> Option<(usize, usize)> {
        condition.ratio()?;
        // The ratio is the whole left side, so its numerator is the first reference.
        (self.paired_ratios.first() == Some(&0)).then(|| (self.condition_runs[0], self.condition_runs[1]))
    }
}

#[derive(Clone, Debug)]
pub struct CheckPlan {
    pub check: Check,
    pub points: Vec<CheckPoint>,
}

#[derive(Clone, Debug)]
pub struct PhasePlan {
    pub phase: Phase,
    pub runs: Vec<Run>,
    /// Execution groups, in execution order; each lists run indices.
    pub groups: Vec<Vec<usize>>,
    pub checks: Vec<CheckPlan>,
}

/// The A/A calibration of one reference run: two instances of it, interleaved, in a
/// phase plan of their own.
#[derive(Clone, Debug)]
pub struct CalibrationTwin {
    /// (reference run, mode, quantity) of the checks' denominators it calibrates.
    pub key: (usize, Mode, String),
    pub plan: PhasePlan,
}

impl PhasePlan {
    /// The A/A calibrations `calibration` asks of this phase: one per reference run,
    /// mode and quantity of its paired-ratio checks' denominators (none when off).
    pub fn calibration_twins(&self, calibration: &Calibration) -> Vec<CalibrationTwin> {
        let mut twins: Vec<CalibrationTwin> = Vec::new();
        if calibration.mode == CalibrationMode::Off {
            return twins;
        }
        for check in &self.checks {
            let Some(condition) = check.check.condition.as_ref() else { continue };
            let Some((_, denominator)) = condition.ratio() else { continue };
            for (_, reference) in check.points.iter().filter_map(|point| point.paired(condition)) {
                let key = (reference, denominator.mode, denominator.quantity.clone());
                if twins.iter().any(|twin| twin.key == key) || self.runs[reference].skip.is_some() {
                    continue;
                }
                let mut first = self.runs[reference].clone();
                first.index = 0;
                first.settings.repeats = calibration.repeats;
                first.settings.modes = vec![denominator.mode];
                let mut second = first.clone();
                second.index = 1;
                let plan = PhasePlan {
                    phase: self.phase.clone(),
                    runs: vec![first, second],
                    groups: vec![vec![0, 1]],
                    checks: Vec::new(),
                };
                twins.push(CalibrationTwin { key, plan });
            }
        }
        twins
    }

    /// Timed steps (warm-up included) of this phase's runs.
    pub fn n_steps(&self) -> u64 {
        self.runs.iter().filter(|run| run.skip.is_none()).map(Run::n_steps).sum()
    }

    /// The group a run belongs to.
    pub fn group_of(&self, run: usize) -> usize {
        self.groups.iter().position(|group| group.contains(&run)).expect("every run is in a group")
    }

    /// Runs whose outputs some check needs.
    pub fn runs_with_outputs(&self) -> Vec<usize> {
        let mut runs: Vec<usize> = self
            .checks
            .iter()
            .flat_map(|check| check.points.iter())
            .flat_map(|point| {
                let parity = point.parity_runs.map(|(of, against)| [of, against]).into_iter().flatten();
                parity.chain(point.snapshot_run)
            })
            .collect();
        runs.sort_unstable();
        runs.dedup();
        runs
    }
}

/// A spec expanded for execution.
#[derive(Clone, Debug)]
pub struct Plan {
    pub spec: Spec,
    pub selection: Selection,
    pub phases: Vec<PhasePlan>,
}

impl Plan {
    pub fn n_runs(&self) -> usize {
        self.phases.iter().map(|phase| phase.runs.iter().filter(|run| run.skip.is_none()).count()).sum()
    }

    /// Timed steps (warm-up included) the plan will execute, A/A calibration aside.
    pub fn n_steps(&self) -> u64 {
        self.phases.iter().map(PhasePlan::n_steps).sum()
    }

    /// Steps (warm-up included) of the A/A calibration before the phases.
    pub fn n_calibration_steps(&self) -> u64 {
        let twins = self.phases.iter().flat_map(|phase| phase.calibration_twins(&self.spec.calibration));
        twins.map(|twin| twin.plan.n_steps()).sum()
    }
}

/// Expands `spec` into a plan. `env` answers whether an environment variable is set.
pub fn expand(spec: Spec, selection: Selection, env: &dyn Fn(&str) -> bool) -> Result<Plan, SpecError> {
    if let Some(phase) = &selection.phase
        && spec.phase(phase).is_none()
    {
        let ids: Vec<&str> = spec.phases.iter().map(|phase| phase.id.as_str()).collect();
        return Err(SpecError::new(&spec.file, format!("`--phase {phase}`: no such phase"))
            .with_hint(format!("phases: {}", ids.join(", "))));
    }
    let mut phases = Vec::new();
    for phase in &spec.phases {
        if selection.phase.as_ref().is_some_and(|selected| selected != &phase.id) {
            continue;
        }
        phases.push(expand_phase(&spec, phase, &selection, env)?);
    }
    if let Some(filter) = &selection.filter {
        // A phase the filter leaves nothing of is not run, as one `--phase` leaves out:
        // its report would hold only skipped checks, and reproducing it (its report's
        // command, with `--phase`) would select nothing.
        phases.retain(|phase| phase.runs.iter().any(|run| run.skip.as_deref() != Some(FILTERED)));
        if phases.is_empty() {
            let scope = match &selection.phase {
                Some(phase) => format!(" of phase `{phase}`"),
                None => String::new(),
            };
            return Err(SpecError::new(&spec.file, format!("`--filter {filter}` matches no workload{scope}")));
        }
    }
    Ok(Plan { spec, selection, phases })
}

/// Why a run `--filter` left out is skipped.
pub const FILTERED: &str = "excluded by --filter";

fn expand_phase(
    spec: &Spec,
    phase: &Phase,
    selection: &Selection,
    env: &dyn Fn(&str) -> bool,
) -> Result<PhasePlan, SpecError> {
    let mut runs = Vec::new();
    for workload in &phase.workloads {
        let base = format!("phase.{}.workload.{}", phase.id, workload.id);
        let kernel = kernels::find(&workload.kernel).expect("validated kernel");
        let specs = kernel.params();
        let skip = skip_reason(phase, workload, selection, env);
        let mut labels = std::collections::HashSet::new();
        for coords in matrix(workload) {
            let given: BTreeMap<String, Value> = coords.iter().filter(|(name, _)| name != "threads").cloned().collect();
            let params = Params::validate(&specs, &given, kernel.accepts_extra_params())
                .map_err(|error| spec.table_error(&format!("{base}.params"), error.to_string()))?;
            let axes = workload.axes();
            let label = coords
                .iter()
                .filter(|(name, _)| axes.contains(&name.as_str()))
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            let point = if label.is_empty() { String::new() } else { format!(" at {label}") };
            let resources = kernel.check(&params).map_err(|message| {
                let text = format!("workload `{}`{point}: {message}", workload.id);
                match parameter_of(&message, workload) {
                    Some(name) => spec.value_error(&format!("{base}.params.{name}"), text),
                    None => spec.table_error(&format!("{base}.params"), text),
                }
            })?;
            // Reports, snapshots and selectors know a run by its name, so no two may share
            // one (string values holding `,` and `=` could make them).
            if !labels.insert(label.clone()) {
                return Err(spec.table_error(
                    &format!("{base}.params"),
                    format!(
                        "two runs of workload `{}` are both named `{}[{label}]`: a parameter value holds `,` or `=`",
                        workload.id, workload.id
                    ),
                ));
            }
            let threads = match coords.iter().find(|(name, _)| name == "threads") {
                Some((_, Value::Int(threads))) => *threads as usize,
                _ => workload.settings.threads[0],
            };
            runs.push(Run {
                index: runs.len(),
                workload: workload.id.clone(),
                kernel: workload.kernel.clone(),
                coords,
                label,
                params,
                threads,
                settings: workload.settings.clone(),
                seed: workload.seed,
                resources,
                skip: skip.clone(),
            });
        }
    }
    let groups = groups(phase, &runs);
    let mut group_of = vec![0; runs.len()];
    for (group_index, group) in groups.iter().enumerate() {
        for &run in group {
            group_of[run] = group_index;
        }
    }
    let mut checks = Vec::new();
    for check in &phase.checks {
        checks.push(CheckPlan { check: check.clone(), points: check_points(spec, phase, check, &runs, &group_of)? });
    }
    Ok(PhasePlan { phase: phase.clone(), runs, groups, checks })
}

/// The parameter an error of `Kernel::check` is about: its first word, bare or in
/// backticks (`k = 301 exceeds ...`, `` `oversample` must be ... ``), or the name after
/// a leading "parameter" (``parameter `size` is not used ...``), when the workload sets
/// a parameter of that name. Errors are then shown at that parameter, or name the
/// override that set it.
fn parameter_of<'a>(message: &'a str, workload: &Workload) -> Option<&'a str> {
    let message = message.strip_prefix("parameter ").unwrap_or(message);
    let first = message.split([' ', ':']).next()?.trim_matches('`');
    workload.params.iter().any(|(name, _)| name == first).then_some(first)
}

fn skip_reason(
    phase: &Phase,
    workload: &Workload,
    selection: &Selection,
    env: &dyn Fn(&str) -> bool,
) -> Option<String> {
    if let Some(filter) = &selection.filter {
        let qualified = format!("{}/{}", phase.id, workload.id);
        if !glob_match(filter, &qualified) && !glob_match(filter, &workload.id) {
            return Some(FILTERED.to_owned());
        }
    }
    match &workload.requires_env {
        Some(variable) if !env(variable) => Some(format!("{variable} is not set")),
        _ => None,
    }
}

/// The matrix points of a workload: every parameter the spec sets (axes expanded in
/// file order, the last one varying fastest), then `threads`.
fn matrix(workload: &Workload) -> Vec<Vec<(String, Value)>> {
    let mut axes: Vec<(String, Vec<Value>)> = workload.params.clone();
    axes.push(("threads".to_owned(), workload.settings.threads.iter().map(|&threads| Value::from(threads)).collect()));
    let lengths: Vec<usize> = axes.iter().map(|(_, values)| values.len()).collect();
    cartesian(&lengths)
        .map(|indices| {
            axes.iter().zip(&indices).map(|((name, values), &index)| (name.clone(), values[index].clone())).collect()
        })
        .collect()
}

/// Every index combination of axes with `lengths` values, the last axis fastest.
fn cartesian(lengths: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let total: usize = lengths.iter().product();
    (0..total).map(move |mut flat| {
        let mut indices = vec![0; lengths.len()];
        for (slot, &length) in indices.iter_mut().zip(lengths).rev() {
            *slot = flat % length;
            flat /= length;
        }
        indices
    })
}

/// The coordinates on which a run of `a` and a run of `b` must agree to match (see the
/// module doc): the parameters both workloads set that either varies, and `threads`
/// when both vary it.
fn compared_coords<'a>(a: &'a Workload, b: &Workload) -> Vec<&'a str> {
    let (a_axes, b_axes) = (a.axes(), b.axes());
    let b_sets = |name: &str| b.params.iter().any(|(param, _)| param == name);
    let mut names: Vec<&str> = a
        .params
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|&name| b_sets(name) && (a_axes.contains(&name) || b_axes.contains(&name)))
        .collect();
    if a_axes.contains(&"threads") && b_axes.contains(&"threads") {
        names.push("threads");
    }
    names
}

/// A run's values at `names`, as runs are named ([`Value::point_key`]): two runs match
/// exactly when their keys on the compared coordinates are equal.
fn coords_key(run: &Run, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| run.coord(name).expect("a run has a value for every parameter its workload sets").point_key())
        .collect()
}

/// Execution groups: connected components of the partner relation, in the order of
/// their first run.
///
/// A workload's runs are matched with its reference's through an index of the
/// reference's runs by their key on the compared coordinates, so the work grows with
/// the runs, not with the product of the two workloads' runs. Every run of one key is
/// joined to every run of the other workload with that key, so it is enough to join
/// the runs of a key once among themselves and each matching run to one of them.
fn groups(phase: &Phase, runs: &[Run]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn root(parent: &mut [usize], mut index: usize) -> usize {
        while parent[index] != index {
            parent[index] = parent[parent[index]];
            index = parent[index];
        }
        index
    }
    fn join(parent: &mut [usize], a: usize, b: usize) {
        let (root_a, root_b) = (root(parent, a), root(parent, b));
        parent[root_a.max(root_b)] = root_a.min(root_b);
    }
    for workload in &phase.workloads {
        let (Some(reference), false) = (&workload.reference, workload.settings.order == Order::Sequential) else {
            continue;
        };
        let partner = phase.workloads.iter().find(|other| &other.id == reference).expect("validated reference");
        let names = compared_coords(workload, partner);
        // The reference's runs by key, and whether a run of `workload` has joined them yet.
        let mut index: HashMap<Vec<String>, (Vec<usize>, bool)> = HashMap::new();
        for b in runs.iter().filter(|run| &run.workload == reference && run.skip.is_none()) {
            index.entry(coords_key(b, &names)).or_default().0.push(b.index);
        }
        for a in runs.iter().filter(|run| run.workload == workload.id && run.skip.is_none()) {
            let Some((matching, joined)) = index.get_mut(&coords_key(a, &names)) else { continue };
            if !*joined {
                for pair in matching.windows(2) {
                    join(&mut parent, pair[0], pair[1]);
                }
                *joined = true;
            }
            join(&mut parent, a.index, matching[0]);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: BTreeMap<usize, usize> = BTreeMap::new();
    for run in runs {
        let group_root = root(&mut parent, run.index);
        match group_of_root.get(&group_root) {
            Some(&group) => groups[group].push(run.index),
            None => {
                group_of_root.insert(group_root, groups.len());
                groups.push(vec![run.index]);
            }
        }
    }
    groups
}

fn check_points(
    spec: &Spec,
    phase: &Phase,
    check: &Check,
    runs: &[Run],
    group_of: &[usize],
) -> Result<Vec<CheckPoint>, SpecError> {
    let base = format!("phase.{}.check.{}", phase.id, check.id);
    // Every reference of the check: the runs it selects, and the key it was written in.
    struct Mention {
        selected: Selected,
        key: &'static str,
    }
    let mut references: Vec<Mention> = Vec::new();
    let condition_references: Vec<&Reference> =
        check.condition.iter().flat_map(|condition| condition.references()).collect();
    let applies_references: Vec<&Reference> =
        check.applies_if.iter().flat_map(|condition| condition.references()).collect();
    for reference in &condition_references {
        references.push(Mention { selected: reference.selected(), key: "expr" });
    }
    for reference in &applies_references {
        references.push(Mention { selected: reference.selected(), key: "applies_if" });
    }
    if let Some(parity) = &check.parity {
        references.push(Mention { selected: parity.of.clone(), key: "parity.of" });
        references.push(Mention { selected: parity.against.clone(), key: "parity.against" });
    }
    if let Some(snapshot) = &check.snapshot {
        references.push(Mention { selected: snapshot.of.clone(), key: "snapshot.of" });
    }
    // The axes of the referenced workloads, in order of first appearance, and the
    // position of each value on its axis by its key (values that name the same run are
    // one position).
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    let mut positions: Vec<HashMap<String, usize>> = Vec::new();
    for mention in &references {
        let workload = phase
            .workloads
            .iter()
            .find(|workload| workload.id == mention.selected.workload)
            .expect("validated reference");
        for axis in workload.axes() {
            if mention.selected.selectors.iter().any(|(name, _)| name == axis) {
                continue;
            }
            let values: Vec<Value> = if axis == "threads" {
                workload.settings.threads.iter().map(|&threads| Value::from(threads)).collect()
            } else {
                workload
                    .params
                    .iter()
                    .find(|(name, _)| name == axis)
                    .map(|(_, values)| values.clone())
                    .unwrap_or_default()
            };
            let axis_index = axes.iter().position(|(name, _)| name == axis).unwrap_or_else(|| {
                axes.push((axis.to_owned(), Vec::new()));
                positions.push(HashMap::new());
                axes.len() - 1
            });
            for value in values {
                if let Entry::Vacant(entry) = positions[axis_index].entry(value.point_key()) {
                    entry.insert(axes[axis_index].1.len());
                    axes[axis_index].1.push(value);
                }
            }
        }
    }
    // Each mention's candidate runs, indexed by the positions of their values on the
    // axes they set: one lookup per combination instead of a scan of every run.
    // (the axes the mention's workload sets, value positions on them -> runs)
    type RunIndex = (Vec<usize>, HashMap<Vec<usize>, Vec<usize>>);
    let indexes: Vec<RunIndex> = references
        .iter()
        .map(|mention| {
            let candidates: Vec<&Run> = runs
                .iter()
                .filter(|run| run.workload == mention.selected.workload)
                .filter(|run| {
                    // `size=1` selects the run of `size = 1.0`: values compare as runs are
                    // named.
                    mention
                        .selected
                        .selectors
                        .iter()
                        .all(|(name, value)| run.coord(name).is_some_and(|coord| coord.same_point(value)))
                })
                .collect();
            // Every run has a thread count, but it places a run on the `threads` axis
            // only when its workload varies it (see the module doc).
            let varies_threads = phase
                .workloads
                .iter()
                .any(|workload| workload.id == mention.selected.workload && workload.axes().contains(&"threads"));
            let set: Vec<usize> = (0..axes.len())
                .filter(|&axis| axes[axis].0 != "threads" || varies_threads)
                .filter(|&axis| candidates.first().is_some_and(|run| run.coord(&axes[axis].0).is_some()))
                .collect();
            let mut index: HashMap<Vec<usize>, Vec<usize>> = HashMap::new();
            for run in candidates {
                let key: Option<Vec<usize>> = set
                    .iter()
                    .map(|&axis| {
                        let value = run.coord(&axes[axis].0)?;
                        positions[axis].get(&value.point_key()).copied()
                    })
                    .collect();
                if let Some(key) = key {
                    index.entry(key).or_default().push(run.index);
                }
            }
            (set, index)
        })
        .collect();
    let value_names: Vec<Vec<String>> =
        axes.iter().map(|(name, values)| values.iter().map(|value| format!("{name}={value}")).collect()).collect();
    let lengths: Vec<usize> = axes.iter().map(|(_, values)| values.len()).collect();
    let no_runs = Vec::new();
    let mut points = Vec::new();
    for combination in cartesian(&lengths) {
        let mut resolved = Vec::with_capacity(references.len());
        let mut complete = true;
        for (mention, (set, index)) in references.iter().zip(&indexes) {
            let (workload_id, place) = (&mention.selected.workload, mention.key);
            let key: Vec<usize> = set.iter().map(|&axis| combination[axis]).collect();
            let matches = index.get(&key).unwrap_or(&no_runs);
            match matches.len() {
                0 => {
                    complete = false;
                    break;
                }
                1 => resolved.push(matches[0]),
                _ => {
                    let names: Vec<String> = matches.iter().map(|&index| runs[index].name()).collect();
                    return Err(spec.value_error(
                        &format!("{base}.{place}"),
                        format!(
                            "`{workload_id}` matches several runs here ({}); add a selector such as `{}`",
                            names.join(", "),
                            selector_hint(&runs[matches[0]], &runs[matches[1]])
                        ),
                    ));
                }
            }
        }
        if !complete {
            continue;
        }
        let n_condition = condition_references.len();
        let n_applies = applies_references.len();
        let condition_runs = resolved[..n_condition].to_vec();
        let applies_runs = resolved[n_condition..n_condition + n_applies].to_vec();
        let parity_runs =
            check.parity.as_ref().map(|_| (resolved[n_condition + n_applies], resolved[n_condition + n_applies + 1]));
        if let Some((of, against)) = parity_runs
            && of == against
        {
            return Err(spec
                .table_error(
                    &format!("{base}.parity"),
                    format!(
                        "parity compares `{}` with itself: `of` and `against` select the same run",
                        runs[of].name()
                    ),
                )
                .with_hint("give `against` a selector that names another run, or another workload"));
        }
        let n_parity = if check.parity.is_some() { 2 } else { 0 };
        let snapshot_run = check.snapshot.as_ref().map(|_| resolved[n_condition + n_applies + n_parity]);
        let same_group = |left: usize, right: usize| group_of[left] == group_of[right];
        let paired_ratios = check.condition.as_ref().map_or_else(Vec::new, |condition| {
            let mut ratios = condition.left.reference_ratios();
            ratios.retain(|&position| same_group(condition_runs[position], condition_runs[position + 1]));
            ratios
        });
        let label = combination
            .iter()
            .enumerate()
            .map(|(axis, &value)| value_names[axis][value].as_str())
            .collect::<Vec<_>>()
            .join(",");
        points.push(CheckPoint { label, condition_runs, paired_ratios, parity_runs, snapshot_run, applies_runs });
    }
    if points.is_empty() {
        return Err(spec
            .table_error(&base, format!("check `{}` matches no combination of runs", check.id))
            .with_hint("the selectors or the workloads' parameter values do not overlap"));
    }
    Ok(points)
}

/// A selector that tells two runs of one workload apart.
fn selector_hint(a: &Run, b: &Run) -> String {
    a.coords
        .iter()
        .find(|(name, value)| b.coord(name).is_some_and(|other| !other.same_point(value)))
        .map_or_else(|| "[...]".to_owned(), |(name, value)| format!("{}[{name}={value}]", a.workload))
}

/// Matches `text` against a glob with `*` (any run of characters) and `?` (one).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Run, Selection, expand, glob_match};
    use crate::spec::{Order, Overrides, Workload, load_str};

    /// Whether two runs match, by the module doc's definition: every coordinate of `a`
    /// that `b` has too agrees with it where either workload varies it (`threads`: where
    /// both do). The reference the indexed grouping is checked against.
    fn matches_by_definition(a: &Run, a_workload: &Workload, b: &Run, b_workload: &Workload) -> bool {
        let (a_axes, b_axes) = (a_workload.axes(), b_workload.axes());
        a.coords.iter().all(|(name, value)| {
            let compared = if name == "threads" {
                a_axes.contains(&"threads") && b_axes.contains(&"threads")
            } else {
                a_axes.contains(&name.as_str()) || b_axes.contains(&name.as_str())
            };
            match b.coord(name) {
                Some(other) if compared => other.same_point(value),
                _ => true,
            }
        })
    }

    /// The indexed grouping finds the components of the pairs the definition matches:
    /// partners that vary, fix or leave out a parameter or the thread count, values
    /// written as integers, floats or strings, a chain of references, partners that
    /// share no parameter, and runs that are skipped.
    #[test]
    fn groups_are_the_components_of_the_matching_pairs() {
        let workload = |id: &str, extra: &str, params: &str| {
            let used: String = ["x", "y"]
                .iter()
                .filter(|name| params.contains(&format!("{name} =")))
                .map(|name| format!(" {{{name}}}"))
                .collect();
            format!(
                "\n[[phase.workload]]\nid = \"{id}\"\nkernel = \"command\"\n{extra}\n[phase.workload.params]\n\
                 program = \"true{used}\"\n{params}\n"
            )
        };
        let phase = |id: &str, workloads: &[String]| format!("\n[[phase]]\nid = \"{id}\"\n{}", workloads.concat());
        let text = [
            "[experiment]\nname = \"groups\"\nseed = 1\n".to_owned(),
            phase(
                "shared",
                &[
                    workload("r", "", "x = [1, 2, 3]\ny = [\"p\", \"q\"]"),
                    workload("w", "reference = \"r\"", "x = [1.0, \"2\", 4]\ny = \"q\""),
                ],
            ),
            phase(
                "fixed",
                &[workload("r", "", "x = 1\ny = 0"), workload("w", "reference = \"r\"", "x = [1, 2]\ny = [0, 1]")],
            ),
            phase(
                "threads",
                &[
                    workload("r", "threads = [1, 2]", "x = [1, 2]\ny = 0"),
                    workload("w", "reference = \"r\"\nthreads = [1, 2, 4]", "x = [1, 2]\ny = 0"),
                    workload("v", "reference = \"w\"", "x = [2, 1]\ny = 0"),
                    workload("u", "reference = \"v\"\nrequires_env = \"UNSET\"", "x = [1, 2]\ny = 0"),
                ],
            ),
            phase("apart", &[workload("r", "", "x = [1, 2, 3]"), workload("w", "reference = \"r\"", "y = [1, 2]")]),
            phase(
                "unset",
                &[workload("r", "", "x = [1, 2]"), workload("w", "reference = \"r\"", "x = [2, 3]\ny = [1, 2]")],
            ),
        ]
        .concat();
        let spec =
            load_str(Path::new("spec.toml"), &text, &Overrides::default()).unwrap_or_else(|error| panic!("{error}"));
        let plan = expand(spec, Selection::default(), &|_| false).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(plan.phases.len(), 5);
        for phase in &plan.phases {
            let runs = &phase.runs;
            let workload = |id: &str| phase.phase.workloads.iter().find(|workload| workload.id == id).unwrap();
            let mut component: Vec<usize> = (0..runs.len()).collect();
            for a in runs {
                let w = workload(&a.workload);
                let Some(reference) = w.reference.as_deref().filter(|_| w.settings.order == Order::Interleaved) else {
                    continue;
                };
                for b in runs.iter().filter(|b| b.workload == reference) {
                    if a.skip.is_none() && b.skip.is_none() && matches_by_definition(a, w, b, workload(reference)) {
                        let (from, to) =
                            (component[a.index].max(component[b.index]), component[a.index].min(component[b.index]));
                        component.iter_mut().filter(|label| **label == from).for_each(|label| *label = to);
                    }
                }
            }
            let mut expected: Vec<Vec<usize>> = Vec::new();
            for run in 0..runs.len() {
                match expected.iter_mut().find(|group| component[group[0]] == component[run]) {
                    Some(group) => group.push(run),
                    None => expected.push(vec![run]),
                }
            }
            let names = |groups: &[Vec<usize>]| -> Vec<Vec<String>> {
                groups.iter().map(|group| group.iter().map(|&run| runs[run].name()).collect()).collect()
            };
            assert_eq!(names(&phase.groups), names(&expected), "phase {}", phase.phase.id);
            assert!(phase.groups.iter().any(|group| group.len() > 1), "phase {} pairs something", phase.phase.id);
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("a/*", "a/fast"));
        assert!(glob_match("f?st", "fast"));
        assert!(glob_match("*st", "fast"));
        assert!(glob_match("*a*t*", "fast"));
        assert!(!glob_match("b/*", "a/fast"));
        assert!(!glob_match("fas", "fast"));
    }
}
