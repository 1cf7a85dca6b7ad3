//! Matrix expansion, pairing of interleaved partners and check points.

use phasegate::kernel::Value;
use phasegate::plan::{Selection, expand as expand_with};

use crate::support::{BASE, expand};

#[test]
fn lists_expand_into_a_cartesian_matrix_in_file_order() {
    let text = BASE
        .replace("time_ms = 4.0", "time_ms = [4.0, 8.0]\nsize = [8, 16, 32]")
        .replace("repeats = 5", "repeats = 5\nthreads = [1, 2]");
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let slow: Vec<&str> =
        phase.runs.iter().filter(|run| run.workload == "slow").map(|run| run.label.as_str()).collect();
    assert_eq!(slow.len(), 2 * 3 * 2);
    assert_eq!(slow[0], "time_ms=4,size=8,threads=1");
    assert_eq!(slow[1], "time_ms=4,size=8,threads=2");
    assert_eq!(slow[11], "time_ms=8,size=32,threads=2");
    // `fast` has only the threads axis.
    let fast: Vec<&str> =
        phase.runs.iter().filter(|run| run.workload == "fast").map(|run| run.label.as_str()).collect();
    assert_eq!(fast, ["threads=1", "threads=2"]);
    // Each run executes with the thread count of its point.
    for run in &phase.runs {
        let threads = run.coords.iter().find(|(name, _)| name == "threads").map(|(_, value)| value);
        assert_eq!(threads, Some(&Value::from(run.threads)), "{}", run.name());
    }
    assert_eq!(phase.runs[1].threads, 2);
    let run = &phase.runs[0];
    assert_eq!(run.params.get("jitter"), Some(&Value::Float(0.05)));
    assert_eq!(run.params.get("slowdown"), Some(&Value::Float(1.0)), "defaults fill undeclared parameters");
    assert_eq!(run.threads, 1);
    assert_eq!(plan.n_runs(), 14);
}

#[test]
fn partners_are_grouped_by_matching_axes() {
    let text = BASE
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]")
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16, 32]");
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let names = |group: &Vec<usize>| group.iter().map(|&index| phase.runs[index].name()).collect::<Vec<_>>();
    let groups: Vec<Vec<String>> = phase.groups.iter().map(names).collect();
    assert_eq!(
        groups,
        vec![
            vec!["slow[size=8]".to_owned(), "fast[size=8]".to_owned()],
            vec!["slow[size=16]".to_owned(), "fast[size=16]".to_owned()],
            vec!["fast[size=32]".to_owned()],
        ]
    );
}

#[test]
fn a_partner_that_fixes_a_value_pairs_only_with_the_runs_of_that_value() {
    // `slow` sets size 8 without varying it; `fast` varies it: only `fast[size=8]` agrees
    // with `slow` on a parameter both set and either varies.
    let text = BASE
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = 8")
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]");
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let groups: Vec<Vec<String>> =
        phase.groups.iter().map(|group| group.iter().map(|&index| phase.runs[index].name()).collect()).collect();
    assert_eq!(groups, [vec!["slow", "fast[size=8]"], vec!["fast[size=16]"]]);
}

#[test]
fn a_fixed_reference_partners_every_point() {
    let text = BASE.replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16]");
    let plan = expand(&text).unwrap();
    assert_eq!(plan.phases[0].groups.len(), 1, "slow has no size axis, so it pairs with both fast runs");
}

/// A thread count is a setting every run has: a workload run at one thread count
/// (here `slow`, at the default 1, or set to 1) partners, and resolves at, every thread
/// count `fast` varies; two workloads that both vary it match on it.
#[test]
fn a_reference_at_one_thread_count_partners_every_thread_count() {
    let check =
        "\n[[phase.check]]\nid = \"speed\"\nexpr = \"slow.warm.median / fast.warm.median >= 2\"\nrationale = \"why\"\n";
    let varied = BASE.replace("reference = \"slow\"\n", "reference = \"slow\"\nthreads = [1, 2]\n");
    let set = varied.replace("id = \"slow\"\n", "id = \"slow\"\nthreads = 1\n");
    let both = varied.replace("id = \"slow\"\n", "id = \"slow\"\nthreads = [1, 2]\n");
    let groups_and_points = |text: &str| {
        let plan = expand(&format!("{text}{check}")).unwrap();
        let phase = &plan.phases[0];
        let names = |runs: &[usize]| runs.iter().map(|&index| phase.runs[index].name()).collect::<Vec<_>>().join(" ");
        let groups: Vec<String> = phase.groups.iter().map(|group| names(group)).collect();
        let check = &phase.checks[0];
        let condition = check.check.condition.as_ref().expect("a condition");
        let points: Vec<String> = check
            .points
            .iter()
            .map(|point| {
                format!(
                    "{}: {} paired {}",
                    point.label,
                    names(&point.condition_runs),
                    point.paired(condition).is_some()
                )
            })
            .collect();
        (groups, points)
    };
    for text in [&varied, &set] {
        let (groups, points) = groups_and_points(text);
        assert_eq!(groups, ["slow fast[threads=1] fast[threads=2]"]);
        assert_eq!(
            points,
            ["threads=1: slow fast[threads=1] paired true", "threads=2: slow fast[threads=2] paired true"]
        );
    }
    let (groups, points) = groups_and_points(&both);
    assert_eq!(groups, ["slow[threads=1] fast[threads=1]", "slow[threads=2] fast[threads=2]"]);
    assert_eq!(
        points,
        [
            "threads=1: slow[threads=1] fast[threads=1] paired true",
            "threads=2: slow[threads=2] fast[threads=2] paired true"
        ]
    );
}

