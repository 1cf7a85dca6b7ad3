//! Tests of the simulator kernel: geometry check values, lattice identities, the
//! interpolator, the documented image statistics, fast-versus-scalar parity, thread
//! independence, the single interpolation warning, HKL errors and the kernel API.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::crystal::{Cell, Crystal};
use super::fast::{self, InstructionSet};
use super::geometry::{Detector, DetectorConfig, Sensor, Vec3};
use super::hkl::{HklError, HklGrid};
use super::interpolate;
use super::model::{RenderOutcome, RowStatistics, Simulation};
use super::scalar;
use super::vector_math;
use super::*;
use crate::kernel::{Kernel, Params, Probe, RunContext, Value};

fn benchmark(pixels: usize) -> SimulatorParams {
    SimulatorParams { detector_pixels: pixels, ..SimulatorParams::default() }
}

fn tricubic(pixels: usize) -> SimulatorParams {
    SimulatorParams { detector_pixels: pixels, cells: [2; 3], hkl: HklSource::Synthetic, ..SimulatorParams::default() }
}

fn absorption(pixels: usize) -> SimulatorParams {
    SimulatorParams {
        detector_pixels: pixels,
        thickness_um: 450.0,
        attenuation_depth_um: Some(500.0),
        thicksteps: 5,
        ..SimulatorParams::default()
    }
}

/// A configuration that exercises what the benchmark ones do not: a triclinic cell with
/// a misset, unequal cell counts, oversampling, a Kahn factor and an off-center beam.
fn everything(pixels: usize) -> SimulatorParams {
    SimulatorParams {
        detector_pixels: pixels,
        pixel_mm: 0.4,
        distance_mm: 80.0,
        beam_center_mm: Some([10.0, 14.0]),
        wavelength_angstrom: 1.5,
        cell: Cell { a: 40.0, b: 52.0, c: 61.0, alpha: 81.0, beta: 97.0, gamma: 104.0 },
        cells: [3, 7, 20],
        oversample: 2,
        kahn_factor: 0.7,
        thickness_um: 300.0,
        thicksteps: 3,
        misset_degrees: [12.0, -31.0, 47.0],
        ..SimulatorParams::default()
    }
}

/// A small HKL grid, so interpolation runs out of range inside the image: with the
/// benchmark geometry at 160 pixels, k reaches about -1.3 in the bottom rows, and the
/// grid interpolates only down to k = -1.
fn small_grid() -> HklGrid {
    let mut reflections = Vec::new();
    for h in -4..=4 {
        for k in -3..=6 {
            for l in -5..=5 {
                reflections.push(([h, k, l], hkl::synthetic_amplitude(h, k, l)));
            }
        }
    }
    HklGrid::from_reflections(&reflections, 100.0).unwrap()
}

fn simulation_of(params: &SimulatorParams) -> Simulation {
    params.simulation(params.load_structure_factors().unwrap())
}

fn render_scalar(simulation: &Simulation) -> (Vec<f32>, RenderOutcome) {
    let mut image = vec![0.0; simulation.detector.pixels()];
    let outcome = scalar::render(simulation, &mut image);
    (image, outcome)
}

fn render_fast(simulation: &Simulation, threads: usize) -> (Vec<f32>, RenderOutcome) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut image = vec![0.0; simulation.detector.pixels()];
    let outcome = pool.install(|| fast::render(simulation, &mut image));
    (image, outcome)
}

/// The exact parity tier: correlation >= 0.99999, |sum ratio - 1| <= 1e-5 and
/// allclose(rtol 1e-5, atol 1e-6 * max).
fn assert_exact_tier(candidate: &[f32], reference: &[f32]) {
    assert_eq!(candidate.len(), reference.len());
    let count = reference.len() as f64;
    let (candidate, reference): (Vec<f64>, Vec<f64>) =
        candidate.iter().zip(reference).map(|(&a, &b)| (f64::from(a), f64::from(b))).unzip();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / count;
    let (mean_candidate, mean_reference) = (mean(&candidate), mean(&reference));
    let mut covariance = 0.0;
    let mut variance_candidate = 0.0;
    let mut variance_reference = 0.0;
    for (a, b) in candidate.iter().zip(&reference) {
        covariance += (a - mean_candidate) * (b - mean_reference);
        variance_candidate += (a - mean_candidate).powi(2);
        variance_reference += (b - mean_reference).powi(2);
    }
    let correlation = covariance / (variance_candidate * variance_reference).sqrt();
    assert!(correlation >= 0.99999, "correlation {correlation}");
    let sum_ratio = candidate.iter().sum::<f64>() / reference.iter().sum::<f64>();
    assert!((sum_ratio - 1.0).abs() <= 1e-5, "sum ratio {sum_ratio}");
    let maximum = reference.iter().copied().fold(0.0, f64::max);
    for (index, (a, b)) in candidate.iter().zip(&reference).enumerate() {
        assert!((a - b).abs() <= 1e-6 * maximum + 1e-5 * b.abs(), "pixel {index}: {a} vs {b}");
    }
}

fn assert_close(actual: f64, expected: f64, relative: f64) {
    assert!((actual - expected).abs() <= relative * expected.abs(), "{actual} vs {expected} (relative {relative})");
}

#[test]
fn pix0_check_value() {
    let detector = Detector::new(&DetectorConfig {
        pixels: 1024,
        pixel_size: 0.1e-3,
        distance: 100.0e-3,
        beam_center: Some((51.2e-3, 51.2e-3)),
        sensor: Sensor::new(0.0, 0, None),
    });
    let expected = Vec3::new(0.1, 0.05125, -0.05125);
    for (actual, expected) in
        [(detector.pix0.x, expected.x), (detector.pix0.y, expected.y), (detector.pix0.z, expected.z)]
    {
        assert!((actual - expected).abs() < 1e-15, "pix0 {:?}", detector.pix0);
    }
    assert!((detector.close_distance - 0.1).abs() < 1e-15);

    // The default beam center is half a pixel past the detector's middle.
    let centered = benchmark(1024).simulation(None).detector;
    assert!((centered.x_beam - 51.25e-3).abs() < 1e-15 && (centered.y_beam - 51.25e-3).abs() < 1e-15);

    // An off-center beam tells the axes apart: Xbeam = 10 mm runs along the slow axis
    // (Sbeam = 10.05 mm) and Ybeam = 14 mm along the fast one (Fbeam = 14.05 mm), so
    // pix0 = -Fbeam f - Sbeam s + L b = (0.1, 0.01005, -0.01405) m.
    let off_center =
        SimulatorParams { beam_center_mm: Some([10.0, 14.0]), ..benchmark(1024) }.simulation(None).detector;
    let expected = Vec3::new(0.1, 0.01005, -0.01405);
    for (actual, expected) in
        [(off_center.pix0.x, expected.x), (off_center.pix0.y, expected.y), (off_center.pix0.z, expected.z)]
    {
        assert!((actual - expected).abs() < 1e-15, "pix0 {:?}", off_center.pix0);
    }
}

#[test]
fn sensor_layers_follow_the_reference_rules() {
    let sensor = Sensor::new(450e-6, 5, Some(500e-6));
    assert_eq!(sensor.layers, 5);
    assert!((sensor.layer_step - 112.5e-6).abs() < 1e-18);
    assert!((sensor.attenuation - 2000.0).abs() < 1e-9);
    let automatic = Sensor::new(450e-6, 0, None);
    assert_eq!(automatic.layers, 2);
    assert!((automatic.layer_step - 225e-6).abs() < 1e-18);
    assert!((automatic.attenuation - 1.0 / 450e-6).abs() < 1e-9);
    let one_layer = Sensor::new(450e-6, 1, None);
    assert_eq!((one_layer.layers, one_layer.layer_step), (2, 450e-6));
    let two_layers = Sensor::new(450e-6, 2, None);
    assert_eq!((two_layers.layers, two_layers.layer_step), (2, 450e-6));
    let no_sensor = Sensor::new(0.0, 5, Some(500e-6));
    assert_eq!((no_sensor.layers, no_sensor.thickness), (1, 0.0));

    // The parameter's help states these rules.
    let help = Simulator.params().into_iter().find(|spec| spec.name == "thicksteps").unwrap().doc;
    for rule in ["n >= 2 layers thickness/(n-1) apart", "1 as 2", "0: two layers thickness/2 apart"] {
        assert!(help.contains(rule), "`{rule}` missing from: {help}");
    }
}

