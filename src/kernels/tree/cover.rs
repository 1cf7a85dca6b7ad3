//! The compressed cover tree's storage, its digest and an invariant checker.
//!
//! Every point is one node (node id = point index) with a level, a parent and a subtree
//! radius R. The children of a node live in chunks of [`LANES`] that mirror, per lane,
//! the child's id, level (and `2^level`, `2^(level - 1)`), R, whether it has children,
//! and the metric payload, so a node's children are screened with vector instructions
//! and without chasing pointers. Chunks are allocated from one pool as children
//! arrive; R is written to both the node and its lane. Each lane also keeps its
//! subtree's *level profile*: R split by the levels of the descendants (see
//! [`Chunks::profile`]), which tells the sparse traversal how far the subtree can hold
//! a node that qualifies.

use super::bucket::LeafBuckets;
use super::metric::{ChunkView, LANES, Metric};

/// Buckets of a lane's level profile: one for each of the levels `l - 1 .. l - 3`
/// below the node's level l, and one for all the lower levels.
pub const PROFILE_BUCKETS: usize = 4;

/// The profile bucket of a descendant at `level` under a node at `node_level`.
#[inline]
pub fn profile_bucket(node_level: i32, level: i32) -> usize {
    debug_assert!(level < node_level);
    ((node_level - 1).abs_diff(level) as usize).min(PROFILE_BUCKETS - 1)
}

/// The level of an exact duplicate: minus infinity.
pub const DUPLICATE_LEVEL: i32 = i32::MIN;

/// The parent of the root.
pub const NO_PARENT: u32 = u32::MAX;

/// The root's level before anything is inserted: below every level a positive f64
/// distance can produce (2^-1074 is the smallest), so the first point at a positive
/// distance from the root raises it. With one point, or only duplicates of the root,
/// it stays there (see [`CoverTree::root_level`]).
pub const INITIAL_ROOT_LEVEL: i32 = -2000;

/// The smallest integer i with `distance <= 2^i`, for a positive finite distance.
pub fn ceil_log2(distance: f64) -> i32 {
    debug_assert!(distance > 0.0 && distance.is_finite());
    let bits = distance.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1u64 << 52) - 1);
    if exponent == 0 {
        // Subnormal: distance = mantissa * 2^-1074.
        (64 - (mantissa - 1).leading_zeros()) as i32 - 1074
    } else if mantissa == 0 {
        exponent - 1023
    } else {
        exponent - 1022
    }
}

/// `2^level` as an f64 (0 below the subnormal range, infinity above 2^1023).
#[inline]
pub fn power_of_two(level: i32) -> f64 {
    if level > 1023 {
        f64::INFINITY
    } else if level >= -1022 {
        f64::from_bits(((level + 1023) as u64) << 52)
    } else if level >= -1074 {
        f64::from_bits(1u64 << (level + 1074))
    } else {
        0.0
    }
}

/// Chunk `chunk` of parallel chunk arrays whose payload holds `payload_width * LANES`
/// values per chunk.
#[inline(always)]
pub(super) fn chunk_view<'a>(
    ids: &'a [[u32; LANES]],
    len: &[u8],
    payload: &'a [f64],
    payload_width: usize,
    chunk: usize,
) -> ChunkView<'a> {
    let width = payload_width * LANES;
    ChunkView { ids: &ids[chunk], len: len[chunk] as usize, payload: &payload[chunk * width..(chunk + 1) * width] }
}

/// The chunk pool: per chunk, per lane mirrors of the children's fields. Unused lanes
/// and duplicates have covers of minus infinity, so no threshold test passes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunks {
    pub ids: Vec<[u32; LANES]>,
    pub len: Vec<u8>,
    pub level: Vec<[i32; LANES]>,
    /// `2^level`: the child qualifies for a point within this distance.
    pub cover: Vec<[f64; LANES]>,
    /// `2^(level - 1)`: its descendants only qualify for points within this distance
    /// (plus R) of it.
    pub half_cover: Vec<[f64; LANES]>,
    pub radius: Vec<[f64; LANES]>,
    /// The level profile, `profile[chunk][b][lane]`: the largest computed distance from
    /// the child to a descendant in bucket b (see [`profile_bucket`]), minus infinity
    /// while the bucket is empty. Duplicates are left out (they never qualify). A
    /// descendant w at level j qualifies for a point p within `2^E` only when
    /// `d(p, w) <= min(2^j, 2^E)`, and then `d(p, child) <= profile[b] + min(2^j, 2^E)`,
    /// where `2^j <= 2^(l - 1 - b)` for the child's level l.
    pub profile: Vec<[[f64; LANES]; PROFILE_BUCKETS]>,
    /// Bit `lane` set when that child has children.
    pub has_children: Vec<u32>,
    /// `payload_width * LANES` values per chunk.
    pub payload: Vec<f64>,
    pub payload_width: usize,
    /// The chunks' summaries ([`Metric::summarize`]), `summary_width` values per chunk.
    pub summary: Vec<f64>,
    pub summary_width: usize,
}

