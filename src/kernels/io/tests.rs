//! Tests of the `io` kernel: every fast path against its plain reference, every
//! reduction against a plain sum, every import against the source bytes, and the
//! kernel interface end to end on small sizes.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::bits::{self, BinaryOp, BitsPath};
use super::data::{self, LANES, sum_f64};
use super::import::{copy_chunks, pwrite_chunks};
use super::read::reduce_chunks;
use super::sched::{scheduled_sum, stall_bound};
use super::schedule::{ChunkPlan, ChunkRun, Delay, LatencySummary, Scheduler, run_chunks};
use super::sys::{CpuFeatures, Storage, Usage};
use super::{Environment, Io, IoParams, gbps, record_latencies, record_step};
use crate::kernel::{Deadline, Kernel, Output, OutputData, Params, Probe, RunContext, Stopped, Value};

const ALL_SCHEDULERS: [Scheduler; 4] =
    [Scheduler::Static, Scheduler::Dynamic, Scheduler::Rayon, Scheduler::RayonDefault];

fn available_paths() -> Vec<BitsPath> {
    let features = CpuFeatures::detect();
    BitsPath::ALL.into_iter().filter(|path| path.is_available(&features)).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool")
}

/// The reduction's definition written out plainly: lane `j` sums `x[j], x[j + L], ...`
/// in order, then the lanes combine pairwise.
fn sum_reference(values: &[f64]) -> f64 {
    let mut lanes = [0.0_f64; LANES];
    for (index, value) in values.iter().enumerate() {
        let lane =
            if index < values.len() / LANES * LANES { index % LANES } else { index - values.len() / LANES * LANES };
        lanes[lane] += value;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for index in 0..width {
            lanes[index] += lanes[index + width];
        }
    }
    lanes[0]
}

/// Chunk sums added in chunk order, sequentially.
fn chunked_sum_reference(values: &[f64], chunk_values: usize) -> f64 {
    values.chunks(chunk_values).map(sum_reference).fold(0.0, |total, partial| total + partial)
}

fn popcount_bits(words: &[u64]) -> u64 {
    words.iter().map(|word| (0..64).map(|bit| (word >> bit) & 1).sum::<u64>()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: RngSeed::Fixed(20261206), ..ProptestConfig::default() })]

    #[test]
    fn popcounts_agree_with_the_scalar_loop(words in prop::collection::vec(any::<u64>(), 0..300),
                                            others in prop::collection::vec(any::<u64>(), 300)) {
        let others = &others[..words.len()];
        let expected = popcount_bits(&words);
        let expected_and: u64 = popcount_bits(&words.iter().zip(others).map(|(a, b)| a & b).collect::<Vec<_>>());
        prop_assert_eq!(bits::popcount(BitsPath::Scalar, &words), expected);
        for path in available_paths() {
            prop_assert_eq!(bits::popcount(path, &words), expected, "popcount on {}", path.name());
            prop_assert_eq!(bits::popcount_and(path, &words, others), expected_and, "popcount_and on {}", path.name());
        }
    }

    #[test]
    fn logic_agrees_with_the_scalar_loop(words in prop::collection::vec(any::<u64>(), 0..300),
                                         others in prop::collection::vec(any::<u64>(), 300)) {
        let others = &others[..words.len()];
        for op in [BinaryOp::And, BinaryOp::Or, BinaryOp::Xor] {
            let mut expected = vec![0; words.len()];
            bits::binary(BitsPath::Scalar, op, &words, others, &mut expected);
            let plain: Vec<u64> = words.iter().zip(others).map(|(&a, &b)| match op {
                BinaryOp::And => a & b,
                BinaryOp::Or => a | b,
                BinaryOp::Xor => a ^ b,
            }).collect();
            prop_assert_eq!(&expected, &plain);
            for path in available_paths() {
                let mut out = vec![0x5555; words.len()];
                bits::binary(path, op, &words, others, &mut out);
                prop_assert_eq!(&out, &expected, "{:?} on {}", op, path.name());
            }
        }
        let expected: Vec<u64> = words.iter().map(|word| !word).collect();
        for path in available_paths() {
            let mut out = vec![0; words.len()];
            bits::not(path, &words, &mut out);
            prop_assert_eq!(&out, &expected, "not on {}", path.name());
        }
    }

    #[test]
    fn pack_agrees_with_the_scalar_loop(bools in prop::collection::vec(prop_oneof![Just(0_u8), Just(1_u8), any::<u8>()], 0..700)) {
        let mut expected = vec![0; bools.len().div_ceil(8)];
        bits::pack(BitsPath::Scalar, &bools, &mut expected);
        for (index, value) in bools.iter().enumerate() {
            prop_assert_eq!((expected[index / 8] >> (index % 8)) & 1 == 1, *value != 0);
        }
        for path in available_paths() {
            let mut packed = vec![0xAA; bools.len().div_ceil(8)];
            bits::pack(path, &bools, &mut packed);
            prop_assert_eq!(&packed, &expected, "pack on {}", path.name());
        }
    }

    #[test]
    fn unpack_agrees_with_the_scalar_loop(packed in prop::collection::vec(any::<u8>(), 0..90), cut in 0_usize..8) {
        let len = (packed.len() * 8).saturating_sub(cut);
        let packed = &packed[..len.div_ceil(8)];
        let mut expected = vec![0; len];
        bits::unpack(BitsPath::Scalar, packed, &mut expected);
        for path in available_paths() {
            let mut bools = vec![7; len];
            bits::unpack(path, packed, &mut bools);
            prop_assert_eq!(&bools, &expected, "unpack on {}", path.name());
            let mut repacked = vec![0; len.div_ceil(8)];
            bits::pack(path, &bools, &mut repacked);
            let mut masked = packed.to_vec();
            if len % 8 != 0 && let Some(last) = masked.last_mut() {
                *last &= (1_u8 << (len % 8)) - 1;
            }
            prop_assert_eq!(&repacked, &masked, "pack(unpack) on {}", path.name());
        }
    }

    #[test]
    fn the_reduction_is_its_definition(values in prop::collection::vec(-1e6_f64..1e6, 0..200)) {
        prop_assert_eq!(sum_f64(&values).to_bits(), sum_reference(&values).to_bits());
    }
}

