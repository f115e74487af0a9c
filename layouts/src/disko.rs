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
use crate::model::{Content, Dataset, DatasetKind, Disk, Filesystem, Format, Identity, Luks, Partition, Plan, Pool, Swap, Vdev, VdevMode, ZfsMember, PLAN_VERSION};
use crate::nixos::nix_string;
use crate::size::{format_exact, parse_bytes, Size};
use crate::validate::default_partition_label;

/// A plan read from a disko configuration, with what the reader noticed but could not carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The plan. Disks carry no size or identity: disko has none; fill them from the machine.
    pub plan: Plan,
    /// Things not carried over, each with its attribute path (shell hooks, VM image settings).
    pub warnings: Vec<String>,
}

/// sgdisk type codes and the plan names they stand for.
const CODES: &[(&str, &str)] = &[
    ("EF00", "esp"),
    ("EF02", "bios-boot"),
    ("8300", "linux"),
    ("8304", "linux-root-x86-64"),
    ("8200", "swap"),
    ("8309", "luks"),
    ("BF01", "zfs"),
    ("FD00", "raid"),
    ("8E00", "lvm"),
];

/// Hooks disko runs as shell commands; nix-dabei runs no shell, so they are reported, not carried.
const HOOKS: &[&str] = &["preCreateHook", "postCreateHook", "preMountHook", "postMountHook", "preUnmountHook", "postUnmountHook"];

struct Reader {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

type Object = Map<String, Value>;

impl Reader {
    fn refuse(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Problem::new(path.clone(), message));
    }