impl Chunks {
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    #[inline(always)]
    pub fn view(&self, chunk: usize) -> ChunkView<'_> {
        chunk_view(&self.ids, &self.len, &self.payload, self.payload_width, chunk)
    }

    /// The summary of chunk `chunk` (`summary_width` values).
    #[inline(always)]
    pub fn summary(&self, chunk: usize) -> &[f64] {
        &self.summary[chunk * self.summary_width..(chunk + 1) * self.summary_width]
    }

    fn summary_mut(&mut self, chunk: usize) -> &mut [f64] {
        &mut self.summary[chunk * self.summary_width..(chunk + 1) * self.summary_width]
    }

    /// Asks the CPU to start loading what the sparse traversal's squared screen reads
    /// of `chunk` (its lanes' covers, radii, profile and payload, and its ids), so a
    /// chunk can be fetched while the one before it is screened. Only a hint: nothing
    /// is read, and no result depends on it.
    #[inline(always)]
    pub fn prefetch(&self, chunk: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let fetch = |pointer: *const f64| {
                // SAFETY: a prefetch reads nothing; every pointer is into a live slice.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(pointer.cast()) }
            };
            fetch(self.half_cover[chunk].as_ptr());
            fetch(self.cover[chunk].as_ptr());
            fetch(self.radius[chunk].as_ptr());
            for bucket in &self.profile[chunk] {
                fetch(bucket.as_ptr());
            }
            for row in self.view(chunk).payload.chunks(LANES) {
                fetch(row.as_ptr());
            }
            fetch(self.ids[chunk].as_ptr().cast());
            fetch(std::ptr::from_ref(&self.has_children[chunk]).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = chunk;
    }

    /// Bytes of one chunk of the pool with `payload_width` values per lane and a
    /// summary of `summary_width` values, with its entry in its parent's list of
    /// chunks.
    pub fn bytes_per_chunk(payload_width: usize, summary_width: usize) -> u64 {
        let per_lane = 4 + 4 + 8 + 8 + 8 + 8 * PROFILE_BUCKETS + 8 * payload_width;
        (LANES * per_lane + 8 * summary_width + 1 + 4 + 4) as u64
    }

    fn with_capacity(payload_width: usize, summary_width: usize, chunks: usize) -> Chunks {
        Chunks {
            ids: Vec::with_capacity(chunks),
            len: Vec::with_capacity(chunks),
            level: Vec::with_capacity(chunks),
            cover: Vec::with_capacity(chunks),
            half_cover: Vec::with_capacity(chunks),
            radius: Vec::with_capacity(chunks),
            profile: Vec::with_capacity(chunks),
            has_children: Vec::with_capacity(chunks),
            payload: Vec::with_capacity(chunks * payload_width * LANES),
            payload_width,
            summary: Vec::with_capacity(chunks * summary_width),
            summary_width,
        }
    }

    fn allocate(&mut self) -> u32 {
        let chunk = self.ids.len() as u32;
        self.ids.push([0; LANES]);
        self.len.push(0);
        self.level.push([DUPLICATE_LEVEL; LANES]);
        self.cover.push([f64::NEG_INFINITY; LANES]);
        self.half_cover.push([f64::NEG_INFINITY; LANES]);
        self.radius.push([0.0; LANES]);
        self.profile.push([[f64::NEG_INFINITY; LANES]; PROFILE_BUCKETS]);
        self.has_children.push(0);
        self.payload.resize(self.payload.len() + self.payload_width * LANES, 0.0);
        self.summary.resize(self.summary.len() + self.summary_width, 0.0);
        chunk
    }
}

