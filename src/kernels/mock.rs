//! A kernel with deterministic fake timings, for testing the whole pipeline.
//!
//! Each sample reports `time_ms * slowdown * (1 + jitter * u)` as its duration, with
//! `u` in [-1, 1) drawn from a ChaCha8 generator seeded by the run's seed, on a stream
//! of its own for every execution round, every cold instance and each A/A calibration
//! twin (a re-run, a cold sample or a twin draws new noise), so the statistics, verdicts and reports of a mock run are
//! reproducible bit for bit. With
//! `spin = true` the kernel really busy-waits for that long instead. With `work = N`
//! it does real arithmetic instead: `N * slowdown` steps of a dependent integer chain,
//! timed by the harness, so its times carry this machine's noise (frequency, caches,
//! preemption) and `slowdown` injects a true regression (the baseline-detection
//! experiment uses it). `first_ms` makes the run's first step slower, as a cold cache
//! would (the first step of the first round's warm instance and of its first cold
//! instance). Its output `values` is a seeded vector, shifted by `perturb`, for parity
//! tests.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kernel::{
    Better, Instance, Kernel, MetricSpec, Output, OutputData, ParamKind, ParamSpec, Params, Probe, Resources,
    RunContext, Value,
};

pub struct Mock;

const ITEMS: i64 = 1_000_000;

impl Kernel for Mock {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn summary(&self) -> &'static str {
        "deterministic fake timings and outputs, for testing specs and the harness"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                "time_ms",
                ParamKind::Float { min: 0.0, max: 3.6e6 },
                Value::Float(1.0),
                "base duration of one sample in milliseconds",
            ),
            ParamSpec::new(
                "jitter",
                ParamKind::Float { min: 0.0, max: 0.99 },
                Value::Float(0.0),
                "relative half-width of the seeded uniform noise on each sample",
            ),
            ParamSpec::new(
                "slowdown",
                ParamKind::Float { min: 0.01, max: 100.0 },
                Value::Float(1.0),
                "factor applied to every sample (to inject regressions)",
            ),
            ParamSpec::new(
                "setup_ms",
                ParamKind::Float { min: 0.0, max: 3.6e6 },
                Value::Float(0.0),
                "duration reported for the set-up in milliseconds",
            ),
            ParamSpec::new(
                "first_ms",
                ParamKind::Float { min: 0.0, max: 3.6e6 },
                Value::Float(0.0),
                "extra milliseconds on the first step of the first round's warm instance and first cold \
                 instance, as a cold cache would cost",
            ),
            ParamSpec::new("spin", ParamKind::Bool, Value::Bool(false), "busy-wait for real instead of faking"),
            ParamSpec::new(
                "work",
                ParamKind::Int { min: 0, max: 1 << 40 },
                Value::Int(0),
                "steps of real arithmetic per sample (times `slowdown`) instead of a fake time; 0 = off",
            ),
            ParamSpec::new(
                "fail_at",
                ParamKind::Int { min: -1, max: i64::MAX },
                Value::Int(-1),
                "step at which the run fails: 0 = set-up, then the steps of the warm instance (warm-ups included) or the cold samples, from 1; -1 never",
            ),
            ParamSpec::new(
                "size",
                ParamKind::Int { min: 1, max: 1 << 40 },
                Value::Int(16),
                "length of the `values` output; memory estimate is 8 bytes per entry",
            ),
            ParamSpec::new(
                "perturb",
                ParamKind::Float { min: -1e9, max: 1e9 },
                Value::Float(0.0),
                "offset added to every entry of `values`",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("items_per_s", "1/s", Better::Higher, "1e6 items divided by the sample time"),
            MetricSpec::new("sample_index", "", Better::Neither, "index of the sample within the run"),
        ]
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["values"]
    }

    fn check(&self, params: &Params) -> Result<Resources, String> {
        Ok(Resources { memory_bytes: params.usize("size") as u64 * 8, disk_bytes: 0 })
    }

    fn instantiate(&self, params: &Params, context: &RunContext) -> anyhow::Result<Box<dyn Instance>> {
        Ok(Box::new(MockInstance::new(params, context)))
    }
}

struct MockInstance {
    time_ms: f64,
    setup_ms: f64,
    /// Extra time of the first step, where this instance's first step is the run's.
    first_ms: f64,
    jitter: f64,
    slowdown: f64,
    spin: bool,
    work: u64,
    fail_at: i64,
    size: usize,
    perturb: f64,
    rng: ChaCha8Rng,
    seed: u64,
    calls: i64,
}

/// The generator of an instance's noise: the run's seed, and a stream of its own for
/// every round, every cold instance and each A/A calibration twin, so re-runs, cold
/// samples and the twins draw new noise while the same spec still gives the same
/// samples. The warm instance of a phase run's first round reads stream 0. The stream's
/// bits: the twin (0 outside calibration, then 1 or 2) from bit 62, the round from
/// bit 33 (rounds below 2^29 are distinct), the cold instance below.
fn noise_generator(context: &RunContext) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(context.seed);
    let instance = context.cold_sample.map_or(0, |index| u64::from(index) + 1);
    let twin = context.twin.map_or(0, |twin| u64::from(twin) + 1);
    rng.set_stream((twin << 62) | (u64::from(context.round) << 33) | instance);
    rng
}

