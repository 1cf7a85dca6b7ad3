//! Config layering: built-in defaults < spec file < profile < environment < `--set`,
//! and the recorded source of every value.

use phasegate::spec::{Overrides, Settings};

use crate::support::{BASE, load, load_with};

fn source_of<'a>(spec: &'a phasegate::spec::Spec, workload: &str, key: &str) -> (&'a str, &'a str) {
    let workload = spec.phases[0].workloads.iter().find(|candidate| candidate.id == workload).unwrap();
    let source = workload.setting_sources.iter().find(|source| source.key == key).unwrap();
    (source.value.as_str(), source.origin.as_str())
}

#[test]
fn builtin_defaults_apply_when_nothing_overrides() {
    let spec = load(BASE).unwrap();
    let builtin = Settings::builtin();
    let slow = &spec.phases[0].workloads[0];
    assert_eq!(slow.settings.warmup, builtin.warmup);
    assert_eq!(slow.settings.threads, builtin.threads);
    assert_eq!(slow.settings.repeats, 5, "the spec file sets repeats");
    assert_eq!(source_of(&spec, "slow", "warmup"), ("1", "built-in default"));
    assert_eq!(source_of(&spec, "slow", "repeats"), ("5", "spec file"));
}

#[test]
fn each_layer_overrides_the_one_below() {
    let text = format!("{BASE}\n[profile.ci]\n\"defaults.repeats\" = 3\n\"defaults.warmup\" = 0\n");
    let env = vec![
        ("PHASEGATE_DEFAULTS__REPEATS".to_owned(), "7".to_owned()),
        ("PHASEGATE_DEFAULTS__TIMEOUT".to_owned(), "9.5".to_owned()),
        ("UNRELATED".to_owned(), "1".to_owned()),
    ];
    let overrides = Overrides {
        env,
        sets: vec!["defaults.repeats=11".into(), "phase.a.workload.fast.params.time_ms=0.5".into()],
        profile: Some("ci".into()),
    };
    let spec = load_with(&text, &overrides).unwrap();
    assert_eq!(source_of(&spec, "slow", "repeats"), ("11", "--set defaults.repeats=11"));
    assert_eq!(source_of(&spec, "slow", "timeout"), ("9.5", "environment variable PHASEGATE_DEFAULTS__TIMEOUT"));
    assert_eq!(source_of(&spec, "slow", "warmup"), ("0", "profile `ci`"));
    let fast = &spec.phases[0].workloads[1];
    assert_eq!(
        fast.params.iter().find(|(name, _)| name == "time_ms").unwrap().1,
        vec![phasegate::kernel::Value::Float(0.5)]
    );
    let overridden: Vec<(String, String)> =
        spec.overrides().map(|source| (source.key.clone(), source.origin.clone())).collect();
    assert!(overridden.contains(&(
        "phase.a.workload.fast.params.time_ms".into(),
        "--set phase.a.workload.fast.params.time_ms=0.5".into()
    )));
    assert!(
        overridden.contains(&("defaults.timeout".into(), "environment variable PHASEGATE_DEFAULTS__TIMEOUT".into()))
    );
}

#[test]
fn environment_beats_profile_and_file() {
    let text = format!("{BASE}\n[profile.ci]\n\"defaults.repeats\" = 3\n");
    let overrides = Overrides {
        env: vec![("PHASEGATE_DEFAULTS__REPEATS".to_owned(), "4".to_owned())],
        sets: Vec::new(),
        profile: Some("ci".into()),
    };
    let spec = load_with(&text, &overrides).unwrap();
    assert_eq!(source_of(&spec, "slow", "repeats"), ("4", "environment variable PHASEGATE_DEFAULTS__REPEATS"));
}

