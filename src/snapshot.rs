//! Stored snapshots of kernel outputs, for `snapshot` checks, and their review flow.
//!
//! A snapshot lives next to the spec, per experiment and profile:
//!
//! ```text
//! <spec dir>/snapshots/<experiment>/<profile or "default">/<phase>/<run>/<output>.json   header
//! <spec dir>/snapshots/<experiment>/<profile or "default">/<phase>/<run>/<output>.bin    data (little endian)
//! ```
//!
//! The header records the shape, element type, length and an FNV-1a digest of the data
//! (digest outputs keep their digest in the header and have no data file). A missing
//! snapshot is written on the first run and reported as `new` (with `CI=true` it is a
//! failure instead, so CI never passes on a snapshot nobody reviewed). A snapshot that
//! no longer matches is left alone; the new output is written beside it as
//! `<output>.new.json`/`.new.bin` for `cargo xtask snapshot review` and `accept`, and
//! removed when a later run matches the stored snapshot again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::kernel::{Output, OutputData};
use crate::report::files::write_atomic;
use crate::spec::{Spec, fnv1a_hex};

/// The header file of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub schema_version: u32,
    pub output: String,
    pub shape: Vec<usize>,
    /// `f32`, `f64`, `i64` or `digest`.
    pub dtype: String,
    pub len: usize,
    /// FNV-1a 64 of the data bytes, or the output's own digest.
    pub digest: String,
}

/// Where `cargo xtask snapshot review` and `accept` look unless given `--dir`,
/// relative to the project root: the snapshots of the specs in `experiments/`.
pub const DEFAULT_DIR: &str = "experiments/snapshots";

/// The snapshot directory of a spec: `snapshots/` beside it.
pub fn dir_for_spec(spec: &Spec) -> PathBuf {
    let dir = crate::report::files::parent_of(&spec.file);
    dir.join("snapshots")
}

/// The command that reviews the pending snapshots under `dir`: it names `dir` with
/// `--dir` unless `dir` is the project's default one, where the command looks anyway.
pub fn review_command(dir: &Path, project_root: &Path) -> String {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(dir, &project_root.join(DEFAULT_DIR)) {
        "cargo xtask snapshot review".to_owned()
    } else {
        format!("cargo xtask snapshot --dir {} review", crate::describe::shell_quote(&dir.display().to_string()))
    }
}

