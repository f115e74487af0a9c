//! Node types: one module per kind of storage, each with the same interface.
//!
//! A node type module holds everything about its kind: the plan model (serde types), validation, the
//! steps it compiles to (operation structs with their exact command lines), its part of the NixOS
//! module, and its disko import and export. The framework modules ([`crate::validate`],
//! [`crate::compile`], [`crate::nixos`], [`crate::disko`]) walk the plan and hand each node to its
//! module; they know no node's details.
//!
//! Two node types sit at the top of a plan: [`gpt`] (disks and their partition tables) and [`zfs`]
//! (pools and datasets). The others are *contents*: what a partition, a LUKS container or a ZFS volume
//! holds. A content type implements [`ContentNode`] and is registered in three places, one line each:
//! a variant of [`Content`], its arm in [`Content::node`], and its entry in [`DISKO_CONTENT`].
//! Its operations are registered in [`crate::steps::Operation`], and the programs its steps run in
//! [`PROGRAMS`].

pub mod bcachefs;
pub mod btrfs;
pub mod filesystem;
pub mod gpt;
pub mod install;
pub mod luks;
pub mod lvm;
pub mod mdadm;
pub mod mount;
pub mod nodev;
pub mod swap;
pub mod zfs;
pub(crate) mod zfs_properties;

use serde::{Deserialize, Serialize};

use crate::compile::Builder;
use crate::disko::{Object, Reader, Writer};
use crate::error::FieldPath;
use crate::model::Plan;
use crate::nixos::ModuleParts;
use crate::programs::Program;
use crate::validate::Checker;

/// The programs each node type's steps run, one line per node type that runs any ([`crate::programs`]).
pub const PROGRAMS: &[&[Program]] = &[
    filesystem::PROGRAMS,
    btrfs::PROGRAMS,
    bcachefs::PROGRAMS,
    swap::PROGRAMS,
    zfs::PROGRAMS,
    lvm::PROGRAMS,
    mdadm::PROGRAMS,
    install::PROGRAMS,
];

/// Where a content sits: its device and the step that provides that device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    /// The block device the content is made on.
    pub device: &'a str,
    /// The step after which the device exists.
    pub provider: &'a str,
    /// `disk/partition`, or the volume's dataset name: what step ids and messages call it.
    pub owner: &'a str,
    /// The plan disk, for steps that touch one disk only.
    pub disk: Option<&'a str>,
}

/// The interface every content type provides.
pub(crate) trait ContentNode {
    /// The key under `content` in plans (`"filesystem"`).
    fn kind(&self) -> &'static str;
    /// Reports every problem of this content, each with its field path (the path ends at `content`).
    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, inside_luks: bool);
    /// Adds the steps that create this content on its site, and the mounts it offers.
    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>);
    /// Adds this content's part of the NixOS module; `device` is the stable path the installed system uses.
    fn nixos(&self, module: &mut ModuleParts, device: &str);
    /// Writes this content as disko attributes (inside `content = { ... }`).
    fn to_disko(&self, w: &mut Writer);
    /// The GPT partition type a partition holding this content gets when the plan names none.
    fn partition_type(&self) -> &'static str;
    /// What blkid reports on the device once the content is made (`TYPE=ext4`, `TYPE=zfs_member`), if anything.
    fn blkid_signature(&self) -> Option<String>;
    /// Whether disko writes this content as no content at all (a device that another node names).
    fn omitted_in_disko(&self) -> bool {
        false
    }
    /// Whether making or opening this content asks for the passphrase given to `apply`.
    fn needs_passphrase(&self) -> bool {
        false
    }
    /// The contents this one holds, each with its field path below this content's (`luks.content`): the
    /// walk over the plan ([`crate::Plan::contents`]) descends through them, so a new container type is
    /// walked once it says what it holds.
    fn children(&self) -> Vec<(&'static str, &Content)> {
        Vec::new()
    }
}

/// A function that reads one disko content type; `inside_luks` is set within a LUKS container.
pub(crate) type DiskoContentReader = fn(&mut Reader, &Object, &FieldPath, bool) -> Option<Content>;

/// disko's content `type` names and the node types that read them.
pub(crate) const DISKO_CONTENT: &[(&str, DiskoContentReader)] = &[
    ("filesystem", filesystem::from_disko),
    ("swap", swap::from_disko),
    ("luks", luks::from_disko),
    ("zfs", zfs::member_from_disko),
    ("btrfs", btrfs::from_disko),
    ("lvm_pv", lvm::pv_from_disko),
    ("mdraid", mdadm::member_from_disko),
    ("bcachefs", bcachefs::member_from_disko),
];