/// Every bit set: each byte lane of a vector path's per-byte counts takes its largest
/// value (8 a vector), so counts kept in bytes for too many vectors would wrap. Random
/// words set about half the bits and never come near.
#[test]
fn popcounts_of_dense_words_do_not_wrap() {
    for len in [1, 63, 64, 65, 300, 1000, 4099] {
        let words = vec![u64::MAX; len];
        let expected = 64 * len as u64;
        for path in available_paths() {
            assert_eq!(bits::popcount(path, &words), expected, "popcount on {}, {len} words", path.name());
            assert_eq!(bits::popcount_and(path, &words, &words), expected, "popcount_and on {}", path.name());
        }
    }
}

#[test]
fn pack_uses_little_bit_order_like_numpy() {
    // np.packbits([1,0,0,0,0,0,0,0, 0,1,1], bitorder="little") == [1, 6]
    let bools = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    for path in available_paths() {
        let mut packed = [0; 2];
        bits::pack(path, &bools, &mut packed);
        assert_eq!(packed, [1, 6], "{}", path.name());
    }
}

#[test]
fn paths_resolve_downwards() {
    let none = CpuFeatures::default();
    assert_eq!(BitsPath::Avx512.resolve(&none), BitsPath::Portable);
    assert_eq!(BitsPath::Scalar.resolve(&none), BitsPath::Scalar);
    let avx2_only = CpuFeatures { popcnt: true, avx2: true, ..CpuFeatures::default() };
    let expected = if cfg!(target_arch = "x86_64") { BitsPath::Avx2 } else { BitsPath::Portable };
    assert_eq!(BitsPath::Avx512.resolve(&avx2_only), expected);
}

#[test]
fn the_reduction_of_integers_is_exact() {
    let values: Vec<f64> = (0..10_007).map(|index| f64::from(index % 1000)).collect();
    let exact: i64 = (0..10_007_i64).map(|index| index % 1000).sum();
    assert_eq!(sum_f64(&values), exact as f64);
    let (total, _) = pool(2).install(|| reduce_chunks(&values, 333, Deadline::never())).expect("a reduction");
    assert_eq!(total, exact as f64);
}

#[test]
fn batched_generation_equals_whole_generation() {
    let blocks = 5;
    let mut whole = vec![0.0; blocks * data::GENERATION_BLOCK - 17];
    data::fill_values(&mut whole, 7);
    let mut batched = vec![0.0; whole.len()];
    for (batch, values) in batched.chunks_mut(2 * data::GENERATION_BLOCK).enumerate() {
        data::fill_values_from(values, 7, 2 * batch);
    }
    assert_eq!(whole, batched);
    let mut other_seed = vec![0.0; whole.len()];
    data::fill_values(&mut other_seed, 8);
    assert_ne!(whole, other_seed);
    assert!(whole.iter().all(|value| (0.0..1.0).contains(value)));
}

