//! The RAM OS and the flake, evaluated with nixpkgs' lib (tests/nix/ram-os.nix; nixpkgs' own modules and
//! packages are stand-ins, as they are not available offline): what this repository's Nix code decides.
//! Booting the RAM OS needs a machine with Nix (README: "What is verified how").
//!
//! Needs nix-instantiate and ../shared/nix-sources/nixpkgs-lib.tar.gz beside the checkout.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The facts, evaluated once (the tests run in parallel).
fn evaluate() -> &'static Value {
    static FACTS: OnceLock<Value> = OnceLock::new();
    FACTS.get_or_init(evaluate_now)
}

fn evaluate_now() -> Value {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = repo
        .canonicalize()
        .expect("repo")
        .ancestors()
        .map(|dir| dir.join("shared/nix-sources/nixpkgs-lib.tar.gz"))
        .find(|file| file.is_file())
        .expect("shared/nix-sources/nixpkgs-lib.tar.gz beside the repository");
    let dir = std::env::temp_dir().join(format!("nix-dabei-ram-os-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unpacked = Command::new("tar").arg("-xzf").arg(&shared).arg("-C").arg(&dir).status().expect("tar");
    assert!(unpacked.success(), "cannot unpack nixpkgs' lib");
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo.join("nix-dabei/tests/nix/ram-os.nix"))
        .arg("--arg")
        .arg("libPath")
        .arg(dir.join("nixpkgs-lib/lib"))
        .arg("--arg")
        .arg("repo")
        .arg(repo.canonicalize().expect("repo"))
        .output()
        .expect("nix-instantiate (scripts/setup installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().expect("list").iter().map(|v| v.as_str().expect("string")).collect()
}

#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_ram_os_boots_into_a_normal_stage_2_and_restores_before_network_and_sshd() {
    let facts = evaluate();
    // init= names the closure: initrd-find-nixos-closure needs it, and stage 1 then switches root.
    let command_line = facts["commandLine"].as_str().expect("command line");
    assert!(command_line.starts_with("init=/nix/store/") && command_line.contains("-nixos-system-nix-dabei/init "));
    assert_eq!(facts["initrdSystemd"], true);
    assert!(
        !strings(&facts["initrdServices"]).iter().any(|s| s.starts_with("initrd-switch-root")),
        "stage 1 is left as nixpkgs has it: it switches root"
    );
    // No sshd in the initrd (its assertions refuse an empty key list); stage 2 runs the real one.
    assert_eq!(facts["initrdNetwork"], serde_json::json!({}));
    assert_eq!(facts["openssh"]["enable"], true);
    let host_keys: Vec<&str> =
        facts["openssh"]["hostKeys"].as_array().expect("keys").iter().filter_map(|k| k["path"].as_str()).collect();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        assert!(host_keys.contains(&format!("/etc/ssh/ssh_host_{kind}_key").as_str()), "carried {kind} key is used");
    }
    assert_eq!(strings(&facts["rootKeys"]), ["ssh-ed25519 AAAA netboot"]);
    // The handover moves into the real root in stage 1, machine id included.
    let handover = &facts["handover"];
    assert!(strings(&handover["before"]).contains(&"initrd-nixos-activation.service"));
    assert_eq!(handover["unitConfig"]["RequiresMountsFor"], "/sysroot");
    let script = handover["script"].as_str().expect("script");
    assert!(script.contains("cp -a /etc/nix-dabei/kexec /sysroot/etc/nix-dabei/"), "{script}");
    assert!(script.contains("/sysroot/etc/machine-id"), "{script}");
    // Stage 2: keys, host keys, DNS and networkd units are in place before their readers start.
    let restore = &facts["restore"];
    for unit in ["systemd-networkd.service", "systemd-resolved.service", "sshd.service", "network-pre.target"] {
        assert!(strings(&restore["before"]).contains(&unit), "restore runs before {unit}: {restore}");
    }
    assert!(restore["serviceConfig"]["ExecStart"]
        .as_str()
        .expect("exec")
        .ends_with("-nix-dabei-from-the-flake-x86_64-linux/bin/nix-dabei restore-network /etc/nix-dabei/kexec"));
    // `nix-dabei remote` looks for it to know that no kexec is needed.
    assert!(facts["ramOsMarker"].as_str().is_some_and(|t| !t.is_empty()), "{}", facts["ramOsMarker"]);
    assert_eq!((facts["networkd"].clone(), facts["resolved"].clone()), (Value::Bool(true), Value::Bool(true)));
    assert_eq!(strings(&facts["nixSettings"]["experimental-features"]), ["nix-command", "flakes"]);
    let packages = strings(&facts["ramOsPackages"]);
    for program in ["nixos-install", "zfs-for-the-kernel", "cryptsetup", "util-linux", "gitMinimal"] {
        assert!(packages.contains(&program), "{program} is on the RAM OS's PATH: {packages:?}");
    }
    assert!(strings(&facts["tui"]["conflicts"]).contains(&"getty@tty1.service"));
    // Services get a bare PATH: both find the system's programs.
    for service in [&facts["tui"], restore] {
        assert!(service["path"][0].as_str().is_some_and(|p| p.ends_with("-system-path")), "{service}");
    }
}

