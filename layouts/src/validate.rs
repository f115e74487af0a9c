//! Checks a plan as a whole before anything is planned or written. Every problem is collected, each
//! naming the field at fault.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{FieldPath, PlanError, Problem};
use crate::gpt::{self, Geometry};
use crate::model::{Content, DatasetKind, Disk, Format, Plan, VdevMode, PLAN_VERSION};
use crate::size::{human, Size};

/// Pool names may not begin with these words, which `zpool create` reads as vdev kinds.
const RESERVED_POOL_PREFIXES: &[&str] = &["mirror", "raidz", "draid", "spare"];
/// Nor be exactly one of these.
const RESERVED_POOL_NAMES: &[&str] = &["log", "cache", "special", "dedup"];

/// A partition named in a pool's topology: `"<disk>/<partition>"`.
pub fn split_member(reference: &str) -> Option<(&str, &str)> {
    reference.split_once('/').filter(|(d, p)| !d.is_empty() && !p.is_empty())
}

impl Plan {
    /// Checks the whole plan: names, sizes, that partitions fit their disks, mountpoints, pools and
    /// their members, encryption keys. Returns every problem found.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut checker = Checker::default();
        checker.plan(self);
        if checker.problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError::new(checker.problems))
        }
    }

    /// The partitions that are members of `pool`, as `(disk, partition)` in plan order.
    pub fn pool_members(&self, pool: &str) -> Vec<(&str, &str)> {
        let mut members = Vec::new();
        for (disk_name, disk) in &self.disks {
            for (part_name, part) in &disk.partitions {
                if let Some(Content::Zfs(member)) = part.content.as_ref().map(innermost) {
                    if member.pool == pool {
                        members.push((disk_name.as_str(), part_name.as_str()));
                    }
                }
            }
        }
        members
    }
}