/// Chunks the pool of a tree over `n` points reserves: about 0.29 chunks per point for
/// N(0, 1) data in 8 dimensions (9,527 for 32,768 points), 1/8 for a flat tree;
/// reserved, so the pool is not copied as it grows.
pub fn reserved_chunks(n: usize) -> usize {
    n * 5 / 16 + 1
}

/// Bytes a finished tree over `n` points with `payload_width` values per lane, chunk
/// summaries of `summary_width` values and `chunks` chunks in its pool holds, its leaf
/// buckets aside (see [`LeafBuckets::memory_estimate`]): per node its fields and its
/// list of chunks, the pool (at least its reservation, [`reserved_chunks`]), and the
/// depth-first layout, a second copy of every node's payload.
pub fn memory_estimate(n: usize, payload_width: usize, summary_width: usize, chunks: usize) -> u64 {
    let nodes = n as u64;
    // Level, parent, radius, the chunk list's header, the slot.
    let per_node = 4 + 4 + 8 + 24 + 8;
    let pool = chunks.max(reserved_chunks(n)) as u64 * Chunks::bytes_per_chunk(payload_width, summary_width);
    let layout_chunks = n.div_ceil(LANES) as u64;
    let layout = nodes * 8 + layout_chunks * (4 * LANES as u64 + 1 + 8 * (LANES * payload_width) as u64);
    nodes * per_node + pool + layout
}

/// A compressed cover tree over data points `0..n`.
#[derive(Clone, Debug, PartialEq)]
pub struct CoverTree {
    pub root: u32,
    pub level: Vec<i32>,
    pub parent: Vec<u32>,
    /// R(v): the largest computed distance from v to a descendant.
    pub radius: Vec<f64>,
    /// The chunks holding each node's children, in the order the chunks were opened;
    /// within a chunk, in insertion order. The root's children share chunks only with
    /// children of their [`Metric::chunk_group`].
    pub child_chunks: Vec<Vec<u32>>,
    /// The root's chunk still open for each group.
    root_group_chunks: std::collections::HashMap<u32, u32>,
    /// Where each non-root node sits in its parent's chunks.
    pub slot: Vec<(u32, u8)>,
    pub chunks: Chunks,
    /// Every subtree as one contiguous range (built by [`CoverTree::finish`]).
    pub layout: SubtreeLayout,
    /// The small subtrees packed for box screening (built by [`CoverTree::finish`]).
    pub buckets: LeafBuckets,
}

impl CoverTree {
    /// A tree holding only `root`, at `root_level`, over `n` points.
    pub fn new<M: Metric>(metric: &M, root: u32, root_level: i32) -> CoverTree {
        let n = metric.len();
        let mut level = vec![DUPLICATE_LEVEL; n];
        level[root as usize] = root_level;
        CoverTree {
            root,
            level,
            parent: vec![NO_PARENT; n],
            radius: vec![0.0; n],
            child_chunks: vec![Vec::new(); n],
            root_group_chunks: std::collections::HashMap::new(),
            slot: vec![(u32::MAX, 0); n],
            chunks: Chunks::with_capacity(metric.payload_width(), metric.summary_width(), reserved_chunks(n)),
            layout: SubtreeLayout::default(),
            buckets: LeafBuckets::default(),
        }
    }

    /// Lays the finished tree out in depth-first order (see [`SubtreeLayout`]) and
    /// packs its subtrees of at most `bucket_size` points into buckets (see
    /// [`LeafBuckets`]; 0: none). Neither is part of the digest: they only serve the
    /// queries.
    pub fn finish<M: Metric>(&mut self, metric: &M, bucket_size: usize) {
        self.layout = SubtreeLayout::new(metric, self);
        self.buckets = LeafBuckets::new(metric, self, bucket_size);
    }

    pub fn len(&self) -> usize {
        self.level.len()
    }

    pub fn is_empty(&self) -> bool {
        self.level.is_empty()
    }

    pub fn has_children(&self, node: usize) -> bool {
        !self.child_chunks[node].is_empty()
    }