/// Where the snapshots of one spec (and profile) live.
#[derive(Clone, Debug)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn for_spec(spec: &Spec) -> Store {
        let profile = spec.profile.as_deref().unwrap_or("default");
        Store { root: dir_for_spec(spec).join(&spec.experiment.name).join(profile) }
    }

    fn base(&self, phase: &str, run: &str, output: &str) -> PathBuf {
        self.root.join(phase).join(run).join(output)
    }

    /// The stored snapshot, if there is one.
    pub fn load(&self, phase: &str, run: &str, output: &str) -> Result<Option<OutputData>> {
        read(&self.base(phase, run, output))
    }

    /// Writes `output` as the stored snapshot, or as the pending one beside it.
    pub fn save(&self, phase: &str, run: &str, output: &Output, pending: bool) -> Result<PathBuf> {
        let base = self.base(phase, run, &output.name);
        let base = if pending { with_suffix(&base, ".new") } else { base };
        write(&base, output)?;
        Ok(with_suffix(&base, ".json"))
    }

    /// Removes the pending snapshot of an output that matches the stored one again, so
    /// `accept` can never bring back an output a later run has superseded.
    pub fn discard_pending(&self, phase: &str, run: &str, output: &str) -> Result<()> {
        let base = with_suffix(&self.base(phase, run, output), ".new");
        for path in [with_suffix(&base, ".json"), with_suffix(&base, ".bin")] {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("cannot remove {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut text = base.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

fn bytes_of(data: &OutputData) -> Vec<u8> {
    match data {
        OutputData::F32(values) => values.iter().flat_map(|value| value.to_le_bytes()).collect(),
        OutputData::F64(values) => values.iter().flat_map(|value| value.to_le_bytes()).collect(),
        OutputData::I64(values) => values.iter().flat_map(|value| value.to_le_bytes()).collect(),
        OutputData::Digest(_) => Vec::new(),
    }
}

fn write(base: &Path, output: &Output) -> Result<()> {
    let dtype = output.data.dtype();
    let digest = match &output.data {
        OutputData::Digest(digest) => Some(digest.clone()),
        _ => None,
    };
    let bytes = bytes_of(&output.data);
    let header = Header {
        schema_version: 1,
        output: output.name.clone(),
        shape: output.shape.clone(),
        dtype: dtype.to_owned(),
        len: output.data.len(),
        digest: digest.unwrap_or_else(|| fnv1a_hex(&bytes)),
    };
    if dtype != "digest" {
        write_atomic(&with_suffix(base, ".bin"), &bytes)?;
    }
    write_atomic(&with_suffix(base, ".json"), &serde_json::to_vec_pretty(&header)?)?;
    Ok(())
}

/// Reads the snapshot at `base` (`.json` and `.bin`); `None` when there is none.
pub fn read(base: &Path) -> Result<Option<OutputData>> {
    let header_path = with_suffix(base, ".json");
    let Ok(text) = std::fs::read_to_string(&header_path) else { return Ok(None) };
    let header: Header =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", header_path.display()))?;
    if header.dtype == "digest" {
        return Ok(Some(OutputData::Digest(header.digest)));
    }
    let data_path = with_suffix(base, ".bin");
    let bytes = std::fs::read(&data_path).with_context(|| format!("cannot read {}", data_path.display()))?;
    if fnv1a_hex(&bytes) != header.digest {
        bail!("{} does not match the digest in its header", data_path.display());
    }
    let data = match header.dtype.as_str() {
        "f32" => {
            OutputData::F32(bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap())).collect())
        }
        "f64" => {
            OutputData::F64(bytes.chunks_exact(8).map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap())).collect())
        }
        "i64" => {
            OutputData::I64(bytes.chunks_exact(8).map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap())).collect())
        }
        other => bail!("{}: unknown element type `{other}`", header_path.display()),
    };
    if data.len() != header.len {
        bail!("{} holds {} elements, its header says {}", data_path.display(), data.len(), header.len);
    }
    Ok(Some(data))
}

/// A pending snapshot: the new output waiting for review.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The stored snapshot's base path (without extension).
    pub base: PathBuf,
}

/// Every pending snapshot under `root` (recursively), sorted. A directory that cannot
/// be read, `root` above all, is an error: it may hold pending snapshots.
pub fn pending(root: &Path) -> Result<Vec<Pending>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read the snapshot directory {}", dir.display()))?;
        for entry in entries {
            let path = entry.with_context(|| format!("cannot read the snapshot directory {}", dir.display()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|name| name.to_str())
                && let Some(output) = name.strip_suffix(".new.json")
            {
                found.push(Pending { base: path.with_file_name(output) });
            }
        }
    }
    found.sort_by(|a, b| a.base.cmp(&b.base));
    Ok(found)
}

/// A description of what changed between the stored and the pending snapshot.
pub fn describe(pending: &Pending) -> Result<String> {
    let new = read(&with_suffix(&pending.base, ".new"))?.context("the pending snapshot is unreadable")?;
    let Some(old) = read(&pending.base)? else {
        return Ok(format!("{}: new snapshot, {} elements", pending.base.display(), new.len()));
    };
    if old.dtype() != new.dtype() {
        return Ok(format!("{}: {} -> {}", pending.base.display(), shown(&old), shown(&new)));
    }
    if old.len() != new.len() {
        return Ok(format!("{}: length {} -> {}", pending.base.display(), old.len(), new.len()));
    }
    match (old.to_f64(), new.to_f64()) {
        (Some(before), Some(after)) => {
            let differing = before.iter().zip(&after).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            let max_abs = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
            let (sum_before, sum_after) = (before.iter().sum::<f64>(), after.iter().sum::<f64>());
            Ok(format!(
                "{}: {differing} of {} elements changed, max |diff| {}, correlation {:.9}, sum {} -> {}",
                pending.base.display(),
                before.len(),
                crate::verdict::format_number(max_abs),
                crate::verdict::pearson(&before, &after),
                crate::verdict::format_number(sum_before),
                crate::verdict::format_number(sum_after)
            ))
        }
        _ => Ok(format!("{}: {} -> {}", pending.base.display(), shown(&old), shown(&new))),
    }
}

