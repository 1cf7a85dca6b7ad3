//! The `import` family: write `size` bytes of payload into a new memory-mapped file,
//! and the in-run references it is judged against.
//!
//! Methods (one per workload; the timed step is listed phase by phase):
//! - `mmap`: prepare = create the file, preallocate it (`fallocate`, or `ftruncate` which
//!   leaves it sparse), map it shared, optionally `MADV_HUGEPAGE` and pre-fault it
//!   writable (`MADV_POPULATE_WRITE`; `MAP_POPULATE` only pre-faults for reading on
//!   shared file mappings; kernels before 5.14 lack the advice, so the fallback writes
//!   one byte per page, recorded as `prefault_code`); transfer = copy; with `durable`,
//!   sync = `msync` + `fsync`.
//! - `rewrite`: the file is created, mapped and filled in `setup`; transfer = copying
//!   the source into the same mapping again (no page faults, only dirtying).
//! - `memcpy_hot`: transfer = copy into an in-memory buffer pre-faulted in `setup`.
//! - `memcpy_fresh`: prepare = map a fresh anonymous region; transfer = copy into it, so
//!   every page is provisioned during the copy, as with a new file.
//! - `pwrite`: prepare = create the file; transfer = `pwrite` of every chunk at its
//!   offset. `pwrite_fsync` adds sync = `fsync`.
//!
//! Every copy and write is the same dynamic chunk loop (workers claim `chunk`-byte
//! pieces from an atomic counter), so candidate and reference differ only in the
//! destination. After the timed step, `verify` compares the destination with the
//! source byte for byte (a mismatch fails the run), and the file is unmapped and
//! removed (`teardown_s`). Scratch files are removed when the instance is dropped, also
//! on errors and panics.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use memmap2::{MmapMut, MmapOptions};

use super::data::{self, AlignedBuffer};
use super::schedule::{ChunkPlan, ChunkRun, Delay, Scheduler, run_chunks};
use super::sys::{self, Usage};
use super::{Environment, gbps, record_latencies, record_step};
use crate::kernel::{Deadline, Instance, Output, OutputData, Params, Probe, Resources, RunContext};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMethod {
    Mmap,
    Rewrite,
    MemcpyHot,
    MemcpyFresh,
    Pwrite,
    PwriteFsync,
}

impl ImportMethod {
    pub const NAMES: &'static [&'static str] =
        &["mmap", "rewrite", "memcpy_hot", "memcpy_fresh", "pwrite", "pwrite_fsync"];

    fn parse(name: &str) -> Option<ImportMethod> {
        Some(match name {
            "mmap" => ImportMethod::Mmap,
            "rewrite" => ImportMethod::Rewrite,
            "memcpy_hot" => ImportMethod::MemcpyHot,
            "memcpy_fresh" => ImportMethod::MemcpyFresh,
            "pwrite" => ImportMethod::Pwrite,
            "pwrite_fsync" => ImportMethod::PwriteFsync,
            _ => return None,
        })
    }

    fn writes_file(self) -> bool {
        matches!(self, ImportMethod::Mmap | ImportMethod::Rewrite | ImportMethod::Pwrite | ImportMethod::PwriteFsync)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocate {
    Fallocate,
    Ftruncate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportParams {
    pub size: usize,
    pub chunk: usize,
    pub data_seed: u64,
    pub method: ImportMethod,
    pub preallocate: Preallocate,
    pub prefault: bool,
    pub hugepage: bool,
    pub durable: bool,
    pub verify: bool,
}

impl ImportParams {
    /// Defaults: 1 GiB, 1 MiB chunks, an `mmap` import into a `fallocate`d file.
    pub fn new(method: ImportMethod, size: usize) -> ImportParams {
        ImportParams {
            size,
            chunk: 1 << 20,
            data_seed: 1,
            method,
            preallocate: Preallocate::Fallocate,
            prefault: false,
            hugepage: false,
            durable: false,
            verify: true,
        }
    }

    pub(super) fn from_params(params: &Params, size: usize, chunk: usize, data_seed: u64) -> Result<Self, String> {
        let method = ImportMethod::parse(params.text("method")).ok_or("unknown import method")?;
        let parsed = ImportParams {
            size,
            chunk,
            data_seed,
            method,
            preallocate: if params.text("preallocate") == "ftruncate" {
                Preallocate::Ftruncate
            } else {
                Preallocate::Fallocate
            },
            prefault: params.bool("prefault"),
            hugepage: params.bool("hugepage"),
            durable: params.bool("durable"),
            verify: params.bool("verify"),
        };
        if parsed.durable && method != ImportMethod::Mmap {
            return Err("`durable` applies to method mmap (use method pwrite_fsync for durable pwrite)".into());
        }
        if parsed.prefault && method != ImportMethod::Mmap {
            return Err("`prefault` applies to method mmap".into());
        }
        if parsed.preallocate == Preallocate::Ftruncate && !matches!(method, ImportMethod::Mmap | ImportMethod::Rewrite)
        {
            return Err("`preallocate` applies to methods mmap and rewrite, which map a new file".into());
        }
        if parsed.hugepage && matches!(method, ImportMethod::Pwrite | ImportMethod::PwriteFsync) {
            return Err("`hugepage` applies to methods that map their destination, not pwrite".into());
        }
        Ok(parsed)
    }

    /// The source and the destination (memory, or the page cache of the file) are both
    /// resident; the file needs `size` bytes of disk.
    pub(super) fn resources(&self) -> Resources {
        let size = self.size as u64;
        let memory_bytes = 2 * size + super::schedule::bookkeeping_bytes(self.size, self.chunk);
        Resources { memory_bytes, disk_bytes: if self.method.writes_file() { size } else { 0 } }
    }
}

/// A file in the scratch directory that is removed when dropped.
struct ScratchFile {
    path: PathBuf,
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A shared mapping of a new scratch file. Fields drop in order: unmap, close, remove.
struct MappedFile {
    map: MmapMut,
    file: File,
    _scratch: ScratchFile,
}

/// How the mapping was prepared, for the `*_code` metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Preparation {
    preallocate_code: f64,
    prefault_code: f64,
    advice_code: f64,
}

fn create_file(path: &Path) -> anyhow::Result<(File, ScratchFile)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file, ScratchFile { path: path.to_path_buf() }))
}

