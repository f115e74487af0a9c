//! Creating, importing and exporting pools, and creating datasets.

use layouts::nodes::zfs::encrypted;
use layouts::steps::{HostId, Step, ZfsCreate, ZpoolCreate, ZpoolExport};
use layouts::OperationKind;

use super::{io, run_own_command, Perform, ProbeContext, ReadAhead, RunContext};
use crate::command::CommandError;
use crate::execute::{Outlook, StepError};
use crate::tools::zfs::ZfsError;

/// Partition numbers a GPT holds (its 128 entries).
const MAX_PARTITION_NUMBER: u32 = 128;

/// Under test emulation, native encryption's key derivation is cut to ZFS's minimum.
const WEAK_PBKDF2_ITERATIONS: &str = "pbkdf2iters=100000";

impl Perform for HostId {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.system.host_id() {
            Ok(current) if current.is_some() && current == self.value() => {
                Outlook::Done(format!("this system's host id is {}", self.host_id))
            }
            Ok(_) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(format!("cannot read this system's host id (/etc/hostid): {error}")),
        }
    }

    /// Refused while pools that are not the plan's are imported: they would be stamped with the new id and
    /// look foreign to this system afterwards.
    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let value = self.value().ok_or_else(|| StepError::Conflict(format!("{:?} is not a host id", self.host_id)))?;
        let foreign: Vec<String> =
            cx.zfs.imported_pools()?.into_iter().filter(|p| !cx.plan.pools.contains_key(p)).collect();
        if !foreign.is_empty() {
            let current = cx.system.host_id().ok().flatten().map_or("none".to_string(), |id| format!("{id:08x}"));
            return Err(StepError::Conflict(format!(
                "pools that are not the plan's are imported ({}): under host id {} they would look foreign to \
                 this system afterwards; export them, or give the plan this system's host id (host_id = \"{current}\")",
                foreign.join(", "),
                self.host_id
            )));
        }
        cx.system.set_host_id(value).map_err(io("write /etc/hostid".to_string()))
    }
}

