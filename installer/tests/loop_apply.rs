//! The executor on real loop devices (run as root): apply, re-apply as a no-op, refusals that write
//! nothing, conflicts, and a bystander disk that is never touched. The host kernel here mounts ext4 and
//! xfs (not vfat, and has no device-mapper), so these plans use those; the VM scenarios cover the rest.

use std::path::PathBuf;

use indexmap::IndexMap;
use installer::{Event, InstallError, Mode, Options, RealSystem, Secrets};
use layouts::{CompileOptions, Content, Disk, Filesystem, Format, Identity, Partition, Plan, Size};
use testkit::loopdev::{require_root, run, serialize, LoopDisk};

fn filesystem(format: Format, mountpoint: &str) -> Content {
    Content::Filesystem(Filesystem {
        uuid: None,
        format,
        mountpoint: Some(mountpoint.into()),
        mount_options: vec![],
        label: None,
        mkfs_options: vec![],
    })
}

fn disk(device: &str, partitions: Vec<(&str, Size, Content)>) -> Disk {
    let size = std::fs::metadata(device)
        .ok()
        .and_then(|_| run("blockdev", &["--getsize64", device]).ok())
        .and_then(|s| s.trim().parse().ok());
    Disk {
        device: device.into(),
        size,
        logical_sector_size: 512,
        physical_sector_size: None,
        identity: Identity::default(),
        discard: false,
        table: Default::default(),
        signature: None,
        extended: None,
        partitions: partitions
            .into_iter()
            .map(|(name, size, content)| {
                (
                    name.to_string(),
                    Partition {
                        number: None,
                        keep: false,
                        start: None,
                        size,
                        kind: None,
                        label: None,
                        uuid: None,
                        attributes: vec![],
                        bootable: false,
                        logical: false,
                        content: Some(content),
                    },
                )
            })
            .collect(),
    }
}

struct Setup {
    plan: Plan,
    disks: Vec<LoopDisk>,
    bystander: LoopDisk,
    target: PathBuf,
    options: Options,
}

impl Setup {
    fn new() -> Setup {
        let a = LoopDisk::new(1 << 30, 512).expect("loop a");
        let b = LoopDisk::new(1 << 30, 512).expect("loop b");
        let bystander = LoopDisk::new(64 << 20, 512).expect("loop bystander");
        run("mkfs.ext4", &["-q", "-L", "precious", &bystander.device]).expect("bystander filesystem");
        let mut disks = IndexMap::new();
        disks.insert("a".to_string(), disk(&a.device, vec![("root", Size::Rest, filesystem(Format::Ext4, "/"))]));
        disks.insert(
            "b".to_string(),
            disk(&b.device, vec![("data", Size::Bytes(512 << 20), filesystem(Format::Xfs, "/srv"))]),
        );
        let plan = Plan { version: 1, hostname: "looptest".into(), disks, ..Plan::default() };
        plan.validate().expect("a valid plan");
        let target = std::env::temp_dir().join(format!("nix-dabei-target-{}", std::process::id()));
        let options = Options { mode: Mode::Apply, weak_kdf: true, journal_dir: target.with_extension("state") };
        Setup { plan, disks: vec![a, b], bystander, target, options }
    }

    fn steps(&self) -> layouts::Steps {
        self.plan
            .compile(&CompileOptions { target: self.target.to_string_lossy().into_owned(), ..Default::default() })
            .expect("compiles")
    }

    fn apply(&self, confirmed: &[String]) -> Result<installer::Report, InstallError> {
        let steps = self.steps();
        let preview = installer::preview(&RealSystem, &self.plan, &steps, &self.options)?;
        installer::execute(
            &RealSystem,
            &self.plan,
            &preview,
            confirmed,
            &Secrets::default(),
            &self.options,
            &|_: Event| {},
        )
    }

    fn teardown(&self) {
        let _ = installer::teardown(&RealSystem, &self.plan, &self.steps(), &self.options, &|_: Event| {});
    }

    /// Teardown, and nothing is left mounted under the target.
    fn teardown_completely(&self) {
        self.teardown();
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        assert!(!mounts.contains(&*self.target.to_string_lossy()), "still mounted: {mounts}");
    }

