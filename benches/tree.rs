//! Benchmarks of the tree kernel: building the cover tree and answering kNN queries at
//! 8192 points in 8 dimensions (1024 queries, k = 8) on two threads, for the Euclidean
//! and the residual-correlation metric, with the sparse traversal. The residual bound
//! tables are part of the build, as in the kernel's timed step.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phasegate::kernels::tree::build::{self, BuildParams, Traversal};
use phasegate::kernels::tree::metric::EuclideanQuery;
use phasegate::kernels::tree::query::{self, QueryParams};
use phasegate::kernels::tree::residual::{ResidualBounds, ResidualMetric, ResidualParams};
use phasegate::kernels::tree::{MetricChoice, RunData, TreeParams, generate};

const POINTS: usize = 8192;
const QUERIES: usize = 1024;
const THREADS: usize = 2;

fn tree_params(metric: MetricChoice) -> TreeParams {
    TreeParams {
        points: POINTS,
        queries: QUERIES,
        metric,
        build: BuildParams { traversal: Traversal::Sparse, ..BuildParams::default() },
        ..TreeParams::default()
    }
}

fn euclidean(criterion: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(THREADS).build().expect("a two-thread pool");
    let params = tree_params(MetricChoice::Euclidean);
    let Ok(RunData::Euclidean { metric, queries }) = generate(&params) else { panic!("euclidean data") };
    let query_points: Vec<EuclideanQuery<'_>> =
        (0..queries.len()).map(|index| EuclideanQuery { coordinates: queries.row(index), index: None }).collect();
    let query_params = QueryParams { k: params.k, self_match: params.self_match };
    let mut group = criterion.benchmark_group(format!("tree/euclidean_{POINTS}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("build", |bencher| {
        bencher.iter(|| pool.install(|| build::build(black_box(&metric), &params.build, false, |_, _| {})))
    });
    let tree = pool.install(|| build::build(&metric, &params.build, false, |_, _| {})).tree;
    group.throughput(Throughput::Elements(QUERIES as u64));
    group.bench_function("query", |bencher| {
        bencher.iter(|| pool.install(|| query::knn(black_box(&metric), &tree, &query_points, &query_params)))
    });
    group.finish();
}

fn residual(criterion: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(THREADS).build().expect("a two-thread pool");
    let params = tree_params(MetricChoice::Residual(ResidualParams::default()));
    let Ok(RunData::Residual { model, queries }) = generate(&params) else { panic!("residual data") };
    let query_params = QueryParams { k: params.k, self_match: params.self_match };
    let mut group = criterion.benchmark_group(format!("tree/residual_{POINTS}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("build", |bencher| {
        bencher.iter(|| {
            pool.install(|| {
                let bounds = ResidualBounds::new(black_box(&model), params.seed);
                let metric = ResidualMetric { model: &model, bounds: Some(&bounds) };
                build::build(&metric, &params.build, false, |_, _| {})
            })
        })
    });
    let bounds = pool.install(|| ResidualBounds::new(&model, params.seed));
    let metric = ResidualMetric { model: &model, bounds: Some(&bounds) };
    let tree = pool.install(|| build::build(&metric, &params.build, false, |_, _| {})).tree;
    group.throughput(Throughput::Elements(QUERIES as u64));
    group.bench_function("query", |bencher| {
        bencher.iter(|| pool.install(|| query::knn(black_box(&metric), &tree, &queries, &query_params)))
    });
    group.finish();
}

criterion_group!(benches, euclidean, residual);
criterion_main!(benches);
