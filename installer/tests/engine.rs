//! The executor on the simulated system (no root, no devices): every preset applied, re-applied as a
//! no-op, torn down and mounted again; the command lines run equal to those `plan` prints; a power cut
//! at every change boundary resumed to completion; refusals that change nothing.

use installer::{Event, InstallError, Mode, Options, Outlook, Report, Secret, Secrets, SimSystem};
use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
use layouts::{BootMode, CompileOptions, Identity, Operation, Plan, RemoteUnlock, Steps};

const GIB: u64 = 1 << 30;

fn machine() -> SimSystem {
    SimSystem::with_disks(vec![
        SimSystem::disk("vda", "virtio-disk0", 20 * GIB, "disk0"),
        SimSystem::disk("vdb", "virtio-disk1", 20 * GIB, "disk1"),
        SimSystem::disk("vdc", "virtio-bystander", 2 * GIB, "bystander"),
    ])
}

fn facts(id: &str, serial: &str) -> DiskFacts {
    DiskFacts {
        device: format!("/dev/disk/by-id/{id}"),
        size: Some(20 * GIB),
        logical_sector_size: 512,
        physical_sector_size: Some(4096),
        identity: Identity { serial: Some(serial.into()), wwn: None, model: None },
    }
}

/// Every preset with every encryption it takes, with and without swap.
fn presets() -> Vec<(String, Plan)> {
    let mut plans = Vec::new();
    for kind in [PresetKind::Single, PresetKind::Mirror, PresetKind::Ext4] {
        for encryption in [Encryption::None, Encryption::ZfsNative, Encryption::Luks] {
            for swap in [None, Some(GIB)] {
                let disks = match kind {
                    PresetKind::Mirror => vec![facts("virtio-disk0", "disk0"), facts("virtio-disk1", "disk1")],
                    _ => vec![facts("virtio-disk0", "disk0")],
                };
                let mut options = PresetOptions::new(kind, disks);
                options.encryption = encryption;
                options.swap = swap;
                options.flake = Some("github:me/machines#sim".into());
                // Mirrors boot either way (a BIOS boot partition on each disk); encrypted layouts unlock
                // over SSH (a generated initrd host key).
                if kind == PresetKind::Mirror {
                    options.boot = BootMode::Both;
                }
                if encryption != Encryption::None {
                    options.remote_unlock = Some(RemoteUnlock {
                        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLs me".into()],
                        port: 22,
                        network_kernel_modules: vec!["virtio_net".into()],
                    });
                }
                if let Ok(plan) = build(&options) {
                    plans.push((format!("{kind:?}-{encryption:?}-swap{}", swap.is_some()), plan));
                }
            }
        }
    }
    assert_eq!(plans.len(), 16, "every preset and encryption that go together");
    for (name, text) in LAYOUTS {
        let plan = Plan::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        plans.push((name.to_string(), plan));
    }
    plans
}

/// Layouts of the node types the presets do not use: the example plans in layouts/example-plans.
const LAYOUTS: &[(&str, &str)] = &[
    ("Btrfs-Luks-swaptrue", include_str!("../../layouts/example-plans/btrfs-subvolumes-on-luks.toml")),
    ("Btrfs-raid1-Luks-swapfalse", include_str!("../../layouts/example-plans/btrfs-raid1-on-luks.toml")),
    ("Lvm-thin-Luks-swaptrue", include_str!("../../layouts/example-plans/lvm-thin-on-luks.toml")),
    ("Mdadm-Luks-swaptrue", include_str!("../../layouts/example-plans/mdadm-mirrored-boot.toml")),
    ("Tmpfs-root-None-swapfalse", include_str!("../../layouts/example-plans/tmpfs-root.toml")),
    ("Mirror-special-dedup-swapfalse", include_str!("../../layouts/example-plans/zfs-special-dedup.toml")),
    ("Mbr-Luks-swaptrue", include_str!("../../layouts/example-plans/mbr-bios.toml")),
    ("Mdadm-gpt-None-swaptrue", include_str!("../../layouts/example-plans/mdadm-partitioned.toml")),
    ("Exfat-data-None-swapfalse", include_str!("../../layouts/example-plans/exfat-data-disk.toml")),
];

/// Steps whose result the step before them left behind: an activation after lvcreate, an assembly after
/// mdadm --create.
fn made_running_before(id: &str) -> bool {
    id.starts_with("vg-activate:") || id.starts_with("md-assemble:")
}

fn options(mode: Mode) -> Options {
    let dir =
        std::env::temp_dir().join(format!("nix-dabei-engine-{}-{:?}", std::process::id(), std::thread::current().id()));
    Options { mode, weak_kdf: false, journal_dir: dir }
}

fn secrets() -> Secrets {
    Secrets { passphrase: Some(Secret::new(b"correct horse".to_vec())) }
}

fn steps(plan: &Plan) -> Steps {
    plan.compile(&CompileOptions::default()).expect("compiles")
}

fn confirm_all(plan: &Plan) -> Vec<String> {
    plan.disks.keys().cloned().collect()
}

fn apply(system: &SimSystem, plan: &Plan, mode: Mode) -> Result<Report, InstallError> {
    let options = options(mode);
    let preview = installer::preview(system, plan, &steps(plan), &options)?;
    installer::execute(system, plan, &preview, &confirm_all(plan), &secrets(), &options, &|_: Event| {})
}

/// Applies with no passphrase given.
fn apply_without_passphrase(system: &SimSystem, plan: &Plan) -> Result<Report, InstallError> {
    let options = options(Mode::Apply);
    let preview = installer::preview(system, plan, &steps(plan), &options)?;
    installer::execute(system, plan, &preview, &confirm_all(plan), &Secrets::default(), &options, &|_: Event| {})
}

fn fresh_journal() {
    let _ = std::fs::remove_dir_all(options(Mode::Apply).journal_dir);
}

