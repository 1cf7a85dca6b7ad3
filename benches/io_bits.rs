//! Criterion benchmarks of the `io` kernel's bit-matrix hot loops: every path this CPU
//! has, for popcount, popcount(a & b), xor, pack and unpack, on an L2-sized and an
//! L3-sized operand. Throughput is in input bytes (bools for pack and unpack), the
//! kernel's byte accounting.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use phasegate::kernels::io::bits::{self, BinaryOp, BitsPath};
use phasegate::kernels::io::data;
use phasegate::kernels::io::sys::CpuFeatures;

/// Operand sizes in bytes: L2-resident and L3-resident on the reference machine.
const SIZES: [usize; 2] = [256 << 10, 8 << 20];

fn paths() -> Vec<BitsPath> {
    let features = CpuFeatures::detect();
    BitsPath::ALL.into_iter().filter(|path| path.is_available(&features)).collect()
}

fn words(bytes: usize, seed: u64) -> Vec<u64> {
    let mut words = vec![0; bytes / 8];
    data::fill_words(&mut words, seed);
    words
}

fn popcount(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("popcount");
    for size in SIZES {
        let a = words(size, 1);
        group.throughput(Throughput::Bytes(size as u64));
        for path in paths() {
            group.bench_with_input(BenchmarkId::new(path.name(), size), &a, |bencher, a| {
                bencher.iter(|| bits::popcount(path, black_box(a)))
            });
        }
    }
    group.finish();
}

fn popcount_and(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("popcount_and");
    for size in SIZES {
        let (a, b) = (words(size, 1), words(size, 2));
        group.throughput(Throughput::Bytes(2 * size as u64));
        for path in paths() {
            group.bench_function(BenchmarkId::new(path.name(), size), |bencher| {
                bencher.iter(|| bits::popcount_and(path, black_box(&a), black_box(&b)))
            });
        }
    }
    group.finish();
}

fn xor(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("xor");
    for size in SIZES {
        let (a, b) = (words(size, 1), words(size, 2));
        let mut out = vec![0; a.len()];
        group.throughput(Throughput::Bytes(2 * size as u64));
        for path in paths() {
            group.bench_function(BenchmarkId::new(path.name(), size), |bencher| {
                bencher.iter(|| {
                    bits::binary(path, BinaryOp::Xor, black_box(&a), black_box(&b), &mut out);
                    black_box(&mut out);
                })
            });
        }
    }
    group.finish();
}

fn pack_and_unpack(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("pack");
    for size in SIZES {
        let mut bools = vec![0_u8; size];
        data::fill_bools(&mut bools, 3);
        let mut packed = vec![0_u8; size / 8];
        group.throughput(Throughput::Elements(size as u64));
        for path in paths() {
            group.bench_function(BenchmarkId::new(path.name(), size), |bencher| {
                bencher.iter(|| {
                    bits::pack(path, black_box(&bools), &mut packed);
                    black_box(&mut packed);
                })
            });
        }
    }
    group.finish();
    let mut group = criterion.benchmark_group("unpack");
    for size in SIZES {
        let packed: Vec<u8> = words(size / 8, 4).iter().flat_map(|word| word.to_le_bytes()).collect();
        let mut bools = vec![0_u8; size];
        group.throughput(Throughput::Elements(size as u64));
        for path in paths() {
            group.bench_function(BenchmarkId::new(path.name(), size), |bencher| {
                bencher.iter(|| {
                    bits::unpack(path, black_box(&packed), &mut bools);
                    black_box(&mut bools);
                })
            });
        }
    }
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = configured();
    targets = popcount, popcount_and, xor, pack_and_unpack
}
criterion_main!(benches);