    fn object<'a>(&mut self, value: &'a Value, path: &FieldPath) -> Option<&'a Object> {
        let object = value.as_object();
        if object.is_none() {
            self.refuse(path, "is not an attribute set");
        }
        object
    }

    /// Refuses attributes outside `known`; reports hooks as warnings.
    fn only(&mut self, object: &Object, path: &FieldPath, known: &[&str]) {
        for (key, value) in object {
            if known.contains(&key.as_str()) {
                continue;
            }
            if HOOKS.contains(&key.as_str()) {
                if value.as_str().is_some_and(|s| !s.trim().is_empty()) {
                    self.warnings.push(format!("{}: not carried over: nix-dabei runs no shell hooks", path.join(key.clone())));
                }
                continue;
            }
            self.refuse(&path.join(key.clone()), "is not supported by nix-dabei");
        }
    }

    fn string(&mut self, object: &Object, key: &str, path: &FieldPath) -> Option<String> {
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

    fn strings(&mut self, object: &Object, key: &str, path: &FieldPath) -> Vec<String> {
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

    fn flag(&mut self, object: &Object, key: &str, path: &FieldPath) -> bool {
        match object.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.refuse(&path.join(key), "is not a boolean");
                false
            }
        }
    }

    fn properties(&mut self, object: &Object, key: &str, path: &FieldPath) -> BTreeMap<String, String> {
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

    /// Mount options without disko's "defaults".
    fn mount_options(&mut self, object: &Object, path: &FieldPath) -> Vec<String> {
        self.strings(object, "mountOptions", path).into_iter().filter(|o| o != "defaults").collect()
    }

    fn content(&mut self, value: &Value, path: &FieldPath, inside_luks: bool) -> Option<Content> {
        let object = self.object(value, path)?;
        let kind = self.string(object, "type", path).unwrap_or_default();
        match kind.as_str() {
            "filesystem" => {
                self.only(object, path, &["type", "format", "mountpoint", "mountOptions", "extraArgs"]);
                let format_name = self.string(object, "format", path).unwrap_or_default();
                let format = match format_name.as_str() {
                    "vfat" => Format::Vfat,
                    "ext4" => Format::Ext4,
                    "xfs" => Format::Xfs,
                    "btrfs" => Format::Btrfs,
                    other => {
                        self.refuse(&path.join("format"), format!("{other:?} is not a format nix-dabei makes (vfat, ext4, xfs, btrfs)"));
                        return None;
                    }
                };
                let mut extra = self.strings(object, "extraArgs", path);
                let label_flag = if format == Format::Vfat { "-n" } else { "-L" };
                let label = (extra.len() >= 2 && extra[0] == label_flag).then(|| {
                    let label = extra[1].clone();
                    extra.drain(..2);
                    label
                });
                Some(Content::Filesystem(Filesystem {
                    format,
                    mountpoint: self.string(object, "mountpoint", path),
                    mount_options: self.mount_options(object, path),
                    label,
                    mkfs_options: extra,
                }))
            }
            "swap" => {
                self.only(object, path, &["type", "randomEncryption", "priority", "discardPolicy", "resumeDevice", "extraArgs"]);
                let extra = self.strings(object, "extraArgs", path);
                let label = match extra.as_slice() {
                    [] => None,
                    [flag, label] if flag == "-L" => Some(label.clone()),
                    _ => {
                        self.refuse(&path.join("extraArgs"), "only a label (\"-L\" LABEL) is supported for swap");
                        None
                    }
                };
                let priority = match object.get("priority") {
                    None | Some(Value::Null) => None,
                    Some(value) => match value.as_i64().and_then(|p| i32::try_from(p).ok()) {
                        Some(p) => Some(p),
                        None => {
                            self.refuse(&path.join("priority"), "is not a number");
                            None
                        }
                    },
                };
                Some(Content::Swap(Swap {
                    random_encryption: self.flag(object, "randomEncryption", path),
                    priority,
                    label,
                    discard_policy: self.string(object, "discardPolicy", path),
                    resume_device: self.flag(object, "resumeDevice", path),
                }))
            }
            "luks" => {
                if inside_luks {
                    self.refuse(&path.join("type"), "LUKS inside LUKS is not supported");
                    return None;
                }
                self.only(object, path, &["type", "name", "content", "passwordFile", "keyFile", "settings", "askPassword", "extraFormatArgs", "extraOpenArgs", "additionalKeyFiles", "initrdUnlock"]);
                for list in ["extraOpenArgs", "additionalKeyFiles"] {
                    if !self.strings(object, list, path).is_empty() {
                        self.refuse(&path.join(list), "is not supported by nix-dabei");
                    }
                }
                if object.get("initrdUnlock") == Some(&Value::Bool(false)) {
                    self.refuse(&path.join("initrdUnlock"), "false is not supported: nix-dabei unlocks LUKS in the initrd");
                }
                let format_args = self.strings(object, "extraFormatArgs", path);
                let label = match format_args.as_slice() {
                    [] => None,
                    [flag, label] if flag == "--label" => Some(label.clone()),
                    _ => {
                        self.refuse(&path.join("extraFormatArgs"), "only a label (\"--label\" LABEL) is supported");
                        None
                    }
                };
                let settings_path = path.join("settings");
                let mut allow_discards = false;
                let mut key_file = self.string(object, "keyFile", path);
                if let Some(settings) = object.get("settings").and_then(|v| self.object(v, &settings_path)) {
                    self.only(settings, &settings_path, &["allowDiscards", "keyFile"]);
                    allow_discards = self.flag(settings, "allowDiscards", &settings_path);
                    if let Some(file) = self.string(settings, "keyFile", &settings_path) {
                        key_file = Some(file);
                    }
                }
                let name = self.string(object, "name", path).unwrap_or_default();
                let inner = object.get("content").and_then(|c| self.content(c, &path.join("content"), true));
                let Some(inner) = inner else {
                    if !object.contains_key("content") {
                        self.refuse(path, "a LUKS container without content is not supported");
                    }
                    return None;
                };
                Some(Content::Luks(Luks {
                    name,
                    key: key_file.map_or_else(|| "prompt".to_string(), |f| format!("file://{f}")),
                    label,
                    passphrase_file: self.string(object, "passwordFile", path),
                    allow_discards,
                    content: Box::new(inner),
                }))
            }
            "zfs" => {
                self.only(object, path, &["type", "pool"]);
                Some(Content::Zfs(ZfsMember { pool: self.string(object, "pool", path).unwrap_or_default() }))
            }
            "btrfs" => {
                self.refuse(path, "btrfs with subvolumes is not supported (use a filesystem of format btrfs)");
                None
            }
            other => {
                self.refuse(&path.join("type"), format!("{other:?} is not supported by nix-dabei (filesystem, swap, luks and zfs are)"));
                None
            }
        }
    }

    fn partition(&mut self, disk: &str, key: &str, value: &Value, path: &FieldPath) -> Option<(u32, String, Partition)> {
        let object = self.object(value, path)?;
        self.only(object, path, &["size", "start", "end", "type", "label", "priority", "content", "uuid", "attributes", "name", "alignment", "device", "_index"]);
        if object.contains_key("alignment") && object.get("alignment") != Some(&Value::from(0)) {
            self.refuse(&path.join("alignment"), "nix-dabei aligns every partition to 1 MiB");
        }
        let name = self.string(object, "name", path).unwrap_or_else(|| key.to_string());
        let start = self.string(object, "start", path).unwrap_or_else(|| "0".into());
        let start_bytes = match start.as_str() {
            "0" => 0,
            other => match parse_bytes(other) {
                Some(bytes) if bytes <= 1 << 20 => bytes,
                _ => {
                    self.refuse(&path.join("start"), format!("{other:?}: partitions start where the one before ends (1 MiB aligned); only \"0\" or \"1M\" is supported"));
                    return None;
                }
            },
        };
        let size_text = self.string(object, "size", path);
        let end_text = self.string(object, "end", path);
        let size = match (size_text.as_deref(), end_text.as_deref()) {
            (Some("100%"), _) => Size::Rest,
            (Some(text), _) => match parse_bytes(text) {
                Some(bytes) => Size::Bytes(bytes),
                None => {
                    self.refuse(&path.join("size"), format!("{text:?} is not a size (a number with K, M, G, T or P, or \"100%\")"));
                    return None;
                }
            },
            (None, Some("100%" | "-0")) => Size::Rest,
            (None, Some(end)) => {
                let parsed = if let Some(rest) = end.strip_prefix('-') {
                    parse_bytes(rest).map(Size::AllBut)
                } else if let Some(rest) = end.strip_prefix('+') {
                    parse_bytes(rest).map(Size::Bytes)
                } else {
                    parse_bytes(end).and_then(|e| e.checked_sub(start_bytes.max(1 << 20))).filter(|b| *b > 0).map(Size::Bytes)
                };
                match parsed {
                    Some(size) => size,
                    None => {
                        self.refuse(&path.join("end"), format!("{end:?} is not an end (\"-1G\", \"+1G\", an offset after the start, or \"100%\")"));
                        return None;
                    }
                }
            }
            (None, None) => {
                self.refuse(path, "has neither size nor end");
                return None;
            }
        };
        let content = object.get("content").and_then(|c| self.content(c, &path.join("content"), false));
        let code = self.string(object, "type", path).unwrap_or_else(|| if matches!(content, Some(Content::Swap(_))) { "8200".into() } else { "8300".into() });
        let kind = CODES.iter().find(|(c, _)| c.eq_ignore_ascii_case(&code)).map_or(code.clone(), |(_, n)| n.to_string());
        let default_priority = if code.eq_ignore_ascii_case("EF02") {
            100
        } else if size == Size::Rest {
            9001
        } else {
            1000
        };
        let priority = object.get("priority").and_then(Value::as_u64).map_or(default_priority, |p| p as u32);
        // A label equal to disko's default is the plan's default too.
        let mut label = self.string(object, "label", path).filter(|l| *l != default_partition_label(disk, key));
        if label.is_none() {
            let default = default_partition_label(disk, &name);
            if default.encode_utf16().count() > 36 {
                let short = shorten_label(&default);
                self.warnings.push(format!("{}: the label {default:?} is longer than GPT allows; using {short:?}", path.join("label")));
                label = Some(short);
            } else if name != key {
                label = Some(default);
            }
        }
        let attributes = match object.get("attributes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(bits)) => bits.iter().filter_map(|b| b.as_u64().map(|b| b as u32)).collect(),
            Some(_) => {
                self.refuse(&path.join("attributes"), "is not a list of bit numbers");
                vec![]
            }
        };
        Some((priority, key.to_string(), Partition { size, kind: Some(kind), label, uuid: self.string(object, "uuid", path), attributes, content }))
    }

    fn disk(&mut self, name: &str, value: &Value, path: &FieldPath) -> Option<Disk> {
        let object = self.object(value, path)?;
        self.only(object, path, &["type", "device", "content", "imageSize", "imageName", "name"]);
        for key in ["imageSize", "imageName"] {
            if object.contains_key(key) {
                self.warnings.push(format!("{}: not carried over: only disko's VM images use it", path.join(key)));
            }
        }
        let device = self.string(object, "device", path);
        let Some(device) = device else {
            self.refuse(&path.join("device"), "is missing");
            return None;
        };
        let content_path = path.join("content");
        let content = self.object(object.get("content").unwrap_or(&Value::Null), &content_path)?;
        let kind = self.string(content, "type", &content_path).unwrap_or_default();
        match kind.as_str() {
            "gpt" => {}
            "table" => {
                self.refuse(&content_path, "legacy (MBR) partition tables are not supported: use gpt");
                return None;
            }
            other => {
                self.refuse(&content_path.join("type"), format!("{other:?} directly on the disk is not supported: partition it with gpt"));
                return None;
            }
        }
        self.only(content, &content_path, &["type", "partitions", "efiGptPartitionFirst"]);
        if content.get("efiGptPartitionFirst") == Some(&Value::Bool(false)) {
            self.refuse(&content_path.join("efiGptPartitionFirst"), "hybrid MBRs are not supported");
        }
        let parts_path = content_path.join("partitions");
        let mut partitions: Vec<(u32, String, Partition)> = Vec::new();
        if let Some(parts) = content.get("partitions").and_then(|p| self.object(p, &parts_path)) {
            for (key, value) in parts {
                if let Some(part) = self.partition(name, key, value, &parts_path.join(key.clone())) {
                    partitions.push(part);
                }
            }
        }
        // disko orders partitions by priority, then by name.
        partitions.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Some(Disk {
            device,
            size: None,
            logical_sector_size: 512,
            physical_sector_size: None,
            identity: Identity::default(),
            discard: false,
            partitions: partitions.into_iter().map(|(_, key, part)| (key, part)).collect(),
        })
    }

    fn mode(&mut self, text: &str, path: &FieldPath) -> Option<VdevMode> {
        match text {
            "" => Some(VdevMode::Stripe),
            "mirror" => Some(VdevMode::Mirror),
            "raidz" | "raidz1" => Some(VdevMode::Raidz1),
            "raidz2" => Some(VdevMode::Raidz2),
            "raidz3" => Some(VdevMode::Raidz3),
            other => {
                self.refuse(path, format!("{other:?} is not a vdev mode nix-dabei supports (\"\", mirror, raidz1, raidz2, raidz3)"));
                None
            }
        }
    }

    /// disko names vdev members by disk; the plan by partition.
    fn member(&mut self, disks: &IndexMap<String, Disk>, pool: &str, name: &str, path: &FieldPath) -> Option<String> {
        let Some(disk) = disks.get(name) else {
            self.refuse(path, format!("{name:?} is not a disk of this configuration"));
            return None;
        };
        let members: Vec<&String> = disk
            .partitions
            .iter()
            .filter(|(_, p)| matches!(p.content.as_ref().map(crate::validate::innermost), Some(Content::Zfs(m)) if m.pool == pool))
            .map(|(k, _)| k)
            .collect();
        match members.as_slice() {
            [one] => Some(format!("{name}/{one}")),
            [] => {
                self.refuse(path, format!("disk {name:?} has no partition in pool {pool:?}"));
                None
            }
            _ => {
                self.refuse(path, format!("disk {name:?} has several partitions in pool {pool:?}; nix-dabei cannot tell which is meant"));
                None
            }
        }
    }

    fn pool(&mut self, name: &str, value: &Value, disks: &IndexMap<String, Disk>, path: &FieldPath) -> Option<Pool> {
        let object = self.object(value, path)?;
        self.only(object, path, &["type", "name", "mode", "options", "rootFsOptions", "mountpoint", "mountOptions", "datasets"]);
        let mut pool = Pool { options: self.properties(object, "options", path), root_fs_options: self.properties(object, "rootFsOptions", path), ..Pool::default() };
        match object.get("mode") {
            None | Some(Value::Null) => {}
            Some(Value::String(mode)) => pool.mode = self.mode(mode, &path.join("mode"))?,
            Some(Value::Object(topology)) => {
                let topology_path = path.join("mode");
                self.only(topology, &topology_path, &["type", "vdev", "log", "cache", "spare", "special", "dedup"]);
                for unsupported in ["special", "dedup"] {
                    if topology.get(unsupported).is_some_and(|v| !v.is_null() && v != &Value::Array(vec![])) {
                        self.refuse(&topology_path.join(unsupported), "is not supported by nix-dabei");
                    }
                }
                for (group, target) in [("vdev", &mut pool.vdevs), ("log", &mut pool.log)] {
                    let group_path = topology_path.join(group);
                    let Some(list) = topology.get(group).and_then(Value::as_array) else { continue };
                    for (index, vdev) in list.iter().enumerate() {
                        let vdev_path = group_path.join(format!("[{index}]"));
                        let Some(vdev) = self.object(vdev, &vdev_path) else { continue };
                        self.only(vdev, &vdev_path, &["mode", "members"]);
                        let mode_text = self.string(vdev, "mode", &vdev_path).unwrap_or_default();
                        let Some(mode) = self.mode(&mode_text, &vdev_path.join("mode")) else { continue };
                        let names = self.strings(vdev, "members", &vdev_path);
                        let members = names.iter().enumerate().filter_map(|(i, m)| self.member(disks, name, m, &vdev_path.join("members").join(format!("[{i}]")))).collect();
                        target.push(Vdev { mode, members });
                    }
                }
                for (group, target) in [("cache", &mut pool.cache), ("spare", &mut pool.spare)] {
                    let names = self.strings(topology, group, &topology_path);
                    *target = names.iter().enumerate().filter_map(|(i, m)| self.member(disks, name, m, &topology_path.join(group).join(format!("[{i}]")))).collect();
                }
            }
            Some(_) => self.refuse(&path.join("mode"), "is neither a mode nor a topology"),
        }
        if !self.mount_options(object, path).is_empty() {
            self.refuse(&path.join("mountOptions"), "mount options for the pool's root dataset are not supported");
        }
        pool.mountpoint = self.string(object, "mountpoint", path);
        if pool.mountpoint.is_some() {
            match pool.root_fs_options.get("mountpoint").map(String::as_str) {
                Some("legacy") => {
                    pool.root_fs_options.remove("mountpoint");
                }
                Some(other) if Some(other) == pool.mountpoint.as_deref() => {
                    pool.root_fs_options.remove("mountpoint");
                    self.warnings.push(format!("{}: mounted as a legacy mount at the same place", path.join("rootFsOptions").join("mountpoint")));
                }
                Some(_) => self.refuse(&path.join("rootFsOptions").join("mountpoint"), "differs from the pool's mountpoint"),
                None => {}
            }
        }
        let datasets_path = path.join("datasets");
        if let Some(datasets) = object.get("datasets").and_then(|d| self.object(d, &datasets_path)) {
            for (ds_name, value) in datasets {
                let ds_path = datasets_path.join(ds_name.clone());
                if let Some(dataset) = self.dataset(value, &ds_path) {
                    pool.datasets.insert(ds_name.clone(), dataset);
                }
            }
        }
        // disko creates missing parents; the plan lists them.
        let names: Vec<String> = pool.datasets.keys().cloned().collect();
        for dataset in names {
            let mut parent = dataset.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                if !pool.datasets.contains_key(up) {
                    self.warnings.push(format!("{}: parent dataset {up:?} added (disko creates it implicitly)", datasets_path.join(dataset.clone())));
                    pool.datasets.insert(up.to_string(), Dataset::default());
                }
                parent = up;
            }
        }
        pool.datasets.sort_by(|a, _, b, _| a.cmp(b));
        Some(pool)
    }

    fn dataset(&mut self, value: &Value, path: &FieldPath) -> Option<Dataset> {
        let object = self.object(value, path)?;
        let kind = self.string(object, "type", path).unwrap_or_default();
        let mut properties = self.properties(object, "options", path);
        match kind.as_str() {
            "zfs_fs" => {
                self.only(object, path, &["type", "name", "mountpoint", "options", "mountOptions"]);
                let mountpoint = self.string(object, "mountpoint", path);
                if mountpoint.is_some() {
                    match properties.get("mountpoint").map(String::as_str) {
                        Some("legacy") => {
                            properties.remove("mountpoint");
                        }
                        Some(other) if Some(other) == mountpoint.as_deref() => {
                            properties.remove("mountpoint");
                            self.warnings.push(format!("{}: mounted as a legacy mount at the same place", path.join("options").join("mountpoint")));
                        }
                        Some(_) => {
                            self.refuse(&path.join("options").join("mountpoint"), "differs from the dataset's mountpoint");
                            return None;
                        }
                        None => {}
                    }
                }
                Some(Dataset { kind: DatasetKind::Filesystem, mountpoint, mount_options: self.mount_options(object, path), properties, size: None, content: None })
            }
            "zfs_volume" => {
                self.only(object, path, &["type", "name", "size", "options", "content"]);
                let size_text = self.string(object, "size", path).unwrap_or_default();
                let Some(bytes) = parse_bytes(&size_text) else {
                    self.refuse(&path.join("size"), format!("{size_text:?} is not a size"));
                    return None;
                };
                let content = object.get("content").and_then(|c| self.content(c, &path.join("content"), false));
                Some(Dataset { kind: DatasetKind::Volume, mountpoint: None, mount_options: vec![], properties, size: Some(Size::Bytes(bytes)), content })
            }
            other => {
                self.refuse(&path.join("type"), format!("{other:?} is not a dataset type (zfs_fs, zfs_volume)"));
                None
            }
        }
    }
}

