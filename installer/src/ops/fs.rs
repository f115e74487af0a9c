//! Making filesystems.

use layouts::steps::Mkfs;

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};

impl Perform for Mkfs {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        blank_or(cx.system, &self.device, self.format.fs_type())
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
