//! All file output of a run: the report directory, atomic writes, the `latest`
//! pointer and the run log.
//!
//! Layout under the experiment's output root:
//!
//! ```text
//! reports/<experiment>/
//!   <date>T<time>Z-<host>[-N]/     one directory per run, never reused
//!     env.json
//!     summary.md                   all phases, for pull-request comments
//!     <phase>/report.md
//!     <phase>/report.json
//!   latest -> <date>T<time>Z-<host>   symlink, replaced atomically
//!   run_log.txt                    one line appended per run
//! ```
//!
//! Every file of the run directory is written to a temporary name in the same
//! directory, flushed and renamed over its final name, so an interrupted run never
//! leaves a half-written report and never touches the reports of earlier runs; a write
//! that fails removes its temporary file. The run log and the `--summary` file are
//! appended to; the `--junit` file is replaced so too, unless its name leads elsewhere
//! (a link, a device) or its directory refuses the rename, when it is written in place
//! ([`write_named`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file + rename). A write or rename
/// that fails removes the temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let temporary = temporary_for(path);
    let file = File::create(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
    replace_with(file, &temporary, path, bytes)
}

/// Writes `bytes` to `path`, a file named on the command line (`--junit`), so that what
/// the name stands for receives them: a new path or a regular file is replaced
/// atomically ([`write_atomic`]), but the target of a symlink, a device or a fifo is
/// opened, truncated and written, since a rename would replace the link or the device
/// itself. So is a regular file whose directory takes no new file, which
/// [`check_output_file`] lets through.
pub fn write_named(path: &Path, bytes: &[u8]) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => {
            let temporary = temporary_for(path);
            match File::create(&temporary) {
                // A rename the directory refuses (another user's file under a sticky
                // bit) leaves writing in place, which the check before the run allowed;
                // any other failure (a full device) keeps the file as it was.
                Ok(file) => replace_with(file, &temporary, path, bytes).or_else(|error| {
                    let refused = error
                        .root_cause()
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|cause| cause.kind() == std::io::ErrorKind::PermissionDenied);
                    if refused { write_through(path, bytes).map_err(|_| error) } else { Err(error) }
                }),
                Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => write_through(path, bytes),
                Err(error) => Err(error).with_context(|| format!("cannot write {}", temporary.display())),
            }
        }
        Ok(_) => write_through(path, bytes),
        Err(_) => write_atomic(path, bytes),
    }
}

/// The directory of `path`, `.` for a bare name.
pub fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The temporary name `path` is written under before it is renamed: hidden, beside it,
/// and this process's own.
fn temporary_for(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("file");
    parent_of(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `file`, just created as `temporary`, and renames it to `path`;
/// removes it when that fails.
fn replace_with(mut file: File, temporary: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))
        .and_then(|()| {
            drop(file);
            fs::rename(temporary, path)
                .with_context(|| format!("cannot move {} to {}", temporary.display(), path.display()))
        });
    if written.is_err() {
        let _ = fs::remove_file(temporary);
    }
    written
}

/// Opens `path` (following a symlink), truncates it and writes `bytes` into it; a
/// path that leads to this process's own stdout or stderr (`/dev/stdout` redirected to
/// a log) is appended to, so the run's printed lines stay.
fn write_through(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!is_own_output(path))
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if is_own_output(path) {
        use std::io::Seek;
        let _ = file.seek(std::io::SeekFrom::End(0));
    }
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    // A regular file is synced as a replaced one is; devices and fifos cannot be.
    if file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Whether `path` is the file this process's stdout or stderr writes to.
fn is_own_output(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = fs::metadata(path) else { return false };
    ["/proc/self/fd/1", "/proc/self/fd/2"]
        .iter()
        .filter_map(|stream| fs::metadata(stream).ok())
        .any(|stream| (stream.dev(), stream.ino()) == (target.dev(), target.ino()))
}

