//! Branch-free elementary functions the compiler can vectorize: rounding, `cos(pi x)`,
//! `sin(pi x)`, `exp`, and the lattice transform built from them.
//!
//! Library calls (`floor`, `sin`, `exp`) stop loop vectorization on baseline x86-64, so
//! the fast path uses these instead. They use only `+ - * /`, `sqrt`, comparisons and
//! bit casts, which every instruction set rounds identically, and no fused multiply-add
//! outside the correctly rounded quotient below, so results are bit-for-bit the same
//! whether the compiler emits SSE2, AVX2 or AVX-512.
//!
//! **Rounding.** For `|x| < 2^51`, `(x + 1.5 * 2^52) - 1.5 * 2^52` is `x` rounded to the
//! nearest integer (ties to even), because numbers in `[2^52, 2^53)` are spaced 1 apart.
//!
//! **Lattice transform.** `sincg(pi h, N) = sin(N pi h)/sin(pi h)`. With `h = n + f`,
//! `n` the nearest integer and `|f| <= 1/2`, the transform equals
//! `(-1)^(n(N-1)) sin(N pi f)/sin(pi f)`, and only its square is used, so the sign is
//! dropped. The reduction is exact, which makes this more accurate than evaluating the
//! sines of the large argument. For `N <= CHEBYSHEV_LIMIT`,
//! `sin(N x)/sin(x) = U_{N-1}(cos x)` (Chebyshev polynomial of the second kind, by
//! `U_0 = 1`, `U_1 = 2c`, `U_{n+1} = 2c U_n - U_{n-1}`), which needs one cosine; beyond,
//! both sines are evaluated on reduced arguments.
//!
//! **Polynomials.** `cos(pi f)` and `sin(pi g)` for `|f|, |g| <= 1/2` are Taylor series
//! in `x = pi f` up to `x^22` and `x^23`, whose truncation error is below 1e-17;
//! `exp(x) = 2^n exp(r)` with `n = round(x / ln 2)`, `r = x - n ln 2` (two-part `ln 2`),
//! `|r| <= ln2/2`, and a Taylor series up to `r^14`.
//!
//! **Quotients without a division.** A CPU's divider does not widen with its vectors:
//! one that divides two f64 per 4 cycles with SSE2 may divide eight per 16 with AVX-512,
//! so divisions cap what wider vectors gain. Given `y = 1/b` correctly rounded,
//! [`divide_by_reciprocal`] returns `a / b` correctly rounded (the division's bits) with
//! one product and four fused multiply-adds:
//! - `q0 = a y` is within 1.5 units in the last place (ulp) of `a/b`, since `y` and the
//!   product each round once;
//! - `q1 = q0 - (b q0 - a) y`, the residual `b q0 - a` and the sum each rounded once, is
//!   within an ulp of `a/b`: the residual is about 1.5 ulp times `b`, and the rounding
//!   errors of the correction are about `2^-52` of it;
//! - `q2 = q1 - (b q1 - a) y`: with `y` within half an ulp of `1/b` and `q1` within an
//!   ulp of `a/b`, the residual is exact and `q2` is `a/b` rounded to nearest (Markstein's
//!   theorem; J.-M. Muller et al., *Handbook of Floating-Point Arithmetic*, 2nd ed.,
//!   section 4.9).
//!
//! The theorem needs the residuals not to underflow: `|a|` and `|b|` above about
//! `2^-900` and `a/b` finite, which the simulator's geometry (lengths in metres,
//! wavelengths near `1e-10`) keeps by far. The result takes the sign of `q0`: the same
//! as the quotient's when it is not zero, and the division's sign of a zero numerator,
//! which the corrections, adding zeros of either sign, would turn into `+0`. (A branch on
//! the numerator there would stop the compiler from vectorizing the lanes.)

use std::f64::consts::{LN_2, PI};

const ROUNDING_MAGIC: f64 = 6755399441055744.0; // 1.5 * 2^52
const ROUNDING_LIMIT: f64 = 2251799813685248.0; // 2^51

/// The largest cell count whose lattice transform uses the Chebyshev recurrence.
pub const CHEBYSHEV_LIMIT: u32 = 16;

/// `x` rounded to the nearest integer (ties to even).
#[inline(always)]
pub fn round_nearest(x: f64) -> f64 {
    let rounded = (x + ROUNDING_MAGIC) - ROUNDING_MAGIC;
    if x.abs() < ROUNDING_LIMIT { rounded } else { x }
}

/// The largest integer not above `x`.
#[inline(always)]
pub fn floor(x: f64) -> f64 {
    let rounded = round_nearest(x);
    if rounded > x { rounded - 1.0 } else { rounded }
}

/// The smallest integer not below `x`.
#[inline(always)]
pub fn ceil(x: f64) -> f64 {
    let rounded = round_nearest(x);
    if rounded < x { rounded + 1.0 } else { rounded }
}

