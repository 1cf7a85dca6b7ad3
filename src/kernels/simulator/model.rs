//! The prepared simulation both paths render, and the per-pixel model.
//!
//! For every pixel (slow-major, image index `slow * n_fast + fast`):
//!
//! ```text
//! I = 0; polar = 0; omega = 0
//! for layer t in 0..layers:                         Odet = t * dt
//!   capfrac = 0 (1 without a sensor thickness)
//!   for each of the m x m subpixels (delta = pixel/m, centers at delta*(index*m + sub) + delta/2):
//!     P = Fdet f + Sdet s + Odet o + pix0;  R = |P|;  d = P/R
//!     omega   (while 0) = pixel^2 / R^2 * close_distance / R
//!     capfrac (while 0) = exp(-t dt mu / (d.o)) - exp(-(t+1) dt mu / (d.o))
//!     q = (d - i) / lambda                                  [1/m]
//!     polar   (while 0) = Kahn(K, i, d, p)
//!     h = a.q, k = b.q, l = c.q
//!     F_latt = prod over axes with N > 1 of sincg(pi h, N),  sincg(x, N) = N if x == 0 else sin(N x)/sin(x)
//!     if F_latt == 0: next subpixel
//!     F_cell = tricubic(h, k, l) while interpolating, else grid[ceil(h-0.5), ...] inside the grid, else default_F
//!     I += F_cell^2 F_latt^2
//! S = r_e^2 fluence I / m^2 * capfrac * polar * omega;  image = (f32) S
//! ```
//!
//! `Kahn(K, i, d, p)`: `cos2t = i.d`, `sin2 = 1 - cos2t^2`, `B = unit(p x i)`,
//! `E = unit(i x B)`, `psi = -atan2(d.B, d.E)`, value `0.5 (1 + cos2t^2 - K cos(2 psi) sin2)`.
//!
//! The "while 0" quantities are computed the first time they are needed in a pixel and
//! kept, so the last layer's capture fraction multiplies the sum over all layers (layers
//! are not in the divisor). These are the C reference's semantics, kept so images agree.
//!
//! **Interpolation fallback.** Tricubic interpolation needs `h_min + 2 <= h <= h_max - 2`
//! (same for `k`, `l`). The first evaluation, in the serial pixel order above, that falls
//! outside uses the nearest-neighbour value, emits one warning and switches interpolation
//! off for the rest of the image. The fast path reproduces exactly this serial decision
//! (see `fast.rs`), so the image does not depend on the number of threads.
//!
//! **Peak bound.** Every factor of a pixel value is bounded: `|sincg(x, N)| <= N`, so
//! `F_latt^2 <= (Na Nb Nc)^2`; the sum over layers and subpixels divided by `m^2` is at
//! most `layers F_max^2 (Na Nb Nc)^2`; `capfrac <= 1`; `polar <= (1 + max(1, |K|)) / 2`;
//! and since `R >= close_distance`, `omega <= pixel^2 / close_distance^2`. Hence
//!
//! ```text
//! S <= r_e^2 fluence * layers * F_max^2 * (Na Nb Nc)^2 * (1 + max(1, |K|))/2 * pixel^2 / close_distance^2
//! ```
//!
//! with `F_max` the largest `|default_F|` or grid amplitude, times [`TRICUBIC_OVERSHOOT`]
//! for grid values while interpolating. Parameters whose bound exceeds `f32::MAX` are
//! refused, since the image is f32 and such a pixel could round to infinity. The bound
//! costs a few multiplications (and one pass over an HKL file's grid in set-up). The
//! pixel under the direct beam (`h = k = l = 0`) comes close to it, so it refuses little
//! that could render. The render also counts non-finite pixels, so a value that escapes the
//! bound fails the run instead of reaching the outputs.

use super::crystal::Crystal;
use super::geometry::{Detector, Vec3};
use super::hkl::HklGrid;

/// How far a tricubic interpolant can exceed the largest of its 64 node values: with
/// `t` in `[0, 1)` the four Lagrange weights sum in absolute value to at most 1.25 (at
/// `t = 1/2`), once per axis.
pub const TRICUBIC_OVERSHOOT: f64 = 1.25 * 1.25 * 1.25;

/// Classical electron radius squared, m^2.
pub const ELECTRON_RADIUS_SQUARED: f64 = 7.94079248018965e-30;

/// The default fluence, photons/m^2: with it, `r_e^2 * fluence = 1`.
pub const DEFAULT_FLUENCE: f64 = 125932015286227086360700780544.0;

