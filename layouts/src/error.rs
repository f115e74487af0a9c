//! Errors that name what is wrong and where: the path of the field, and for a file its line and column.

use std::fmt;

/// A path to a field of a plan, such as `disks.main.partitions.root.size`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// The empty path: the whole plan.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path with one more segment.
    pub fn join(&self, segment: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment.into());
        FieldPath(segments)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Builds a path from segments.
    pub fn from_segments(segments: Vec<String>) -> Self {
        FieldPath(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, segment) in self.0.iter().enumerate() {
            if index > 0 && !segment.starts_with('[') {
                f.write_str(".")?;
            }
            let plain = segment.starts_with('[')
                || (!segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            if plain {
                f.write_str(segment)?;
            } else {
                write!(f, "{segment:?}")?;
            }
        }
        Ok(())
    }
}

/// A line and column in a plan file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The line and column of a byte offset in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Location { line, column }
    }
}

/// One thing wrong with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field at fault; empty for the whole plan.
    pub path: FieldPath,
    /// What is wrong, for people.
    pub message: String,
    /// Where the field is in the file, when the plan came from a file.
    pub location: Option<Location>,
}

impl Problem {
    /// A problem with the field at `path`.
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Problem { path, message: message.into(), location: None }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{}:{}: ", location.line, location.column)?;
        }
        if self.path.segments().is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a plan was refused: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    /// The file the plan came from, when it came from one.
    pub source_name: Option<String>,
    /// What is wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl PlanError {
    /// A refusal with these problems.
    pub fn new(problems: Vec<Problem>) -> Self {
        PlanError { source_name: None, problems }
    }

    /// A refusal with one problem.
    pub fn single(path: FieldPath, message: impl Into<String>) -> Self {
        PlanError::new(vec![Problem::new(path, message)])
    }

    /// Names the file the plan came from, for messages.
    pub fn in_file(mut self, name: impl Into<String>) -> Self {
        self.source_name = Some(name.into());
        self
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            match (&self.source_name, problem.location) {
                (Some(name), Some(_)) => write!(f, "{name}:{problem}")?,
                (Some(name), None) => write!(f, "{name}: {problem}")?,
                (None, _) => write!(f, "{problem}")?,
            }
        }
        Ok(())
    }
}

/// A value as it appears in messages: quoted, and cut to about 100 characters so that a hostile or
/// mistaken value cannot flood the screen or hide the rest of the message.
pub fn shown(value: &str) -> String {
    const LIMIT: usize = 100;
    let count = value.chars().count();
    if count <= LIMIT {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(LIMIT).collect();
        format!("{head:?}... ({} more characters)", count - LIMIT)
    }
}