/// The RAM OS is built on netboot.nix and profiles/minimal.nix alone, with networkd and resolved as its
/// network stack, zram swap, a console in stage 1, activation without Perl and no nixpkgs source: what
/// nix/ram-os.nix says of each, and the classes the review found (NetworkManager from the installer
/// profile, zswap without swap, a locked emergency shell, the channel).
#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_ram_os_is_lean_networkd_only_and_has_a_console_when_stage_1_fails() {
    let lean = &evaluate()["lean"];
    // The stand-ins of tests/nix/modules record what was imported; a module without one (the installer
    // profiles) fails the evaluation.
    assert_eq!(strings(&lean["imported"]), ["installer/netboot/netboot.nix", "profiles/minimal.nix"]);
    for (setting, expected) in [
        ("networkmanager", false),
        ("dhcpcd", false),
        ("useDHCP", true),
        ("firewall", false),
        ("documentation", false),
        ("channel", false),
        ("flakeRegistry", false),
        ("nixPath", false),
        ("etcOverlay", true),
        ("userborn", true),
        ("generateConfig", false),
        ("emergencyAccess", true),
    ] {
        assert_eq!(lean[setting], expected, "{setting}: {lean}");
    }
    assert_eq!(lean["zram"]["enable"], true, "{lean}");
    assert_eq!(lean["zram"]["algorithm"], "zstd", "{lean}");
    let params = strings(&evaluate()["kernelParams"]);
    assert!(!params.iter().any(|p| p.starts_with("zswap.")), "zswap without a swap device: {params:?}");
    assert_eq!(lean["swraid"]["enable"], true);
    assert!(lean["swraid"]["mdadmConf"].as_str().is_some_and(|c| c.contains("MAILADDR")), "{lean}");
    // Nothing with Perl in it is asked for by name: git without its scripts, nixos-install without
    // nixos-generate-config (nixos-install-tools holds both).
    let packages = strings(&evaluate()["ramOsPackages"]);
    for perl in ["git", "nixos-install-tools", "perl"] {
        assert!(!packages.contains(&perl), "{perl} in the RAM OS: {packages:?}");
    }
}

/// `nix run .#ram-os-sizes` holds the kexec tarball to its budget of 150 MB and fails when it is over.
#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_size_report_holds_the_tarball_to_its_budget() {
    let script = evaluate()["sizesScript"].as_str().expect("script");
    assert!(script.contains("-kexec-tarball/nix-dabei-kexec.tar.gz)\" 150\n"), "{script}");
    assert!(script.contains("over=1") && script.trim_end().ends_with("exit \"$over\""), "{script}");
    assert!(script.contains("-closure-info/store-paths"), "{script}");
}

