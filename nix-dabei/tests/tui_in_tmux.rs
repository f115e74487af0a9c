//! The real binary's installer, driven in tmux like a person at a console: every screen of a dry-run
//! mirror install on two loop devices. Nothing may be written to the disks; the saved plan must be one
//! that `nix-dabei plan` accepts.

use testkit::loopdev::{require_root, run, serialize, LoopDisk};
use testkit::tmux::Session;

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn a_dry_run_install_through_every_screen() {
    require_root();
    let _lock = serialize();
    let a = LoopDisk::new(4 << 30, 512).expect("loop a");
    let b = LoopDisk::new(4 << 30, 512).expect("loop b");
    run("mkfs.ext4", &["-q", "-L", "keepme", &a.device]).expect("mkfs");
    let before = run("wipefs", &[&a.device]).expect("wipefs");

    // The order the installer lists disks in, to know how far to move the cursor.
    let disks = partitioner::discover().expect("discovery");
    let position = |device: &str| disks.iter().position(|d| d.path == device).expect("listed");
    let first_usable = disks.iter().position(|d| d.in_use.is_empty()).expect("a usable disk");
    let (pa, pb) = (position(&a.device), position(&b.device));
    assert!(pa < pb);

    let dir = std::env::temp_dir().join(format!("nix-dabei-tmux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let plan_path = dir.join("plan.toml");
    let binary = env!("CARGO_BIN_EXE_nix-dabei");
    // The review is refused, as a run would be, where a program the steps run is missing: this machine
    // has them all but NixOS's nixos-install, which a dry run never runs; a stand-in is on PATH for it.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("dir");
    std::fs::write(bin.join("nixos-install"), "#!/bin/sh\nexit 1\n").expect("stand-in");
    run("chmod", &["+x", &bin.join("nixos-install").to_string_lossy()]).expect("chmod");
    let command = format!(
        "PATH={}:$PATH NIX_DABEI_STATE_DIR={} {binary} tui --dry-run --save {}; echo exited-$?; sleep 30",
        bin.display(),
        dir.display(),
        plan_path.display()
    );
    let tui = Session::start("nix-dabei-tui-test", 120, 40, &command);

    tui.wait_for("Install NixOS onto this machine's disks.");
    tui.keys(&["Enter"]);
    let shown = tui.wait_for("Choose the disks");
    assert!(shown.contains(&a.device) && shown.contains(&b.device), "{shown}");
    for _ in first_usable..pa {
        tui.keys(&["Down"]);
    }
    tui.keys(&["Space"]);
    for _ in pa..pb {
        tui.keys(&["Down"]);
    }
    tui.keys(&["Space"]);
    let shown = tui.screen();
    assert_eq!(shown.matches("[x]").count(), 2, "{shown}");
    tui.keys(&["Enter"]);
    tui.wait_for("ZFS mirror (an ESP on every disk)");
    tui.keys(&["Down", "Right"]);
    tui.wait_for("ZFS native (passphrase)");
    tui.keys(&["Enter"]);
    tui.wait_for("Host name");
    tui.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    tui.text("tmuxhost");
    tui.keys(&["Tab"]);
    tui.text("github:me/machines#tmuxhost");
    tui.keys(&["Enter"]);
    tui.wait_for("Repeat it");
    tui.text("correct horse");
    tui.keys(&["Tab"]);
    tui.text("correct horse");
    let shown = tui.screen();
    assert!(!shown.contains("correct horse"), "the passphrase is shown:\n{shown}");
    tui.keys(&["Enter"]);
    let shown = tui.wait_for("These disks will be WIPED");
    assert!(shown.contains(&format!("{}  -  serial -  4 GiB", a.device)), "{shown}");
    assert!(shown.contains("DESTROYS Wipe disk disk0"), "{shown}");
    tui.text("wipe");
    tui.keys(&["Enter"]);
    let shown = tui.wait_for("Dry run finished: nothing was written.");
    assert!(shown.contains("step(s) would run on the real disks"), "a dry run applies nothing:\n{shown}");
    tui.keys(&["Enter"]);
    tui.wait_for("exited-0");

    // Nothing was written, and the saved plan is one the CLI accepts.
    assert_eq!(run("wipefs", &[&a.device]).expect("wipefs"), before);
    assert_eq!(run("wipefs", &[&b.device]).expect("wipefs").trim(), "");
    let saved = std::fs::read_to_string(&plan_path).expect("the plan was saved");
    assert!(
        saved.contains("hostname = \"tmuxhost\"") && saved.contains("flake = \"github:me/machines#tmuxhost\""),
        "{saved}"
    );
    assert!(!saved.contains("correct horse"));
    let shown = run(binary, &["plan", &plan_path.to_string_lossy()]).expect("nix-dabei plan accepts the saved plan");
    assert!(shown.contains("Create ZFS pool rpool (mirror of 2)"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}
