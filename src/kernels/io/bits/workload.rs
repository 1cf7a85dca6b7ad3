//! The `bits` family's workload: one operation over seeded operands on one path,
//! repeated for `passes = max(1, ceil(pass_bytes / size))` passes per sample so that an
//! L2-sized operand still gives a sample long enough to time. Once the sample's time is
//! up the passes stop (asked between passes, at most once per MiB of input).
//!
//! A requested path the CPU lacks falls back to the best path below it (`simd` is
//! `avx512` resolved downwards) with a warning; `path_code` records the path that ran.
//! Bandwidth counts the input bytes of every pass (see the kernel's byte accounting).
//! The output `result` is `popcount:<count>` for the popcounts and the hex digest of
//! the output buffer for the other operations, so every path can be compared exactly.

use anyhow::Context;

use super::{BinaryOp, BitsPath};
use crate::kernel::{Instance, Output, OutputData, Params, Probe, Resources, Stopped};
use crate::kernels::io::data::{self, AlignedBuffer};
use crate::kernels::io::sys::Usage;
use crate::kernels::io::{Environment, record_step};

/// Input bytes between two questions of a sample's deadline (see `Probe::deadline`):
/// a pass over a larger operand asks after every pass.
const DEADLINE_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsOp {
    Popcount,
    PopcountAnd,
    Binary(BinaryOp),
    Not,
    Pack,
    Unpack,
}

