//! The kexec handover: the cpio the kernel unpacks, the memory check, and restoring keys into a root.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use handover::{cpio, memory_needed, restore, root_keys, HandoverFile, KexecError, HANDOVER_DIR};

fn files() -> Vec<HandoverFile> {
    vec![
        HandoverFile {
            path: format!("{HANDOVER_DIR}/authorized_keys"),
            data: b"ssh-ed25519 AAAA test\n".to_vec(),
            mode: 0o600,
        },
        HandoverFile {
            path: format!("{HANDOVER_DIR}/ssh/ssh_host_ed25519_key"),
            data: b"PRIVATE".to_vec(),
            mode: 0o600,
        },
        HandoverFile {
            path: format!("{HANDOVER_DIR}/ssh/ssh_host_ed25519_key.pub"),
            data: b"PUBLIC".to_vec(),
            mode: 0o644,
        },
        HandoverFile {
            path: format!("{HANDOVER_DIR}/resolv.conf"),
            data: b"nameserver 192.0.2.53\n".to_vec(),
            mode: 0o644,
        },
    ]
}

#[test]
fn the_handover_is_a_cpio_that_unpacks_to_the_files() {
    let archive = cpio(&files());
    assert_eq!(archive.len() % 512, 0, "padded so another archive can follow");
    let dir = std::env::temp_dir().join(format!("nix-dabei-cpio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child =
        Command::new("cpio").args(["-idm", "--quiet"]).current_dir(&dir).stdin(Stdio::piped()).spawn().expect("cpio");
    child.stdin.take().expect("stdin").write_all(&archive).expect("write");
    assert!(child.wait().expect("cpio").success());
    let key = dir.join(HANDOVER_DIR).join("ssh/ssh_host_ed25519_key");
    assert_eq!(std::fs::read(&key).expect("unpacked"), b"PRIVATE");
    assert_eq!(std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read(dir.join(HANDOVER_DIR).join("authorized_keys")).expect("keys"),
        b"ssh-ed25519 AAAA test\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restoring_puts_keys_and_dns_in_place() {
    let base = std::env::temp_dir().join(format!("nix-dabei-restore-{}", std::process::id()));
    let handover = base.join("handover");
    let root = base.join("root");
    for file in files() {
        let relative = file.path.trim_start_matches(HANDOVER_DIR).trim_start_matches('/');
        let path = handover.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, &file.data).expect("write");
    }
    let restored = restore(&handover, &root).expect("restore");
    assert!(restored.actions.contains(&"authorized_keys for root".to_string()), "{:?}", restored.actions);
    let keys = root.join("root/.ssh/authorized_keys");
    assert_eq!(std::fs::metadata(&keys).expect("keys").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(root.join("root/.ssh")).expect("dir").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read(root.join("etc/ssh/ssh_host_ed25519_key")).expect("host key"), b"PRIVATE");
    // Where the RAM OS's sshd looks in the systemd initrd (root's home is /var/empty there).
    let keys_d = std::fs::read(root.join("etc/ssh/authorized_keys.d/root")).expect("authorized_keys.d");
    assert_eq!(keys_d, b"ssh-ed25519 AAAA test\n");
    assert_eq!(std::fs::read_to_string(root.join("etc/resolv.conf")).expect("dns"), "nameserver 192.0.2.53\n");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn memory_needed_counts_the_unpacked_initrd() {
    let mib = 1u64 << 20;
    let plain = memory_needed(8 * mib, 60 * mib, 60 * mib);
    assert_eq!(plain.to_run, (8 + 60 + 256) * mib, "the initrd is freed once unpacked");
    assert_eq!(plain.to_load, (8 + 135 + 32) * mib, "loading holds the initrd twice and more for a moment");
    assert_eq!(memory_needed(8 * mib, 40 * mib, 120 * mib).to_run, (8 + 120 + 256) * mib);
    assert_eq!(memory_needed(8 * mib, 400 * mib, 400 * mib).to_run, (8 + 400 + 400) * mib, "unpacking holds both");
}

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@laptop";
const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBw8X9n2kQ1rJm3V3oPq7sYt5uVwXyZaBcDeFgHiJkLm b@desk";
const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEm c@phone";

#[test]
fn root_keys_come_from_every_file_sshd_reads_without_their_options() {
    let root = std::env::temp_dir().join(format!("nix-dabei-keys-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
        std::fs::write(file, text).expect("write");
    };
    assert!(matches!(root_keys(&root, None), Err(KexecError::NoKeys { .. })), "no key at all is an error");
    // A cloud image: root's key behind a command that tells you to log in as another user.
    let cloud = format!(
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \
         \\\"debian\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" {KEY_A}\n"
    );
    write("root/.ssh/authorized_keys", &format!("# managed\n{cloud}"));
    write("root/.ssh/authorized_keys2", &format!("{KEY_B}\n{KEY_A}\n"));
    write("etc/ssh/authorized_keys.d/root", &format!("restrict {KEY_C}\n"));
    write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ndebian:x:1000:1000::/home/debian:/bin/bash\n");
    write("home/debian/.ssh/authorized_keys", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 d@work\n");
    assert_eq!(root_keys(&root, None).expect("keys"), [KEY_A, KEY_B, KEY_C], "once each, options stripped");
    let with_sudo = root_keys(&root, Some("debian")).expect("keys");
    assert_eq!(with_sudo.last().map(String::as_str), Some("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 d@work"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_handover_is_appended_while_loading_and_taken_out_again() {
    let dir = std::env::temp_dir().join(format!("nix-dabei-stage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let initrd = dir.join("initrd");
    let original: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&initrd, &original).expect("write");
    std::fs::set_permissions(&initrd, std::fs::Permissions::from_mode(0o644)).expect("mode");
    let staged = handover::stage_initrd(&initrd, &files(), &dir.join("work")).expect("stage");
    assert_eq!(staged.path(), initrd, "no second copy in memory");
    let during = std::fs::read(&initrd).expect("read");
    assert_eq!(&during[..1000], &original[..]);
    assert_eq!(&during[1000..1024], &[0u8; 24], "the cpio starts on a 512-byte boundary");
    assert_eq!(&during[1024..], &cpio(&files())[..]);
    let mode = std::fs::metadata(&initrd).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "it holds private host keys meanwhile");
    staged.finish().expect("finish");
    assert_eq!(std::fs::read(&initrd).expect("read"), original);
    assert_eq!(std::fs::metadata(&initrd).expect("meta").permissions().mode() & 0o777, 0o644);
    assert!(!dir.join("work").exists(), "nothing else was written");
    let _ = std::fs::remove_dir_all(&dir);
}
