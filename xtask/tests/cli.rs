//! End-to-end runs of the `cargo xtask` binary on specs written to a temporary
//! project: exit codes, report files, errors, dry runs and logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary project directory with a spec in it.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project { dir: tempfile::tempdir().expect("temporary directory") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    /// The binary in this project, with none of the caller's settings that
    /// change a run: `CI`, `RUST_LOG` and `PHASEGATE_*` are removed.
    fn command(&self) -> Command {
        self.prepared(Command::new(env!("CARGO_BIN_EXE_xtask")))
    }

    /// `command` (which starts the binary) in this project, with none of the caller's
    /// settings that change a run.
    fn prepared(&self, mut command: Command) -> Command {
        command.current_dir(self.path()).env_remove("RUST_LOG").env_remove("CI");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PHASEGATE_") {
                command.env_remove(name);
            }
        }
        command
    }

    fn xtask(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run xtask")
    }

    /// The JSON report of phase `a` of the latest run of experiment `e2e`.
    fn latest_report(&self) -> serde_json::Value {
        self.latest_phase_report("a")
    }

    fn latest_phase_report(&self, phase: &str) -> serde_json::Value {
        let path = self.path().join(format!("reports/e2e/latest/{phase}/report.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("a report")).expect("a JSON report")
    }

    fn run(&self, spec: &str, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["run", spec, "--plain"];
        args.extend_from_slice(extra);
        let output = self.xtask(&args);
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `command`, run by the user nobody when the tests run as root (whom file modes do
    /// not stop), and by the caller otherwise. The project lets everyone in; where
    /// nobody may not reach the binary (a checkout under a private home), it runs a
    /// copy of it in the project.
    fn unprivileged(&self) -> Command {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(0o777)).expect("open the project");
        // SAFETY: `geteuid` only reads the process's user id.
        if unsafe { libc::geteuid() } != 0 {
            return self.command();
        }
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
        let as_nobody = |program: &Path| {
            let mut command = self.prepared(Command::new(program));
            command.uid(65534).gid(65534);
            command
        };
        let reachable = as_nobody(&binary).arg("--version").output().is_ok_and(|output| output.status.success());
        if reachable {
            return as_nobody(&binary);
        }
        let copy = self.path().join(".xtask");
        if !copy.exists() {
            std::fs::copy(&binary, &copy).expect("copy the binary");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("let everyone run it");
        }
        as_nobody(&copy)
    }
}

/// The exit code, stdout and stderr of `command`.
fn outcome(mut command: Command) -> (i32, String, String) {
    let output = command.output().expect("run xtask");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn spec(checks: &str, slow_params: &str) -> String {
    format!(
        r#"
[experiment]
name = "e2e"
seed = 3

[defaults]
repeats = 5

[[phase]]
id = "a"
title = "Phase A"

[[phase.workload]]
id = "slow"
kernel = "mock"
[phase.workload.params]
time_ms = 4.0
{slow_params}

[[phase.workload]]
id = "fast"
kernel = "mock"
reference = "slow"
seed = 11
[phase.workload.params]
time_ms = 1.0
jitter = 0.02
{checks}
"#
    )
}

const SPEEDUP: &str = r#"
[[phase.check]]
id = "speedup"
expr = "slow.warm.median / fast.warm.median >= 3"
rationale = "fast is at least 3x slow"
"#;

#[test]
fn passing_spec_writes_reports_and_exits_0() {
    let project = Project::new();
    project.write("pass.toml", &spec(SPEEDUP, ""));
    let (code, stdout, stderr) = project.run("pass.toml", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("phase a (Phase A): PASS"), "{stdout}");
    assert!(stderr.contains("slow done (5 warm samples"), "plain progress lines: {stderr}");
    let root = project.path().join("reports/e2e");
    let latest = root.join("latest");
    for file in ["env.json", "summary.md", "a/report.md", "a/report.json"] {
        assert!(latest.join(file).is_file(), "missing {file}");
    }
    let report = project.latest_report();
    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["verdicts"][0]["status"], "pass");
    assert_eq!(report["environment"]["debug_assertions"], cfg!(debug_assertions));
    let environment = &report["environment"];
    assert!(environment["memory_bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{environment}");
    assert!(environment["cores"].as_u64().is_some_and(|cores| cores > 0), "{environment}");
    assert!(environment["cpu_model"].as_str().is_some_and(|model| !model.is_empty()), "{environment}");
    assert!(environment["rustc"].as_str().is_some_and(|rustc| rustc.starts_with("rustc ")), "{environment}");
    // The raw samples are in the report, each with its time.
    let samples = report["runs"][0]["samples"].as_array().unwrap();
    assert!(samples.len() >= 5 && samples.iter().all(|sample| sample["seconds"].as_f64().is_some()), "{samples:?}");
    // The run directory holds what a run writes and nothing else: its scratch
    // directory is gone.
    let mut files: Vec<String> = std::fs::read_dir(&latest)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["a", "env.json", "summary.md"]);
    // `DATE exit=N DIR PHASE=VERDICT rev=REV :: COMMAND`, where DIR is named after the
    // date and the host.
    let log = std::fs::read_to_string(root.join("run_log.txt")).unwrap();
    assert_eq!(log.lines().count(), 1);
    let first = std::fs::read_link(&latest).unwrap();
    let (fields, command) = log.trim_end().split_once(" :: ").expect("a command after ` :: `");
    assert_eq!(command, "cargo xtask run pass.toml --plain");
    let fields: Vec<&str> = fields.split(' ').collect();
    let dir = format!("reports/e2e/{}", first.display());
    assert_eq!(fields[1..4], ["exit=0", dir.as_str(), "a=pass"], "{log}");
    assert!(fields[4].starts_with("rev=") && fields.len() == 5, "{log}");
    let stamp = fields[0].replace(':', "");
    assert!(stamp.len() == 18 && first.to_string_lossy().starts_with(&format!("{stamp}-")), "{log}");
    // A second run gets its own directory; `latest` moves, the first stays.
    let (code, _, _) = project.run("pass.toml", &[]);
    assert_eq!(code, 0);
    let second = std::fs::read_link(&latest).unwrap();
    assert_ne!(first, second);
    assert!(root.join(&first).join("a/report.json").is_file());
    assert_eq!(std::fs::read_to_string(root.join("run_log.txt")).unwrap().lines().count(), 2);
}

#[test]
fn progress_counts_the_runs_and_steps_a_filter_leaves() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let (code, stdout, stderr) = project.run("spec.toml", &["--filter", "slow"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("skipped        speedup: fast: excluded by --filter"), "{stdout}");
    // One warm-up and five samples of `slow`; `fast` is not run.
    assert!(stderr.contains("phase a (Phase A): 1 run, 6 steps\n  slow done (5 warm samples, last "), "{stderr}");
    assert!(!stderr.contains("fast done"), "{stderr}");
}

/// A phase the filter leaves nothing of is not run and gets no report; each phase
/// that runs can be reproduced with its report's command.
#[test]
fn a_phase_the_filter_empties_is_not_run() {
    let project = Project::new();
    let second = "\n[[phase]]\nid = \"b\"\n\n[[phase.workload]]\nid = \"w\"\nkernel = \"mock\"\n";
    project.write("spec.toml", &format!("{}{second}", spec(SPEEDUP, "")));
    let (code, stdout, stderr) = project.run("spec.toml", &["--filter", "b/w"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("phase a"), "{stdout}");
    let latest = project.path().join("reports/e2e/latest");
    assert!(!latest.join("a").exists() && latest.join("b/report.json").is_file());
    let reproduce = project.latest_phase_report("b")["invocation"]["reproduce"].as_str().unwrap().to_owned();
    assert_eq!(reproduce, "cargo xtask run spec.toml --plain --filter b/w --phase b");
    let (code, stdout, stderr) = project.run("spec.toml", &["--filter", "b/w", "--phase", "b"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // A filter that leaves nothing of the phase selected says so.
    let (code, _, stderr) = project.run("spec.toml", &["--filter", "b/w", "--phase", "a"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`--filter b/w` matches no workload of phase `a`"), "{stderr}");
}

#[test]
fn progress_lines_go_to_a_log_that_is_not_a_terminal() {
    let project = Project::new();
    project
        .write("spec.toml", &spec(SPEEDUP, "").replace("id = \"slow\"", "id = \"slow\"\nmodes = [\"cold\", \"warm\"]"));
    // No `--plain`: stderr is a pipe, as in a CI log, so the lines are plain anyway.
    let output = project.xtask(&["run", "spec.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // `slow` takes five cold samples (the warm-up is warm only), a warm-up and five
    // warm samples; `fast` a warm-up and five samples.
    assert!(stderr.contains("phase a (Phase A): 2 runs, 17 steps\n"), "{stderr}");
    // A run is done after the last sample of its last mode.
    assert_eq!(stderr.matches("  slow done (5 warm samples, last ").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("  fast done (5 warm samples, last ").count(), 1, "{stderr}");
    assert!(!stderr.contains("cold samples"), "{stderr}");
}

#[test]
fn the_command_line_is_recorded_as_a_shell_would_take_it() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let (code, stdout, stderr) =
        project.run("spec.toml", &["--set", "experiment.title=Bob's run", "--set", "defaults.repeats=6"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let command = "cargo xtask run spec.toml --plain --set 'experiment.title=Bob'\\''s run' --set defaults.repeats=6";
    let report = project.latest_report();
    assert_eq!(report["invocation"]["command"], command);
    assert_eq!(report["invocation"]["reproduce"], format!("{command} --phase a"));
    let log = std::fs::read_to_string(project.path().join("reports/e2e/run_log.txt")).unwrap();
    assert!(log.ends_with(&format!(" :: {command}\n")), "{log}");
    // Overrides from the environment lead the command, sorted, so that it reproduces.
    let output = project
        .command()
        .args(["run", "spec.toml", "--plain"])
        .env("PHASEGATE_DEFAULTS__WARMUP", "0")
        .env("PHASEGATE_DEFAULTS__REPEATS", "5 ")
        .output()
        .expect("run xtask");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let command = "PHASEGATE_DEFAULTS__REPEATS='5 ' PHASEGATE_DEFAULTS__WARMUP=0 cargo xtask run spec.toml --plain";
    let report = project.latest_report();
    assert_eq!(report["invocation"]["command"], command);
    assert_eq!(report["invocation"]["reproduce"], format!("{command} --phase a"));
}

/// A spec in `experiments/` of a git repository, run from that directory: reports and
/// plans are found from the repository's top level, not from where it ran, and the
/// reproducing command, run by a shell at the top level, reproduces the phase.
#[test]
fn a_run_from_a_subdirectory_writes_under_the_project_root() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("plans")).unwrap();
    let text = spec(SPEEDUP, "").replace("seed = 3", "seed = 3\nplan = \"plans/e2e.md\"");
    project.write("experiments/e2e.toml", &text);
    project.write("plans/e2e.md", "<!-- phasegate:begin e2e/a -->\n<!-- phasegate:end -->\n");
    let status = Command::new("git").args(["init", "-q"]).current_dir(project.path()).status().expect("run git");
    assert!(status.success());
    let output = project
        .command()
        .args(["run", "--plain", "--log-file", "log.jsonl", "--", "e2e.toml"])
        .current_dir(project.path().join("experiments"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report = project.latest_report();
    assert_eq!(report["invocation"]["report_dir"].as_str().map(|dir| dir.starts_with("reports/e2e/")), Some(true));
    assert!(!project.path().join("experiments/reports").exists());
    let plan = std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap();
    assert!(plan.contains("- [x] `speedup`: 4.0"), "{plan}");
    let log = project.path().join("experiments/log.jsonl");
    let logged = std::fs::read_to_string(&log).unwrap();
    // The phase alone, before the `--`, and without the run's log.
    let reproduce = report["invocation"]["reproduce"].as_str().unwrap();
    assert_eq!(reproduce, "cd experiments && cargo xtask run --plain --phase a -- e2e.toml");
    let binary = env!("CARGO_BIN_EXE_xtask");
    let line = reproduce.replace("cargo xtask", &format!("'{binary}'"));
    let output = project.prepared(Command::new("sh")).args(["-c", &line]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{line}: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(project.latest_report()["invocation"]["command"], reproduce);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), logged, "the run's log is left alone");
}

/// Words that are not UTF-8 are recorded with their bytes escaped (bash reads them
/// back), not refused.
#[test]
fn a_command_line_that_is_not_utf8_is_recorded_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let project = Project::new();
    let name = std::ffi::OsStr::from_bytes(b"b\xff.toml");
    std::fs::write(project.path().join(name), spec(SPEEDUP, "")).unwrap();
    let output = project.command().arg("check").arg(name).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let output = project.command().args(["run", "--plain"]).arg(name).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let command = project.latest_report()["invocation"]["command"].as_str().unwrap().to_owned();
    assert_eq!(command, "cargo xtask run --plain $'b\\xff.toml'");
}

/// Output nobody reads any more (a pipe whose reader quit, as `| head -1` leaves it, or
/// a full device) does not end a run: it writes its reports and log line and exits
/// with its verdict's code.
#[test]
fn a_run_whose_output_cannot_be_written_still_finishes() {
    let project = Project::new();
    project.write("pass.toml", &spec(SPEEDUP, ""));
    project.write("fail.toml", &spec(&SPEEDUP.replace(">= 3", ">= 6"), ""));
    // Where stdout and stderr go, a fresh pair each time.
    type Streams = fn() -> (std::process::Stdio, std::process::Stdio);
    let mut outputs: Vec<(&str, Streams)> = vec![("closed pipes", || {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        (writer.try_clone().expect("a pipe").into(), writer.into())
    })];
    if Path::new("/dev/full").exists() {
        outputs.push(("/dev/full", || {
            let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
            (full().into(), full().into())
        }));
    }
    let mut runs = 0;
    for (what, streams) in outputs {
        for (spec_file, verdict, code) in [("pass.toml", "a=pass", 0), ("fail.toml", "a=fail", 1)] {
            let (stdout, stderr) = streams();
            let status = project
                .command()
                .args(["run", spec_file, "--plain"])
                .stdout(stdout)
                .stderr(stderr)
                .status()
                .expect("run xtask");
            assert_eq!(status.code(), Some(code), "{spec_file}, output to {what}");
            runs += 1;
            let log = std::fs::read_to_string(project.path().join("reports/e2e/run_log.txt")).unwrap_or_default();
            assert_eq!(log.lines().count(), runs, "{spec_file}, output to {what}: {log}");
            let last = log.lines().last().unwrap_or_default();
            assert!(last.contains(&format!(" exit={code} ")) && last.contains(verdict), "{last}");
            let run_dir = project.path().join(last.split(' ').nth(2).unwrap_or_default());
            assert!(run_dir.join("summary.md").is_file() && run_dir.join("a/report.json").is_file(), "{last}");
        }
    }
}

#[test]
fn failing_check_exits_1() {
    let project = Project::new();
    project.write("fail.toml", &spec(&SPEEDUP.replace(">= 3", ">= 6"), ""));
    let (code, stdout, _) = project.run("fail.toml", &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("speedup observed 4.0"), "{stdout}");
}

#[test]
fn broken_spec_exits_2_and_points_at_the_line() {
    let project = Project::new();
    project.write("broken.toml", &spec(SPEEDUP, "").replace("repeats = 5", "repeats = 5\nwarmpu = 1"));
    let (code, stdout, stderr) = project.run("broken.toml", &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("unknown key `warmpu` in `defaults`"), "{stderr}");
    assert!(stderr.contains("--> broken.toml:8:1"), "{stderr}");
    assert!(stderr.contains("did you mean `warmup`?"), "{stderr}");
    assert!(!project.path().join("reports").exists(), "nothing ran");
    let (code, _, stderr) = project.run("missing.toml", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read the spec"), "{stderr}");
}

/// An override that no run takes is said, on the command line, and the spec stays valid.
#[test]
fn an_override_no_run_takes_is_warned_about() {
    let project = Project::new();
    let text = spec(SPEEDUP, "").replace("reference = \"slow\"", "reference = \"slow\"\nrepeats = 3");
    project.write("own.toml", &text.replace("id = \"slow\"", "id = \"slow\"\nrepeats = 7"));
    // Without `NO_COLOR`, but not on a terminal: plain text, without colour escapes.
    let output = project
        .command()
        .args(["check", "own.toml", "--set", "defaults.repeats=2"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(" WARN `defaults.repeats` (from --set defaults.repeats=2) changes no run"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    let output = project.xtask(&["check", "own.toml", "--set", "defaults.warmup=2"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("changes no run"));
}

#[test]
fn a_profile_with_untimed_sizes_makes_timing_checks_not_applicable() {
    let project = Project::new();
    let timed = SPEEDUP.replace(">= 3", ">= 6").replace("rationale", "requires = [\"build:optimized\"]\nrationale");
    let text = format!("{}\n[profile.tiny]\n\"experiment.untimed\" = \"sizes made for tests\"\n", spec(&timed, ""));
    project.write("tiny.toml", &text);
    let (code, stdout, stderr) = project.run("tiny.toml", &["--profile", "tiny"]);
    assert_eq!(code, 0, "the failing ratio is not judged at untimed sizes: {stdout}{stderr}");
    let report = project.latest_report();
    assert_eq!(report["experiment"]["untimed"], "sizes made for tests");
    let verdict = &report["verdicts"][0];
    assert_eq!(verdict["status"], "not_applicable", "{verdict}");
    assert!(verdict["reason"].as_str().unwrap().ends_with("sizes made for tests"), "{verdict}");
}

#[test]
fn crashed_workload_exits_3() {
    let project = Project::new();
    project.write("crash.toml", &spec(SPEEDUP, "fail_at = 2"));
    let (code, stdout, stderr) = project.run("crash.toml", &[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains("run slow failed: step failed: mock failure at sample 2"), "{stdout}");
    assert!(stdout.contains("not measured"), "the check is not measured, not passed: {stdout}");
    assert!(stderr.contains("\n  slow FAILED: step failed: mock failure at sample 2"), "{stderr}");
}

#[test]
fn inconclusive_check_exits_4() {
    let project = Project::new();
    project.write("unsure.toml", &spec(&SPEEDUP.replace(">= 3", ">= 4"), "jitter = 0.05"));
    let (code, stdout, _) = project.run("unsure.toml", &[]);
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("straddles the threshold"), "{stdout}");
}

#[test]
fn command_kernel_failure_reports_stderr() {
    let project = Project::new();
    let text = r#"
[experiment]
name = "cmd"
seed = 1

[defaults]
repeats = 3
timeout = 5

[[phase]]
id = "a"

[[phase.workload]]
id = "ok"
kernel = "command"
[phase.workload.params]
program = "true"

[[phase.workload]]
id = "bad"
kernel = "command"
[phase.workload.params]
program = "sh"
args = ["-c", "echo something broke >&2; exit {code}"]
code = 3
"#;
    project.write("cmd.toml", text);
    let (code, stdout, stderr) = project.run("cmd.toml", &[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let report = std::fs::read_to_string(project.path().join("reports/cmd/latest/a/report.md")).unwrap();
    assert!(report.contains("exited with exit status: 3"), "{report}");
    assert!(report.contains("something broke"), "stderr is in the report: {report}");
    assert!(report.contains("### `ok` (kernel `command`)"), "{report}");
}

/// An `{env:VAR}` that is unset or not UTF-8 is refused before anything runs, by
/// `check` and `run` alike, saying which; `requires_env` skips the workload instead.
#[test]
fn an_environment_placeholder_that_cannot_be_read_is_refused_up_front() {
    use std::os::unix::ffi::OsStrExt;
    let project = Project::new();
    let params = "program = \"true\"\nargs = [\"{env:EXAMPLE_TOOL_BYTES}\"]\n";
    let text = timeout_spec("cmd", "5", "w", "command", params);
    project.write("cmd.toml", &text);
    for (value, problem) in [(None, "is not set"), (Some(&b"a\xffb"[..]), "is not valid UTF-8")] {
        for command in ["check", "run"] {
            let mut started = project.command();
            started.args([command, "cmd.toml"]).env_remove("EXAMPLE_TOOL_BYTES");
            if let Some(value) = value {
                started.env("EXAMPLE_TOOL_BYTES", std::ffi::OsStr::from_bytes(value));
            }
            let output = started.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
            let message = format!("run `w` reads the environment variable EXAMPLE_TOOL_BYTES, which {problem}");
            assert!(stderr.contains(&message), "{command}: {stderr}");
            assert!(stderr.contains("requires_env = \"EXAMPLE_TOOL_BYTES\""), "{stderr}");
        }
    }
    assert!(!project.path().join("reports/cmd").exists(), "nothing ran");
    let output = project.command().args(["run", "cmd.toml"]).env("EXAMPLE_TOOL_BYTES", "x").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    project.write(
        "skipped.toml",
        &text.replace("kernel = \"command\"", "kernel = \"command\"\nrequires_env = \"EXAMPLE_TOOL_BYTES\""),
    );
    let output = project.command().args(["run", "skipped.toml"]).env_remove("EXAMPLE_TOOL_BYTES").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

/// A spec of one sample of one workload, under a per-sample `timeout` in seconds.
fn timeout_spec(name: &str, timeout: &str, workload: &str, kernel: &str, params: &str) -> String {
    format!(
        r#"
[experiment]
name = "{name}"
seed = 1

[defaults]
repeats = 1
warmup = 0
timeout = {timeout}

[[phase]]
id = "a"

[[phase.workload]]
id = "{workload}"
kernel = "{kernel}"
[phase.workload.params]
{params}"#
    )
}

#[test]
fn command_kernel_timeout_fails_the_run() {
    let project = Project::new();
    let params = "program = \"sleep\"\nargs = [\"{seconds}\"]\nseconds = 5\n";
    project.write("slow.toml", &timeout_spec("slowcmd", "0.2", "sleepy", "command", params));
    let (code, stdout, _) = project.run("slow.toml", &[]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("`sleep` timed out: "), "{stdout}");
    assert!(stdout.contains("s into the sample, past its timeout of 0.2 s"), "{stdout}");
}

#[test]
fn tree_build_stops_between_batches_at_the_timeout() {
    let project = Project::new();
    // The root and 8 batches of 512: the build is asked after each batch whether the
    // sample's time is up, and one batch takes longer than a microsecond.
    let params = "points = 4097\nqueries = 16\nverify = false\n";
    project.write("tree.toml", &timeout_spec("slowtree", "0.000001", "pcct", "tree", params));
    let (code, stdout, _) = project.run("tree.toml", &[]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("run pcct failed: step failed: stopped after 1 of 8 insertion batches: "), "{stdout}");
    assert!(stdout.contains("past its timeout of 0.000001 s"), "{stdout}");
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `condition` every 20 ms, at most `polls` times; whether it came true.
fn eventually(polls: u32, mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..polls {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    condition()
}

/// Every directory under `dir` whose name is `name`.
fn directories_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            if path.file_name().is_some_and(|file_name| file_name == name) {
                found.push(path.clone());
            }
            directories_named(&path, name, found);
        }
    }
}

#[test]
fn an_interrupt_ends_the_commands_processes_and_leaves_no_scratch() {
    use std::os::unix::process::CommandExt;
    let project = Project::new();
    let text = r#"
[experiment]
name = "stop"
seed = 1

[defaults]
repeats = 1
warmup = 0

[[phase]]
id = "quick"

[[phase.workload]]
id = "instant"
kernel = "mock"

[[phase]]
id = "a"

[[phase.workload]]
id = "sleepy"
kernel = "command"
[phase.workload.params]
program = "sh"
args = ["-c", "echo x > {workdir}/file; sleep 20 & echo $$ $! > {cwd}/pids.new; mv {cwd}/pids.new {cwd}/pids; wait"]
workdir = "fresh"
"#;
    project.write("stop.toml", text);
    // SIGTERM to phasegate alone, and SIGINT to its process group, as a terminal's
    // Ctrl-C sends it, while the second phase runs: the command is in neither, so
    // phasegate must end it. Started with SIGINT ignored, as a background job of a
    // non-interactive shell is, phasegate takes no notice of SIGINT but still of SIGTERM.
    for (signal, target, int_ignored) in [("-TERM", "", false), ("-INT", "-", false), ("-TERM", "", true)] {
        let signal_to = |signal: &str, target: &str, pid: u32| {
            let status = Command::new("kill").args([signal, "--", &format!("{target}{pid}")]).status();
            assert!(status.expect("run kill").success());
        };
        let pids_file = project.path().join("pids");
        let _ = std::fs::remove_file(&pids_file);
        let mut command = if int_ignored {
            let mut shell = Command::new("sh");
            shell.args(["-c", "trap '' INT; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_xtask")]);
            project.prepared(shell)
        } else {
            let mut command = project.command();
            // The tests may run with SIGINT ignored (as a background job does); phasegate
            // starts with it at its default here.
            // SAFETY: between fork and exec the closure only calls `signal`, which is
            // async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                    Ok(())
                });
            }
            command
        };
        command.args(["run", "stop.toml", "--plain"]).process_group(0);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut phasegate = command.spawn().expect("run xtask");
        assert!(eventually(500, || pids_file.is_file()), "the command did not start");
        let pids: Vec<i32> =
            std::fs::read_to_string(&pids_file).unwrap().split_whitespace().map(|pid| pid.parse().unwrap()).collect();
        if int_ignored {
            signal_to("-INT", "-", phasegate.id());
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert_eq!(phasegate.try_wait().unwrap(), None, "SIGINT, ignored when phasegate started, ended it");
            assert!(pids.iter().all(|&pid| running(pid)), "SIGINT, ignored, ended the command {pids:?}");
        }
        signal_to(signal, target, phasegate.id());
        let signal = if int_ignored { "-TERM with SIGINT ignored" } else { signal };
        let mut exit = None;
        let exited = eventually(500, || {
            exit = phasegate.try_wait().unwrap();
            exit.is_some()
        });
        if !exited {
            let _ = phasegate.kill();
        }
        // The status itself in the message: a code, or the signal that ended it.
        assert_eq!(exit.and_then(|status| status.code()), Some(130), "phasegate after {signal}: {exit:?}");
        let gone = eventually(100, || pids.iter().all(|&pid| !running(pid)));
        let survivors: Vec<i32> = pids.iter().copied().filter(|&pid| running(pid)).collect();
        for pid in &survivors {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        assert!(gone, "after {signal} these processes of the command still run: {survivors:?} (sh, sleep: {pids:?})");
        let mut scratch = Vec::new();
        directories_named(&project.path().join("reports"), "scratch", &mut scratch);
        assert!(scratch.is_empty(), "after {signal}, scratch directories are left: {scratch:?}");
        // The run log lists the interrupted run.
        let log = std::fs::read_to_string(project.path().join("reports/stop/run_log.txt")).unwrap_or_default();
        let last = log.lines().last().unwrap_or_default();
        assert!(last.contains(" exit=130 reports/stop/") && last.contains(" quick=pass interrupted rev="), "{log}");
        // The phase that finished before the interrupt keeps its report.
        let run_dir = last.split(' ').nth(2).unwrap_or_default();
        assert!(project.path().join(run_dir).join("quick/report.json").is_file(), "after {signal}: {log}");
        // `latest` names finished runs only.
        assert!(std::fs::symlink_metadata(project.path().join("reports/stop/latest")).is_err(), "after {signal}");
    }
}

/// An interrupt after a run starts but before its first phase does (here while `git`
/// is asked for the revision, made slow by a `git` of the test's own on the path) also
/// exits with 130 and its message, rather than killing the process with the signal.
#[test]
fn an_interrupt_before_the_first_phase_exits_with_130() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let project = Project::new();
    project.write("quick.toml", &spec("", ""));
    let bin = project.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let started = project.path().join("git-started");
    let git = bin.join("git");
    // Quick to say the project is no repository (its root is then the directory it runs
    // in, as before), slow on the revision the run's environment records.
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in *show-toplevel*) exit 1;; esac\ntouch '{}'\nexec sleep 20\n",
        started.display()
    );
    std::fs::write(&git, script).unwrap();
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = project.command();
    command.args(["run", "quick.toml", "--plain"]).env("PATH", path).process_group(0);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut phasegate = command.spawn().expect("run xtask");
    assert!(eventually(500, || started.is_file()), "git was not asked");
    let group = format!("-{}", phasegate.id());
    let status = Command::new("kill").args(["-TERM", &phasegate.id().to_string()]).status();
    assert!(status.expect("run kill").success());
    let mut exit = None;
    eventually(500, || {
        exit = phasegate.try_wait().unwrap();
        exit.is_some()
    });
    // The slow `git` and anything else left in the group.
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let output = phasegate.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(exit.and_then(|status| status.code()), Some(130), "{exit:?}: {stderr}");
    assert!(stderr.contains("interrupted: scratch files removed"), "{stderr}");
    // No phase ran: no report, and `latest` names no run.
    assert!(std::fs::symlink_metadata(project.path().join("reports/e2e/latest")).is_err());
}

#[test]
fn outputs_outside_the_project_and_absurd_sizes_are_refused() {
    let project = Project::new();
    project.write("outside.toml", &spec(SPEEDUP, "").replace("seed = 3", "seed = 3\noutput = \"../elsewhere\""));
    let (code, _, stderr) = project.run("outside.toml", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("reports would be written outside the project"), "{stderr}");
    assert!(stderr.contains("--allow-outside"), "{stderr}");
    // Through a link that leads out of the project too.
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), project.path().join("link")).unwrap();
    project.write("linked.toml", &spec(SPEEDUP, "").replace("seed = 3", "seed = 3\noutput = \"link/reports\""));
    let output = project.xtask(&["check", "linked.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reports would be written outside the project, to "), "{stderr}");
    assert!(stderr.contains("/link/reports/e2e (through a link: "), "{stderr}");
    let output = project.xtask(&["check", "linked.toml", "--allow-outside"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    project.write("huge.toml", &spec(SPEEDUP, "size = 1099511627776"));
    let (code, _, stderr) = project.run("huge.toml", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("would need 8.0 TiB of memory"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn the_memory_of_a_group_is_the_sum_of_its_runs_that_run() {
    let project = Project::new();
    // The mock needs 8 bytes per element: each of the two partners three quarters of
    // the memory available, which they hold at once, and a workload of its own one
    // and a half times that memory.
    let available = phasegate::env::meminfo_bytes("MemAvailable:");
    assert!(available > 0, "MemAvailable is read from /proc/meminfo");
    let size = available * 3 / 4 / 8;
    let big = format!(
        "\n[[phase.workload]]\nid = \"big\"\nkernel = \"mock\"\n[phase.workload.params]\nsize = {}\n",
        2 * size
    );
    let text =
        spec(SPEEDUP, &format!("size = {size}")).replace("jitter = 0.02", &format!("jitter = 0.02\nsize = {size}"));
    project.write("spec.toml", &(text + &big));
    let output = project.xtask(&["check", "spec.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`slow`, `fast` would need "), "the first group is refused: {stderr}");
    // Runs the filter leaves out need nothing, however large.
    let output = project.xtask(&["check", "spec.toml", "--filter", "slow"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn unwritable_output_directory_is_refused() {
    let project = Project::new();
    std::fs::write(project.path().join("reports"), "a file where the directory should be").unwrap();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let (code, _, stderr) = project.run("spec.toml", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot create the output directory"), "{stderr}");
}

#[test]
fn dry_run_list_and_check_run_nothing() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, "size = [8, 16]"));
    let output = project.xtask(&["run", "spec.toml", "--dry-run", "--set", "defaults.repeats=9"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains("slow[size=8]") && stdout.contains("slow[size=16]"), "{stdout}");
    assert!(stdout.contains("repeats  = 9                (--set defaults.repeats=9)"), "{stdout}");
    assert!(stdout.contains("estimated time: unknown"), "{stdout}");
    assert!(!project.path().join("reports").exists());
    let output = project.xtask(&["list", "spec.toml"]);
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("check speedup: slow.warm.median / fast.warm.median >= 3 at [size=8], [size=16]")
    );
    let output = project.xtask(&["check", "spec.toml"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid (3 runs, 1 check)"));
    // After a run, the dry run estimates from its report.
    let (code, _, _) = project.run("spec.toml", &[]);
    assert_eq!(code, 0);
    let output = project.xtask(&["run", "spec.toml", "--dry-run"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("for 3 runs from earlier reports of the same work"));
    // A report it cannot read is said, not taken for the absence of any.
    std::fs::write(project.path().join("reports/e2e/latest/a/report.json"), "{").unwrap();
    let output = project.xtask(&["run", "spec.toml", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the estimate reads no earlier report: "), "{stderr}");
}

#[test]
fn log_file_has_one_json_line_per_sample() {
    let project = Project::new();
    // An inconclusive check with one re-run allowed: the log has two rounds.
    let text =
        spec(&SPEEDUP.replace(">= 3", ">= 4"), "jitter = 0.05").replace("repeats = 5", "repeats = 5\nreruns = 1");
    project.write("spec.toml", &text);
    let (code, stdout, _) = project.run("spec.toml", &["--log-file", "log.jsonl"]);
    // The mock's samples are seeded: the pooled rounds still straddle 4.
    assert_eq!(code, 4, "{stdout}");
    let log = std::fs::read_to_string(project.path().join("log.jsonl")).unwrap();
    let samples = log_fields(&log, "phasegate::sample");
    // Two workloads, one warm-up and five samples each, in each of two rounds.
    assert_eq!(samples.len(), 24, "{log}");
    let slow_in_round = |round: u64| {
        samples.iter().filter(|sample| sample["run"] == "slow" && sample["round"].as_u64() == Some(round)).count()
    };
    assert_eq!((slow_in_round(0), slow_in_round(1)), (6, 6), "{log}");
    let fields = &samples[0];
    assert!(fields["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(fields["metrics"]["sample_index"], 0.0, "the metrics are an object: {fields}");
    assert_eq!(project.latest_report()["invocation"]["rounds"], 2, "the report counts the re-run");
}

#[test]
fn a_log_file_that_cannot_be_created_is_refused_before_anything_runs() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let (code, _, stderr) = project.run("spec.toml", &["--log-file", "no/such/dir/log.jsonl"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot create the log file no/such/dir/log.jsonl"), "{stderr}");
    assert!(!project.path().join("reports").exists(), "nothing ran");
    // A dry run refuses what a run would.
    let (code, _, stderr) = project.run("spec.toml", &["--dry-run", "--log-file", "no/such/dir/log.jsonl"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot create the log file no/such/dir/log.jsonl: no/such/dir is not a"), "{stderr}");
}

/// The log file is created only when a run is about to start: a dry run, a spec that
/// does not load and a run refused before it starts leave an earlier log alone (and
/// create none), and a log that would be the spec itself is refused.
#[test]
fn only_a_run_that_starts_replaces_its_log_file() {
    let project = Project::new();
    let text = spec(SPEEDUP, "");
    project.write("spec.toml", &text);
    project.write("outside.toml", &text.replace("seed = 3", "seed = 3\noutput = \"../elsewhere\""));
    project.write("log.jsonl", "earlier\n");
    let log = || std::fs::read_to_string(project.path().join("log.jsonl")).unwrap();
    for (spec, dry_run, expected) in
        [("spec.toml", true, 0), ("missing.toml", false, 2), ("outside.toml", false, 2), ("outside.toml", true, 2)]
    {
        let extra = if dry_run { &["--dry-run"][..] } else { &[] };
        let (code, stdout, stderr) = project.run(spec, &[extra, &["--log-file", "log.jsonl"]].concat());
        assert_eq!(code, expected, "{spec} {extra:?}: {stdout}{stderr}");
        assert_eq!(log(), "earlier\n", "{spec} {extra:?}");
        let (code, _, _) = project.run(spec, &[extra, &["--log-file", "new.jsonl"]].concat());
        assert_eq!(code, expected, "{spec} {extra:?}");
        assert!(!project.path().join("new.jsonl").exists(), "{spec} {extra:?}");
    }
    for extra in [&["--dry-run"][..], &[]] {
        let (code, _, stderr) = project.run("spec.toml", &[extra, &["--log-file", "./spec.toml"]].concat());
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("error: the log file ./spec.toml is the spec spec.toml: a run would empty it"),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(project.path().join("spec.toml")).unwrap(), text);
    }
    assert!(!project.path().join("reports").exists(), "nothing ran");
    let (code, _, _) = project.run("spec.toml", &["--log-file", "log.jsonl"]);
    assert_eq!(code, 0);
    assert_eq!(log_fields(&log(), "phasegate::sample").len(), 12, "{}", log());
}

/// A spec of one phase holding one workload, given as its TOML lines.
fn one_workload(workload: &str) -> String {
    format!(
        "[experiment]\nname = \"e2e\"\nseed = 3\n\n[[phase]]\nid = \"a\"\ntitle = \"Phase A\"\n\n[[phase.workload]]\n{workload}"
    )
}

/// The fields of the records of a JSON-lines log with `target` (every line must parse).
fn log_fields(log: &str, target: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["target"] == target)
        .map(|record| record["fields"].clone())
        .collect()
}

/// Runs a spec of one workload with `--log-file`, which must pass: the project, the
/// log and its telemetry events.
fn run_logging(workload: &str) -> (Project, String, Vec<serde_json::Value>) {
    let project = Project::new();
    project.write("spec.toml", &one_workload(workload));
    let (code, stdout, stderr) = project.run("spec.toml", &["--log-file", "log.jsonl"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let log = std::fs::read_to_string(project.path().join("log.jsonl")).unwrap();
    let events = log_fields(&log, "phasegate::telemetry");
    (project, log, events)
}

/// Counts of one read in the singular: in `list` and in the plain progress lines.
#[test]
fn one_repeat_is_said_in_the_singular() {
    let project = Project::new();
    project.write("one.toml", &one_workload("id = \"w\"\nkernel = \"mock\"\nrepeats = 1\n"));
    let output = project.xtask(&["list", "one.toml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("workload w (kernel mock, 1 run, warm, 1 repeat)"), "{stdout}");
    let (code, stdout, stderr) = project.run("one.toml", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("  w done (1 warm sample, last "), "{stderr}");
}

#[test]
fn log_file_has_the_set_up_telemetry_of_warm_runs() {
    let (_, log, events) = run_logging(
        "id = \"image\"\nkernel = \"simulator\"\nrepeats = 1\nwarmup = 0\n[phase.workload.params]\ndetpixels = 8\noversample = 1\n",
    );
    let kinds: Vec<&str> = events.iter().map(|event| event["kind"].as_str().unwrap()).collect();
    // The kernel's set-up event, then the harness's set-up time.
    assert_eq!(kinds, ["simulator_setup", "setup"], "{log}");
    assert!(events[1]["fields"]["setup_s"].as_f64().unwrap() > 0.0, "{}", events[1]);
}

/// The tree kernel's telemetry with the field's names: a `run` event and a `batch`
/// event per batch for every sample in the log, and the last timed sample's in the
/// report, warm-ups or not.
#[test]
fn tree_telemetry_reaches_the_log_and_the_report() {
    let (project, log, events) = run_logging(
        "id = \"knn\"\nkernel = \"tree\"\nrepeats = 2\nwarmup = 1\n[phase.workload.params]\npoints = 300\nqueries = 16\nbatch_size = 100\n",
    );
    let of_kind = |kind: &str| events.iter().filter(|event| event["kind"] == kind).collect::<Vec<_>>();
    // A warm-up and two samples, each building 299 points in batches of 100.
    let (runs, batches) = (of_kind("run"), of_kind("batch"));
    assert_eq!((runs.len(), batches.len()), (3, 9), "{log}");
    for name in
        ["build_s", "query_s", "qps", "distance_evals_build", "distance_evals_query", "tree_depth", "root_level"]
    {
        assert!(runs[0]["fields"][name].is_number(), "run event lacks {name}: {}", runs[0]);
    }
    for name in ["batch_index", "candidates", "selected", "dominated", "edges", "mis_iterations", "traversal_ms"] {
        assert!(batches[0]["fields"][name].is_number(), "batch event lacks {name}: {}", batches[0]);
    }
    let report = project.latest_report();
    let kinds: Vec<&str> =
        report["runs"][0]["events"].as_array().unwrap().iter().map(|event| event["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|&&kind| kind == "batch").count(), 3, "{kinds:?}");
    assert!(kinds.contains(&"run"), "{kinds:?}");
}

#[test]
fn kernels_lists_the_kernels_as_text_or_as_markdown() {
    let project = Project::new();
    for (args, expected) in [
        (&["kernels"][..], phasegate::kernels::describe()),
        (&["kernels", "--markdown"], phasegate::kernels::describe_markdown()),
    ] {
        let output = project.xtask(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout == expected, "{args:?} printed another text, starting {:?}", stdout.lines().next());
    }
    assert_ne!(phasegate::kernels::describe(), phasegate::kernels::describe_markdown());
}

#[test]
fn help_documents_every_command() {
    let project = Project::new();
    let commands = ["run", "list", "check", "plan", "snapshot", "kernels"];
    for command in std::iter::once(vec!["--help"]).chain(commands.map(|command| vec![command, "--help"])) {
        let output = project.xtask(&command);
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{command:?}");
    }
}

/// A snapshot check of `fast`'s output.
const STABLE: &str = r#"
[[phase.check]]
id = "stable"
snapshot = { of = "fast", output = "values", max_abs = 1e-12 }
rationale = "the output does not drift"
"#;

#[test]
fn snapshots_are_recorded_checked_reviewed_and_accepted() {
    let project = Project::new();
    let check = STABLE;
    project.write("snap.toml", &spec(check, ""));
    let stored = project.path().join("snapshots/e2e/default/a/fast/values.json");
    // Under CI a missing snapshot fails and nothing is recorded.
    let output = project.command().args(["run", "snap.toml", "--plain"]).env("CI", "true").output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(!stored.exists());
    // Outside CI it is recorded and reported as new.
    let (code, stdout, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("new snapshot"), "{stdout}");
    assert!(stored.is_file());
    let (code, stdout, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("pass           stable"), "{stdout}");
    // A changed output fails, leaves the stored snapshot alone and is pending review.
    project.write("snap.toml", &spec(check, "").replace("jitter = 0.02", "jitter = 0.02\nperturb = 0.5"));
    let (code, stdout, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("max |diff| 0.5000 > 1.000e-12"), "{stdout}");
    let review = project.xtask(&["snapshot", "review", "--dir", "snapshots"]);
    let review = String::from_utf8_lossy(&review.stdout);
    assert!(review.contains("16 of 16 elements changed, max |diff| 0.5000"), "{review}");
    // A later run that matches again leaves nothing pending for `accept` to take.
    project.write("snap.toml", &spec(check, ""));
    let (code, stdout, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 0, "{stdout}");
    let review = project.xtask(&["snapshot", "review", "--dir", "snapshots"]);
    assert!(String::from_utf8_lossy(&review.stdout).contains("no pending snapshots"));
    project.write("snap.toml", &spec(check, "").replace("jitter = 0.02", "jitter = 0.02\nperturb = 0.5"));
    let (code, _, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 1);
    // A filter takes only the snapshots whose path holds it; accepting none of them is
    // not what was asked.
    let accept = project.xtask(&["snapshot", "accept", "elsewhere", "--dir", "snapshots"]);
    let stderr = String::from_utf8_lossy(&accept.stderr);
    assert!(stderr.contains("nothing accepted: the pending snapshot does not match `elsewhere`"), "{stderr}");
    assert_eq!(accept.status.code(), Some(2), "{stderr}");
    let review = project.xtask(&["snapshot", "review", "a/fast", "--dir", "snapshots"]);
    assert!(String::from_utf8_lossy(&review.stdout).contains("16 of 16 elements changed"), "still pending");
    let accept = project.xtask(&["snapshot", "accept", "--dir", "snapshots"]);
    assert!(String::from_utf8_lossy(&accept.stdout).contains("accepted"));
    let (code, stdout, _) = project.run("snap.toml", &[]);
    assert_eq!(code, 0, "{stdout}");
    let review = project.xtask(&["snapshot", "review", "--dir", "snapshots"]);
    assert!(String::from_utf8_lossy(&review.stdout).contains("no pending snapshots"));
}

/// A missing snapshot is recorded whatever the rest of its check finds, superseding
/// any pending output; a run that an override reaches stores nothing; a damaged
/// snapshot stops a run before anything runs.
#[test]
fn snapshots_are_recorded_from_the_spec_as_written_whatever_else_the_check_finds() {
    let project = Project::new();
    let check = STABLE.replace("rationale", "expr = \"fast.warm.median <= 1e-9\"\nrationale");
    project.write("snap.toml", &spec(&check, ""));
    let dir = project.path().join("snapshots/e2e/default/a/fast");
    let perturbed = "--set=phase.a.workload.fast.params.perturb=0.5";
    // With overrides, nothing is recorded, and the verdict says so.
    let (code, stdout, _) = project.run("snap.toml", &[perturbed]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "no stored snapshot; this output was not recorded: the run is overridden (--set \
             phase.a.workload.fast.params.perturb=0.5)"
        ),
        "{stdout}"
    );
    assert!(!dir.exists());
    // An override of another workload does not reach it: it is recorded, though the
    // condition fails.
    let (code, stdout, _) = project.run("snap.toml", &["--set=phase.a.workload.slow.params.time_ms=5"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("no stored snapshot; this output was recorded as the snapshot"), "{stdout}");
    assert!(dir.join("values.json").is_file());
    // A mismatch with overrides leaves nothing pending; as written, it does.
    let (_, stdout, _) = project.run("snap.toml", &[perturbed]);
    assert!(stdout.contains("the new output is not kept: the run is overridden"), "{stdout}");
    assert!(!dir.join("values.new.json").exists());
    project.write("snap.toml", &spec(&check, "").replace("jitter = 0.02", "jitter = 0.02\nperturb = 0.5"));
    project.run("snap.toml", &[]);
    assert!(dir.join("values.new.json").is_file());
    // Recording anew supersedes the pending output.
    std::fs::remove_file(dir.join("values.json")).unwrap();
    std::fs::remove_file(dir.join("values.bin")).unwrap();
    let (_, stdout, _) = project.run("snap.toml", &[]);
    assert!(stdout.contains("this output was recorded as the snapshot"), "{stdout}");
    assert!(!dir.join("values.new.json").exists() && !dir.join("values.new.bin").exists());
    // A damaged snapshot is found before anything runs, by `check` too.
    let mut bin = std::fs::OpenOptions::new().append(true).open(dir.join("values.bin")).unwrap();
    std::io::Write::write_all(&mut bin, b"garbage").unwrap();
    let runs = || std::fs::read_dir(project.path().join("reports/e2e")).unwrap().count();
    let before = runs();
    for command in [vec!["check", "snap.toml"], vec!["run", "snap.toml", "--plain"]] {
        let output = project.xtask(&command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("values.bin does not match the digest in its header"), "{stderr}");
        assert!(stderr.contains("remove the snapshot's .json and .bin to record it anew"), "{stderr}");
    }
    assert_eq!(runs(), before, "no run directory");
}

/// `snapshot review` and `accept` find the project's pending snapshots from a
/// subdirectory, a run names the `--dir` of snapshots stored elsewhere, and a
/// directory that does not exist or a filter that matches nothing is said so.
#[test]
fn pending_snapshots_are_found_from_anywhere_in_the_project() {
    let project = Project::new();
    let check = STABLE;
    for dir in ["experiments", "other", "src"] {
        std::fs::create_dir_all(project.path().join(dir)).unwrap();
    }
    let status = Command::new("git").args(["init", "-q"]).current_dir(project.path()).status().expect("run git");
    assert!(status.success());
    // Before any snapshot is stored there is no default directory, and nothing pending.
    let output = project.xtask(&["snapshot", "review"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("no snapshots recorded yet"), "{output:?}");
    // Accepting all of nothing is done; accepting what a filter names when nothing is
    // pending was not.
    let output = project.xtask(&["snapshot", "accept"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let output = project.xtask(&["snapshot", "accept", "a/fast"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "nothing accepted: no snapshots recorded yet (experiments/snapshots does not exist), so none matches `a/fast`"
        ),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let perturbed = spec(check, "").replace("jitter = 0.02", "jitter = 0.02\nperturb = 0.5");
    for spec_file in ["experiments/snap.toml", "other/snap.toml"] {
        project.write(spec_file, &spec(check, ""));
        assert_eq!(project.run(spec_file, &[]).0, 0);
        project.write(spec_file, &perturbed);
        let (code, stdout, _) = project.run(spec_file, &[]);
        assert_eq!(code, 1, "{stdout}");
        // The command the run names finds what it stored.
        let review = if spec_file.starts_with("experiments") {
            "cargo xtask snapshot review"
        } else {
            "cargo xtask snapshot --dir other/snapshots review"
        };
        assert!(stdout.contains(&format!("the new output is pending: `{review}`")), "{stdout}");
        let args: Vec<&str> = review.split(' ').skip(2).collect();
        let output = project.xtask(&args);
        let found = String::from_utf8_lossy(&output.stdout);
        assert!(found.contains("16 of 16 elements changed"), "{review}: {found}");
    }
    let in_src = |args: &[&str]| project.command().args(args).current_dir(project.path().join("src")).output().unwrap();
    let review = in_src(&["snapshot", "review"]);
    let review = String::from_utf8_lossy(&review.stdout);
    assert!(
        review.contains("../experiments/snapshots/e2e/default/a/fast/values: 16 of 16 elements changed"),
        "{review}"
    );
    // A directory that does not exist is an error, not an empty one.
    let missing = in_src(&["snapshot", "--dir", "nonexistent", "review"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("cannot read the snapshot directory nonexistent: "), "{stderr}");
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    // A filter that matches none of the pending snapshots: review says so, accept fails.
    project.write("other/more.toml", &perturbed.replace("\"e2e\"", "\"more\""));
    assert_eq!(project.run("other/more.toml", &[]).0, 0);
    assert_eq!(project.run("other/more.toml", &[]).0, 0);
    project.write("other/more.toml", &spec(check, "").replace("\"e2e\"", "\"more\""));
    assert_eq!(project.run("other/more.toml", &[]).0, 1);
    let review = project.xtask(&["snapshot", "--dir", "other/snapshots", "review", "zzz"]);
    let stdout = String::from_utf8_lossy(&review.stdout);
    assert!(stdout.contains("none of the 2 pending snapshots matches `zzz`"), "{stdout}");
    assert_eq!(review.status.code(), Some(0));
    let accept = project.xtask(&["snapshot", "--dir", "other/snapshots", "accept", "zzz"]);
    let stderr = String::from_utf8_lossy(&accept.stderr);
    assert!(stderr.contains("nothing accepted: none of the 2 pending snapshots matches `zzz`"), "{stderr}");
    assert_eq!(accept.status.code(), Some(2), "{stderr}");
    let accept = in_src(&["snapshot", "accept"]);
    assert!(String::from_utf8_lossy(&accept.stdout).contains("accepted ../experiments/snapshots/"));
    let review = in_src(&["snapshot", "review"]);
    let stdout = String::from_utf8_lossy(&review.stdout);
    assert!(stdout.contains("no pending snapshots in ../experiments/snapshots"), "{stdout}");
    let accept = in_src(&["snapshot", "accept", "a/fast"]);
    let stderr = String::from_utf8_lossy(&accept.stderr);
    assert!(
        stderr.contains("nothing accepted: no pending snapshots in ../experiments/snapshots, so none matches `a/fast`"),
        "{stderr}"
    );
    assert_eq!(accept.status.code(), Some(2), "{stderr}");
    let review = in_src(&["snapshot", "review", "a/fast"]);
    assert_eq!(review.status.code(), Some(0), "{review:?}");
}

#[test]
fn baseline_comparison_flags_a_regression() {
    let project = Project::new();
    let text = spec(SPEEDUP, "").replace("repeats = 5", "repeats = 9");
    project.write("base.toml", &text);
    let (code, _, _) = project.run("base.toml", &[]);
    assert_eq!(code, 0);
    // The same run compared with itself: no regression.
    let (code, stdout, _) = project.run("base.toml", &["--baseline", "latest"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("pass           baseline[fast warm time]"), "{stdout}");
    // 15% slower than the baseline: a regression beyond the 5% tolerance.
    let slower = text.replace("time_ms = 1.0", "time_ms = 1.0\nslowdown = 1.15");
    project.write("base.toml", &slower);
    let (code, stdout, _) = project.run("base.toml", &["--baseline", "latest"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL           baseline[fast warm time]"), "{stdout}");
    assert!(stdout.contains("+15.0%"), "{stdout}");
    let (code, _, stderr) = project.run("base.toml", &["--baseline", "no-such-ref"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("neither `latest`, a report directory, nor a git ref"), "{stderr}");
}

/// `--baseline latest` after a filtered run still compares every run: each with the
/// newest earlier report that measured it. A run no earlier report measured is said
/// to be not compared.
#[test]
fn a_filtered_run_does_not_hide_the_other_workloads_from_the_baseline() {
    let project = Project::new();
    let text = spec(SPEEDUP, "").replace("repeats = 5", "repeats = 9");
    project.write("base.toml", &text);
    let (code, _, _) = project.run("base.toml", &[]);
    assert_eq!(code, 0);
    let (code, _, _) = project.run("base.toml", &["--filter", "fast"]);
    assert_eq!(code, 0);
    let slower = ["--baseline", "latest", "--set", "phase.a.workload.slow.params.slowdown=3"];
    let (code, stdout, stderr) = project.run("base.toml", &slower);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("FAIL           baseline[slow warm time]"), "{stdout}");
    assert!(stdout.contains("+200.0%"), "{stdout}");
    assert!(stdout.contains("pass           baseline[fast warm time]"), "{stdout}");
    // A workload no earlier run measured.
    let extra = "\n[[phase.workload]]\nid = \"extra\"\nkernel = \"mock\"\n";
    project.write("base.toml", &format!("{text}{extra}"));
    let (code, stdout, stderr) = project.run("base.toml", &["--baseline", "latest"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "not applicable baseline[extra warm]: not compared: no report of the baseline measured this run in warm mode"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("pass           baseline[slow warm time]"), "{stdout}");
}

#[test]
fn baseline_of_too_few_samples_is_inconclusive() {
    let project = Project::new();
    project.write("few.toml", &spec("", "").replace("repeats = 5", "repeats = 1"));
    let (code, _, _) = project.run("few.toml", &[]);
    assert_eq!(code, 0);
    let (code, stdout, _) = project.run("few.toml", &["--baseline", "latest"]);
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("inconclusive   baseline[fast warm time]"), "{stdout}");
    let report = project.latest_report();
    let verdict = &report["verdicts"][0];
    assert_eq!(verdict["measured"]["coverage"], 0.0, "one sample covers the median never: {verdict}");
    let reason = verdict["reason"].as_str().unwrap();
    assert!(
        reason.contains("; 1 sample on one side covers the median with only 0.0%: more repeats are needed"),
        "{reason}"
    );
}

#[test]
fn a_calibrated_run_records_the_noise_floor_of_each_paired_check() {
    let project = Project::new();
    let text = spec(SPEEDUP, "").replace("[defaults]", "[calibration]\nmode = \"warn\"\nrepeats = 5\n\n[defaults]");
    project.write("calibrated.toml", &text);
    let (code, stdout, stderr) = project.run("calibrated.toml", &["--log-file", "log.jsonl"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = project.latest_report();
    // The A/A instances draw the mock's seeded noise (±2%) apart: the run measured a
    // floor of a few percent and recorded it.
    let floor = report["verdicts"][0]["noise_floor"].as_f64();
    assert!(floor.is_some_and(|floor| floor > 0.0 && floor < 0.05), "{}", report["verdicts"][0]);
    // The A/A instances' samples are logged apart from the phase's own, each instance
    // under its own name: the log's samples of a run are the report's.
    let log = std::fs::read_to_string(project.path().join("log.jsonl")).unwrap();
    let named = |target: &str, run: &str| {
        log_fields(&log, target).iter().filter(|sample| sample["run"] == run && sample["warmup"] == false).count()
    };
    let reported = |run: &str| {
        let runs = report["runs"].as_array().unwrap();
        let run = runs.iter().find(|report| report["workload"] == run).unwrap();
        run["samples"].as_array().unwrap().iter().filter(|sample| sample["warmup"] == false).count()
    };
    assert_eq!((named("phasegate::sample", "fast"), named("phasegate::sample", "slow")), (reported("fast"), 5));
    let twins = ["fast (A/A 1)", "fast (A/A 2)"].map(|run| named("phasegate::calibration::sample", run));
    assert_eq!(twins, [5, 5], "{log}");
}

#[test]
fn junit_and_summary_outputs() {
    let project = Project::new();
    let checks = format!(
        "{SPEEDUP}\n[[phase.check]]\nid = \"too_fast\"\nexpr = \"fast.warm.median <= 0.0001\"\nrationale = \"a <deliberately> failing check\"\n\n[[phase.check]]\nid = \"elsewhere\"\nexpr = \"fast.warm.median <= 1\"\nrequires = [\"cpu:nonexistentfeature\"]\nrationale = \"for another machine\"\n"
    );
    project.write("ci.toml", &spec(&checks, ""));
    std::fs::write(project.path().join("summary.md"), "earlier step\n").unwrap();
    let (code, _, _) = project.run("ci.toml", &["--junit", "junit.xml", "--summary", "summary.md"]);
    assert_eq!(code, 1);
    let junit = std::fs::read_to_string(project.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite name=\"e2e.a\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
        "{junit}"
    );
    assert!(
        junit.contains(
            "name=\"elsewhere\">\n      <skipped message=\"not applicable; requires CPU feature `nonexistentfeature`"
        ),
        "a check this machine cannot judge is skipped, not passed: {junit}"
    );
    assert!(junit.contains("<testcase classname=\"e2e.a\" name=\"speedup\">"), "{junit}");
    assert!(junit.contains("<failure type=\"FAIL\" message=\"FAIL: observed"), "{junit}");
    assert!(junit.contains("a &lt;deliberately&gt; failing check"), "{junit}");
    let summary = std::fs::read_to_string(project.path().join("summary.md")).unwrap();
    assert!(summary.starts_with("earlier step\n## phasegate: e2e"), "appended: {summary}");
    assert!(summary.contains("| `a/too_fast` | **FAIL** |"), "{summary}");
}

/// A `--summary` or `--junit` file in directories that do not exist yet: the check
/// before the run lets it through, so the run creates them.
#[test]
fn summary_and_junit_files_get_their_missing_directories() {
    let project = Project::new();
    project.write("pass.toml", &spec(SPEEDUP, ""));
    let (code, stdout, stderr) =
        project.run("pass.toml", &["--summary", "new/dir/summary.md", "--junit", "other/dir/junit.xml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = std::fs::read_to_string(project.path().join("new/dir/summary.md")).unwrap_or_default();
    assert!(summary.starts_with("## phasegate: e2e"), "{summary}");
    assert!(project.path().join("other/dir/junit.xml").is_file());
}

/// A summary file that passes the check before the run but cannot take the text after
/// it (a link to `/dev/full`, where every write fails): the run passed, but CI would
/// miss its summary, so the exit status is 2, not 0.
#[cfg(target_os = "linux")]
#[test]
fn a_passing_run_whose_summary_cannot_be_written_exits_2() {
    let project = Project::new();
    project.write("pass.toml", &spec(SPEEDUP, ""));
    std::os::unix::fs::symlink("/dev/full", project.path().join("summary.md")).unwrap();
    let (code, stdout, stderr) = project.run("pass.toml", &["--summary", "summary.md"]);
    assert!(stdout.contains("phase a (Phase A): PASS"), "the run itself passed: {stdout}");
    assert!(stderr.contains("cannot append to summary.md"), "{stderr}");
    assert_eq!(code, 2, "{stdout}{stderr}");
    // A run that did not pass keeps its own exit status: CI fails on it either way.
    project.write("fail.toml", &spec(&SPEEDUP.replace(">= 3", ">= 6"), ""));
    let (code, stdout, stderr) = project.run("fail.toml", &["--summary", "summary.md"]);
    assert!(stderr.contains("cannot append to summary.md"), "{stderr}");
    assert_eq!(code, 1, "{stdout}{stderr}");
}

/// A `--junit` file that fails to write (a link to `/dev/full`) does not keep the
/// summary from being written, and a passing run's last line says the exit code became
/// 2, as the process's is.
#[cfg(target_os = "linux")]
#[test]
fn each_ci_output_is_written_whatever_became_of_the_other() {
    let project = Project::new();
    project.write("pass.toml", &spec(SPEEDUP, ""));
    std::os::unix::fs::symlink("/dev/full", project.path().join("junit.xml")).unwrap();
    let (code, stdout, stderr) = project.run("pass.toml", &["--junit", "junit.xml", "--summary", "ci/summary.md"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("error: cannot write junit.xml"), "{stderr}");
    let summary = std::fs::read_to_string(project.path().join("ci/summary.md")).unwrap_or_default();
    assert!(summary.starts_with("## phasegate: e2e"), "{summary}");
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(last, "exit 2: the run passed, but junit.xml could not be written", "{stdout}");
}

#[test]
fn living_plan_is_regenerated_by_run_and_by_plan() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("plans")).unwrap();
    let text = spec(SPEEDUP, "").replace("seed = 3", "seed = 3\nplan = \"plans/e2e.md\"");
    project.write("experiments/e2e.toml", &text);
    let plan =
        "# Plan\n\nHand-written text [ ] stays.\n\n<!-- phasegate:begin e2e/a -->\n<!-- phasegate:end -->\n\nTail.\n";
    project.write("plans/e2e.md", plan);
    // A run with an override (here, of the output root) leaves the plan alone.
    let (code, _, _) = project.run("experiments/e2e.toml", &["--set", "experiment.output=trial"]);
    assert_eq!(code, 0);
    assert!(project.path().join("trial/e2e/latest/a/report.json").is_file());
    assert_eq!(std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap(), plan);
    let (code, _, _) = project.run("experiments/e2e.toml", &[]);
    assert_eq!(code, 0);
    let regenerated = std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap();
    assert!(
        regenerated
            .starts_with("# Plan\n\nHand-written text [ ] stays.\n\n<!-- phasegate:begin e2e/a -->\n_Generated by"),
        "{regenerated}"
    );
    assert!(regenerated.contains("- [x] `speedup`: 4.0"), "{regenerated}");
    assert!(regenerated.ends_with("<!-- phasegate:end -->\n\nTail.\n"), "{regenerated}");
    // Regenerating again changes nothing.
    let output = project.xtask(&["plan", "--all", "--check"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    // A hand edit inside the markers is out of date until `plan` rewrites it.
    std::fs::write(project.path().join("plans/e2e.md"), regenerated.replace("- [x]", "- [ ]")).unwrap();
    let output = project.xtask(&["plan", "--all", "--check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("OUT OF DATE"));
    let edited = std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap();
    assert_eq!(edited, regenerated.replace("- [x]", "- [ ]"), "--check leaves the plan alone");
    let output = project.xtask(&["plan", "plans/e2e.md"]);
    assert_eq!(output.status.code(), Some(0));
    // Naming no plan is a usage error, not a silent success.
    let output = project.xtask(&["plan"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("name plan documents, or pass --all"));
    assert_eq!(std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap(), regenerated);
    // A plan that cannot be regenerated is said, and the run's verdict and outputs stand.
    let broken = format!("{regenerated}\nA marker: <!-- phasegate:begin NAME -->\n");
    project.write("plans/e2e.md", &broken);
    let (code, stdout, stderr) = project.run("experiments/e2e.toml", &["--junit", "junit.xml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("exit 0: "), "{stdout}");
    assert!(stderr.contains("the plan is not updated: ") && stderr.contains("must name EXPERIMENT/PHASE"), "{stderr}");
    assert!(project.path().join("junit.xml").is_file());
    assert_eq!(std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap(), broken);
    // With no plan documents, `--all` has nothing to do.
    std::fs::remove_file(project.path().join("plans/e2e.md")).unwrap();
    for args in [&["plan", "--all"][..], &["plan", "--all", "--check"]] {
        let output = project.xtask(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("no plan documents: "), "{args:?}");
    }
}

/// A living plan shows runs of the spec as written: a run with `--filter`, `--profile`,
/// `--set` or a `PHASEGATE_*` variable leaves it alone and says so, and `plan` passes
/// over such runs' reports.
#[test]
fn a_run_that_alters_the_spec_leaves_the_plan_alone() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("plans")).unwrap();
    let text = spec(SPEEDUP, "").replace("seed = 3", "seed = 3\nplan = \"plans/e2e.md\"")
        + "\n[profile.ci]\n\"defaults.repeats\" = 6\n";
    project.write("experiments/e2e.toml", &text);
    project.write("plans/e2e.md", "<!-- phasegate:begin e2e/a -->\n<!-- phasegate:end -->\n");
    let (code, _, _) = project.run("experiments/e2e.toml", &[]);
    assert_eq!(code, 0);
    let regenerated = std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap();
    assert!(regenerated.contains("- [x] `speedup`: 4.0"), "{regenerated}");
    // Each run: its arguments, with `VARIABLE=VALUE` ones set in its environment instead.
    let altered: [(&[&str], &str); 4] = [
        (&["--filter", "fast"], "--filter fast"),
        (&["--profile", "ci"], "--profile ci"),
        (&["--set", "defaults.repeats=6"], "--set defaults.repeats=6"),
        (&["PHASEGATE_DEFAULTS__REPEATS=6"], "environment variable PHASEGATE_DEFAULTS__REPEATS"),
    ];
    for (args, named) in altered {
        let mut command = project.command();
        command.args(["run", "experiments/e2e.toml", "--plain"]);
        for arg in args {
            match arg.split_once('=').filter(|(name, _)| name.starts_with("PHASEGATE_")) {
                Some((name, value)) => command.env(name, value),
                None => command.arg(arg),
            };
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{named}: {stderr}");
        assert!(stderr.contains(&format!("the plan plans/e2e.md is not updated: this run used {named}")), "{stderr}");
        assert_eq!(std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap(), regenerated, "{named}");
    }
    // `plan` regenerates from the first run, the newest as written.
    let output = project.xtask(&["plan", "--all", "--check"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
}

/// A spec named otherwise than its experiment, writing to another output root: its
/// runs regenerate its plan, and `plan` finds its reports through the spec (found
/// wherever it is in the project) and names it in its hint.
#[test]
fn a_plan_is_regenerated_whatever_the_spec_is_called_and_wherever_it_writes() {
    let project = Project::new();
    let git = Command::new("git").args(["init", "-q"]).current_dir(project.path()).status().expect("run git");
    assert!(git.success());
    std::fs::create_dir_all(project.path().join("plans")).unwrap();
    let text = spec(SPEEDUP, "").replace("name = \"e2e\"", "name = \"myexp\"\nplan = \"plans/p.md\"\noutput = \"out\"");
    project.write("spec.toml", &text);
    let empty = "<!-- phasegate:begin myexp/a -->\n<!-- phasegate:end -->\n";
    project.write("plans/p.md", empty);
    let plan = || std::fs::read_to_string(project.path().join("plans/p.md")).unwrap();
    let output = project.xtask(&["plan", "plans/p.md"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(plan().contains("No report yet for `myexp/a`: run `cargo xtask run spec.toml`, then"), "{}", plan());
    let (code, _, _) = project.run("spec.toml", &[]);
    assert_eq!(code, 0);
    let regenerated = plan();
    assert!(regenerated.contains("- [x] `speedup`: 4.0"), "{regenerated}");
    assert!(regenerated.contains("from `out/myexp/"), "{regenerated}");
    let output = project.xtask(&["plan", "--all", "--check"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    // Wherever the spec is in the project.
    std::fs::create_dir_all(project.path().join("benches/specs")).unwrap();
    std::fs::rename(project.path().join("spec.toml"), project.path().join("benches/specs/mine.toml")).unwrap();
    project.write("plans/p.md", empty);
    let output = project.xtask(&["plan", "plans/p.md"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(plan(), regenerated);
    // A run knows where its reports went, even from a spec `plan` cannot find (one git
    // ignores).
    project.write(".gitignore", "ignored/\n");
    std::fs::create_dir_all(project.path().join("ignored")).unwrap();
    std::fs::rename(project.path().join("benches/specs/mine.toml"), project.path().join("ignored/mine.toml")).unwrap();
    project.write("plans/p.md", empty);
    let (code, _, _) = project.run("ignored/mine.toml", &[]);
    assert_eq!(code, 0);
    assert!(plan().contains("- [x] `speedup`: 4.0") && plan().contains("from `out/myexp/"), "{}", plan());
}

#[test]
fn environment_variables_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let not_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    // Not ours: ignored.
    let output = project.command().args(["check", "spec.toml"]).env("UNRELATED", not_utf8).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    // Ours: a clear error.
    let output =
        project.command().args(["check", "spec.toml"]).env("PHASEGATE_EXPERIMENT__TITLE", not_utf8).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("environment variable PHASEGATE_EXPERIMENT__TITLE is not UTF-8: caf\u{fffd}"), "{stderr}");
}

#[test]
fn check_and_dry_run_refuse_what_a_run_refuses() {
    let project = Project::new();
    project.write("outside.toml", &spec(SPEEDUP, "").replace("seed = 3", "seed = 3\noutput = \"../elsewhere\""));
    for args in [&["check", "outside.toml"][..], &["run", "outside.toml", "--dry-run"]] {
        let output = project.xtask(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("reports would be written outside the project"));
    }
    let output = project.xtask(&["check", "outside.toml", "--allow-outside"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    // An output root set on the command line is blamed on the command line.
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let output = project.xtask(&["check", "spec.toml", "--set", "experiment.output=../elsewhere"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("outside the project") && stderr.contains("(from --set experiment.output=../elsewhere)"));
}

#[test]
fn unwritable_junit_or_summary_files_are_refused_before_anything_runs() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    std::fs::write(project.path().join("file"), "a file where a directory should be").unwrap();
    for flag in ["--junit", "--summary"] {
        let (code, _, stderr) = project.run("spec.toml", &[flag, "file/out.xml"]);
        assert_eq!(code, 2, "{flag}");
        assert!(stderr.contains("cannot write file/out.xml"), "{stderr}");
        let (code, _, stderr) = project.run("spec.toml", &[flag, "."]);
        assert_eq!(code, 2, "{flag}");
        assert!(stderr.contains(". is a directory, not a file"), "{stderr}");
    }
    assert!(!project.path().join("reports").exists(), "nothing ran");
}

/// A `--junit` or `--summary` file that exists is checked itself, not its directory: one
/// that cannot be opened for writing is refused before anything runs, one that can is
/// written even in a directory that takes no new file, as `/dev/null` and `/dev/stderr`
/// are.
#[test]
fn junit_and_summary_files_that_exist_are_checked_themselves() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    mode(&project.write("read-only.md", "earlier step\n"), 0o444);
    let locked = project.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    mode(&project.write("locked/summary.md", "earlier step\n"), 0o666);
    mode(&locked, 0o555);
    let run = |extra: &[&str]| {
        let mut command = project.unprivileged();
        command.args(["run", "spec.toml", "--plain"]).args(extra);
        command
    };
    for flag in ["--junit", "--summary"] {
        let (code, _, stderr) = outcome(run(&[flag, "read-only.md"]));
        assert_eq!(code, 2, "{flag}: {stderr}");
        assert!(stderr.contains("error: cannot write read-only.md: Permission denied"), "{stderr}");
    }
    assert!(!project.path().join("reports").exists(), "nothing ran");
    let (code, stdout, stderr) = outcome(run(&["--summary", "/dev/null"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = outcome(run(&["--summary", "locked/summary.md"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = std::fs::read_to_string(locked.join("summary.md")).unwrap();
    assert!(summary.starts_with("earlier step\n## phasegate: e2e"), "appended: {summary}");
    // `/dev/stderr` names whatever stderr is: here a file everyone may write.
    let stderr_file = project.path().join("stderr.txt");
    std::fs::File::create(&stderr_file).unwrap();
    mode(&stderr_file, 0o666);
    let mut command = run(&["--summary", "/dev/stderr"]);
    command.stderr(std::fs::File::options().append(true).open(&stderr_file).unwrap());
    let (code, _, _) = outcome(command);
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("## phasegate: e2e"), "{stderr}");
}

/// `--junit /dev/stdout` with stdout in a file adds the XML after the run's lines
/// instead of emptying the file first.
#[test]
fn a_junit_file_that_is_stdout_keeps_the_printed_lines() {
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let log = project.path().join("ci.log");
    let mut command = project.command();
    command.args(["run", "spec.toml", "--plain", "--junit", "/dev/stdout"]);
    command.stdout(std::fs::File::create(&log).unwrap());
    let (code, _, stderr) = outcome(command);
    assert_eq!(code, 0, "{stderr}");
    let printed = std::fs::read_to_string(&log).unwrap();
    let verdict = printed.find("exit 0: all checks pass").expect("the printed verdict");
    let xml = printed.find("<?xml").expect("the junit XML");
    assert!(verdict < xml, "{printed}");
}

/// The `--junit` file is written where its name leads: through a symlink, which stays,
/// into a device, and into a writable file in a directory that takes no new file.
#[test]
fn the_junit_file_is_written_through_links_and_devices() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    project.write("spec.toml", &spec(SPEEDUP, ""));
    let locked = project.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    project.write("locked/junit.xml", "earlier");
    std::fs::set_permissions(locked.join("junit.xml"), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Unprivileged, so that nothing could replace /dev/null.
    for junit in ["/dev/null", "locked/junit.xml"] {
        let mut command = project.unprivileged();
        command.args(["run", "spec.toml", "--plain", "--junit", junit]);
        let (code, stdout, stderr) = outcome(command);
        assert_eq!(code, 0, "{junit}: {stdout}{stderr}");
    }
    let junit = std::fs::read_to_string(locked.join("junit.xml")).unwrap();
    assert!(junit.starts_with("<?xml") && junit.contains("<testsuite name=\"e2e.a\""), "{junit}");
    std::fs::create_dir(project.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real/junit.xml", project.path().join("junit.xml")).unwrap();
    let (code, stdout, stderr) = project.run("spec.toml", &["--junit", "junit.xml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(std::fs::symlink_metadata(project.path().join("junit.xml")).unwrap().file_type().is_symlink());
    let junit = std::fs::read_to_string(project.path().join("real/junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"e2e.a\""), "{junit}");
}

#[test]
fn a_run_of_one_phase_keeps_the_other_phases_in_the_plan_and_the_baseline() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("experiments")).unwrap();
    std::fs::create_dir_all(project.path().join("plans")).unwrap();
    let phase_b = "\n[[phase]]\nid = \"b\"\ntitle = \"Phase B\"\n\n[[phase.workload]]\nid = \"slow\"\nkernel = \"mock\"\n[phase.workload.params]\ntime_ms = 4.0\n\n[[phase.workload]]\nid = \"fast\"\nkernel = \"mock\"\nreference = \"slow\"\n[phase.workload.params]\ntime_ms = 1.0\n";
    let text = spec(SPEEDUP, "").replace("seed = 3", "seed = 3\nplan = \"plans/e2e.md\"") + phase_b;
    project.write("experiments/e2e.toml", &text);
    let plan = "<!-- phasegate:begin e2e/a -->\n<!-- phasegate:end -->\n<!-- phasegate:begin e2e/b -->\n<!-- phasegate:end -->\n";
    project.write("plans/e2e.md", plan);
    let (code, _, _) = project.run("experiments/e2e.toml", &[]);
    assert_eq!(code, 0);
    let (code, _, _) = project.run("experiments/e2e.toml", &["--phase", "b"]);
    assert_eq!(code, 0);
    // The run log has a line per run, with every phase it ran.
    let log = std::fs::read_to_string(project.path().join("reports/e2e/run_log.txt")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(" a=pass b=pass rev=") && lines[1].contains(" b=pass rev=") && !lines[1].contains(" a="),
        "{log}"
    );
    let regenerated = std::fs::read_to_string(project.path().join("plans/e2e.md")).unwrap();
    assert!(regenerated.contains("- [x] `speedup`: 4.0"), "phase a keeps its results: {regenerated}");
    assert!(!regenerated.contains("No report yet"), "{regenerated}");
    // The dry run's estimate still knows phase a's runs.
    let output = project.xtask(&["run", "experiments/e2e.toml", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("from earlier reports") && !stdout.contains("never measured"), "{stdout}");
    // Phase a is compared with the first run, phase b with the second.
    let (code, stdout, stderr) = project.run("experiments/e2e.toml", &["--baseline", "latest"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("pass           baseline[fast warm time]").count(), 2, "{stdout}{stderr}");
    assert!(!stderr.contains("has no phase"), "{stderr}");
    // So with committed reports and a git ref.
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(project.path())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "reports", "experiments"]);
    git(&["commit", "-q", "-m", "reports"]);
    let (code, _, _) = project.run("experiments/e2e.toml", &["--phase", "b"]);
    assert_eq!(code, 0);
    git(&["add", "reports"]);
    git(&["commit", "-q", "-m", "phase b again"]);
    let (code, stdout, stderr) = project.run("experiments/e2e.toml", &["--baseline", "HEAD"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("pass           baseline[fast warm time]").count(), 2, "{stdout}{stderr}");
    // The report names the commit it ran at.
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(project.path()).output().expect("run git");
    let head = String::from_utf8(head.stdout).unwrap();
    let report = project.latest_report();
    assert_eq!(report["environment"]["git_sha"].as_str(), Some(head.trim()), "{}", report["environment"]);
    // What runs write (the committed `latest` and run log have changed since) leaves
    // the revision clean; a change to the spec does not.
    let dirty = || {
        let (code, _, _) = project.run("experiments/e2e.toml", &["--phase", "b"]);
        assert_eq!(code, 0);
        project.latest_phase_report("b")["environment"]["git_dirty"].as_bool()
    };
    assert_eq!(dirty(), Some(false));
    project.write("experiments/e2e.toml", &format!("{text}# edited\n"));
    assert_eq!(dirty(), Some(true));
}
