//! The `cargo xtask` command line: a thin layer over the `phasegate` library.
//!
//! It parses flags, installs the tracing subscriber and the progress display, and
//! dispatches to library functions. Exit codes are documented in `phasegate::run`.

// Output the reader may no longer take (`| head -1`, `2>/dev/full`; Rust ignores SIGPIPE,
// so such a write fails with EPIPE) is dropped: `print!` and `eprint!` would panic, and
// a run must end with its reports written and its verdict's exit code.

/// `print!` to stdout, dropping what it cannot take.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `println!` to stdout, dropping what it cannot take.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!`, dropping what stderr cannot take.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use phasegate::error::SpecError;
use phasegate::plan::{self, Plan, Selection};
use phasegate::run::{self, Exit, RunOptions};
use phasegate::spec::{self, Overrides};
use phasegate::{describe, report};

/// Declarative performance experiments: TOML specs to phase reports and CI verdicts.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment: execute its phases, write reports, exit with its verdict.
    Run(RunArgs),
    /// List an experiment's phases, workloads, matrix points and checks.
    List(SpecArgs),
    /// Validate a spec without running anything (exit 0 when valid, 2 otherwise).
    Check(CheckArgs),
    /// Regenerate the marked results regions of living plan documents from the newest
    /// reports of runs of the spec as written (no --filter, --profile or overrides).
    Plan {
        /// Plan documents to regenerate.
        plans: Vec<PathBuf>,
        /// Every Markdown file in plans/.
        #[arg(long)]
        all: bool,
        /// Change nothing; exit 1 if a plan is out of date.
        #[arg(long)]
        check: bool,
    },
    /// Review or accept pending snapshots (outputs that no longer match the stored ones).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
        /// Where the snapshots are (`snapshots/` beside the specs) [default: the project's
        /// experiments/snapshots].
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
    },
    /// List the built-in kernels with their parameters and metrics.
    Kernels {
        /// Print the Markdown tables of the spec reference instead.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// Show what changed in every pending snapshot.
    Review {
        /// Only pending snapshots whose path contains this text.
        filter: Option<String>,
    },
    /// Make the pending snapshots the stored ones.
    Accept {
        /// Only pending snapshots whose path contains this text.
        filter: Option<String>,
    },
}

#[derive(clap::Args)]
struct SpecArgs {
    /// The experiment spec (TOML).
    spec: PathBuf,
    /// Override a value: `key.path=value` (repeatable; later wins).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Apply the spec's `[profile.NAME]` overrides.
    #[arg(long)]
    profile: Option<String>,
    /// Only this phase.
    #[arg(long)]
    phase: Option<String>,
    /// Only workloads whose id or `phase/id` matches this glob (`*`, `?`).
    #[arg(long)]
    filter: Option<String>,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Allow the spec's output root to lie outside the project.
    #[arg(long)]
    allow_outside: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Print the expanded matrix, the resolved settings with their sources and a time
    /// estimate, and exit without running.
    #[arg(long)]
    dry_run: bool,
    /// Write JSON lines (one per sample and per telemetry event) to this file.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Allow the spec's output root to lie outside the project.
    #[arg(long)]
    allow_outside: bool,
    /// Plain progress lines and uncoloured warnings even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Compare with an earlier run: `latest`, a run directory, or a git ref with
    /// committed reports. Regressions beyond `[baseline] tolerance` fail.
    #[arg(long, value_name = "RUN")]
    baseline: Option<String>,
    /// Write a JUnit XML file with one test case per check verdict (per matrix point) and
    /// one per crashed run.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Append the Markdown summary to this file (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (log_file, plain) = match &cli.command {
        Command::Run(args) => (args.log_file.is_some(), args.plain),
        _ => (false, false),
    };
    let bar = progress::ShownBar::default();
    let log = match progress::install_tracing(log_file, plain, &bar) {
        Ok(log) => log,
        Err(error) => {
            errln!("error: {error:#}");
            return ExitCode::from(Exit::Usage.code() as u8);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args, &log, bar),
        Command::List(args) => load_plan(&args).map(|plan| {
            out!("{}", describe::list(&plan));
            Exit::Pass
        }),
        Command::Check(args) => load_plan(&args.spec).and_then(|plan| {
            let options = run_options(args.allow_outside)?;
            run::preflight(&plan, &options)?;
            outln!(
                "{}: valid ({}, {})",
                args.spec.spec.display(),
                describe::counted(plan.n_runs(), "run"),
                describe::counted(plan.phases.iter().map(|phase| phase.checks.len()).sum(), "check")
            );
            Ok(Exit::Pass)
        }),
        Command::Plan { plans, all, check } => update_plans(plans, all, check),
        Command::Snapshot { action, dir } => {
            let given = dir.is_some();
            snapshot_dir(dir).and_then(|dir| snapshots(action, &dir, given))
        }
        Command::Kernels { markdown } => {
            let text = if markdown { phasegate::kernels::describe_markdown() } else { phasegate::kernels::describe() };
            out!("{text}");
            Ok(Exit::Pass)
        }
    };
    // An interrupt being handled exits the process itself (with 130).
    phasegate::execute::halt_if_interrupted();
    match result {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(error) => {
            match error.downcast_ref::<SpecError>() {
                Some(spec_error) => errln!("{spec_error}"),
                None => errln!("error: {error:#}"),
            }
            ExitCode::from(Exit::Usage.code() as u8)
        }
    }
}

