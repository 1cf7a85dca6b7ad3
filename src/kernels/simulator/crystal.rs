//! The crystal: a unit cell turned into real-space and reciprocal-space lattice vectors.
//!
//! From the cell `a b c alpha beta gamma`:
//! `V = 2abc sqrt(|sin s sin(s-alpha) sin(s-beta) sin(s-gamma)|)` with
//! `s = (alpha+beta+gamma)/2`; reciprocal lengths `a* = bc sin(alpha)/V` (cyclic);
//! `cos(alpha*) = (cos beta cos gamma - cos alpha)/(sin beta sin gamma)` (cyclic). The
//! default orientation is `a* = (a*,0,0)`, `b* = (b* cos gamma*, b* sin gamma*, 0)`,
//! `c* = (c* cos beta*, c*(cos alpha* - cos beta* cos gamma*)/sin gamma*, c* V/(abc sin gamma*))`.
//! A misset rotates `a*, b*, c*` about X, then Y, then Z. The real vectors are
//! `a = V (b* x c*)` with `|b* x c*|` forced to `a/V` (cyclic), and the reciprocal vectors
//! are rebuilt from them as their dual basis, `a* = (b x c)/(a . (b x c))`, so
//! `a . a* = 1` and `a . b* = 0` hold for the lattice that is simulated.
//!
//! **A property of this construction, kept for parity.** In the default orientation the
//! real `c` lies along z, so the exact dual basis has `c*_z = 1/c`; the formula above
//! gives `sin(gamma)/(c sin(gamma*))`, which is the same only when
//! `sin(gamma) = sin(gamma*)`, for instance when `alpha = beta = 90`. Otherwise the
//! simulated real cell has the input lengths but slightly different angles: the cell
//! 70 80 90 75 85 95 is simulated with angles 75.039 85.014 95.008 and a volume
//! 2.0e-4 larger, and 5 5 5 60 60 60 with a volume 4.4% smaller. The C reference builds
//! exactly this lattice, so images stay comparable with it; orthogonal, monoclinic
//! (beta != 90 only) and hexagonal cells are exact.
//!
//! Every operation keeps the reference program's order of floating-point operations.

use super::geometry::{Vec3, rtd};

/// A unit cell: lengths in Angstrom, angles in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl Cell {
    pub fn from_slice(values: &[f64]) -> Option<Cell> {
        match *values {
            [a, b, c, alpha, beta, gamma] => Some(Cell { a, b, c, alpha, beta, gamma }),
            _ => None,
        }
    }

    /// Checks that the cell describes a real parallelepiped.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.a > 0.0 && self.b > 0.0 && self.c > 0.0) {
            return Err(format!("cell lengths must be positive, found {} {} {}", self.a, self.b, self.c));
        }
        for angle in [self.alpha, self.beta, self.gamma] {
            if !(angle > 0.0 && angle < 180.0) {
                return Err(format!("cell angles must be in (0, 180) degrees, found {angle}"));
            }
        }
        // The rules in degrees, as written, so that a flat cell (120 120 120) is not
        // taken for a thin one by the rounding of the volume's sines.
        let (alpha, beta, gamma) = (self.alpha, self.beta, self.gamma);
        let broken = if alpha + beta + gamma >= 360.0 {
            Some("the angles must sum to less than 360")
        } else if alpha >= beta + gamma || beta >= alpha + gamma || gamma >= alpha + beta {
            Some("each angle must be less than the sum of the other two")
        } else if self.volume_factor() <= 1e-6 {
            Some("the cell is too flat to build reciprocal vectors from")
        } else {
            None
        };
        match broken {
            Some(rule) => Err(format!("cell angles {alpha} {beta} {gamma} describe no volume ({rule})")),
            None => Ok(()),
        }
    }

    /// The cell volume in cubic Angstrom (zero for impossible angles).
    pub fn volume(&self) -> f64 {
        2.0 * self.a * self.b * self.c * self.skew().sqrt()
    }

    /// The volume of the cell with unit lengths: what its angles leave of the cube's
    /// (zero for impossible angles).
    fn volume_factor(&self) -> f64 {
        2.0 * self.skew().sqrt()
    }

    /// The product of sines under the volume's square root, clamped at zero.
    fn skew(&self) -> f64 {
        let (alpha, beta, gamma) = (self.alpha.to_radians(), self.beta.to_radians(), self.gamma.to_radians());
        let half_sum = (alpha + beta + gamma) / 2.0;
        let skew = half_sum.sin() * (half_sum - alpha).sin() * (half_sum - beta).sin() * (half_sum - gamma).sin();
        skew.max(0.0)
    }
}

