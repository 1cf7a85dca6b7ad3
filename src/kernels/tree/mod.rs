//! The `tree` kernel: exact k-nearest neighbours with a parallel compressed cover tree
//! (PCCT), under the Euclidean or the residual-correlation metric, next to the two
//! references it must match: an f64 brute force and kiddo's k-d tree.
//!
//! One run generates the data (seeded, see [`data`]), and in set-up builds the metric
//! model (for the residual metric: V and the residual variances) and, with `verify`,
//! the brute-force reference answer. Every timed step then does the whole job of the
//! chosen `algorithm`:
//!
//! - `pcct`: the bound tables (residual metric) and the tree ([`build`]), then the
//!   queries ([`query`]); the phases are recorded as `build_s` and `query_s`;
//! - `brute`: the queries by brute force ([`brute`]), `query_s`;
//! - `kiddo`: kiddo's `ImmutableKdTree` and its queries ([`kiddo_path`], Euclidean only);
//! - `kiddo_insertions`: no answer; a yardstick for the build, the nearest-neighbour
//!   search of every point among the points of the batches before its own, by kiddo
//!   (the searches a build by insertion implies), `search_s`, with kiddo's per-batch
//!   trees apart in `build_s` (Euclidean only);
//! - `peak`: no data and no answer, the machine's measured f64 multiply-add rate on
//!   every thread ([`peak`]), `gflops_peak`: what `gflops_build` and `gflops_query` are
//!   a share of.
//!
//! After every step the answer is compared with the reference: `recall` (the share of
//! reference neighbours found, which must be exactly 1) and `kth_distance_error` (the
//! largest difference of k-th distances). The outputs `knn_indices`, `knn_distances`
//! and `tree_digest` let a spec compare workloads (dense and sparse traversal, thread
//! counts, the references).
//!
//! Module map: [`data`] (generation), [`metric`] (interface, shared kernels, Euclidean),
//! [`residual`] (residual metric and its bounds), [`cover`] (tree storage, digest,
//! invariants), [`build`] (batch build), [`bucket`] (leaf buckets for Euclidean
//! queries), [`query`] (best-first kNN), [`brute`],
//! [`kiddo_path`], [`peak`].

pub mod brute;
pub mod bucket;
pub mod build;
pub mod cover;
pub mod data;
pub mod kiddo_path;
pub mod metric;
pub mod peak;
pub mod query;
pub mod residual;

#[cfg(test)]
mod tests;

use anyhow::Context;

use crate::kernel::{
    Better, Deadline, Instance, Kernel, MetricSpec, Output, OutputData, ParamKind, ParamSpec, Params, Probe, Resources,
    RunContext, Value,
};
use build::{BuildOutcome, BuildParams, Traversal};
use data::Points;
use metric::{DistanceCounts, EuclideanMetric, EuclideanQuery, Isa, Metric};
use query::{Neighbours, QueryParams, QueryStats, SelfMatch};
use residual::{CovarianceFunction, ResidualBounds, ResidualMetric, ResidualModel, ResidualParams};

/// The kernel.
pub struct Tree;

/// Which metric the points live in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricChoice {
    Euclidean,
    Residual(ResidualParams),
}

/// What the timed step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Build the cover tree and query it.
    Pcct,
    /// Query by brute force.
    Brute,
    /// Build kiddo's k-d tree and query it (Euclidean only).
    Kiddo,
    /// kiddo's nearest-neighbour searches of a build by insertion (Euclidean only, no
    /// answer).
    KiddoInsertions,
    /// Measure the f64 multiply-add peak (no data, no answer).
    Peak,
}

impl Algorithm {
    /// The parameter value of the algorithms that run kiddo, `None` for the others.
    fn kiddo_name(self) -> Option<&'static str> {
        match self {
            Algorithm::Kiddo => Some("kiddo"),
            Algorithm::KiddoInsertions => Some("kiddo_insertions"),
            Algorithm::Pcct | Algorithm::Brute | Algorithm::Peak => None,
        }
    }
}

/// The typed parameters of a run, with defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeParams {
    pub points: usize,
    pub dimension: usize,
    pub queries: usize,
    pub k: usize,
    pub metric: MetricChoice,
    pub build: BuildParams,
    pub self_match: SelfMatch,
    pub algorithm: Algorithm,
    /// Compare every answer with the brute-force reference.
    pub verify: bool,
    pub seed: u64,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            points: 8192,
            dimension: 8,
            queries: 1024,
            k: 8,
            metric: MetricChoice::Euclidean,
            build: BuildParams::default(),
            self_match: SelfMatch::Include,
            algorithm: Algorithm::Pcct,
            verify: true,
            seed: 0,
        }
    }
}

