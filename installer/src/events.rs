//! What an install reports as it goes: one event per step start, skip, finish or failure. Frontends
//! render them (a terminal, the TUI) or print them as JSON lines for scripts.

use serde::{Deserialize, Serialize};

/// One thing that happened during an install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The run starts.
    Started {
        /// Host name of the plan.
        host: String,
        /// How many steps it has.
        steps: usize,
    },
    /// A step starts.
    StepStarted {
        /// Step id.
        id: String,
        /// Its description.
        description: String,
    },
    /// A line a step's program printed.
    StepOutput {
        /// Step id.
        id: String,
        /// The line.
        line: String,
    },
    /// A step was already done.
    StepSkipped {
        /// Step id.
        id: String,
        /// Its description.
        description: String,
        /// What showed it was done.
        reason: String,
    },
    /// A step finished.
    StepFinished {
        /// Step id.
        id: String,
        /// Its description.
        description: String,
        /// How long it took.
        seconds: f64,
    },
    /// A step failed; the run stops.
    StepFailed {
        /// Step id.
        id: String,
        /// Its description.
        description: String,
        /// How long it ran.
        seconds: f64,
        /// What went wrong: the command, its status and stderr.
        error: String,
    },
    /// The run ended.
    Finished {
        /// Whether every step succeeded.
        ok: bool,
        /// Steps applied.
        applied: usize,
        /// Steps found done.
        skipped: usize,
        /// Wall time.
        seconds: f64,
    },
}

impl Event {
    /// The event as one JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"event\":\"error\",\"error\":{:?}}}", e.to_string()))
    }
}
