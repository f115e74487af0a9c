//! The kexec bootstrap: on a rescue system, collect what the RAM OS needs to stay reachable (root's
//! authorized keys, the SSH host keys, addresses, routes, DNS servers), pack it as a cpio appended to
//! the RAM OS initrd, load it, and switch a moment later, detached. In the RAM OS, restore it.

#![warn(missing_docs)]

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use installer::command::{self, CommandError};

/// Where the handed-over files live in the RAM OS.
pub const HANDOVER_DIR: &str = "etc/nix-dabei/kexec";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    /// A file could not be read or written.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why.
        source: std::io::Error,
    },
    /// A program failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Not enough memory for the RAM OS.
    #[error(
        "not enough memory: the RAM OS needs about {needed_mib} MiB but only {available_mib} MiB are \
        available; use a machine with more memory"
    )]
    NotEnoughMemory {
        /// What it needs.
        needed_mib: u64,
        /// What there is.
        available_mib: u64,
    },
    /// No public key for root: after the switch nobody could log in over SSH.
    #[error(
        "no public key for root found in {}: after the switch nobody could log in over SSH; add your key \
         to /root/.ssh/authorized_keys first",
        searched.join(", ")
    )]
    NoKeys {
        /// The files looked at.
        searched: Vec<String>,
    },
    /// Loading the kernel failed both ways.
    #[error("cannot load the kernel: kexec_file_load: {file_load}; kexec -l: {fallback}")]
    Load {
        /// Why kexec_file_load failed.
        file_load: std::io::Error,
        /// Why the fallback failed.
        fallback: String,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> KexecError {
    let action = action.into();
    move |source| KexecError::Io { action, source }
}

/// One file for the RAM OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverFile {
    /// Path inside the initrd, relative.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// The home directory of `user` in `root`'s /etc/passwd.
fn home_of(root: &Path, user: &str) -> Option<PathBuf> {
    let passwd = fs::read_to_string(root.join("etc/passwd")).ok()?;
    let home = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 7 && f[0] == user)?[5];
    Some(root.join(home.trim_start_matches('/')))
}

/// Every public key that lets someone into this system as root, or as the user who ran sudo: root's
/// `authorized_keys` and `authorized_keys2`, `/etc/ssh/authorized_keys.d/root`, and the sudo user's own.
/// Options are stripped: cloud images prefix root's keys with `command="echo Please login as ..."`,
/// which would lock root out of the RAM OS. Paths are taken inside `root` (`/` on the machine).
pub fn root_keys(root: &Path, sudo_user: Option<&str>) -> Result<Vec<String>, KexecError> {
    let mut files = vec![
        root.join("root/.ssh/authorized_keys"),
        root.join("root/.ssh/authorized_keys2"),
        root.join("etc/ssh/authorized_keys.d/root"),
    ];
    if let Some(home) = sudo_user.filter(|u| *u != "root").and_then(|user| home_of(root, user)) {
        files.push(home.join(".ssh/authorized_keys"));
        files.push(home.join(".ssh/authorized_keys2"));
    }
    let mut keys: Vec<String> = Vec::new();
    for file in &files {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(KexecError::Io { action: format!("read {}", file.display()), source: error }),
        };
        for key in text.lines().filter_map(layouts::boot::public_key) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        let searched = files.iter().map(|f| format!("/{}", f.strip_prefix(root).unwrap_or(f).display())).collect();
        return Err(KexecError::NoKeys { searched });
    }
    Ok(keys)
}