/// `steps` iterations of a 64-bit linear congruential step: each depends on the last,
/// and `black_box` keeps the compiler from folding the chain into a closed form.
fn arithmetic_chain(steps: u64, seed: u64) -> u64 {
    let mut state = seed | 1;
    for _ in 0..steps {
        state =
            std::hint::black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
    }
    state
}

impl MockInstance {
    fn new(params: &Params, context: &RunContext) -> MockInstance {
        MockInstance {
            time_ms: params.float("time_ms"),
            setup_ms: params.float("setup_ms"),
            first_ms: if context.round == 0 && context.cold_sample.is_none_or(|index| index == 0) {
                params.float("first_ms")
            } else {
                0.0
            },
            jitter: params.float("jitter"),
            slowdown: params.float("slowdown"),
            spin: params.bool("spin"),
            work: params.usize("work") as u64,
            fail_at: params.int("fail_at"),
            size: params.usize("size"),
            perturb: params.float("perturb"),
            rng: noise_generator(context),
            seed: context.seed,
            // A cold sample is a fresh instance: its step is the run's sample `index + 1`.
            calls: context.cold_sample.map_or(0, i64::from),
        }
    }

    /// The steps of real work a sample does: `work` times `slowdown`.
    fn work_steps(&self) -> u64 {
        (self.work as f64 * self.slowdown).round() as u64
    }

    /// Spends `duration`: for real when spinning, otherwise by reporting it.
    fn wait(&self, probe: &mut Probe, duration: Duration) {
        if self.spin {
            let start = probe.start();
            while start.elapsed() < duration {
                std::hint::spin_loop();
            }
        } else {
            probe.report_elapsed(duration);
        }
    }
}

impl Instance for MockInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        if self.fail_at == 0 {
            anyhow::bail!("mock failure in set-up (fail_at = 0)");
        }
        self.wait(probe, Duration::from_secs_f64(self.setup_ms * 1e-3));
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        self.calls += 1;
        if self.calls == self.fail_at {
            anyhow::bail!("mock failure at sample {} (fail_at = {})", self.calls, self.fail_at);
        }
        if self.work > 0 {
            let start = probe.start();
            let value = arithmetic_chain(self.work_steps(), self.seed);
            std::hint::black_box(value);
            let seconds = start.elapsed().as_secs_f64();
            probe.metric("items_per_s", ITEMS as f64 / seconds.max(1e-12));
            probe.metric("sample_index", (self.calls - 1) as f64);
            return Ok(());
        }
        let noise: f64 = self.rng.random_range(-1.0..1.0);
        let first = if self.calls == 1 { self.first_ms * 1e-3 } else { 0.0 };
        let seconds = self.time_ms * 1e-3 * self.slowdown * (1.0 + self.jitter * noise) + first;
        self.wait(probe, Duration::from_secs_f64(seconds.max(0.0)));
        probe.metric("items_per_s", ITEMS as f64 / seconds.max(1e-12));
        probe.metric("sample_index", (self.calls - 1) as f64);
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed);
        let values = (0..self.size).map(|_| rng.random_range(0.0..1.0) + self.perturb).collect();
        vec![Output { name: "values".into(), shape: vec![self.size], data: OutputData::F64(values) }]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::Mock;
    use crate::kernel::{Instance, Kernel, Params, Probe, RunContext, Value};

    fn params(given: &[(&str, Value)]) -> Params {
        let given: BTreeMap<String, Value> =
            given.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        Params::validate(&Mock.params(), &given, false).unwrap()
    }

    fn context() -> RunContext {
        RunContext::outside_harness(7, 1, Path::new("unused"))
    }

    fn instance(given: &[(&str, Value)]) -> Box<dyn Instance> {
        Mock.instantiate(&params(given), &context()).unwrap()
    }

    #[test]
    fn fail_at_names_the_set_up_or_the_step_that_fails() {
        let error = instance(&[("fail_at", Value::Int(0))]).setup(&mut Probe::default()).unwrap_err();
        assert_eq!(error.to_string(), "mock failure in set-up (fail_at = 0)");
        let mut second = instance(&[("fail_at", Value::Int(2))]);
        second.setup(&mut Probe::default()).unwrap();
        second.run(&mut Probe::default()).unwrap();
        let error = second.run(&mut Probe::default()).unwrap_err();
        assert_eq!(error.to_string(), "mock failure at sample 2 (fail_at = 2)");
        // Each cold sample is a fresh instance: the third one is step 3.
        let cold = |index: u32| {
            let context = RunContext { cold_sample: Some(index), ..context() };
            let mut instance = Mock.instantiate(&params(&[("fail_at", Value::Int(3))]), &context).unwrap();
            instance.setup(&mut Probe::default()).unwrap();
            instance.run(&mut Probe::default()).map_err(|error| error.to_string())
        };
        assert_eq!(cold(1), Ok(()));
        assert_eq!(cold(2), Err("mock failure at sample 3 (fail_at = 3)".to_owned()));
    }

    #[test]
    fn slowdown_multiplies_the_steps_of_real_work() {
        for (work, slowdown, steps) in [(100_000, 1.0, 100_000), (100_000, 20.0, 2_000_000), (3, 1.5, 5), (0, 20.0, 0)]
        {
            let params = params(&[("work", Value::Int(work)), ("slowdown", Value::Float(slowdown))]);
            let steps_taken = super::MockInstance::new(&params, &context()).work_steps();
            assert_eq!(steps_taken, steps, "work {work}, slowdown {slowdown}");
        }
    }
}
