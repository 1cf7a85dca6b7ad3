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
/// printed above the progress bar `bar` shows, if any, and with `log_file` every
/// `phasegate` event at debug level as JSON lines, into the file [`LogFile::open`]
/// names once a run is about to start (until then they are dropped, so a spec that
/// fails to load, a refused run or a dry run leave an earlier log alone). Warnings are
/// coloured only on a terminal, without `plain` and without `NO_COLOR`.
pub fn install_tracing(log_file: bool, plain: bool, bar: &ShownBar) -> anyhow::Result<LogFile> {
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let colour = std::io::stderr().is_terminal() && !plain && !no_color;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(AboveTheBar { bar: bar.clone(), out: std::io::stderr })
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

/// The progress bar on the terminal, while one is shown: [`Progress`] draws it, and
/// tracing's warnings are printed above it.
#[derive(Clone, Default)]
pub struct ShownBar(Arc<Mutex<Option<ProgressBar>>>);

impl ShownBar {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn show(&self, bar: ProgressBar) {
        *self.lock() = Some(bar);
    }

    fn current(&self) -> Option<ProgressBar> {
        self.lock().clone()
    }

    fn take(&self) -> Option<ProgressBar> {
        self.lock().take()
    }
}

/// Writes tracing's lines to `out` (stderr), above the progress bar when one is shown:
/// the bar is cleared for the line and drawn again below it, instead of the line being
/// written into the middle of the bar.
struct AboveTheBar<W> {
    bar: ShownBar,
    out: W,
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for AboveTheBar<W> {
    type Writer = AboveTheBarWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        AboveTheBarWriter { bar: self.bar.current(), out: self.out.make_writer() }
    }
}

struct AboveTheBarWriter<W> {
    bar: Option<ProgressBar>,
    out: W,
}

impl<W: Write> Write for AboveTheBarWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.write(bytes)),
            None => self.out.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Shows progress: a bar per phase on a terminal, one line per finished run otherwise.
pub struct Progress {
    fancy: bool,
    bar: ShownBar,
}

impl Progress {
    /// Progress drawn as a bar (`fancy`), which `bar` shows while it is drawn, or as
    /// plain lines.
    pub fn new(fancy: bool, bar: ShownBar) -> Progress {
        Progress { fancy, bar }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn println(&self, line: &str) {
        match self.bar.current() {
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
            self.bar.show(bar);
        } else {
            errln!("{line}");
        }
    }

    fn rerun_started(&self, phase: &PhasePlan, round: u32, steps: u64) {
        let line = format!(
            "phase {}: re-run {round} of the groups behind inconclusive checks, {}",
            phase.phase.id,
            counted(steps as usize, "step")
        );
        match self.bar.current() {
            Some(bar) if self.fancy => {
                // The bar counts the re-run's steps too, so it never runs past its end.
                bar.inc_length(steps);
                bar.set_prefix(format!("phase {} re-run {round}", phase.phase.id));
                bar.println(&line);
            }
            _ => errln!("{line}"),
        }
    }

    fn step_finished(&self, _phase: &PhasePlan, run: &Run, sample: &Sample) {
        if self.fancy {
            if let Some(bar) = self.bar.current() {
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
        self.println(&format!("  {} FAILED: {}", run.name(), phasegate::verdict::first_line(message)));
    }

    fn phase_finished(&self, _phase: &PhasePlan) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
    use phasegate::execute::Observer;
    use tracing_subscriber::fmt::MakeWriter;

    use super::{AboveTheBar, Progress, ShownBar};

    /// What reached the terminal, in order: the bar's drawing and the lines written
    /// beside it.
    #[derive(Clone, Debug, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn push(&self, what: String) -> std::io::Result<()> {
            self.0.lock().unwrap().push(what);
            Ok(())
        }

        fn seen(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }

        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("up {n}"))
        }

        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("down {n}"))
        }

        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("right {n}"))
        }

        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("left {n}"))
        }

        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.push(format!("bar {line}"))
        }

        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.push(format!("bar {text}"))
        }

        fn clear_line(&self) -> std::io::Result<()> {
            self.push("clear".into())
        }

        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl std::io::Write for Screen {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.push(format!("line {}", String::from_utf8_lossy(bytes).trim_end()))?;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A warning while a bar is shown clears the bar, is written, and the bar is drawn
    /// again below it; with no bar it is written as it comes.
    #[test]
    fn warnings_are_written_above_the_bar() {
        let screen = Screen::default();
        let shown = ShownBar::default();
        let writer = AboveTheBar { bar: shown.clone(), out: || screen.clone() };
        let warn = |text: &str| std::io::Write::write_all(&mut writer.make_writer(), text.as_bytes()).unwrap();
        warn("WARN before the bar\n");
        let bar = ProgressBar::with_draw_target(Some(10), ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_style(ProgressStyle::with_template("{pos}/{len} steps").unwrap());
        bar.set_position(3);
        shown.show(bar);
        let drawn = screen.seen().len();
        warn("WARN during the bar\n");
        let seen = screen.seen();
        let bar_drawn = "bar 3/10 steps".to_owned();
        assert_eq!(seen[0], "line WARN before the bar", "{seen:?}");
        assert!(seen[..drawn].contains(&bar_drawn), "{seen:?}");
        let after = &seen[drawn..];
        let line = after.iter().position(|what| what == "line WARN during the bar").expect("the warning");
        assert!(after[..line].contains(&"clear".to_owned()), "the bar is cleared first: {seen:?}");
        assert!(after[line..].contains(&bar_drawn), "and drawn again below: {seen:?}");
    }

    /// The bar of a phase grows by the steps of each re-run round, so its count never
    /// passes its length.
    #[test]
    fn a_rerun_lengthens_the_bar() {
        let text = "[experiment]\nname = \"e\"\nseed = 1\n\n[[phase]]\nid = \"a\"\ntitle = \"A\"\n\n[[phase.workload]]\nid = \"w\"\nkernel = \"mock\"\n";
        let spec = phasegate::spec::load_str(std::path::Path::new("spec.toml"), text, &Default::default()).unwrap();
        let plan = phasegate::plan::expand(spec, Default::default(), &|_| false).unwrap();
        let shown = ShownBar::default();
        let progress = Progress::new(true, shown.clone());
        progress.phase_started(&plan.phases[0], 10);
        progress.rerun_started(&plan.phases[0], 1, 6);
        assert_eq!(shown.current().and_then(|bar| bar.length()), Some(16));
        progress.finish();
        assert!(shown.current().is_none());
    }
}