/// The largest point count a run may ask for.
const MAX_POINTS: i64 = 1 << 24;

impl TreeParams {
    /// Converts validated parameters; the data seed is the run's seed (the experiment's,
    /// unless the workload sets its own).
    pub fn from_params(params: &Params, seed: u64) -> TreeParams {
        let metric = match params.text("metric") {
            "residual" => MetricChoice::Residual(ResidualParams {
                variance: params.float("variance"),
                lengthscale: params.float("lengthscale"),
                inducing_count: params.usize("inducing"),
                covariance: match params.text("covariance") {
                    "matern52" => CovarianceFunction::Matern52,
                    _ => CovarianceFunction::Rbf,
                },
            }),
            _ => MetricChoice::Euclidean,
        };
        TreeParams {
            points: params.usize("points"),
            dimension: params.usize("dimension"),
            queries: params.usize("queries"),
            k: params.usize("k"),
            metric,
            build: BuildParams {
                batch_size: params.usize("batch_size"),
                traversal: match params.text("traversal") {
                    "dense" => Traversal::Dense,
                    _ => Traversal::Sparse,
                },
                scope_cap: params.usize("scope_chunk_target"),
                seed,
                bucket_size: build::bucket_cap(params.usize("points"), params.usize("bucket_size")),
            },
            self_match: match params.text("self_match") {
                "exclude" => SelfMatch::Exclude,
                _ => SelfMatch::Include,
            },
            algorithm: match params.text("algorithm") {
                "brute" => Algorithm::Brute,
                "kiddo" => Algorithm::Kiddo,
                "kiddo_insertions" => Algorithm::KiddoInsertions,
                "peak" => Algorithm::Peak,
                _ => Algorithm::Pcct,
            },
            verify: params.bool("verify"),
            seed,
        }
    }