fn load_plan(args: &SpecArgs) -> anyhow::Result<Plan> {
    let mut overrides = Overrides::from_env().map_err(anyhow::Error::msg)?;
    overrides.sets = args.sets.clone();
    overrides.profile = args.profile.clone();
    let spec = spec::load(&args.spec, &overrides)?;
    for warning in &spec.warnings {
        tracing::warn!("{warning}");
    }
    let selection = Selection { phase: args.phase.clone(), filter: args.filter.clone() };
    let env_set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    Ok(plan::expand(spec, selection, &env_set)?)
}

fn run_options(allow_outside: bool) -> anyhow::Result<RunOptions> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Variables that are not UTF-8 cannot be the ones the facts read.
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    let project_root = run::project_root(&cwd);
    Ok(RunOptions {
        command: command_line(&project_root, &cwd),
        project_root,
        allow_outside,
        facts: run::machine_facts(&vars),
        keep_all_outputs: false,
        baseline: None,
        update_plan: true,
    })
}

fn run(args: RunArgs, log: &progress::LogFile, bar: progress::ShownBar) -> anyhow::Result<Exit> {
    let plan = load_plan(&args.spec)?;
    let mut options = run_options(args.allow_outside)?;
    if let Some(baseline) = &args.baseline {
        let root = run::experiment_root(&plan, &options);
        options.baseline = Some(phasegate::baseline::load(baseline, &root, &options.project_root, &plan)?);
    }
    for path in args.junit.iter().chain(&args.summary) {
        report::files::check_output_file(path)?;
    }
    if let Some(path) = &args.log_file {
        check_log_file(path, &args.spec.spec)?;
    }
    if args.dry_run {
        // Everything a run would refuse (`run::prepare` checks it first), a dry run
        // refuses too.
        run::preflight(&plan, &options)?;
        let root = run::experiment_root(&plan, &options);
        // The reports `--baseline latest` would read; none before the first run, and
        // said when they cannot be read.
        let any_run =
            plan.phases.iter().any(|phase| !report::files::runs_with_phase(&root, &phase.phase.id).is_empty());
        let earlier = match any_run.then(|| phasegate::baseline::load("latest", &root, &options.project_root, &plan)) {
            Some(Ok(loaded)) => Some(loaded),
            Some(Err(error)) => {
                tracing::warn!("the estimate reads no earlier report: {error:#}");
                None
            }
            None => None,
        };
        out!("{}", describe::dry_run(&plan, &describe::estimate(&plan, earlier.as_ref())));
        return Ok(Exit::Pass);
    }
    let fancy = std::io::stderr().is_terminal() && !args.plain;
    let observer = progress::Progress::new(fancy, bar);
    let prepared = run::prepare(&plan, &options)?;
    // Only now, with nothing left to refuse, is an earlier log replaced.
    if let Some(path) = &args.log_file {
        log.open(path)?;
    }
    let outcome = run::run_prepared(prepared, &observer)?;
    observer.finish();
    out!("{}", describe::outcome(&outcome));
    // Each CI output is written whatever became of the other.
    let mut unwritten = Vec::new();
    if let Some(path) = &args.junit
        && let Err(error) = report::files::write_named(path, report::junit::render(&outcome.reports).as_bytes())
    {
        errln!("error: {error:#}");
        unwritten.push(path.display().to_string());
    }
    if let Some(path) = &args.summary
        && let Err(error) = report::files::append(path, &report::markdown::render_summary(&outcome.reports))
    {
        errln!("error: {error:#}");
        unwritten.push(path.display().to_string());
    }
    // A run that did not pass fails CI with its own exit code either way.
    if unwritten.is_empty() || outcome.exit != Exit::Pass {
        return Ok(outcome.exit);
    }
    // A passing run whose CI outputs are missing must not read as a pass, and the line
    // above, which said exit 0, must not be the last word.
    outln!("exit {}: the run passed, but {} could not be written", Exit::Usage.code(), unwritten.join(" and "));
    Ok(Exit::Usage)
}

/// Checks, before anything runs (in a dry run too), that a run can create its
/// `--log-file`: not the spec itself, which creating the log would empty, and in a
/// directory that exists (unlike those of `--junit` and `--summary`, the log's missing
/// directories are not created).
fn check_log_file(path: &Path, spec: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()));
    if let Some(log) = identity(path)
        && identity(spec) == Some(log)
    {
        anyhow::bail!("the log file {} is the spec {}: a run would empty it", path.display(), spec.display());
    }
    let directory = report::files::parent_of(path);
    let checked = if directory.is_dir() {
        report::files::check_output_file(path)
    } else {
        Err(anyhow::anyhow!("{} is not a directory", directory.display()))
    };
    checked.with_context(|| format!("cannot create the log file {}", path.display()))
}

