//! `nix-dabei apply` on a terminal asks for each disk to be confirmed by typing its serial (or, without
//! one, its plan name); a wrong answer leaves the disk as it was.

use testkit::loopdev::{require_root, run, serialize, LoopDisk};
use testkit::tmux::Session;

/// Runs `command`, answers its confirmation question with `typed`, and returns the final screen.
fn answer(command: &str, typed: &str) -> String {
    let session = Session::start("nix-dabei-confirm-test", 200, 50, command);
    session.wait_for("to wipe disk main");
    session.text(typed);
    session.keys(&["Enter"]);
    session.wait_for("exited-")
}

#[test]
fn wiping_is_confirmed_by_typing_the_disk() {
    if !require_root() {
        return;
    }
    let _lock = serialize();
    let disk = LoopDisk::new(1 << 30, 512).expect("loop");
    run("mkfs.ext4", &["-q", "-L", "precious", &disk.device]).expect("old data");
    let size = run("blockdev", &["--getsize64", &disk.device]).expect("size");
    let dir = std::env::temp_dir().join(format!("nix-dabei-confirm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "hostname = \"confirm\"\n[disks.main]\ndevice = \"{}\"\nsize = \
                {}\n[disks.main.partitions.root]\nsize = \"rest\"\ncontent.filesystem = {{ format = \"ext4\", \
                    mountpoint = \"/\" }}\n",
            disk.device,
            size.trim()
        ),
    )
    .expect("plan");
    let target = dir.join("target");
    let binary = env!("CARGO_BIN_EXE_nix-dabei");
    let command = format!(
        "NIX_DABEI_STATE_DIR={} {binary} apply {} --target {}; echo exited-$?; sleep 30",
        dir.join("state").display(),
        plan.display(),
        target.display()
    );

    let refused = answer(&command, "yes");
    assert!(refused.contains("not confirmed; nothing was written") && refused.contains("exited-1"), "{refused}");
    assert!(run("wipefs", &[&disk.device]).expect("wipefs").contains("ext4"), "the disk was touched");

    let accepted = answer(&command, "main");
    assert!(accepted.contains("exited-0"), "{accepted}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(mounts.contains(&format!("{}p1 {} ext4", disk.device, target.display())), "{mounts}");
    let unmounted = run(binary, &["unmount", &plan.to_string_lossy(), "--target", &target.to_string_lossy()]);
    assert!(unmounted.is_ok(), "{unmounted:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
