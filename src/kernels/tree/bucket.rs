//! Leaf buckets: the small subtrees of a finished tree, packed for screening by
//! bounding boxes (metrics with coordinates, that is the Euclidean one).
//!
//! In 8 dimensions the cover tree is flat (the root at level 3, then levels 2 and 1,
//! then leaves at 0 and below) and its ball bounds are loose: a level-1 subtree has a
//! radius near 2 against a k-th distance near 1.2, so a search that walks the small
//! subtrees node by node evaluates most of their nodes. A *bucket* is the subtree of a
//! node that has at most the bucket cap's descendants while its parent has more (the
//! cap is the larger of the kernel's `bucket_size` and a quarter of the points,
//! [`super::build::bucket_cap`]). Its descendants are stored once more, in
//! chunks of [`LANES`] ordered by recursive halving along the widest coordinate, so a
//! chunk holds nearby points and its axis-aligned bounding box is small; chunks are
//! grouped [`LANES`] at a time with their boxes laid out `[coordinate][lane]`, so the
//! box bounds of a group are one vector pass. The search keeps walking the tree with
//! ball bounds above the buckets, and screens a bucket whose root it enters chunk by
//! chunk: a chunk whose box lies farther than the k-th distance is skipped, the others
//! get exact distances.
//!
//! **Why the box bound is safe.** For a point x in a box `[lower, upper]` and a query
//! q, `t_c = max(lower_c - q_c, q_c - upper_c, 0) <= |x_c - q_c|` holds for the
//! computed differences too (rounding is monotone), so the box's squared bound is at
//! most x's computed squared distance up to the rounding of the sums, which
//! [`SQUARE_SLACK`] covers many times over. A chunk is skipped only when its bound
//! exceeds `kth^2 (1 + SQUARE_SLACK)` ([`squared_limit`]): then each of its points is strictly farther than
//! the k-th distance and cannot enter the top k, not even as a tie of smaller index.
//!
//! Buckets, like the layout, are derived from the finished tree and are not part of
//! its digest: they change which pairs are evaluated, never a result.

use rayon::prelude::*;

use super::cover::{CoverTree, chunk_view};
use super::metric::{ChunkView, LANES, Metric, box_squared_distances};
#[cfg(doc)]
use super::metric::{SQUARE_SLACK, squared_limit};

/// Halves of at least this many points are ordered in parallel (see [`order_for_boxes`]).
const PARALLEL_HALF: usize = 1024;

/// No bucket: the node is walked with ball bounds (or lies inside a bucket).
const NO_BUCKET: u32 = u32::MAX;

/// The buckets of a finished tree (empty when the metric has no coordinates or
/// buckets are switched off).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeafBuckets {
    /// The bucket rooted at every node, or `NO_BUCKET`.
    of_node: Vec<u32>,
    /// Bucket `b` holds groups `group_start[b]..group_start[b + 1]`.
    group_start: Vec<u32>,
    /// The first chunk of every group; its chunks are consecutive.
    group_first_chunk: Vec<u32>,
    /// Bit `lane` set when the group has a chunk in that lane.
    group_lanes: Vec<u32>,
    /// Points in every group (for the pair counts).
    group_points: Vec<u32>,
    /// Per group, `dimension * LANES` values `[coordinate][lane]`: the lower and upper
    /// corners of its chunks' boxes; unused lanes hold empty boxes (+inf, -inf).
    lower: Vec<f64>,
    upper: Vec<f64>,
    dimension: usize,
    /// The bucket chunks: ids, used lanes and the coordinates (`dimension * LANES`
    /// values per chunk, `[coordinate][lane]`; unused lanes are zero).
    ids: Vec<[u32; LANES]>,
    len: Vec<u8>,
    coordinates: Vec<f64>,
}

