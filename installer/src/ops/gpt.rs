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
        cx.system.wipe_disk(disk, self.discard)?;
        Ok(())
    }
}

impl Perform for PartitionTable {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let Ok(Some(entries)) = cx.system.read_partition_table(&self.device) else {
            return Outlook::Todo { destroys: true };
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