fn angle_degrees(first: Vec3, second: Vec3) -> f64 {
    (first.dot(second) / (first.magnitude() * second.magnitude())).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Real and reciprocal vectors are dual (`a . a* = 1`, `a . b* = 0`, ...) and the real
/// vectors have the input lengths; returns the simulated angles alpha, beta, gamma.
fn check_lattice_identities(cell: Cell, misset: [f64; 3]) -> [f64; 3] {
    let crystal = Crystal::new(&cell, misset);
    let real = [crystal.a_angstrom, crystal.b_angstrom, crystal.c_angstrom];
    let reciprocal = [crystal.a_star, crystal.b_star, crystal.c_star];
    for (i, real_vector) in real.iter().enumerate() {
        for (j, reciprocal_vector) in reciprocal.iter().enumerate() {
            let expected = if i == j { 1.0 } else { 0.0 };
            let product = real_vector.dot(*reciprocal_vector);
            assert!((product - expected).abs() < 1e-12, "{cell:?} {misset:?}: real {i} . reciprocal {j} = {product}");
        }
    }
    for (vector, length) in real.iter().zip([cell.a, cell.b, cell.c]) {
        assert_close(vector.magnitude(), length, 1e-12);
    }
    assert_close(real[0].dot(real[1].cross(real[2])), crystal.volume, 1e-12);
    // The pixel loop's vectors are the same in meters.
    assert!((crystal.a.magnitude() - cell.a * 1e-10).abs() < 1e-22);
    [angle_degrees(real[1], real[2]), angle_degrees(real[0], real[2]), angle_degrees(real[0], real[1])]
}

#[test]
fn reciprocal_vectors_satisfy_a_dot_a_star_identities() {
    let orthogonal = Cell { a: 100.0, b: 100.0, c: 100.0, alpha: 90.0, beta: 90.0, gamma: 90.0 };
    let crystal = Crystal::new(&orthogonal, [0.0; 3]);
    assert!((crystal.a_star.x - 0.01).abs() < 1e-15 && crystal.a_star.y.abs() < 1e-15);
    assert_close(crystal.volume, 1e6, 1e-12);
    // Cells with sin(gamma) = sin(gamma*) keep their angles and volume exactly.
    let exact_cells = [
        orthogonal,
        Cell { a: 61.0, b: 75.0, c: 82.0, alpha: 90.0, beta: 104.5, gamma: 90.0 },
        Cell { a: 80.0, b: 80.0, c: 120.0, alpha: 90.0, beta: 90.0, gamma: 120.0 },
    ];
    for cell in exact_cells {
        for misset in [[0.0; 3], [10.0, 20.0, 30.0]] {
            let angles = check_lattice_identities(cell, misset);
            for (angle, expected) in angles.into_iter().zip([cell.alpha, cell.beta, cell.gamma]) {
                assert!((angle - expected).abs() < 1e-9, "{cell:?}: {angles:?}");
            }
            assert_close(Crystal::new(&cell, misset).volume, cell.volume(), 1e-12);
        }
    }
    // A triclinic cell is simulated as the reference builds it: input lengths, angles
    // slightly off (see the crystal module).
    let triclinic = Cell { a: 70.0, b: 80.0, c: 90.0, alpha: 75.0, beta: 85.0, gamma: 95.0 };
    for misset in [[0.0; 3], [10.0, 20.0, 30.0]] {
        let angles = check_lattice_identities(triclinic, misset);
        for (angle, expected) in angles.into_iter().zip([75.03906, 85.01356, 95.00808]) {
            assert!((angle - expected).abs() < 1e-5, "{angles:?}");
        }
        assert_close(Crystal::new(&triclinic, misset).volume / triclinic.volume(), 1.000203116, 1e-9);
    }
}

/// Cells that are no parallelepiped are refused, naming the rule they break; a flat
/// cell whose volume rounds to a little above zero among them.
#[test]
fn cells_without_volume_are_refused_by_the_rule_they_break() {
    let cell = |alpha, beta, gamma| Cell { a: 100.0, b: 100.0, c: 100.0, alpha, beta, gamma };
    let refusals = [
        ((120.0, 120.0, 120.0), "the angles must sum to less than 360"),
        ((130.0, 130.0, 130.0), "the angles must sum to less than 360"),
        ((60.0, 60.0, 120.0), "each angle must be less than the sum of the other two"),
        ((30.0, 40.0, 100.0), "each angle must be less than the sum of the other two"),
        ((119.99999999999, 119.99999999999, 119.99999999999), "the cell is too flat to build reciprocal vectors from"),
    ];
    for ((alpha, beta, gamma), rule) in refusals {
        let error = cell(alpha, beta, gamma).validate().unwrap_err();
        assert_eq!(error, format!("cell angles {alpha} {beta} {gamma} describe no volume ({rule})"));
    }
    for (alpha, beta, gamma) in [(90.0, 90.0, 90.0), (119.0, 119.0, 119.0), (30.0, 40.0, 69.0)] {
        assert!(cell(alpha, beta, gamma).validate().is_ok(), "{alpha} {beta} {gamma}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: RngSeed::Fixed(20261206), ..ProptestConfig::default() })]

    #[test]
    fn lattice_identities_hold_for_random_cells(
        lengths in prop::array::uniform3(5.0f64..300.0),
        angles in prop::array::uniform3(60.0f64..120.0),
        misset in prop::array::uniform3(-180.0f64..180.0),
    ) {
        let cell = Cell { a: lengths[0], b: lengths[1], c: lengths[2], alpha: angles[0], beta: angles[1], gamma: angles[2] };
        prop_assume!(cell.volume() > 0.1 * lengths.iter().product::<f64>());
        check_lattice_identities(cell, misset);
        // A misset only rotates: the simulated cell does not depend on it.
        let unrotated = Crystal::new(&cell, [0.0; 3]);
        let rotated = Crystal::new(&cell, misset);
        prop_assert!((rotated.volume - unrotated.volume).abs() <= 1e-10 * unrotated.volume);
    }

    #[test]
    fn tricubic_reproduces_cubic_polynomials(
        coefficients in prop::collection::vec(-2.0f64..2.0, 64),
        point in prop::array::uniform3(-3.0f64..3.0),
    ) {
        let polynomial = |h: f64, k: f64, l: f64| {
            let mut value = 0.0;
            for i in 0..4 {
                for j in 0..4 {
                    for m in 0..4 {
                        value += coefficients[i * 16 + j * 4 + m] * h.powi(i as i32) * k.powi(j as i32) * l.powi(m as i32);
                    }
                }
            }
            value
        };
        let mut reflections = Vec::new();
        for h in -6..=6 {
            for k in -6..=6 {
                for l in -6..=6 {
                    reflections.push(([h, k, l], polynomial(f64::from(h), f64::from(k), f64::from(l))));
                }
            }
        }
        let grid = HklGrid::from_reflections(&reflections, 0.0).unwrap();
        let [h, k, l] = point;
        prop_assert!(interpolate::in_range(&grid, h, k, l));
        let expected = polynomial(h, k, l);
        let scale = 1.0 + grid.values.iter().fold(0.0f64, |largest, value| largest.max(value.abs()));
        let reference = interpolate::tricubic_reference(&grid, h, k, l);
        prop_assert!((reference - expected).abs() <= 1e-11 * scale, "reference {} vs {}", reference, expected);
        let floors = [h.floor(), k.floor(), l.floor()];
        let corner = grid.index(floors[0] as i32 - 1, floors[1] as i32 - 1, floors[2] as i32 - 1);
        let weights = [h, k, l].map(|x| interpolate::lagrange_weights(x - x.floor()));
        let weighted = interpolate::tricubic_weighted(
            &grid.values, corner, grid.l_range(), grid.k_range() * grid.l_range(), weights);
        prop_assert!((weighted - expected).abs() <= 1e-11 * scale, "weighted {} vs {}", weighted, expected);
    }

    #[test]
    fn lattice_transform_matches_the_sine_ratio(h in -60.0f64..60.0, cells in 2u32..40) {
        // Reference: both sines of the reduced argument, in the library's precision.
        let sine_ratio = |h: f64| {
            let fraction = h - h.round();
            if fraction == 0.0 {
                f64::from(cells)
            } else {
                ((f64::from(cells) * std::f64::consts::PI * fraction).sin() / (std::f64::consts::PI * fraction).sin())
                    .abs()
            }
        };
        let expected = sine_ratio(h);
        let actual = vector_math::lattice_transform(h, cells);
        prop_assert!((actual - expected).abs() <= 1e-12 * f64::from(cells), "{} vs {}", actual, expected);
        // And the unreduced form of the model agrees to the precision of its argument.
        let model = model::sincg(std::f64::consts::PI * h, f64::from(cells)).abs();
        prop_assert!((actual - model).abs() <= 1e-9 * f64::from(cells), "{} vs {}", actual, model);
        // The fast path's form, lane by lane (one lane on an integer h), into a product.
        let indices: [f64; fast::LANES] =
            std::array::from_fn(|lane| if lane == 1 { h.round() } else { h + 0.37 * lane as f64 });
        let mut lattice = [2.0; fast::LANES];
        fast::multiply_lattice_transform(&indices, cells, &mut lattice);
        for (lane, (&index, &value)) in indices.iter().zip(&lattice).enumerate() {
            let expected = 2.0 * sine_ratio(index);
            prop_assert!((value - expected).abs() <= 2e-12 * f64::from(cells), "lane {}: {} vs {}", lane, value, expected);
        }
    }

    #[test]
    fn vector_functions_match_the_library(x in -0.5f64..0.5, y in -700.0f64..700.0) {
        let pi_x = std::f64::consts::PI * x;
        prop_assert!((vector_math::cos_pi(x) - pi_x.cos()).abs() <= 4e-16);
        prop_assert!((vector_math::sin_pi(x) - pi_x.sin()).abs() <= 4e-16);
        prop_assert!((vector_math::exp(y) - y.exp()).abs() <= 1e-15 * y.exp());
        for value in [x * 1e6, y, y + 0.5, -y - 0.5] {
            prop_assert_eq!(vector_math::floor(value), value.floor());
            prop_assert_eq!(vector_math::ceil(value), value.ceil());
        }
    }
}

/// Interpolation is refused exactly where the documentation says: below `min + 2` or
/// above `max - 2` on any axis. The image tests only reach the lower end of k, so each
/// end of each axis is checked here, on the small grid (h -4..4, k -3..6, l -5..5).
#[test]
fn interpolation_range_ends_two_indices_inside_every_edge_of_the_grid() {
    let grid = small_grid();
    let inside = [0.0, 1.0, 0.0];
    let ends = [(grid.h_min, grid.h_max), (grid.k_min, grid.k_max), (grid.l_min, grid.l_max)];
    for (axis, (minimum, maximum)) in ends.into_iter().enumerate() {
        let (lowest, highest) = (f64::from(minimum + 2), f64::from(maximum - 2));
        for (index, expected) in [(lowest, true), (lowest - 1e-9, false), (highest, true), (highest + 1e-9, false)] {
            let mut point = inside;
            point[axis] = index;
            let [h, k, l] = point;
            assert_eq!(interpolate::in_range(&grid, h, k, l), expected, "axis {axis} at {index}");
        }
    }
}

/// The quotient from a reciprocal has the division's bits: over random significands and
/// exponents from `2^-500` to `2^500`, over denominators whose significands are all or
/// nearly all ones (where a product with the reciprocal is furthest from the quotient),
/// over numerators within a few ulps of multiples of the denominator (quotients at or
/// next to integers, where rounding ties sit), and for zeros of either sign.
#[test]
fn quotients_from_reciprocals_have_the_divisions_bits() {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(20261207);
    let random_normal = |rng: &mut ChaCha8Rng| {
        let exponent: i32 = rng.random_range(-500..=500);
        let significand = f64::from_bits(rng.random::<u64>() >> 12 | 1.0f64.to_bits());
        let sign = if rng.random::<bool>() { -1.0 } else { 1.0 };
        sign * significand * 2f64.powi(exponent)
    };
    let mut cases = vec![(0.0, 3.0), (-0.0, 3.0), (0.0, -3.0), (-0.0, -3.0), (1.0, 3.0), (-7.0, 0.1), (1.0, 1.0)];
    for _ in 0..100_000 {
        cases.push((random_normal(&mut rng), random_normal(&mut rng)));
        let ones = f64::from_bits(((1u64 << 52) - 1 - rng.random_range(0..256)) | 1.0f64.to_bits());
        cases.push((random_normal(&mut rng), ones));
        let denominator = random_normal(&mut rng);
        let multiple = denominator * f64::from(rng.random_range(1..1000u32));
        cases.push((
            f64::from_bits(multiple.to_bits().wrapping_add(rng.random_range(0..5)).wrapping_sub(2)),
            denominator,
        ));
    }
    for (numerator, denominator) in cases {
        let quotient = vector_math::divide_by_reciprocal(numerator, denominator, 1.0 / denominator);
        let expected = numerator / denominator;
        assert_eq!(
            quotient.to_bits(),
            expected.to_bits(),
            "{numerator:e} / {denominator:e}: {quotient:e} against {expected:e}"
        );
    }
}

#[test]
fn vector_exp_handles_the_ends_of_its_range() {
    assert_eq!(vector_math::exp(0.0), 1.0);
    assert_eq!(vector_math::exp(-1000.0), 0.0);
    assert_eq!(vector_math::exp(1000.0), f64::INFINITY);
    assert_close(vector_math::exp(-708.0), (-708.0f64).exp(), 1e-15);
}

#[test]
fn benchmark_config_matches_the_documented_statistics() {
    let simulation = simulation_of(&benchmark(512));
    assert_eq!(simulation.oversample, 1);
    assert!(!simulation.interpolate);
    let (image, outcome) = render_fast(&simulation, 2);
    assert_close(outcome.max, 154.652466, 3e-9);
    assert_close(outcome.sum, 2.486487e5, 2e-7);
    let (scalar_image, scalar_outcome) = render_scalar(&simulation);
    assert_close(scalar_outcome.max, 154.652466, 3e-9);
    assert_close(scalar_outcome.sum, 2.486487e5, 2e-7);
    assert_exact_tier(&image, &scalar_image);
}

/// The synthetic grid is the documented function over [-20, 20]^3, within its stated
/// bound, and the tricubic configuration's brightest pixel is the C reference's
/// 1.5485082 (the figure the vectorization experiment checks from 256^2 up), which a
/// wrong amplitude, node or weight moves.
#[test]
fn synthetic_grid_and_tricubic_maximum_match_their_documented_values() {
    let grid = HklGrid::synthetic();
    assert_eq!((grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max), (-20, 20, -20, 20, -20, 20));
    for [h, k, l] in [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, -5, 7], [-20, 20, -1], [11, 2, -9]] {
        let [x, y, z] = [h, k, l].map(f64::from);
        let documented =
            10.0 + 100.0 * (-(x * x + y * y + z * z) / 200.0).exp() * (1.0 + 0.5 * (0.7 * x + 1.3 * y + 2.1 * z).sin());
        assert_close(grid.get(h, k, l), documented, 1e-14);
    }
    assert!(grid.largest_amplitude() <= hkl::SYNTHETIC_AMPLITUDE_BOUND);
    let (_, outcome) = render_fast(&simulation_of(&tricubic(256)), 2);
    assert_close(outcome.max, 1.5485082, 2e-7);
    assert_eq!(outcome.fallback, None);
}

#[test]
fn absorption_config_matches_the_documented_maximum() {
    let (_, outcome) = render_fast(&simulation_of(&absorption(256)), 2);
    assert_close(outcome.max, 63.3464, 1e-6);
}

/// The documented MOSFLM detector with the default beam center, in meters, for tests
/// that evaluate the model without the kernel's geometry code.
struct DocumentedDetector {
    pixels: usize,
    pixel: f64,
    distance: f64,
    subpixels: usize,
}

impl DocumentedDetector {
    /// The lab position of a pixel's first subpixel, `depth` below the detector's
    /// surface. Xbeam = Ybeam = (N pixel + pixel) / 2 and Fbeam = Sbeam = that plus half
    /// a pixel, so pix0 = -Fbeam f - Sbeam s + L b with f = (0, 0, 1), s = (0, -1, 0) and
    /// b = (1, 0, 0); the subpixel's center is `delta/2` past the pixel's corner.
    fn first_subpixel(&self, fast: usize, slow: usize, depth: f64) -> [f64; 3] {
        let beam = (self.pixels as f64 * self.pixel + self.pixel) / 2.0 + self.pixel / 2.0;
        let sub = self.pixel / self.subpixels as f64;
        let fast_position = sub * (fast * self.subpixels) as f64 + sub / 2.0;
        let slow_position = sub * (slow * self.subpixels) as f64 + sub / 2.0;
        [self.distance + depth, beam - slow_position, -beam + fast_position]
    }

    /// The solid angle of a pixel seen along `length`: pixel^2 / R^2 * close_distance / R.
    fn omega(&self, length: f64) -> f64 {
        self.pixel * self.pixel / (length * length) * self.distance / length
    }
}

/// The unit vector along `vector` and its length.
fn direction_and_length(vector: [f64; 3]) -> ([f64; 3], f64) {
    let length = (vector[0] * vector[0] + vector[1] * vector[1] + vector[2] * vector[2]).sqrt();
    (vector.map(|value| value / length), length)
}

/// Both paths render `simulation` as `expected`, pixel by pixel, to a relative 1e-6.
fn assert_both_paths_render(simulation: &Simulation, expected: &[f64]) {
    let (scalar_image, _) = render_scalar(simulation);
    let (fast_image, _) = render_fast(simulation, 2);
    for (path, image) in [("scalar", &scalar_image), ("fast", &fast_image)] {
        assert_eq!(image.len(), expected.len(), "{path}");
        for (index, (&value, &expected)) in image.iter().zip(expected).enumerate() {
            let value = f64::from(value);
            assert!((value - expected).abs() <= 1e-6 * expected, "{path}: pixel {index} is {value}, not {expected}");
        }
    }
}

/// With one unit cell per axis and no structure factors every subpixel's intensity is
/// `default_F^2`, so a pixel is `r_e^2 fluence * layers * F^2 * capfrac * polar *
/// omega`: the division by the m^2 subpixels cancels their sum. Pixels of 20 mm at
/// 100 mm put the corners about 40 degrees off the beam, so the obliquity of the
/// capture fraction, the Kahn polarization and the solid angle all vary across the
/// image. Each factor is evaluated here from the documented model (MOSFLM axes, the
/// reference's beam center, omega and polarization at layer 0's first subpixel, the
/// capture fraction at the last layer's), not from the kernel's code, for both paths.
#[test]
fn a_smooth_image_follows_the_documented_formulas_pixel_by_pixel() {
    let params = SimulatorParams {
        detector_pixels: 5,
        pixel_mm: 20.0,
        cells: [1; 3],
        default_f: 10.0,
        oversample: 2,
        kahn_factor: 0.7,
        thickness_um: 450.0,
        attenuation_depth_um: Some(500.0),
        thicksteps: 5,
        ..SimulatorParams::default()
    };
    let simulation = simulation_of(&params);
    let detector = DocumentedDetector { pixels: 5, pixel: 0.02, distance: 0.1, subpixels: 2 };
    let layers = 5;
    let (kahn, amplitude) = (0.7, 10.0);
    let (layer_step, attenuation) = (450e-6 / (layers - 1) as f64, 1.0 / 500e-6);
    let scale = 7.94079248018965e-30 * 1.25932015286227e29;
    let mut expected = Vec::new();
    for slow in 0..detector.pixels {
        for fast in 0..detector.pixels {
            let (direction, length) = direction_and_length(detector.first_subpixel(fast, slow, 0.0));
            let omega = detector.omega(length);
            // Incident (1, 0, 0) and axis (0, 0, 1): B = (0, 1, 0), E = (0, 0, 1), and
            // cos(2 psi) sin^2(2 theta) = d_z^2 - d_y^2.
            let [x, y, z] = direction;
            let polar = 0.5 * (1.0 + x * x - kahn * (z * z - y * y));
            let last = (layers - 1) as f64;
            let (deep, _) = direction_and_length(detector.first_subpixel(fast, slow, last * layer_step));
            let obliquity = deep[0];
            let capture = (-last * layer_step * attenuation / obliquity).exp()
                - (-(last + 1.0) * layer_step * attenuation / obliquity).exp();
            expected.push(scale * layers as f64 * amplitude * amplitude * capture * polar * omega);
        }
    }
    let corner = direction_and_length(detector.first_subpixel(0, 0, 0.0)).0[0];
    assert!(corner < 0.8, "the corner is off the beam: d . o = {corner}");
    assert_both_paths_render(&simulation, &expected);
}

/// Without interpolation `F` is the grid's value at the nearest indices
/// `(ceil(h - 0.5), ceil(k - 0.5), ceil(l - 0.5))` inside the grid, its edges included,
/// and `default_F` outside it. With one unit cell per axis, one subpixel, no Kahn factor
/// and no sensor a pixel is `r_e^2 fluence F^2 polar omega` with
/// `polar = (1 + cos^2(2 theta)) / 2`. For a cubic 10 A cell in the default orientation
/// at 1 A, `(h, k, l) = 10 (d_x - 1, d_y, d_z)`; 10 mm pixels at 100 mm take k and l to
/// about -4 and 4, across the grid's edges on both sides, and h from 0 to below -1.
#[test]
fn nearest_neighbour_structure_factors_reach_the_grid_edges_and_default_f_beyond() {
    let params = SimulatorParams {
        detector_pixels: 9,
        pixel_mm: 10.0,
        wavelength_angstrom: 1.0,
        cell: Cell { a: 10.0, b: 10.0, c: 10.0, alpha: 90.0, beta: 90.0, gamma: 90.0 },
        cells: [1; 3],
        default_f: 7.0,
        oversample: 1,
        ..SimulatorParams::default()
    };
    let mut reflections = Vec::new();
    for h in -1..=0 {
        for k in -2..=2 {
            for l in -1..=3 {
                reflections.push(([h, k, l], hkl::synthetic_amplitude(h, k, l)));
            }
        }
    }
    let mut simulation = simulation_of(&params);
    simulation.hkl = Some(HklGrid::from_reflections(&reflections, params.default_f).unwrap());
    simulation.interpolate = false;

    let detector = DocumentedDetector { pixels: 9, pixel: 0.01, distance: 0.1, subpixels: 1 };
    let scale = 7.94079248018965e-30 * 1.25932015286227e29;
    let (mut on_an_upper_edge, mut outside) = (0, 0);
    let mut expected = Vec::new();
    for slow in 0..detector.pixels {
        for fast in 0..detector.pixels {
            let (direction, length) = direction_and_length(detector.first_subpixel(fast, slow, 0.0));
            let [x, y, z] = direction;
            let nearest = [10.0 * (x - 1.0), 10.0 * y, 10.0 * z].map(|index: f64| (index - 0.5).ceil() as i32);
            let [h, k, l] = nearest;
            let amplitude = if (-1..=0).contains(&h) && (-2..=2).contains(&k) && (-1..=3).contains(&l) {
                on_an_upper_edge += usize::from(h == 0 || k == 2 || l == 3);
                hkl::synthetic_amplitude(h, k, l)
            } else {
                outside += 1;
                7.0
            };
            let polar = 0.5 * (1.0 + x * x);
            expected.push(scale * amplitude * amplitude * polar * detector.omega(length));
        }
    }
    assert!(on_an_upper_edge > 0 && outside > 0, "{on_an_upper_edge} pixels on an edge, {outside} outside");
    assert_both_paths_render(&simulation, &expected);
}

/// The misset turns the reciprocal vectors by active, right-handed rotations about X,
/// then Y, then Z, as the reference's `rotate` does. For a cubic cell, 90 degrees about
/// X and then about Y take a* to -z, b* to +x and c* to -y (the other order would take
/// a* to +y); 30 degrees about Z alone turn a* from x toward y.
#[test]
fn misset_rotates_about_x_then_y_then_z() {
    let cubic = Cell { a: 100.0, b: 100.0, c: 100.0, alpha: 90.0, beta: 90.0, gamma: 90.0 };
    let near = |actual: Vec3, expected: [f64; 3]| {
        let difference = [actual.x - expected[0], actual.y - expected[1], actual.z - expected[2]];
        assert!(difference.iter().all(|value| value.abs() < 1e-14), "{actual:?} vs {expected:?}");
    };
    let crystal = Crystal::new(&cubic, [90.0, 90.0, 0.0]);
    near(crystal.a_star, [0.0, 0.0, -0.01]);
    near(crystal.b_star, [0.01, 0.0, 0.0]);
    near(crystal.c_star, [0.0, -0.01, 0.0]);
    near(crystal.a_angstrom.scale(1e-4), [0.0, 0.0, -0.01]);
    let crystal = Crystal::new(&cubic, [0.0, 0.0, 30.0]);
    let (sin, cos) = 30f64.to_radians().sin_cos();
    near(crystal.a_star, [0.01 * cos, 0.01 * sin, 0.0]);
    near(crystal.b_star, [-0.01 * sin, 0.01 * cos, 0.0]);
}

#[test]
fn fast_path_matches_the_scalar_path_at_the_exact_tier() {
    for params in [benchmark(160), tricubic(160), absorption(96), everything(48)] {
        let simulation = simulation_of(&params);
        let (scalar_image, scalar_outcome) = render_scalar(&simulation);
        let (fast_image, fast_outcome) = render_fast(&simulation, 2);
        assert!(scalar_outcome.max > 0.0, "{params:?} renders an empty image");
        assert_exact_tier(&fast_image, &scalar_image);
        assert_eq!(fast_outcome.fallback, scalar_outcome.fallback);
    }
}

#[test]
fn configurations_exercise_their_features() {
    let simulation = simulation_of(&tricubic(64));
    assert!(simulation.interpolate, "N = 2 with HKL data enables interpolation");
    let simulation = simulation_of(&everything(16));
    assert_eq!((simulation.oversample, simulation.detector.sensor.layers), (2, 3));
    // ceil(3 xtal_max / (lambda L / pixel)) with xtal_max = max(3 x 40, 7 x 52, 20 x 61) A,
    // the largest extent and not the first: ceil(3 x 1220 A / (1.5 A x 80 mm / 0.4 mm)) = 13.
    let automatic = SimulatorParams { oversample: 0, ..everything(16) }.simulation(None);
    assert_eq!(automatic.oversample, 13, "a 20-cell crystal at 1.5 A needs oversampling");
    // Automatic interpolation needs structure factors and one axis, any axis, of at
    // most 2 cells; an explicit choice wins.
    let interpolates = |cells: [u32; 3], hkl: HklSource, interpolate: InterpolationMode| {
        simulation_of(&SimulatorParams { cells, hkl, interpolate, ..benchmark(16) }).interpolate
    };
    assert!(interpolates([5, 2, 5], HklSource::Synthetic, InterpolationMode::Auto));
    assert!(interpolates([5, 5, 1], HklSource::Synthetic, InterpolationMode::Auto));
    assert!(!interpolates([3, 3, 3], HklSource::Synthetic, InterpolationMode::Auto));
    assert!(!interpolates([2, 2, 2], HklSource::None, InterpolationMode::Auto));
    assert!(!interpolates([2, 2, 2], HklSource::Synthetic, InterpolationMode::Off));
    assert!(interpolates([5, 5, 5], HklSource::Synthetic, InterpolationMode::On));
}

#[test]
fn every_instruction_set_gives_identical_bits() {
    for params in [benchmark(64), tricubic(64), everything(24)] {
        let simulation = simulation_of(&params);
        let mut reference = vec![0.0f32; simulation.detector.pixels()];
        fast::render_with(&simulation, &mut reference, InstructionSet::Portable);
        for instruction_set in InstructionSet::ALL.into_iter().filter(|set| set.is_supported()) {
            let mut image = vec![0.0f32; simulation.detector.pixels()];
            fast::render_with(&simulation, &mut image, instruction_set);
            assert!(image.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()), "{instruction_set:?}");
        }
    }
}

#[test]
fn one_and_many_threads_give_identical_images() {
    let fallback = {
        let mut simulation = simulation_of(&SimulatorParams { cells: [2; 3], ..benchmark(160) });
        simulation.hkl = Some(small_grid());
        simulation.interpolate = true;
        simulation
    };
    for simulation in [simulation_of(&benchmark(96)), simulation_of(&everything(40)), fallback] {
        let (one, one_outcome) = render_fast(&simulation, 1);
        for threads in [2, 3, 5] {
            let (many, many_outcome) = render_fast(&simulation, threads);
            assert!(one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads");
            assert_eq!(one_outcome, many_outcome);
        }
    }
}

#[test]
fn interpolation_fallback_follows_the_serial_order() {
    let mut simulation = simulation_of(&SimulatorParams { cells: [2; 3], ..benchmark(160) });
    simulation.hkl = Some(small_grid());
    simulation.interpolate = true;
    let (scalar_image, scalar_outcome) = render_scalar(&simulation);
    let fallback = scalar_outcome.fallback.expect("the small grid runs out of range in the bottom rows");
    // The fallback happens inside the image, so both modes are exercised.
    assert!(fallback.slow_pixel > 100 && fallback.slow_pixel < 159, "{fallback:?}");
    // It is the first pixel in serial order whose indices leave the range, found here
    // from the documented geometry: the cubic 100 A cell in the default orientation at
    // 6.2 A gives (h, k, l) = (100 / 6.2) (d - b), with one subpixel.
    let grid = small_grid();
    let detector = DocumentedDetector { pixels: 160, pixel: 1e-4, distance: 0.1, subpixels: 1 };
    let (fast_pixel, slow_pixel, miller) = (0..160 * 160)
        .find_map(|index| {
            let (fast_pixel, slow_pixel) = (index % 160, index / 160);
            let ([x, y, z], _) = direction_and_length(detector.first_subpixel(fast_pixel, slow_pixel, 0.0));
            let miller = [x - 1.0, y, z].map(|component| component * 100.0 / 6.2);
            let [h, k, l] = miller;
            (!interpolate::in_range(&grid, h, k, l)).then_some((fast_pixel, slow_pixel, miller))
        })
        .unwrap();
    assert_eq!((fallback.fast_pixel, fallback.slow_pixel), (fast_pixel, slow_pixel));
    assert!(
        fallback.miller.iter().zip(miller).all(|(actual, expected)| (actual - expected).abs() < 1e-9),
        "{miller:?}"
    );
    let message = fallback.message(&grid);
    assert!(message.contains(&format!("at pixel (fast {fast_pixel}, slow {slow_pixel}) with h,k,l = ")), "{message}");
    assert!(message.contains("(grid h -4..4, k -3..6, l -5..5)"), "{message}");
    for threads in [1, 4] {
        let (fast_image, fast_outcome) = render_fast(&simulation, threads);
        assert_eq!(fast_outcome.fallback, scalar_outcome.fallback);
        assert_exact_tier(&fast_image, &scalar_image);
    }
    // Without the hint every row below the fallback is rendered interpolating first and
    // then corrected: the result must not change.
    let (hinted, hinted_outcome) = render_fast(&simulation, 2);
    let mut corrected = vec![0.0f32; hinted.len()];
    let corrected_outcome =
        fast::render_rows(&simulation, &mut corrected, InstructionSet::detect(), fast::FallbackHint::Ignore, &|| false)
            .expect("never stopped");
    assert!(hinted.iter().zip(&corrected).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(hinted_outcome, corrected_outcome);
    // Rows below the switch are nearest-neighbour images; rows above are interpolated.
    let mut nearest_only = simulation.clone();
    nearest_only.interpolate = false;
    let (nearest_image, _) = render_fast(&nearest_only, 2);
    let width = simulation.detector.fast_pixels;
    let rows_equal = |rows: std::ops::Range<usize>| {
        rows.flat_map(|row| row * width..(row + 1) * width).all(|index| hinted[index] == nearest_image[index])
    };
    assert!(rows_equal(fallback.slow_pixel + 1..simulation.detector.slow_pixels));
    assert!(!rows_equal(0..fallback.slow_pixel));
}

fn kernel_params(pairs: &[(&str, Value)]) -> Params {
    let given: BTreeMap<String, Value> = pairs.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
    Params::validate(&Simulator.params(), &given, false).unwrap()
}

/// A list parameter of floats.
fn floats(values: &[f64]) -> Value {
    Value::List(values.iter().map(|&value| Value::Float(value)).collect())
}

/// Every kernel parameter reaches its own field of the typed parameters, in the order
/// and units its declaration names (the geometry converts millimetres and micrometres
/// later): `beam_center_mm` is (Xbeam, Ybeam), `na`, `nb` and `nc` count the cells along
/// a, b and c, with 0 taking `n_cells`, an attenuation depth of 0 means the thickness,
/// and every choice selects its own mode. The declared defaults are the benchmark
/// configuration of [`SimulatorParams::default`].
#[test]
fn kernel_parameters_reach_their_typed_fields() {
    let parsed = |pairs: &[(&str, Value)]| SimulatorParams::from_params(&kernel_params(pairs)).unwrap();
    assert_eq!(parsed(&[]), SimulatorParams::default());
    let given = parsed(&[
        ("path", Value::from("scalar")),
        ("detpixels", Value::Int(64)),
        ("pixel_mm", Value::Float(0.2)),
        ("distance_mm", Value::Float(150.0)),
        ("beam_center_mm", floats(&[3.0, 4.0])),
        ("lambda_a", Value::Float(1.5)),
        ("cell", floats(&[40.0, 52.0, 61.0, 81.0, 97.0, 104.0])),
        ("n_cells", Value::Int(4)),
        ("na", Value::Int(3)),
        ("nc", Value::Int(7)),
        ("default_f", Value::Float(12.0)),
        ("hkl", Value::from("synthetic")),
        ("interpolate", Value::from("off")),
        ("oversample", Value::Int(2)),
        ("kahn_factor", Value::Float(0.7)),
        ("thickness_um", Value::Float(300.0)),
        ("attenuation_depth_um", Value::Float(250.0)),
        ("thicksteps", Value::Int(3)),
        ("misset_deg", floats(&[12.0, -31.0, 47.0])),
        ("instruction_set", Value::from("portable")),
        ("floatfile", Value::from("image.bin")),
        ("write_hkl", Value::from("grid.hkl")),
    ]);
    let expected = SimulatorParams {
        path: RenderPath::Scalar,
        detector_pixels: 64,
        pixel_mm: 0.2,
        distance_mm: 150.0,
        beam_center_mm: Some([3.0, 4.0]),
        wavelength_angstrom: 1.5,
        cell: Cell { a: 40.0, b: 52.0, c: 61.0, alpha: 81.0, beta: 97.0, gamma: 104.0 },
        cells: [3, 4, 7],
        default_f: 12.0,
        hkl: HklSource::Synthetic,
        interpolate: InterpolationMode::Off,
        oversample: 2,
        kahn_factor: 0.7,
        thickness_um: 300.0,
        attenuation_depth_um: Some(250.0),
        thicksteps: 3,
        misset_degrees: [12.0, -31.0, 47.0],
        fluence: model::DEFAULT_FLUENCE,
        instruction_set: InstructionSetChoice::Fixed(InstructionSet::Portable),
        floatfile: Some("image.bin".into()),
        write_hkl: Some("grid.hkl".into()),
    };
    assert_eq!(given, expected);
    // A beam centre beyond the geometry's range is refused, not rendered as NaNs.
    let far = |center: &[f64]| SimulatorParams::from_params(&kernel_params(&[("beam_center_mm", floats(center))]));
    assert_eq!(far(&[1e158, 0.0]).unwrap_err(), "`beam_center_mm` [1e158, 0.0] is out of range -1e7..=1e7 mm");
    assert!(far(&[0.0, -2e7]).is_err());
    assert_eq!(far(&[-1e7, 1e7]).unwrap().beam_center_mm, Some([-1e7, 1e7]));

    let synthetic = ("hkl", Value::from("synthetic"));
    for (choice, mode) in
        [("on", InterpolationMode::On), ("off", InterpolationMode::Off), ("auto", InterpolationMode::Auto)]
    {
        assert_eq!(parsed(&[synthetic.clone(), ("interpolate", Value::from(choice))]).interpolate, mode, "{choice}");
    }
    for (choice, set) in [
        ("portable", InstructionSetChoice::Fixed(InstructionSet::Portable)),
        ("avx2", InstructionSetChoice::Fixed(InstructionSet::Avx2)),
        ("avx512", InstructionSetChoice::Fixed(InstructionSet::Avx512)),
        ("auto", InstructionSetChoice::Auto),
    ] {
        assert_eq!(parsed(&[("instruction_set", Value::from(choice))]).instruction_set, set, "{choice}");
    }
    // The name an instruction set is reported by is the choice that selects it.
    for set in InstructionSet::ALL {
        let choice = parsed(&[("instruction_set", Value::from(set.name()))]).instruction_set;
        assert_eq!(choice, InstructionSetChoice::Fixed(set), "{}", set.name());
    }
    assert_eq!(parsed(&[("path", Value::from("fast"))]).path, RenderPath::Fast);
    assert_eq!(parsed(&[("hkl", Value::from("data/f.hkl"))]).hkl, HklSource::File("data/f.hkl".into()));
    assert_eq!(parsed(&[("n_cells", Value::Int(6)), ("nb", Value::Int(2))]).cells, [6, 2, 6]);
    let sensor = parsed(&[("thickness_um", Value::Float(300.0)), ("attenuation_depth_um", Value::Float(0.0))]);
    assert_eq!(sensor.attenuation_depth_um, None);
    assert_close(simulation_of(&sensor).detector.sensor.attenuation, 1.0 / 300e-6, 1e-12);
}

/// An instance made outside the harness, on 2 threads.
fn instance(params: &Params) -> Box<dyn crate::kernel::Instance> {
    Simulator.instantiate(params, &RunContext::outside_harness(1, 2, &std::env::temp_dir())).unwrap()
}

/// Runs the kernel through its public interface: set-up and `samples` runs.
fn run_kernel(params: &Params, samples: usize) -> (Vec<Probe>, Vec<crate::kernel::Output>) {
    Simulator.check(params).unwrap();
    let mut instance = instance(params);
    let mut setup_probe = Probe::default();
    instance.setup(&mut setup_probe).unwrap();
    let probes = (0..samples)
        .map(|_| {
            let mut probe = Probe::default();
            instance.run(&mut probe).unwrap();
            probe
        })
        .collect();
    (probes, instance.outputs())
}

#[test]
fn out_of_range_warning_fires_exactly_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("small.hkl");
    small_grid().write(&path).unwrap();
    for render_path in ["fast", "scalar"] {
        let params = kernel_params(&[
            ("path", Value::from(render_path)),
            ("detpixels", Value::Int(160)),
            ("n_cells", Value::Int(2)),
            ("hkl", Value::from(path.to_str().unwrap())),
        ]);
        let (probes, _) = run_kernel(&params, 2);
        for probe in probes {
            assert_eq!(probe.warnings().len(), 1, "{render_path}: {:?}", probe.warnings());
            assert!(probe.warnings()[0].contains("out of range"), "{}", probe.warnings()[0]);
            assert_eq!(probe.metric_value("interpolation_warnings"), Some(1.0));
        }
    }
    // The tricubic configuration stays in range: no warning.
    let params =
        kernel_params(&[("detpixels", Value::Int(64)), ("n_cells", Value::Int(2)), ("hkl", Value::from("synthetic"))]);
    let (probes, _) = run_kernel(&params, 1);
    assert!(probes[0].warnings().is_empty());
    assert_eq!(probes[0].metric_value("interpolation_warnings"), Some(0.0));
}

#[test]
fn kernel_reports_metrics_outputs_and_the_float_file() {
    let directory = tempfile::tempdir().unwrap();
    let float_path = directory.path().join("image.bin");
    let params =
        kernel_params(&[("detpixels", Value::Int(512)), ("floatfile", Value::from(float_path.to_str().unwrap()))]);
    let (probes, outputs) = run_kernel(&params, 1);
    let probe = &probes[0];
    assert_close(probe.metric_value("max_i").unwrap(), 154.652466, 3e-9);
    assert_close(probe.metric_value("sum_i").unwrap(), 2.486487e5, 2e-7);
    assert_close(probe.metric_value("mean_i").unwrap(), 2.486487e5 / (512.0 * 512.0), 2e-7);
    assert!(probe.metric_value("pixels_per_s").unwrap() > 0.0);
    assert!(probe.metric_value("render_s").unwrap() > 0.0);
    // The rate is the image's pixels over the render time the same sample reports.
    let pixels_rendered = probe.metric_value("pixels_per_s").unwrap() * probe.metric_value("render_s").unwrap();
    assert_close(pixels_rendered, 512.0 * 512.0, 1e-9);
    // The check reserves the float file's size on disk, and nothing without one.
    assert_eq!(Simulator.check(&params).unwrap().disk_bytes, 4 * 512 * 512);
    let without_file = Simulator.check(&kernel_params(&[("detpixels", Value::Int(512))])).unwrap();
    assert_eq!(without_file.disk_bytes, 0);
    let declared: Vec<&str> = Simulator.metrics().iter().map(|metric| metric.name).collect();
    for (name, _) in probe.metrics() {
        assert!(declared.contains(&name.as_str()), "undeclared metric {name}");
    }
    assert_eq!(outputs.len(), 1);
    assert_eq!((outputs[0].name.as_str(), outputs[0].shape.as_slice()), ("image", [512, 512].as_slice()));
    let OutputData::F32(image) = &outputs[0].data else { panic!("the image is f32") };
    let bytes = std::fs::read(&float_path).unwrap();
    assert_eq!(bytes.len(), 4 * 512 * 512);
    let from_file: Vec<f32> =
        bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap())).collect();
    assert_eq!(&from_file, image);
}