    /// Cross-parameter checks, with messages a spec author can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.dimension == 0 {
            return Err("dimension must be at least 1".into());
        }
        if self.points == 0 {
            return Err("points must be at least 1".into());
        }
        if self.k == 0 {
            return Err("k must be at least 1".into());
        }
        if self.self_match == SelfMatch::Exclude && self.metric == MetricChoice::Euclidean {
            return Err("self_match = \"exclude\" needs the residual metric: euclidean queries are fresh points, \
                        never data points, so there is no self to exclude"
                .into());
        }
        // Residual queries are data points, so excluding self leaves n - 1 candidates.
        let candidates = match (self.metric, self.self_match) {
            (MetricChoice::Residual(_), SelfMatch::Exclude) => self.points - 1,
            _ => self.points,
        };
        if self.k > candidates {
            return Err(format!(
                "k = {} exceeds the {candidates} candidate neighbours of {} points (self_match = {})",
                self.k,
                self.points,
                if self.self_match == SelfMatch::Exclude { "exclude" } else { "include" }
            ));
        }
        if let Some(name) = self.algorithm.kiddo_name() {
            if matches!(self.metric, MetricChoice::Residual(_)) {
                return Err(format!("algorithm `{name}` supports only the euclidean metric"));
            }
            if !kiddo_path::KIDDO_DIMENSIONS.contains(&self.dimension) {
                return Err(format!(
                    "algorithm `{name}` is compiled for dimensions {:?}, not {}",
                    kiddo_path::KIDDO_DIMENSIONS,
                    self.dimension
                ));
            }
        }
        Ok(())
    }

    /// Floating-point operations of the distances counted in `counts`: the residual
    /// metric's dot products, or 3d per squared Euclidean distance (every Euclidean
    /// exact distance is one, see [`metric::squared_euclidean_flops`]).
    pub fn distance_flops(&self, counts: &DistanceCounts) -> u64 {
        match self.metric {
            MetricChoice::Residual(_) => counts.dot_flops,
            MetricChoice::Euclidean => counts.exact * metric::squared_euclidean_flops(self.dimension),
        }
    }

    /// Inducing points actually used (capped at n).
    pub fn inducing_count(&self) -> usize {
        match self.metric {
            MetricChoice::Residual(residual) => residual.inducing_count.min(self.points),
            MetricChoice::Euclidean => 0,
        }
    }

    /// Peak memory of a run, estimated from the sizes of its arrays: what a run holds
    /// throughout (the data, the model, the answers), plus the largest of what the
    /// steps hold in turn (the model's solve, the bound tables' subspace iteration, the
    /// tree with its tables and a batch, kiddo's trees).
    pub fn memory_estimate(&self) -> u64 {
        if self.algorithm == Algorithm::Peak {
            return 0;
        }
        let n = self.points as u64;
        let dimension = self.dimension as u64;
        let queries = self.queries as u64;
        let k = self.k as u64;
        let mut bytes = n * dimension * 8;
        bytes += match self.metric {
            // The points, and a view of each.
            MetricChoice::Euclidean => queries * (dimension * 8 + 24),
            MetricChoice::Residual(_) => queries * 8,
        };
        // Answers: the reference and the current one, indices and distances, and the
        // current one's rows while it is flattened: k + 1 entries of 16 bytes a query,
        // and 160 bytes for the row's header and what the allocator keeps around it
        // (measured: 60,000 rows of 200 took about 100 bytes a row beyond the entries).
        bytes += 2 * queries * k * 12 + queries * (16 * (k + 1) + 160);
        let mut step: u64 = 0;
        let rank = self.inducing_count();
        if let MetricChoice::Residual(_) = self.metric {
            let stride = metric::padded_length(rank.max(1)) as u64;
            let rank = rank as u64;
            // V and four values per point; the inducing covariance and its Cholesky
            // factor while V is solved.
            bytes += n * stride * 8 + n * 4 * 8;
            step = step.max(2 * rank * rank * 8);
        }
        if self.algorithm == Algorithm::Pcct {
            let (width, summary_width, tables) = match self.metric {
                MetricChoice::Euclidean => (self.dimension, 0, 0),
                MetricChoice::Residual(_) => {
                    let (tables, transient) = residual::bounds_memory_estimate(self.points, rank);
                    step = step.max(transient);
                    let width = residual::bounded_payload_width(self.dimension, rank);
                    (width, residual::summary_width(self.dimension), tables)
                }
            };
            // The chunk pool holds its reservation, or more where the tree outgrows it:
            // N(0, 1) points in fewer than 8 dimensions make deeper trees, with up to
            // 0.43 chunks per point in one dimension (0.40 in two, 0.34 in four, 0.32 in
            // six, 0.28 in eight; the reservation is 0.31).
            let chunks = match self.metric {
                MetricChoice::Euclidean if self.dimension < 8 => self.points / 2,
                _ => cover::reserved_chunks(self.points),
            };
            let batch = self.build.batch_size.min(self.points.saturating_sub(1));
            let mut tree = tables + cover::memory_estimate(self.points, width, summary_width, chunks);
            tree += build::batch_memory_estimate(batch, width);
            if self.metric == MetricChoice::Euclidean && self.build.bucket_size > 0 {
                tree += bucket::LeafBuckets::memory_estimate(self.points, self.dimension);
            }
            step = step.max(tree);
        }
        if self.algorithm.kiddo_name().is_some() {
            // kiddo's copy of the points and its tree (one at a time).
            step = step.max(2 * n * (dimension * 8 + 4));
        }
        bytes + step
    }
}

/// How many points the residual model may have before its V alone passes this many
/// bytes: far beyond the experiments, it keeps typos from allocating the machine away.
const MAX_MEMORY_BYTES: u64 = 64 << 30;

