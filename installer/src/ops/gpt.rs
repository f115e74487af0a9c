//! Wiping a disk and writing its partition table.

use layouts::gpt::GptPartition;
use layouts::steps::{Operation, PartitionTable, Wipe};
use partitioner::table::TableEntry;

use super::{Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};

impl Perform for Wipe {
    /// A disk that already has the planned partition table is not wiped again: the table was written
    /// after the wipe, by this plan.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let table =
            cx.steps.iter().find(|s| s.disk == cx.step.disk && matches!(s.operation, Operation::PartitionTable(_)));
        match table {
            Some(table) => {
                let table_cx = ProbeContext { step: table, ..*cx };
                match super::of(&table.operation).map(|op| op.probe(&table_cx)) {
                    // The planned table is on the disk (even if the kernel has yet to see it): the disk
                    // holds this plan's work, which a wipe would destroy.
                    Some(Outlook::Done(_) | Outlook::Todo { destroys: false } | Outlook::Change(_)) => {
                        Outlook::Done("the disk already has the planned partition table".into())
                    }
                    // A table that cannot be read is no reason to wipe: the run stops instead.
                    Some(Outlook::Conflict(why)) => Outlook::Conflict(why),
                    _ => Outlook::Todo { destroys: true },
                }
            }
            None => Outlook::Todo { destroys: true },
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let disks = cx.system.discover()?;
        let disk = cx.system.find_disk(&disks, &self.device)?;
        partitioner::ensure_free(disk)?;
        // Where the new table puts partitions, old contents must go too: a filesystem an earlier layout
        // left at the same offset would otherwise pass for this plan's own.
        let planned: Vec<(u64, u64)> = cx
            .steps
            .iter()
            .filter(|s| s.disk == cx.step.disk)
            .filter_map(|s| match &s.operation {
                Operation::PartitionTable(table) => Some(table),
                _ => None,
            })
            .flat_map(|table| {
                let sector = u64::from(table.logical_sector_size);
                table.partitions.iter().map(move |p| (p.extent.first_lba * sector, p.extent.sectors() * sector))
            })
            .collect();
        cx.system.wipe_disk(disk, self.discard, &planned)?;
        Ok(())
    }
}