impl Perform for ZpoolCreate {
    /// Done when the pool is imported with its keys loaded; to do without destroying anything when every
    /// member already carries this pool's label (it only needs importing); a change when the pool holds
    /// some of the planned devices and the rest can join it in place ([`ZpoolCreate::growth`]).
    fn reads_ahead(&self) -> Option<ReadAhead> {
        Some(ReadAhead::ZfsPools)
    }

    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        // A kept pool is the one of its GUID, or nothing of the plan's: never another of its name.
        if let Some(why) = self.guid.as_ref().and_then(|guid| not_the_kept_pool(self, cx, guid)) {
            return Outlook::Conflict(why);
        }
        let pool = &self.pool;
        match cx.zfs.imported_pools() {
            Ok(pools) if pools.contains(pool) => {
                if let Some(why) = imported_from_elsewhere(self, cx) {
                    return Outlook::Conflict(why);
                }
                if let Some(outlook) = in_place(self, cx, &|_| false) {
                    return outlook;
                }
                return match cx.zfs.locked_encryption_roots(pool) {
                    Ok(locked) if locked.is_empty() => Outlook::Done(format!("pool {pool} is imported")),
                    _ => Outlook::Todo { destroys: false },
                };
            }
            Ok(_) => {}
            Err(error) => return Outlook::Conflict(format!("cannot list ZFS pools: {error}")),
        }
        let members: Vec<&String> = self.vdevs.iter().flat_map(|v| &v.devices).collect();
        let mut labels: Vec<Option<String>> = Vec::new();
        for member in &members {
            match label_of(cx, member) {
                Ok(label) => labels.push(label),
                Err(why) => return Outlook::Conflict(why),
            }
        }
        if !members.is_empty() && labels.iter().all(|l| l.as_deref() == Some(&format!("zfs:{pool}"))) {
            return Outlook::Todo { destroys: false };
        }
        if let Some(outlook) = in_place(self, cx, &|_| false) {
            return outlook;
        }
        match members.iter().zip(&labels).find(|(_, l)| l.is_some()) {
            Some((member, Some(label))) => {
                Outlook::Conflict(format!("{member} holds {label}, not a member of a new pool {pool}"))
            }
            _ => Outlook::Todo { destroys: true },
        }
    }

    /// New partitions for the pool are made first (destroying what their disk held); the pool on the other
    /// members is what grows.
    fn change_despite_destruction(&self, cx: &ProbeContext<'_>, destroyed: &[&Step]) -> Option<Outlook> {
        // A member on a disk that is wiped, or on a device a destroying step writes, is made anew.
        let anew = |device: &str| {
            destroyed.iter().any(|step| {
                step.devices.iter().any(|d| d == device)
                    || step.disk.as_ref().and_then(|d| cx.plan.disks.get(d)).is_some_and(|disk| {
                        (1..=MAX_PARTITION_NUMBER)
                            .any(|n| layouts::nodes::gpt::partition_device(&disk.device, n) == device)
                    })
            })
        };
        in_place(self, cx, &anew)
    }

    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        let imported = cx.zfs.imported_pools().map(|pools| pools.contains(&self.pool));
        match imported {
            Ok(true) => imported_from_elsewhere(self, cx),
            // Nothing known yet (no ZFS here, as on a machine reviewing a plan): the step's own probe
            // decides when it comes, and stops the run if it still cannot tell.
            Ok(false) | Err(_) => None,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let pool = &self.pool;
        let imported = cx.zfs.imported_pools()?.contains(pool);
        let existing = self
            .devices()
            .any(|m| cx.system.signatures(m).is_ok_and(|s| s.iter().any(|s| s.zfs_pool() == Some(pool.as_str()))));
        if !imported && existing {
            match import(cx, self) {
                // Labels of this pool's name, on the plan's own devices, that ZFS does not take for a
                // pool: its making was cut short (the labels of a pool never synced). Make it again.
                Err(StepError::Zfs(ZfsError::Command(CommandError::Failed { stderr, .. })))
                    if stderr.contains("no such pool available") && self.guid.is_none() =>
                {
                    create(cx, self)?
                }
                other => other?,
            }
        } else if !imported {
            if self.guid.is_some() {
                return Err(StepError::Conflict(format!("the kept pool {pool} is not on the plan's devices")));
            }
            create(cx, self)?;
        }
        // An existing pool that holds part of the plan: the rest joins it (the probe said how).
        let growth = growth_of_imported(self, cx.system, cx.zfs).map_err(StepError::Conflict)?;
        for command in &growth {
            cx.zfs.run(command, None)?;
        }
        // From now on, only this pool is this plan's: another of the same name is refused by the probe.
        let guid = cx.zfs.pool_guid(pool)?;
        let mut journal = cx.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.record_pool(pool, &guid).map_err(io(format!("record the GUID of pool {pool} in the journal")))?;
        drop(journal);
        unlock(cx, pool)
    }
}

/// Why what the machine holds under a kept pool's name is not that pool (its GUID differs), if it is not.
/// Devices without a label of the pool's name are left to the probe (a kept pool there is refused).
fn not_the_kept_pool(op: &ZpoolCreate, cx: &ProbeContext<'_>, guid: &str) -> Option<String> {
    let pool = &op.pool;
    match cx.zfs.imported_pools() {
        Ok(pools) if pools.contains(pool) => match cx.zfs.pool_guid(pool) {
            Ok(found) if found == guid => None,
            Ok(found) => Some(format!("the imported pool {pool} has GUID {found}, not the kept pool's {guid}")),
            Err(error) => Some(format!("cannot read the GUID of pool {pool}: {error}")),
        },
        Ok(_) => op.devices().find_map(|device| match cx.signatures(device) {
            Ok(signatures) => signatures
                .into_iter()
                .find(|s| s.zfs_pool() == Some(pool.as_str()) && s.uuid.as_deref() != Some(guid))
                .map(|s| {
                    let found = s.uuid.unwrap_or_else(|| "none".into());
                    format!("{device} belongs to a pool {pool} of GUID {found}, not the kept pool's {guid}")
                }),
            Err(_) => None,
        }),
        Err(error) => Some(format!("cannot list ZFS pools: {error}")),
    }
}

