//! The `io` kernel: out-of-core matrix I/O against memcpy, reductions over mapped
//! files against memory, scheduling under stalls, and dense bit-matrix operations.
//!
//! One kernel, four families selected by `family`; within a family a parameter selects
//! the candidate or its in-run reference, so a spec pairs the two workloads
//! (`reference = ...`) and judges paired ratios:
//! - `import` ([`import`]): `method` = `mmap` (new file, preallocated, mapped, copied,
//!   optionally durable), `rewrite` (copy into an existing mapping), `memcpy_hot`
//!   (copy into pre-faulted memory), `memcpy_fresh` (copy into a fresh anonymous
//!   mapping), `pwrite`, `pwrite_fsync`.
//! - `read` ([`read`]): `source` = `mmap` (page-cache hot or evicted) or `memory`,
//!   reduced by the same bandwidth-bound f64 sum.
//! - `sched` ([`sched`]): `scheduler` = `static` / `dynamic` / `rayon` /
//!   `rayon_default` under `delay` = `none` / `stall` / `slow_worker`.
//! - `bits` ([`bits`]): `op` over `path` = `scalar` / `portable` / `avx2` / `avx512` /
//!   `simd` (the best the CPU has).
//!
//! **Byte accounting.** Every bandwidth counts payload bytes once, in decimal units
//! (1 GB = 1e9 bytes), over the interval it names: `bw_bytes` (fio's name, bytes per
//! second) and `bw_gbps` divide the bytes by the sample's timed step. For import and
//! read the bytes are `size` (each source byte written or read once; reads of the
//! source and page-table work are not counted again), for sched `size` per makespan.
//! For bits they are the input
//! operand bytes read per pass times the passes (`popcount_and` and the binary
//! operations read two operands, pack reads `size` bool bytes, unpack `size / 8`
//! packed bytes), and `gbool_per_s` counts bools for pack and unpack. Named phases add
//! their own figures: `import_gbps = size / (prepare + transfer)`, `durable_gbps = size /
//! (prepare + transfer + sync)`, `copy_phase_gbps = size / transfer`, `rewrite_gbps =
//! size / transfer` of a rewrite.
//!
//! **Timed step.** Import and read report their own step time to the harness: the sum
//! of their timed phases `prepare` (create, preallocate, map, advise), `transfer` and
//! `sync`, each also recorded as `<phase>_s`. Work in the same call outside that figure:
//! page-cache eviction before a cold read, byte verification after an import, and
//! unmapping and file removal (`teardown_s`). The sub-phase is `prepare`, not `setup`,
//! because the harness records an instance's set-up as `setup_s` in cold mode.
//! Untimed preparation (payload generation, the first copy of a rewrite, the file of a
//! read) lives in `Instance::setup`: use warm mode. Cold reads are the `cache = "cold"`
//! parameter, not the harness's cold mode.
//!
//! **Environment.** Every sample records the CPU features (`cpu_*`), the filesystem and
//! the device under the scratch directory (`device_nvme`, `device_rotational`,
//! `fs_tmpfs`) as metrics, so checks can be marked not applicable with `applies_if`,
//! and one `io_environment` telemetry event names them.
//!
//! Resource estimates ([`IoParams::resources`]) count the source, the destination and
//! the page cache of scratch files as memory, and scratch files as disk.

pub mod bits;
pub mod data;
pub mod import;
pub mod read;
pub mod sched;
pub mod schedule;
pub mod sys;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use crate::kernel::{
    Better, Instance, Kernel, MetricSpec, ParamKind, ParamSpec, Params, Probe, Resources, RunContext, Value,
};

use self::bits::workload::BitsParams;
use self::import::ImportParams;
use self::read::ReadParams;
use self::sched::SchedParams;
use self::schedule::{ChunkRun, LatencySummary};
use self::sys::{CpuFeatures, Storage, Usage};

pub struct Io;

const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;

/// The parameters of one run, typed per family.
#[derive(Clone, Debug, PartialEq)]
pub enum IoParams {
    Import(ImportParams),
    Read(ReadParams),
    Sched(SchedParams),
    Bits(BitsParams),
}

