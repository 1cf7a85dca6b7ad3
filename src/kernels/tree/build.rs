//! The parallel compressed cover tree (PCCT), built in batches.
//!
//! **Tree.** Every point is stored once, as a node with an integer level l (base 2,
//! not clamped: residual distances are at most 1 and Euclidean leaves need negative
//! levels). With `C_i = {nodes of level >= i}` the invariants are:
//!
//! - *covering*: a child c of p has `l(c) < l(p)` and `d(p, c) <= 2^(l(c) + 1)`;
//! - *separation*: distinct nodes u, v have `d(u, v) > 2^min(l(u), l(v))`, that is
//!   every `C_i` is 2^i-separated;
//! - *subtree radius*: `R(v) >= d(v, w)` for every descendant w, kept exact (the
//!   maximum of computed distances) along the ancestor path on every insertion. The
//!   query's lower bounds rest on it.
//!
//! Exact duplicates (distance 0 to a node) cannot be separated at any level; they
//! become leaves of level [`DUPLICATE_LEVEL`] (minus infinity) under the node they
//! duplicate and take no part in separation.
//!
//! **Where a point goes.** For a new point p and a node v let `e(v) = ceil(log2 d(p, v))`
//! (the smallest i with `d <= 2^i`). v *qualifies* when `e(v) <= l(v)`, that is
//! `d(p, v) <= 2^l(v)`. With
//! `E = min e(v)` over the qualifying nodes, p gets level `E - 1` under the nearest qualifying
//! node with `e(v) = E` (ties to the smaller index). This is the highest level that
//! keeps both invariants: every node v has `d(p, v) > 2^min(E - 1, l(v))` (else it
//! would qualify with a smaller e), and the parent is within `2^E`. The root's level
//! is raised at the start of every batch until it qualifies for every batch point,
//! which changes nothing else (it is alone above the other levels).
//!
//! **A batch** of points (default 512) is inserted in rounds:
//!
//! 1. *Traverse* the tree as it was before the batch, for every batch point in
//!    parallel, to find E, the parent and the *conflict scope*: the qualifying nodes
//!    with `d(p, v) <= 2^E` (the nodes that could be the parent). *Dense*: screen every
//!    tree node against the point (a batch x tree matrix). *Sparse*: a descent from
//!    the root in waves. A descendant w of u can only matter when
//!    `d(p, w) <= min(2^l(w), 2^E)` for the E found so far, so u is entered only when
//!    some level j below l(u) has `d(p, u) - R_j(u) <= min(2^j, 2^E)`, with R_j(u) the
//!    largest distance from u to its descendants of level j (the *level profile*,
//!    kept per lane for the levels `l(u) - 1 .. l(u) - 3` and one bucket for all
//!    lower ones) and a slack for rounding. This is never looser than the subtree's
//!    ball, `d(p, u) - R(u) <= min(2^(l(u) - 1), 2^E)`, and much tighter where the
//!    farthest descendants are the low ones (at 32,768 points it cuts the distances
//!    spent on level-1 nodes' children by 40%). A block of points descends together:
//!    each wave screens every entered node's children for all the block's points that
//!    entered it, chunk by chunk, so a chunk is loaded once per wave (in flat trees, as
//!    under the residual metric, the root's children are most of the work). Under the
//!    Euclidean metric most point-chunk pairs have no lane within its threshold, and
//!    squared sums against the chunk's largest thresholds tell so before any root
//!    (`screen_squared`). Both traversals reach every qualifying node within `2^E` of
//!    the final E, so they agree bit for bit: E and the parent are a minimum over that
//!    set under a total order, and the scope is that set.
//! 2. *Conflict graph*: two batch points conflict when inserting both would break
//!    separation, `d(p, q) <= 2^min(l(p), l(q))`.
//! 3. *MIS*: Luby's algorithm with a generator seeded by `seed + batch index` picks an
//!    independent set of leaders.
//! 4. *Insert* the leaders (they are separated from each other and from the tree, and
//!    covered by their parents), updating R along their ancestor paths. The dominated
//!    points only need comparing with the new leaders (the only new nodes, all leaves)
//!    to bring their scope, level and parent up to date; they then go through steps
//!    2-4 again, until the batch is empty.
//!
//! Every step is either a parallel map over independent items or a sequential,
//! index-ordered reduction, so the tree does not depend on the thread count.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::cover::Chunks;
pub use super::cover::{CoverTree, DUPLICATE_LEVEL, INITIAL_ROOT_LEVEL, NO_PARENT, ceil_log2, power_of_two};
use super::metric::{
    ChunkScreen, DistanceCounts, Isa, LANES, Metric, PackedPoints, lane_mask, lanes, multiversion, screen_packed,
    squared_limit, task_size, tile_squared_distances,
};
use crate::clock;
use crate::kernel::Stopped;

/// Smallest and largest blocks of batch points that traverse together (see
/// [`task_size`]).
pub(super) const TRAVERSAL_BLOCK: (usize, usize) = (64, 256);

/// Fewest conflict-graph rows per parallel task (see [`conflict_graph`]): the graph of
/// a round of 64 points is about 2,000 pairs, under the Euclidean metric less work
/// than waking a thread.
const CONFLICT_ROWS_PER_TASK: usize = 64;

/// Fewest dominated points per parallel task when they meet a round's new leaves.
const DOMINATED_PER_TASK: usize = 8;

/// The largest batch the kernel accepts. Two points of a batch conflict when they lie
/// within their levels' separation, and in a batch inserted into a small tree (the
/// first batch, or any batch of points crowded together, as in one dimension) that can
/// be nearly every pair: the conflict graph's memory and time grow with the square of
/// the batch (see [`batch_memory_estimate`]). Measured with as many points as the batch
/// holds (N(0, 1) points, one batch, 2 threads): in 8 dimensions 8192 points gave 1.28
/// million edges, a 34 MB peak and a 0.39 s build, 32,768 points 20.8 million edges,
/// 320 MB and 5.1 s; at 4096 points, 0.32 million edges, 7 MB and 0.04 s, and in one
/// dimension, where more pairs conflict, 1.9 million edges, 27 MB and 0.09 s. The worst
/// graph of 4096 points, every pair joined, holds 8.4 million edges (about 100 MB) and
/// costs as many distances a round. The experiments use 512.
pub const MAX_BATCH_SIZE: usize = 4096;

/// Points per leaf bucket by default. The kernel's `bucket_size` is a floor: its
/// buckets hold up to the larger of it and a quarter of the points (see
/// [`bucket_cap`]).
pub const DEFAULT_BUCKET_SIZE: usize = 2048;

/// The kernel's cap on a leaf bucket's points for `points` points and the parameter
/// `bucket_size` (0 = no buckets): the larger of `bucket_size` and a quarter of the
/// points. For N(0,1) data in 8 dimensions this makes the subtrees of the root's
/// children the buckets (the largest holds less than a quarter of the points). Queries
/// then expand fewer nodes with ball bounds; measured on 2 cores as the ratio of the
/// best of 20 query times to kiddo's, at 8192, 16,384, 32,768 and 65,536 points:
/// 1.42, 1.31, 1.12, 1.30 with a quarter of the points; 1.48, 1.56, 1.51, 1.60 with
/// 2048; 3.2 without buckets.
pub fn bucket_cap(points: usize, bucket_size: usize) -> usize {
    if bucket_size == 0 { 0 } else { bucket_size.max(points / 4) }
}

