//! The ZFS properties a plan may set, and the values each takes, as zpoolprops(7) and zfsprops(7) of ZFS
//! 2.3 list them. `zpool create` and `zfs create` refuse a wrong one only after earlier steps wrote to the
//! disks, and some right ones write outside the target (a pool's `cachefile`) or mount outside it (a
//! `mountpoint` with `..`): the plan refuses them first, naming the field.

use std::collections::BTreeMap;

use crate::error::{shown, FieldPath};
use crate::nodes::mount::normalize_mountpoint;
use crate::validate::Checker;

/// What a property's value must be.
#[derive(Clone, Copy)]
enum Kind {
    /// `on` or `off`.
    OnOff,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// One of these words, too many to list in a message: the second says what they are.
    OneOfNamed(&'static [&'static str], &'static str),
    /// Only this value: why no other.
    Only(&'static str, &'static str),
    /// A whole number in this range.
    Number(u64, u64),
    /// A size (`128K`, `1G`, bytes), or `none` where allowed.
    Size { none: bool },
    /// A power of two between these sizes (record and block sizes).
    PowerOfTwo(u64, u64),
    /// Text up to this many bytes, without control characters.
    Text(usize),
    /// `none`, `legacy`, or an absolute path without `.` or `..`, up to PATH_MAX.
    Mountpoint,
    /// The key's place: `prompt` or a `file://` URL (checked with the encryption settings).
    KeyLocation,
    /// Set by nix-dabei itself, or never set at creation: refused, saying why.
    Refused(&'static str),
}

use Kind::*;

const COMPRESSION: &[&str] = &[
    "on",
    "off",
    "lz4",
    "lzjb",
    "zle",
    "gzip",
    "gzip-1",
    "gzip-2",
    "gzip-3",
    "gzip-4",
    "gzip-5",
    "gzip-6",
    "gzip-7",
    "gzip-8",
    "gzip-9",
    "zstd",
    "zstd-1",
    "zstd-2",
    "zstd-3",
    "zstd-4",
    "zstd-5",
    "zstd-6",
    "zstd-7",
    "zstd-8",
    "zstd-9",
    "zstd-10",
    "zstd-11",
    "zstd-12",
    "zstd-13",
    "zstd-14",
    "zstd-15",
    "zstd-16",
    "zstd-17",
    "zstd-18",
    "zstd-19",
    "zstd-fast",
    "zstd-fast-1",
    "zstd-fast-2",
    "zstd-fast-3",
    "zstd-fast-4",
    "zstd-fast-5",
    "zstd-fast-6",
    "zstd-fast-7",
    "zstd-fast-8",
    "zstd-fast-9",
    "zstd-fast-10",
    "zstd-fast-20",
    "zstd-fast-30",
    "zstd-fast-40",
    "zstd-fast-50",
    "zstd-fast-60",
    "zstd-fast-70",
    "zstd-fast-80",
    "zstd-fast-90",
    "zstd-fast-100",
    "zstd-fast-500",
    "zstd-fast-1000",
];
const CHECKSUM: &[&str] =
    &["on", "off", "fletcher2", "fletcher4", "sha256", "noparity", "sha512", "skein", "edonr", "blake3"];
const DEDUP: &[&str] = &[
    "on",
    "off",
    "verify",
    "sha256",
    "sha256,verify",
    "sha512",
    "sha512,verify",
    "skein",
    "skein,verify",
    "edonr,verify",
    "blake3",
    "blake3,verify",
];
const ENCRYPTION: &[&str] =
    &["on", "off", "aes-128-ccm", "aes-192-ccm", "aes-256-ccm", "aes-128-gcm", "aes-192-gcm", "aes-256-gcm"];

/// The dataset properties `zfs create -o` takes (zfsprops(7)); user properties (`module:name`) are
/// free text.
const DATASET: &[(&str, Kind)] = &[
    ("aclinherit", OneOf(&["discard", "noallow", "restricted", "passthrough", "passthrough-x"])),
    ("aclmode", OneOf(&["discard", "groupmask", "passthrough", "restricted"])),
    ("acltype", OneOf(&["off", "noacl", "nfsv4", "posix", "posixacl"])),
    ("atime", OnOff),
    ("canmount", OneOf(&["on", "off", "noauto"])),
    ("casesensitivity", OneOf(&["sensitive", "insensitive", "mixed"])),
    ("checksum", OneOf(CHECKSUM)),
    ("compression", OneOfNamed(COMPRESSION, "on, off, lz4, lzjb, zle, gzip[-1 to -9], zstd[-1 to -19], zstd-fast[-N]")),
    ("context", Text(1024)),
    ("copies", Number(1, 3)),
    ("dedup", OneOf(DEDUP)),
    ("defcontext", Text(1024)),
    ("devices", OnOff),
    ("direct", OneOf(&["disabled", "standard", "always"])),
    ("dnodesize", OneOf(&["legacy", "auto", "1k", "2k", "4k", "8k", "16k"])),
    ("encryption", OneOf(ENCRYPTION)),
    ("exec", OnOff),
    ("filesystem_limit", Number(0, u64::MAX)),
    ("fscontext", Text(1024)),
    ("keyformat", OneOf(&["raw", "hex", "passphrase"])),
    ("keylocation", KeyLocation),
    ("logbias", OneOf(&["latency", "throughput"])),
    ("longname", OnOff),
    ("mountpoint", Mountpoint),
    ("nbmand", OnOff),
    ("normalization", OneOf(&["none", "formC", "formD", "formKC", "formKD"])),
    ("overlay", OnOff),
    ("pbkdf2iters", Number(100_000, u64::MAX)),
    ("prefetch", OneOf(&["none", "metadata", "all"])),
    ("primarycache", OneOf(&["all", "none", "metadata"])),
    ("quota", Size { none: true }),
    ("readonly", OnOff),
    ("recordsize", PowerOfTwo(512, 16 << 20)),
    ("redundant_metadata", OneOf(&["all", "most", "some", "none"])),
    ("refquota", Size { none: true }),
    ("refreservation", Size { none: true }),
    ("relatime", OnOff),
    ("reservation", Size { none: true }),
    ("rootcontext", Text(1024)),
    ("secondarycache", OneOf(&["all", "none", "metadata"])),
    ("setuid", OnOff),
    ("sharenfs", Refused("shares are the installed system's configuration (services.nfs), not the disk's")),
    ("sharesmb", Refused("shares are the installed system's configuration (services.samba), not the disk's")),
    ("snapdev", OneOf(&["hidden", "visible"])),
    ("snapdir", OneOf(&["hidden", "visible", "disabled"])),
    ("snapshot_limit", Number(0, u64::MAX)),
    ("special_small_blocks", Size { none: false }),
    ("sync", OneOf(&["standard", "always", "disabled"])),
    ("utf8only", OnOff),
    ("version", Refused("the filesystem version is ZFS's to choose")),
    ("volblocksize", PowerOfTwo(512, 128 << 10)),
    ("volmode", OneOf(&["default", "full", "geom", "dev", "none"])),
    ("volsize", Refused("a volume's size is its `size`")),
    ("vscan", OnOff),
    ("xattr", OneOf(&["on", "off", "dir", "sa"])),
    ("zoned", OnOff),
];

/// The pool properties `zpool create -o` takes (zpoolprops(7)) that a plan may set.
const POOL: &[(&str, Kind)] = &[
    ("altroot", Refused("nix-dabei imports every pool under the target itself")),
    ("ashift", Number(9, 16)),
    ("autoexpand", OnOff),
    ("autoreplace", OnOff),
    ("autotrim", OnOff),
    ("bootfs", Refused("the boot loader is the installed system's configuration")),
    ("cachefile", Only("none", "a cache file would be written on the machine that installs, outside the target")),
    ("comment", Text(32)),
    ("compatibility", Text(1024)),
    ("dedup_table_quota", Size { none: true }),
    ("delegation", OnOff),
    ("failmode", OneOf(&["wait", "continue", "panic"])),
    ("listsnapshots", OnOff),
    ("multihost", OnOff),
    ("readonly", Refused("a pool created read-only could not be installed into")),
    ("version", Refused("pools use feature flags (feature@...); a version would turn them off")),
];

/// A size as ZFS reads it: digits with an optional unit (`K`, `M`, `G`, `T`, `P`, with or without `B`).
fn zfs_size(value: &str) -> Option<u64> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = value[digits.len()..].to_ascii_uppercase();
    let shift = match unit.trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return None,
    };
    let number: u64 = digits.parse().ok()?;
    number.checked_mul(1u64.checked_shl(shift)?)
}