impl IoParams {
    /// Converts validated [`Params`] and checks the cross-parameter rules.
    pub fn from_params(params: &Params) -> Result<IoParams, String> {
        let size = params.usize("size");
        if !size.is_multiple_of(8) {
            return Err(format!("size {size} is not a multiple of 8 (bytes of payload, or bools to pack or unpack)"));
        }
        let chunk = params.usize("chunk");
        if !chunk.is_multiple_of(8) {
            return Err(format!("chunk {chunk} is not a whole number of 8-byte values"));
        }
        let data_seed = params.int("data_seed") as u64;
        let family = params.text("family");
        // A parameter of another family would be ignored: the run would measure
        // something else than the spec seems to ask for.
        for spec in Io.params() {
            let Some(families) = FAMILIES_OF.iter().find(|(name, _)| *name == spec.name).map(|(_, families)| families)
            else {
                continue;
            };
            if !families.contains(&family) && spec.default.as_ref() != params.get(spec.name) {
                return Err(format!(
                    "`{}` applies to family {}, not {family}: it would be ignored",
                    spec.name,
                    families.join(", ")
                ));
            }
        }
        let parsed = match family {
            "import" => IoParams::Import(ImportParams::from_params(params, size, chunk, data_seed)?),
            "read" => IoParams::Read(ReadParams::from_params(params, size, chunk, data_seed)?),
            "sched" => IoParams::Sched(SchedParams::from_params(params, size, chunk, data_seed)?),
            "bits" => IoParams::Bits(BitsParams::from_params(params, size, data_seed)?),
            other => return Err(format!("unknown family `{other}`")),
        };
        Ok(parsed)
    }

    pub fn resources(&self) -> Resources {
        match self {
            IoParams::Import(params) => params.resources(),
            IoParams::Read(params) => params.resources(),
            IoParams::Sched(params) => params.resources(),
            IoParams::Bits(params) => params.resources(),
        }
    }
}

/// The families each family-specific parameter applies to.
const FAMILIES_OF: [(&str, &[&str]); 17] = [
    ("chunk", &["import", "read", "sched"]),
    ("method", &["import"]),
    ("preallocate", &["import"]),
    ("prefault", &["import"]),
    ("hugepage", &["import"]),
    ("durable", &["import"]),
    ("verify", &["import"]),
    ("source", &["read"]),
    ("advice", &["read"]),
    ("cache", &["read"]),
    ("scheduler", &["sched"]),
    ("delay", &["sched"]),
    ("stall_ms", &["sched"]),
    ("slow_us", &["sched"]),
    ("op", &["bits"]),
    ("path", &["bits"]),
    ("pass_bytes", &["bits"]),
];

