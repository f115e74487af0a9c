//! Builds a plan in code, the way another installer would, and prints its steps.
//!
//! Run with `cargo run -p layouts --example custom_plan`.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use layouts::{
    CompileOptions, Content, Dataset, Disk, Filesystem, Format, Identity, Partition, Plan, Pool, Size, VdevMode,
    ZfsMember,
};

fn main() {
    let mut disks = IndexMap::new();
    for (index, serial) in ["S1", "S2", "S3"].iter().enumerate() {
        let mut partitions = IndexMap::new();
        partitions.insert(
            "boot".to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Bytes(512 << 20),
                kind: Some("esp".to_string()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(Content::Filesystem(Filesystem {
                    uuid: None,
                    format: Format::Vfat,
                    mountpoint: Some(if index == 0 { "/boot".to_string() } else { format!("/boot-{index}") }),
                    mount_options: vec!["umask=0077".to_string()],
                    label: None,
                    mkfs_options: vec![],
                })),
            },
        );
        partitions.insert(
            "data".to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Rest,
                kind: Some("zfs".to_string()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(Content::Zfs(ZfsMember { pool: "tank".to_string() })),
            },
        );
        disks.insert(
            format!("d{index}"),
            Disk {
                device: format!("/dev/disk/by-id/ata-EXAMPLE_{serial}"),
                size: Some(4 << 40),
                logical_sector_size: 512,
                physical_sector_size: Some(4096),
                identity: Identity { serial: Some(serial.to_string()), wwn: None, model: Some("EXAMPLE".to_string()) },
                discard: true,
                table: Default::default(),
                signature: None,
                extended: None,
                partitions,
            },
        );
    }
    let mut datasets = IndexMap::new();
    datasets.insert("root".to_string(), Dataset { mountpoint: Some("/".to_string()), ..Dataset::default() });
    datasets.insert("nix".to_string(), Dataset { mountpoint: Some("/nix".to_string()), ..Dataset::default() });
    let mut pools = IndexMap::new();
    pools.insert(
        "tank".to_string(),
        Pool {
            mode: VdevMode::Raidz1,
            options: BTreeMap::from([("ashift".to_string(), "12".to_string())]),
            root_fs_options: BTreeMap::from([("compression".to_string(), "zstd".to_string())]),
            datasets,
            ..Pool::default()
        },
    );
    let plan =
        Plan { version: layouts::PLAN_VERSION, hostname: "storage1".to_string(), disks, pools, ..Plan::default() };
    match plan.compile(&CompileOptions::default()) {
        Ok(steps) => print!("{}", steps.render()),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
