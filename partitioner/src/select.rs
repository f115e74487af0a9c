//! Choosing disks by rules instead of naming them, for presets on machines one has not seen (a rented
//! server: "the two largest SSDs"). Rules are comma-separated and all apply:
//!
//! | rule | keeps |
//! |---|---|
//! | `ssd`, `hdd` | non-rotational, rotational disks |
//! | `size>100G`, `size>=1T`, `size<2T`, `size<=512G` | disks of that size |
//! | `transport:nvme` | disks attached so (virtio, nvme, sata, scsi, usb, mmc, loop) |
//! | `model:samsung` | disks whose model contains it (any case) |
//! | `serial:S3Z9NB0K` | the disk with that serial |
//! | `path:/dev/disk/by-id/nvme-*` | disks with a node or stable path equal to it (a trailing `*` matches any rest) |
//! | `largest:2`, `smallest:1` | then exactly that many of what is left, biggest or smallest first |
//!
//! Disks in use, read-only or removable never count; loop devices only with `transport:loop`. Pure: it
//! reads [`DiskInfo`]s that [`crate::discover`] made.

use crate::DiskInfo;

/// One selection rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Non-rotational disks.
    Ssd,
    /// Rotational disks.
    Hdd,
    /// Disks larger than this many bytes (or as large, with `inclusive`).
    Larger {
        /// Bytes.
        bytes: u64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// Disks smaller than this many bytes (or as large, with `inclusive`).
    Smaller {
        /// Bytes.
        bytes: u64,
        /// `<=` rather than `<`.
        inclusive: bool,
    },
    /// Disks attached this way.
    Transport(String),
    /// Disks whose model contains this, in any case.
    Model(String),
    /// The disk with this serial.
    Serial(String),
    /// Disks with this node or stable path (a trailing `*` matches any rest).
    Path(String),
    /// This many of the largest disks left.
    Largest(usize),
    /// This many of the smallest disks left.
    Smallest(usize),
}

/// A rule that does not parse, or a selection that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The rule text is not understood.
    #[error("disk selection rule {rule:?}: {reason}")]
    BadRule {
        /// The rule as written.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Fewer disks match than asked for.
    #[error("disk selection {rules:?} wants {wanted} disk(s) but {found} match{}", describe(not_counted))]
    TooFew {
        /// The rules as written.
        rules: String,
        /// How many were asked for.
        wanted: usize,
        /// How many matched.
        found: usize,
        /// Disks left out because they cannot be used, each with why.
        not_counted: Vec<String>,
    },
}

fn describe(not_counted: &[String]) -> String {
    if not_counted.is_empty() {
        String::new()
    } else {
        format!("; not counted: {}", not_counted.join("; "))
    }
}

fn bad(rule: &str, reason: impl Into<String>) -> SelectError {
    SelectError::BadRule { rule: rule.to_string(), reason: reason.into() }
}

/// Parses comma-separated rules.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, SelectError> {
    let mut rules = Vec::new();
    for word in text.split(',').map(str::trim) {
        if word.is_empty() {
            return Err(bad(text, "an empty rule (two commas, or a comma at an end)"));
        }
        let size = |rest: &str| {
            layouts::size::parse_bytes(rest).ok_or_else(|| bad(word, "the size is not a size such as 100G or 2T"))
        };
        let count = |rest: &str| match rest.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(word, "the count must be a whole number of at least 1")),
        };
        let text_of = |rest: &str| {
            if rest.is_empty() {
                Err(bad(word, "nothing after the colon"))
            } else {
                Ok(rest.to_string())
            }
        };
        let rule = if word == "ssd" {
            Rule::Ssd
        } else if word == "hdd" {
            Rule::Hdd
        } else if let Some(rest) = word.strip_prefix("size>=") {
            Rule::Larger { bytes: size(rest)?, inclusive: true }
        } else if let Some(rest) = word.strip_prefix("size>") {
            Rule::Larger { bytes: size(rest)?, inclusive: false }
        } else if let Some(rest) = word.strip_prefix("size<=") {
            Rule::Smaller { bytes: size(rest)?, inclusive: true }
        } else if let Some(rest) = word.strip_prefix("size<") {
            Rule::Smaller { bytes: size(rest)?, inclusive: false }
        } else if let Some(rest) = word.strip_prefix("transport:") {
            Rule::Transport(text_of(rest)?.to_ascii_lowercase())
        } else if let Some(rest) = word.strip_prefix("model:") {
            Rule::Model(text_of(rest)?.to_lowercase())
        } else if let Some(rest) = word.strip_prefix("serial:") {
            Rule::Serial(text_of(rest)?)
        } else if let Some(rest) = word.strip_prefix("path:") {
            Rule::Path(text_of(rest)?)
        } else if let Some(rest) = word.strip_prefix("largest:") {
            Rule::Largest(count(rest)?)
        } else if let Some(rest) = word.strip_prefix("smallest:") {
            Rule::Smallest(count(rest)?)
        } else {
            return Err(bad(
                word,
                "unknown; rules are ssd, hdd, size>N, size>=N, size<N, size<=N, transport:T, model:M, serial:S, \
                 path:P, largest:N, smallest:N",
            ));
        };
        rules.push(rule);
    }
    if rules.iter().filter(|r| matches!(r, Rule::Largest(_) | Rule::Smallest(_))).count() > 1 {
        return Err(bad(text, "at most one of largest:N and smallest:N"));
    }
    Ok(rules)
}

