//! Making, enabling and disabling swap.

use layouts::steps::{Mkswap, Swapoff, Swapon};

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};

impl Perform for Mkswap {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        blank_or(cx, &self.device, "swap", Some(&self.uuid))
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}

impl Perform for Swapon {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.system.swap_active(&self.device) {
            Ok(true) => Outlook::Done(format!("swap on {} is active", self.device)),
            Ok(false) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read the active swaps: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}

impl Perform for Swapoff {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.system.swap_active(&self.device) {
            Ok(true) => Outlook::Todo { destroys: false },
            Ok(false) => Outlook::Done(format!("swap on {} is off", self.device)),
            Err(error) => Outlook::Conflict(format!("cannot read the active swaps: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
