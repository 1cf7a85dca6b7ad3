//! Committed generated text stays current: the kernels section of `docs/spec.md` is
//! generated from the kernel registry. `UPDATE_DOCS=1 cargo test --test tests docs`
//! regenerates it.

use std::path::Path;

/// Checks that `path` holds `expected` between the two markers, or rewrites it when
/// `UPDATE_DOCS` is set.
fn ensure_region(path: &Path, begin: &str, end: &str, expected: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find(begin).unwrap_or_else(|| panic!("{} lacks {begin}", path.display())) + begin.len();
    let stop = text[start..].find(end).unwrap_or_else(|| panic!("{} lacks {end}", path.display())) + start;
    let current = &text[start..stop];
    let wanted = format!("\n{}\n", expected.trim());
    if current == wanted {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{wanted}{}", &text[..start], &text[stop..]);
        phasegate::report::files::write_atomic(path, updated.as_bytes()).unwrap();
        return;
    }
    panic!("{} is out of date; run `UPDATE_DOCS=1 cargo test --test tests docs` to regenerate it", path.display());
}

#[test]
fn spec_reference_lists_every_kernel() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec.md");
    ensure_region(&path, "<!-- kernels:begin -->", "<!-- kernels:end -->", &phasegate::kernels::describe_markdown());
}

#[test]
fn spec_reference_example_is_valid() {
    // The complete example in the reference must load and expand, as written and under
    // each of its profiles, without a warning.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("```toml\n").unwrap() + "```toml\n".len();
    let end = text[start..].find("```").unwrap() + start;
    let example = &text[start..end];
    let profiles = crate::support::load(example).unwrap_or_else(|error| panic!("{error}")).profiles;
    assert_eq!(profiles, ["ci"]);
    for profile in [None].into_iter().chain(profiles.into_iter().map(Some)) {
        let overrides = phasegate::spec::Overrides { profile: profile.clone(), ..Default::default() };
        let spec =
            crate::support::load_with(example, &overrides).unwrap_or_else(|error| panic!("{profile:?}: {error}"));
        assert_eq!(spec.warnings, Vec::<String>::new(), "{profile:?}");
        phasegate::plan::expand(spec, phasegate::plan::Selection::default(), &|_| false)
            .unwrap_or_else(|error| panic!("{profile:?}: {error}"));
    }
}
