//! The kexec handover: the cpio the kernel unpacks, the memory check, and restoring keys into a root.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use handover::{cpio, memory_needed, restore, HandoverFile, HANDOVER_DIR};

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
    assert_eq!(std::fs::read_to_string(root.join("etc/resolv.conf")).expect("dns"), "nameserver 192.0.2.53\n");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn memory_needed_counts_the_unpacked_initrd() {
    let mib = 1u64 << 20;
    assert_eq!(memory_needed(8 * mib, 60 * mib, false), (8 + 60 + 60 + 256) * mib);
    assert_eq!(memory_needed(8 * mib, 40 * mib, true), (8 + 40 + 120 + 256) * mib);
}
