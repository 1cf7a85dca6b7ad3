//! The residual-correlation metric, in f64, with cheap lower bounds.
//!
//! The correlation of a Gaussian-process residual after conditioning on m inducing
//! points U:
//!
//! - kernel `k(x, y) = s2 exp(-r^2 / (2 l^2))` (RBF) or `s2 (1 + a + a^2 / 3) e^-a` with
//!   `a = sqrt(5) r / l` (Matern 5/2), where `r = ||x - y||`;
//! - Cholesky `K_UU + 1e-6 s2 I = L L^T`, and `V = (L^-1 K_UX)^T` (n x m), so that
//!   `V_i . V_j = K_iU K_UU^-1 K_Uj` (the Nystrom approximation of `K_ij`);
//! - residual variance `p_i = max(k(x_i, x_i) - ||V_i||^2, 1e-9)`;
//! - `rho_ij = (K_ij - V_i . V_j) / sqrt(max(p_i p_j, 1e-18))`, clipped to [-1, 1];
//! - `d(i, j) = sqrt(max(0, 1 - |rho_ij|))`, and `d(i, i) = 0`.
//!
//! For unit residual vectors u this is `min(||u_i - u_j||, ||u_i + u_j||) / sqrt 2`, a
//! metric on lines, so the triangle inequality holds in exact arithmetic; d is in [0, 1].
//! Where `p_i` is floored (a kernel variance below about 1e-3 puts the inducing points
//! there, below about 1e-9 every point), the residual vector divided by `sqrt(p_i)`,
//! r_i, is shorter than a unit vector: for `i != j`,
//! `1 - |rho| = min(||r_i - r_j||, ||r_i + r_j||)^2 / 2 + c_i + c_j` with
//! `c_i = (1 - ||r_i||^2) / 2`, still a metric (by Minkowski's inequality), but the
//! formula puts a point `sqrt(2 c_i)` from itself, where d(i, i) = 0.
//! Everything is f64: next to an inducing point `p_i` is about 1e-6 and f32 would lose
//! up to 0.05 in rho. The exact distance uses `f64::exp` and the fixed-order [`dot`],
//! so the brute force, the build and the query all see the same bits.
//!
//! **Cheap lower bounds.** With `s_i = 1 / sqrt(p_i)`, `u_i = s_i V_i` and
//! `w_i = ||u_i||`, `rho_ij = K_ij s_i s_j - u_i . u_j`. A pair is within distance tau
//! exactly when `|rho| >= 1 - tau^2`, so any upper bound on |rho| below that rejects it:
//!
//! - stage 0, Cauchy-Schwarz on the whole row: `|rho| <= K s_i s_j + w_i w_j`, from the
//!   kernel value (a vectorized `exp`) and two norms, no dot product; or, when i is an
//!   inducing point (the r-th), the *inducing bound*, whichever is smaller: then
//!   `K_Ui = (L L^T - delta I) e_r` with the jitter `delta = 1e-6 s2`, so
//!   `V_i = L^T e_r - delta L^-1 e_r` and `K_ij - V_i . V_j = delta (L^-1 e_r) . V_j`
//!   exactly, and `|rho_ij| <= f_i w_j` with `f_i = delta ||L^-1 e_r|| s_i` (with a
//!   margin, [`INDUCING_ERROR`], for the rounding of the computed V);
//! - stages 1-5, Cauchy-Schwarz on a suffix: with W an m x T matrix of orthonormal
//!   columns and `u'_i = u_i W`, `u_i . u_j = u'_i . u'_j + (rest)` where the rest is
//!   bounded by the norms of the parts W misses,
//!   `S_t(i) = sqrt(w_i^2 - ||u'_i[..t]||^2)`. After a prefix of t rotated
//!   coordinates, `|rho| <= |K s_i s_j - u'_i[..t] . u'_j[..t]| + S_t(i) S_t(j)`, tested
//!   at t = 8, 16, 32, 64, 128 ([`CHECKPOINTS`]; those within the padded rank).
//!
//! W spans (approximately) the dominant subspace of the scaled rows, from a seeded
//! subspace iteration on a sample of rows and a Rayleigh-Ritz step, so most of each
//! row's energy sits in the first coordinates and most pairs are rejected after a few
//! of them. Any orthonormal W keeps the bounds valid; a good one makes them tight. The
//! bounds carry a relative margin (`CORRELATION_ERROR`) far above every rounding
//! error involved, so they never reject a pair whose computed distance is within its
//! threshold.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::data::Points;
#[cfg(target_arch = "x86_64")]
use super::metric::AVX512;
use super::metric::{
    AVX2, ChunkScreen, ChunkView, DistanceCounts, EXP_BOUND_ERROR, Isa, LANES, Metric, box_squared_distances, dot,
    dot_with, dots_with, exp_bound, lane_mask, lane_squared_distances, lanes, multiversion, padded_length,
    squared_euclidean, tile_squared_distances,
};

/// Which covariance function the residual metric uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CovarianceFunction {
    Rbf,
    Matern52,
}

/// The parameters of the residual-correlation metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualParams {
    /// Kernel variance s2.
    pub variance: f64,
    /// Kernel lengthscale l.
    pub lengthscale: f64,
    /// Number of inducing points m (capped at n).
    pub inducing_count: usize,
    pub covariance: CovarianceFunction,
}

impl Default for ResidualParams {
    fn default() -> Self {
        ResidualParams { variance: 1.0, lengthscale: 1.0, inducing_count: 512, covariance: CovarianceFunction::Rbf }
    }
}

/// The covariance k as a function of the squared distance.
#[inline(always)]
pub fn covariance(params: &ResidualParams, squared_distance: f64) -> f64 {
    let lengthscale_squared = params.lengthscale * params.lengthscale;
    match params.covariance {
        CovarianceFunction::Rbf => params.variance * (-squared_distance / (2.0 * lengthscale_squared)).exp(),
        CovarianceFunction::Matern52 => {
            let a = (5.0 * squared_distance / lengthscale_squared).sqrt();
            params.variance * (1.0 + a + a * a / 3.0) * (-a).exp()
        }
    }
}

/// Turns a correlation into the residual distance.
#[inline(always)]
pub fn distance_from_correlation(correlation: f64) -> f64 {
    let clipped = correlation.clamp(-1.0, 1.0);
    (1.0 - clipped.abs()).max(0.0).sqrt()
}

/// Why the residual model could not be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("the inducing-point covariance is not positive definite (pivot {pivot} is {value:e})")]
    NotPositiveDefinite { pivot: usize, value: f64 },
    #[error("residual metric needs at least one point")]
    Empty,
}

/// The precomputed residual-correlation model: V, the residual variances and the
/// quantities the lower bounds need.
#[derive(Clone, Debug)]
pub struct ResidualModel {
    pub params: ResidualParams,
    pub points: Points,
    /// Sorted data-set indices of the inducing points.
    pub inducing: Vec<usize>,
    /// m, the length of a row of V before padding.
    pub rank: usize,
    /// Row stride of `v` (m rounded up to [`LANES`]).
    pub stride: usize,
    /// V, n rows of `stride` values (zero padded).
    pub v: Vec<f64>,
    /// Residual variances p_i.
    pub residual_variance: Vec<f64>,
    /// `1 / sqrt(p_i)`.
    pub inverse_scale: Vec<f64>,
    /// `w_i = ||V_i|| / sqrt(p_i)`.
    pub norm: Vec<f64>,
    /// For an inducing point i: `f_i = delta ||L^-1 e_r|| s_i` (see the module
    /// documentation); NaN for the other points.
    pub inducing_factor: Vec<f64>,
    /// The largest [`ResidualModel::error_weight`] over all points.
    pub largest_error_weight: f64,
}