/// The content inside any LUKS containers.
pub fn innermost(content: &Content) -> &Content {
    match content {
        Content::Luks(luks) => innermost(&luks.content),
        other => other,
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    /// Normalized mountpoint -> the field that claimed it first.
    mountpoints: HashMap<String, FieldPath>,
    luks_names: HashMap<String, FieldPath>,
    labels: HashMap<String, FieldPath>,
}

impl Checker {
    fn report(&mut self, path: FieldPath, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn plan(&mut self, plan: &Plan) {
        let root = FieldPath::root();
        if plan.version != PLAN_VERSION {
            self.report(root.join("version"), format!("version {} is not supported (this build reads version {PLAN_VERSION})", plan.version));
        }
        if !valid_hostname(&plan.hostname) {
            self.report(root.join("hostname"), format!("{:?} is not a host name (1 to 63 letters, digits and '-', not starting or ending with '-')", plan.hostname));
        }
        if let Some(id) = &plan.host_id {
            if id.len() != 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                self.report(root.join("host_id"), format!("{id:?} is not a host id (8 hex digits)"));
            }
        }
        if plan.disks.is_empty() {
            self.report(root.join("disks"), "the plan has no disks");
        }
        self.disk_identities(plan);
        for (name, disk) in &plan.disks {
            self.disk(plan, name, disk);
        }
        for (name, pool) in &plan.pools {
            let path = root.join("pools").join(name.clone());
            self.pool(plan, name, pool, &path);
        }
        if !self.mountpoints.contains_key("/") {
            self.report(root, "nothing is mounted at \"/\": give one filesystem or dataset mountpoint = \"/\"");
        }
    }

    fn disk_identities(&mut self, plan: &Plan) {
        let mut devices: HashMap<&str, &str> = HashMap::new();
        let mut serials: HashMap<&str, &str> = HashMap::new();
        let mut wwns: HashMap<&str, &str> = HashMap::new();
        for (name, disk) in &plan.disks {
            let path = FieldPath::root().join("disks").join(name.clone());
            if let Some(first) = devices.insert(disk.device.as_str(), name) {
                self.report(path.join("device"), format!("{} is used twice: disk {first:?} is the same device", disk.device));
            }
            if let Some(serial) = disk.identity.serial.as_deref().filter(|s| !s.is_empty()) {
                if let Some(first) = serials.insert(serial, name) {
                    self.report(path.join("identity").join("serial"), format!("serial {serial:?} is used twice: disk {first:?} is the same disk"));
                }
            }
            if let Some(wwn) = disk.identity.wwn.as_deref().filter(|s| !s.is_empty()) {
                if let Some(first) = wwns.insert(wwn, name) {
                    self.report(path.join("identity").join("wwn"), format!("WWN {wwn:?} is used twice: disk {first:?} is the same disk"));
                }
            }
        }
    }

    fn disk(&mut self, plan: &Plan, name: &str, disk: &Disk) {
        let path = FieldPath::root().join("disks").join(name);
        if !valid_name(name) {
            self.report(path.clone(), format!("{name:?} is not a usable disk name (no '/', not empty)"));
        }
        if !disk.device.starts_with('/') {
            self.report(path.join("device"), format!("{:?} is not an absolute device path", disk.device));
        }
        if disk.logical_sector_size != 512 && disk.logical_sector_size != 4096 {
            self.report(path.join("logical_sector_size"), format!("{} is not a sector size (512 or 4096)", disk.logical_sector_size));
        }
        if let Some(physical) = disk.physical_sector_size {
            if !physical.is_power_of_two() || physical < disk.logical_sector_size || physical > 65536 {
                self.report(path.join("physical_sector_size"), format!("{physical} is not a physical sector size (a power of two from the logical sector size to 65536)"));
            }
        }
        if disk.partitions.is_empty() {
            self.report(path.join("partitions"), "the disk has no partitions");
        }
        for (part_name, part) in &disk.partitions {
            let part_path = path.join("partitions").join(part_name.clone());
            if !valid_name(part_name) {
                self.report(part_path.clone(), format!("{part_name:?} is not a usable partition name (no '/', not empty)"));
            }
            if let Some(kind) = &part.kind {
                match gpt::type_guid(kind) {
                    None => self.report(part_path.join("type"), format!("{kind:?} is not a partition type (esp, bios-boot, linux, swap, luks, zfs, raid, lvm, an sgdisk code or a GUID)")),
                    Some(guid) if gpt::type_name(&guid) == Some("esp") => {
                        let format = match part.content.as_ref() {
                            Some(Content::Filesystem(fs)) => Some(fs.format),
                            _ => None,
                        };
                        if format != Some(Format::Vfat) {
                            self.report(part_path.join("content"), "an EFI system partition must hold a vfat filesystem");
                        }
                    }
                    Some(_) => {}
                }
            }
            let label = part.label.clone().unwrap_or_else(|| default_partition_label(name, part_name));
            if label.encode_utf16().count() > 36 {
                self.report(part_path.join("label"), format!("{label:?} is longer than the 36 characters a GPT partition name holds"));
            }
            if let Some(first) = self.labels.insert(label.clone(), part_path.join("label")) {
                self.report(part_path.join("label"), format!("partition label {label:?} is used twice (also by {first})"));
            }
            for (index, bit) in part.attributes.iter().enumerate() {
                if *bit > 63 {
                    self.report(part_path.join("attributes").join(format!("[{index}]")), format!("{bit} is not a GPT attribute bit (0 to 63)"));
                }
            }
            if let Some(uuid) = &part.uuid {
                if !gpt::is_guid(uuid) {
                    self.report(part_path.join("uuid"), format!("{uuid:?} is not a UUID"));
                }
            }
            if let Some(content) = &part.content {
                self.content(plan, content, &part_path.join("content"), false);
            }
        }
        self.allocation(name, disk, &path);
    }

    fn allocation(&mut self, name: &str, disk: &Disk, path: &FieldPath) {
        let Some(size) = disk.size else {
            self.report(path.join("size"), format!("the size of disk {name:?} is not known: make the plan on the machine with the disk attached, or write its size in bytes"));
            return;
        };
        if disk.logical_sector_size != 512 && disk.logical_sector_size != 4096 {
            return;
        }
        let geometry = Geometry::new(size, u64::from(disk.logical_sector_size));
        let sizes: Vec<Size> = disk.partitions.values().map(|p| p.size).collect();
        if let Err(error) = gpt::allocate(geometry, &sizes) {
            let field = match error.partition_index().and_then(|i| disk.partitions.get_index(i)) {
                Some((part_name, _)) => path.join("partitions").join(part_name.clone()).join("size"),
                None => path.join("size"),
            };
            let message = match error {
                gpt::AllocError::DoesNotFit { needed, start, end, .. } => format!(
                    "{} does not fit: it would start at {} but disk {name:?} ({}) has room up to {}",
                    human(needed), human(start), human(size), human(end)
                ),
                other => other.to_string(),
            };
            self.report(field, message);
        }
    }

    fn content(&mut self, plan: &Plan, content: &Content, path: &FieldPath, inside_luks: bool) {
        match content {
            Content::Filesystem(fs) => {
                if let Some(mountpoint) = &fs.mountpoint {
                    self.mountpoint(mountpoint, &path.join("filesystem").join("mountpoint"));
                }
                self.options(&fs.mount_options, &path.join("filesystem").join("mount_options"));
            }
            Content::Swap(swap) => {
                if let Some(policy) = &swap.discard_policy {
                    if !["once", "pages", "both"].contains(&policy.as_str()) {
                        self.report(path.join("swap").join("discard_policy"), format!("{policy:?} is not a discard policy (once, pages or both)"));
                    }
                }
            }
            Content::Luks(luks) => {
                let luks_path = path.join("luks");
                if inside_luks {
                    self.report(luks_path.clone(), "LUKS inside LUKS is not supported");
                }
                if luks.name.is_empty() || !luks.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-+".contains(c)) {
                    self.report(luks_path.join("name"), format!("{:?} is not a device-mapper name (letters, digits, '_', '.', '-', '+')", luks.name));
                }
                if let Some(first) = self.luks_names.insert(luks.name.clone(), luks_path.join("name")) {
                    self.report(luks_path.join("name"), format!("LUKS name {:?} is used twice (also by {first})", luks.name));
                }
                if !valid_key_location(&luks.key) {
                    self.report(luks_path.join("key"), format!("{:?} gives no way to get the key: use \"prompt\" or \"file:///path/to/keyfile\"", luks.key));
                }
                if let Some(file) = &luks.passphrase_file {
                    if !file.starts_with('/') {
                        self.report(luks_path.join("passphrase_file"), format!("{file:?} is not an absolute path"));
                    } else if luks.key != "prompt" {
                        self.report(luks_path.join("passphrase_file"), "a passphrase file goes with key = \"prompt\"; with a key file it is not used");
                    }
                }
                self.content(plan, &luks.content, &luks_path.join("content"), true);
            }
            Content::Zfs(member) => {
                if !plan.pools.contains_key(&member.pool) {
                    self.report(path.join("zfs").join("pool"), format!("pool {:?} is not among the plan's pools", member.pool));
                }
            }
        }
    }

    fn options(&mut self, options: &[String], path: &FieldPath) {
        for (index, option) in options.iter().enumerate() {
            if option.is_empty() || option.contains(',') || option.contains(char::is_whitespace) {
                self.report(path.join(format!("[{index}]")), format!("{option:?} is not one mount option"));
            }
        }
    }

    fn mountpoint(&mut self, mountpoint: &str, path: &FieldPath) {
        match normalize_mountpoint(mountpoint) {
            Err(reason) => self.report(path.clone(), format!("{mountpoint:?} {reason}")),
            Ok(normal) => {
                if let Some(first) = self.mountpoints.get(&normal) {
                    let message = format!("{normal:?} is mounted twice (also by {first})");
                    self.report(path.clone(), message);
                } else {
                    self.mountpoints.insert(normal, path.clone());
                }
            }
        }
    }

    fn pool(&mut self, plan: &Plan, name: &str, pool: &crate::model::Pool, path: &FieldPath) {
        if !valid_pool_name(name) {
            self.report(path.clone(), format!("{name:?} is not a pool name (a letter, then letters, digits, '_', '-', '.', ':'; not a vdev keyword)"));
        }
        let members = plan.pool_members(name);
        if members.is_empty() {
            self.report(path.clone(), format!("pool {name:?} has no members: give a partition content.zfs = {{ pool = {name:?} }}"));
        }
        if pool.vdevs.is_empty() {
            if !pool.log.is_empty() || !pool.cache.is_empty() || !pool.spare.is_empty() {
                self.report(path.join("vdevs"), "a pool with log, cache or spare devices must list its data vdevs");
            }
            if !members.is_empty() {
                self.vdev_shape(pool.mode, members.len(), &path.join("mode"));
                self.vdev_disks(pool.mode, members.iter().map(|(d, _)| *d), &path.join("mode"));
            }
        } else {
            self.topology(plan, name, pool, path, &members);
        }
        for (key, value) in &pool.options {
            if key == "ashift" && !matches!(value.parse::<u32>(), Ok(9..=16)) {
                self.report(path.join("options").join("ashift"), format!("{value:?} is not an ashift (9 to 16)"));
            }
        }
        if pool.mountpoint.is_some() && pool.root_fs_options.contains_key("mountpoint") {
            self.report(path.join("mountpoint"), "give the mountpoint either here or in root_fs_options, not both");
        }
        if let Some(mountpoint) = &pool.mountpoint {
            self.mountpoint(mountpoint, &path.join("mountpoint"));
        }
        self.encryption(&pool.root_fs_options, &BTreeMap::new(), &path.join("root_fs_options"));
        for (dataset_name, dataset) in &pool.datasets {
            let ds_path = path.join("datasets").join(dataset_name.clone());
            if !valid_dataset_name(dataset_name) {
                self.report(ds_path.clone(), format!("{dataset_name:?} is not a dataset name (components of letters, digits, '_', '-', '.', ':' separated by '/')"));
            } else if let Some((parent, _)) = dataset_name.rsplit_once('/') {
                if !pool.datasets.contains_key(parent) {
                    self.report(ds_path.clone(), format!("its parent dataset {parent:?} is not in the plan"));
                }
            }
            self.options(&dataset.mount_options, &ds_path.join("mount_options"));
            if dataset.mountpoint.is_some() && dataset.properties.contains_key("mountpoint") {
                self.report(ds_path.join("mountpoint"), "give the mountpoint either here or in properties, not both");
            }
            match dataset.kind {
                DatasetKind::Filesystem => {
                    if dataset.size.is_some() {
                        self.report(ds_path.join("size"), "only volumes have a size");
                    }
                    if dataset.content.is_some() {
                        self.report(ds_path.join("content"), "only volumes hold content");
                    }
                    if let Some(mountpoint) = &dataset.mountpoint {
                        self.mountpoint(mountpoint, &ds_path.join("mountpoint"));
                    }
                }
                DatasetKind::Volume => {
                    if !matches!(dataset.size, Some(Size::Bytes(_))) {
                        self.report(ds_path.join("size"), "a volume needs a size in bytes or units (not \"rest\")");
                    }
                    if dataset.mountpoint.is_some() {
                        self.report(ds_path.join("mountpoint"), "a volume is not mounted itself: give its content a mountpoint");
                    }
                    match &dataset.content {
                        Some(Content::Zfs(_)) => self.report(ds_path.join("content"), "a pool cannot be built on a volume"),
                        Some(content) => self.content(plan, content, &ds_path.join("content"), false),
                        None => {}
                    }
                }
            }
            self.encryption(&dataset.properties, &pool.root_fs_options, &ds_path.join("properties"));
        }
    }

    fn vdev_shape(&mut self, mode: VdevMode, count: usize, path: &FieldPath) {
        let needed = mode.minimum_members();
        if count < needed {
            let what = match mode {
                VdevMode::Mirror => "a mirror".to_string(),
                other => format!("a {} vdev", other.keyword().unwrap_or("")),
            };
            self.report(path.clone(), format!("{what} needs at least {needed} members, but has {count}"));
        }
    }

    fn vdev_disks<'a>(&mut self, mode: VdevMode, disks: impl Iterator<Item = &'a str>, path: &FieldPath) {
        if mode == VdevMode::Stripe {
            return;
        }
        let mut seen = HashSet::new();
        for disk in disks {
            if !seen.insert(disk) {
                self.report(path.clone(), format!("two members of this {} vdev are on disk {disk:?}: losing that disk loses both", mode.keyword().unwrap_or("")));
                return;
            }
        }
    }

    fn topology(&mut self, plan: &Plan, name: &str, pool: &crate::model::Pool, path: &FieldPath, members: &[(&str, &str)]) {
        let mut used: HashMap<String, FieldPath> = HashMap::new();
        let mut check_ref = |checker: &mut Checker, reference: &str, ref_path: FieldPath| {
            let Some((disk, part)) = split_member(reference) else {
                checker.report(ref_path, format!("{reference:?} is not a member reference (\"<disk>/<partition>\")"));
                return;
            };
            let known = plan.disks.get(disk).and_then(|d| d.partitions.get(part)).is_some();
            if !known {
                checker.report(ref_path, format!("partition {reference:?} is not in the plan"));
            } else if !members.contains(&(disk, part)) {
                checker.report(ref_path, format!("partition {reference:?} is not a member of pool {name:?} (its content must be zfs = {{ pool = {name:?} }})"));
            } else if let Some(first) = used.insert(reference.to_string(), ref_path.clone()) {
                checker.report(ref_path, format!("{reference:?} is used twice in the topology (also at {first})"));
            }
        };
        for (group, vdevs) in [("vdevs", &pool.vdevs), ("log", &pool.log)] {
            for (index, vdev) in vdevs.iter().enumerate() {
                let vdev_path = path.join(group).join(format!("[{index}]"));
                if vdev.members.is_empty() {
                    self.report(vdev_path.join("members"), "a vdev needs members");
                    continue;
                }
                self.vdev_shape(vdev.mode, vdev.members.len(), &vdev_path.join("mode"));
                self.vdev_disks(vdev.mode, vdev.members.iter().filter_map(|m| split_member(m).map(|(d, _)| d)), &vdev_path.join("members"));
                for (m, member) in vdev.members.iter().enumerate() {
                    check_ref(self, member, vdev_path.join("members").join(format!("[{m}]")));
                }
            }
        }
        for (group, list) in [("cache", &pool.cache), ("spare", &pool.spare)] {
            for (index, member) in list.iter().enumerate() {
                check_ref(self, member, path.join(group).join(format!("[{index}]")));
            }
        }
        for (disk, part) in members {
            let reference = format!("{disk}/{part}");
            if !used.contains_key(&reference) {
                self.report(path.join("vdevs"), format!("member {reference:?} of pool {name:?} is in no vdev, log, cache or spare"));
            }
        }
    }

    /// Native encryption needs a key format, and a key location that can be read.
    fn encryption(&mut self, properties: &BTreeMap<String, String>, inherited: &BTreeMap<String, String>, path: &FieldPath) {
        let encryption = properties.get("encryption").map(String::as_str);
        let encrypted = matches!(encryption, Some(e) if e != "off");
        let keyformat = properties.get("keyformat").or_else(|| encrypted.then(|| inherited.get("keyformat")).flatten());
        if encrypted {
            match keyformat.map(String::as_str) {
                None => self.report(path.join("encryption"), "encryption is on but no keyformat says how the key is given (keyformat = \"passphrase\")"),
                Some("passphrase" | "hex" | "raw") => {}
                Some(other) => self.report(path.join("keyformat"), format!("{other:?} is not a keyformat (passphrase, hex or raw)")),
            }
            let location = properties.get("keylocation").map(String::as_str).unwrap_or("prompt");
            if !valid_key_location(location) {
                self.report(path.join("keylocation"), format!("{location:?} gives no way to get the key: use \"prompt\" or \"file:///path/to/keyfile\""));
            } else if location == "prompt" && keyformat.map(String::as_str) == Some("raw") {
                self.report(path.join("keylocation"), "a raw key cannot be typed at a prompt: use keyformat = \"passphrase\" or a key file");
            }
        } else if properties.contains_key("keyformat") && encryption.is_some() {
            self.report(path.join("keyformat"), "keyformat is set but encryption is off");
        }
    }
}