/// Creates, preallocates and maps `path` for writing (see the module doc).
fn map_new_file(path: &Path, params: &ImportParams, probe: &mut Probe) -> anyhow::Result<(MappedFile, Preparation)> {
    let (file, scratch) = create_file(path)?;
    let mut preparation = Preparation::default();
    let size = params.size as u64;
    match params.preallocate {
        Preallocate::Fallocate => match sys::fallocate(&file, size) {
            Ok(()) => preparation.preallocate_code = 1.0,
            Err(error) => {
                probe.warn(format!("fallocate failed ({error}); fell back to ftruncate"));
                file.set_len(size).context("cannot set the file size")?;
                preparation.preallocate_code = 3.0;
            }
        },
        Preallocate::Ftruncate => {
            file.set_len(size).context("cannot set the file size")?;
            preparation.preallocate_code = 2.0;
        }
    }
    // SAFETY: the file was just created in the run's private scratch directory and
    // nothing else opens it while it is mapped.
    let mut map = unsafe { MmapOptions::new().len(params.size).map_mut(&file) }.context("cannot map the file")?;
    if params.hugepage {
        preparation.advice_code = advise(&map, Advice::HugePage, probe);
    }
    if params.prefault {
        preparation.prefault_code = prefault_writable(&mut map, probe);
    }
    Ok((MappedFile { map, file, _scratch: scratch }, preparation))
}

#[derive(Clone, Copy, Debug)]
enum Advice {
    HugePage,
    PopulateWrite,
}

/// Applies `advice`; 1 accepted, -1 refused (with a warning).
fn advise(map: &MmapMut, advice: Advice, probe: &mut Probe) -> f64 {
    #[cfg(target_os = "linux")]
    let result = map.advise(match advice {
        Advice::HugePage => memmap2::Advice::HugePage,
        Advice::PopulateWrite => memmap2::Advice::PopulateWrite,
    });
    #[cfg(not(target_os = "linux"))]
    let result: std::io::Result<()> = {
        let _ = map;
        Err(std::io::ErrorKind::Unsupported.into())
    };
    match result {
        Ok(()) => 1.0,
        Err(error) => {
            probe.warn(format!("madvise {advice:?} was refused: {error}"));
            -1.0
        }
    }
}

/// Pre-faults `map` for writing: `MADV_POPULATE_WRITE`, or one written byte per page
/// where the kernel lacks it. Returns the `prefault_code`.
fn prefault_writable(map: &mut MmapMut, probe: &mut Probe) -> f64 {
    if advise(map, Advice::PopulateWrite, probe) > 0.0 {
        return 1.0;
    }
    let page = sys::page_size();
    for offset in (0..map.len()).step_by(page) {
        map[offset] = 0;
    }
    2.0
}

