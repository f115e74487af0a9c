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
use layouts::nodes::zfs::{Dataset, DatasetKind, Pool, Vdev, VdevMode, ZfsMember};
use layouts::{Content, Plan, Size};
use serde_json::Value;

use crate::secret::Secret;
use crate::system::System;
use crate::zfs::{Zfs, ZfsError};

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

/// Opens every LUKS container among the plan's partitions that hold nothing yet with `key`, reads what it
/// holds, closes it again, and describes it as the partition's content (kept by the header's UUID, what it
/// holds by its own). A container the key does not open, or that holds what a kept container may not
/// (anything but a filesystem or swap, so far), is left undescribed, with a line saying so. Returns one
/// line per container, for people.
pub fn read_luks(system: &dyn System, plan: &mut Plan, key: &Secret) -> Result<Vec<String>, AdoptError> {
    let mut lines = Vec::new();
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
        system.luks_close(&probe_name).map_err(|e| AdoptError::Unreadable(e.to_string()))?;
        let inside = inside.map_err(|e| AdoptError::Unreadable(format!("cannot read what {device} holds: {e}")))?;
        match partitioner::adopt::describe(&inside) {
            (Some(content @ (Content::Filesystem(_) | Content::Swap(_))), _) => {
                let name = label.clone().unwrap_or_else(|| format!("luks-{uuid}"));
                lines.push(format!("{device}: LUKS container {uuid} opened with the key given and read: {name}"));
                let luks = Content::Luks(Luks {
                    name,
                    key: "prompt".into(),
                    label,
                    uuid: Some(uuid),
                    passphrase_file: None,
                    allow_discards: false,
                    additional_key_files: Vec::new(),
                    content: Box::new(content),
                });
                describe_as(plan, &reference, luks);
            }
            (_, why) => lines.push(format!(
                "{device}: its LUKS container holds {}: kept without content",
                why.unwrap_or_else(|| "nothing a plan describes".into())
            )),
        }
    }
    Ok(lines)
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
            let guid = signature.uuid.clone().unwrap_or_default();
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
    let tree = &status["pools"][name];
    let guid = match &tree["pool_guid"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(unreadable("zpool status shows no GUID".into())),
    };
    let mut members = Vec::new();
    let mut member_of = |leaf: &Value| -> Result<String, AdoptError> {
        let path = leaf["path"].as_str().ok_or_else(|| unreadable(format!("{} has no device path", leaf["name"])))?;
        let found = candidates.iter().find(|c| system.same_device(&c.device, path));
        let found = found.ok_or_else(|| {
            unreadable(format!("{path} is a member, but not a partition of the disks read (name its disk too)"))
        })?;
        members.push(found.reference.clone());
        Ok(found.reference.clone())
    };
    let mut vdevs_of = |class: &Value| -> Result<Vec<Vdev>, AdoptError> {
        let mut vdevs: Vec<Vdev> = Vec::new();
        let mut striped = Vec::new();
        for vdev in class.as_object().map(|o| o.values().collect::<Vec<_>>()).unwrap_or_default() {
            let kind = vdev["vdev_type"].as_str().unwrap_or_default();
            let vdev_name = vdev["name"].as_str().unwrap_or_default();
            let mode = match kind {
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
            let leaves = vdev["vdevs"].as_object().map(|o| o.values().collect::<Vec<_>>()).unwrap_or_default();
            let members = leaves.into_iter().map(&mut member_of).collect::<Result<Vec<_>, _>>()?;
            vdevs.push(Vdev { mode, members });
        }
        if !striped.is_empty() {
            vdevs.push(Vdev { mode: VdevMode::Stripe, members: striped });
        }
        Ok(vdevs)
    };
    let data = vdevs_of(&tree["vdevs"][name]["vdevs"])?;
    let log = vdevs_of(&tree["logs"])?;
    let special = vdevs_of(&tree["special"])?;
    let dedup = vdevs_of(&tree["dedup"])?;
    let mut leaves = |class: &Value| -> Result<Vec<String>, AdoptError> {
        let list = class.as_object().map(|o| o.values().collect::<Vec<_>>()).unwrap_or_default();
        list.into_iter().map(&mut member_of).collect()
    };
    let cache = leaves(&tree["l2cache"])?;
    let spare = leaves(&tree["spares"])?;
    let mut pool = Pool { cache, spare, log, special, dedup, ..Pool::default() };
    // One data vdev and nothing else: the pool's mode says it.
    match (data.as_slice(), pool.log.is_empty() && pool.special.is_empty() && pool.dedup.is_empty()) {
        ([only], true) if pool.cache.is_empty() && pool.spare.is_empty() => pool.mode = only.mode,
        _ => pool.vdevs = data,
    }
    let pool_properties = zfs.pool_properties(name)?;
    let pool_properties = &pool_properties["pools"][name]["properties"];
    pool.options = set_here(pool_properties)
        .into_iter()
        // Features a new pool enables anyway are no part of how it was made.
        .filter(|(key, _)| !IMPORT_PROPERTIES.contains(&key.as_str()) && !key.starts_with("feature@"))
        .collect();
    let altroot = pool_properties["altroot"]["value"].as_str().filter(|root| root.starts_with('/')).map(str::to_string);
    let listing = zfs.all_properties(name)?;
    let entries = listing["datasets"].as_object().cloned().unwrap_or_default();
    let mut datasets = IndexMap::new();
    for (full, entry) in &entries {
        let mut properties = set_here(&entry["properties"]);
        // ZFS shows mountpoints under the import's altroot.
        if let (Some(root), Some(mountpoint)) = (&altroot, properties.get_mut("mountpoint")) {
            if let Some(rest) = mountpoint.strip_prefix(root.trim_end_matches('/')) {
                *mountpoint = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
            }
        }
        // An encryption root's settings show as fixed, not set: they are what it was made with.
        let shown = |key: &str| entry["properties"][key]["value"].as_str().map(str::to_string);
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
        let volume = entry["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("volume"));
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
fn set_here(properties: &Value) -> BTreeMap<String, String> {
    let Some(map) = properties.as_object() else { return BTreeMap::new() };
    map.iter()
        .filter(|(_, p)| p["source"]["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("local")))
        .filter_map(|(key, p)| {
            let value = match &p["value"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((key.clone(), value))
        })
        .collect()
}