/// `numerator / denominator`, correctly rounded, from `reciprocal`, the correctly
/// rounded `1 / denominator`, with fused multiply-adds and no division (see the module
/// doc for why this is the division's result, and for the range it needs).
///
/// Fast only where the CPU has FMA and the caller is compiled for it; elsewhere each
/// `mul_add` is a library call.
#[inline(always)]
pub fn divide_by_reciprocal(numerator: f64, denominator: f64, reciprocal: f64) -> f64 {
    let estimate = numerator * reciprocal;
    let excess = denominator.mul_add(estimate, -numerator);
    let faithful = (-excess).mul_add(reciprocal, estimate);
    let excess = denominator.mul_add(faithful, -numerator);
    let quotient = (-excess).mul_add(reciprocal, faithful);
    quotient.copysign(estimate)
}

const COS_COEFFICIENTS: [f64; 12] = [
    1.0,
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40320.0,
    -1.0 / 3628800.0,
    1.0 / 479001600.0,
    -1.0 / 87178291200.0,
    1.0 / 20922789888000.0,
    -1.0 / 6402373705728000.0,
    1.0 / 2432902008176640000.0,
    -1.0 / 1124000727777607680000.0,
];

const SIN_COEFFICIENTS: [f64; 12] = [
    1.0,
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5040.0,
    1.0 / 362880.0,
    -1.0 / 39916800.0,
    1.0 / 6227020800.0,
    -1.0 / 1307674368000.0,
    1.0 / 355687428096000.0,
    -1.0 / 121645100408832000.0,
    1.0 / 51090942171709440000.0,
    -1.0 / 25852016738884976640000.0,
];

/// `cos(pi f)` for `|f| <= 1/2`.
#[inline(always)]
pub fn cos_pi(f: f64) -> f64 {
    let x = PI * f;
    let x_squared = x * x;
    let mut sum = COS_COEFFICIENTS[11];
    for coefficient in COS_COEFFICIENTS[..11].iter().rev() {
        sum = sum * x_squared + coefficient;
    }
    sum
}

/// `sin(pi g)` for `|g| <= 1/2`.
#[inline(always)]
pub fn sin_pi(g: f64) -> f64 {
    let x = PI * g;
    let x_squared = x * x;
    let mut sum = SIN_COEFFICIENTS[11];
    for coefficient in SIN_COEFFICIENTS[..11].iter().rev() {
        sum = sum * x_squared + coefficient;
    }
    sum * x
}

/// `|sin(N pi h) / sin(pi h)|`, or `N` where `h` is an integer, for `N >= 2`.
///
/// For one value at a time; the fast path evaluates the same steps lane by lane.
#[inline(always)]
pub fn lattice_transform(h: f64, cells: u32) -> f64 {
    let fraction = h - round_nearest(h);
    if cells <= CHEBYSHEV_LIMIT {
        chebyshev_second_kind(cos_pi(fraction), cells - 1).abs()
    } else {
        lattice_transform_by_sines(fraction, cells)
    }
}

/// `U_degree(c)` by the three-term recurrence.
#[inline(always)]
pub fn chebyshev_second_kind(c: f64, degree: u32) -> f64 {
    let two_c = 2.0 * c;
    let mut previous = 1.0;
    let mut current = if degree == 0 { 1.0 } else { two_c };
    for _ in 1..degree {
        let next = two_c * current - previous;
        previous = current;
        current = next;
    }
    current
}

/// `|sin(N pi f) / sin(pi f)|` for `|f| <= 1/2` (`N` at `f = 0`).
#[inline(always)]
pub fn lattice_transform_by_sines(fraction: f64, cells: u32) -> f64 {
    let scaled = fraction * f64::from(cells);
    let scaled_fraction = scaled - round_nearest(scaled);
    let ratio = sin_pi(scaled_fraction) / sin_pi(fraction);
    if fraction == 0.0 { f64::from(cells) } else { ratio.abs() }
}

const EXP_COEFFICIENTS: [f64; 15] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
    1.0 / 87178291200.0,
];

// ln 2 split in two: the high part has 21 trailing zero bits, so `n * LN_2_HIGH` is exact
// for every exponent `|n| < 2^11`, and the low part is the rest of ln 2.
const LN_2_HIGH: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN_2_LOW: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `e^x`, to about one unit in the last place; 0 below -708 and infinity above 709.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let clamped = x.clamp(-708.0, 709.0);
    let shifted = clamped * (1.0 / LN_2) + ROUNDING_MAGIC;
    let exponent = shifted - ROUNDING_MAGIC;
    let exponent_bits = shifted.to_bits().wrapping_sub(ROUNDING_MAGIC.to_bits());
    let reduced = (clamped - exponent * LN_2_HIGH) - exponent * LN_2_LOW;
    let mut sum = EXP_COEFFICIENTS[14];
    for coefficient in EXP_COEFFICIENTS[..14].iter().rev() {
        sum = sum * reduced + coefficient;
    }
    let scale = f64::from_bits(exponent_bits.wrapping_add(1023) << 52);
    let value = sum * scale;
    if x < -708.0 {
        0.0
    } else if x > 709.0 {
        f64::INFINITY
    } else {
        value
    }
}