/// How the batch traversal finds scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traversal {
    /// Screen every tree node (a batch x tree matrix).
    Dense,
    /// Descent from the root in waves, pruning with the subtree radii.
    Sparse,
}

impl Traversal {
    pub fn name(self) -> &'static str {
        match self {
            Traversal::Dense => "dense",
            Traversal::Sparse => "sparse",
        }
    }
}

/// Parameters of the batch build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildParams {
    pub batch_size: usize,
    pub traversal: Traversal,
    /// Most scope members kept per point (0 = all). Scopes are telemetry and a
    /// cross-check between traversals; levels and parents never depend on the cap.
    pub scope_cap: usize,
    pub seed: u64,
    /// Most points of a leaf bucket built for the queries (0 = none; see
    /// `bucket::LeafBuckets`). Never changes the tree.
    pub bucket_size: usize,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            batch_size: 512,
            traversal: Traversal::Sparse,
            scope_cap: 0,
            seed: 0,
            bucket_size: DEFAULT_BUCKET_SIZE,
        }
    }
}

/// The exponent `e` of a distance: `ceil(log2 d)`, and minus infinity for 0.
fn exponent_of(distance: f64) -> i32 {
    if distance == 0.0 { DUPLICATE_LEVEL } else { ceil_log2(distance) }
}

/// `2^E` for an exponent that may still be unknown (`i32::MAX`: infinity) or minus
/// infinity (0).
fn exponent_bound(exponent: i32) -> f64 {
    if exponent == DUPLICATE_LEVEL { 0.0 } else { power_of_two(exponent) }
}

/// Telemetry of one batch, with the field's names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchReport {
    pub batch_index: usize,
    /// Points in the batch.
    pub candidates: usize,
    /// Leaders of the first round's MIS.
    pub selected: usize,
    /// Points the first MIS dominated (inserted in later rounds of the batch).
    pub dominated: usize,
    /// Rounds of conflict graph, MIS and insertion.
    pub rounds: usize,
    /// Conflict edges, summed over rounds.
    pub edges: usize,
    /// Luby iterations, summed over rounds.
    pub mis_iterations: usize,
    pub traversal_ms: f64,
    /// Wall time of the distance screening in the traversal (its CPU time divided by
    /// the thread count; all of a dense traversal).
    pub traversal_pairwise_ms: f64,
    /// Time spent sorting the scopes into sets (its CPU time divided by the thread
    /// count, as for `traversal_pairwise_ms`).
    pub traversal_semisort_ms: f64,
    pub conflict_graph_ms: f64,
    pub mis_ms: f64,
    pub insert_ms: f64,
    /// Scope members kept (after the cap).
    pub scope_chunk_points: usize,
    /// Points whose scope exceeded the cap.
    pub scope_chunk_saturated: usize,
    /// Chunks screened in the traversal.
    pub scope_chunk_scans: usize,
    /// Sum and maximum of the full scope sizes.
    pub scope_size_sum: usize,
    pub scope_size_max: usize,
    pub counts: DistanceCounts,
    /// Distances the sparse traversal evaluated screening the children of nodes of
    /// each level, as (level, distances) by level from the top (empty for the dense
    /// traversal): where the traversal's cost goes.
    pub screened_by_level: Vec<(i32, u64)>,
}

/// Adds `(level, count)` pairs to a list kept sorted by level from the top.
pub fn add_by_level(into: &mut Vec<(i32, u64)>, from: &[(i32, u64)]) {
    for &(level, count) in from {
        match into.binary_search_by(|&(known, _)| level.cmp(&known)) {
            Ok(position) => into[position].1 += count,
            Err(position) => into.insert(position, (level, count)),
        }
    }
}

/// The first-round scopes of each batch as (point, sorted scope) lists, for
/// cross-checks.
pub type BatchScopes = Vec<Vec<(u32, Vec<u32>)>>;

/// The result of a build.
#[derive(Clone, Debug)]
pub struct BuildOutcome {
    pub tree: CoverTree,
    pub batches: Vec<BatchReport>,
    pub counts: DistanceCounts,
    pub scopes: Option<BatchScopes>,
}

/// Where a batch point goes, as known so far.
#[derive(Clone, Debug)]
struct Placement {
    point: u32,
    /// The minimum exponent over the qualifying nodes (E), `DUPLICATE_LEVEL`, or
    /// `i32::MAX` before any.
    exponent: i32,
    /// `2^E` (see [`exponent_bound`]), kept with E.
    bound: f64,
    parent: u32,
    parent_distance: f64,
    /// Qualifying nodes seen (filtered to `d <= 2^E` by `finish_scope`).
    qualifying: Vec<(u32, f64)>,
    scope: Vec<u32>,
    scope_size: usize,
    counts: DistanceCounts,
    scans: usize,
    /// See [`BatchReport::screened_by_level`] (kept on the first point of a block).
    screened_by_level: Vec<(i32, u64)>,
}

impl Placement {
    fn new(point: u32) -> Placement {
        Placement {
            point,
            exponent: i32::MAX,
            bound: exponent_bound(i32::MAX),
            parent: NO_PARENT,
            parent_distance: f64::INFINITY,
            // A point sees about 9 qualifying nodes at 32,768 points (at most 28; more
            // than 16 for 4%): one allocation instead of three or four as it grows.
            qualifying: Vec::with_capacity(16),
            scope: Vec::new(),
            scope_size: 0,
            counts: DistanceCounts::default(),
            scans: 0,
            screened_by_level: Vec::new(),
        }
    }

    /// The level the point would get.
    fn level(&self) -> i32 {
        if self.exponent == DUPLICATE_LEVEL { DUPLICATE_LEVEL } else { self.exponent - 1 }
    }

    /// Records a qualifying node (the caller checked `distance <= 2^l(node)`).
    #[inline]
    fn offer(&mut self, node: u32, distance: f64) {
        let exponent = exponent_of(distance);
        if (exponent, distance, node) < (self.exponent, self.parent_distance, self.parent) {
            self.exponent = exponent;
            self.bound = exponent_bound(exponent);
            self.parent_distance = distance;
            self.parent = node;
        }
        if distance <= self.bound {
            self.qualifying.push((node, distance));
        }
    }

    /// [`still_screens`] for the point's current E; counts the scan when it does.
    #[inline(always)]
    fn screens(&mut self, bound_bits: u64) -> bool {
        if !still_screens(bound_bits, self.bound) {
            return false;
        }
        self.scans += 1;
        true
    }

    /// Keeps the qualifying nodes within `2^E` as the scope (sorted, capped).
    fn finish_scope(&mut self, scope_cap: usize) {
        let bound = self.bound;
        self.qualifying.retain(|&(_, distance)| distance <= bound);
        self.qualifying.sort_unstable_by_key(|&(node, _)| node);
        self.scope_size = self.qualifying.len();
        let kept = if scope_cap == 0 { self.scope_size } else { self.scope_size.min(scope_cap) };
        self.scope = self.qualifying[..kept].iter().map(|&(node, _)| node).collect();
    }
}

