//! Seeded generation of the data set, the queries and the inducing points.
//!
//! Every stream has its own named generator (`ChaCha8Rng`), seeded from the run's seed:
//!
//! - points: `seed`, n rows of d coordinates, each i.i.d. N(0, 1);
//! - Euclidean queries: `seed + 1`, fresh N(0, 1) points;
//! - residual queries: `seed + 1`, data-set indices drawn uniformly with replacement;
//! - inducing points: `seed + 2`, m distinct data-set indices (a partial Fisher-Yates
//!   shuffle), sorted.
//!
//! Normal deviates come from the Box-Muller transform: with u1 in (0, 1] and u2 in
//! [0, 1), `sqrt(-2 ln u1) * (cos 2 pi u2, sin 2 pi u2)` are two independent N(0, 1)
//! values. Both are used, in that order.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A set of points in R^d stored row by row (`coordinates[i * dimension + c]`), every
/// coordinate finite and within [`coordinate_limit`]. Outside the kernel it is made
/// only by [`Points::new`], which checks both.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    pub(super) dimension: usize,
    pub(super) coordinates: Vec<f64>,
}

/// The largest coordinate magnitude [`Points::new`] accepts in `dimension` dimensions:
/// a quarter of `sqrt(f64::MAX / dimension)`, so no squared distance (at most
/// `dimension * (2 * limit)^2 = f64::MAX / 4`, about 4.5e307) overflows, and neither
/// does a sum of two distances. In 8 dimensions it is about 1.2e153.
pub fn coordinate_limit(dimension: usize) -> f64 {
    (f64::MAX / dimension.max(1) as f64).sqrt() / 4.0
}

/// Input the tree refuses: it would make distances meaningless.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("dimension must be at least 1")]
    ZeroDimension,
    #[error("{length} coordinates do not split into rows of dimension {dimension}")]
    RaggedRows { length: usize, dimension: usize },
    #[error("point {row} has a non-finite coordinate ({value}) at position {column}")]
    NonFinite { row: usize, column: usize, value: f64 },
    #[error(
        "point {row} has coordinate {value:e} at position {column}, beyond the {limit:.3e} at which squared distances could overflow in dimension {dimension}"
    )]
    OutOfRange { row: usize, column: usize, value: f64, limit: f64, dimension: usize },
}

impl Points {
    /// Wraps row-major coordinates, refusing a zero dimension, ragged rows, non-finite
    /// values and values beyond [`coordinate_limit`].
    pub fn new(dimension: usize, coordinates: Vec<f64>) -> Result<Points, DataError> {
        if dimension == 0 {
            return Err(DataError::ZeroDimension);
        }
        if !coordinates.len().is_multiple_of(dimension) {
            return Err(DataError::RaggedRows { length: coordinates.len(), dimension });
        }
        if let Some(position) = coordinates.iter().position(|value| !value.is_finite()) {
            return Err(DataError::NonFinite {
                row: position / dimension,
                column: position % dimension,
                value: coordinates[position],
            });
        }
        let limit = coordinate_limit(dimension);
        if let Some(position) = coordinates.iter().position(|value| value.abs() > limit) {
            return Err(DataError::OutOfRange {
                row: position / dimension,
                column: position % dimension,
                value: coordinates[position],
                limit,
                dimension,
            });
        }
        Ok(Points { dimension, coordinates })
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The coordinates, row by row.
    pub fn coordinates(&self) -> &[f64] {
        &self.coordinates
    }

    pub fn len(&self) -> usize {
        self.coordinates.len() / self.dimension
    }

    pub fn is_empty(&self) -> bool {
        self.coordinates.is_empty()
    }

    #[inline]
    pub fn row(&self, index: usize) -> &[f64] {
        &self.coordinates[index * self.dimension..(index + 1) * self.dimension]
    }
}

/// Fills `output` with N(0, 1) deviates from `rng` (Box-Muller, both values used).
fn fill_standard_normal(rng: &mut ChaCha8Rng, output: &mut [f64]) {
    let mut chunks = output.chunks_mut(2);
    for pair in &mut chunks {
        // 1 - u maps [0, 1) to (0, 1], so the logarithm is finite.
        let uniform_radius: f64 = 1.0 - rng.random::<f64>();
        let uniform_angle: f64 = rng.random::<f64>();
        let radius = (-2.0 * uniform_radius.ln()).sqrt();
        let angle = std::f64::consts::TAU * uniform_angle;
        pair[0] = radius * angle.cos();
        if pair.len() > 1 {
            pair[1] = radius * angle.sin();
        }
    }
}

/// `count` points of dimension `dimension` with i.i.d. N(0, 1) coordinates.
pub fn standard_normal_points(count: usize, dimension: usize, seed: u64) -> Points {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coordinates = vec![0.0; count * dimension];
    fill_standard_normal(&mut rng, &mut coordinates);
    Points { dimension, coordinates }
}

/// `count` indices drawn uniformly from `0..population` with replacement.
pub fn uniform_indices(count: usize, population: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| rng.random_range(0..population)).collect()
}

/// `count` distinct indices from `0..population`, sorted (a partial Fisher-Yates
/// shuffle of the identity permutation).
pub fn distinct_sorted_indices(count: usize, population: usize, seed: u64) -> Vec<usize> {
    assert!(count <= population, "cannot draw {count} distinct indices from {population}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut permutation: Vec<usize> = (0..population).collect();
    for position in 0..count {
        let chosen = rng.random_range(position..population);
        permutation.swap(position, chosen);
    }
    permutation.truncate(count);
    permutation.sort_unstable();
    permutation
}

/// The seed of each generated stream, derived from the run's seed.
pub fn points_seed(seed: u64) -> u64 {
    seed
}

pub fn queries_seed(seed: u64) -> u64 {
    seed.wrapping_add(1)
}

pub fn inducing_seed(seed: u64) -> u64 {
    seed.wrapping_add(2)
}
