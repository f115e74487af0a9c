//! Drivers and firmware from a sysfs tree shaped like a virtio machine's.

use std::os::unix::fs::symlink;
use std::path::Path;

use partitioner::discover::SystemRoots;
use partitioner::hardware::{booted_with_uefi, disk_modules, network_modules};

/// `driver` of `device` -> the driver's directory, whose `module` -> /sys/module/<module>.
fn bind(sys: &Path, device: &str, bus: &str, driver: &str, module: Option<&str>) {
    let driver_dir = sys.join("bus").join(bus).join("drivers").join(driver);
    std::fs::create_dir_all(&driver_dir).expect("driver dir");
    if let Some(module) = module {
        std::fs::create_dir_all(sys.join("module").join(module)).expect("module dir");
        let _ = symlink(sys.join("module").join(module), driver_dir.join("module"));
    }
    symlink(&driver_dir, sys.join("devices").join(device).join("driver")).expect("driver link");
}

#[test]
fn disk_and_network_drivers_are_found_up_the_device_tree() {
    let root = std::env::temp_dir().join(format!("nix-dabei-sysfs-{}", std::process::id()));
    let sys = root.join("sys");
    let pci = "pci0000:00/0000:00:04.0";
    for dir in [
        format!("{pci}/virtio1/block/vda"),
        "pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:0/block/sda".to_string(),
        "pci0000:00/0000:00:03.0/virtio0/net/eth0".to_string(),
        "pci0000:00/0000:00:06.0/nvme/nvme0".to_string(),
        "virtual/nvme-subsystem/nvme-subsys0/nvme0n1".to_string(),
    ] {
        std::fs::create_dir_all(sys.join("devices").join(dir)).expect("device dir");
    }
    std::fs::create_dir_all(sys.join("block")).expect("block");
    std::fs::create_dir_all(sys.join("class/net")).expect("net");
    bind(&sys, pci, "pci", "virtio-pci", Some("virtio_pci"));
    bind(&sys, &format!("{pci}/virtio1"), "virtio", "virtio_blk", Some("virtio_blk"));
    bind(&sys, "pci0000:00/0000:00:05.0", "pci", "virtio-pci", Some("virtio_pci"));
    bind(&sys, "pci0000:00/0000:00:05.0/virtio2", "virtio", "virtio_scsi", Some("virtio_scsi"));
    // sd is the SCSI disk driver; built in here (no module link), named sd_mod when it is a module.
    bind(&sys, "pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:0", "scsi", "sd", None);
    bind(&sys, "pci0000:00/0000:00:03.0", "pci", "virtio-pci", Some("virtio_pci"));
    bind(&sys, "pci0000:00/0000:00:03.0/virtio0", "virtio", "virtio_net", Some("virtio_net"));
    symlink(sys.join("devices").join(pci).join("virtio1/block/vda"), sys.join("block/vda")).expect("link");
    symlink(
        sys.join("devices").join(pci).join("virtio1"),
        sys.join("devices").join(pci).join("virtio1/block/vda/device"),
    )
    .expect("link");
    let sda = sys.join("devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:0");
    symlink(sda.join("block/sda"), sys.join("block/sda")).expect("link");
    symlink(&sda, sda.join("block/sda/device")).expect("link");
    let eth0 = sys.join("devices/pci0000:00/0000:00:03.0/virtio0");
    symlink(eth0.join("net/eth0"), sys.join("class/net/eth0")).expect("link");
    symlink(&eth0, eth0.join("net/eth0/device")).expect("link");
    std::fs::create_dir_all(sys.join("class/net/lo")).expect("lo");

    // NVMe multipath: the namespace's device is the virtual subsystem, which links to its controller.
    bind(&sys, "pci0000:00/0000:00:06.0", "pci", "nvme", Some("nvme"));
    let subsystem = sys.join("devices/virtual/nvme-subsystem/nvme-subsys0");
    symlink(subsystem.join("nvme0n1"), sys.join("block/nvme0n1")).expect("link");
    symlink(&subsystem, subsystem.join("nvme0n1/device")).expect("link");
    symlink(sys.join("devices/pci0000:00/0000:00:06.0/nvme/nvme0"), subsystem.join("nvme0")).expect("link");
    symlink(sys.join("class/net"), subsystem.join("subsystem")).expect("link");

    let roots = SystemRoots { sys: sys.clone(), ..SystemRoots::default() };
    let names = |set: std::collections::BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
    assert_eq!(names(disk_modules(&roots, "vda").expect("vda")), ["virtio_blk", "virtio_pci"]);
    assert_eq!(names(disk_modules(&roots, "sda").expect("sda")), ["sd_mod", "virtio_pci", "virtio_scsi"]);
    assert_eq!(names(network_modules(&roots).expect("net")), ["virtio_net", "virtio_pci"]);
    assert_eq!(names(disk_modules(&roots, "nvme0n1").expect("nvme0n1")), ["nvme"]);
    assert!(disk_modules(&roots, "nvme9n1").is_err(), "an unknown disk is an error, not an empty list");

    assert!(!booted_with_uefi(&roots));
    std::fs::create_dir_all(sys.join("firmware/efi")).expect("efi");
    assert!(booted_with_uefi(&roots));
    let _ = std::fs::remove_dir_all(&root);
}