/// Whether a point that entered a subtree it needs while `2^E` is at least the value
/// whose bits are `bound_bits` still screens the subtree's children now that its `2^E`
/// is `bound`.
#[inline(always)]
fn still_screens(bound_bits: u64, bound: f64) -> bool {
    f64::from_bits(bound_bits) <= bound
}

/// Builds the tree over all points of `metric`, in index order: point 0 is the root,
/// the others follow in batches. `observe` sees the tree after every batch.
pub fn build<M: Metric>(
    metric: &M,
    params: &BuildParams,
    keep_scopes: bool,
    observe: impl FnMut(&CoverTree, &BatchReport),
) -> BuildOutcome {
    build_with(Isa::detect(), metric, params, keep_scopes, observe)
}

/// [`build`] with the hot loops compiled for `isa` (which the CPU must support; see
/// [`Isa::detect`]). Every instruction set builds the same tree.
pub fn build_with<M: Metric>(
    isa: Isa,
    metric: &M,
    params: &BuildParams,
    keep_scopes: bool,
    observe: impl FnMut(&CoverTree, &BatchReport),
) -> BuildOutcome {
    Stopped::never(build_batches(isa, metric, params, keep_scopes, observe, || false))
}

/// [`build`], given up between two batches once `stop` returns true (it is asked
/// after every batch but the last): the way a run honours its per-sample timeout.
/// [`Stopped`] counts batches; point 0, the root, is not one.
pub fn build_until<M: Metric>(
    metric: &M,
    params: &BuildParams,
    stop: impl FnMut() -> bool,
) -> Result<BuildOutcome, Stopped> {
    build_batches(Isa::detect(), metric, params, false, |_, _| {}, stop)
}

fn build_batches<M: Metric>(
    isa: Isa,
    metric: &M,
    params: &BuildParams,
    keep_scopes: bool,
    mut observe: impl FnMut(&CoverTree, &BatchReport),
    mut stop: impl FnMut() -> bool,
) -> Result<BuildOutcome, Stopped> {
    let n = metric.len();
    assert!(n > 0, "cannot build a tree over no points");
    assert!(n < u32::MAX as usize, "too many points for 32-bit node ids");
    assert!(isa.is_available(), "instruction set {isa:?} is not available");
    let batch_size = params.batch_size.max(1);
    let mut tree = CoverTree::new(metric, 0, INITIAL_ROOT_LEVEL);
    let mut batches = Vec::new();
    let mut counts = DistanceCounts::default();
    let mut scopes = keep_scopes.then(Vec::new);
    let points: Vec<u32> = (1..n as u32).collect();
    let batch_count = points.len().div_ceil(batch_size);
    for (batch_index, batch) in points.chunks(batch_size).enumerate() {
        let report = insert_batch(isa, metric, params, &mut tree, batch, batch_index, scopes.as_mut());
        counts.add(&report.counts);
        observe(&tree, &report);
        batches.push(report);
        if batch_index + 1 < batch_count && stop() {
            return Err(Stopped { done: batch_index + 1, total: batch_count });
        }
    }
    tree.finish(metric, params.bucket_size);
    Ok(BuildOutcome { tree, batches, counts, scopes })
}

fn elapsed_ms(since: clock::Stamp) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn insert_batch<M: Metric>(
    isa: Isa,
    metric: &M,
    params: &BuildParams,
    tree: &mut CoverTree,
    batch: &[u32],
    batch_index: usize,
    scopes: Option<&mut BatchScopes>,
) -> BatchReport {
    let mut report = BatchReport { batch_index, candidates: batch.len(), ..BatchReport::default() };
    let traversal_start = clock::now();

    // Raise the root until it qualifies for every batch point. Its distances are taken
    // on one thread: a distance per point is less work than waking the others.
    let root = tree.root;
    let root_distances: Vec<f64> =
        batch.iter().map(|&point| metric.distance(metric.point(point as usize), root as usize)).collect();
    report.counts.exact += batch.len() as u64;
    report.counts.dot_flops += batch.len() as u64 * metric.exact_flops();
    for &distance in &root_distances {
        if distance > 0.0 {
            let root_level = &mut tree.level[root as usize];
            *root_level = (*root_level).max(ceil_log2(distance));
        }
    }

    let tree_view: &CoverTree = tree;
    let mut placements: Vec<Placement> = batch
        .iter()
        .zip(&root_distances)
        .map(|(&point, &root_distance)| {
            let mut placement = Placement::new(point);
            placement.offer(root, root_distance);
            placement
        })
        .collect();
    // Blocks of points traverse together: a dense block screens every chunk for all of
    // its points before moving on, so each chunk is loaded once per block; a sparse
    // block descends wave by wave.
    let block_size = task_size(batch.len(), TRAVERSAL_BLOCK.0, TRAVERSAL_BLOCK.1);
    // Each block sorts its points' scopes as soon as it is through (one parallel
    // region per batch, not two).
    let block_seconds: Vec<(f64, f64)> = placements
        .par_chunks_mut(block_size)
        .map(|block| {
            let start = clock::now();
            match params.traversal {
                Traversal::Dense => dense_traverse(isa, metric, tree_view, block),
                Traversal::Sparse => sparse_traverse(isa, metric, tree_view, block),
            }
            let traversed = start.elapsed().as_secs_f64();
            let semisort_start = clock::now();
            for placement in block.iter_mut() {
                placement.finish_scope(params.scope_cap);
            }
            (traversed, semisort_start.elapsed().as_secs_f64())
        })
        .collect();
    let threads = rayon::current_num_threads() as f64;
    let pairwise_seconds: f64 = block_seconds.iter().map(|&(traversed, _)| traversed).sum();
    report.traversal_semisort_ms = block_seconds.iter().map(|&(_, sorted)| sorted).sum::<f64>() * 1e3 / threads;
    for placement in &placements {
        report.counts.add(&placement.counts);
        add_by_level(&mut report.screened_by_level, &placement.screened_by_level);
        report.scope_chunk_scans += placement.scans;
        report.scope_chunk_points += placement.scope.len();
        report.scope_size_sum += placement.scope_size;
        report.scope_size_max = report.scope_size_max.max(placement.scope_size);
        if params.scope_cap > 0 && placement.scope_size > params.scope_cap {
            report.scope_chunk_saturated += 1;
        }
    }
    report.traversal_pairwise_ms = pairwise_seconds * 1e3 / threads;
    if let Some(scopes) = scopes {
        scopes.push(placements.iter().map(|placement| (placement.point, placement.scope.clone())).collect());
    }
    report.traversal_ms = elapsed_ms(traversal_start);

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed.wrapping_add(batch_index as u64));
    let mut active = placements;
    while !active.is_empty() {
        report.rounds += 1;
        let conflict_start = clock::now();
        let (adjacency, conflict_counts) = conflict_graph(isa, metric, &active);
        report.counts.add(&conflict_counts);
        report.edges += adjacency.iter().map(Vec::len).sum::<usize>() / 2;
        report.conflict_graph_ms += elapsed_ms(conflict_start);

        let mis_start = clock::now();
        let (leader_flags, iterations) = luby_mis(&adjacency, &mut rng);
        report.mis_iterations += iterations;
        report.mis_ms += elapsed_ms(mis_start);
        if report.rounds == 1 {
            report.selected = leader_flags.iter().filter(|&&leader| leader).count();
            report.dominated = active.len() - report.selected;
        }

        let insert_start = clock::now();
        let mut leaders = Vec::new();
        let mut dominated = Vec::new();
        for (placement, is_leader) in active.into_iter().zip(leader_flags) {
            if is_leader { leaders.push(placement) } else { dominated.push(placement) }
        }
        let insert_counts = insert_leaders(metric, tree, &leaders);
        report.counts.add(&insert_counts);
        // The dominated points meet the new leaders: the only nodes the tree gained,
        // all leaves.
        let new_nodes: Vec<u32> = leaders
            .iter()
            .filter(|placement| placement.exponent != DUPLICATE_LEVEL)
            .map(|placement| placement.point)
            .collect();
        let tree_view: &CoverTree = tree;
        let packed = PackedPoints::new(metric, &new_nodes);
        // Most rounds leave a handful of dominated points, each screening the few
        // hundred new leaves: tasks of `DOMINATED_PER_TASK` keep that on one thread.
        dominated.par_iter_mut().with_min_len(DOMINATED_PER_TASK).for_each(|placement| {
            placement.counts = DistanceCounts::default();
            meet_new_nodes(isa, metric, tree_view, &new_nodes, &packed, placement);
            placement.finish_scope(params.scope_cap);
        });
        for placement in &dominated {
            report.counts.add(&placement.counts);
        }
        report.insert_ms += elapsed_ms(insert_start);
        active = dominated;
    }
    report
}

