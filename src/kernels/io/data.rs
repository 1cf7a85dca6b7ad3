//! Buffers, seeded payloads, the bandwidth-bound f64 reduction and the content digest
//! shared by every family of the `io` kernel.
//!
//! **Payload.** The source of every workload is `size / 8` f64 values in `[0, 1)` drawn
//! from ChaCha8 seeded with the `data_seed` parameter (not the run seed, so a candidate
//! and its reference workload see the same bytes), one ChaCha stream per block of
//! [`GENERATION_BLOCK`] values. Blocks are generated in parallel, so the payload is
//! independent of the thread count.
//!
//! **Reduction.** [`sum_f64`] adds the values with [`LANES`] independent accumulators:
//! accumulator `j` adds `x[j], x[j + L], x[j + 2L], ...` in order, the tail
//! (`len mod L` values) is added to accumulators `0, 1, ...`, and the lanes are then
//! combined pairwise (`acc[j] += acc[j + L/2]`, halving until one remains). Sixteen
//! lanes keep eight two-wide vector additions in flight, enough to run at memory
//! bandwidth. A chunked reduction combines its per-chunk sums in chunk order, so its
//! result depends on the chunk size but never on the thread count or the schedule.
//!
//! **Digest.** [`digest`] is a 64-bit FNV-1a variant over little-endian 64-bit words in
//! four interleaved lanes (word `i` goes to lane `i mod 4`), computed per block of
//! [`DIGEST_BLOCK`] bytes and folded in block order; a trailing partial word is
//! zero-padded and the length is mixed in. It detects corruption, not adversaries.

use memmap2::MmapMut;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Values per independently seeded generation block (64 KiB of f64).
pub const GENERATION_BLOCK: usize = 8192;

/// Independent accumulators of [`sum_f64`].
pub const LANES: usize = 16;

/// Bytes per digest block.
pub const DIGEST_BLOCK: usize = 1 << 20;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A page-aligned anonymous mapping, so in-memory buffers have the same alignment as
/// mapped files and memcpy does not run at a different speed for alignment reasons.
pub struct AlignedBuffer {
    map: Option<MmapMut>,
    len: usize,
}

impl AlignedBuffer {
    /// A zero-filled buffer whose pages are not yet touched. With `hugepage`, the range
    /// is advised `MADV_HUGEPAGE` before any page is touched; the result of the advice
    /// is returned (an error means the kernel refused it).
    pub fn new(len: usize, hugepage: bool) -> std::io::Result<(AlignedBuffer, Option<std::io::Result<()>>)> {
        if len == 0 {
            return Ok((AlignedBuffer { map: None, len }, None));
        }
        let map = MmapMut::map_anon(len)?;
        let advice = hugepage.then(|| advise_hugepage(&map));
        Ok((AlignedBuffer { map: Some(map), len }, advice))
    }