impl Kernel for Tree {
    fn name(&self) -> &'static str {
        "tree"
    }

    fn summary(&self) -> &'static str {
        "exact kNN with a parallel compressed cover tree (Euclidean or residual correlation), vs brute force and kiddo"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let defaults = TreeParams::default();
        let residual = ResidualParams::default();
        vec![
            ParamSpec::new(
                "points",
                ParamKind::Int { min: 1, max: MAX_POINTS },
                Value::from(defaults.points),
                "n, the number of data points (i.i.d. N(0, 1) coordinates)",
            ),
            ParamSpec::new(
                "dimension",
                ParamKind::Int { min: 1, max: 1024 },
                Value::from(defaults.dimension),
                "d, coordinates per point",
            ),
            ParamSpec::new(
                "queries",
                ParamKind::Int { min: 1, max: 1 << 22 },
                Value::from(defaults.queries),
                "queries (euclidean: fresh points; residual: data points drawn with replacement)",
            ),
            ParamSpec::new("k", ParamKind::Int { min: 1, max: 4096 }, Value::from(defaults.k), "neighbours per query"),
            ParamSpec::new(
                "metric",
                ParamKind::Choice(&["euclidean", "residual"]),
                Value::from("euclidean"),
                "euclidean, or the residual correlation of a Gaussian process",
            ),
            ParamSpec::new(
                "variance",
                ParamKind::Float { min: 1e-12, max: 1e12 },
                Value::Float(residual.variance),
                "residual metric: kernel variance s2",
            ),
            ParamSpec::new(
                "lengthscale",
                ParamKind::Float { min: 1e-6, max: 1e6 },
                Value::Float(residual.lengthscale),
                "residual metric: kernel lengthscale l",
            ),
            ParamSpec::new(
                "inducing",
                ParamKind::Int { min: 1, max: 8192 },
                Value::from(residual.inducing_count),
                "residual metric: inducing points m (capped at n)",
            ),
            ParamSpec::new(
                "covariance",
                ParamKind::Choice(&["rbf", "matern52"]),
                Value::from("rbf"),
                "residual metric: covariance function",
            ),
            ParamSpec::new(
                "batch_size",
                ParamKind::Int { min: 1, max: build::MAX_BATCH_SIZE as i64 },
                Value::from(defaults.build.batch_size),
                "points inserted per batch; at most 4096, as a batch's conflict graph may join every pair of its points (4096: up to 8.4 million edges, about 100 MB, and as many distances)",
            ),
            ParamSpec::new(
                "traversal",
                ParamKind::Choice(&["dense", "sparse"]),
                Value::from("sparse"),
                "how a batch finds its scopes: screen every node, or descend with the subtree radii",
            ),
            ParamSpec::new(
                "scope_chunk_target",
                ParamKind::Int { min: 0, max: 1 << 30 },
                Value::Int(0),
                "most scope members kept per point (0 = all); never changes the tree",
            ),
            ParamSpec::new(
                "bucket_size",
                ParamKind::Int { min: 0, max: 1 << 20 },
                Value::from(defaults.build.bucket_size),
                "Euclidean queries: box-screened leaf buckets hold up to the larger of this and a quarter of the points (0 = none, and so is a value of at least the points less one: the root's subtree is never a bucket); never changes a result",
            ),
            ParamSpec::new(
                "self_match",
                ParamKind::Choice(&["include", "exclude"]),
                Value::from("include"),
                "whether a data-point query may list itself (exclude: residual metric only, whose queries are data points; euclidean queries are fresh points)",
            ),
            ParamSpec::new(
                "algorithm",
                ParamKind::Choice(&["pcct", "brute", "kiddo", "kiddo_insertions", "peak"]),
                Value::from("pcct"),
                "what the timed step runs: the cover tree, the f64 brute force, kiddo's k-d tree, kiddo's nearest-neighbour search of every point among the batches before its own (a yardstick for the build; no answer), or the f64 multiply-add peak (no data)",
            ),
            ParamSpec::new(
                "verify",
                ParamKind::Bool,
                Value::Bool(true),
                "compute the brute-force answer in set-up and check every answer against it",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("build_s", "s", Better::Lower, "building the tree (with the bound tables)"),
            MetricSpec::new("query_s", "s", Better::Lower, "answering all queries"),
            MetricSpec::new(
                "search_s",
                "s",
                Better::Lower,
                "algorithm kiddo_insertions: the searches, summed over the batches (build_s: kiddo's trees)",
            ),
            MetricSpec::new("qps", "1/s", Better::Higher, "queries per second"),
            MetricSpec::new("recall", "", Better::Higher, "share of the reference neighbours found (must be 1)"),
            MetricSpec::new("kth_distance_error", "", Better::Lower, "largest |k-th distance - reference|"),
            MetricSpec::new("distance_evals_build", "", Better::Lower, "exact distances in the build"),
            MetricSpec::new(
                "summary_screens_build",
                "",
                Better::Neither,
                "(point, chunk) pairs of the build screened by the chunk's summary (box in space, largest s and w): residual metric, sparse traversal; 0 in other builds",
            ),
            MetricSpec::new(
                "summary_rejected_build",
                "",
                Better::Higher,
                "share of summary_screens_build rejected whole, without a lane looked at",
            ),
            MetricSpec::new(
                "distance_evals_query",
                "",
                Better::Lower,
                "exact distances in the queries' screening, each (query, point) pair at most once (the seeds' are in the run event)",
            ),
            MetricSpec::new(
                "bound_evals_query",
                "",
                Better::Neither,
                "pairs screened with a cheap bound (residual: whole-row; Euclidean: bucket chunk boxes)",
            ),
            MetricSpec::new("prefix_pairs_query", "", Better::Neither, "pairs that needed a prefix dot product"),
            MetricSpec::new("pruning_rate", "", Better::Higher, "1 - exact query distances / (queries x n)"),
            MetricSpec::new(
                "gflops_query",
                "GFLOP/s",
                Better::Higher,
                "distance flops of the queries / query_s (residual: dot products; euclidean: 3d per squared distance)",
            ),
            MetricSpec::new(
                "gflops_build",
                "GFLOP/s",
                Better::Higher,
                "distance flops of the build, bound tables included / build_s (residual: dot products; euclidean: 3d per squared distance)",
            ),
            MetricSpec::new(
                "gflops_peak",
                "GFLOP/s",
                Better::Higher,
                "algorithm peak: f64 multiply-adds per second on every thread, in registers",
            ),
            MetricSpec::new("tree_depth", "", Better::Neither, "deepest node (root at 0)"),
            MetricSpec::new(
                "root_level",
                "",
                Better::Neither,
                "level of the root (0 when no point lies at a positive distance from it)",
            ),
            MetricSpec::new("radius_mean", "", Better::Neither, "mean subtree radius over nodes with children"),
            MetricSpec::new("radius_max", "", Better::Neither, "largest subtree radius"),
            MetricSpec::new("conflict_edges", "", Better::Neither, "conflict-graph edges over all batches"),
            MetricSpec::new("mis_iterations", "", Better::Neither, "Luby iterations over all batches"),
            MetricSpec::new("scope_size_mean", "", Better::Neither, "mean conflict-scope size"),
            MetricSpec::new("expansions_query", "", Better::Neither, "subtrees expanded by the queries"),
        ]
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["knn_indices", "knn_distances", "tree_digest"]
    }

    fn check(&self, params: &Params) -> Result<Resources, String> {
        let typed = TreeParams::from_params(params, 0);
        typed.validate()?;
        let memory_bytes = typed.memory_estimate();
        if memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "a run would need about {} GiB (limit {} GiB); reduce points, queries or inducing",
                memory_bytes >> 30,
                MAX_MEMORY_BYTES >> 30
            ));
        }
        Ok(Resources { memory_bytes, disk_bytes: 0 })
    }

    fn instantiate(&self, params: &Params, context: &RunContext) -> anyhow::Result<Box<dyn Instance>> {
        let typed = TreeParams::from_params(params, context.seed);
        typed.validate().map_err(anyhow::Error::msg)?;
        Ok(Box::new(TreeInstance {
            params: typed,
            threads: context.threads,
            data: None,
            reference: None,
            answer: None,
            digest: None,
        }))
    }
}