#[test]
fn every_preset_applies_then_reapplies_as_a_no_op() {
    for (name, plan) in presets() {
        fresh_journal();
        let system = machine();
        let all = steps(&plan);
        let report = apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: {e}"));
        // lvcreate activates what it creates, mdadm --create starts the array: activating the group or
        // assembling the array then finds it done.
        let side_effects = all.steps.iter().filter(|s| made_running_before(&s.id)).count();
        assert_eq!(report.applied + side_effects, all.steps.len(), "{name}: every step runs once");
        assert_eq!(report.skipped, side_effects, "{name}: only activations are found done");

        let preview = installer::preview(&system, &plan, &all, &options(Mode::Apply)).expect("preview");
        let not_done: Vec<_> =
            preview.steps.iter().filter(|(_, o)| !matches!(o, Outlook::Done(_))).map(|(s, _)| &s.id).collect();
        assert!(not_done.is_empty(), "{name}: not done after apply: {not_done:?}");
        assert!(preview.wipes.is_empty(), "{name}: a second run would wipe");
        let changes = system.changes();
        let again = apply(&system, &plan, Mode::Apply).expect("second apply");
        assert_eq!((again.applied, again.skipped), (0, all.steps.len()), "{name}");
        assert_eq!(system.changes(), changes, "{name}: the second apply changed something");

        let root =
            system.mounts().into_iter().find(|m| m.target == "/mnt").unwrap_or_else(|| panic!("{name}: / not mounted"));
        assert!(["zfs", "ext4", "btrfs", "tmpfs"].contains(&root.fs_type.as_str()), "{name}: {root:?}");
        let module = system.file("/mnt/etc/nixos/nix-dabei.nix").expect("the module was written");
        assert_eq!(module, layouts::nixos::module(&plan), "{name}");
        let host_key = system.file("/mnt/etc/secrets/initrd/ssh_host_ed25519_key");
        assert_eq!(host_key.is_some(), plan.remote_unlock.is_some(), "{name}: the initrd host key");
        let bios = plan.disks.values().all(layouts::Disk::boots_bios);
        assert_eq!(bios, plan.boot.is_some_and(BootMode::bios), "{name}: where GRUB goes for BIOS");
        let bystander = system
            .commands()
            .iter()
            .flat_map(|c| c.args.clone())
            .filter(|a| a.contains("vdc") || a.contains("bystander"))
            .count();
        assert_eq!(bystander, 0, "{name}: a program was pointed at the bystander disk");
    }
}

#[test]
fn every_program_runs_with_the_command_line_plan_prints() {
    for (name, plan) in presets() {
        fresh_journal();
        let system = machine();
        apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ran = system.commands();
        let mut checked = 0;
        for step in &steps(&plan).steps {
            let commands = step.operation.commands();
            if commands.is_empty() {
                continue;
            }
            let printed: Vec<String> = commands.iter().map(ToString::to_string).collect();
            assert_eq!(
                step.operation.to_string(),
                printed.join(" && "),
                "{name}: {} prints something else than it runs",
                step.id
            );
            // lvcreate activates what it creates, so the activation that follows has nothing to do.
            let expected = usize::from(!made_running_before(&step.id));
            for command in &commands {
                assert_eq!(
                    ran.iter().filter(|c| *c == command).count(),
                    expected,
                    "{name}: {} ran other than `{command}`: {ran:#?}",
                    step.id
                );
            }
            checked += 1;
        }
        assert!(checked >= 3, "{name}: only {checked} steps run programs");
    }
}

/// Every program the steps run, over every preset and example plan (apply, apply again, teardown and
/// mount), is declared in `layouts::programs` with the packages that provide it, and is among the
/// programs the plan's own steps name, which the preview checks the machine for.
#[test]
fn every_program_run_is_declared_and_named_by_the_plans_steps() {
    let mut seen = std::collections::BTreeSet::new();
    for (name, plan) in presets() {
        fresh_journal();
        let system = machine();
        let all = steps(&plan);
        apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: {e}"));
        apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: again: {e}"));
        installer::teardown(&system, &plan, &all, &options(Mode::Mount), &|_: Event| {}).expect("teardown");
        apply(&system, &plan, Mode::Mount).unwrap_or_else(|e| panic!("{name}: mount: {e}"));
        let named: std::collections::BTreeSet<String> =
            all.steps.iter().chain(&all.teardown).flat_map(|s| s.operation.programs()).collect();
        for command in system.commands() {
            let program = command.program.as_str();
            assert!(
                layouts::programs::find(program).is_some(),
                "{name}: `{command}` runs {program}, which layouts::programs does not declare"
            );
            assert!(
                program == "udevadm" || named.contains(program),
                "{name}: `{command}` runs {program}, which no step of the plan names (OperationKind::other_programs)"
            );
            seen.insert(program.to_string());
        }
    }
    for program in ["zpool", "zfs", "mkfs.vfat", "mkfs.ext4", "mkswap", "pvcreate", "mdadm", "btrfs", "nixos-install"] {
        assert!(seen.contains(program), "no plan ran {program}: {seen:?}");
    }
}

/// The root in LUKS on a RAID 1 array (and LUKS on LVM, under it): applied without a passphrase, refused
/// before the first write; before, the disks were wiped and the run failed at luks-format.
#[test]
fn a_plan_that_types_a_passphrase_is_refused_without_one_before_anything_is_written() {
    for layout in ["Mdadm-Luks-swaptrue", "Lvm-thin-Luks-swaptrue", "Single-Luks-swapfalse"] {
        fresh_journal();
        let plan = presets().into_iter().find(|(n, _)| n == layout).map(|(_, p)| p).expect("layout");
        assert!(plan.needs_passphrase(), "{layout}");
        let system = machine();
        let error = apply_without_passphrase(&system, &plan).expect_err("refused");
        assert!(matches!(error, InstallError::NoPassphrase), "{layout}: {error}");
        assert_eq!(system.changes(), 0, "{layout}: something was written");
    }
}

