//! The kexec bootstrap: on a rescue system, collect what the RAM OS needs to stay reachable (root's
//! authorized keys, the SSH host keys, addresses, routes, DNS servers), pack it as a cpio appended to
//! the RAM OS initrd, load it, and switch a moment later, detached. In the RAM OS, restore it.

#![deny(missing_docs)]

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use installer::command::{self, CommandError};

pub mod initrd;
pub mod network;

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
        "not enough free memory to load the RAM OS: loading needs about {needed_mib} MiB beside the running \
         system but only {available_mib} MiB are available; stop what runs there or use a machine with more memory"
    )]
    NotEnoughMemory {
        /// What it needs.
        needed_mib: u64,
        /// What there is.
        available_mib: u64,
    },
    /// The machine is too small for the RAM OS, whatever runs now.
    #[error(
        "this machine is too small for the RAM OS: it needs about {needed_mib} MiB of memory in all, the machine \
         has {total_mib} MiB"
    )]
    TooSmall {
        /// What the RAM OS needs once it runs.
        needed_mib: u64,
        /// What the machine has.
        total_mib: u64,
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
    let ip = |args: &[&str]| command::run("ip", &args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(), None);
    // -details names each interface's kind (VLAN, bond), so that the RAM OS can tell ports from masters.
    add("addresses.json", ip(&["-json", "-details", "address", "show"])?.into_bytes(), 0o644);
    add("routes.json", ip(&["-json", "-4", "route", "show"])?.into_bytes(), 0o644);
    // A kernel without IPv6 has no IPv6 routes to carry.
    if let Ok(routes6) = ip(&["-json", "-6", "route", "show"]) {
        add("routes6.json", routes6.into_bytes(), 0o644);
    }
    // With systemd-resolved, /etc/resolv.conf names only its local stub; the servers it uses are here.
    let resolv = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .find(|text| !network::nameservers(text).is_empty());
    if let Some(resolv) = resolv {
        let servers: String = network::nameservers(&resolv).iter().map(|s| format!("nameserver {s}\n")).collect();
        add("resolv.conf", servers.into_bytes(), 0o644);
    }
    if let Some(id) = fs::read_to_string("/etc/machine-id").ok().and_then(|t| network::machine_id(&t)) {
        add("machine-id", format!("{id}\n").into_bytes(), 0o444);
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

/// A field of /proc/meminfo in bytes.
fn meminfo(field: &str) -> Result<u64, KexecError> {
    let text = fs::read_to_string("/proc/meminfo").map_err(io("read /proc/meminfo"))?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| KexecError::Io {
            action: format!("read {field} from /proc/meminfo"),
            source: std::io::Error::other("missing"),
        })?;
    Ok(kib * 1024)
}

/// MemAvailable in bytes.
pub fn memory_available() -> Result<u64, KexecError> {
    meminfo("MemAvailable")
}

/// Memory the RAM OS needs, in bytes, at the two moments that count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeeds {
    /// Beside the running rescue system, while loading: the kernel reads the initrd into a buffer and
    /// copies it into the segments it keeps until the switch, so the initrd counts twice for a moment,
    /// and more in practice: in the VM, loading 8 MiB of kernel and a 122 MiB initrd was killed for want
    /// of memory with 294 MiB available, and worked with 326 MiB.
    pub to_load: u64,
    /// In all, once the RAM OS runs (the rescue system is gone then): the kernel, the initrd unpacked
    /// (three times its size when compressed), and room to run and install.
    pub to_run: u64,
}

/// What the RAM OS needs, from the sizes of its kernel, its initrd and the initrd unpacked.
pub fn memory_needed(kernel: u64, initrd: u64, unpacked: u64) -> MemoryNeeds {
    // While the kernel unpacks the initrd both are in memory; then the initrd is freed and the room to
    // run and install takes its place.
    MemoryNeeds { to_load: kernel + initrd * 9 / 4 + (32 << 20), to_run: kernel + unpacked + initrd.max(RUN_ROOM) }
}

/// What the RAM OS needs beside its own files to run and install: the test image, booted by kexec in a
/// 576 MiB VM (516 MiB MemTotal), used at most 86 MiB beyond its unpacked 122 MiB initrd while
/// installing an encrypted ZFS mirror; Nix evaluating a flake needs more, which the margin and zswap cover.
const RUN_ROOM: u64 = 256 << 20;

/// Refuses when the RAM OS would not load beside the running system, or not run on this machine.
pub fn check_memory(kernel: &Path, initrd: &Path) -> Result<(), KexecError> {
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).map_err(io(format!("read {}", p.display())));
    let initrd_size = size(initrd)?;
    // Counted by decompressing (a RAM OS initrd holds a squashfs store that barely shrinks further, so no
    // ratio fits every initrd); three times its size where the compression is not one read here.
    let unpacked =
        initrd::unpacked_size(initrd).map_err(io(format!("read {}", initrd.display())))?.unwrap_or(initrd_size * 3);
    let needs = memory_needed(size(kernel)?, initrd_size, unpacked);
    let total = meminfo("MemTotal")?;
    if total < needs.to_run {
        return Err(KexecError::TooSmall { needed_mib: needs.to_run >> 20, total_mib: total >> 20 });
    }
    let available = memory_available()?;
    if available < needs.to_load {
        return Err(KexecError::NotEnoughMemory { needed_mib: needs.to_load >> 20, available_mib: available >> 20 });
    }
    Ok(())
}