#[test]
fn workload_and_phase_overrides_beat_defaults() {
    let text = BASE
        .replace("title = \"Phase A\"", "title = \"Phase A\"\n[phase.defaults]\nwarmup = 2")
        .replace("id = \"fast\"", "id = \"fast\"\nrepeats = 9");
    let spec = load(&text).unwrap();
    assert_eq!(source_of(&spec, "fast", "repeats"), ("9", "spec file"));
    assert_eq!(spec.phases[0].workloads[1].settings.repeats, 9);
    assert_eq!(spec.phases[0].workloads[0].settings.repeats, 5);
    assert_eq!(spec.phases[0].workloads[0].settings.warmup, 2);
}

#[test]
fn overrides_naming_unknown_things_are_errors() {
    let overrides = |set: &str| Overrides { sets: vec![set.to_owned()], ..Overrides::default() };
    let error = load_with(BASE, &overrides("phase.b.repeats=3")).unwrap_err().to_string();
    assert!(error.contains("`--set phase.b.repeats=3`: no phase with id `b`"), "{error}");
    let error = load_with(BASE, &overrides("phase.a.workload.fsat.repeats=3")).unwrap_err().to_string();
    assert!(error.contains("no workload with id `fsat` (did you mean `fast`?)"), "{error}");
    let error = load_with(BASE, &overrides("defaults.repeets=3")).unwrap_err().to_string();
    assert!(error.contains("unknown key `repeets`") && error.contains("--set defaults.repeets=3"), "{error}");
    let error = load_with(BASE, &overrides("no-equals-sign")).unwrap_err().to_string();
    assert!(error.contains("is not of the form key.path=value"), "{error}");
    let env = Overrides { env: vec![("PHASEGATE_DEFAULTS__WARMUP".into(), "-1".into())], ..Overrides::default() };
    let error = load_with(BASE, &env).unwrap_err().to_string();
    assert!(error.contains("defaults.warmup"), "{error}");
    let profile = Overrides { profile: Some("nightly".into()), ..Overrides::default() };
    let error = load_with(BASE, &profile).unwrap_err().to_string();
    assert!(error.contains("unknown profile `nightly`"), "{error}");
    // Inline tables and profile tables name paths too.
    let error = load_with(BASE, &overrides("phase={b={title=\"x\"}}")).unwrap_err().to_string();
    assert!(error.contains("no phase with id `b`"), "{error}");
    let error = load_with(BASE, &overrides("phase.a.check={speed={rationale=\"x\"}}")).unwrap_err().to_string();
    assert!(error.contains("no check with id `speed`"), "{error}");
    let env = Overrides { env: vec![("PHASEGATE_PHASE".into(), "{b={title=\"x\"}}".into())], ..Overrides::default() };
    let error = load_with(BASE, &env).unwrap_err().to_string();
    assert!(error.contains("environment variable PHASEGATE_PHASE: no phase with id `b`"), "{error}");
    let text = format!("{BASE}\n[profile.ci]\nphase.b.title = \"ghost\"\n");
    let error = load_with(&text, &Overrides { profile: Some("ci".into()), ..Overrides::default() }).unwrap_err();
    assert!(error.to_string().contains("no phase with id `b`"), "{error}");
    // An inline table that names existing things sets its leaves.
    let spec = load_with(BASE, &overrides("phase.a.workload.fast.params={time_ms=0.5}")).unwrap();
    assert_eq!(spec.phases[0].workloads[1].params[0].1, [phasegate::kernel::Value::Float(0.5)]);
}

