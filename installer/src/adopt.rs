//! Reading LUKS containers (with a key) and ZFS pools back into a plan (`nix-dabei probe`), after
//! `partitioner::adopt` has read the disks. A LUKS container the key opens is described with its header's
//! UUID and what it holds, under the name systemd gives such a container (`luks-UUID`) unless it has a
//! label; it is opened only for reading what is in it, and closed again. ZFS:
//! every pool with a member among the plan's partitions becomes a kept pool of the plan, identified by its
//! GUID, with its topology (data vdevs, log, special, dedup, cache, spares), the properties set on it and
//! its datasets, and its members' partitions name it as their content. A pool that is not imported is
//! imported read-only (nothing mounted, nothing written) for as long as it is read, then exported again.
//! Nothing is invented: only properties set on a dataset (source `local`) are written, and keys are not
//! asked for.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use layouts::nodes::luks::{Luks, LuksOpen};
use layouts::nodes::lvm::{LogicalVolume, LvSize, LvType, LvmPv, VolumeGroup};
use layouts::nodes::mdadm::{MdMember, Raid};
use layouts::nodes::zfs::{Dataset, DatasetKind, Pool, Vdev, VdevMode, ZfsMember};
use layouts::{CommandLine, Content, Plan, Size};

use crate::secret::Secret;
use crate::system::System;
use crate::tools::lvm::{self, PhysicalVolume};
use crate::tools::mdadm::ArrayDetail;
use crate::tools::zfs::{Property, VdevStatus, Zfs, ZfsError};
use crate::tools::ToolOutputError;

/// Where a pool read back is imported: nothing is mounted there, but ZFS shows mountpoints under it.
const PROBE_ROOT: &str = "/run/nix-dabei/probe";

/// Properties that say how a pool was imported, not how it is made.
const IMPORT_PROPERTIES: &[&str] = &["altroot", "cachefile", "readonly"];

/// Why pools or LUKS containers could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// ZFS failed.
    #[error(transparent)]
    Zfs(#[from] ZfsError),
    /// What ZFS or the disks show cannot be described (or was not fully read).
    #[error("{0}")]
    Unreadable(String),
}

/// LUKS containers `read_luks` left open because they hold a physical volume, for
/// [`read_volume_groups`]: closed when dropped, whatever happens in between.
pub struct OpenContainers<'a> {
    system: &'a dyn System,
    containers: Vec<OpenContainer>,
}

/// One container left open: the partition, its header (without content yet) and its mapping.
#[derive(Debug)]
struct OpenContainer {
    reference: String,
    luks: Luks,
    mapping: String,
}

impl OpenContainers<'_> {
    /// None left open.
    pub fn none(system: &dyn System) -> OpenContainers<'_> {
        OpenContainers { system, containers: Vec::new() }
    }
}

impl std::fmt::Debug for OpenContainers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.containers.iter().map(|c| &c.mapping)).finish()
    }
}

