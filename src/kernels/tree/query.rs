//! Best-first exact k-nearest-neighbour search on the cover tree.
//!
//! For a query q the search keeps a running top-k (ordered by distance, then index, so
//! ties go to the smaller index) and a min-heap of subtrees keyed by the lower bound
//! `LB(v) = max(0, d(q, v) - R(v) - slack)`, valid for every descendant of v by the
//! triangle inequality (the slack covers rounding, see `Metric::triangle_slack`). It
//! pops the subtree with the smallest bound, screens its children against
//! `kth + R(child) + slack` (a child beyond that can neither enter the top-k nor hold
//! a descendant that does), offers the survivors to the top-k and pushes their subtrees
//! whose bound is at most the current k-th distance. It stops when the smallest bound
//! exceeds the k-th distance. When `kth + R(child)` already reaches the metric's
//! largest possible distance (residual distances are at most 1), no distance could
//! prune the child's subtree: it is entered without computing the child's exact
//! distance, and the child is screened against the k-th distance like a leaf. Bounds are compared with `<=`, so a candidate tied with
//! the k-th distance but of smaller index is never pruned.
//!
//! Before screening a node with many children, a metric that asks for it (the
//! residual one, whose screening cost depends strongly on the threshold) gets a
//! *seed*: the 4k children with the highest cheap scores are evaluated exactly and
//! offered first, so the screening starts from a k-th distance near the final one
//! instead of infinity. Seeds change the work, never the result: the top-k ignores a
//! second offer of the same candidate.
//!
//! Queries are independent and run in parallel; the output is in query order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::cover::CoverTree;
use super::metric::{DistanceCounts, Isa, LANES, Metric, multiversion};

/// Whether a query that is a data point may be its own neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfMatch {
    /// A data-point query's first neighbour is itself, at distance 0.
    Include,
    /// A data-point query never lists itself.
    Exclude,
}

/// Parameters of a kNN query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryParams {
    pub k: usize,
    pub self_match: SelfMatch,
}

impl Default for QueryParams {
    fn default() -> Self {
        QueryParams { k: 8, self_match: SelfMatch::Include }
    }
}

/// The k nearest neighbours of every query, row by row (`queries x k`), nearest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Neighbours {
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<f64>,
}

impl Neighbours {
    pub fn query_count(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }

    pub fn row_indices(&self, query: usize) -> &[u32] {
        &self.indices[query * self.k..(query + 1) * self.k]
    }

    pub fn row_distances(&self, query: usize) -> &[f64] {
        &self.distances[query * self.k..(query + 1) * self.k]
    }

    fn from_rows(k: usize, rows: Vec<TopK>) -> Neighbours {
        let mut neighbours = Neighbours { k, indices: Vec::new(), distances: Vec::new() };
        for row in rows {
            for (distance, index) in row.entries {
                neighbours.indices.push(index);
                neighbours.distances.push(distance);
            }
        }
        neighbours
    }
}

/// A running top-k ordered by (distance, index).
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    entries: Vec<(f64, u32)>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK { k, entries: Vec::with_capacity(k + 1) }
    }

    /// The current k-th distance (infinity until k candidates were offered).
    #[inline]
    pub fn kth(&self) -> f64 {
        if self.entries.len() < self.k { f64::INFINITY } else { self.entries[self.k - 1].0 }
    }

    /// Offers a candidate; a candidate already held is ignored.
    #[inline]
    pub fn offer(&mut self, distance: f64, index: u32) {
        if self.entries.len() == self.k && (distance, index) >= self.entries[self.k - 1] {
            return;
        }
        let position = self.entries.partition_point(|&entry| entry < (distance, index));
        if self.entries.get(position) == Some(&(distance, index)) {
            return;
        }
        if self.entries.len() == self.k {
            self.entries.pop();
        }
        self.entries.insert(position, (distance, index));
    }

    pub fn into_entries(self) -> Vec<(f64, u32)> {
        self.entries
    }
}

/// Work done by the queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub counts: DistanceCounts,
    /// Subtrees popped from the heap and expanded.
    pub expansions: u64,
    /// Children evaluated exactly as seeds.
    pub seeds: u64,
}

/// Nodes with at least this many child chunks get a seed (when the metric wants one).
const SEED_MIN_CHUNKS: usize = 16;

/// Seeds per neighbour asked for.
const SEEDS_PER_NEIGHBOUR: usize = 4;

/// A heap key: bounds are non-negative, so their bit patterns order like the values.
type HeapEntry = Reverse<(u64, u32)>;