impl Rule {
    fn keeps(&self, disk: &DiskInfo) -> bool {
        match self {
            Rule::Ssd => !disk.rotational,
            Rule::Hdd => disk.rotational,
            Rule::Larger { bytes, inclusive } => disk.size > *bytes || (*inclusive && disk.size == *bytes),
            Rule::Smaller { bytes, inclusive } => disk.size < *bytes || (*inclusive && disk.size == *bytes),
            Rule::Transport(transport) => disk.transport.as_deref() == Some(transport.as_str()),
            Rule::Model(model) => disk.model.as_deref().is_some_and(|m| m.to_lowercase().contains(model)),
            Rule::Serial(serial) => disk.serial.as_deref() == Some(serial.as_str()),
            Rule::Path(pattern) => {
                std::iter::once(&disk.path).chain(&disk.stable_paths).any(|path| match pattern.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => path == pattern,
                })
            }
            Rule::Largest(_) | Rule::Smallest(_) => true,
        }
    }
}

/// Why a disk cannot be chosen whatever the rules say, if it cannot.
fn not_usable(disk: &DiskInfo, rules: &[Rule]) -> Option<String> {
    let reason = if !disk.in_use.is_empty() {
        let reasons: Vec<String> = disk.in_use.iter().map(ToString::to_string).collect();
        format!("in use ({})", reasons.join(", "))
    } else if disk.read_only {
        "read-only".to_string()
    } else if disk.removable {
        "removable".to_string()
    } else if disk.transport.as_deref() == Some("loop") && !rules.contains(&Rule::Transport("loop".into())) {
        "a loop device (only with transport:loop)".to_string()
    } else {
        return None;
    };
    Some(format!("{} {reason}", disk.path))
}

/// The disks the rules choose, largest first (smallest first with `smallest:N`; then by node). Fails
/// when a count rule cannot be met or nothing matches, naming the disks that did not count and why.
pub fn select<'a>(text: &str, disks: &'a [DiskInfo]) -> Result<Vec<&'a DiskInfo>, SelectError> {
    let rules = parse_rules(text)?;
    let mut not_counted = Vec::new();
    let mut chosen: Vec<&DiskInfo> = Vec::new();
    for disk in disks {
        if !rules.iter().all(|rule| rule.keeps(disk)) {
            continue;
        }
        match not_usable(disk, &rules) {
            Some(reason) => not_counted.push(reason),
            None => chosen.push(disk),
        }
    }
    let smallest_first = rules.iter().any(|rule| matches!(rule, Rule::Smallest(_)));
    chosen.sort_by(|a, b| {
        let by_size = if smallest_first { a.size.cmp(&b.size) } else { b.size.cmp(&a.size) };
        by_size.then_with(|| a.path.cmp(&b.path))
    });
    let count = rules.iter().find_map(|rule| match rule {
        Rule::Largest(n) | Rule::Smallest(n) => Some(*n),
        _ => None,
    });
    let wanted = count.unwrap_or(1);
    if chosen.len() < wanted {
        return Err(SelectError::TooFew { rules: text.to_string(), wanted, found: chosen.len(), not_counted });
    }
    if let Some(n) = count {
        chosen.truncate(n);
    }
    Ok(chosen)
}
