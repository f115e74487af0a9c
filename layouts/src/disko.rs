//! disko interop: disko configurations (as the JSON that evaluating them prints) become plans, and plans
//! become disko configurations.
//!
//! Supported: disk, gpt (disko's defaults for type, priority order, size/start/end and labels),
//! filesystem, swap, luks, zpool (mode or topology, options, rootFsOptions, mountpoint), zfs_fs,
//! zfs_volume. Everything else is refused with its attribute path; nothing is dropped silently
//! (shell hooks, which nix-dabei never runs, are reported as warnings).

use std::collections::BTreeMap;
use std::fmt::Write;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::error::{FieldPath, PlanError, Problem};
use crate::model::{Content, Plan, PLAN_VERSION};
use crate::nixos::nix_string;
use crate::nodes::DISKO_CONTENT;

/// A plan read from a disko configuration, with what the reader noticed but could not carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The plan. Disks carry no size or identity: disko has none; fill them from the machine.
    pub plan: Plan,
    /// Things not carried over, each with its attribute path (shell hooks, VM image settings).
    pub warnings: Vec<String>,
}

/// Hooks disko runs as shell commands; nix-dabei runs no shell, so they are reported, not carried.
const HOOKS: &[&str] =
    &["preCreateHook", "postCreateHook", "preMountHook", "postMountHook", "preUnmountHook", "postUnmountHook"];

/// Reads disko's JSON, collecting every refusal with its attribute path and every warning.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

/// A JSON object of a disko configuration.
pub(crate) type Object = Map<String, Value>;

impl Reader {
    /// Notes something not carried over that does not stop the import.
    /// Adds a warning, once.
    pub(crate) fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    pub(crate) fn refuse(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem::new(path.clone(), message));
    }

    pub(crate) fn object<'a>(&mut self, value: &'a Value, path: &FieldPath) -> Option<&'a Object> {
        let object = value.as_object();
        if object.is_none() {
            self.refuse(path, "is not an attribute set");
        }
        object
    }

    /// Refuses attributes outside `known`; reports hooks as warnings.
    pub(crate) fn only(&mut self, object: &Object, path: &FieldPath, known: &[&str]) {
        for (key, value) in object {
            if known.contains(&key.as_str()) {
                continue;
            }
            if HOOKS.contains(&key.as_str()) {
                if value.as_str().is_some_and(|s| !s.trim().is_empty()) {
                    self.warnings
                        .push(format!("{}: not carried over: nix-dabei runs no shell hooks", path.join(key.clone())));
                }
                continue;
            }
            self.refuse(&path.join(key.clone()), "is not supported by nix-dabei");
        }
    }

    pub(crate) fn string(&mut self, object: &Object, key: &str, path: &FieldPath) -> Option<String> {
        match object.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                self.refuse(&path.join(key), "is not a string");
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, object: &Object, key: &str, path: &FieldPath) -> Vec<String> {
        match object.get(key) {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        self.refuse(&path.join(key).join(format!("[{i}]")), "is not a string");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.refuse(&path.join(key), "is not a list");
                vec![]
            }
        }
    }

    pub(crate) fn flag(&mut self, object: &Object, key: &str, path: &FieldPath) -> bool {
        match object.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.refuse(&path.join(key), "is not a boolean");
                false
            }
        }
    }

    pub(crate) fn properties(&mut self, object: &Object, key: &str, path: &FieldPath) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(value) = object.get(key) {
            if let Some(props) = self.object(value, &path.join(key)) {
                for (name, value) in props {
                    match value {
                        Value::String(s) => {
                            map.insert(name.clone(), s.clone());
                        }
                        Value::Number(n) => {
                            map.insert(name.clone(), n.to_string());
                        }
                        Value::Bool(b) => {
                            map.insert(name.clone(), if *b { "on".into() } else { "off".into() });
                        }
                        _ => self.refuse(&path.join(key).join(name.clone()), "is not a string"),
                    }
                }
            }
        }
        map
    }

    /// Mount options without disko's "defaults", one per entry: disko passes each as `-o`, so one may
    /// hold several separated by commas.
    pub(crate) fn mount_options(&mut self, object: &Object, path: &FieldPath) -> Vec<String> {
        let options = self.strings(object, "mountOptions", path);
        let split = options.iter().flat_map(|o| o.split(',')).map(str::trim).filter(|o| !o.is_empty());
        split.filter(|o| *o != "defaults").map(str::to_string).collect()
    }

    /// Reads a content through the node type registered for its disko `type`.
    pub(crate) fn content(&mut self, value: &Value, path: &FieldPath, inside_luks: bool) -> Option<Content> {
        let object = self.object(value, path)?;
        let kind = self.string(object, "type", path).unwrap_or_default();
        if let Some((_, read)) = DISKO_CONTENT.iter().find(|(name, _)| *name == kind) {
            return read(self, object, path, inside_luks);
        }
        let known: Vec<&str> = DISKO_CONTENT.iter().map(|(name, _)| *name).collect();
        self.refuse(&path.join("type"), format!("{kind:?} is not supported by nix-dabei ({} are)", known.join(", ")));
        None
    }
}

