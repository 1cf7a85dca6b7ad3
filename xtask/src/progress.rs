//! Progress display and diagnostics: indicatif bars on a terminal, plain lines
//! otherwise (CI logs), and the tracing subscriber (warnings on stderr, and JSON lines
//! of every sample and telemetry event with `--log-file`).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use phasegate::describe::counted;
use phasegate::execute::{Observer, Sample, json_log_line};
use phasegate::plan::{PhasePlan, Run};
use phasegate::spec::Mode;
use phasegate::stats::format_seconds;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber: human-readable warnings on stderr (`RUST_LOG` adjusts),
/// and with `log_file` every `phasegate` event at debug level as JSON lines, into the
/// file [`LogFile::open`] names once a run is about to start (until then they are
/// dropped, so a spec that fails to load, a refused run or a dry run leave an earlier
/// log alone). Warnings are coloured only on a terminal, without `plain` and without
/// `NO_COLOR`.
pub fn install_tracing(log_file: bool, plain: bool) -> anyhow::Result<LogFile> {
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let colour = std::io::stderr().is_terminal() && !plain && !no_color;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .with_filter(stderr_filter);
    let log = LogFile::default();
    let file = log_file.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(log.clone())
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(EnvFilter::new("phasegate=debug"))
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .context("cannot install the tracing subscriber")?;
    Ok(log)
}

use tracing_subscriber::Layer;

/// The `--log-file`, once opened: every line goes through [`json_log_line`], so the
/// events' JSON fields are written as objects rather than as text.
#[derive(Clone, Default)]
pub struct LogFile {
    file: Arc<Mutex<Option<File>>>,
}

impl LogFile {
    /// Creates (or truncates) the log file at `path`; the events from here on go to it.
    pub fn open(&self, path: &Path) -> anyhow::Result<()> {
        let file = File::create(path).with_context(|| format!("cannot create the log file {}", path.display()))?;
        *self.file.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(file);
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = JsonLogLines<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonLogLines { file: &self.file, pending: Vec::new() }
    }
}

/// Collects the bytes of one event and writes each finished line to the log file, if
/// it is open.
pub struct JsonLogLines<'a> {
    file: &'a Mutex<Option<File>>,
    pending: Vec<u8>,
}

impl Write for JsonLogLines<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = json_log_line(String::from_utf8_lossy(&line[..end]).as_ref());
            if let Some(file) = self.file.lock().unwrap_or_else(|poison| poison.into_inner()).as_mut() {
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")?;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.lock().unwrap_or_else(|poison| poison.into_inner()).as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for JsonLogLines<'_> {
    fn drop(&mut self) {
        // An event always ends its line; anything left is written as it came.
        if !self.pending.is_empty()
            && let Some(file) = self.file.lock().unwrap_or_else(|poison| poison.into_inner()).as_mut()
        {
            let _ = file.write_all(&self.pending);
        }
    }
}

/// Shows progress: a bar per phase on a terminal, one line per finished run otherwise.
pub struct Progress {
    fancy: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(fancy: bool) -> Progress {
        Progress { fancy, bar: Mutex::new(None) }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|poison| poison.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn println(&self, line: &str) {
        match self.bar.lock().unwrap_or_else(|poison| poison.into_inner()).as_ref() {
            Some(bar) if self.fancy => bar.println(line),
            _ => errln!("{line}"),
        }
    }
}

impl Observer for Progress {
    fn phase_started(&self, phase: &PhasePlan, steps: u64) {
        let runs = phase.runs.iter().filter(|run| run.skip.is_none()).count();
        let line = format!(
            "phase {} ({}): {}, {}",
            phase.phase.id,
            phase.phase.title,
            counted(runs, "run"),
            counted(steps as usize, "step")
        );
        if self.fancy {
            let bar = ProgressBar::new(steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} steps, eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("phase {}", phase.phase.id));
            bar.println(&line);
            *self.bar.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(bar);
        } else {
            errln!("{line}");
        }
    }

    fn step_finished(&self, _phase: &PhasePlan, run: &Run, sample: &Sample) {
        if self.fancy {
            if let Some(bar) = self.bar.lock().unwrap_or_else(|poison| poison.into_inner()).as_ref() {
                bar.inc(1);
                bar.set_message(run.name());
            }
            return;
        }
        let last_mode = run.settings.modes.last().copied().unwrap_or(Mode::Warm);
        if !sample.warmup && sample.mode == last_mode && sample.index + 1 == run.settings.repeats {
            errln!(
                "  {} done ({}, last {})",
                run.name(),
                counted(run.settings.repeats as usize, &format!("{} sample", sample.mode.name())),
                format_seconds(sample.seconds)
            );
        }
    }

    fn run_failed(&self, _phase: &PhasePlan, run: &Run, message: &str) {
        self.println(&format!("  {} FAILED: {}", run.name(), message.lines().next().unwrap_or_default()));
    }

    fn phase_finished(&self, _phase: &PhasePlan) {
        self.finish();
    }
}
