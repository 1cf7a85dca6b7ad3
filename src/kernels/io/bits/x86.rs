//! The AVX2 and AVX-512 paths of the bit operations, compiled with `#[target_feature]`
//! and called only after run-time detection (see the parent module).
//!
//! AVX2 popcount (nibble table, W. Mula's method): for each 32-byte vector `v`,
//! `count = table[v & 0x0f] + table[(v >> 4) & 0x0f]` per byte with `vpshufb` lookups in
//! a 16-entry table; the byte counts (at most 8 per vector) are added in byte lanes for
//! up to [`AVX2_GROUP`] vectors (at most 8 * 16 = 128 < 256, so no lane overflows) and
//! then widened with `vpsadbw` into four 64-bit sums. The Harley-Seal carry-save
//! variant counts fewer vectors but chains every block through the same adders; on the
//! reference Zen CPU it measured 0.85x of this loop, so the simpler method stays.
//!
//! AVX2 unpack of 32 bools from a 32-bit mask `m`: broadcast `m`, shuffle so byte `i`
//! holds byte `i / 8` of `m`, AND with the per-byte bit `1 << (i % 8)` and compare with
//! it, which gives 0xff for set bits; AND with 1 leaves 0/1 bytes. BMI2 `pdep`/`pext`
//! move 8 bools per instruction; in L2 on the reference machine they ran at about
//! 28 Gbool/s against 50-88 for this shuffle and the `vpmovmskb` pack, so they are not
//! used.

use std::arch::x86_64::*;

use super::{BinaryOp, portable};

/// Vectors per byte-lane accumulation group of the AVX2 popcount.
const AVX2_GROUP: usize = 16;

#[inline]
#[target_feature(enable = "avx2")]
fn nibble_count(vector: __m256i) -> __m256i {
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let low = _mm256_and_si256(vector, low_nibbles);
    let high = _mm256_and_si256(_mm256_srli_epi16::<4>(vector), low_nibbles);
    _mm256_add_epi8(_mm256_shuffle_epi8(table, low), _mm256_shuffle_epi8(table, high))
}

#[inline]
#[target_feature(enable = "avx2")]
fn load256(words: &[u64]) -> __m256i {
    debug_assert!(words.len() >= 4);
    // SAFETY: the slice holds at least 32 bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn horizontal_sum(vector: __m256i) -> u64 {
    let mut lanes = [0_u64; 4];
    // SAFETY: `lanes` is 32 bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), vector) };
    lanes.iter().sum()
}

/// Nibble-table popcount of `vectors` vectors (see the module doc); `load(index)` gives
/// vector `index` and is only called with `index < vectors`, so `popcount` and
/// `popcount_and` share the loop.
#[inline]
#[target_feature(enable = "avx2,popcnt")]
fn popcount_vectors(vectors: usize, load: impl Fn(usize) -> __m256i) -> u64 {
    let zero = _mm256_setzero_si256();
    let mut total = _mm256_setzero_si256();
    let mut start = 0;
    while start < vectors {
        let end = (start + AVX2_GROUP).min(vectors);
        // Two byte-lane accumulators so consecutive additions do not wait on each other.
        let mut even = _mm256_setzero_si256();
        let mut odd = _mm256_setzero_si256();
        let mut index = start;
        while index + 1 < end {
            even = _mm256_add_epi8(even, nibble_count(load(index)));
            odd = _mm256_add_epi8(odd, nibble_count(load(index + 1)));
            index += 2;
        }
        if index < end {
            even = _mm256_add_epi8(even, nibble_count(load(index)));
        }
        total = _mm256_add_epi64(total, _mm256_sad_epu8(even, zero));
        total = _mm256_add_epi64(total, _mm256_sad_epu8(odd, zero));
        start = end;
    }
    horizontal_sum(total)
}

#[target_feature(enable = "avx2,popcnt")]
pub(super) fn popcount_avx2(words: &[u64]) -> u64 {
    let vectors = words.len() / 4;
    let pointer = words.as_ptr();
    let body = popcount_vectors(vectors, |index| {
        // SAFETY: `index < vectors`, so words `4 * index .. 4 * index + 4` are in bounds.
        unsafe { _mm256_loadu_si256(pointer.add(index * 4).cast()) }
    });
    let tail: u64 = words[vectors * 4..].iter().map(|word| u64::from(word.count_ones())).sum();
    body + tail
}