/// A label of at most 36 characters that stays unique: a prefix and a hash of the whole.
fn shorten_label(label: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in label.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let prefix: String = label.chars().take(27).collect();
    format!("{prefix}-{:08x}", hash as u32)
}

/// Reads a disko configuration: `{ disko.devices = ...; }` as JSON (with `networking.hostName` and
/// `networking.hostId` when present), or the devices attribute set itself.
pub fn import(value: &Value) -> Result<Imported, PlanError> {
    let mut reader = Reader { problems: Vec::new(), warnings: Vec::new() };
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
        if !["disk", "zpool"].contains(&key.as_str()) && !empty {
            let what = match key.as_str() {
                "mdadm" => "mdadm RAID is not supported",
                "lvm_vg" => "LVM is not supported",
                "nodev" => "nodev (tmpfs) mounts are not supported",
                _ => "is not a device type nix-dabei supports (disk, zpool)",
            };
            reader.refuse(&devices_path.join(key.clone()), what);
        }
    }
    let mut disks = IndexMap::new();
    if let Some(list) = devices.get("disk").and_then(|d| reader.object(d, &devices_path.join("disk"))).cloned() {
        for (name, value) in &list {
            if let Some(disk) = reader.disk(name, value, &devices_path.join("disk").join(name.clone())) {
                disks.insert(name.clone(), disk);
            }
        }
    }
    let mut pools = IndexMap::new();
    if let Some(list) = devices.get("zpool").and_then(|d| reader.object(d, &devices_path.join("zpool"))).cloned() {
        for (name, value) in &list {
            if let Some(pool) = reader.pool(name, value, &disks, &devices_path.join("zpool").join(name.clone())) {
                pools.insert(name.clone(), pool);
            }
        }
    }
    if !reader.problems.is_empty() {
        return Err(PlanError::new(reader.problems));
    }
    let plan = Plan { version: PLAN_VERSION, hostname: hostname.unwrap_or_else(|| "nixos".into()), host_id, flake: None, disks, pools };
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