    /// Replaces the plan with one on disk a alone: the plan's tables after the host name and disk a.
    fn plan_on_a(&mut self, tables: &str) {
        let (device, size) = (&self.disks[0].device, self.plan.disks["a"].size.expect("the loop device's size"));
        let text = format!("hostname = \"looptest\"\n[disks.a]\ndevice = \"{device}\"\nsize = {size}\n{tables}");
        self.plan = Plan::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    fn bystander_sum(&self) -> String {
        run("sha256sum", &[&self.bystander.device]).expect("sha256sum")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.teardown();
        let _ = std::fs::remove_dir_all(&self.options.journal_dir);
    }
}

fn all(setup: &Setup) -> Vec<String> {
    setup.plan.disks.keys().cloned().collect()
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn apply_then_apply_again_changes_nothing() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    let before = setup.bystander_sum();
    let report = setup.apply(&all(&setup)).expect("apply");
    assert!(report.applied >= 6, "{report:?}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let root = setup.target.to_string_lossy().into_owned();
    assert!(mounts.lines().any(|l| l.contains(&format!("{}p1 {root} ext4", setup.disks[0].device))), "{mounts}");
    assert!(mounts.lines().any(|l| l.contains(&format!("{}p1 {root}/srv xfs", setup.disks[1].device))), "{mounts}");
    let module = std::fs::read_to_string(setup.target.join("etc/nixos/nix-dabei.nix")).expect("module written");
    assert!(module.contains("fileSystems.\"/srv\""), "{module}");
    std::fs::write(setup.target.join("srv/kept"), "data").expect("write into the target");

    // A second run finds everything done and needs no confirmation.
    let again = setup.apply(&[]).expect("second apply");
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(std::fs::read_to_string(setup.target.join("srv/kept")).expect("still there"), "data");

    // The journal keeps the run that applied each step (the second found them done); teardown then
    // unmounts everything.
    let journal = std::fs::read_to_string(setup.options.journal_dir.join("journal.json")).expect("journal");
    assert!(journal.contains("\"mkfs:b/data\"") && journal.contains("\"applied\""), "{journal}");
    assert!(!journal.contains("\"skipped\"") && !journal.contains("\"failed\""), "{journal}");
    setup.teardown();
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!mounts.contains(&root), "still mounted: {mounts}");
    assert_eq!(setup.bystander_sum(), before, "the bystander disk changed");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn unconfirmed_disks_are_not_touched() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    run("mkfs.ext4", &["-q", "-L", "old", &setup.disks[1].device]).expect("old data");
    let error = setup.apply(&["a".to_string()]).expect_err("b is not confirmed");
    assert!(matches!(&error, InstallError::NotConfirmed(list) if list.len() == 1), "{error}");
    assert!(error.to_string().contains(&format!("wiping disk b ({})", setup.disks[1].device)), "{error}");
    // Nothing was written to either disk.
    assert!(run("wipefs", &[&setup.disks[1].device]).expect("wipefs").contains("ext4"));
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_disk_of_another_identity_is_refused_before_anything() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.plan.disks["b"].identity.serial = Some("S3RIAL".into());
    let error = setup.apply(&all(&setup)).expect_err("refused");
    assert!(error.to_string().contains("is not the disk the plan was made for: serial was \"S3RIAL\""), "{error}");
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "", "disk a was written");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_mounted_disk_is_refused() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    run("mkfs.ext4", &["-q", &setup.disks[1].device]).expect("mkfs");
    let mounted = testkit::loopdev::Mounted::new(&setup.disks[1].device).expect("mount");
    let error = setup.apply(&all(&setup)).expect_err("refused");
    assert!(error.to_string().contains(&format!("{} is mounted at", setup.disks[1].device)), "{error}");
    drop(mounted);
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "", "disk a was written");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn something_foreign_where_the_plan_puts_a_filesystem_is_a_conflict() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    setup.apply(&all(&setup)).expect("apply");
    setup.teardown();
    let data = format!("{}p1", setup.disks[1].device);
    run("mkfs.btrfs", &["-q", "-f", &data]).expect("someone else's filesystem");
    let error = setup.apply(&[]).expect_err("conflict");
    let text = error.to_string();
    assert!(text.contains("mkfs:b/data") && text.contains("holds btrfs, the plan puts xfs there"), "{text}");
    assert!(run("wipefs", &[&data]).expect("wipefs").contains("btrfs"), "the foreign filesystem was touched");
    assert!(text.contains(&format!("`wipefs --all {data}`")), "the way out is not named: {text}");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn one_disk_under_two_names_is_refused() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    // The same loop device under another name (a link beside it; the plan refuses "/dev/./loop0"): it
    // must not be wiped and partitioned twice at once.
    let other_name = format!("/dev/nix-dabei-test-same-{}", std::process::id());
    let _ = std::fs::remove_file(&other_name);
    std::os::unix::fs::symlink(&setup.disks[0].device, &other_name).expect("a link in /dev");
    setup.plan.disks["b"].device = other_name.clone();
    setup.plan.disks["b"].size = setup.plan.disks["a"].size;
    let result = setup.apply(&all(&setup));
    let _ = std::fs::remove_file(&other_name);
    let error = result.expect_err("refused");
    assert!(matches!(error, InstallError::SameDisk { .. }), "{error}");
    assert!(error.to_string().contains("\"a\" and \"b\""), "{error}");
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "", "the disk was written");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn old_contents_where_the_new_table_puts_partitions_are_wiped() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    setup.apply(&all(&setup)).expect("first install");
    std::fs::write(setup.target.join("old-root-file"), "from the earlier install").expect("write");
    setup.teardown();
    // Only the table goes (as with `wipefs --all` of the whole disk): the old ext4 stays where the
    // plan's root partition will be again.
    run("wipefs", &["--all", &setup.disks[0].device]).expect("wipefs");
    let partition = format!("{}p1", setup.disks[0].device);
    let _ = run("partx", &["--delete", &setup.disks[0].device]);
    let report = setup.apply(&["a".to_string()]).expect("install again");
    assert!(report.applied > 0, "{report:?}");
    assert!(!setup.target.join("old-root-file").exists(), "the old root was mounted as the new one");
    let kind = run("blkid", &["-o", "value", "-s", "TYPE", &partition]).expect("blkid");
    assert_eq!(kind.trim(), "ext4");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_disk_held_by_another_run_is_refused() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    let disks = partitioner::discover().expect("disks");
    let disk = partitioner::find_disk(&disks, &setup.disks[1].device).expect("disk b");
    let held = installer::System::lock_disk(&RealSystem, disk).expect("held");
    let error = setup.apply(&all(&setup)).expect_err("went ahead on a held disk");
    assert!(matches!(error, InstallError::Busy(_)), "{error}");
    assert!(error.to_string().contains(&format!("PID {}", std::process::id())), "{error}");
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "", "disk a was written");
    drop(held);
    setup.apply(&all(&setup)).expect("once released");
}

