//! What read-only report programs (`pvs`, `lvs`) printed, and the partition tables read, kept until
//! something is written: the probes of one run ask them the same question once per volume, and LVM's
//! tools scan every device each time they run, a good part of a second on a small machine. A disk's table
//! is read by the probe of its wipe and again by that of its partition table (both copies, and the
//! kernel's partitions): once is enough. So are the signatures on a device: the preview's discovery reads
//! those of every partition of the plan's disks, and the probes of the steps on them read them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use layouts::CommandLine;

use partitioner::{DiskError, Signature, TableState};

use crate::command::CommandError;
use crate::system::System;

/// Outputs of report commands by command line, since the last [`Reports::forget`]. The executor forgets
/// them after every step it performs.
#[derive(Debug, Default)]
pub struct Reports {
    seen: Mutex<HashMap<String, String>>,
    tables: Mutex<HashMap<(String, u64), TableState>>,
    /// Signatures by the kernel name of their device.
    signatures: Mutex<HashMap<String, Vec<Signature>>>,
    /// One gate per question, held while it is answered: steps probed at once that ask the same one wait
    /// for its answer instead of running the program again; different questions are answered at once.
    gates: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Reports {
    /// The output of a read-only command: run now, or as it was since the last write. Failures are not
    /// kept.
    pub fn run(&self, system: &dyn System, line: &CommandLine) -> Result<String, CommandError> {
        let key = line.to_string();
        self.remembered(&self.seen, key.clone(), &key, || system.run(line, None))
    }

    /// The partition table of `device` as it stands (`System::read_table_state`): read now, or as it
    /// was since the last write. Failures are not kept.
    pub fn table_state(&self, system: &dyn System, device: &str, sector: u64) -> Result<TableState, DiskError> {
        let question = format!("table of {device} ({sector}-byte sectors)");
        self.remembered(&self.tables, (device.to_string(), sector), &question, || {
            system.read_table_state(device, sector)
        })
    }

    /// The signatures on `device` (`System::signatures`): read now, or as they were since the last write.
    /// A device is known by its kernel name, whatever link names it; one without (not there) is read
    /// each time, as are failures.
    pub fn signatures(&self, system: &dyn System, device: &str) -> Result<Vec<Signature>, DiskError> {
        let Some(kernel) = system.kernel_name(device) else { return system.signatures(device) };
        let question = format!("signatures on {kernel}");
        self.remembered(&self.signatures, kernel, &question, || system.signatures(device))
    }

    /// The answer kept in `answers` under `key`, or `read`'s, kept: read once however many ask at once
    /// (the first to ask holds the question's gate while it reads, the others wait and find it kept).
    /// Failures are not kept.
    fn remembered<K, V, E>(
        &self,
        answers: &Mutex<HashMap<K, V>>,
        key: K,
        question: &str,
        read: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        K: std::hash::Hash + Eq,
        V: Clone,
    {
        if let Some(answer) = lock(answers).get(&key) {
            return Ok(answer.clone());
        }
        let gate = self.gate(question);
        let _answering = lock(&gate);
        if let Some(answer) = lock(answers).get(&key) {
            return Ok(answer.clone());
        }
        let answer = read()?;
        lock(answers).insert(key, answer.clone());
        Ok(answer)
    }

    /// Drops everything kept.
    pub fn forget(&self) {
        lock(&self.seen).clear();
        lock(&self.tables).clear();
        lock(&self.signatures).clear();
        lock(&self.gates).clear();
    }

    fn gate(&self, question: &str) -> Arc<Mutex<()>> {
        lock(&self.gates).entry(question.to_string()).or_default().clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