#[target_feature(enable = "avx2,popcnt")]
pub(super) fn popcount_and_avx2(a: &[u64], b: &[u64]) -> u64 {
    let vectors = a.len() / 4;
    let (left, right) = (a.as_ptr(), b.as_ptr());
    // SAFETY (of the loads): `index < vectors`, so words `4 * index .. 4 * index + 4` are
    // in bounds of both operands.
    let body = popcount_vectors(vectors, |index| unsafe {
        _mm256_and_si256(
            _mm256_loadu_si256(left.add(index * 4).cast()),
            _mm256_loadu_si256(right.add(index * 4).cast()),
        )
    });
    let tail: u64 = a[vectors * 4..]
        .iter()
        .zip(&b[vectors * 4..])
        .map(|(left, right)| u64::from((left & right).count_ones()))
        .sum();
    body + tail
}

#[inline]
#[target_feature(enable = "avx2")]
fn apply256(op: BinaryOp, left: __m256i, right: __m256i) -> __m256i {
    match op {
        BinaryOp::And => _mm256_and_si256(left, right),
        BinaryOp::Or => _mm256_or_si256(left, right),
        BinaryOp::Xor => _mm256_xor_si256(left, right),
    }
}

#[target_feature(enable = "avx2,popcnt")]
pub(super) fn binary_avx2(op: BinaryOp, a: &[u64], b: &[u64], out: &mut [u64]) {
    let vectors = out.len() / 4;
    for index in 0..vectors {
        let result = apply256(op, load256(&a[index * 4..]), load256(&b[index * 4..]));
        // SAFETY: `out` holds at least `4 * vectors` words; the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(index * 4).cast(), result) };
    }
    let done = vectors * 4;
    portable::binary(op, &a[done..], &b[done..], &mut out[done..]);
}

#[target_feature(enable = "avx2,popcnt")]
pub(super) fn not_avx2(a: &[u64], out: &mut [u64]) {
    let ones = _mm256_set1_epi64x(-1);
    let vectors = out.len() / 4;
    for index in 0..vectors {
        let result = _mm256_xor_si256(load256(&a[index * 4..]), ones);
        // SAFETY: `out` holds at least `4 * vectors` words; the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(index * 4).cast(), result) };
    }
    let done = vectors * 4;
    portable::not(&a[done..], &mut out[done..]);
}

/// 32 bools per `vpmovmskb`: bytes equal to zero give the complement of the mask.
#[target_feature(enable = "avx2,popcnt")]
pub(super) fn pack_avx2(bools: &[u8], packed: &mut [u8]) {
    let zero = _mm256_setzero_si256();
    let groups = bools.len() / 32;
    for group in 0..groups {
        // SAFETY: bytes `32 * group .. 32 * group + 32` are in bounds; unaligned load.
        let vector = unsafe { _mm256_loadu_si256(bools.as_ptr().add(group * 32).cast()) };
        let zero_mask = _mm256_movemask_epi8(_mm256_cmpeq_epi8(vector, zero)) as u32;
        packed[group * 4..group * 4 + 4].copy_from_slice(&(!zero_mask).to_le_bytes());
    }
    portable::pack(&bools[groups * 32..], &mut packed[groups * 4..]);
}

/// 32 bools per shuffle-and-compare (see the module doc).
#[target_feature(enable = "avx2,popcnt")]
pub(super) fn unpack_avx2(packed: &[u8], bools: &mut [u8]) {
    let select = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let one = _mm256_set1_epi8(1);
    let groups = bools.len() / 32;
    for group in 0..groups {
        let mask = u32::from_le_bytes(packed[group * 4..group * 4 + 4].try_into().expect("4 bytes"));
        let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(mask as i32), select);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        // SAFETY: bytes `32 * group .. 32 * group + 32` are in bounds; unaligned store.
        unsafe { _mm256_storeu_si256(bools.as_mut_ptr().add(group * 32).cast(), _mm256_and_si256(set, one)) };
    }
    portable::unpack(&packed[groups * 4..], &mut bools[groups * 32..]);
}

