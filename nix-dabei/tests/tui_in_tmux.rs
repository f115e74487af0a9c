//! The real binary's installer, driven in tmux like a person at a console: every screen of a dry-run
//! mirror install on two loop devices. Nothing may be written to the disks; the saved plan must be one
//! that `nix-dabei plan` accepts.

use std::process::Command;
use std::time::{Duration, Instant};

use vm_tests::loopdev::{require_root, run, serialize, LoopDisk};

const SESSION: &str = "nix-dabei-tui-test";

fn tmux(args: &[&str]) -> String {
    run("tmux", args).unwrap_or_else(|e| panic!("tmux {args:?}: {e}"))
}

fn keys(keys: &[&str]) {
    for key in keys {
        tmux(&["send-keys", "-t", SESSION, key]);
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn text(literal: &str) {
    tmux(&["send-keys", "-t", SESSION, "-l", literal]);
    std::thread::sleep(Duration::from_millis(150));
}

fn screen() -> String {
    tmux(&["capture-pane", "-p", "-t", SESSION])
}

fn wait_for(wanted: &str) -> String {
    let start = Instant::now();
    loop {
        let shown = screen();
        if shown.contains(wanted) {
            return shown;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "waited for {wanted:?}; the screen shows:\n{shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Session;

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", SESSION]).output();
    }
}

#[test]
fn a_dry_run_install_through_every_screen() {
    if !require_root() {
        return;
    }
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
    let command = format!("NIX_DABEI_STATE_DIR={} {binary} tui --dry-run --save {}; echo exited-$?; sleep 30", dir.display(), plan_path.display());
    let _ = Command::new("tmux").args(["kill-session", "-t", SESSION]).output();
    tmux(&["new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", &command]);
    let _session = Session;

    wait_for("Install NixOS onto this machine's disks.");
    keys(&["Enter"]);
    let shown = wait_for("Choose the disks");
    assert!(shown.contains(&a.device) && shown.contains(&b.device), "{shown}");
    for _ in first_usable..pa {
        keys(&["Down"]);
    }
    keys(&["Space"]);
    for _ in pa..pb {
        keys(&["Down"]);
    }
    keys(&["Space"]);
    let shown = screen();
    assert_eq!(shown.matches("[x]").count(), 2, "{shown}");
    keys(&["Enter"]);
    wait_for("ZFS mirror (an ESP on every disk)");
    keys(&["Down", "Right"]);
    wait_for("ZFS native (passphrase)");
    keys(&["Enter"]);
    wait_for("Host name");
    keys(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    text("tmuxhost");
    keys(&["Tab"]);
    text("github:me/machines#tmuxhost");
    keys(&["Enter"]);
    wait_for("Repeat it");
    text("correct horse");
    keys(&["Tab"]);
    text("correct horse");
    let shown = screen();
    assert!(!shown.contains("correct horse"), "the passphrase is shown:\n{shown}");
    keys(&["Enter"]);
    let shown = wait_for("These disks will be WIPED");
    assert!(shown.contains(&format!("{}  -  serial -  4 GiB", a.device)), "{shown}");
    assert!(shown.contains("DESTROYS Wipe disk disk0"), "{shown}");
    text("wipe");
    keys(&["Enter"]);
    let shown = wait_for("Dry run finished: nothing was written.");
    assert!(shown.contains("applied"), "{shown}");
    keys(&["Enter"]);
    wait_for("exited-0");

    // Nothing was written, and the saved plan is one the CLI accepts.
    assert_eq!(run("wipefs", &[&a.device]).expect("wipefs"), before);
    assert_eq!(run("wipefs", &[&b.device]).expect("wipefs").trim(), "");
    let saved = std::fs::read_to_string(&plan_path).expect("the plan was saved");
    assert!(saved.contains("hostname = \"tmuxhost\"") && saved.contains("flake = \"github:me/machines#tmuxhost\""), "{saved}");
    assert!(!saved.contains("correct horse"));
    let shown = run(binary, &["plan", &plan_path.to_string_lossy()]).expect("nix-dabei plan accepts the saved plan");
    assert!(shown.contains("Create ZFS pool rpool (mirror of 2)"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}
