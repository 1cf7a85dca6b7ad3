//! Every kind of bad spec gets one clear error pointing at its line: a data-driven
//! table of broken specs and their rendered errors.

use crate::support::{BASE, expand, load, spec_error};
use phasegate::spec::Overrides;

/// `BASE` with `old` replaced by `new` (which must occur).
fn edit(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "`{old}` is not in the base spec");
    BASE.replacen(old, new, 1)
}

#[test]
fn malformed_toml_points_at_line_and_column() {
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeats = = 5")), @"
    error: invalid TOML: extra `=`, expected nothing
     --> spec.toml:8:11
      |
    8 | repeats = = 5
      |           ^
    ");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeat = 5")), @"
    error: unknown key `repeat` in `defaults`
     --> spec.toml:8:1
      |
    8 | repeat = 5
      | ^^^^^^
      = help: did you mean `repeats`?
    ");
}

#[test]
fn unknown_top_level_table() {
    insta::assert_snapshot!(spec_error(&format!("{BASE}\n[defualts]\nwarmup = 1\n")), @"
    error: unknown key `defualts` in the top level
      --> spec.toml:29:2
       |
    29 | [defualts]
       |  ^^^^^^^^
       = help: did you mean `defaults`?
    ");
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeats = \"five\"")), @r#"
    error: `defaults.repeats` has the wrong type: found string "five", expected a whole number in 0..=4294967295
     --> spec.toml:8:11
      |
    8 | repeats = "five"
      |           ^^^^^^
    "#);
}