#[test]
fn selectors_match_values_as_runs_are_named() {
    // `time_ms = [1, 2]` is a float parameter: its runs are `time_ms=1` and `time_ms=2`.
    let text = BASE.replace("time_ms = 1.0", "time_ms = [1, 2]").replace("reference = \"slow\"\n", "");
    let text = format!(
        "{text}\n[[phase.check]]\nid = \"one\"\nexpr = \"fast[time_ms=1].warm.median <= 1\"\nrationale = \"why\"\n"
    );
    let plan = expand(&text).unwrap();
    let points = &plan.phases[0].checks[0].points;
    assert_eq!(points.len(), 1);
    assert_eq!(plan.phases[0].runs[points[0].condition_runs[0]].name(), "fast[time_ms=1]");
}

#[test]
fn check_points_follow_shared_axes() {
    let text = BASE
        .replace("time_ms = 4.0", "time_ms = 4.0\nsize = [8, 16]")
        .replace("time_ms = 1.0", "time_ms = 1.0\nsize = [8, 16, 32]");
    let text = format!(
        "{text}\n[[phase.check]]\nid = \"speed\"\nexpr = \"slow.warm.median / fast.warm.median >= 2\"\nrationale = \"why\"\n"
    );
    let plan = expand(&text).unwrap();
    let check = &plan.phases[0].checks[0];
    let labels: Vec<&str> = check.points.iter().map(|point| point.label.as_str()).collect();
    assert_eq!(labels, ["size=8", "size=16"], "size=32 has no slow run and is skipped");
    let condition = check.check.condition.as_ref().expect("a condition");
    assert!(check.points.iter().all(|point| point.paired(condition).is_some()), "partners are paired");
}

#[test]
fn sequential_order_disables_pairing() {
    let text = BASE.replace("repeats = 5", "repeats = 5\norder = \"sequential\"");
    let text = format!(
        "{text}\n[[phase.check]]\nid = \"speed\"\nexpr = \"slow.warm.median / fast.warm.median >= 2\"\nrationale = \"why\"\n"
    );
    let plan = expand(&text).unwrap();
    assert_eq!(plan.phases[0].groups.len(), 2);
    let check = &plan.phases[0].checks[0];
    let condition = check.check.condition.as_ref().expect("a condition");
    assert!(check.points[0].paired(condition).is_none());
    let listing = phasegate::describe::list(&plan);
    // Groups run in the order of the workloads, so `fast` may run before `slow`: the
    // listing says only that they are not paired.
    assert!(listing.contains("repeats, unpaired with slow (order sequential))"), "{listing}");
    assert!(!listing.contains("interleaved"), "{listing}");
}

#[test]
fn filters_and_phase_selection() {
    let spec = crate::support::load(BASE).unwrap();
    let selection = Selection { phase: None, filter: Some("a/f*".into()) };
    let plan = expand_with(spec.clone(), selection, &|_| false).unwrap();
    let skipped: Vec<bool> = plan.phases[0].runs.iter().map(|run| run.skip.is_some()).collect();
    assert_eq!(skipped, [true, false]);
    let error =
        expand_with(spec.clone(), Selection { phase: None, filter: Some("zzz".into()) }, &|_| false).unwrap_err();
    assert!(error.to_string().contains("`--filter zzz` matches no workload"));
    let error = expand_with(spec, Selection { phase: Some("b".into()), filter: None }, &|_| false).unwrap_err();
    assert!(error.to_string().contains("`--phase b`: no such phase"));
}

#[test]
fn parity_runs_are_of_then_against() {
    let text = format!(
        "{BASE}\n[[phase.check]]\nid = \"same\"\nparity = {{ of = \"fast\", against = \"slow\", output = \"values\", exact = true }}\nrationale = \"why\"\n"
    );
    let plan = expand(&text).unwrap();
    let phase = &plan.phases[0];
    let (of, against) = phase.checks[0].points[0].parity_runs.expect("a parity check");
    assert_eq!((phase.runs[of].name(), phase.runs[against].name()), ("fast".to_owned(), "slow".to_owned()));
}

