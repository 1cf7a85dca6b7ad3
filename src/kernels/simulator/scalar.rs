//! The scalar reference path: the per-pixel loop of the model (see `model.rs`) as
//! written, one pixel at a time on one thread, with the C library's `sin`, `exp` and
//! `atan2` and the reference form of the tricubic interpolation.
//!
//! It is the yardstick the fast path is checked against, and the fast path also calls
//! [`pixel`] for the rare pixels whose serial semantics it does not reproduce in bulk
//! (the pixel where interpolation switches off, and pixels whose omega, polarization or
//! capture fraction comes out exactly zero).

use std::f64::consts::PI;

use super::geometry::Vec3;
use super::interpolate;
use super::model::{InterpolationFallback, RenderOutcome, RowStatistics, Simulation, polarization_factor, sincg};
use crate::kernel::Stopped;

/// Whether interpolation is still on, and where it was switched off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterpolationState {
    pub on: bool,
    pub fallback: Option<InterpolationFallback>,
}

/// Renders the whole image (`fast_pixels * slow_pixels` values, slow-major).
pub fn render(simulation: &Simulation, image: &mut [f32]) -> RenderOutcome {
    Stopped::never(render_until(simulation, image, &|| false))
}

/// [`render`], given up once `stop` returns true (it is asked before every row);
/// [`Stopped`] counts the rows finished.
pub fn render_until(
    simulation: &Simulation,
    image: &mut [f32],
    stop: &dyn Fn() -> bool,
) -> Result<RenderOutcome, Stopped> {
    let fast_pixels = simulation.detector.fast_pixels;
    let slow_pixels = simulation.detector.slow_pixels;
    let mut state = InterpolationState { on: simulation.interpolate, fallback: None };
    let mut rows = Vec::with_capacity(slow_pixels);
    for (slow_pixel, row) in image.chunks_mut(fast_pixels).enumerate() {
        if stop() {
            return Err(Stopped { done: slow_pixel, total: slow_pixels });
        }
        for (fast_pixel, value) in row.iter_mut().enumerate() {
            *value = pixel(simulation, fast_pixel, slow_pixel, &mut state);
        }
        rows.push(RowStatistics::of(row));
    }
    Ok(RenderOutcome::from_rows(&rows, state.fallback))
}

/// One pixel's value; `state` carries the interpolation switch across pixels in serial order.
pub fn pixel(simulation: &Simulation, fast_pixel: usize, slow_pixel: usize, state: &mut InterpolationState) -> f32 {
    let detector = &simulation.detector;
    let sensor = detector.sensor;
    let crystal = &simulation.crystal;
    let oversample = simulation.oversample;
    let subpixel_size = simulation.subpixel_size();
    let cells = simulation.cells.map(f64::from);
    let (fast_axis, slow_axis, normal_axis, pix0) =
        (detector.fast_axis, detector.slow_axis, detector.normal_axis, detector.pix0);
    let wavelength = simulation.wavelength;

    let mut intensity = 0.0;
    let mut polar = 0.0;
    let mut omega = 0.0;
    let mut capture_fraction = 0.0;
    for layer in 0..sensor.layers {
        let depth = layer as f64 * sensor.layer_step;
        capture_fraction = if sensor.thickness == 0.0 { 1.0 } else { 0.0 };
        for sub_slow in 0..oversample {
            for sub_fast in 0..oversample {
                let fast_position = subpixel_size * (fast_pixel * oversample + sub_fast) as f64 + subpixel_size / 2.0;
                let slow_position = subpixel_size * (slow_pixel * oversample + sub_slow) as f64 + subpixel_size / 2.0;
                let position = Vec3::new(
                    fast_position * fast_axis.x + slow_position * slow_axis.x + depth * normal_axis.x + pix0.x,
                    fast_position * fast_axis.y + slow_position * slow_axis.y + depth * normal_axis.y + pix0.y,
                    fast_position * fast_axis.z + slow_position * slow_axis.z + depth * normal_axis.z + pix0.z,
                );
                let (diffracted, airpath) = position.unit();
                if omega == 0.0 {
                    omega = detector.pixel_size * detector.pixel_size / airpath / airpath * detector.close_distance
                        / airpath;
                }
                if capture_fraction == 0.0 {
                    let parallax = diffracted.dot(normal_axis);
                    let attenuation = sensor.attenuation;
                    capture_fraction = (-(layer as f64) * sensor.layer_step * attenuation / parallax).exp()
                        - (-((layer + 1) as f64) * sensor.layer_step * attenuation / parallax).exp();
                }

                let incident = simulation.incident;
                let scattering = Vec3::new(
                    (diffracted.x - incident.x) / wavelength,
                    (diffracted.y - incident.y) / wavelength,
                    (diffracted.z - incident.z) / wavelength,
                );
                if polar == 0.0 {
                    polar =
                        polarization_factor(simulation.kahn_factor, incident, diffracted, detector.polarization_axis);
                }

                let h = crystal.a.dot(scattering);
                let k = crystal.b.dot(scattering);
                let l = crystal.c.dot(scattering);
                let mut lattice_factor = 1.0;
                for (index, cells) in [h, k, l].into_iter().zip(cells) {
                    if cells > 1.0 {
                        lattice_factor *= sincg(PI * index, cells);
                    }
                }
                if lattice_factor == 0.0 {
                    continue;
                }

                let mut structure_factor = simulation.default_f;
                if state.on
                    && let Some(grid) = &simulation.hkl
                    && !interpolate::in_range(grid, h, k, l)
                {
                    state.fallback.get_or_insert(InterpolationFallback { fast_pixel, slow_pixel, miller: [h, k, l] });
                    state.on = false;
                }
                match &simulation.hkl {
                    Some(grid) if state.on => structure_factor = interpolate::tricubic_reference(grid, h, k, l),
                    Some(grid) => {
                        let nearest = [h, k, l].map(|index| (index - 0.5).ceil());
                        if nearest.iter().all(|index| index.abs() < 1e9) {
                            let [h0, k0, l0] = nearest.map(|index| index as i64);
                            if grid.contains(h0, k0, l0) {
                                structure_factor = grid.get(h0 as i32, k0 as i32, l0 as i32);
                            }
                        }
                    }
                    None => {}
                }
                intensity += structure_factor * structure_factor * lattice_factor * lattice_factor;
            }
        }
    }
    let mut value = simulation.intensity_scale * intensity / simulation.steps();
    value *= capture_fraction;
    value *= polar;
    value *= omega;
    value as f32
}
