//! btrfs subvolumes and swap files, made inside the filesystem's top level mounted privately.

use layouts::steps::{BtrfsSubvolumes, Mount};

use super::{io, Perform, PrivateMount, ProbeContext, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};
use crate::system::System;

/// The swap header's magic sits in the last 10 bytes of the first page (4 KiB on x86-64).
const SWAP_MAGIC_OFFSET: u64 = 4096 - 10;
const SWAP_MAGIC: &[u8] = b"SWAPSPACE2";

/// What the filesystem holds of the step's work.
#[derive(Debug, Default)]
struct Found {
    missing_subvolumes: Vec<String>,
    missing_swap_files: Vec<(String, u64)>,
}

/// Mounts the top level at the step's private mountpoint (read-only for a probe, which must change nothing).
fn top_level<'a>(system: &'a dyn System, op: &BtrfsSubvolumes, read_only: bool) -> std::io::Result<PrivateMount<'a>> {
    let mut options = op.top_level_options();
    if read_only {
        options.push("ro".into());
    }
    let mount = Mount { source: op.device.clone(), target: op.private_mountpoint(), fs_type: "btrfs".into(), options };
    PrivateMount::new(system, mount)
}

/// Reads which subvolumes and swap files are missing; the probe and the run share it.
fn look(system: &dyn System, op: &BtrfsSubvolumes) -> Result<Found, String> {
    let mut found = Found::default();
    for subvolume in &op.subvolumes {
        let path = op.inside(subvolume);
        match system.run(&op.show_command(subvolume), None) {
            Ok(_) => {}
            Err(CommandError::Failed { .. }) if system.exists(&path) => {
                return Err(format!(
                    "{subvolume} exists in the btrfs on {} but is not a subvolume: move it away and apply again",
                    op.device
                ))
            }
            Err(CommandError::Failed { .. }) => found.missing_subvolumes.push(subvolume.clone()),
            Err(error) => return Err(format!("cannot read the subvolumes on {}: {error}", op.device)),
        }
    }
    for (file, size) in &op.swap_files {
        let path = op.inside(file);
        if !system.exists(&path) {
            found.missing_swap_files.push((file.clone(), *size));
            continue;
        }
        // A run cut inside mkswapfile leaves a file without the swap header, written last.
        match system.read_bytes(&path, SWAP_MAGIC_OFFSET, SWAP_MAGIC.len()) {
            Ok(magic) if magic == SWAP_MAGIC => {}
            Ok(_) | Err(_) => {
                return Err(format!(
                    "the swap file {file} in the btrfs on {} is not whole (no swap header): remove it and apply again",
                    op.device
                ))
            }
        }
    }
    Ok(found)
}

impl Perform for BtrfsSubvolumes {
    /// Done when every subvolume and swap file is there; the filesystem is this plan's own (the mkfs
    /// step before checked its UUID). Reading them mounts the top level privately for a moment.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let top = match top_level(cx.system, self, true) {
            Ok(top) => top,
            Err(error) => return Outlook::Conflict(format!("cannot mount the btrfs on {}: {error}", self.device)),
        };
        let found = look(cx.system, self);
        drop(top);
        match found {
            Ok(found) if found.missing_subvolumes.is_empty() && found.missing_swap_files.is_empty() => {
                Outlook::Done(format!("the btrfs on {} has its subvolumes and swap files", self.device))
            }
            Ok(_) => Outlook::Todo { destroys: false },
            Err(why) => Outlook::Conflict(why),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let _top = top_level(cx.system, self, false).map_err(io(format!("mount the btrfs on {}", self.device)))?;
        let found = look(cx.system, self).map_err(StepError::Conflict)?;
        for subvolume in &found.missing_subvolumes {
            cx.system.run(&self.create_command(subvolume), None)?;
        }
        for (file, size) in &found.missing_swap_files {
            cx.system.run(&self.swap_file_command(file, *size), None)?;
        }
        Ok(())
    }
}