/// Set-up reports the geometry and grid it built, in the units its field names say, and
/// writes the grid it read to `write_hkl`. The HKL file gives three reflections over
/// h -1..1, k -2..1, l 0..2 (36 entries, the others default_F); Xbeam = 0.3 mm and
/// Ybeam = 0.5 mm with 0.1 mm pixels put pix0 = -Fbeam f - Sbeam s + L b at
/// (0.1, 0.00035, -0.00055) m; 2 cells per axis turn interpolation on, and 5 layers
/// are asked for.
#[test]
fn kernel_setup_reports_what_it_built_and_writes_the_structure_factors() {
    let directory = tempfile::tempdir().unwrap();
    let (path, written) = (directory.path().join("three.hkl"), directory.path().join("written.hkl"));
    std::fs::write(&path, "-1 0 2 5.5\n1 1 0 7\n0 -2 1 3\n").unwrap();
    let params = kernel_params(&[
        ("detpixels", Value::Int(8)),
        ("beam_center_mm", floats(&[0.3, 0.5])),
        ("n_cells", Value::Int(2)),
        ("thickness_um", Value::Float(450.0)),
        ("thicksteps", Value::Int(5)),
        ("hkl", Value::from(path.to_str().unwrap())),
        ("write_hkl", Value::from(written.to_str().unwrap())),
        ("path", Value::from("scalar")),
        ("instruction_set", Value::from("portable")),
    ]);
    let mut instance = instance(&params);
    let mut probe = Probe::default();
    instance.setup(&mut probe).unwrap();
    let [event] = probe.events() else { panic!("one set-up event: {:?}", probe.events()) };
    assert_eq!(event.kind, "simulator_setup");
    let field = |name: &str| event.field(name).cloned().unwrap_or_else(|| panic!("no field {name} in {event:?}"));
    assert_eq!((field("path"), field("instruction_set")), (Value::from("scalar"), Value::from("portable")));
    assert_eq!(field("oversample"), Value::from(1usize));
    assert_eq!(field("interpolate"), Value::Bool(true));
    assert_eq!(field("sensor_layers"), Value::from(5usize));
    let Value::List(pix0) = field("pix0_m") else { panic!("pix0_m is a list") };
    for (actual, expected) in pix0.iter().zip([0.1, 0.00035, -0.00055]) {
        assert!((actual.as_f64().unwrap() - expected).abs() < 1e-15, "pix0_m {pix0:?}");
    }
    assert_eq!(pix0.len(), 3);
    assert_eq!(field("hkl_reflections"), Value::from(3usize));
    assert_eq!(field("hkl_grid"), Value::from("h -1..1, k -2..1, l 0..2"));
    // The written file holds every entry of the grid, the filled ones included.
    let read = HklGrid::load(&path, 100.0).unwrap();
    assert_eq!(HklGrid { reflections: 3, ..HklGrid::load(&written, 0.0).unwrap() }, read);
}

