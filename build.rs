//! Records how the library was built, for the environment section of every report:
//! compiler version, target, profile name and optimization level, and the versions of
//! the main dependencies from `Cargo.lock`.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .unwrap_or_default();
    let release = version.lines().next().unwrap_or("unknown").to_owned();
    println!("cargo:rustc-env=BUILD_INFO_RUSTC={release}");
    println!("cargo:rustc-env=BUILD_INFO_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=BUILD_INFO_OPT_LEVEL={}", std::env::var("OPT_LEVEL").unwrap_or_default());
    // Cargo only tells build scripts "debug" or "release"; the real profile name is the
    // directory above `build/` in OUT_DIR (`target/measure/build/...`).
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let parts: Vec<&str> = out_dir.split(std::path::MAIN_SEPARATOR).collect();
    let profile = parts
        .iter()
        .rposition(|part| *part == "build")
        .and_then(|index| index.checked_sub(1))
        .map_or("unknown", |index| parts[index]);
    println!("cargo:rustc-env=BUILD_INFO_PROFILE={profile}");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let wanted = ["figment", "memmap2", "ndarray", "rand", "rand_chacha", "rayon", "serde", "toml"];
    let mut versions = Vec::new();
    let mut name = "";
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = value.trim_matches('"');
        } else if let Some(value) = line.strip_prefix("version = ")
            && wanted.contains(&name)
        {
            versions.push(format!("{name}={}", value.trim_matches('"')));
        }
    }
    println!("cargo:rustc-env=BUILD_INFO_CRATE_VERSIONS={}", versions.join(","));
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
}