/// A plan whose steps run a program this machine lacks is refused before anything is written, naming the
/// program and its packages: the root in LUKS on a RAID 1 with no mdadm, an LVM layout with no lvcreate.
#[test]
fn a_plan_whose_programs_are_missing_is_refused_before_anything_is_written() {
    for (layout, program, package) in
        [("Mdadm-Luks-swaptrue", "mdadm", "Debian mdadm"), ("Lvm-thin-Luks-swaptrue", "lvcreate", "Debian lvm2")]
    {
        fresh_journal();
        let plan = presets().into_iter().find(|(n, _)| n == layout).map(|(_, p)| p).expect("layout");
        let system = machine();
        system.remove_program(program);
        let error = apply(&system, &plan, Mode::Apply).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains(&format!("{program} (")) && message.contains(package), "{layout}: {message}");
        assert_eq!(system.changes(), 0, "{layout}: something was written");
        assert!(system.commands().is_empty(), "{layout}: programs ran: {:?}", system.commands());
    }
}

#[test]
fn teardown_then_mount_brings_everything_back_without_writing() {
    for (name, plan) in presets() {
        fresh_journal();
        let system = machine();
        apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mounted = system.mounts();
        installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");
        assert!(system.mounts().is_empty(), "{name}: still mounted after teardown");

        let before = system.commands().len();
        let reads_before = system.whole_reads().len();
        let report = apply(&system, &plan, Mode::Mount).unwrap_or_else(|e| panic!("{name}: mount: {e}"));
        assert!(report.applied > 0, "{name}");
        // The same mounts; siblings (/boot and /tmp under /) may come in another order, as mount checks
        // what apply made while apply makes it.
        let by_target = |mut mounts: Vec<_>| {
            mounts.sort_by(|a: &installer::system::MountEntry, b| a.target.cmp(&b.target));
            mounts
        };
        assert_eq!(
            by_target(system.mounts()),
            by_target(mounted.clone()),
            "{name}: mount gives other mounts than apply"
        );
        let order = system.mounts();
        for (index, entry) in order.iter().enumerate() {
            let parent = order
                .iter()
                .position(|p| p.target != entry.target && entry.target.starts_with(&format!("{}/", p.target)));
            assert!(parent.is_none_or(|p| p < index), "{name}: {} mounted before its parent: {order:?}", entry.target);
        }
        let creating = ["mkfs.", "mkswap", "create", "nixos-install"];
        let wrote: Vec<_> = system.commands()[before..]
            .iter()
            .filter(|c| creating.iter().any(|w| c.program.starts_with(w) || c.args.first().is_some_and(|a| a == w)))
            .map(ToString::to_string)
            .collect();
        assert!(wrote.is_empty(), "{name}: mount ran {wrote:?}");
        // What the preview found done is not probed again before anything changed: one check each.
        let checks: Vec<String> = system.commands()[before..]
            .iter()
            .filter(|c| {
                ["e2fsck", "btrfs check", "fsck.f2fs", "fsck.exfat"].iter().any(|p| c.to_string().starts_with(p))
            })
            .map(ToString::to_string)
            .chain(system.whole_reads()[reads_before..].iter().map(|device| format!("read {device} whole")))
            .collect();
        let unique: std::collections::BTreeSet<&String> = checks.iter().collect();
        assert_eq!(checks.len(), unique.len(), "{name}: a filesystem checked twice by mount: {checks:?}");
        assert!(!checks.is_empty() || !name.starts_with("Ext4"), "{name}: mount checked no filesystem");
        // A pool's datasets are read with a recursive listing (before and after the key is loaded), not
        // with one program per dataset, and not at all while the pool is not imported.
        let runs = |program: &str, first: &str| -> Vec<String> {
            system.commands()[before..]
                .iter()
                .filter(|c| c.program == program && c.args.first().is_some_and(|a| a == first))
                .map(ToString::to_string)
                .collect()
        };
        let listings = runs("zfs", "get");
        assert!(listings.iter().all(|l| l.contains(" -r ")), "{name}: a dataset read on its own: {listings:?}");
        assert!(listings.len() <= 2 * plan.pools.len(), "{name}: datasets read {} times: {listings:?}", listings.len());
        // LVM's report is read once before and once after the LUKS container under it is opened, not once
        // per logical volume.
        let volumes = runs("lvs", "--reportformat");
        assert!(volumes.len() <= 2, "{name}: logical volumes listed {} times: {volumes:?}", volumes.len());
    }
}

#[test]
fn a_power_cut_at_every_change_is_resumed_to_the_same_result() {
    let (mut tried, mut layouts) = (0, 0);
    for (name, plan) in presets().into_iter().filter(|(n, _)| n.ends_with("swaptrue") || n.starts_with("Mirror")) {
        layouts += 1;
        fresh_journal();
        let reference = machine();
        apply(&reference, &plan, Mode::Apply).expect("uninterrupted apply");
        let total = reference.changes();
        for cut in 0..total {
            fresh_journal();
            let system = machine();
            system.cut_power_after(cut);
            let interrupted = apply(&system, &plan, Mode::Apply);
            assert!(interrupted.is_err(), "{name}: the run went through a cut after {cut} changes");
            system.reboot();
            apply(&system, &plan, Mode::Apply)
                .unwrap_or_else(|e| panic!("{name}: resume after {cut} of {total} changes: {e}"));
            let options = options(Mode::Apply);
            let preview = installer::preview(&system, &plan, &steps(&plan), &options).expect("preview");
            let todo: Vec<&str> = preview
                .steps
                .iter()
                .filter(|(_, o)| !matches!(o, Outlook::Done(_)))
                .map(|(s, _)| s.id.as_str())
                .collect();
            assert!(todo.is_empty(), "{name}: not a no-op after resuming from cut {cut}: {todo:?}");
            assert_eq!(system.mounts(), reference.mounts(), "{name}: cut {cut} ends with other mounts");
            tried += 1;
        }
    }
    println!("power cuts tried: {tried} in {layouts} layouts");
    assert!(tried > 100, "only {tried} cut points");
}