    /// The children of `node`, in insertion order.
    pub fn children(&self, node: usize) -> impl Iterator<Item = u32> + '_ {
        self.child_chunks[node].iter().flat_map(move |&chunk| {
            let chunk = chunk as usize;
            self.chunks.ids[chunk][..self.chunks.len[chunk] as usize].iter().copied()
        })
    }

    /// Appends `child` (with its level already set) to `parent`'s children.
    pub fn add_child<M: Metric>(&mut self, metric: &M, parent: u32, child: u32) {
        let parent_index = parent as usize;
        let child_index = child as usize;
        if !self.has_children(parent_index) && parent != self.root {
            let (chunk, lane) = self.slot[parent_index];
            self.chunks.has_children[chunk as usize] |= 1 << lane;
        }
        let root_group = (parent == self.root).then(|| metric.chunk_group(child_index));
        let open = match root_group {
            Some(group) => self.root_group_chunks.get(&group).copied(),
            None => self.child_chunks[parent_index].last().copied(),
        };
        let chunk = match open {
            Some(chunk) if (self.chunks.len[chunk as usize] as usize) < LANES => chunk,
            _ => {
                let chunk = self.chunks.allocate();
                self.child_chunks[parent_index].push(chunk);
                if let Some(group) = root_group {
                    self.root_group_chunks.insert(group, chunk);
                }
                chunk
            }
        };
        let chunk_index = chunk as usize;
        let lane = self.chunks.len[chunk_index] as usize;
        self.chunks.len[chunk_index] += 1;
        self.chunks.ids[chunk_index][lane] = child;
        let level = self.level[child_index];
        self.chunks.level[chunk_index][lane] = level;
        if level != DUPLICATE_LEVEL {
            self.chunks.cover[chunk_index][lane] = power_of_two(level);
            self.chunks.half_cover[chunk_index][lane] = power_of_two(level - 1);
        }
        self.chunks.radius[chunk_index][lane] = self.radius[child_index];
        let width = self.chunks.payload_width * LANES;
        metric.write_payload(
            child_index,
            lane,
            &mut self.chunks.payload[chunk_index * width..(chunk_index + 1) * width],
        );
        if self.chunks.summary_width > 0 {
            metric.summarize(child_index, lane == 0, self.chunks.summary_mut(chunk_index));
        }
        self.parent[child_index] = parent;
        self.slot[child_index] = (chunk, lane as u8);
    }

    /// Raises R of `node` to at least `distance`, the distance to a new descendant at
    /// `level` (node and lane mirror), and the bucket of `level` in the lane's profile.
    /// The root has no lane, and so no profile (its level is raised between batches).
    #[inline]
    pub fn widen(&mut self, node: u32, distance: f64, level: i32) {
        let index = node as usize;
        let is_root = node == self.root;
        let (chunk, lane) = self.slot[index];
        let (chunk, lane) = (chunk as usize, lane as usize);
        if distance > self.radius[index] {
            self.radius[index] = distance;
            if !is_root {
                self.chunks.radius[chunk][lane] = distance;
            }
        }
        if !is_root && level != DUPLICATE_LEVEL {
            let bucket = &mut self.chunks.profile[chunk][profile_bucket(self.level[index], level)][lane];
            *bucket = bucket.max(distance);
        }
    }

    /// The level of the root as reported: its stored level, or 0 while that is still
    /// [`INITIAL_ROOT_LEVEL`] (no point lies at a positive distance from the root, so
    /// no level was ever asked of it; the stored value is an internal starting point,
    /// kept as is because the digest covers it).
    pub fn root_level(&self) -> i32 {
        match self.level[self.root as usize] {
            INITIAL_ROOT_LEVEL => 0,
            level => level,
        }
    }

    /// Depth of the deepest node (the root has depth 0).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self.root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            for child in self.children(node as usize) {
                stack.push((child, depth + 1));
            }
        }
        deepest
    }

    /// (level, node count) in increasing level order, the root at
    /// [`CoverTree::root_level`]; duplicates under [`DUPLICATE_LEVEL`].
    pub fn level_histogram(&self) -> Vec<(i32, usize)> {
        let mut histogram = std::collections::BTreeMap::new();
        for (node, &level) in self.level.iter().enumerate() {
            let level = if node == self.root as usize { self.root_level() } else { level };
            *histogram.entry(level).or_insert(0) += 1;
        }
        histogram.into_iter().collect()
    }

    /// A digest of the whole structure: root, and per point its level, parent, radius
    /// bits and children in increasing order (FNV-1a over 64-bit words, two independent
    /// streams). The order of the children in their chunks is storage, not structure
    /// (see [`Metric::chunk_group`]), and is left out.
    pub fn digest(&self) -> String {
        let mut first = Fnv(0xcbf2_9ce4_8422_2325);
        let mut second = Fnv(0x6c62_272e_07bb_0142);
        let mut feed = |value: u64| {
            first.write(value);
            second.write(value.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
        };
        feed(self.len() as u64);
        feed(u64::from(self.root));
        let mut children = Vec::new();
        for point in 0..self.len() {
            feed(self.level[point] as i64 as u64);
            feed(u64::from(self.parent[point]));
            feed(self.radius[point].to_bits());
            children.clear();
            children.extend(self.children(point));
            children.sort_unstable();
            for &child in &children {
                feed(u64::from(child));
            }
            feed(u64::MAX);
        }
        format!("{:016x}{:016x}", first.0, second.0)
    }

    /// Checks covering, separation, the subtree radii and the chunk mirrors over the
    /// inserted nodes (`inserted[i]`), with exact distances. Quadratic: for tests.
    pub fn check_invariants<M: Metric>(&self, metric: &M, inserted: &[bool]) -> Result<(), String> {
        let n = self.len();
        let nodes: Vec<usize> = (0..n).filter(|&node| inserted[node]).collect();
        for &node in &nodes {
            if node == self.root as usize {
                continue;
            }
            let parent = self.parent[node] as usize;
            if parent >= n || !inserted[parent] {
                return Err(format!("node {node} has no inserted parent"));
            }
            let distance = metric.distance(metric.point(parent), node);
            if self.level[node] == DUPLICATE_LEVEL {
                if distance != 0.0 || self.has_children(node) {
                    return Err(format!("duplicate {node} at distance {distance} from {parent} or with children"));
                }
            } else {
                if self.level[node] >= self.level[parent] {
                    return Err(format!(
                        "child {node} level {} >= parent level {}",
                        self.level[node], self.level[parent]
                    ));
                }
                if distance > power_of_two(self.level[node] + 1) {
                    return Err(format!("covering: d({parent}, {node}) = {distance} > 2^{}", self.level[node] + 1));
                }
            }
            let (chunk, lane) = self.slot[node];
            let (chunk, lane) = (chunk as usize, lane as usize);
            if self.chunks.ids[chunk][lane] != node as u32
                || self.chunks.level[chunk][lane] != self.level[node]
                || self.chunks.radius[chunk][lane].to_bits() != self.radius[node].to_bits()
                || ((self.chunks.has_children[chunk] >> lane) & 1 == 1) != self.has_children(node)
            {
                return Err(format!("chunk mirror of node {node} is stale"));
            }
        }
        for (position, &left) in nodes.iter().enumerate() {
            if self.level[left] == DUPLICATE_LEVEL {
                continue;
            }
            for &right in &nodes[position + 1..] {
                if self.level[right] == DUPLICATE_LEVEL {
                    continue;
                }
                let distance = metric.distance(metric.point(left), right);
                let level = self.level[left].min(self.level[right]);
                if distance <= power_of_two(level) {
                    return Err(format!("separation: d({left}, {right}) = {distance} <= 2^{level}"));
                }
            }
        }
        for &node in &nodes {
            let mut stack: Vec<u32> = self.children(node).collect();
            let mut descendants = Vec::new();
            // The profile's buckets must bound their descendants and stay within R.
            let mut profile = [f64::NEG_INFINITY; PROFILE_BUCKETS];
            let (chunk, lane) = self.slot[node];
            while let Some(descendant) = stack.pop() {
                let distance = metric.distance(metric.point(node), descendant as usize);
                if distance > self.radius[node] {
                    return Err(format!("radius: d({node}, {descendant}) = {distance} > R = {}", self.radius[node]));
                }
                let level = self.level[descendant as usize];
                if node != self.root as usize && level != DUPLICATE_LEVEL {
                    let bucket = profile_bucket(self.level[node], level);
                    profile[bucket] = profile[bucket].max(distance);
                    let kept = self.chunks.profile[chunk as usize][bucket][lane as usize];
                    if distance > kept {
                        return Err(format!(
                            "profile: d({node}, {descendant}) = {distance} > bucket {bucket} = {kept}"
                        ));
                    }
                }
                descendants.push(descendant);
                stack.extend(self.children(descendant as usize));
            }
            if node != self.root as usize {
                for (bucket, &largest) in profile.iter().enumerate() {
                    let kept = self.chunks.profile[chunk as usize][bucket][lane as usize];
                    if kept > self.radius[node] || (largest == f64::NEG_INFINITY) != (kept == f64::NEG_INFINITY) {
                        return Err(format!(
                            "profile: bucket {bucket} of node {node} is {kept}, its largest distance {largest}"
                        ));
                    }
                }
            }
            if self.layout.is_ready() {
                descendants.sort_unstable();
                let mut laid_out: Vec<u32> = self
                    .layout
                    .descendants(node as u32)
                    .map(|position| self.layout.ids[position / LANES][position % LANES])
                    .collect();
                laid_out.sort_unstable();
                if laid_out != descendants {
                    return Err(format!("layout: the range of node {node} is not its subtree"));
                }
            }
        }
        Ok(())
    }
}