#[test]
fn kernel_check_refuses_inconsistent_parameters() {
    let given = |pairs: &[(&str, Value)]| {
        let map: BTreeMap<String, Value> =
            pairs.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
        Params::validate(&Simulator.params(), &map, false)
            .map_err(|error| error.to_string())
            .and_then(|params| Simulator.check(&params).map(|_| ()))
    };
    assert!(given(&[]).is_ok(), "the defaults are the benchmark configuration");
    let error = given(&[("cell", floats(&[100.0, 100.0, 100.0, 90.0, 90.0, 200.0]))]).unwrap_err();
    assert!(error.contains("angles"), "{error}");
    let error = given(&[("cell", floats(&[100.0, 100.0, 100.0, 10.0, 10.0, 170.0]))]).unwrap_err();
    assert!(error.contains("no volume"), "{error}");
    let error = given(&[("beam_center_mm", floats(&[51.2]))]).unwrap_err();
    assert!(error.contains("beam_center_mm"), "{error}");
    let error = given(&[("interpolate", Value::from("on"))]).unwrap_err();
    assert!(error.contains("needs structure factors"), "{error}");
    let error = given(&[("write_hkl", Value::from("grid.hkl"))]).unwrap_err();
    assert!(error.contains("`write_hkl` needs structure factors"), "{error}");
    let error = given(&[("detpixels", Value::Int(1 << 20))]).unwrap_err();
    assert!(error.contains("out of range"), "{error}");
    let resources = Simulator.check(&kernel_params(&[("detpixels", Value::Int(4096))])).unwrap();
    assert!(resources.memory_bytes >= 2 * 4 * 4096 * 4096);
}