#[test]
fn refusals_change_nothing() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Mirror-Luks-swaptrue").expect("preset");
    fresh_journal();
    let system = machine();
    let all = steps(&plan);

    // Not confirmed.
    let preview = installer::preview(&system, &plan, &all, &options(Mode::Apply)).expect("preview");
    assert_eq!(preview.wipes.len(), 2);
    let refused = installer::execute(
        &system,
        &plan,
        &preview,
        &["disk0".into()],
        &secrets(),
        &options(Mode::Apply),
        &|_: Event| {},
    );
    assert!(matches!(refused, Err(InstallError::NotConfirmed(ref d)) if d.len() == 1), "{refused:?}");

    // Another disk behind the planned path.
    let mut other = plan.clone();
    other.disks[1].identity.serial = Some("someone-else".into());
    let refused = installer::preview(&system, &other, &steps(&other), &options(Mode::Apply));
    assert!(refused.is_err_and(|e| e.to_string().contains("someone-else")));

    // Mount mode on disks that were never applied.
    let refused = apply(&system, &plan, Mode::Mount);
    assert!(refused.is_err_and(|e| e.to_string().contains("has not been applied")));

    // No passphrase for an encrypted layout: refused before anything is written, and nothing is made on
    // what would have been inside the container.
    let changes = system.changes();
    let error = apply_without_passphrase(&system, &plan).expect_err("ran without a passphrase").to_string();
    assert!(error.contains("passphrase") && error.contains("nothing was written"), "{error}");
    assert_eq!(system.changes(), changes, "written without a passphrase");
    let inside: Vec<String> = system
        .commands()
        .iter()
        .filter(|c| {
            c.args.iter().any(|a| a.starts_with("/dev/mapper/")) || c.args.first().is_some_and(|a| a == "create")
        })
        .map(ToString::to_string)
        .collect();
    assert!(inside.is_empty(), "{inside:?}");
}

#[test]
fn steps_on_different_disks_run_side_by_side() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Mirror-None-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    let started = std::sync::Mutex::new(Vec::new());
    let options = options(Mode::Apply);
    let preview = installer::preview(&system, &plan, &steps(&plan), &options).expect("preview");
    let emit = |event: Event| {
        if let Event::StepStarted { id, .. } = event {
            started.lock().expect("lock").push(id);
        }
    };
    installer::execute(&system, &plan, &preview, &confirm_all(&plan), &secrets(), &options, &emit).expect("apply");
    let started = started.into_inner().expect("lock");
    let position = |id: &str| started.iter().position(|s| s == id).unwrap_or_else(|| panic!("{id} never started"));
    // Both wipes before either partition table: the scheduler ran them as one batch.
    assert!(position("wipe:disk1") < position("gpt:disk0"), "{started:?}");
    assert!(matches!(steps(&plan).steps[0].operation, Operation::Wipe(_)));
}

#[test]
fn a_probe_that_fails_stops_the_run_instead_of_reading_as_blank() {
    for (name, plan) in presets() {
        fresh_journal();
        let system = machine();
        apply(&system, &plan, Mode::Apply).unwrap_or_else(|e| panic!("{name}: {e}"));
        installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");
        let changes = system.changes();
        // The first partition of the first disk that holds something (not the BIOS boot partition) now
        // gives I/O errors: the run must not redo it (or anything).
        let first_disk = plan.disks.values().next().expect("a disk");
        let number = 1 + first_disk.partitions.values().position(|p| p.content.is_some()).expect("content");
        system.make_unreadable(&format!("/dev/vda{number}"));
        let error = apply(&system, &plan, Mode::Apply).expect_err("a failing probe went unnoticed");
        assert!(error.to_string().contains(&format!("/dev/disk/by-id/virtio-disk0-part{number}")), "{name}: {error}");
        assert_eq!(system.changes(), changes, "{name}: something was written after a failed probe");

        let disk = machine();
        disk.make_unreadable("/dev/vda");
        let error = apply(&disk, &plan, Mode::Apply).expect_err("an unreadable table went unnoticed");
        assert!(error.to_string().contains("cannot read the partition table"), "{name}: {error}");
        assert_eq!(disk.changes(), 0, "{name}");
    }
}

#[test]
fn a_second_run_on_the_same_disk_is_refused_naming_the_first() {
    let (name, plan) = presets().into_iter().find(|(n, _)| n == "Mirror-None-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    let disks = installer::System::discover(&system).expect("disks");
    let held = installer::System::lock_disk(&system, &disks[1]).expect("the first run holds vdb");
    let error = apply(&system, &plan, Mode::Apply).expect_err("a second run went ahead");
    assert!(matches!(error, InstallError::Busy(_)), "{name}: {error}");
    assert!(error.to_string().contains(&format!("PID {}", std::process::id())), "{error}");
    assert_eq!(system.changes(), 0, "the second run wrote");
    drop(held);
    apply(&system, &plan, Mode::Apply).expect("once the first run is over");
}

#[test]
fn an_unwritable_state_directory_stops_the_run_before_the_first_step() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Single-None-swapfalse").expect("preset");
    let system = machine();
    let mut options = options(Mode::Apply);
    // A directory that cannot exist: its parent is a file.
    options.journal_dir = std::path::PathBuf::from("/dev/null/nix-dabei");
    // Refused by the preview (the journal cannot be read) or, at the latest, before the first step.
    let result = installer::preview(&system, &plan, &steps(&plan), &options).and_then(|preview| {
        installer::execute(&system, &plan, &preview, &confirm_all(&plan), &secrets(), &options, &|_: Event| {})
    });
    let error = result.expect_err("ran without a journal");
    assert!(matches!(error, InstallError::Journal(_) | InstallError::Busy(_)), "{error}");
    assert_eq!(system.changes(), 0, "a step ran before the journal was known to work");
}