/// The nodes in depth-first preorder (children in insertion order), packed into chunks
/// of [`LANES`] with the metric payload, so that the descendants of a node are the
/// contiguous positions `start[v] + 1 .. end[v]`. A query that cannot prune a subtree
/// screens that range in full chunks instead of walking it node by node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubtreeLayout {
    /// Position of every node in the order.
    pub start: Vec<u32>,
    /// One past the position of every node's last descendant.
    pub end: Vec<u32>,
    /// The order, in chunks.
    pub ids: Vec<[u32; LANES]>,
    pub len: Vec<u8>,
    /// `payload_width * LANES` values per chunk.
    pub payload: Vec<f64>,
    pub payload_width: usize,
}

impl SubtreeLayout {
    fn new<M: Metric>(metric: &M, tree: &CoverTree) -> SubtreeLayout {
        let n = tree.len();
        let width = metric.payload_width();
        let mut order = Vec::with_capacity(n);
        let mut start = vec![u32::MAX; n];
        let mut end = vec![u32::MAX; n];
        // Preorder with an explicit stack: (node, whether its children were pushed).
        let mut stack = vec![(tree.root, false)];
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                end[node as usize] = order.len() as u32;
                continue;
            }
            start[node as usize] = order.len() as u32;
            order.push(node);
            stack.push((node, true));
            // Pushed in order, then reversed, so the first child is popped first.
            let first = stack.len();
            stack.extend(tree.children(node as usize).map(|child| (child, false)));
            stack[first..].reverse();
        }
        let chunk_count = order.len().div_ceil(LANES);
        let mut ids = vec![[0u32; LANES]; chunk_count];
        let mut len = vec![0u8; chunk_count];
        let mut payload = vec![0.0; chunk_count * width * LANES];
        for (chunk, members) in order.chunks(LANES).enumerate() {
            len[chunk] = members.len() as u8;
            let chunk_payload = &mut payload[chunk * width * LANES..(chunk + 1) * width * LANES];
            for (lane, &node) in members.iter().enumerate() {
                ids[chunk][lane] = node;
                metric.write_payload(node as usize, lane, chunk_payload);
            }
        }
        SubtreeLayout { start, end, ids, len, payload, payload_width: width }
    }

    /// Whether the layout covers the tree (it is built once the tree is finished).
    pub fn is_ready(&self) -> bool {
        !self.ids.is_empty()
    }

    #[inline(always)]
    pub fn view(&self, chunk: usize) -> ChunkView<'_> {
        chunk_view(&self.ids, &self.len, &self.payload, self.payload_width, chunk)
    }

    /// The positions of the descendants of `node`.
    pub fn descendants(&self, node: u32) -> std::ops::Range<usize> {
        self.start[node as usize] as usize + 1..self.end[node as usize] as usize
    }
}

/// FNV-1a over 64-bit words (each fed as eight little-endian bytes).
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, value: u64) {
        for byte in value.to_le_bytes() {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