/// Creates a fresh run directory `<root>/<stamp>-<host>`, adding `-2`, `-3`, ... when
/// that name is taken: an earlier run is never overwritten.
pub fn create_run_dir(experiment_root: &Path, stamp: &str, host: &str) -> Result<PathBuf> {
    fs::create_dir_all(experiment_root).with_context(|| format!("cannot create {}", experiment_root.display()))?;
    for attempt in 1..1000 {
        let name = if attempt == 1 { format!("{stamp}-{host}") } else { format!("{stamp}-{host}-{attempt}") };
        let dir = experiment_root.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    anyhow::bail!("too many runs named {stamp}-{host} in {}", experiment_root.display())
}

/// Points `<root>/latest` at `run_dir` (a relative symlink, replaced atomically).
pub fn update_latest(experiment_root: &Path, run_dir: &Path) -> Result<()> {
    let target = run_dir.file_name().context("run directory has no name")?;
    let temporary = experiment_root.join(format!(".latest.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
    fs::rename(&temporary, experiment_root.join("latest")).context("cannot update the `latest` pointer")?;
    Ok(())
}

/// Resolves `<root>/latest` to a run directory.
pub fn latest_run_dir(experiment_root: &Path) -> Option<PathBuf> {
    let target = fs::read_link(experiment_root.join("latest")).ok()?;
    let dir = experiment_root.join(target);
    dir.is_dir().then_some(dir)
}

/// Every run directory that holds a report of `phase`, newest first by the run's start
/// (see [`newest_run_name`]). A phase an interrupted run finished counts like any: which
/// run `latest` names does not change the order.
pub fn runs_with_phase(experiment_root: &Path, phase: &str) -> Vec<PathBuf> {
    let holds = |dir: &Path| dir.join(phase).join("report.json").is_file();
    let mut names: Vec<String> = fs::read_dir(experiment_root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()) && holds(&entry.path()))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| is_run_name(name))
                .collect()
        })
        .unwrap_or_default();
    names.sort_by(|a, b| run_order(b).cmp(&run_order(a)));
    names.into_iter().map(|name| experiment_root.join(name)).collect()
}

/// The key that orders run directory names by age: names start with the run's start
/// time, and a later `-N` of the same second is longer.
fn run_order(name: &str) -> (&str, usize, &str) {
    (&name[..18], name.len(), name)
}

/// The newest of run directory names (others are ignored): names start with the run's
/// start time, and a later `-N` of the same second is longer.
pub fn newest_run_name<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names.filter(|name| is_run_name(name)).max_by(|a, b| run_order(a).cmp(&run_order(b)))
}

/// Whether `name` starts like a run directory's, `YYYY-MM-DDTHHMMSSZ-`.
fn is_run_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 19 && bytes[10] == b'T' && bytes[17] == b'Z' && bytes[18] == b'-' && name.is_char_boundary(18)
}

/// Appends one line to `<root>/run_log.txt`.
pub fn append_run_log(experiment_root: &Path, line: &str) -> Result<()> {
    let path = experiment_root.join("run_log.txt");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("cannot append to {}", path.display()))
}

/// Appends `text` to `path` (the CI summary file, which other steps share), creating
/// the file and its missing parent directories, as [`write_atomic`] does.
pub fn append(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot append to {}", path.display()))
}

/// Checks, before anything runs, that the file `path` can be written at the end of the
/// run ([`append`], [`write_named`]), without creating it. An existing file is tested
/// itself: a regular file must open for appending (which changes nothing), another kind
/// (a device, a fifo) must be writable by this process, asked of the system rather than
/// by opening it, which a fifo's reader would see. A new file needs a writable nearest
/// existing directory ([`check_writable`]); its missing directories are created when it
/// is written.
pub fn check_output_file(path: &Path) -> Result<()> {
    let refused = || format!("cannot write {}", path.display());
    match fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => anyhow::bail!("{} is a directory, not a file", path.display()),
        Ok(metadata) if metadata.is_file() => {
            OpenOptions::new().append(true).open(path).map(drop).with_context(refused)
        }
        Ok(_) => writable_by_this_process(path).with_context(refused),
        Err(_) => check_writable(parent_of(path)).with_context(refused),
    }
}