multiversion! {
    /// Screens the new leaves (packed in `packed`) against a dominated point.
    fn meet_new_nodes<'a, M: Metric>(
        metric: &M,
        tree: &CoverTree,
        nodes: &[u32],
        packed: &PackedPoints,
        placement: &mut Placement,
    ) -> () {
        if nodes.is_empty() {
            return;
        }
        let bound = placement.bound;
        let thresholds: Vec<f64> =
            nodes.iter().map(|&node| power_of_two(tree.level[node as usize]).min(bound)).collect();
        let mut found = Vec::new();
        let query = metric.point(placement.point as usize);
        // SAFETY: `multiversion!` instantiates this body only for a checked `ISA`.
        unsafe { screen_packed::<ISA, M>(metric, query, packed, &thresholds, &mut found, &mut placement.counts) };
        for (node, distance) in found {
            if distance <= power_of_two(tree.level[node as usize]) {
                placement.offer(node, distance);
            }
        }
    }
}

multiversion! {
    /// Dense traversal of a block of points: every chunk of the pool (every node but
    /// the root), chunk by chunk. The bounds run for the whole block at once (a metric
    /// may share a chunk's loads across the points); the exact distances they leave
    /// pending run node by node, so each node's data is loaded once for the block.
    fn dense_traverse<'a, M: Metric>(metric: &M, tree: &CoverTree, block: &mut [Placement]) -> () {
        let chunks = &tree.chunks;
        let queries: Vec<M::Query<'_>> =
            block.iter().map(|placement| metric.point(placement.point as usize)).collect();
        let mut thresholds = vec![[0.0; LANES]; block.len()];
        let mut distances = vec![[0.0; LANES]; block.len()];
        let mut screens = vec![ChunkScreen::default(); block.len()];
        // Counts are only ever summed over the block's points.
        let mut counts = DistanceCounts::default();
        for chunk in 0..chunks.count() {
            let view = chunks.view(chunk);
            let cover = &chunks.cover[chunk];
            for (placement, point_thresholds) in block.iter_mut().zip(&mut thresholds) {
                placement.scans += 1;
                let limit = placement.bound;
                for lane in 0..LANES {
                    point_thresholds[lane] = cover[lane].min(limit);
                }
            }
            // SAFETY: `multiversion!` instantiates this body only for a checked `ISA`.
            unsafe {
                metric.bound_chunk_many::<ISA>(&queries, view, &thresholds, &mut distances, &mut screens, &mut counts)
            };
            let mut any_pending = 0u32;
            for (position, placement) in block.iter_mut().enumerate() {
                let screen = screens[position];
                any_pending |= screen.pending;
                let mut known = screen.known;
                while known != 0 {
                    let lane = known.trailing_zeros() as usize;
                    known &= known - 1;
                    if distances[position][lane] <= cover[lane] {
                        placement.offer(view.ids[lane], distances[position][lane]);
                    }
                }
            }
            while any_pending != 0 {
                let lane = any_pending.trailing_zeros() as usize;
                any_pending &= any_pending - 1;
                let node = view.ids[lane];
                for (position, placement) in block.iter_mut().enumerate() {
                    if (screens[position].pending >> lane) & 1 == 0 {
                        continue;
                    }
                    let query = metric.point(placement.point as usize);
                    // SAFETY: `multiversion!` instantiates this body only for a checked `ISA`.
                    let distance = unsafe { metric.exact_distance::<ISA>(query, node as usize, &mut placement.counts) };
                    if distance <= cover[lane] {
                        placement.offer(node, distance);
                    }
                }
            }
        }
        if let Some(first) = block.first_mut() {
            first.counts.add(&counts);
        }
    }
}

/// A subtree a point of a block has entered: (node, position in the block, bits of the
/// smallest `2^E` for which the subtree can hold a qualifying node; see
/// [`SparseLanes::accept`]).
type Entered = (u32, u32, u64);

