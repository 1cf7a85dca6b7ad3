//! Reading a spec file into the normalized tree the layers are merged on.
//!
//! The file uses arrays of tables (`[[phase]]`, `[[phase.workload]]`, `[[phase.check]]`)
//! with an `id` key each; the normalized tree keys them by id instead
//! (`phase.<id>.workload.<id>`), so that every value has a stable dotted path that the
//! environment and `--set` can address, and figment can merge layers by key. The file
//! order of phases, workloads, checks and parameters is kept in [`FileOrder`], and the byte
//! span of every key and value in [`Locator`], so that errors found later point at the
//! line that caused them.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value as FigmentValue};
use toml::de::{DeTable, DeValue};

use crate::error::SpecError;

/// File order of the entries the normalized tree keys by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileOrder {
    pub(crate) phases: Vec<String>,
    /// Per phase id.
    pub(crate) workloads: HashMap<String, Vec<String>>,
    pub(crate) checks: HashMap<String, Vec<String>>,
    /// Per `phase.workload` path.
    pub(crate) params: HashMap<String, Vec<String>>,
}

/// Maps dotted paths of the normalized tree back to places in the file.
#[derive(Clone, Debug, Default)]
pub struct Locator {
    file: PathBuf,
    text: String,
    keys: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl Locator {
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether the file writes the key `path` (a table's header or key, a value's key).
    pub fn has_place(&self, path: &str) -> bool {
        self.keys.contains_key(path)
    }

    /// The path of the first key the file writes inside the table at `path`.
    pub fn first_within(&self, path: &str) -> Option<&str> {
        let inside = format!("{path}.");
        let within = self.keys.iter().filter(|(key, _)| key.starts_with(&inside));
        within.min_by_key(|(_, span)| span.start).map(|(key, _)| key.as_str())
    }

    /// An error at the key of `path` (or the closest ancestor that has a place).
    pub fn key_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        self.error_in(&self.keys, path, message)
    }

    /// An error at the value of `path` (or its key, or the closest ancestor).
    pub fn value_error(&self, path: &str, message: impl Into<String>) -> SpecError {
        self.error_in(&self.values, path, message)
    }

    /// An error inside the string value at `path`, `offset` bytes into `text`, the
    /// string as parsed. The offset is only mapped into the file when the file spells
    /// the value as `text` between single-line quotes (no escapes); otherwise (an
    /// override, a multi-line or escaped string) the error points at the whole value.
    pub fn string_error(&self, path: &str, text: &str, offset: Range<usize>, message: impl Into<String>) -> SpecError {
        let quoted = |span: &Range<usize>| {
            let written = &self.text[span.clone()];
            ['"', '\'']
                .into_iter()
                .any(|quote| written.strip_prefix(quote).and_then(|rest| rest.strip_suffix(quote)) == Some(text))
        };
        match self.values.get(path) {
            Some(span) if quoted(span) && offset.end <= text.len() => {
                let start = span.start + 1 + offset.start;
                let end = span.start + 1 + offset.end.max(offset.start + 1).min(text.len());
                SpecError::at(&self.file, &self.text, start..end, message).with_key(path)
            }
            _ => self.value_error(path, message),
        }
    }

    fn error_in(&self, primary: &HashMap<String, Range<usize>>, path: &str, message: impl Into<String>) -> SpecError {
        let message = message.into();
        let mut candidate = path;
        loop {
            if let Some(span) = primary.get(candidate).or_else(|| self.keys.get(candidate)) {
                return SpecError::at(&self.file, &self.text, span.clone(), message).with_key(path);
            }
            match candidate.rfind('.') {
                Some(dot) => candidate = &candidate[..dot],
                None => return SpecError::new(&self.file, message).with_key(path),
            }
        }
    }
}

/// A parsed spec file: the normalized tree (without profiles), the profiles, file
/// order and places.
pub(crate) struct Document {
    pub(crate) tree: Dict,
    /// `[profile.NAME]`: override path -> value, in file order.
    pub(crate) profiles: BTreeMap<String, Vec<(String, FigmentValue)>>,
    pub(crate) order: FileOrder,
    pub(crate) locator: Locator,
}

