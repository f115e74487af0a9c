//! Mounting and unmounting under the target root.

use layouts::steps::{Mount, Unmount};

use super::{io, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};

impl Perform for Mount {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let (source, target) = (&self.source, &self.target);
        match cx.system.mounted_at(target) {
            Ok(Some(entry)) if entry.source == *source || cx.system.same_device(&entry.source, source) => {
                Outlook::Done(format!("{source} is mounted at {target}"))
            }
            Ok(Some(entry)) => Outlook::Conflict(format!("{target} has {} mounted, not {source}", entry.source)),
            Ok(None) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read the mount table: {error}")),
        }
    }

    /// Something else mounted at the target stays in the way whatever is made first.
    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        match self.probe(cx) {
            Outlook::Conflict(why) => Some(why),
            _ => None,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.mount(self).map_err(io(format!("mount {} at {}", self.source, self.target)))
    }
}

impl Perform for Unmount {
    /// Only the plan's own mount is undone: a filesystem of someone else's mounted at the target (after
    /// the plan's was unmounted, or over it) is left where it is, and the teardown stops there.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.system.mounted_at(&self.target) {
            Ok(Some(entry))
                if self.sources.iter().any(|s| entry.source == *s || cx.system.same_device(&entry.source, s)) =>
            {
                Outlook::Todo { destroys: false }
            }
            Ok(Some(entry)) => Outlook::Conflict(format!(
                "{} has {} mounted, not what the plan mounted there ({}): it is left mounted",
                self.target,
                entry.source,
                self.sources.join(", ")
            )),
            Ok(None) => Outlook::Done(format!("{} is not mounted", self.target)),
            Err(error) => Outlook::Conflict(format!("cannot read the mount table: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.unmount(&self.target).map_err(io(format!("unmount {}", self.target)))
    }
}
