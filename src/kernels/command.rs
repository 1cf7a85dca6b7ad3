//! The `command` kernel: times an external program, so anything can be measured.
//!
//! The program runs with an argument array (no shell unless `shell = true`), stdin and
//! stdout connected to `/dev/null` and stderr kept in a file, so a failing run reports
//! the end of its stderr (the last lines of its last 4 KiB). Arguments may contain
//! `{name}` placeholders, filled from the run's other parameters (every extra
//! parameter must be used by `program`, an argument or `output_file`), from `{threads}`, `{seed}`, `{workdir}`
//! (the run's working directory) and `{cwd}` (the directory phasegate was started
//! in), and from `{env:VAR}`; so may `output_file`. With `shell = true` the line is
//! `program` with its placeholders filled in as shell text, then each of `args` quoted
//! as one word. The child sees `OMP_NUM_THREADS` and `RAYON_NUM_THREADS`
//! set to the run's thread count. The timed region is the interval from spawning the
//! child to its exit, the interval `hyperfine -N` measures. `workdir = "fresh"` gives
//! every run its own empty directory (programs that cache files in the current
//! directory otherwise measure their cache); `output_file` names a raw little-endian
//! float file the program writes there, exposed as the output `output_name` for
//! parity checks.
//!
//! The child leads a process group of its own, and the whole group is killed when the
//! sample times out, when the child exits, when the instance gives up on the child for
//! any other reason, and when phasegate is interrupted ([`kill_running`]): killing only
//! the child would leave the processes it started (a shell's commands, a benchmark's
//! workers) running, and what a program leaves running when it exits would share the
//! machine with the next sample. A process that leaves the group (`setsid`, or a
//! shell's job control, `set -m`) is not killed: it may outlive the program and
//! phasegate. Being outside phasegate's own group, the child does not
//! receive the terminal's Ctrl-C; the interrupt handler ends it instead.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::clock::{self, Stamp};
use crate::kernel::{
    Instance, Kernel, MetricSpec, Output, OutputData, ParamKind, ParamSpec, Params, Probe, Resources, RunContext, Value,
};

pub struct Command;

const RESERVED: [&str; 4] = ["threads", "seed", "workdir", "cwd"];

