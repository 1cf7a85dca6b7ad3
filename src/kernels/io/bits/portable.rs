//! The `scalar` reference loops and the `portable` build-default paths of the bit
//! operations (see the parent module for what each path promises).
//!
//! SWAR pack of eight bool bytes `x` (one u64, byte `k` = bool `k`):
//! `t = (((x & 0x7f..7f) + 0x7f..7f) | x) & 0x80..80` sets the top bit of every nonzero
//! byte without carries between bytes; `ones = t >> 7` holds `b_k` at bit `8k`; the
//! product `ones * 0x0102_0408_1020_4080` places `b_k` at bit `56 + k` (the partial
//! products sit at the distinct positions `8k + 7j + 7`, so nothing carries), and
//! `>> 56` leaves the packed byte in little bit order.

use super::BinaryOp;

const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const GATHER: u64 = 0x0102_0408_1020_4080;

/// The scalar popcount reference: a plain loop with the `popcnt` instruction enabled.
pub fn popcount_scalar(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has popcnt (checked above).
            return unsafe { popcount_popcnt(words) };
        }
    }
    popcount(words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn popcount_popcnt(words: &[u64]) -> u64 {
    let mut count = 0_u64;
    for word in words {
        count += u64::from(word.count_ones());
    }
    count
}

pub fn popcount_and_scalar(a: &[u64], b: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has popcnt (checked above).
            return unsafe { popcount_and_popcnt(a, b) };
        }
    }
    popcount_and(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn popcount_and_popcnt(a: &[u64], b: &[u64]) -> u64 {
    let mut count = 0_u64;
    for (left, right) in a.iter().zip(b) {
        count += u64::from((left & right).count_ones());
    }
    count
}

/// Popcount as the build's default target compiles it.
pub fn popcount(words: &[u64]) -> u64 {
    words.iter().map(|word| u64::from(word.count_ones())).sum()
}

pub fn popcount_and(a: &[u64], b: &[u64]) -> u64 {
    a.iter().zip(b).map(|(left, right)| u64::from((left & right).count_ones())).sum()
}

fn apply(op: BinaryOp, left: u64, right: u64) -> u64 {
    match op {
        BinaryOp::And => left & right,
        BinaryOp::Or => left | right,
        BinaryOp::Xor => left ^ right,
    }
}

/// One word at a time through volatile accesses, so the compiler cannot vectorize it.
pub fn binary_scalar(op: BinaryOp, a: &[u64], b: &[u64], out: &mut [u64]) {
    for index in 0..out.len() {
        // SAFETY: `index` is in bounds of all three slices (equal lengths, checked by the
        // caller), and the pointers come from live references.
        unsafe {
            let left = std::ptr::read_volatile(a.as_ptr().add(index));
            let right = std::ptr::read_volatile(b.as_ptr().add(index));
            std::ptr::write_volatile(out.as_mut_ptr().add(index), apply(op, left, right));
        }
    }
}

pub fn not_scalar(a: &[u64], out: &mut [u64]) {
    for index in 0..out.len() {
        // SAFETY: as in `binary_scalar`.
        unsafe {
            let value = std::ptr::read_volatile(a.as_ptr().add(index));
            std::ptr::write_volatile(out.as_mut_ptr().add(index), !value);
        }
    }
}

pub fn binary(op: BinaryOp, a: &[u64], b: &[u64], out: &mut [u64]) {
    // One loop per operation so each is a single vectorizable loop.
    let pairs = out.iter_mut().zip(a.iter().zip(b));
    match op {
        BinaryOp::And => pairs.for_each(|(out, (left, right))| *out = left & right),
        BinaryOp::Or => pairs.for_each(|(out, (left, right))| *out = left | right),
        BinaryOp::Xor => pairs.for_each(|(out, (left, right))| *out = left ^ right),
    }
}

pub fn not(a: &[u64], out: &mut [u64]) {
    out.iter_mut().zip(a).for_each(|(out, value)| *out = !value);
}

/// The plain pack loop: one bool at a time.
pub fn pack_scalar(bools: &[u8], packed: &mut [u8]) {
    for (byte_index, byte) in packed.iter_mut().enumerate() {
        let mut value = 0_u8;
        for bit in 0..8 {
            let index = byte_index * 8 + bit;
            if index < bools.len() && bools[index] != 0 {
                value |= 1 << bit;
            }
        }
        *byte = value;
    }
}

/// SWAR pack of eight bools per multiply (see the module doc).
pub fn pack(bools: &[u8], packed: &mut [u8]) {
    let mut groups = bools.chunks_exact(8);
    for (group, byte) in (&mut groups).zip(packed.iter_mut()) {
        *byte = pack_eight(u64::from_le_bytes(group.try_into().expect("8 bools")));
    }
    let remainder = groups.remainder();
    if !remainder.is_empty() {
        let mut padded = [0_u8; 8];
        padded[..remainder.len()].copy_from_slice(remainder);
        packed[bools.len() / 8] = pack_eight(u64::from_le_bytes(padded));
    }
}

/// Packs the eight bool bytes of `group` (byte `k` = bool `k`) into one byte.
pub fn pack_eight(group: u64) -> u8 {
    let nonzero_high = (((group & LOW_SEVEN) + LOW_SEVEN) | group) & HIGH_BITS;
    ((nonzero_high >> 7).wrapping_mul(GATHER) >> 56) as u8
}

/// The plain unpack loop: one bool at a time.
pub fn unpack_scalar(packed: &[u8], bools: &mut [u8]) {
    for (index, value) in bools.iter_mut().enumerate() {
        *value = (packed[index / 8] >> (index % 8)) & 1;
    }
}

/// Eight bool bytes for every byte value: entry `v` has byte `k` equal to bit `k` of `v`.
static UNPACK_TABLE: [u64; 256] = {
    let mut table = [0_u64; 256];
    let mut value = 0;
    while value < 256 {
        let mut bit = 0;
        while bit < 8 {
            table[value] |= (((value >> bit) & 1) as u64) << (8 * bit);
            bit += 1;
        }
        value += 1;
    }
    table
};

/// Table unpack: eight bools per lookup.
pub fn unpack(packed: &[u8], bools: &mut [u8]) {
    let mut groups = bools.chunks_exact_mut(8);
    for (group, byte) in (&mut groups).zip(packed) {
        group.copy_from_slice(&UNPACK_TABLE[usize::from(*byte)].to_le_bytes());
    }
    let remainder = groups.into_remainder();
    if !remainder.is_empty() {
        let spread = UNPACK_TABLE[usize::from(packed[packed.len() - 1])].to_le_bytes();
        let length = remainder.len();
        remainder.copy_from_slice(&spread[..length]);
    }
}
