//! Tidiness rules of the code base: every Rust file starts with a module doc, and only
//! the clock module reads clocks.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

fn project_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "xtask/src", "xtask/tests"] {
        if root.join(dir).is_dir() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    files.push(root.join("build.rs"));
    files.sort();
    files
}

#[test]
fn every_file_has_a_module_doc() {
    let missing: Vec<String> = project_files()
        .into_iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().trim_start().starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` module doc: {missing:?}");
}

#[test]
fn only_the_clock_module_reads_clocks() {
    let forbidden = ["Instant::now", "SystemTime::now"];
    let offenders: Vec<String> = project_files()
        .into_iter()
        .filter(|path| !path.ends_with("src/clock.rs") && !path.ends_with("tests/tidy.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            forbidden.iter().any(|pattern| text.contains(pattern))
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "clock reads outside src/clock.rs: {offenders:?}");
}