#[test]
fn errors_about_overridden_values_name_the_override() {
    let overrides = |set: &str| Overrides { sets: vec![set.to_owned()], ..Overrides::default() };
    let error = load_with(BASE, &overrides("defaults.repeats=0")).unwrap_err().to_string();
    assert!(
        error.starts_with("error: `defaults.repeats`: must be at least 1 (from --set defaults.repeats=0)"),
        "{error}"
    );
    let error = load_with(BASE, &overrides("phase.a.workload.fast.params.time_ms=-1")).unwrap_err().to_string();
    assert!(error.contains("(from --set phase.a.workload.fast.params.time_ms=-1)"), "{error}");
    // Not the file's line, which holds another value.
    assert!(!error.contains("time_ms = 1.0"), "{error}");
    // Unknown values of a choice, alone or in a list, from either layer.
    let error = load_with(BASE, &overrides("phase.a.workload.slow.order=\"random\"")).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "error: `phase.a.workload.slow.order`: unknown value `random` (from --set \
             phase.a.workload.slow.order=\"random\")"
        ),
        "{error}"
    );
    assert!(!error.contains("id = \"slow\""), "{error}");
    let error = load_with(BASE, &overrides("defaults.modes=[\"hot\"]")).unwrap_err().to_string();
    assert!(error.contains("unknown value `hot` (from --set defaults.modes=[\"hot\"])"), "{error}");
    let env = Overrides { env: vec![("PHASEGATE_DEFAULTS__ORDER".into(), "rnd".into())], ..Overrides::default() };
    let error = load_with(BASE, &env).unwrap_err().to_string();
    assert!(error.contains("unknown value `rnd` (from environment variable PHASEGATE_DEFAULTS__ORDER)"), "{error}");
    // A phase cycle an override closes names it, and lists only the phases in the cycle.
    let phases = format!(
        "{BASE}\n[[phase]]\nid = \"b\"\nneeds = [\"c\"]\n[[phase.workload]]\nid = \"w\"\nkernel = \"mock\"\n\n\
         [[phase]]\nid = \"c\"\n[[phase.workload]]\nid = \"w\"\nkernel = \"mock\"\n"
    );
    let error = plan_error(&phases, &overrides("phase.c.needs=[\"b\"]"));
    assert!(
        error.starts_with("error: phases b, c need each other in a cycle (from --set phase.c.needs=[\"b\"])"),
        "{error}"
    );
    let error =
        plan_error(&phases.replace("id = \"a\"", "id = \"a\"\nneeds = [\"b\"]"), &overrides("phase.c.needs=[\"b\"]"));
    assert!(error.starts_with("error: phases b, c need each other"), "`a` needs the cycle, is not in it: {error}");
    // A kernel's complaint about a parameter an override added names the override.
    let command = BASE.replace(
        "kernel = \"mock\"\nreference = \"slow\"\n[phase.workload.params]\ntime_ms = 1.0\njitter = 0.05",
        "kernel = \"command\"\n[phase.workload.params]\nprogram = \"true\"",
    );
    let error = plan_error(&command, &overrides("phase.a.workload.fast.params.typo=5"));
    assert!(error.contains("parameter `typo` is not used by the command"), "{error}");
    assert!(error.contains("(from --set phase.a.workload.fast.params.typo=5)"), "{error}");
    // So does a check on a mode an override took away.
    let check = format!("{BASE}\n[[phase.check]]\nid = \"c\"\nexpr = \"fast.warm.median < 1\"\nrationale = \"r\"\n");
    let error = plan_error(&check, &overrides("defaults.modes=[\"cold\"]"));
    assert!(
        error.contains("workload `fast` does not run in warm mode (modes: cold, from --set defaults.modes=[\"cold\"])"),
        "{error}"
    );
}

