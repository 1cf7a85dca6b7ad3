//! The harness's own overhead: loading and expanding a spec with a 10,000-run matrix,
//! and the cost per sample of the in-process execution path.
//!
//! Per-sample overhead is measured with a kernel whose step does nothing: the time of
//! a whole warm series divided by its samples is what the harness adds around each
//! step (clock reads, probe, sample record, progress callback).

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use phasegate::execute::{ExecutionOptions, Silent, execute_phase};
use phasegate::plan::{self, Selection};
use phasegate::spec::{self, Overrides};

/// 10 x 10 x 10 x 10 = 10,000 runs, with a check over every point.
const LARGE: &str = r#"
[experiment]
name = "large"
seed = 1

[[phase]]
id = "a"

[[phase.workload]]
id = "base"
kernel = "mock"
[phase.workload.params]
time_ms = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
jitter = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]
size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
perturb = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

[[phase.check]]
id = "fast_enough"
expr = "base.warm.median <= 1"
rationale = "benchmark"
"#;

fn spec_expansion(criterion: &mut Criterion) {
    criterion.bench_function("load and expand a 10,000-run spec", |bencher| {
        // Dropping the plan is not part of loading it.
        bencher.iter_with_large_drop(|| {
            let spec = spec::load_str(Path::new("large.toml"), black_box(LARGE), &Overrides::default()).unwrap();
            let plan = plan::expand(spec, Selection::default(), &|_| false).unwrap();
            assert_eq!(plan.phases[0].runs.len(), 10_000);
            plan
        })
    });
}

fn per_sample_overhead(criterion: &mut Criterion) {
    const SAMPLES: u32 = 10_000;
    let text = format!(
        "[experiment]\nname = \"overhead\"\nseed = 1\n[defaults]\nwarmup = 0\nrepeats = {SAMPLES}\n[[phase]]\nid = \"a\"\n[[phase.workload]]\nid = \"noop\"\nkernel = \"mock\"\n[phase.workload.params]\ntime_ms = 0.0\n"
    );
    let spec = spec::load_str(Path::new("overhead.toml"), &text, &Overrides::default()).unwrap();
    let plan = plan::expand(spec, Selection::default(), &|_| false).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let options =
        ExecutionOptions { scratch_root: scratch.path().to_owned(), keep_all_outputs: false, calibration: false };
    let mut group = criterion.benchmark_group("per-sample overhead");
    group.throughput(criterion::Throughput::Elements(u64::from(SAMPLES)));
    group.bench_function("10,000 samples of a no-op step", |bencher| {
        bencher.iter_batched(
            || (),
            |()| {
                let results = execute_phase(&plan.phases[0], &options, &Silent);
                assert_eq!(results[0].samples.len(), SAMPLES as usize);
                results
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = spec_expansion, per_sample_overhead
}
criterion_main!(benches);
