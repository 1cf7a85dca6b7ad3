//! The machine's measured f64 multiply-add peak, the yardstick for the GFLOP/s of the
//! distance tiles (`gflops_build`, `gflops_query`).
//!
//! Every thread of the pool runs independent chains of `acc = acc * m + a` on vectors
//! of [`LANES`] values, compiled for the instruction set the tiles use (fused
//! multiply-adds on AVX2 and AVX-512, a multiply and an add on the portable path), with
//! enough chains to cover the latency of the operation on two pipes. Nothing is loaded
//! or stored in the loop, so the rate is the arithmetic peak of the cores as the
//! scheduler gives them to the run: the figure the tiles' rate is a share of.

use super::metric::{AVX2, AVX512, Isa, LANES, multiversion};

/// Multiply-add steps per chain on every thread: about 3.2 GFLOP per thread with
/// AVX-512 (twelve chains of eight lanes), some 40 ms on a core that does two 512-bit
/// fused multiply-adds per cycle.
pub const STEPS: usize = 1 << 24;

/// What one measurement did: floating-point operations (a multiply and an add count
/// two) and the sum of the chains, returned so the work cannot be optimized away.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakWork {
    pub flops: u64,
    pub checksum: f64,
}

/// Runs `steps` multiply-add steps per chain on every thread of the current pool (one
/// share each, at the same time: a parallel iterator might let one thread take two).
/// `isa` must be a set this CPU runs ([`Isa::is_available`]).
pub fn run(isa: Isa, steps: usize) -> PeakWork {
    assert!(isa.is_available(), "instruction set {isa:?} is not available");
    let results: Vec<PeakWork> = rayon::broadcast(|_| chains(isa, steps));
    let flops = results.iter().map(|work| work.flops).sum();
    let checksum = results.iter().map(|work| work.checksum).sum();
    PeakWork { flops, checksum }
}

multiversion! {
    /// One thread's chains, as many as the instruction set has registers for.
    fn chains(steps: usize) -> PeakWork {
        if ISA == AVX512 {
            independent_chains::<true, 12>(steps)
        } else if ISA == AVX2 {
            // Sixteen 256-bit registers: six chains of two halves, plus the operands.
            independent_chains::<true, 6>(steps)
        } else {
            independent_chains::<false, 6>(steps)
        }
    }
}

/// `CHAINS` independent chains of [`LANES`] values; `FUSED` only where the CPU has
/// fused multiply-add instructions.
#[inline(always)]
fn independent_chains<const FUSED: bool, const CHAINS: usize>(steps: usize) -> PeakWork {
    // Opaque operands: the compiler cannot fold the recurrence. It converges to
    // a / (1 - m) = 0.1, far from overflow and from subnormal numbers.
    let multiplier = std::hint::black_box(0.999_999f64);
    let addend = std::hint::black_box(1e-7f64);
    let steps = std::hint::black_box(steps);
    let mut accumulators = [[0.0f64; LANES]; CHAINS];
    for (chain, accumulator) in accumulators.iter_mut().enumerate() {
        for (lane, value) in accumulator.iter_mut().enumerate() {
            *value = (chain * LANES + lane) as f64 * 1e-3;
        }
    }
    for _ in 0..steps {
        for accumulator in &mut accumulators {
            for value in accumulator.iter_mut() {
                *value = if FUSED { value.mul_add(multiplier, addend) } else { *value * multiplier + addend };
            }
        }
    }
    let checksum = accumulators.iter().flatten().sum();
    PeakWork { flops: 2 * (steps * CHAINS * LANES) as u64, checksum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_multiply_add_and_converges() {
        for isa in [Isa::Portable, Isa::detect()] {
            let work = chains(isa, 1000);
            let chains = match isa {
                Isa::Avx512 => 12,
                _ => 6,
            };
            assert_eq!(work.flops, 2 * 1000 * chains * LANES as u64, "{isa:?}");
            // The steps ran: after N of them a value that started at v is
            // `0.1 + (v - 0.1) m^N` (m = 0.999999), so the sum moves by about 5e-3 over
            // 1000 steps, and rounding moves it by less than 1e-11.
            let values = chains as usize * LANES;
            let start: f64 = (0..values).map(|index| index as f64 * 1e-3).sum();
            let limit = 0.1 * values as f64;
            let expected = limit + (start - limit) * 0.999_999f64.powi(1000);
            assert!((work.checksum - expected).abs() < 1e-9, "{isa:?}: {} vs {expected}", work.checksum);
            assert!((work.checksum - start).abs() > 1e-3, "{isa:?}: the sum moved");
        }
    }

    #[test]
    fn runs_on_every_thread_of_the_pool() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a pool");
        let work = pool.install(|| run(Isa::Portable, 100));
        assert_eq!(work.flops, 3 * 2 * 100 * 6 * LANES as u64);
    }
}
