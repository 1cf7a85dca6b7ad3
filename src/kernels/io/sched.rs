//! The `sched` family: reduce `size` bytes of f64 in `chunk`-byte chunks with P workers
//! under a scheduler and a delay model on worker 0 (see [`super::schedule`]).
//!
//! `setup` fills an in-memory buffer and calibrates `t_single`, the best of three
//! single-thread passes over all chunks on the calling thread; `t_chunk = t_single /
//! chunks`. The stall lasts `stall_ms`, or `1.5 * t_single` when it is 0, so that by
//! default the other workers can finish everything else during the stall and the
//! schedules are told apart (with a stall much longer than the work, every schedule
//! is dominated by it). The slow worker sleeps `slow_us` after each chunk, or `2 *
//! t_chunk` when it is 0. Paired workloads should fix both durations in the spec, so
//! that their delays do not differ by their calibrations' noise.
//!
//! The bound of a stalled pass, with `D` the stall worker 0 actually slept:
//! `B = max(D + t_chunk, t_single)` for P >= 2 (worker 0's first chunk cannot finish
//! before `D + t_chunk`; the `t_single` term is the model's estimate of the others
//! doing the rest alone, a true lower bound only when memory bandwidth does not grow
//! with threads, so a warning is attached when `D < t_single`), and `B = D + t_single`
//! for P = 1. Metrics: `makespan_s`, `bound_s`, `makespan_over_bound`, `stall_s`,
//! `slow_sleep_s`, `t_single_s`, `speedup = t_single / makespan` and the per-chunk
//! latency percentiles.
//!
//! The output `sum` adds the per-chunk sums in chunk order, so every scheduler and
//! thread count produces the same bits.

use std::time::Duration;

use anyhow::Context;

