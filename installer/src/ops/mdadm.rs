//! Software RAID arrays: created, assembled and stopped with mdadm; members recognised by the array UUID
//! blkid reads on them.

use layouts::steps::{MdAssemble, MdCreate, MdStop};

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};

impl Perform for MdCreate {
    /// Done when every member carries this plan's array (its UUID is derived from the plan); to do when
    /// they are blank or some are (a run cut inside `mdadm --create`); a conflict when one holds another.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let uuid = self.blkid_uuid();
        let mut all_done = true;
        for device in &self.devices {
            match blank_or(cx.system, device, "linux_raid_member", Some(&uuid)) {
                Outlook::Done(_) => {}
                Outlook::Todo { .. } => all_done = false,
                conflict => return conflict,
            }
        }
        if all_done {
            Outlook::Done(format!("the members carry this plan's array {}", self.name))
        } else {
            Outlook::Todo { destroys: true }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        cx.system.settle();
        Ok(())
    }
}

impl Perform for MdAssemble {
    /// Done when `/dev/md/<name>` is running with this plan's UUID; another array of the name is a conflict.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let device = self.device();
        if !cx.system.exists(&device) {
            return Outlook::Todo { destroys: false };
        }
        match cx.system.run(&self.detail_command(), None) {
            Ok(detail) => {
                let running = detail.lines().find_map(|l| l.strip_prefix("MD_UUID=")).unwrap_or_default();
                if running.eq_ignore_ascii_case(&self.uuid) {
                    Outlook::Done(format!("{device} is running"))
                } else {
                    Outlook::Conflict(format!(
                        "{device} is another array (UUID {running}, the plan's is {})",
                        self.uuid
                    ))
                }
            }
            // The node is there but the array is not running (stopped, or assembly failed part way).
            Err(CommandError::Failed { .. }) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read {device}: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        if let Some(member) = self.devices.first() {
            cx.system.wait_for_nodes(member, &[self.device().as_str()])?;
        }
        Ok(())
    }
}

impl Perform for MdStop {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if cx.system.exists(&format!("/dev/md/{}", self.name)) {
            Outlook::Todo { destroys: false }
        } else {
            Outlook::Done(format!("array {} is stopped", self.name))
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
