//! The simulated mdadm: `--create`, `--assemble`, `--stop` and `--detail --export`, whose answer is
//! printed by the adapter ([`ArrayDetail::export`]) from the array it keeps.

use layouts::steps::CommandLine;

use super::{failed, State};
use crate::command::CommandError;
use crate::tools::mdadm::ArrayDetail;

impl State {
    /// mdadm, as far as the executor uses it.
    pub(super) fn mdadm(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let name = args.get(1).and_then(|a| a.strip_prefix("/dev/md/")).unwrap_or_default().to_string();
        let uuid = args.iter().find_map(|a| a.strip_prefix("--uuid=")).unwrap_or_default().to_string();
        let members: Vec<String> =
            args.iter().skip(2).filter(|a| !a.starts_with('-')).map(|d| self.canonical(d)).collect();
        match args.first().copied() {
            Some("--create") => {
                if let Some(missing) = members.iter().find(|d| !self.exists(d)) {
                    return Err(failed(line, format!("cannot open {missing}: No such file or directory")));
                }
                let dashed = layouts::nodes::mdadm::blkid_form(&uuid);
                // A new array holds nothing: no table, no signatures, on it or on its partitions.
                let array = format!("/dev/md/{name}");
                self.tables.remove(&array);
                self.signatures.retain(|device, _| device != &array && !device.starts_with(&array));
                for member in &members {
                    self.set_signature(member, "linux_raid_member", Some(format!("any:{name}")), dashed.clone());
                }
                let option = |key: &str| args.iter().find_map(|a| a.strip_prefix(key)).unwrap_or_default().to_string();
                let detail = ArrayDetail {
                    level: format!("raid{}", option("--level=")),
                    devices: members.len(),
                    metadata: option("--metadata="),
                    uuid,
                    members,
                };
                self.md_arrays.insert(name, (detail, true));
                Ok(String::new())
            }
            Some("--assemble") => match self.md_arrays.get_mut(&name) {
                Some((known, running)) if known.uuid == uuid => {
                    *running = true;
                    Ok(String::new())
                }
                _ => Err(failed(line, format!("/dev/md/{name}: no devices found for this array"))),
            },
            Some("--stop") => match self.md_arrays.get_mut(&name) {
                Some((_, running)) if *running => {
                    *running = false;
                    Ok(String::new())
                }
                _ => Err(failed(line, format!("error opening /dev/md/{name}: No such file or directory"))),
            },
            _ => {
                let name = args.last().and_then(|a| a.strip_prefix("/dev/md/")).unwrap_or_default();
                match self.md_arrays.get(name) {
                    Some((detail, true)) => Ok(detail.export(name)),
                    _ => Err(failed(line, format!("cannot open /dev/md/{name}"))),
                }
            }
        }
    }
}