impl Kernel for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn summary(&self) -> &'static str {
        "an external program, timed from spawn to exit, with `OMP_NUM_THREADS` and `RAYON_NUM_THREADS` set to the \
         run's `threads`; non-zero exit fails the run"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                "program",
                ParamKind::Text,
                None,
                "program to run (a command line when `shell` is set), with placeholders as in `args`",
            ),
            ParamSpec::new(
                "args",
                ParamKind::TextList,
                Value::List(vec![]),
                "arguments, with placeholders: `{name}` for the parameter `name` (every parameter the kernel does \
                 not declare must be used in `program`, `args` or `output_file`), `{threads}`, `{seed}`, \
                 `{workdir}` (the run's working directory), `{cwd}` (the directory phasegate started in), \
                 `{env:VAR}`",
            ),
            ParamSpec::new(
                "shell",
                ParamKind::Bool,
                Value::Bool(false),
                "run `program` through `sh -c`: placeholders in `program` are filled in as shell text (quote \
                 them where a value may hold spaces), and each of `args` is quoted as one word",
            ),
            ParamSpec::new(
                "workdir",
                ParamKind::Choice(&["inherit", "fresh"]),
                Value::from("inherit"),
                "working directory: the harness's own, or a fresh empty one per run",
            ),
            ParamSpec::new(
                "output_file",
                ParamKind::Text,
                Value::from(""),
                "raw float file the program writes (placeholders as in `args`), removed before and read after \
                 each sample's program; a sample whose program leaves no such file, or a partial value, fails",
            ),
            ParamSpec::new(
                "output_format",
                ParamKind::Choice(&["f32", "f64"]),
                Value::from("f32"),
                "element type of `output_file` (little endian)",
            ),
            ParamSpec::new("output_name", ParamKind::Text, Value::from("image"), "name of the output for parity"),
        ]
    }

    fn accepts_extra_params(&self) -> bool {
        true
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        Vec::new()
    }

    fn output_names(&self) -> Vec<&'static str> {
        // The name is chosen by the spec (`output_name`); parity checks on command
        // workloads are validated against it by the spec layer.
        Vec::new()
    }

    fn check(&self, params: &Params) -> Result<Resources, String> {
        if params.text("program").trim().is_empty() {
            return Err("`program` is empty: name the program to run".to_owned());
        }
        let declared: Vec<String> = self.params().iter().map(|spec| spec.name.to_owned()).collect();
        let template = templates(params).join(" ");
        for (name, value) in params.iter() {
            if declared.iter().any(|declared| declared == name) {
                continue;
            }
            if RESERVED.contains(&name) {
                return Err(format!("`{name}` is filled in by the harness and cannot be a parameter"));
            }
            if matches!(value, Value::List(_)) {
                return Err(format!("substitution variable `{name}` must be a single value"));
            }
            if !template.contains(&format!("{{{name}}}")) {
                return Err(format!(
                    "parameter `{name}` is not used by the command (write `{{{name}}}` in `program`, `args` or \
                     `output_file`)"
                ));
            }
        }
        for placeholder in placeholders(&template) {
            if let Some(variable) = placeholder.strip_prefix("env:") {
                if !valid_variable(variable) {
                    return Err(format!(
                        "placeholder `{{{placeholder}}}` names no environment variable (`{{env:NAME}}`, NAME of \
                         letters, digits and `_`, not starting with a digit)"
                    ));
                }
                continue;
            }
            if !RESERVED.contains(&placeholder.as_str()) && params.get(&placeholder).is_none() {
                return Err(format!("placeholder `{{{placeholder}}}` names no parameter"));
            }
        }
        Ok(Resources::default())
    }

    fn variables(&self, params: &Params) -> Vec<String> {
        let template = templates(params).join(" ");
        let mut names: Vec<String> = Vec::new();
        for placeholder in placeholders(&template) {
            if let Some(name) = placeholder.strip_prefix("env:")
                && !names.iter().any(|known| known == name)
            {
                names.push(name.to_owned());
            }
        }
        names
    }

    fn instantiate(&self, params: &Params, context: &RunContext) -> anyhow::Result<Box<dyn Instance>> {
        let workdir = match params.text("workdir") {
            "fresh" => Some(context.scratch_dir.join("workdir")),
            _ => None,
        };
        let workdir_text = workdir.as_ref().map_or_else(|| ".".to_owned(), |path| path.display().to_string());
        // One pass over the text, so a value that holds braces stays as it is.
        let substitute = |text: &str| -> anyhow::Result<String> {
            let mut result = String::with_capacity(text.len());
            for piece in pieces(text) {
                let placeholder = match piece {
                    Piece::Literal(literal) => {
                        result.push_str(literal);
                        continue;
                    }
                    Piece::Placeholder(placeholder) => placeholder,
                };
                let replacement = if let Some(variable) = placeholder.strip_prefix("env:") {
                    match std::env::var(variable) {
                        Ok(value) => value,
                        Err(std::env::VarError::NotPresent) => bail!(
                            "environment variable {variable} is not set (`requires_env = \"{variable}\"` skips the \
                             workload where it is not)"
                        ),
                        Err(std::env::VarError::NotUnicode(value)) => {
                            bail!("environment variable {variable} is not valid UTF-8: {value:?}")
                        }
                    }
                } else {
                    match placeholder {
                        "threads" => context.threads.to_string(),
                        "seed" => context.seed.to_string(),
                        "workdir" => workdir_text.clone(),
                        "cwd" => {
                            std::env::current_dir().context("cannot read the current directory")?.display().to_string()
                        }
                        name => params.get(name).map(ToString::to_string).unwrap_or_default(),
                    }
                };
                result.push_str(&replacement);
            }
            Ok(result)
        };
        let program = substitute(params.text("program"))?;
        let args = params.text_list("args").iter().map(|arg| substitute(arg)).collect::<anyhow::Result<Vec<_>>>()?;
        // A shell line is `program` as written (placeholders filled in as shell text),
        // then each of `args` quoted as one word, as without a shell.
        let (program, args) = if params.bool("shell") {
            let line = std::iter::once(program)
                .chain(args.iter().map(|arg| crate::describe::shell_quote(arg)))
                .collect::<Vec<_>>();
            ("sh".to_owned(), vec!["-c".to_owned(), line.join(" ")])
        } else {
            (program, args)
        };
        let output_file = substitute(params.text("output_file"))?;
        if output_file.is_empty() && !params.text("output_file").is_empty() {
            bail!("`output_file = \"{}\"` is empty once its placeholders are filled in", params.text("output_file"));
        }
        Ok(Box::new(CommandInstance {
            program,
            args,
            workdir,
            stderr_path: context.scratch_dir.join("stderr.txt"),
            threads: context.threads,
            output: (!output_file.is_empty()).then(|| OutputFile {
                path: PathBuf::from(output_file),
                double: params.text("output_format") == "f64",
                name: params.text("output_name").to_owned(),
                last: None,
            }),
        }))
    }
}

/// The texts that may hold placeholders: `program`, `args` and `output_file`.
fn templates(params: &Params) -> Vec<String> {
    let mut texts = vec![params.text("program").to_owned()];
    texts.extend(params.text_list("args"));
    texts.push(params.text("output_file").to_owned());
    texts
}

/// Whether `name` can name an environment variable in `{env:NAME}`.
fn valid_variable(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && !name.contains(':')
}

/// The `{...}` placeholders in `text`, in order.
fn placeholders(text: &str) -> Vec<String> {
    pieces(text)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Placeholder(name) => Some(name.to_owned()),
            Piece::Literal(_) => None,
        })
        .collect()
}