impl LeafBuckets {
    /// The buckets of `tree` (whose layout is built) for buckets of at most
    /// `bucket_size` points; none when `bucket_size` is 0 or the metric has no
    /// coordinates.
    pub fn new<M: Metric>(metric: &M, tree: &CoverTree, bucket_size: usize) -> LeafBuckets {
        let n = tree.len();
        let dimension = match metric.coordinates(metric.point(tree.root as usize)) {
            Some(coordinates) if bucket_size > 0 && tree.layout.is_ready() => coordinates.len(),
            _ => return LeafBuckets::default(),
        };
        let coordinates =
            |node: u32| metric.coordinates(metric.point(node as usize)).expect("a metric with coordinates");
        let layout = &tree.layout;
        let descendant_count = |node: u32| layout.descendants(node).len();
        let mut buckets =
            LeafBuckets { of_node: vec![NO_BUCKET; n], group_start: vec![0], dimension, ..LeafBuckets::default() };
        // Nodes in depth-first order, so buckets (and their chunks) follow the layout.
        let roots: Vec<u32> = (0..n)
            .map(|position| layout.ids[position / LANES][position % LANES])
            .filter(|&node| {
                let count = descendant_count(node);
                node != tree.root
                    && count > 0
                    && count <= bucket_size
                    && descendant_count(tree.parent[node as usize]) > bucket_size
            })
            .collect();
        // The buckets are ordered independently, in parallel, and packed in order.
        let ordered: Vec<Vec<u32>> = roots
            .par_iter()
            .map(|&node| {
                let mut members: Vec<u32> =
                    layout.descendants(node).map(|position| layout.ids[position / LANES][position % LANES]).collect();
                order_for_boxes(&mut members, &coordinates, dimension);
                members
            })
            .collect();
        let chunk_count: usize = ordered.iter().map(|members| members.len().div_ceil(LANES)).sum();
        let group_count: usize = ordered.iter().map(|members| members.len().div_ceil(LANES * LANES)).sum();
        buckets.ids.reserve_exact(chunk_count);
        buckets.len.reserve_exact(chunk_count);
        buckets.coordinates.reserve_exact(chunk_count * dimension * LANES);
        buckets.lower.reserve_exact(group_count * dimension * LANES);
        buckets.upper.reserve_exact(group_count * dimension * LANES);
        for (&node, members) in roots.iter().zip(&ordered) {
            buckets.of_node[node as usize] = (buckets.group_start.len() - 1) as u32;
            for group_members in members.chunks(LANES * LANES) {
                buckets.push_group(group_members, &coordinates);
            }
            buckets.group_start.push(buckets.group_first_chunk.len() as u32);
        }
        buckets
    }

    /// Bytes the buckets of a tree over `n` points in `dimension` coordinates hold:
    /// every point once more in chunks and the boxes of their groups, taking twice the
    /// chunks and groups the points would fill (a bucket's last chunk and group are
    /// partly empty, and small buckets are many), with the bucket of every node.
    pub fn memory_estimate(n: usize, dimension: usize) -> u64 {
        let chunks = 2 * n.div_ceil(LANES) as u64;
        let groups = 2 * n.div_ceil(LANES * LANES) as u64;
        let chunk_bytes = (4 * LANES + 1 + 8 * LANES * dimension) as u64;
        let group_bytes = (4 + 4 + 4 + 2 * 8 * LANES * dimension) as u64;
        4 * n as u64 + chunks * chunk_bytes + groups * group_bytes
    }