/// The mask of the lowest `count` lanes (`count` < 64).
fn low_mask(count: usize) -> u64 {
    (1_u64 << count) - 1
}

/// `vpopcntq` over `words` with four accumulators; the tail is one masked load.
#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn popcount_avx512(words: &[u64]) -> u64 {
    let pointer = words.as_ptr();
    let mut accumulators = [_mm512_setzero_si512(); 4];
    let blocks = words.len() / 32;
    for block in 0..blocks {
        for (lane, accumulator) in accumulators.iter_mut().enumerate() {
            // SAFETY: words `32 * block + 8 * lane ..` plus 8 are in bounds; unaligned load.
            let vector = unsafe { _mm512_loadu_si512(pointer.add(32 * block + 8 * lane).cast()) };
            *accumulator = _mm512_add_epi64(*accumulator, _mm512_popcnt_epi64(vector));
        }
    }
    let mut offset = blocks * 32;
    while offset < words.len() {
        let mask = low_mask((words.len() - offset).min(8)) as __mmask8;
        // SAFETY: the masked load touches only the in-bounds lanes at `offset`.
        let vector = unsafe { _mm512_maskz_loadu_epi64(mask, pointer.add(offset).cast()) };
        accumulators[0] = _mm512_add_epi64(accumulators[0], _mm512_popcnt_epi64(vector));
        offset += 8;
    }
    reduce_accumulators(accumulators)
}

/// `vpopcntq` of `a & b` with four accumulators; the tail is one masked load each.
#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn popcount_and_avx512(a: &[u64], b: &[u64]) -> u64 {
    let (left, right) = (a.as_ptr(), b.as_ptr());
    let mut accumulators = [_mm512_setzero_si512(); 4];
    let blocks = a.len() / 32;
    for block in 0..blocks {
        for (lane, accumulator) in accumulators.iter_mut().enumerate() {
            let offset = 32 * block + 8 * lane;
            // SAFETY: words `offset .. offset + 8` are in bounds of both; unaligned loads.
            let vector = unsafe {
                _mm512_and_si512(
                    _mm512_loadu_si512(left.add(offset).cast()),
                    _mm512_loadu_si512(right.add(offset).cast()),
                )
            };
            *accumulator = _mm512_add_epi64(*accumulator, _mm512_popcnt_epi64(vector));
        }
    }
    let mut offset = blocks * 32;
    while offset < a.len() {
        let mask = low_mask((a.len() - offset).min(8)) as __mmask8;
        // SAFETY: the masked loads touch only the in-bounds lanes at `offset`.
        let vector = unsafe {
            _mm512_and_si512(
                _mm512_maskz_loadu_epi64(mask, left.add(offset).cast()),
                _mm512_maskz_loadu_epi64(mask, right.add(offset).cast()),
            )
        };
        accumulators[0] = _mm512_add_epi64(accumulators[0], _mm512_popcnt_epi64(vector));
        offset += 8;
    }
    reduce_accumulators(accumulators)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn reduce_accumulators(accumulators: [__m512i; 4]) -> u64 {
    let sum = _mm512_add_epi64(
        _mm512_add_epi64(accumulators[0], accumulators[1]),
        _mm512_add_epi64(accumulators[2], accumulators[3]),
    );
    _mm512_reduce_add_epi64(sum) as u64
}