#[test]
fn the_digest_sees_every_byte_and_the_length() {
    let bytes: Vec<u8> = (0..3 * data::DIGEST_BLOCK + 13).map(|index| (index * 7 % 251) as u8).collect();
    let reference = data::digest(&bytes);
    assert_eq!(pool(3).install(|| data::digest(&bytes)), reference);
    for position in [0, 5, data::DIGEST_BLOCK + 1, bytes.len() - 1] {
        let mut changed = bytes.clone();
        changed[position] ^= 1;
        assert_ne!(data::digest(&changed), reference, "a flip at {position} went unnoticed");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_ne!(data::digest(&longer), reference);
    // Blocks are folded in order: the same blocks in another order are other bytes.
    let mut swapped = bytes.clone();
    swapped[..2 * data::DIGEST_BLOCK].rotate_left(data::DIGEST_BLOCK);
    assert_ne!(swapped, bytes);
    assert_ne!(data::digest(&swapped), reference, "two blocks swapped went unnoticed");
}

/// fio's figures of a timed step, by hand: 3e9 bytes in 2 s are 1.5e9 B/s or 1.5 GB/s
/// (decimal), and 1.5 s of user and 0.5 s of system CPU time in it are 75 % and 25 %;
/// page faults and CPU time are the usage between two snapshots.
#[test]
fn a_step_reports_fio_figures_in_their_units() {
    let storage = Storage { filesystem: "ext4".into(), device: "vda".into(), rotational: Some(true) };
    let environment = Environment { cpu: CpuFeatures::default(), storage };
    let before =
        Usage { minor_faults: 3, major_faults: 1, user: Duration::from_secs(4), system: Duration::from_secs(1) };
    let after = Usage {
        minor_faults: 10,
        major_faults: 3,
        user: Duration::from_millis(5500),
        system: Duration::from_millis(1500),
    };
    let usage = after.since(before);
    let mut probe = Probe::default();
    record_step(&mut probe, &environment, 3e9, Duration::from_secs(2), usage);
    let figures = ["bw_bytes", "bw_gbps", "minf", "majf", "usr_cpu", "sys_cpu"].map(|name| metric(&probe, name));
    assert_eq!(figures, [1.5e9, 1.5, 7.0, 2.0, 75.0, 25.0]);
    assert_eq!(gbps(3_000_000_000, Duration::from_secs(2)), 1.5);
}

/// The chunk latencies' metrics are the nearest-rank percentiles their names say: of
/// the latencies 1..=200 ns, p50 is the 100th, p99 the 198th and the largest 200.
#[test]
fn chunk_latency_metrics_are_their_percentiles() {
    let run = ChunkRun {
        results: vec![(); 200],
        latencies_ns: (1..=200).rev().collect(),
        stall: Duration::ZERO,
        stalled_chunk: None,
        slow_sleep: Duration::ZERO,
    };
    let mut probe = Probe::default();
    record_latencies(&mut probe, &run);
    let figures = ["clat_p50_ns", "clat_p99_ns", "clat_max_ns"].map(|name| metric(&probe, name));
    assert_eq!(figures, [100.0, 198.0, 200.0]);
}

/// Each environment metric, which checks read through `applies_if` and `requires`,
/// is 1 for its own CPU feature alone, and the storage metrics follow the device and
/// filesystem: `device_rotational` is -1 when unknown.
#[test]
fn environment_metrics_name_their_own_feature_and_storage() {
    let storage = |filesystem: &str, device: &str, rotational| Storage {
        filesystem: filesystem.into(),
        device: device.into(),
        rotational,
    };
    let none = CpuFeatures::default();
    let features = [
        ("cpu_avx2", CpuFeatures { avx2: true, ..none }),
        ("cpu_bmi2", CpuFeatures { bmi2: true, ..none }),
        ("cpu_avx512f", CpuFeatures { avx512f: true, ..none }),
        ("cpu_avx512bw", CpuFeatures { avx512bw: true, ..none }),
        ("cpu_avx512vpopcntdq", CpuFeatures { avx512vpopcntdq: true, ..none }),
    ];
    for (name, cpu) in features {
        let mut probe = Probe::default();
        Environment { cpu, storage: storage("ext4", "vda", Some(true)) }.record(&mut probe);
        for (other, _) in features {
            assert_eq!(metric(&probe, other), if other == name { 1.0 } else { 0.0 }, "{other} with only {name}");
        }
    }
    let storages = [
        (storage("ext4", "nvme0n1", Some(false)), [1.0, 0.0, 0.0]),
        (storage("xfs", "vda", Some(true)), [0.0, 1.0, 0.0]),
        (storage("tmpfs", "", None), [0.0, -1.0, 1.0]),
        (storage("ramfs", "", None), [0.0, -1.0, 1.0]),
    ];
    for (storage, expected) in storages {
        let mut probe = Probe::default();
        Environment { cpu: none, storage: storage.clone() }.record(&mut probe);
        let figures = ["device_nvme", "device_rotational", "fs_tmpfs"].map(|name| metric(&probe, name));
        assert_eq!(figures, expected, "{storage:?}");
    }
}

#[test]
fn every_scheduler_runs_every_chunk_once_in_order() {
    for threads in [1, 2, 3] {
        for scheduler in ALL_SCHEDULERS {
            let run =
                pool(threads).install(|| run_chunks(37, scheduler, Delay::None, Deadline::never(), |index| index * 10));
            let run = Stopped::never(run);
            assert_eq!(run.results, (0..37).map(|index| index * 10).collect::<Vec<_>>());
            assert_eq!(run.latencies_ns.len(), 37);
        }
    }
}

#[test]
fn schedulers_compute_identical_sums() {
    let mut values = vec![0.0; 200_003];
    data::fill_values(&mut values, 3);
    let expected = chunked_sum_reference(&values, 4096);
    let delays = [Delay::None, Delay::Stall(Duration::from_millis(2)), Delay::SlowWorker(Duration::from_micros(20))];
    for threads in [1, 2, 3] {
        for scheduler in ALL_SCHEDULERS {
            for delay in delays {
                let sum = pool(threads).install(|| scheduled_sum(&values, 4096, scheduler, delay));
                assert_eq!(sum.to_bits(), expected.to_bits(), "{scheduler:?} {delay:?} on {threads} threads");
            }
        }
    }
}

#[test]
fn the_stall_delays_worker_zero_once() {
    let stall = Duration::from_millis(20);
    for scheduler in ALL_SCHEDULERS {
        // Other workers wait (up to a second) until worker 0 has done a chunk, so it
        // cannot miss the pass by waking up after the others finished everything.
        let worker_zero_arrived = std::sync::atomic::AtomicBool::new(false);
        let work = |_index: usize| {
            if rayon::current_thread_index() == Some(0) {
                worker_zero_arrived.store(true, std::sync::atomic::Ordering::Release);
            } else {
                let start = crate::clock::now();
                while !worker_zero_arrived.load(std::sync::atomic::Ordering::Acquire)
                    && start.elapsed() < Duration::from_secs(1)
                {
                    std::hint::spin_loop();
                }
            }
            rayon::current_thread_index()
        };
        let run = pool(2).install(|| run_chunks(64, scheduler, Delay::Stall(stall), Deadline::never(), work));
        let run = Stopped::never(run);
        assert!(run.stall >= stall, "{scheduler:?} slept {:?}", run.stall);
        // The stall follows one claim of worker 0, and that chunk's latency holds it.
        let chunk = run.stalled_chunk.unwrap_or_else(|| panic!("{scheduler:?}: no stall"));
        assert_eq!(run.results[chunk], Some(0), "{scheduler:?}: chunk {chunk} stalled on another worker");
        assert!(run.latencies_ns[chunk] >= stall.as_nanos() as u64, "{scheduler:?}: {:?}", run.latencies_ns[chunk]);
    }
}

/// The static schedule gives worker `w` of `P` the contiguous chunks
/// `w * count / P .. (w + 1) * count / P`, also when there are fewer chunks than workers.
#[test]
fn the_static_schedule_gives_each_worker_its_contiguous_range() {
    for threads in [1, 2, 3] {
        for count in [2, 37] {
            let run = pool(threads).install(|| {
                run_chunks(count, Scheduler::Static, Delay::None, Deadline::never(), |_| rayon::current_thread_index())
            });
            for (index, worker) in Stopped::never(run).results.into_iter().enumerate() {
                let expected = (0..threads)
                    .find(|worker| (worker * count / threads..(worker + 1) * count / threads).contains(&index));
                assert_eq!(worker, expected, "chunk {index} of {count} on {threads} threads");
            }
        }
    }
}

/// Dynamic claiming and rayon's single-chunk stealing keep the other workers going while
/// worker 0 is held up: when its first chunk waits until every other chunk is done, the
/// other worker does them all and worker 0 runs only that one. A schedule that fixes
/// worker 0's share in advance (static, or rayon's coarse default ranges) leaves the rest
/// of its share waiting. The other worker starts once worker 0 has, so that it cannot
/// finish the pass alone before worker 0 wakes up.
#[test]
fn a_held_up_worker_zero_leaves_every_other_chunk_to_the_other_worker() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let count = 32;
    // Spins until `done` holds, or a second at most.
    let wait_for = |done: &dyn Fn() -> bool| {
        let start = crate::clock::now();
        while !done() && start.elapsed() < Duration::from_secs(1) {
            std::hint::spin_loop();
        }
    };
    for scheduler in [Scheduler::Dynamic, Scheduler::Rayon] {
        let zero_arrived = AtomicBool::new(false);
        let held = AtomicBool::new(false);
        let others_done = AtomicUsize::new(0);
        let work = |_index: usize| {
            let worker = rayon::current_thread_index();
            if worker != Some(0) {
                wait_for(&|| zero_arrived.load(Ordering::Acquire));
                others_done.fetch_add(1, Ordering::Release);
            } else if !held.swap(true, Ordering::Relaxed) {
                zero_arrived.store(true, Ordering::Release);
                wait_for(&|| others_done.load(Ordering::Acquire) == count - 1);
            }
            worker
        };
        let run = pool(2).install(|| run_chunks(count, scheduler, Delay::None, Deadline::never(), work));
        let by_worker_zero = Stopped::never(run).results.iter().filter(|worker| **worker == Some(0)).count();
        assert!(by_worker_zero <= 1, "{scheduler:?}: worker 0 ran {by_worker_zero} chunks");
    }
}

