//! A LUKS container needs the passphrase wherever the plan puts it, and remote unlock accepts it there:
//! in a disk's partition, in an array, in an array's partition, in a logical volume and in a ZFS volume.
//! (`Plan::contents` is the one walk the plan-wide questions ask.)

use layouts::Plan;

const DISKS: &str = r#"
hostname = "sim"
[disks.disk0]
device = "/dev/disk/by-id/virtio-disk0"
size = 21474836480
"#;

const LUKS: &str = concat!(
    r#"content.luks = { name = "cryptroot", key = "prompt", "#,
    r#"content.filesystem = { format = "ext4", mountpoint = "/" } }"#
);

const REMOTE_UNLOCK: &str = r#"
[remote_unlock]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLs me"]
network_kernel_modules = ["virtio_net"]
"#;

/// Plans with the root in LUKS in each kind of container, by name.
fn placements() -> Vec<(&'static str, String)> {
    let members = r#"
[disks.disk1]
device = "/dev/disk/by-id/virtio-disk1"
size = 21474836480
[disks.disk0.partitions.member]
size = "rest"
content.md_member = { array = "root" }
[disks.disk1.partitions.member]
size = "rest"
content.md_member = { array = "root" }
"#;
    let volumes = r#"
[disks.disk0.partitions.pv]
size = "rest"
content.lvm_pv = { volume_group = "main" }
"#;
    let pool = r#"
[disks.disk0.partitions.zfs]
size = "rest"
content.zfs = { pool = "rpool" }
"#;
    vec![
        ("a partition", format!("{DISKS}[disks.disk0.partitions.root]\nsize = \"rest\"\n{LUKS}\n")),
        ("an array", format!("{DISKS}{members}[raids.root]\nlevel = 1\n{LUKS}\n")),
        (
            "an array's partition",
            format!(
                "{DISKS}{members}[raids.root]\nlevel = 1\n[raids.root.partitions.system]\nsize = \"rest\"\n{LUKS}\n"
            ),
        ),
        ("a logical volume", format!("{DISKS}{volumes}[volume_groups.main.volumes.root]\nsize = \"4G\"\n{LUKS}\n")),
        (
            "a ZFS volume",
            format!("{DISKS}{pool}[pools.rpool.datasets.root]\nkind = \"volume\"\nsize = \"4G\"\n{LUKS}\n"),
        ),
    ]
}

#[test]
fn luks_needs_the_passphrase_in_every_kind_of_container() {
    for (place, text) in placements() {
        let plan = Plan::from_toml(&text).unwrap_or_else(|e| panic!("LUKS in {place}: {e}\n{text}"));
        plan.validate().unwrap_or_else(|e| panic!("LUKS in {place}: {e}\n{text}"));
        assert!(plan.needs_passphrase(), "LUKS in {place} does not ask for the passphrase");
        let found = plan.contents().iter().filter(|(_, c)| matches!(c, layouts::Content::Luks(_))).count();
        assert_eq!(found, 1, "LUKS in {place}: the walk found {found} containers");
    }
}

#[test]
fn remote_unlock_is_accepted_for_luks_in_every_kind_of_container() {
    for (place, text) in placements() {
        let text = format!("{text}{REMOTE_UNLOCK}");
        let plan = Plan::from_toml(&text).unwrap_or_else(|e| panic!("LUKS in {place}: {e}"));
        plan.validate().unwrap_or_else(|e| panic!("remote unlock with LUKS in {place}: {e}"));
    }
}

#[test]
fn a_plan_without_encryption_asks_for_no_passphrase() {
    let root = r#"content.filesystem = { format = "ext4", mountpoint = "/" }"#;
    let text = format!("{DISKS}[disks.disk0.partitions.root]\nsize = \"rest\"\n{root}\n");
    let plan = Plan::from_toml(&text).expect("plan");
    assert!(!plan.needs_passphrase());
    assert_eq!(plan.contents().len(), 1);
}
