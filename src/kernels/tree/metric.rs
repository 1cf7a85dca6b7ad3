//! The metric interface of the tree, the shared numeric kernels, and the Euclidean
//! metric.
//!
//! **Exactness rests on two rules.** Results are only ever decided on exact distances,
//! computed by one function per metric ([`Metric::distance`], or a vectorized kernel
//! that performs the same operations in the same order per pair, so the bits agree).
//! Screening may skip a candidate only when its exact distance is certainly above the
//! candidate's threshold. The brute-force reference uses the same distances, so the
//! tree's output equals it bit for bit.
//!
//! **Chunks.** The tree stores the children of each node in chunks of [`LANES`] with a
//! metric-defined payload laid out `[value][lane]`, so screening a chunk is a handful
//! of vector instructions. Rust never fuses a multiply and an add unless asked, and each
//! lane runs the scalar operation sequence, so every instruction set computes the same
//! bits. The one exception is a bound, never a distance: the residual metric's prefix
//! tiles fuse where the CPU has FMA, so their last bits differ between instruction
//! sets, well inside the margin the bounds carry.
//!
//! **Euclidean**: `d(x, y) = sqrt(sum_c (x_c - y_c)^2)`, summed in coordinate order.
//!
//! **Instruction sets.** Hot loops are compiled three times (AVX-512, AVX2, portable)
//! and chosen at run time by [`Isa::detect`]; results are identical across them. A
//! set is detected only when the CPU has every feature its code enables
//! ([`Isa::required_features`]), and every public entry point that takes an [`Isa`]
//! refuses one the CPU lacks. Below them, the functions and the [`Metric`] methods with
//! a `const ISA: u8` parameter run that set's instructions unchecked (a check in the
//! hot loops would cost). The public ones ([`Metric`]'s methods, [`screen_packed`]) are
//! `unsafe` to call; the crate-private ones are instantiated only by the dispatch of
//! `multiversion!` for a set already checked.

use rayon::prelude::*;

/// Number of lanes of a chunk and of the fixed-order dot product.
pub const LANES: usize = 8;

/// Rounds `length` up to a multiple of [`LANES`].
pub fn padded_length(length: usize) -> usize {
    length.div_ceil(LANES) * LANES
}