/// The rendered error of `text` under `overrides`, which must not load or expand.
fn plan_error(text: &str, overrides: &Overrides) -> String {
    let spec = match load_with(text, overrides) {
        Ok(spec) => spec,
        Err(error) => return error.to_string(),
    };
    match phasegate::plan::expand(spec, phasegate::plan::Selection::default(), &|_| false) {
        Ok(_) => panic!("the spec was accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn environment_variables_take_the_case_the_file_gives_a_key() {
    let text = BASE.replace(
        "kernel = \"mock\"\nreference = \"slow\"\n[phase.workload.params]\ntime_ms = 1.0\njitter = 0.05",
        "kernel = \"command\"\n[phase.workload.params]\nprogram = \"echo\"\nargs = [\"{N}\", \"{n}\"]\nN = 4\nn = 1",
    );
    let env = |name: &str, value: &str| Overrides { env: vec![(name.into(), value.into())], ..Overrides::default() };
    let param = |spec: &phasegate::spec::Spec, name: &str| {
        let params = &spec.phases[0].workloads[1].params;
        params.iter().find(|(param, _)| param == name).map(|(_, values)| values[0].clone())
    };
    // Written two ways in the file, the name reaches the lower-case one.
    let spec = load_with(&text, &env("PHASEGATE_PHASE__A__WORKLOAD__FAST__PARAMS__N", "5")).unwrap();
    assert_eq!(param(&spec, "n"), Some(phasegate::kernel::Value::Int(5)));
    assert_eq!(param(&spec, "N"), Some(phasegate::kernel::Value::Int(4)));
    // Written one way, upper-case, the name reaches it.
    let upper = text.replace(", \"{n}\"", "").replace("\nn = 1", "");
    let spec = load_with(&upper, &env("PHASEGATE_PHASE__A__WORKLOAD__FAST__PARAMS__N", "5")).unwrap();
    assert_eq!(param(&spec, "N"), Some(phasegate::kernel::Value::Int(5)));
    assert_eq!(param(&spec, "n"), None);
    let origin = &spec.sources.iter().find(|source| source.key.ends_with(".N")).unwrap().origin;
    assert_eq!(origin, "environment variable PHASEGATE_PHASE__A__WORKLOAD__FAST__PARAMS__N");
    // A key the selected profile adds is spelled as the profile writes it.
    let profiled =
        upper.replace("[\"{N}\"]", "[\"{N}\", \"{M}\"]") + "\n[profile.x]\n\"phase.a.workload.fast.params.M\" = 2\n";
    let overrides = Overrides {
        profile: Some("x".into()),
        env: vec![("PHASEGATE_PHASE__A__WORKLOAD__FAST__PARAMS__M".into(), "7".into())],
        ..Overrides::default()
    };
    let spec = load_with(&profiled, &overrides).unwrap();
    assert_eq!(param(&spec, "M"), Some(phasegate::kernel::Value::Int(7)));
}

#[test]
fn overrides_of_baseline_and_calibration_are_sources() {
    let overrides = Overrides {
        sets: vec!["baseline.tolerance=0.2".into(), "calibration.mode=\"warn\"".into()],
        ..Overrides::default()
    };
    let spec = load_with(BASE, &overrides).unwrap();
    let keys: Vec<&str> = spec.overrides().map(|source| source.key.as_str()).collect();
    assert_eq!(keys, ["baseline.tolerance", "calibration.mode"]);
}

#[test]
fn the_profile_beats_the_file_and_a_later_set_beats_an_earlier_one() {
    // The file sets repeats = 5 and the profile 3; nothing above them touches it.
    let text = format!("{BASE}\n[profile.ci]\n\"defaults.repeats\" = 3\n");
    let profile = Overrides { profile: Some("ci".into()), ..Overrides::default() };
    let spec = load_with(&text, &profile).unwrap();
    assert_eq!(source_of(&spec, "slow", "repeats"), ("3", "profile `ci`"));
    assert_eq!(spec.phases[0].workloads[0].settings.repeats, 3);
    // `--set` applies in the order given: the last assignment of a key wins.
    let sets = Overrides { sets: vec!["defaults.repeats=7".into(), "defaults.repeats=2".into()], ..profile };
    let spec = load_with(&text, &sets).unwrap();
    assert_eq!(source_of(&spec, "slow", "repeats"), ("2", "--set defaults.repeats=2"));
    assert_eq!(spec.phases[0].workloads[0].settings.repeats, 2);
}

#[test]
fn a_workload_setting_beats_its_phase_defaults_from_any_layer() {
    let text = BASE
        .replace("title = \"Phase A\"", "title = \"Phase A\"\n[phase.defaults]\nrepeats = 4")
        .replace("id = \"fast\"", "id = \"fast\"\nrepeats = 9");
    let spec = load(&text).unwrap();
    assert_eq!(source_of(&spec, "slow", "repeats"), ("4", "spec file"));
    assert_eq!(source_of(&spec, "fast", "repeats"), ("9", "spec file"));
    assert_eq!(spec.phases[0].workloads[1].settings.repeats, 9);
    // The workload's own value comes from `--set` here: its source says so, though the
    // phase's defaults still come from the file.
    let overrides = Overrides { sets: vec!["phase.a.workload.fast.repeats=6".into()], ..Overrides::default() };
    let spec = load_with(&text, &overrides).unwrap();
    assert_eq!(source_of(&spec, "fast", "repeats"), ("6", "--set phase.a.workload.fast.repeats=6"));
    assert_eq!(source_of(&spec, "slow", "repeats"), ("4", "spec file"));
}

/// An override of a default that every workload it reaches sets more specifically
/// changes no run, and loading says so; one that some workload takes does not warn,
/// and neither do the file's own defaults.
#[test]
fn overrides_of_defaults_no_workload_takes_are_warned_about() {
    let sets =
        |sets: &[&str]| Overrides { sets: sets.iter().map(|set| (*set).to_owned()).collect(), ..Overrides::default() };
    let both_own = BASE
        .replace("id = \"slow\"", "id = \"slow\"\nrepeats = 4")
        .replace("id = \"fast\"", "id = \"fast\"\nrepeats = 9");
    let spec = load_with(&both_own, &sets(&["defaults.repeats=3"])).unwrap();
    assert_eq!(
        spec.warnings,
        ["`defaults.repeats` (from --set defaults.repeats=3) changes no run: every workload it reaches takes \
          `repeats` from a more specific place, such as `phase.a.workload.slow.repeats`"]
    );
    // The file's own shadowed default is the author's choice, not a surprise.
    assert_eq!(load(&both_own).unwrap().warnings, Vec::<String>::new());
    // One workload taking the default is enough.
    let one_own = BASE.replace("id = \"fast\"", "id = \"fast\"\nrepeats = 9");
    assert_eq!(load_with(&one_own, &sets(&["defaults.repeats=3"])).unwrap().warnings, Vec::<String>::new());
    // A phase's defaults shadow the global ones for the workloads of that phase.
    let phase_defaults = BASE.replace("title = \"Phase A\"", "title = \"Phase A\"\n[phase.defaults]\nwarmup = 2");
    let env =
        Overrides { env: vec![("PHASEGATE_DEFAULTS__WARMUP".to_owned(), "0".to_owned())], ..Overrides::default() };
    let warnings = load_with(&phase_defaults, &env).unwrap().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("`defaults.warmup` (from environment variable PHASEGATE_DEFAULTS__WARMUP)"));
    assert!(warnings[0].ends_with("such as `phase.a.defaults.warmup`"), "{}", warnings[0]);
    // An override of a phase's defaults is judged over that phase's workloads.
    let spec = load_with(&both_own, &sets(&["phase.a.defaults.repeats=2", "phase.a.defaults.warmup=0"])).unwrap();
    assert_eq!(spec.warnings.len(), 1, "{:?}", spec.warnings);
    assert!(spec.warnings[0].starts_with("`phase.a.defaults.repeats` (from --set phase.a.defaults.repeats=2)"));
}

/// Every override in the committed experiments' profiles changes some run.
#[test]
fn the_experiments_profiles_override_only_what_runs_take() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut specs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 5, "{specs:?}");
    for path in specs {
        let profiles = phasegate::spec::load(&path, &Overrides::default()).unwrap().profiles;
        for profile in profiles {
            let overrides = Overrides { profile: Some(profile.clone()), ..Overrides::default() };
            let spec = phasegate::spec::load(&path, &overrides).unwrap();
            assert_eq!(spec.warnings, Vec::<String>::new(), "{} --profile {profile}", path.display());
        }
    }
}