/// The RAM OS initrd with the handover appended, for as long as the kernel is being loaded.
#[derive(Debug)]
pub enum StagedInitrd {
    /// Appended to the initrd itself, which is 0600 meanwhile (the handover holds the host's private
    /// keys): on a rescue system running from memory, a second copy would cost as much memory as the
    /// initrd. [`StagedInitrd::finish`] cuts it off and gives the file its mode back.
    Appended {
        /// The initrd.
        path: PathBuf,
        /// Its length before.
        length: u64,
        /// Its permission bits before.
        mode: u32,
    },
    /// A copy with the handover appended, for an initrd that cannot be written (a read-only store);
    /// [`StagedInitrd::finish`] removes it.
    Copy {
        /// The copy (0600).
        path: PathBuf,
    },
}

impl StagedInitrd {
    /// The file to load.
    pub fn path(&self) -> &Path {
        match self {
            StagedInitrd::Appended { path, .. } | StagedInitrd::Copy { path } => path,
        }
    }

    /// Takes the handover out again, once the kernel holds its own copy (or loading failed).
    pub fn finish(self) -> Result<(), KexecError> {
        match self {
            StagedInitrd::Appended { path, length, mode } => {
                let file =
                    fs::OpenOptions::new().write(true).open(&path).map_err(io(format!("open {}", path.display())))?;
                file.set_len(length).map_err(io(format!("restore {}", path.display())))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(io(format!("restore the mode of {}", path.display())))
            }
            StagedInitrd::Copy { path } => fs::remove_file(&path).map_err(io(format!("remove {}", path.display()))),
        }
    }
}

fn append_handover(file: &mut fs::File, length: u64, files: &[HandoverFile]) -> std::io::Result<()> {
    let padding = (512 - length % 512) % 512;
    file.write_all(&vec![0; padding as usize])?;
    file.write_all(&cpio(files))?;
    file.sync_all()
}

/// Appends the handover to the initrd (aligned as the kernel needs), in place when the file can be
/// written, else in a copy under `dir`; the initrd is streamed, never read into memory.
pub fn stage_initrd(initrd: &Path, files: &[HandoverFile], dir: &Path) -> Result<StagedInitrd, KexecError> {
    let in_place = fs::OpenOptions::new().append(true).open(initrd).and_then(|mut file| {
        let metadata = file.metadata()?;
        let (length, mode) = (metadata.len(), metadata.permissions().mode() & 0o7777);
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        match append_handover(&mut file, length, files) {
            Ok(()) => Ok(StagedInitrd::Appended { path: initrd.to_owned(), length, mode }),
            Err(error) => {
                let _ = file.set_len(length);
                let _ = file.set_permissions(fs::Permissions::from_mode(mode));
                Err(error)
            }
        }
    });
    if let Ok(staged) = in_place {
        return Ok(staged);
    }
    let mut source = fs::File::open(initrd).map_err(io(format!("read {}", initrd.display())))?;
    fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let path = dir.join("initrd-with-handover");
    let mut file = fs::File::create(&path).map_err(io(format!("create {}", path.display())))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io("restrict the initrd"))?;
    let length = std::io::copy(&mut source, &mut file).map_err(io(format!("write {}", path.display())))?;
    append_handover(&mut file, length, files).map_err(io(format!("write {}", path.display())))?;
    Ok(StagedInitrd::Copy { path })
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

/// Interface names of this system by their current MAC address (in the RAM OS no bond has changed it).
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
    /// What could not be carried over or applied, each with why.
    pub warnings: Vec<String>,
}