/// Reads a disko configuration: `{ disko.devices = ...; }` as JSON (with `networking.hostName` and
/// `networking.hostId` when present), or the devices attribute set itself.
pub fn import(value: &Value) -> Result<Imported, PlanError> {
    let mut reader = Reader::default();
    let root = FieldPath::root();
    let mut hostname = None;
    let mut host_id = None;
    let (devices, devices_path) = match value.get("disko") {
        Some(disko) => {
            let top = value.as_object().cloned().unwrap_or_default();
            reader.only(&top, &root, &["disko", "networking"]);
            if let Some(networking) = value.get("networking").and_then(Value::as_object) {
                let path = root.join("networking");
                reader.only(networking, &path, &["hostName", "hostId"]);
                hostname = reader.string(networking, "hostName", &path);
                host_id = reader.string(networking, "hostId", &path);
            }
            let disko_path = root.join("disko");
            if let Some(object) = disko.as_object() {
                reader.only(object, &disko_path, &["devices"]);
            }
            (disko.get("devices").cloned().unwrap_or(Value::Null), disko_path.join("devices"))
        }
        None => (value.clone(), root.clone()),
    };
    let Some(devices) = reader.object(&devices, &devices_path).cloned() else {
        return Err(PlanError::new(reader.problems));
    };
    for (key, value) in &devices {
        let empty = value.as_object().is_some_and(Map::is_empty);
        if !["disk", "zpool", "nodev", "lvm_vg", "mdadm", "bcachefs_filesystems"].contains(&key.as_str()) && !empty {
            let what =
                "is not a device type nix-dabei supports (disk, zpool, mdadm, lvm_vg, nodev, bcachefs_filesystems)";
            reader.refuse(&devices_path.join(key.clone()), what);
        }
    }
    let mut disks = IndexMap::new();
    if let Some(list) = devices.get("disk").and_then(|d| reader.object(d, &devices_path.join("disk"))).cloned() {
        for (key, value) in &list {
            // disko names a disk by its `name` (the attribute name unless set): its labels use that name.
            let name = value.get("name").and_then(Value::as_str).unwrap_or(key).to_string();
            let path = devices_path.join("disk").join(key.clone());
            if let Some(disk) = crate::nodes::gpt::disk_from_disko(&mut reader, &name, value, &path) {
                disks.insert(name, disk);
            }
        }
    }
    crate::nodes::btrfs::link_members_from_disko(&mut reader, &mut disks, &devices_path.join("disk"));
    let mut pools = IndexMap::new();
    if let Some(list) = devices.get("zpool").and_then(|d| reader.object(d, &devices_path.join("zpool"))).cloned() {
        for (name, value) in &list {
            if let Some(pool) = crate::nodes::zfs::pool_from_disko(
                &mut reader,
                name,
                value,
                &disks,
                &devices_path.join("zpool").join(name.clone()),
            ) {
                pools.insert(name.clone(), pool);
            }
        }
    }
    let raids = match devices.get("mdadm").and_then(|d| reader.object(d, &devices_path.join("mdadm"))).cloned() {
        Some(list) => crate::nodes::mdadm::raids_from_disko(&mut reader, &list, &devices_path.join("mdadm")),
        None => IndexMap::new(),
    };
    let bcachefs_path = devices_path.join("bcachefs_filesystems");
    let bcachefs_filesystems = match devices.get("bcachefs_filesystems").and_then(|d| reader.object(d, &bcachefs_path))
    {
        Some(list) => {
            let list = list.clone();
            crate::nodes::bcachefs::filesystems_from_disko(&mut reader, &list, &bcachefs_path)
        }
        None => IndexMap::new(),
    };
    let mut volume_groups = IndexMap::new();
    if let Some(list) = devices.get("lvm_vg").and_then(|d| reader.object(d, &devices_path.join("lvm_vg"))).cloned() {
        for (key, value) in &list {
            let path = devices_path.join("lvm_vg").join(key.clone());
            let Some(object) = reader.object(value, &path).cloned() else { continue };
            let name = object.get("name").and_then(Value::as_str).unwrap_or(key).to_string();
            if let Some(group) = crate::nodes::lvm::vg_from_disko(&mut reader, &object, &path) {
                volume_groups.insert(name, group);
            }
        }
    }
    let mut nodev = IndexMap::new();
    if let Some(list) = devices.get("nodev").and_then(|d| reader.object(d, &devices_path.join("nodev"))).cloned() {
        for (key, value) in &list {
            let path = devices_path.join("nodev").join(key.clone());
            let Some(object) = reader.object(value, &path).cloned() else { continue };
            if let Some(entry) = crate::nodes::nodev::from_disko(&mut reader, key, &object, &path) {
                nodev.insert(key.clone(), entry);
            }
        }
    }
    if !reader.problems.is_empty() {
        return Err(PlanError::new(reader.problems));
    }
    // disko leaves the firmware to the configuration; a BIOS boot partition says GRUB goes on the disk.
    let partitions = || disks.values().flat_map(|d: &crate::model::Disk| d.partitions.values());
    let bios = disks.values().any(crate::model::Disk::boots_bios);
    let esp = partitions().any(|p| p.is_esp());
    let boot = match (bios, esp) {
        (true, true) => Some(crate::boot::BootMode::Both),
        (true, false) => Some(crate::boot::BootMode::Bios),
        (false, true) => Some(crate::boot::BootMode::Uefi),
        (false, false) => None,
    };
    let plan = Plan {
        version: PLAN_VERSION,
        hostname: hostname.unwrap_or_else(|| "nixos".into()),
        host_id,
        boot,
        disks,
        pools,
        raids,
        volume_groups,
        bcachefs_filesystems,
        nodev,
        ..Plan::default()
    };
    Ok(Imported { plan, warnings: reader.warnings })
}