multiversion! {
    /// Sparse traversal of a block of points, in waves down the tree: every wave takes
    /// the subtrees the block's points entered, grouped by node, and screens each
    /// node's chunks for all the points that entered it at once (so each chunk is
    /// loaded once per wave and block, and a metric may share its loads across the
    /// points). A point screens a node's children only while the bound it entered
    /// with is within `2^E` for its current E; the children whose subtrees may hold a
    /// qualifying node within `2^E` form the next wave. Under a node with many chunks
    /// (the root), each run of `LANES` chunks is first screened by the chunks'
    /// summaries ([`Metric::screen_summaries`]), and a point skips the chunks they
    /// reject.
    fn sparse_traverse<'a, M: Metric>(metric: &M, tree: &CoverTree, block: &mut [Placement]) -> () {
        let chunks = &tree.chunks;
        let points: Vec<M::Query<'_>> =
            block.iter().map(|placement| metric.point(placement.point as usize)).collect();
        let weights: Vec<f64> = points.iter().map(|&point| metric.query_error_weight(point)).collect();
        let squared = metric.payload_is_coordinates();
        let coordinates: Vec<&[f64]> = if squared {
            points.iter().map(|&point| metric.coordinates(point).expect("a payload of coordinates")).collect()
        } else {
            Vec::new()
        };
        let mut wave: Vec<Entered> = (0..block.len() as u32).map(|position| (tree.root, position, 0)).collect();
        if !squared {
            // Points alike in error weight screen a chunk one after another, so the
            // bounds of a metric that shares work across them (tiles of queries) keep
            // or drop lanes together. The order of screening never changes a result.
            wave.sort_by(|left, right| {
                weights[left.1 as usize].total_cmp(&weights[right.1 as usize]).then(left.1.cmp(&right.1))
            });
        }
        let mut next: Vec<Entered> = Vec::new();
        let mut by_lane: [Vec<(u32, u64)>; LANES] = Default::default();
        // The squared screen reads each point's `2^E` from this mirror of the placements
        // (a compact array stays in the nearest cache; only `accept` lowers a bound, and
        // the screen copies it back after each), and counts its scans for the whole
        // block (the report sums them over the points).
        let mut bounds: Vec<f64> = block.iter().map(|placement| placement.bound).collect();
        let mut squared_scans = 0;
        let mut scratch = LiveScratch::<M>::new(block.len());
        // Per entry of a node's group: the chunks of the current run of `LANES` that
        // its summary screen kept.
        let mut kept = vec![0u32; block.len()];
        let mut summaries = RunSummaries::new(metric);
        // Counts are only ever summed over the block's points.
        let mut counts = DistanceCounts::default();
        let mut screened_by_level = Vec::new();
        while !wave.is_empty() {
            // Entries of one node are contiguous: each wave is emitted chunk by chunk
            // and lane by lane, and every node sits in one lane of one chunk.
            let mut groups = wave.chunk_by(|left, right| left.0 == right.0).peekable();
            while let Some(group) = groups.next() {
                let screened_before = counts.exact;
                let largest_weight =
                    group.iter().map(|&(_, position, _)| weights[position as usize]).fold(0.0, f64::max);
                let node_chunks = &tree.child_chunks[group[0].0 as usize];
                if squared {
                    // Each chunk is fetched while the one before it is screened: the
                    // node's next chunk, or the next node's first.
                    let following = groups.peek().and_then(|next| tree.child_chunks[next[0].0 as usize].first());
                    for (index, &chunk) in node_chunks.iter().enumerate() {
                        if let Some(&ahead) = node_chunks.get(index + 1).or(following) {
                            chunks.prefetch(ahead as usize);
                        }
                        screen_squared::<ISA, M>(
                            metric,
                            chunks,
                            chunk as usize,
                            group,
                            &coordinates,
                            &weights,
                            largest_weight,
                            block,
                            &mut bounds,
                            &mut squared_scans,
                            &mut by_lane,
                            &mut counts,
                        );
                        drain_by_lane(&chunks.ids[chunk as usize], &mut by_lane, &mut next);
                    }
                } else {
                    // Nodes with many chunks (the root) first screen each run of `LANES`
                    // chunks by the chunks' summaries.
                    let summarize = summaries.width > 0 && node_chunks.len() >= SUMMARY_CHUNKS;
                    for run in node_chunks.chunks(LANES) {
                        if summarize {
                            summaries.screen::<ISA, M>(
                                metric,
                                chunks,
                                run,
                                group,
                                &points,
                                largest_weight,
                                block,
                                &mut kept,
                                &mut counts,
                            );
                        }
                        for (slot, &chunk) in run.iter().enumerate() {
                            let keeps = |entry: usize| !summarize || (kept[entry] >> slot) & 1 == 1;
                            let chunk = chunk as usize;
                            scratch.screen::<ISA>(
                                metric,
                                chunks,
                                chunk,
                                group,
                                keeps,
                                &points,
                                &weights,
                                block,
                                &mut by_lane,
                                &mut counts,
                            );
                            drain_by_lane(&chunks.ids[chunk], &mut by_lane, &mut next);
                        }
                    }
                }
                let screened = counts.exact - screened_before;
                if screened > 0 {
                    add_by_level(&mut screened_by_level, &[(tree.level[group[0].0 as usize], screened)]);
                }
            }
            std::mem::swap(&mut wave, &mut next);
            next.clear();
        }
        if let Some(first) = block.first_mut() {
            first.counts.add(&counts);
            first.screened_by_level = screened_by_level;
            first.scans += squared_scans;
        }
    }
}

/// The sparse traversal's buffers for screening a chunk lane by lane (metrics whose
/// payload is not the coordinates): per live point of the chunk, its position, query,
/// lane thresholds, reaches and slacks, screen and distances.
struct LiveScratch<'m, M: Metric + 'm> {
    live: Vec<u32>,
    queries: Vec<M::Query<'m>>,
    lanes: Vec<SparseLanes>,
    thresholds: Vec<[f64; LANES]>,
    distances: Vec<[f64; LANES]>,
    screens: Vec<ChunkScreen>,
}

impl<'m, M: Metric> LiveScratch<'m, M> {
    fn new(points: usize) -> LiveScratch<'m, M> {
        LiveScratch {
            live: Vec::with_capacity(points),
            queries: Vec::with_capacity(points),
            lanes: vec![SparseLanes::default(); points],
            thresholds: vec![[0.0; LANES]; points],
            distances: vec![[0.0; LANES]; points],
            screens: vec![ChunkScreen::default(); points],
        }
    }

    /// Screens `chunk` for the entries of `group` that `keeps` (by their position in
    /// the group) and that still screen: [`Metric::bound_chunk_many`] for all of them
    /// at once, the exact distances it leaves pending, then [`SparseLanes::accept`].
    /// `points` and `weights` are the block's queries and error weights.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn screen<const ISA: u8>(
        &mut self,
        metric: &'m M,
        chunks: &Chunks,
        chunk: usize,
        group: &[Entered],
        keeps: impl Fn(usize) -> bool,
        points: &[M::Query<'m>],
        weights: &[f64],
        block: &mut [Placement],
        by_lane: &mut [Vec<(u32, u64)>; LANES],
        counts: &mut DistanceCounts,
    ) {
        self.live.clear();
        self.queries.clear();
        for (entry, &(_, position, bound_bits)) in group.iter().enumerate() {
            if !keeps(entry) {
                continue;
            }
            let placement = &mut block[position as usize];
            if !placement.screens(bound_bits) {
                continue;
            }
            let slot = self.live.len();
            let weight = weights[position as usize];
            self.thresholds[slot] = self.lanes[slot].prepare(metric, chunks, chunk, placement.bound, weight);
            self.live.push(position);
            self.queries.push(points[position as usize]);
        }
        let count = self.live.len();
        if count == 0 {
            return;
        }
        let view = chunks.view(chunk);
        // SAFETY: the caller runs on a CPU with `ISA` (a `multiversion!` body).
        unsafe {
            metric.bound_chunk_many::<ISA>(
                &self.queries,
                view,
                &self.thresholds[..count],
                &mut self.distances[..count],
                &mut self.screens[..count],
                counts,
            )
        };
        for slot in 0..count {
            let position = self.live[slot];
            let distances = &mut self.distances[slot];
            let mut pending = self.screens[slot].pending;
            while pending != 0 {
                let lane = pending.trailing_zeros() as usize;
                pending &= pending - 1;
                let node = view.ids[lane] as usize;
                // SAFETY: as above.
                distances[lane] = unsafe { metric.exact_distance::<ISA>(self.queries[slot], node, counts) };
            }
            let mask = self.screens[slot].known | self.screens[slot].pending;
            self.lanes[slot].accept(chunks, chunk, mask, distances, &mut block[position as usize], position, by_lane);
        }
    }
}