/// Exact kNN of every query.
pub fn knn<M: Metric>(
    metric: &M,
    tree: &CoverTree,
    queries: &[M::Query<'_>],
    params: &QueryParams,
) -> (Neighbours, QueryStats) {
    knn_with(Isa::detect(), metric, tree, queries, params)
}

/// [`knn`] with the hot loops compiled for `isa` (which the CPU must support); every
/// instruction set gives the same answer.
pub fn knn_with<M: Metric>(
    isa: Isa,
    metric: &M,
    tree: &CoverTree,
    queries: &[M::Query<'_>],
    params: &QueryParams,
) -> (Neighbours, QueryStats) {
    assert!(params.k >= 1, "k must be at least 1");
    assert!(isa.is_available(), "instruction set {isa:?} is not available");
    let results: Vec<(TopK, QueryStats)> =
        queries.par_iter().map(|&query| knn_one(isa, metric, tree, query, params)).collect();
    let mut stats = QueryStats::default();
    let mut rows = Vec::with_capacity(results.len());
    for (row, row_stats) in results {
        stats.counts.add(&row_stats.counts);
        stats.expansions += row_stats.expansions;
        stats.seeds += row_stats.seeds;
        rows.push(row);
    }
    (Neighbours::from_rows(params.k, rows), stats)
}

multiversion! {
    fn knn_one<'q, M: Metric>(
        metric: &M,
        tree: &CoverTree,
        query: M::Query<'q>,
        params: &QueryParams,
    ) -> (TopK, QueryStats) {
        let mut stats = QueryStats::default();
        let excluded = match params.self_match {
            SelfMatch::Include => None,
            SelfMatch::Exclude => metric.query_index(query).map(|index| index as u32),
        };
        let query_weight = metric.query_error_weight(query);
        let chunks = &tree.chunks;
        let mut top = TopK::new(params.k);
        let mut heap: BinaryHeap<HeapEntry> = BinaryHeap::new();
        let root = tree.root as usize;
        let root_distance = metric.distance(query, root);
        stats.counts.exact += 1;
        stats.counts.dot_flops += metric.exact_flops();
        if excluded != Some(tree.root) {
            top.offer(root_distance, tree.root);
        }
        if tree.has_children(root) {
            let slack = metric.triangle_slack(root_distance, tree.radius[root], query_weight);
            let bound = (root_distance - tree.radius[root] - slack).max(0.0);
            heap.push(Reverse((bound.to_bits(), tree.root)));
        }
        let mut thresholds = [0.0; LANES];
        let mut distances = [0.0; LANES];
        let mut seeds: Vec<(f64, u32)> = Vec::new();
        let largest = metric.largest_distance();
        while let Some(Reverse((bound_bits, node))) = heap.pop() {
            if f64::from_bits(bound_bits) > top.kth() {
                break;
            }
            stats.expansions += 1;
            let node_chunks = &tree.child_chunks[node as usize];
            if metric.wants_seeds() && node_chunks.len() >= SEED_MIN_CHUNKS {
                seed::<ISA, M>(metric, chunks, node_chunks, query, SEEDS_PER_NEIGHBOUR * params.k, &mut seeds);
                for &(_, candidate) in &seeds {
                    let distance = metric.distance(query, candidate as usize);
                    stats.counts.exact += 1;
                    stats.counts.dot_flops += metric.exact_flops();
                    stats.seeds += 1;
                    if Some(candidate) != excluded {
                        top.offer(distance, candidate);
                    }
                }
            }
            for &chunk in node_chunks {
                let chunk = chunk as usize;
                let kth = top.kth();
                let radii = &chunks.radius[chunk];
                let parents = chunks.has_children[chunk];
                // Subtrees that no distance could prune are entered unconditionally;
                // their roots are screened as plain candidates.
                let mut unprunable = 0u32;
                for lane in 0..LANES {
                    let reach = kth + radii[lane];
                    let reach = reach + 2.0 * metric.triangle_slack(reach, radii[lane], query_weight);
                    let has_children = (parents >> lane) & 1 == 1;
                    if has_children && reach >= largest {
                        unprunable |= 1 << lane;
                    }
                    thresholds[lane] = if has_children && reach < largest { reach } else { kth };
                }
                let view = chunks.view(chunk);
                let mut entered = unprunable & ((1u32 << view.len) - 1);
                while entered != 0 {
                    let lane = entered.trailing_zeros() as usize;
                    entered &= entered - 1;
                    heap.push(Reverse((0, view.ids[lane])));
                }
                let mask = metric.screen_chunk::<ISA>(query, view, &thresholds, &mut distances, &mut stats.counts);
                let mut remaining = mask;
                while remaining != 0 {
                    let lane = remaining.trailing_zeros() as usize;
                    remaining &= remaining - 1;
                    let child = view.ids[lane];
                    let distance = distances[lane];
                    if Some(child) != excluded {
                        top.offer(distance, child);
                    }
                    if (parents >> lane) & 1 == 1 && (unprunable >> lane) & 1 == 0 {
                        let slack = metric.triangle_slack(distance, radii[lane], query_weight);
                        let bound = (distance - radii[lane] - slack).max(0.0);
                        if bound <= top.kth() {
                            heap.push(Reverse((bound.to_bits(), child)));
                        }
                    }
                }
            }
        }
        (top, stats)
    }
}

/// The `count` children with the highest seed scores (ties to the smaller id), into
/// `seeds` as (score, id), best first.
#[inline(always)]
fn seed<const ISA: u8, M: Metric>(
    metric: &M,
    chunks: &super::cover::Chunks,
    node_chunks: &[u32],
    query: M::Query<'_>,
    count: usize,
    seeds: &mut Vec<(f64, u32)>,
) {
    seeds.clear();
    let mut floor = f64::NEG_INFINITY;
    for &chunk in node_chunks {
        let view = chunks.view(chunk as usize);
        let scores = metric.seed_scores::<ISA>(query, view);
        for (lane, &score) in scores.iter().enumerate().take(view.len) {
            if seeds.len() == count && score <= floor {
                continue;
            }
            let id = view.ids[lane];
            let position =
                seeds.partition_point(|&(other, other_id)| other > score || (other == score && other_id < id));
            seeds.insert(position, (score, id));
            if seeds.len() > count {
                seeds.pop();
            }
            if seeds.len() == count {
                floor = seeds[count - 1].0;
            }
        }
    }
}