    /// Writes a byte of every page once, so that they are provisioned and timing the
    /// buffer measures copies, not page faults.
    pub fn prefault(&mut self) {
        let page = super::sys::page_size();
        let bytes = self.bytes_mut();
        for offset in (0..bytes.len()).step_by(page) {
            bytes[offset] = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or(&mut [])
    }

    /// The buffer as f64 values; `len` must be a multiple of 8.
    pub fn values(&self) -> &[f64] {
        f64_view(self.bytes())
    }

    pub fn values_mut(&mut self) -> &mut [f64] {
        f64_view_mut(self.bytes_mut())
    }

    pub fn words(&self) -> &[u64] {
        u64_view(self.bytes())
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        u64_view_mut(self.bytes_mut())
    }
}

#[cfg(target_os = "linux")]
fn advise_hugepage(map: &MmapMut) -> std::io::Result<()> {
    map.advise(memmap2::Advice::HugePage)
}

#[cfg(not(target_os = "linux"))]
fn advise_hugepage(_map: &MmapMut) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Views bytes as f64 values. Panics on a misaligned start or a length that is not a
/// multiple of 8: every buffer of this kernel is page-aligned and sized in whole values.
pub fn f64_view(bytes: &[u8]) -> &[f64] {
    // SAFETY: every bit pattern is a valid f64, and `align_to` only yields a properly
    // aligned middle part.
    let (head, values, tail) = unsafe { bytes.align_to::<f64>() };
    assert!(head.is_empty() && tail.is_empty(), "f64 view of a misaligned or partial buffer");
    values
}

pub fn f64_view_mut(bytes: &mut [u8]) -> &mut [f64] {
    // SAFETY: as in `f64_view`; writes of any f64 leave valid bytes behind.
    let (head, values, tail) = unsafe { bytes.align_to_mut::<f64>() };
    assert!(head.is_empty() && tail.is_empty(), "f64 view of a misaligned or partial buffer");
    values
}

pub fn u64_view(bytes: &[u8]) -> &[u64] {
    // SAFETY: every bit pattern is a valid u64.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    assert!(head.is_empty() && tail.is_empty(), "u64 view of a misaligned or partial buffer");
    words
}

pub fn u64_view_mut(bytes: &mut [u8]) -> &mut [u64] {
    // SAFETY: as in `u64_view`.
    let (head, words, tail) = unsafe { bytes.align_to_mut::<u64>() };
    assert!(head.is_empty() && tail.is_empty(), "u64 view of a misaligned or partial buffer");
    words
}

/// Views f64 values as their native-endian bytes: files hold the machine's native f64
/// layout, as the payload of a native NumPy array does.
pub fn f64_bytes(values: &[f64]) -> &[u8] {
    // SAFETY: f64 has no padding and u8 has alignment 1; the length is exact.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn block_rng(seed: u64, block: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(block as u64);
    rng
}

/// Fills `values` with the seeded payload (see the module doc).
pub fn fill_values(values: &mut [f64], seed: u64) {
    fill_values_from(values, seed, 0);
}

/// Fills `values` with the payload starting at generation block `first_block`, so a
/// file can be written in batches that together equal [`fill_values`] of the whole.
pub fn fill_values_from(values: &mut [f64], seed: u64, first_block: usize) {
    values.par_chunks_mut(GENERATION_BLOCK).enumerate().for_each(|(block, values)| {
        let mut rng = block_rng(seed, first_block + block);
        for value in values {
            *value = rng.random::<f64>();
        }
    });
}

/// Fills `words` with seeded uniformly random bits.
pub fn fill_words(words: &mut [u64], seed: u64) {
    words.par_chunks_mut(GENERATION_BLOCK).enumerate().for_each(|(block, words)| {
        let mut rng = block_rng(seed, block);
        for word in words {
            *word = rng.next_u64();
        }
    });
}

/// Fills `bools` with seeded 0/1 bytes (NumPy's bool layout), each true with
/// probability one half.
pub fn fill_bools(bools: &mut [u8], seed: u64) {
    bools.par_chunks_mut(GENERATION_BLOCK * 8).enumerate().for_each(|(block, bools)| {
        let mut rng = block_rng(seed, block);
        for group in bools.chunks_mut(64) {
            let bits = rng.next_u64();
            for (index, value) in group.iter_mut().enumerate() {
                *value = ((bits >> index) & 1) as u8;
            }
        }
    });
}

/// The sum of `values` with [`LANES`] accumulators (see the module doc for the order).
pub fn sum_f64(values: &[f64]) -> f64 {
    let mut lanes = [0.0_f64; LANES];
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        for (lane, value) in lanes.iter_mut().zip(block) {
            *lane += *value;
        }
    }
    for (lane, value) in lanes.iter_mut().zip(blocks.remainder()) {
        *lane += *value;
    }
    combine_lanes(lanes)
}

/// Pairwise combination of the accumulators: `acc[j] += acc[j + half]`, halving.
pub fn combine_lanes(mut lanes: [f64; LANES]) -> f64 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for index in 0..width {
            lanes[index] += lanes[index + width];
        }
    }
    lanes[0]
}

/// The digest of `bytes` (see the module doc), computed per block in parallel.
pub fn digest(bytes: &[u8]) -> u64 {
    let blocks: Vec<u64> = bytes.par_chunks(DIGEST_BLOCK).map(digest_block).collect();
    let mut hash = FNV_OFFSET ^ bytes.len() as u64;
    for block in blocks {
        hash = (hash ^ block).wrapping_mul(FNV_PRIME);
    }
    hash
}

fn digest_block(bytes: &[u8]) -> u64 {
    let mut lanes = [FNV_OFFSET, FNV_OFFSET ^ 1, FNV_OFFSET ^ 2, FNV_OFFSET ^ 3];
    let mut groups = bytes.chunks_exact(32);
    for group in &mut groups {
        for (lane, word) in lanes.iter_mut().zip(group.chunks_exact(8)) {
            let word = u64::from_le_bytes(word.try_into().expect("8-byte word"));
            *lane = (*lane ^ word).wrapping_mul(FNV_PRIME);
        }
    }
    let remainder = groups.remainder();
    for (index, word) in remainder.chunks(8).enumerate() {
        let mut padded = [0_u8; 8];
        padded[..word.len()].copy_from_slice(word);
        lanes[index] = (lanes[index] ^ u64::from_le_bytes(padded)).wrapping_mul(FNV_PRIME);
    }
    lanes.iter().fold(FNV_OFFSET, |hash, &lane| (hash ^ lane).wrapping_mul(FNV_PRIME))
}