impl Kernel for Io {
    fn name(&self) -> &'static str {
        "io"
    }

    fn summary(&self) -> &'static str {
        "mmap import/read against memcpy and memory, scheduling under stalls, SIMD bit matrices"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("family", ParamKind::Choice(&["import", "read", "sched", "bits"]), None, "workload family"),
            ParamSpec::new(
                "size",
                ParamKind::Int { min: 8, max: 1 << 40 },
                Value::Int(GIB),
                "payload bytes (a multiple of 8; for pack and unpack, the number of bools)",
            ),
            ParamSpec::new(
                "chunk",
                ParamKind::Int { min: 64, max: 1 << 34 },
                Value::Int(MIB),
                "bytes per scheduled chunk (import, read, sched)",
            ),
            ParamSpec::new(
                "data_seed",
                ParamKind::Int { min: 0, max: i64::MAX },
                Value::Int(1),
                "seed of the payload, shared by a candidate and its reference",
            ),
            ParamSpec::new(
                "method",
                ParamKind::Choice(import::ImportMethod::NAMES),
                Value::from("mmap"),
                "import: mmap, rewrite, memcpy_hot, memcpy_fresh, pwrite or pwrite_fsync",
            ),
            ParamSpec::new(
                "preallocate",
                ParamKind::Choice(&["fallocate", "ftruncate"]),
                Value::from("fallocate"),
                "import mmap/rewrite: how the new file gets its size",
            ),
            ParamSpec::new(
                "prefault",
                ParamKind::Bool,
                Value::Bool(false),
                "import mmap: MADV_POPULATE_WRITE the mapping before the copy",
            ),
            ParamSpec::new(
                "hugepage",
                ParamKind::Bool,
                Value::Bool(false),
                "import: MADV_HUGEPAGE on the destination mapping",
            ),
            ParamSpec::new(
                "durable",
                ParamKind::Bool,
                Value::Bool(false),
                "import mmap: msync and fsync after the copy (timed as `sync`)",
            ),
            ParamSpec::new(
                "verify",
                ParamKind::Bool,
                Value::Bool(true),
                "import: compare the destination with the source after every sample (untimed)",
            ),
            ParamSpec::new(
                "source",
                ParamKind::Choice(&["mmap", "memory"]),
                Value::from("mmap"),
                "read: a mapped file or a pre-faulted in-memory buffer",
            ),
            ParamSpec::new(
                "advice",
                ParamKind::Choice(read::ReadAdvice::NAMES),
                Value::from("none"),
                "read: none, populate (MAP_POPULATE), sequential, willneed or hugepage",
            ),
            ParamSpec::new(
                "cache",
                ParamKind::Choice(&["hot", "cold"]),
                Value::from("hot"),
                "read mmap: page-cache hot, or evicted with POSIX_FADV_DONTNEED before every sample",
            ),
            ParamSpec::new(
                "scheduler",
                ParamKind::Choice(schedule::Scheduler::NAMES),
                Value::from("dynamic"),
                "sched: static, dynamic, rayon (max_len 1) or rayon_default",
            ),
            ParamSpec::new(
                "delay",
                ParamKind::Choice(&["none", "stall", "slow_worker"]),
                Value::from("none"),
                "sched: delay model on worker 0",
            ),
            ParamSpec::new(
                "stall_ms",
                ParamKind::Float { min: 0.0, max: 60_000.0 },
                Value::Float(0.0),
                "sched stall: duration D in ms; 0 = 1.5x the calibrated single-thread time (unused under other delays, so that one workload may vary `delay`)",
            ),
            ParamSpec::new(
                "slow_us",
                ParamKind::Float { min: 0.0, max: 1e6 },
                Value::Float(0.0),
                "sched slow_worker: sleep after each chunk in us; 0 = twice the calibrated chunk time (unused under other delays)",
            ),
            ParamSpec::new(
                "op",
                ParamKind::Choice(bits::workload::BitsOp::NAMES),
                Value::from("popcount"),
                "bits: popcount, popcount_and, xor, and, or, not, pack or unpack",
            ),
            ParamSpec::new(
                "path",
                ParamKind::Choice(&["scalar", "portable", "avx2", "avx512", "simd"]),
                Value::from("simd"),
                "bits: code path; an unavailable one falls back to the best below it (recorded)",
            ),
            ParamSpec::new(
                "pass_bytes",
                ParamKind::Int { min: 0, max: 1 << 40 },
                Value::Int(256 * MIB),
                "bits: repeat the operation until `size * passes` reaches this (at least one pass)",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        METRICS.to_vec()
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["digest", "sum", "result"]
    }

    fn check(&self, params: &Params) -> Result<Resources, String> {
        Ok(IoParams::from_params(params)?.resources())
    }

    fn instantiate(&self, params: &Params, context: &RunContext) -> anyhow::Result<Box<dyn Instance>> {
        let parsed = IoParams::from_params(params).map_err(|message| anyhow::anyhow!(message))?;
        let environment = Environment::probe(&context.scratch_dir);
        Ok(match parsed {
            IoParams::Import(params) => Box::new(import::ImportInstance::new(params, context, environment)),
            IoParams::Read(params) => Box::new(read::ReadInstance::new(params, context, environment)),
            IoParams::Sched(params) => Box::new(sched::SchedInstance::new(params, environment)),
            IoParams::Bits(params) => Box::new(bits::workload::BitsInstance::new(params, environment)),
        })
    }
}