#[test]
fn a_selected_phase_is_planned_alone() {
    let text = format!("{BASE}\n[[phase]]\nid = \"b\"\n\n[[phase.workload]]\nid = \"other\"\nkernel = \"mock\"\n");
    let spec = crate::support::load(&text).unwrap();
    let plan = expand_with(spec, Selection { phase: Some("b".into()), filter: None }, &|_| false).unwrap();
    let phases: Vec<&str> = plan.phases.iter().map(|phase| phase.phase.id.as_str()).collect();
    assert_eq!(phases, ["b"]);
    assert_eq!(plan.n_runs(), 1);
}

/// Values are one point when they name the same run, whatever type they were written
/// in: a command kernel's own parameters keep it, so `1`, `1.0` and `"1"` stay apart as
/// values, yet partners pair on them and checks resolve at them as for `1` and `1`.
#[test]
fn partners_and_checks_match_values_as_runs_are_named() {
    let workload = |id: &str, reference: &str, values: &str| {
        format!(
            "\n[[phase.workload]]\nid = \"{id}\"\nkernel = \"command\"\n{reference}[phase.workload.params]\n\
             program = \"true\"\nargs = [\"{{n}}\"]\nn = {values}\n"
        )
    };
    let check =
        |id: &str, expr: &str| format!("\n[[phase.check]]\nid = \"{id}\"\nexpr = \"{expr}\"\nrationale = \"why\"\n");
    let text = format!(
        "[experiment]\nname = \"typed\"\nseed = 7\n\n[[phase]]\nid = \"a\"\n{}{}{}{}",
        workload("slow", "", "[1, 2, \"3\"]"),
        workload("fast", "reference = \"slow\"\n", "[1.0, 2.0, 3]"),
        check("speed", "slow.warm.median / fast.warm.median >= 0.1"),
        check("one", "slow[n=1].warm.median / fast[n=1.0].warm.median >= 0.1"),
    );
    let plan = expand(&text).unwrap_or_else(|error| panic!("{error}"));
    let phase = &plan.phases[0];
    let names = |runs: &[usize]| runs.iter().map(|&index| phase.runs[index].name()).collect::<Vec<_>>().join(" ");
    let groups: Vec<String> = phase.groups.iter().map(|group| names(group)).collect();
    assert_eq!(groups, ["slow[n=1] fast[n=1]", "slow[n=2] fast[n=2]", "slow[n=3] fast[n=3]"]);
    let points = |check: usize| {
        let check = &phase.checks[check];
        let condition = check.check.condition.as_ref().expect("a condition");
        check
            .points
            .iter()
            .map(|point| {
                let paired = point.paired(condition).is_some();
                format!("{}: {} paired {paired}", point.label, names(&point.condition_runs))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        points(0),
        [
            "n=1: slow[n=1] fast[n=1] paired true",
            "n=2: slow[n=2] fast[n=2] paired true",
            "n=3: slow[n=3] fast[n=3] paired true"
        ]
    );
    assert_eq!(points(1), [": slow[n=1] fast[n=1] paired true"]);
}

/// Partners of 20,000 runs each pair run by run, and a check over them resolves at every
/// point: runs are matched through an index of their values, not pair by pair (which
/// took most of a minute here).
#[test]
fn large_matrices_of_partners_pair_run_by_run() {
    let sizes = format!("size = [{}]", (1..=20_000).map(|size| size.to_string()).collect::<Vec<_>>().join(", "));
    let text = BASE
        .replace("time_ms = 4.0", &format!("time_ms = 4.0\n{sizes}"))
        .replace("time_ms = 1.0", &format!("time_ms = 1.0\n{sizes}"));
    let text = format!(
        "{text}\n[[phase.check]]\nid = \"speed\"\nexpr = \"slow.warm.median / fast.warm.median >= 2\"\nrationale = \"why\"\n"
    );
    let plan = expand(&text).unwrap_or_else(|error| panic!("{}", error.message));
    let phase = &plan.phases[0];
    assert_eq!(phase.runs.len(), 40_000);
    assert_eq!(phase.groups.len(), 20_000);
    for group in &phase.groups {
        let [slow, fast] = group[..] else { panic!("a group of {} runs", group.len()) };
        assert_eq!((&phase.runs[slow].workload[..], &phase.runs[fast].workload[..]), ("slow", "fast"));
        assert_eq!(phase.runs[slow].label, phase.runs[fast].label);
    }
    let check = &phase.checks[0];
    let condition = check.check.condition.as_ref().expect("a condition");
    assert_eq!(check.points.len(), 20_000);
    assert!(check.points.iter().all(|point| point.paired(condition).is_some()));
    assert_eq!(check.points[19_999].label, "size=20000");
}
