//! Input a careless or hostile user gives, refused before anything could be written (or read as the
//! user meant it). The bad-plans corpus holds the whole-file cases with their exact messages; these are
//! the ones that need code to set up.

use layouts::nodes::filesystem::Format;
use layouts::presets::{build, DiskFacts, PresetKind, PresetOptions};
use layouts::{CompileOptions, Content, Filesystem, Plan, Size};
use proptest::prelude::*;

fn plain_plan() -> Plan {
    build(&PresetOptions::new(PresetKind::Ext4, vec![DiskFacts::offline("/dev/vda", 20 << 30)])).expect("preset")
}

#[test]
fn minus_zero_means_the_rest_and_is_written_back_so() {
    for written in ["-0", "-0G", "-0M", "rest", "100%"] {
        let size: Size = written.parse().expect("a size");
        assert_eq!(size, Size::Rest, "{written}");
        assert_eq!(size.to_string().parse::<Size>().expect("reads back"), Size::Rest, "{written}");
    }
    assert_eq!("-8G".parse::<Size>().expect("size"), Size::AllBut(8 << 30));
}

#[test]
fn only_boot_loader_mountpoints_make_an_esp() {
    let vfat = |mountpoint: &str| {
        Content::Filesystem(Filesystem {
            uuid: None,
            format: Format::Vfat,
            mountpoint: Some(mountpoint.into()),
            mount_options: vec![],
            label: None,
            mkfs_options: vec![],
        })
    };
    for esp in ["/boot", "/boot/", "/efi", "/boot/efi"] {
        assert_eq!(vfat(esp).partition_type(), "esp", "{esp}");
    }
    for other in ["/bootstrap-data", "/boot2", "/srv/boot", "/boot/grub"] {
        assert_eq!(vfat(other).partition_type(), "linux", "{other}");
    }
}

#[test]
fn the_target_is_an_absolute_normal_path_other_than_root() {
    let plan = plain_plan();
    for bad in ["", "/", "mnt", "/mnt/", "/mnt/../etc", "//mnt", "/mnt/./x", "/m\nt"] {
        let error =
            plan.compile(&CompileOptions { target: bad.into(), ..Default::default() }).expect_err(bad).to_string();
        assert!(error.starts_with("target: "), "{bad:?}: {error}");
    }
    for good in ["/mnt", "/target/new-root"] {
        plan.compile(&CompileOptions { target: good.into(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn a_system_built_elsewhere_is_a_store_path_and_installed_as_it_is() {
    let mut plan = plain_plan();
    plan.flake = Some("github:me/m#web1".into());
    let with = |system: &str| CompileOptions { system: Some(system.into()), ..Default::default() };
    for bad in [
        "/tmp/x",
        "/nix/store/abc-system",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-a b",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x/../../etc",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x\n--flake",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeu-x",
    ] {
        let error = plan.compile(&with(bad)).expect_err(bad).to_string();
        assert!(error.starts_with("system: "), "{bad:?}: {error}");
    }
    let system = "/nix/store/x9p2sf21mnj7416qknignzlb2n4iy5qq-nixos-system-web1-25.05";
    let steps = plan.compile(&with(system)).expect("compiles");
    let install = steps.steps.iter().find(|s| s.id == "nixos-install").expect("the install");
    let line = layouts::OperationKind::command(match &install.operation {
        layouts::Operation::NixosInstall(op) => op,
        other => panic!("{other:?}"),
    })
    .expect("a command")
    .to_string();
    assert!(line.contains(&format!("--system {system}")) && !line.contains("--flake"), "{line}");
    assert!(install.description.contains("built from github:me/m#web1"), "{}", install.description);
}

#[test]
fn mkfs_options_that_users_of_disko_write_are_kept() {
    let fine: &[(Format, &[&str])] = &[
        (Format::Btrfs, &["-f"]),
        (Format::Btrfs, &["-d", "single", "-m", "dup", "--csum", "xxhash"]),
        (Format::Xfs, &["-m", "crc=1", "-i", "sparse=1"]),
        (Format::Ext4, &["-O", "^has_journal", "-m0", "-E", "lazy_itable_init=0"]),
        (Format::Vfat, &["-F", "32", "-S", "4096"]),
    ];
    for (format, options) in fine {
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        format.check_mkfs_options(&options).unwrap_or_else(|e| panic!("{format:?} {options:?}: {e:?}"));
    }
    let refused: &[(Format, &[&str], usize)] = &[
        (Format::Btrfs, &["/dev/sdz"], 0),
        (Format::Btrfs, &["-f", "sdz"], 1),
        (Format::Btrfs, &["--rootdir", "/etc"], 0),
        (Format::Xfs, &["-l", "logdev=/dev/sdz"], 1),
        (Format::Xfs, &["-r", "rtdev=/dev/sdz"], 0),
        (Format::Xfs, &["-N"], 0),
        (Format::Ext4, &["-J", "device=/dev/sdz"], 0),
        (Format::Ext4, &["-d", "/etc"], 0),
        (Format::Ext4, &["-n"], 0),
        (Format::Ext4, &["-E", "root_owner=0:0,offset=../x/y"], 1),
        // Relative names, which mkfs resolves against its working directory, and a second UUID.
        (Format::Xfs, &["-l", "logdev=loop43"], 1),
        (Format::Xfs, &["-lsize=10m,logdev=loop43"], 0),
        (Format::Xfs, &["-m", "uuid=0b7b1a3e-0000-4000-8000-000000000001"], 1),
        (Format::Ext4, &["-E", "offset=4096"], 1),
        (Format::Ext4, &["-O", "journal_dev"], 1),
        (Format::Vfat, &["-C", "/tmp/image"], 0),
        (Format::Ext4, &["-L"], 0),
        (Format::Ext4, &["-b"], 0),
    ];
    for (format, options, at) in refused {
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        let (index, _) = format.check_mkfs_options(&options).expect_err(&format!("{format:?} {options:?}"));
        assert_eq!(index, *at, "{format:?} {options:?}");
    }
}

proptest! {
    /// Any disk size and partition sizes: placement answers (fits or does not), it never overflows.
    #[test]
    fn placement_never_overflows(
        disk in any::<u64>(),
        sizes in proptest::collection::vec(prop_oneof![
            any::<u64>().prop_map(Size::Bytes),
            any::<u64>().prop_map(Size::AllBut),
            Just(Size::Rest),
        ], 1..5),
        sector in prop_oneof![Just(512u64), Just(4096u64)],
    ) {
        let _ = layouts::gpt::allocate(layouts::gpt::Geometry::new(disk, sector), &sizes);
    }
}
