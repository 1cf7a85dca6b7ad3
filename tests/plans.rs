//! Committed living plans are up to date with the committed reports: regenerating
//! them changes nothing (`cargo xtask plan --all` regenerates them). A report that
//! cannot be read is an error, not a missing report.

use std::path::Path;

#[test]
fn committed_plans_match_committed_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for plan in phasegate::living::all_plans(root) {
        if phasegate::living::update_file(root, &plan, true).unwrap() {
            stale.push(plan.display().to_string());
        }
    }
    assert!(stale.is_empty(), "plans out of date with the reports: {stale:?}; run `cargo xtask plan --all`");
}

#[test]
fn an_unreadable_report_is_an_error_not_a_missing_one() {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    let run = root.join("reports/demo/2026-01-01T000000Z-host");
    std::fs::create_dir_all(run.join("a")).unwrap();
    std::fs::write(run.join("a/report.json"), "{ \"schema_version\": 2, \"runs\": [null] }").unwrap();
    std::os::unix::fs::symlink("2026-01-01T000000Z-host", root.join("reports/demo/latest")).unwrap();
    let plan = root.join("plan.md");
    let text = "<!-- phasegate:begin demo/a -->\nresults\n<!-- phasegate:end -->\n";
    std::fs::write(&plan, text).unwrap();
    let error = phasegate::living::update_file(root, &plan, false).unwrap_err();
    assert!(format!("{error:#}").contains("cannot parse"), "{error:#}");
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), text, "the region keeps its results");
}