#[test]
fn missing_required_key() {
    insta::assert_snapshot!(spec_error(&edit("seed = 7\n", "")), @r"
    error: missing key `seed` in `experiment`
     --> spec.toml:2:2
      |
    2 | [experiment]
      |  ^^^^^^^^^^
    ");
}

#[test]
fn empty_untimed_reason() {
    insta::assert_snapshot!(spec_error(&edit("seed = 7", "seed = 7\nuntimed = \" \"")), @r#"
    error: `experiment.untimed` is empty
     --> spec.toml:6:11
      |
    6 | untimed = " "
      |           ^^^
      = help: give the reason the sizes cannot be timed, or leave the key out
    "#);
}

#[test]
fn unknown_kernel() {
    insta::assert_snapshot!(spec_error(&edit("kernel = \"mock\"", "kernel = \"mok\"")), @r#"
    error: unknown kernel `mok`
      --> spec.toml:16:10
       |
    16 | kernel = "mok"
       |          ^^^^^
       = help: did you mean `mock`? kernels: command, io, mock, simulator, tree
    "#);
}

#[test]
fn unknown_parameter_names_the_valid_ones() {
    insta::assert_snapshot!(spec_error(&edit("time_ms = 4.0", "time_sm = 4.0")), @"
    error: unknown parameter `time_sm` for kernel `mock`
      --> spec.toml:18:1
       |
    18 | time_sm = 4.0
       | ^^^^^^^
       = help: did you mean `time_ms`? valid parameters: time_ms, jitter, slowdown, setup_ms, first_ms, spin, work, fail_at, size, perturb
    ");
}

#[test]
fn negative_size_is_out_of_range() {
    insta::assert_snapshot!(spec_error(&edit("time_ms = 4.0", "time_ms = 4.0\nsize = [16, -3]")), @r"
    error: parameter `size`: -3 is out of range: expected an integer in 1..=1099511627776
      --> spec.toml:19:8
       |
    19 | size = [16, -3]
       |        ^^^^^^^^
    ");
}

#[test]
fn empty_matrix_axis() {
    insta::assert_snapshot!(spec_error(&edit("time_ms = 4.0", "time_ms = 4.0\nsize = []")), @r"
    error: parameter `size` has an empty list: the matrix would be empty
      --> spec.toml:19:8
       |
    19 | size = []
       |        ^^
    ");
}

#[test]
fn duplicate_and_missing_ids() {
    insta::assert_snapshot!(spec_error(&edit("id = \"fast\"", "id = \"slow\"")), @r#"
    error: duplicate id `slow` in `phase.workload`
      --> spec.toml:22:6
       |
    22 | id = "slow"
       |      ^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&edit("id = \"fast\"\n", "")), @r#"
    error: this `[[phase.workload]]` has no `id`
      --> spec.toml:21:1
       |
    21 | [[phase.workload]]
       | ^^^^^^^^^^^^^^^^^^
       = help: every phase, workload and check needs an `id` such as `id = "baseline"`
    "#);
}

#[test]
fn unknown_reference_workload() {
    insta::assert_snapshot!(spec_error(&edit("reference = \"slow\"", "reference = \"slwo\"")), @r#"
    error: no workload with id `slwo` (did you mean `slow`?)
      --> spec.toml:24:13
       |
    24 | reference = "slwo"
       |             ^^^^^^
    "#);
}

fn with_check(expr: &str) -> String {
    format!("{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = \"{expr}\"\nrationale = \"why\"\n")
}

#[test]
fn check_refers_to_missing_workload_or_metric() {
    insta::assert_snapshot!(spec_error(&with_check("slow.warm.median / quick.warm.median >= 2")), @r#"
    error: no workload with id `quick` (ids: slow, fast)
      --> spec.toml:31:28
       |
    31 | expr = "slow.warm.median / quick.warm.median >= 2"
       |                            ^^^^^^^^^^^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&with_check("fast.warm.item_per_s.median >= 2")), @r#"
    error: kernel `mock` has no metric `item_per_s` (did you mean `items_per_s`?)
      --> spec.toml:31:9
       |
    31 | expr = "fast.warm.item_per_s.median >= 2"
       |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&with_check("fast.cold.median >= 2")), @r#"
    error: workload `fast` does not run in cold mode (modes: warm)
      --> spec.toml:31:9
       |
    31 | expr = "fast.cold.median >= 2"
       |         ^^^^^^^^^^^^^^^^
    "#);
}

#[test]
fn check_syntax_errors() {
    insta::assert_snapshot!(spec_error(&with_check("slow.warm.average >= 2")), @r#"
    error: unknown statistic `average`; expected `slow.warm.median` or `slow.warm.METRIC.median` (mode cold|warm; statistic one of mean, median, min, max, stddev, mad)
      --> spec.toml:31:19
       |
    31 | expr = "slow.warm.average >= 2"
       |                   ^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&with_check("slow.warm.median 2")), @r#"
    error: expected a comparison (>=, <=, ...), found number `2`
      --> spec.toml:31:26
       |
    31 | expr = "slow.warm.median 2"
       |                          ^
    "#);
}

#[test]
fn check_errors_point_at_characters_not_bytes() {
    // The caret lands on the character after multi-byte ones, and never splits one.
    let spec =
        format!("{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = 'fast.warm.median >= 0 €'\nrationale = \"µs\"\n");
    insta::assert_snapshot!(spec_error(&spec), @r"
    error: unexpected character `€`
      --> spec.toml:31:31
       |
    31 | expr = 'fast.warm.median >= 0 €'
       |                               ^
    ");
    // A multi-line string is pointed at as a whole.
    let spec =
        format!("{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = '''\nfast.warm.mediam >= 0'''\nrationale = \"why\"\n");
    insta::assert_snapshot!(spec_error(&spec), @r"
    error: unknown statistic `mediam`; expected `fast.warm.median` or `fast.warm.METRIC.median` (mode cold|warm; statistic one of mean, median, min, max, stddev, mad)
      --> spec.toml:31:8
       |
    31 | expr = '''
       |        ^^^
    ");
}

#[test]
fn check_without_a_measurement() {
    insta::assert_snapshot!(spec_error(&with_check("1 <= 2")), @r#"
    error: the condition names no workload, so no measurement can decide it
      --> spec.toml:31:8
       |
    31 | expr = "1 <= 2"
       |        ^^^^^^^^
       = help: reference a workload's statistic, e.g. `fast.warm.median <= 0.01`
    "#);
    insta::assert_snapshot!(spec_error(&with_check("fast.warm.median <= 1e999")), @r#"
    error: number `1e999` is too large for a 64-bit float
      --> spec.toml:31:29
       |
    31 | expr = "fast.warm.median <= 1e999"
       |                             ^^^^^
    "#);
}

/// A constant threshold that is not a finite number would decide every check against
/// it alike (nothing exceeds infinity, NaN equals nothing): it is refused where it is
/// written, on either side of the comparison and in `applies_if` too.
#[test]
fn a_threshold_that_is_not_finite_is_refused() {
    insta::assert_snapshot!(spec_error(&with_check("slow.warm.median / fast.warm.median <= 1/0")), @r#"
    error: the threshold `1/0` is not a finite number (inf)
      --> spec.toml:31:48
       |
    31 | expr = "slow.warm.median / fast.warm.median <= 1/0"
       |                                                ^^^
    "#);
    insta::assert_snapshot!(spec_error(&with_check("(0 / 0) != fast.warm.median")), @r#"
    error: the threshold `(0 / 0)` is not a finite number (NaN)
      --> spec.toml:31:9
       |
    31 | expr = "(0 / 0) != fast.warm.median"
       |         ^^^^^^^
    "#);
    let applies = format!(
        "{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = \"fast.warm.median <= 1\"\napplies_if = \"slow.warm.median >= -1 / 0 - 1\"\nrationale = \"why\"\n"
    );
    let error = spec_error(&applies);
    assert!(error.starts_with("error: the threshold `-1 / 0 - 1` is not a finite number (-inf)\n"), "{error}");
    // A finite constant, however written, is a threshold.
    expand(&with_check("slow.warm.median / fast.warm.median >= 1 / 4 + 1e-300"))
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn ambiguous_reference_needs_a_selector() {
    let spec = edit("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]");
    let spec =
        format!("{spec}\n[[phase.check]]\nid = \"small\"\nexpr = \"fast.warm.median <= 1\"\nrationale = \"why\"\n");
    // One point per size: fine.
    assert!(crate::support::expand(&spec).is_ok());
    let spec = edit("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]");
    let spec = format!(
        "{spec}\n[[phase.check]]\nid = \"pinned\"\nexpr = \"fast[size=32].warm.median <= 1\"\nrationale = \"why\"\n"
    );
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: check `pinned` matches no combination of runs
      --> spec.toml:31:6
       |
    31 | id = "pinned"
       |      ^^^^^^^^
       = help: the selectors or the workloads' parameter values do not overlap
    "#);
}

#[test]
fn phase_needs_unknown_or_cyclic() {
    let spec = edit("title = \"Phase A\"", "title = \"Phase A\"\nneeds = [\"b\"]");
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: no phase with id `b` (did you mean `a`?)
      --> spec.toml:13:9
       |
    13 | needs = ["b"]
       |         ^^^^^
    "#);
    let phase_b =
        "\n[[phase]]\nid = \"b\"\ntitle = \"Phase B\"\n\n[[phase.workload]]\nid = \"other\"\nkernel = \"mock\"\n";
    // `a` comes first in the file, but needs `b`: `b` runs first.
    let ordered = format!("{spec}{phase_b}");
    let phases: Vec<String> = load(&ordered).unwrap().phases.into_iter().map(|phase| phase.id).collect();
    assert_eq!(phases, ["b", "a"]);
    let cyclic = format!("{spec}{}", phase_b.replace("title = \"Phase B\"", "title = \"Phase B\"\nneeds = [\"a\"]"));
    let error = spec_error(&cyclic);
    assert!(error.contains("phases a, b need each other in a cycle"), "{error}");
    let error = spec_error(&edit("title = \"Phase A\"", "title = \"Phase A\"\nneeds = [\"a\"]"));
    assert!(error.starts_with("error: phase `a` needs itself"), "{error}");
    assert!(error.contains("needs = [\"a\"]"), "points at it: {error}");
}

#[test]
fn parity_on_unknown_output() {
    let spec = format!(
        "{BASE}\n[[phase.check]]\nid = \"same\"\nparity = {{ of = \"fast\", against = \"slow\", output = \"image\", exact = true }}\nrationale = \"why\"\n"
    );
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: workload `fast` (kernel `mock`) has no output `image`; outputs: values
      --> spec.toml:31:52
       |
    31 | parity = { of = "fast", against = "slow", output = "image", exact = true }
       |                                                    ^^^^^^^
    "#);
}

#[test]
fn check_without_condition_or_rationale() {
    let spec = format!("{BASE}\n[[phase.check]]\nid = \"nothing\"\nrationale = \"why\"\n");
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: check `nothing` has no `expr`, `parity` or `snapshot`
      --> spec.toml:30:6
       |
    30 | id = "nothing"
       |      ^^^^^^^^^
       = help: write `expr = "a.warm.median / b.warm.median >= 2"`, `parity = { of, against, output, ... }` or `snapshot = { of, output, ... }`
    "#);
    let spec = format!("{BASE}\n[[phase.check]]\nid = \"terse\"\nexpr = \"fast.warm.median <= 1\"\n");
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: missing key `rationale` in `phase.a.check.terse`
      --> spec.toml:30:6
       |
    30 | id = "terse"
       |      ^^^^^^^
    "#);
}

#[test]
fn matrices_that_cannot_run() {
    // `threads` is a setting; a parameter of that name would shadow it.
    insta::assert_snapshot!(spec_error(&edit("time_ms = 1.0", "time_ms = 1.0\nthreads = [1, 2]")), @r"
    error: `threads` is a setting of the workload, not a kernel parameter
      --> spec.toml:27:1
       |
    27 | threads = [1, 2]
       | ^^^^^^^
       = help: write `threads = [1, 2]` beside `kernel`, or in `[defaults]`
    ");
    // Points that would be named alike.
    let command = |params: &str| {
        format!(
            "{BASE}\n[[phase.workload]]\nid = \"sweep\"\nkernel = \"command\"\n[phase.workload.params]\nprogram = \"true\"{params}\n"
        )
    };
    insta::assert_snapshot!(spec_error(&command("\nx = [1, 1.0]")), @r"
    error: parameter `x` lists 1 twice
      --> spec.toml:34:5
       |
    34 | x = [1, 1.0]
       |     ^^^^^^^^
    ");
    insta::assert_snapshot!(spec_error(&command("\nx = [1.5, nan]")), @r"
    error: parameter `x`: NaN is not finite
      --> spec.toml:34:5
       |
    34 | x = [1.5, nan]
       |     ^^^^^^^^^^
    ");
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeats = 5\nthreads = [2, 1, 2]")), @r"
    error: `defaults.threads`: 2 threads is listed twice
     --> spec.toml:9:11
      |
    9 | threads = [2, 1, 2]
      |           ^^^^^^^^^
    ");
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeats = 5\nthreads = 1.5")), @r"
    error: `defaults.threads` has the wrong type: found float `1.5`, expected a whole number or a list of whole numbers
     --> spec.toml:9:11
      |
    9 | threads = 1.5
      |           ^^^
    ");
    // 10^6 runs.
    let axes: String = (0..6).map(|axis| format!("\nx{axis} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")).collect();
    let spec = format!(
        "{}\n[[phase.check]]\nid = \"same\"\nsnapshot = {{ of = \"sweep\", output = \"a\", exact = true }}\nrationale = \"why\"\n",
        command("\noutput_name = [\"a\", \"b\"]")
    );
    insta::assert_snapshot!(spec_error(&spec), @r#"
    error: workload `sweep` varies `output_name`: a snapshot check compares one output
      --> spec.toml:38:12
       |
    38 | snapshot = { of = "sweep", output = "a", exact = true }
       |            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&command(&axes)), @r"
    error: workload `sweep` expands to more than 100000 runs: x0 (10) x x1 (10) x x2 (10) x x3 (10) x x4 (10) x x5 (10)
      --> spec.toml:32:17
       |
    32 | [phase.workload.params]
       |                 ^^^^^^
    ");
}

#[test]
fn phase_defaults_are_checked_even_where_every_workload_overrides_them() {
    let spec = edit("title = \"Phase A\"", "title = \"Phase A\"\n[phase.defaults]\nrepeats = 0");
    let spec = spec.replace("kernel = \"mock\"", "kernel = \"mock\"\nrepeats = 3");
    insta::assert_snapshot!(spec_error(&spec), @r"
    error: `phase.a.defaults.repeats`: must be at least 1
      --> spec.toml:14:11
       |
    14 | repeats = 0
       |           ^
    ");
}

#[test]
fn comparator_limits_waivers_and_requirements() {
    let check = |body: &str| format!("{BASE}\n[[phase.check]]\nid = \"same\"\n{body}\nrationale = \"why\"\n");
    let parity = |comparator: &str| {
        check(&format!("parity = {{ of = \"fast\", against = \"slow\", output = \"values\", {comparator} }}"))
    };
    insta::assert_snapshot!(spec_error(&parity("max_abs = -1.0")), @r#"
    error: `max_abs = -1` must be finite and not negative
      --> spec.toml:31:72
       |
    31 | parity = { of = "fast", against = "slow", output = "values", max_abs = -1.0 }
       |                                                                        ^^^^
    "#);
    insta::assert_snapshot!(spec_error(&parity("max_abs = nan")), @r#"
    error: `max_abs = NaN` must be finite and not negative
      --> spec.toml:31:72
       |
    31 | parity = { of = "fast", against = "slow", output = "values", max_abs = nan }
       |                                                                        ^^^
    "#);
    insta::assert_snapshot!(spec_error(&parity("corr_min = 2.0")), @r#"
    error: `corr_min = 2` must be in -1..=1
      --> spec.toml:31:73
       |
    31 | parity = { of = "fast", against = "slow", output = "values", corr_min = 2.0 }
       |                                                                         ^^^
    "#);
    let waived = check("expr = \"fast.warm.median <= 1\"\nxfail = { reason = \" \", until = \"2030-01-01\" }");
    insta::assert_snapshot!(spec_error(&waived), @r#"
    error: the waiver's reason is empty: say why the check may fail until then
      --> spec.toml:32:20
       |
    32 | xfail = { reason = " ", until = "2030-01-01" }
       |                    ^^^
    "#);
    let required = check("expr = \"fast.warm.median <= 1\"\nrequires = [\"cpu:not a feature!!\"]");
    insta::assert_snapshot!(spec_error(&required), @r#"
    error: invalid requirement `cpu:not a feature!!`
      --> spec.toml:32:12
       |
    32 | requires = ["cpu:not a feature!!"]
       |            ^^^^^^^^^^^^^^^^^^^^^^^
       = help: requirements are `cpu:FEATURE` (e.g. `cpu:avx2`), `env:VARIABLE` or `build:optimized`
    "#);
    let overriding = check("expr = \"fast.warm.median <= 1\"\nrequires = [\"env:PHASEGATE_FAST\"]");
    insta::assert_snapshot!(spec_error(&overriding), @r#"
    error: `env:PHASEGATE_FAST` can never be met: `PHASEGATE_*` variables override settings
      --> spec.toml:32:12
       |
    32 | requires = ["env:PHASEGATE_FAST"]
       |            ^^^^^^^^^^^^^^^^^^^^^^
       = help: name a variable outside `PHASEGATE_`, or use `build:optimized`
    "#);
    // The same for a workload's `requires_env`.
    let workload = BASE.replace("id = \"fast\"", "id = \"fast\"\nrequires_env = \"PHASEGATE_BIN\"");
    let error = spec_error(&workload);
    assert!(
        error.contains("error: `PHASEGATE_BIN` can never be met: `PHASEGATE_*` variables override settings"),
        "{error}"
    );
    assert!(error.contains("requires_env = \"PHASEGATE_BIN\""), "{error}");
}

#[test]
fn baseline_quantities_must_be_comparable() {
    insta::assert_snapshot!(spec_error(&format!("{BASE}\n[baseline]\nquantities = []\n")), @r"
    error: no quantities: a baseline would compare nothing
      --> spec.toml:30:14
       |
    30 | quantities = []
       |              ^^
    ");
    insta::assert_snapshot!(spec_error(&format!("{BASE}\n[baseline]\nquantities = [\"time\", \"time\"]\n")), @r#"
    error: `time` is listed twice
      --> spec.toml:30:14
       |
    30 | quantities = ["time", "time"]
       |              ^^^^^^^^^^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&format!("{BASE}\n[baseline]\nquantities = [\"sample_index\"]\n")), @r#"
    error: metric `sample_index` is neither better higher nor lower, so a change in it is no regression
      --> spec.toml:30:14
       |
    30 | quantities = ["sample_index"]
       |              ^^^^^^^^^^^^^^^^
    "#);
}

#[test]
fn simulator_automatic_oversample_above_the_limit() {
    let spec = edit(
        "kernel = \"mock\"\n[phase.workload.params]\ntime_ms = 4.0",
        "kernel = \"simulator\"\n[phase.workload.params]\nlambda_a = 1.0\nn_cells = 100000",
    )
    .replacen("jitter = 0.05\n", "", 1);
    insta::assert_snapshot!(spec_error(&spec), @r"
    error: workload `slow`: the automatic oversample (`oversample = 0`) is ceil(3 * crystal size / (lambda * distance / pixel)) = 30000 subpixels per axis here (crystal size 1000.000 um from `cell` and 100000 x 100000 x 100000 cells, `lambda_a` = 1, `distance_mm` = 100, `pixel_mm` = 0.1), above the limit of 64: set `oversample` to at most 64, or use fewer cells
      --> spec.toml:17:17
       |
    17 | [phase.workload.params]
       |                 ^^^^^^
    ");
}

#[test]
fn simulator_peak_beyond_f32() {
    let spec = edit(
        "kernel = \"mock\"\n[phase.workload.params]\ntime_ms = 4.0",
        "kernel = \"simulator\"\n[phase.workload.params]\npath = \"scalar\"\ndetpixels = 8\noversample = 1\n\
         beam_center_mm = [0.4, 0.4]\nn_cells = 100000\ndefault_f = 1e12",
    )
    .replacen("jitter = 0.05\n", "", 1);
    insta::assert_snapshot!(spec_error(&spec), @r"
    error: workload `slow`: pixel values could reach 1.000e48, beyond the largest f32 (3.403e38) of the image: the bound r_e^2 fluence * layers * F^2 * (Na Nb Nc)^2 * polarization * (pixel / distance)^2 has F = 1.000e12 from `default_f`, 100000 x 100000 x 100000 cells, 1 sensor layer(s), `pixel_mm` = 0.1, `distance_mm` = 100; lower the structure factors or use fewer cells
      --> spec.toml:17:17
       |
    17 | [phase.workload.params]
       |                 ^^^^^^
    ");
}

#[test]
fn parity_selectors_are_checked() {
    let parity = |of: &str, against: &str| {
        format!(
            "{BASE}\n[[phase.check]]\nid = \"same\"\nparity = {{ of = \"{of}\", against = \"{against}\", output = \"values\", exact = true }}\nrationale = \"why\"\n"
        )
    };
    insta::assert_snapshot!(spec_error(&parity("fast[sise=8]", "slow")), @r#"
    error: selector `sise`: workload `fast` sets no parameter `sise` (it sets: threads, time_ms, jitter)
      --> spec.toml:31:18
       |
    31 | parity = { of = "fast[sise=8]", against = "slow", output = "values", exact = true }
       |                  ^^^^^^^^^^^^
    "#);
    insta::assert_snapshot!(spec_error(&parity("fast[size=8", "slow")), @r#"
    error: unterminated selector
      --> spec.toml:31:18
       |
    31 | parity = { of = "fast[size=8", against = "slow", output = "values", exact = true }
       |                  ^^^^^^^^^^^
    "#);
    let same = parity("fast[size=8]", "fast[size=8]").replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]");
    insta::assert_snapshot!(spec_error(&same), @r#"
    error: `of` and `against` both name `fast[size=8]`: parity compares two sets of runs
      --> spec.toml:32:10
       |
    32 | parity = { of = "fast[size=8]", against = "fast[size=8]", output = "values", exact = true }
       |          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
       = help: name another workload, or other runs of this one: `of = "k[variant=simd]", against = "k[variant=scalar]"`
    "#);
    // Values are compared as runs are named: `8.0` names the run `8` does.
    let error = spec_error(&same.replace("against = \"fast[size=8]\"", "against = \"fast[size=8.0]\""));
    assert!(error.contains("`of` and `against` both name `fast[size=8]`"), "{error}");
}

#[test]
fn settings_at_and_beyond_their_limits() {
    let refused = |old: &str, new: &str, message: &str, line: &str| {
        let error = spec_error(&edit(old, new));
        assert!(error.starts_with(&format!("error: {message}\n")), "{error}");
        assert!(error.contains(&format!("--> spec.toml:{line}")), "{error}");
    };
    refused(
        "repeats = 5",
        "repeats = 5\nthreads = [1, 0]",
        "`defaults.threads`: 0 threads is out of range 1..=1024",
        "9:",
    );
    refused(
        "repeats = 5",
        "repeats = 5\nthreads = 1025",
        "`defaults.threads`: 1025 threads is out of range 1..=1024",
        "9:",
    );
    refused(
        "repeats = 5",
        "repeats = 5\ntimeout = 0",
        "`defaults.timeout`: must be a number of seconds in (0, 86400]",
        "9:",
    );
    refused(
        "repeats = 5",
        "repeats = 5\ntimeout = 86401",
        "`defaults.timeout`: must be a number of seconds in (0, 86400]",
        "9:",
    );
    refused(
        "repeats = 5",
        "repeats = 5\nmodes = []",
        "`defaults.modes`: give at least one of \"cold\", \"warm\"",
        "9:",
    );
    refused("reference = \"slow\"", "reference = \"fast\"", "a workload cannot be its own reference", "24:");
    refused(
        "repeats = 5",
        "repeats = 5\n\n[calibration]\nmode = \"warn\"\nrepeats = 1",
        "an A/A calibration needs at least 2 pairs",
        "12:",
    );
    // The limits themselves are accepted.
    let limits = edit("repeats = 5", "repeats = 5\nthreads = [1, 1024]\ntimeout = 86400\n\n[calibration]\nrepeats = 2");
    let spec = load(&limits).unwrap();
    assert_eq!(spec.defaults.threads, [1, 1024]);
    assert_eq!(spec.defaults.timeout_s, 86_400.0);
    assert_eq!(spec.calibration.repeats, 2);
}

#[test]
fn a_workload_may_expand_to_the_largest_matrix_and_thread_counts_multiply_it() {
    // Five axes of ten values: 100,000 runs, the most a workload may have.
    let axes: String = (0..5).map(|axis| format!("\nx{axis} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")).collect();
    let sweep = format!(
        "{BASE}\n[[phase.workload]]\nid = \"sweep\"\nkernel = \"command\"\n[phase.workload.params]\nprogram = \"true\"{axes}\n"
    );
    assert!(load(&sweep).is_ok());
    // Two thread counts double it.
    let error =
        load(&sweep.replace("kernel = \"command\"", "kernel = \"command\"\nthreads = [1, 2]")).unwrap_err().to_string();
    assert!(
        error.contains(
            "workload `sweep` expands to more than 100000 runs: x0 (10) x x1 (10) x x2 (10) x x3 (10) x x4 (10) x threads (2)"
        ),
        "{error}"
    );
}

#[test]
fn phases_run_in_file_order_except_where_they_need_a_later_one() {
    let phase = |id: &str, needs: &str| {
        format!("\n[[phase]]\nid = \"{id}\"\nneeds = [{needs}]\n\n[[phase.workload]]\nid = \"w\"\nkernel = \"mock\"\n")
    };
    let text = format!(
        "[experiment]\nname = \"demo\"\nseed = 7\n{}{}{}{}",
        phase("z", ""),
        phase("a", "\"m\""),
        phase("m", ""),
        phase("b", "")
    );
    let phases: Vec<String> = load(&text).unwrap().phases.into_iter().map(|phase| phase.id).collect();
    // `a` waits for `m`; every other phase keeps its place in the file.
    assert_eq!(phases, ["z", "m", "a", "b"]);
}

/// A selector on one side of a parity check can leave the other side resolving to the
/// same run at each point: a comparison of a run with itself, which could never fail.
#[test]
fn parity_of_a_run_with_itself_is_refused() {
    let text = format!(
        "{}\n[[phase.check]]\nid = \"same\"\nparity = {{ of = \"fast[size=4]\", against = \"fast\", output = \"values\", exact = true }}\nrationale = \"why\"\n",
        edit("time_ms = 1.0", "time_ms = 1.0\nsize = [4, 8]")
    );
    let error = spec_error(&text);
    assert!(error.contains("parity compares `fast[size=4]` with itself"), "{error}");
    assert!(error.contains("parity = { of = \"fast[size=4]\""), "points at the check: {error}");
    // Selectors naming two different runs are fine.
    let text = text.replace("against = \"fast\"", "against = \"fast[size=8]\"");
    expand(&text).unwrap_or_else(|error| panic!("{error}"));
}

/// A rationale is one line: empty or spanning several lines, it is refused where it is.
#[test]
fn a_rationale_is_one_line() {
    let with = |rationale: &str| {
        format!("{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = \"fast.warm.median <= 1\"\nrationale = {rationale}\n")
    };
    let error = spec_error(&with("\"  \""));
    assert!(error.contains("the rationale is empty"), "{error}");
    let error = spec_error(&with("\"\"\"\nfirst\n\n<!-- phasegate:end -->\n\"\"\""));
    assert!(error.contains("the rationale spans several lines"), "{error}");
    assert!(error.contains("spec.toml:32:13"), "points at the value: {error}");
    // Surrounding blank lines are no second line.
    expand(&with("\"\"\"\none line\n\"\"\"")).unwrap_or_else(|error| panic!("{error}"));
}

/// A condition is one line, as a rationale is: reports, plans and `list` show it inline.
#[test]
fn a_condition_is_one_line() {
    let with = |key: &str, text: &str| {
        format!("{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = \"fast.warm.median <= 1\"\n{key} = {text}\nrationale = \"why\"\n")
            .replacen("expr = \"fast.warm.median <= 1\"\nexpr = ", "expr = ", 1)
    };
    let two_lines = "\"\"\"\nslow.warm.median / fast.warm.median\n  >= 1\"\"\"";
    let error = spec_error(&with("expr", two_lines));
    assert!(error.starts_with("error: `expr` spans several lines: reports and plans show it as one\n"), "{error}");
    assert!(error.contains("spec.toml:31:8") && error.contains("help: write it on one line"), "{error}");
    let error = spec_error(&with("applies_if", two_lines));
    assert!(error.starts_with("error: `applies_if` spans several lines"), "{error}");
    assert!(error.contains("spec.toml:32:14"), "{error}");
    // Surrounding blank lines are no second line, and are not shown.
    let plan = expand(&with("expr", "\"\"\"\nslow.warm.median / fast.warm.median >= 1\n\"\"\"")).unwrap();
    let condition = plan.phases[0].checks[0].check.condition.as_ref().expect("a condition");
    assert_eq!(condition.text, "slow.warm.median / fast.warm.median >= 1");
}

/// Two runs of a workload may not share a name, which string values holding `,` and
/// `=` could give them.
#[test]
fn runs_named_alike_are_refused() {
    let spec = |s: &str, x: &str| {
        format!(
            "[experiment]\nname = \"twins\"\nseed = 1\n\n[[phase]]\nid = \"a\"\n\n[[phase.workload]]\nid = \"m\"\nkernel = \"command\"\n[phase.workload.params]\nprogram = \"true\"\nargs = [\"{{s}}\", \"{{x}}\"]\ns = {s}\nx = {x}\n"
        )
    };
    let error = spec_error(&spec(r#"["p,x=q", "p"]"#, r#"["q,x=r", "r"]"#));
    assert!(
        error.contains("two runs of workload `m` are both named `m[s=p,x=q,x=r]`: a parameter value holds `,` or `=`"),
        "{error}"
    );
    expand(&spec(r#"["p", "q"]"#, r#"["r", "t"]"#)).unwrap_or_else(|error| panic!("{error}"));
}

/// Wrong types are named as a spec's author knows them, not as the parser's types.
#[test]
fn wrong_types_are_named_plainly() {
    let check = |line: &str| {
        spec_error(&format!(
            "{BASE}\n[[phase.check]]\nid = \"speed\"\nexpr = \"fast.warm.median <= 1\"\nrationale = \"why\"\n{line}\n"
        ))
    };
    let error = check("xfail = \"soon\"");
    assert!(error.contains("found string \"soon\", expected a table"), "{error}");
    assert!(error.contains("help: write `xfail = { reason = \"why\", until = \"YYYY-MM-DD\" }`"), "{error}");
    let error = spec_error(&edit("repeats = 5", "repeats = 5\ntimeout = \"1s\""));
    assert!(error.contains("found string \"1s\", expected a number"), "{error}");
    let error = spec_error(&edit("repeats = 5", "repeats = 5\nreruns = -1"));
    assert!(
        error.contains("`defaults.reruns`: invalid value signed int `-1`, expected a whole number in 0..=4294967295"),
        "{error}"
    );
}

/// An error of a kernel's own checks that leads with a parameter is shown at that
/// parameter, or names the override that set it.
#[test]
fn a_kernel_check_error_points_at_its_parameter() {
    let text = "[experiment]\nname = \"tr\"\nseed = 1\n\n[[phase]]\nid = \"t\"\n\n[[phase.workload]]\nid = \"tree\"\nkernel = \"tree\"\n[phase.workload.params]\npoints = 300\nqueries = 16\nk = 8\n";
    let error = spec_error(&text.replace("k = 8", "k = 301"));
    assert!(error.contains("k = 301 exceeds the 300 candidate neighbours"), "{error}");
    assert!(error.contains("--> spec.toml:14:5"), "at the value of k: {error}");
    let overrides = Overrides { sets: vec!["phase.t.workload.tree.params.k=301".into()], ..Overrides::default() };
    let spec = crate::support::load_with(text, &overrides).unwrap();
    let error = phasegate::plan::expand(spec, phasegate::plan::Selection::default(), &|_| false).unwrap_err();
    assert!(error.to_string().contains("(from --set phase.t.workload.tree.params.k=301)"), "{error}");
}

/// A mode or a needed phase listed twice is a slip, said so, as a thread count is.
#[test]
fn modes_and_needs_listed_twice_are_refused() {
    let error = spec_error(&edit("repeats = 5", "repeats = 5\nmodes = [\"warm\", \"cold\", \"warm\"]"));
    assert!(error.contains("`defaults.modes`: \"warm\" is listed twice"), "{error}");
    let phase_b =
        "\n[[phase]]\nid = \"b\"\nneeds = [\"a\", \"a\"]\n\n[[phase.workload]]\nid = \"other\"\nkernel = \"mock\"\n";
    let error = spec_error(&format!("{BASE}{phase_b}"));
    assert!(error.contains("`a` is listed twice"), "{error}");
    assert!(error.contains("needs = [\"a\", \"a\"]"), "points at it: {error}");
}

/// A number beyond a setting's range names the range, at the value; one beyond TOML's
/// integers, which an override reads as text, says so too.
#[test]
fn numbers_out_of_range_name_the_range() {
    insta::assert_snapshot!(spec_error(&edit("repeats = 5", "repeats = 4294967296")), @r"
    error: `defaults.repeats`: invalid value signed int `4294967296`, expected a whole number in 0..=4294967295
     --> spec.toml:8:11
      |
    8 | repeats = 4294967296
      |           ^^^^^^^^^^
    ");
    let overrides = |set: &str| Overrides { sets: vec![set.to_owned()], ..Overrides::default() };
    let error = crate::support::load_with(BASE, &overrides("calibration.repeats=5000000000")).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "error: `calibration.repeats`: invalid value signed int `5000000000`, expected a whole number in \
             0..=4294967295 (from --set calibration.repeats=5000000000)"
        ),
        "{error}"
    );
    let error =
        crate::support::load_with(BASE, &overrides("experiment.seed=9223372036854775808")).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "error: `experiment.seed` has the wrong type: found string \"9223372036854775808\", expected a whole \
             number in 0..=9223372036854775807 (from --set experiment.seed=9223372036854775808)"
        ),
        "{error}"
    );
    assert!(
        error.contains(
            "help: TOML integers lie in -9223372036854775808..=9223372036854775807: a larger one is read as text"
        ),
        "{error}"
    );
    // In the file, such an integer is no TOML.
    insta::assert_snapshot!(spec_error(&edit("seed = 7", "seed = 9223372036854775808")), @r"
    error: integer out of range: TOML integers lie in -9223372036854775808..=9223372036854775807
     --> spec.toml:5:8
      |
    5 | seed = 9223372036854775808
      |        ^^^^^^^^^^^^^^^^^^^
    ");
}
