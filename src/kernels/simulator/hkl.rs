//! Structure factors: a dense grid of `F(h, k, l)` loaded from an HKL text file or
//! generated in memory.
//!
//! An HKL file holds one reflection per line, `h k l F`, separated by spaces or tabs;
//! blank lines and lines starting with `#` are skipped. The grid covers
//! `[h_min..h_max] x [k_min..k_max] x [l_min..l_max]` of the indices present; entries
//! absent from the file hold `default_F`; a repeated index keeps its last value.
//! Every malformed line is an error naming the file and the line.
//!
//! The synthetic grid has `h, k, l` in `[-20, 20]` and
//! `F = 10 + 100 exp(-(h^2+k^2+l^2)/200) (1 + 0.5 sin(0.7h + 1.3k + 2.1l))`: smooth
//! enough to interpolate, irregular enough that a wrong index shows.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The largest grid accepted (entries), so a stray index cannot allocate gigabytes.
pub const MAX_GRID_ENTRIES: usize = 1 << 27;

/// Half-width of the synthetic grid: indices run over `-SYNTHETIC_EXTENT..=SYNTHETIC_EXTENT`.
pub const SYNTHETIC_EXTENT: i32 = 20;

/// No synthetic amplitude exceeds `10 + 100 * 1 * 1.5` (see [`synthetic_amplitude`]).
pub const SYNTHETIC_AMPLITUDE_BOUND: f64 = 160.0;

/// A dense grid of structure factor amplitudes.
#[derive(Clone, Debug, PartialEq)]
pub struct HklGrid {
    pub h_min: i32,
    pub h_max: i32,
    pub k_min: i32,
    pub k_max: i32,
    pub l_min: i32,
    pub l_max: i32,
    /// `F` in `h`-major, then `k`, then `l` order (`l` is contiguous).
    pub values: Vec<f64>,
    /// Number of reflections given (file lines or generated entries).
    pub reflections: usize,
}

/// A reflection: Miller indices and amplitude.
pub type Reflection = ([i32; 3], f64);