#[inline]
#[target_feature(enable = "avx512f")]
fn apply512(op: BinaryOp, left: __m512i, right: __m512i) -> __m512i {
    match op {
        BinaryOp::And => _mm512_and_si512(left, right),
        BinaryOp::Or => _mm512_or_si512(left, right),
        BinaryOp::Xor => _mm512_xor_si512(left, right),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn binary_avx512(op: BinaryOp, a: &[u64], b: &[u64], out: &mut [u64]) {
    let len = out.len();
    let vectors = len / 8;
    for index in 0..vectors {
        // SAFETY: words `8 * index .. 8 * index + 8` are in bounds of all three slices;
        // the loads and the store are unaligned.
        unsafe {
            let left = _mm512_loadu_si512(a.as_ptr().add(index * 8).cast());
            let right = _mm512_loadu_si512(b.as_ptr().add(index * 8).cast());
            _mm512_storeu_si512(out.as_mut_ptr().add(index * 8).cast(), apply512(op, left, right));
        }
    }
    let offset = vectors * 8;
    if offset < len {
        let mask = low_mask(len - offset) as __mmask8;
        // SAFETY: the masked loads and store touch only the `len - offset` words left,
        // which are in bounds of all three slices.
        unsafe {
            let left = _mm512_maskz_loadu_epi64(mask, a.as_ptr().add(offset).cast());
            let right = _mm512_maskz_loadu_epi64(mask, b.as_ptr().add(offset).cast());
            _mm512_mask_storeu_epi64(out.as_mut_ptr().add(offset).cast(), mask, apply512(op, left, right));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn not_avx512(a: &[u64], out: &mut [u64]) {
    let ones = _mm512_set1_epi64(-1);
    let len = out.len();
    let vectors = len / 8;
    for index in 0..vectors {
        // SAFETY: words `8 * index .. 8 * index + 8` are in bounds of both slices.
        unsafe {
            let value = _mm512_loadu_si512(a.as_ptr().add(index * 8).cast());
            _mm512_storeu_si512(out.as_mut_ptr().add(index * 8).cast(), _mm512_xor_si512(value, ones));
        }
    }
    let offset = vectors * 8;
    if offset < len {
        let mask = low_mask(len - offset) as __mmask8;
        // SAFETY: the masked load and store touch only the words left, in bounds.
        unsafe {
            let value = _mm512_maskz_loadu_epi64(mask, a.as_ptr().add(offset).cast());
            _mm512_mask_storeu_epi64(out.as_mut_ptr().add(offset).cast(), mask, _mm512_xor_si512(value, ones));
        }
    }
}

/// 64 bools per `vptestmb`: the mask bit `i` is set when byte `i` is nonzero.
#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn pack_avx512(bools: &[u8], packed: &mut [u8]) {
    let groups = bools.len() / 64;
    for group in 0..groups {
        // SAFETY: bytes `64 * group .. 64 * group + 64` are in bounds; unaligned load.
        let vector = unsafe { _mm512_loadu_si512(bools.as_ptr().add(group * 64).cast()) };
        let bits: u64 = _mm512_test_epi8_mask(vector, vector);
        packed[group * 8..group * 8 + 8].copy_from_slice(&bits.to_le_bytes());
    }
    let offset = groups * 64;
    let count = bools.len() - offset;
    if count > 0 {
        // SAFETY: the masked load touches only the `count` bytes left, in bounds.
        let vector = unsafe { _mm512_maskz_loadu_epi8(low_mask(count), bools.as_ptr().add(offset).cast()) };
        let bits: u64 = _mm512_test_epi8_mask(vector, vector);
        let bytes = count.div_ceil(8);
        packed[groups * 8..groups * 8 + bytes].copy_from_slice(&bits.to_le_bytes()[..bytes]);
    }
}

/// 64 bools per masked broadcast of the byte 1.
#[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq")]
pub(super) fn unpack_avx512(packed: &[u8], bools: &mut [u8]) {
    let groups = bools.len() / 64;
    for group in 0..groups {
        let bits = u64::from_le_bytes(packed[group * 8..group * 8 + 8].try_into().expect("8 bytes"));
        // SAFETY: bytes `64 * group .. 64 * group + 64` are in bounds; unaligned store.
        unsafe { _mm512_storeu_si512(bools.as_mut_ptr().add(group * 64).cast(), _mm512_maskz_set1_epi8(bits, 1)) };
    }
    let offset = groups * 64;
    let count = bools.len() - offset;
    if count > 0 {
        let bytes = count.div_ceil(8);
        let mut word = [0_u8; 8];
        word[..bytes].copy_from_slice(&packed[groups * 8..groups * 8 + bytes]);
        let vector = _mm512_maskz_set1_epi8(u64::from_le_bytes(word), 1);
        // SAFETY: the masked store touches only the `count` bytes left, in bounds.
        unsafe { _mm512_mask_storeu_epi8(bools.as_mut_ptr().add(offset).cast(), low_mask(count), vector) };
    }
}
