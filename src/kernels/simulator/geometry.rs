//! Detector geometry: the MOSFLM convention with the BEAM pivot, and the 3-vectors both
//! the detector and the crystal are built from.
//!
//! **Detector.** Lab basis (MOSFLM): beam `b = (1,0,0)`, fast axis `f = (0,0,1)`, slow
//! axis `s = (0,-1,0)`, normal `o = (1,0,0)`, polarization axis `p = (0,0,1)`. The
//! default beam center is `Xbeam = (detsize_s + pixel)/2`, `Ybeam = (detsize_f + pixel)/2`
//! (millimetres on the MOSFLM axes), mapped to `Fbeam = Ybeam + pixel/2` and
//! `Sbeam = Xbeam + pixel/2`; the first pixel's corner is
//! `pix0 = -Fbeam f - Sbeam s + L b`, and the close distance is `pix0 . o`.
//!
//! Every operation keeps the reference program's order of floating-point operations, so
//! the geometry is bit-for-bit the same as the C reference's.

use std::f64::consts::FRAC_1_PI;

/// A 3-vector in the lab frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vec3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Vec3 {
    pub const fn new(x: f64, y: f64, z: f64) -> Vec3 {
        Vec3 { x, y, z }
    }

    pub fn dot(self, other: Vec3) -> f64 {
        self.x * other.x + self.y * other.y + self.z * other.z
    }

    pub fn cross(self, other: Vec3) -> Vec3 {
        Vec3::new(
            self.y * other.z - self.z * other.y,
            self.z * other.x - self.x * other.z,
            self.x * other.y - self.y * other.x,
        )
    }

    pub fn magnitude(self) -> f64 {
        (self.x * self.x + self.y * self.y + self.z * self.z).sqrt()
    }

    /// `factor * self`, component by component.
    pub fn scale(self, factor: f64) -> Vec3 {
        Vec3::new(factor * self.x, factor * self.y, factor * self.z)
    }

    /// The unit vector along `self` (by division, as the reference does) and the
    /// original magnitude; the zero vector stays zero.
    pub fn unit(self) -> (Vec3, f64) {
        let magnitude = self.magnitude();
        if magnitude != 0.0 {
            (Vec3::new(self.x / magnitude, self.y / magnitude, self.z / magnitude), magnitude)
        } else {
            (Vec3::default(), 0.0)
        }
    }

    /// `self` rescaled to the given magnitude.
    pub fn rescaled(self, magnitude: f64) -> Vec3 {
        let mut old_magnitude = self.magnitude();
        if old_magnitude <= 0.0 {
            old_magnitude = 1.0;
        }
        Vec3::new(
            magnitude / old_magnitude * self.x,
            magnitude / old_magnitude * self.y,
            magnitude / old_magnitude * self.z,
        )
    }

    /// Rotation about X, then Y, then Z (angles in radians); a zero angle is skipped.
    pub fn rotated_xyz(self, angle_x: f64, angle_y: f64, angle_z: f64) -> Vec3 {
        let Vec3 { mut x, mut y, mut z } = self;
        if angle_x != 0.0 {
            let (sin, cos) = angle_x.sin_cos();
            let rotated_y = y * cos + z * -sin;
            let rotated_z = y * sin + z * cos;
            (y, z) = (rotated_y, rotated_z);
        }
        if angle_y != 0.0 {
            let (sin, cos) = angle_y.sin_cos();
            let rotated_x = x * cos + y * 0.0 + z * sin;
            let rotated_z = x * -sin + y * 0.0 + z * cos;
            (x, z) = (rotated_x, rotated_z);
        }
        if angle_z != 0.0 {
            let (sin, cos) = angle_z.sin_cos();
            let rotated_x = x * cos + y * -sin;
            let rotated_y = x * sin + y * cos;
            (x, y) = (rotated_x, rotated_y);
        }
        Vec3::new(x, y, z)
    }
}

/// The detector as the pixel loop sees it, in meters.
#[derive(Clone, Debug, PartialEq)]
pub struct Detector {
    pub fast_pixels: usize,
    pub slow_pixels: usize,
    pub pixel_size: f64,
    pub fast_axis: Vec3,
    pub slow_axis: Vec3,
    pub normal_axis: Vec3,
    pub beam_axis: Vec3,
    pub polarization_axis: Vec3,
    /// Position of the first pixel's outer corner relative to the crystal.
    pub pix0: Vec3,
    /// Sample to detector along the beam.
    pub distance: f64,
    /// Sample to detector plane along its normal.
    pub close_distance: f64,
    /// The MOSFLM beam center (meters): `x_beam` along the slow axis, `y_beam` along the fast.
    pub x_beam: f64,
    pub y_beam: f64,
    /// Where the direct beam meets the detector, along the fast and slow axes.
    pub f_beam: f64,
    pub s_beam: f64,
    pub sensor: Sensor,
}

