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

/// A 1 GiB loop disk holding an ext4 filesystem, its size in bytes, and a fresh folder for the test.
fn disk_with_old_data(test: &str) -> (LoopDisk, String, std::path::PathBuf) {
    let disk = LoopDisk::new(1 << 30, 512).expect("loop");
    run("mkfs.ext4", &["-q", "-L", "precious", &disk.device]).expect("old data");
    let size = run("blockdev", &["--getsize64", &disk.device]).expect("size").trim().to_string();
    let dir = std::env::temp_dir().join(format!("nix-dabei-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    (disk, size, dir)
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn wiping_is_confirmed_by_typing_the_disk() {
    require_root();
    let _lock = serialize();
    let (disk, size, dir) = disk_with_old_data("confirm");
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

/// What `nix-dabei remote` reads from the far side: the review as JSON, with the disk to wipe and the
/// word that confirms it; nothing is written and no passphrase asked for.
#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn the_review_alone_is_json_for_remote_and_writes_nothing() {
    require_root();
    let _lock = serialize();
    let (disk, size, dir) = disk_with_old_data("review");
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "hostname = \"review\"\n[disks.main]\ndevice = \"{}\"\nsize = {}\n[disks.main.partitions.root]\n\
             size = \"rest\"\ncontent.luks = {{ name = \"croot\", content.filesystem = {{ format = \"ext4\", \
             mountpoint = \"/\" }} }}\n",
            disk.device,
            size.trim()
        ),
    )
    .expect("plan");
    let before = run("sha256sum", &[&disk.device]).expect("digest");
    let state = format!("NIX_DABEI_STATE_DIR={}", dir.join("state").display());
    let output = run(
        "env",
        &[&state, env!("CARGO_BIN_EXE_nix-dabei"), "apply", &plan.to_string_lossy(), "--review-only", "--json"],
    )
    .expect("the review runs without a passphrase or a confirmation");
    let review: remote::Review = serde_json::from_str(output.trim()).expect("one review object");
    assert_eq!(review.host, "review");
    assert_eq!(review.wipes.len(), 1, "{output}");
    assert_eq!((review.wipes[0].target.disk.as_str(), review.wipes[0].confirm.as_str()), ("main", "main"));
    assert!(review.needs_passphrase && !review.nothing_to_do, "{output}");
    assert!(review.steps.iter().any(|s| s.state == "destroys"), "{output}");
    assert_eq!(run("sha256sum", &[&disk.device]).expect("digest"), before, "the review wrote to the disk");
    let _ = std::fs::remove_dir_all(&dir);
}
