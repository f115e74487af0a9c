//! What read-only report programs (`pvs`, `lvs`) printed, kept until something is written: the probes of
//! one run ask them the same question once per volume, and LVM's tools scan every device each time they
//! run, a good part of a second on a small machine.

use std::collections::HashMap;
use std::sync::Mutex;

use layouts::CommandLine;

use crate::command::CommandError;
use crate::system::System;

/// Outputs of report commands by command line, since the last [`Reports::forget`]. The executor forgets
/// them after every step it performs.
#[derive(Debug, Default)]
pub struct Reports {
    seen: Mutex<HashMap<String, String>>,
}

impl Reports {
    /// The output of a read-only command: run now, or as it was since the last write. Failures are not
    /// kept.
    pub fn run(&self, system: &dyn System, line: &CommandLine) -> Result<String, CommandError> {
        let key = line.to_string();
        if let Some(output) = self.seen().get(&key) {
            return Ok(output.clone());
        }
        let output = system.run(line, None)?;
        self.seen().insert(key, output.clone());
        Ok(output)
    }

    /// Drops everything kept.
    pub fn forget(&self) {
        self.seen().clear();
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