/// Everything the pixel loop reads, computed once in set-up.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub detector: Detector,
    pub crystal: Crystal,
    /// Unit cells along a, b, c.
    pub cells: [u32; 3],
    /// Wavelength in meters.
    pub wavelength: f64,
    /// Unit vector of the incident beam.
    pub incident: Vec3,
    /// `r_e^2 * fluence`.
    pub intensity_scale: f64,
    pub kahn_factor: f64,
    pub default_f: f64,
    pub hkl: Option<HklGrid>,
    /// Whether interpolation is on when an image starts.
    pub interpolate: bool,
    /// Subpixels per axis.
    pub oversample: usize,
}

impl Simulation {
    /// Subpixel size in meters.
    pub fn subpixel_size(&self) -> f64 {
        self.detector.pixel_size / self.oversample as f64
    }

    /// The divisor of the summed intensity: sources x mosaic domains x phi steps x m^2,
    /// with one source, one domain and one phi step.
    pub fn steps(&self) -> f64 {
        (self.oversample * self.oversample) as f64
    }

    /// The largest `|F_cell|` the render can use: `default_F` or, with structure factors,
    /// their largest amplitude, which interpolation can exceed by [`TRICUBIC_OVERSHOOT`].
    pub fn largest_amplitude(&self) -> f64 {
        let grid = match &self.hkl {
            Some(grid) if self.interpolate => grid.largest_amplitude() * TRICUBIC_OVERSHOOT,
            Some(grid) => grid.largest_amplitude(),
            None => 0.0,
        };
        grid.max(self.default_f.abs())
    }

    /// An upper bound of every pixel value when no `|F_cell|` exceeds `largest_amplitude`
    /// (the peak bound of the module documentation).
    pub fn peak_intensity_bound(&self, largest_amplitude: f64) -> f64 {
        let detector = &self.detector;
        let lattice: f64 = self.cells.iter().map(|&cells| f64::from(cells)).product();
        let polarization = 0.5 * (1.0 + self.kahn_factor.abs().max(1.0));
        let solid_angle = (detector.pixel_size / detector.close_distance).powi(2);
        self.intensity_scale
            * detector.sensor.layers as f64
            * largest_amplitude
            * largest_amplitude
            * lattice
            * lattice
            * polarization
            * solid_angle
    }
}

/// The largest extent of the crystal in meters, `xtal_max = max(Na |a|, Nb |b|, Nc |c|)`.
pub fn crystal_size(crystal: &Crystal, cells: [u32; 3]) -> f64 {
    let sizes = [
        crystal.a.magnitude() * f64::from(cells[0]),
        crystal.b.magnitude() * f64::from(cells[1]),
        crystal.c.magnitude() * f64::from(cells[2]),
    ];
    sizes.into_iter().fold(sizes[0], f64::max)
}

/// The oversampling the reference picks when none is given:
/// `ceil(3 * xtal_max / (lambda * L / pixel))`, at least 1.
///
/// The reference sets no upper limit, and neither does this function (a value beyond
/// `usize` saturates): the parameters refuse a recommendation above the explicit
/// limit instead of clamping it, since a clamped image would no longer be the one the
/// reference computes.
pub fn recommended_oversample(crystal: &Crystal, cells: [u32; 3], wavelength: f64, detector: &Detector) -> usize {
    let reciprocal_pixel_size = wavelength * detector.distance / detector.pixel_size;
    let recommended = (3.0 * crystal_size(crystal, cells) / reciprocal_pixel_size).ceil();
    if recommended >= 1.0 { recommended as usize } else { 1 }
}

/// `sin(N x) / sin(x)`, the lattice transform of `N` cells along one axis (`N` at `x = 0`).
pub fn sincg(x: f64, cells: f64) -> f64 {
    if x == 0.0 {
        return cells;
    }
    (x * cells).sin() / x.sin()
}

/// The Kahn polarization factor for an incident and a diffracted direction.
pub fn polarization_factor(kahn_factor: f64, incident: Vec3, diffracted: Vec3, axis: Vec3) -> f64 {
    let (incident, _) = incident.unit();
    let (diffracted, _) = diffracted.unit();
    let (axis, _) = axis.unit();
    let cos_two_theta = incident.dot(diffracted);
    let cos_two_theta_squared = cos_two_theta * cos_two_theta;
    let sin_two_theta_squared = 1.0 - cos_two_theta_squared;
    let mut psi = 0.0;
    if kahn_factor != 0.0 {
        let (b_in, _) = axis.cross(incident).unit();
        let (e_in, _) = incident.cross(b_in).unit();
        let e_out = diffracted.dot(e_in);
        let b_out = diffracted.dot(b_in);
        psi = -b_out.atan2(e_out);
    }
    0.5 * (1.0 + cos_two_theta_squared - kahn_factor * (2.0 * psi).cos() * sin_two_theta_squared)
}

