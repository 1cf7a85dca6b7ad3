//! The fast path: the model of `model.rs`, restructured for the machine.
//!
//! - **Rows in parallel.** Rayon splits the image by rows; a row is rendered in chunks
//!   of [`LANES`] neighbouring pixels whose per-pixel quantities live in fixed-size
//!   arrays, so every step is a short loop over lanes that the compiler turns into SIMD
//!   code. Nothing is allocated per pixel.
//! - **Hoisted geometry.** The fast-axis terms `Fdet f` of every column and subpixel
//!   column are computed once per image, the slow-axis and depth terms once per row;
//!   the position sum keeps the reference's order, `((Fdet f + Sdet s) + Odet o) + pix0`,
//!   so positions, directions, `h`, `k`, `l`, omega and the structure factor lookups
//!   are bit-for-bit those of the scalar path.
//! - **Vectorizable functions.** The lattice transform uses the exact reduction and the
//!   Chebyshev form of `vector_math.rs` instead of two library sines of a large
//!   argument; the capture fraction uses its `exp`; the Kahn factor uses
//!   `cos(2 psi) = (E^2 - B^2)/(E^2 + B^2)` instead of `atan2` and `cos`; only the last
//!   layer's capture fraction is computed, since only it is used.
//! - **Batched tricubic gathers.** The 4x4x4 neighbourhood is read as 16 runs of 4
//!   contiguous values along `l`, reduced as 4-vectors along `k` and `h` and weighted
//!   along `l` last (see `interpolate.rs`).
//! - **Quotients from reciprocals.** Where a chunk divides several values by one
//!   denominator (the three components of a direction and omega's three steps by the
//!   distance, the scattering vector by the wavelength, the intensity by the step count,
//!   the capture fraction's two exponents by the parallax), the AVX2 and AVX-512 kernels
//!   divide once, for the reciprocal, and get each quotient from it with fused
//!   multiply-adds ([`vector_math::divide_by_reciprocal`]), which give the division's
//!   bits. The divider's throughput per value does not grow with the vector width, so on
//!   CPUs where it is the same for SSE2, AVX2 and AVX-512 the divisions held the wider
//!   kernels to about 1.25x the baseline one. The baseline x86-64 kernel, without FMA,
//!   divides.
//! - **Runtime dispatch.** The row kernel is compiled for AVX-512, AVX2 (both with FMA)
//!   and baseline x86-64 (and whatever the target offers elsewhere) and picked once per
//!   image. Fused multiply-adds are used only for the correctly rounded quotients above,
//!   so every variant gives identical bits.
//!
//! Differences from the scalar path are rounding-level: the polynomial sines, cosines
//! and exponentials, the weight form and summation order of the interpolation, and the
//! Kahn factor without re-normalizing the diffracted direction.
//!
//! **Deterministic interpolation fallback.** The serial model switches interpolation off
//! at the first out-of-range evaluation in pixel order. Here every row is rendered
//! interpolating unless a row above it is already known to have fallen back; a row
//! that meets an out-of-range evaluation re-renders that chunk with the scalar pixel
//! function, which switches at the exact evaluation, and continues without
//! interpolation. After the pass, the first row that fell back is the serial switch
//! point; rows below it that were rendered interpolating are rendered again without.
//! The image is therefore the serial one whatever the number of threads or the order
//! in which rows ran, and the warning names the serial first evaluation. Chunks whose
//! omega, polarization or capture fraction is exactly zero (where the reference keeps
//! recomputing them) are also handed to the scalar pixel function.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::geometry::Vec3;
use super::hkl::HklGrid;
use super::interpolate;
use super::model::{InterpolationFallback, RenderOutcome, RowStatistics, Simulation};
use super::scalar::{self, InterpolationState};
use super::vector_math;
use crate::kernel::Stopped;

/// Pixels rendered together: one AVX-512 register of f64, two AVX2 ones.
pub const LANES: usize = 8;

/// The instruction sets the row kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionSet {
    /// Whatever the compilation target guarantees (SSE2 on x86-64).
    Portable,
    Avx2,
    Avx512,
}

impl InstructionSet {
    pub const ALL: [InstructionSet; 3] = [InstructionSet::Portable, InstructionSet::Avx2, InstructionSet::Avx512];

    /// The widest instruction set this CPU supports.
    pub fn detect() -> InstructionSet {
        [InstructionSet::Avx512, InstructionSet::Avx2]
            .into_iter()
            .find(|set| set.is_supported())
            .unwrap_or(InstructionSet::Portable)
    }

