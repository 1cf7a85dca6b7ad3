//! Errors a user reads: spec errors with file, line, column, key path and a hint.
//!
//! Everything else in the application layer is `anyhow::Error` with context. A
//! [`SpecError`] renders like a compiler diagnostic:
//!
//! ```text
//! error: unknown key `repeat` in `defaults`
//!   --> experiments/broken.toml:5:1
//!    |
//!  5 | repeat = 3
//!    | ^^^^^^
//!    = help: did you mean `repeats`?
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem with a spec or with the command line, found before anything runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub message: String,
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The offending line of the file, for the excerpt.
    pub excerpt: Option<String>,
    /// Width of the underline in the excerpt.
    pub width: usize,
    /// Dotted key path in the normalized spec (`phase.a.workload.fast.params.size`).
    pub key: Option<String>,
    pub hint: Option<String>,
}

impl std::error::Error for SpecError {}

impl SpecError {
    /// An error without a place in the file.
    pub fn new(file: &Path, message: impl Into<String>) -> SpecError {
        SpecError {
            message: message.into(),
            file: file.to_owned(),
            position: None,
            excerpt: None,
            width: 0,
            key: None,
            hint: None,
        }
    }

    /// An error pointing at byte range `span` of `text`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> SpecError {
        // Snap to characters, so a span from elsewhere can never split one.
        let floor = |mut index: usize| {
            index = index.min(text.len());
            while !text.is_char_boundary(index) {
                index -= 1;
            }
            index
        };
        let start = floor(span.start);
        let span = start..floor(span.end);
        let line_start = text[..start].rfind('\n').map_or(0, |index| index + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |index| start + index);
        let line_number = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let line = &text[line_start..line_end];
        let width = text[start..span.end.clamp(start, line_end)].chars().count().max(1);
        SpecError {
            position: Some((line_number, column)),
            excerpt: Some(line.trim_end_matches('\r').to_owned()),
            width,
            ..SpecError::new(file, message)
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> SpecError {
        self.key = Some(key.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> SpecError {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        match (self.position, &self.excerpt) {
            (Some((line, column)), Some(excerpt)) => {
                let gutter = line.to_string().len();
                let pad = " ".repeat(gutter);
                writeln!(f, "{pad}--> {}:{line}:{column}", self.file.display())?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{line} | {excerpt}")?;
                let indent: String =
                    excerpt.chars().take(column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                write!(f, "{pad} | {indent}{}", "^".repeat(self.width))?;
                if let Some(hint) = &self.hint {
                    write!(f, "\n{pad} = help: {hint}")?;
                }
            }
            _ => {
                write!(f, "  --> {}", self.file.display())?;
                if let Some(key) = &self.key {
                    write!(f, " (key `{key}`)")?;
                }
                if let Some(hint) = &self.hint {
                    write!(f, "\n   = help: {hint}")?;
                }
            }
        }
        Ok(())
    }
}

/// The candidate closest to `given` by edit distance, if it is close enough to be a
/// plausible typo.
pub fn nearest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(given, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= (candidate.len().max(given.len()) / 3).max(2))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, nearest};

    #[test]
    fn nearest_key() {
        assert_eq!(edit_distance("repeat", "repeats"), 1);
        assert_eq!(nearest("repeat", ["warmup", "repeats", "order"]), Some("repeats"));
        assert_eq!(nearest("zzzzzz", ["warmup", "repeats"]), None);
        // Three edits in a word of three letters is no typo; two in one of seven is.
        assert_eq!(nearest("abc", ["xyz"]), None);
        assert_eq!(nearest("repaets", ["warmup", "repeats"]), Some("repeats"));
        // The closest of several close candidates.
        assert_eq!(nearest("timeot", ["timeouts", "timeout"]), Some("timeout"));
    }
}
