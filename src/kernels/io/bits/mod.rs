//! Dense bit-matrix operations on `[u64]` words, with a plain reference path and
//! runtime-dispatched SIMD paths that must agree with it bit for bit.
//!
//! Operations: `popcount(a)`, `popcount(a & b)`, `c = a ^ b`, `a & b`, `a | b`, `!a`,
//! `pack` (one bool byte per bit, nonzero = true, into bytes in little bit order: bool
//! `8k + j` is bit `j` of byte `k`, as NumPy's `packbits(bitorder="little")`; a last
//! partial byte is zero-padded) and `unpack` (the inverse, writing 0/1 bytes).
//!
//! Paths ([`BitsPath`]):
//! - `scalar`: the honest reference loops. Popcount is a plain `count_ones` loop compiled
//!   with the `popcnt` target feature (`std::popcount` with `-mpopcnt`; at the x86-64
//!   baseline it would be a bit-twiddling fallback). Binary operations load and store
//!   with volatile accesses, one word at a time, because the compiler otherwise
//!   vectorizes them and there would be no non-vectorized loop to compare against.
//!   Pack and unpack are the obvious per-bit loops.
//! - `portable`: build-default code without target features: the compiler's
//!   vectorization of plain loops, an 8-bools-per-multiply SWAR pack (see
//!   [`portable::pack`]) and a 256-entry table unpack.
//! - `avx2` (needs avx2 and popcnt): nibble-table popcount (`vpshufb` counts per
//!   nibble, `vpsadbw` sums the bytes), 256-bit logic, `vpmovmskb` pack and a
//!   shuffle-and-compare unpack.
//! - `avx512` (needs avx512f, avx512bw and avx512vpopcntdq): `vpopcntq` with four
//!   accumulators, 512-bit logic, `vptestmb` pack, masked-broadcast unpack, and masked
//!   loads and stores for the tails.
//!
//! [`best_path`] picks the fastest available one at run time; asking for a path the
//! CPU lacks panics, so callers resolve paths with [`BitsPath::resolve`] first.
//! On targets other than x86-64 only `scalar` and `portable` exist.

pub mod portable;
pub mod workload;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::sys::CpuFeatures;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BitsPath {
    Scalar,
    Portable,
    Avx2,
    Avx512,
}

impl BitsPath {
    pub const ALL: [BitsPath; 4] = [BitsPath::Scalar, BitsPath::Portable, BitsPath::Avx2, BitsPath::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            BitsPath::Scalar => "scalar",
            BitsPath::Portable => "portable",
            BitsPath::Avx2 => "avx2",
            BitsPath::Avx512 => "avx512",
        }
    }

    /// The numeric code recorded as the `path_code` metric.
    pub fn code(self) -> f64 {
        match self {
            BitsPath::Scalar => 0.0,
            BitsPath::Portable => 1.0,
            BitsPath::Avx2 => 2.0,
            BitsPath::Avx512 => 3.0,
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self, features: &CpuFeatures) -> bool {
        match self {
            BitsPath::Scalar | BitsPath::Portable => true,
            BitsPath::Avx2 => cfg!(target_arch = "x86_64") && features.avx2 && features.popcnt,
            BitsPath::Avx512 => {
                cfg!(target_arch = "x86_64") && features.avx512f && features.avx512bw && features.avx512vpopcntdq
            }
        }
    }

    /// The requested path if available, else the best available one below it.
    pub fn resolve(self, features: &CpuFeatures) -> BitsPath {
        BitsPath::ALL.into_iter().rev().find(|path| *path <= self && path.is_available(features)).unwrap_or(self)
    }
}

/// The fastest path this CPU can run.
pub fn best_path() -> BitsPath {
    BitsPath::Avx512.resolve(&CpuFeatures::detect())
}

fn assert_available(path: BitsPath) {
    assert!(path.is_available(&CpuFeatures::detect()), "the {} path is not available on this CPU", path.name());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Xor,
}

/// The number of set bits in `words`.
pub fn popcount(path: BitsPath, words: &[u64]) -> u64 {
    match path {
        BitsPath::Scalar => portable::popcount_scalar(words),
        BitsPath::Portable => portable::popcount(words),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::popcount_avx2(words) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::popcount_avx512(words) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}

/// The number of set bits in `a & b` (equal lengths).
pub fn popcount_and(path: BitsPath, a: &[u64], b: &[u64]) -> u64 {
    assert_eq!(a.len(), b.len(), "popcount_and operands differ in length");
    match path {
        BitsPath::Scalar => portable::popcount_and_scalar(a, b),
        BitsPath::Portable => portable::popcount_and(a, b),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::popcount_and_avx2(a, b) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::popcount_and_avx512(a, b) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}

/// `out = a OP b` word by word (equal lengths).
pub fn binary(path: BitsPath, op: BinaryOp, a: &[u64], b: &[u64], out: &mut [u64]) {
    assert!(a.len() == b.len() && a.len() == out.len(), "binary operands differ in length");
    match path {
        BitsPath::Scalar => portable::binary_scalar(op, a, b, out),
        BitsPath::Portable => portable::binary(op, a, b, out),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::binary_avx2(op, a, b, out) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::binary_avx512(op, a, b, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}

/// `out = !a` word by word (equal lengths).
pub fn not(path: BitsPath, a: &[u64], out: &mut [u64]) {
    assert_eq!(a.len(), out.len(), "not operands differ in length");
    match path {
        BitsPath::Scalar => portable::not_scalar(a, out),
        BitsPath::Portable => portable::not(a, out),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::not_avx2(a, out) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::not_avx512(a, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}

/// Packs bool bytes into bits, little bit order; `packed.len() == bools.len().div_ceil(8)`.
pub fn pack(path: BitsPath, bools: &[u8], packed: &mut [u8]) {
    assert_eq!(packed.len(), bools.len().div_ceil(8), "pack output has the wrong length");
    match path {
        BitsPath::Scalar => portable::pack_scalar(bools, packed),
        BitsPath::Portable => portable::pack(bools, packed),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::pack_avx2(bools, packed) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::pack_avx512(bools, packed) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}

/// Unpacks bits (little bit order) into 0/1 bytes; `packed.len() == bools.len().div_ceil(8)`.
/// Bits of the last packed byte beyond `bools.len()` are ignored.
pub fn unpack(path: BitsPath, packed: &[u8], bools: &mut [u8]) {
    assert_eq!(packed.len(), bools.len().div_ceil(8), "unpack input has the wrong length");
    match path {
        BitsPath::Scalar => portable::unpack_scalar(packed, bools),
        BitsPath::Portable => portable::unpack(packed, bools),
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx2 => {
            assert_available(path);
            // SAFETY: the CPU has avx2 and popcnt (checked above).
            unsafe { x86::unpack_avx2(packed, bools) }
        }
        #[cfg(target_arch = "x86_64")]
        BitsPath::Avx512 => {
            assert_available(path);
            // SAFETY: the CPU has avx512f, avx512bw and avx512vpopcntdq (checked above).
            unsafe { x86::unpack_avx512(packed, bools) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("the {} path is not available on this CPU", path.name()),
    }
}
