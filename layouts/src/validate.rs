//! Checks a plan as a whole before anything is planned or written. Every problem is collected, each
//! naming the field at fault. The plan-wide rules (version, host name, one `/`, names used once) live
//! here; each node type checks its own fields through [`Checker`].

use std::collections::HashMap;

use crate::error::{shown, FieldPath, PlanError, Problem};
use crate::model::{Content, Plan, PLAN_VERSION};
use crate::nodes::mount::normalize_mountpoint;

pub use crate::nodes::gpt::default_partition_label;
pub use crate::nodes::zfs::split_member;

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
}

/// The problems found so far, and the names that must be used only once across the plan.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    problems: Vec<Problem>,
    /// Normalized mountpoint -> the field that claimed it first.
    mountpoints: HashMap<String, FieldPath>,
    luks_names: HashMap<String, FieldPath>,
    labels: HashMap<String, FieldPath>,
    partition_uuids: HashMap<String, FieldPath>,
}

impl Checker {
    /// Records a problem with the field at fault.
    pub(crate) fn report(&mut self, path: FieldPath, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn plan(&mut self, plan: &Plan) {
        let root = FieldPath::root();
        if plan.version != PLAN_VERSION {
            let message =
                format!("version {} is not supported (this build reads version {PLAN_VERSION})", plan.version);
            self.report(root.join("version"), message);
        }
        if !valid_hostname(&plan.hostname) {
            let message = format!(
                "{} is not a host name (1 to 63 letters, digits and '-', not starting or ending with '-')",
                shown(&plan.hostname)
            );
            self.report(root.join("hostname"), message);
        }
        if let Some(id) = &plan.host_id {
            if id.len() != 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                self.report(root.join("host_id"), format!("{id:?} is not a host id (8 hex digits)"));
            }
        }
        if let Some(flake) = &plan.flake {
            if let Err(reason) = check_flake_reference(flake) {
                self.report(root.join("flake"), format!("{} {reason}", shown(flake)));
            }
        }
        if plan.disks.is_empty() {
            self.report(root.join("disks"), "the plan has no disks");
        }
        for name in plan.pools.keys().filter(|name| plan.disks.contains_key(*name)) {
            // Steps are named after disks and pools ("mkfs:tank/root"): the two must not meet.
            let message = format!("{} is also the name of a disk: give the pool or the disk another name", shown(name));
            self.report(root.join("pools").join(name.clone()), message);
        }
        self.boot(plan);
        crate::nodes::gpt::validate_identities(self, plan);
        for (name, disk) in &plan.disks {
            disk.validate(self, plan, name);
        }
        for (name, pool) in &plan.pools {
            pool.validate(self, plan, name);
        }
        for (name, raid) in &plan.raids {
            raid.validate(self, plan, name);
        }
        for (name, group) in &plan.volume_groups {
            group.validate(self, plan, name);
        }
        for (key, nodev) in &plan.nodev {
            nodev.validate(self, key, &root.join("nodev").join(key.clone()));
        }
        for (name, filesystem) in &plan.bcachefs_filesystems {
            filesystem.validate(self, plan, name);
        }
        // A plan that only prepares data disks needs no root; one that installs NixOS does.
        if !self.mountpoints.contains_key("/") && plan.flake.is_some() {
            self.report(
                root,
                "nothing is mounted at \"/\", and the plan installs a flake: give one filesystem, subvolume, \
                 dataset or tmpfs mountpoint = \"/\"",
            );
        }
    }

    /// Checks a content through its node type.
    pub(crate) fn content(&mut self, plan: &Plan, content: &Content, path: &FieldPath, inside_luks: bool) {
        content.node().validate(self, plan, path, inside_luks);
    }

    /// Checks mount options: each one option, without commas or spaces.
    pub(crate) fn mount_options(&mut self, options: &[String], path: &FieldPath) {
        for (index, option) in options.iter().enumerate() {
            let odd = |c: char| c == ',' || c.is_whitespace() || c.is_control();
            if option.is_empty() || option.contains(odd) {
                self.report(path.join(format!("[{index}]")), format!("{} is not one mount option", shown(option)));
            }
        }
    }

    /// Checks the values of the mount options of a filesystem of type `fs_type` that take one of a few
    /// values (ext4's `data=`, btrfs's `compress=`, vfat's `umask=`, ...): the kernel refuses a wrong one
    /// only at the mount, after the filesystem was made. Options it does not know are left to the kernel.
    pub(crate) fn mount_option_values(&mut self, fs_type: &str, options: &[String], path: &FieldPath) {
        for (index, option) in options.iter().enumerate() {
            let Some((key, value)) = option.split_once('=') else { continue };
            if let Some(expected) = mount_value_problem(fs_type, key, value) {
                self.report(
                    path.join(format!("[{index}]")),
                    format!("{} for {fs_type}: {key}= {expected}", shown(option)),
                );
            }
        }
    }

