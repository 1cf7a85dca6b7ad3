//! The `simulator` kernel: nanoBragg-style X-ray diffraction images of a small crystal.
//!
//! For every pixel of a flat detector it sums the Bragg intensity `F_cell^2 F_latt^2`
//! over subpixels and sensor layers, then applies the polarization, solid-angle and
//! capture-fraction corrections (the model and its formulas are in `model.rs`,
//! `geometry.rs`, `crystal.rs`, `hkl.rs` and `interpolate.rs`). Two paths render the
//! same typed [`SimulatorParams`]: `scalar` (the loop as written, one thread; the
//! reference) and `fast` (rows in parallel, vectorized inner loops, runtime dispatch).
//!
//! Set-up builds the geometry and loads or generates the structure factors (so a cold
//! sample includes the HKL load); each run renders the image. The defaults are the
//! benchmark configuration: `default_F = 100`, cell 100 100 100 90 90 90, lambda 6.2 A,
//! N = 5, distance 100 mm, 512 x 512 pixels of 0.1 mm.
//!
//! Metrics per sample: `pixels_per_s`, `render_s`, `interpolation_warnings`, `max_i`,
//! `mean_i`, `sum_i`. Output: `image`, f32 of shape `[slow, fast]`, fast-major. With
//! `floatfile` set the image is also written there as raw little-endian float32 (the
//! reference's `-floatfile` layout), inside the timed step, as the reference does.

pub mod crystal;
pub mod fast;
pub mod geometry;
pub mod hkl;
pub mod interpolate;
pub mod model;
pub mod scalar;
pub mod vector_math;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::PathBuf;

use anyhow::Context;

use crate::kernel::{
    Better, Instance, Kernel, MetricSpec, Output, OutputData, ParamKind, ParamSpec, Params, Probe, Resources,
    RunContext, Stopped, Value,
};

use crystal::{Cell, Crystal};
use fast::InstructionSet;
use geometry::{Detector, DetectorConfig, Sensor, Vec3};
use hkl::HklGrid;
use model::{RenderOutcome, Simulation};

pub struct Simulator;

/// Which implementation renders the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderPath {
    Scalar,
    Fast,
}

/// Where the structure factors come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HklSource {
    /// Every reflection has `default_F`.
    None,
    /// The deterministic grid of `hkl.rs`, generated in memory.
    Synthetic,
    File(PathBuf),
}

/// Whether structure factors are interpolated between grid points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpolationMode {
    /// On when HKL data is loaded and some crystal axis has at most 2 cells.
    Auto,
    On,
    Off,
}

/// Which compiled variant of the fast path runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionSetChoice {
    Auto,
    Fixed(InstructionSet),
}

/// The typed parameters of one simulation (units as named).
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorParams {
    pub path: RenderPath,
    /// Pixels per side of the square detector.
    pub detector_pixels: usize,
    pub pixel_mm: f64,
    pub distance_mm: f64,
    /// `(Xbeam, Ybeam)` in mm, MOSFLM convention; `None` centers the beam.
    pub beam_center_mm: Option<[f64; 2]>,
    pub wavelength_angstrom: f64,
    pub cell: Cell,
    /// Unit cells along a, b, c.
    pub cells: [u32; 3],
    pub default_f: f64,
    pub hkl: HklSource,
    pub interpolate: InterpolationMode,
    /// Subpixels per axis; 0 picks the reference's recommendation.
    pub oversample: usize,
    pub kahn_factor: f64,
    pub thickness_um: f64,
    /// Attenuation depth of the sensor; `None` uses the thickness.
    pub attenuation_depth_um: Option<f64>,
    /// Sensor layers; 0 picks two half the thickness apart (see [`Sensor::new`]).
    pub thicksteps: usize,
    pub misset_degrees: [f64; 3],
    /// Photons per square meter; kernel runs use [`model::DEFAULT_FLUENCE`], with which
    /// `r_e^2 * fluence = 1`.
    pub fluence: f64,
    pub instruction_set: InstructionSetChoice,
    /// Raw float32 image written after every run.
    pub floatfile: Option<PathBuf>,
    /// HKL text file the structure factors are written to in set-up.
    pub write_hkl: Option<PathBuf>,
}

