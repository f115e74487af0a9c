//! Writing the NixOS module and running nixos-install.

use layouts::steps::{InitrdHostKey, NixosInstall, WriteNixosModule};

use super::{io, Perform, ProbeContext, RunContext};
use crate::events::Event;
use crate::execute::{Outlook, StepError};

impl Perform for WriteNixosModule {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        // A root in memory comes back empty after every unmount; the install that read the file is done.
        if self.root_in_memory && cx.journal.applied(&cx.step.id) {
            return Outlook::Done(format!(
                "an earlier run wrote {} into the root in memory, which keeps nothing",
                self.path
            ));
        }
        match cx.system.read_file(&self.path) {
            Ok(text) if text == layouts::nixos::module(cx.plan) => {
                Outlook::Done(format!("{} is up to date", self.path))
            }
            Ok(_) => Outlook::Todo { destroys: false },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read {}: {error}", self.path)),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.write_file(&self.path, &layouts::nixos::module(cx.plan)).map_err(io(format!("write {}", self.path)))
    }
}

impl Perform for InitrdHostKey {
    /// A key that exists is kept: replacing it would make SSH clients refuse the initrd after a re-run.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let public = format!("{}.pub", self.path);
        match (cx.system.exists(&self.path), cx.system.exists(&public)) {
            (true, true) => Outlook::Done(format!("{} exists", self.path)),
            (false, false) => Outlook::Todo { destroys: false },
            // ssh-keygen writes the private key, then the public one: an interrupted run leaves half a pair.
            _ => Outlook::Conflict(format!(
                "{} is half made: remove {} and {public}, then run again",
                self.path, self.path
            )),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let directory = self.path.rsplit_once('/').map_or("/", |(dir, _)| dir);
        cx.system.create_private_dir(directory).map_err(io(format!("create {directory}")))?;
        let line = layouts::OperationKind::command(self)
            .ok_or_else(|| StepError::Conflict("ssh-keygen has no command line".into()))?;
        cx.system.run(&line, None)?;
        Ok(())
    }
}

impl Perform for NixosInstall {
    /// An install leaves nothing a probe can check cheaply; the journal says whether this plan's install
    /// finished before.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if cx.journal.applied(&cx.step.id) {
            Outlook::Done("an earlier run of this plan installed it".into())
        } else {
            Outlook::Todo { destroys: false }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let line = layouts::OperationKind::command(self)
            .ok_or_else(|| StepError::Conflict("nixos-install has no command line".into()))?;
        let id = &cx.step.id;
        cx.system.stream(&line, &mut |text| (cx.emit)(Event::StepOutput { id: id.clone(), line: text.to_string() }))?;
        Ok(())
    }
}
