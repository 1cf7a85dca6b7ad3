//! The environment a run happened in: source revision, build, machine.
//!
//! Every report carries it (`env.json` in full, a summary in each phase report), and
//! baselines compare the [`Fingerprint`] of two environments before trusting a
//! comparison between them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub phasegate_version: String,
    pub git_sha: Option<String>,
    /// Whether tracked files had uncommitted changes, apart from `reports/` and `plans/`
    /// (what runs themselves write).
    pub git_dirty: Option<bool>,
    pub rustc: String,
    pub target: String,
    /// The cargo profile the harness was built with (`measure` for `cargo xtask`).
    pub build_profile: String,
    pub opt_level: String,
    pub debug_assertions: bool,
    pub cpu_model: String,
    pub cpu_features: Vec<String>,
    /// Logical CPUs available to this process.
    pub cores: usize,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub hostname: String,
    pub crate_versions: BTreeMap<String, String>,
}

/// What must be equal for two runs' figures to be comparable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub cpu_model: String,
    pub cores: usize,
    pub build_profile: String,
    pub debug_assertions: bool,
    pub rustc: String,
}

impl Environment {
    /// Probes the machine; `project_root` is where git is asked about the revision.
    pub fn probe(project_root: &Path) -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        };
        let cpu_model =
            field("model name").or_else(|| field("Model")).unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let mut cpu_features: Vec<String> = field("flags")
            .or_else(|| field("Features"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        cpu_features.sort();
        cpu_features.dedup();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os = os_release
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map(|name| name.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(project_root)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let git_sha = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_sha
            .as_ref()
            .and_then(|_| {
                git(&[
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ":(top,exclude)reports",
                    ":(top,exclude)plans",
                ])
            })
            .map(|status| !status.is_empty());
        let crate_versions = env!("BUILD_INFO_CRATE_VERSIONS")
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, version)| (name.to_owned(), version.to_owned()))
            .collect();
        Environment {
            phasegate_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_sha,
            git_dirty,
            rustc: env!("BUILD_INFO_RUSTC").to_owned(),
            target: env!("BUILD_INFO_TARGET").to_owned(),
            build_profile: env!("BUILD_INFO_PROFILE").to_owned(),
            opt_level: env!("BUILD_INFO_OPT_LEVEL").to_owned(),
            debug_assertions: cfg!(debug_assertions),
            cpu_model,
            cpu_features,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: meminfo_bytes("MemTotal:"),
            memory_available_bytes: meminfo_bytes("MemAvailable:"),
            os,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            hostname: hostname(),
            crate_versions,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            cpu_model: self.cpu_model.clone(),
            cores: self.cores,
            build_profile: self.build_profile.clone(),
            debug_assertions: self.debug_assertions,
            rustc: self.rustc.clone(),
        }
    }

    /// A short name of the revision: `abc1234`, `abc1234-dirty` or `unknown`.
    pub fn revision(&self) -> String {
        match (&self.git_sha, self.git_dirty) {
            (Some(sha), Some(true)) => format!("{}-dirty", &sha[..sha.len().min(12)]),
            (Some(sha), _) => sha[..sha.len().min(12)].to_owned(),
            _ => "unknown".to_owned(),
        }
    }
}

/// Whether this code was compiled optimized: opt-level 2 or 3 without debug
/// assertions. Timings of other builds are not measurements.
pub fn optimized_build() -> bool {
    matches!(env!("BUILD_INFO_OPT_LEVEL"), "2" | "3") && !cfg!(debug_assertions)
}

/// A `/proc/meminfo` field (`MemTotal:`, `MemAvailable:`) in bytes; 0 when unknown.
pub fn meminfo_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The host name, reduced to characters safe in a directory name.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "host".to_owned());
    let cleaned: String =
        raw.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if cleaned.is_empty() { "host".to_owned() } else { cleaned }
}

/// Free bytes on the file system holding `path` (0 when unknown).
pub fn free_disk_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: `statvfs` is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out pointer.
    let status = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if status != 0 {
        return 0;
    }
    stat.f_bavail as u64 * stat.f_frsize as u64
}