/// Collects keys and network settings from the running (rescue) system.
pub fn collect() -> Result<Vec<HandoverFile>, KexecError> {
    let mut files = Vec::new();
    let mut add = |name: &str, data: Vec<u8>, mode: u32| {
        files.push(HandoverFile { path: format!("{HANDOVER_DIR}/{name}"), data, mode })
    };
    let sudo_user = std::env::var("SUDO_USER").ok();
    let keys = root_keys(Path::new("/"), sudo_user.as_deref())?;
    add("authorized_keys", keys.iter().map(|k| format!("{k}\n")).collect::<String>().into_bytes(), 0o600);
    if let Ok(entries) = fs::read_dir("/etc/ssh") {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ssh_host_") && (n.ends_with("_key") || n.ends_with("_key.pub")))
            .collect();
        names.sort();
        for name in names {
            let data = fs::read(Path::new("/etc/ssh").join(&name)).map_err(io(format!("read /etc/ssh/{name}")))?;
            add(&format!("ssh/{name}"), data, if name.ends_with(".pub") { 0o644 } else { 0o600 });
        }
    }
    add(
        "addresses.json",
        command::run("ip", &["-json".into(), "address".into(), "show".into()], None)?.into_bytes(),
        0o644,
    );
    add("routes.json", command::run("ip", &["-json".into(), "route".into(), "show".into()], None)?.into_bytes(), 0o644);
    if let Ok(routes6) = command::run("ip", &["-json".into(), "-6".into(), "route".into(), "show".into()], None) {
        add("routes6.json", routes6.into_bytes(), 0o644);
    }
    if let Ok(resolv) = fs::read_to_string("/etc/resolv.conf") {
        let servers: String = resolv
            .lines()
            .filter(|l| l.trim_start().starts_with("nameserver"))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        add("resolv.conf", servers.into_bytes(), 0o644);
    }
    Ok(files)
}

/// A cpio archive (newc) holding the files and the directories above them.
pub fn cpio(files: &[HandoverFile]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut inode = 1;
    let mut entry = |out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]| {
        let header = format!(
            "070701{inode:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        inode += 1;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let mut dirs: Vec<String> = Vec::new();
    for file in files {
        let mut parent = Path::new(&file.path).parent();
        let mut chain = Vec::new();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
        for dir in chain.into_iter().rev() {
            if !dirs.contains(&dir) {
                entry(&mut out, &dir, 0o040_755, &[]);
                dirs.push(dir);
            }
        }
        entry(&mut out, &file.path, 0o100_000 | file.mode, &file.data);
    }
    entry(&mut out, "TRAILER!!!", 0, &[]);
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

/// MemAvailable in bytes.
pub fn memory_available() -> Result<u64, KexecError> {
    let text = fs::read_to_string("/proc/meminfo").map_err(io("read /proc/meminfo"))?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

/// Memory the RAM OS needs: the kernel, the initrd, the initrd unpacked (three times its size when
/// compressed), and room to run.
pub fn memory_needed(kernel: u64, initrd: u64, initrd_compressed: bool) -> u64 {
    let unpacked = if initrd_compressed { initrd * 3 } else { initrd };
    kernel + initrd + unpacked + (256 << 20)
}

/// Refuses when the RAM OS would not fit.
pub fn check_memory(kernel: &Path, initrd: &Path) -> Result<(), KexecError> {
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).map_err(io(format!("read {}", p.display())));
    let mut magic = [0u8; 6];
    let compressed = fs::File::open(initrd).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic != b"070701";
    let needed = memory_needed(size(kernel)?, size(initrd)?, compressed);
    let available = memory_available()?;
    if available < needed {
        return Err(KexecError::NotEnoughMemory { needed_mib: needed >> 20, available_mib: available >> 20 });
    }
    Ok(())
}

/// Writes the initrd with the handover appended (aligned as the kernel needs) to a new file.
pub fn initrd_with_handover(initrd: &Path, files: &[HandoverFile], dir: &Path) -> Result<PathBuf, KexecError> {
    let mut data = fs::read(initrd).map_err(io(format!("read {}", initrd.display())))?;
    while data.len() % 512 != 0 {
        data.push(0);
    }
    data.extend_from_slice(&cpio(files));
    fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let path = dir.join("initrd-with-handover");
    let mut file = fs::File::create(&path).map_err(io(format!("create {}", path.display())))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io("restrict the initrd"))?;
    file.write_all(&data).map_err(io(format!("write {}", path.display())))?;
    Ok(path)
}

/// Loads the kernel with kexec_file_load, falling back to `kexec -l` (kexec_load).
pub fn load(kernel: &Path, initrd: &Path, cmdline: &str) -> Result<&'static str, KexecError> {
    let kernel_file = fs::File::open(kernel).map_err(io(format!("open {}", kernel.display())))?;
    let initrd_file = fs::File::open(initrd).map_err(io(format!("open {}", initrd.display())))?;
    let cmdline_c = std::ffi::CString::new(cmdline)
        .map_err(|e| KexecError::Io { action: "command line".into(), source: std::io::Error::other(e) })?;
    // SAFETY: the descriptors and the NUL-terminated command line live across the call; the length
    // includes the terminating NUL as the kernel expects.
    let result = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_kexec_file_load,
            kernel_file.as_raw_fd(),
            initrd_file.as_raw_fd(),
            cmdline_c.as_bytes_with_nul().len(),
            cmdline_c.as_ptr(),
            0,
        )
    };
    if result == 0 {
        return Ok("kexec_file_load");
    }
    let file_load = std::io::Error::last_os_error();
    let args = vec![
        "-l".to_string(),
        kernel.display().to_string(),
        format!("--initrd={}", initrd.display()),
        format!("--command-line={cmdline}"),
    ];
    match command::run("kexec", &args, None) {
        Ok(_) => Ok("kexec_load"),
        Err(error) => Err(KexecError::Load { file_load, fallback: error.to_string() }),
    }
}