/// The summaries of a run of up to [`LANES`] chunks, `[value][chunk]`, for
/// [`Metric::screen_summaries`].
struct RunSummaries {
    width: usize,
    values: Vec<f64>,
}

impl RunSummaries {
    fn new<M: Metric>(metric: &M) -> RunSummaries {
        let width = metric.summary_width();
        RunSummaries { width, values: vec![0.0; width * LANES] }
    }

    /// Screens the chunks of `run` by their summaries for every entry of `group` that
    /// still screens: bit `slot` of `kept[entry]` is set when the entry must screen
    /// `run[slot]` lane by lane. Each chunk's threshold is the largest of its lanes'
    /// [`SparseLanes::unbounded`] thresholds for `largest_weight` (the group's
    /// largest), so the screen holds for every entry.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn screen<const ISA: u8, M: Metric>(
        &mut self,
        metric: &M,
        chunks: &Chunks,
        run: &[u32],
        group: &[Entered],
        points: &[M::Query<'_>],
        largest_weight: f64,
        block: &[Placement],
        kept: &mut [u32],
        counts: &mut DistanceCounts,
    ) {
        let used = (1u32 << run.len()) - 1;
        let mut thresholds = [f64::NEG_INFINITY; LANES];
        for (slot, &chunk) in run.iter().enumerate() {
            let chunk = chunk as usize;
            let (_, lane_thresholds) = SparseLanes::unbounded(metric, chunks, chunk, largest_weight);
            thresholds[slot] = lane_thresholds.into_iter().fold(f64::NEG_INFINITY, f64::max);
            for (value, &summary) in chunks.summary(chunk).iter().enumerate() {
                self.values[value * LANES + slot] = summary;
            }
        }
        for (entry, &(_, position, bound_bits)) in group.iter().enumerate() {
            // `Placement::screens` without counting a scan.
            if !still_screens(bound_bits, block[position as usize].bound) {
                kept[entry] = 0;
                continue;
            }
            // SAFETY: the caller runs on a CPU with `ISA` (a `multiversion!` body).
            let screen =
                unsafe { metric.screen_summaries::<ISA>(points[position as usize], &self.values, &thresholds) };
            kept[entry] = screen & used;
            counts.summary_screened += run.len() as u64;
            counts.summary_rejected += u64::from(run.len() as u32 - kept[entry].count_ones());
        }
    }
}

/// Appends the subtrees queued by lane for one chunk to the next wave, lane by lane.
#[inline(always)]
fn drain_by_lane(ids: &[u32; LANES], by_lane: &mut [Vec<(u32, u64)>; LANES], next: &mut Vec<Entered>) {
    for (lane, entries) in by_lane.iter_mut().enumerate() {
        if !entries.is_empty() {
            next.extend(entries.drain(..).map(|(position, bound_bits)| (ids[lane], position, bound_bits)));
        }
    }
}

/// Fewest chunks under a node for the sparse traversal to screen them by their
/// summaries first ([`Metric::screen_summaries`]): only the root has that many for
/// data like the experiments' (its children are grouped by [`Metric::chunk_group`],
/// which makes the summaries tight); the other nodes' few chunks are screened lane by
/// lane directly.
const SUMMARY_CHUNKS: usize = 2 * LANES;

/// Points per tile of [`screen_squared`].
const SQUARED_TILE: usize = 4;

/// The sparse traversal's screening of one chunk for the points of `group` that are
/// still live, for metrics whose payload is the coordinates
/// ([`Metric::payload_is_coordinates`]); `coordinates`, `weights` and `bounds` are the
/// block's points, error weights and `2^E` (kept equal to the placements' bounds), and
/// the largest of the group's weights is computed once per group; `scans` counts the
/// point-chunk screens.
///
/// Most points are far from every lane (at 32,768 points in 8 dimensions, 88% of the
/// screened point-chunk pairs have no lane within its threshold), so the squared sums
/// are first compared with the squares of the largest thresholds any point can have
/// (those of an unbounded E and the largest error weight among the points), slackened
/// by [`squared_limit`]: `sqrt(s) <= t` implies `s <= t^2 (1 + 2^-51)`. Only a point
/// with a lane left gets its own reaches and slacks (those of the unbounded E when its
/// `2^E` clips no bucket, see [`UnboundedLanes`]), the roots and
/// [`SparseLanes::accept`]. The extra lanes it may pass are harmless: a lane beyond the
/// point's threshold is beyond both its cover (or `2^E`, where offering changes
/// nothing) and its reach, so accept offers and queues exactly what the general path
/// does.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn screen_squared<const ISA: u8, M: Metric>(
    metric: &M,
    chunks: &Chunks,
    chunk: usize,
    group: &[Entered],
    coordinates: &[&[f64]],
    weights: &[f64],
    largest_weight: f64,
    block: &mut [Placement],
    bounds: &mut [f64],
    scans: &mut usize,
    by_lane: &mut [Vec<(u32, u64)>; LANES],
    counts: &mut DistanceCounts,
) {
    let unbounded = UnboundedLanes::new(metric, chunks, chunk, largest_weight);
    let upper = unbounded.upper;
    let mut clipped = SparseLanes::default();
    let view = chunks.view(chunk);
    let used = (1u32 << view.len) - 1;
    let mut live = [0u32; SQUARED_TILE];
    let mut entries = group.iter();
    loop {
        // Fill a tile with live points.
        let mut count = 0;
        for &(_, position, bound_bits) in entries.by_ref() {
            // `Placement::screens`, on the mirror of the bounds.
            if !still_screens(bound_bits, bounds[position as usize]) {
                continue;
            }
            *scans += 1;
            live[count] = position;
            count += 1;
            if count == SQUARED_TILE {
                break;
            }
        }
        if count == 0 {
            return;
        }
        // A short tile repeats its last point; the repeats are discarded.
        let tile: [&[f64]; SQUARED_TILE] = std::array::from_fn(|slot| coordinates[live[slot.min(count - 1)] as usize]);
        let sums = tile_squared_distances::<SQUARED_TILE>(tile, view.payload);
        counts.exact += (count * view.len) as u64;
        for slot in 0..count {
            let mask = lane_mask::<ISA>(&sums[slot], &upper) & used;
            if mask == 0 {
                continue;
            }
            let position = live[slot];
            let placement = &mut block[position as usize];
            let weight = weights[position as usize];
            // At 32,768 points, all but 0.2% of the points with a lane left share the
            // unbounded lanes.
            let lanes = if unbounded.hold_for(placement.bound, weight) {
                &unbounded.lanes
            } else {
                clipped.prepare(metric, chunks, chunk, placement.bound, weight);
                &clipped
            };
            let mut distances = [0.0; LANES];
            let mut remaining = mask;
            while remaining != 0 {
                let lane = remaining.trailing_zeros() as usize;
                remaining &= remaining - 1;
                distances[lane] = sums[slot][lane].sqrt();
            }
            lanes.accept(chunks, chunk, mask, &distances, placement, position, by_lane);
            bounds[position as usize] = placement.bound;
        }
        if count < SQUARED_TILE {
            return;
        }
    }
}