/// Zeroes one 512-byte sector of a device.
fn zero_sector(device: &str, sector: u64) {
    run(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={device}"),
            "bs=512",
            "count=1",
            &format!("seek={sector}"),
            "conv=notrunc,fsync",
        ],
    )
    .expect("dd");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_table_without_its_backup_or_protective_mbr_is_not_done() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    let device = setup.disks[0].device.clone();
    let sectors: u64 = run("blockdev", &["--getsz", &device]).expect("size").trim().parse().expect("sectors");
    for (what, sector) in [("the backup GPT header", sectors - 1), ("the protective MBR", 0)] {
        setup.apply(&all(&setup)).expect("apply");
        setup.teardown();
        zero_sector(&device, sector);
        // Redoing the table means wiping the disk: it must be confirmed again.
        let error = setup.apply(&[]).expect_err(what);
        assert!(matches!(&error, InstallError::NotConfirmed(list) if list.len() == 1), "{what}: {error}");
        setup.apply(&all(&setup)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let verify = run("sgdisk", &["-v", &device]).expect("sgdisk -v");
        assert!(verify.contains("No problems found"), "{what}: {verify}");
        setup.teardown();
    }
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_stale_kernel_view_is_resynced_without_wiping() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    setup.apply(&all(&setup)).expect("apply");
    std::fs::write(setup.target.join("kept"), "still here").expect("write");
    setup.teardown();
    // As after a run cut between writing the table and the kernel re-reading it.
    run("partx", &["--delete", &setup.disks[0].device]).expect("partx --delete");
    assert!(!std::path::Path::new(&format!("{}p1", setup.disks[0].device)).exists(), "the partition is still known");
    let report = setup.apply(&[]).expect("no wipe, so no confirmation");
    assert!(report.applied >= 1, "{report:?}");
    assert_eq!(std::fs::read_to_string(setup.target.join("kept")).expect("the data survived"), "still here");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_luks_header_without_its_key_is_made_again() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    let inner = filesystem(Format::Ext4, "/");
    let luks = Content::Luks(layouts::Luks {
        name: "killtest".into(),
        key: "prompt".into(),
        label: None,
        uuid: None,
        passphrase_file: None,
        allow_discards: true,
        additional_key_files: vec![],
        content: Box::new(inner),
    });
    setup.plan.disks["a"] = disk(&setup.disks[0].device, vec![("root", Size::Rest, luks)]);
    setup.plan.disks.shift_remove("b");
    let secrets = Secrets { passphrase: Some(installer::Secret::new(b"correct horse".to_vec())) };
    let steps = setup.steps();
    let outlook = |setup: &Setup| {
        let preview = installer::preview(&RealSystem, &setup.plan, &steps, &setup.options).expect("preview");
        preview.steps.into_iter().find(|(s, _)| s.id == "luks-format:a/root").map(|(_, o)| o).expect("step")
    };
    let preview = installer::preview(&RealSystem, &setup.plan, &steps, &setup.options).expect("preview");
    // The host has no device-mapper: the run formats, then stops at opening.
    let _ =
        installer::execute(&RealSystem, &setup.plan, &preview, &all(&setup), &secrets, &setup.options, &|_: Event| {});
    assert!(matches!(outlook(&setup), installer::Outlook::Done(_)), "{:?}", outlook(&setup));
    // The header stays, its key slot goes: as a run cut between formatting and adding the key.
    run("cryptsetup", &["luksErase", "--batch-mode", &format!("{}p1", setup.disks[0].device)]).expect("luksErase");
    assert_eq!(outlook(&setup), installer::Outlook::Todo { destroys: true });
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_used_filesystem_a_crash_left_dirty_is_kept() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    setup.apply(&all(&setup)).expect("apply");
    std::fs::write(setup.target.join("root-file"), "root").expect("write");
    std::fs::write(setup.target.join("srv/srv-file"), "srv").expect("write");
    for file in ["root-file", "srv/srv-file"] {
        std::fs::File::open(setup.target.join(file)).and_then(|f| f.sync_all()).expect("sync");
    }
    // XFS goes down as in a crash (the log keeps changes to replay); ext4's counters are left wrong.
    run("xfs_io", &["-x", "-c", "shutdown -f", &setup.target.join("srv").to_string_lossy()]).expect("xfs shutdown");
    setup.teardown();
    let (root, srv) = (format!("{}p1", setup.disks[0].device), format!("{}p1", setup.disks[1].device));
    run("debugfs", &["-w", "-R", "set_inode_field <2> links_count 7", &root]).expect("debugfs");
    assert!(run("e2fsck", &["-n", "-f", &root]).is_err(), "the ext4 still checks clean");
    assert!(run("xfs_repair", &["-n", &srv]).is_err(), "the xfs log is clean");

    let again = setup.apply(&[]).expect("apply after the crash");
    assert!(again.applied <= 3, "{again:?}");
    assert_eq!(std::fs::read_to_string(setup.target.join("root-file")).expect("root data kept"), "root");
    assert_eq!(std::fs::read_to_string(setup.target.join("srv/srv-file")).expect("srv data kept"), "srv");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn btrfs_subvolumes_and_swap_files_are_made_once_and_mounted() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.plan_on_a(
        r#"
[disks.a.partitions.root]
size = "rest"
[disks.a.partitions.root.content.btrfs]
mountpoint = "/top"
[disks.a.partitions.root.content.btrfs.subvolumes]
"/root" = { mountpoint = "/", mount_options = ["compress=zstd"] }
home = { mountpoint = "/home" }
"home/user" = {}
swap = { mountpoint = "/swap", swap.swapfile = { size = "16M" } }
"#,
    );
    let report = setup.apply(&all(&setup)).expect("apply");
    assert!(report.applied >= 5, "{report:?}");
    let root = setup.target.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let options_at = |target: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(target) && l.split(' ').nth(2) == Some("btrfs"))
            .and_then(|l| l.split(' ').nth(3))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{target} is not a btrfs mount: {mounts}"))
    };
    assert!(options_at(&root).contains("subvol=/root") && options_at(&root).contains("compress=zstd"));
    assert!(options_at(&format!("{root}/home")).contains("subvol=/home"));
    let top = options_at(&format!("{root}/top"));
    assert!(top.contains("subvol=/,") || top.ends_with("subvol=/"), "{top}");
    // The nested subvolume is there, and reached through its parent's mount.
    let show = run("btrfs", &["subvolume", "show", &format!("{root}/home/user")]).expect("home/user is a subvolume");
    assert!(show.contains("home/user"), "{show}");
    let swapfile = std::fs::read(setup.target.join("swap/swapfile")).expect("the swap file");
    assert_eq!(swapfile.len(), 16 << 20);
    assert_eq!(&swapfile[4086..4096], b"SWAPSPACE2", "the swap file has a swap header");
    // No private mount is left behind.
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!mounts.contains("/run/nix-dabei/btrfs-"), "{mounts}");
    std::fs::write(setup.target.join("home/user/kept"), "data").expect("write into the target");

    let again = setup.apply(&[]).expect("second apply");
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(std::fs::read_to_string(setup.target.join("home/user/kept")).expect("kept"), "data");
    setup.teardown_completely();
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_tmpfs_root_is_mounted_first_and_the_disks_inside_it() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.plan_on_a(
        r#"
[nodev."/"]
fs_type = "tmpfs"
mount_options = ["size=64M", "mode=755"]
[disks.a.partitions.nix]
size = "rest"
content.filesystem = { format = "ext4", mountpoint = "/nix" }
"#,
    );
    setup.apply(&all(&setup)).expect("apply");
    let root = setup.target.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let root_line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(root.as_str())).expect("/ is mounted");
    assert!(root_line.starts_with("tmpfs ") && root_line.contains(" tmpfs ") && root_line.contains("size=65536k"));
    let device = &setup.disks[0].device;
    assert!(mounts.lines().any(|l| l.starts_with(&format!("{device}p1 {root}/nix ext4"))), "{mounts}");
    assert_eq!(setup.apply(&[]).expect("second apply").applied, 0);
    setup.teardown_completely();
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_btrfs_across_two_disks_is_made_once_with_both_devices() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    let b = (&setup.disks[1].device, setup.plan.disks["b"].size.expect("size"));
    let more = format!(
        r#"
[disks.a.partitions.root.content.btrfs]
mkfs_options = ["-d", "raid1", "-m", "raid1"]
subvolumes.root = {{ mountpoint = "/" }}
subvolumes.data = {{ mountpoint = "/data" }}
[disks.a.partitions.root]
size = "rest"
[disks.b]
device = "{}"
size = {}
[disks.b.partitions.more]
size = "rest"
content.btrfs_member = {{ filesystem = "a/root" }}
"#,
        b.0, b.1
    );
    setup.plan_on_a(&more);
    setup.apply(&all(&setup)).expect("apply");
    let (a1, b1) = (format!("{}p1", setup.disks[0].device), format!("{}p1", setup.disks[1].device));
    let show = run("btrfs", &["filesystem", "show", &a1]).expect("btrfs filesystem show");
    assert!(show.contains("Total devices 2") && show.contains(&a1) && show.contains(&b1), "{show}");
    let usage = run("btrfs", &["filesystem", "df", &*setup.target.to_string_lossy()]).expect("btrfs filesystem df");
    assert!(usage.contains("Data, RAID1") && usage.contains("Metadata, RAID1"), "{usage}");
    // Only a1 is the mount's source; b1 is in use all the same, and its disk may not be wiped.
    let disks = installer::System::discover(&RealSystem).expect("discover");
    let b = disks.iter().find(|d| d.path == setup.disks[1].device).expect("disk b is listed");
    assert!(
        b.in_use.iter().any(|r| matches!(r, partitioner::InUse::BtrfsDevice { device, .. } if *device == b1)),
        "{:?}",
        b.in_use
    );
    assert_eq!(setup.apply(&[]).expect("second apply").applied, 0);
    setup.teardown_completely();
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn an_msdos_table_with_logical_partitions_replaces_a_gpt_and_is_kept_after() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.apply(&all(&setup)).expect("apply the GPT plan");
    setup.teardown_completely();
    setup.plan_on_a(
        r#"
table = "msdos"
[disks.a.partitions.boot]
size = "128M"
bootable = true
content.filesystem = { format = "ext4", mountpoint = "/boot" }
[disks.a.partitions.root]
size = "384M"
logical = true
content.filesystem = { format = "ext4", mountpoint = "/" }
[disks.a.partitions.data]
size = "rest"
logical = true
content.filesystem = { format = "xfs", mountpoint = "/srv" }
"#,
    );
    let device = setup.disks[0].device.clone();
    // Replacing the GPT means wiping the disk: confirmed again.
    let error = setup.apply(&[]).expect_err("unconfirmed");
    assert!(matches!(&error, InstallError::NotConfirmed(_)), "{error}");
    setup.apply(&all(&setup)).expect("apply the MBR plan");
    let root = setup.target.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    for (number, mountpoint) in [(5, root.clone()), (1, format!("{root}/boot")), (6, format!("{root}/srv"))] {
        assert!(mounts.lines().any(|l| l.starts_with(&format!("{device}p{number} {mountpoint} "))), "{mounts}");
    }
    // Nothing of the GPT is left: blkid and sfdisk see an MBR table with the boot flag on partition 1.
    let probe = run("blkid", &["-p", "-o", "export", &device]).expect("blkid");
    assert!(probe.contains("PTTYPE=dos"), "{probe}");
    let dump = run("sfdisk", &["--dump", &device]).expect("sfdisk");
    assert!(dump.lines().any(|l| l.starts_with(&format!("{device}p1 ")) && l.contains("bootable")), "{dump}");
    assert!(dump.contains(", type=5"), "an extended partition: {dump}");
    std::fs::write(setup.target.join("srv/kept"), "data").expect("write");
    assert_eq!(setup.apply(&[]).expect("second apply").applied, 0);
    setup.teardown_completely();

    // A run cut before the kernel re-read the table: resynced without wiping.
    run("partx", &["--delete", &device]).expect("partx --delete");
    let report = setup.apply(&[]).expect("no wipe, so no confirmation");
    assert!(report.applied >= 1, "{report:?}");
    assert_eq!(std::fs::read_to_string(setup.target.join("srv/kept")).expect("the data survived"), "data");
    setup.teardown_completely();

    // A broken chain of extended boot records is not the planned table: the disk must be confirmed again.
    let second_record = setup
        .steps()
        .steps
        .iter()
        .find_map(|s| match &s.operation {
            layouts::Operation::PartitionTable(table) => table.partitions.iter().find(|p| p.number == 6).cloned(),
            _ => None,
        })
        .expect("partition 6")
        .extent
        .first_lba
        - 2048;
    zero_sector(&device, second_record);
    let error = setup.apply(&[]).expect_err("a damaged table");
    assert!(matches!(&error, InstallError::NotConfirmed(list) if list.len() == 1), "{error}");
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn bcachefs_is_refused_on_this_kernel_before_anything_is_written() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.plan_on_a(
        r#"
[disks.a.partitions.data]
size = "rest"
content.bcachefs = { filesystem = "main" }
[bcachefs_filesystems.main]
mountpoint = "/"
"#,
    );
    let device = setup.disks[0].device.clone();
    let before = run("sha256sum", &[&device]).expect("sha256sum");
    let error = setup.apply(&all(&setup)).expect_err("this kernel has no bcachefs");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let text = error.to_string();
    // Debian 12 has no bcachefs-tools: then the missing program is what the preview names first; with
    // the program, the kernel that lacks bcachefs.
    if installer::command::available("bcachefs") {
        assert!(matches!(error, InstallError::Conflicts(_)), "{text}");
        assert!(text.contains(&format!("the running kernel, Linux {}, has no bcachefs", release.trim())), "{text}");
    } else {
        assert!(matches!(error, InstallError::MissingPrograms(_)), "{text}");
        assert!(text.contains("bcachefs (nixpkgs bcachefs-tools)"), "{text}");
    }
    assert_eq!(run("sha256sum", &[&device]).expect("sha256sum"), before, "the disk was written to");
}

