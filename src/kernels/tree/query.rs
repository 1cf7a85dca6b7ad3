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
//! distance, and the child is screened against the k-th distance like a leaf. Bounds
//! are compared with `<=`, so a candidate tied with the k-th distance but of smaller
//! index is never pruned.
//!
//! A node whose own subtree cannot be pruned that way (`kth + R(node)` reaches the
//! largest distance when it is expanded) is not walked node by node: its descendants
//! are one contiguous range of the tree's depth-first layout, screened in full chunks
//! against the k-th distance and offered, with nothing pushed. Under the residual
//! metric this is the root (R is about 1), so a query is its seeds and one screening
//! pass over the layout: the tree prunes nothing there, and the speed comes from the
//! cheap bounds.
//!
//! Under the Euclidean metric the subtrees of at most the bucket cap's points (the
//! larger of `bucket_size` and a quarter of the points) are leaf buckets (see [`super::bucket`]): when the search pops a bucket's root it does not
//! walk the subtree, it screens the bucket's chunks, skipping every chunk whose
//! bounding box lies beyond the k-th distance and offering the points of the others
//! within it. In 8 dimensions the ball bounds of those small subtrees are loose, and
//! the boxes of compact chunks prune far more.
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

use super::cover::{Chunks, CoverTree};
use super::metric::{
    ChunkScreen, ChunkView, DistanceCounts, Isa, LANES, Metric, lane_mask, lane_squared_distances, multiversion,
    squared_limit, task_size,
};

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
        let entries: usize = rows.iter().map(|row| row.entries.len()).sum();
        Neighbours::from_entries(k, entries, rows.into_iter().map(|row| row.entries))
    }

    /// The answer of rows of `(distance, index)` pairs, `entries` in all, in query
    /// order; its vectors are allocated once, at their size.
    pub(crate) fn from_entries(k: usize, entries: usize, rows: impl Iterator<Item = Vec<(f64, u32)>>) -> Neighbours {
        let mut neighbours =
            Neighbours { k, indices: Vec::with_capacity(entries), distances: Vec::with_capacity(entries) };
        for row in rows {
            for (distance, index) in row {
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
    /// The screening's work: its exact distances (`exact`) evaluate each (query, point)
    /// pair at most once, so they never exceed queries x points. The seeds' exact
    /// distances are counted apart, in `seeds` (their flops are in `dot_flops`).
    pub counts: DistanceCounts,
    /// Subtrees popped from the heap and expanded.
    pub expansions: u64,
    /// Candidates evaluated exactly as seeds. The screening that follows evaluates a
    /// seed again unless its bounds reject it: counting it there too would count the
    /// pair twice, and telling which seeds come back would cost a look-up per
    /// screened candidate.
    pub seeds: u64,
}

/// Nodes with at least this many child chunks get a seed (when the metric wants one).
const SEED_MIN_CHUNKS: usize = 16;

/// Seeds per neighbour asked for.
const SEEDS_PER_NEIGHBOUR: usize = 4;

/// A heap key: bounds are non-negative, so their bit patterns order like the values.
type HeapEntry = Reverse<(u64, u32)>;

/// Smallest and largest blocks of queries whose root expansions share a pass over the
/// root's chunks (see [`task_size`]; under the residual metric that pass streams the
/// whole layout, so larger blocks load it less often).
const QUERY_BLOCK: (usize, usize) = (32, 256);

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
    let results: Vec<Vec<(TopK, QueryStats)>> = queries
        .par_chunks(task_size(queries.len(), QUERY_BLOCK.0, QUERY_BLOCK.1))
        .map(|block| knn_block(isa, metric, tree, block, params))
        .collect();
    let mut stats = QueryStats::default();
    let mut rows = Vec::with_capacity(queries.len());
    for (row, row_stats) in results.into_iter().flatten() {
        stats.counts.add(&row_stats.counts);
        stats.expansions += row_stats.expansions;
        stats.seeds += row_stats.seeds;
        rows.push(row);
    }
    (Neighbours::from_rows(params.k, rows), stats)
}

/// The state of one query's search.
struct Search<'q, M: Metric + 'q> {
    query: M::Query<'q>,
    excluded: Option<u32>,
    query_weight: f64,
    top: TopK,
    heap: BinaryHeap<HeapEntry>,
    /// Subtrees to expand whatever the k-th distance (see `bound_chunk`).
    entered: Vec<u32>,
    stats: QueryStats,
}

impl<'q, M: Metric> Search<'q, M> {
    /// Offers the root.
    #[inline(always)]
    fn start(metric: &M, tree: &CoverTree, query: M::Query<'q>, params: &QueryParams) -> Self {
        let excluded = match params.self_match {
            SelfMatch::Include => None,
            SelfMatch::Exclude => metric.query_index(query).map(|index| index as u32),
        };
        let mut search = Search {
            query,
            excluded,
            query_weight: metric.query_error_weight(query),
            top: TopK::new(params.k),
            heap: BinaryHeap::new(),
            entered: Vec::new(),
            stats: QueryStats::default(),
        };
        let root_distance = metric.distance(query, tree.root as usize);
        search.stats.counts.exact += 1;
        search.stats.counts.dot_flops += metric.exact_flops();
        if excluded != Some(tree.root) {
            search.top.offer(root_distance, tree.root);
        }
        search
    }

    /// Whether this search can prune nothing below `node`: the k-th distance plus the
    /// subtree radius (with slack) reaches the metric's largest distance, so every
    /// descendant must be screened. Only metrics with a largest distance, and trees
    /// with a layout, take this path.
    #[inline(always)]
    fn cannot_prune(&self, metric: &M, tree: &CoverTree, node: u32) -> bool {
        let largest = metric.largest_distance();
        if !largest.is_finite() || !tree.layout.is_ready() {
            return false;
        }
        let radius = tree.radius[node as usize];
        let reach = self.top.kth() + radius;
        reach + 2.0 * metric.triangle_slack(reach, radius, self.query_weight) >= largest
    }

    /// Evaluates the seeds exactly and offers them.
    #[inline(always)]
    fn offer_seeds(&mut self, metric: &M, seeds: &[(f64, u32)]) {
        for &(_, candidate) in seeds {
            let distance = metric.distance(self.query, candidate as usize);
            self.stats.counts.dot_flops += metric.exact_flops();
            self.stats.seeds += 1;
            if Some(candidate) != self.excluded {
                self.top.offer(distance, candidate);
            }
        }
    }

    /// Screens one chunk of children: offers them and pushes their subtrees.
    #[inline(always)]
    fn screen_chunk<const ISA: u8>(&mut self, metric: &M, chunks: &Chunks, chunk: usize) {
        let mut distances = [0.0; LANES];
        let (screen, unprunable) = self.bound_chunk::<ISA>(metric, chunks, chunk, &mut distances);
        let view = chunks.view(chunk);
        let mut pending = screen.pending;
        while pending != 0 {
            let lane = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            let node = view.ids[lane] as usize;
            // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
            distances[lane] = unsafe { metric.exact_distance::<ISA>(self.query, node, &mut self.stats.counts) };
        }
        self.accept_chunk(metric, chunks, chunk, screen.known | screen.pending, unprunable, &distances);
    }

    /// The first half of [`Search::screen_chunk`]: thresholds from the current k-th
    /// distance, unprunable subtrees pushed, and the metric's bounds. Returns the
    /// screen and the lanes whose subtrees were pushed unconditionally.
    #[inline(always)]
    fn bound_chunk<const ISA: u8>(
        &mut self,
        metric: &M,
        chunks: &Chunks,
        chunk: usize,
        distances: &mut [f64; LANES],
    ) -> (ChunkScreen, u32) {
        let mut thresholds = [0.0; LANES];
        let unprunable = self.chunk_thresholds(metric, chunks, chunk, &mut thresholds);
        let view = chunks.view(chunk);
        // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
        let screen =
            unsafe { metric.bound_chunk::<ISA>(self.query, view, &thresholds, distances, &mut self.stats.counts) };
        (screen, unprunable)
    }

    /// The thresholds of a chunk's lanes from the current k-th distance; pushes the
    /// subtrees that no distance could prune and returns their lanes.
    #[inline(always)]
    fn chunk_thresholds(&mut self, metric: &M, chunks: &Chunks, chunk: usize, thresholds: &mut [f64; LANES]) -> u32 {
        let largest = metric.largest_distance();
        let kth = self.top.kth();
        let radii = &chunks.radius[chunk];
        let parents = chunks.has_children[chunk];
        // Subtrees that no distance could prune are entered unconditionally; their
        // roots are screened as plain candidates. (Only for metrics with a largest
        // distance: elsewhere a subtree pushed with its true bound is popped in a
        // better order.)
        let mut unprunable = 0u32;
        for lane in 0..LANES {
            let reach = kth + radii[lane];
            let reach = reach + 2.0 * metric.triangle_slack(reach, radii[lane], self.query_weight);
            let has_children = (parents >> lane) & 1 == 1;
            if has_children && largest.is_finite() && reach >= largest {
                unprunable |= 1 << lane;
            }
            thresholds[lane] = if has_children && reach < largest { reach } else { kth };
        }
        let view = chunks.view(chunk);
        let mut entered = unprunable & ((1u32 << view.len) - 1);
        while entered != 0 {
            let lane = entered.trailing_zeros() as usize;
            entered &= entered - 1;
            self.entered.push(view.ids[lane]);
        }
        unprunable
    }

    /// The second half: offers the lanes of `mask` (exact distances in `distances`) and
    /// pushes the subtrees not already pushed whose bound is within the k-th distance.
    #[inline(always)]
    fn accept_chunk(
        &mut self,
        metric: &M,
        chunks: &Chunks,
        chunk: usize,
        mask: u32,
        unprunable: u32,
        distances: &[f64; LANES],
    ) {
        let radii = &chunks.radius[chunk];
        let parents = chunks.has_children[chunk];
        let view = chunks.view(chunk);
        let mut remaining = mask;
        while remaining != 0 {
            let lane = remaining.trailing_zeros() as usize;
            remaining &= remaining - 1;
            let child = view.ids[lane];
            let distance = distances[lane];
            if Some(child) != self.excluded {
                self.top.offer(distance, child);
            }
            if (parents >> lane) & 1 == 1 && (unprunable >> lane) & 1 == 0 {
                let slack = metric.triangle_slack(distance, radii[lane], self.query_weight);
                let bound = (distance - radii[lane] - slack).max(0.0);
                if bound <= self.top.kth() {
                    self.heap.push(Reverse((bound.to_bits(), child)));
                }
            }
        }
    }

    /// Screens the descendants of a bucket's root: group by group the chunks whose boxes
    /// may hold a point within the k-th distance (see [`super::bucket::LeafBuckets`]),
    /// offering what is within the k-th distance. The distances are Euclidean in the
    /// coordinates, computed as [`Metric::distance`] computes them.
    #[inline(always)]
    fn screen_bucket<const ISA: u8>(&mut self, metric: &M, tree: &CoverTree, bucket: usize) {
        let buckets = &tree.buckets;
        let point = metric.coordinates(self.query).expect("buckets exist only for metrics with coordinates");
        for group in buckets.groups(bucket) {
            let limit = squared_limit(self.top.kth());
            let bounds = buckets.group_bounds(point, group);
            self.stats.counts.bounded += buckets.group_points(group);
            let mut lanes = lane_mask::<ISA>(&bounds, &[limit; LANES]) & buckets.group_lanes(group);
            while lanes != 0 {
                let view = buckets.view(buckets.group_chunk(group, lanes.trailing_zeros() as usize));
                lanes &= lanes - 1;
                let distances = lane_squared_distances(point, view.payload).map(f64::sqrt);
                self.stats.counts.exact += view.len as u64;
                let within = lane_mask::<ISA>(&distances, &[self.top.kth(); LANES]) & ((1u32 << view.len) - 1);
                self.offer_lanes(view, within, &distances);
            }
        }
    }

    /// Offers the candidates in the lanes of `mask` (exact distances in `distances`),
    /// but the excluded self-match.
    #[inline(always)]
    fn offer_lanes(&mut self, view: ChunkView<'_>, mask: u32, distances: &[f64; LANES]) {
        let mut remaining = mask;
        while remaining != 0 {
            let lane = remaining.trailing_zeros() as usize;
            remaining &= remaining - 1;
            let candidate = view.ids[lane];
            if Some(candidate) != self.excluded {
                self.top.offer(distances[lane], candidate);
            }
        }
    }

    /// Expands the entered subtrees, then pops and expands subtrees until the smallest
    /// bound exceeds the k-th distance.
    #[inline(always)]
    fn run<const ISA: u8>(&mut self, metric: &M, tree: &CoverTree, params: &QueryParams) {
        let chunks = &tree.chunks;
        loop {
            let node = match self.entered.pop() {
                Some(node) => node,
                None => match self.heap.pop() {
                    Some(Reverse((bound_bits, node))) if f64::from_bits(bound_bits) <= self.top.kth() => node,
                    _ => break,
                },
            };
            self.stats.expansions += 1;
            if self.cannot_prune(metric, tree, node) {
                screen_descendants::<ISA, M>(metric, tree, std::slice::from_mut(self), &[0], node, params);
                continue;
            }
            if let Some(bucket) = tree.buckets.bucket_of(node) {
                self.screen_bucket::<ISA>(metric, tree, bucket);
                continue;
            }
            let node_chunks = &tree.child_chunks[node as usize];
            if metric.wants_seeds() && node_chunks.len() >= SEED_MIN_CHUNKS {
                let views = node_chunks.iter().map(|&chunk| full_view(chunks, chunk as usize));
                offer_seeds_together::<ISA, M>(metric, views, std::slice::from_mut(self), &[0], params);
            }
            for &chunk in node_chunks {
                self.screen_chunk::<ISA>(metric, chunks, chunk as usize);
            }
        }
    }
}

/// Expands `node` for the searches at `positions` together: seeds, then chunk by
/// chunk the bounds query by query, the pending exact distances node by node (each
/// node's data is loaded once for all of them), and each query's results in lane order.
#[inline(always)]
fn expand_together<'q, const ISA: u8, M: Metric>(
    metric: &M,
    tree: &CoverTree,
    searches: &mut [Search<'q, M>],
    positions: &[usize],
    node: u32,
    params: &QueryParams,
) {
    let chunks = &tree.chunks;
    let node_chunks = &tree.child_chunks[node as usize];
    for &position in positions {
        searches[position].stats.expansions += 1;
    }
    let (flat, walking): (Vec<usize>, Vec<usize>) =
        positions.iter().partition(|&&position| searches[position].cannot_prune(metric, tree, node));
    if !flat.is_empty() {
        screen_descendants::<ISA, M>(metric, tree, searches, &flat, node, params);
    }
    let positions = &walking[..];
    if positions.is_empty() {
        return;
    }
    if metric.wants_seeds() && node_chunks.len() >= SEED_MIN_CHUNKS {
        let views = node_chunks.iter().map(|&chunk| full_view(chunks, chunk as usize));
        offer_seeds_together::<ISA, M>(metric, views, searches, positions, params);
    }
    let queries: Vec<M::Query<'q>> = positions.iter().map(|&position| searches[position].query).collect();
    let mut thresholds = vec![[0.0; LANES]; positions.len()];
    let mut distances = vec![[0.0; LANES]; positions.len()];
    let mut screens = vec![ChunkScreen::default(); positions.len()];
    let mut unprunable = vec![0u32; positions.len()];
    // Counts are only ever summed over the queries.
    let mut counts = DistanceCounts::default();
    for &chunk in node_chunks {
        let chunk = chunk as usize;
        for ((&position, lane_thresholds), lanes_entered) in positions.iter().zip(&mut thresholds).zip(&mut unprunable)
        {
            *lanes_entered = searches[position].chunk_thresholds(metric, chunks, chunk, lane_thresholds);
        }
        let view = chunks.view(chunk);
        // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
        unsafe {
            metric.bound_chunk_many::<ISA>(&queries, view, &thresholds, &mut distances, &mut screens, &mut counts)
        };
        exact_pending::<ISA, M>(metric, view, searches, positions, &screens, &mut distances);
        for (((&position, lane_distances), screen), &lanes_entered) in
            positions.iter().zip(&distances).zip(&screens).zip(&unprunable)
        {
            let mask = screen.known | screen.pending;
            searches[position].accept_chunk(metric, chunks, chunk, mask, lanes_entered, lane_distances);
        }
    }
    if let Some(&first) = positions.first() {
        searches[first].stats.counts.add(&counts);
    }
}

multiversion! {
    /// The searches of one block of queries. The root is expanded for all of them
    /// together, then the subtrees they entered unconditionally, node by node for the
    /// queries that entered each (in flat trees, as under the residual metric, these
    /// are most of the work); then every query goes on alone from its heap.
    fn knn_block<'q, M: Metric>(
        metric: &M,
        tree: &CoverTree,
        queries: &[M::Query<'q>],
        params: &QueryParams,
    ) -> Vec<(TopK, QueryStats)> {
        let root = tree.root;
        let mut searches: Vec<Search<'q, M>> =
            queries.iter().map(|&query| Search::start(metric, tree, query, params)).collect();
        if tree.has_children(root as usize) {
            let everyone: Vec<usize> = (0..searches.len()).collect();
            expand_together::<ISA, M>(metric, tree, &mut searches, &everyone, root, params);
            let mut pairs: Vec<(u32, usize)> = Vec::new();
            let mut positions: Vec<usize> = Vec::new();
            loop {
                pairs.clear();
                for (position, search) in searches.iter_mut().enumerate() {
                    pairs.extend(search.entered.drain(..).map(|node| (node, position)));
                }
                if pairs.is_empty() {
                    break;
                }
                pairs.sort_unstable();
                for group in pairs.chunk_by(|left, right| left.0 == right.0) {
                    positions.clear();
                    positions.extend(group.iter().map(|&(_, position)| position));
                    expand_together::<ISA, M>(metric, tree, &mut searches, &positions, group[0].0, params);
                }
            }
        }
        // A plain loop, not a closure: a closure's body is compiled without the
        // instruction set of this function, and the searches are most of the work.
        let mut results = Vec::with_capacity(searches.len());
        for mut search in searches {
            search.run::<ISA>(metric, tree, params);
            results.push((search.top, search.stats));
        }
        results
    }
}

/// The best seeds of one query: (score, id), best first, ties to the smaller id.
struct SeedBuffer {
    capacity: usize,
    entries: Vec<(f64, u32)>,
}

impl SeedBuffer {
    fn new(capacity: usize) -> SeedBuffer {
        SeedBuffer { capacity, entries: Vec::with_capacity(capacity + 1) }
    }

    #[inline(always)]
    fn offer(&mut self, score: f64, id: u32) {
        if self.entries.len() == self.capacity {
            let (worst, worst_id) = self.entries[self.capacity - 1];
            if score < worst || (score == worst && id > worst_id) {
                return;
            }
        }
        let position =
            self.entries.partition_point(|&(other, other_id)| other > score || (other == score && other_id < id));
        self.entries.insert(position, (score, id));
        self.entries.truncate(self.capacity);
    }
}

/// Seeds for the searches at `positions` from the candidates of `views`, evaluated
/// exactly and offered.
#[inline(always)]
fn offer_seeds_together<'c, 'q, const ISA: u8, M: Metric>(
    metric: &M,
    views: impl Iterator<Item = (ChunkView<'c>, u32)>,
    searches: &mut [Search<'q, M>],
    positions: &[usize],
    params: &QueryParams,
) {
    let queries: Vec<M::Query<'q>> = positions.iter().map(|&position| searches[position].query).collect();
    let mut buffers: Vec<SeedBuffer> =
        positions.iter().map(|_| SeedBuffer::new(SEEDS_PER_NEIGHBOUR * params.k)).collect();
    collect_seeds::<ISA, M>(metric, views, &queries, &mut buffers);
    for (&position, buffer) in positions.iter().zip(&buffers) {
        searches[position].offer_seeds(metric, &buffer.entries);
    }
}

/// The exact distances the screens left pending, lane by lane (each candidate's data
/// is loaded once for all the searches at `positions`).
#[inline(always)]
fn exact_pending<'q, const ISA: u8, M: Metric>(
    metric: &M,
    view: ChunkView<'_>,
    searches: &mut [Search<'q, M>],
    positions: &[usize],
    screens: &[ChunkScreen],
    distances: &mut [[f64; LANES]],
) {
    let mut any_pending = screens.iter().fold(0u32, |pending, screen| pending | screen.pending);
    while any_pending != 0 {
        let lane = any_pending.trailing_zeros() as usize;
        any_pending &= any_pending - 1;
        for ((&position, lane_distances), screen) in positions.iter().zip(distances.iter_mut()).zip(screens) {
            if (screen.pending >> lane) & 1 == 1 {
                let search = &mut searches[position];
                let node = view.ids[lane] as usize;
                // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
                lane_distances[lane] =
                    unsafe { metric.exact_distance::<ISA>(search.query, node, &mut search.stats.counts) };
            }
        }
    }
}

/// A chunk of the tree's pool with all of its used lanes.
#[inline(always)]
fn full_view(chunks: &Chunks, chunk: usize) -> (ChunkView<'_>, u32) {
    let view = chunks.view(chunk);
    (view, (1u32 << view.len) - 1)
}

/// The candidates (the lanes of `mask` in each chunk) with the highest seed scores, per
/// query.
#[inline(always)]
fn collect_seeds<'c, 'q, const ISA: u8, M: Metric>(
    metric: &M,
    views: impl Iterator<Item = (ChunkView<'c>, u32)>,
    queries: &[M::Query<'q>],
    buffers: &mut [SeedBuffer],
) {
    for (view, mask) in views {
        for (&query, buffer) in queries.iter().zip(buffers.iter_mut()) {
            // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
            let scores = unsafe { metric.seed_scores::<ISA>(query, view) };
            let floor = if buffer.entries.len() == buffer.capacity {
                buffer.entries[buffer.capacity - 1].0
            } else {
                f64::NEG_INFINITY
            };
            for (lane, &score) in scores.iter().enumerate().take(view.len) {
                if (mask >> lane) & 1 == 1 && score >= floor {
                    buffer.offer(score, view.ids[lane]);
                }
            }
        }
    }
}

/// The lanes of layout chunk `chunk` that lie in `range`.
#[inline(always)]
fn range_mask(chunk: usize, range: &std::ops::Range<usize>) -> u32 {
    let first = chunk * LANES;
    let low = range.start.saturating_sub(first).min(LANES);
    let high = range.end.saturating_sub(first).min(LANES);
    if high <= low { 0 } else { (((1u64 << high) - 1) & !((1u64 << low) - 1)) as u32 }
}

/// Screens every descendant of `node` for the searches at `positions`, which cannot
/// prune below it: seeds first (when the range is long), then the node's range of the
/// depth-first layout chunk by chunk against each search's k-th distance, offering what
/// is within it. Nothing is pushed: the range is the whole subtree.
#[inline(always)]
fn screen_descendants<'q, const ISA: u8, M: Metric>(
    metric: &M,
    tree: &CoverTree,
    searches: &mut [Search<'q, M>],
    positions: &[usize],
    node: u32,
    params: &QueryParams,
) {
    let layout = &tree.layout;
    let range = layout.descendants(node);
    if range.is_empty() {
        return;
    }
    let chunk_range = range.start / LANES..(range.end - 1) / LANES + 1;
    let views = || chunk_range.clone().map(|chunk| (layout.view(chunk), range_mask(chunk, &range)));
    if metric.wants_seeds() && chunk_range.len() >= SEED_MIN_CHUNKS {
        offer_seeds_together::<ISA, M>(metric, views(), searches, positions, params);
    }
    let queries: Vec<M::Query<'q>> = positions.iter().map(|&position| searches[position].query).collect();
    let mut thresholds = vec![[0.0; LANES]; positions.len()];
    let mut distances = vec![[0.0; LANES]; positions.len()];
    let mut screens = vec![ChunkScreen::default(); positions.len()];
    // Counts are only ever summed over the queries.
    let mut counts = DistanceCounts::default();
    for (view, mask) in views() {
        for (&position, lane_thresholds) in positions.iter().zip(&mut thresholds) {
            // Lanes outside the range get 0, cheap to reject; they are masked off below.
            let kth = searches[position].top.kth();
            for (lane, threshold) in lane_thresholds.iter_mut().enumerate() {
                *threshold = if (mask >> lane) & 1 == 1 { kth } else { 0.0 };
            }
        }
        // SAFETY: this module instantiates `ISA` only from `multiversion!` bodies, for a checked set.
        unsafe {
            metric.bound_chunk_many::<ISA>(&queries, view, &thresholds, &mut distances, &mut screens, &mut counts)
        };
        for screen in &mut screens {
            screen.known &= mask;
            screen.pending &= mask;
        }
        exact_pending::<ISA, M>(metric, view, searches, positions, &screens, &mut distances);
        for ((&position, lane_distances), screen) in positions.iter().zip(&distances).zip(&screens) {
            searches[position].offer_lanes(view, screen.known | screen.pending, lane_distances);
        }
    }
    if let Some(&first) = positions.first() {
        searches[first].stats.counts.add(&counts);
    }
}