/// A run of text as it is, or the name inside a placeholder.
enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// `text` cut into literal runs and `{name}` placeholders, in order. A name is ASCII
/// letters, digits, `_` and `:`; braces around anything else are literal text.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let (mut literal_start, mut search) = (0, 0);
    while let Some(open) = text[search..].find('{').map(|offset| search + offset) {
        let Some(close) = text[open + 1..].find('}').map(|offset| open + 1 + offset) else { break };
        let name = &text[open + 1..close];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            if literal_start < open {
                pieces.push(Piece::Literal(&text[literal_start..open]));
            }
            pieces.push(Piece::Placeholder(name));
            literal_start = close + 1;
            search = close + 1;
        } else {
            // `{` opens no placeholder, but one may start inside: `{ x {name}`.
            search = open + 1;
        }
    }
    if literal_start < text.len() {
        pieces.push(Piece::Literal(&text[literal_start..]));
    }
    pieces
}

struct OutputFile {
    path: PathBuf,
    double: bool,
    name: String,
    /// The file's bytes as the last sample left them, read when its program exited:
    /// a partner sharing the working directory may overwrite the file before the
    /// outputs are collected. `None` until a sample has read it (a sample whose
    /// program did not write the file fails).
    last: Option<Vec<u8>>,
}

impl OutputFile {
    fn element_bytes(&self) -> usize {
        if self.double { 8 } else { 4 }
    }
}

struct CommandInstance {
    program: String,
    args: Vec<String>,
    workdir: Option<PathBuf>,
    stderr_path: PathBuf,
    threads: usize,
    output: Option<OutputFile>,
}

impl Instance for CommandInstance {
    fn setup(&mut self, _probe: &mut Probe) -> anyhow::Result<()> {
        if let Some(workdir) = &self.workdir {
            fs::create_dir_all(workdir).with_context(|| format!("cannot create {}", workdir.display()))?;
        }
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let stderr =
            File::create(&self.stderr_path).with_context(|| format!("cannot create {}", self.stderr_path.display()))?;
        let mut process = Process::new(&self.program);
        process.args(&self.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        // Parallel runtimes in the child use the run's thread count.
        process.env("OMP_NUM_THREADS", self.threads.to_string()).env("RAYON_NUM_THREADS", self.threads.to_string());
        if let Some(workdir) = &self.workdir {
            process.current_dir(workdir);
        }
        // The sample's deadline counts from its start: in cold mode that is the
        // set-up's start, so the program gets what the set-up left of the timeout.
        // The output file must be this sample's: one left by an earlier sample, an
        // earlier run or a partner writing the same path would pass for it.
        let output_path = self.output.as_ref().map(|output| match &self.workdir {
            Some(workdir) => workdir.join(&output.path),
            None => output.path.clone(),
        });
        if let Some(path) = &output_path {
            match fs::remove_file(path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("cannot remove the earlier {}", path.display()));
                }
                _ => {}
            }
        }
        let deadline = probe.deadline();
        let start = probe.start();
        let mut child = GroupChild::spawn(&mut process).with_context(|| match &self.workdir {
            // A relative path is looked up from the working directory the program starts in.
            Some(workdir) if self.program.contains('/') && !self.program.starts_with('/') => format!(
                "cannot start `{}` from the fresh working directory {} (write `{{cwd}}/{}` for a path from the \
                 directory phasegate started in)",
                self.program,
                workdir.display(),
                self.program.trim_start_matches("./")
            ),
            _ => format!("cannot start `{}`", self.program),
        })?;
        let waited = child.wait_timeout(deadline.remaining()).context("cannot wait for the child process")?;
        let Some((status, exited)) = waited else {
            return Err(deadline.timed_out(&format!("`{}`", self.program)));
        };
        probe.report_elapsed(exited.duration_since(start));
        if !status.success() {
            bail!("`{}` exited with {status}; {}", self.program, stderr_tail(&self.stderr_path));
        }
        // Read now, outside the timed span, for the outputs of this sample.
        if let (Some(output), Some(path)) = (&mut self.output, &output_path) {
            output.last = None;
            let bytes = match fs::read(path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    bail!("`{}` exited without writing its `output_file` {}", self.program, path.display())
                }
                Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
            };
            let size = output.element_bytes();
            if bytes.len() % size != 0 {
                bail!(
                    "`{}` holds {} bytes, not a whole number of {size}-byte {} values",
                    path.display(),
                    bytes.len(),
                    if output.double { "f64" } else { "f32" }
                );
            }
            output.last = Some(bytes);
        }
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        let Some(output) = &self.output else {
            return Vec::new();
        };
        let Some(bytes) = &output.last else {
            return Vec::new();
        };
        let data = if output.double {
            OutputData::F64(bytes.chunks_exact(8).map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap())).collect())
        } else {
            OutputData::F32(bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap())).collect())
        };
        vec![Output { name: output.name.clone(), shape: vec![data.len()], data }]
    }
}

/// The process groups of the children running now, by the pid of their leader.
fn running_groups() -> MutexGuard<'static, Vec<u32>> {
    static RUNNING: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Kills the process group of every running child. The interrupt handler calls it
