//! Adapters of the external tools whose output the executor reads: each turns what its tool prints into
//! typed values that the operations, adopt and the simulator share, and a changed shape into a
//! [`ToolOutputError`] naming the tool and the field, never into empty data.

pub mod lvm;
pub mod mdadm;
pub mod zfs;

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

/// Reads a tool's JSON into its shape; what does not fit is an error naming the tool and the field (its
/// path, such as `report[0].pv[1].pv_uuid`), and `what` says what the output should have been.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    tool: &'static str,
    text: &str,
    what: &str,
) -> Result<T, ToolOutputError> {
    let mut json = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        // serde names a missing field only in its message: "missing field `pv_uuid` at line 3 column 9".
        let field = match inner.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
            Some((missing, _)) if path == "." => missing.to_string(),
            Some((missing, _)) => format!("{path}.{missing}"),
            None => path,
        };
        ToolOutputError::new(tool, &field, format!("{what} ({inner})"))
    })
}