/// The reduction tree every dot product ends with.
#[inline(always)]
pub fn reduce_lanes(lanes: [f64; LANES]) -> f64 {
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

/// The fixed-order dot product of two rows whose length is a multiple of [`LANES`]:
/// eight strided lane sums, then [`reduce_lanes`].
#[inline(always)]
pub fn dot(left: &[f64], right: &[f64]) -> f64 {
    dot_with::<PORTABLE>(left, right)
}

/// [`dot`] compiled for an instruction set: the same multiplies and adds per lane, so
/// the same bits. `ISA` must be a set the CPU runs (see the module documentation).
#[inline(always)]
pub(crate) fn dot_with<const ISA: u8>(left: &[f64], right: &[f64]) -> f64 {
    reduce_lanes(dot_lanes::<ISA>(left, right))
}

/// The eight lane sums of [`dot`]. `ISA` must be a set the CPU runs (see the module
/// documentation).
#[inline(always)]
pub(crate) fn dot_lanes<const ISA: u8>(left: &[f64], right: &[f64]) -> [f64; LANES] {
    assert_eq!(left.len(), right.len(), "dot product of rows of different lengths");
    assert_eq!(left.len() % LANES, 0, "dot product rows must be padded to the lane count");
    // The AVX2 intrinsics serve both vector instantiations: the AVX-512 ones need a
    // newer compiler than the crate's minimum.
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 || ISA == AVX2 {
        // SAFETY: `ISA` is a set the CPU runs, and both vector sets require AVX2; the
        // lengths were checked above.
        return unsafe { dot_lanes_avx2(left, right) };
    }
    let mut sums = [0.0f64; LANES];
    for start in (0..left.len()).step_by(LANES) {
        let left_chunk = lanes(left, start);
        let right_chunk = lanes(right, start);
        for lane in 0..LANES {
            sums[lane] += left_chunk[lane] * right_chunk[lane];
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_lanes_avx2(left: &[f64], right: &[f64]) -> [f64; LANES] {
    use std::arch::x86_64::*;
    let mut output = [0.0f64; LANES];
    // SAFETY: the caller checked that both rows hold the same multiple of eight values.
    unsafe {
        let mut low = _mm256_setzero_pd();
        let mut high = _mm256_setzero_pd();
        for start in (0..left.len()).step_by(LANES) {
            let left_pointer = left.as_ptr().add(start);
            let right_pointer = right.as_ptr().add(start);
            low = _mm256_add_pd(low, _mm256_mul_pd(_mm256_loadu_pd(left_pointer), _mm256_loadu_pd(right_pointer)));
            high = _mm256_add_pd(
                high,
                _mm256_mul_pd(_mm256_loadu_pd(left_pointer.add(4)), _mm256_loadu_pd(right_pointer.add(4))),
            );
        }
        _mm256_storeu_pd(output.as_mut_ptr(), low);
        _mm256_storeu_pd(output.as_mut_ptr().add(4), high);
    }
    output
}

/// Dot products of `shared` with `count` rows of `others` (row r at `r * stride`), into
/// `output`: each the bits of [`dot`]. Eight rows at a time share every load of `shared`
/// and keep eight independent chains of adds in flight, where one [`dot`] waits on its
/// own chain. `ISA` must be a set the CPU runs (see the module documentation).
#[inline(always)]
pub(crate) fn dots_with<const ISA: u8>(shared: &[f64], others: &[f64], stride: usize, output: &mut [f64]) {
    let length = shared.len();
    assert_eq!(length % LANES, 0, "dot product rows must be padded to the lane count");
    let count = output.len();
    assert!(count == 0 || (count - 1) * stride + length <= others.len(), "rows outside the matrix");
    let full = count / LANES * LANES;
    for first in (0..full).step_by(LANES) {
        let mut rows: [&[f64]; LANES] = [&[]; LANES];
        for (offset, row) in rows.iter_mut().enumerate() {
            let start = (first + offset) * stride;
            *row = &others[start..start + length];
        }
        let sums = dot_lanes_eight::<ISA>(shared, &rows);
        for (offset, lane_sums) in sums.into_iter().enumerate() {
            output[first + offset] = reduce_lanes(lane_sums);
        }
    }
    for row in full..count {
        output[row] = dot_with::<ISA>(shared, &others[row * stride..row * stride + length]);
    }
}

/// The lane sums of [`dot_lanes`] of `shared` with eight rows at once.
#[inline(always)]
fn dot_lanes_eight<const ISA: u8>(shared: &[f64], rows: &[&[f64]; LANES]) -> [[f64; LANES]; LANES] {
    for row in rows {
        assert_eq!(row.len(), shared.len(), "dot product of rows of different lengths");
    }
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 {
        // SAFETY: `ISA` is a set the CPU runs, and the AVX-512 set requires AVX-512F;
        // the lengths were checked above and are multiples of eight.
        return unsafe { dot_lanes_eight_avx512(shared, rows) };
    }
    let mut sums = [[0.0f64; LANES]; LANES];
    for start in (0..shared.len()).step_by(LANES) {
        let shared_chunk = lanes(shared, start);
        for (row, row_sums) in rows.iter().zip(&mut sums) {
            let row_chunk = lanes(row, start);
            for lane in 0..LANES {
                row_sums[lane] += shared_chunk[lane] * row_chunk[lane];
            }
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_lanes_eight_avx512(shared: &[f64], rows: &[&[f64]; LANES]) -> [[f64; LANES]; LANES] {
    use std::arch::x86_64::*;
    let mut sums = [_mm512_setzero_pd(); LANES];
    // SAFETY: every row holds as many values as `shared`, a multiple of eight.
    unsafe {
        for start in (0..shared.len()).step_by(LANES) {
            let shared_chunk = _mm512_loadu_pd(shared.as_ptr().add(start));
            for (row, row_sums) in rows.iter().zip(&mut sums) {
                // A multiply, then an add: the same bits as the scalar lanes.
                let product = _mm512_mul_pd(shared_chunk, _mm512_loadu_pd(row.as_ptr().add(start)));
                *row_sums = _mm512_add_pd(*row_sums, product);
            }
        }
        let mut output = [[0.0; LANES]; LANES];
        for (row_output, row_sums) in output.iter_mut().zip(sums) {
            _mm512_storeu_pd(row_output.as_mut_ptr(), row_sums);
        }
        output
    }
}

/// Squared Euclidean distance, summed in coordinate order.
#[inline(always)]
pub fn squared_euclidean(left: &[f64], right: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (a, b) in left.iter().zip(right) {
        let difference = a - b;
        sum += difference * difference;
    }
    sum
}

/// Floating-point operations of one [`squared_euclidean`] distance in `dimension`
/// coordinates: a subtraction, a multiplication and an addition per coordinate. Every
/// exact Euclidean distance the tree counts is one (its square root is not counted).
pub fn squared_euclidean_flops(dimension: usize) -> u64 {
    3 * dimension as u64
}

/// Euclidean distance.
#[inline(always)]
pub fn euclidean(left: &[f64], right: &[f64]) -> f64 {
    squared_euclidean(left, right).sqrt()
}

/// `e^x` for `x <= 0` to a relative error below [`EXP_BOUND_ERROR`], with a short
/// dependency chain: Cody-Waite reduction to `|r| <= ln 2 / 2`, then a degree-7 Taylor
/// polynomial in Estrin's scheme (truncation below 1.8e-8, rounding far below). For
/// bounds, which add that error to their margin.
#[inline(always)]
pub fn exp_bound(x: f64) -> f64 {
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    const LN2_HIGH: f64 = 0.693_147_180_369_123_8;
    const LN2_LOW: f64 = 1.908_214_929_270_587_7e-10;
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let x = x.max(-700.0);
    let shifted = x * LOG2_E + ROUNDER;
    let k = shifted - ROUNDER;
    let r = (x - k * LN2_HIGH) - k * LN2_LOW;
    let r2 = r * r;
    let r4 = r2 * r2;
    let low = (1.0 + r) + r2 * (0.5 + r * (1.0 / 6.0));
    let high = (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5_040.0));
    let scale = f64::from_bits((shifted.to_bits().wrapping_add(1023)) << 52);
    (low + r4 * high) * scale
}

/// Relative error bound of [`exp_bound`], with room to spare.
pub const EXP_BOUND_ERROR: f64 = 1e-7;

/// Instruction-set tags for the const parameter `ISA` of the vectorized kernels.
pub const PORTABLE: u8 = 0;
pub const AVX2: u8 = 1;
pub const AVX512: u8 = 2;

/// Bit `lane` set when `values[lane] <= limits[lane]` (false for NaN, as in scalar
/// code). Compare and move-mask instructions where there are some; LLVM does not find
/// them on its own. `ISA` must be a set the CPU runs (see the module documentation).
#[inline(always)]
pub(crate) fn lane_mask<const ISA: u8>(values: &[f64; LANES], limits: &[f64; LANES]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 {
        // SAFETY: `ISA` is a set the CPU runs, and it requires AVX-512F.
        return unsafe { lane_mask_avx512(values, limits) };
    }
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX2 {
        // SAFETY: `ISA` is a set the CPU runs, and it requires AVX2.
        return unsafe { lane_mask_avx2(values, limits) };
    }
    let mut mask = 0u32;
    for lane in 0..LANES {
        if values[lane] <= limits[lane] {
            mask |= 1 << lane;
        }
    }
    mask
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn lane_mask_avx512(values: &[f64; LANES], limits: &[f64; LANES]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: both pointers address eight f64 values.
    unsafe {
        u32::from(_mm512_cmp_pd_mask::<_CMP_LE_OQ>(_mm512_loadu_pd(values.as_ptr()), _mm512_loadu_pd(limits.as_ptr())))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lane_mask_avx2(values: &[f64; LANES], limits: &[f64; LANES]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: both pointers address eight f64 values.
    unsafe {
        let low = _mm256_cmp_pd::<_CMP_LE_OQ>(_mm256_loadu_pd(values.as_ptr()), _mm256_loadu_pd(limits.as_ptr()));
        let high = _mm256_cmp_pd::<_CMP_LE_OQ>(
            _mm256_loadu_pd(values.as_ptr().add(4)),
            _mm256_loadu_pd(limits.as_ptr().add(4)),
        );
        (_mm256_movemask_pd(low) | (_mm256_movemask_pd(high) << 4)) as u32
    }
}

/// Relative slack of comparisons of squared sums with squared distance limits: far
/// above the rounding of a sum of squares, of a correctly rounded root (`sqrt(s) <= t`
/// implies `s <= t^2 (1 + 2^-51)`) and of the limit itself.
pub const SQUARE_SLACK: f64 = 1e-12;

/// The limit to compare squared sums with for a distance limit: its square slackened
/// by [`SQUARE_SLACK`], so every sum whose root (or whose box bound's root) is within
/// `limit` passes; -1 for a negative limit, which nothing is within.
#[inline(always)]
pub fn squared_limit(limit: f64) -> f64 {
    if limit >= 0.0 { limit * limit * (1.0 + SQUARE_SLACK) } else { -1.0 }
}

/// Eight consecutive values of a slice as an array (for vectorizable lane loops).
#[inline(always)]
pub fn lanes(values: &[f64], start: usize) -> &[f64; LANES] {
    values[start..start + LANES].try_into().expect("eight lanes")
}

/// Squared distances from `point` to eight boxes, `lower` and `upper` holding their
/// corners (`[coordinate][lane]`, `point.len() * LANES` values each), summed in
/// coordinate order. A box's sum is at most that of any point inside it, computed as
/// [`tile_squared_distances`] computes it: each gap is at most that point's difference
/// (rounding is monotone), and the sums run in the same order.
#[inline(always)]
pub fn box_squared_distances(point: &[f64], lower: &[f64], upper: &[f64]) -> [f64; LANES] {
    let mut sums = [0.0f64; LANES];
    for ((lower_row, upper_row), &value) in lower.chunks_exact(LANES).zip(upper.chunks_exact(LANES)).zip(point) {
        for lane in 0..LANES {
            let below = lower_row[lane] - value;
            let above = value - upper_row[lane];
            let gap = if below > above { below } else { above };
            let gap = if gap > 0.0 { gap } else { 0.0 };
            sums[lane] += gap * gap;
        }
    }
    sums
}

/// Squared Euclidean distances from `point` to the eight lanes of a chunk payload
/// whose first `point.len()` rows hold coordinates; per lane, the same operations in
/// the same order as `squared_euclidean`.
#[inline(always)]
pub fn lane_squared_distances(point: &[f64], payload: &[f64]) -> [f64; LANES] {
    let [sums] = tile_squared_distances([point], payload);
    sums
}

/// [`lane_squared_distances`] for a tile of points of one dimension at once: each row
/// of the payload is loaded once for the tile, and the tile's sums are independent
/// dependency chains (one point's chain is as long as the dimension, and its adds
/// cannot be reordered without changing the bits).
#[inline(always)]
pub fn tile_squared_distances<const TILE: usize>(points: [&[f64]; TILE], payload: &[f64]) -> [[f64; LANES]; TILE] {
    let dimension = points[0].len();
    let points = points.map(|point| &point[..dimension]);
    let mut sums = [[0.0f64; LANES]; TILE];
    for (coordinate, row) in payload[..dimension * LANES].chunks_exact(LANES).enumerate() {
        for (point, point_sums) in points.iter().zip(&mut sums) {
            let value = point[coordinate];
            for lane in 0..LANES {
                let difference = value - row[lane];
                point_sums[lane] += difference * difference;
            }
        }
    }
    sums
}

/// Items per parallel task: an even share of `items` per thread, within
/// `smallest..=largest`. A task's items share its loads (a chunk of the tree, a block
/// of V), so larger tasks stream less memory per item; the share keeps every thread
/// busy. No result depends on it.
pub fn task_size(items: usize, smallest: usize, largest: usize) -> usize {
    items.div_ceil(rayon::current_num_threads()).clamp(smallest, largest)
}

/// Counts of the work the distance functions did, summed per task and then over tasks
/// (so the totals do not depend on the thread count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistanceCounts {
    /// Exact distance evaluations.
    pub exact: u64,
    /// Pairs examined with a cheap bound: the whole-row bound of the residual metric,
    /// or the bounding box of a leaf-bucket chunk (Euclidean queries).
    pub bounded: u64,
    /// Pairs that needed at least one prefix dot product (residual metric only).
    pub prefix_pairs: u64,
    /// Chunks screened by their summary ([`Metric::screen_summaries`]), one per query
    /// and chunk.
    pub summary_screened: u64,
    /// Of those, the chunks the summary rejected: none of their lanes was looked at.
    pub summary_rejected: u64,
    /// Floating-point operations in dot products (exact and prefix), counting a
    /// multiply and an add as two. The Euclidean metric has none: its flops follow
    /// from `exact` (see [`squared_euclidean_flops`]), which keeps the count out of
    /// its screening loops.
    pub dot_flops: u64,
}

impl DistanceCounts {
    pub fn add(&mut self, other: &DistanceCounts) {
        self.exact += other.exact;
        self.bounded += other.bounded;
        self.prefix_pairs += other.prefix_pairs;
        self.summary_screened += other.summary_screened;
        self.summary_rejected += other.summary_rejected;
        self.dot_flops += other.dot_flops;
    }
}

/// One chunk of up to [`LANES`] points: ids, how many lanes are used, and the payload
/// (`[value][lane]`, `payload_width * LANES` values; unused lanes are zero).
#[derive(Clone, Copy, Debug)]
pub struct ChunkView<'a> {
    pub ids: &'a [u32; LANES],
    pub len: usize,
    pub payload: &'a [f64],
}

/// The outcome of [`Metric::bound_chunk`]: lanes with a known exact distance, and
/// lanes that still need one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkScreen {
    pub known: u32,
    pub pending: u32,
}

/// What the tree needs from a metric space over n data points.
///
/// A *query* is a data point (during the build, and residual queries) or an external
/// point (Euclidean queries).
///
/// The methods with a `const ISA: u8` parameter run that instruction set's code
/// without checking it, so they are `unsafe` to call. Inside the crate they are
/// called only from bodies that `multiversion!` instantiates for a checked set.
pub trait Metric: Sync {
    type Query<'a>: Copy + Send + Sync
    where
        Self: 'a;

    /// Number of data points.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The query standing for data point `index`.
    fn point(&self, index: usize) -> Self::Query<'_>;

    /// The data-set index a query stands for, if any (for the self-match policy).
    fn query_index(&self, query: Self::Query<'_>) -> Option<usize>;

    /// The exact distance between a query and data point `index`.
    fn distance(&self, query: Self::Query<'_>, index: usize) -> f64;

    /// Values per point in a chunk payload.
    fn payload_width(&self) -> usize;

    /// Writes the payload of point `index` into lane `lane` of a chunk payload.
    fn write_payload(&self, index: usize, lane: usize, payload: &mut [f64]);

    /// The group of point `index` (the same for all: no grouping). The tree keeps the
    /// root's children in chunks of one group each, so a metric whose bounds depend
    /// mostly on some property of the points can group points alike in it, and the
    /// lanes a query keeps gather in fewer chunks. Which chunk a child lands in never
    /// changes a result.
    fn chunk_group(&self, _index: usize) -> u32 {
        0
    }

    /// Values per chunk of a chunk summary (0: the metric keeps none). A summary is a
    /// cheap description of all the points of a chunk (say, their bounding box) that
    /// [`Metric::screen_summaries`] can reject whole chunks with before any lane is
    /// looked at; the tree keeps one per chunk with [`Metric::summarize`].
    fn summary_width(&self) -> usize {
        0
    }

    /// Folds point `index` into its chunk's summary (`summary_width` values); `first`
    /// when it is the chunk's first point, whose values the summary then takes.
    fn summarize(&self, _index: usize, _first: bool, _summary: &mut [f64]) {}

    /// Screens up to [`LANES`] chunks for one query from their summaries
    /// (`[value][chunk]`, `summary_width * LANES` values): bit c of the result is clear
    /// only when no point of chunk c has a computed distance within `thresholds[c]` of
    /// the query, so that skipping the chunk changes nothing but the work done. Bits of
    /// chunks beyond the ones given are the caller's to mask.
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    unsafe fn screen_summaries<const ISA: u8>(
        &self,
        _query: Self::Query<'_>,
        _summaries: &[f64],
        _thresholds: &[f64; LANES],
    ) -> u32 {
        (1u32 << LANES) - 1
    }

    /// Whether a chunk payload holds the points' coordinates (`[coordinate][lane]`) and
    /// [`Metric::distance`] is their Euclidean distance, computed bit for bit as
    /// [`tile_squared_distances`] and a square root compute it (then
    /// [`Metric::coordinates`] gives every point's coordinates). Callers may then screen
    /// squared sums before taking any root.
    fn payload_is_coordinates(&self) -> bool {
        false
    }

    /// The coordinates of a query, for metrics whose distance is the Euclidean one in
    /// these coordinates (they get box-screened leaf buckets); `None` otherwise.
    fn coordinates<'a>(&self, _query: Self::Query<'a>) -> Option<&'a [f64]>
    where
        Self: 'a,
    {
        None
    }

    /// The cheap part of screening a chunk against per-lane thresholds. Lanes set in
    /// `known` have their exact distance in `distances`; lanes set in `pending` need
    /// [`Metric::distance`]; together they cover every used lane whose exact distance
    /// is at most its threshold (other lanes may be included too; callers test the
    /// distance).
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    unsafe fn bound_chunk<const ISA: u8>(
        &self,
        query: Self::Query<'_>,
        chunk: ChunkView<'_>,
        thresholds: &[f64; LANES],
        distances: &mut [f64; LANES],
        counts: &mut DistanceCounts,
    ) -> ChunkScreen;

    /// [`Metric::bound_chunk`] for several queries against one chunk, query by query
    /// in the outputs. Metrics whose bounds run in stages override it to share each
    /// stage's loads of the chunk across the queries; the screens obey the same
    /// contract. The counts of all the queries go to `counts`.
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    #[inline(always)]
    unsafe fn bound_chunk_many<const ISA: u8>(
        &self,
        queries: &[Self::Query<'_>],
        chunk: ChunkView<'_>,
        thresholds: &[[f64; LANES]],
        distances: &mut [[f64; LANES]],
        screens: &mut [ChunkScreen],
        counts: &mut DistanceCounts,
    ) {
        for (index, &query) in queries.iter().enumerate() {
            // SAFETY: the caller's contract for `ISA` is this method's.
            screens[index] =
                unsafe { self.bound_chunk::<ISA>(query, chunk, &thresholds[index], &mut distances[index], counts) };
        }
    }

    /// [`Metric::bound_chunk`], then the exact distances of the pending lanes: for every
    /// lane set in the returned mask `distances[lane]` is exact, and every lane within
    /// its threshold is set.
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    #[inline(always)]
    unsafe fn screen_chunk<const ISA: u8>(
        &self,
        query: Self::Query<'_>,
        chunk: ChunkView<'_>,
        thresholds: &[f64; LANES],
        distances: &mut [f64; LANES],
        counts: &mut DistanceCounts,
    ) -> u32 {
        // SAFETY (both calls): the caller's contract for `ISA` is this method's.
        let screen = unsafe { self.bound_chunk::<ISA>(query, chunk, thresholds, distances, counts) };
        let mut pending = screen.pending;
        while pending != 0 {
            let lane = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            distances[lane] = unsafe { self.exact_distance::<ISA>(query, chunk.ids[lane] as usize, counts) };
        }
        screen.known | screen.pending
    }

    /// [`Metric::distance`] compiled for an instruction set (same bits), counted.
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    #[inline(always)]
    unsafe fn exact_distance<const ISA: u8>(
        &self,
        query: Self::Query<'_>,
        index: usize,
        counts: &mut DistanceCounts,
    ) -> f64 {
        counts.exact += 1;
        counts.dot_flops += self.exact_flops();
        self.distance(query, index)
    }

    /// Whether large expansions should start from a few promising candidates (see
    /// [`Metric::seed_scores`]); worth it when the screening depends strongly on the
    /// threshold.
    fn wants_seeds(&self) -> bool {
        false
    }

    /// Cheap per-lane scores, higher meaning more likely near the query.
    ///
    /// # Safety
    ///
    /// `ISA` must be a set the CPU runs ([`Isa::is_available`]; [`PORTABLE`] always is).
    unsafe fn seed_scores<const ISA: u8>(&self, _query: Self::Query<'_>, _chunk: ChunkView<'_>) -> [f64; LANES] {
        [0.0; LANES]
    }

    /// An upper bound on every distance (infinity when there is none): a subtree whose
    /// pruning threshold reaches it cannot be pruned, so its root's exact distance is
    /// not worth computing for that purpose.
    fn largest_distance(&self) -> f64 {
        f64::INFINITY
    }

    /// A weight of the rounding error of a query's distances (see
    /// [`Metric::triangle_slack`]); zero when errors are purely relative.
    fn query_error_weight(&self, query: Self::Query<'_>) -> f64;

    /// How far computed distances may violate the triangle inequality when a subtree is
    /// pruned: the query (of error weight `query_weight`) is at `distance` from a node
    /// of subtree radius `radius`.
    fn triangle_slack(&self, distance: f64, radius: f64, query_weight: f64) -> f64;

    /// Floating-point operations of one exact distance's dot product (for GFLOP/s; 0
    /// for a metric without one).
    fn exact_flops(&self) -> u64;
}

/// Points packed into chunks once, in the given order, for screening by many queries
/// (the conflict graph's active points, the leaves a round of insertion added).
#[derive(Clone, Debug)]
pub struct PackedPoints {
    ids: Vec<[u32; LANES]>,
    payload: Vec<f64>,
    width: usize,
    count: usize,
}

impl PackedPoints {
    pub fn new<M: Metric>(metric: &M, points: &[u32]) -> PackedPoints {
        let width = metric.payload_width();
        let chunk_count = points.len().div_ceil(LANES);
        let mut payload = vec![0.0; chunk_count * width * LANES];
        let mut ids = vec![[0u32; LANES]; chunk_count];
        payload.par_chunks_mut(width * LANES).zip(ids.par_iter_mut()).zip(points.par_chunks(LANES)).for_each(
            |((chunk_payload, chunk_ids), chunk_points)| {
                for (lane, &point) in chunk_points.iter().enumerate() {
                    chunk_ids[lane] = point;
                    metric.write_payload(point as usize, lane, chunk_payload);
                }
            },
        );
        PackedPoints { ids, payload, width, count: points.len() }
    }

    /// Points packed.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn chunk_count(&self) -> usize {
        self.ids.len()
    }

    #[inline(always)]
    pub fn view(&self, chunk: usize) -> ChunkView<'_> {
        let size = self.width * LANES;
        ChunkView {
            ids: &self.ids[chunk],
            len: LANES.min(self.count - chunk * LANES),
            payload: &self.payload[chunk * size..(chunk + 1) * size],
        }
    }
}

/// Screens packed candidates against one threshold each (in packing order). Appends
/// `(candidate, exact distance)` in that order for every candidate the screening keeps
/// whose distance is at most its threshold.
///
/// # Safety
///
/// `ISA` must be a set the CPU runs, as for the [`Metric`] methods it calls.
#[inline(always)]
pub unsafe fn screen_packed<const ISA: u8, M: Metric>(
    metric: &M,
    query: M::Query<'_>,
    candidates: &PackedPoints,
    thresholds: &[f64],
    found: &mut Vec<(u32, f64)>,
    counts: &mut DistanceCounts,
) {
    assert_eq!(thresholds.len(), candidates.len(), "one threshold per candidate");
    let mut distances = [0.0; LANES];
    for (chunk, chunk_thresholds) in thresholds.chunks(LANES).enumerate() {
        let view = candidates.view(chunk);
        let mut lane_thresholds = [0.0; LANES];
        lane_thresholds[..view.len].copy_from_slice(&chunk_thresholds[..view.len]);
        // SAFETY: the caller's contract for `ISA` is this function's.
        let mask = unsafe { metric.screen_chunk::<ISA>(query, view, &lane_thresholds, &mut distances, counts) };
        for lane in 0..view.len {
            if mask & (1 << lane) != 0 && distances[lane] <= lane_thresholds[lane] {
                found.push((view.ids[lane], distances[lane]));
            }
        }
    }
}

/// The instruction set the hot loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        Isa::best_with(cpu_has)
    }

    /// The best instruction set whose [`Isa::required_features`] all pass `has`.
    pub fn best_with(has: impl Fn(&str) -> bool) -> Isa {
        [Isa::Avx512, Isa::Avx2].into_iter().find(|isa| isa.is_supported_by(&has)).unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run code compiled for `self`.
    pub fn is_available(self) -> bool {
        #[cfg(test)]
        if hidden::HIDDEN.with(|hidden| hidden.get().contains(&self)) {
            return false;
        }
        self.is_supported_by(cpu_has)
    }

    /// Whether a CPU whose features pass `has` can run code compiled for `self`.
    pub fn is_supported_by(self, has: impl Fn(&str) -> bool) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2 | Isa::Avx512 => {
                cfg!(target_arch = "x86_64") && self.required_features().iter().all(|feature| has(feature))
            }
        }
    }

    /// Every CPU feature that code compiled for `self` enables (the
    /// `#[target_feature(enable = ..)]` lists of its functions, and the intrinsics they
    /// call): the CPU must have them all. Both vector sets fuse multiplies and adds
    /// (the prefix bounds, the peak), and the AVX-512 code also runs the AVX2 kernels.
    pub fn required_features(self) -> &'static [&'static str] {
        match self {
            Isa::Avx512 => &["avx512f", "avx512dq", "avx512vl", "avx2", "fma"],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Portable => &[],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// Instruction sets that tests make [`Isa::is_available`] deny on the calling thread,
/// so that the refusal of a missing one is tested on a CPU that has them all.
#[cfg(test)]
pub(crate) mod hidden {
    use std::cell::Cell;

    use super::Isa;

    thread_local! {
        pub(crate) static HIDDEN: Cell<&'static [Isa]> = const { Cell::new(&[]) };
    }

    /// Runs `job` with `isas` reported as unavailable on this thread.
    pub(crate) fn with_hidden<T>(isas: &'static [Isa], job: impl FnOnce() -> T) -> T {
        let before = HIDDEN.with(|hidden| hidden.replace(isas));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        HIDDEN.with(|hidden| hidden.set(before));
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Whether this CPU has a feature of [`Isa::required_features`] (the detection macro
/// takes only literals).
fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
            "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// Defines `$name(isa, args..)`, which runs the body compiled for the given instruction
/// set. The body is an `#[inline(always)]` function with a `const ISA: u8` parameter
/// naming the set, so everything it inlines (the metric's chunk kernels) is vectorized
/// for that set and may pick intrinsics by `ISA`. The function may have one lifetime
/// and type parameters, or no generic parameters at all.
macro_rules! multiversion {
    (
        $(#[$attribute:meta])*
        $visibility:vis fn $name:ident $(<$($lifetime:lifetime,)? $($generic:ident: $bound:path),*>)?
        ($($argument:ident: $type:ty),* $(,)?) -> $result:ty $body:block
    ) => {
        $(#[$attribute])*
        $visibility fn $name<$($($lifetime,)? $($generic: $bound),*)?>(
            isa: $crate::kernels::tree::metric::Isa,
            $($argument: $type),*
        ) -> $result {
            #[inline(always)]
            fn generic<$($($lifetime,)?)? const ISA: u8, $($($generic: $bound),*)?>($($argument: $type),*) -> $result $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
            fn with_avx512<$($($lifetime,)? $($generic: $bound),*)?>($($argument: $type),*) -> $result {
                generic::<{ $crate::kernels::tree::metric::AVX512 }, $($($generic),*)?>($($argument),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn with_avx2<$($($lifetime,)? $($generic: $bound),*)?>($($argument: $type),*) -> $result {
                generic::<{ $crate::kernels::tree::metric::AVX2 }, $($($generic),*)?>($($argument),*)
            }

            // Callers pass a detected set, or one they checked with `Isa::is_available`.
            debug_assert!(isa.is_available(), "instruction set {isa:?} is not available");
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU runs `Avx512` code, which needs exactly the features
                // enabled here (`Isa::required_features`).
                $crate::kernels::tree::metric::Isa::Avx512 => unsafe { with_avx512($($argument),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU runs `Avx2` code, which needs exactly the features
                // enabled here (`Isa::required_features`).
                $crate::kernels::tree::metric::Isa::Avx2 => unsafe { with_avx2($($argument),*) },
                _ => generic::<{ $crate::kernels::tree::metric::PORTABLE }, $($($generic),*)?>($($argument),*),
            }
        }
    };
}
pub(crate) use multiversion;

/// Relative slack for metrics whose computed distances carry only relative rounding
/// errors of a few ulps: 1e-12 is four orders of magnitude above them.
const RELATIVE_SLACK: f64 = 1e-12;

/// Euclidean distance between data points and external queries.
#[derive(Clone, Debug)]
pub struct EuclideanMetric {
    pub points: super::data::Points,
}

/// A Euclidean query: the coordinates, and the data index when it is a data point.
#[derive(Clone, Copy, Debug)]
pub struct EuclideanQuery<'a> {
    pub coordinates: &'a [f64],
    pub index: Option<usize>,
}

/// Queries per tile of [`EuclideanMetric::bound_chunk_many`].
pub const EUCLIDEAN_TILE: usize = 4;

/// The exact distances of a chunk's lanes from their squared sums, and the lanes
/// within their thresholds.
#[inline(always)]
fn euclidean_screen<const ISA: u8>(
    sums: &[f64; LANES],
    chunk: ChunkView<'_>,
    thresholds: &[f64; LANES],
    distances: &mut [f64; LANES],
    counts: &mut DistanceCounts,
) -> ChunkScreen {
    for lane in 0..LANES {
        distances[lane] = sums[lane].sqrt();
    }
    counts.exact += chunk.len as u64;
    ChunkScreen { known: lane_mask::<ISA>(distances, thresholds) & ((1u32 << chunk.len) - 1), pending: 0 }
}

impl Metric for EuclideanMetric {
    type Query<'a> = EuclideanQuery<'a>;

    fn len(&self) -> usize {
        self.points.len()
    }

    #[inline(always)]
    fn point(&self, index: usize) -> EuclideanQuery<'_> {
        EuclideanQuery { coordinates: self.points.row(index), index: Some(index) }
    }

    fn query_index(&self, query: EuclideanQuery<'_>) -> Option<usize> {
        query.index
    }

    #[inline]
    fn distance(&self, query: EuclideanQuery<'_>, index: usize) -> f64 {
        euclidean(query.coordinates, self.points.row(index))
    }

    fn payload_width(&self) -> usize {
        self.points.dimension
    }

    fn write_payload(&self, index: usize, lane: usize, payload: &mut [f64]) {
        for (coordinate, &value) in self.points.row(index).iter().enumerate() {
            payload[coordinate * LANES + lane] = value;
        }
    }

    fn payload_is_coordinates(&self) -> bool {
        true
    }

    #[inline(always)]
    fn coordinates<'a>(&self, query: EuclideanQuery<'a>) -> Option<&'a [f64]>
    where
        Self: 'a,
    {
        Some(query.coordinates)
    }

    /// Every lane's exact distance: a bound would cost about as much.
    #[inline(always)]
    unsafe fn bound_chunk<const ISA: u8>(
        &self,
        query: EuclideanQuery<'_>,
        chunk: ChunkView<'_>,
        thresholds: &[f64; LANES],
        distances: &mut [f64; LANES],
        counts: &mut DistanceCounts,
    ) -> ChunkScreen {
        let sums = lane_squared_distances(query.coordinates, chunk.payload);
        euclidean_screen::<ISA>(&sums, chunk, thresholds, distances, counts)
    }

    /// The queries in tiles of [`EUCLIDEAN_TILE`], which hide the latency of each
    /// query's chain of adds behind the others'.
    #[inline(always)]
    unsafe fn bound_chunk_many<const ISA: u8>(
        &self,
        queries: &[EuclideanQuery<'_>],
        chunk: ChunkView<'_>,
        thresholds: &[[f64; LANES]],
        distances: &mut [[f64; LANES]],
        screens: &mut [ChunkScreen],
        counts: &mut DistanceCounts,
    ) {
        for start in (0..queries.len()).step_by(EUCLIDEAN_TILE) {
            let tile = &queries[start..queries.len().min(start + EUCLIDEAN_TILE)];
            // A short tile repeats its last query; the repeats are discarded.
            let points = std::array::from_fn(|position| tile[position.min(tile.len() - 1)].coordinates);
            let sums = tile_squared_distances::<EUCLIDEAN_TILE>(points, chunk.payload);
            for (position, tile_sums) in sums.iter().enumerate().take(tile.len()) {
                let index = start + position;
                screens[index] =
                    euclidean_screen::<ISA>(tile_sums, chunk, &thresholds[index], &mut distances[index], counts);
            }
        }
    }

    fn query_error_weight(&self, _query: EuclideanQuery<'_>) -> f64 {
        0.0
    }

    #[inline(always)]
    fn triangle_slack(&self, distance: f64, radius: f64, _query_weight: f64) -> f64 {
        RELATIVE_SLACK * (distance + radius)
    }

    fn exact_flops(&self) -> u64 {
        0
    }
}