/// The generated data of a run: the metric space and the queries.
pub enum RunData {
    Euclidean { metric: EuclideanMetric, queries: Points },
    Residual { model: ResidualModel, queries: Vec<usize> },
}

struct TreeInstance {
    params: TreeParams,
    threads: usize,
    data: Option<RunData>,
    reference: Option<Neighbours>,
    answer: Option<Neighbours>,
    digest: Option<String>,
}

/// Generates the data of a run: points, queries and, for the residual metric, the
/// model (V and the residual variances).
pub fn generate(params: &TreeParams) -> anyhow::Result<RunData> {
    let points = data::standard_normal_points(params.points, params.dimension, data::points_seed(params.seed));
    match params.metric {
        MetricChoice::Euclidean => {
            let queries =
                data::standard_normal_points(params.queries, params.dimension, data::queries_seed(params.seed));
            Ok(RunData::Euclidean { metric: EuclideanMetric { points }, queries })
        }
        MetricChoice::Residual(residual) => {
            let inducing =
                data::distinct_sorted_indices(params.inducing_count(), params.points, data::inducing_seed(params.seed));
            let queries = data::uniform_indices(params.queries, params.points, data::queries_seed(params.seed));
            let model = ResidualModel::new(points, inducing, residual).context("building the residual model")?;
            Ok(RunData::Residual { model, queries })
        }
    }
}