/// before phasegate exits, since the children are not in the group the terminal
/// signals.
pub fn kill_running() {
    for &group in running_groups().iter() {
        kill_group(group);
    }
}

fn kill_group(group: u32) {
    let Ok(group) = libc::pid_t::try_from(group) else { return };
    // SAFETY: `kill` takes no pointers; a negative pid addresses the process group.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// A child leading its own process group, registered with [`running_groups`] until it
/// has been reaped. The group is killed before the leader is reaped, whether the leader
/// exited or not: an unreaped leader keeps its pid, and so the group's id, from being
/// given to a new process, so the kill cannot reach anyone else's processes.
struct GroupChild {
    child: Child,
    reaped: bool,
}

impl GroupChild {
    fn spawn(process: &mut Process) -> std::io::Result<GroupChild> {
        process.process_group(0);
        // Spawning under the lock means an interrupt either finds the child
        // registered or comes before it exists.
        let mut running = running_groups();
        let child = process.spawn()?;
        running.push(child.id());
        Ok(GroupChild { child, reaped: false })
    }

    /// Waits up to `timeout` for the leader to exit. Either way, what is left of the
    /// group (processes the program started and did not wait for) is then killed, so
    /// it cannot run on into the next sample, and the leader is reaped. Gives the exit
    /// status and the moment of the exit, or `None` when the timeout passed first. The
    /// moment is taken by the thread that waits for the exit, so it does not include
    /// waking this one.
    fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<(ExitStatus, Stamp)>> {
        let leader = self.child.id();
        let (exited, exit) = mpsc::channel();
        let waiter = thread::Builder::new().name("command-wait".to_owned()).spawn(move || {
            let _ = exited.send(wait_exited(leader).map(|()| clock::now()));
        })?;
        let outcome = exit.recv_timeout(timeout);
        self.kill_and_reap_later();
        // The waiter returns once the leader has exited, killed or not.
        let _ = waiter.join();
        let status = self.reap()?;
        match outcome {
            Ok(exited) => exited.map(|exited| Some((status, exited))),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(std::io::Error::other("the waiting thread failed")),
        }
    }

    /// Kills the group and forgets it; the leader stays unreaped until [`Self::reap`].
    fn kill_and_reap_later(&self) {
        let mut running = running_groups();
        kill_group(self.child.id());
        running.retain(|&group| group != self.child.id());
    }

    fn reap(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_and_reap_later();
            let _ = self.reap();
        }
    }
}

/// Blocks until the child `pid` has exited, without reaping it.
fn wait_exited(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value of the plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable `siginfo_t`; with `WNOWAIT` the child stays
        // a zombie, to be reaped by `Child::wait`.
        let result = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if result == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A failure shows at most this many bytes from the end of the program's stderr...
const STDERR_TAIL_BYTES: u64 = 4096;
/// ...at most this many lines of them...
const STDERR_TAIL_LINES: usize = 20;
/// ...and at most this many bytes of each line, its end.
const STDERR_LINE_BYTES: usize = 256;

/// The end of the stderr file at `path`, for a failure message: the last lines of its
/// last few KiB, each shortened to its end, with how many bytes were left out. The
/// message goes into reports and onto the console, so a program that writes megabytes
/// of diagnostics must not copy them there; only the end of the file is read.
fn stderr_tail(path: &Path) -> String {
    let mut window = Vec::new();
    let mut total = 0;
    if let Ok(mut file) = File::open(path) {
        total = file.metadata().map_or(0, |metadata| metadata.len());
        let start = total.saturating_sub(STDERR_TAIL_BYTES);
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let _ = file.take(STDERR_TAIL_BYTES).read_to_end(&mut window);
        }
    }
    render_tail(&window, total)
}