#[test]
fn preview_creates_no_state_directory() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Single-None-swapfalse").expect("preset");
    let system = machine();
    let mut options = options(Mode::Apply);
    options.journal_dir = std::env::temp_dir().join(format!("nix-dabei-preview-{}", std::process::id()));
    installer::preview(&system, &plan, &steps(&plan), &options).expect("preview");
    assert!(!options.journal_dir.exists(), "preview created {}", options.journal_dir.display());
}

#[test]
fn mount_never_creates_what_is_missing() {
    let (_, mut plan) = presets().into_iter().find(|(n, _)| n == "Single-ZfsNative-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    apply(&system, &plan, Mode::Apply).expect("apply");
    installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");
    // The plan now has a dataset the disks do not: mounting must refuse, not make it.
    let pool = plan.pools.values_mut().next().expect("a pool");
    pool.datasets.insert("extra".into(), layouts::Dataset { mountpoint: Some("/extra".into()), ..Default::default() });
    let before = system.commands().len();
    let error = apply(&system, &plan, Mode::Mount).expect_err("mount made a dataset");
    assert!(error.to_string().contains("has not been applied"), "{error}");
    let created: Vec<String> = system.commands()[before..]
        .iter()
        .filter(|c| c.args.first().is_some_and(|a| a == "create"))
        .map(ToString::to_string)
        .collect();
    assert!(created.is_empty(), "{created:?}");
}

#[test]
fn a_pool_of_the_same_name_on_other_disks_is_never_taken_for_the_plans() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Mirror-ZfsNative-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    system.add_foreign_pool("rpool", "/dev/vdc", true);
    let error = apply(&system, &plan, Mode::Apply).expect_err("the foreign pool was taken for the plan's");
    assert!(error.to_string().contains("a pool named rpool is imported from /dev/vdc"), "{error}");
    assert_eq!(system.changes(), 0);
    // Unmounting the plan leaves the foreign pool alone.
    let report =
        installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");
    assert_eq!(report.applied, 0, "{report:?}");
    assert!(system.commands().iter().all(|c| c.args.first().is_none_or(|a| a != "export")), "{:?}", system.commands());
}

#[test]
fn a_half_made_filesystem_of_the_plan_is_made_again_and_a_foreign_one_refused() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Ext4-None-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    apply(&system, &plan, Mode::Apply).expect("apply");
    installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");
    // mkfs was cut short on the root partition: the signature is there, the filesystem is not whole.
    system.damage_filesystem("/dev/vda2");
    let before = system.commands().len();
    apply(&system, &plan, Mode::Apply).expect("resume");
    let remade: Vec<String> = system.commands()[before..]
        .iter()
        .filter(|c| c.program.starts_with("mkfs."))
        .map(ToString::to_string)
        .collect();
    assert_eq!(remade.len(), 1, "{remade:?}");
    assert!(remade[0].ends_with("/dev/disk/by-id/virtio-disk0-part2"), "{remade:?}");
    installer::teardown(&system, &plan, &steps(&plan), &options(Mode::Mount), &|_: Event| {}).expect("teardown");

    // Someone else's ext4 in the same place (another UUID) is not taken for the plan's, nor made over.
    let line = layouts::CommandLine::new("mkfs.ext4", ["-F", "-q", "/dev/vda2"]);
    installer::System::run(&system, &line, None).expect("a foreign mkfs");
    let error = apply(&system, &plan, Mode::Apply).expect_err("the foreign ext4 passed for the plan's");
    assert!(error.to_string().contains("is not this plan's"), "{error}");
}

#[test]
fn the_journal_keeps_the_pool_guid_and_another_pool_of_the_name_is_refused() {
    let (_, plan) = presets().into_iter().find(|(n, _)| n == "Single-None-swapfalse").expect("preset");
    fresh_journal();
    let system = machine();
    apply(&system, &plan, Mode::Apply).expect("apply");
    let journal = std::fs::read_to_string(options(Mode::Apply).journal_dir.join("journal.json")).expect("journal");
    assert!(journal.contains("\"pools\"") && journal.contains("\"rpool\""), "{journal}");
    // The same devices now hold another pool of the same name.
    system.remake_pool("rpool");
    let error = apply(&system, &plan, Mode::Apply).expect_err("another pool passed for the plan's");
    assert!(error.to_string().contains("is not the one this plan made"), "{error}");
}

#[test]
fn pools_carry_the_installed_systems_host_id_and_import_unforced_after_a_power_loss() {
    let (_, plan) = presets().into_iter().find(|(name, _)| name == "Mirror-None-swapfalse").expect("preset");
    let expected = u32::from_str_radix(&plan.effective_host_id(), 16).expect("hex");
    fresh_journal();
    let system = machine();
    apply(&system, &plan, Mode::Apply).expect("apply");
    assert_eq!(system.pool_host_id("rpool"), Some(expected), "the pool is the installed system's");

    // The power goes off without an export; the RAM system comes back with another (no) host id.
    system.reboot();
    let before = system.commands().len();
    apply(&system, &plan, Mode::Apply).expect("resumed");
    let imports: Vec<_> = system.commands()[before..]
        .iter()
        .filter(|c| c.program == "zpool" && c.args.first().is_some_and(|a| a == "import"))
        .cloned()
        .collect();
    assert!(!imports.is_empty(), "the pool was imported again");
    assert!(imports.iter().all(|c| !c.args.iter().any(|a| a == "-f")), "{imports:?}");

    // Another pool imported on this system would be stamped with the new id: refused, naming it.
    fresh_journal();
    let other = machine();
    other.add_foreign_pool("tank", "/dev/vdc", true);
    let error = apply(&other, &plan, Mode::Apply).expect_err("a foreign imported pool");
    assert!(error.to_string().contains("tank") && error.to_string().contains("host_id"), "{error}");
    assert_eq!(other.pool_host_id("rpool"), None, "no pool was created");
}