impl BitsOp {
    pub const NAMES: &'static [&'static str] =
        &["popcount", "popcount_and", "xor", "and", "or", "not", "pack", "unpack"];

    pub fn parse(name: &str) -> Option<BitsOp> {
        Some(match name {
            "popcount" => BitsOp::Popcount,
            "popcount_and" => BitsOp::PopcountAnd,
            "xor" => BitsOp::Binary(BinaryOp::Xor),
            "and" => BitsOp::Binary(BinaryOp::And),
            "or" => BitsOp::Binary(BinaryOp::Or),
            "not" => BitsOp::Not,
            "pack" => BitsOp::Pack,
            "unpack" => BitsOp::Unpack,
            _ => return None,
        })
    }

    /// Input bytes read per pass over operands of `size` bytes (bools for pack/unpack).
    pub fn input_bytes(self, size: usize) -> usize {
        match self {
            BitsOp::Popcount | BitsOp::Not | BitsOp::Pack => size,
            BitsOp::PopcountAnd | BitsOp::Binary(_) => 2 * size,
            BitsOp::Unpack => size.div_ceil(8),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitsParams {
    pub size: usize,
    pub data_seed: u64,
    pub op: BitsOp,
    /// The requested path; `None` for `simd`, the best this CPU has.
    pub path: Option<BitsPath>,
    pub pass_bytes: usize,
}

impl BitsParams {
    pub(in crate::kernels::io) fn from_params(params: &Params, size: usize, data_seed: u64) -> Result<Self, String> {
        let op = BitsOp::parse(params.text("op")).ok_or("unknown bits operation")?;
        let path = match params.text("path") {
            "scalar" => Some(BitsPath::Scalar),
            "portable" => Some(BitsPath::Portable),
            "avx2" => Some(BitsPath::Avx2),
            "avx512" => Some(BitsPath::Avx512),
            _ => None,
        };
        Ok(BitsParams { size, data_seed, op, path, pass_bytes: params.usize("pass_bytes") })
    }

    pub fn passes(&self) -> usize {
        self.pass_bytes.div_ceil(self.size).max(1)
    }

    pub(in crate::kernels::io) fn resources(&self) -> Resources {
        let size = self.size as u64;
        let memory_bytes = match self.op {
            BitsOp::Popcount => size,
            BitsOp::PopcountAnd | BitsOp::Not => 2 * size,
            BitsOp::Binary(_) => 3 * size,
            BitsOp::Pack | BitsOp::Unpack => size + size.div_ceil(8),
        };
        Resources { memory_bytes, disk_bytes: 0 }
    }
}

pub struct BitsInstance {
    params: BitsParams,
    environment: Environment,
    path: BitsPath,
    a: Option<AlignedBuffer>,
    b: Option<AlignedBuffer>,
    out: Option<AlignedBuffer>,
    last_count: Option<u64>,
}

impl BitsInstance {
    pub fn new(params: BitsParams, environment: Environment) -> BitsInstance {
        let path = params.path.unwrap_or(BitsPath::Avx512).resolve(&environment.cpu);
        BitsInstance { params, environment, path, a: None, b: None, out: None, last_count: None }
    }
}

fn buffer(len: usize) -> anyhow::Result<AlignedBuffer> {
    Ok(AlignedBuffer::new(len, false).context("cannot allocate an operand")?.0)
}

/// Runs one pass of `op`; returns the popcount for the counting operations.
fn one_pass(
    op: BitsOp,
    path: BitsPath,
    a: &AlignedBuffer,
    b: Option<&AlignedBuffer>,
    out: Option<&mut AlignedBuffer>,
) -> Option<u64> {
    match op {
        BitsOp::Popcount => Some(super::popcount(path, a.words())),
        BitsOp::PopcountAnd => Some(super::popcount_and(path, a.words(), b?.words())),
        BitsOp::Binary(binary) => {
            super::binary(path, binary, a.words(), b?.words(), out?.words_mut());
            None
        }
        BitsOp::Not => {
            super::not(path, a.words(), out?.words_mut());
            None
        }
        BitsOp::Pack => {
            super::pack(path, a.bytes(), out?.bytes_mut());
            None
        }
        BitsOp::Unpack => {
            let bools = out?.bytes_mut();
            super::unpack(path, &a.bytes()[..bools.len().div_ceil(8)], bools);
            None
        }
    }
}

impl Instance for BitsInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        self.environment.event(probe, self.path.name());
        if let Some(requested) = self.params.path
            && requested != self.path
        {
            probe.warn(format!(
                "the {} path is not available on this CPU; ran the {} path",
                requested.name(),
                self.path.name()
            ));
        }
        let size = self.params.size;
        let seed = self.params.data_seed;
        match self.params.op {
            BitsOp::Pack => {
                let mut bools = buffer(size)?;
                data::fill_bools(bools.bytes_mut(), seed);
                self.a = Some(bools);
                self.out = Some(buffer(size.div_ceil(8))?);
            }
            BitsOp::Unpack => {
                // `size / 8` packed bytes of random bits, allocated in whole words
                // because the generator fills words.
                let mut packed = buffer(size.div_ceil(8).next_multiple_of(8))?;
                data::fill_words(packed.words_mut(), seed);
                self.a = Some(packed);
                self.out = Some(buffer(size)?);
            }
            op => {
                let mut a = buffer(size)?;
                data::fill_words(a.words_mut(), seed);
                self.a = Some(a);
                if matches!(op, BitsOp::PopcountAnd | BitsOp::Binary(_)) {
                    let mut b = buffer(size)?;
                    data::fill_words(b.words_mut(), seed ^ 0x9e37_79b9_7f4a_7c15);
                    self.b = Some(b);
                }
                if matches!(op, BitsOp::Binary(_) | BitsOp::Not) {
                    self.out = Some(buffer(size)?);
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let a = self.a.as_ref().context("set-up did not run")?;
        let passes = self.params.passes();
        // The deadline is asked between passes, once per `DEADLINE_BYTES` of input at
        // most, so that passes over a small operand do not each pay for a clock read.
        let deadline = probe.deadline();
        let input_bytes = self.params.op.input_bytes(self.params.size).max(1);
        let ask_every = DEADLINE_BYTES.div_ceil(input_bytes).max(1);
        let usage_before = Usage::now();
        let start = probe.start();
        let mut count = None;
        for pass in 0..passes {
            if pass > 0 && pass % ask_every == 0 && deadline.passed() {
                return Err(deadline.stopped(Stopped { done: pass, total: passes }, "passes"));
            }
            count = one_pass(self.params.op, self.path, a, self.b.as_ref(), self.out.as_mut());
            std::hint::black_box(&mut self.out);
            std::hint::black_box(count);
        }
        let elapsed = start.elapsed();
        let usage = Usage::now().since(usage_before);
        let bytes = (self.params.op.input_bytes(self.params.size) * passes) as f64;
        record_step(probe, &self.environment, bytes, elapsed, usage);
        probe.metric("path_code", self.path.code());
        probe.metric("passes", passes as f64);
        if matches!(self.params.op, BitsOp::Pack | BitsOp::Unpack) {
            let bools = (self.params.size * passes) as f64;
            probe.metric("gbool_per_s", bools / elapsed.as_secs_f64().max(1e-12) / 1e9);
        }
        self.last_count = count;
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        let text = match (self.last_count, &self.out) {
            (Some(count), _) => format!("popcount:{count}"),
            (None, Some(out)) => format!("digest:{:016x}", data::digest(out.bytes())),
            (None, None) => return Vec::new(),
        };
        vec![Output { name: "result".into(), shape: vec![1], data: OutputData::Digest(text) }]
    }
}
