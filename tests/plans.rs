//! Committed living plans are up to date with the committed reports: regenerating
//! them changes nothing (`cargo xtask plan --all` regenerates them).

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
