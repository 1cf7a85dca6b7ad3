//! The `read` family: reduce every f64 of a memory-mapped file, against the same
//! reduction over a pre-faulted in-memory buffer (what NumPy's `a.sum()` measures).
//!
//! `setup` writes the payload to a scratch file in batches (so memory holds the page
//! cache plus one batch, never a second full copy), `fsync`ing it for a cold read, or
//! fills the in-memory buffer. Each sample then:
//! - `cache = "cold"`: drops the file's pages with `posix_fadvise(POSIX_FADV_DONTNEED)`
//!   (possible because the pages are clean after the `fsync`; no root needed). Both
//!   variants record `resident_before`, the cached fraction measured with `mincore`,
//!   and a cold sample that still found more than 10 % cached is flagged.
//! - prepare phase: map the file read-only with `advice` (`populate` = `MAP_POPULATE`,
//!   `sequential` / `willneed` / `hugepage` = `madvise`).
//! - transfer phase: the chunked reduction ([`reduce_chunks`]), dynamic claiming.
//! - the step ends; unmapping is timed separately as `teardown_s`.
//!
//! The output `sum` is the reduction of the whole payload: per-chunk [`sum_f64`]s
//! added in chunk order, identical for both sources and any thread count.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use memmap2::{Mmap, MmapOptions};

use super::data::{self, AlignedBuffer, GENERATION_BLOCK, f64_view, sum_f64};
use super::schedule::{ChunkPlan, ChunkRun, Delay, Scheduler, run_chunks};
use super::sys::{self, Usage};
use super::{Environment, record_latencies, record_step};
use crate::kernel::{Deadline, Instance, Output, OutputData, Params, Probe, Resources, RunContext};