/// On one worker every delay falls on worker 0: the stall once, after its first claim and
/// inside that chunk's latency, and the slow worker's sleep after every chunk, outside
/// the latencies.
#[test]
fn on_one_worker_the_stall_comes_once_and_the_slow_sleep_after_every_chunk() {
    let pause = Duration::from_millis(25);
    let pause_ns = pause.as_nanos() as u64;
    for scheduler in ALL_SCHEDULERS {
        let run = pool(1).install(|| run_chunks(6, scheduler, Delay::Stall(pause), Deadline::never(), |index| index));
        let run = Stopped::never(run);
        assert!(run.stall >= pause, "{scheduler:?} stalled {:?}", run.stall);
        assert_eq!(run.stalled_chunk, Some(0), "{scheduler:?}");
        let delayed: Vec<usize> = (0..6).filter(|&index| run.latencies_ns[index] >= pause_ns).collect();
        assert_eq!(delayed, [0], "{scheduler:?}: latencies {:?}", run.latencies_ns);

        let run =
            pool(1).install(|| run_chunks(3, scheduler, Delay::SlowWorker(pause), Deadline::never(), |index| index));
        let run = Stopped::never(run);
        assert!(run.slow_sleep >= 3 * pause, "{scheduler:?} slept {:?}", run.slow_sleep);
        assert!(run.latencies_ns.iter().all(|&latency| latency < pause_ns), "{scheduler:?}: {:?}", run.latencies_ns);
    }
}