impl ResidualModel {
    /// Builds V from the Cholesky factor of the inducing covariance (see the module
    /// documentation). `inducing` must be sorted, distinct and in range.
    pub fn new(points: Points, inducing: Vec<usize>, params: ResidualParams) -> Result<ResidualModel, ModelError> {
        let n = points.len();
        if n == 0 {
            return Err(ModelError::Empty);
        }
        let rank = inducing.len();
        let stride = padded_length(rank.max(1));
        let factor = cholesky(&inducing_covariance(&points, &inducing, &params))?;
        let v = solve_rows(&points, &inducing, &params, &factor, rank, stride);
        let inverse_column_norms = inverse_column_norms(&factor, rank);
        let residual_variance: Vec<f64> = (0..n)
            .map(|row| {
                let v_row = &v[row * stride..(row + 1) * stride];
                (params.variance - dot(v_row, v_row)).max(RESIDUAL_VARIANCE_FLOOR)
            })
            .collect();
        let inverse_scale: Vec<f64> = residual_variance.iter().map(|variance| 1.0 / variance.sqrt()).collect();
        let norm: Vec<f64> = (0..n)
            .map(|row| {
                let v_row = &v[row * stride..(row + 1) * stride];
                dot(v_row, v_row).sqrt() * inverse_scale[row]
            })
            .collect();
        let jitter = JITTER * params.variance;
        let mut inducing_factor = vec![f64::NAN; n];
        for (position, &point) in inducing.iter().enumerate() {
            inducing_factor[point] = jitter * inverse_column_norms[position] * inverse_scale[point];
        }
        let mut model = ResidualModel {
            params,
            points,
            inducing,
            rank,
            stride,
            v,
            residual_variance,
            inverse_scale,
            norm,
            inducing_factor,
            largest_error_weight: 0.0,
        };
        model.largest_error_weight = (0..n).map(|row| model.error_weight(row)).fold(0.0, f64::max);
        Ok(model)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether `p_i` is at its floor, where the correlation formula no longer gives
    /// `rho_ii = 1` (see the module documentation).
    #[inline(always)]
    pub fn is_floored(&self, index: usize) -> bool {
        self.residual_variance[index] <= RESIDUAL_VARIANCE_FLOOR
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// How strongly rounding errors grow in the distances of point i: the computed
    /// correlation of (i, j) is within `2 CORRELATION_ERROR E_i E_j` of the exact one,
    /// `E_i = max(s_i sqrt(s2), w_i)` (both terms of rho scale with these).
    #[inline]
    pub fn error_weight(&self, index: usize) -> f64 {
        (self.inverse_scale[index] * self.params.variance.sqrt()).max(self.norm[index])
    }

    #[inline]
    pub fn v_row(&self, index: usize) -> &[f64] {
        &self.v[index * self.stride..(index + 1) * self.stride]
    }

    /// The exact residual correlation from the kernel value `K_ij` and the dot product
    /// `V_i . V_j`.
    #[inline(always)]
    pub fn correlation_from_kernel(&self, left: usize, right: usize, kernel_value: f64, dot_product: f64) -> f64 {
        let scale = (self.residual_variance[left] * self.residual_variance[right]).max(1e-18).sqrt();
        (kernel_value - dot_product) / scale
    }

    /// The exact kernel value `K_ij`.
    #[inline(always)]
    pub fn kernel_value(&self, left: usize, right: usize) -> f64 {
        covariance(&self.params, squared_euclidean(self.points.row(left), self.points.row(right)))
    }

    /// The exact residual distance d(i, j).
    #[inline]
    pub fn distance(&self, left: usize, right: usize) -> f64 {
        if left == right {
            return 0.0;
        }
        let dot_product = dot(self.v_row(left), self.v_row(right));
        distance_from_correlation(self.correlation_from_kernel(
            left,
            right,
            self.kernel_value(left, right),
            dot_product,
        ))
    }
}

/// `K_UU + 1e-6 s2 I`, row-major m x m.
fn inducing_covariance(points: &Points, inducing: &[usize], params: &ResidualParams) -> Vec<f64> {
    let rank = inducing.len();
    let mut matrix = vec![0.0; rank * rank];
    for (row, &left) in inducing.iter().enumerate() {
        for (column, &right) in inducing.iter().enumerate() {
            matrix[row * rank + column] = covariance(params, squared_euclidean(points.row(left), points.row(right)));
        }
        matrix[row * rank + row] += JITTER * params.variance;
    }
    matrix
}

/// The floor of the residual variances `p_i`.
const RESIDUAL_VARIANCE_FLOOR: f64 = 1e-9;

/// The jitter added to the inducing covariance, relative to the kernel variance.
const JITTER: f64 = 1e-6;

/// `||L^-1 e_r||` for every column r of the inverse of a lower-triangular factor (one
/// forward substitution per column).
fn inverse_column_norms(factor: &[f64], rank: usize) -> Vec<f64> {
    (0..rank)
        .into_par_iter()
        .map(|column| {
            let mut solution = vec![0.0; rank];
            let mut sum_of_squares = 0.0;
            for row in column..rank {
                let mut value = if row == column { 1.0 } else { 0.0 };
                for inner in column..row {
                    value -= factor[row * rank + inner] * solution[inner];
                }
                solution[row] = value / factor[row * rank + row];
                sum_of_squares += solution[row] * solution[row];
            }
            sum_of_squares.sqrt()
        })
        .collect()
}

/// The lower Cholesky factor of a symmetric positive definite row-major matrix.
fn cholesky(matrix: &[f64]) -> Result<Vec<f64>, ModelError> {
    let rank = (matrix.len() as f64).sqrt() as usize;
    let mut factor = vec![0.0; rank * rank];
    for row in 0..rank {
        for column in 0..=row {
            let mut sum = matrix[row * rank + column];
            for inner in 0..column {
                sum -= factor[row * rank + inner] * factor[column * rank + inner];
            }
            if row == column {
                if sum.is_nan() || sum <= 0.0 || sum.is_infinite() {
                    return Err(ModelError::NotPositiveDefinite { pivot: row, value: sum });
                }
                factor[row * rank + row] = sum.sqrt();
            } else {
                factor[row * rank + column] = sum / factor[column * rank + column];
            }
        }
    }
    Ok(factor)
}

/// Rows of V: for every point i, forward substitution `L y = K_U,i`.
///
/// Points are solved in blocks of [`LANES`] so each entry of L is loaded once per block
/// (the inner loop runs across the block's points and vectorizes).
fn solve_rows(
    points: &Points,
    inducing: &[usize],
    params: &ResidualParams,
    factor: &[f64],
    rank: usize,
    stride: usize,
) -> Vec<f64> {
    let n = points.len();
    let mut v = vec![0.0; n * stride];
    v.par_chunks_mut(stride * LANES).enumerate().for_each(|(block, output)| {
        let first = block * LANES;
        let count = output.len() / stride;
        // solution[r * LANES + b]: coordinate r of point first + b.
        let mut solution = vec![0.0; rank * LANES];
        for r in 0..rank {
            let inducing_row = points.row(inducing[r]);
            let mut right_hand = [0.0; LANES];
            for (b, value) in right_hand.iter_mut().enumerate().take(count) {
                *value = covariance(params, squared_euclidean(points.row(first + b), inducing_row));
            }
            let factor_row = &factor[r * rank..r * rank + r];
            let mut sums = [0.0; LANES];
            for (c, &coefficient) in factor_row.iter().enumerate() {
                let known = &solution[c * LANES..(c + 1) * LANES];
                for b in 0..LANES {
                    sums[b] += coefficient * known[b];
                }
            }
            let pivot = factor[r * rank + r];
            for b in 0..LANES {
                solution[r * LANES + b] = (right_hand[b] - sums[b]) / pivot;
            }
        }
        for b in 0..count {
            for r in 0..rank {
                output[b * stride + r] = solution[r * LANES + b];
            }
        }
    });
    v
}

/// Checkpoints (prefix lengths) at which the suffix bound is tested.
pub const CHECKPOINTS: [usize; 6] = [0, 8, 16, 32, 64, 128];

/// Relative margin on the inducing bound, times `s_i`: the identity behind it holds for
/// the exact V, and the computed V carries the forward-substitution error, at most
/// about `kappa(L) m eps ||V||` with `kappa(L) <= sqrt(m s2 / jitter)`, below 1e-9 for
/// m = 512; the margin is a hundred times that.
pub const INDUCING_ERROR: f64 = 1e-7;

/// Upper bound on the relative error of the computed correlation that the bounds and
/// slacks allow for. A rigorous bound for the m-long dot product with eight lanes is
/// about `(m / 8 + 4) * 2^-53`, below 1e-14 for m = 512; the stored V also carries the
/// rounding of the Cholesky solve, so the margin is far larger.
const CORRELATION_ERROR: f64 = 1e-10;

/// The bound tables of the residual metric (built with the tree: they serve only the
/// screening).
///
/// For every point, `u'_i = s_i V_i W` for an m x T matrix W with orthonormal columns
/// spanning (approximately) the dominant subspace of the scaled rows, and the norms of
/// what W misses (`||u_i||^2 - ||u'_i[..t]||^2`, by Parseval) at a few prefix lengths
/// t. Any orthonormal W makes the bounds valid; a good W makes them tight.
#[derive(Clone, Debug)]
pub struct ResidualBounds {
    /// T, the number of rotated coordinates kept per point.
    pub prefix_length: usize,
    /// Rotated, scaled prefixes, n rows of `prefix_length`.
    pub prefix: Vec<f64>,
    /// Inflated suffix norms at [`CHECKPOINTS`] up to `prefix_length`, n rows of
    /// `checkpoint_count`; entry 0 is the inflated whole-row norm.
    pub suffix: Vec<f64>,
    pub checkpoint_count: usize,
    /// Largest deviation of W^T W from the identity, kept for diagnostics.
    pub orthogonality_error: f64,
    /// The group of every point (see [`PointGroups`]).
    pub groups: PointGroups,
    /// Floating-point operations of the dot and matrix products that built the tables
    /// (see [`bound_table_flops`]).
    pub dot_flops: u64,
}

impl ResidualBounds {
    /// T and the number of checkpoints up to it, for a model of rank m.
    pub fn table_widths(rank: usize) -> (usize, usize) {
        let prefix_length = CHECKPOINTS[CHECKPOINTS.len() - 1].min(padded_length(rank.max(1)));
        let checkpoint_count = CHECKPOINTS.iter().filter(|&&checkpoint| checkpoint <= prefix_length).count();
        (prefix_length, checkpoint_count)
    }

    /// Builds the tables for a model; `seed` seeds the subspace iteration.
    pub fn new(model: &ResidualModel, seed: u64) -> ResidualBounds {
        let n = model.len();
        let (prefix_length, checkpoint_count) = ResidualBounds::table_widths(model.rank);
        let basis = dominant_basis(model, prefix_length, seed);
        let orthogonality_error = orthogonality_error(&basis, model.stride, prefix_length);
        let mut prefix = vec![0.0; n * prefix_length];
        let isa = Isa::detect();
        prefix.par_chunks_mut(prefix_length * PREFIX_ROWS).enumerate().for_each(|(block, output)| {
            rotate_rows(isa, model, &basis, block * PREFIX_ROWS, output);
        });
        // Parseval with inflation: the norm is inflated and the prefix deflated by a
        // relative 1e-9, far above the rounding and the orthogonality error of W.
        let mut suffix = vec![0.0; n * checkpoint_count];
        suffix.par_chunks_mut(checkpoint_count).enumerate().for_each(|(row, output)| {
            let prefix_row = &prefix[row * prefix_length..(row + 1) * prefix_length];
            let total = model.norm[row] * model.norm[row] * (1.0 + 1e-9);
            let mut captured = 0.0;
            let mut start = 0;
            for (slot, &checkpoint) in CHECKPOINTS[..checkpoint_count].iter().enumerate() {
                for value in &prefix_row[start..checkpoint] {
                    captured += value * value;
                }
                start = checkpoint;
                output[slot] = (total - captured * (1.0 - 1e-9)).max(0.0).sqrt();
            }
        });
        let groups = PointGroups::new(model);
        let dot_flops = bound_table_flops(n, model.rank, model.stride, prefix_length);
        ResidualBounds { prefix_length, prefix, suffix, checkpoint_count, orthogonality_error, groups, dot_flops }
    }

    #[inline(always)]
    fn prefix_row(&self, index: usize) -> &[f64] {
        &self.prefix[index * self.prefix_length..(index + 1) * self.prefix_length]
    }

    #[inline(always)]
    fn suffix_row(&self, index: usize) -> &[f64] {
        &self.suffix[index * self.checkpoint_count..(index + 1) * self.checkpoint_count]
    }
}

/// Points per group of [`PointGroups`].
pub const GROUP_SIZE: usize = 64;

/// Groups per band of `w` in [`PointGroups`].
pub const BAND_GROUPS: usize = 32;

/// A partition of the points into groups of [`GROUP_SIZE`] points alike in `w` and
/// near each other in space: the points in the order of `w` (ties by index) are cut
/// into bands of [`BAND_GROUPS`] groups, and each band into groups by halving it
/// along the coordinate of its widest extent, again and again (a k-d split, at
/// multiples of the group size). Stage 0 bounds a pair by `K s_i s_j + w_i w_j`. The
/// tree keeps the root's children in chunks of one group each
/// ([`Metric::chunk_group`]), so a chunk's lanes are alike in `w`, and the lanes a
/// point keeps after stage 0 gather in fewer chunks; and they are close together in
/// space, so the chunk's bounding box in its summary ([`Metric::screen_summaries`])
/// is small and rejects the chunks far from a point whole. Which chunk a node lands in
/// never changes a result.
#[derive(Clone, Debug, Default)]
pub struct PointGroups {
    /// The group of every point, from 1 (without bounds, the metric puts every point in
    /// group 0).
    pub of_point: Vec<u32>,
}

impl PointGroups {
    pub fn new(model: &ResidualModel) -> PointGroups {
        let n = model.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&left, &right| {
            model.norm[left as usize].total_cmp(&model.norm[right as usize]).then(left.cmp(&right))
        });
        let mut of_point = vec![0; n];
        let mut groups = 0;
        for band in order.chunks_mut(GROUP_SIZE * BAND_GROUPS) {
            split_into_groups(&model.points, band, &mut |group| {
                groups += 1;
                for &member in group {
                    of_point[member as usize] = groups;
                }
            });
        }
        PointGroups { of_point }
    }
}

/// Cuts `members` into groups of [`GROUP_SIZE`] points (the last one of a band may be
/// smaller) by halving along the coordinate of the widest extent, in a fixed order:
/// the points are sorted by that coordinate, ties by index.
fn split_into_groups(points: &Points, members: &mut [u32], emit: &mut impl FnMut(&[u32])) {
    if members.len() <= GROUP_SIZE {
        emit(members);
        return;
    }
    let widest = (0..points.dimension)
        .map(|coordinate| {
            let values = members.iter().map(|&member| points.row(member as usize)[coordinate]);
            let low = values.clone().fold(f64::INFINITY, f64::min);
            let high = values.fold(f64::NEG_INFINITY, f64::max);
            high - low
        })
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |best, (coordinate, extent)| if extent > best.1 { (coordinate, extent) } else { best },
        );
    let coordinate = widest.0;
    members.sort_unstable_by(|&left, &right| {
        let left_value = points.row(left as usize)[coordinate];
        let right_value = points.row(right as usize)[coordinate];
        left_value.total_cmp(&right_value).then(left.cmp(&right))
    });
    let split = members.len().div_ceil(GROUP_SIZE) / 2 * GROUP_SIZE;
    let (lower, upper) = members.split_at_mut(split);
    split_into_groups(points, lower, emit);
    split_into_groups(points, upper, emit);
}