#[test]
fn automatic_oversample_is_held_to_the_explicit_limit() {
    // At 1 A a crystal of 10^5 cells of 100 A asks for 30,000 subpixels per axis.
    let large_crystal = SimulatorParams { wavelength_angstrom: 1.0, cells: [100_000; 3], ..benchmark(512) };
    assert_eq!(large_crystal.effective_oversample(), 30_000);
    let error = large_crystal.validate().unwrap_err();
    for part in ["`oversample = 0`", "= 30000 subpixels per axis", "1000.000 um", "`lambda_a` = 1", "limit of 64"] {
        assert!(error.contains(part), "`{part}` missing from: {error}");
    }
    assert!(error.ends_with("set `oversample` to at most 64, or use fewer cells"), "{error}");
    // What the message proposes is accepted.
    assert!(SimulatorParams { oversample: 64, ..large_crystal.clone() }.validate().is_ok());
    assert!(SimulatorParams { cells: [5; 3], ..large_crystal }.validate().is_ok());
    // The benchmark crystal asks for 242 with a 1 mm pixel 1 mm away.
    let near = SimulatorParams { distance_mm: 1.0, pixel_mm: 1.0, ..benchmark(512) };
    assert!(near.validate().unwrap_err().contains("= 242 subpixels per axis"));

    // Through the kernel interface the error comes from `check`, before any set-up.
    let params = kernel_params(&[("lambda_a", Value::Float(1.0)), ("n_cells", Value::Int(1_000_000))]);
    let error = Simulator.check(&params).unwrap_err();
    assert!(error.contains("= 300000 subpixels per axis"), "{error}");

    // The memory estimate counts the column terms at the automatic oversample (10 here).
    let automatic = SimulatorParams { distance_mm: 25.0, pixel_mm: 1.0, ..benchmark(512) };
    assert_eq!(automatic.effective_oversample(), 10);
    assert!(automatic.validate().is_ok());
    assert_eq!(automatic.memory_bytes(), SimulatorParams { oversample: 10, ..automatic.clone() }.memory_bytes());
    assert!(automatic.memory_bytes() > SimulatorParams { oversample: 1, ..automatic.clone() }.memory_bytes());
    assert_eq!(automatic.simulation(None).oversample, 10);
    // The synthetic grid's 41^3 amplitudes of 8 bytes are counted too.
    let synthetic = SimulatorParams { hkl: HklSource::Synthetic, ..automatic.clone() };
    assert_eq!(synthetic.memory_bytes() - automatic.memory_bytes(), 8 * 41 * 41 * 41);
}