struct Writer {
    out: String,
    indent: usize,
}

impl Writer {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}{text}", "  ".repeat(self.indent));
    }

    fn open(&mut self, name: &str) {
        self.line(&format!("{} = {{", key(name)));
        self.indent += 1;
    }

    fn close(&mut self) {
        self.indent -= 1;
        self.line("};");
    }

    fn string(&mut self, name: &str, value: &str) {
        self.line(&format!("{} = {};", key(name), nix_string(value)));
    }

    fn list(&mut self, name: &str, values: &[String]) {
        let items: Vec<String> = values.iter().map(|v| nix_string(v)).collect();
        self.line(&format!("{} = [ {} ];", key(name), items.join(" ")));
    }

    fn properties(&mut self, name: &str, map: &BTreeMap<String, String>) {
        if map.is_empty() {
            return;
        }
        self.open(name);
        for (k, v) in map {
            self.string(k, v);
        }
        self.close();
    }
}

/// An attribute name, quoted unless it is a plain identifier.
fn key(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-'".contains(c));
    if plain { name.to_string() } else { nix_string(name) }
}

fn code_of(kind: &str) -> String {
    CODES.iter().find(|(_, n)| *n == kind).map_or_else(|| kind.to_string(), |(c, _)| c.to_string())
}

fn write_content(w: &mut Writer, content: &Content) {
    w.open("content");
    match content {
        Content::Filesystem(fs) => {
            w.string("type", "filesystem");
            w.string("format", fs.format.fs_type());
            if let Some(m) = &fs.mountpoint {
                w.string("mountpoint", m);
            }
            if !fs.mount_options.is_empty() {
                w.list("mountOptions", &fs.mount_options);
            }
            let mut extra = Vec::new();
            if let Some(label) = &fs.label {
                extra.push(if fs.format == Format::Vfat { "-n".to_string() } else { "-L".to_string() });
                extra.push(label.clone());
            }
            extra.extend(fs.mkfs_options.iter().cloned());
            if !extra.is_empty() {
                w.list("extraArgs", &extra);
            }
        }
        Content::Swap(swap) => {
            w.string("type", "swap");
            if swap.random_encryption {
                w.line("randomEncryption = true;");
            }
            if let Some(p) = swap.priority {
                w.line(&format!("priority = {p};"));
            }
            if let Some(policy) = &swap.discard_policy {
                w.string("discardPolicy", policy);
            }
            if swap.resume_device {
                w.line("resumeDevice = true;");
            }
            if let Some(label) = &swap.label {
                w.list("extraArgs", &["-L".to_string(), label.clone()]);
            }
        }
        Content::Luks(luks) => {
            w.string("type", "luks");
            w.string("name", &luks.name);
            if let Some(file) = &luks.passphrase_file {
                w.string("passwordFile", file);
            }
            if let Some(label) = &luks.label {
                w.list("extraFormatArgs", &["--label".to_string(), label.clone()]);
            }
            w.open("settings");
            w.line(&format!("allowDiscards = {};", luks.allow_discards));
            if let Some(file) = luks.key.strip_prefix("file://") {
                w.string("keyFile", file);
            }
            w.close();
            write_content(w, &luks.content);
        }
        Content::Zfs(member) => {
            w.string("type", "zfs");
            w.string("pool", &member.pool);
        }
    }
    w.close();
}