/// Switches to the loaded kernel after `delay`, from a detached process, so that the SSH session that
/// asked for it can end cleanly.
pub fn switch_later(delay: Duration) -> Result<(), KexecError> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: the child only sleeps, syncs and reboots; it touches no state shared with other threads.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => Ok(()),
        Ok(ForkResult::Child) => {
            let _ = setsid();
            // The SSH session ends only when nothing holds its output open: the child writes to the
            // kernel log instead (or nowhere).
            let sink = fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .or_else(|_| fs::OpenOptions::new().read(true).write(true).open("/dev/null"));
            if let Ok(sink) = sink {
                for fd in 0..=2 {
                    // SAFETY: dup2 onto the standard descriptors of this single-threaded child.
                    unsafe { nix::libc::dup2(sink.as_raw_fd(), fd) };
                }
            }
            std::thread::sleep(delay);
            nix::unistd::sync();
            let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC);
            // Not exit(): the parent's atexit handlers and buffers are not the child's to run.
            // SAFETY: _exit ends this process without touching shared state.
            unsafe { nix::libc::_exit(1) }
        }
        Err(error) => Err(KexecError::Io { action: "fork".into(), source: error.into() }),
    }
}

#[derive(Debug, Deserialize)]
struct LinkAddresses {
    ifname: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<AddressInfo>,
}

#[derive(Debug, Deserialize)]
struct AddressInfo {
    family: String,
    local: String,
    prefixlen: u32,
    #[serde(default)]
    scope: String,
}

#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

/// Interface names of this system by MAC address.
fn interfaces_by_mac() -> Vec<(String, String)> {
    let mut list = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(mac) = fs::read_to_string(entry.path().join("address")) {
                list.push((mac.trim().to_ascii_lowercase(), name));
            }
        }
    }
    list
}

/// What restoring did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Lines such as "10.0.2.15/24 on eth0".
    pub actions: Vec<String>,
}