/// A configuration whose intensity overflows f32: one pixel at the Bragg peak of 10^5 cells
/// per axis with `F = 10^12`, whose value is far beyond f32.
fn overflowing() -> SimulatorParams {
    SimulatorParams {
        path: RenderPath::Scalar,
        detector_pixels: 8,
        oversample: 1,
        beam_center_mm: Some([0.4, 0.4]),
        cells: [100_000; 3],
        default_f: 1e12,
        ..SimulatorParams::default()
    }
}

#[test]
fn parameters_that_could_overflow_the_image_are_refused() {
    let error = overflowing().validate().unwrap_err();
    for part in ["beyond the largest f32", "from `default_f`", "100000 x 100000 x 100000 cells", "fewer cells"] {
        assert!(error.contains(part), "`{part}` missing from: {error}");
    }
    // The bound is F^2 (N^3)^2 (pixel / distance)^2 here: 10^30 F^2 10^-6, so F = 10^7
    // stays below f32::MAX (3.4e38) and F = 10^8 does not.
    assert!(SimulatorParams { default_f: 1e7, ..overflowing() }.validate().is_ok());
    assert!(SimulatorParams { default_f: 1e8, ..overflowing() }.validate().is_err());
    // A negative amplitude counts by its size, before and after set-up.
    let negative = SimulatorParams { default_f: -1e8, ..overflowing() };
    assert!(negative.validate().is_err());
    assert_eq!(negative.simulation(None).largest_amplitude(), 1e8);

    // The bound holds for the configurations the tests render, interpolation included.
    for params in [
        benchmark(48),
        tricubic(48),
        absorption(48),
        everything(48),
        SimulatorParams { default_f: 1e7, ..overflowing() },
    ] {
        params.validate().unwrap();
        let simulation = simulation_of(&params);
        let (image, outcome) = render_scalar(&simulation);
        let bound = simulation.peak_intensity_bound(simulation.largest_amplitude());
        assert!(outcome.max > 0.0 && outcome.max <= bound, "max {} above the bound {bound}", outcome.max);
        assert!(image.iter().all(|value| value.is_finite()) && outcome.non_finite == 0);
        assert!(outcome.check_finite().is_ok());
    }
}