impl Default for SimulatorParams {
    /// The benchmark configuration at 512 x 512 pixels.
    fn default() -> Self {
        SimulatorParams {
            path: RenderPath::Fast,
            detector_pixels: 512,
            pixel_mm: 0.1,
            distance_mm: 100.0,
            beam_center_mm: None,
            wavelength_angstrom: 6.2,
            cell: Cell { a: 100.0, b: 100.0, c: 100.0, alpha: 90.0, beta: 90.0, gamma: 90.0 },
            cells: [5; 3],
            default_f: 100.0,
            hkl: HklSource::None,
            interpolate: InterpolationMode::Auto,
            oversample: 0,
            kahn_factor: 0.0,
            thickness_um: 0.0,
            attenuation_depth_um: None,
            thicksteps: 0,
            misset_degrees: [0.0; 3],
            fluence: model::DEFAULT_FLUENCE,
            instruction_set: InstructionSetChoice::Auto,
            floatfile: None,
            write_hkl: None,
        }
    }
}

const MAX_DETECTOR_PIXELS: i64 = 1 << 15;

/// The most subpixels per axis a render may use, given or automatic. The automatic
/// value is held to the same limit as the parameter, so that what a spec can ask for
/// bounds the time and memory of a run either way.
const MAX_OVERSAMPLE: i64 = 64;

impl SimulatorParams {
    /// Converts validated kernel parameters, checking what the declarations cannot.
    pub fn from_params(params: &Params) -> Result<SimulatorParams, String> {
        let cell = Cell::from_slice(&params.float_list("cell")).ok_or("`cell` needs 6 numbers")?;
        let beam_center_mm = match params.float_list("beam_center_mm").as_slice() {
            [] => None,
            // As far off the detector as `distance_mm` may be from the crystal: beyond,
            // the squared distances of the geometry overflow.
            &[x_beam, y_beam] if x_beam.abs() > 1e7 || y_beam.abs() > 1e7 => {
                return Err(format!("`beam_center_mm` [{x_beam:?}, {y_beam:?}] is out of range -1e7..=1e7 mm"));
            }
            &[x_beam, y_beam] => Some([x_beam, y_beam]),
            other => {
                return Err(format!("`beam_center_mm` takes 2 numbers (Xbeam, Ybeam) or none, found {}", other.len()));
            }
        };
        let misset = params.float_list("misset_deg");
        let misset_degrees: [f64; 3] = misset.as_slice().try_into().map_err(|_| "`misset_deg` needs 3 numbers")?;
        let n_cells = params.int("n_cells");
        let cells = ["na", "nb", "nc"].map(|name| match params.int(name) {
            0 => n_cells as u32,
            given => given as u32,
        });
        let hkl = match params.text("hkl") {
            "" => HklSource::None,
            "synthetic" => HklSource::Synthetic,
            path => HklSource::File(PathBuf::from(path)),
        };
        let optional_path = |name: &str| Some(params.text(name)).filter(|text| !text.is_empty()).map(PathBuf::from);
        let simulator_params = SimulatorParams {
            path: if params.text("path") == "scalar" { RenderPath::Scalar } else { RenderPath::Fast },
            detector_pixels: params.usize("detpixels"),
            pixel_mm: params.float("pixel_mm"),
            distance_mm: params.float("distance_mm"),
            beam_center_mm,
            wavelength_angstrom: params.float("lambda_a"),
            cell,
            cells,
            default_f: params.float("default_f"),
            hkl,
            interpolate: match params.text("interpolate") {
                "on" => InterpolationMode::On,
                "off" => InterpolationMode::Off,
                _ => InterpolationMode::Auto,
            },
            oversample: params.usize("oversample"),
            kahn_factor: params.float("kahn_factor"),
            thickness_um: params.float("thickness_um"),
            attenuation_depth_um: Some(params.float("attenuation_depth_um")).filter(|depth| *depth > 0.0),
            thicksteps: params.usize("thicksteps"),
            misset_degrees,
            fluence: model::DEFAULT_FLUENCE,
            instruction_set: match params.text("instruction_set") {
                "portable" => InstructionSetChoice::Fixed(InstructionSet::Portable),
                "avx2" => InstructionSetChoice::Fixed(InstructionSet::Avx2),
                "avx512" => InstructionSetChoice::Fixed(InstructionSet::Avx512),
                _ => InstructionSetChoice::Auto,
            },
            floatfile: optional_path("floatfile"),
            write_hkl: optional_path("write_hkl"),
        };
        simulator_params.validate()?;
        Ok(simulator_params)
    }