#[test]
fn additional_key_files_become_key_slots_and_a_header_without_them_is_made_again() {
    use installer::System;
    let (_, mut plan) = presets().into_iter().find(|(n, _)| n == "Ext4-Luks-swapfalse").expect("preset");
    let key_file = std::env::temp_dir().join(format!("nix-dabei-extra-key-{}", std::process::id()));
    std::fs::write(&key_file, "a second key").expect("key file");
    let device = "/dev/disk/by-id/virtio-disk0-part2";
    for part in plan.disks.values_mut().flat_map(|d| d.partitions.values_mut()) {
        if let Some(layouts::Content::Luks(luks)) = &mut part.content {
            luks.additional_key_files = vec![key_file.to_string_lossy().into_owned()];
        }
    }
    fresh_journal();
    let system = machine();
    apply(&system, &plan, Mode::Apply).expect("apply");
    let header = system.luks_header(device).expect("header").expect("a LUKS header");
    assert_eq!(header.key_slots, 2, "the key and the additional key file");

    // A header with its key but without the additional one was cut short: it is formatted again.
    system.reboot();
    let steps = steps(&plan);
    let format = steps.steps.iter().find(|s| s.id.starts_with("luks-format:")).expect("a format step");
    let Operation::LuksFormat(op) = &format.operation else { panic!("not a format step") };
    let mut short = op.clone();
    short.additional_key_files.clear();
    system.luks_format(&short, &Secret::new(b"correct horse".to_vec()), &[], false).expect("a short header");
    let preview = installer::preview(&system, &plan, &steps, &options(Mode::Apply)).expect("preview");
    let outlook = preview.steps.iter().find(|(s, _)| s.id == format.id).map(|(_, o)| o.clone());
    assert_eq!(outlook, Some(Outlook::Todo { destroys: true }), "{outlook:?}");

    // An empty key file (or a device node, which reads as empty) would open the container with no key.
    std::fs::write(&key_file, "").expect("empty key file");
    fresh_journal();
    let system = machine();
    let error = apply(&system, &plan, Mode::Apply).expect_err("refused").to_string();
    assert!(error.contains("is empty: it would open with no key"), "{error}");
    assert!(system.luks_header(device).expect("header").is_none(), "a header was written with an empty key");
    let _ = std::fs::remove_file(&key_file);
}

#[test]
fn bcachefs_is_refused_before_anything_is_written_on_a_kernel_without_it() {
    use installer::System;
    let plan = Plan::from_toml(include_str!("../../layouts/example-plans/bcachefs-two-disks.toml")).expect("plan");
    let system = machine();
    system.write_file("/proc/filesystems", "nodev\tsysfs\n\text4\n\tvfat\n").expect("proc");
    system.write_file("/proc/sys/kernel/osrelease", "6.1.0-26-amd64\n").expect("proc");
    let changes = system.changes();
    fresh_journal();
    let error = apply(&system, &plan, Mode::Apply).expect_err("refused");
    let text = error.to_string();
    assert!(matches!(error, InstallError::Conflicts(_)), "{text}");
    assert!(text.contains("bcachefs:main: the running kernel, Linux 6.1.0-26-amd64, has no bcachefs"), "{text}");
    assert_eq!(system.changes(), changes, "something was written");
    assert!(system.commands().is_empty(), "{:?}", system.commands());
}

/// Changing a layout in place, the part that needs nothing destroyed: a dataset added to an installed
/// plan is the only step to do (with its mount, and the NixOS module that now names it), and applying
/// creates it and leaves the rest alone.
#[test]
fn a_dataset_added_to_an_installed_plan_is_the_only_change() {
    fresh_journal();
    let system = machine();
    let mut preset = PresetOptions::new(PresetKind::Single, vec![facts("virtio-disk0", "disk0")]);
    preset.encryption = Encryption::ZfsNative;
    let plan = build(&preset).expect("preset");
    apply(&system, &plan, Mode::Apply).expect("install");

    let mut grown = plan.clone();
    let mut srv = grown.pools["rpool"].datasets["home"].clone();
    srv.mountpoint = Some("/srv".into());
    grown.pools.get_mut("rpool").expect("pool").datasets.insert("srv".into(), srv);
    grown.validate().expect("valid");
    let preview = installer::preview(&system, &grown, &steps(&grown), &options(Mode::Apply)).expect("preview");
    let todo: Vec<&str> = preview
        .steps
        .iter()
        .filter(|(_, outlook)| !matches!(outlook, Outlook::Done(_)))
        .map(|(step, _)| step.id.as_str())
        .collect();
    assert_eq!(todo, ["zfs-create:rpool/srv", "mount:/srv", "nixos-module"], "only the new dataset");
    assert!(preview.wipes.is_empty(), "nothing to confirm");
    let changes = system.changes();
    let report = apply(&system, &grown, Mode::Apply).expect("the change");
    assert_eq!(report.applied, 3, "{report:?}");
    assert!(system.changes() > changes);
    assert!(system.commands().iter().any(|c| c.args.last().map(String::as_str) == Some("rpool/srv")));
    assert_eq!(apply(&system, &grown, Mode::Apply).expect("again").applied, 0, "and then nothing");
}

/// The second disk of a mirror, as a person adds it to a single-disk plan (the mirror preset's shape).
const SECOND_DISK: &str = r#"
[disks.second]
device = "/dev/disk/by-id/virtio-disk1"
size = 21474836480

[disks.second.partitions.esp]
size = "1G"
type = "esp"

[disks.second.partitions.esp.content.filesystem]
format = "vfat"
mountpoint = "/boot-1"
mount_options = ["umask=0077"]

