//! The f64 brute-force reference: every exact distance, the k smallest kept.
//!
//! It calls the same exact distance function as the tree, so the two agree bit for bit
//! when the tree is exact; ties go to the smaller index here too.

use rayon::prelude::*;

use super::metric::{DistanceCounts, Isa, LANES, Metric, dot_with, lanes, multiversion, reduce_lanes, task_size};
use super::query::{Neighbours, QueryParams, SelfMatch, TopK};
use super::residual::{ResidualModel, distance_from_correlation};

/// Exact kNN of every query by scanning all points.
pub fn brute_knn<M: Metric>(
    metric: &M,
    queries: &[M::Query<'_>],
    params: &QueryParams,
) -> (Neighbours, DistanceCounts) {
    let n = metric.len();
    let rows: Vec<Vec<(f64, u32)>> = queries
        .par_iter()
        .map(|&query| {
            let excluded = match params.self_match {
                SelfMatch::Include => None,
                SelfMatch::Exclude => metric.query_index(query),
            };
            let mut top = TopK::new(params.k);
            for index in 0..n {
                if Some(index) != excluded {
                    top.offer(metric.distance(query, index), index as u32);
                }
            }
            top.into_entries()
        })
        .collect();
    let counts = DistanceCounts {
        exact: (queries.len() * n) as u64,
        dot_flops: (queries.len() * n) as u64 * metric.exact_flops(),
        ..DistanceCounts::default()
    };
    let entries = rows.iter().map(Vec::len).sum();
    (Neighbours::from_entries(params.k, entries, rows.into_iter()), counts)
}

/// Smallest and largest blocks of queries of the tiled residual brute force (one block
/// per task, see [`task_size`]): each block streams all of V once.
const QUERY_BLOCK: (usize, usize) = (32, 256);
/// Points per block: the rows of V that stay in cache while a query block passes.
const POINT_BLOCK: usize = 256;

/// Exact residual kNN of dataset-index queries by scanning all points, with the dot
/// products computed in register tiles of 4 queries x 2 points.
///
/// Each pair's dot product keeps the lane order of [`dot`](super::metric::dot) (lane l
/// sums coordinates `8t + l` in increasing t, then the same reduction), so every
/// distance equals [`ResidualModel::distance`] bit for bit; the tiles only reuse loads.
pub fn residual_brute_knn(
    isa: Isa,
    model: &ResidualModel,
    queries: &[usize],
    params: &QueryParams,
) -> (Neighbours, DistanceCounts) {
    assert!(isa.is_available(), "instruction set {isa:?} is not available");
    let rows: Vec<Vec<Vec<(f64, u32)>>> = queries
        .par_chunks(task_size(queries.len(), QUERY_BLOCK.0, QUERY_BLOCK.1))
        .map(|block| residual_block(isa, model, block, params))
        .collect();
    let n = model.len();
    let counts = DistanceCounts {
        exact: (queries.len() * n) as u64,
        dot_flops: (queries.len() * n * 2 * model.rank) as u64,
        ..DistanceCounts::default()
    };
    let entries = rows.iter().flatten().map(Vec::len).sum();
    (Neighbours::from_entries(params.k, entries, rows.into_iter().flatten()), counts)
}

/// The top-k rows of one block of queries.
fn residual_block(isa: Isa, model: &ResidualModel, queries: &[usize], params: &QueryParams) -> Vec<Vec<(f64, u32)>> {
    let n = model.len();
    let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(params.k)).collect();
    let mut dots = vec![0.0; queries.len() * POINT_BLOCK];
    for block_start in (0..n).step_by(POINT_BLOCK) {
        let block_end = (block_start + POINT_BLOCK).min(n);
        let block_len = block_end - block_start;
        tile_dots(isa, model, queries, block_start, block_len, &mut dots);
        for (position, &query) in queries.iter().enumerate() {
            let excluded = match params.self_match {
                SelfMatch::Include => None,
                SelfMatch::Exclude => Some(query),
            };
            let top = &mut tops[position];
            for offset in 0..block_len {
                let point = block_start + offset;
                if Some(point) == excluded {
                    continue;
                }
                let distance = if point == query {
                    0.0
                } else {
                    let kernel_value = model.kernel_value(query, point);
                    let dot_product = dots[position * POINT_BLOCK + offset];
                    distance_from_correlation(model.correlation_from_kernel(query, point, kernel_value, dot_product))
                };
                top.offer(distance, point as u32);
            }
        }
    }
    tops.into_iter().map(TopK::into_entries).collect()
}