/// The keys whose arrays of tables are keyed by `id` in the normalized tree, by the
/// path of the table that holds them.
fn keyed_array(parent: &str, key: &str) -> bool {
    match key {
        "phase" => parent.is_empty(),
        "workload" | "check" => parent.starts_with("phase.") && parent.matches('.').count() == 1,
        _ => false,
    }
}

pub(crate) fn parse(file: &Path, text: &str) -> Result<Document, SpecError> {
    let root = DeTable::parse(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().lines().next().unwrap_or("invalid TOML").trim().to_owned();
        SpecError::at(file, text, span, format!("invalid TOML: {message}"))
    })?;
    let mut reader = Reader {
        locator: Locator { file: file.to_owned(), text: text.to_owned(), ..Locator::default() },
        order: FileOrder::default(),
    };
    let mut tree = Dict::new();
    let mut profiles = BTreeMap::new();
    for (key, value) in root.get_ref() {
        let name = key.get_ref().as_ref();
        reader.locator.keys.insert(name.to_owned(), key.span());
        reader.locator.values.insert(name.to_owned(), value.span());
        if name == "profile" {
            profiles = reader.profiles(value)?;
            continue;
        }
        let converted = reader.value("", name, value)?;
        tree.insert(name.to_owned(), converted);
    }
    Ok(Document { tree, profiles, order: reader.order, locator: reader.locator })
}

struct Reader {
    locator: Locator,
    order: FileOrder,
}

