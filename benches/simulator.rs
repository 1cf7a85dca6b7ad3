//! Benchmarks of the simulator kernel's inner loop: one thread rendering a small image
//! per configuration, with every compiled variant of the fast path and the scalar
//! reference, so the figures compare code paths rather than thread scaling.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phasegate::kernels::simulator::fast::{self, InstructionSet};
use phasegate::kernels::simulator::{HklSource, SimulatorParams, scalar};

const PIXELS: usize = 256;

fn configurations() -> Vec<(&'static str, SimulatorParams)> {
    let benchmark = SimulatorParams { detector_pixels: PIXELS, ..SimulatorParams::default() };
    vec![
        ("benchmark", benchmark.clone()),
        ("tricubic", SimulatorParams { cells: [2; 3], hkl: HklSource::Synthetic, ..benchmark.clone() }),
        (
            "absorption",
            SimulatorParams { thickness_um: 450.0, attenuation_depth_um: Some(500.0), thicksteps: 5, ..benchmark },
        ),
    ]
}

fn inner_loop(criterion: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    for (name, params) in configurations() {
        let simulation = params.simulation(params.load_structure_factors().expect("synthetic structure factors"));
        let mut image = vec![0.0f32; simulation.detector.pixels()];
        let mut group = criterion.benchmark_group(format!("simulator/{name}_{PIXELS}"));
        group.throughput(Throughput::Elements(simulation.detector.pixels() as u64));
        group.sample_size(20);
        for instruction_set in InstructionSet::ALL.into_iter().filter(|set| set.is_supported()) {
            group.bench_function(format!("fast_{}", instruction_set.name()), |bencher| {
                bencher.iter(|| pool.install(|| fast::render_with(black_box(&simulation), &mut image, instruction_set)))
            });
        }
        group.bench_function("scalar", |bencher| bencher.iter(|| scalar::render(black_box(&simulation), &mut image)));
        group.finish();
    }
}

criterion_group!(benches, inner_loop);
criterion_main!(benches);