/// Why an HKL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HklError {
    /// The I/O error is part of the message, not a source of it, so a chain of causes
    /// does not print it twice.
    #[error("cannot read HKL file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}:{line}: expected 4 fields `h k l F`, found {found}", path.display())]
    FieldCount { path: PathBuf, line: usize, found: usize },
    #[error("{}:{line}: {field} = `{text}` is not a number", path.display())]
    NotANumber { path: PathBuf, line: usize, field: &'static str, text: String },
    #[error("{}:{line}: {field} = `{text}` is not an integer index", path.display())]
    NotAnIndex { path: PathBuf, line: usize, field: &'static str, text: String },
    #[error("HKL file {} holds no reflections", path.display())]
    Empty { path: PathBuf },
    #[error("HKL file {}: the index ranges span {entries} grid entries (at most {MAX_GRID_ENTRIES})", path.display())]
    TooLarge { path: PathBuf, entries: u128 },
}

impl HklGrid {
    /// The largest `|F|` in the grid, filled entries included.
    pub fn largest_amplitude(&self) -> f64 {
        self.values.iter().fold(0.0, |largest, value| value.abs().max(largest))
    }

    /// The grid spanned by `reflections`, with `default_f` where none is given. Fails
    /// with the number of grid entries when there are no reflections or the grid would
    /// be too large.
    pub fn from_reflections(reflections: &[Reflection], default_f: f64) -> Result<HklGrid, u128> {
        let mut minimum = [i32::MAX; 3];
        let mut maximum = [i32::MIN; 3];
        for (indices, _) in reflections {
            for axis in 0..3 {
                minimum[axis] = minimum[axis].min(indices[axis]);
                maximum[axis] = maximum[axis].max(indices[axis]);
            }
        }
        let ranges: Vec<u128> =
            (0..3).map(|axis| (i64::from(maximum[axis]) - i64::from(minimum[axis]) + 1).max(0) as u128).collect();
        let entries = ranges.iter().product::<u128>();
        if reflections.is_empty() || entries > MAX_GRID_ENTRIES as u128 {
            return Err(entries);
        }
        let mut grid = HklGrid {
            h_min: minimum[0],
            h_max: maximum[0],
            k_min: minimum[1],
            k_max: maximum[1],
            l_min: minimum[2],
            l_max: maximum[2],
            values: vec![default_f; entries as usize],
            reflections: reflections.len(),
        };
        for &([h, k, l], amplitude) in reflections {
            let index = grid.index(h, k, l);
            grid.values[index] = amplitude;
        }
        Ok(grid)
    }

    /// Reads an HKL text file.
    pub fn load(path: &Path, default_f: f64) -> Result<HklGrid, HklError> {
        let text = fs::read_to_string(path).map_err(|error| HklError::Read { path: path.to_owned(), error })?;
        let reflections = parse(&text, path)?;
        HklGrid::from_reflections(&reflections, default_f).map_err(|entries| {
            if reflections.is_empty() {
                HklError::Empty { path: path.to_owned() }
            } else {
                HklError::TooLarge { path: path.to_owned(), entries }
            }
        })
    }

    /// The deterministic synthetic grid described in the module documentation.
    pub fn synthetic() -> HklGrid {
        let extent = SYNTHETIC_EXTENT;
        let mut reflections = Vec::with_capacity(((2 * extent + 1) as usize).pow(3));
        for h in -extent..=extent {
            for k in -extent..=extent {
                for l in -extent..=extent {
                    reflections.push(([h, k, l], synthetic_amplitude(h, k, l)));
                }
            }
        }
        HklGrid::from_reflections(&reflections, 0.0).expect("the synthetic grid is small")
    }

    #[inline]
    pub fn h_range(&self) -> usize {
        (self.h_max - self.h_min + 1) as usize
    }

    #[inline]
    pub fn k_range(&self) -> usize {
        (self.k_max - self.k_min + 1) as usize
    }

    #[inline]
    pub fn l_range(&self) -> usize {
        (self.l_max - self.l_min + 1) as usize
    }

    #[inline]
    pub fn contains(&self, h: i64, k: i64, l: i64) -> bool {
        (i64::from(self.h_min)..=i64::from(self.h_max)).contains(&h)
            && (i64::from(self.k_min)..=i64::from(self.k_max)).contains(&k)
            && (i64::from(self.l_min)..=i64::from(self.l_max)).contains(&l)
    }

    /// Position of `(h, k, l)` in `values`; the indices must lie inside the grid.
    #[inline]
    pub fn index(&self, h: i32, k: i32, l: i32) -> usize {
        (((h - self.h_min) as usize * self.k_range()) + (k - self.k_min) as usize) * self.l_range()
            + (l - self.l_min) as usize
    }

    /// `F(h, k, l)` for indices inside the grid.
    #[inline]
    pub fn get(&self, h: i32, k: i32, l: i32) -> f64 {
        self.values[self.index(h, k, l)]
    }

    /// Writes the grid as an HKL text file (every entry, shortest round-trip decimals),
    /// so another program reads exactly these amplitudes.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut text = String::with_capacity(self.values.len() * 24);
        for h in self.h_min..=self.h_max {
            for k in self.k_min..=self.k_max {
                for l in self.l_min..=self.l_max {
                    let _ = writeln!(text, "{h} {k} {l} {}", self.get(h, k, l));
                }
            }
        }
        let mut file = fs::File::create(path)?;
        file.write_all(text.as_bytes())
    }
}

/// `F` of the synthetic grid at `(h, k, l)`.
pub fn synthetic_amplitude(h: i32, k: i32, l: i32) -> f64 {
    let (h, k, l) = (f64::from(h), f64::from(k), f64::from(l));
    10.0 + 100.0 * (-(h * h + k * k + l * l) / 200.0).exp() * (1.0 + 0.5 * (0.7 * h + 1.3 * k + 2.1 * l).sin())
}

/// Parses HKL text; `path` only names the source in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Reflection>, HklError> {
    let mut reflections = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let line_number = line_index + 1;
        let content = line.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        if fields.len() != 4 {
            return Err(HklError::FieldCount { path: path.to_owned(), line: line_number, found: fields.len() });
        }
        let number = |position: usize, field: &'static str| -> Result<f64, HklError> {
            let text = fields[position];
            text.parse::<f64>().ok().filter(|value| value.is_finite()).ok_or_else(|| HklError::NotANumber {
                path: path.to_owned(),
                line: line_number,
                field,
                text: text.to_owned(),
            })
        };
        let index = |position: usize, field: &'static str| -> Result<i32, HklError> {
            let value = number(position, field)?;
            if value.fract() != 0.0 || value.abs() > f64::from(1 << 20) {
                return Err(HklError::NotAnIndex {
                    path: path.to_owned(),
                    line: line_number,
                    field,
                    text: fields[position].to_owned(),
                });
            }
            Ok(value as i32)
        };
        let indices = [index(0, "h")?, index(1, "k")?, index(2, "l")?];
        reflections.push((indices, number(3, "F")?));
    }
    Ok(reflections)
}