use super::data::{self, AlignedBuffer, sum_f64};
use super::schedule::{ChunkPlan, Delay, Scheduler, bookkeeping_bytes, run_chunks};
use super::sys::Usage;
use super::{Environment, record_latencies, record_step};
use crate::kernel::{Deadline, Instance, Output, OutputData, Params, Probe, Resources, Stopped};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayKind {
    None,
    Stall,
    SlowWorker,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SchedParams {
    pub size: usize,
    pub chunk: usize,
    pub data_seed: u64,
    pub scheduler: Scheduler,
    pub delay: DelayKind,
    /// The stall in milliseconds; 0 means 1.5 times the calibrated single-thread time.
    pub stall_ms: f64,
    /// The slow worker's sleep per chunk in microseconds; 0 means twice the calibrated
    /// chunk time.
    pub slow_us: f64,
}

impl SchedParams {
    pub fn new(scheduler: Scheduler, delay: DelayKind, size: usize) -> SchedParams {
        SchedParams { size, chunk: 1 << 20, data_seed: 1, scheduler, delay, stall_ms: 0.0, slow_us: 0.0 }
    }

    pub(super) fn from_params(params: &Params, size: usize, chunk: usize, data_seed: u64) -> Result<Self, String> {
        let scheduler = Scheduler::parse(params.text("scheduler")).ok_or("unknown scheduler")?;
        let delay = match params.text("delay") {
            "stall" => DelayKind::Stall,
            "slow_worker" => DelayKind::SlowWorker,
            _ => DelayKind::None,
        };
        Ok(SchedParams {
            size,
            chunk,
            data_seed,
            scheduler,
            delay,
            stall_ms: params.float("stall_ms"),
            slow_us: params.float("slow_us"),
        })
    }

    pub(super) fn resources(&self) -> Resources {
        Resources { memory_bytes: self.size as u64 + bookkeeping_bytes(self.size, self.chunk), disk_bytes: 0 }
    }
}

/// The per-chunk partial sums of `values`, added in chunk order, with `scheduler`.
pub fn scheduled_sum(values: &[f64], chunk_values: usize, scheduler: Scheduler, delay: Delay) -> f64 {
    let plan = ChunkPlan::new(values.len(), chunk_values);
    let run =
        run_chunks(plan.count(), scheduler, delay, Deadline::never(), |index| sum_f64(&values[plan.range(index)]));
    Stopped::never(run).results.iter().fold(0.0, |total, partial| total + partial)
}

/// The bound of a stalled pass (see the module doc).
pub fn stall_bound(stall: Duration, t_single: Duration, chunks: usize, workers: usize) -> Duration {
    let t_chunk = t_single.div_f64(chunks.max(1) as f64);
    if workers <= 1 { stall + t_single } else { (stall + t_chunk).max(t_single) }
}

pub struct SchedInstance {
    params: SchedParams,
    environment: Environment,
    buffer: Option<AlignedBuffer>,
    t_single: Duration,
    last_sum: Option<f64>,
}

impl SchedInstance {
    pub fn new(params: SchedParams, environment: Environment) -> SchedInstance {
        SchedInstance { params, environment, buffer: None, t_single: Duration::ZERO, last_sum: None }
    }

    fn plan(&self) -> ChunkPlan {
        ChunkPlan::new(self.params.size / 8, (self.params.chunk / 8).max(1))
    }

    fn delay(&self) -> Delay {
        let chunks = self.plan().count().max(1);
        match self.params.delay {
            DelayKind::None => Delay::None,
            DelayKind::Stall if self.params.stall_ms > 0.0 => {
                Delay::Stall(Duration::from_secs_f64(self.params.stall_ms / 1e3))
            }
            DelayKind::Stall => Delay::Stall(self.t_single.mul_f64(1.5)),
            DelayKind::SlowWorker if self.params.slow_us > 0.0 => {
                Delay::SlowWorker(Duration::from_secs_f64(self.params.slow_us / 1e6))
            }
            DelayKind::SlowWorker => Delay::SlowWorker(self.t_single.div_f64(chunks.max(1) as f64) * 2),
        }
    }
}

impl Instance for SchedInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        self.environment.event(probe, "sum_f64");
        let (mut buffer, _) = AlignedBuffer::new(self.params.size, false).context("cannot allocate the buffer")?;
        data::fill_values(buffer.values_mut(), self.params.data_seed);
        let plan = self.plan();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = probe.start();
            let mut total = 0.0;
            for index in 0..plan.count() {
                total += sum_f64(&buffer.values()[plan.range(index)]);
            }
            std::hint::black_box(total);
            best = best.min(start.elapsed());
        }
        self.t_single = best;
        self.buffer = Some(buffer);
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let delay = self.delay();
        let plan = self.plan();
        let buffer = self.buffer.as_ref().context("set-up did not run")?;
        let values = buffer.values();
        let workers = rayon::current_num_threads();
        let usage_before = Usage::now();
        let start = probe.start();
        let deadline = probe.deadline();
        let run = run_chunks(plan.count(), self.params.scheduler, delay, deadline, |index| {
            sum_f64(&values[plan.range(index)])
        })
        .map_err(|stopped| deadline.stopped(stopped, "chunks"))?;
        let makespan = probe.phase("makespan", start);
        let usage = Usage::now().since(usage_before);
        let total = run.results.iter().fold(0.0, |total, partial| total + partial);
        record_step(probe, &self.environment, self.params.size as f64, makespan, usage);
        record_latencies(probe, &run);
        probe.metric("t_single_s", self.t_single.as_secs_f64());
        probe.metric("speedup", self.t_single.as_secs_f64() / makespan.as_secs_f64().max(1e-12));
        match delay {
            Delay::Stall(_) => {
                let bound = stall_bound(run.stall, self.t_single, plan.count(), workers);
                probe.metric("stall_s", run.stall.as_secs_f64());
                probe.metric("bound_s", bound.as_secs_f64());
                probe.metric("makespan_over_bound", makespan.as_secs_f64() / bound.as_secs_f64().max(1e-12));
                if run.stall.is_zero() {
                    probe.warn("worker 0 claimed no chunk, so the stall never happened: the pass is too short");
                } else if workers > 1 && run.stall < self.t_single {
                    probe.warn(format!(
                        "stall {:.1} ms is shorter than the single-thread time {:.1} ms: the bound is a model, not a \
                         strict lower bound",
                        run.stall.as_secs_f64() * 1e3,
                        self.t_single.as_secs_f64() * 1e3
                    ));
                }
            }
            Delay::SlowWorker(_) => probe.metric("slow_sleep_s", run.slow_sleep.as_secs_f64()),
            Delay::None => {}
        }
        self.last_sum = Some(total);
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        match self.last_sum {
            Some(sum) => vec![Output { name: "sum".into(), shape: vec![1], data: OutputData::F64(vec![sum]) }],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DelayKind, SchedInstance, SchedParams};
    use crate::kernels::io::Environment;
    use crate::kernels::io::schedule::{Delay, Scheduler};

    /// The delays a pass takes: those the spec sets, else the module's defaults from the
    /// calibrated single-thread time (here 8 chunks over 12 ms): a stall of 1.5 times it,
    /// a sleep of twice the chunk time after each of the slow worker's chunks.
    #[test]
    fn the_delays_default_to_multiples_of_the_calibrated_time() {
        let instance = |delay: DelayKind, stall_ms: f64, slow_us: f64| {
            let params = SchedParams {
                chunk: 1 << 20,
                stall_ms,
                slow_us,
                ..SchedParams::new(Scheduler::Static, delay, 8 << 20)
            };
            let mut instance = SchedInstance::new(params, Environment::probe(std::path::Path::new(".")));
            instance.t_single = Duration::from_millis(12);
            instance.delay()
        };
        assert_eq!(instance(DelayKind::None, 0.0, 0.0), Delay::None);
        assert_eq!(instance(DelayKind::Stall, 0.0, 0.0), Delay::Stall(Duration::from_millis(18)));
        assert_eq!(instance(DelayKind::Stall, 5.0, 0.0), Delay::Stall(Duration::from_millis(5)));
        assert_eq!(instance(DelayKind::SlowWorker, 0.0, 0.0), Delay::SlowWorker(Duration::from_millis(3)));
        assert_eq!(instance(DelayKind::SlowWorker, 0.0, 250.0), Delay::SlowWorker(Duration::from_micros(250)));
    }
}