/// A chunk's lanes for an unbounded E and the largest error weight of a group
/// ([`SparseLanes::unbounded`]), with the squares of their thresholds as
/// [`squared_limit`] makes them.
pub(super) struct UnboundedLanes {
    pub(super) lanes: SparseLanes,
    pub(super) upper: [f64; LANES],
    weight: f64,
    /// The largest `2^(l - 1)` of the chunk's lanes (minus infinity for a chunk of
    /// duplicates).
    largest_half_cover: f64,
}

impl UnboundedLanes {
    #[inline(always)]
    pub(super) fn new<M: Metric>(metric: &M, chunks: &Chunks, chunk: usize, largest_weight: f64) -> UnboundedLanes {
        let (lanes, thresholds) = SparseLanes::unbounded(metric, chunks, chunk, largest_weight);
        let upper = thresholds.map(squared_limit);
        let largest_half_cover = chunks.half_cover[chunk].into_iter().fold(f64::NEG_INFINITY, f64::max);
        UnboundedLanes { lanes, upper, weight: largest_weight, largest_half_cover }
    }

    /// Whether the lanes are also those of a point whose `2^E` is `bound` and whose
    /// error weight is `weight`: with the largest weight and `2^E` at least every
    /// lane's `2^(l - 1)`, every bucket's cover is within the limit, so `prepare` takes
    /// the same values as for an unbounded E (only the thresholds, which the lanes do
    /// not keep, differ).
    #[inline(always)]
    pub(super) fn hold_for(&self, bound: f64, weight: f64) -> bool {
        bound >= self.largest_half_cover && weight == self.weight
    }
}

/// One point's view of one chunk in the sparse traversal: how far each lane's subtree
/// reaches (minus infinity for a lane without children) and the rounding slack of its
/// bound.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SparseLanes {
    pub(super) reach: [f64; LANES],
    pub(super) slacks: [f64; LANES],
}

impl SparseLanes {
    /// Fills the reaches and slacks of `chunk` for a point whose `2^E` is `limit` and
    /// returns the lanes' screening thresholds: a lane is needed when it qualifies
    /// (within its cover and `2^E`) or when its subtree may hold a node that does.
    #[inline(always)]
    pub(super) fn prepare<M: Metric>(
        &mut self,
        metric: &M,
        chunks: &Chunks,
        chunk: usize,
        limit: f64,
        query_weight: f64,
    ) -> [f64; LANES] {
        let cover = &chunks.cover[chunk];
        let half_cover = &chunks.half_cover[chunk];
        let radii = &chunks.radius[chunk];
        let profile = &chunks.profile[chunk];
        let parents = chunks.has_children[chunk];
        if parents == 0 {
            // No lane has a subtree to reach into: a lane is needed only when it
            // qualifies, and `accept` never reads the slacks.
            self.reach = [f64::NEG_INFINITY; LANES];
            return std::array::from_fn(|lane| cover[lane].min(limit));
        }
        // The farthest a qualifying descendant can put the child: over the profile's
        // buckets, its distance to the bucket's farthest node plus the largest distance
        // at which a node of the bucket's highest level qualifies. At most
        // `min(2^(l - 1), 2^E) + R`. Bucket by bucket, so the lanes vectorize (no value
        // is NaN, so the comparisons are the IEEE minimum and maximum).
        let mut bases = [f64::NEG_INFINITY; LANES];
        let mut bucket_covers = *half_cover;
        for bucket in profile {
            for lane in 0..LANES {
                let cover = if bucket_covers[lane] < limit { bucket_covers[lane] } else { limit };
                let candidate = bucket[lane] + cover;
                bases[lane] = if candidate > bases[lane] { candidate } else { bases[lane] };
                bucket_covers[lane] *= 0.5;
            }
        }
        let mut thresholds = [0.0; LANES];
        for lane in 0..LANES {
            let has_children = (parents >> lane) & 1 == 1;
            let base = bases[lane];
            self.slacks[lane] = metric.triangle_slack(base, radii[lane], query_weight);
            self.reach[lane] = if has_children { base + 2.0 * self.slacks[lane] } else { f64::NEG_INFINITY };
            thresholds[lane] = cover[lane].min(limit).max(self.reach[lane]);
        }
        thresholds
    }

    /// The lanes of `chunk` for an unbounded E and error weight `largest_weight`, with
    /// their thresholds: the largest [`SparseLanes::prepare`] can return for the chunk
    /// for any E and error weights up to `largest_weight` (the thresholds grow with
    /// both, as the slacks grow with the distance and the weight).
    #[inline(always)]
    fn unbounded<M: Metric>(
        metric: &M,
        chunks: &Chunks,
        chunk: usize,
        largest_weight: f64,
    ) -> (SparseLanes, [f64; LANES]) {
        let mut lanes = SparseLanes::default();
        let thresholds = lanes.prepare(metric, chunks, chunk, f64::INFINITY, largest_weight);
        (lanes, thresholds)
    }

    /// Offers the qualifying lanes of `mask` (exact distances in `distances`) and queues
    /// the subtrees worth entering, by lane, each with the smallest `2^E` for which a
    /// bucket of its profile can still hold a qualifying node.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &self,
        chunks: &Chunks,
        chunk: usize,
        mask: u32,
        distances: &[f64; LANES],
        placement: &mut Placement,
        position: u32,
        by_lane: &mut [Vec<(u32, u64)>; LANES],
    ) {
        let cover = &chunks.cover[chunk];
        let half_cover = &chunks.half_cover[chunk];
        let profile = &chunks.profile[chunk];
        let ids = &chunks.ids[chunk];
        let mut remaining = mask;
        while remaining != 0 {
            let lane = remaining.trailing_zeros() as usize;
            remaining &= remaining - 1;
            let distance = distances[lane];
            if distance <= cover[lane] {
                placement.offer(ids[lane], distance);
            }
            if distance <= self.reach[lane] {
                // The smallest `2^E` for which a bucket of the profile can still hold a
                // qualifying node: later waves skip the subtree once E drops below it.
                let mut need = f64::INFINITY;
                let mut bucket_cover = half_cover[lane];
                for bucket in profile {
                    let lower = (distance - bucket[lane] - 2.0 * self.slacks[lane]).max(0.0);
                    if lower <= bucket_cover {
                        need = need.min(lower);
                    }
                    bucket_cover *= 0.5;
                }
                if need <= placement.bound {
                    by_lane[lane].push((position, need.to_bits()));
                }
            }
        }
    }
}