/// Renders `window`, the last bytes of a stream of `total` bytes (see [`stderr_tail`]).
/// Invalid UTF-8 is shown as replacement characters: a program may print paths or
/// data that are not UTF-8, and its diagnostics must still be read.
fn render_tail(window: &[u8], total: u64) -> String {
    let text = window.strip_suffix(b"\n").unwrap_or(window);
    let mut lines: Vec<&[u8]> = text.split(|&byte| byte == b'\n').collect();
    // A window that starts inside the stream starts inside a line, unless it holds
    // one line only.
    if (window.len() as u64) < total && lines.len() > 1 {
        lines.remove(0);
    }
    let lines = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
    let mut shown = 0;
    let rendered: Vec<String> = lines
        .iter()
        .map(|line| {
            let mut cut = line.len().saturating_sub(STDERR_LINE_BYTES);
            // Start the shortened line at a character, not inside one.
            while cut > 0 && cut < line.len() && line[cut] & 0xc0 == 0x80 {
                cut += 1;
            }
            shown += (line.len() - cut) as u64 + 1;
            let end = String::from_utf8_lossy(&line[cut..]);
            if cut > 0 { format!("[...]{end}") } else { end.into_owned() }
        })
        .collect();
    let left_out = total.saturating_sub(shown);
    let header = if left_out > 0 {
        format!("stderr, its end ({left_out} of {total} bytes left out; [...] marks a shortened line)")
    } else {
        "stderr".to_owned()
    };
    format!("{header}:\n{}", rendered.join("\n"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::{Command, placeholders, render_tail};
    use crate::kernel::{Instance, Kernel, Output, OutputData, Params, Probe, RunContext, Value};

    /// An instance running `line` through `sh -c`, with scratch files under `scratch`.
    fn shell_instance(line: &str, scratch: &Path) -> Box<dyn Instance> {
        shell_instance_with(line, 1, 1, scratch)
    }

    /// `line` run by the shell, with the run's seed and thread count.
    fn shell_instance_with(line: &str, seed: u64, threads: usize, scratch: &Path) -> Box<dyn Instance> {
        let given = [("program", Value::from(line)), ("shell", Value::Bool(true))];
        instance(&given, seed, threads, scratch)
    }

    fn instance(given: &[(&str, Value)], seed: u64, threads: usize, scratch: &Path) -> Box<dyn Instance> {
        try_instance(given, seed, threads, scratch).unwrap()
    }

    fn try_instance(
        given: &[(&str, Value)],
        seed: u64,
        threads: usize,
        scratch: &Path,
    ) -> anyhow::Result<Box<dyn Instance>> {
        Command.instantiate(&params(given), &RunContext::outside_harness(seed, threads, scratch))
    }

    /// `given` validated as the plan validates a run's parameters.
    fn params(given: &[(&str, Value)]) -> Params {
        let given: BTreeMap<String, Value> =
            given.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        Params::validate(&Command.params(), &given, true).unwrap()
    }

    /// Checks what the kernel's check says of `program` with `args` and the extra
    /// parameters `extra`.
    fn check_params(program: &str, args: &[&str], extra: &[(&str, Value)], expect: Result<(), &str>) {
        let args = Value::List(args.iter().map(|&arg| Value::from(arg)).collect());
        let mut given = vec![("program", Value::from(program)), ("args", args.clone())];
        given.extend(extra.iter().cloned());
        let found = Command.check(&params(&given)).map(|_| ());
        assert_eq!(found, expect.map_err(str::to_owned), "program {program}, args {args}, extra {extra:?}");
    }

    /// Whether `pid` is a process that has not exited (a zombie has).
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Asserts that the process whose pid is in `pid_file` is gone, killing it if not.
    fn assert_gone(pid_file: &Path, what: &str) {
        let pid: i32 = std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap();
        // The kill is asynchronous; give the process a moment to go.
        let mut polls = 0;
        while running(pid) && polls < 50 {
            std::thread::sleep(Duration::from_millis(20));
            polls += 1;
        }
        let survived = running(pid);
        if survived {
            // SAFETY: `kill` takes no pointers; this only tidies up after the failure.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        assert!(!survived, "`sleep 30` (pid {pid}) outlived {what}");
    }

    #[test]
    fn a_timeout_kills_the_processes_the_child_started() {
        let scratch = tempfile::tempdir().unwrap();
        let pid_file = scratch.path().join("pid");
        let line = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let mut instance = shell_instance(&line, scratch.path());
        let error = instance.run(&mut Probe::with_timeout(Duration::from_millis(500))).unwrap_err();
        assert!(error.to_string().contains("timed out: "), "{error:#}");
        assert!(error.to_string().contains("s into the sample, past its timeout of 0.5 s"), "{error:#}");
        assert_gone(&pid_file, "the timed-out run");
    }

    #[test]
    fn the_timeout_counts_from_the_start_of_the_sample() {
        let scratch = tempfile::tempdir().unwrap();
        let mut instance = shell_instance("sleep 30", scratch.path());
        // A cold sample's set-up has used 1.5 s of its 2 s before the program starts.
        let mut probe = Probe::with_timeout(Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(1500));
        let start = crate::clock::now();
        let error = instance.run(&mut probe).unwrap_err();
        let waited = start.elapsed();
        assert!(waited < Duration::from_millis(1900), "the program ran {waited:?} of what was left (0.5 s)");
        assert!(error.to_string().contains("past its timeout of 2 s"), "{error:#}");
    }

    #[test]
    fn an_exit_kills_the_processes_the_child_left_running() {
        let scratch = tempfile::tempdir().unwrap();
        let pid_file = scratch.path().join("pid");
        let line = format!("sleep 30 & echo $! > {}", pid_file.display());
        let mut instance = shell_instance(&line, scratch.path());
        let mut probe = Probe::default();
        instance.run(&mut probe).unwrap();
        assert_gone(&pid_file, "the program that started it");
        // The sample is the program's own time, not the 30 s of what it left behind.
        let elapsed = probe.elapsed_override.unwrap();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn a_program_killed_by_a_signal_fails_the_run() {
        let scratch = tempfile::tempdir().unwrap();
        let mut instance = shell_instance("kill -9 $$", scratch.path());
        let error = instance.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.contains("signal: 9"), "{error}");
    }

    #[test]
    fn a_missing_program_fails_the_run() {
        let scratch = tempfile::tempdir().unwrap();
        let given = [("program", Value::from("/nonexistent/phasegate-no-such-program"))];
        let error = instance(&given, 1, 1, scratch.path()).run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.contains("cannot start `/nonexistent/phasegate-no-such-program`"), "{error}");
    }

    #[test]
    fn the_child_sees_the_thread_count_and_the_seed() {
        let scratch = tempfile::tempdir().unwrap();
        let line = r#"test "$OMP_NUM_THREADS/$RAYON_NUM_THREADS" = 2/2 && test {threads} = 2 && test {seed} = 7"#;
        let instance = |seed, threads| shell_instance_with(line, seed, threads, scratch.path());
        instance(7, 2).run(&mut Probe::default()).unwrap();
        // The same line fails for another thread count or seed, so it tests something.
        assert!(instance(7, 1).run(&mut Probe::default()).is_err());
        assert!(instance(8, 2).run(&mut Probe::default()).is_err());
    }

    #[test]
    fn a_failure_reports_stderr_that_is_not_utf8() {
        let scratch = tempfile::tempdir().unwrap();
        let line = r"printf 'important diagnostic \377\n' >&2; exit 1";
        let mut instance = shell_instance(line, scratch.path());
        let error = instance.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.ends_with("stderr:\nimportant diagnostic \u{fffd}"), "{error}");
    }

    #[test]
    fn a_failure_reports_only_the_end_of_a_huge_stderr() {
        let scratch = tempfile::tempdir().unwrap();
        let line = "head -c 5000000 /dev/zero | tr '\\0' x >&2; echo ' the end' >&2; exit 1";
        let mut instance = shell_instance(line, scratch.path());
        let error = instance.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.len() < 1000, "{} bytes: {}...", error.len(), &error[..200]);
        assert!(error.ends_with(&format!(":\n[...]{} the end", "x".repeat(248))), "{error}");
        assert!(error.contains("; stderr, its end (4999752 of 5000009 bytes left out;"), "{error}");
    }

    #[test]
    fn a_failure_reports_the_stderr_of_its_own_sample() {
        let scratch = tempfile::tempdir().unwrap();
        let mark = scratch.path().join("mark");
        let line = format!(
            "if test -e '{mark}'; then echo second >&2; exit 1; fi; touch '{mark}'; echo first >&2",
            mark = mark.display()
        );
        let mut instance = shell_instance(&line, scratch.path());
        instance.run(&mut Probe::default()).unwrap();
        let error = instance.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.ends_with("exited with exit status: 1; stderr:\nsecond"), "{error}");
    }

    #[test]
    fn a_stderr_tail_keeps_the_last_lines_and_counts_what_it_leaves_out() {
        let text: String = (1..=30).map(|line| format!("line {line}\n")).collect();
        let shown: String = (11..=30).map(|line| format!("line {line}\n")).collect();
        let expected = format!(
            "stderr, its end ({} of {} bytes left out; [...] marks a shortened line):\n{}",
            text.len() - shown.len(),
            text.len(),
            shown.trim_end()
        );
        assert_eq!(render_tail(text.as_bytes(), text.len() as u64), expected);
        // A window that starts inside the stream drops its partial first line.
        assert_eq!(
            render_tail(b"tial\nlast\n", 100),
            "stderr, its end (95 of 100 bytes left out; [...] marks a shortened line):\nlast"
        );
        assert_eq!(render_tail(b"", 0), "stderr:\n");
        assert_eq!(render_tail(b"one\r\ntwo", 8), "stderr:\none\r\ntwo");
        // A line cut inside a character starts at the next one.
        let long = format!("{}\u{e9}{}", "a".repeat(100), "b".repeat(255));
        let rendered = render_tail(long.as_bytes(), long.len() as u64);
        assert!(rendered.ends_with(&format!(":\n[...]{}", "b".repeat(255))), "{rendered}");
    }

    #[test]
    fn every_extra_parameter_fills_a_placeholder_and_every_placeholder_has_a_value() {
        let size = [("size", Value::Int(4))];
        let every = ["-n", "{size}", "{threads}", "{seed}", "{workdir}", "{cwd}", "{env:EXAMPLE_TOOL_UNSET}"];
        check_params("run", &every, &size, Ok(()));
        // The program's own placeholders count, and a declared parameter may be named.
        check_params("{size}", &["{output_name}"], &size, Ok(()));
        check_params(
            "run",
            &["-n", "4"],
            &size,
            Err("parameter `size` is not used by the command (write `{size}` in `program`, `args` or `output_file`)"),
        );
        check_params("run", &["{size}", "{sise}"], &size, Err("placeholder `{sise}` names no parameter"));
        check_params("run {size}", &[], &[], Err("placeholder `{size}` names no parameter"));
        for reserved in ["seed", "cwd"] {
            let expect = format!("`{reserved}` is filled in by the harness and cannot be a parameter");
            check_params("run", &[format!("{{{reserved}}}").as_str()], &[(reserved, Value::Int(1))], Err(&expect));
        }
        let list = [("size", Value::List(vec![Value::Int(1), Value::Int(2)]))];
        check_params("run", &["{size}"], &list, Err("substitution variable `size` must be a single value"));
        check_params(" ", &[], &[], Err("`program` is empty: name the program to run"));
        for bad in ["{env:}", "{env:A:B}", "{env:1A}"] {
            let expect = format!(
                "placeholder `{bad}` names no environment variable (`{{env:NAME}}`, NAME of letters, digits and `_`, \
                 not starting with a digit)"
            );
            check_params("run", &[bad], &[], Err(&expect));
        }
    }

    #[test]
    fn placeholders_take_the_environment_and_both_directories() {
        let scratch = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        // In a fresh working directory the program runs in `{workdir}`, and `{cwd}` is
        // still the directory phasegate was started in.
        let line = format!(
            r#"test "{{env:PATH}}" = "$PATH" && test . -ef '{{workdir}}' && test '{{cwd}}' -ef '{}' && ! test . -ef '{{cwd}}'"#,
            cwd.display()
        );
        let given = [("program", Value::from(line)), ("shell", Value::Bool(true)), ("workdir", Value::from("fresh"))];
        let mut fresh = instance(&given, 1, 1, scratch.path());
        fresh.setup(&mut Probe::default()).unwrap();
        fresh.run(&mut Probe::default()).unwrap();
        // A variable that is not set fails the run before anything starts.
        let given = [("program", Value::from("echo {env:EXAMPLE_TOOL_UNSET}")), ("shell", Value::Bool(true))];
        let error = try_instance(&given, 1, 1, scratch.path()).err().expect("an unset variable is an error");
        assert_eq!(
            error.to_string(),
            "environment variable EXAMPLE_TOOL_UNSET is not set (`requires_env = \"EXAMPLE_TOOL_UNSET\"` skips \
             the workload where it is not)"
        );
        // A relative program is looked up from the fresh working directory, which says so.
        let given = [("program", Value::from("./bench.sh")), ("workdir", Value::from("fresh"))];
        let mut relative = instance(&given, 1, 1, scratch.path());
        relative.setup(&mut Probe::default()).unwrap();
        let error = relative.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot start `./bench.sh` from the fresh working directory ")
                && error.ends_with("(write `{cwd}/bench.sh` for a path from the directory phasegate started in)"),
            "{error}"
        );
    }

    /// Placeholders are filled in one pass: a value that holds a placeholder's braces
    /// is passed as it is, and braces around anything but a name are left alone.
    #[test]
    fn substituted_values_are_not_substituted_again() {
        let scratch = tempfile::tempdir().unwrap();
        let line = "test '{label}' = '{'threads'}' && test {threads} = 3 && test '{a b}{}' = '{a b}{}'";
        let given = [("program", Value::from(line)), ("shell", Value::Bool(true)), ("label", Value::from("{threads}"))];
        instance(&given, 1, 3, scratch.path()).run(&mut Probe::default()).unwrap();
    }

    #[test]
    fn a_shell_line_is_the_program_followed_by_its_arguments() {
        let scratch = tempfile::tempdir().unwrap();
        let given = [
            ("program", Value::from("exit")),
            ("args", Value::List(vec![Value::from("{code}")])),
            ("code", Value::Int(3)),
            ("shell", Value::Bool(true)),
        ];
        let error = instance(&given, 1, 1, scratch.path()).run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.starts_with("`sh` exited with exit status: 3; stderr:"), "{error}");
    }

    /// With a shell, each of `args` stays one word, whatever it holds, while
    /// placeholders in `program` are shell text.
    #[test]
    fn a_shell_line_quotes_each_argument_as_one_word() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("args.txt");
        let words = ["a b", "x;y", "it's", "", "$HOME", "*", "\\", "plain-1.5/x=y", "{label}"];
        // The words reach a shell function as its arguments, one line each.
        let line = r#"f() { test $# = 9 && printf '%s\n' "$@" > {out}; }; f"#;
        let given = [
            ("program", Value::from(line)),
            ("args", Value::List(words.iter().map(|&word| Value::from(word)).collect())),
            ("label", Value::from("x;false")),
            ("out", Value::from(out.display().to_string())),
            ("shell", Value::Bool(true)),
        ];
        instance(&given, 1, 1, scratch.path()).run(&mut Probe::default()).unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let expected = ["a b", "x;y", "it's", "", "$HOME", "*", "\\", "plain-1.5/x=y", "x;false"];
        assert_eq!(written.lines().collect::<Vec<_>>(), expected);
        // In `program` a value is shell text: a `;` there ends the command.
        let given = [
            ("program", Value::from("true {label}")),
            ("label", Value::from("x; exit 4")),
            ("shell", Value::Bool(true)),
        ];
        let error = instance(&given, 1, 1, scratch.path()).run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.starts_with("`sh` exited with exit status: 4; stderr:"), "{error}");
    }

    #[test]
    fn the_program_reads_nothing_and_writes_only_its_stderr_file() {
        let scratch = tempfile::tempdir().unwrap();
        let stderr = scratch.path().join("stderr.txt");
        let line = format!(
            "test /proc/$$/fd/0 -ef /dev/null && test /proc/$$/fd/1 -ef /dev/null && test /proc/$$/fd/2 -ef '{}'",
            stderr.display()
        );
        shell_instance(&line, scratch.path()).run(&mut Probe::default()).unwrap();
    }

    #[test]
    fn the_output_file_is_read_from_the_working_directory_in_its_format() {
        let scratch = tempfile::tempdir().unwrap();
        // 1.0 and 2.0 as little-endian f64s; read as f32s, the same bytes are 0, 1.875, 0, 2.
        let line = r"printf '\0\0\0\0\0\0\360\77\0\0\0\0\0\0\0\100' > values_{kind}.bin";
        let formats = [("f64", OutputData::F64(vec![1.0, 2.0])), ("f32", OutputData::F32(vec![0.0, 1.875, 0.0, 2.0]))];
        for (format, data) in formats {
            let run_scratch = scratch.path().join(format);
            std::fs::create_dir(&run_scratch).unwrap();
            let given = [
                ("program", Value::from(line)),
                ("shell", Value::Bool(true)),
                ("workdir", Value::from("fresh")),
                // Placeholders are filled in, as in `program`.
                ("output_file", Value::from("{workdir}/values_{kind}.bin")),
                ("kind", Value::from("x")),
                ("output_format", Value::from(format)),
                ("output_name", Value::from("field")),
            ];
            let mut instance = instance(&given, 1, 1, &run_scratch);
            instance.setup(&mut Probe::default()).unwrap();
            instance.run(&mut Probe::default()).unwrap();
            let expected = Output { name: "field".into(), shape: vec![data.len()], data };
            assert_eq!(instance.outputs(), [expected], "{format}");
        }
    }

    /// The outputs are the file as the sample's program left it, though another program
    /// overwrites it before they are collected; a file holding part of a value fails the
    /// sample.
    #[test]
    fn the_output_file_is_read_when_its_program_exits_and_must_hold_whole_values() {
        let scratch = tempfile::tempdir().unwrap();
        // One file for both programs, as in a working directory they share.
        let shared = scratch.path().join("values.bin");
        let file = |name: &str, bytes: &str| {
            let run_scratch = scratch.path().join(name);
            std::fs::create_dir(&run_scratch).unwrap();
            let given = [
                ("program", Value::from(format!("printf '{bytes}' > '{}'", shared.display()))),
                ("shell", Value::Bool(true)),
                ("output_file", Value::from(shared.display().to_string())),
                ("output_format", Value::from("f32")),
            ];
            let mut instance = instance(&given, 1, 1, &run_scratch);
            instance.setup(&mut Probe::default()).unwrap();
            instance
        };
        // 1.0 as a little-endian f32, then 2.0 over it.
        let mut first = file("first", r"\0\0\200\77");
        let mut second = file("second", r"\0\0\0\100");
        first.run(&mut Probe::default()).unwrap();
        second.run(&mut Probe::default()).unwrap();
        assert_eq!(first.outputs()[0].data, OutputData::F32(vec![1.0]));
        assert_eq!(second.outputs()[0].data, OutputData::F32(vec![2.0]));
        // A program that writes nothing fails its sample, whatever file an earlier one left.
        std::fs::write(&shared, [0, 0, 128, 63]).unwrap();
        let silent_program = [
            ("program", Value::from("true")),
            ("output_file", Value::from(shared.display().to_string())),
            ("output_format", Value::from("f32")),
        ];
        let run_scratch = scratch.path().join("silent");
        std::fs::create_dir(&run_scratch).unwrap();
        let mut silent = instance(&silent_program, 1, 1, &run_scratch);
        silent.setup(&mut Probe::default()).unwrap();
        let error = silent.run(&mut Probe::default()).expect_err("a stale file passed for the sample's output");
        assert_eq!(error.to_string(), format!("`true` exited without writing its `output_file` {}", shared.display()));
        assert!(silent.outputs().is_empty());
        let mut partial = file("partial", r"\0\0\200\77\0");
        let error = partial.run(&mut Probe::default()).unwrap_err().to_string();
        assert!(error.ends_with("values.bin` holds 5 bytes, not a whole number of 4-byte f32 values"), "{error}");
    }

    #[test]
    fn finds_placeholders() {
        assert_eq!(placeholders("-n {size} {env:HOME}/x {threads}{"), ["size", "env:HOME", "threads"]);
        assert_eq!(placeholders("{ not one }"), Vec::<String>::new());
        assert_eq!(placeholders("f() { x > {out}; }; {{a}}"), ["out", "a"]);
    }
}