impl OpenContainers<'_> {
    /// Closes every container, waiting a little for the kernel to let go of one that was just read
    /// (udev may still be looking at what it held); one that stays held is an error naming it, so that a
    /// probe never reports success with its mappings left behind.
    pub fn close(mut self) -> Result<(), AdoptError> {
        let containers = std::mem::take(&mut self.containers);
        for container in &containers {
            let mut tries = 0;
            loop {
                match self.system.luks_close(&container.mapping) {
                    Ok(()) => break,
                    Err(error) if tries >= 10 => {
                        return Err(AdoptError::Unreadable(format!(
                            "cannot close the container {} it opened to read ({error}): something still holds it \
                             (`dmsetup info {}` names it); close it by hand",
                            container.mapping, container.mapping
                        )))
                    }
                    Err(_) => {
                        tries += 1;
                        self.system.settle();
                        std::thread::sleep(std::time::Duration::from_millis(300));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for OpenContainers<'_> {
    fn drop(&mut self) {
        for container in &self.containers {
            // Closing fails only while something holds the mapping; the probe's own activation is undone
            // before this, and nothing else knows the probe's names.
            let _ = self.system.luks_close(&container.mapping);
        }
    }
}

/// What `read_luks` found: one line per container, for people, and the containers left open.
#[derive(Debug)]
pub struct LuksRead<'a> {
    /// One line per container.
    pub lines: Vec<String>,
    /// Containers holding a physical volume, open until [`read_volume_groups`] has read their groups.
    pub open: OpenContainers<'a>,
}

/// Opens every LUKS container among the plan's partitions that hold nothing yet with `key`, reads what it
/// holds, closes it again, and describes it as the partition's content (kept by the header's UUID, what it
/// holds by its own). A container holding a physical volume stays open, for [`read_volume_groups`]. A
/// container the key does not open, or that holds what a kept container may not (anything else), is left
/// undescribed, with a line saying so.
pub fn read_luks<'a>(system: &'a dyn System, plan: &mut Plan, key: &Secret) -> Result<LuksRead<'a>, AdoptError> {
    let mut lines = Vec::new();
    let mut left_open = OpenContainers::none(system);
    for Candidate { reference, device } in undescribed(plan) {
        let signatures = system
            .signatures(&device)
            .map_err(|e| AdoptError::Unreadable(format!("cannot read what {device} holds: {e}")))?;
        let Some(header) = signatures.iter().find(|s| s.kind == "crypto_LUKS") else { continue };
        let Some(uuid) = header.uuid.clone() else { continue };
        let label = header.label.clone().filter(|l| !l.is_empty());
        let probe_name = format!("nix-dabei-probe-{}", &uuid[..uuid.len().min(8)]);
        let open = LuksOpen {
            device: device.clone(),
            name: probe_name.clone(),
            key: "prompt".into(),
            passphrase_file: None,
            allow_discards: false,
        };
        if let Err(error) = system.luks_open(&open, key) {
            lines.push(format!(
                "{device}: the key given does not open its LUKS container ({error}): kept without content"
            ));
            continue;
        }
        let inside = system.signatures(&format!("/dev/mapper/{probe_name}"));
        let name = label.clone().unwrap_or_else(|| format!("luks-{uuid}"));
        let luks = |content: Content| Luks {
            name: name.clone(),
            key: "prompt".into(),
            label: label.clone(),
            uuid: Some(uuid.clone()),
            passphrase_file: None,
            allow_discards: false,
            additional_key_files: Vec::new(),
            content: Box::new(content),
        };
        if inside.as_ref().is_ok_and(|found| found.iter().any(|s| s.kind == "LVM2_member")) {
            // Read with its volume group, which may span other containers; closed after that.
            let placeholder = luks(Content::LvmPv(LvmPv { volume_group: String::new(), uuid: None }));
            left_open.containers.push(OpenContainer { reference, luks: placeholder, mapping: probe_name });
            continue;
        }
        system.luks_close(&probe_name).map_err(|e| AdoptError::Unreadable(e.to_string()))?;
        let inside = inside.map_err(|e| AdoptError::Unreadable(format!("cannot read what {device} holds: {e}")))?;
        match partitioner::adopt::describe(&inside) {
            (Some(content @ (Content::Filesystem(_) | Content::Swap(_))), _) => {
                lines.push(format!("{device}: LUKS container {uuid} opened with the key given and read: {name}"));
                describe_as(plan, &reference, Content::Luks(luks(content)));
            }
            (_, why) => lines.push(format!(
                "{device}: its LUKS container holds {}: kept without content",
                why.unwrap_or_else(|| "nothing a plan describes".into())
            )),
        }
    }
    Ok(LuksRead { lines, open: left_open })
}

/// Reads every LVM volume group with a physical volume among the plan's partitions that hold nothing yet
/// (or in a container `read_luks` left open) into the plan: kept, by its UUID, with its logical volumes
/// (kept by theirs, with their size, type, thin pool and what they hold: a filesystem or swap), and names
/// it, with each physical volume's UUID, as those partitions' content. A group whose volumes are not active
/// is activated for as long as it is read, then deactivated again; the containers are closed at the end.
/// Fails closed: a physical volume outside the plan's partitions, or a volume of a kind plans do not
/// describe, stop it. Returns one line per group read, for people.
pub fn read_volume_groups(
    system: &dyn System,
    plan: &mut Plan,
    open: OpenContainers<'_>,
) -> Result<Vec<String>, AdoptError> {
    // Every candidate physical volume: its device, its partition, and its container where it is in one.
    let mut candidates: Vec<(String, String, Option<&OpenContainer>)> = Vec::new();
    for Candidate { reference, device } in undescribed(plan) {
        let signatures = system
            .signatures(&device)
            .map_err(|e| AdoptError::Unreadable(format!("cannot read what {device} holds: {e}")))?;
        if signatures.iter().any(|s| s.kind == "LVM2_member") {
            candidates.push((device, reference, None));
        }
    }
    for container in &open.containers {
        candidates.push((format!("/dev/mapper/{}", container.mapping), container.reference.clone(), Some(container)));
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let pvs = read_lvm(system, &lvm::physical_volumes_command(), lvm::parse_physical_volumes)?;
    let candidate_of =
        |pv: &PhysicalVolume| candidates.iter().find(|(device, _, _)| system.same_device(device, &pv.device));
    // A group with a physical volume among the candidates is read: every one of its volumes must be one.
    let mut groups: BTreeMap<String, (String, Vec<(String, String)>)> = BTreeMap::new();
    for pv in pvs.iter().filter(|pv| candidate_of(pv).is_some()) {
        if let Some(group) = &pv.group {
            let uuid = pv.group_uuid.clone().ok_or_else(|| {
                AdoptError::Unreadable(format!("pvs shows volume group {group} of {} without its UUID", pv.device))
            })?;
            groups.entry(group.clone()).or_insert_with(|| (uuid, Vec::new()));
        }
    }
    for pv in &pvs {
        let Some(group) = pv.group.as_deref().filter(|g| groups.contains_key(*g)) else { continue };
        let Some((_, reference, _)) = candidate_of(pv) else {
            return Err(AdoptError::Unreadable(format!(
                "volume group {group} has physical volume {}, which is not on the disks read: name its disk too",
                pv.device
            )));
        };
        if let Some(entry) = groups.get_mut(group) {
            entry.1.push((reference.clone(), pv.uuid.clone()));
        }
    }
    let mut lines = Vec::new();
    for (group, (group_uuid, members)) in groups {
        let volumes = read_volumes(system, &group)?;
        let count = volumes.len();
        plan.volume_groups.insert(group.clone(), VolumeGroup { volumes, uuid: Some(group_uuid.clone()), keep: true });
        let mut names = Vec::new();
        for (reference, pv_uuid) in members {
            let pv = Content::LvmPv(LvmPv { volume_group: group.clone(), uuid: Some(pv_uuid) });
            let container = candidates.iter().find(|(_, r, _)| *r == reference).and_then(|(_, _, c)| *c);
            match container {
                Some(container) => {
                    names.push(format!("{reference} (in LUKS container {})", container.luks.name));
                    let luks = Luks { content: Box::new(pv), ..container.luks.clone() };
                    describe_as(plan, &reference, Content::Luks(luks));
                }
                None => {
                    names.push(reference.clone());
                    describe_as(plan, &reference, pv);
                }
            }
        }
        lines.push(format!(
            "volume group {group} (UUID {group_uuid}) on {}, with {count} logical volume(s): kept",
            names.join(", ")
        ));
    }
    open.close()?;
    Ok(lines)
}

/// One of LVM's reports, through its adapter.
fn read_lvm<T>(
    system: &dyn System,
    line: &CommandLine,
    parse: fn(&str) -> Result<T, ToolOutputError>,
) -> Result<T, AdoptError> {
    let output = system.run(line, None).map_err(|e| AdoptError::Unreadable(format!("cannot read LVM: {e}")))?;
    parse(&output).map_err(|e| AdoptError::Unreadable(e.to_string()))
}

/// A group's logical volumes as kept volumes of a plan, with what they hold (activating the group to read
/// that, and deactivating it again, where its volumes are not active).
fn read_volumes(system: &dyn System, group: &str) -> Result<IndexMap<String, LogicalVolume>, AdoptError> {
    let unreadable = |why: String| AdoptError::Unreadable(format!("volume group {group}: {why}"));
    let rows = read_lvm(system, &lvm::logical_volumes_command(), lvm::parse_logical_volumes)?;
    let mut volumes = IndexMap::new();
    for row in rows.into_iter().filter(|lv| lv.group == group) {
        let name = row.name;
        let kind = match row.segment_type.as_str() {
            "linear" => None,
            "thin-pool" => Some(LvType::ThinPool),
            "thin" => Some(LvType::Thin),
            "raid0" => Some(LvType::Raid0),
            "raid1" => Some(LvType::Raid1),
            "raid4" => Some(LvType::Raid4),
            "raid5" | "raid5_ls" => Some(LvType::Raid5),
            "raid6" | "raid6_zr" => Some(LvType::Raid6),
            "raid10" => Some(LvType::Raid10),
            "mirror" => Some(LvType::Mirror),
            other => return Err(unreadable(format!("{name} is a {other} volume, which plans do not describe"))),
        };
        let pool = row.pool.filter(|_| kind == Some(LvType::Thin));
        let volume = LogicalVolume {
            size: LvSize::Bytes(row.size),
            kind,
            pool,
            content: None,
            uuid: Some(row.uuid),
            keep: true,
        };
        volumes.insert(name, volume);
    }
    let devices: Vec<String> = volumes
        .iter()
        .filter(|(_, lv)| lv.kind != Some(LvType::ThinPool))
        .map(|(name, _)| format!("/dev/{group}/{name}"))
        .collect();
    let activate = !devices.iter().all(|d| system.exists(d));
    let change = |state: &str| CommandLine::new("vgchange", ["--activate", state, "--ignoremonitoring", group]);
    if activate {
        system.run(&change("y"), None).map_err(|e| unreadable(format!("cannot activate it to read it: {e}")))?;
        system.settle();
    }
    let mut read = Ok(());
    for (name, volume) in volumes.iter_mut().filter(|(_, lv)| lv.kind != Some(LvType::ThinPool)) {
        match system.signatures(&format!("/dev/{group}/{name}")) {
            Ok(signatures) => {
                if let (Some(content @ (Content::Filesystem(_) | Content::Swap(_))), _) =
                    partitioner::adopt::describe(&signatures)
                {
                    volume.content = Some(content);
                }
            }
            Err(error) => {
                read = Err(unreadable(format!("cannot read what {name} holds: {error}")));
                break;
            }
        }
    }
    if activate {
        system.run(&change("n"), None).map_err(|e| unreadable(format!("cannot deactivate it again: {e}")))?;
    }
    read.map(|()| volumes)
}

/// A partition of the plan that holds nothing yet: `disk/partition` and its device.
struct Candidate {
    reference: String,
    device: String,
}

/// The plan's partitions that hold nothing yet, in the plan's order.
fn undescribed(plan: &Plan) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    for (disk_name, disk) in &plan.disks {
        for ((part_name, part), number) in disk.partitions.iter().zip(disk.partition_numbers()) {
            if part.content.is_none() {
                let device = layouts::gpt::partition_device(&disk.device, number);
                candidates.push(Candidate { reference: format!("{disk_name}/{part_name}"), device });
            }
        }
    }
    candidates
}

/// Gives the partition `reference` (`disk/partition`) its content.
fn describe_as(plan: &mut Plan, reference: &str, content: Content) {
    let (disk, part) = reference.split_once('/').unwrap_or_default();
    if let Some(partition) = plan.disks.get_mut(disk).and_then(|d| d.partitions.get_mut(part)) {
        partition.content = Some(content);
    }
}

/// Reads every RAID array with a member among the plan's partitions that hold nothing yet into the plan
/// (kept, by its UUID) with its level, superblock format and what it holds (a filesystem or swap; anything
/// else, such as a partition table, is kept undescribed and said), and names it as those partitions'
/// content. An array that is not running is assembled read-only under a name of its own for as long as it
/// is read, then stopped again. Fails closed: a member outside the plan's partitions, or two arrays of one
/// name, stop it. Returns one line per array read, for people.
pub fn read_arrays(system: &dyn System, plan: &mut Plan) -> Result<Vec<String>, AdoptError> {
    let candidates = undescribed(plan);
    // Each array's members, by its UUID (blkid's form), and its name.
    let mut labelled: BTreeMap<String, (String, Vec<&Candidate>)> = BTreeMap::new();
    for candidate in &candidates {
        let signatures = system
            .signatures(&candidate.device)
            .map_err(|e| AdoptError::Unreadable(format!("cannot read what {} holds: {e}", candidate.device)))?;
        for signature in signatures.iter().filter(|s| s.kind == "linux_raid_member") {
            let Some(uuid) = signature.uuid.clone() else { continue };
            let label = signature.label.clone().unwrap_or_default();
            let name = label.rsplit_once(':').map_or(label.as_str(), |(_, name)| name).to_string();
            labelled.entry(uuid).or_insert_with(|| (name, Vec::new())).1.push(candidate);
        }
    }
    let mut lines = Vec::new();
    for (blkid_uuid, (name, members)) in labelled {
        if plan.raids.contains_key(&name) {
            return Err(AdoptError::Unreadable(format!("two arrays are named {name}: rename one first")));
        }
        let uuid = layouts::nodes::mdadm::md_uuid(&blkid_uuid);
        let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
        let running = running_array(system, &name, &uuid);
        let device = match &running {
            Some(device) => device.clone(),
            None => {
                let device = format!("/dev/md/nix-dabei-probe-{}", &blkid_uuid[..8.min(blkid_uuid.len())]);
                let mut args = vec!["--assemble".to_string(), "--readonly".into(), device.clone()];
                args.push(format!("--uuid={uuid}"));
                args.extend(devices.iter().cloned());
                system.run(&CommandLine { program: "mdadm".into(), args }, None).map_err(|e| {
                    AdoptError::Unreadable(format!("cannot assemble array {name} read-only to read it: {e}"))
                })?;
                system.settle();
                device
            }
        };
        let read = read_array(system, &device, &name, &devices);
        if running.is_none() {
            let stop = CommandLine::new("mdadm", ["--stop".to_string(), device.clone()]);
            system.run(&stop, None).map_err(|e| AdoptError::Unreadable(format!("cannot stop {device}: {e}")))?;
        }
        let (level, metadata, content, note) = read?;
        let what = match (&content, note) {
            (Some(_), _) => "what it holds".to_string(),
            (None, Some(note)) => format!("no content ({note})"),
            (None, None) => "nothing in it".to_string(),
        };
        let how = if running.is_some() { "running" } else { "assembled read-only to read it, and stopped again" };
        let references: Vec<&str> = members.iter().map(|m| m.reference.as_str()).collect();
        lines.push(format!(
            "RAID {level} array {name} (UUID {uuid}) on {}: kept with {what} ({how})",
            references.join(", ")
        ));
        for reference in &references {
            describe_as(plan, reference, Content::MdMember(MdMember { array: name.clone() }));
        }
        let raid = Raid {
            level,
            metadata,
            options: Vec::new(),
            content,
            partitions: IndexMap::new(),
            uuid: Some(uuid),
            keep: true,
        };
        plan.raids.insert(name, raid);
    }
    Ok(lines)
}

/// `/dev/md/<name>` when it is running with this UUID.
fn running_array(system: &dyn System, name: &str, uuid: &str) -> Option<String> {
    let device = format!("/dev/md/{name}");
    if !system.exists(&device) {
        return None;
    }
    let detail = system.run(&layouts::nodes::mdadm::detail_command(&device), None).ok()?;
    ArrayDetail::parse(&detail).ok().filter(|d| d.is(uuid)).map(|_| device)
}

/// An assembled array's level, superblock format and content (or why it has none described), checking
/// that its members are the ones found.
fn read_array(
    system: &dyn System,
    device: &str,
    name: &str,
    devices: &[String],
) -> Result<(u8, String, Option<Content>, Option<String>), AdoptError> {
    let unreadable = |why: String| AdoptError::Unreadable(format!("array {name}: {why}"));
    let detail = system
        .run(&layouts::nodes::mdadm::detail_command(device), None)
        .map_err(|e| unreadable(format!("cannot read it: {e}")))?;
    let ArrayDetail { level, devices: expected, metadata, members, .. } =
        ArrayDetail::parse(&detail).map_err(|e| unreadable(e.to_string()))?;
    let level: u8 = level
        .strip_prefix("raid")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| unreadable(format!("level {level:?} is not one a plan describes")))?;
    let outside = members.iter().find(|m| !devices.iter().any(|d| system.same_device(d, m)));
    if let Some(member) = outside {
        return Err(unreadable(format!("{member} is a member, but not a partition of the disks read")));
    }
    if members.len() != expected || expected != devices.len() {
        return Err(unreadable(format!(
            "it has {expected} member(s), {} found on the disks read: name every disk it is on, and let it be \
             whole",
            devices.len()
        )));
    }
    let signatures = system.signatures(device).map_err(|e| unreadable(format!("cannot read what it holds: {e}")))?;
    let table = signatures.iter().any(|s| ["gpt", "dos", "PMBR"].contains(&s.kind.as_str()));
    let (content, note) = match partitioner::adopt::describe(&signatures) {
        _ if table => (None, Some("it holds a partition table; partitions inside an array are not kept yet".into())),
        (Some(content @ (Content::Filesystem(_) | Content::Swap(_))), _) => (Some(content), None),
        (_, note) => (None, note),
    };
    Ok((level, metadata, content, note))
}

