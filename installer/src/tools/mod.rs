//! Adapters of the external tools whose output the executor reads: each turns what its tool prints into
//! typed values that the operations, adopt and the simulator share, and a changed shape into a
//! [`ToolOutputError`] naming the tool and the field, never into empty data. (ZFS's is [`crate::zfs`].)

pub mod mdadm;

/// A tool printed something not of the shape its adapter reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool} printed {problem}")]
pub struct ToolOutputError {
    /// The tool, as run (`mdadm --detail --export`).
    pub tool: &'static str,
    /// The field.
    pub field: String,
    /// What is wrong with it, as the end of "TOOL printed ...".
    pub problem: String,
}

impl ToolOutputError {
    /// `field` is of the wrong form: `why`.
    pub fn new(tool: &'static str, field: &str, why: String) -> ToolOutputError {
        ToolOutputError { tool, field: field.to_string(), problem: format!("{field} as {why}") }
    }

    /// `field` is missing.
    pub fn missing(tool: &'static str, field: &str) -> ToolOutputError {
        ToolOutputError { tool, field: field.to_string(), problem: format!("no {field}") }
    }
}
