//! Reading plans from TOML and JSON, with errors that carry the field path and the line and column.

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{FieldPath, Location, PlanError, Problem};
use crate::model::Plan;

/// The two formats a plan file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// TOML, for people.
    Toml,
    /// JSON, for programs.
    Json,
}

impl PlanFormat {
    /// The format a file name suggests: JSON for `.json`, TOML otherwise.
    pub fn from_file_name(name: &str) -> Self {
        if name.ends_with(".json") {
            PlanFormat::Json
        } else {
            PlanFormat::Toml
        }
    }
}

impl Plan {
    /// Reads and validates a plan written in TOML.
    pub fn from_toml(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = read_toml(text)?;
        plan.validate().map_err(|error| locate_in_toml(text, error))?;
        Ok(plan)
    }

    /// Reads and validates a plan written in JSON.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = read_json(text)?;
        plan.validate().map_err(|error| locate_in_json(text, error))?;
        Ok(plan)
    }

    /// Reads and validates a plan in the given format; errors name `file_name`.
    pub fn from_text(text: &str, format: PlanFormat, file_name: &str) -> Result<Plan, PlanError> {
        match format {
            PlanFormat::Toml => Plan::from_toml(text),
            PlanFormat::Json => Plan::from_json(text),
        }
        .map_err(|error| error.in_file(file_name))
    }

    /// The plan as TOML.
    pub fn to_toml(&self) -> String {
        // A plan holds only strings, integers, booleans, tables and arrays: TOML can always write it.
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# cannot write plan: {error}\n"))
    }

    /// The plan as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|error| format!("{{\"error\": {:?}}}", error.to_string()))
    }
}

fn path_of(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    let segments = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    FieldPath::from_segments(segments)
}

/// Deserializes TOML into any type, with the field path and location of the first error.
pub fn read_toml<T: DeserializeOwned>(text: &str) -> Result<T, PlanError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| {
        let location = error.span().map(|span| Location::of_offset(text, span.start));
        PlanError::new(vec![Problem { path: FieldPath::root(), message: explained(error.message()), location }])
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = path_of(error.path());
        let inner = error.into_inner();
        let location =
            inner.span().map(|span| Location::of_offset(text, span.start)).or_else(|| toml_location(text, &path));
        PlanError::new(vec![Problem { path, message: explained(inner.message()), location }])
    })
}

/// A parser's message in words a person acts on: nesting past the parser's limit says so, and where.
fn explained(message: &str) -> String {
    let message = message.trim();
    if message.contains("recurs") {
        "arrays or tables are nested too deeply here (a plan needs only a few levels)".to_string()
    } else {
        message.to_string()
    }
}

/// Deserializes JSON into any type, with the field path and location of the first error.
pub fn read_json<T: DeserializeOwned>(text: &str) -> Result<T, PlanError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = path_of(error.path());
        let inner = error.into_inner();
        let location = (inner.line() > 0).then(|| Location { line: inner.line(), column: inner.column() });
        PlanError::new(vec![Problem { path, message: explained(&strip_json_position(&inner.to_string())), location }])
    })?;
    deserializer.end().map_err(|error| {
        PlanError::new(vec![Problem {
            path: FieldPath::root(),
            message: strip_json_position(&error.to_string()),
            location: Some(Location { line: error.line(), column: error.column() }),
        }])
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the location is reported separately.
fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

fn locate_in_toml(text: &str, mut error: PlanError) -> PlanError {
    for problem in &mut error.problems {
        if problem.location.is_none() {
            problem.location = toml_location(text, &problem.path);
        }
    }
    error
}

fn locate_in_json(text: &str, mut error: PlanError) -> PlanError {
    for problem in &mut error.problems {
        if problem.location.is_none() {
            problem.location = json_location(text, &problem.path);
        }
    }
    error
}

/// The location of the deepest part of `path` present in the TOML text.
pub fn toml_location(text: &str, path: &FieldPath) -> Option<Location> {
    let root = DeTable::parse(text).ok()?;
    let mut offset = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    for segment in path.segments() {
        let found = if let Some(index) = segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let index: usize = index.parse().ok()?;
            array.and_then(|items| items.get(index))
        } else {
            table.and_then(|t| {
                t.iter().find(|(key, _)| key.get_ref().as_ref() == segment.as_str()).map(|(key, value)| {
                    offset = Some(key.span().start);
                    value
                })
            })
        };
        let Some(value) = found else { break };
        if segment.starts_with('[') {
            offset = Some(value.span().start);
        }
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    offset.map(|o| Location::of_offset(text, o))
}

/// The location of the deepest part of `path` present in the JSON text.
pub fn json_location(text: &str, path: &FieldPath) -> Option<Location> {
    if path.segments().is_empty() {
        return None;
    }
    let mut scanner = JsonScanner { bytes: text.as_bytes(), at: 0 };
    let offset = scanner.find(path.segments())?;
    Some(Location::of_offset(text, offset))
}

/// Just enough of a JSON reader to find where a value starts: plan files are small, and serde_json keeps
/// no positions for values it has read.
struct JsonScanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonScanner<'_> {
    fn skip_space(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        self.at += 1;
        while self.at < self.bytes.len() {
            match self.bytes[self.at] {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    let raw = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
                    return serde_json::from_str(raw).ok();
                }
                _ => self.at += 1,
            }
        }
        None
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                loop {
                    if self.peek()? == close {
                        self.at += 1;
                        return Some(());
                    }
                    if open == b'{' {
                        self.string()?;
                        self.peek()?;
                        self.at += 1; // ':'
                    }
                    self.skip_value()?;
                    if self.peek()? == b',' {
                        self.at += 1;
                    }
                }
            }
            _ => {
                while self.at < self.bytes.len() && !b",}] \n\r\t".contains(&self.bytes[self.at]) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// Walks `segments` from the current value; returns the offset of the deepest value found.
    fn find(&mut self, segments: &[String]) -> Option<usize> {
        self.skip_space();
        let here = self.at;
        let Some((segment, rest)) = segments.split_first() else { return Some(here) };
        let index = segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse::<usize>().ok());
        match (self.peek()?, index) {
            (b'{', None) => {
                self.at += 1;
                loop {
                    if self.peek()? == b'}' {
                        return Some(here);
                    }
                    let key_at = self.at;
                    let key = self.string()?;
                    self.peek()?;
                    self.at += 1; // ':'
                    if &key == segment {
                        return self.find(rest).or(Some(key_at));
                    }
                    self.skip_value()?;
                    if self.peek()? == b',' {
                        self.at += 1;
                    }
                }
            }
            (b'[', Some(wanted)) => {
                self.at += 1;
                let mut position: usize = 0;
                loop {
                    if self.peek()? == b']' {
                        return Some(here);
                    }
                    if position == wanted {
                        return self.find(rest);
                    }
                    self.skip_value()?;
                    if self.peek()? == b',' {
                        self.at += 1;
                    }
                    position += 1;
                }
            }
            _ => Some(here),
        }
    }
}