#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_flake_module_brings_its_own_package_and_is_off_until_enabled() {
    let facts = evaluate();
    assert_eq!(facts["importedEnabledByDefault"], false);
    let packages = strings(&facts["importedEnabled"]);
    assert_eq!(packages.first(), Some(&"nix-dabei-from-the-flake-x86_64-linux"), "no overlay needed: {packages:?}");
}

#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_kexec_tarball_and_runvm_pass_init_and_use_the_right_kernel_and_qemu() {
    let facts = evaluate();
    let tarball = facts["tarballScript"].as_str().expect("script");
    assert!(tarball.contains("cp /nix/store/kernel/Image kexec/bzImage"), "kernelFile, not bzImage: {tarball}");
    for shipped in ["kexec/ip", "kexec/kexec", "kexec/nix-dabei"] {
        assert!(tarball.contains(&format!("bin/{} {shipped}", shipped.trim_start_matches("kexec/"))), "{tarball}");
    }
    assert!(tarball.contains("readelf --program-headers"), "static linking is checked: {tarball}");
    assert!(tarball.contains("PATH=\"$here:$PATH\""), "its own ip and kexec come first: {tarball}");
    assert!(tarball.contains(&format!("--append \"{}\"", facts["commandLine"].as_str().expect("line"))));
    let x86 = facts["runvmX86"].as_str().expect("runvm");
    assert!(x86.contains("exec qemu-system-x86_64  -accel") && x86.contains("-append \"init=/x/init\""), "{x86}");
    let arm = facts["runvmAarch64"].as_str().expect("runvm");
    assert!(arm.contains("exec qemu-system-aarch64 -machine virt -cpu max -accel"), "{arm}");
}

/// The package that provides a program in the evaluated modules: the stand-in of its nixpkgs attribute,
/// or the one the system chooses (the kernel's ZFS, the system's systemd and Nix).
fn package_of(attribute: &str) -> String {
    match attribute {
        "zfs" => "zfs-for-the-kernel".into(),
        "systemd" => "systemd-of-the-system".into(),
        "nix" => "nix-of-the-system".into(),
        other => other.into(),
    }
}

/// `nix/programs.json` is the program list the binary declares, and the RAM OS and the NixOS module
/// install a package for every program of the machine being installed; before, the RAM OS lacked mdadm,
/// f2fs-tools, lvm2, thin-provisioning-tools and bcachefs-tools, which the executor runs.
#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_ram_os_and_the_module_install_every_program_the_steps_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listed = Command::new(env!("CARGO_BIN_EXE_nix-dabei")).args(["programs", "--json"]).output().expect("run");
    assert!(listed.status.success());
    let declared: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let committed: Value =
        serde_json::from_slice(&std::fs::read(repo.join("nix/programs.json")).expect("nix/programs.json"))
            .expect("json");
    assert_eq!(
        committed, declared,
        "nix/programs.json differs from `nix-dabei programs --json`: write that output into it"
    );
    let facts = evaluate();
    let ram_os = strings(&facts["ramOsPackages"]);
    let module = strings(&facts["importedEnabled"]);
    let programs = facts["programs"].as_array().expect("programs");
    assert!(programs.len() >= 30, "{programs:?}");
    for program in programs.iter().filter(|p| p["runs_on"] == "target") {
        let package = package_of(program["nixpkgs"].as_str().expect("attribute"));
        let name = &program["name"];
        assert!(ram_os.contains(&package.as_str()), "the RAM OS lacks {package}, which has {name}: {ram_os:?}");
        assert!(module.contains(&package.as_str()), "the module lacks {package}, which has {name}: {module:?}");
    }
}