impl Instance for TreeInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        if self.params.algorithm == Algorithm::Peak {
            return Ok(());
        }
        let data = generate(&self.params)?;
        let query_params = QueryParams { k: self.params.k, self_match: self.params.self_match };
        let answers = self.params.algorithm != Algorithm::KiddoInsertions;
        if answers && (self.params.verify || self.params.algorithm == Algorithm::Brute) {
            let reference = match &data {
                RunData::Euclidean { metric, queries } => {
                    brute::brute_knn(metric, &euclidean_queries(queries), &query_params).0
                }
                RunData::Residual { model, queries } => {
                    brute::residual_brute_knn(Isa::detect(), model, queries, &query_params).0
                }
            };
            self.reference = Some(reference);
        }
        if let RunData::Residual { model, .. } = &data {
            let clamped = model.residual_variance.iter().filter(|&&variance| variance <= 1e-9).count();
            if clamped > 0 {
                probe.warn(format!("{clamped} residual variances were clamped at 1e-9"));
            }
        }
        self.data = Some(data);
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        if self.params.algorithm == Algorithm::Peak {
            let start = probe.start();
            let work = peak::run(Isa::detect(), peak::STEPS);
            let seconds = start.elapsed().as_secs_f64().max(1e-12);
            probe.metric("gflops_peak", work.flops as f64 / seconds / 1e9);
            anyhow::ensure!(work.checksum.is_finite(), "the multiply-add chains diverged");
            return Ok(());
        }
        let data = self.data.as_ref().context("run before set-up")?;
        let deadline = probe.deadline();
        let query_params = QueryParams { k: self.params.k, self_match: self.params.self_match };
        let query_count = self.params.queries as f64;
        let answer = match (self.params.algorithm, data) {
            (Algorithm::Pcct, RunData::Euclidean { metric, queries }) => {
                let start = probe.start();
                let outcome = build_within(metric, &self.params.build, deadline)?;
                let build_time = probe.phase("build", start);
                let start = probe.start();
                let (answer, stats) = query::knn(metric, &outcome.tree, &euclidean_queries(queries), &query_params);
                let query_time = probe.phase("query", start);
                self.record_pcct(probe, &outcome, &stats, build_time, query_time);
                self.digest = Some(outcome.tree.digest());
                answer
            }
            (Algorithm::Pcct, RunData::Residual { model, queries }) => {
                let start = probe.start();
                let bounds = ResidualBounds::new(model, self.params.seed);
                let metric = ResidualMetric { model, bounds: Some(&bounds) };
                let mut outcome = build_within(&metric, &self.params.build, deadline)?;
                let build_time = probe.phase("build", start);
                // The bound tables are part of the build's time, and so of its flops.
                outcome.counts.dot_flops += bounds.dot_flops;
                let start = probe.start();
                let (answer, stats) = query::knn(&metric, &outcome.tree, queries, &query_params);
                let query_time = probe.phase("query", start);
                self.record_pcct(probe, &outcome, &stats, build_time, query_time);
                self.digest = Some(outcome.tree.digest());
                answer
            }
            (Algorithm::Brute, RunData::Euclidean { metric, queries }) => {
                let start = probe.start();
                let (answer, counts) = brute::brute_knn(metric, &euclidean_queries(queries), &query_params);
                let query_time = probe.phase("query", start);
                self.record_query(probe, &counts, query_time);
                answer
            }
            (Algorithm::Brute, RunData::Residual { model, queries }) => {
                let start = probe.start();
                let (answer, counts) = brute::residual_brute_knn(Isa::detect(), model, queries, &query_params);
                let query_time = probe.phase("query", start);
                self.record_query(probe, &counts, query_time);
                answer
            }
            (Algorithm::Kiddo, RunData::Euclidean { metric, queries }) => {
                let start = probe.start();
                let tree = kiddo_path::build(&metric.points).context("kiddo does not support this dimension")?;
                probe.phase("build", start);
                let start = probe.start();
                let rows = kiddo_path::query(&tree, queries, self.params.k);
                let query_time = probe.phase("query", start);
                probe.metric("qps", query_count / query_time.as_secs_f64().max(1e-12));
                kiddo_path::rescore(&metric.points, queries, &rows, self.params.k)
            }
            (Algorithm::KiddoInsertions, RunData::Euclidean { metric, .. }) => {
                // A yardstick: no answer to compare.
                let searches =
                    kiddo_path::insertion_searches(&metric.points, self.params.build.batch_size, &mut || {
                        deadline.passed()
                    })
                    .context("kiddo does not support this dimension")?
                    .map_err(|stopped| deadline.stopped(stopped, "insertion batches"))?;
                probe.metric("build_s", searches.build.as_secs_f64());
                probe.metric("search_s", searches.search.as_secs_f64());
                return Ok(());
            }
            (Algorithm::Kiddo | Algorithm::KiddoInsertions, RunData::Residual { .. }) => {
                anyhow::bail!("kiddo supports only the euclidean metric")
            }
            (Algorithm::Peak, _) => unreachable!("the peak is measured before the data is looked up"),
        };
        if let Some(reference) = &self.reference {
            let (recall, kth_error) = compare(&answer, reference);
            probe.metric("recall", recall);
            probe.metric("kth_distance_error", kth_error);
            if recall < 1.0 {
                probe.warn(format!("recall {recall} is below 1: the answer differs from the brute force"));
            }
        }
        self.answer = Some(answer);
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        if let Some(answer) = &self.answer {
            let shape = vec![answer.query_count(), answer.k];
            outputs.push(Output {
                name: "knn_indices".into(),
                shape: shape.clone(),
                data: OutputData::I64(answer.indices.iter().map(|&index| i64::from(index)).collect()),
            });
            outputs.push(Output {
                name: "knn_distances".into(),
                shape,
                data: OutputData::F64(answer.distances.clone()),
            });
        }
        if let Some(digest) = &self.digest {
            outputs.push(Output {
                name: "tree_digest".into(),
                shape: vec![1],
                data: OutputData::Digest(digest.clone()),
            });
        }
        outputs
    }
}