/// Runs the step's own `zpool create`, with the key on standard input when the pool is encrypted.
fn create(cx: &RunContext<'_>, op: &ZpoolCreate) -> Result<(), StepError> {
    let mut line = op.command().ok_or_else(|| StepError::Conflict("zpool create has no command line".into()))?;
    let is_encrypted = encrypted(&op.root_fs_options);
    if is_encrypted && cx.options.weak_kdf && !op.root_fs_options.contains_key("pbkdf2iters") {
        line.args.splice(2..2, ["-O".to_string(), WEAK_PBKDF2_ITERATIONS.to_string()]);
    }
    let key = match op.root_fs_options.get("keylocation").map(String::as_str) {
        _ if !is_encrypted => None,
        Some(location) if location.starts_with("file://") => None,
        _ => Some(cx.secrets.key("prompt")?),
    };
    cx.zfs.run(&line, key.as_ref())?;
    Ok(())
}

/// Imports a pool this plan created earlier, from the plan's devices only. A pool that was not exported
/// (the machine went down mid-install) needs `-f`; its disks are the plan's own, checked by identity.
fn import(cx: &RunContext<'_>, op: &ZpoolCreate) -> Result<(), StepError> {
    let devices: Vec<String> = op.devices().cloned().collect();
    let (pool, altroot) = (&op.pool, &op.altroot);
    match cx.zfs.import_pool(pool, altroot, false, &devices) {
        Ok(()) => Ok(()),
        Err(ZfsError::Command(CommandError::Failed { stderr, .. })) if stderr.contains("-f") => {
            cx.zfs.import_pool(pool, altroot, true, &devices)?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// For an imported pool of the plan's pool's name: why it is not the plan's, if it is made of other
/// devices. A pool counts as the plan's only when it is made of the plan's devices: one of the same name
/// from other disks must not receive this plan's datasets and mounts.
fn imported_from_elsewhere(op: &ZpoolCreate, cx: &ProbeContext<'_>) -> Option<String> {
    let pool = &op.pool;
    if let Some(recorded) = cx.journal.pools.get(pool) {
        match cx.zfs.pool_guid(pool) {
            Ok(guid) if guid == *recorded => {}
            Ok(guid) => {
                return Some(format!(
                    "the imported pool {pool} (GUID {guid}) is not the one this plan made (GUID {recorded}): \
                     export it (`zpool export {pool}`)"
                ))
            }
            Err(error) => return Some(format!("cannot read the GUID of pool {pool}: {error}")),
        }
    }
    match cx.zfs.pool_members(pool) {
        Ok(members) if members_are(cx, &members, op.devices()) => None,
        Ok(members) => Some(format!(
            "a pool named {pool} is imported from {}, not from this plan's devices: export it (`zpool export \
             {pool}`) or give the plan's pool another name",
            if members.is_empty() { "unknown devices".to_string() } else { members.join(", ") }
        )),
        Err(error) => Some(format!("cannot read the members of pool {pool}: {error}")),
    }
}

/// Whether a pool's members, as ZFS names them, are all planned devices (the plan may have more, which
/// join the pool in place).
fn members_are<'a>(cx: &ProbeContext<'_>, members: &[String], planned: impl Iterator<Item = &'a String>) -> bool {
    let planned: Vec<&String> = planned.collect();
    !members.is_empty()
        && members.iter().all(|member| planned.iter().any(|device| cx.system.same_device(member, device)))
}

/// What a device holds, as the probe compares it: `zfs:POOL` for a pool member, else the signature's kind;
/// `None` for nothing, or a partition this plan makes first (it does not exist yet).
fn label_of(cx: &ProbeContext<'_>, device: &str) -> Result<Option<String>, String> {
    match cx.signatures(device) {
        Ok(signatures) => Ok(signatures.into_iter().next().map(|s| {
            if s.kind == "zfs_member" {
                format!("zfs:{}", s.label.unwrap_or_default())
            } else {
                s.kind
            }
        })),
        Err(_) if !cx.system.exists(device) => Ok(None),
        Err(error) => Err(format!("cannot read what {device} holds: {error}")),
    }
}

/// A pool of the plan's name that holds some of the planned devices and not the others, which can join it
/// in place: the change, or why they cannot. `None` when that is not the case (or cannot be read: the
/// probe then says why). `anew` tells the devices that steps before this one make anew (their disk is
/// wiped): they count as not members, whatever they hold now.
fn in_place(op: &ZpoolCreate, cx: &ProbeContext<'_>, anew: &dyn Fn(&str) -> bool) -> Option<Outlook> {
    let pool = &op.pool;
    let outlook = |growth: Result<Vec<layouts::CommandLine>, String>, before: &str| match growth {
        Ok(commands) if commands.is_empty() => None,
        Ok(commands) => Some(Outlook::Change(format!("{before}{}", shown(&commands)))),
        Err(why) => Some(Outlook::Conflict(why)),
    };
    if cx.zfs.imported_pools().ok()?.contains(pool) {
        if imported_from_elsewhere(op, cx).is_some() {
            return None;
        }
        let members = cx.zfs.pool_members(pool).ok()?;
        let member = |device: &str| {
            let found = members.iter().find(|m| cx.system.same_device(m, device));
            found.filter(|_| !anew(device)).cloned()
        };
        return outlook(op.growth(&member), "");
    }
    let ours = format!("zfs:{pool}");
    let mut labelled = Vec::new();
    for device in op.devices().filter(|d| !anew(d)) {
        match label_of(cx, device).ok()? {
            Some(label) if label == ours => labelled.push(device.clone()),
            None => {}
            Some(_) => return None,
        }
    }
    if labelled.is_empty() {
        return None;
    }
    let member = |device: &str| labelled.iter().find(|d| d.as_str() == device).cloned();
    outlook(op.growth(&member), &format!("import pool {pool} from {}, then ", labelled.join(", ")))
}

/// What an imported pool of the plan's lacks, as the commands that add it.
fn growth_of_imported(
    op: &ZpoolCreate,
    system: &dyn crate::system::System,
    zfs: &crate::tools::zfs::Zfs<'_>,
) -> Result<Vec<layouts::CommandLine>, String> {
    let members =
        zfs.pool_members(&op.pool).map_err(|e| format!("cannot read the members of pool {}: {e}", op.pool))?;
    op.growth(&|device: &str| members.iter().find(|m| system.same_device(m, device)).cloned())
}

/// The `altroot` the plan imports a dataset's pool under (its mountpoints show under it).
fn altroot_of<'a>(op: &ZfsCreate, steps: &'a [Step]) -> Option<&'a str> {
    let pool = op.dataset.split('/').next().unwrap_or_default();
    steps.iter().find_map(|step| match &step.operation {
        layouts::Operation::ZpoolCreate(create) if create.pool == pool => Some(create.altroot.as_str()),
        _ => None,
    })
}