#[test]
fn the_flake_is_locked() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(repo.join("flake.lock")).expect("flake.lock")).expect("json");
    assert_eq!(lock["version"], 7);
    let input = &lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"].as_str().expect("nixpkgs input")];
    let flake = std::fs::read_to_string(repo.join("flake.nix")).expect("flake.nix");
    let original = &input["original"];
    let url = format!(
        "github:{}/{}/{}",
        original["owner"].as_str().unwrap_or(""),
        original["repo"].as_str().unwrap_or(""),
        original["ref"].as_str().unwrap_or("")
    );
    assert!(flake.contains(&format!("inputs.nixpkgs.url = \"{url}\"")), "the lock is for {url}");
    let rev = input["locked"]["rev"].as_str().expect("rev");
    assert!(rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()), "{rev}");
    assert!(input["locked"]["narHash"].as_str().expect("narHash").starts_with("sha256-"));
}

/// The flake's boot tests (nix/tests/boot.nix), as far as they evaluate without nixpkgs: one per layout
/// family, each installing with `nix-dabei install --system` on the plan's disks in a 512 MiB installer,
/// then booting a second machine from those disks alone and checking what it mounted (ZFS on LUKS unlocked
/// over the initrd's SSH after 75 s; the native ZFS mirror and btrfs raid1 again with one disk pulled);
/// and the kexec path from a rescue system through `nix-dabei remote`. Running them is Nix and KVM only.
#[test]
#[cfg_attr(no_nix_sources, ignore = "needs ../shared/nix-sources beside the checkout (README)")]
fn the_flake_checks_boot_the_installed_system_of_each_layout_family() {
    let facts = evaluate();
    let tests = facts["bootTests"].as_object().expect("boot tests");
    let mut names: Vec<&str> = tests.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "boot-btrfs-raid1-luks",
            "boot-ext4-bios",
            "boot-kexec-remote",
            "boot-lvm-thin-luks",
            "boot-mdadm-luks",
            "boot-zfs-native-mirror",
            "boot-zfs-on-luks"
        ]
    );
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nix/tests/plans");
    for (name, test) in tests.iter().filter(|(name, _)| *name != "boot-kexec-remote") {
        let family = name.trim_start_matches("boot-");
        let script = test["testScript"].as_str().expect("a test script");
        for needed in [
            "nix-dabei install {plan}",
            "--disks-only",
            "--system /nix/store/",
            "copy --no-check-sigs --to 'local?root=/mnt'",
            "create_machine(start_command=",
            "booted.wait_for_unit(\"multi-user.target\")",
            "readlink -f /run/current-system",
        ] {
            assert!(script.contains(needed), "{name}: no {needed:?} in\n{script}");
        }
        let installer = &test["nodes"]["installer"];
        assert_eq!(installer["memory"], 512, "{name}");
        assert!(installer["plan"].as_str().is_some_and(|p| p.ends_with(&format!("/nix/tests/plans/{family}.toml"))));
        assert!(strings(&installer["packages"]).iter().any(|p| p.starts_with("nix-dabei")), "{name}: {installer}");
        let plan_path = plans.join(format!("{family}.toml"));
        let plan = layouts::Plan::from_toml(&std::fs::read_to_string(&plan_path).expect("plan")).expect("valid");
        assert_eq!(installer["disks"].as_u64(), Some(plan.disks.len() as u64), "{name}: a disk image per disk");
        let system = &facts["bootSystems"][family];
        assert!(strings(&system["mounts"]).contains(&"/"), "{family}: {system}");
        let imported = strings(&system["imported"]);
        assert!(
            imported.contains(&"testing/test-instrumentation.nix") && imported.contains(&"profiles/qemu-guest.nix")
        );
        // Encrypted plans are unlocked, at the console or over SSH, before the installed system is up.
        if plan.needs_passphrase() {
            assert!(script.contains("wait_for_console_text(\"[Pp]assphrase\")"), "{name}");
        }
    }
    // Every plan's committed module is the one nix-dabei writes for it.
    for entry in std::fs::read_dir(&plans).expect("plans") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let plan = layouts::Plan::from_toml(&std::fs::read_to_string(&path).expect("plan")).expect("valid");
            let module = std::fs::read_to_string(path.with_extension("nix")).expect("module");
            assert_eq!(module, layouts::nixos::module(&plan), "{} is not `nix-dabei nixos-module`", path.display());
        }
    }

    // ZFS on LUKS: the passphrase goes in over the initrd's SSH, 75 s late, from a client holding the key
    // the plan authorizes, checking the host key the install generated.
    let luks = &tests["boot-zfs-on-luks"];
    let script = luks["testScript"].as_str().expect("script");
    assert!(script.contains("time.sleep(75)") && script.contains("systemd-tty-ask-password-agent"), "{script}");
    assert!(script.contains("StrictHostKeyChecking=yes") && script.contains("ssh_host_ed25519_key.pub"), "{script}");
    assert!(strings(&luks["nodes"]["client"]["etc"]).contains(&"nix-dabei-test/id"));
    let plan = std::fs::read_to_string(plans.join("zfs-on-luks.toml")).expect("plan");
    let plan = layouts::Plan::from_toml(&plan).expect("valid");
    let unlock = plan.remote_unlock.as_ref().expect("remote unlock");
    assert!(unlock.authorized_keys.iter().all(|k| k.ends_with(" snakeoil")), "{:?}", unlock.authorized_keys);
    // The mirrors that may boot degraded do, with one disk pulled.
    for (family, degraded) in [("zfs-native-mirror", "grep -qx DEGRADED"), ("btrfs-raid1-luks", "grep -qi missing")] {
        let script = tests[&format!("boot-{family}")]["testScript"].as_str().expect("script");
        assert!(script.contains("bootFrom") || script.contains("degraded = create_machine("), "{family}: {script}");
        assert!(script.contains(degraded), "{family}: {script}");
    }
    let native = tests["boot-zfs-native-mirror"]["testScript"].as_str().expect("script");
    assert!(native.contains("/boot-1/EFI/BOOT/BOOTX64.EFI"), "{native}");

    // The kexec path: a rescue system with the user's key, kexec'd by `nix-dabei remote` from the real
    // tarball, reached again on both addresses with its own host key, installing the system built here.
    let kexec = &tests["boot-kexec-remote"];
    let script = kexec["testScript"].as_str().expect("script");
    for needed in [
        "nix-dabei remote root@192.168.1.1",
        "--kexec-tarball /nix/store/",
        "/nix-dabei-kexec.tar.gz",
        "--system /nix/store/",
        "--phases kexec,plan,apply,install",
        "root@2001:db8:1::1 test -e /etc/nix-dabei/ram-os",
        "StrictHostKeyChecking=yes",
        "installed.wait_for_unit(\"multi-user.target\")",
    ] {
        assert!(script.contains(needed), "kexec: no {needed:?} in\n{script}");
    }
    let rescue = &kexec["nodes"]["rescue"];
    assert_eq!(rescue["memory"], 512);
    assert_eq!(rescue["disks"], 1);
    assert!(strings(&rescue["authorizedKeys"]).iter().all(|k| k.ends_with(" snakeoil")), "{rescue}");
    let workstation = &kexec["nodes"]["workstation"];
    // What the command is given is in the workstation's store: built by the test, nothing fetched.
    let after = |flag: &str| script.split(flag).nth(1).and_then(|rest| rest.split([' ', '"']).next()).expect(flag);
    let tarball = after("--kexec-tarball ").trim_end_matches("/nix-dabei-kexec.tar.gz").to_string();
    let paths = strings(&workstation["additionalPaths"]);
    assert!(paths.contains(&tarball.as_str()) && paths.contains(&after("--system ")), "{workstation}");
}