/// Values per chunk of the residual metric's chunk summaries, for points of
/// `dimension` coordinates: the box's lower and upper corners, the largest `s_j` and
/// the largest `w_j`.
pub fn summary_width(dimension: usize) -> usize {
    2 * dimension + 2
}

/// The correlation `|rho|` a pair must reach to lie within `threshold` (a pair is
/// within tau exactly when `|rho| >= 1 - tau^2`), lowered by 1e-12 for rounding. Stage 0
/// and the chunk summaries both test against it, so a chunk the summaries reject is
/// one stage 0 would reject lane by lane.
#[inline(always)]
fn needed_correlation(threshold: f64) -> f64 {
    1.0 - threshold * threshold - 1e-12
}

/// The margin stage 0 (and the chunk summaries) add to a bound of `magnitude` whose
/// kernel term `term` came from the fast exp: the correlation's rounding, the exp's
/// relative error, and an absolute floor.
#[inline(always)]
fn stage_zero_margin(magnitude: f64, term: f64) -> f64 {
    CORRELATION_ERROR * magnitude + EXP_BOUND_ERROR * term + 1e-15
}

/// Relative slack of the chunk summaries' screen ([`Metric::screen_summaries`]).
pub const SUMMARY_SLACK: f64 = 1e-9;

/// Values per point in a chunk payload of the residual metric with bound tables, for
/// points of `dimension` coordinates and a model of rank `rank`: the coordinates, `s_i`,
/// `w_i`, the inducing factor, the rotated prefix and the suffix norms.
pub fn bounded_payload_width(dimension: usize, rank: usize) -> usize {
    let (prefix_length, checkpoint_count) = ResidualBounds::table_widths(rank);
    dimension + 3 + prefix_length + checkpoint_count
}