    /// Appends one group of up to `LANES * LANES` points, in chunks of [`LANES`].
    fn push_group<'a>(&mut self, members: &[u32], coordinates: &impl Fn(u32) -> &'a [f64]) {
        let dimension = self.dimension;
        let width = dimension * LANES;
        self.group_first_chunk.push(self.ids.len() as u32);
        self.group_points.push(members.len() as u32);
        let mut lower = vec![f64::INFINITY; dimension * LANES];
        let mut upper = vec![f64::NEG_INFINITY; dimension * LANES];
        let mut lanes = 0u32;
        for (group_lane, chunk_members) in members.chunks(LANES).enumerate() {
            lanes |= 1 << group_lane;
            let mut ids = [0u32; LANES];
            let start = self.coordinates.len();
            self.coordinates.resize(start + width, 0.0);
            for (lane, &member) in chunk_members.iter().enumerate() {
                ids[lane] = member;
                for (coordinate, &value) in coordinates(member).iter().enumerate() {
                    self.coordinates[start + coordinate * LANES + lane] = value;
                    let slot = coordinate * LANES + group_lane;
                    lower[slot] = lower[slot].min(value);
                    upper[slot] = upper[slot].max(value);
                }
            }
            self.ids.push(ids);
            self.len.push(chunk_members.len() as u8);
        }
        self.group_lanes.push(lanes);
        self.lower.extend_from_slice(&lower);
        self.upper.extend_from_slice(&upper);
    }

    /// Whether the tree has buckets.
    pub fn is_ready(&self) -> bool {
        !self.of_node.is_empty()
    }

    /// The bucket rooted at `node`, if any.
    #[inline(always)]
    pub fn bucket_of(&self, node: u32) -> Option<usize> {
        match self.of_node.get(node as usize) {
            Some(&bucket) if bucket != NO_BUCKET => Some(bucket as usize),
            _ => None,
        }
    }

    /// The groups of a bucket.
    #[inline(always)]
    pub fn groups(&self, bucket: usize) -> std::ops::Range<usize> {
        self.group_start[bucket] as usize..self.group_start[bucket + 1] as usize
    }

    /// The chunk in lane `lane` of `group`.
    #[inline(always)]
    pub fn group_chunk(&self, group: usize, lane: usize) -> usize {
        self.group_first_chunk[group] as usize + lane
    }

    /// The lanes of `group` that hold a chunk.
    #[inline(always)]
    pub fn group_lanes(&self, group: usize) -> u32 {
        self.group_lanes[group]
    }

    /// Points in `group`.
    #[inline(always)]
    pub fn group_points(&self, group: usize) -> u64 {
        u64::from(self.group_points[group])
    }

    /// Chunk `chunk`, whose payload is the coordinates.
    #[inline(always)]
    pub fn view(&self, chunk: usize) -> ChunkView<'_> {
        chunk_view(&self.ids, &self.len, &self.coordinates, self.dimension, chunk)
    }

    /// Squared lower bounds on the distance from `point` to every point of each chunk
    /// of `group` (lane = chunk), summed in coordinate order; empty lanes get infinity.
    #[inline(always)]
    pub fn group_bounds(&self, point: &[f64], group: usize) -> [f64; LANES] {
        let dimension = self.dimension;
        let values = dimension * LANES;
        let lower = &self.lower[group * values..(group + 1) * values];
        let upper = &self.upper[group * values..(group + 1) * values];
        box_squared_distances(point, lower, upper)
    }

    /// Checks that every bucket holds exactly its root's descendants, each once, that
    /// every chunk lies in its box, and that buckets are rooted only at nodes with at
    /// most `bucket_size` descendants. For tests.
    pub fn check<M: Metric>(&self, metric: &M, tree: &CoverTree, bucket_size: usize) -> Result<(), String> {
        if !self.is_ready() {
            return Ok(());
        }
        for node in 0..tree.len() as u32 {
            let Some(bucket) = self.bucket_of(node) else { continue };
            let mut expected: Vec<u32> = tree
                .layout
                .descendants(node)
                .map(|position| tree.layout.ids[position / LANES][position % LANES])
                .collect();
            if expected.len() > bucket_size {
                return Err(format!("bucket of node {node} holds {} > {bucket_size} points", expected.len()));
            }
            let mut held = Vec::new();
            for group in self.groups(bucket) {
                let values = self.dimension * LANES;
                for lane in 0..LANES {
                    if (self.group_lanes(group) >> lane) & 1 == 0 {
                        continue;
                    }
                    let view = self.view(self.group_chunk(group, lane));
                    for &member in &view.ids[..view.len] {
                        held.push(member);
                        let coordinates = metric.coordinates(metric.point(member as usize)).unwrap_or(&[]);
                        for (coordinate, &value) in coordinates.iter().enumerate() {
                            let slot = group * values + coordinate * LANES + lane;
                            if value < self.lower[slot] || value > self.upper[slot] {
                                return Err(format!("point {member} lies outside its chunk's box"));
                            }
                        }
                    }
                }
            }
            expected.sort_unstable();
            held.sort_unstable();
            if held != expected {
                return Err(format!("the bucket of node {node} does not hold exactly its descendants"));
            }
        }
        Ok(())
    }
}

/// Orders points so that every run of [`LANES`] is compact: split at a multiple of
/// [`LANES`] near the middle along the widest coordinate (ties to the lower
/// coordinate): the points before the split are the smallest by (value, index), and
/// recurse on both sides. Selection instead of a sort at every level: the sets of the
/// runs are the same, only the order inside a run is not sorted, which no box sees.
fn order_for_boxes<'a>(members: &mut [u32], coordinates: &(impl Fn(u32) -> &'a [f64] + Sync), dimension: usize) {
    if members.len() <= LANES {
        return;
    }
    // One pass over the rows for the extents of all coordinates.
    let mut lows = vec![f64::INFINITY; dimension];
    let mut highs = vec![f64::NEG_INFINITY; dimension];
    for &member in members.iter() {
        for ((low, high), &value) in lows.iter_mut().zip(&mut highs).zip(coordinates(member)) {
            *low = low.min(value);
            *high = high.max(value);
        }
    }
    let mut widest = (0, f64::NEG_INFINITY);
    for (coordinate, (low, high)) in lows.iter().zip(&highs).enumerate() {
        if high - low > widest.1 {
            widest = (coordinate, high - low);
        }
    }
    let coordinate = widest.0;
    let split = ((members.len() / 2).div_ceil(LANES) * LANES).min(members.len());
    if split < members.len() {
        members.select_nth_unstable_by(split, |&left, &right| {
            coordinates(left)[coordinate].total_cmp(&coordinates(right)[coordinate]).then(left.cmp(&right))
        });
    }
    let (low, high) = members.split_at_mut(split);
    if low.len() >= PARALLEL_HALF {
        rayon::join(|| order_for_boxes(low, coordinates, dimension), || order_for_boxes(high, coordinates, dimension));
    } else {
        order_for_boxes(low, coordinates, dimension);
        order_for_boxes(high, coordinates, dimension);
    }
}