    /// Checks options passed through to `program`: each one of `allowed` (a prefix where it ends in `=`),
    /// with no path and no whitespace in it (one argument, naming nothing outside the plan).
    pub(crate) fn passed_options(&mut self, options: &[String], allowed: &[&str], program: &str, path: &FieldPath) {
        for (index, option) in options.iter().enumerate() {
            let known = allowed.iter().any(|o| if o.ends_with('=') { option.starts_with(o) } else { option == o });
            if !known || option.contains('/') || option.contains(char::is_whitespace) {
                let message =
                    format!("{} is not an option nix-dabei passes to {program} ({})", shown(option), allowed.join(" "));
                self.report(path.join(format!("[{index}]")), message);
            }
        }
    }

    /// Checks a mountpoint and claims it: no two things mount at the same place.
    pub(crate) fn mountpoint(&mut self, mountpoint: &str, path: &FieldPath) {
        match normalize_mountpoint(mountpoint) {
            Err(reason) => self.report(path.clone(), format!("{} {reason}", shown(mountpoint))),
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

    /// Claims a LUKS mapper name, which must be unique.
    pub(crate) fn claim_luks_name(&mut self, name: &str, path: FieldPath) {
        if let Some(first) = self.luks_names.insert(name.to_string(), path.clone()) {
            self.report(path, format!("LUKS name {name:?} is used twice (also by {first})"));
        }
    }

    /// Claims a partition UUID given in the plan, which must be unique.
    pub(crate) fn claim_partition_uuid(&mut self, uuid: &str, path: FieldPath) {
        if let Some(first) = self.partition_uuids.insert(uuid.to_ascii_lowercase(), path.clone()) {
            self.report(path, format!("partition UUID {uuid} is used twice (also by {first})"));
        }
    }

    /// Claims a GPT partition label, which must be unique across the plan's disks.
    pub(crate) fn claim_partition_label(&mut self, label: &str, path: FieldPath) {
        if let Some(first) = self.labels.insert(label.to_string(), path.clone()) {
            self.report(path, format!("partition label {label:?} is used twice (also by {first})"));
        }
    }
}

/// What a mount option's value must be, where it is not that (the values are the kernel's, as
/// Documentation/filesystems/{ext4,btrfs,vfat,xfs}.rst of Linux 6.x list them).
fn mount_value_problem(fs_type: &str, key: &str, value: &str) -> Option<&'static str> {
    let one_of = |allowed: &[&str]| !allowed.contains(&value);
    let number = |max: u64| !value.parse::<u64>().is_ok_and(|n| n <= max);
    let octal = || !(value.len() <= 4 && u32::from_str_radix(value, 8).is_ok_and(|n| n <= 0o777));
    let compression = || {
        let (algorithm, level) = value.split_once(':').unwrap_or((value, ""));
        let levels = match algorithm {
            "zlib" => 9,
            "zstd" => 15,
            "lzo" | "no" | "none" => 0,
            _ => return true,
        };
        !(level.is_empty() || (levels > 0 && level.parse::<u32>().is_ok_and(|l| (1..=levels).contains(&l))))
    };
    let (wrong, expected) = match (fs_type, key) {
        ("ext4" | "ext3" | "ext2", "data") => {
            (one_of(&["journal", "ordered", "writeback"]), "journal, ordered or writeback")
        }
        ("ext4" | "ext3" | "ext2" | "vfat" | "exfat", "errors") => {
            (one_of(&["continue", "remount-ro", "panic"]), "continue, remount-ro or panic")
        }
        ("ext4" | "btrfs" | "f2fs", "commit") => (number(86_400), "a number of seconds"),
        ("ext4", "journal_ioprio") => (number(7), "0 to 7"),
        ("btrfs", "compress" | "compress-force") => (compression(), "zlib[:1-9], lzo, zstd[:1-15] or no"),
        ("btrfs", "space_cache") => (one_of(&["v1", "v2"]), "v1 or v2"),
        ("btrfs", "discard") => (one_of(&["sync", "async"]), "sync or async"),
        ("vfat" | "exfat", "umask" | "fmask" | "dmask") => (octal(), "an octal mode such as 0077"),
        ("vfat", "shortname") => (one_of(&["lower", "win95", "winnt", "mixed"]), "lower, win95, winnt or mixed"),
        ("xfs", "logbufs") => (!value.parse::<u32>().is_ok_and(|n| (2..=8).contains(&n)), "2 to 8"),
        ("tmpfs", "mode") => (octal(), "an octal mode such as 755"),
        ("tmpfs", "huge") => {
            (one_of(&["never", "always", "within_size", "advise"]), "never, always, within_size or advise")
        }
        _ => (false, ""),
    };
    wrong.then_some(expected)
}

/// A flake reference handed to `nixos-install --flake`: not empty, not read as an option, one word.
pub fn check_flake_reference(flake: &str) -> Result<(), &'static str> {
    if flake.is_empty() {
        Err("is not a flake reference: it is empty")
    } else if flake.starts_with('-') {
        Err("is not a flake reference: it starts with '-' and would be read as an option")
    } else if flake.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("is not a flake reference: it contains spaces or control characters")
    } else {
        Ok(())
    }
}

/// `"prompt"` or `"file:///absolute/path"`.
pub(crate) fn valid_key_location(location: &str) -> bool {
    location == "prompt" || location.strip_prefix("file://").is_some_and(|p| p.starts_with('/') && p.len() > 1)
}

/// A name for a disk or partition in a plan: not empty, no `/`, no control characters.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_control)
}

fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