impl Reader {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.locator.file, &self.locator.text, span, message)
    }

    /// Converts the value of `key` inside the table at `parent`.
    fn value(
        &mut self,
        parent: &str,
        key: &str,
        value: &toml::Spanned<DeValue<'_>>,
    ) -> Result<FigmentValue, SpecError> {
        let path = join(parent, key);
        if keyed_array(parent, key) {
            return self.keyed(&path, value);
        }
        match value.get_ref() {
            DeValue::Table(table) => {
                let mut dict = Dict::new();
                let mut keys = Vec::new();
                for (child_key, child_value) in table {
                    let name = child_key.get_ref().as_ref();
                    let child_path = join(&path, name);
                    self.locator.keys.insert(child_path.clone(), child_key.span());
                    self.locator.values.insert(child_path, child_value.span());
                    keys.push(name.to_owned());
                    dict.insert(name.to_owned(), self.value(&path, name, child_value)?);
                }
                if key == "params" {
                    self.order.params.insert(parent.to_owned(), keys);
                }
                Ok(FigmentValue::from(dict))
            }
            DeValue::Array(items) => {
                let mut values = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    values.push(self.value(&path, &index.to_string(), item)?);
                }
                Ok(FigmentValue::from(values))
            }
            DeValue::String(text) => Ok(FigmentValue::from(text.to_string())),
            DeValue::Integer(integer) => {
                i64::from_str_radix(integer.as_str(), integer.radix()).map(FigmentValue::from).map_err(|_| {
                    self.error(
                        value.span(),
                        format!("integer out of range: TOML integers lie in {}..={}", i64::MIN, i64::MAX),
                    )
                })
            }
            DeValue::Float(float) => float
                .as_str()
                .parse::<f64>()
                .map(FigmentValue::from)
                .map_err(|_| self.error(value.span(), "invalid float")),
            DeValue::Boolean(flag) => Ok(FigmentValue::from(*flag)),
            DeValue::Datetime(datetime) => Ok(FigmentValue::from(datetime.to_string())),
        }
    }

    /// Converts an array of tables with `id` keys into a table keyed by id.
    fn keyed(&mut self, path: &str, value: &toml::Spanned<DeValue<'_>>) -> Result<FigmentValue, SpecError> {
        let DeValue::Array(items) = value.get_ref() else {
            let what = path.rsplit('.').next().unwrap_or(path);
            return Err(self.error(
                value.span(),
                format!("`{what}` must be an array of tables: write `[[{path_header}]]`", path_header = header(path)),
            ));
        };
        let mut dict = Dict::new();
        let mut ids = Vec::new();
        for item in items.iter() {
            let DeValue::Table(table) = item.get_ref() else {
                return Err(self.error(item.span(), format!("entries of `{}` must be tables", header(path))));
            };
            let id = table.iter().find(|(key, _)| key.get_ref().as_ref() == "id");
            let Some((_, id_value)) = id else {
                return Err(self
                    .error(item.span(), format!("this `[[{}]]` has no `id`", header(path)))
                    .with_hint("every phase, workload and check needs an `id` such as `id = \"baseline\"`"));
            };
            let DeValue::String(id_text) = id_value.get_ref() else {
                return Err(self.error(id_value.span(), "`id` must be a string"));
            };
            let id_text = id_text.to_string();
            if !valid_id(&id_text) {
                return Err(self
                    .error(id_value.span(), format!("invalid id `{id_text}`"))
                    .with_hint("ids start with a lowercase letter and contain only a-z, 0-9 and `_`"));
            }
            if ids.contains(&id_text) {
                return Err(self.error(id_value.span(), format!("duplicate id `{id_text}` in `{}`", header(path))));
            }
            let entry_path = join(path, &id_text);
            self.locator.keys.insert(entry_path.clone(), id_value.span());
            self.locator.values.insert(entry_path.clone(), id_value.span());
            let mut entry = Dict::new();
            for (child_key, child_value) in table {
                let name = child_key.get_ref().as_ref();
                if name == "id" {
                    continue;
                }
                let child_path = join(&entry_path, name);
                self.locator.keys.insert(child_path.clone(), child_key.span());
                self.locator.values.insert(child_path, child_value.span());
                entry.insert(name.to_owned(), self.value(&entry_path, name, child_value)?);
            }
            dict.insert(id_text.clone(), FigmentValue::from(entry));
            ids.push(id_text);
        }
        match path.rsplit('.').next() {
            Some("phase") => self.order.phases = ids,
            Some("workload") => {
                self.order.workloads.insert(parent_id(path), ids);
            }
            Some("check") => {
                self.order.checks.insert(parent_id(path), ids);
            }
            _ => {}
        }
        Ok(FigmentValue::from(dict))
    }

    fn profiles(
        &mut self,
        value: &toml::Spanned<DeValue<'_>>,
    ) -> Result<BTreeMap<String, Vec<(String, FigmentValue)>>, SpecError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(value.span(), "`profile` must be a table of profiles, e.g. `[profile.ci]`"));
        };
        let mut profiles = BTreeMap::new();
        for (name_key, body) in table {
            let name = name_key.get_ref().to_string();
            self.locator.keys.insert(format!("profile.{name}"), name_key.span());
            self.locator.values.insert(format!("profile.{name}"), body.span());
            let DeValue::Table(entries) = body.get_ref() else {
                return Err(self.error(body.span(), format!("`profile.{name}` must be a table of overrides")));
            };
            let mut overrides = Vec::new();
            for (key, entry) in entries {
                let key_text = key.get_ref().to_string();
                let path = format!("profile.{name}.{key_text}");
                self.locator.keys.insert(path.clone(), key.span());
                self.locator.values.insert(path.clone(), entry.span());
                // The places of an inline table's values follow the path they set, so
                // `profile.NAME.PATH` is where the profile sets PATH however it writes it.
                overrides.push((key_text.clone(), self.value(&format!("profile.{name}"), &key_text, entry)?));
            }
            profiles.insert(name, overrides);
        }
        Ok(profiles)
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// `phase.a.workload` -> `phase.workload`, the TOML header of the array.
fn header(path: &str) -> String {
    path.split('.').enumerate().filter(|(index, _)| index % 2 == 0).map(|(_, part)| part).collect::<Vec<_>>().join(".")
}

/// `phase.a.workload` -> `a`.
fn parent_id(path: &str) -> String {
    path.split('.').nth(1).unwrap_or_default().to_owned()
}

pub(crate) fn valid_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