/// Bytes [`ResidualBounds::new`] holds for a model of `n` points and rank `rank`:
/// `(tables, transient)`. The tables are the rotated prefixes, the suffix norms and the
/// groups; before them, the subspace iteration holds the partial Gram matrices of the
/// sample (all at once, they are summed in order), the Gram matrix and a few blocks of
/// basis vectors.
pub fn bounds_memory_estimate(n: usize, rank: usize) -> (u64, u64) {
    let (prefix_length, checkpoint_count) = ResidualBounds::table_widths(rank);
    let stride = padded_length(rank.max(1)) as u64;
    let tables = (n * (prefix_length + checkpoint_count)) as u64 * 8 + 8 * n as u64;
    let matrix = rank as u64 * stride * 8;
    let partials = n.min(GRAM_SAMPLE).div_ceil(GRAM_ROWS) as u64;
    let basis = subspace_block(prefix_length, rank) as u64 * stride * 8;
    (tables, (partials + 1) * matrix + 4 * basis)
}

/// The residual metric over a model, with or without bound tables (without them every
/// screened pair gets its exact distance).
#[derive(Clone, Copy, Debug)]
pub struct ResidualMetric<'a> {
    pub model: &'a ResidualModel,
    pub bounds: Option<&'a ResidualBounds>,
}

impl ResidualMetric<'_> {
    /// The RBF kernel value from the short vectorizable `exp` (bounds only), within a
    /// relative [`EXP_BOUND_ERROR`] of the exact one: the short exp and the reciprocal
    /// (instead of the exact path's division) stay within it, and the bounds' margin
    /// covers it.
    #[inline(always)]
    fn covariance_fast_rbf(&self, squared_distance: f64) -> f64 {
        let params = &self.model.params;
        let lengthscale_squared = params.lengthscale * params.lengthscale;
        params.variance * exp_bound(squared_distance * (-0.5 / lengthscale_squared))
    }

    /// [`ResidualMetric::covariance_fast_rbf`] for Matern 5/2.
    #[inline(always)]
    fn covariance_fast_matern(&self, squared_distance: f64) -> f64 {
        let params = &self.model.params;
        let lengthscale_squared = params.lengthscale * params.lengthscale;
        let a = (squared_distance * (5.0 / lengthscale_squared)).sqrt();
        params.variance * (1.0 + a + a * a * (1.0 / 3.0)) * exp_bound(-a)
    }

    /// Stage-0 kernel terms `K s_q s_j` (fast exp) of eight lanes, from their squared
    /// distances to the query in space and their scales `s_j`. The covariance is chosen
    /// outside the lane loops so they vectorize.
    #[inline(always)]
    fn kernel_terms(&self, query_scale: f64, squared: &[f64; LANES], scales: &[f64; LANES]) -> [f64; LANES] {
        let mut terms = [0.0f64; LANES];
        match self.model.params.covariance {
            CovarianceFunction::Rbf => {
                for lane in 0..LANES {
                    terms[lane] = self.covariance_fast_rbf(squared[lane]) * query_scale * scales[lane];
                }
            }
            CovarianceFunction::Matern52 => {
                for lane in 0..LANES {
                    terms[lane] = self.covariance_fast_matern(squared[lane]) * query_scale * scales[lane];
                }
            }
        }
        terms
    }

    /// Stage 0 of one query against a chunk, given the lanes' squared distances to it
    /// in space: Cauchy-Schwarz on the whole row and the inducing bound, whichever is
    /// smaller; a lane survives when `needed <= bound`.
    #[inline(always)]
    fn stage_zero<const ISA: u8>(
        &self,
        query: usize,
        squared: &[f64; LANES],
        chunk: ChunkView<'_>,
        thresholds: &[f64; LANES],
        counts: &mut DistanceCounts,
    ) -> ScreenState {
        let model = self.model;
        let scales = lanes(chunk.payload, self.scale_row() * LANES);
        let query_scale = model.inverse_scale[query];
        let terms = self.kernel_terms(query_scale, squared, scales);
        let norms = lanes(chunk.payload, self.norm_row() * LANES);
        let factors = lanes(chunk.payload, self.factor_row() * LANES);
        let query_norm = model.norm[query];
        let query_factor = model.inducing_factor[query];
        let query_inducing = !query_factor.is_nan();
        // The inducing factor is NaN for points that are not inducing: the comparisons
        // are false for it and keep the other bound (and compile to vector minimums).
        let mut stage = ScreenState { terms, ..ScreenState::default() };
        let mut bound = [0.0f64; LANES];
        for lane in 0..LANES {
            stage.needed[lane] = needed_correlation(thresholds[lane]);
            let magnitude = terms[lane] + query_norm * norms[lane];
            stage.margins[lane] = stage_zero_margin(magnitude, terms[lane]);
            let whole = magnitude + stage.margins[lane];
            let candidate_inducing =
                factors[lane] * query_norm + INDUCING_ERROR * scales[lane] * (query_norm + query_scale);
            bound[lane] = if candidate_inducing < whole { candidate_inducing } else { whole };
        }
        if query_inducing {
            for lane in 0..LANES {
                let inducing = query_factor * norms[lane] + INDUCING_ERROR * query_scale * (norms[lane] + scales[lane]);
                bound[lane] = if inducing < bound[lane] { inducing } else { bound[lane] };
            }
        }
        counts.bounded += chunk.len as u64;
        stage.survivors = lane_mask::<ISA>(&stage.needed, &bound) & ((1u32 << chunk.len) - 1);
        counts.prefix_pairs += u64::from(stage.survivors.count_ones());
        stage
    }

    /// Adds the prefix segment ending at checkpoint `slot` to the partial dot products
    /// and tests the suffix bound; returns whether a lane survives.
    #[inline(always)]
    fn prefix_stage<const ISA: u8>(
        &self,
        bounds: &ResidualBounds,
        query: usize,
        chunk: ChunkView<'_>,
        slot: usize,
        segment: &[f64; LANES],
        stage: &mut ScreenState,
    ) -> bool {
        let query_suffix = bounds.suffix_row(query)[slot];
        let suffix_norms = lanes(chunk.payload, (self.suffix_row_offset(bounds) + slot) * LANES);
        let mut bound = [0.0f64; LANES];
        for lane in 0..LANES {
            stage.partial[lane] += segment[lane];
            bound[lane] = (stage.terms[lane] - stage.partial[lane]).abs()
                + query_suffix * suffix_norms[lane]
                + stage.margins[lane];
        }
        stage.survivors &= lane_mask::<ISA>(&stage.needed, &bound);
        stage.survivors != 0
    }

    /// Offsets of the payload fields (in rows of [`LANES`] values).
    fn scale_row(&self) -> usize {
        self.model.points.dimension
    }

    fn norm_row(&self) -> usize {
        self.model.points.dimension + 1
    }

    fn factor_row(&self) -> usize {
        self.model.points.dimension + 2
    }

    fn prefix_row_offset(&self) -> usize {
        self.model.points.dimension + 3
    }

    fn suffix_row_offset(&self, bounds: &ResidualBounds) -> usize {
        self.prefix_row_offset() + bounds.prefix_length
    }
}