multiversion! {
/// `dots[q * POINT_BLOCK + p] = V_query(q) . V_(start + p)` for the block, in 4 x 2
/// register tiles (remainders one by one), each pair in the lane order of `dot`.
fn tile_dots<>(model: &ResidualModel, queries: &[usize], start: usize, len: usize, dots: &mut [f64]) -> () {
    let stride = model.stride;
    let query_rows = queries.len();
    let mut query_position = 0;
    while query_position < query_rows {
        let query_count = (query_rows - query_position).min(4);
        let mut point_offset = 0;
        while point_offset < len {
            let point_count = (len - point_offset).min(2);
            if query_count == 4 && point_count == 2 {
                let rows = [
                    model.v_row(queries[query_position]),
                    model.v_row(queries[query_position + 1]),
                    model.v_row(queries[query_position + 2]),
                    model.v_row(queries[query_position + 3]),
                ];
                let points = [model.v_row(start + point_offset), model.v_row(start + point_offset + 1)];
                // Eight pair accumulators, one statement each so they stay in
                // registers: `sum_qp` pairs query q with point p.
                let mut sum_00 = [0.0f64; LANES];
                let mut sum_01 = [0.0f64; LANES];
                let mut sum_10 = [0.0f64; LANES];
                let mut sum_11 = [0.0f64; LANES];
                let mut sum_20 = [0.0f64; LANES];
                let mut sum_21 = [0.0f64; LANES];
                let mut sum_30 = [0.0f64; LANES];
                let mut sum_31 = [0.0f64; LANES];
                for column in (0..stride).step_by(LANES) {
                    let query_0 = lanes(rows[0], column);
                    let query_1 = lanes(rows[1], column);
                    let query_2 = lanes(rows[2], column);
                    let query_3 = lanes(rows[3], column);
                    let point_0 = lanes(points[0], column);
                    let point_1 = lanes(points[1], column);
                    for lane in 0..LANES {
                        sum_00[lane] += query_0[lane] * point_0[lane];
                        sum_01[lane] += query_0[lane] * point_1[lane];
                        sum_10[lane] += query_1[lane] * point_0[lane];
                        sum_11[lane] += query_1[lane] * point_1[lane];
                        sum_20[lane] += query_2[lane] * point_0[lane];
                        sum_21[lane] += query_2[lane] * point_1[lane];
                        sum_30[lane] += query_3[lane] * point_0[lane];
                        sum_31[lane] += query_3[lane] * point_1[lane];
                    }
                }
                let sums = [[sum_00, sum_01], [sum_10, sum_11], [sum_20, sum_21], [sum_30, sum_31]];
                for (query_index, pair) in sums.iter().enumerate() {
                    for (point_index, lane_sums) in pair.iter().enumerate() {
                        dots[(query_position + query_index) * POINT_BLOCK + point_offset + point_index] =
                            reduce_lanes(*lane_sums);
                    }
                }
            } else {
                for query_index in 0..query_count {
                    for point_index in 0..point_count {
                        dots[(query_position + query_index) * POINT_BLOCK + point_offset + point_index] = dot_with::<ISA>(
                            model.v_row(queries[query_position + query_index]),
                            model.v_row(start + point_offset + point_index),
                        );
                    }
                }
            }
            point_offset += point_count;
        }
        query_position += query_count;
    }
}
}
