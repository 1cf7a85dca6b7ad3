//! Chunk scheduling: how the workers of the current rayon pool share `count` chunks,
//! with optional injected delays on worker 0, and per-chunk latencies.
//!
//! Schedulers (P = workers of the current rayon pool):
//! - `static`: worker `w` takes the contiguous chunks `w * count / P .. (w + 1) * count / P`.
//! - `dynamic`: every worker claims the next chunk from a shared atomic counter until
//!   none remain.
//! - `rayon`: `into_par_iter().with_max_len(1)` over the chunk indices, so work stealing
//!   can move single chunks; `rayon_default` keeps rayon's adaptive splitting, which
//!   leaves coarse ranges on a slow worker.
//!
//! Delays, applied to worker 0 only (pool thread index 0):
//! - `stall(D)`: one sleep of D after its first claim, before it processes that chunk
//!   (a blocking page fault). Any schedule then needs at least `D + t_chunk`.
//! - `slow_worker(S)`: a sleep of S after each chunk it completes.
//!
//! A chunk's latency runs from its claim to the end of its work, so it includes a stall
//! but not the slow worker's sleep after it. The results are returned in chunk order,
//! whatever the schedule, so reductions over them are schedule-independent.
//!
//! A pass gives up at the sample's deadline: every claim compares its own time stamp
//! with it, and once one finds it passed no worker starts another chunk. The chunks
//! already started finish, and the pass reports how many were done. An injected sleep
//! ends at the deadline: a stall cut short there gives up its chunk unprocessed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rayon::prelude::*;

use crate::clock;
use crate::kernel::{Deadline, Stopped};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    Static,
    Dynamic,
    Rayon,
    RayonDefault,
}