/// An error about a table (a key missing from it, the output a parity check names, a
/// workload's parameters) stays at its line in the file whatever override set another
/// key inside the table; one about a value an override set names that override, and
/// so does one about a table that overrides brought in.
#[test]
fn errors_about_the_files_tables_keep_their_line() {
    let sets =
        |sets: &[&str]| Overrides { sets: sets.iter().map(|set| (*set).to_owned()).collect(), ..Overrides::default() };
    let located = |error: &str, message: &str, line: &str| {
        assert!(error.starts_with(&format!("error: {message}\n")), "{error}");
        assert!(error.contains(line), "at `{line}`: {error}");
        assert!(!error.contains("(from "), "{error}");
    };
    // A workload missing a required parameter, or its kernel, while `--set` changes its
    // repeats.
    let command = BASE.replace(
        "kernel = \"mock\"\nreference = \"slow\"\n[phase.workload.params]\ntime_ms = 1.0\njitter = 0.05",
        "kernel = \"command\"\n[phase.workload.params]\nargs = [\"x\"]",
    );
    let repeats = sets(&["phase.a.workload.fast.repeats=3"]);
    let error = plan_error(&command, &repeats);
    located(&error, "workload `fast` misses the required parameter `program`", "| id = \"fast\"");
    let error = plan_error(&command.replace("kernel = \"command\"\n", ""), &repeats);
    located(&error, "missing key `kernel` in `phase.a.workload.fast`", "| id = \"fast\"");
    // `[experiment]` missing its seed while an environment variable sets its title.
    let env = Overrides { env: vec![("PHASEGATE_EXPERIMENT__TITLE".into(), "t".into())], ..Overrides::default() };
    let error = plan_error(&BASE.replace("seed = 7\n", ""), &env);
    located(&error, "missing key `seed` in `experiment`", "| [experiment]");
    // A parity check's unknown output, while `--set` changes its tolerance, is shown at
    // the output; set by an override, the output names it, as a tolerance does.
    let parity = format!(
        "{BASE}\n[[phase.check]]\nid = \"same\"\nparity = {{ of = \"fast\", against = \"slow\", output = \"valuez\", max_abs = 1e-9 }}\nrationale = \"why\"\n"
    );
    let error = plan_error(&parity, &sets(&["phase.a.check.same.parity.max_abs=1e-6"]));
    located(&error, "workload `fast` (kernel `mock`) has no output `valuez`; outputs: values", "spec.toml:31:52");
    let valid = parity.replace("valuez", "values");
    let error = plan_error(&valid, &sets(&["phase.a.check.same.parity.output=\"valuez\""]));
    assert!(
        error.contains("has no output `valuez`; outputs: values (from --set phase.a.check.same.parity.output="),
        "{error}"
    );
    let error = plan_error(&valid, &sets(&["phase.a.check.same.parity.max_abs=-1"]));
    assert!(
        error.contains("must be finite and not negative (from --set phase.a.check.same.parity.max_abs=-1)"),
        "{error}"
    );
    // A matrix too large, while `--set` changes another parameter.
    let axes: String = (0..6).map(|axis| format!("\nx{axis} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")).collect();
    let sweep = format!(
        "{BASE}\n[[phase.workload]]\nid = \"sweep\"\nkernel = \"command\"\n[phase.workload.params]\nprogram = \"true\"{axes}\n"
    );
    let error = plan_error(&sweep, &sets(&["phase.a.workload.sweep.params.program=\"false\""]));
    assert!(error.contains("workload `sweep` expands to more than 100000 runs"), "{error}");
    assert!(error.contains("| [phase.workload.params]") && !error.contains("(from "), "{error}");
    // A parity table an override brought in, missing `against`, names the override.
    let check =
        format!("{BASE}\n[[phase.check]]\nid = \"same\"\nexpr = \"fast.warm.median <= 1\"\nrationale = \"why\"\n");
    let set = "phase.a.check.same.parity={of=\"fast\", output=\"values\", exact=true}";
    let error = plan_error(&check, &sets(&[set]));
    assert!(
        error.starts_with(&format!("error: parity needs `against`, the workload to compare with (from --set {set})"))
    );
    // So does a workload's parameter table that an override brought in, when the plan
    // finds two of its runs named alike.
    let bare = format!("{BASE}\n[[phase.workload]]\nid = \"bare\"\nkernel = \"command\"\n");
    let set = "phase.a.workload.bare.params={program=\"true\", args=[\"{s}\", \"{x}\"], s=[\"p,x=q\", \"p\"], x=[\"q,x=r\", \"r\"]}";
    let error = plan_error(&bare, &sets(&[set]));
    assert!(error.contains("two runs of workload `bare` are both named"), "{error}");
    assert!(error.contains(&format!("(from --set {set})")), "{error}");
}