[disks.second.partitions.zfs]
size = "rest"
type = "zfs"

[disks.second.partitions.zfs.content.zfs]
pool = "rpool"
"#;

/// Changing a layout in place: a single-disk pool made a mirror with a second disk. After a reboot (the
/// pool exported), the first disk is left alone, the second is wiped (confirmed), the pool's step is a
/// change (`zpool attach`, shown), and applying imports the pool and attaches the new partition to it.
#[test]
fn a_single_disk_pool_becomes_a_mirror_by_attaching_the_second_disk() {
    fresh_journal();
    let system = machine();
    let mut preset = PresetOptions::new(PresetKind::Single, vec![facts("virtio-disk0", "disk0")]);
    preset.encryption = Encryption::ZfsNative;
    let single = build(&preset).expect("preset");
    apply(&system, &single, Mode::Apply).expect("install");
    system.reboot();

    let text = single.to_toml().replace("mode = \"stripe\"", "mode = \"mirror\"") + SECOND_DISK;
    let mirror = Plan::from_toml(&text).expect("the mirror plan");
    let preview = installer::preview(&system, &mirror, &steps(&mirror), &options(Mode::Apply)).expect("preview");
    let outlook = |id: &str| preview.steps.iter().find(|(s, _)| s.id == id).map(|(_, o)| o.clone()).expect(id);
    match outlook("zpool-create:rpool") {
        Outlook::Change(what) => assert!(
            what.contains(concat!(
                "zpool attach -f -o ashift=12 rpool /dev/disk/by-id/virtio-disk0-part2 ",
                "/dev/disk/by-id/virtio-disk1-part2"
            )),
            "{what}"
        ),
        other => panic!("the pool should grow in place: {other:?}"),
    }
    let wiped: Vec<&str> = preview.wipes.iter().map(|w| w.disk.as_str()).collect();
    assert_eq!(wiped, ["second"], "only the new disk is wiped");
    for (step, outlook) in &preview.steps {
        if step.id.contains(":main") {
            assert!(!matches!(outlook, Outlook::Todo { destroys: true }), "{} destroys on the kept disk", step.id);
        }
    }
    apply(&system, &mirror, Mode::Apply).expect("the change");
    let attached = system.commands().iter().filter(|c| c.program == "zpool" && c.args[0] == "attach").count();
    assert_eq!(attached, 1);
    assert!(
        !system.commands().iter().any(|c| c.program == "zpool" && c.args[0] == "create" && c.args.len() > 1 && {
            c.args.contains(&"/dev/disk/by-id/virtio-disk1-part2".to_string())
        }),
        "the pool was made again"
    );
    assert_eq!(apply(&system, &mirror, Mode::Apply).expect("again").applied, 0, "and then nothing");
}

/// A device that would join a vdev that cannot take it in place is refused before anything is written.
#[test]
fn a_pool_that_cannot_grow_in_place_is_refused() {
    fresh_journal();
    let system = machine();
    let single = build(&PresetOptions::new(PresetKind::Single, vec![facts("virtio-disk0", "disk0")])).expect("preset");
    apply(&system, &single, Mode::Apply).expect("install");
    system.reboot();
    let text = single.to_toml() + SECOND_DISK;
    let striped = Plan::from_toml(&text).expect("two striped disks");
    let changes = system.changes();
    let error = apply(&system, &striped, Mode::Apply).expect_err("a stripe does not grow in place").to_string();
    assert!(error.contains("zpool-create:rpool") && error.contains("only mirrors"), "{error}");
    assert_eq!(system.changes(), changes, "nothing was written");
}

/// A pool of the same name on disks the plan wipes is no pool to grow: the new plan makes its own.
#[test]
fn an_old_pool_on_disks_the_plan_wipes_is_made_anew_not_grown() {
    fresh_journal();
    let system = machine();
    let single = build(&PresetOptions::new(PresetKind::Single, vec![facts("virtio-disk0", "disk0")])).expect("preset");
    apply(&system, &single, Mode::Apply).expect("install");
    system.reboot();
    let disks = vec![facts("virtio-disk0", "disk0"), facts("virtio-disk1", "disk1")];
    let mirror = build(&PresetOptions::new(PresetKind::Mirror, disks)).expect("preset");
    let preview = installer::preview(&system, &mirror, &steps(&mirror), &options(Mode::Apply)).expect("preview");
    let pool = preview.steps.iter().find(|(s, _)| s.id == "zpool-create:rpool").map(|(_, o)| o.clone());
    assert_eq!(pool, Some(Outlook::Todo { destroys: true }), "the old pool's disk is wiped first");
    apply(&system, &mirror, Mode::Apply).expect("the new install");
    assert!(!system.commands().iter().any(|c| c.program == "zpool" && c.args[0] == "attach"));
}