fn update_plans(mut plans: Vec<PathBuf>, all: bool, check: bool) -> anyhow::Result<Exit> {
    let root = run::project_root(&std::env::current_dir().context("cannot read the current directory")?);
    if all {
        let found = phasegate::living::all_plans(&root);
        if found.is_empty() && plans.is_empty() {
            // Nothing to regenerate is not stale.
            outln!("no plan documents: {} holds no Markdown file", root.join("plans").display());
            return Ok(Exit::Pass);
        }
        plans.extend(found);
    }
    if plans.is_empty() {
        anyhow::bail!("name plan documents, or pass --all for every Markdown file in plans/");
    }
    let mut stale = 0;
    for plan in &plans {
        let changed = phasegate::living::update_file(&root, plan, check)?;
        let state = match (changed, check) {
            (false, _) => "up to date",
            (true, false) => "regenerated",
            (true, true) => "OUT OF DATE",
        };
        stale += usize::from(changed && check);
        outln!("{}: {state}", plan.display());
    }
    Ok(if stale > 0 { Exit::Failed } else { Exit::Pass })
}

/// `--dir`, or else the project's default snapshot directory, found from the project
/// root as `run` finds its outputs, and named from the current directory
/// (`../experiments/snapshots` in `src/`) so the paths printed work where they are read.
fn snapshot_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = dir {
        return Ok(dir);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = run::project_root(&cwd);
    Ok(match cwd.strip_prefix(&root) {
        Ok(below) => below.components().map(|_| Path::new("..")).collect::<PathBuf>(),
        Err(_) => root,
    }
    .join(phasegate::snapshot::DEFAULT_DIR))
}

/// `snapshot review` or `snapshot accept` in `dir`, which `--dir` named when `given`.
fn snapshots(action: SnapshotAction, dir: &Path, given: bool) -> anyhow::Result<Exit> {
    let filter = match &action {
        SnapshotAction::Review { filter } | SnapshotAction::Accept { filter } => filter.clone(),
    };
    // A project that never stored a snapshot has no default directory yet, and none
    // pending; a directory named on the command line must exist.
    let all = if !given && !dir.exists() { Vec::new() } else { phasegate::snapshot::pending(dir)? };
    let pending: Vec<_> = all
        .iter()
        .filter(|pending| filter.as_ref().is_none_or(|text| pending.base.display().to_string().contains(text.as_str())))
        .collect();
    let nothing = if dir.exists() {
        format!("no pending snapshots in {}", dir.display())
    } else {
        format!("no snapshots recorded yet ({} does not exist)", dir.display())
    };
    if let (true, Some(text)) = (pending.is_empty(), &filter) {
        let unmatched = match all.len() {
            0 => format!("{nothing}, so none matches `{text}`"),
            1 => format!("the pending snapshot does not match `{text}`"),
            n => format!("none of the {n} pending snapshots matches `{text}`"),
        };
        // Reviewing nothing is an answer; accepting nothing was not what was asked.
        return match action {
            SnapshotAction::Review { .. } => {
                outln!("{unmatched}");
                Ok(Exit::Pass)
            }
            SnapshotAction::Accept { .. } => anyhow::bail!("nothing accepted: {unmatched}"),
        };
    }
    if all.is_empty() {
        outln!("{nothing}");
        return Ok(Exit::Pass);
    }
    for snapshot in &pending {
        match action {
            SnapshotAction::Review { .. } => outln!("{}", phasegate::snapshot::describe(snapshot)?),
            SnapshotAction::Accept { .. } => {
                phasegate::snapshot::accept(snapshot)?;
                outln!("accepted {}", snapshot.base.display());
            }
        }
    }
    Ok(Exit::Pass)
}

/// The command line, with the `PHASEGATE_*` variables that override the spec and the
/// directory it ran in, so that it reproduces the run.
fn command_line(project_root: &Path, cwd: &Path) -> report::CommandLine {
    let variables = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with("PHASEGATE_"))
        .collect();
    let dir = match cwd.strip_prefix(project_root) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => cwd.display().to_string(),
    };
    report::CommandLine { variables, args: std::env::args_os().skip(1).collect(), dir }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The recorded command's reading of `run`'s options is the parser's: which take a
    /// value, and which name the run's log and CI files.
    #[test]
    fn the_recorded_command_knows_the_options_of_run() {
        let cli = super::Cli::command();
        let run = cli.find_subcommand("run").expect("the run command");
        let mut valued: Vec<String> = run
            .get_arguments()
            .filter(|arg| arg.get_long().is_some() && arg.get_action().takes_values())
            .map(|arg| format!("--{}", arg.get_long().unwrap_or_default()))
            .collect();
        valued.sort();
        let mut known: Vec<String> = phasegate::report::VALUED.iter().map(|name| (*name).to_owned()).collect();
        known.sort();
        assert_eq!(valued, known);
        let files: Vec<String> = run
            .get_arguments()
            .filter(|arg| arg.get_value_names().is_some_and(|names| names.iter().any(|name| name == "FILE")))
            .map(|arg| format!("--{}", arg.get_long().unwrap_or_default()))
            .collect();
        assert_eq!(files, phasegate::report::OUTPUTS);
    }
}