impl Scheduler {
    pub const NAMES: &'static [&'static str] = &["static", "dynamic", "rayon", "rayon_default"];

    pub fn parse(name: &str) -> Option<Scheduler> {
        match name {
            "static" => Some(Scheduler::Static),
            "dynamic" => Some(Scheduler::Dynamic),
            "rayon" => Some(Scheduler::Rayon),
            "rayon_default" => Some(Scheduler::RayonDefault),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delay {
    None,
    Stall(Duration),
    SlowWorker(Duration),
}

/// `len` bytes (or values) cut into chunks of `chunk`; the last one may be shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    pub len: usize,
    pub chunk: usize,
}

impl ChunkPlan {
    pub fn new(len: usize, chunk: usize) -> ChunkPlan {
        assert!(chunk > 0, "chunk size must be positive");
        ChunkPlan { len, chunk }
    }

    pub fn count(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    pub fn range(&self, index: usize) -> std::ops::Range<usize> {
        let start = index * self.chunk;
        start..(start + self.chunk).min(self.len)
    }
}

/// A bound on the bytes a scheduled pass keeps per chunk besides its data, for the
/// memory estimates: the chunk's slot, its result and latency, the latencies' sorted
/// copy, and a copy's lock on its piece of the destination (see the test below).
pub const BOOKKEEPING_PER_CHUNK: u64 = 64;

/// The bookkeeping of a pass over `size` bytes in `chunk`-byte chunks.
pub fn bookkeeping_bytes(size: usize, chunk: usize) -> u64 {
    size.div_ceil(chunk.max(1)) as u64 * BOOKKEEPING_PER_CHUNK
}

/// What a scheduled pass produced.
#[derive(Debug)]
pub struct ChunkRun<R> {
    /// One result per chunk, in chunk order.
    pub results: Vec<R>,
    /// Claim-to-done latency of each chunk in nanoseconds, in chunk order.
    pub latencies_ns: Vec<u64>,
    /// How long worker 0 actually slept for the stall (zero without one).
    pub stall: Duration,
    /// The chunk whose claim the stall followed (`None` without one).
    pub stalled_chunk: Option<usize>,
    /// How long worker 0 slept in total as the slow worker.
    pub slow_sleep: Duration,
}

/// Runs `work` on every chunk index `0..count` with `scheduler` on the current rayon
/// pool, injecting `delay` on worker 0; gives up at `deadline` (see the module
/// documentation) with the number of chunks done.
pub fn run_chunks<R, F>(
    count: usize,
    scheduler: Scheduler,
    delay: Delay,
    deadline: Deadline,
    work: F,
) -> Result<ChunkRun<R>, Stopped>
where
    R: Send + Sync,
    F: Fn(usize) -> R + Sync,
{
    let slots: Vec<OnceLock<(R, u64)>> = (0..count).map(|_| OnceLock::new()).collect();
    let stalled = AtomicBool::new(false);
    let stall_ns = AtomicUsize::new(0);
    let stalled_chunk = AtomicUsize::new(usize::MAX);
    let slow_ns = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    // Processes chunk `index` unless the deadline has passed; returns whether it did.
    let process = |index: usize, worker: usize| {
        if stopped.load(Ordering::Relaxed) {
            return false;
        }
        let claimed = clock::now();
        if deadline.passed_at(claimed) {
            stopped.store(true, Ordering::Relaxed);
            return false;
        }
        if worker == 0
            && let Delay::Stall(duration) = delay
            && !stalled.swap(true, Ordering::Relaxed)
        {
            std::thread::sleep(duration.min(deadline.remaining()));
            stall_ns.store(claimed.elapsed().as_nanos() as usize, Ordering::Relaxed);
            stalled_chunk.store(index, Ordering::Relaxed);
            if deadline.passed() {
                stopped.store(true, Ordering::Relaxed);
                return false;
            }
        }
        let result = work(index);
        let latency = claimed.elapsed().as_nanos() as u64;
        if slots[index].set((result, latency)).is_err() {
            panic!("chunk {index} was scheduled twice");
        }
        if worker == 0
            && let Delay::SlowWorker(duration) = delay
        {
            let before = clock::now();
            std::thread::sleep(duration.min(deadline.remaining()));
            slow_ns.fetch_add(before.elapsed().as_nanos() as usize, Ordering::Relaxed);
        }
        true
    };
    match scheduler {
        Scheduler::Static => {
            rayon::broadcast(|context| {
                let (worker, workers) = (context.index(), context.num_threads());
                for index in worker * count / workers..(worker + 1) * count / workers {
                    if !process(index, worker) {
                        break;
                    }
                }
            });
        }
        Scheduler::Dynamic => {
            let next = AtomicUsize::new(0);
            rayon::broadcast(|context| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count || !process(index, context.index()) {
                        break;
                    }
                }
            });
        }
        Scheduler::Rayon => {
            (0..count).into_par_iter().with_max_len(1).for_each(|index| {
                process(index, rayon::current_thread_index().unwrap_or(0));
            });
        }
        Scheduler::RayonDefault => {
            (0..count).into_par_iter().for_each(|index| {
                process(index, rayon::current_thread_index().unwrap_or(0));
            });
        }
    }
    if stopped.into_inner() {
        let done = slots.iter().filter(|slot| slot.get().is_some()).count();
        return Err(Stopped { done, total: count });
    }
    let mut results = Vec::with_capacity(count);
    let mut latencies_ns = Vec::with_capacity(count);
    for (index, slot) in slots.into_iter().enumerate() {
        let (result, latency) = slot.into_inner().unwrap_or_else(|| panic!("chunk {index} never ran"));
        results.push(result);
        latencies_ns.push(latency);
    }
    Ok(ChunkRun {
        results,
        latencies_ns,
        stall: Duration::from_nanos(stall_ns.into_inner() as u64),
        stalled_chunk: Some(stalled_chunk.into_inner()).filter(|&index| index != usize::MAX),
        slow_sleep: Duration::from_nanos(slow_ns.into_inner() as u64),
    })
}

/// Nearest-rank percentiles of per-chunk latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl LatencySummary {
    pub fn of(latencies_ns: &[u64]) -> LatencySummary {
        if latencies_ns.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted = latencies_ns.to_vec();
        sorted.sort_unstable();
        // Nearest rank: the smallest value with at least q of the samples at or below it.
        let rank = |quantile: f64| {
            let rank = (quantile * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        LatencySummary { p50_ns: rank(0.50), p99_ns: rank(0.99), max_ns: sorted[sorted.len() - 1] }
    }
}