impl Metric for ResidualMetric<'_> {
    type Query<'q>
        = usize
    where
        Self: 'q;

    fn len(&self) -> usize {
        self.model.len()
    }

    fn point(&self, index: usize) -> usize {
        index
    }

    fn query_index(&self, query: usize) -> Option<usize> {
        Some(query)
    }

    #[inline]
    fn distance(&self, query: usize, index: usize) -> f64 {
        self.model.distance(query, index)
    }

    /// Coordinates, `s_i`, `w_i`, the inducing factor, and with bounds the rotated
    /// prefix and the suffix norms (see [`bounded_payload_width`]).
    fn payload_width(&self) -> usize {
        let base = self.model.points.dimension + 3;
        match self.bounds {
            Some(bounds) => base + bounds.prefix_length + bounds.checkpoint_count,
            None => base,
        }
    }

    fn write_payload(&self, index: usize, lane: usize, payload: &mut [f64]) {
        for (coordinate, &value) in self.model.points.row(index).iter().enumerate() {
            payload[coordinate * LANES + lane] = value;
        }
        payload[self.scale_row() * LANES + lane] = self.model.inverse_scale[index];
        payload[self.norm_row() * LANES + lane] = self.model.norm[index];
        payload[self.factor_row() * LANES + lane] = self.model.inducing_factor[index];
        if let Some(bounds) = self.bounds {
            let prefix = self.prefix_row_offset();
            for (column, &value) in bounds.prefix_row(index).iter().enumerate() {
                payload[(prefix + column) * LANES + lane] = value;
            }
            let suffix = self.suffix_row_offset(bounds);
            for (slot, &value) in bounds.suffix_row(index).iter().enumerate() {
                payload[(suffix + slot) * LANES + lane] = value;
            }
        }
    }

    fn chunk_group(&self, index: usize) -> u32 {
        self.bounds.map_or(0, |bounds| bounds.groups.of_point[index])
    }

    /// With bounds: the chunk's bounding box in space, its largest `s_j` and its largest
    /// `w_j` (see [`summary_width`]). Without bounds, none: every pair gets its exact
    /// distance.
    fn summary_width(&self) -> usize {
        if self.bounds.is_some() { summary_width(self.model.points.dimension) } else { 0 }
    }

    fn summarize(&self, index: usize, first: bool, summary: &mut [f64]) {
        let model = self.model;
        let dimension = model.points.dimension;
        let (low, rest) = summary.split_at_mut(dimension);
        let (high, rest) = rest.split_at_mut(dimension);
        let row = model.points.row(index);
        if first {
            low.copy_from_slice(row);
            high.copy_from_slice(row);
            rest[0] = model.inverse_scale[index];
            rest[1] = model.norm[index];
            return;
        }
        for (coordinate, &value) in row.iter().enumerate() {
            low[coordinate] = low[coordinate].min(value);
            high[coordinate] = high[coordinate].max(value);
        }
        rest[0] = rest[0].max(model.inverse_scale[index]);
        rest[1] = rest[1].max(model.norm[index]);
    }

    /// Stage 0 for a whole chunk, vectorized across eight chunks: no lane of a chunk is
    /// nearer the query in space than the chunk's box, the kernel falls with the
    /// distance, and `s_j`, `w_j` are at most the chunk's largest, so
    /// `K(box) s_q max s_j + w_q max w_j` bounds the stage-0 magnitude of every lane. The
    /// squared distance to the box is deflated and the bound inflated by a relative
    /// [`SUMMARY_SLACK`], far above the rounding in which the two computations differ,
    /// and it carries stage 0's margin; a threshold of at most `thresholds[c]` needs at
    /// least the correlation stage 0 needs of it. So a rejected chunk is one whose lanes
    /// stage 0 would all reject. The inducing bound is left out (it only ever rejects
    /// more), and a floored query keeps every chunk (as `screen_of` keeps its lanes).
    #[inline(always)]
    unsafe fn screen_summaries<const ISA: u8>(
        &self,
        query: usize,
        summaries: &[f64],
        thresholds: &[f64; LANES],
    ) -> u32 {
        let model = self.model;
        if model.is_floored(query) {
            return (1u32 << LANES) - 1;
        }
        let dimension = model.points.dimension;
        let corners = dimension * LANES;
        let lower = &summaries[..corners];
        let upper = &summaries[corners..2 * corners];
        let mut squared = box_squared_distances(model.points.row(query), lower, upper);
        for value in &mut squared {
            *value *= 1.0 - SUMMARY_SLACK;
        }
        let scales = lanes(summaries, 2 * dimension * LANES);
        let norms = lanes(summaries, (2 * dimension + 1) * LANES);
        let terms = self.kernel_terms(model.inverse_scale[query], &squared, scales);
        let query_norm = model.norm[query];
        let mut needed = [0.0f64; LANES];
        let mut bound = [0.0f64; LANES];
        for chunk in 0..LANES {
            needed[chunk] = needed_correlation(thresholds[chunk]);
            let magnitude = terms[chunk] + query_norm * norms[chunk];
            bound[chunk] = magnitude * (1.0 + SUMMARY_SLACK) + stage_zero_margin(magnitude, terms[chunk]);
        }
        lane_mask::<ISA>(&needed, &bound)
    }

    /// With bounds, all vectorized across the lanes: stage 0 and the inducing bound,
    /// then (if a lane survives) the prefix stages. What survives is pending. Without
    /// bounds every used lane is pending.
    #[inline(always)]
    unsafe fn bound_chunk<const ISA: u8>(
        &self,
        query: usize,
        chunk: ChunkView<'_>,
        thresholds: &[f64; LANES],
        distances: &mut [f64; LANES],
        counts: &mut DistanceCounts,
    ) -> ChunkScreen {
        let Some(bounds) = self.bounds else {
            return ChunkScreen { known: 0, pending: (1u32 << chunk.len) - 1 };
        };
        let squared = lane_squared_distances(self.model.points.row(query), chunk.payload);
        let mut stage = self.stage_zero::<ISA>(query, &squared, chunk, thresholds, counts);
        if stage.survivors != 0 {
            let query_prefix = bounds.prefix_row(query);
            let prefix = self.prefix_row_offset();
            let mut start = 0;
            for (slot, &end) in CHECKPOINTS.iter().enumerate().take(bounds.checkpoint_count).skip(1) {
                let segment = prefix_segment::<ISA>(
                    &query_prefix[start..end],
                    &chunk.payload[(prefix + start) * LANES..(prefix + end) * LANES],
                );
                counts.dot_flops += 2 * ((end - start) * chunk.len) as u64;
                start = end;
                if !self.prefix_stage::<ISA>(bounds, query, chunk, slot, &segment, &mut stage) {
                    break;
                }
            }
        }
        screen_of(self.model, query, chunk, stage.survivors, distances)
    }

    /// [`Metric::bound_chunk`] for a block of queries: stage 0 query by query, then
    /// every prefix stage for the queries with surviving lanes in tiles of
    /// [`PREFIX_TILE`] queries, so each column of the chunk's prefix is loaded once per
    /// tile.
    #[inline(always)]
    unsafe fn bound_chunk_many<const ISA: u8>(
        &self,
        queries: &[usize],
        chunk: ChunkView<'_>,
        thresholds: &[[f64; LANES]],
        distances: &mut [[f64; LANES]],
        screens: &mut [ChunkScreen],
        counts: &mut DistanceCounts,
    ) {
        let Some(bounds) = self.bounds else {
            screens[..queries.len()].fill(ChunkScreen { known: 0, pending: (1u32 << chunk.len) - 1 });
            return;
        };
        let prefix = self.prefix_row_offset();
        // Every member of a group gets its stage from `stage_zero` before it is read, so
        // the stages are set up once per chunk, not once per group.
        let mut stages = [ScreenState::default(); PREFIX_GROUP];
        for group_start in (0..queries.len()).step_by(PREFIX_GROUP) {
            let group = &queries[group_start..queries.len().min(group_start + PREFIX_GROUP)];
            for (tile_start, tile) in (0..group.len())
                .step_by(SPACE_TILE)
                .map(|start| (start, &group[start..group.len().min(start + SPACE_TILE)]))
            {
                // A short tile repeats its last query; the repeats are discarded.
                let points = std::array::from_fn(|position| self.model.points.row(tile[position.min(tile.len() - 1)]));
                let squared = tile_squared_distances::<SPACE_TILE>(points, chunk.payload);
                for (position, &query) in tile.iter().enumerate() {
                    let member = tile_start + position;
                    let query_thresholds = &thresholds[group_start + member];
                    stages[member] = self.stage_zero::<ISA>(query, &squared[position], chunk, query_thresholds, counts);
                }
            }
            let mut active = [0usize; PREFIX_GROUP];
            let mut start = 0;
            for (slot, &end) in CHECKPOINTS.iter().enumerate().take(bounds.checkpoint_count).skip(1) {
                let mut active_count = 0;
                for (member, stage) in stages[..group.len()].iter().enumerate() {
                    if stage.survivors != 0 {
                        active[active_count] = member;
                        active_count += 1;
                    }
                }
                if active_count == 0 {
                    break;
                }
                let rows = &chunk.payload[(prefix + start) * LANES..(prefix + end) * LANES];
                for tile in active[..active_count].chunks(PREFIX_TILE) {
                    // A short tile repeats its last query; the repeats are discarded.
                    let values: [&[f64]; PREFIX_TILE] = std::array::from_fn(|position| {
                        let member = tile[position.min(tile.len() - 1)];
                        &bounds.prefix_row(group[member])[start..end]
                    });
                    let segments = prefix_tile::<ISA>(values, rows);
                    counts.dot_flops += 2 * ((end - start) * chunk.len * tile.len()) as u64;
                    for (position, &member) in tile.iter().enumerate() {
                        self.prefix_stage::<ISA>(
                            bounds,
                            group[member],
                            chunk,
                            slot,
                            &segments[position],
                            &mut stages[member],
                        );
                    }
                }
                start = end;
            }
            for (member, &query) in group.iter().enumerate() {
                screens[group_start + member] =
                    screen_of(self.model, query, chunk, stages[member].survivors, &mut distances[group_start + member]);
            }
        }
    }

    #[inline(always)]
    unsafe fn exact_distance<const ISA: u8>(&self, query: usize, index: usize, counts: &mut DistanceCounts) -> f64 {
        counts.exact += 1;
        counts.dot_flops += self.exact_flops();
        let model = self.model;
        if query == index {
            return 0.0;
        }
        let dot_product = dot_with::<ISA>(model.v_row(query), model.v_row(index));
        distance_from_correlation(model.correlation_from_kernel(
            query,
            index,
            model.kernel_value(query, index),
            dot_product,
        ))
    }

    fn wants_seeds(&self) -> bool {
        self.bounds.is_some()
    }

    /// The kernel value `K(x_q, x_j)`: the nearest neighbours in this metric are
    /// almost always among the nearest in space (scaling by `s_j` would favour the
    /// inducing points, whose residuals are tiny and uncorrelated with anything).
    #[inline(always)]
    unsafe fn seed_scores<const ISA: u8>(&self, query: usize, chunk: ChunkView<'_>) -> [f64; LANES] {
        let query_point = self.model.points.row(query);
        let squared = lane_squared_distances(query_point, chunk.payload);
        let mut scores = [0.0f64; LANES];
        for lane in 0..LANES {
            scores[lane] = -squared[lane];
        }
        scores
    }

    fn largest_distance(&self) -> f64 {
        1.0
    }

    fn query_error_weight(&self, query: usize) -> f64 {
        self.model.error_weight(query)
    }

    /// The computed correlation of a pair with error weights `E_a`, `E_b` is within
    /// `2 CORRELATION_ERROR E_a E_b` of the exact one, and since
    /// `|sqrt(x) - sqrt(y)| <= sqrt(|x - y|)` the distance within the square root of
    /// that. A pruned subtree needs the pairs (query, node), (node, descendant) and
    /// (query, descendant) covered; the node and descendant weights are bounded by the
    /// largest weight of any point.
    #[inline(always)]
    fn triangle_slack(&self, _distance: f64, _radius: f64, query_weight: f64) -> f64 {
        let largest = self.model.largest_error_weight;
        let pair = |left: f64, right: f64| (2.0 * CORRELATION_ERROR * left * right).sqrt();
        2.0 * pair(query_weight, largest) + pair(largest, largest) + 1e-12
    }

    fn exact_flops(&self) -> u64 {
        2 * self.model.rank as u64
    }
}