/// Bytes a batch of `batch_size` points with `payload_width` payload values each may
/// hold at once: its placements with their qualifying nodes and scopes (a few dozen
/// each), the points packed for the conflict graph, and the graph itself at its worst,
/// every pair joined: an edge is kept once in its row and twice in the adjacency lists,
/// as u32. The graph's term grows with the square of the batch (see
/// [`MAX_BATCH_SIZE`]).
pub fn batch_memory_estimate(batch_size: usize, payload_width: usize) -> u64 {
    let points = batch_size as u64;
    let placement = std::mem::size_of::<Placement>() as u64 + 64 * (16 + 4);
    let packed = points.div_ceil(LANES as u64) * (4 * LANES + 8 * LANES * payload_width) as u64;
    let edges = points * points.saturating_sub(1) / 2;
    points * placement + packed + 12 * edges
}

/// Adjacency lists (sorted, by position in `active`) of the conflict graph.
///
/// The active points are packed into chunks once (in position order); every point then
/// screens the chunks from its own position on.
fn conflict_graph<M: Metric>(isa: Isa, metric: &M, active: &[Placement]) -> (Vec<Vec<u32>>, DistanceCounts) {
    let count = active.len();
    let points: Vec<u32> = active.iter().map(|placement| placement.point).collect();
    let packed = PackedPoints::new(metric, &points);
    // `2^l` per active point in the packed order (0 for duplicates and the padding), so
    // a pair's threshold `2^min(l_p, l_q)` is the smaller of two covers.
    let mut covers = vec![0.0; packed.chunk_count() * LANES];
    for (cover, placement) in covers.iter_mut().zip(active) {
        if placement.exponent != DUPLICATE_LEVEL {
            *cover = power_of_two(placement.level());
        }
    }
    // Rows in tasks of at least `CONFLICT_ROWS_PER_TASK`: the later rounds of a batch
    // hold a handful of points, whose graph is less work than waking another thread.
    let rows: Vec<(Vec<u32>, DistanceCounts)> = (0..count)
        .into_par_iter()
        .with_min_len(CONFLICT_ROWS_PER_TASK)
        .map(|left| conflict_row(isa, metric, active, &packed, &covers, left))
        .collect();
    let mut adjacency: Vec<Vec<u32>> = vec![Vec::new(); count];
    let mut counts = DistanceCounts::default();
    for (left, (neighbours, row_counts)) in rows.into_iter().enumerate() {
        counts.add(&row_counts);
        for right in neighbours {
            adjacency[left].push(right);
            adjacency[right as usize].push(left as u32);
        }
    }
    for neighbours in &mut adjacency {
        neighbours.sort_unstable();
    }
    (adjacency, counts)
}

multiversion! {
    /// The neighbours after `left` of one active point: `d <= 2^min(l_p, l_q)`, the
    /// smaller of the two `covers`. Lanes at or before `left`, and duplicates, get a
    /// threshold of 0 (cheap to reject) and are dropped afterwards.
    fn conflict_row<'a, M: Metric>(
        metric: &M,
        active: &[Placement],
        packed: &PackedPoints,
        covers: &[f64],
        left: usize,
    ) -> (Vec<u32>, DistanceCounts) {
        let mut counts = DistanceCounts::default();
        let mut neighbours = Vec::new();
        let left_placement = &active[left];
        if left_placement.exponent == DUPLICATE_LEVEL || left + 1 >= packed.len() {
            return (neighbours, counts);
        }
        let query = metric.point(left_placement.point as usize);
        let left_cover = covers[left];
        let mut thresholds = [0.0; LANES];
        let mut distances = [0.0; LANES];
        for chunk in (left + 1) / LANES..packed.chunk_count() {
            let first = chunk * LANES;
            let view = packed.view(chunk);
            let len = view.len;
            let lane_covers = lanes(covers, first);
            for lane in 0..LANES {
                thresholds[lane] = if lane_covers[lane] < left_cover { lane_covers[lane] } else { left_cover };
            }
            if first <= left {
                thresholds[..=left - first].fill(0.0);
            }
            // SAFETY: `multiversion!` instantiates this body only for a checked `ISA`.
            let mask = unsafe { metric.screen_chunk::<ISA>(query, view, &thresholds, &mut distances, &mut counts) };
            let mut remaining = mask & ((1u32 << len) - 1);
            while remaining != 0 {
                let lane = remaining.trailing_zeros() as usize;
                remaining &= remaining - 1;
                let position = first + lane;
                if position > left
                    && active[position].exponent != DUPLICATE_LEVEL
                    && distances[lane] <= thresholds[lane]
                {
                    neighbours.push(position as u32);
                }
            }
        }
        (neighbours, counts)
    }
}

/// Luby's maximal independent set: every iteration draws a fresh priority for every
/// remaining vertex (in vertex order); a vertex whose (priority, index) is below all of
/// its remaining neighbours' joins the set, and it and its neighbours leave.
pub fn luby_mis(adjacency: &[Vec<u32>], rng: &mut ChaCha8Rng) -> (Vec<bool>, usize) {
    let count = adjacency.len();
    let mut in_set = vec![false; count];
    let mut remaining = vec![true; count];
    let mut remaining_count = count;
    let mut priority = vec![0u64; count];
    let mut iterations = 0;
    while remaining_count > 0 {
        iterations += 1;
        for vertex in 0..count {
            if remaining[vertex] {
                priority[vertex] = rng.random::<u64>();
            }
        }
        let chosen: Vec<usize> = (0..count)
            .filter(|&vertex| {
                remaining[vertex]
                    && adjacency[vertex].iter().all(|&neighbour| {
                        let neighbour = neighbour as usize;
                        !remaining[neighbour] || (priority[vertex], vertex) < (priority[neighbour], neighbour)
                    })
            })
            .collect();
        for &vertex in &chosen {
            in_set[vertex] = true;
            remaining[vertex] = false;
            remaining_count -= 1;
            for &neighbour in &adjacency[vertex] {
                if remaining[neighbour as usize] {
                    remaining[neighbour as usize] = false;
                    remaining_count -= 1;
                }
            }
        }
    }
    (in_set, iterations)
}

/// Inserts the leaders (in index order) and widens R and the level profiles along
/// their ancestor paths.
fn insert_leaders<M: Metric>(metric: &M, tree: &mut CoverTree, leaders: &[Placement]) -> DistanceCounts {
    for leader in leaders {
        tree.level[leader.point as usize] = leader.level();
        tree.add_child(metric, leader.parent, leader.point);
    }
    // On one thread: a few distances per leader (one per ancestor above the parent)
    // are less work than waking the others.
    let mut computed = 0u64;
    for leader in leaders {
        let query = metric.point(leader.point as usize);
        let level = leader.level();
        tree.widen(leader.parent, leader.parent_distance, level);
        let mut ancestor = tree.parent[leader.parent as usize];
        while ancestor != NO_PARENT {
            let distance = metric.distance(query, ancestor as usize);
            computed += 1;
            tree.widen(ancestor, distance, level);
            ancestor = tree.parent[ancestor as usize];
        }
    }
    DistanceCounts { exact: computed, dot_flops: computed * metric.exact_flops(), ..DistanceCounts::default() }
}