/// The peak bound is the documented product `r_e^2 fluence * layers * F_max^2 *
/// (Na Nb Nc)^2 * (1 + max(1, |K|))/2 * pixel^2 / close_distance^2`, with `F_max` the
/// largest `|F|` the render can use: the grid's largest amplitude times 1.25^3 while
/// interpolating (1.25 is the largest sum of the four Lagrange weights' sizes, at
/// t = 1/2, once per axis), the grid's own without, and `default_F` when it is larger.
#[test]
fn the_peak_bound_is_the_documented_product() {
    let largest_weight_sum = (0..=1000)
        .map(|step| interpolate::lagrange_weights(f64::from(step) / 1000.0).iter().map(|weight| weight.abs()).sum())
        .fold(0.0, f64::max);
    assert!((largest_weight_sum - 1.25).abs() < 1e-12, "{largest_weight_sum}");
    assert_eq!(model::TRICUBIC_OVERSHOOT, 1.25 * 1.25 * 1.25);

    let params = SimulatorParams {
        pixel_mm: 0.2,
        distance_mm: 80.0,
        cells: [3, 7, 2],
        default_f: 30.0,
        kahn_factor: -0.6,
        thickness_um: 300.0,
        thicksteps: 4,
        ..benchmark(16)
    };
    let grid = HklGrid::from_reflections(&[([0, 0, 0], -40.0), ([1, 0, 0], 25.0)], 0.0).unwrap();
    let mut simulation = params.simulation(Some(grid));
    assert!(simulation.interpolate, "an axis of 2 cells turns interpolation on");
    let scale = 7.94079248018965e-30 * 1.25932015286227e29;
    let documented = |amplitude: f64, kahn: f64| {
        let lattice = f64::from(3 * 7 * 2);
        let polarization = (1.0 + kahn.abs().max(1.0)) / 2.0;
        scale * 4.0 * amplitude * amplitude * lattice * lattice * polarization * (0.2 / 80.0f64).powi(2)
    };
    assert_close(simulation.largest_amplitude(), 40.0 * 1.953125, 1e-15);
    assert_close(simulation.peak_intensity_bound(simulation.largest_amplitude()), documented(78.125, -0.6), 1e-12);
    simulation.interpolate = false;
    assert_eq!(simulation.largest_amplitude(), 40.0);
    simulation.default_f = -50.0;
    assert_eq!(simulation.largest_amplitude(), 50.0);
    // A Kahn factor beyond 1 (which the parameters do not accept) raises the bound.
    simulation.kahn_factor = 1.5;
    assert_close(simulation.peak_intensity_bound(50.0), documented(50.0, 1.5), 1e-12);

    // The synthetic grid is bounded before it is generated, by 160 times the overshoot:
    // with 1 mm pixels 1 mm away the bound is F^2 N^6, and 430,000 cells per axis give
    // N^6 = 6.3e33, above f32::MAX (3.4e38) with F = 160 x 1.25^3 and below it with 160.
    let synthetic = SimulatorParams {
        hkl: HklSource::Synthetic,
        cells: [430_000; 3],
        oversample: 1,
        pixel_mm: 1.0,
        distance_mm: 1.0,
        ..benchmark(8)
    };
    let error = synthetic.validate().unwrap_err();
    assert!(error.contains("F = 3.125e2 from the synthetic grid's bound with interpolation"), "{error}");
    assert!(SimulatorParams { cells: [380_000; 3], ..synthetic }.validate().is_ok());
}

/// A row's sum and maximum take every pixel, those past its last group of four included,
/// and so does the count of non-finite pixels.
#[test]
fn row_statistics_count_every_pixel_of_rows_of_any_width() {
    for width in 1..=9 {
        // 0.5, 1.0, ..., width / 2: the largest is the last.
        let mut row: Vec<f32> = (1..=width).map(|index| index as f32 * 0.5).collect();
        let statistics = RowStatistics::of(&row);
        let exact = (width * (width + 1)) as f64 / 4.0;
        assert_eq!((statistics.sum, statistics.max), (exact, width as f64 * 0.5), "width {width}");
        assert_eq!((statistics.non_finite, statistics.first_non_finite), (0, None), "width {width}");
        row[width - 1] = f32::INFINITY;
        let statistics = RowStatistics::of(&row);
        assert_eq!((statistics.non_finite, statistics.first_non_finite), (1, Some(width - 1)), "width {width}");
    }
}