impl TreeInstance {
    /// The query metrics every algorithm with an answer records: throughput, exact
    /// distances, the pruning rate and the distances' GFLOP/s.
    fn record_query(&self, probe: &mut Probe, counts: &DistanceCounts, query_time: std::time::Duration) {
        let query_seconds = query_time.as_secs_f64().max(1e-12);
        let query_count = self.params.queries as f64;
        probe.metric("qps", query_count / query_seconds);
        probe.metric("distance_evals_query", counts.exact as f64);
        probe.metric("pruning_rate", 1.0 - counts.exact as f64 / (query_count * self.params.points as f64));
        probe.metric("gflops_query", self.params.distance_flops(counts) as f64 / query_seconds / 1e9);
    }

    /// Metrics and telemetry of a tree run: one `run` event and one `batch` event per
    /// batch, on every run, so that the report (which keeps the last timed sample's
    /// telemetry) holds the batches of the build it times, and the log holds them all.
    fn record_pcct(
        &self,
        probe: &mut Probe,
        outcome: &BuildOutcome,
        stats: &QueryStats,
        build_time: std::time::Duration,
        query_time: std::time::Duration,
    ) {
        let tree = &outcome.tree;
        let build_seconds = build_time.as_secs_f64().max(1e-12);
        let query_seconds = query_time.as_secs_f64().max(1e-12);
        let n = self.params.points as f64;
        let query_count = self.params.queries as f64;
        let parents: Vec<f64> =
            (0..tree.len()).filter(|&node| tree.has_children(node)).map(|node| tree.radius[node]).collect();
        let radius_mean = if parents.is_empty() { 0.0 } else { parents.iter().sum::<f64>() / parents.len() as f64 };
        let radius_max = parents.iter().copied().fold(0.0, f64::max);
        let edges: usize = outcome.batches.iter().map(|batch| batch.edges).sum();
        let mis_iterations: usize = outcome.batches.iter().map(|batch| batch.mis_iterations).sum();
        let scope_sum: usize = outcome.batches.iter().map(|batch| batch.scope_size_sum).sum();
        let depth = tree.depth();
        let root_level = tree.root_level();
        self.record_query(probe, &stats.counts, query_time);
        probe.metric("distance_evals_build", outcome.counts.exact as f64);
        let summary_screens = outcome.counts.summary_screened;
        probe.metric("summary_screens_build", summary_screens as f64);
        if summary_screens > 0 {
            probe.metric("summary_rejected_build", outcome.counts.summary_rejected as f64 / summary_screens as f64);
        }
        probe.metric("bound_evals_query", stats.counts.bounded as f64);
        probe.metric("prefix_pairs_query", stats.counts.prefix_pairs as f64);
        probe.metric("gflops_build", self.params.distance_flops(&outcome.counts) as f64 / build_seconds / 1e9);
        probe.metric("tree_depth", depth as f64);
        probe.metric("root_level", f64::from(root_level));
        probe.metric("radius_mean", radius_mean);
        probe.metric("radius_max", radius_max);
        probe.metric("conflict_edges", edges as f64);
        probe.metric("mis_iterations", mis_iterations as f64);
        probe.metric("scope_size_mean", scope_sum as f64 / (n - 1.0).max(1.0));
        probe.metric("expansions_query", stats.expansions as f64);
        let histogram = tree
            .level_histogram()
            .iter()
            .map(
                |(level, count)| {
                    if *level == cover::DUPLICATE_LEVEL { format!("dup:{count}") } else { format!("{level}:{count}") }
                },
            )
            .collect::<Vec<_>>()
            .join(",");
        let mut screened = Vec::new();
        for batch in &outcome.batches {
            build::add_by_level(&mut screened, &batch.screened_by_level);
        }
        let screened = screened.iter().map(|(level, count)| format!("{level}:{count}")).collect::<Vec<_>>().join(",");
        probe.event(
            "run",
            vec![
                ("build_s", Value::Float(build_seconds)),
                ("query_s", Value::Float(query_seconds)),
                ("qps", Value::Float(query_count / query_seconds)),
                ("distance_evals_build", Value::from(outcome.counts.exact)),
                ("distance_evals_query", Value::from(stats.counts.exact)),
                ("seed_evals_query", Value::from(stats.seeds)),
                ("tree_depth", Value::from(depth)),
                ("level_histogram", Value::Text(histogram)),
                ("distance_evals_build_by_level", Value::Text(screened)),
                ("root_level", Value::Int(i64::from(root_level))),
                ("radius_mean", Value::Float(radius_mean)),
                ("radius_max", Value::Float(radius_max)),
                ("threads", Value::from(self.threads)),
                ("traversal", Value::from(self.params.build.traversal.name())),
                ("isa", Value::from(Isa::detect().name())),
            ],
        );
        for batch in &outcome.batches {
            probe.event(
                "batch",
                vec![
                    ("batch_index", Value::from(batch.batch_index)),
                    ("candidates", Value::from(batch.candidates)),
                    ("selected", Value::from(batch.selected)),
                    ("dominated", Value::from(batch.dominated)),
                    ("rounds", Value::from(batch.rounds)),
                    ("edges", Value::from(batch.edges)),
                    ("mis_iterations", Value::from(batch.mis_iterations)),
                    ("traversal_ms", Value::Float(batch.traversal_ms)),
                    ("traversal_pairwise_ms", Value::Float(batch.traversal_pairwise_ms)),
                    ("traversal_semisort_ms", Value::Float(batch.traversal_semisort_ms)),
                    ("conflict_graph_ms", Value::Float(batch.conflict_graph_ms)),
                    ("mis_ms", Value::Float(batch.mis_ms)),
                    ("insert_ms", Value::Float(batch.insert_ms)),
                    ("traversal_scope_chunk_points", Value::from(batch.scope_chunk_points)),
                    ("traversal_scope_chunk_saturated", Value::from(batch.scope_chunk_saturated)),
                    ("traversal_scope_chunk_scans", Value::from(batch.scope_chunk_scans)),
                    ("scope_size_sum", Value::from(batch.scope_size_sum)),
                    ("scope_size_max", Value::from(batch.scope_size_max)),
                    ("distance_evals", Value::from(batch.counts.exact)),
                ],
            );
        }
    }
}