/// Why `value` is not one `kind` takes, if it is not.
fn problem(kind: Kind, value: &str) -> Option<String> {
    let words = |list: &[&str]| list.join(", ");
    match kind {
        OnOff => (!matches!(value, "on" | "off")).then(|| "is not on or off".to_string()),
        OneOf(list) => (!list.contains(&value)).then(|| format!("is not one of {}", words(list))),
        OneOfNamed(list, named) => (!list.contains(&value)).then(|| format!("is not one of {named}")),
        Only(only, why) => (value != only).then(|| format!("is not {only}: {why}")),
        Number(low, high) => match value.parse::<u64>() {
            Ok(n) if (low..=high).contains(&n) => None,
            _ if high == u64::MAX => Some(format!("is not a whole number of at least {low}")),
            _ => Some(format!("is not a whole number from {low} to {high}")),
        },
        Size { none } => {
            if (none && value == "none") || zfs_size(value).is_some() {
                None
            } else {
                Some(format!("is not a size (such as 64K or 10G{})", if none { ", or none" } else { "" }))
            }
        }
        PowerOfTwo(low, high) => match zfs_size(value) {
            Some(n) if n.is_power_of_two() && (low..=high).contains(&n) => None,
            _ => Some(format!("is not a power of two from {low} to {high} bytes (such as 128K)")),
        },
        Text(max) => (value.len() > max || value.chars().any(char::is_control))
            .then(|| format!("is not text of up to {max} bytes without control characters")),
        Mountpoint => match value {
            "none" | "legacy" => None,
            path => {
                normalize_mountpoint(path).err().map(|why| format!("is not none, legacy or a mountpoint: it {why}"))
            }
        },
        KeyLocation => None,
        Refused(why) => Some(format!("is not set by a plan: {why}")),
    }
}