/// Writes `data` to `path` with `mode`, replacing a symlink (NixOS links managed files into the store,
/// which is read-only) rather than writing through it.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), KexecError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(io(format!("replace {}", path.display())))?;
    }
    fs::write(path, data).map_err(io(format!("write {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(format!("restrict {}", path.display())))
}

/// Restores keys, the machine id, name servers and network settings from a handover folder into the
/// system at `root`. Network settings become systemd-networkd units matched by MAC address (names can
/// differ between the two kernels), written for every carried interface whether or not it exists yet;
/// interfaces that exist now also get them at once through `ip`. Run it before networkd, resolved and
/// sshd start.
pub fn restore(dir: &Path, root: &Path) -> Result<Restored, KexecError> {
    let mut done = Restored::default();
    let read = |name: &str| fs::read(dir.join(name)).ok();
    if let Some(keys) = read("authorized_keys") {
        let ssh = root.join("root/.ssh");
        fs::create_dir_all(&ssh).map_err(io("create /root/.ssh"))?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).map_err(io("restrict /root/.ssh"))?;
        write_file(&ssh.join("authorized_keys"), &keys, 0o600)?;
        // sshd also reads /etc/ssh/authorized_keys.d/%u (NixOS's AuthorizedKeysFile, see
        // nixos/modules/services/networking/ssh/sshd.nix); keys configured there stay beside the carried ones.
        let keys_d = root.join("etc/ssh/authorized_keys.d/root");
        let mut merged = fs::read_to_string(&keys_d).unwrap_or_default();
        for key in String::from_utf8_lossy(&keys).lines() {
            if !merged.lines().any(|l| l == key) {
                if !merged.is_empty() && !merged.ends_with('\n') {
                    merged.push('\n');
                }
                merged.push_str(key);
                merged.push('\n');
            }
        }
        write_file(&keys_d, merged.as_bytes(), 0o644)?;
        done.actions.push("authorized_keys for root".into());
    }
    if let Ok(entries) = fs::read_dir(dir.join("ssh")) {
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let data = fs::read(dir.join("ssh").join(&name)).map_err(io(format!("read the carried {name}")))?;
            let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
            write_file(&root.join("etc/ssh").join(&name), &data, mode)?;
            done.actions.push(format!("host key {name}"));
        }
    }
    if let Some(id) = read("machine-id").and_then(|d| network::machine_id(&String::from_utf8_lossy(&d))) {
        let path = root.join("etc/machine-id");
        let current = fs::read_to_string(&path).ok().and_then(|t| network::machine_id(&t));
        // systemd reads the id once, at boot: the RAM OS's stage 1 puts it in place; here it fills a gap.
        if current.is_none() {
            write_file(&path, format!("{id}\n").as_bytes(), 0o444)?;
            done.actions.push("machine id".into());
        } else if current.as_deref() == Some(id.as_str()) {
            done.actions.push("machine id (already in place)".into());
        } else {
            done.warnings.push("machine id: this system already has another one; kept it".into());
        }
    }
    if let Some(resolv) = read("resolv.conf") {
        let servers = network::nameservers(&String::from_utf8_lossy(&resolv));
        if !servers.is_empty() {
            // Under /run: on NixOS, /etc/systemd is linked into the (read-only) store.
            let dropin = root.join("run/systemd/resolved.conf.d/10-nix-dabei.conf");
            write_file(&dropin, network::resolved_dropin(&servers).as_bytes(), 0o644)?;
            // Without resolved, /etc/resolv.conf is a plain file (or missing): the servers go there too.
            let resolv_conf = root.join("etc/resolv.conf");
            if !fs::symlink_metadata(&resolv_conf).is_ok_and(|m| m.file_type().is_symlink()) {
                let text: String = servers.iter().map(|s| format!("nameserver {s}\n")).collect();
                write_file(&resolv_conf, text.as_bytes(), 0o644)?;
            }
            done.actions.push(format!("DNS servers {}", servers.join(" ")));
        }
    }
    let Some(addresses) = read("addresses.json") else { return Ok(done) };
    let route_files: Vec<(&str, Vec<u8>)> =
        ["routes.json", "routes6.json"].into_iter().filter_map(|f| read(f).map(|d| (f, d))).collect();
    let routes: Vec<(&str, &[u8])> = route_files.iter().map(|(f, d)| (*f, d.as_slice())).collect();
    let carried = network::plan(&addresses, &routes);
    done.warnings.extend(carried.left_out.iter().cloned());
    let local = interfaces_by_mac();
    for interface in &carried.interfaces {
        // networkd reads /run/systemd/network beside /etc's (a store link on NixOS); the names sort together.
        let unit = root.join("run/systemd/network").join(interface.unit_name());
        write_file(&unit, interface.unit().as_bytes(), 0o644)?;
        let here = local.iter().find(|(mac, _)| *mac == interface.mac).map(|(_, name)| name.as_str());
        let name = here.unwrap_or(&interface.name);
        let settings: Vec<String> = interface
            .addresses
            .iter()
            .cloned()
            .chain(interface.dhcp4.then(|| "DHCP (IPv4)".to_owned()))
            .chain(interface.routes.iter().map(|r| match &r.gateway {
                Some(gateway) => {
                    format!("route {} via {gateway}{}", r.destination, if r.onlink { " onlink" } else { "" })
                }
                None => format!("route {}", r.destination),
            }))
            .collect();
        done.actions.push(format!("{} on {name} ({}): {}", interface.unit_name(), interface.mac, settings.join(", ")));
        let Some(name) = here else {
            done.warnings.push(format!(
                "{} ({}) is not here yet: networkd configures it when it appears",
                interface.name, interface.mac
            ));
            continue;
        };
        for args in interface.commands(name) {
            if let Err(error) = command::run("ip", &args, None) {
                done.warnings.push(format!("ip {}: {error}", args.join(" ")));
            }
        }
    }
    Ok(done)
}