    /// The fastest supported instruction set for `simulation`: the widest, except that
    /// interpolated images use AVX2 where available, because the per-lane tricubic
    /// gathers ran about 30% slower in the AVX-512 build than in the AVX2 one on the
    /// AMD EPYC this was measured on (the other configurations gain from AVX-512).
    pub fn detect_for(simulation: &Simulation) -> InstructionSet {
        if simulation.interpolate && InstructionSet::Avx2.is_supported() {
            InstructionSet::Avx2
        } else {
            InstructionSet::detect()
        }
    }

    pub fn is_supported(self) -> bool {
        match self {
            InstructionSet::Portable => true,
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InstructionSet::Portable => "portable",
            InstructionSet::Avx2 => "avx2",
            InstructionSet::Avx512 => "avx512",
        }
    }

    fn row_kernel(self) -> RowKernel {
        assert!(self.is_supported(), "the {} row kernel needs a CPU that supports it", self.name());
        match self {
            InstructionSet::Portable => render_row_portable,
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx2 => render_row_avx2,
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx512 => render_row_avx512,
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("checked by is_supported"),
        }
    }
}

type RowKernel = fn(&Plan<'_>, usize, &mut [f32], bool) -> RowResult;

/// Renders the whole image with the fastest supported instruction set.
pub fn render(simulation: &Simulation, image: &mut [f32]) -> RenderOutcome {
    render_with(simulation, image, InstructionSet::detect_for(simulation))
}

/// Renders the whole image with the given (supported) instruction set.
pub fn render_with(simulation: &Simulation, image: &mut [f32], instruction_set: InstructionSet) -> RenderOutcome {
    Stopped::never(render_rows(simulation, image, instruction_set, FallbackHint::Use, &|| false))
}

/// [`render_with`], given up once `stop` returns true: every row not yet started is
/// skipped (`stop` is asked before each), and [`Stopped`] counts the rows finished.
pub fn render_until(
    simulation: &Simulation,
    image: &mut [f32],
    instruction_set: InstructionSet,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RenderOutcome, Stopped> {
    render_rows(simulation, image, instruction_set, FallbackHint::Use, stop)
}

/// Whether rows below a fallback already found skip interpolation (the normal case), or
/// all interpolate and are corrected afterwards (tests the correction on every row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FallbackHint {
    Use,
    Ignore,
}

pub(crate) fn render_rows(
    simulation: &Simulation,
    image: &mut [f32],
    instruction_set: InstructionSet,
    hint: FallbackHint,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RenderOutcome, Stopped> {
    let kernel = instruction_set.row_kernel();
    let plan = Plan::new(simulation);
    let fast_pixels = simulation.detector.fast_pixels;
    let first_fallback_row = AtomicUsize::new(usize::MAX);
    let stopped = AtomicBool::new(false);

    let rows: Vec<Option<RowRecord>> = image
        .par_chunks_mut(fast_pixels)
        .enumerate()
        .map(|(slow_pixel, row)| {
            if stopped.load(Ordering::Relaxed) || stop() {
                stopped.store(true, Ordering::Relaxed);
                return None;
            }
            // Rows below a known fallback are rendered without interpolation right away;
            // the others optimistically interpolate and are corrected after the pass.
            let interpolating = simulation.interpolate
                && (hint == FallbackHint::Ignore || first_fallback_row.load(Ordering::Relaxed) > slow_pixel);
            let result = kernel(&plan, slow_pixel, row, interpolating);
            if result.fallback.is_some() {
                first_fallback_row.fetch_min(slow_pixel, Ordering::Relaxed);
            }
            Some(RowRecord { interpolating, fallback: result.fallback, statistics: result.statistics })
        })
        .collect();
    if stopped.into_inner() {
        return Err(Stopped { done: rows.iter().flatten().count(), total: rows.len() });
    }
    let mut rows: Vec<RowRecord> = rows.into_iter().flatten().collect();

    let fallback_row = rows.iter().position(|row| row.fallback.is_some());
    if let Some(fallback_row) = fallback_row {
        image
            .par_chunks_mut(fast_pixels)
            .zip(rows.par_iter_mut())
            .enumerate()
            .filter(|(slow_pixel, (_, record))| *slow_pixel > fallback_row && record.interpolating)
            .for_each(|(slow_pixel, (row, record))| {
                let result = kernel(&plan, slow_pixel, row, false);
                *record = RowRecord { interpolating: false, fallback: None, statistics: result.statistics };
            });
    }
    let statistics: Vec<RowStatistics> = rows.iter().map(|row| row.statistics).collect();
    Ok(RenderOutcome::from_rows(&statistics, fallback_row.and_then(|row| rows[row].fallback)))
}

struct RowRecord {
    interpolating: bool,
    fallback: Option<InterpolationFallback>,
    statistics: RowStatistics,
}

struct RowResult {
    fallback: Option<InterpolationFallback>,
    statistics: RowStatistics,
}

/// Per-image constants of the fast path.
struct Plan<'a> {
    simulation: &'a Simulation,
    /// Columns rounded up to a multiple of [`LANES`].
    padded_fast_pixels: usize,
    /// `Fdet * f` per component, indexed `sub_fast * padded_fast_pixels + fast_pixel`.
    column_terms: [Vec<f64>; 3],
    /// The incident E and B directions of the Kahn factor.
    electric_in: Vec3,
    magnetic_in: Vec3,
}

impl<'a> Plan<'a> {
    fn new(simulation: &'a Simulation) -> Plan<'a> {
        let detector = &simulation.detector;
        let oversample = simulation.oversample;
        let subpixel_size = simulation.subpixel_size();
        let padded_fast_pixels = detector.fast_pixels.div_ceil(LANES) * LANES;
        let mut column_terms = [const { Vec::new() }; 3];
        for terms in &mut column_terms {
            terms.reserve(oversample * padded_fast_pixels);
        }
        for sub_fast in 0..oversample {
            for fast_pixel in 0..padded_fast_pixels {
                let fast_position = subpixel_size * (fast_pixel * oversample + sub_fast) as f64 + subpixel_size / 2.0;
                column_terms[0].push(fast_position * detector.fast_axis.x);
                column_terms[1].push(fast_position * detector.fast_axis.y);
                column_terms[2].push(fast_position * detector.fast_axis.z);
            }
        }
        let (incident, _) = simulation.incident.unit();
        let (axis, _) = detector.polarization_axis.unit();
        let (magnetic_in, _) = axis.cross(incident).unit();
        let (electric_in, _) = incident.cross(magnetic_in).unit();
        Plan { simulation, padded_fast_pixels, column_terms, electric_in, magnetic_in }
    }

    #[inline(always)]
    fn columns(&self, sub_fast: usize, first_fast: usize) -> [&[f64; LANES]; 3] {
        let start = sub_fast * self.padded_fast_pixels + first_fast;
        self.column_terms.each_ref().map(|terms| terms[start..start + LANES].try_into().expect("padded columns"))
    }
}

#[cfg(target_arch = "x86_64")]
fn render_row_avx512(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn inner(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
        render_row::<FusedQuotients>(plan, slow_pixel, row, interpolate)
    }
    // SAFETY: this kernel is only selected after `is_x86_feature_detected!` found
    // AVX-512F, AVX2 and FMA (`InstructionSet::is_supported`).
    unsafe { inner(plan, slow_pixel, row, interpolate) }
}

#[cfg(target_arch = "x86_64")]
fn render_row_avx2(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
    #[target_feature(enable = "avx2,fma")]
    fn inner(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
        render_row::<FusedQuotients>(plan, slow_pixel, row, interpolate)
    }
    // SAFETY: this kernel is only selected after `is_x86_feature_detected!` found AVX2
    // and FMA (`InstructionSet::is_supported`).
    unsafe { inner(plan, slow_pixel, row, interpolate) }
}

fn render_row_portable(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
    render_row::<DividedQuotients>(plan, slow_pixel, row, interpolate)
}

/// How a row kernel computes `numerator / denominator`; both ways give the correctly
/// rounded quotient, so the kernels' images are the same bits.
trait Quotients {
    /// What [`Quotients::divide`] takes beside the denominator: its reciprocal, or 0
    /// where it is not used (and the compiler drops the division).
    fn reciprocal(denominator: f64) -> f64;

    fn divide(numerator: f64, denominator: f64, reciprocal: f64) -> f64;
}

/// The division instruction, for kernels without FMA.
struct DividedQuotients;

impl Quotients for DividedQuotients {
    #[inline(always)]
    fn reciprocal(_denominator: f64) -> f64 {
        0.0
    }

    #[inline(always)]
    fn divide(numerator: f64, denominator: f64, _reciprocal: f64) -> f64 {
        numerator / denominator
    }
}

/// One division per denominator, for its reciprocal, and fused multiply-adds per
/// quotient ([`vector_math::divide_by_reciprocal`]), for kernels compiled with FMA.
struct FusedQuotients;

impl Quotients for FusedQuotients {
    #[inline(always)]
    fn reciprocal(denominator: f64) -> f64 {
        1.0 / denominator
    }

    #[inline(always)]
    fn divide(numerator: f64, denominator: f64, reciprocal: f64) -> f64 {
        vector_math::divide_by_reciprocal(numerator, denominator, reciprocal)
    }
}

/// How `F_cell` is found for a chunk.
#[derive(Clone, Copy)]
enum StructureFactorMode<'a> {
    Constant(f64),
    Nearest(&'a HklGrid),
    Interpolate(&'a HklGrid),
}

#[inline(always)]
fn render_row<Q: Quotients>(plan: &Plan<'_>, slow_pixel: usize, row: &mut [f32], interpolate: bool) -> RowResult {
    let simulation = plan.simulation;
    let mut state = InterpolationState { on: interpolate, fallback: None };
    let mut first_fast = 0;
    while first_fast < row.len() {
        let valid = LANES.min(row.len() - first_fast);
        let mode = match &simulation.hkl {
            None => StructureFactorMode::Constant(simulation.default_f),
            Some(grid) if state.on => StructureFactorMode::Interpolate(grid),
            Some(grid) => StructureFactorMode::Nearest(grid),
        };
        let values = &mut row[first_fast..first_fast + valid];
        if !render_chunk::<Q>(plan, slow_pixel, first_fast, mode, values) {
            for (lane, value) in values.iter_mut().enumerate() {
                *value = scalar::pixel(simulation, first_fast + lane, slow_pixel, &mut state);
            }
        }
        first_fast += LANES;
    }
    RowResult { fallback: state.fallback, statistics: RowStatistics::of(row) }
}

/// Renders `values.len() <= LANES` pixels of a row starting at `first_fast`. Returns
/// false, leaving `values` unspecified, when the chunk needs the scalar pixel function:
/// an out-of-range interpolation, or an omega, polarization or capture fraction of zero.
#[inline(always)]
fn render_chunk<Q: Quotients>(
    plan: &Plan<'_>,
    slow_pixel: usize,
    first_fast: usize,
    mode: StructureFactorMode<'_>,
    values: &mut [f32],
) -> bool {
    let simulation = plan.simulation;
    let detector = &simulation.detector;
    let sensor = detector.sensor;
    let crystal = &simulation.crystal;
    let oversample = simulation.oversample;
    let subpixel_size = simulation.subpixel_size();
    let (slow_axis, normal_axis, pix0) = (detector.slow_axis, detector.normal_axis, detector.pix0);
    let incident = simulation.incident;
    let wavelength = simulation.wavelength;
    let wavelength_reciprocal = Q::reciprocal(wavelength);
    let pixel_size_squared = detector.pixel_size * detector.pixel_size;
    let close_distance = detector.close_distance;
    let kahn_factor = simulation.kahn_factor;
    let valid = values.len();
    let last_layer = sensor.layers - 1;

    let mut intensity = [0.0; LANES];
    let mut polar = [0.0; LANES];
    let mut omega = [0.0; LANES];
    let mut capture_fraction = [1.0; LANES];

    for layer in 0..sensor.layers {
        let depth = layer as f64 * sensor.layer_step;
        let depth_term = [depth * normal_axis.x, depth * normal_axis.y, depth * normal_axis.z];
        for sub_slow in 0..oversample {
            let slow_position = subpixel_size * (slow_pixel * oversample + sub_slow) as f64 + subpixel_size / 2.0;
            let slow_term = [slow_position * slow_axis.x, slow_position * slow_axis.y, slow_position * slow_axis.z];
            for sub_fast in 0..oversample {
                let first_subpixel = sub_slow == 0 && sub_fast == 0;
                let [column_x, column_y, column_z] = plan.columns(sub_fast, first_fast);

                let mut direction = [[0.0; LANES]; 3];
                let mut airpath = [0.0; LANES];
                let mut airpath_reciprocal = [0.0; LANES];
                for lane in 0..LANES {
                    let x = ((column_x[lane] + slow_term[0]) + depth_term[0]) + pix0.x;
                    let y = ((column_y[lane] + slow_term[1]) + depth_term[1]) + pix0.y;
                    let z = ((column_z[lane] + slow_term[2]) + depth_term[2]) + pix0.z;
                    let distance = (x * x + y * y + z * z).sqrt();
                    let reciprocal = Q::reciprocal(distance);
                    direction[0][lane] = Q::divide(x, distance, reciprocal);
                    direction[1][lane] = Q::divide(y, distance, reciprocal);
                    direction[2][lane] = Q::divide(z, distance, reciprocal);
                    airpath[lane] = distance;
                    airpath_reciprocal[lane] = reciprocal;
                }
                let [direction_x, direction_y, direction_z] = &direction;

                if layer == 0 && first_subpixel {
                    for lane in 0..LANES {
                        let (distance, reciprocal) = (airpath[lane], airpath_reciprocal[lane]);
                        let once = Q::divide(pixel_size_squared, distance, reciprocal);
                        let twice = Q::divide(once, distance, reciprocal);
                        omega[lane] = Q::divide(twice * close_distance, distance, reciprocal);
                    }
                    for lane in 0..LANES {
                        let (x, y, z) = (direction_x[lane], direction_y[lane], direction_z[lane]);
                        let cos_two_theta = incident.x * x + incident.y * y + incident.z * z;
                        let cos_two_theta_squared = cos_two_theta * cos_two_theta;
                        let sin_two_theta_squared = 1.0 - cos_two_theta_squared;
                        let electric = x * plan.electric_in.x + y * plan.electric_in.y + z * plan.electric_in.z;
                        let magnetic = x * plan.magnetic_in.x + y * plan.magnetic_in.y + z * plan.magnetic_in.z;
                        let norm = electric * electric + magnetic * magnetic;
                        let cos_two_psi = (electric * electric - magnetic * magnetic) / norm;
                        let cos_two_psi = if kahn_factor == 0.0 || norm == 0.0 { 1.0 } else { cos_two_psi };
                        polar[lane] =
                            0.5 * (1.0 + cos_two_theta_squared - kahn_factor * cos_two_psi * sin_two_theta_squared);
                    }
                }
                if sensor.thickness != 0.0 && layer == last_layer && first_subpixel {
                    let front = -(layer as f64) * sensor.layer_step * sensor.attenuation;
                    let back = -((layer + 1) as f64) * sensor.layer_step * sensor.attenuation;
                    for lane in 0..LANES {
                        let parallax = direction_x[lane] * normal_axis.x
                            + direction_y[lane] * normal_axis.y
                            + direction_z[lane] * normal_axis.z;
                        let reciprocal = Q::reciprocal(parallax);
                        capture_fraction[lane] = vector_math::exp(Q::divide(front, parallax, reciprocal))
                            - vector_math::exp(Q::divide(back, parallax, reciprocal));
                    }
                }

                let mut miller = [[0.0; LANES]; 3];
                for lane in 0..LANES {
                    let scattering_x = Q::divide(direction_x[lane] - incident.x, wavelength, wavelength_reciprocal);
                    let scattering_y = Q::divide(direction_y[lane] - incident.y, wavelength, wavelength_reciprocal);
                    let scattering_z = Q::divide(direction_z[lane] - incident.z, wavelength, wavelength_reciprocal);
                    for (indices, axis) in miller.iter_mut().zip([crystal.a, crystal.b, crystal.c]) {
                        indices[lane] = axis.x * scattering_x + axis.y * scattering_y + axis.z * scattering_z;
                    }
                }

                let mut lattice = [1.0; LANES];
                for (indices, cells) in miller.iter().zip(simulation.cells) {
                    if cells > 1 {
                        multiply_lattice_transform(indices, cells, &mut lattice);
                    }
                }

                let structure_factor = match mode {
                    StructureFactorMode::Constant(value) => [value; LANES],
                    StructureFactorMode::Nearest(grid) => nearest_structure_factors(grid, simulation, &miller, valid),
                    StructureFactorMode::Interpolate(grid) => {
                        let mut outside = false;
                        for lane in 0..LANES {
                            let inside = interpolate::in_range(grid, miller[0][lane], miller[1][lane], miller[2][lane]);
                            outside |= lane < valid && lattice[lane] != 0.0 && !inside;
                        }
                        if outside {
                            return false;
                        }
                        interpolated_structure_factors(grid, simulation, &miller, &lattice, valid)
                    }
                };
                for lane in 0..LANES {
                    let amplitude = structure_factor[lane];
                    intensity[lane] += amplitude * amplitude * lattice[lane] * lattice[lane];
                }
            }
        }
    }

    let mut needs_scalar = false;
    for lane in 0..valid {
        needs_scalar |= omega[lane] == 0.0 || polar[lane] == 0.0 || capture_fraction[lane] == 0.0;
    }
    if needs_scalar {
        return false;
    }
    let steps = simulation.steps();
    let steps_reciprocal = Q::reciprocal(steps);
    let mut pixel_values = [0.0f32; LANES];
    for lane in 0..LANES {
        let mut pixel_value = Q::divide(simulation.intensity_scale * intensity[lane], steps, steps_reciprocal);
        pixel_value *= capture_fraction[lane];
        pixel_value *= polar[lane];
        pixel_value *= omega[lane];
        pixel_values[lane] = pixel_value as f32;
    }
    values.copy_from_slice(&pixel_values[..valid]);
    true
}

/// `lattice[lane] *= |sincg(pi indices[lane], cells)|`, for `cells >= 2`.
#[inline(always)]
pub(super) fn multiply_lattice_transform(indices: &[f64; LANES], cells: u32, lattice: &mut [f64; LANES]) {
    let mut fraction = [0.0; LANES];
    for lane in 0..LANES {
        fraction[lane] = indices[lane] - vector_math::round_nearest(indices[lane]);
    }
    if cells <= vector_math::CHEBYSHEV_LIMIT {
        // U_{N-1}(cos(pi f)), with the recurrence running across all lanes at once.
        let mut two_cosine = [0.0; LANES];
        let mut previous = [1.0; LANES];
        let mut current = [0.0; LANES];
        for lane in 0..LANES {
            two_cosine[lane] = 2.0 * vector_math::cos_pi(fraction[lane]);
            current[lane] = two_cosine[lane];
        }
        for _ in 1..cells - 1 {
            for lane in 0..LANES {
                let next = two_cosine[lane] * current[lane] - previous[lane];
                previous[lane] = current[lane];
                current[lane] = next;
            }
        }
        for lane in 0..LANES {
            lattice[lane] *= current[lane].abs();
        }
    } else {
        for lane in 0..LANES {
            lattice[lane] *= vector_math::lattice_transform_by_sines(fraction[lane], cells);
        }
    }
}

/// Nearest-neighbour `F` for the first `valid` lanes: `grid[ceil(h - 0.5), ...]` inside
/// the grid, `default_F` outside.
#[inline(always)]
fn nearest_structure_factors(
    grid: &HklGrid,
    simulation: &Simulation,
    miller: &[[f64; LANES]; 3],
    valid: usize,
) -> [f64; LANES] {
    let mut nearest = [[0.0; LANES]; 3];
    for (rounded, indices) in nearest.iter_mut().zip(miller) {
        for lane in 0..LANES {
            rounded[lane] = vector_math::ceil(indices[lane] - 0.5);
        }
    }
    let mut structure_factor = [simulation.default_f; LANES];
    for lane in 0..valid {
        let [h, k, l] = [nearest[0][lane], nearest[1][lane], nearest[2][lane]];
        if h.abs() < 1e9 && k.abs() < 1e9 && l.abs() < 1e9 && grid.contains(h as i64, k as i64, l as i64) {
            structure_factor[lane] = grid.get(h as i32, k as i32, l as i32);
        }
    }
    structure_factor
}

/// Tricubic `F` for the first `valid` lanes, all [`interpolate::in_range`]; lanes whose
/// lattice factor is zero (which the model skips) keep `default_F`.
#[inline(always)]
fn interpolated_structure_factors(
    grid: &HklGrid,
    simulation: &Simulation,
    miller: &[[f64; LANES]; 3],
    lattice: &[f64; LANES],
    valid: usize,
) -> [f64; LANES] {
    let mut floors = [[0.0; LANES]; 3];
    let mut weights = [[[0.0; 4]; LANES]; 3];
    for axis in 0..3 {
        for lane in 0..LANES {
            let floor = vector_math::floor(miller[axis][lane]);
            floors[axis][lane] = floor;
            weights[axis][lane] = interpolate::lagrange_weights(miller[axis][lane] - floor);
        }
    }
    let k_stride = grid.l_range();
    let h_stride = grid.k_range() * k_stride;
    let mut structure_factor = [simulation.default_f; LANES];
    for lane in 0..valid {
        if lattice[lane] == 0.0 {
            continue;
        }
        let corner = grid.index(floors[0][lane] as i32 - 1, floors[1][lane] as i32 - 1, floors[2][lane] as i32 - 1);
        let lane_weights = [weights[0][lane], weights[1][lane], weights[2][lane]];
        structure_factor[lane] = interpolate::tricubic_weighted(&grid.values, corner, k_stride, h_stride, lane_weights);
    }
    structure_factor
}