/// `sum_c values[c] * rows[c * LANES + lane]` for every lane, over a segment of the
/// rotated prefix (a multiple of 4 columns), in four independent accumulators so the
/// adds do not wait on each other. The order of the sum only affects bounds, which
/// carry a margin.
#[inline(always)]
fn prefix_segment<const ISA: u8>(values: &[f64], rows: &[f64]) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 {
        // SAFETY: the AVX512 instantiation only runs on CPUs with these features.
        return unsafe { prefix_segment_avx512(values, rows) };
    }
    prefix_segment_lanes(values, rows)
}

/// [`prefix_segment_lanes`] kept out of line for AVX-512: inlined into the screening
/// loop, LLVM narrows it to 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[inline(never)]
fn prefix_segment_avx512(values: &[f64], rows: &[f64]) -> [f64; LANES] {
    prefix_segment_lanes(values, rows)
}

#[inline(always)]
fn prefix_segment_lanes(values: &[f64], rows: &[f64]) -> [f64; LANES] {
    assert_eq!(rows.len(), values.len() * LANES, "one row of lanes per prefix column");
    let mut sum_0 = [0.0f64; LANES];
    let mut sum_1 = [0.0f64; LANES];
    let mut sum_2 = [0.0f64; LANES];
    let mut sum_3 = [0.0f64; LANES];
    for (group, block) in values.chunks_exact(4).zip(rows.chunks_exact(4 * LANES)) {
        let row_0 = lanes(block, 0);
        let row_1 = lanes(block, LANES);
        let row_2 = lanes(block, 2 * LANES);
        let row_3 = lanes(block, 3 * LANES);
        for lane in 0..LANES {
            sum_0[lane] += group[0] * row_0[lane];
            sum_1[lane] += group[1] * row_1[lane];
            sum_2[lane] += group[2] * row_2[lane];
            sum_3[lane] += group[3] * row_3[lane];
        }
    }
    let mut total = [0.0f64; LANES];
    for lane in 0..LANES {
        total[lane] = (sum_0[lane] + sum_1[lane]) + (sum_2[lane] + sum_3[lane]);
    }
    total
}

/// The state of one query's screening of a chunk through the stages: per lane the correlation a pair
/// needs, the kernel term, the bound's margin, the partial dot product of the rotated
/// prefix so far, and the lanes still alive.
#[derive(Clone, Copy, Debug, Default)]
struct ScreenState {
    needed: [f64; LANES],
    terms: [f64; LANES],
    margins: [f64; LANES],
    partial: [f64; LANES],
    survivors: u32,
}

/// The screen of the surviving lanes: all pending, except the query itself, known at
/// distance 0 (d(i, i) = 0 by definition). The bounds follow the correlation formula,
/// which gives the same only while `p_i` is above its floor: for a floored query they
/// may reject its own lane, so then every used lane is looked at, not only the
/// survivors.
#[inline(always)]
fn screen_of(
    model: &ResidualModel,
    query: usize,
    chunk: ChunkView<'_>,
    survivors: u32,
    distances: &mut [f64; LANES],
) -> ChunkScreen {
    let mut screen = ChunkScreen { known: 0, pending: survivors };
    let mut remaining = if model.is_floored(query) { (1u32 << chunk.len) - 1 } else { survivors };
    while remaining != 0 {
        let lane = remaining.trailing_zeros() as usize;
        remaining &= remaining - 1;
        if chunk.ids[lane] as usize == query {
            distances[lane] = 0.0;
            screen.known |= 1 << lane;
            screen.pending &= !(1 << lane);
        }
    }
    screen
}

/// Queries per tile of the squared distances in space of stage 0.
const SPACE_TILE: usize = 4;

/// Queries whose stage-0 states [`ResidualMetric::bound_chunk_many`] holds at once.
const PREFIX_GROUP: usize = 16;

/// Queries per tile of the prefix stages.
pub const PREFIX_TILE: usize = 8;

