//! Planning time for a large layout: 60 disks in six raidz2 vdevs of ten, each disk with an ESP.
//! Prints the figures; the target is under 10 ms per validate + compile.

use std::time::{Duration, Instant};

use indexmap::IndexMap;
use layouts::{
    CompileOptions, Content, Dataset, Disk, Filesystem, Format, Identity, Partition, Plan, Pool, Size, Vdev, VdevMode,
    ZfsMember,
};

fn large_plan() -> Plan {
    let mut disks = IndexMap::new();
    for index in 0..60 {
        let mut partitions = IndexMap::new();
        partitions.insert(
            "esp".to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Bytes(1 << 30),
                kind: Some("esp".into()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(Content::Filesystem(Filesystem {
                    uuid: None,
                    format: Format::Vfat,
                    mountpoint: Some(if index == 0 { "/boot".into() } else { format!("/boot-{index}") }),
                    mount_options: vec!["umask=0077".into()],
                    label: None,
                    mkfs_options: vec![],
                })),
            },
        );
        partitions.insert(
            "zfs".to_string(),
            Partition {
                number: None,
                keep: false,
                start: None,
                size: Size::Rest,
                kind: Some("zfs".into()),
                label: None,
                uuid: None,
                attributes: vec![],
                bootable: false,
                logical: false,
                content: Some(Content::Zfs(ZfsMember { pool: "tank".into() })),
            },
        );
        disks.insert(
            format!("d{index:02}"),
            Disk {
                device: format!("/dev/disk/by-id/ata-DISK_{index:02}"),
                size: Some(16 << 40),
                logical_sector_size: 512,
                physical_sector_size: Some(4096),
                identity: Identity { serial: Some(format!("SER{index:02}")), wwn: None, model: None },
                discard: false,
                table: Default::default(),
                signature: None,
                extended: None,
                partitions,
            },
        );
    }
    let vdevs = (0..6)
        .map(|v| Vdev { mode: VdevMode::Raidz2, members: (0..10).map(|i| format!("d{:02}/zfs", v * 10 + i)).collect() })
        .collect();
    let mut datasets = IndexMap::new();
    for (name, mountpoint) in [("root", "/"), ("nix", "/nix"), ("home", "/home"), ("var", "/var")] {
        datasets.insert(name.to_string(), Dataset { mountpoint: Some(mountpoint.into()), ..Dataset::default() });
    }
    let mut pools = IndexMap::new();
    pools.insert("tank".to_string(), Pool { vdevs, datasets, ..Pool::default() });
    Plan { version: 1, hostname: "storage".into(), disks, pools, ..Plan::default() }
}

fn main() {
    let plan = large_plan();
    let toml = plan.to_toml();
    let options = CompileOptions::default();
    let steps = plan.compile(&options).expect("the large plan compiles");
    let rounds = 50;
    let mut compile = Vec::with_capacity(rounds);
    let mut parse = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let parsed = Plan::from_toml(&toml).expect("parses");
        parse.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(parsed.compile(&options).expect("compiles"));
        compile.push(start.elapsed());
    }
    let median = |list: &mut Vec<Duration>| {
        list.sort();
        list[list.len() / 2].as_secs_f64() * 1000.0
    };
    println!("large layout: 60 disks, 6 raidz2 vdevs, {} steps, plan file {} bytes", steps.steps.len(), toml.len());
    println!(
        "validate + compile: median {:.3} ms, worst {:.3} ms (target < 10 ms)",
        median(&mut compile),
        compile.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!("parse TOML + validate: median {:.3} ms", median(&mut parse));
}