/// Whether this process may write `path`, by its effective user and groups.
fn writable_by_this_process(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `name` is a NUL-terminated string that lives through the call, which only
    // reads it.
    let answer = unsafe { libc::faccessat(libc::AT_FDCWD, name.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if answer == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Checks that `dir` can be created and written to, before anything runs, without
/// creating it: the nearest existing ancestor must be a writable directory.
pub fn check_writable(dir: &Path) -> Result<()> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        anyhow::bail!(
            "cannot create the output directory {}: {} is not a directory",
            dir.display(),
            existing.display()
        );
    }
    let probe = existing.join(format!(".phasegate-write-test-{}", std::process::id()));
    File::create(&probe).with_context(|| format!("the output directory {} is not writable", existing.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        create_run_dir, latest_run_dir, newest_run_name, runs_with_phase, update_latest, write_atomic, write_named,
    };

    #[test]
    fn run_dirs_never_collide_and_latest_follows() {
        let root = tempfile::tempdir().unwrap();
        let first = create_run_dir(root.path(), "2026-01-01T000000Z", "host").unwrap();
        let second = create_run_dir(root.path(), "2026-01-01T000000Z", "host").unwrap();
        assert_ne!(first, second);
        assert!(second.ends_with("2026-01-01T000000Z-host-2"));
        update_latest(root.path(), &first).unwrap();
        update_latest(root.path(), &second).unwrap();
        assert_eq!(latest_run_dir(root.path()).unwrap().file_name(), second.file_name());
        write_atomic(&second.join("a/b.txt"), b"x").unwrap();
        assert_eq!(std::fs::read(second.join("a/b.txt")).unwrap(), b"x");
        let leftovers: Vec<_> = std::fs::read_dir(second.join("a")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    /// A write whose rename fails (a directory holds the name) leaves no temporary
    /// file behind.
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.md");
        std::fs::create_dir_all(path.join("in the way")).unwrap();
        let error = write_atomic(&path, b"x").unwrap_err();
        assert!(format!("{error:#}").contains("cannot move"), "{error:#}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, ["report.md"]);
    }

    /// A named file is written where its name leads: a symlink stays a link to the file
    /// that now holds the text, a fifo stays a fifo and its reader gets the text, and a
    /// regular file is replaced.
    #[test]
    fn a_named_file_is_written_through_links_and_fifos() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let link = dir.path().join("link.xml");
        std::os::unix::fs::symlink("real/junit.xml", &link).unwrap();
        write_named(&link, b"through the link").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(dir.path().join("real/junit.xml")).unwrap(), b"through the link");
        write_named(&dir.path().join("real/junit.xml"), b"replaced").unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"replaced");
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that lives through the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || std::fs::read(fifo).unwrap()
        });
        write_named(&fifo, b"into the fifo").unwrap();
        // Checked before the reader is waited for, whom a fifo replaced by a file may
        // leave waiting for a writer forever.
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(reader.join().unwrap(), b"into the fifo");
    }

    /// The newest run is the one that started last; of runs started in the same second,
    /// the one whose `-N` is largest (`-10` after `-9`, though it sorts before it as
    /// text). Other names are not runs.
    #[test]
    fn the_newest_run_started_last() {
        let newest = |names: &[&'static str]| newest_run_name(names.iter().copied());
        let same_second = ["2026-01-01T000000Z-host-9", "2026-01-01T000000Z-host", "2026-01-01T000000Z-host-10"];
        assert_eq!(newest(&same_second), Some("2026-01-01T000000Z-host-10"));
        assert_eq!(
            newest(&["2026-01-01T000000Z-host", "2026-01-01T000000Z-host-2"]),
            Some("2026-01-01T000000Z-host-2")
        );
        assert_eq!(
            newest(&["2026-01-01T000000Z-longer-hostname-10", "2026-01-02T000000Z-h", "latest", "zz-notes"]),
            Some("2026-01-02T000000Z-h")
        );
        assert_eq!(newest(&["latest", "run_log.txt"]), None);
    }

    /// The runs holding a phase, newest first whatever `latest` names: a newer run that
    /// was interrupted after the phase comes before it.
    #[test]
    fn runs_with_a_phase_come_newest_first() {
        let root = tempfile::tempdir().unwrap();
        let run = |name: &str, phases: &[&str]| {
            let dir = root.path().join(name);
            for phase in phases {
                write_atomic(&dir.join(phase).join("report.json"), b"{}").unwrap();
            }
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        let finished = run("2026-01-02T000000Z-host", &["a", "b"]);
        run("2026-01-01T000000Z-host", &["a"]);
        run("2026-01-03T000000Z-host", &["a"]);
        run("2026-01-04T000000Z-host", &[]);
        update_latest(root.path(), &finished).unwrap();
        let names = |phase: &str| -> Vec<String> {
            let dirs = runs_with_phase(root.path(), phase);
            dirs.iter().map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names("a"), ["2026-01-03T000000Z-host", "2026-01-02T000000Z-host", "2026-01-01T000000Z-host"]);
        assert_eq!(names("b"), ["2026-01-02T000000Z-host"]);
    }
}