/// Restores keys, addresses, routes and DNS from a handover folder. Interfaces are matched by MAC
/// address, since names can differ between the two kernels. systemd-networkd units are written as
/// well, so that networkd keeps the same configuration.
pub fn restore(dir: &Path, root: &Path) -> Result<Restored, KexecError> {
    let mut done = Restored::default();
    let read = |name: &str| fs::read(dir.join(name)).ok();
    if let Some(keys) = read("authorized_keys") {
        let ssh = root.join("root/.ssh");
        fs::create_dir_all(&ssh).map_err(io("create /root/.ssh"))?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).map_err(io("restrict /root/.ssh"))?;
        let path = ssh.join("authorized_keys");
        fs::write(&path, &keys).map_err(io("write authorized_keys"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io("restrict authorized_keys"))?;
        // The RAM OS's sshd runs in the systemd initrd, where root's home is /var/empty: it reads
        // /etc/ssh/authorized_keys.d/%u (nixos/modules/system/boot/initrd-ssh.nix).
        let keys_d = root.join("etc/ssh/authorized_keys.d");
        fs::create_dir_all(&keys_d).map_err(io("create /etc/ssh/authorized_keys.d"))?;
        fs::write(keys_d.join("root"), &keys).map_err(io("write /etc/ssh/authorized_keys.d/root"))?;
        fs::set_permissions(keys_d.join("root"), fs::Permissions::from_mode(0o644))
            .map_err(io("set the mode of /etc/ssh/authorized_keys.d/root"))?;
        done.actions.push("authorized_keys for root".into());
    }
    if let Ok(entries) = fs::read_dir(dir.join("ssh")) {
        let etc_ssh = root.join("etc/ssh");
        fs::create_dir_all(&etc_ssh).map_err(io("create /etc/ssh"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = etc_ssh.join(&name);
            fs::copy(entry.path(), &target).map_err(io(format!("write /etc/ssh/{name}")))?;
            let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io(format!("restrict /etc/ssh/{name}")))?;
            done.actions.push(format!("host key {name}"));
        }
    }
    if let Some(resolv) = read("resolv.conf") {
        fs::create_dir_all(root.join("etc")).map_err(io("create /etc"))?;
        fs::write(root.join("etc/resolv.conf"), resolv).map_err(io("write /etc/resolv.conf"))?;
        done.actions.push("DNS servers".into());
    }
    let links: Vec<LinkAddresses> =
        read("addresses.json").and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default();
    let local = interfaces_by_mac();
    let mut renamed: Vec<(String, String)> = Vec::new();
    let network_dir = root.join("etc/systemd/network");
    for link in links.iter().filter(|l| l.ifname != "lo") {
        let Some(mac) = link.address.as_deref().map(str::to_ascii_lowercase) else { continue };
        let Some((_, name)) = local.iter().find(|(m, _)| *m == mac) else { continue };
        renamed.push((link.ifname.clone(), name.clone()));
        let addresses: Vec<&AddressInfo> = link
            .addr_info
            .iter()
            .filter(|a| a.scope == "global" && (a.family == "inet" || a.family == "inet6"))
            .collect();
        command::run("ip", &["link".into(), "set".into(), "dev".into(), name.clone(), "up".into()], None)?;
        let mut unit = format!("[Match]\nMACAddress={mac}\n\n[Network]\nDHCP=no\nIPv6AcceptRA=yes\n");
        for address in &addresses {
            let cidr = format!("{}/{}", address.local, address.prefixlen);
            let _ =
                command::run("ip", &["address".into(), "add".into(), cidr.clone(), "dev".into(), name.clone()], None);
            unit.push_str(&format!("Address={cidr}\n"));
            done.actions.push(format!("{cidr} on {name}"));
        }
        let routes: Vec<Route> = ["routes.json", "routes6.json"]
            .iter()
            .filter_map(|f| read(f))
            .filter_map(|d| serde_json::from_slice::<Vec<Route>>(&d).ok())
            .flatten()
            .collect();
        for route in routes.iter().filter(|r| r.dev.as_deref() == Some(link.ifname.as_str())) {
            let Some(gateway) = &route.gateway else { continue };
            let _ = command::run(
                "ip",
                &[
                    "route".into(),
                    "add".into(),
                    route.dst.clone(),
                    "via".into(),
                    gateway.clone(),
                    "dev".into(),
                    name.clone(),
                ],
                None,
            );
            let destination =
                if route.dst == "default" { String::new() } else { format!("Destination={}\n", route.dst) };
            unit.push_str(&format!("\n[Route]\n{destination}Gateway={gateway}\nGatewayOnLink=yes\n"));
            done.actions.push(format!("route {} via {gateway} on {name}", route.dst));
        }
        if fs::create_dir_all(&network_dir).is_ok() {
            let _ = fs::write(network_dir.join(format!("10-nix-dabei-{name}.network")), unit);
        }
    }
    Ok(done)
}