/// A disk named by a link of the user's under /dev (which the plan allows, as it cannot tell it from the
/// kernel's name) is refused before anything is written: its partitions would never appear under names
/// made from the link's, and the run would wait for them after the wipe.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_disk_named_by_a_link_of_its_own_is_refused_before_the_wipe() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    let link = format!("/dev/nix-dabei-test-link-{}", std::process::id());
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&setup.disks[0].device, &link).expect("a link in /dev");
    setup.plan.disks["a"].device = link.clone();
    let result = setup.apply(&all(&setup));
    let _ = std::fs::remove_file(&link);
    let error = result.expect_err("refused");
    assert!(matches!(error, InstallError::NotItsOwnName { .. }), "{error}");
    assert!(error.to_string().contains(&setup.disks[0].device), "the kernel's name is not given: {error}");
    assert_eq!(run("wipefs", &[&setup.disks[0].device]).expect("wipefs").trim(), "", "the disk was written");
}

/// `unmount` undoes only the plan's own mounts: a filesystem of someone else's mounted at the plan's
/// mountpoint is left mounted, and the teardown stops there naming it.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn unmount_leaves_a_foreign_filesystem_at_the_plans_mountpoint_mounted() {
    require_root();
    let _lock = serialize();
    let setup = Setup::new();
    setup.apply(&all(&setup)).expect("apply");
    setup.teardown_completely();
    // Someone mounts their own filesystem where the plan's /srv was.
    let srv = setup.target.join("srv");
    std::fs::create_dir_all(&srv).expect("mountpoint");
    run("mount", &["-t", "tmpfs", "someone-elses", &srv.to_string_lossy()]).expect("a foreign mount");
    let result = installer::teardown(&RealSystem, &setup.plan, &setup.steps(), &setup.options, &|_: Event| {});
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let still = mounts.lines().any(|l| l.starts_with(&format!("someone-elses {} tmpfs", srv.display())));
    let _ = run("umount", &[&srv.to_string_lossy()]);
    let error = result.expect_err("the foreign mount stops the teardown").to_string();
    assert!(still, "the foreign filesystem was unmounted: {mounts}");
    assert!(error.contains("someone-elses") && error.contains("not what the plan mounted"), "{error}");
}