/// A digest as its text, numbers as their type and count (when one side is a digest).
fn shown(data: &OutputData) -> String {
    match data {
        OutputData::Digest(digest) => format!("digest {digest}"),
        numbers => format!("{} {} values", numbers.len(), numbers.dtype()),
    }
}

/// Makes the pending snapshot the stored one.
pub fn accept(pending: &Pending) -> Result<()> {
    let new_header = with_suffix(&pending.base, ".new.json");
    let new_data = with_suffix(&pending.base, ".new.bin");
    if new_data.exists() {
        std::fs::rename(&new_data, with_suffix(&pending.base, ".bin"))
            .with_context(|| format!("cannot accept {}", new_data.display()))?;
    }
    std::fs::rename(&new_header, with_suffix(&pending.base, ".json"))
        .with_context(|| format!("cannot accept {}", new_header.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Pending, Store, accept, pending, read, review_command};
    use crate::kernel::{Output, OutputData};

    #[test]
    fn save_load_review_accept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { root: dir.path().to_owned() };
        let output =
            Output { name: "image".into(), shape: vec![2, 2], data: OutputData::F32(vec![1.0, 2.0, 3.0, 4.5]) };
        assert_eq!(store.load("a", "fast[size=2]", "image").unwrap(), None);
        store.save("a", "fast[size=2]", &output, false).unwrap();
        assert_eq!(store.load("a", "fast[size=2]", "image").unwrap(), Some(output.data.clone()));
        let changed = Output { data: OutputData::F32(vec![1.0, 2.0, 3.0, 5.0]), ..output.clone() };
        store.save("a", "fast[size=2]", &changed, true).unwrap();
        let found = pending(dir.path()).unwrap();
        assert_eq!(found, vec![Pending { base: dir.path().join("a/fast[size=2]/image") }]);
        let description = super::describe(&found[0]).unwrap();
        assert!(description.contains("1 of 4 elements changed, max |diff| 0.5000"), "{description}");
        accept(&found[0]).unwrap();
        assert!(pending(dir.path()).unwrap().is_empty());
        assert_eq!(read(&found[0].base).unwrap(), Some(changed.data));
        let digest = Output { name: "digest".into(), shape: vec![1], data: OutputData::Digest("abc".into()) };
        store.save("a", "tree", &digest, false).unwrap();
        assert_eq!(store.load("a", "tree", "digest").unwrap(), Some(OutputData::Digest("abc".into())));
        let changed = Output { data: OutputData::Digest("abd".into()), ..digest };
        store.save("a", "tree", &changed, true).unwrap();
        let found = pending(dir.path()).unwrap();
        let description = super::describe(&found[0]).unwrap();
        assert!(description.ends_with("a/tree/digest: digest abc -> digest abd"), "{description}");
        // The same values in another type are a change of type, not "0 elements changed".
        let wider = Output { data: OutputData::F64(vec![1.0, 2.0, 3.0, 5.0]), ..output };
        store.save("a", "fast[size=2]", &wider, true).unwrap();
        let found = pending(dir.path()).unwrap();
        let image = found.iter().find(|pending| pending.base.ends_with("image")).unwrap();
        let description = super::describe(image).unwrap();
        assert!(description.ends_with("a/fast[size=2]/image: 4 f32 values -> 4 f64 values"), "{description}");
    }

    /// A snapshot directory that cannot be read may hold pending snapshots: an error
    /// naming it, never an empty list.
    #[test]
    fn a_missing_snapshot_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nonexistent");
        let error = format!("{:#}", pending(&missing).unwrap_err());
        assert!(error.starts_with(&format!("cannot read the snapshot directory {}: ", missing.display())), "{error}");
    }

    /// The review command names `--dir` unless the snapshots are where it looks anyway.
    #[test]
    fn the_review_command_names_a_directory_other_than_the_default() {
        let project = tempfile::tempdir().unwrap();
        for dir in ["experiments/snapshots", "other dir/snapshots"] {
            std::fs::create_dir_all(project.path().join(dir)).unwrap();
        }
        let default = project.path().join("experiments/../experiments/snapshots");
        assert_eq!(review_command(&default, project.path()), "cargo xtask snapshot review");
        let other = project.path().join("other dir/snapshots");
        assert_eq!(
            review_command(&other, project.path()),
            format!("cargo xtask snapshot --dir '{}' review", other.display())
        );
    }

    /// The files under `dir`, relative to it, sorted.
    fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(&next).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        files.sort();
        files
    }

    /// An output that matches its stored snapshot again leaves neither file of the
    /// pending one behind.
    #[test]
    fn discarding_a_pending_snapshot_removes_its_header_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { root: dir.path().to_owned() };
        let output = Output { name: "values".into(), shape: vec![2], data: OutputData::F64(vec![1.0, 2.0]) };
        store.save("a", "fast", &output, false).unwrap();
        let changed = Output { data: OutputData::F64(vec![1.0, 3.0]), ..output.clone() };
        store.save("a", "fast", &changed, true).unwrap();
        let stored = ["a/fast/values.bin", "a/fast/values.json"];
        assert_eq!(
            files_under(dir.path()),
            ["a/fast/values.bin", "a/fast/values.json", "a/fast/values.new.bin", "a/fast/values.new.json"]
        );
        store.discard_pending("a", "fast", "values").unwrap();
        assert_eq!(files_under(dir.path()), stored);
        // Nothing pending is no error.
        store.discard_pending("a", "fast", "values").unwrap();
        assert_eq!(store.load("a", "fast", "values").unwrap(), Some(output.data));
    }

    /// Data that no longer matches its header (a byte changed, elements missing, an
    /// unknown element type) is an error, never a snapshot to compare with.
    #[test]
    fn a_damaged_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { root: dir.path().to_owned() };
        let output = Output { name: "values".into(), shape: vec![3], data: OutputData::I64(vec![1, 2, 3]) };
        let header = store.save("a", "fast", &output, false).unwrap();
        let data = header.with_extension("bin");
        let bytes = std::fs::read(&data).unwrap();
        let error = |store: &Store| format!("{:#}", store.load("a", "fast", "values").unwrap_err());
        let mut flipped = bytes.clone();
        flipped[8] ^= 1;
        std::fs::write(&data, &flipped).unwrap();
        assert!(error(&store).ends_with("values.bin does not match the digest in its header"), "{}", error(&store));
        // The header's digest of two elements: the data is consistent with it but not
        // with its length.
        let text = std::fs::read_to_string(&header).unwrap();
        let two = &bytes[..16];
        let rewritten = text.replace(&crate::spec::fnv1a_hex(&bytes), &crate::spec::fnv1a_hex(two));
        std::fs::write(&header, &rewritten).unwrap();
        std::fs::write(&data, two).unwrap();
        assert!(error(&store).ends_with("values.bin holds 2 elements, its header says 3"), "{}", error(&store));
        std::fs::write(&header, rewritten.replace("\"i64\"", "\"u8\"")).unwrap();
        assert!(error(&store).ends_with("values.json: unknown element type `u8`"), "{}", error(&store));
    }

    /// Snapshots live beside the spec, per experiment and per profile: a profile's
    /// smaller sizes never compare with the default's outputs.
    #[test]
    fn each_profile_has_its_own_snapshots() {
        let text = "[experiment]\nname = \"demo\"\nseed = 1\n\n[[phase]]\nid = \"a\"\n\n[[phase.workload]]\nid = \"fast\"\nkernel = \"mock\"\n\n[profile.ci]\n\"defaults.repeats\" = 2\n";
        let root = |file: &str, profile: Option<&str>| {
            let overrides = crate::spec::Overrides { profile: profile.map(str::to_owned), ..Default::default() };
            let spec = crate::spec::load_str(std::path::Path::new(file), text, &overrides).unwrap();
            Store::for_spec(&spec).root
        };
        let path = std::path::PathBuf::from;
        assert_eq!(root("experiments/demo.toml", None), path("experiments/snapshots/demo/default"));
        assert_eq!(root("experiments/demo.toml", Some("ci")), path("experiments/snapshots/demo/ci"));
        assert_eq!(root("demo.toml", Some("ci")), path("./snapshots/demo/ci"));
    }
}