    /// Cross-parameter checks.
    pub fn validate(&self) -> Result<(), String> {
        self.cell.validate()?;
        if self.detector_pixels == 0 || self.detector_pixels as i64 > MAX_DETECTOR_PIXELS {
            return Err(format!("`detpixels` must be in 1..={MAX_DETECTOR_PIXELS}"));
        }
        if self.cells.contains(&0) {
            return Err("cell counts must be at least 1".into());
        }
        self.validate_oversample()?;
        let (largest_amplitude, source) = match &self.hkl {
            HklSource::None | HklSource::File(_) => (self.default_f.abs(), "`default_f`"),
            HklSource::Synthetic => (
                (hkl::SYNTHETIC_AMPLITUDE_BOUND * model::TRICUBIC_OVERSHOOT).max(self.default_f.abs()),
                "the synthetic grid's bound with interpolation",
            ),
        };
        self.check_peak(&self.simulation(None), largest_amplitude, source)?;
        if self.interpolate == InterpolationMode::On && self.hkl == HklSource::None {
            return Err("`interpolate = \"on\"` needs structure factors: set `hkl` to a file or \"synthetic\"".into());
        }
        if self.write_hkl.is_some() && self.hkl == HklSource::None {
            return Err("`write_hkl` needs structure factors: set `hkl` to a file or \"synthetic\"".into());
        }
        Ok(())
    }

    /// Refuses an oversampling above [`MAX_OVERSAMPLE`], given or automatic. The
    /// automatic value grows with the crystal size over `lambda * distance / pixel` and
    /// has no limit of its own (at 1 A, 100 mm and 0.1 mm pixels, 10^5 cells of 100 A
    /// ask for 30,000 per axis);
    /// clamping it would silently render a different image than the reference, so the
    /// parameters are refused and the message says what to set.
    fn validate_oversample(&self) -> Result<(), String> {
        let limit = MAX_OVERSAMPLE as usize;
        if self.oversample > limit {
            return Err(format!("`oversample` must be in 0..={limit}, found {}", self.oversample));
        }
        let oversample = self.effective_oversample();
        if oversample <= limit {
            return Ok(());
        }
        let (crystal, _) = self.geometry();
        let [na, nb, nc] = self.cells;
        Err(format!(
            "the automatic oversample (`oversample = 0`) is ceil(3 * crystal size / (lambda * distance / pixel)) = \
             {oversample} subpixels per axis here (crystal size {:.3} um from `cell` and {na} x {nb} x {nc} cells, \
             `lambda_a` = {}, `distance_mm` = {}, `pixel_mm` = {}), above the limit of {limit}: set `oversample` \
             to at most {limit}, or use fewer cells",
            model::crystal_size(&crystal, self.cells) * 1e6,
            self.wavelength_angstrom,
            self.distance_mm,
            self.pixel_mm,
        ))
    }

