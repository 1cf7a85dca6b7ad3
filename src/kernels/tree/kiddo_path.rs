//! The comparison path: kiddo's `ImmutableKdTree` on the same Euclidean data.
//!
//! kiddo needs the dimension at compile time, so a fixed set of dimensions is
//! supported ([`KIDDO_DIMENSIONS`]). Its answers are re-scored with our exact distance
//! and each row sorted by (distance, index), so they compare with the tree's output bit
//! for bit when both are exact.
//!
//! [`insertion_searches`] is a yardstick for the build rather than for the queries: the
//! exact nearest-neighbour search that every insertion into a growing tree implies,
//! done by kiddo over the same points in the same batches.

use std::num::NonZero;
use std::time::Duration;

use kiddo::SquaredEuclidean;
use kiddo::immutable::float::kdtree::ImmutableKdTree;
use rayon::prelude::*;

use super::data::Points;
use super::metric::euclidean;
use super::query::Neighbours;
use crate::clock;
use crate::kernel::Stopped;

/// Dimensions the comparison path is compiled for.
pub const KIDDO_DIMENSIONS: [usize; 9] = [1, 2, 3, 4, 6, 8, 10, 12, 16];

/// Points per kiddo leaf bucket (its default size).
const BUCKET: usize = 32;

/// A built kiddo tree over one of the supported dimensions.
pub enum KiddoTree {
    D1(ImmutableKdTree<f64, u32, 1, BUCKET>),
    D2(ImmutableKdTree<f64, u32, 2, BUCKET>),
    D3(ImmutableKdTree<f64, u32, 3, BUCKET>),
    D4(ImmutableKdTree<f64, u32, 4, BUCKET>),
    D6(ImmutableKdTree<f64, u32, 6, BUCKET>),
    D8(ImmutableKdTree<f64, u32, 8, BUCKET>),
    D10(ImmutableKdTree<f64, u32, 10, BUCKET>),
    D12(ImmutableKdTree<f64, u32, 12, BUCKET>),
    D16(ImmutableKdTree<f64, u32, 16, BUCKET>),
}

impl std::fmt::Debug for KiddoTree {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("KiddoTree")
    }
}

fn rows<const D: usize>(points: &Points) -> Vec<[f64; D]> {
    (0..points.len()).map(|index| points.row(index).try_into().expect("dimension checked")).collect()
}

/// Builds kiddo's tree, or `None` for an unsupported dimension.
pub fn build(points: &Points) -> Option<KiddoTree> {
    Some(match points.dimension {
        1 => KiddoTree::D1(ImmutableKdTree::new_from_slice(&rows::<1>(points))),
        2 => KiddoTree::D2(ImmutableKdTree::new_from_slice(&rows::<2>(points))),
        3 => KiddoTree::D3(ImmutableKdTree::new_from_slice(&rows::<3>(points))),
        4 => KiddoTree::D4(ImmutableKdTree::new_from_slice(&rows::<4>(points))),
        6 => KiddoTree::D6(ImmutableKdTree::new_from_slice(&rows::<6>(points))),
        8 => KiddoTree::D8(ImmutableKdTree::new_from_slice(&rows::<8>(points))),
        10 => KiddoTree::D10(ImmutableKdTree::new_from_slice(&rows::<10>(points))),
        12 => KiddoTree::D12(ImmutableKdTree::new_from_slice(&rows::<12>(points))),
        16 => KiddoTree::D16(ImmutableKdTree::new_from_slice(&rows::<16>(points))),
        _ => return None,
    })
}

fn nearest<const D: usize>(tree: &ImmutableKdTree<f64, u32, D, BUCKET>, queries: &Points, k: usize) -> Vec<Vec<u32>> {
    let k = NonZero::new(k).expect("k is at least 1");
    (0..queries.len())
        .into_par_iter()
        .map(|index| {
            let query: &[f64; D] = queries.row(index).try_into().expect("dimension checked");
            tree.nearest_n::<SquaredEuclidean>(query, k).into_iter().map(|neighbour| neighbour.item).collect()
        })
        .collect()
}