fn valid_key_location(location: &str) -> bool {
    location == "prompt" || location.strip_prefix("file://").is_some_and(|p| p.starts_with('/') && p.len() > 1)
}

/// The GPT partition name a partition gets when the plan gives none.
pub fn default_partition_label(disk: &str, partition: &str) -> String {
    format!("disk-{disk}-{partition}")
}

/// `/boot/` -> `/boot`; refuses relative paths, `.` and `..`.
pub fn normalize_mountpoint(mountpoint: &str) -> Result<String, &'static str> {
    if !mountpoint.starts_with('/') {
        return Err("is not an absolute path");
    }
    let mut parts = Vec::new();
    for part in mountpoint.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err("must not contain \".\" or \"..\"");
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_control)
}

fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn valid_zfs_component(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

fn valid_pool_name(name: &str) -> bool {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let looks_like_device = name.len() >= 2 && name.starts_with('c') && name.as_bytes()[1].is_ascii_digit();
    starts_with_letter
        && valid_zfs_component(name)
        && !looks_like_device
        && !RESERVED_POOL_PREFIXES.iter().any(|r| name.starts_with(r))
        && !RESERVED_POOL_NAMES.contains(&name)
}

fn valid_dataset_name(name: &str) -> bool {
    name.split('/').all(valid_zfs_component) && name.len() < 200
}