/// Commands as a person reads them.
fn shown(commands: &[layouts::CommandLine]) -> String {
    commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

/// Loads the keys of every locked encryption root of a pool.
fn unlock(cx: &RunContext<'_>, pool: &str) -> Result<(), StepError> {
    for (root, location) in cx.zfs.locked_encryption_roots(pool)? {
        let key = if location.starts_with("file://") { None } else { Some(cx.secrets.key("prompt")?) };
        cx.zfs.load_key(&root, key.as_ref())?;
    }
    Ok(())
}

impl Perform for ZfsCreate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let dataset = &self.dataset;
        match cx.zfs.dataset(dataset) {
            Ok(Some(found)) if self.guid.as_ref().is_some_and(|g| found.properties.get("guid") != Some(g)) => {
                let have = found.properties.get("guid").map_or("none", String::as_str);
                let kept = self.guid.as_deref().unwrap_or_default();
                Outlook::Conflict(format!("{dataset} has GUID {have}, not the kept dataset's {kept}"))
            }
            Ok(Some(found)) => {
                let want = if self.volume_size.is_some() { "VOLUME" } else { "FILESYSTEM" };
                if found.kind == want {
                    match self.property_changes(&found.properties, altroot_of(self, cx.steps)) {
                        Ok(changes) if changes.is_empty() => Outlook::Done(format!("{dataset} exists")),
                        Ok(changes) => Outlook::Change(format!("`{}`", self.set_command(&changes))),
                        Err(why) => Outlook::Conflict(why),
                    }
                } else {
                    let (have, want) = (found.kind.to_lowercase(), want.to_lowercase());
                    Outlook::Conflict(format!("{dataset} exists as a {have}, the plan wants a {want}"))
                }
            }
            // A kept dataset is never made: once its pool is imported, it must be there.
            Ok(None) if self.guid.is_some() => {
                let pool = dataset.split('/').next().unwrap_or_default();
                match cx.zfs.imported_pools() {
                    Ok(pools) if pools.iter().any(|p| p == pool) => {
                        Outlook::Conflict(format!("the kept dataset {dataset} is not in pool {pool}"))
                    }
                    Ok(_) => Outlook::Todo { destroys: false },
                    Err(error) => Outlook::Conflict(error.to_string()),
                }
            }
            Ok(None) => Outlook::Todo { destroys: false },
            Err(error) => Outlook::Conflict(error.to_string()),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        // An existing dataset (the probe found it with other properties) gets the planned ones.
        if let Some(found) = cx.zfs.dataset(&self.dataset)? {
            let changes =
                self.property_changes(&found.properties, altroot_of(self, cx.steps)).map_err(StepError::Conflict)?;
            if !changes.is_empty() {
                cx.zfs.run(&self.set_command(&changes), None)?;
            }
            return Ok(());
        }
        if self.guid.is_some() {
            return Err(StepError::Conflict(format!("the kept dataset {} is not there", self.dataset)));
        }
        let is_encrypted = encrypted(&self.properties);
        let prompt = self.properties.get("keylocation").is_none_or(|l| l == "prompt");
        let key = if is_encrypted && prompt { Some(cx.secrets.key("prompt")?) } else { None };
        let mut line = self.command().ok_or_else(|| StepError::Conflict("zfs create has no command line".into()))?;
        if is_encrypted && cx.options.weak_kdf && !self.properties.contains_key("pbkdf2iters") {
            line.args.splice(1..1, ["-o".to_string(), WEAK_PBKDF2_ITERATIONS.to_string()]);
        }
        cx.zfs.run(&line, key.as_ref())?;
        if self.volume_size.is_some() {
            // A volume's node comes from udev; what is made on it next needs the node.
            cx.system.settle();
            let node = format!("/dev/zvol/{}", self.dataset);
            cx.system.wait_for_nodes(&self.dataset, &[node.as_str()])?;
        }
        Ok(())
    }
}

impl Perform for ZpoolExport {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.zfs.imported_pools() {
            Ok(pools) if pools.contains(&self.pool) => match cx.zfs.pool_members(&self.pool) {
                Ok(members) if members_are(cx, &members, self.devices.iter()) => Outlook::Todo { destroys: false },
                Ok(_) => Outlook::Done(format!("the imported pool {} is not this plan's: left alone", self.pool)),
                Err(error) => Outlook::Conflict(format!("cannot read the members of pool {}: {error}", self.pool)),
            },
            Ok(_) => Outlook::Done(format!("pool {} is not imported", self.pool)),
            Err(error) => Outlook::Conflict(format!("cannot list ZFS pools: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