/// What a partition, a LUKS container or a ZFS volume holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// A filesystem.
    Filesystem(filesystem::Filesystem),
    /// Swap space.
    Swap(swap::Swap),
    /// A LUKS2 container and what it holds.
    Luks(luks::Luks),
    /// A member of a ZFS pool.
    Zfs(zfs::ZfsMember),
    /// A btrfs filesystem with subvolumes.
    Btrfs(btrfs::Btrfs),
    /// A device of a btrfs made on another partition.
    #[serde(rename = "btrfs_member")]
    BtrfsMember(btrfs::BtrfsMember),
    /// A physical volume of an LVM volume group.
    #[serde(rename = "lvm_pv")]
    LvmPv(lvm::LvmPv),
    /// A member of a RAID array.
    #[serde(rename = "md_member")]
    MdMember(mdadm::MdMember),
    /// A device of a bcachefs filesystem.
    Bcachefs(bcachefs::BcachefsMember),
}

impl Content {
    /// The content's node type.
    pub(crate) fn node(&self) -> &dyn ContentNode {
        match self {
            Content::Filesystem(node) => node,
            Content::Swap(node) => node,
            Content::Luks(node) => node,
            Content::Zfs(node) => node,
            Content::Btrfs(node) => node,
            Content::BtrfsMember(node) => node,
            Content::LvmPv(node) => node,
            Content::MdMember(node) => node,
            Content::Bcachefs(node) => node,
        }
    }

    /// The kind of content, as written in plans.
    pub fn kind(&self) -> &'static str {
        self.node().kind()
    }

    /// What blkid reports on the device holding this content once it is made (`TYPE=ext4`,
    /// `TYPE=zfs_member` for a pool member), if anything: for checking a finished install.
    pub fn blkid_signature(&self) -> Option<String> {
        self.node().blkid_signature()
    }

    /// Whether making or opening this content needs the passphrase given to `apply`.
    pub fn needs_passphrase(&self) -> bool {
        self.node().needs_passphrase()
    }

    /// The content inside any containers (LUKS): the one that holds no other.
    pub fn innermost(&self) -> &Content {
        match self.node().children().first() {
            Some((_, inner)) => inner.innermost(),
            None => self,
        }
    }

    /// What this content holds ([`ContentNode::children`]), with each one's path below it.
    pub fn children(&self) -> Vec<(&'static str, &Content)> {
        self.node().children()
    }

    /// The GPT partition type for this content when the plan names none.
    pub fn partition_type(&self) -> &'static str {
        self.node().partition_type()
    }
}

/// Where the partition a `"<disk>/<partition>"` reference names is in the plan.
pub(crate) fn partition_field(reference: &str) -> FieldPath {
    let (disk, part) = reference.split_once('/').unwrap_or_default();
    FieldPath::root().join("disks").join(disk.to_string()).join("partitions").join(part.to_string())
}

/// The members (`"<disk>/<partition>"`) of what a plan keeps are kept partitions (`role`: "a member of
/// kept array boot"): a member made anew would destroy it.
pub(crate) fn validate_kept_members(check: &mut Checker, plan: &Plan, members: &[String], role: &str) {
    for member in members.iter().filter(|m| !plan.partition_at(m).is_some_and(|p| p.keep)) {
        check.report(partition_field(member).join("keep"), format!("is {role}: keep it too"));
    }
}

/// What a kept array or logical volume holds (`content`, at `path`) is identified by its UUID: a
/// filesystem or swap that gives it, or nothing.
pub(crate) fn validate_kept_content(check: &mut Checker, content: Option<&Content>, path: &FieldPath, holder: &str) {
    match content {
        None => {}
        Some(Content::Filesystem(fs)) if fs.uuid.is_some() => {}
        Some(Content::Swap(swap)) if swap.uuid.is_some() => {}
        Some(Content::Filesystem(_) | Content::Swap(_)) => check.report(
            path.join("content").join("uuid"),
            format!("what a kept {holder} holds is identified by its UUID: give the one it has"),
        ),
        Some(_) => check.report(
            path.join("content"),
            format!("a kept {holder} may hold a filesystem or swap (with their UUIDs), or nothing, so far"),
        ),
    }
}

/// The partition type a partition gets from its content when the plan names none.
pub fn default_type(content: Option<&Content>) -> &'static str {
    content.map_or("linux", Content::partition_type)
}