/// The absorbing sensor layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sensor {
    /// Total thickness in meters; 0 means no absorption model (capture fraction 1).
    pub thickness: f64,
    /// Depth step between layers in meters.
    pub layer_step: f64,
    /// Number of layers.
    pub layers: usize,
    /// Linear attenuation coefficient in 1/m.
    pub attenuation: f64,
}

impl Sensor {
    /// The layer logic of the reference program: with a thickness and no layer count,
    /// two layers half the thickness apart; with a count `n`, `max(n, 2)` layers
    /// `thickness/(max(n, 2) - 1)` apart, so 1 and 2 both give two layers a whole
    /// thickness apart; an unset attenuation depth equals the thickness.
    pub fn new(thickness: f64, requested_layers: usize, attenuation_depth: Option<f64>) -> Sensor {
        if thickness <= 0.0 {
            return Sensor { thickness: 0.0, layer_step: 0.0, layers: 1, attenuation: 0.0 };
        }
        let (layers, layer_step) = if requested_layers == 0 {
            (2, thickness / 2.0)
        } else {
            let layers = requested_layers.max(2);
            (layers, thickness / (layers - 1) as f64)
        };
        let attenuation = match attenuation_depth {
            Some(depth) => 1.0 / depth,
            None => 1.0 / thickness,
        };
        Sensor { thickness, layer_step, layers, attenuation }
    }
}

/// What the detector is built from (meters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    pub pixels: usize,
    pub pixel_size: f64,
    pub distance: f64,
    /// `(Xbeam, Ybeam)` in meters; `None` centers the beam.
    pub beam_center: Option<(f64, f64)>,
    pub sensor: Sensor,
}

impl Detector {
    pub fn new(config: &DetectorConfig) -> Detector {
        let pixel_size = config.pixel_size;
        let fast_pixels = config.pixels;
        let slow_pixels = config.pixels;
        let detector_size_fast = pixel_size * fast_pixels as f64;
        let detector_size_slow = pixel_size * slow_pixels as f64;
        let (x_beam, y_beam) = config
            .beam_center
            .unwrap_or(((detector_size_slow + pixel_size) / 2.0, (detector_size_fast + pixel_size) / 2.0));
        let beam_axis = Vec3::new(1.0, 0.0, 0.0);
        let normal_axis = Vec3::new(1.0, 0.0, 0.0);
        let fast_axis = Vec3::new(0.0, 0.0, 1.0);
        let slow_axis = Vec3::new(0.0, -1.0, 0.0);
        let polarization_axis = Vec3::new(0.0, 0.0, 1.0);
        let f_beam = y_beam + 0.5 * pixel_size;
        let s_beam = x_beam + 0.5 * pixel_size;

        // The BEAM pivot keeps the direct-beam spot where the beam center says, at
        // `distance` along the beam; the detector is not rotated, so the ratio of the
        // two distances is `b . o = 1`.
        let mut ratio = beam_axis.dot(normal_axis);
        if ratio == 0.0 {
            ratio = f64::MIN_POSITIVE;
        }
        let close_distance = (ratio * config.distance).abs();
        let distance = close_distance / ratio;
        let pix0 = Vec3::new(
            -f_beam * fast_axis.x - s_beam * slow_axis.x + distance * beam_axis.x,
            -f_beam * fast_axis.y - s_beam * slow_axis.y + distance * beam_axis.y,
            -f_beam * fast_axis.z - s_beam * slow_axis.z + distance * beam_axis.z,
        );
        let close_distance = pix0.dot(normal_axis);
        let distance = close_distance / ratio;
        Detector {
            fast_pixels,
            slow_pixels,
            pixel_size,
            fast_axis,
            slow_axis,
            normal_axis,
            beam_axis,
            polarization_axis,
            pix0,
            distance,
            close_distance,
            x_beam,
            y_beam,
            f_beam,
            s_beam,
            sensor: config.sensor,
        }
    }

    pub fn pixels(&self) -> usize {
        self.fast_pixels * self.slow_pixels
    }
}

/// Degrees per radian, computed as the reference program does (`180 * M_1_PI`).
pub fn rtd() -> f64 {
    180.0 * FRAC_1_PI
}