/// Why a plan cannot be written as disko.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ExportError {
    /// The plan field at fault.
    pub path: FieldPath,
    /// Why.
    pub message: String,
}

/// Writes Nix attribute sets, indented.
#[derive(Debug)]
pub(crate) struct Writer<'p> {
    out: String,
    /// The nesting depth of the next line.
    pub indent: usize,
    /// The plan being written, for nodes that name others.
    pub plan: &'p Plan,
    /// What the content being written sits on (set by [`Writer::content_of`]).
    pub owner: String,
}

impl Writer<'_> {
    pub(crate) fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}{text}", "  ".repeat(self.indent));
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.line(&format!("{} = {{", key(name)));
        self.indent += 1;
    }

    pub(crate) fn close(&mut self) {
        self.indent -= 1;
        self.line("};");
    }

    pub(crate) fn string(&mut self, name: &str, value: &str) {
        self.line(&format!("{} = {};", key(name), nix_string(value)));
    }

    pub(crate) fn list(&mut self, name: &str, values: &[String]) {
        let items: Vec<String> = values.iter().map(|v| nix_string(v)).collect();
        self.line(&format!("{} = [ {} ];", key(name), items.join(" ")));
    }

    pub(crate) fn properties(&mut self, name: &str, map: &BTreeMap<String, String>) {
        if map.is_empty() {
            return;
        }
        self.open(name);
        for (k, v) in map {
            self.string(k, v);
        }
        self.close();
    }

    /// `content = { ... };` of what `owner` (a partition `"<disk>/<partition>"`, an array, a logical volume
    /// or a volume) holds.
    pub(crate) fn content_of(&mut self, owner: &str, content: &Content) {
        self.owner = owner.to_string();
        self.content(content);
    }

    /// `content = { ... };` written by the content's node type, for the same owner as the one around it
    /// (inside a LUKS container).
    pub(crate) fn content(&mut self, content: &Content) {
        if content.node().omitted_in_disko() {
            return;
        }
        self.open("content");
        content.node().to_disko(self);
        self.close();
    }
}

/// An attribute name, quoted unless it is a plain identifier.
fn key(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-'".contains(c));
    if plain {
        name.to_string()
    } else {
        nix_string(name)
    }
}

/// The disko configuration of a plan, as a Nix file: `{ disko.devices = ...; networking... }`.
pub fn export(plan: &Plan) -> Result<String, ExportError> {
    let mut w = Writer { out: String::new(), indent: 0, plan, owner: String::new() };
    w.line(&format!("# The disk layout of {}, written by nix-dabei as a disko configuration.", plan.hostname));
    w.line("{");
    w.indent += 1;
    w.line(&format!("networking.hostName = {};", nix_string(&plan.hostname)));
    if let Some(id) = &plan.host_id {
        w.line(&format!("networking.hostId = {};", nix_string(id)));
    }
    w.line("disko.devices = {");
    w.indent += 1;
    w.open("disk");
    for (disk_name, disk) in &plan.disks {
        disk.to_disko(&mut w, disk_name)?;
    }
    w.close();
    if !plan.pools.is_empty() {
        w.open("zpool");
        for (pool_name, pool) in &plan.pools {
            pool.to_disko(&mut w, plan, pool_name)?;
        }
        w.close();
    }
    if !plan.raids.is_empty() {
        w.open("mdadm");
        for (name, raid) in &plan.raids {
            raid.to_disko(&mut w, name);
        }
        w.close();
    }
    if !plan.bcachefs_filesystems.is_empty() {
        w.open("bcachefs_filesystems");
        for (name, filesystem) in &plan.bcachefs_filesystems {
            filesystem.to_disko(&mut w, plan, name);
        }
        w.close();
    }
    if !plan.volume_groups.is_empty() {
        w.open("lvm_vg");
        for (name, group) in &plan.volume_groups {
            group.to_disko(&mut w, name);
        }
        w.close();
    }
    if !plan.nodev.is_empty() {
        w.open("nodev");
        for (key, nodev) in &plan.nodev {
            nodev.to_disko(&mut w, key);
        }
        w.close();
    }
    w.indent -= 1;
    w.line("};");
    w.indent -= 1;
    w.line("}");
    Ok(w.out)
}