impl Perform for PartitionTable {
    /// Done when both GPT copies hold exactly the planned partitions, the protective MBR is there, and
    /// the kernel's partitions are the planned ones (for an MBR table: the MBR and its chain of extended
    /// boot records hold them, with the planned signature and boot flags, and no GPT is there). When only
    /// the kernel's view is stale (a run cut between writing the table and the kernel re-reading it), the
    /// step is to do without destroying: the table is written again, identically, and the kernel told.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let sector = u64::from(self.logical_sector_size);
        let state = match cx.reports.table_state(cx.system, &self.device, sector) {
            Ok(state) => state,
            Err(error) => {
                return Outlook::Conflict(format!("cannot read the partition table of {}: {error}", self.device))
            }
        };
        let same = |e: &TableEntry, p: &GptPartition| {
            e.number == p.number
                && e.first_lba == p.extent.first_lba
                && e.last_lba == p.extent.last_lba
                && e.uuid.eq_ignore_ascii_case(&p.uuid)
                && e.type_guid.eq_ignore_ascii_case(&p.type_guid)
                && e.name == p.name
                && e.attributes == p.attribute_bits()
                && e.bootable == p.bootable
        };
        // Matched by number: a plan's order is the disk's, which numbers need not follow.
        let planned = |entries: &Option<Vec<TableEntry>>| {
            entries.as_ref().is_some_and(|entries| {
                entries.len() == self.partitions.len()
                    && self.partitions.iter().all(|p| entries.iter().any(|e| e.number == p.number && same(e, p)))
            })
        };
        // The disk's last partition, kept, may grow into the free space after it: its entry is the
        // planned one but for an earlier last sector, and it is the plan's last partition too (whose
        // filesystem grows with it).
        let grown = |e: &TableEntry, p: &GptPartition| {
            self.partitions.last() == Some(p)
                && e.last_lba < p.extent.last_lba
                && same(&TableEntry { last_lba: p.extent.last_lba, ..e.clone() }, p)
        };
        let is_last = |entries: &[TableEntry], e: &TableEntry| entries.iter().all(|o| o.first_lba <= e.first_lba);
        // Installing alongside kept partitions: a table holding some of the planned partitions and nothing
        // else gains the others in free space (and its last one may grow), without destroying anything.
        let kept_and_free = |entries: &Option<Vec<TableEntry>>| {
            entries.as_ref().is_some_and(|entries| {
                !entries.is_empty()
                    && entries
                        .iter()
                        .all(|e| self.partitions.iter().any(|p| same(e, p) || (is_last(entries, e) && grown(e, p))))
            })
        };
        let growth = |entries: &Option<Vec<TableEntry>>| {
            let entries = entries.as_deref().unwrap_or_default();
            entries.iter().filter(|e| is_last(entries, e)).find_map(|e| {
                let p = self.partitions.iter().find(|p| grown(e, p))?;
                let bytes = |sectors: u64| layouts::size::human(sectors * sector);
                Some(format!(
                    "partition {} grows into the free space after it, from {} to {} (the table is written again, \
                     every other entry as it is)",
                    e.number,
                    bytes(e.last_lba + 1 - e.first_lba),
                    bytes(p.extent.sectors())
                ))
            })
        };
        let alongside = match &self.msdos {
            None => state.protective_mbr && kept_and_free(&state.primary) && state.primary == state.backup,
            // An MBR table of primary partitions, known by its signature (the boot code stays as it is).
            Some(msdos) => {
                state.primary.is_none()
                    && state.backup.is_none()
                    && state.mbr.as_ref().is_some_and(|mbr| {
                        mbr.signature == msdos.signature
                            && mbr.extended.is_none()
                            && msdos.extended.is_none()
                            && kept_and_free(&Some(mbr.entries.clone()))
                    })
            }
        };
        let current =
            if self.msdos.is_some() { state.mbr.as_ref().map(|m| m.entries.clone()) } else { state.primary.clone() };
        if cx.step.keeps.is_some() && alongside && !planned(&current) {
            return growth(&current).map_or(Outlook::Todo { destroys: false }, Outlook::Change);
        }
        let table_is_planned = match &self.msdos {
            None => planned(&state.primary) && planned(&state.backup) && state.protective_mbr,
            // No GPT may be left beside the MBR table: blkid would take the disk for a GPT one.
            Some(msdos) => {
                state.primary.is_none()
                    && state.backup.is_none()
                    && state.mbr.as_ref().is_some_and(|mbr| {
                        mbr.signature == msdos.signature
                            && !mbr.broken_chain
                            && mbr.extended == msdos.extended_number(&self.partitions).zip(msdos.extended)
                            && planned(&Some(mbr.entries.clone()))
                            && self
                                .partitions
                                .iter()
                                .all(|p| mbr.entries.iter().any(|e| e.number == p.number && e.bootable == p.bootable))
                    })
            }
        };
        if !table_is_planned {
            return Outlook::Todo { destroys: true };
        }
        // The kernel lists an extended partition as a partition of its own (two sectors long).
        let extended_number = self.msdos.as_ref().and_then(|m| m.extended_number(&self.partitions));
        let kernel_agrees = state.kernel.as_ref().is_none_or(|kernel| {
            let kernel: Vec<_> = kernel.iter().filter(|k| Some(k.number) != extended_number).collect();
            kernel.len() == self.partitions.len()
                && self.partitions.iter().all(|p| {
                    kernel.iter().any(|k| {
                        k.number == p.number
                            && k.start == p.extent.first_lba * sector
                            && k.size == p.extent.sectors() * sector
                    })
                })
        });
        let kept_logical = cx.step.keeps.is_some() && self.msdos.as_ref().is_some_and(|m| m.extended.is_some());
        if kernel_agrees {
            Outlook::Done("the planned partition table is there, both copies, and the kernel sees it".into())
        } else if kept_logical {
            // Written again, the boot records of logical partitions would go where nix-dabei puts them, not
            // where they are: a kept table with logical partitions is only ever found.
            Outlook::Conflict(format!(
                "the kernel does not see the partitions of {}'s table where the table has them: let it re-read \
                 the table (partprobe); a kept table with logical partitions is never written again",
                self.device
            ))
        } else {
            Outlook::Todo { destroys: false }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.write_partition_table(self)?;
        cx.system.settle();
        Ok(())
    }
}