/// `sum_c values[t][c] * rows[c * LANES + lane]` for the [`PREFIX_TILE`] queries of a
/// tile and every lane: each row of the chunk is loaded once for the tile, and the
/// tile's accumulators are independent. The vector instantiations fuse the multiply
/// and the add; the order and the rounding of the sum only affect bounds, which carry
/// a margin.
#[inline(always)]
fn prefix_tile<const ISA: u8>(values: [&[f64]; PREFIX_TILE], rows: &[f64]) -> [[f64; LANES]; PREFIX_TILE] {
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 {
        // SAFETY: the AVX512 instantiation only runs on CPUs with these features.
        return unsafe { prefix_tile_avx512(values, rows) };
    }
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX2 {
        // SAFETY: the AVX2 instantiation only runs on CPUs with AVX2 and FMA.
        return unsafe { prefix_tile_avx2(values, rows) };
    }
    prefix_tile_lanes::<false>(values, rows)
}

/// [`prefix_tile_lanes`] kept out of line for AVX-512, as [`prefix_segment_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
#[inline(never)]
fn prefix_tile_avx512(values: [&[f64]; PREFIX_TILE], rows: &[f64]) -> [[f64; LANES]; PREFIX_TILE] {
    prefix_tile_lanes::<true>(values, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
fn prefix_tile_avx2(values: [&[f64]; PREFIX_TILE], rows: &[f64]) -> [[f64; LANES]; PREFIX_TILE] {
    prefix_tile_lanes::<true>(values, rows)
}

/// The tile's sums; `FUSED` only where the CPU has fused multiply-add instructions
/// (elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn prefix_tile_lanes<const FUSED: bool>(values: [&[f64]; PREFIX_TILE], rows: &[f64]) -> [[f64; LANES]; PREFIX_TILE] {
    let columns = values[0].len();
    assert!(values.iter().all(|row| row.len() == columns), "tile rows of equal length");
    assert_eq!(rows.len(), columns * LANES, "one row of lanes per prefix column");
    let mut sums = [[0.0f64; LANES]; PREFIX_TILE];
    for (column, row) in rows.chunks_exact(LANES).enumerate() {
        for (query, query_values) in values.iter().enumerate() {
            let value = query_values[column];
            for lane in 0..LANES {
                sums[query][lane] = if FUSED {
                    value.mul_add(row[lane], sums[query][lane])
                } else {
                    sums[query][lane] + value * row[lane]
                };
            }
        }
    }
    sums
}

/// Data rows per task of the rotation `u'_i = s_i V_i W`.
const PREFIX_ROWS: usize = 64;

multiversion! {
    /// Rotated, scaled prefixes of the rows from `first` on (as many as `output`
    /// holds), with the fixed-order dot product compiled for the CPU (the same bits on
    /// every instruction set). Eight basis columns at a time (they stay in the
    /// first-level cache) against every row of the block (see [`dots_with`]).
    fn rotate_rows(model: &ResidualModel, basis: &[f64], first: usize, output: &mut [f64]) -> () {
        let stride = model.stride;
        let columns = basis.len() / stride;
        let rows = output.len() / columns;
        let mut values = [0.0; LANES];
        for group_start in (0..columns).step_by(LANES) {
            let count = (columns - group_start).min(LANES);
            let group = &basis[group_start * stride..(group_start + count) * stride];
            for row in 0..rows {
                let index = first + row;
                dots_with::<ISA>(model.v_row(index), group, stride, &mut values[..count]);
                for (offset, &value) in values[..count].iter().enumerate() {
                    output[row * columns + group_start + offset] = value * model.inverse_scale[index];
                }
            }
        }
    }
}

multiversion! {
    /// `sum V_i V_i^T` over some rows, `rank` rows of `stride` (zero padded). Every
    /// entry is a sum in row order, so the bits do not depend on the instruction set.
    /// Rows of the result a few at a time against eight columns at a time, so the sums
    /// stay in registers while the rows stream past. The result is symmetric: entries
    /// left of a row's diagonal block are copied from the transposed ones, which hold
    /// the same bits (the products commute).
    pub(super) fn gram_partial(model: &ResidualModel, rows: &[usize]) -> Vec<f64> {
        const ROW_TILE: usize = 4;
        let rank = model.rank;
        let stride = model.stride;
        let mut partial = vec![0.0; rank * stride];
        let diagonal_block = |a: usize| a / ROW_TILE * ROW_TILE / LANES * LANES;
        for first in (0..rank).step_by(ROW_TILE) {
            let count = (rank - first).min(ROW_TILE);
            for column in (diagonal_block(first)..stride).step_by(LANES) {
                let mut sums = [[0.0f64; LANES]; ROW_TILE];
                for &row in rows {
                    let v_row = model.v_row(row);
                    let values = lanes(v_row, column);
                    for (offset, tile_sums) in sums.iter_mut().enumerate() {
                        // A short tile repeats its last row; the repeats are discarded.
                        let factor = v_row[first + offset.min(count - 1)];
                        for lane in 0..LANES {
                            tile_sums[lane] += factor * values[lane];
                        }
                    }
                }
                for (offset, tile_sums) in sums.iter().enumerate().take(count) {
                    let start = (first + offset) * stride + column;
                    partial[start..start + LANES].copy_from_slice(tile_sums);
                }
            }
        }
        for a in 0..rank {
            for b in 0..diagonal_block(a) {
                partial[a * stride + b] = partial[b * stride + a];
            }
        }
        partial
    }
}

/// Rows of V per partial Gram matrix. The partials are summed in row order, so the
/// matrix does not depend on the thread count.
const GRAM_ROWS: usize = 256;

/// Rows of V the Gram matrix of [`dominant_basis`] is taken over (evenly spaced).
const GRAM_SAMPLE: usize = 4096;

/// Steps of the subspace iteration of [`dominant_basis`].
const SUBSPACE_STEPS: usize = 10;

/// The columns the subspace iteration of [`dominant_basis`] carries for `columns`
/// wanted: half as many again, at most the rank.
fn subspace_block(columns: usize, rank: usize) -> usize {
    (columns + columns / 2).min(rank)
}

/// Floating-point operations of the dot and matrix products that build the bound
/// tables of `n` rows of rank `rank` (row stride `stride`) with `columns` rotated
/// coordinates, a multiply and an add counting two, over the m values of a row (not
/// the padding), as the exact distances count theirs:
///
/// - the Gram matrix over the sample, as `gram_partial` tiles it (the blocks left of
///   a tile's diagonal block are copied, not computed);
/// - the subspace iteration: `G Q` eleven times, Gram-Schmidt twice over the block
///   after each and at the start (a dot product and an update per pair, a dot product
///   and a division per column), `Q^T G Q`, the rotation by the eigenvectors and its
///   Gram-Schmidt; not the small eigen-decomposition;
/// - the rotated, scaled prefixes (a dot product and a scaling per value) and their
///   suffix norms (a square and an add per value).
pub fn bound_table_flops(n: usize, rank: usize, stride: usize, columns: usize) -> u64 {
    let (n, rank, stride, columns) = (n as u64, rank as u64, stride as u64, columns as u64);
    let lanes = LANES as u64;
    let row_tile = 4;
    let gram_per_row: u64 = (0..rank)
        .step_by(row_tile as usize)
        .map(|first| {
            let count = (rank - first).min(row_tile);
            let diagonal_block = first / row_tile * row_tile / lanes * lanes;
            count * (stride - diagonal_block)
        })
        .sum();
    let gram = 2 * gram_per_row * n.min(GRAM_SAMPLE as u64);
    let block = subspace_block(columns as usize, rank as usize) as u64;
    let gram_product = 2 * rank * rank * block;
    let gram_schmidt = |count: u64| 2 * (count * count.saturating_sub(1) / 2 * 4 * rank + count * 3 * rank);
    let steps = SUBSPACE_STEPS as u64;
    let iteration = (steps + 1) * gram_product + (steps + 1) * gram_schmidt(block);
    let rayleigh_ritz = 2 * block * block * rank + 2 * columns.min(block) * block * rank + gram_schmidt(columns);
    let prefixes = n * columns * (2 * rank + 1) + 2 * n * columns;
    gram + iteration + rayleigh_ritz + prefixes
}

/// An m x T matrix with orthonormal columns (column-major, columns of `stride`)
/// approximating the dominant subspace of the rows of V.
///
/// The Gram matrix `G = sum V_i V_i^T` is taken over a sample of rows (at most 4096,
/// evenly spaced). A block subspace iteration `Q <- orth(G Q)` with twice the columns
/// needed (oversampling speeds convergence when the spectrum decays slowly, as it does
/// here) runs ten steps from a seeded random start; a Rayleigh-Ritz step then orders
/// the directions by captured energy and the first T are kept. Every product is the
/// fixed-order [`dot`], so the basis has the same bits on every instruction set.
fn dominant_basis(model: &ResidualModel, columns: usize, seed: u64) -> Vec<f64> {
    let rank = model.rank;
    let stride = model.stride;
    let n = model.len();
    let isa = Isa::detect();
    let sample_count = n.min(GRAM_SAMPLE);
    let sample: Vec<usize> = (0..sample_count).map(|index| index * n / sample_count).collect();
    // Gram matrix G (rank rows of `stride`, zero padded), accumulated in row blocks.
    let partials: Vec<Vec<f64>> = sample.par_chunks(GRAM_ROWS).map(|rows| gram_partial(isa, model, rows)).collect();
    let mut gram = vec![0.0; rank * stride];
    for partial in &partials {
        for (slot, value) in gram.iter_mut().zip(partial) {
            *slot += value;
        }
    }
    let block = subspace_block(columns, rank);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut basis = vec![0.0; block * stride];
    for column in 0..block {
        for a in 0..rank {
            basis[column * stride + a] = rng.random::<f64>() - 0.5;
        }
    }
    subspace_iteration(isa, &gram, basis, rank, stride, columns)
}

multiversion! {
    /// The iteration of [`dominant_basis`] from the start `basis` (its `block`
    /// columns), then the Rayleigh-Ritz step; returns the first `columns` directions.
    /// Compiled for the CPU's instruction set (the same bits on every one).
    fn subspace_iteration(gram: &[f64], basis: Vec<f64>, rank: usize, stride: usize, columns: usize) -> Vec<f64> {
        let block = basis.len() / stride;
        let mut basis = basis;
        orthonormalize::<ISA>(&mut basis, stride, block);
        for _ in 0..SUBSPACE_STEPS {
            basis = gram_product::<ISA>(gram, &basis, rank, stride);
            orthonormalize::<ISA>(&mut basis, stride, block);
        }
        // Rayleigh-Ritz: H = Q^T G Q, H = E diag E^T, Q <- Q E (by descending eigenvalue).
        let product = gram_product::<ISA>(gram, &basis, rank, stride);
        let mut small = vec![0.0; block * block];
        for (left, small_row) in small.chunks_exact_mut(block).enumerate() {
            dots_with::<ISA>(&basis[left * stride..(left + 1) * stride], &product, stride, small_row);
        }
        for left in 0..block {
            for right in 0..left {
                let mean = 0.5 * (small[left * block + right] + small[right * block + left]);
                small[left * block + right] = mean;
                small[right * block + left] = mean;
            }
        }
        let (values, vectors) = symmetric_eigen(&mut small, block);
        let mut order: Vec<usize> = (0..block).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let mut rotated = vec![0.0; columns * stride];
        for (target, &source) in order.iter().take(columns).enumerate() {
            for inner in 0..block {
                let coefficient = vectors[source * block + inner];
                for a in 0..rank {
                    rotated[target * stride + a] += coefficient * basis[inner * stride + a];
                }
            }
        }
        orthonormalize::<ISA>(&mut rotated, stride, columns);
        rotated
    }
}

/// Columns of the basis per task of [`gram_product`]: they stay in the first-level
/// cache while the rows of G stream past.
const PRODUCT_COLUMNS: usize = LANES;

/// `G Q` for the columns of `basis`: `product[column][a] = G_a . Q_column`.
#[inline(always)]
fn gram_product<const ISA: u8>(gram: &[f64], basis: &[f64], rank: usize, stride: usize) -> Vec<f64> {
    let mut product = vec![0.0; basis.len()];
    product.par_chunks_mut(PRODUCT_COLUMNS * stride).zip(basis.par_chunks(PRODUCT_COLUMNS * stride)).for_each(
        |(output, group)| {
            let count = group.len() / stride;
            let mut values = [0.0; PRODUCT_COLUMNS];
            for a in 0..rank {
                dots_with::<ISA>(&gram[a * stride..(a + 1) * stride], group, stride, &mut values[..count]);
                for (column, &value) in values[..count].iter().enumerate() {
                    output[column * stride + a] = value;
                }
            }
        },
    );
    product
}

/// Modified Gram-Schmidt, applied twice ("twice is enough") so the columns are
/// orthonormal to working precision. A column that vanishes is replaced by the first
/// unit vector orthogonal enough to the others.
#[inline(always)]
fn orthonormalize<const ISA: u8>(basis: &mut [f64], stride: usize, columns: usize) {
    for _ in 0..2 {
        for column in 0..columns {
            for previous in 0..column {
                let (head, tail) = basis.split_at_mut(column * stride);
                let previous_vector = &head[previous * stride..(previous + 1) * stride];
                let vector = &mut tail[..stride];
                let projection = dot_with::<ISA>(previous_vector, vector);
                for (slot, value) in vector.iter_mut().zip(previous_vector) {
                    *slot -= projection * value;
                }
            }
            let vector = &mut basis[column * stride..(column + 1) * stride];
            let length = dot_with::<ISA>(vector, vector).sqrt();
            if length > 1e-12 {
                for slot in vector.iter_mut() {
                    *slot /= length;
                }
            } else {
                vector.fill(0.0);
            }
        }
    }
}

/// Largest |(W^T W - I)_ab| over the columns.
fn orthogonality_error(basis: &[f64], stride: usize, columns: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for left in 0..columns {
        for right in 0..=left {
            let product = dot(&basis[left * stride..(left + 1) * stride], &basis[right * stride..(right + 1) * stride]);
            let expected = if left == right { 1.0 } else { 0.0 };
            worst = worst.max((product - expected).abs());
        }
    }
    worst
}

/// Eigen-decomposition of a small symmetric row-major matrix by cyclic Jacobi
/// rotations. Returns the eigenvalues and the eigenvectors as rows (entry k of
/// eigenvector p at `p * size + k`), so their rotation runs along contiguous memory.
#[inline(always)]
fn symmetric_eigen(matrix: &mut [f64], size: usize) -> (Vec<f64>, Vec<f64>) {
    let mut vectors = vec![0.0; size * size];
    for index in 0..size {
        vectors[index * size + index] = 1.0;
    }
    for _sweep in 0..50 {
        let mut off_diagonal = 0.0;
        let mut diagonal = 0.0;
        for row in 0..size {
            diagonal += matrix[row * size + row] * matrix[row * size + row];
            for column in row + 1..size {
                off_diagonal += matrix[row * size + column] * matrix[row * size + column];
            }
        }
        if off_diagonal <= 1e-30 * diagonal.max(1e-300) {
            break;
        }
        for p in 0..size {
            for q in p + 1..size {
                let off = matrix[p * size + q];
                if off == 0.0 {
                    continue;
                }
                let theta = (matrix[q * size + q] - matrix[p * size + p]) / (2.0 * off);
                let tangent = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let tangent = if theta == 0.0 { 1.0 } else { tangent };
                let cosine = 1.0 / (tangent * tangent + 1.0).sqrt();
                let sine = tangent * cosine;
                for k in 0..size {
                    let kp = matrix[k * size + p];
                    let kq = matrix[k * size + q];
                    matrix[k * size + p] = cosine * kp - sine * kq;
                    matrix[k * size + q] = sine * kp + cosine * kq;
                }
                let (head, tail) = matrix.split_at_mut(q * size);
                rotate_pair(&mut head[p * size..(p + 1) * size], &mut tail[..size], cosine, sine);
                let (head, tail) = vectors.split_at_mut(q * size);
                rotate_pair(&mut head[p * size..(p + 1) * size], &mut tail[..size], cosine, sine);
            }
        }
    }
    ((0..size).map(|index| matrix[index * size + index]).collect(), vectors)
}

/// `(x, y) <- (c x - s y, s x + c y)` element by element.
#[inline(always)]
fn rotate_pair(first: &mut [f64], second: &mut [f64], cosine: f64, sine: f64) {
    for (x, y) in first.iter_mut().zip(second.iter_mut()) {
        let (old_x, old_y) = (*x, *y);
        *x = cosine * old_x - sine * old_y;
        *y = sine * old_x + cosine * old_y;
    }
}