const METRICS: &[MetricSpec] = &[
    MetricSpec::new("bw_bytes", "B/s", Better::Higher, "payload bytes per second of the timed step (fio)"),
    MetricSpec::new("bw_gbps", "GB/s", Better::Higher, "bw_bytes / 1e9"),
    MetricSpec::new("prepare_s", "s", Better::Lower, "import: create, preallocate, map, pre-fault; read: map, advise"),
    MetricSpec::new("transfer_s", "s", Better::Lower, "the copy, write or reduction phase"),
    MetricSpec::new("sync_s", "s", Better::Lower, "import: msync and fsync"),
    MetricSpec::new("teardown_s", "s", Better::Neither, "unmap and remove, outside the timed step"),
    MetricSpec::new("import_gbps", "GB/s", Better::Higher, "size / (prepare + transfer)"),
    MetricSpec::new("durable_gbps", "GB/s", Better::Higher, "size / (prepare + transfer + sync)"),
    MetricSpec::new("copy_phase_gbps", "GB/s", Better::Higher, "size / transfer"),
    MetricSpec::new("rewrite_gbps", "GB/s", Better::Higher, "size / transfer of a rewrite into a mapped file"),
    MetricSpec::new("verified", "", Better::Neither, "1 when the destination held exactly the source bytes"),
    MetricSpec::new("prefault_code", "", Better::Neither, "0 none, 1 MADV_POPULATE_WRITE, 2 touch fallback"),
    MetricSpec::new("preallocate_code", "", Better::Neither, "1 fallocate, 2 ftruncate, 3 ftruncate fallback"),
    MetricSpec::new("advice_code", "", Better::Neither, "1 advice or hugepage accepted, 0 none, -1 refused"),
    MetricSpec::new("resident_before", "", Better::Neither, "read: fraction of the file cached before the sample"),
    MetricSpec::new("clat_p50_ns", "ns", Better::Lower, "median per-chunk latency (claim to done)"),
    MetricSpec::new("clat_p99_ns", "ns", Better::Lower, "99th percentile per-chunk latency"),
    MetricSpec::new("clat_max_ns", "ns", Better::Lower, "largest per-chunk latency"),
    MetricSpec::new("minf", "", Better::Lower, "minor page faults of the timed step (fio)"),
    MetricSpec::new("majf", "", Better::Lower, "major page faults of the timed step (fio)"),
    MetricSpec::new("usr_cpu", "%", Better::Neither, "user CPU time / timed step, all threads (fio)"),
    MetricSpec::new("sys_cpu", "%", Better::Neither, "system CPU time / timed step, all threads (fio)"),
    MetricSpec::new("makespan_s", "s", Better::Lower, "sched: first claim to last chunk done"),
    MetricSpec::new("bound_s", "s", Better::Neither, "sched stall: max(D + t_chunk, t_single); D + t_single alone"),
    MetricSpec::new("makespan_over_bound", "", Better::Lower, "sched stall: makespan / bound"),
    MetricSpec::new("stall_s", "s", Better::Neither, "sched stall: how long worker 0 actually slept"),
    MetricSpec::new("slow_sleep_s", "s", Better::Neither, "sched slow_worker: worker 0's total sleep"),
    MetricSpec::new("t_single_s", "s", Better::Neither, "sched: calibrated single-thread time of the whole pass"),
    MetricSpec::new("speedup", "", Better::Higher, "sched: t_single / makespan"),
    MetricSpec::new("path_code", "", Better::Neither, "bits: 0 scalar, 1 portable, 2 avx2, 3 avx512"),
    MetricSpec::new("passes", "", Better::Neither, "bits: passes over the operands per sample"),
    MetricSpec::new("gbool_per_s", "Gbool/s", Better::Higher, "bits pack/unpack: bools per second / 1e9"),
    MetricSpec::new("cpu_avx2", "", Better::Neither, "1 when the CPU has avx2"),
    MetricSpec::new("cpu_bmi2", "", Better::Neither, "1 when the CPU has bmi2"),
    MetricSpec::new("cpu_avx512f", "", Better::Neither, "1 when the CPU has avx512f"),
    MetricSpec::new("cpu_avx512bw", "", Better::Neither, "1 when the CPU has avx512bw"),
    MetricSpec::new("cpu_avx512vpopcntdq", "", Better::Neither, "1 when the CPU has avx512vpopcntdq"),
    MetricSpec::new("device_nvme", "", Better::Neither, "1 when the scratch directory is on an NVMe device"),
    MetricSpec::new("device_rotational", "", Better::Neither, "1 rotational, 0 not, -1 unknown (virtio says 1)"),
    MetricSpec::new("fs_tmpfs", "", Better::Neither, "1 when the scratch directory is on tmpfs or ramfs"),
];