/// Values generated and written per batch while creating the file (8 MiB).
const WRITE_BATCH_VALUES: usize = 128 * GENERATION_BLOCK;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadSource {
    Mmap,
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAdvice {
    None,
    Populate,
    Sequential,
    WillNeed,
    HugePage,
}

impl ReadAdvice {
    pub const NAMES: &'static [&'static str] = &["none", "populate", "sequential", "willneed", "hugepage"];

    fn parse(name: &str) -> Option<ReadAdvice> {
        Some(match name {
            "none" => ReadAdvice::None,
            "populate" => ReadAdvice::Populate,
            "sequential" => ReadAdvice::Sequential,
            "willneed" => ReadAdvice::WillNeed,
            "hugepage" => ReadAdvice::HugePage,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    Hot,
    Cold,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadParams {
    pub size: usize,
    pub chunk: usize,
    pub data_seed: u64,
    pub source: ReadSource,
    pub advice: ReadAdvice,
    pub cache: CacheState,
}

impl ReadParams {
    pub fn new(source: ReadSource, size: usize) -> ReadParams {
        ReadParams { size, chunk: 1 << 20, data_seed: 1, source, advice: ReadAdvice::None, cache: CacheState::Hot }
    }

    pub(super) fn from_params(params: &Params, size: usize, chunk: usize, data_seed: u64) -> Result<Self, String> {
        let source = if params.text("source") == "memory" { ReadSource::Memory } else { ReadSource::Mmap };
        let advice = ReadAdvice::parse(params.text("advice")).ok_or("unknown advice")?;
        let cache = if params.text("cache") == "cold" { CacheState::Cold } else { CacheState::Hot };
        if cache == CacheState::Cold && source == ReadSource::Memory {
            return Err("`cache = \"cold\"` applies to source mmap".into());
        }
        if source == ReadSource::Memory && !matches!(advice, ReadAdvice::None | ReadAdvice::HugePage) {
            return Err("source memory takes advice none or hugepage".into());
        }
        Ok(ReadParams { size, chunk, data_seed, source, advice, cache })
    }

    pub(super) fn resources(&self) -> Resources {
        let size = self.size as u64;
        let bookkeeping = super::schedule::bookkeeping_bytes(self.size, self.chunk);
        match self.source {
            ReadSource::Memory => Resources { memory_bytes: size + bookkeeping, disk_bytes: 0 },
            ReadSource::Mmap => {
                let batch = (WRITE_BATCH_VALUES * 8) as u64;
                Resources { memory_bytes: size + batch.min(size) + bookkeeping, disk_bytes: size }
            }
        }
    }
}

/// Reduces `values` in chunks of `chunk_values` with dynamic claiming on the current
/// pool, giving up at `deadline`; the total adds the per-chunk sums in chunk order.
pub fn reduce_chunks(values: &[f64], chunk_values: usize, deadline: Deadline) -> anyhow::Result<(f64, ChunkRun<f64>)> {
    let plan = ChunkPlan::new(values.len(), chunk_values);
    let run = run_chunks(plan.count(), Scheduler::Dynamic, Delay::None, deadline, |index| {
        sum_f64(&values[plan.range(index)])
    })
    .map_err(|stopped| deadline.stopped(stopped, "chunks"))?;
    let total = run.results.iter().fold(0.0, |total, partial| total + partial);
    Ok((total, run))
}

/// Writes the seeded payload of `size` bytes to `path` in batches, and syncs it when
/// `durable` (a cold read needs clean pages to evict; a hot read only cached ones, and
/// its scratch file is deleted before the kernel would write it back).
fn write_payload(path: &std::path::Path, size: usize, seed: u64, durable: bool) -> anyhow::Result<File> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let values = size / 8;
    let mut batch = vec![0.0_f64; WRITE_BATCH_VALUES.min(values)];
    let mut written = 0;
    while written < values {
        let count = (values - written).min(batch.len());
        data::fill_values_from(&mut batch[..count], seed, written / GENERATION_BLOCK);
        file.write_all(data::f64_bytes(&batch[..count])).context("cannot write the payload")?;
        written += count;
    }
    if durable {
        file.sync_all().context("cannot sync the payload")?;
    }
    Ok(file)
}

/// The scratch file of a read run, removed when dropped.
struct PayloadFile {
    file: File,
    path: PathBuf,
}

impl Drop for PayloadFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct ReadInstance {
    params: ReadParams,
    scratch_dir: PathBuf,
    environment: Environment,
    payload: Option<PayloadFile>,
    memory: Option<AlignedBuffer>,
    memory_advice: Option<std::io::Result<()>>,
    last_sum: Option<f64>,
}

impl ReadInstance {
    pub fn new(params: ReadParams, context: &RunContext, environment: Environment) -> ReadInstance {
        ReadInstance {
            params,
            scratch_dir: context.scratch_dir.clone(),
            environment,
            payload: None,
            memory: None,
            memory_advice: None,
            last_sum: None,
        }
    }

    fn run_mmap(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let payload = self.payload.as_ref().context("set-up did not run")?;
        if self.params.cache == CacheState::Cold {
            sys::evict_from_page_cache(&payload.file).context("cannot evict the file from the page cache")?;
        }
        match sys::resident_fraction(&payload.file, self.params.size) {
            Ok(fraction) => {
                probe.metric("resident_before", fraction);
                if self.params.cache == CacheState::Cold && fraction > 0.1 {
                    probe.warn(format!(
                        "cold read: {:.0} % of the file was still cached after eviction",
                        fraction * 100.0
                    ));
                }
            }
            Err(error) => probe.warn(format!("cannot measure page-cache residency: {error}")),
        }
        let usage_before = Usage::now();
        let start = probe.start();
        let map = map_with_advice(&payload.file, &self.params, probe)?;
        let prepare = probe.phase("prepare", start);
        let transfer_start = probe.start();
        let (total, run) = reduce_chunks(f64_view(&map), self.params.chunk / 8, probe.deadline())?;
        let transfer = probe.phase("transfer", transfer_start);
        let elapsed = prepare + transfer;
        let usage = Usage::now().since(usage_before);
        probe.report_elapsed(elapsed);
        record_step(probe, &self.environment, self.params.size as f64, elapsed, usage);
        record_latencies(probe, &run);
        let teardown_start = probe.start();
        drop(map);
        probe.phase("teardown", teardown_start);
        self.last_sum = Some(total);
        Ok(())
    }

    fn run_memory(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let buffer = self.memory.as_ref().context("set-up did not run")?;
        let usage_before = Usage::now();
        let start = probe.start();
        let (total, run) = reduce_chunks(buffer.values(), self.params.chunk / 8, probe.deadline())?;
        let transfer = probe.phase("transfer", start);
        let usage = Usage::now().since(usage_before);
        probe.report_elapsed(transfer);
        record_step(probe, &self.environment, self.params.size as f64, transfer, usage);
        record_latencies(probe, &run);
        let code = match &self.memory_advice {
            None => 0.0,
            Some(Ok(())) => 1.0,
            Some(Err(_)) => -1.0,
        };
        probe.metric("advice_code", code);
        self.last_sum = Some(total);
        Ok(())
    }
}

/// Maps `file` read-only and applies the advice, recording `advice_code`.
fn map_with_advice(file: &File, params: &ReadParams, probe: &mut Probe) -> anyhow::Result<Mmap> {
    let mut options = MmapOptions::new();
    options.len(params.size);
    if params.advice == ReadAdvice::Populate {
        options.populate();
    }
    // SAFETY: the file lives in the run's private scratch directory and nothing writes
    // or truncates it while it is mapped.
    let map = unsafe { options.map(file) }.context("cannot map the file")?;
    let result = apply_read_advice(&map, params.advice);
    let code = match result {
        None => 0.0,
        Some(Ok(())) => 1.0,
        Some(Err(error)) => {
            probe.warn(format!("madvise {:?} was refused: {error}", params.advice));
            -1.0
        }
    };
    probe.metric("advice_code", code);
    Ok(map)
}

#[cfg(unix)]
fn apply_read_advice(map: &Mmap, advice: ReadAdvice) -> Option<std::io::Result<()>> {
    match advice {
        ReadAdvice::None => None,
        // MAP_POPULATE took effect in `map`; there is no separate result.
        ReadAdvice::Populate => Some(Ok(())),
        ReadAdvice::Sequential => Some(map.advise(memmap2::Advice::Sequential)),
        ReadAdvice::WillNeed => Some(map.advise(memmap2::Advice::WillNeed)),
        #[cfg(target_os = "linux")]
        ReadAdvice::HugePage => Some(map.advise(memmap2::Advice::HugePage)),
        #[cfg(not(target_os = "linux"))]
        ReadAdvice::HugePage => Some(Err(std::io::ErrorKind::Unsupported.into())),
    }
}

#[cfg(not(unix))]
fn apply_read_advice(_map: &Mmap, advice: ReadAdvice) -> Option<std::io::Result<()>> {
    (advice != ReadAdvice::None).then(|| Err(std::io::ErrorKind::Unsupported.into()))
}

impl Instance for ReadInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        self.environment.event(probe, "sum_f64");
        match self.params.source {
            ReadSource::Mmap => {
                let path = self.scratch_dir.join("read.bin");
                let durable = self.params.cache == CacheState::Cold;
                let file = write_payload(&path, self.params.size, self.params.data_seed, durable)
                    .inspect_err(|_| drop(std::fs::remove_file(&path)))?;
                self.payload = Some(PayloadFile { file, path });
            }
            ReadSource::Memory => {
                let hugepage = self.params.advice == ReadAdvice::HugePage;
                let (mut buffer, advice) =
                    AlignedBuffer::new(self.params.size, hugepage).context("cannot allocate the buffer")?;
                data::fill_values(buffer.values_mut(), self.params.data_seed);
                self.memory = Some(buffer);
                self.memory_advice = advice;
            }
        }
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        match self.params.source {
            ReadSource::Mmap => self.run_mmap(probe),
            ReadSource::Memory => self.run_memory(probe),
        }
    }

    fn outputs(&mut self) -> Vec<Output> {
        match self.last_sum {
            Some(sum) => vec![Output { name: "sum".into(), shape: vec![1], data: OutputData::F64(vec![sum]) }],
            None => Vec::new(),
        }
    }
}