/// Copies `source` into `destination` with dynamic chunk claiming on the current pool,
/// giving up at `deadline`.
pub fn copy_chunks(
    source: &[u8],
    destination: &mut [u8],
    chunk: usize,
    deadline: Deadline,
) -> anyhow::Result<ChunkRun<()>> {
    assert_eq!(source.len(), destination.len(), "copy between buffers of different sizes");
    let plan = ChunkPlan::new(source.len(), chunk);
    let pieces: Vec<Mutex<&mut [u8]>> = destination.chunks_mut(chunk).map(Mutex::new).collect();
    run_chunks(plan.count(), Scheduler::Dynamic, Delay::None, deadline, |index| {
        let piece = std::mem::take(&mut *pieces[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        piece.copy_from_slice(&source[plan.range(index)]);
    })
    .map_err(|stopped| deadline.stopped(stopped, "chunks"))
}

/// Writes `source` into `file` with `pwrite` per chunk, dynamic chunk claiming, giving
/// up at `deadline`.
pub fn pwrite_chunks(source: &[u8], file: &File, chunk: usize, deadline: Deadline) -> anyhow::Result<ChunkRun<()>> {
    let plan = ChunkPlan::new(source.len(), chunk);
    let run = run_chunks(plan.count(), Scheduler::Dynamic, Delay::None, deadline, |index| {
        let range = plan.range(index);
        write_at(file, &source[range.clone()], range.start as u64)
    })
    .map_err(|stopped| deadline.stopped(stopped, "chunks"))?;
    let ChunkRun { results, latencies_ns, stall, stalled_chunk, slow_sleep } = run;
    for result in results {
        result.context("pwrite failed")?;
    }
    Ok(ChunkRun { results: Vec::new(), latencies_ns, stall, stalled_chunk, slow_sleep })
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_at(_file: &File, _bytes: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

pub struct ImportInstance {
    params: ImportParams,
    scratch_dir: PathBuf,
    environment: Environment,
    source: Option<AlignedBuffer>,
    /// The digest of the first verified sample's destination bytes.
    destination_digest: u64,
    /// The pre-faulted destination of `memcpy_hot`.
    hot_destination: Option<AlignedBuffer>,
    /// The mapped file of `rewrite`.
    rewrite_target: Option<MappedFile>,
    /// `advice_code` of the destination set up before the samples (`memcpy_hot`,
    /// `rewrite`), which every sample records.
    prepared_advice: f64,
    samples: usize,
    samples_verified: usize,
}

impl ImportInstance {
    pub fn new(params: ImportParams, context: &RunContext, environment: Environment) -> ImportInstance {
        ImportInstance {
            params,
            scratch_dir: context.scratch_dir.clone(),
            environment,
            source: None,
            destination_digest: 0,
            hot_destination: None,
            rewrite_target: None,
            prepared_advice: 0.0,
            samples: 0,
            samples_verified: 0,
        }
    }

    fn source(&self) -> &[u8] {
        self.source.as_ref().map_or(&[], AlignedBuffer::bytes)
    }

    /// Checks the destination against the source after a sample (untimed).
    fn verify(&mut self, destination: &[u8], probe: &mut Probe) -> anyhow::Result<()> {
        if !self.params.verify {
            return Ok(());
        }
        if destination != self.source() {
            match destination.iter().zip(self.source()).position(|(left, right)| left != right) {
                Some(byte) => bail!("the destination differs from the source (first difference at byte {byte})"),
                None => bail!("the destination holds {} bytes, the source {}", destination.len(), self.source().len()),
            }
        }
        if self.samples_verified == 0 {
            // Taken from the destination itself, so the output does not rest on the
            // comparison above alone.
            self.destination_digest = data::digest(destination);
        }
        self.samples_verified += 1;
        probe.metric("verified", 1.0);
        Ok(())
    }

    /// Reports what every import method records once its data is in place: the step's
    /// time, its bandwidth and CPU figures over `size` bytes, and the chunk latencies.
    fn record_import_step<R>(&self, probe: &mut Probe, elapsed: Duration, usage_before: Usage, run: &ChunkRun<R>) {
        let usage = Usage::now().since(usage_before);
        probe.report_elapsed(elapsed);
        record_step(probe, &self.environment, self.params.size as f64, elapsed, usage);
        record_latencies(probe, run);
    }

    /// The figures of a sample timed in phases: `prepare`, `transfer` and, for a durable
    /// import, `sync`. Its step is their sum, and a durable import's rate is over it.
    fn record_phased_step(
        &self,
        probe: &mut Probe,
        (prepare, transfer, sync): (Duration, Duration, Option<Duration>),
        usage_before: Usage,
        run: &ChunkRun<()>,
    ) {
        let step = prepare + transfer + sync.unwrap_or_default();
        if sync.is_some() {
            probe.metric("durable_gbps", gbps(self.params.size, step));
        }
        self.record_import_step(probe, step, usage_before, run);
        probe.metric("import_gbps", gbps(self.params.size, prepare + transfer));
        probe.metric("copy_phase_gbps", gbps(self.params.size, transfer));
    }

    /// Copies the source into `destination` in chunks, until the sample's deadline.
    fn copy_source(&self, destination: &mut [u8], deadline: Deadline) -> anyhow::Result<ChunkRun<()>> {
        copy_chunks(self.source(), destination, self.params.chunk, deadline)
    }

    /// The sample of a method that copies into a destination set up before it (hot
    /// memcpy, rewrite): the copy, its figures and the check. Returns the copy's time.
    fn copy_into_prepared(&mut self, destination: &mut [u8], probe: &mut Probe) -> anyhow::Result<Duration> {
        let usage_before = Usage::now();
        let start = probe.start();
        let run = self.copy_source(destination, probe.deadline())?;
        let transfer = probe.phase("transfer", start);
        self.record_import_step(probe, transfer, usage_before, &run);
        probe.metric("copy_phase_gbps", gbps(self.params.size, transfer));
        self.verify(destination, probe)?;
        Ok(transfer)
    }

    fn run_mmap(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let path = self.scratch_dir.join("import.bin");
        let usage_before = Usage::now();
        let start = probe.start();
        let (mut mapped, preparation) = map_new_file(&path, &self.params, probe)?;
        let prepare = probe.phase("prepare", start);
        let transfer_start = probe.start();
        let run = self.copy_source(&mut mapped.map, probe.deadline())?;
        let transfer = probe.phase("transfer", transfer_start);
        let mut sync = None;
        if self.params.durable {
            let sync_start = probe.start();
            mapped.map.flush().context("msync failed")?;
            mapped.file.sync_all().context("fsync failed")?;
            sync = Some(probe.phase("sync", sync_start));
        }
        self.record_phased_step(probe, (prepare, transfer, sync), usage_before, &run);
        probe.metric("preallocate_code", preparation.preallocate_code);
        probe.metric("prefault_code", preparation.prefault_code);
        probe.metric("advice_code", preparation.advice_code);
        self.verify(&mapped.map, probe)?;
        let teardown_start = probe.start();
        drop(mapped);
        probe.phase("teardown", teardown_start);
        Ok(())
    }

    fn run_rewrite(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        // Taken for the sample and put back whatever happens, so the next sample has it.
        let mut target = self.rewrite_target.take().context("set-up did not run")?;
        let sampled = self.copy_into_prepared(&mut target.map, probe);
        self.rewrite_target = Some(target);
        probe.metric("rewrite_gbps", gbps(self.params.size, sampled?));
        probe.metric("advice_code", self.prepared_advice);
        Ok(())
    }

    fn run_memcpy_hot(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        // As in `run_rewrite`.
        let mut destination = self.hot_destination.take().context("set-up did not run")?;
        let sampled = self.copy_into_prepared(destination.bytes_mut(), probe);
        self.hot_destination = Some(destination);
        probe.metric("advice_code", self.prepared_advice);
        sampled.map(|_| ())
    }

    fn run_memcpy_fresh(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let usage_before = Usage::now();
        let start = probe.start();
        let (mut destination, advice) =
            AlignedBuffer::new(self.params.size, self.params.hugepage).context("cannot map anonymous memory")?;
        let prepare = probe.phase("prepare", start);
        let transfer_start = probe.start();
        let run = self.copy_source(destination.bytes_mut(), probe.deadline())?;
        let transfer = probe.phase("transfer", transfer_start);
        self.record_phased_step(probe, (prepare, transfer, None), usage_before, &run);
        let code = advice_code(probe, advice);
        probe.metric("advice_code", code);
        self.verify(destination.bytes(), probe)?;
        let teardown_start = probe.start();
        drop(destination);
        probe.phase("teardown", teardown_start);
        Ok(())
    }

    fn run_pwrite(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let path = self.scratch_dir.join("import.bin");
        let usage_before = Usage::now();
        let start = probe.start();
        let (file, scratch) = create_file(&path)?;
        let prepare = probe.phase("prepare", start);
        let transfer_start = probe.start();
        let run = pwrite_chunks(self.source(), &file, self.params.chunk, probe.deadline())?;
        let transfer = probe.phase("transfer", transfer_start);
        let mut sync = None;
        if self.params.method == ImportMethod::PwriteFsync {
            let sync_start = probe.start();
            file.sync_all().context("fsync failed")?;
            sync = Some(probe.phase("sync", sync_start));
        }
        self.record_phased_step(probe, (prepare, transfer, sync), usage_before, &run);
        if self.params.verify {
            // SAFETY: the file lives in the run's private scratch directory and nothing
            // writes it while it is mapped.
            let map = unsafe { MmapOptions::new().len(self.params.size).map(&file) }.context("cannot map the file")?;
            self.verify(&map, probe)?;
        }
        let teardown_start = probe.start();
        drop(file);
        drop(scratch);
        probe.phase("teardown", teardown_start);
        Ok(())
    }
}

/// The `advice_code` of an anonymous destination's `MADV_HUGEPAGE`, warning when it
/// was refused.
fn advice_code(probe: &mut Probe, advice: Option<std::io::Result<()>>) -> f64 {
    match advice {
        None => 0.0,
        Some(Ok(())) => 1.0,
        Some(Err(error)) => {
            probe.warn(format!("madvise HugePage was refused: {error}"));
            -1.0
        }
    }
}

impl Instance for ImportInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        self.environment.event(probe, "memcpy");
        let (mut source, _) = AlignedBuffer::new(self.params.size, false).context("cannot allocate the source")?;
        data::fill_values(source.values_mut(), self.params.data_seed);
        self.source = Some(source);
        match self.params.method {
            ImportMethod::MemcpyHot => {
                let (mut destination, advice) = AlignedBuffer::new(self.params.size, self.params.hugepage)
                    .context("cannot allocate the destination")?;
                destination.prefault();
                self.prepared_advice = advice_code(probe, advice);
                self.hot_destination = Some(destination);
            }
            ImportMethod::Rewrite => {
                let path = self.scratch_dir.join("rewrite.bin");
                let (mut target, preparation) = map_new_file(&path, &self.params, probe)?;
                self.prepared_advice = preparation.advice_code;
                self.copy_source(&mut target.map, probe.deadline())?;
                self.rewrite_target = Some(target);
            }
            _ => {}
        }
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        if self.source.is_none() {
            bail!("set-up did not run");
        }
        self.samples += 1;
        match self.params.method {
            ImportMethod::Mmap => self.run_mmap(probe),
            ImportMethod::Rewrite => self.run_rewrite(probe),
            ImportMethod::MemcpyHot => self.run_memcpy_hot(probe),
            ImportMethod::MemcpyFresh => self.run_memcpy_fresh(probe),
            ImportMethod::Pwrite | ImportMethod::PwriteFsync => self.run_pwrite(probe),
        }
    }

    /// `digest`: the digest of the first sample's destination bytes, present only when
    /// every sample was verified equal to the source (so it is also the source's digest).
    fn outputs(&mut self) -> Vec<Output> {
        if !self.params.verify || self.samples == 0 || self.samples_verified != self.samples {
            return Vec::new();
        }
        vec![Output {
            name: "digest".into(),
            shape: vec![1],
            data: OutputData::Digest(format!("{:016x}", self.destination_digest)),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample whose destination differs from the source in one byte fails, naming the
    /// byte, and the run has no digest from then on: an import that lost or changed bytes
    /// cannot pass the parity check on `digest`.
    #[test]
    fn a_destination_that_differs_from_the_source_fails_the_sample() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let context = RunContext::outside_harness(1, 1, directory.path());
        let params = ImportParams::new(ImportMethod::MemcpyHot, 4096);
        let mut instance = ImportInstance::new(params, &context, Environment::probe(directory.path()));
        instance.setup(&mut Probe::default()).expect("set-up");
        instance.run(&mut Probe::default()).expect("a sample");
        assert_eq!(instance.outputs().len(), 1);
        let mut changed = instance.source().to_vec();
        changed[100] ^= 1;
        // As `run` counts a sample before it verifies it.
        instance.samples += 1;
        let error = instance.verify(&changed, &mut Probe::default()).expect_err("a changed byte");
        assert_eq!(format!("{error:#}"), "the destination differs from the source (first difference at byte 100)");
        assert!(instance.outputs().is_empty());
        let short = instance.source()[..4000].to_vec();
        let error = instance.verify(&short, &mut Probe::default()).expect_err("missing bytes");
        assert_eq!(format!("{error:#}"), "the destination holds 4000 bytes, the source 4096");
    }
}