/// The crystal's lattice vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Crystal {
    /// Real-space cell vectors in meters (what the pixel loop uses).
    pub a: Vec3,
    pub b: Vec3,
    pub c: Vec3,
    /// Real-space cell vectors in Angstrom.
    pub a_angstrom: Vec3,
    pub b_angstrom: Vec3,
    pub c_angstrom: Vec3,
    /// Reciprocal-space cell vectors in 1/Angstrom.
    pub a_star: Vec3,
    pub b_star: Vec3,
    pub c_star: Vec3,
    /// Volume of the simulated cell in cubic Angstrom, `a . (b x c)`.
    pub volume: f64,
}

impl Crystal {
    /// Builds the lattice from a (validated) cell and misset angles in degrees.
    pub fn new(cell: &Cell, misset_degrees: [f64; 3]) -> Crystal {
        let (alpha, beta, gamma) = (cell.alpha / rtd(), cell.beta / rtd(), cell.gamma / rtd());
        let half_sum = (alpha + beta + gamma) / 2.0;
        let mut skew = half_sum.sin() * (half_sum - alpha).sin() * (half_sum - beta).sin() * (half_sum - gamma).sin();
        if skew < 0.0 {
            skew = -skew;
        }
        let mut volume = 2.0 * cell.a * cell.b * cell.c * skew.sqrt();
        if volume <= 0.0 {
            volume = f64::MIN_POSITIVE;
        }
        let inverse_volume = 1.0 / volume;

        let a_star_length = cell.b * cell.c * alpha.sin() * inverse_volume;
        let b_star_length = cell.c * cell.a * beta.sin() * inverse_volume;
        let c_star_length = cell.a * cell.b * gamma.sin() * inverse_volume;
        let mut sin_gamma_star = cell.c * inverse_volume / a_star_length / b_star_length;
        let mut cos_alpha_star = (beta.cos() * gamma.cos() - alpha.cos()) / (beta.sin() * gamma.sin());
        let mut cos_beta_star = (gamma.cos() * alpha.cos() - beta.cos()) / (gamma.sin() * alpha.sin());
        let mut cos_gamma_star = (alpha.cos() * beta.cos() - gamma.cos()) / (alpha.sin() * beta.sin());
        sin_gamma_star = sin_gamma_star.clamp(-1.0, 1.0);
        for cosine in [&mut cos_alpha_star, &mut cos_beta_star, &mut cos_gamma_star] {
            if *cosine * *cosine > 1.0 {
                *cosine = 1.0;
            }
        }

        let mut a_star = Vec3::new(a_star_length, 0.0, 0.0);
        let mut b_star = Vec3::new(b_star_length * cos_gamma_star, b_star_length * sin_gamma_star, 0.0);
        let mut c_star = Vec3::new(
            c_star_length * cos_beta_star,
            c_star_length * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star,
            c_star_length * volume / (cell.a * cell.b * cell.c * sin_gamma_star),
        );

        let [misset_x, misset_y, misset_z] = misset_degrees.map(|angle| angle / rtd());
        a_star = a_star.rotated_xyz(misset_x, misset_y, misset_z);
        b_star = b_star.rotated_xyz(misset_x, misset_y, misset_z);
        c_star = c_star.rotated_xyz(misset_x, misset_y, misset_z);

        // a = (b* x c*) V, with |b* x c*| forced to a/V so the user's lengths hold exactly.
        let b_star_cross_c_star = b_star.cross(c_star).rescaled(cell.a / volume);
        let c_star_cross_a_star = c_star.cross(a_star).rescaled(cell.b / volume);
        let a_star_cross_b_star = a_star.cross(b_star).rescaled(cell.c / volume);
        // The reference round-trips the volume through its inverse before scaling.
        let volume = 1.0 / (1.0 / volume);
        let a_angstrom = b_star_cross_c_star.scale(volume);
        let b_angstrom = c_star_cross_a_star.scale(volume);
        let c_angstrom = a_star_cross_b_star.scale(volume);

        // Rebuild the reciprocal vectors as the dual basis of the simulated lattice. The
        // reference divides by the input volume instead, which only differs for the
        // non-orthogonal cells described in the module documentation, and it uses the
        // reciprocal vectors for nothing this kernel models.
        let simulated_volume = a_angstrom.dot(b_angstrom.cross(c_angstrom));
        let a_star = b_angstrom.cross(c_angstrom).scale(1.0 / simulated_volume);
        let b_star = c_angstrom.cross(a_angstrom).scale(1.0 / simulated_volume);
        let c_star = a_angstrom.cross(b_angstrom).scale(1.0 / simulated_volume);

        Crystal {
            a: a_angstrom.scale(1e-10),
            b: b_angstrom.scale(1e-10),
            c: c_angstrom.scale(1e-10),
            a_angstrom,
            b_angstrom,
            c_angstrom,
            a_star,
            b_star,
            c_star,
            volume: simulated_volume,
        }
    }
}