/// The image's statistics add the rows' sums, take the largest of their maxima and name
/// the first non-finite pixel in row order, with its row, not a later row's.
#[test]
fn image_statistics_combine_the_rows_in_order() {
    let rows = [
        RowStatistics::of(&[1.0, 2.0]),
        RowStatistics::of(&[0.5, 4.0, 0.25, f32::NAN]),
        RowStatistics::of(&[3.0, f32::NAN]),
    ];
    let outcome = RenderOutcome::from_rows(&rows, None);
    assert!(outcome.sum.is_nan() && outcome.max == 4.0, "{outcome:?}");
    assert_eq!((outcome.non_finite, outcome.first_non_finite), (2, Some((3, 1))));
    let finite = RenderOutcome::from_rows(&rows[..1], None);
    assert_eq!((finite.sum, finite.max, finite.non_finite, finite.first_non_finite), (3.0, 2.0, 0, None));
}

#[test]
fn non_finite_pixels_are_counted_and_fail_the_run() {
    // Rendered without the parameter check, the image holds an infinity, and both
    // paths say how many and where the first is.
    let simulation = overflowing().simulation(None);
    for (image, outcome) in [render_scalar(&simulation), render_fast(&simulation, 2)] {
        let non_finite: Vec<usize> = (0..image.len()).filter(|&index| !image[index].is_finite()).collect();
        assert!(!non_finite.is_empty());
        assert_eq!(outcome.non_finite, non_finite.len());
        assert_eq!(outcome.first_non_finite, Some((non_finite[0] % 8, non_finite[0] / 8)));
        let error = outcome.check_finite().unwrap_err();
        assert!(error.contains("infinite or NaN pixel(s), the first at (fast"), "{error}");
    }

    // The kernel's run fails instead of reporting an infinite maximum.
    let mut instance = SimulatorInstance { params: overflowing(), prepared: None, image: Vec::new() };
    instance.setup(&mut Probe::default()).unwrap();
    let error = instance.run(&mut Probe::default()).unwrap_err();
    assert!(format!("{error:#}").contains("infinite or NaN"), "{error:#}");
}

#[test]
fn kernel_setup_refuses_hkl_amplitudes_that_could_overflow_the_image() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bright.hkl");
    // Intensities go with F^2, so a negative amplitude is as bright as a positive one.
    for amplitude in ["1e18", "-1e18"] {
        std::fs::write(&path, format!("0 0 0 {amplitude}\n1 0 0 10\n")).unwrap();
        let params = kernel_params(&[
            ("detpixels", Value::Int(8)),
            ("oversample", Value::Int(1)),
            ("n_cells", Value::Int(1000)),
            ("hkl", Value::from(path.to_str().unwrap())),
        ]);
        // `default_f` alone is far from the limit, so the parameters pass; the file's
        // amplitudes are bounded once read.
        Simulator.check(&params).unwrap();
        let mut instance = instance(&params);
        let error = format!("{:#}", instance.setup(&mut Probe::default()).unwrap_err());
        assert!(error.contains("beyond the largest f32") && error.contains("bright.hkl"), "{amplitude}: {error}");
    }
}

fn hkl_error(text: &str) -> String {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broken.hkl");
    std::fs::write(&path, text).unwrap();
    let error = HklGrid::load(&path, 0.0).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    message
}

#[test]
fn hkl_errors_name_the_file_and_the_line() {
    let missing = Path::new("no/such/file.hkl");
    let error = HklGrid::load(missing, 0.0).unwrap_err();
    assert!(matches!(error, HklError::Read { .. }));
    assert!(error.to_string().starts_with("cannot read HKL file no/such/file.hkl: "), "{error}");
    // The cause is said once, in a chain of causes too.
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert_eq!(chain.matches("No such file or directory").count(), 1, "{chain}");

    let message = hkl_error("0 0 0 10\n# comment\n\n1 2 3\n");
    assert!(message.ends_with("broken.hkl:4: expected 4 fields `h k l F`, found 3"), "{message}");
    let message = hkl_error("0 0 0 10\n1 x 3 4.5\n");
    assert!(message.ends_with("broken.hkl:2: k = `x` is not a number"), "{message}");
    let message = hkl_error("0 0 0 10\n1 2 3 4.5\n2 2 2 nan\n");
    assert!(message.ends_with("broken.hkl:3: F = `nan` is not a number"), "{message}");
    let message = hkl_error("0 0 0.5 10\n");
    assert!(message.ends_with("broken.hkl:1: l = `0.5` is not an integer index"), "{message}");
    let message = hkl_error("# nothing here\n");
    assert!(message.ends_with("broken.hkl holds no reflections"), "{message}");
    // The largest indices accepted, +-2^20 on every axis, span (2^21 + 1)^3 entries, far
    // more than the 2^27 a grid may hold.
    let message = hkl_error("-1048576 -1048576 -1048576 1\n1048576 1048576 1048576 1\n");
    assert!(
        message.ends_with("broken.hkl: the index ranges span 9223385231000600577 grid entries (at most 134217728)"),
        "{message}"
    );
    let message = hkl_error("1048577 0 0 1\n");
    assert!(message.ends_with("broken.hkl:1: h = `1048577` is not an integer index"), "{message}");
}

#[test]
fn hkl_files_round_trip_and_fill_missing_entries() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("grid.hkl");
    std::fs::write(&path, "# h k l F\n-1 0 2 5.5\n1\t1 0 7\n-1 0 2 6.5\n").unwrap();
    let grid = HklGrid::load(&path, 3.0).unwrap();
    assert_eq!((grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max), (-1, 1, 0, 1, 0, 2));
    assert_eq!(grid.get(-1, 0, 2), 6.5, "a repeated index keeps its last value");
    assert_eq!(grid.get(1, 1, 0), 7.0);
    assert_eq!(grid.get(0, 0, 0), 3.0, "absent entries hold default_F");

    let synthetic = HklGrid::synthetic();
    assert_eq!(synthetic.values.len(), 41 * 41 * 41);
    assert_eq!(synthetic.get(0, 0, 0), 110.0);
    synthetic.write(&path).unwrap();
    assert_eq!(HklGrid::load(&path, 0.0).unwrap(), synthetic, "written amplitudes read back exactly");
}

#[test]
fn kernel_setup_fails_clearly_on_a_missing_hkl_file() {
    let params = kernel_params(&[("hkl", Value::from("no/such/file.hkl"))]);
    let mut instance = instance(&params);
    let error = instance.setup(&mut Probe::default()).unwrap_err();
    assert!(format!("{error:#}").contains("cannot read HKL file no/such/file.hkl"), "{error:#}");
}

#[test]
fn both_paths_stop_between_rows_when_asked() {
    let simulation = simulation_of(&SimulatorParams { detector_pixels: 16, ..SimulatorParams::default() });
    for stop_at in [1, 5] {
        // One thread, so the fast path's rows are asked in order too.
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == stop_at;
        let mut image = vec![0.0; simulation.detector.pixels()];
        let stopped = scalar::render_until(&simulation, &mut image, &stop).map(|_| ()).expect_err("stopped");
        assert_eq!(stopped, Stopped { done: stop_at - 1, total: 16 });
        asked.store(0, std::sync::atomic::Ordering::Relaxed);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let stopped = pool
            .install(|| fast::render_until(&simulation, &mut image, InstructionSet::detect(), &stop))
            .map(|_| ())
            .expect_err("stopped");
        assert_eq!(stopped, Stopped { done: stop_at - 1, total: 16 });
    }
    // Never told to stop: the plain render.
    let (reference, _) = render_scalar(&simulation);
    let mut image = vec![0.0; simulation.detector.pixels()];
    scalar::render_until(&simulation, &mut image, &|| false).expect("not stopped");
    assert_eq!(image, reference);
}

/// `render_until` runs the path it is given: the scalar reference row after row on the
/// calling thread, the fast path on the thread pool's workers. The images cannot tell
/// the two apart (they agree to the bit in these configurations); the threads that ask
/// whether to stop can.
#[test]
fn render_until_runs_the_chosen_path() {
    let simulation = simulation_of(&benchmark(16));
    for (render_path, on_workers) in [(RenderPath::Scalar, false), (RenderPath::Fast, true)] {
        let asked_on_workers = std::sync::Mutex::new(Vec::new());
        let stop = || {
            asked_on_workers.lock().unwrap().push(rayon::current_thread_index().is_some());
            false
        };
        let mut image = vec![0.0; simulation.detector.pixels()];
        render_until(&simulation, render_path, InstructionSet::Portable, &mut image, &stop).expect("not stopped");
        let asked_on_workers = asked_on_workers.into_inner().unwrap();
        assert_eq!(asked_on_workers.len(), 16, "{render_path:?} asks once a row");
        assert!(asked_on_workers.iter().all(|&worker| worker == on_workers), "{render_path:?}: {asked_on_workers:?}");
    }
}

#[test]
fn a_render_past_its_deadline_stops_with_its_progress() {
    for render_path in ["fast", "scalar"] {
        let params = kernel_params(&[("path", Value::from(render_path)), ("detpixels", Value::Int(16))]);
        let mut instance = instance(&params);
        instance.setup(&mut Probe::default()).unwrap();
        let message = format!("{:#}", instance.run(&mut Probe::past_deadline()).unwrap_err());
        assert!(message.starts_with("stopped after 0 of 16 detector rows: "), "{render_path}: {message}");
        assert!(message.ends_with("past its timeout of 0 s"), "{render_path}: {message}");
        instance.run(&mut Probe::default()).expect("no deadline");
    }
}