    /// Refuses a simulation whose pixel values could exceed the f32 range of the image,
    /// by the peak bound of `model.rs`; `source` names where `largest_amplitude` comes from.
    fn check_peak(&self, simulation: &Simulation, largest_amplitude: f64, source: &str) -> Result<(), String> {
        let bound = simulation.peak_intensity_bound(largest_amplitude);
        if bound <= f64::from(f32::MAX) {
            return Ok(());
        }
        let [na, nb, nc] = self.cells;
        Err(format!(
            "pixel values could reach {bound:.3e}, beyond the largest f32 ({:.3e}) of the image: the bound \
             r_e^2 fluence * layers * F^2 * (Na Nb Nc)^2 * polarization * (pixel / distance)^2 has \
             F = {largest_amplitude:.3e} from {source}, {na} x {nb} x {nc} cells, {} sensor layer(s), \
             `pixel_mm` = {}, `distance_mm` = {}; lower the structure factors or use fewer cells",
            f32::MAX,
            simulation.detector.sensor.layers,
            self.pixel_mm,
            self.distance_mm,
        ))
    }

    /// The crystal and the detector the parameters describe.
    fn geometry(&self) -> (Crystal, Detector) {
        let sensor =
            Sensor::new(self.thickness_um * 1e-6, self.thicksteps, self.attenuation_depth_um.map(|depth| depth * 1e-6));
        let detector = Detector::new(&DetectorConfig {
            pixels: self.detector_pixels,
            pixel_size: self.pixel_mm / 1000.0,
            distance: self.distance_mm / 1000.0,
            beam_center: self.beam_center_mm.map(|[x_beam, y_beam]| (x_beam / 1000.0, y_beam / 1000.0)),
            sensor,
        });
        (Crystal::new(&self.cell, self.misset_degrees), detector)
    }

    /// Subpixels per axis of the render: `oversample`, or the reference's
    /// recommendation when it is 0.
    pub fn effective_oversample(&self) -> usize {
        match self.oversample {
            0 => {
                let (crystal, detector) = self.geometry();
                model::recommended_oversample(&crystal, self.cells, self.wavelength_angstrom / 1.0e10, &detector)
            }
            given => given,
        }
    }

    /// Peak memory of a run: the image, its output copy, the column terms (one per
    /// column and subpixel column, at the effective oversampling) and the synthetic
    /// grid (an HKL file's grid is only known once it is read).
    pub fn memory_bytes(&self) -> u64 {
        let pixels = (self.detector_pixels * self.detector_pixels) as u64;
        let columns = (3 * 8 * (self.detector_pixels + fast::LANES) as u64)
            .saturating_mul(self.effective_oversample().max(1) as u64);
        let synthetic =
            if self.hkl == HklSource::Synthetic { 8 * ((2 * hkl::SYNTHETIC_EXTENT + 1) as u64).pow(3) } else { 0 };
        (2 * 4 * pixels + synthetic).saturating_add(columns)
    }

    /// Builds the simulation (geometry, effective interpolation and oversampling) for
    /// the given structure factors.
    pub fn simulation(&self, hkl: Option<HklGrid>) -> Simulation {
        let wavelength = self.wavelength_angstrom / 1.0e10;
        let (crystal, detector) = self.geometry();
        let oversample = self.effective_oversample();
        let interpolate = hkl.is_some()
            && match self.interpolate {
                InterpolationMode::Auto => self.cells.iter().any(|&cells| cells <= 2),
                InterpolationMode::On => true,
                InterpolationMode::Off => false,
            };
        Simulation {
            incident: detector.beam_axis,
            detector,
            crystal,
            cells: self.cells,
            wavelength,
            intensity_scale: model::ELECTRON_RADIUS_SQUARED * self.fluence,
            kahn_factor: self.kahn_factor,
            default_f: self.default_f,
            hkl,
            interpolate,
            oversample,
        }
    }