/// The tree's build, given up between two batches once the sample's deadline has
/// passed: a build whose cost grows with the square of the points (the residual
/// metric's flat tree) can run for hours at sizes the memory allows.
fn build_within<M: Metric>(metric: &M, params: &BuildParams, deadline: Deadline) -> anyhow::Result<BuildOutcome> {
    build::build_until(metric, params, || deadline.passed())
        .map_err(|stopped| deadline.stopped(stopped, "insertion batches"))
}

/// Euclidean queries over external points.
fn euclidean_queries(queries: &Points) -> Vec<EuclideanQuery<'_>> {
    (0..queries.len()).map(|index| EuclideanQuery { coordinates: queries.row(index), index: None }).collect()
}

/// Recall (share of reference (query, neighbour) pairs found) and the largest k-th
/// distance difference.
pub fn compare(answer: &Neighbours, reference: &Neighbours) -> (f64, f64) {
    let mut found = 0usize;
    let mut total = 0usize;
    let mut kth_error: f64 = 0.0;
    for query in 0..reference.query_count() {
        let expected = reference.row_indices(query);
        let got = answer.row_indices(query);
        total += expected.len();
        found += expected.iter().filter(|index| got.contains(index)).count();
        let k = reference.k;
        let difference = (answer.row_distances(query)[k - 1] - reference.row_distances(query)[k - 1]).abs();
        // A NaN difference must show (`f64::max` would drop it).
        if difference.is_nan() || difference > kth_error {
            kth_error = difference;
        }
    }
    (if total == 0 { 1.0 } else { found as f64 / total as f64 }, kth_error)
}