/// An exFAT data partition: made with the plan's serial and label (mkfs.exfat sets neither serial nor
/// could it be told apart after a cut, so tune.exfat finishes it), of the type other systems look for,
/// found done again; one a cut left unfinished (mkfs's serial, the plan's marker label) is made again,
/// and anyone else's exFAT stays a conflict, untouched.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn an_exfat_data_partition_gets_the_plans_serial_and_label_and_resumes() {
    require_root();
    let _lock = serialize();
    let mut setup = Setup::new();
    setup.plan_on_a(
        "[disks.a.partitions.share]\nsize = \"rest\"\ncontent.filesystem = { format = \"exfat\", label = \"SHARE\" }\n",
    );
    let partition = format!("{}p1", setup.disks[0].device);
    let blkid = |what: &str| run("blkid", &["-p", "-s", what, "-o", "value", &partition]).unwrap_or_default();
    let planned = match &setup.steps().steps.iter().find(|s| s.id == "mkfs:a/share").expect("mkfs").operation {
        layouts::Operation::Mkfs(mkfs) => mkfs.clone(),
        other => panic!("{other:?}"),
    };

    setup.apply(&all(&setup)).expect("apply");
    assert_eq!(blkid("TYPE").trim(), "exfat");
    assert_eq!(blkid("UUID").trim(), planned.blkid_uuid(), "the plan's serial");
    assert_eq!(blkid("LABEL").trim(), "SHARE");
    run("fsck.exfat", &["-n", &partition]).expect("a whole exFAT");
    let table = run("sgdisk", &["-i", "1", &setup.disks[0].device]).expect("sgdisk");
    assert!(table.contains("Microsoft basic data"), "{table}");
    let again = setup.apply(&[]).expect("second apply");
    assert_eq!(again.applied, 0, "{again:?}");

    // Cut after mkfs.exfat: its own serial, the marker label. Made again, finished.
    run("mkfs.exfat", &["-L", &planned.exfat_marker(), &partition]).expect("mkfs.exfat");
    assert_ne!(blkid("UUID").trim(), planned.blkid_uuid());
    let resumed = setup.apply(&[]).expect("resumed");
    assert!(resumed.applied >= 1, "{resumed:?}");
    assert_eq!(
        (blkid("UUID").trim().to_string(), blkid("LABEL").trim().to_string()),
        (planned.blkid_uuid(), "SHARE".into())
    );

    // Someone else's exFAT (another label, another serial): a conflict, untouched.
    run("mkfs.exfat", &["-L", "OTHER", &partition]).expect("mkfs.exfat");
    let theirs = blkid("UUID");
    let error = setup.apply(&[]).expect_err("conflict");
    assert!(error.to_string().contains("holds a exfat that is not this plan's"), "{error}");
    assert_eq!((blkid("UUID"), blkid("LABEL").trim().to_string()), (theirs, "OTHER".into()), "it was touched");
}
