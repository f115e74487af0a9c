//! mkfs killed at each of its writes (strace's fault injection) on a loop device, as a power cut inside
//! mkfs would leave it: the probe must never call the result done unless it is whole, and a resumed apply
//! must finish with a filesystem that mounts. Run as root; the host kernel mounts ext4, xfs and btrfs
//! (vfat is covered by the VM).

use indexmap::IndexMap;
use installer::{Event, Mode, Options, Outlook, RealSystem, Secrets};
use layouts::{CompileOptions, Content, Disk, Filesystem, Format, Identity, Operation, Partition, Plan, Size};
use testkit::loopdev::{require_root, run, serialize, LoopDisk};

struct Bench {
    plan: Plan,
    disk: LoopDisk,
    target: std::path::PathBuf,
    options: Options,
}

impl Bench {
    fn new(format: Format) -> Bench {
        let disk = LoopDisk::new(512 << 20, 512).expect("loop");
        let size = run("blockdev", &["--getsize64", &disk.device]).expect("size").trim().parse().expect("bytes");
        let root = Content::Filesystem(Filesystem {
            uuid: None,
            format,
            mountpoint: Some("/".into()),
            mount_options: vec![],
            label: None,
            mkfs_options: vec![],
        });
        let partition = Partition {
            number: None,
            keep: false,
            start: None,
            size: Size::Rest,
            kind: None,
            label: None,
            uuid: None,
            attributes: vec![],
            bootable: false,
            logical: false,
            content: Some(root),
        };
        let disk_plan = Disk {
            device: disk.device.clone(),
            size: Some(size),
            logical_sector_size: 512,
            physical_sector_size: None,
            identity: Identity::default(),
            discard: false,
            table: Default::default(),
            signature: None,
            extended: None,
            partitions: IndexMap::from([("root".to_string(), partition)]),
        };
        let plan = Plan {
            version: 1,
            hostname: "killpoints".into(),
            disks: IndexMap::from([("a".to_string(), disk_plan)]),
            ..Plan::default()
        };
        let target = std::env::temp_dir().join(format!("nix-dabei-kill-{}-{}", format.fs_type(), std::process::id()));
        let options = Options { mode: Mode::Apply, weak_kdf: true, journal_dir: target.with_extension("state") };
        Bench { plan, disk, target, options }
    }

    fn steps(&self) -> layouts::Steps {
        self.plan
            .compile(&CompileOptions { target: self.target.to_string_lossy().into_owned(), ..Default::default() })
            .expect("compiles")
    }

    fn apply(&self) -> Result<installer::Report, installer::InstallError> {
        let preview = installer::preview(&RealSystem, &self.plan, &self.steps(), &self.options)?;
        installer::execute(
            &RealSystem,
            &self.plan,
            &preview,
            &["a".into()],
            &Secrets::default(),
            &self.options,
            &|_: Event| {},
        )
    }

    fn teardown(&self) {
        installer::teardown(&RealSystem, &self.plan, &self.steps(), &self.options, &|_: Event| {}).expect("teardown");
    }

    fn mkfs_outlook(&self) -> Outlook {
        let preview = installer::preview(&RealSystem, &self.plan, &self.steps(), &self.options).expect("preview");
        preview.steps.into_iter().find(|(s, _)| s.id == "mkfs:a/root").map(|(_, o)| o).expect("the mkfs step")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = installer::teardown(&RealSystem, &self.plan, &self.steps(), &self.options, &|_: Event| {});
        let _ = std::fs::remove_dir_all(&self.options.journal_dir);
    }
}

/// Kills mkfs at write `points` and checks the probe and the resume after each. Returns (tried, whole).
fn try_kill_points(format: Format, syscall: &str, points: impl Iterator<Item = u32>) -> (usize, usize) {
    let bench = Bench::new(format);
    bench.apply().expect("first apply");
    let partition = format!("{}p1", bench.disk.device);
    let mkfs = bench
        .steps()
        .steps
        .iter()
        .find_map(|s| match &s.operation {
            Operation::Mkfs(_) => s.operation.command(),
            _ => None,
        })
        .expect("a mkfs step");
    let (mut tried, mut whole) = (0, 0);
    for point in points {
        bench.teardown();
        run("wipefs", &["--all", "--quiet", &partition]).expect("wipefs");
        let inject = format!("inject={syscall}:signal=KILL:when={point}");
        let mut args = vec!["-f", "-o", "/dev/null", "-e", &inject, mkfs.program.as_str()];
        args.extend(mkfs.args.iter().map(String::as_str));
        // Killed, it fails; past its last write, it finishes.
        let _ = run("strace", &args);
        match bench.mkfs_outlook() {
            Outlook::Done(reason) => {
                whole += 1;
                let mounted = run("mount", &["-o", "ro", &partition, &bench.target.to_string_lossy()]);
                assert!(
                    mounted.is_ok(),
                    "{format:?} killed at write {point}: called done ({reason}) but does not mount"
                );
                run("umount", &[&bench.target.to_string_lossy()]).expect("umount");
            }
            Outlook::Todo { .. } => {}
            Outlook::Change(what) => panic!("{format:?} killed at write {point}: a filesystem to change? {what}"),
            Outlook::Conflict(why) => panic!("{format:?} killed at write {point}: refused instead of redone: {why}"),
        }
        bench.apply().unwrap_or_else(|e| panic!("{format:?} killed at write {point}: resume failed: {e}"));
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        let line = format!("{partition} {} {}", bench.target.display(), format.fs_type());
        assert!(mounts.lines().any(|l| l.starts_with(&line)), "{format:?} at write {point}: not mounted after resume");
        tried += 1;
    }
    (tried, whole)
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn mkfs_killed_at_any_write_is_redone_never_taken_as_done() {
    require_root();
    assert!(run("strace", &["-V"]).is_ok(), "strace is needed (scripts/setup installs it)");
    let _lock = serialize();
    let xfs = try_kill_points(Format::Xfs, "pwrite64", 1..=66);
    let ext4 = try_kill_points(Format::Ext4, "pwrite64", (1..=300).step_by(7));
    let btrfs = try_kill_points(Format::Btrfs, "pwrite64", (1..=72).step_by(3));
    println!(
        "kill points: xfs {} ({} whole), ext4 {} ({} whole), btrfs {} ({} whole)",
        xfs.0, xfs.1, ext4.0, ext4.1, btrfs.0, btrfs.1
    );
    assert!(xfs.0 + ext4.0 + btrfs.0 > 100);
}