/// The disko configuration of a plan, as a Nix file: `{ disko.devices = ...; networking... }`.
pub fn export(plan: &Plan) -> Result<String, ExportError> {
    let mut w = Writer { out: String::new(), indent: 0 };
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
        w.open(disk_name);
        w.string("type", "disk");
        w.string("device", &disk.device);
        w.open("content");
        w.string("type", "gpt");
        w.open("partitions");
        for (index, (part_name, part)) in disk.partitions.iter().enumerate() {
            w.open(part_name);
            // disko orders by priority: keep the plan's order.
            w.line(&format!("priority = {};", 1000 + index));
            match part.size {
                Size::Bytes(bytes) => w.string("size", &format_exact(bytes)),
                Size::Rest => w.string("size", "100%"),
                Size::AllBut(bytes) => w.string("end", &format!("-{}", format_exact(bytes))),
            }
            let kind = part.kind.clone().unwrap_or_else(|| crate::compile::default_type(part.content.as_ref()).to_string());
            w.string("type", &code_of(&kind));
            w.string("label", &part.label.clone().unwrap_or_else(|| default_partition_label(disk_name, part_name)));
            if let Some(uuid) = &part.uuid {
                w.string("uuid", uuid);
            }
            if !part.attributes.is_empty() {
                let bits: Vec<String> = part.attributes.iter().map(u32::to_string).collect();
                w.line(&format!("attributes = [ {} ];", bits.join(" ")));
            }
            if let Some(content) = &part.content {
                write_content(&mut w, content);
            }
            w.close();
        }
        w.close();
        w.close();
        w.close();
    }
    w.close();
    if !plan.pools.is_empty() {
        w.open("zpool");
        for (pool_name, pool) in &plan.pools {
            let pool_path = FieldPath::root().join("pools").join(pool_name.clone());
            w.open(pool_name);
            w.string("type", "zpool");
            let disk_of = |member: &str, path: &FieldPath| -> Result<String, ExportError> {
                let (disk, _) = crate::validate::split_member(member).ok_or_else(|| ExportError { path: path.clone(), message: format!("{member:?} is not a member reference") })?;
                let count = plan.pool_members(pool_name).iter().filter(|(d, _)| *d == disk).count();
                if count > 1 {
                    return Err(ExportError { path: path.clone(), message: format!("disk {disk:?} has several partitions in the pool; disko names vdev members by disk") });
                }
                Ok(disk.to_string())
            };
            if pool.vdevs.is_empty() {
                w.string("mode", pool.mode.keyword().unwrap_or(""));
            } else {
                w.open("mode");
                w.string("type", "topology");
                for (group, vdevs) in [("vdev", &pool.vdevs), ("log", &pool.log)] {
                    if vdevs.is_empty() {
                        continue;
                    }
                    w.line(&format!("{group} = ["));
                    w.indent += 1;
                    for (index, vdev) in vdevs.iter().enumerate() {
                        let path = pool_path.join(if group == "vdev" { "vdevs" } else { "log" }).join(format!("[{index}]"));
                        let members = vdev.members.iter().map(|m| disk_of(m, &path)).collect::<Result<Vec<_>, _>>()?;
                        let quoted: Vec<String> = members.iter().map(|m| nix_string(m)).collect();
                        w.line(&format!("{{ mode = {}; members = [ {} ]; }}", nix_string(vdev.mode.keyword().unwrap_or("")), quoted.join(" ")));
                    }
                    w.indent -= 1;
                    w.line("];");
                }
                for (group, list) in [("cache", &pool.cache), ("spare", &pool.spare)] {
                    if !list.is_empty() {
                        let members = list.iter().map(|m| disk_of(m, &pool_path.join(group))).collect::<Result<Vec<_>, _>>()?;
                        w.list(group, &members);
                    }
                }
                w.close();
            }
            w.properties("options", &pool.options);
            let mut root_fs = pool.root_fs_options.clone();
            if let Some(mountpoint) = &pool.mountpoint {
                w.string("mountpoint", mountpoint);
                root_fs.insert("mountpoint".into(), "legacy".into());
            }
            w.properties("rootFsOptions", &root_fs);
            if !pool.datasets.is_empty() {
                w.open("datasets");
                for (ds_name, dataset) in &pool.datasets {
                    w.open(ds_name);
                    let mut properties = dataset.properties.clone();
                    match dataset.kind {
                        DatasetKind::Filesystem => {
                            w.string("type", "zfs_fs");
                            if let Some(m) = &dataset.mountpoint {
                                w.string("mountpoint", m);
                                properties.insert("mountpoint".into(), "legacy".into());
                            }
                            if !dataset.mount_options.is_empty() {
                                w.list("mountOptions", &dataset.mount_options);
                            }
                        }
                        DatasetKind::Volume => {
                            w.string("type", "zfs_volume");
                            if let Some(Size::Bytes(bytes)) = dataset.size {
                                w.string("size", &format_exact(bytes));
                            }
                            if let Some(content) = &dataset.content {
                                write_content(&mut w, content);
                            }
                        }
                    }
                    w.properties("options", &properties);
                    w.close();
                }
                w.close();
            }
            w.close();
        }
        w.close();
    }
    w.indent -= 1;
    w.line("};");
    w.indent -= 1;
    w.line("}");
    Ok(w.out)
}