/// kiddo's k nearest neighbours of every query (indices only, kiddo's order).
pub fn query(tree: &KiddoTree, queries: &Points, k: usize) -> Vec<Vec<u32>> {
    match tree {
        KiddoTree::D1(tree) => nearest(tree, queries, k),
        KiddoTree::D2(tree) => nearest(tree, queries, k),
        KiddoTree::D3(tree) => nearest(tree, queries, k),
        KiddoTree::D4(tree) => nearest(tree, queries, k),
        KiddoTree::D6(tree) => nearest(tree, queries, k),
        KiddoTree::D8(tree) => nearest(tree, queries, k),
        KiddoTree::D10(tree) => nearest(tree, queries, k),
        KiddoTree::D12(tree) => nearest(tree, queries, k),
        KiddoTree::D16(tree) => nearest(tree, queries, k),
    }
}

/// Re-scores kiddo's rows with our exact distance and sorts each by (distance, index).
pub fn rescore(points: &Points, queries: &Points, rows: &[Vec<u32>], k: usize) -> Neighbours {
    let entries = rows.iter().map(Vec::len).sum();
    let scored = rows.iter().enumerate().map(|(query_index, row)| {
        let mut scored: Vec<(f64, u32)> =
            row.iter().map(|&index| (euclidean(queries.row(query_index), points.row(index as usize)), index)).collect();
        scored.sort_by(|left, right| left.0.total_cmp(&right.0).then(left.1.cmp(&right.1)));
        scored
    });
    Neighbours::from_entries(k, entries, scored)
}

/// What [`insertion_searches`] found and how long its two parts took.
#[derive(Clone, Debug, PartialEq)]
pub struct InsertionSearches {
    /// Per point after the first, in index order: its nearest neighbour among the
    /// points of the batches before its own (kiddo's choice among equidistant ones).
    pub nearest: Vec<u32>,
    /// kiddo's trees over the points before each batch, summed.
    pub build: Duration,
    /// The batches' searches (parallel over each batch's points), summed.
    pub search: Duration,
}

fn searches_in<const D: usize>(
    points: &Points,
    batch_size: usize,
    stop: &mut dyn FnMut() -> bool,
) -> Result<InsertionSearches, Stopped> {
    let rows = rows::<D>(points);
    let batches = rows.len().saturating_sub(1).div_ceil(batch_size);
    let mut outcome =
        InsertionSearches { nearest: Vec::with_capacity(rows.len()), build: Duration::ZERO, search: Duration::ZERO };
    let mut start = 1;
    while start < rows.len() {
        let end = (start + batch_size).min(rows.len());
        let built = clock::now();
        let tree: ImmutableKdTree<f64, u32, D, BUCKET> = ImmutableKdTree::new_from_slice(&rows[..start]);
        outcome.build += built.elapsed();
        let searched = clock::now();
        let nearest: Vec<u32> =
            rows[start..end].par_iter().map(|row| tree.nearest_one::<SquaredEuclidean>(row).item).collect();
        outcome.search += searched.elapsed();
        outcome.nearest.extend(nearest);
        start = end;
        if start < rows.len() && stop() {
            return Err(Stopped { done: (start - 1) / batch_size, total: batches });
        }
    }
    Ok(outcome)
}

/// The searches a build by insertion implies, done by kiddo: as in the tree's build,
/// point 0 comes first and the others follow in batches of `batch_size` (in index
/// order), and every point of a batch finds its nearest neighbour among the points
/// before its batch, in a k-d tree built over them. `None` for an unsupported
/// dimension; given up between two batches once `stop` returns true, as
/// [`build_until`](super::build::build_until) is.
pub fn insertion_searches(
    points: &Points,
    batch_size: usize,
    stop: &mut dyn FnMut() -> bool,
) -> Option<Result<InsertionSearches, Stopped>> {
    let batch_size = batch_size.max(1);
    Some(match points.dimension {
        1 => searches_in::<1>(points, batch_size, stop),
        2 => searches_in::<2>(points, batch_size, stop),
        3 => searches_in::<3>(points, batch_size, stop),
        4 => searches_in::<4>(points, batch_size, stop),
        6 => searches_in::<6>(points, batch_size, stop),
        8 => searches_in::<8>(points, batch_size, stop),
        10 => searches_in::<10>(points, batch_size, stop),
        12 => searches_in::<12>(points, batch_size, stop),
        16 => searches_in::<16>(points, batch_size, stop),
        _ => return None,
    })
}