/// Every profile is checked when the spec loads, selected or not, as if it were
/// selected: a broken one fails `check` before anyone selects it, naming the profile
/// and pointing at its line, as an error about a value a selected profile set does.
#[test]
fn every_profile_is_checked_at_its_line() {
    let profile = |body: &str| format!("{BASE}\n[profile.ci]\n\"defaults.warmup\" = 0\n{body}\n");
    let with_ci = Overrides { profile: Some("ci".into()), ..Overrides::default() };
    let errors = |text: &str| {
        let unselected = load(text).unwrap_err().to_string();
        let selected = load_with(text, &with_ci).unwrap_err().to_string();
        (unselected, selected)
    };
    // A phase that does not exist.
    let (unselected, selected) = errors(&profile("\"phase.zz.defaults.repeats\" = 3"));
    for error in [&unselected, &selected] {
        assert!(error.starts_with("error: profile `ci`: no phase with id `zz` (did you mean `a`?)\n"), "{error}");
        assert!(error.contains("| \"phase.zz.defaults.repeats\" = 3"), "{error}");
    }
    // A misspelt key.
    let (unselected, selected) = errors(&profile("\"defaults.repeat\" = 2"));
    for error in [&unselected, &selected] {
        assert!(error.starts_with("error: unknown key `repeat` in `defaults` (from profile `ci`)\n"), "{error}");
        assert!(error.contains("| \"defaults.repeat\" = 2") && error.contains("did you mean `repeats`?"), "{error}");
    }
    // A value out of range, at its value, whether the profile writes its path quoted or
    // as dotted keys.
    let (unselected, selected) = errors(&profile("\"defaults.repeats\" = 0"));
    for error in [&unselected, &selected] {
        assert!(error.starts_with("error: `defaults.repeats`: must be at least 1 (from profile `ci`)\n"), "{error}");
        assert!(error.contains("| \"defaults.repeats\" = 0"), "{error}");
    }
    let (unselected, selected) = errors(&profile("phase.a.workload.fast.params.time_ms = -1.0"));
    for error in [&unselected, &selected] {
        assert!(error.contains("(from profile `ci`)"), "{error}");
        assert!(error.contains("| phase.a.workload.fast.params.time_ms = -1.0\n"), "{error}");
        assert!(error.contains("spec.toml:31:40"), "at the value: {error}");
    }
    // A check a profile breaks names the profile though the error is the check's.
    let check = format!("{BASE}\n[[phase.check]]\nid = \"c\"\nexpr = \"fast.warm.median < 1\"\nrationale = \"r\"\n");
    let text = format!("{check}\n[profile.cold]\n\"defaults.modes\" = [\"cold\"]\n");
    let error = load(&text).unwrap_err().to_string();
    assert!(error.contains("does not run in warm mode (modes: cold, from profile `cold`)"), "{error}");
    // A sound profile is checked, but applies only when selected.
    let spec = load(&profile("")).unwrap();
    assert_eq!(spec.phases[0].workloads[0].settings.warmup, 1);
    assert_eq!(load_with(&profile(""), &with_ci).unwrap().phases[0].workloads[0].settings.warmup, 0);
}