/// A user property (`module:name`, lower-case, as zfsprops(7) describes them): any value of up to
/// 8191 bytes.
fn is_user_property(name: &str) -> bool {
    name.contains(':')
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c))
}

fn check(
    check: &mut Checker,
    table: &[(&str, Kind)],
    what: &str,
    properties: &BTreeMap<String, String>,
    path: &FieldPath,
) {
    for (name, value) in properties {
        let field = path.join(name.clone());
        let known = table.iter().find(|(known, _)| *known == name).map(|(_, kind)| *kind);
        let kind = match (known, name.strip_prefix("feature@")) {
            (Some(kind), _) => kind,
            (None, Some(_)) if what == "pool" => OneOf(&["enabled", "disabled"]),
            (None, _) if what == "dataset" && is_user_property(name) => Text(8191),
            (None, _) => {
                check.report(field, format!("{} is not a {what} property of ZFS 2.3", shown(name)));
                continue;
            }
        };
        if let Some(why) = problem(kind, value) {
            check.report(field, format!("{} {why}", shown(value)));
        }
    }
}

/// Checks a pool's `options` (`zpool create -o`).
pub(crate) fn check_pool_options(checker: &mut Checker, options: &BTreeMap<String, String>, path: &FieldPath) {
    check(checker, POOL, "pool", options, path);
}

/// Checks dataset properties (`zfs create -o`, a pool's `root_fs_options`).
pub(crate) fn check_dataset_properties(checker: &mut Checker, properties: &BTreeMap<String, String>, path: &FieldPath) {
    check(checker, DATASET, "dataset", properties, path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_kind() {
        assert_eq!(problem(OnOff, "on"), None);
        assert!(problem(OneOf(COMPRESSION), "zstd-20").is_some());
        assert_eq!(problem(OneOf(COMPRESSION), "zstd-fast-1000"), None);
        assert_eq!(problem(PowerOfTwo(512, 16 << 20), "1M"), None);
        assert!(problem(PowerOfTwo(512, 16 << 20), "96K").is_some());
        assert_eq!(problem(Size { none: true }, "none"), None);
        assert_eq!(problem(Size { none: false }, "64K"), None);
        assert!(problem(Size { none: false }, "none").is_some());
        assert!(problem(Mountpoint, "/../etc").is_some());
        assert_eq!(problem(Mountpoint, "legacy"), None);
        assert_eq!(zfs_size("10GB"), Some(10 << 30));
        assert_eq!(zfs_size("7"), Some(7));
        assert_eq!(zfs_size("1Q"), None);
        assert!(is_user_property("com.sun:auto-snapshot"));
        assert!(!is_user_property("Compression"));
    }
}