#[test]
fn every_scheduler_stops_claiming_at_the_deadline() {
    for scheduler in ALL_SCHEDULERS {
        // Past already: no chunk starts.
        let past = Deadline::new(crate::clock::now(), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        let stopped = pool(2).install(|| run_chunks(16, scheduler, Delay::None, past, |index| index));
        assert_eq!(stopped.expect_err("past the deadline"), Stopped { done: 0, total: 16 }, "{scheduler:?}");
        // Passing during the pass: 64 chunks of 10 ms on 2 workers need 320 ms; those
        // claimed in the first 100 ms finish, no later one starts.
        let deadline = Deadline::new(crate::clock::now(), Duration::from_millis(100));
        let work = |_index: usize| std::thread::sleep(Duration::from_millis(10));
        let stopped = pool(2).install(|| run_chunks(64, scheduler, Delay::None, deadline, work));
        let Stopped { done, total } = stopped.expect_err("the deadline passed during the pass");
        assert_eq!(total, 64);
        assert!((1..=30).contains(&done), "{scheduler:?}: {done} chunks done by a 100 ms deadline");
    }
}

#[test]
fn an_injected_sleep_ends_at_the_deadline() {
    // A minute's stall or slow sleep under a 50 ms deadline, with chunks of 5 ms that
    // the other worker cannot finish alone by then: the pass gives up within seconds
    // (the bound is loose for a loaded machine, and far below the minute).
    let minute = Duration::from_secs(60);
    for delay in [Delay::Stall(minute), Delay::SlowWorker(minute)] {
        for scheduler in ALL_SCHEDULERS {
            let start = crate::clock::now();
            let deadline = Deadline::new(start, Duration::from_millis(50));
            let work = |_index: usize| std::thread::sleep(Duration::from_millis(5));
            let stopped = pool(2).install(|| run_chunks(64, scheduler, delay, deadline, work));
            let Stopped { done, total } = stopped.expect_err("the deadline passed during the sleep");
            assert_eq!(total, 64);
            assert!(done < 64, "{delay:?} {scheduler:?}: {done} chunks done");
            assert!(start.elapsed() < Duration::from_secs(20), "{delay:?} {scheduler:?}: {:?}", start.elapsed());
        }
    }
}

#[test]
fn every_family_stops_at_the_deadline_and_runs_in_full_after() {
    let families: [&[(&str, Value)]; 8] = [
        &[("family", Value::from("import")), ("method", Value::from("mmap"))],
        &[("family", Value::from("import")), ("method", Value::from("rewrite"))],
        &[("family", Value::from("import")), ("method", Value::from("memcpy_hot"))],
        &[("family", Value::from("import")), ("method", Value::from("memcpy_fresh"))],
        &[("family", Value::from("import")), ("method", Value::from("pwrite"))],
        &[("family", Value::from("read")), ("source", Value::from("memory"))],
        &[("family", Value::from("read")), ("source", Value::from("mmap")), ("cache", Value::from("hot"))],
        &[("family", Value::from("sched"))],
    ];
    for family in families {
        let mut pairs = family.to_vec();
        pairs.push(("size", Value::Int(1 << 20)));
        pairs.push(("chunk", Value::Int(1 << 16)));
        let params = validated(&pairs);
        let directory = tempfile::tempdir().expect("a temporary directory");
        let mut instance =
            Io.instantiate(&params, &RunContext::outside_harness(1, 1, directory.path())).expect("an instance");
        instance.setup(&mut Probe::default()).expect("set-up");
        let message = format!("{:#}", instance.run(&mut Probe::past_deadline()).expect_err("past the deadline"));
        assert!(message.contains("stopped after 0 of 16 chunks"), "{family:?}: {message}");
        // The same instance runs in full when its time is not up.
        instance.run(&mut Probe::default()).unwrap_or_else(|error| panic!("{family:?}: {error:#}"));
    }
}

#[test]
fn the_stall_bound_follows_the_model() {
    let milliseconds = Duration::from_millis;
    assert_eq!(stall_bound(milliseconds(50), milliseconds(40), 4, 2), milliseconds(60));
    assert_eq!(stall_bound(milliseconds(10), milliseconds(40), 4, 2), milliseconds(40));
    assert_eq!(stall_bound(milliseconds(10), milliseconds(40), 4, 1), milliseconds(50));
    // 2^32 chunks (a u32 count wraps to 0 there): each takes almost nothing.
    assert_eq!(stall_bound(milliseconds(50), milliseconds(40), 1 << 32, 2), milliseconds(50));
}

#[test]
fn latency_percentiles_use_nearest_rank() {
    let latencies: Vec<u64> = (1..=200).rev().collect();
    let summary = LatencySummary::of(&latencies);
    assert_eq!((summary.p50_ns, summary.p99_ns, summary.max_ns), (100, 198, 200));
    assert_eq!(LatencySummary::of(&[]), LatencySummary::default());
    assert_eq!(LatencySummary::of(&[5]).p99_ns, 5);
}

#[test]
fn chunk_plans_cover_the_length() {
    let plan = ChunkPlan::new(10, 4);
    assert_eq!(plan.count(), 3);
    assert_eq!([plan.range(0), plan.range(1), plan.range(2)], [0..4, 4..8, 8..10]);
    assert_eq!(ChunkPlan::new(0, 4).count(), 0);
}

fn source_bytes(len: usize) -> Vec<u8> {
    let mut values = vec![0.0; len / 8];
    data::fill_values(&mut values, 11);
    data::f64_bytes(&values).to_vec()
}

#[test]
fn copies_and_writes_hold_exactly_the_source_bytes() {
    let source = source_bytes(300_016);
    let mut destination = vec![0_u8; source.len()];
    pool(2).install(|| copy_chunks(&source, &mut destination, 4096, Deadline::never())).expect("a copy");
    assert!(destination == source);

    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("written.bin");
    let file = std::fs::File::create(&path).expect("a file");
    pool(2).install(|| pwrite_chunks(&source, &file, 65_536, Deadline::never())).expect("pwrite");
    drop(file);
    assert!(std::fs::read(&path).expect("the file") == source);
}

// The kernel interface, end to end on small sizes.

struct KernelRun {
    probes: Vec<Probe>,
    outputs: Vec<Output>,
    leftover_files: Vec<String>,
}

fn given(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
}

fn validated(pairs: &[(&str, Value)]) -> Params {
    Params::validate(&Io.params(), &given(pairs), false).expect("valid parameters")
}

fn run_kernel(pairs: &[(&str, Value)], threads: usize, samples: usize) -> KernelRun {
    let params = validated(pairs);
    let resources = Io.check(&params).expect("the check passes");
    assert!(resources.memory_bytes >= params.int("size") as u64 / 8);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let context = RunContext::outside_harness(1, threads, directory.path());
    let declared: Vec<&str> = Io.metrics().iter().map(|metric| metric.name).collect();
    let (probes, outputs) = pool(threads).install(|| {
        let mut instance = Io.instantiate(&params, &context).expect("an instance");
        let mut setup_probe = Probe::default();
        instance.setup(&mut setup_probe).expect("set-up");
        let mut probes = Vec::new();
        for _ in 0..samples {
            let mut probe = Probe::default();
            instance.run(&mut probe).expect("a sample");
            probes.push(probe);
        }
        (probes, instance.outputs())
    });
    for probe in &probes {
        for (name, value) in probe.metrics() {
            assert!(declared.contains(&name.as_str()), "metric `{name}` is not declared");
            assert!(value.is_finite(), "metric `{name}` is {value}");
        }
    }
    let leftover_files = std::fs::read_dir(directory.path())
        .expect("the scratch directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    KernelRun { probes, outputs, leftover_files }
}

fn metric(probe: &Probe, name: &str) -> f64 {
    probe.metric_value(name).unwrap_or_else(|| panic!("metric `{name}` was not recorded"))
}

/// Equal up to rounding: figures computed from the same durations in another order.
fn close_to(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-6 * expected.abs()
}

/// The byte accounting every import and read sample shares (see the kernel's module
/// documentation): the step reported to the harness is the sum of the phases the sample
/// recorded of `prepare`, `transfer` and `sync`, and `bw_bytes` and `bw_gbps` count
/// `size` bytes over it, per second and in decimal gigabytes per second.
fn assert_step_figures(probe: &Probe, size: i64, label: &str) {
    let seconds = |name: &str| probe.metric_value(name).unwrap_or(0.0);
    let step = seconds("prepare_s") + seconds("transfer_s") + seconds("sync_s");
    let reported = probe.elapsed_override.expect("the sample reports its step").as_secs_f64();
    assert!(close_to(reported, step), "{label}: a step of {reported} s, phases of {step} s");
    let bytes = size as f64;
    assert!(close_to(metric(probe, "bw_bytes"), bytes / step), "{label}: bw_bytes {}", metric(probe, "bw_bytes"));
    assert!(close_to(metric(probe, "bw_gbps"), bytes / step / 1e9), "{label}: bw_gbps {}", metric(probe, "bw_gbps"));
}

fn digest_output(outputs: &[Output], name: &str) -> String {
    match outputs.iter().find(|output| output.name == name).map(|output| &output.data) {
        Some(OutputData::Digest(text)) => text.clone(),
        other => panic!("output `{name}` is {other:?}"),
    }
}

fn sum_output(outputs: &[Output]) -> f64 {
    match outputs.iter().find(|output| output.name == "sum").map(|output| &output.data) {
        Some(OutputData::F64(values)) if values.len() == 1 => values[0],
        other => panic!("output `sum` is {other:?}"),
    }
}

const SMALL: i64 = 1 << 20;

#[test]
fn every_import_method_holds_the_source_bytes() {
    let size = SMALL + 24;
    let expected = format!("{:016x}", data::digest(&source_bytes(size as usize)));
    let variants: Vec<Vec<(&str, Value)>> = vec![
        vec![("method", "mmap".into())],
        vec![("method", "mmap".into()), ("preallocate", "ftruncate".into()), ("durable", true.into())],
        vec![("method", "mmap".into()), ("prefault", true.into()), ("hugepage", true.into())],
        vec![("method", "rewrite".into())],
        vec![("method", "rewrite".into()), ("hugepage", true.into())],
        vec![("method", "memcpy_hot".into())],
        vec![("method", "memcpy_hot".into()), ("hugepage", true.into())],
        vec![("method", "memcpy_fresh".into())],
        vec![("method", "memcpy_fresh".into()), ("hugepage", true.into())],
        vec![("method", "pwrite".into())],
        vec![("method", "pwrite_fsync".into())],
    ];
    for variant in variants {
        let mut pairs = vec![
            ("family", Value::from("import")),
            ("size", Value::Int(size)),
            ("chunk", Value::Int(65_536)),
            ("data_seed", Value::Int(11)),
        ];
        pairs.extend(variant.iter().cloned());
        let params = validated(&pairs);
        let method = params.text("method");
        let durable = params.bool("durable") || method == "pwrite_fsync";
        let gigabytes = size as f64 / 1e9;
        let run = run_kernel(&pairs, 2, 2);
        for probe in &run.probes {
            assert_eq!(metric(probe, "verified"), 1.0, "{variant:?}");
            assert!(metric(probe, "bw_gbps") > 0.0);
            assert!(metric(probe, "clat_max_ns") >= metric(probe, "clat_p50_ns"));
            assert_step_figures(probe, size, &format!("{variant:?}"));
            // The named phases' figures, over `size` bytes each.
            let seconds = |name: &str| probe.metric_value(name).unwrap_or(0.0);
            let (prepare, transfer, sync) = (seconds("prepare_s"), seconds("transfer_s"), seconds("sync_s"));
            assert!(transfer > 0.0, "{variant:?}");
            assert!(close_to(metric(probe, "copy_phase_gbps"), gigabytes / transfer), "{variant:?}");
            if method != "rewrite" && method != "memcpy_hot" {
                assert!(prepare > 0.0, "{variant:?}");
                assert!(close_to(metric(probe, "import_gbps"), gigabytes / (prepare + transfer)), "{variant:?}");
            }
            assert_eq!(sync > 0.0, durable, "{variant:?}: sync {sync} s");
            assert_eq!(probe.metric_value("durable_gbps").is_some(), durable, "{variant:?}");
            if durable {
                let expected = gigabytes / (prepare + transfer + sync);
                assert!(close_to(metric(probe, "durable_gbps"), expected), "{variant:?}");
            }
            if method == "rewrite" {
                assert!(close_to(metric(probe, "rewrite_gbps"), gigabytes / transfer), "{variant:?}");
            }
            if method == "mmap" {
                let expected = if params.text("preallocate") == "ftruncate" { 2.0 } else { 1.0 };
                assert_eq!(metric(probe, "preallocate_code"), expected, "{variant:?}");
            }
            // Every sample of a method that maps or allocates its destination says
            // whether it was advised: 1 accepted or -1 refused with the advice, 0 without.
            if !method.starts_with("pwrite") {
                let code = metric(probe, "advice_code");
                let advised = params.bool("hugepage");
                assert!(if advised { code == 1.0 || code == -1.0 } else { code == 0.0 }, "{variant:?}: {code}");
            }
        }
        assert_eq!(digest_output(&run.outputs, "digest"), expected, "{variant:?}");
        assert!(run.leftover_files.is_empty(), "{variant:?} left {:?} behind", run.leftover_files);
    }
}

#[test]
fn durable_imports_time_the_sync() {
    let run = run_kernel(
        &[
            ("family", "import".into()),
            ("size", Value::Int(SMALL)),
            ("method", "mmap".into()),
            ("durable", true.into()),
        ],
        1,
        1,
    );
    let probe = &run.probes[0];
    assert!(metric(probe, "sync_s") > 0.0);
    assert!(metric(probe, "durable_gbps") <= metric(probe, "import_gbps"));
    assert_eq!(metric(probe, "preallocate_code"), 1.0);
}

#[test]
fn reads_from_a_file_and_from_memory_give_the_same_sum() {
    // More than one batch of the file's writer (8 MiB), so its later batches must
    // continue the values where the first left off.
    let size = 9 * SMALL + 8 * 1000;
    let mut values = vec![0.0; size as usize / 8];
    data::fill_values(&mut values, 5);
    let expected = chunked_sum_reference(&values, 65_536 / 8);
    let variants: Vec<(Vec<(&str, Value)>, usize)> = vec![
        (vec![("source", "memory".into())], 1),
        (vec![("source", "memory".into()), ("advice", "hugepage".into())], 2),
        (vec![("source", "mmap".into())], 2),
        (vec![("source", "mmap".into()), ("cache", "cold".into())], 2),
        (vec![("source", "mmap".into()), ("advice", "populate".into())], 1),
        (vec![("source", "mmap".into()), ("advice", "sequential".into())], 3),
        (vec![("source", "mmap".into()), ("advice", "willneed".into())], 2),
    ];
    for (variant, threads) in variants {
        let mut pairs = vec![
            ("family", Value::from("read")),
            ("size", Value::Int(size)),
            ("chunk", Value::Int(65_536)),
            ("data_seed", Value::Int(5)),
        ];
        pairs.extend(variant.iter().cloned());
        let params = validated(&pairs);
        let run = run_kernel(&pairs, threads, 2);
        assert_eq!(sum_output(&run.outputs).to_bits(), expected.to_bits(), "{variant:?}");
        for probe in &run.probes {
            assert!(metric(probe, "bw_gbps") > 0.0);
            assert_step_figures(probe, size, &format!("{variant:?}"));
            // A hot read finds the file it just wrote cached; a cold one finds it evicted
            // (tmpfs cannot evict what it holds in memory).
            if params.text("source") == "mmap" {
                let resident = metric(probe, "resident_before");
                if params.text("cache") == "hot" {
                    assert_eq!(resident, 1.0, "{variant:?}");
                } else if metric(probe, "fs_tmpfs") == 0.0 {
                    assert!(resident <= 0.1, "{variant:?}: {resident} of the file was cached");
                }
            }
            // 0 without advice, 1 accepted; whether hugepages are is the machine's choice.
            match params.text("advice") {
                "none" => assert_eq!(metric(probe, "advice_code"), 0.0, "{variant:?}"),
                "hugepage" => {}
                _ => assert_eq!(metric(probe, "advice_code"), 1.0, "{variant:?}"),
            }
        }
        assert!(run.leftover_files.is_empty(), "{variant:?} left {:?} behind", run.leftover_files);
    }
}

#[test]
fn every_scheduler_and_delay_gives_the_same_sum() {
    let size = 2 * SMALL;
    let mut values = vec![0.0; size as usize / 8];
    data::fill_values(&mut values, 1);
    let expected = chunked_sum_reference(&values, 32_768 / 8);
    for scheduler in Scheduler::NAMES {
        for delay in ["none", "stall", "slow_worker"] {
            let pairs = [
                ("family", Value::from("sched")),
                ("size", Value::Int(size)),
                ("chunk", Value::Int(32_768)),
                ("scheduler", Value::from(*scheduler)),
                ("delay", Value::from(delay)),
                ("stall_ms", Value::Float(if delay == "stall" { 3.0 } else { 0.0 })),
            ];
            let run = run_kernel(&pairs, 2, 1);
            assert_eq!(sum_output(&run.outputs).to_bits(), expected.to_bits(), "{scheduler} {delay}");
            let probe = &run.probes[0];
            assert!(metric(probe, "makespan_s") > 0.0);
            if delay == "stall" {
                // Only the static schedule guarantees worker 0 a chunk; with the others a
                // late-waking worker 0 may find none left on such a small pass.
                let stall = metric(probe, "stall_s");
                if *scheduler == "static" || stall > 0.0 {
                    assert!(stall >= 0.003, "{scheduler}: stall {stall}");
                    // No schedule can beat worker 0's stalled first chunk.
                    assert!(metric(probe, "makespan_s") >= stall);
                }
                assert!(metric(probe, "makespan_over_bound") > 0.0);
            }
            if delay == "slow_worker" {
                // Worker 0 sleeps after each of its chunks, and the static schedule
                // gives it half of them.
                let slept = metric(probe, "slow_sleep_s");
                assert!(slept >= 0.0 && (*scheduler != "static" || slept > 0.0), "{scheduler}: slept {slept}");
            }
        }
    }
}

/// A stalled pass's figures follow the model of the `sched` module: the default stall is
/// 1.5 times the calibrated single-thread time (a sleep never ends early, so the stall
/// measured is at least that), `B = max(D + t_chunk, t_single)` on two workers,
/// `makespan_over_bound = makespan / B` and `speedup = t_single / makespan`. 16 MiB make
/// `t_single` long enough that a different multiple of it shows beside the sleep's
/// overshoot.
#[test]
fn a_stalled_sched_pass_reports_the_documented_figures() {
    let (size, chunk) = (16 * SMALL, 1 << 20);
    let pairs = [
        ("family", Value::from("sched")),
        ("size", Value::Int(size)),
        ("chunk", Value::Int(chunk)),
        ("scheduler", Value::from("static")),
        ("delay", Value::from("stall")),
    ];
    let run = run_kernel(&pairs, 2, 1);
    let probe = &run.probes[0];
    let (stall, t_single, makespan) =
        (metric(probe, "stall_s"), metric(probe, "t_single_s"), metric(probe, "makespan_s"));
    assert!(t_single > 0.0 && stall >= 1.5 * t_single, "stall {stall} s, t_single {t_single} s");
    let bound = (stall + t_single / (size / chunk) as f64).max(t_single);
    assert!(close_to(metric(probe, "bound_s"), bound), "bound {} s, not {bound} s", metric(probe, "bound_s"));
    assert!(close_to(metric(probe, "makespan_over_bound"), makespan / metric(probe, "bound_s")));
    assert!(close_to(metric(probe, "speedup"), t_single / makespan));
}

#[test]
fn every_bits_path_gives_the_same_result() {
    for op in super::bits::workload::BitsOp::NAMES {
        let mut results = Vec::new();
        let features = CpuFeatures::detect();
        let requests = [
            ("scalar", BitsPath::Scalar),
            ("portable", BitsPath::Portable),
            ("avx2", BitsPath::Avx2),
            ("avx512", BitsPath::Avx512),
            ("simd", BitsPath::Avx512),
        ];
        for (path, requested) in requests {
            let pairs = [
                ("family", Value::from("bits")),
                ("size", Value::Int(4096 + 40)),
                ("op", Value::from(*op)),
                ("path", Value::from(path)),
                ("pass_bytes", Value::Int(20_000)),
            ];
            let run = run_kernel(&pairs, 1, 1);
            let probe = &run.probes[0];
            assert_eq!(metric(probe, "passes"), 5.0);
            // The path asked for runs, or the best one below it that this CPU has.
            assert_eq!(metric(probe, "path_code"), requested.resolve(&features).code(), "{op} on {path}");
            results.push(digest_output(&run.outputs, "result"));
        }
        assert!(results.windows(2).all(|pair| pair[0] == pair[1]), "{op}: {results:?}");
    }
}

#[test]
fn bits_passes_stop_at_the_deadline() {
    // A pass over 1 MiB asks after every pass; passes over 4 KiB ask once per 256
    // passes (1 MiB of input).
    for (size, pass_bytes, expected) in [(1 << 20, 4 << 20, "1 of 4"), (4096, 8 << 20, "256 of 2048")] {
        let params = validated(&[
            ("family", Value::from("bits")),
            ("size", Value::Int(size)),
            ("op", Value::from("popcount")),
            ("pass_bytes", Value::Int(pass_bytes)),
        ]);
        let directory = tempfile::tempdir().expect("a temporary directory");
        let mut instance =
            Io.instantiate(&params, &RunContext::outside_harness(1, 1, directory.path())).expect("an instance");
        instance.setup(&mut Probe::default()).expect("set-up");
        let message = format!("{:#}", instance.run(&mut Probe::past_deadline()).expect_err("past the deadline"));
        assert!(message.contains(&format!("stopped after {expected} passes")), "{message}");
        // The same instance runs in full when its time is not up.
        instance.run(&mut Probe::default()).expect("a sample");
    }
}

/// The names a spec uses select the scheduler and the bit operation they say; the paths'
/// agreement cannot tell `and` from `or` when both run the same operation.
#[test]
fn scheduler_and_bits_operation_names_select_what_they_say() {
    use super::bits::workload::BitsOp;
    let schedulers: Vec<Option<Scheduler>> = Scheduler::NAMES.iter().map(|name| Scheduler::parse(name)).collect();
    assert_eq!(schedulers, ALL_SCHEDULERS.map(Some));
    let operations: Vec<Option<BitsOp>> = BitsOp::NAMES.iter().map(|name| BitsOp::parse(name)).collect();
    let expected = [
        BitsOp::Popcount,
        BitsOp::PopcountAnd,
        BitsOp::Binary(BinaryOp::Xor),
        BitsOp::Binary(BinaryOp::And),
        BitsOp::Binary(BinaryOp::Or),
        BitsOp::Not,
        BitsOp::Pack,
        BitsOp::Unpack,
    ];
    assert_eq!(operations, expected.map(Some));
}

/// The bits family's byte accounting (see the kernel's module documentation): the input
/// operands read per pass, two for `popcount_and` and the binary operations, `size` bool
/// bytes for pack and `size / 8` packed bytes, rounded up, for unpack.
#[test]
fn bits_operations_count_the_bytes_of_their_inputs() {
    use super::bits::workload::BitsOp;
    let size = 4100;
    for (name, expected) in [
        ("popcount", size),
        ("popcount_and", 2 * size),
        ("xor", 2 * size),
        ("and", 2 * size),
        ("or", 2 * size),
        ("not", size),
        ("pack", size),
        ("unpack", 513),
    ] {
        let operation = BitsOp::parse(name).expect("a bits operation");
        assert_eq!(operation.input_bytes(size), expected, "{name}");
    }
}

#[test]
fn contradictory_parameters_are_refused() {
    let refused = |pairs: &[(&str, Value)], fragment: &str| {
        let message = Io.check(&validated(pairs)).expect_err("refused");
        assert!(message.contains(fragment), "`{message}` does not mention `{fragment}`");
    };
    refused(&[("family", "read".into()), ("source", "memory".into()), ("cache", "cold".into())], "cold");
    refused(&[("family", "import".into()), ("method", "pwrite".into()), ("durable", true.into())], "pwrite_fsync");
    refused(&[("family", "import".into()), ("method", "rewrite".into()), ("prefault", true.into())], "prefault");
    refused(&[("family", "import".into()), ("size", Value::Int(1001))], "size 1001 is not a multiple of 8");
    refused(
        &[("family", "bits".into()), ("op", "pack".into()), ("size", Value::Int(1001))],
        "(bytes of payload, or bools to pack or unpack)",
    );
    refused(&[("family", "sched".into()), ("chunk", Value::Int(100))], "8-byte");
    // A parameter the run would ignore, of another family or of a method that does not
    // use it, is refused: the run would measure something else than asked for.
    refused(&[("family", "read".into()), ("hugepage", true.into())], "`hugepage` applies to family import, not read");
    refused(&[("family", "bits".into()), ("chunk", Value::Int(64))], "`chunk` applies to family import, read, sched");
    refused(&[("family", "import".into()), ("op", "xor".into())], "`op` applies to family bits, not import");
    let preallocated =
        [("family", "import".into()), ("method", "memcpy_hot".into()), ("preallocate", "ftruncate".into())];
    refused(&preallocated, "`preallocate` applies to methods mmap and rewrite");
    // Defaults of other families, and a delay's duration under another delay (one
    // workload may vary `delay`), are fine.
    for accepted in
        [vec![("family", "bits".into())], vec![("family", "sched".into()), ("stall_ms", Value::Float(40.0))]]
    {
        assert!(Io.check(&validated(&accepted)).is_ok(), "{accepted:?}");
    }
}

#[test]
fn resource_estimates_count_memory_and_disk() {
    let estimate = |pairs: &[(&str, Value)]| IoParams::from_params(&validated(pairs)).expect("valid").resources();
    let gib = 1_u64 << 30;
    // Source and destination, and 64 bytes for each of the 1024 chunks of 1 MiB.
    let import = estimate(&[("family", "import".into())]);
    assert_eq!((import.memory_bytes, import.disk_bytes), (2 * gib + 1024 * 64, gib));
    // Chunks of 64 bytes: as many bytes of bookkeeping as of data.
    let sched = estimate(&[("family", "sched".into()), ("chunk", Value::Int(64))]);
    assert_eq!(sched.memory_bytes, 2 * gib);
    let hot = estimate(&[("family", "import".into()), ("method", "memcpy_hot".into())]);
    assert_eq!(hot.disk_bytes, 0);
    let xor = estimate(&[("family", "bits".into()), ("op", "xor".into()), ("size", Value::Int(1024))]);
    assert_eq!(xor.memory_bytes, 3 * 1024);
}

#[test]
fn the_experiment_spec_is_valid_with_and_without_its_ci_profile() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/io.toml");
    for profile in [None, Some("ci".to_owned())] {
        let overrides = crate::spec::Overrides { profile: profile.clone(), ..crate::spec::Overrides::default() };
        let spec = crate::spec::load(&path, &overrides).unwrap_or_else(|error| panic!("{error}"));
        let plan = crate::plan::expand(spec, crate::plan::Selection::default(), &|_| false)
            .unwrap_or_else(|error| panic!("{error}"));
        for phase in &plan.phases {
            for check in &phase.checks {
                assert!(!check.points.is_empty(), "check `{}` has no points under {profile:?}", check.check.id);
            }
            for run in &phase.runs {
                let params = IoParams::from_params(&run.params).expect("every run's parameters are consistent");
                if profile.is_some() {
                    assert!(params.resources().memory_bytes <= 1 << 30, "{} is too big for the ci profile", run.name());
                }
            }
        }
    }
}

#[test]
fn scratch_files_are_removed_when_an_instance_is_dropped_early() {
    let variants: [Vec<(&str, Value)>; 2] = [
        vec![("family", "import".into()), ("method", "rewrite".into())],
        vec![("family", "read".into()), ("source", "mmap".into()), ("cache", "cold".into())],
    ];
    for mut pairs in variants {
        pairs.push(("size", Value::Int(SMALL)));
        // Set up, then dropped without a single sample (as after a failing partner).
        let run = run_kernel(&pairs, 1, 0);
        assert!(run.outputs.is_empty());
        assert!(run.leftover_files.is_empty(), "{pairs:?} left {:?} behind", run.leftover_files);
    }
}

/// `memcpy_hot`'s destination is provisioned before its samples: a fresh anonymous
/// buffer has no page resident, a pre-faulted one has them all (`mincore` touches none).
#[cfg(target_os = "linux")]
#[test]
fn a_prefaulted_buffer_has_every_page_resident() {
    let page = super::sys::page_size();
    let (mut buffer, _) = data::AlignedBuffer::new(64 * page + 24, false).unwrap();
    assert_eq!(super::sys::resident_pages(buffer.bytes()).unwrap(), 0);
    buffer.prefault();
    assert_eq!(super::sys::resident_pages(buffer.bytes()).unwrap(), 65);
}

/// The per-chunk bound of the memory estimates covers what a pass holds per chunk at
/// once: the slot of its result and latency while the results and latencies are
/// gathered (the sorted copy of the latencies comes after the slots are gone), and a
/// copy's lock on its piece of the destination.
#[test]
fn the_bookkeeping_bound_covers_what_a_pass_holds_per_chunk() {
    use std::mem::size_of;
    let gathering = size_of::<std::sync::OnceLock<(f64, u64)>>() + size_of::<f64>() + size_of::<u64>();
    let sorting = size_of::<f64>() + 2 * size_of::<u64>();
    let lock = size_of::<std::sync::Mutex<&mut [u8]>>();
    let held = gathering.max(sorting) + lock;
    assert!(held as u64 <= super::schedule::BOOKKEEPING_PER_CHUNK, "{held} bytes per chunk");
    assert_eq!(super::schedule::bookkeeping_bytes(1000, 64), 16 * super::schedule::BOOKKEEPING_PER_CHUNK);
}
