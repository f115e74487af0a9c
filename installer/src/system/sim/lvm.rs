//! The simulated LVM: `pvcreate`, `vgcreate`, `lvcreate`, `vgchange`, and the reports `pvs` and `lvs`,
//! printed by the adapter ([`crate::tools::lvm`]) from the rows it keeps.

use layouts::steps::CommandLine;

use super::{failed, State};
use crate::command::CommandError;
use crate::tools::lvm::{self, LogicalVolume, PhysicalVolume};

/// A volume group: its UUID (LVM makes one; plans cannot give it) and its physical volumes (canonical).
#[derive(Debug, Default)]
pub(super) struct SimGroup {
    pub(super) uuid: String,
    pub(super) devices: Vec<String>,
}

/// A logical volume: the row `lvs` shows, and whether it is active.
#[derive(Debug)]
pub(super) struct SimVolume {
    pub(super) row: LogicalVolume,
    pub(super) active: bool,
}

/// The size `lvcreate` gives for a share (`-l 50%FREE`): the simulated groups have no extents to count.
const SHARE_BYTES: u64 = 1 << 30;

impl State {
    /// An LVM UUID: 32 characters of [0-9a-zA-Z] in groups of 6-4-4-4-4-4-6.
    fn lvm_uuid(&mut self) -> String {
        self.next_uuid += 1;
        let digits = format!("Sim{:029}", self.next_uuid);
        let mut uuid = String::new();
        let mut rest = digits.as_str();
        for (i, width) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
            if i > 0 {
                uuid.push('-');
            }
            let (group, tail) = rest.split_at(width);
            uuid.push_str(group);
            rest = tail;
        }
        uuid
    }

    /// LVM's programs, as far as the executor uses them.
    pub(super) fn lvm(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let last = args.last().copied().unwrap_or_default();
        let option = |name: &str| {
            args.windows(2).find(|w| w[0] == name).map(|w| w[1].to_string()).or_else(|| {
                let prefix = format!("{name}=");
                args.iter().find_map(|a| a.strip_prefix(prefix.as_str())).map(str::to_string)
            })
        };
        match line.program.as_str() {
            "pvcreate" => {
                let device = self.canonical(last);
                let uuid = option("--uuid").unwrap_or_default();
                if !self.exists(&device) {
                    return Err(failed(line, format!("No device found for {device}")));
                }
                self.set_signature(&device, "LVM2_member", None, uuid);
                Ok(String::new())
            }
            "vgcreate" => {
                let name = args.iter().find(|a| !a.starts_with('-')).copied().unwrap_or_default().to_string();
                let devices: Vec<String> =
                    args.iter().skip_while(|a| **a != name).skip(1).map(|d| self.canonical(d)).collect();
                if self.volume_groups.contains_key(&name) {
                    return Err(failed(line, format!("A volume group called {name} already exists.")));
                }
                let is_pv = |s: &State, d: &String| {
                    s.signatures.get(d).is_some_and(|s| s.iter().any(|s| s.kind == "LVM2_member"))
                };
                if let Some(device) = devices.iter().find(|d| !is_pv(self, d)) {
                    return Err(failed(line, format!("{device} is not a physical volume")));
                }
                let uuid = self.lvm_uuid();
                self.volume_groups.insert(name, SimGroup { uuid, devices });
                Ok(String::new())
            }
            "lvcreate" => {
                let name = option("--name").unwrap_or_default();
                let key = (last.to_string(), name.clone());
                if !self.volume_groups.contains_key(last) {
                    return Err(failed(line, format!("Volume group \"{last}\" not found")));
                }
                if self.logical_volumes.contains_key(&key) {
                    return Err(failed(line, format!("Logical Volume \"{name}\" already exists")));
                }
                let bytes = option("-L").or_else(|| option("-V"));
                let size = match bytes {
                    Some(bytes) => bytes
                        .trim_end_matches('b')
                        .parse()
                        .map_err(|_| failed(line, format!("Invalid argument for --size: {bytes}")))?,
                    None => SHARE_BYTES,
                };
                let pool = option("--thinpool");
                let segment_type = match (&pool, option("--type")) {
                    (Some(_), _) => "thin".to_string(),
                    // LVM makes a RAID 5 with the left-symmetric layout unless told otherwise.
                    (None, Some(kind)) if kind == "raid5" => "raid5_ls".to_string(),
                    (None, Some(kind)) => kind,
                    (None, None) => "linear".to_string(),
                };
                let uuid = self.lvm_uuid();
                let row = LogicalVolume { group: last.to_string(), name, uuid, size, segment_type, pool };
                self.logical_volumes.insert(key, SimVolume { row, active: true });
                Ok(String::new())
            }
            "vgchange" => {
                let active = option("--activate").is_some_and(|state| state == "y");
                if !self.volume_groups.contains_key(last) {
                    return Err(failed(line, format!("Volume group \"{last}\" not found")));
                }
                for ((group, _), volume) in self.logical_volumes.iter_mut() {
                    if group == last {
                        volume.active = active;
                    }
                }
                Ok(String::new())
            }
            "pvs" if *line == lvm::physical_volumes_command() => {
                let mut rows: Vec<PhysicalVolume> = self
                    .signatures
                    .iter()
                    .filter_map(|(device, s)| s.iter().find(|s| s.kind == "LVM2_member").map(|s| (device, s)))
                    .map(|(device, signature)| {
                        let group = self.volume_groups.iter().find(|(_, g)| g.devices.contains(device));
                        PhysicalVolume {
                            device: device.clone(),
                            uuid: signature.uuid.clone().unwrap_or_default(),
                            group: group.map(|(name, _)| name.clone()),
                            group_uuid: group.map(|(_, g)| g.uuid.clone()),
                        }
                    })
                    .collect();
                // LVM lists physical volumes by name (the signatures are kept in no order).
                rows.sort_by(|a, b| a.device.cmp(&b.device));
                Ok(lvm::print_physical_volumes(&rows))
            }
            "lvs" if *line == lvm::logical_volumes_command() => {
                let rows: Vec<LogicalVolume> = self.logical_volumes.values().map(|v| v.row.clone()).collect();
                Ok(lvm::print_logical_volumes(&rows))
            }
            _ => Err(failed(line, format!("the simulated LVM cannot do {line}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::system::sim::SimSystem;
    use crate::system::System;
    use crate::tools::lvm::{self, LogicalVolume};
    use layouts::steps::CommandLine;

    /// `vm-tests lvm-thin-on-luks`'s group as LVM reported it (`tools::lvm`'s fixtures).
    const PVS: &str = include_str!("../../../tests/fixtures/lvm-pvs.json");
    const LVS: &str = include_str!("../../../tests/fixtures/lvm-lvs.json");

    #[test]
    fn the_simulated_reports_are_lvms_for_the_same_group() {
        let system = SimSystem::with_disks(vec![
            SimSystem::disk("vda", "virtio-v0", 3 << 30, "v0"),
            SimSystem::disk("vdb", "virtio-v1", 3 << 30, "v1"),
        ]);
        let real_pvs = lvm::parse_physical_volumes(PVS).expect("pvs");
        // The VM's commands (its plan's steps), on the simulator's disks instead of the LUKS mappings.
        let mut lines = Vec::new();
        for (pv, device) in real_pvs.iter().zip(["/dev/vda", "/dev/vdb"]) {
            lines.push(format!("pvcreate --yes --norestorefile --uuid {} {device}", pv.uuid));
        }
        lines.push("vgcreate --yes main /dev/vda /dev/vdb".into());
        lines.push("lvcreate --yes --name pool -L 2147483648b --type=thin-pool main".into());
        lines.push("lvcreate --yes --name root -V 1073741824b --thinpool=pool main".into());
        lines.push("lvcreate --yes --name home -V 1073741824b --thinpool=pool main".into());
        lines.push("lvcreate --yes --name srv -L 536870912b --type=raid1 main".into());
        for line in &lines {
            let mut words = line.split_whitespace();
            let program = words.next().expect("a program");
            system.run(&CommandLine::new(program, words), None).expect(line);
        }
        let pvs = system.run(&lvm::physical_volumes_command(), None).expect("pvs");
        let pvs = lvm::parse_physical_volumes(&pvs).expect("the adapter reads the simulator");
        let group_uuid = pvs[0].group_uuid.clone();
        assert!(group_uuid.as_ref().is_some_and(|u| u.len() == 38), "an LVM UUID: {group_uuid:?}");
        for (ours, theirs) in pvs.iter().zip(&real_pvs) {
            assert_eq!((&ours.uuid, &ours.group), (&theirs.uuid, &theirs.group));
            assert_eq!(ours.group_uuid, group_uuid, "one group");
        }
        let lvs = system.run(&lvm::logical_volumes_command(), None).expect("lvs");
        let lvs = lvm::parse_logical_volumes(&lvs).expect("the adapter reads the simulator");
        // LVM makes the volumes' UUIDs; everything else is the plan's.
        let without_uuid = |lv: &LogicalVolume| LogicalVolume { uuid: String::new(), ..lv.clone() };
        let real: Vec<LogicalVolume> = lvm::parse_logical_volumes(LVS).expect("lvs").iter().map(without_uuid).collect();
        assert_eq!(lvs.iter().map(without_uuid).collect::<Vec<_>>(), real);
        assert!(lvs.iter().all(|lv| lv.uuid.len() == 38), "{lvs:?}");
    }
}