/// Reads every pool with a member among the plan's partitions that hold nothing yet into the plan (kept,
/// by GUID) and names it as those partitions' content. Returns one line per pool read, for people.
/// Fails closed: a device that cannot be read, two pools of one name, a member outside the plan's disks
/// or a vdev of a kind plans do not describe stop it.
pub fn read_pools(system: &dyn System, plan: &mut Plan) -> Result<Vec<String>, AdoptError> {
    let candidates = undescribed(plan);
    // Each pool's name and GUID, from the labels on its members.
    let mut labelled: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for candidate in &candidates {
        let signatures = system
            .signatures(&candidate.device)
            .map_err(|e| AdoptError::Unreadable(format!("cannot read what {} holds: {e}", candidate.device)))?;
        for signature in signatures {
            let Some(name) = signature.zfs_pool() else { continue };
            // blkid reads the pool's GUID from the label as its UUID; a label without one is unreadable.
            let guid = signature.uuid.clone().ok_or_else(|| {
                AdoptError::Unreadable(format!("{}: the ZFS label of pool {name} shows no GUID", candidate.device))
            })?;
            let entry = labelled.entry(name.to_string()).or_insert_with(|| (guid.clone(), Vec::new()));
            if entry.0 != guid {
                return Err(AdoptError::Unreadable(format!(
                    "two pools are named {name} (GUIDs {} and {guid}): import and rename one first",
                    entry.0
                )));
            }
            entry.1.push(candidate.device.clone());
        }
    }
    if labelled.is_empty() {
        return Ok(Vec::new());
    }
    let zfs = Zfs::new(system);
    let imported = zfs.imported_pools()?;
    let mut lines = Vec::new();
    for (name, (guid, devices)) in labelled {
        let was_imported = imported.contains(&name);
        if !was_imported {
            zfs.import_read_only(&name, PROBE_ROOT, &devices)?;
        }
        let read = read_pool(system, &zfs, &name, &candidates);
        if !was_imported {
            zfs.export(&name)?;
        }
        let (mut pool, members, found_guid) = read?;
        if found_guid != guid {
            return Err(AdoptError::Unreadable(format!(
                "pool {name}'s labels say GUID {guid}, the imported pool has {found_guid}"
            )));
        }
        pool.keep = true;
        pool.guid = Some(guid.clone());
        let datasets = pool.datasets.len();
        for reference in &members {
            describe_as(plan, reference, Content::Zfs(ZfsMember { pool: name.clone() }));
        }
        let how = if was_imported { "imported" } else { "imported read-only to read it, and exported again" };
        lines.push(format!(
            "pool {name} (GUID {guid}) on {}, with {datasets} dataset(s): kept ({how})",
            members.join(", ")
        ));
        plan.pools.insert(name, pool);
    }
    Ok(lines)
}