/// Where interpolation was switched off, for the warning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterpolationFallback {
    pub fast_pixel: usize,
    pub slow_pixel: usize,
    pub miller: [f64; 3],
}

impl InterpolationFallback {
    pub fn message(&self, grid: &HklGrid) -> String {
        let [h, k, l] = self.miller;
        format!(
            "structure factor interpolation out of range at pixel (fast {}, slow {}) with h,k,l = {h:.4},{k:.4},{l:.4} \
             (grid h {}..{}, k {}..{}, l {}..{}); nearest-neighbour values used from there to the end of the image",
            self.fast_pixel, self.slow_pixel, grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max
        )
    }
}

/// Sum and maximum of one row of the image, in f64 over the f32 values, so the image
/// statistics are a fixed function of the image: four interleaved partial sums per row
/// (a fixed order the compiler can vectorize), rows summed in order. Infinite and NaN
/// pixels are counted, which a finite sum tells apart from the common case cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowStatistics {
    pub sum: f64,
    pub max: f64,
    pub non_finite: usize,
    /// The column of the row's first non-finite pixel.
    pub first_non_finite: Option<usize>,
}

impl RowStatistics {
    pub fn of(row: &[f32]) -> RowStatistics {
        let mut partial_sums = [0.0f64; 4];
        let mut partial_maxima = [0.0f64; 4];
        let chunks = row.chunks_exact(4);
        let remainder = chunks.remainder();
        for chunk in chunks {
            for lane in 0..4 {
                let value = f64::from(chunk[lane]);
                partial_sums[lane] += value;
                partial_maxima[lane] = if value > partial_maxima[lane] { value } else { partial_maxima[lane] };
            }
        }
        for (lane, &value) in remainder.iter().enumerate() {
            let value = f64::from(value);
            partial_sums[lane] += value;
            partial_maxima[lane] = if value > partial_maxima[lane] { value } else { partial_maxima[lane] };
        }
        let sum = (partial_sums[0] + partial_sums[1]) + (partial_sums[2] + partial_sums[3]);
        // A sum of finite f32 values in f64 stays finite, so only a row whose sum is not
        // finite needs the second pass.
        let (non_finite, first_non_finite) = if sum.is_finite() {
            (0, None)
        } else {
            (row.iter().filter(|value| !value.is_finite()).count(), row.iter().position(|value| !value.is_finite()))
        };
        RowStatistics {
            sum,
            max: partial_maxima.into_iter().fold(0.0, |largest, value| if value > largest { value } else { largest }),
            non_finite,
            first_non_finite,
        }
    }
}

/// What rendering one image produced besides the pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOutcome {
    pub fallback: Option<InterpolationFallback>,
    pub sum: f64,
    pub max: f64,
    /// Infinite or NaN pixels, and the `(fast, slow)` position of the first in pixel order.
    pub non_finite: usize,
    pub first_non_finite: Option<(usize, usize)>,
}

impl RenderOutcome {
    pub fn from_rows(rows: &[RowStatistics], fallback: Option<InterpolationFallback>) -> RenderOutcome {
        let mut outcome = RenderOutcome { fallback, sum: 0.0, max: 0.0, non_finite: 0, first_non_finite: None };
        for (slow_pixel, row) in rows.iter().enumerate() {
            outcome.sum += row.sum;
            if row.max > outcome.max {
                outcome.max = row.max;
            }
            outcome.non_finite += row.non_finite;
            if outcome.first_non_finite.is_none() {
                outcome.first_non_finite = row.first_non_finite.map(|fast_pixel| (fast_pixel, slow_pixel));
            }
        }
        outcome
    }

    /// An error naming the non-finite pixels, if the image has any.
    pub fn check_finite(&self) -> Result<(), String> {
        match self.first_non_finite {
            None => Ok(()),
            Some((fast_pixel, slow_pixel)) => Err(format!(
                "the image has {} infinite or NaN pixel(s), the first at (fast {fast_pixel}, slow {slow_pixel}); \
                 lower the structure factors or use fewer cells, or bring extreme geometry nearer",
                self.non_finite
            )),
        }
    }
}