    /// Loads or generates the structure factors.
    pub fn load_structure_factors(&self) -> anyhow::Result<Option<HklGrid>> {
        Ok(match &self.hkl {
            HklSource::None => None,
            HklSource::Synthetic => Some(HklGrid::synthetic()),
            HklSource::File(path) => Some(HklGrid::load(path, self.default_f)?),
        })
    }
}

/// Renders `simulation` into `image` along the chosen path.
pub fn render(
    simulation: &Simulation,
    path: RenderPath,
    instruction_set: InstructionSet,
    image: &mut [f32],
) -> RenderOutcome {
    match path {
        RenderPath::Scalar => scalar::render(simulation, image),
        RenderPath::Fast => fast::render_with(simulation, image, instruction_set),
    }
}

/// [`render`], given up once `stop` returns true, which either path asks before every
/// detector row; [`Stopped`] counts the rows finished.
pub fn render_until(
    simulation: &Simulation,
    path: RenderPath,
    instruction_set: InstructionSet,
    image: &mut [f32],
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<RenderOutcome, Stopped> {
    match path {
        RenderPath::Scalar => scalar::render_until(simulation, image, stop),
        RenderPath::Fast => fast::render_until(simulation, image, instruction_set, stop),
    }
}

impl Kernel for Simulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    fn summary(&self) -> &'static str {
        "nanoBragg-style diffraction image of a small crystal: scalar reference or fast vectorized path"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let float = |min: f64, max: f64| ParamKind::Float { min, max };
        let floats = |values: &[f64]| Value::List(values.iter().map(|&value| Value::Float(value)).collect());
        vec![
            ParamSpec::new(
                "path",
                ParamKind::Choice(&["fast", "scalar"]),
                Value::from("fast"),
                "implementation: `fast` (parallel, vectorized) or `scalar` (the reference loop, one thread)",
            ),
            ParamSpec::new(
                "detpixels",
                ParamKind::Int { min: 1, max: MAX_DETECTOR_PIXELS },
                Value::Int(512),
                "pixels per side of the square detector",
            ),
            ParamSpec::new("pixel_mm", float(1e-6, 1e3), Value::Float(0.1), "pixel size in mm"),
            ParamSpec::new("distance_mm", float(1e-3, 1e7), Value::Float(100.0), "crystal to detector distance in mm"),
            ParamSpec::new(
                "beam_center_mm",
                ParamKind::FloatList { len: None },
                Value::List(vec![]),
                "MOSFLM beam center [Xbeam, Ybeam] in mm, each in -1e7..=1e7; empty centers the beam",
            ),
            ParamSpec::new("lambda_a", float(1e-4, 1e4), Value::Float(6.2), "wavelength in Angstrom"),
            ParamSpec::new(
                "cell",
                ParamKind::FloatList { len: Some(6) },
                floats(&[100.0, 100.0, 100.0, 90.0, 90.0, 90.0]),
                "unit cell a b c (Angstrom) alpha beta gamma (degrees)",
            ),
            ParamSpec::new(
                "n_cells",
                ParamKind::Int { min: 1, max: 1_000_000 },
                Value::Int(5),
                "unit cells along each axis (Na = Nb = Nc)",
            ),
            ParamSpec::new("na", ParamKind::Int { min: 0, max: 1_000_000 }, Value::Int(0), "cells along a; 0: n_cells"),
            ParamSpec::new("nb", ParamKind::Int { min: 0, max: 1_000_000 }, Value::Int(0), "cells along b; 0: n_cells"),
            ParamSpec::new("nc", ParamKind::Int { min: 0, max: 1_000_000 }, Value::Int(0), "cells along c; 0: n_cells"),
            ParamSpec::new(
                "default_f",
                float(0.0, 1e12),
                Value::Float(100.0),
                "structure factor amplitude of reflections absent from the HKL data",
            ),
            ParamSpec::new(
                "hkl",
                ParamKind::Text,
                Value::from(""),
                "structure factors: an HKL text file (`h k l F` lines), `synthetic`, or empty for default_f only",
            ),
            ParamSpec::new(
                "interpolate",
                ParamKind::Choice(&["auto", "on", "off"]),
                Value::from("auto"),
                "tricubic interpolation of structure factors; auto: on when HKL data is loaded and some N <= 2",
            ),
            ParamSpec::new(
                "oversample",
                ParamKind::Int { min: 0, max: MAX_OVERSAMPLE },
                Value::Int(0),
                "subpixels per axis; 0: ceil(3 * crystal size / (lambda * distance / pixel)), which must not exceed 64",
            ),
            ParamSpec::new("kahn_factor", float(-1.0, 1.0), Value::Float(0.0), "Kahn polarization factor"),
            ParamSpec::new(
                "thickness_um",
                float(0.0, 1e6),
                Value::Float(0.0),
                "detector sensor thickness in micrometres; 0 disables the absorption model",
            ),
            ParamSpec::new(
                "attenuation_depth_um",
                float(0.0, 1e9),
                Value::Float(0.0),
                "sensor attenuation depth in micrometres; 0: equal to the thickness",
            ),
            ParamSpec::new(
                "thicksteps",
                ParamKind::Int { min: 0, max: 1000 },
                Value::Int(0),
                "sensor layers with a thickness: n >= 2 layers thickness/(n-1) apart, 1 as 2; 0: two layers thickness/2 apart",
            ),
            ParamSpec::new(
                "misset_deg",
                ParamKind::FloatList { len: Some(3) },
                floats(&[0.0, 0.0, 0.0]),
                "crystal rotation about x, then y, then z, in degrees",
            ),
            ParamSpec::new(
                "instruction_set",
                ParamKind::Choice(&["auto", "portable", "avx2", "avx512"]),
                Value::from("auto"),
                "compiled variant of the fast path; auto: the fastest the CPU supports for the configuration",
            ),
            ParamSpec::new(
                "floatfile",
                ParamKind::Text,
                Value::from(""),
                "write the image here as raw float32 after every run (inside the timed step)",
            ),
            ParamSpec::new(
                "write_hkl",
                ParamKind::Text,
                Value::from(""),
                "write the structure factors here as an HKL text file during set-up",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("pixels_per_s", "1/s", Better::Higher, "detector pixels divided by the render time"),
            MetricSpec::new("render_s", "s", Better::Lower, "time of the pixel loop alone"),
            MetricSpec::new(
                "interpolation_warnings",
                "",
                Better::Neither,
                "out-of-range interpolation warnings in the image (0 or 1)",
            ),
            MetricSpec::new("max_i", "photons", Better::Neither, "largest pixel value"),
            MetricSpec::new("mean_i", "photons", Better::Neither, "mean pixel value"),
            MetricSpec::new("sum_i", "photons", Better::Neither, "sum of the pixel values"),
        ]
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["image"]
    }

    fn check(&self, params: &Params) -> Result<Resources, String> {
        let simulator_params = SimulatorParams::from_params(params)?;
        let disk_bytes = if simulator_params.floatfile.is_some() {
            4 * (simulator_params.detector_pixels * simulator_params.detector_pixels) as u64
        } else {
            0
        };
        Ok(Resources { memory_bytes: simulator_params.memory_bytes(), disk_bytes })
    }

    fn instantiate(&self, params: &Params, _context: &RunContext) -> anyhow::Result<Box<dyn Instance>> {
        let params = SimulatorParams::from_params(params).map_err(anyhow::Error::msg)?;
        Ok(Box::new(SimulatorInstance { params, prepared: None, image: Vec::new() }))
    }
}