/// One imported pool as a plan's pool, its members (`disk/partition`) and its GUID.
fn read_pool(
    system: &dyn System,
    zfs: &Zfs<'_>,
    name: &str,
    candidates: &[Candidate],
) -> Result<(Pool, Vec<String>, String), AdoptError> {
    let unreadable = |why: String| AdoptError::Unreadable(format!("pool {name}: {why}"));
    let status = zfs.status(name)?;
    let guid = status.pool_guid.clone();
    let mut members = Vec::new();
    let mut member_of = |leaf: &VdevStatus| -> Result<String, AdoptError> {
        let path = leaf.path.as_deref().ok_or_else(|| unreadable(format!("{} has no device path", leaf.name)))?;
        let found = candidates.iter().find(|c| system.same_device(&c.device, path));
        let found = found.ok_or_else(|| {
            unreadable(format!("{path} is a member, but not a partition of the disks read (name its disk too)"))
        })?;
        members.push(found.reference.clone());
        Ok(found.reference.clone())
    };
    let mut vdevs_of = |class: &mut dyn Iterator<Item = &VdevStatus>| -> Result<Vec<Vdev>, AdoptError> {
        let mut vdevs: Vec<Vdev> = Vec::new();
        let mut striped = Vec::new();
        for vdev in class {
            let vdev_name = vdev.name.as_str();
            let mode = match vdev.vdev_type.as_str() {
                "disk" | "file" => {
                    striped.push(member_of(vdev)?);
                    continue;
                }
                "mirror" => VdevMode::Mirror,
                "raidz" if vdev_name.starts_with("raidz3") => VdevMode::Raidz3,
                "raidz" if vdev_name.starts_with("raidz2") => VdevMode::Raidz2,
                "raidz" => VdevMode::Raidz1,
                other => {
                    return Err(unreadable(format!("its vdev {vdev_name} is a {other}, which plans do not describe")))
                }
            };
            let members = vdev.vdevs.values().map(&mut member_of).collect::<Result<Vec<_>, _>>()?;
            vdevs.push(Vdev { mode, members });
        }
        if !striped.is_empty() {
            vdevs.push(Vdev { mode: VdevMode::Stripe, members: striped });
        }
        Ok(vdevs)
    };
    let data = vdevs_of(&mut status.data())?;
    let log = vdevs_of(&mut status.logs.values())?;
    let special = vdevs_of(&mut status.special.values())?;
    let dedup = vdevs_of(&mut status.dedup.values())?;
    let cache = status.l2cache.values().map(&mut member_of).collect::<Result<Vec<_>, _>>()?;
    let spare = status.spares.values().map(&mut member_of).collect::<Result<Vec<_>, _>>()?;
    let mut pool = Pool { cache, spare, log, special, dedup, ..Pool::default() };
    // One data vdev and nothing else: the pool's mode says it.
    match (data.as_slice(), pool.log.is_empty() && pool.special.is_empty() && pool.dedup.is_empty()) {
        ([only], true) if pool.cache.is_empty() && pool.spare.is_empty() => pool.mode = only.mode,
        _ => pool.vdevs = data,
    }
    let pool_listing = zfs.pool_properties(name)?;
    let pool_properties = pool_listing
        .pools
        .get(name)
        .ok_or_else(|| unreadable("zpool get shows no properties of it".into()))?
        .properties
        .clone();
    pool.options = set_here(&pool_properties)
        .into_iter()
        // Features a new pool enables anyway are no part of how it was made.
        .filter(|(key, _)| !IMPORT_PROPERTIES.contains(&key.as_str()) && !key.starts_with("feature@"))
        .collect();
    let altroot = pool_properties.get("altroot").map(|p| p.value.clone()).filter(|root| root.starts_with('/'));
    let listing = zfs.all_properties(name)?;
    let mut datasets = IndexMap::new();
    for (full, entry) in &listing.datasets {
        let mut properties = set_here(&entry.properties);
        // ZFS shows mountpoints under the import's altroot.
        if let (Some(root), Some(mountpoint)) = (&altroot, properties.get_mut("mountpoint")) {
            if let Some(rest) = mountpoint.strip_prefix(root.trim_end_matches('/')) {
                *mountpoint = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
            }
        }
        // An encryption root's settings show as fixed, not set: they are what it was made with.
        let shown = |key: &str| entry.properties.get(key).map(|p| p.value.clone());
        if shown("encryptionroot").as_deref() == Some(full.as_str()) {
            for key in ["encryption", "keyformat", "keylocation", "pbkdf2iters"] {
                match shown(key) {
                    Some(value) if value != "-" && value != "0" && value != "none" => {
                        properties.insert(key.to_string(), value);
                    }
                    _ => {}
                }
            }
        }
        if full == name {
            pool.root_fs_options = properties;
            continue;
        }
        let Some(relative) = full.strip_prefix(&format!("{name}/")) else { continue };
        let volume = entry.kind.eq_ignore_ascii_case("volume");
        let size = if volume {
            properties.remove("volsize");
            let bytes = shown("volsize").and_then(|v| v.parse::<u64>().ok());
            Some(Size::Bytes(bytes.ok_or_else(|| unreadable(format!("volume {full} shows no size")))?))
        } else {
            None
        };
        let kind = if volume { DatasetKind::Volume } else { DatasetKind::Filesystem };
        let guid = Some(shown("guid").ok_or_else(|| unreadable(format!("{full} shows no GUID")))?);
        datasets
            .insert(relative.to_string(), Dataset { kind, properties, size, keep: true, guid, ..Dataset::default() });
    }
    pool.datasets = datasets;
    Ok((pool, members, guid))
}

/// The properties a `-j` listing shows as set on the dataset or pool itself (source `LOCAL`).
fn set_here(properties: &BTreeMap<String, Property>) -> BTreeMap<String, String> {
    properties.iter().filter(|(_, p)| p.is_local()).map(|(key, p)| (key.clone(), p.value.clone())).collect()
}
