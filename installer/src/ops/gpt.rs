//! Wiping a disk and writing its partition table.

use layouts::steps::{Operation, PartitionTable, Wipe};

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
                    Some(Outlook::Done(_)) => Outlook::Done("the disk already has the planned partition table".into()),
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
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let entries = match cx.system.read_partition_table(&self.device) {
            Ok(Some(entries)) => entries,
            Ok(None) => return Outlook::Todo { destroys: true },
            Err(error) => {
                return Outlook::Conflict(format!("cannot read the partition table of {}: {error}", self.device))
            }
        };
        let same = entries.len() == self.partitions.len()
            && entries.iter().zip(&self.partitions).all(|(e, p)| {
                e.number == p.number
                    && e.first_lba == p.extent.first_lba
                    && e.last_lba == p.extent.last_lba
                    && e.uuid.eq_ignore_ascii_case(&p.uuid)
                    && e.type_guid.eq_ignore_ascii_case(&p.type_guid)
                    && e.name == p.name
            });
        if same {
            Outlook::Done("the planned partition table is there".into())
        } else {
            Outlook::Todo { destroys: true }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.write_partition_table(self)?;
        cx.system.settle();
        Ok(())
    }
}