/// Changing a layout in place: a dataset's properties changed in the plan of an installed pool are set
/// (`zfs set`, shown in the review as a change); a property fixed at creation is refused, nothing written.
#[test]
fn changed_dataset_properties_are_set_in_place() {
    fresh_journal();
    let system = machine();
    let single = build(&PresetOptions::new(PresetKind::Single, vec![facts("virtio-disk0", "disk0")])).expect("preset");
    apply(&system, &single, Mode::Apply).expect("install");

    let mut changed = single.clone();
    let home = changed.pools.get_mut("rpool").and_then(|p| p.datasets.get_mut("home")).expect("home");
    home.properties.insert("compression".into(), "lz4".into());
    let nix = changed.pools.get_mut("rpool").and_then(|p| p.datasets.get_mut("nix")).expect("nix");
    nix.properties.insert("atime".into(), "on".into());
    let preview = installer::preview(&system, &changed, &steps(&changed), &options(Mode::Apply)).expect("preview");
    let changes: Vec<(&str, String)> = preview
        .steps
        .iter()
        .filter_map(|(step, outlook)| match outlook {
            Outlook::Change(what) => Some((step.id.as_str(), what.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("zfs-create:rpool/nix", "`zfs set atime=on rpool/nix`".to_string()),
            ("zfs-create:rpool/home", "`zfs set compression=lz4 rpool/home`".to_string()),
        ]
    );
    apply(&system, &changed, Mode::Apply).expect("the change");
    let set: Vec<String> =
        system.commands().iter().filter(|c| c.program == "zfs" && c.args[0] == "set").map(|c| c.to_string()).collect();
    assert_eq!(set, ["zfs set atime=on rpool/nix", "zfs set compression=lz4 rpool/home"]);
    assert_eq!(apply(&system, &changed, Mode::Apply).expect("again").applied, 0, "and then nothing");

    let mut fixed = changed.clone();
    let home = fixed.pools.get_mut("rpool").and_then(|p| p.datasets.get_mut("home")).expect("home");
    home.properties.insert("casesensitivity".into(), "insensitive".into());
    let before = system.changes();
    let shown = layouts::CommandLine::new("zfs", ["set", "casesensitivity=sensitive", "rpool/home"]);
    installer::System::run(&system, &shown, None).expect("as ZFS shows it");
    let error = apply(&system, &fixed, Mode::Apply).expect_err("fixed at creation").to_string();
    assert!(error.contains("casesensitivity") && error.contains("not done in place"), "{error}");
    assert_eq!(system.changes(), before + 1, "nothing was written but the test's own setting");
}

/// Keeping a LUKS container: in a new plan that names things differently (so nothing derived matches),
/// the partition holding LUKS and its filesystem, kept by their identities (partition, header and
/// filesystem UUIDs), is found done and only opened, never formatted; a header UUID that is not the one
/// on the disk refuses the run before anything is written, naming the kept partition.
#[test]
fn a_kept_luks_container_is_opened_not_formatted() {
    fresh_journal();
    let system = machine();
    let mut preset = PresetOptions::new(PresetKind::Ext4, vec![facts("virtio-disk0", "disk0")]);
    preset.encryption = Encryption::Luks;
    let installed = build(&preset).expect("preset");
    apply(&system, &installed, Mode::Apply).expect("install");
    system.reboot();

    // The identities as the installed plan made them (what reading the disk back gives).
    let made = steps(&installed);
    let table = made.steps.iter().find_map(|s| match &s.operation {
        Operation::PartitionTable(t) => Some(t.clone()),
        _ => None,
    });
    let table = table.expect("the table");
    let header = made.steps.iter().find_map(|s| match &s.operation {
        Operation::LuksFormat(f) => Some(f.uuid.clone()),
        _ => None,
    });
    let inner = made.steps.iter().find_map(|s| match &s.operation {
        Operation::Mkfs(m) if m.device.starts_with("/dev/mapper/") => Some(m.uuid.clone()),
        _ => None,
    });
    let mut kept = installed.clone();
    let disk = kept.disks.get_mut("main").expect("the disk");
    let (index, name) = disk
        .partitions
        .iter()
        .enumerate()
        .find(|(_, (_, p))| matches!(p.content, Some(layouts::Content::Luks(_))))
        .map(|(i, (n, _))| (i, n.clone()))
        .expect("the LUKS partition");
    let mut partition = disk.partitions.shift_remove(&name).expect("it");
    let entry = &table.partitions[index];
    partition.keep = true;
    partition.number = Some(entry.number);
    partition.start = Some(layouts::Size::Bytes(entry.extent.first_lba * 512));
    partition.size = layouts::Size::Bytes(entry.extent.sectors() * 512);
    partition.uuid = Some(entry.uuid.clone());
    partition.label = Some(entry.name.clone());
    let Some(layouts::Content::Luks(luks)) = partition.content.as_mut() else { unreachable!() };
    luks.name = "cryptroot".into();
    luks.uuid = header.clone();
    let layouts::Content::Filesystem(fs) = luks.content.as_mut() else { panic!("a filesystem inside") };
    fs.uuid = inner;
    disk.partitions.insert("system".into(), partition);
    kept.validate().unwrap_or_else(|e| panic!("{e}\n{}", kept.to_toml()));

    let preview = installer::preview(&system, &kept, &steps(&kept), &options(Mode::Apply)).expect("preview");
    let outlook = |id: &str| preview.steps.iter().find(|(s, _)| s.id == id).map(|(_, o)| o.clone()).expect(id);
    for id in ["wipe:main", "gpt:main", "luks-format:main/system"] {
        assert!(matches!(outlook(id), Outlook::Done(_)), "{id}: {:?}", outlook(id));
    }
    // What the container holds is read once it is open, during the run, before anything could be destroyed.
    for id in ["luks-open:main/system", "mkfs:main/system"] {
        assert_eq!(outlook(id), Outlook::Todo { destroys: false }, "{id}");
    }
    assert!(preview.wipes.is_empty(), "nothing to wipe");
    let made = system.commands().len();
    apply(&system, &kept, Mode::Apply).expect("opened and mounted");
    let ran: Vec<String> = system.commands()[made..].iter().map(|c| c.to_string()).collect();
    assert!(!ran.iter().any(|c| c.starts_with("mkfs")), "{ran:?}");
    assert!(ran.iter().any(|c| c.contains("/dev/mapper/cryptroot")), "mounted from the kept container: {ran:?}");

    system.reboot();
    let mut other = kept.clone();
    let disk = other.disks.get_mut("main").expect("the disk");
    let Some(layouts::Content::Luks(luks)) = disk.partitions["system"].content.as_mut() else { unreachable!() };
    luks.uuid = Some("0b7e2f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b".into());
    let changes = system.changes();
    let error = apply(&system, &other, Mode::Apply).expect_err("another header").to_string();
    assert!(error.contains("main/system keeps") && error.contains("nothing was written"), "{error}");
    assert_eq!(system.changes(), changes, "nothing was written");
}