/// The CPU and storage a run executes on, probed once per run.
#[derive(Clone, Debug)]
pub struct Environment {
    pub cpu: CpuFeatures,
    pub storage: Storage,
}

impl Environment {
    /// Probes the CPU and the storage under `directory` (or its nearest existing
    /// ancestor, if the harness has not created it yet).
    pub fn probe(directory: &Path) -> Environment {
        let existing = directory.ancestors().find(|path| path.exists()).unwrap_or(Path::new("."));
        Environment { cpu: CpuFeatures::detect(), storage: Storage::probe(existing) }
    }

    fn record(&self, probe: &mut Probe) {
        let flag = |value: bool| if value { 1.0 } else { 0.0 };
        probe.metric("cpu_avx2", flag(self.cpu.avx2));
        probe.metric("cpu_bmi2", flag(self.cpu.bmi2));
        probe.metric("cpu_avx512f", flag(self.cpu.avx512f));
        probe.metric("cpu_avx512bw", flag(self.cpu.avx512bw));
        probe.metric("cpu_avx512vpopcntdq", flag(self.cpu.avx512vpopcntdq));
        probe.metric("device_nvme", flag(self.storage.is_nvme()));
        probe.metric("device_rotational", self.storage.rotational.map_or(-1.0, flag));
        probe.metric("fs_tmpfs", flag(self.storage.is_tmpfs()));
    }

    fn event(&self, probe: &mut Probe, code_path: &str) {
        let cpu = &self.cpu;
        let features: Vec<&str> = [
            (cpu.popcnt, "popcnt"),
            (cpu.avx2, "avx2"),
            (cpu.bmi2, "bmi2"),
            (cpu.avx512f, "avx512f"),
            (cpu.avx512bw, "avx512bw"),
            (cpu.avx512vpopcntdq, "avx512vpopcntdq"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        probe.event(
            "io_environment",
            vec![
                ("cpu_features", Value::from(features.join(" "))),
                ("code_path", Value::from(code_path)),
                ("filesystem", Value::from(self.storage.filesystem.clone())),
                ("device", Value::from(self.storage.device.clone())),
                ("rotational", self.storage.rotational.map_or(Value::from("unknown"), Value::Bool)),
            ],
        );
    }
}

/// Records the figures every timed step shares: bandwidth over `bytes`, page faults and
/// CPU time, and the environment.
fn record_step(probe: &mut Probe, environment: &Environment, bytes: f64, elapsed: Duration, usage: Usage) {
    let seconds = elapsed.as_secs_f64().max(1e-12);
    probe.metric("bw_bytes", bytes / seconds);
    probe.metric("bw_gbps", bytes / seconds / 1e9);
    probe.metric("minf", usage.minor_faults as f64);
    probe.metric("majf", usage.major_faults as f64);
    probe.metric("usr_cpu", 100.0 * usage.user.as_secs_f64() / seconds);
    probe.metric("sys_cpu", 100.0 * usage.system.as_secs_f64() / seconds);
    environment.record(probe);
}

/// Records the per-chunk latency percentiles of a scheduled pass.
fn record_latencies<R>(probe: &mut Probe, run: &ChunkRun<R>) {
    let summary = LatencySummary::of(&run.latencies_ns);
    probe.metric("clat_p50_ns", summary.p50_ns as f64);
    probe.metric("clat_p99_ns", summary.p99_ns as f64);
    probe.metric("clat_max_ns", summary.max_ns as f64);
}

/// `bytes / seconds / 1e9`, guarding against a zero interval.
fn gbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-12) / 1e9
}