struct Prepared {
    simulation: Simulation,
    instruction_set: InstructionSet,
}

struct SimulatorInstance {
    params: SimulatorParams,
    prepared: Option<Prepared>,
    image: Vec<f32>,
}

impl Instance for SimulatorInstance {
    fn setup(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        if let InstructionSetChoice::Fixed(set) = self.params.instruction_set
            && !set.is_supported()
        {
            anyhow::bail!("this CPU does not support the {} fast path", set.name());
        }
        let hkl = self.params.load_structure_factors()?;
        if let (Some(path), Some(grid)) = (&self.params.write_hkl, &hkl) {
            grid.write(path).with_context(|| format!("cannot write HKL file {}", path.display()))?;
        }
        let simulation = self.params.simulation(hkl);
        // An HKL file's amplitudes are only known now; the other sources were bounded
        // when the parameters were checked.
        if let HklSource::File(path) = &self.params.hkl {
            let source = format!("the amplitudes of {} or `default_f`", path.display());
            self.params.check_peak(&simulation, simulation.largest_amplitude(), &source).map_err(anyhow::Error::msg)?;
        }
        let instruction_set = match self.params.instruction_set {
            InstructionSetChoice::Fixed(set) => set,
            InstructionSetChoice::Auto => InstructionSet::detect_for(&simulation),
        };
        let detector = &simulation.detector;
        let mut fields = vec![
            ("path", Value::from(if self.params.path == RenderPath::Scalar { "scalar" } else { "fast" })),
            ("instruction_set", Value::from(instruction_set.name())),
            ("oversample", Value::from(simulation.oversample)),
            ("interpolate", Value::from(simulation.interpolate)),
            ("sensor_layers", Value::from(detector.sensor.layers)),
            ("pix0_m", vector_value(detector.pix0)),
        ];
        if let Some(grid) = &simulation.hkl {
            fields.push(("hkl_reflections", Value::from(grid.reflections)));
            fields.push((
                "hkl_grid",
                Value::from(format!(
                    "h {}..{}, k {}..{}, l {}..{}",
                    grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max
                )),
            ));
        }
        probe.event("simulator_setup", fields);
        self.image = vec![0.0; detector.pixels()];
        self.prepared = Some(Prepared { simulation, instruction_set });
        Ok(())
    }

    fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let prepared = self.prepared.as_ref().context("run before set-up")?;
        let simulation = &prepared.simulation;
        let deadline = probe.deadline();
        let start = probe.start();
        let outcome = render_until(simulation, self.params.path, prepared.instruction_set, &mut self.image, &|| {
            deadline.passed()
        })
        .map_err(|stopped| deadline.stopped(stopped, "detector rows"))?;
        let render_time = probe.phase("render", start);
        outcome.check_finite().map_err(anyhow::Error::msg)?;
        let pixels = self.image.len() as f64;
        probe.metric("pixels_per_s", pixels / render_time.as_secs_f64().max(1e-12));
        probe.metric("interpolation_warnings", if outcome.fallback.is_some() { 1.0 } else { 0.0 });
        probe.metric("max_i", outcome.max);
        probe.metric("mean_i", outcome.sum / pixels);
        probe.metric("sum_i", outcome.sum);
        if let (Some(fallback), Some(grid)) = (outcome.fallback, &simulation.hkl) {
            probe.warn(fallback.message(grid));
        }
        if let Some(path) = &self.params.floatfile {
            let bytes: Vec<u8> = self.image.iter().flat_map(|value| value.to_le_bytes()).collect();
            fs::write(path, bytes).with_context(|| format!("cannot write float image {}", path.display()))?;
        }
        Ok(())
    }

    fn outputs(&mut self) -> Vec<Output> {
        let side = self.params.detector_pixels;
        vec![Output { name: "image".into(), shape: vec![side, side], data: OutputData::F32(self.image.clone()) }]
    }
}

fn vector_value(vector: Vec3) -> Value {
    Value::List(vec![Value::Float(vector.x), Value::Float(vector.y), Value::Float(vector.z)])
}
