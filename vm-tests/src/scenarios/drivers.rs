//! What the host does besides booting: the drivers that talk to a running guest over SSH (the kexec and
//! remote scenarios) and the preparations that put computed files into the share before the first boot.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::checks::read;
use super::{Driver, Prepare};

/// The driver a manifest names.
pub fn by_name(name: &str) -> Option<Driver> {
    match name {
        "kexec" => Some(drive_kexec),
        "remote" => Some(drive_remote),
        "hetzner" => Some(drive_hetzner),
        "hetzner-robot" => Some(drive_hetzner_robot),
        _ => None,
    }
}

/// The preparation a manifest names.
pub fn preparation(name: &str) -> Option<Prepare> {
    match name {
        "power-cuts" => Some(prepare_power_cuts),
        _ => None,
    }
}

/// The power-cut scenario's plan as the guest makes it (the step ids depend only on the plan's names,
/// which are the guest's too), its steps, and the steps to cut into with how long after their start:
/// the first of each kind that takes long enough to be cut into.
pub fn power_cut_steps() -> (Vec<layouts::Step>, Vec<String>) {
    use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
    let facts =
        ["c0", "c1"].iter().map(|s| DiskFacts::offline(format!("/dev/disk/by-id/virtio-{s}"), 3 << 30)).collect();
    let mut options = PresetOptions::new(PresetKind::Mirror, facts);
    options.encryption = Encryption::Luks;
    options.flake = Some("path:/etc/nixos#vm".into());
    // As the guest plans it: booted with SeaBIOS, a BIOS boot partition on each disk.
    options.boot = layouts::BootMode::Both;
    let steps = match build(&options).map(|p| p.compile(&layouts::CompileOptions::default())) {
        Ok(Ok(steps)) => steps.steps,
        _ => Vec::new(),
    };
    let mut inside = Vec::new();
    for (prefix, millis) in [("luks-format:", 30), ("zpool-create:", 300), ("mkfs:", 15)] {
        if let Some(step) = steps.iter().find(|s| s.id.starts_with(prefix)) {
            inside.push(format!("{}:{millis}", step.id));
        }
    }
    (steps, inside)
}

/// Writes `scenario/cut-inside` for power-cuts/cut.sh: the steps to cut into ([`power_cut_steps`]).
fn prepare_power_cuts(share: &Path) -> Result<()> {
    let (steps, inside) = power_cut_steps();
    ensure!(!steps.is_empty() && inside.len() == 3, "the power-cut plan does not compile to the steps to cut into");
    fs::write(share.join("scenario/cut-inside"), inside.join(","))?;
    Ok(())
}

fn ssh(share: &Path, port: u16, strict: &str, command: &str) -> Result<std::process::Output> {
    ssh_with_key(share, "test_key", port, strict, command)
}

fn ssh_with_key(share: &Path, key: &str, port: u16, strict: &str, command: &str) -> Result<std::process::Output> {
    let output = std::process::Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(share.join(key))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", share.join("known_hosts").display()))
        .args([
            "-o",
            &format!("StrictHostKeyChecking={strict}"),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            command,
        ])
        .output()?;
    Ok(output)
}

fn wait_for_file(path: &Path, limit: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while !path.exists() {
        ensure!(start.elapsed() < limit, "{} did not appear within {} s", path.display(), limit.as_secs());
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

const GUEST_PATH: &str = "export PATH=/host/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NIX_DABEI_WEAK_KDF=1;";

/// The host side of the kexec scenario.
fn drive_kexec(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    fs::create_dir_all(&out)?;
    for name in ["test_key", "cloud_key"] {
        let generated = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(share.join(name))
            .status()?;
        ensure!(generated.success(), "ssh-keygen failed");
    }
    wait_for_file(&out.join("rescue-ready"), Duration::from_secs(120))?;
    let first = ssh(share, port, "accept-new", "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo")?;
    fs::write(out.join("meminfo-rescue.txt"), &first.stdout)?;
    ensure!(first.status.success(), "ssh into the rescue system failed: {}", String::from_utf8_lossy(&first.stderr));
    let kexec = ssh(
        share,
        port,
        "yes",
        &format!(
            "{GUEST_PATH} nix-dabei kexec --kernel /host/bzImage --initrd /host/initrd.zst --delay 15 \
            --append 'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests=1 nix_dabei_boot=2'"
        ),
    )?;
    fs::write(out.join("kexec.txt"), [kexec.stdout.clone(), kexec.stderr.clone()].concat())?;
    ensure!(kexec.status.success(), "nix-dabei kexec failed: {}", String::from_utf8_lossy(&kexec.stderr));
    // The SSH session that asked for the switch has returned before it: the rescue system still answers.
    let still_there = ssh(share, port, "yes", "true")?;
    ensure!(still_there.status.success(), "the kexec session returned only with the switch (it held the session)");
    wait_for_file(&out.join("ramos-ready"), Duration::from_secs(180))?;
    // The cloud image's key, carried without the command that refused root.
    let cloud = ssh_with_key(share, "cloud_key", port, "yes", "true")?;
    ensure!(
        cloud.status.success(),
        "the key from authorized_keys2 does not let root in after kexec ({}): {}",
        cloud.status,
        String::from_utf8_lossy(&cloud.stdout)
    );
    // The same host key (strict checking) and the carried authorized key let us in.
    let address = ssh(share, port, "yes", "ip -4 -o address show")?;
    ensure!(address.status.success(), "ssh into the RAM OS failed: {}", String::from_utf8_lossy(&address.stderr));
    let addresses = String::from_utf8_lossy(&address.stdout);
    ensure!(addresses.contains("10.0.2.15/24"), "the static address was not carried over: {addresses}");
    let network = ssh(
        share,
        port,
        "yes",
        "/usr/sbin/ip -6 -o address show scope global; /usr/sbin/ip route show 192.0.2.0/24; \
         /usr/sbin/ip route show 198.18.0.0/15; cat /etc/machine-id; cat /run/systemd/network/10-nix-dabei-*.network",
    )?;
    let network = String::from_utf8_lossy(&network.stdout).into_owned();
    fs::write(out.join("network.txt"), &network)?;
    for expected in [
        "2001:db8:5::15/64",
        "192.0.2.0/24 via 10.0.3.1",
        "onlink",
        "198.18.0.0/15 dev ",
        "Destination=198.18.0.0/15\nScope=link",
        "0123456789abcdef0123456789abcdef",
        "Address=10.0.2.15/24",
        "Address=2001:db8:5::15/64",
        "Destination=192.0.2.0/24\nGateway=10.0.3.1\nGatewayOnLink=yes",
    ] {
        ensure!(network.contains(expected), "not carried over: {expected:?} in\n{network}");
    }
    let install = ssh(
        share,
        port,
        "yes",
        &format!(
            "{GUEST_PATH} nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-x0 --disk \
                /dev/disk/by-id/virtio-x1 -o /host/plan.toml >/dev/null && \
             nix-dabei apply /host/plan.toml --yes-wipe-all --passphrase-file /host/passphrase --json && \
             nix-dabei unmount /host/plan.toml --json"
        ),
    )?;
    let events = String::from_utf8_lossy(&install.stdout).into_owned();
    fs::write(out.join("install.jsonl"), &events)?;
    ensure!(
        install.status.success(),
        "the install over SSH failed: {}\n{events}",
        String::from_utf8_lossy(&install.stderr)
    );
    let finished: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["event"] == "finished")
        .collect();
    ensure!(
        finished.len() == 2 && finished.iter().all(|e| e["ok"] == true),
        "the install did not finish well: {events}"
    );
    let restore = read(&out.join("restore.txt"))?;
    ensure!(
        restore.contains("restored authorized_keys for root")
            && restore.contains("restored host key ssh_host_ed25519_key")
            && restore.contains("restored machine id")
            && restore.contains("restored DNS servers 10.0.2.3"),
        "{restore}"
    );
    let _ = ssh(share, port, "yes", "touch /host/out/installed");
    Ok(())
}

/// Debian's Nix on the host, as root without its daemon: no build users, no binary cache, and builders
/// that are the host's /bin/sh.
const HOST_NIX_CONFIG: &str =
    "build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes";

/// `nix-dabei remote` on the host, against the guest, with the test's key and known_hosts.
fn remote_command(share: &Path, port: u16, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(share.join("bin/nix-dabei"));
    command
        .args(["remote", "root@127.0.0.1", "-p", &port.to_string(), "-i"])
        .arg(share.join("test_key"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", share.join("known_hosts").display()))
        .args(["-o", "StrictHostKeyChecking=accept-new", "--json", "--plan"])
        .arg(share.join("plan.toml"))
        .args(["--kexec-tarball"])
        .arg(share.join("kexec.tar.gz"))
        .args(["--passphrase-file"])
        .arg(share.join("passphrase"))
        .args(extra)
        .stdin(std::process::Stdio::null());
    command
}

fn disk_digests(share: &Path, serials: &[&str]) -> Result<String> {
    let machine = share.parent().context("machine folder")?;
    let output = std::process::Command::new("sha256sum")
        .args(serials.iter().map(|s| machine.join(format!("{s}.img"))))
        .output()?;
    ensure!(output.status.success(), "sha256sum failed");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The host side of the remote scenario.
fn drive_remote(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    prepare_workstation(share, Some("bios"))?;
    wait_for_file(&out.join("rescue-ready"), Duration::from_secs(120))?;
    remote_flow(share, port, &out)
}

/// What the workstation holds before a remote install: the test's key and a kexec tarball laid out as
/// the flake's; with `planned_here` (the boot mode), also the plan (an encrypted mirror of the two disks)
/// and its module for the flake.
fn prepare_workstation(share: &Path, planned_here: Option<&str>) -> Result<()> {
    let out = share.join("out");
    fs::create_dir_all(&out)?;
    let generated = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(share.join("test_key"))
        .status()?;
    ensure!(generated.success(), "ssh-keygen failed");
    let binary = share.join("bin/nix-dabei");
    if let Some(boot) = planned_here {
        // The plan is made on the workstation; its module goes into the flake before the install.
        let plan = std::process::Command::new(&binary)
            .args(["plan", "--preset", "mirror", "--encrypt", "--disk", "/dev/disk/by-id/virtio-x0", "--disk"])
            .args(["/dev/disk/by-id/virtio-x1", "--offline-size", "3G", "--boot", boot])
            .args(["--flake", "path:/etc/nixos#vm", "-o"])
            .arg(share.join("plan.toml"))
            .output()?;
        ensure!(plan.status.success(), "plan failed: {}", String::from_utf8_lossy(&plan.stderr));
        let module = std::process::Command::new(&binary).arg("nixos-module").arg(share.join("plan.toml")).output()?;
        ensure!(module.status.success(), "nixos-module failed");
        fs::write(share.join("nix-dabei.nix"), &module.stdout)?;
    }
    // A kexec tarball as the flake's: kexec/{bzImage,initrd,nix-dabei,run}.
    let kexec = share.join("tarball/kexec");
    fs::create_dir_all(&kexec)?;
    fs::copy(share.join("bzImage"), kexec.join("bzImage"))?;
    fs::copy(share.join("initrd.zst"), kexec.join("initrd"))?;
    fs::copy(&binary, kexec.join("nix-dabei"))?;
    fs::write(
        kexec.join("run"),
        "#!/bin/sh\nset -eu\nhere=$(cd \"$(dirname \"$0\")\" && pwd)\nexec \"$here/nix-dabei\" kexec --kernel \
         \"$here/bzImage\" --initrd \"$here/initrd\" --delay 3 \
         --append 'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests=1 nix_dabei_boot=2'\n",
    )?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut fs::metadata(kexec.join("run"))?.permissions(), 0o755);
    let packed = std::process::Command::new("sh")
        .arg("-c")
        .arg("chmod 755 tarball/kexec/run && tar -C tarball -cf - kexec | gzip -1 > kexec.tar.gz")
        .current_dir(share)
        .status()?;
    ensure!(packed.success(), "cannot pack the kexec tarball");
    Ok(())
}

/// The remote scenario's runs against the rescue system that answers on `port`.
fn remote_flow(share: &Path, port: u16, out: &Path) -> Result<()> {
    let disks = ["x0", "x1"];
    let before = disk_digests(share, &disks)?;

    // The flake on the far side, built there; and one here, built here (`--build-on local`): the stand-in
    // configuration with a system of two store paths, built by this machine's Nix without nixpkgs.
    let far_flake = ["--flake", "path:/etc/nixos#vm"];
    let flake = share.join("flake");
    fs::create_dir_all(&flake)?;
    fs::write(flake.join("flake.nix"), include_str!("../../image/flake.nix"))?;
    fs::copy(share.join("lib/built-here.nix"), flake.join("override.nix"))?;
    fs::copy(share.join("nix-dabei.nix"), flake.join("nix-dabei.nix"))?;
    let local_flake = format!("path:{}#vm", flake.display());

    // A dry run from the rescue system: the review, and nothing written.
    let dry = remote_command(share, port, &[&far_flake[..], &["--dry-run"]].concat()).output()?;
    let dry_events = String::from_utf8_lossy(&dry.stdout).into_owned();
    fs::write(out.join("remote-dry-run.jsonl"), &dry_events)?;
    ensure!(dry.status.success(), "the dry run failed: {}\n{dry_events}", String::from_utf8_lossy(&dry.stderr));
    let events = json_lines(&dry_events);
    let review = events.iter().find(|e| e["event"] == "reviewed").context("no review in the dry run")?;
    ensure!(review["review"]["wipes"].as_array().map(Vec::len) == Some(2), "the review wipes two disks: {review}");
    ensure!(!events.iter().any(|e| e["event"] == "phase-started" && e["phase"] == "apply"), "the dry run applied");
    ensure!(disk_digests(share, &disks)? == before, "the dry run changed a disk");
    let leftover = ssh(share, port, "yes", "test ! -e /run/nix-dabei/remote-dry-run")?;
    ensure!(leftover.status.success(), "the dry run left its folder behind");

    // The whole flow; after kexec the machine shows another host key, and the run stops there.
    let refused = remote_command(share, port, &[&far_flake[..], &["--yes-wipe-all", "--boot-timeout", "300"]].concat())
        .output()?;
    let refused_events = String::from_utf8_lossy(&refused.stdout).into_owned();
    fs::write(out.join("remote-wrong-key.jsonl"), &refused_events)?;
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    ensure!(!refused.status.success(), "a changed host key after kexec was accepted: {refused_events}");
    ensure!(stderr.contains("host key changed"), "the refusal does not say why: {stderr}");
    let kexec_failed = json_lines(&refused_events)
        .into_iter()
        .any(|e| e["event"] == "phase-failed" && e["phase"] == "kexec" && e["error"].to_string().contains("host key"));
    ensure!(kexec_failed, "no phase-failed event for kexec: {refused_events}");
    ensure!(out.join("ramos-wrong-key").exists(), "the RAM OS did not come up");
    ensure!(disk_digests(share, &disks)? == before, "a disk was written before the host key was checked");
    fs::write(out.join("right-key"), "")?;
    wait_for_file(&out.join("ramos-ready"), Duration::from_secs(60))?;

    // Again, with the carried key: killed (with its SSH connections) in the middle of apply ...
    let first = remote_command(share, port, &[&far_flake[..], &["--yes-wipe-all"]].concat());
    let (seen, in_apply) = kill_during_apply(first, |_| {})?;
    fs::write(out.join("remote-killed.jsonl"), &seen)?;
    ensure!(in_apply, "the run ended before apply: {seen}");

    // ... and run once more: it reattaches to the apply still running there, checks and builds the system
    // here, copies it into the target's store there, installs it and reboots.
    let last = remote_command(share, port, &["--yes-wipe-all", "--post-install-check", "zpool list -H -o name,health"])
        .args(["--flake", &local_flake, "--build-on", "local"])
        .env("NIX_CONFIG", HOST_NIX_CONFIG)
        .output()?;
    let last_events = String::from_utf8_lossy(&last.stdout).into_owned();
    fs::write(out.join("remote-resumed.jsonl"), &last_events)?;
    fs::write(out.join("remote-resumed.stderr"), &last.stderr)?;
    let _ = fs::write(out.join("done"), "");
    ensure!(last.status.success(), "the resumed run failed: {}\n{last_events}", String::from_utf8_lossy(&last.stderr));
    let events = json_lines(&last_events);
    let skipped_plan = events.iter().find(|e| e["event"] == "phase-skipped" && e["phase"] == "plan");
    ensure!(
        skipped_plan.is_some_and(|e| e["reason"].as_str().is_some_and(|r| r.contains("reattaching"))),
        "the second run did not reattach to the running apply: {last_events}"
    );
    for phase in ["apply", "install", "reboot"] {
        ensure!(
            events.iter().any(|e| e["event"] == "phase-finished" && e["phase"] == phase),
            "phase {phase} did not finish: {last_events}"
        );
    }
    let noted = |text: &str| {
        events.iter().any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains(text)))
    };
    ensure!(noted("against the plan here"), "the flake was not checked here: {last_events}");
    ensure!(noted("-nixos-system-vm; copying"), "the system was not built here: {last_events}");
    ensure!(
        events.iter().any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains("ONLINE"))),
        "the post-install check did not see the pool: {last_events}"
    );
    ensure!(out.join("rebooted").exists(), "no reboot was asked for");
    Ok(())
}

/// Runs `command` (JSON events on its standard output) until apply has finished its first step, then kills
/// it with its SSH connections (its process group). Returns what it printed and whether apply started;
/// `on_event` sees each event as it comes.
fn kill_during_apply(mut command: std::process::Command, mut on_event: impl FnMut(&Value)) -> Result<(String, bool)> {
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut seen = String::new();
    let mut in_apply = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        on_event(&event);
        in_apply |= event["event"] == "phase-started" && event["phase"] == "apply";
        if in_apply && event["event"] == "step-finished" {
            break;
        }
    }
    let group = child.id().to_string();
    let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
    let _ = child.wait();
    Ok((seen, in_apply))
}

/// `nix-dabei hetzner cloud create` as the README has it, against the stand-in of the Cloud API on this
/// host, with the test's key; the server is the guest, reached through the forwarded `port`. The plan is
/// made there by rules (an encrypted mirror of the two largest disks); the plan and its module come back
/// here, the module into the flake here, which this host's Nix checks and builds (`--build-on local`).
fn hetzner_command(share: &Path, api: &str, port: u16, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(share.join("bin/nix-dabei"));
    let flake = share.join("flake");
    command
        .args(["hetzner", "cloud", "create", "web1", "--type", "cx22", "--location", "fsn1", "--ssh-key"])
        .arg(share.join("test_key.pub"))
        .args(["--api-url", api, "--rescue", "--yes", "--json", "-p", &port.to_string()])
        .args(["--preset", "mirror", "--encrypt", "--disk-select", "largest:2", "--plan-out"])
        .arg(share.join("plan.toml"))
        .arg("--module-out")
        .arg(flake.join("nix-dabei.nix"))
        .arg("--kexec-tarball")
        .arg(share.join("kexec.tar.gz"))
        .arg("--passphrase-file")
        .arg(share.join("passphrase"))
        .args(["--flake", &format!("path:{}#vm", flake.display()), "--build-on", "local"])
        .args(["--yes-wipe-all", "--boot-timeout", "300"])
        .args(extra)
        .env("HCLOUD_TOKEN", testkit::hetzner::TOKEN)
        .env("NIX_CONFIG", HOST_NIX_CONFIG)
        .env("XDG_CACHE_HOME", share.join("cache"))
        .stdin(std::process::Stdio::null());
    command
}

/// The host side of the hetzner scenario: the stand-in's one server is the guest, which boots (its
/// rescue system) once the API has the key, with that key; the command is killed with its connections in
/// the middle of apply and run again, which finds its server and finishes the install.
fn drive_hetzner(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    // No plan here: it is made there by rules, and its module written into this flake (which imports it)
    // before the flake is checked.
    prepare_workstation(share, None)?;
    let flake = share.join("flake");
    fs::create_dir_all(&flake)?;
    fs::write(flake.join("flake.nix"), include_str!("../../image/flake.nix"))?;
    fs::copy(share.join("lib/built-here.nix"), flake.join("override.nix"))?;
    let fingerprint = |line: &str| hetzner::PublicKey::parse(line).map(|k| k.fingerprint).unwrap_or_default();
    let standin = testkit::hetzner::StandIn::start(fingerprint);
    standin.state().server_ip = Some("127.0.0.1".into());
    standin.state().hold_actions = true;
    standin.state().hold_on_reset = true;
    let state = standin.state.clone();
    let machine_out = out.clone();
    // "Creating" the server: the key the API was given becomes the guest's root key, and the actions
    // finish once the guest answers.
    let booting = std::thread::spawn(move || -> Result<()> {
        let started = std::time::Instant::now();
        // The key the API was given, once the server is made.
        give_the_guest_its_key(&state, &machine_out, "no server was made", |s| {
            let made = !s.servers.is_empty();
            s.ssh_keys.first().filter(|_| made).and_then(|k| k["public_key"].as_str().map(str::to_string))
        })?;
        wait_for_file(&machine_out.join("rescue-ready"), Duration::from_secs(120))?;
        if let Ok(mut state) = state.lock() {
            state.hold_actions = false;
        }
        // --rescue: the reset holds the actions again until the machine is in its rescue system.
        while state.lock().map(|s| s.cloud_resets == 0).unwrap_or(false) {
            ensure!(started.elapsed() < Duration::from_secs(300), "no reset was asked for");
            std::thread::sleep(Duration::from_millis(200));
        }
        fs::write(machine_out.join("reset"), "")?;
        wait_for_file(&machine_out.join("rescue-reset-ready"), Duration::from_secs(120))?;
        if let Ok(mut state) = state.lock() {
            state.hold_actions = false;
        }
        Ok(())
    });
    let started = std::time::Instant::now();
    let first = hetzner_command(share, &standin.cloud_url, port, &[]);
    let mut phases = Vec::new();
    let (seen, in_apply) = kill_during_apply(first, |event| mark_phase(event, started, &mut phases))?;
    fs::write(out.join("hetzner-killed.jsonl"), &seen)?;
    booting.join().map_err(|_| anyhow::anyhow!("the booting thread panicked"))??;
    ensure!(in_apply, "the run ended before apply: {seen}");
    let events = json_lines(&seen);
    ensure!(events.iter().any(|e| e["event"] == "hetzner-offer"), "no offer was shown: {seen}");
    ensure!(events.iter().any(|e| e["event"] == "hetzner-server-created"), "no server was made: {seen}");
    let made_there = events.iter().find(|e| e["event"] == "plan-made").context("no plan was made there")?;
    let plan_text = read(&share.join("plan.toml"))?;
    ensure!(made_there["text"] == plan_text.as_str(), "the plan written here is not the one made there");
    let plan = layouts::Plan::from_toml(&plan_text)?;
    ensure!(
        read(&flake.join("nix-dabei.nix"))? == layouts::nixos::module(&plan),
        "the flake's module is not the plan's"
    );
    let serials: Vec<String> =
        plan.disks.values().filter_map(|d| d.device.strip_prefix("/dev/disk/by-id/")).map(String::from).collect();
    ensure!(serials == ["virtio-x0", "virtio-x1"], "the rules chose other disks: {serials:?}");
    ensure!(
        events
            .iter()
            .any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains("against the plan here"))),
        "the flake was not checked here: {seen}"
    );
    let made = standin.state().received.len();
    phases.push(format!("{:6.1} s  killed during apply ({made} requests so far)", started.elapsed().as_secs_f64()));

    // Again: the same command finds its server, reattaches to the apply running there and finishes.
    let again = started.elapsed();
    let check = ["--post-install-check", "zpool list -H -o name,health"];
    let (events, last_events) =
        finish_after_kill(&out, "hetzner", hetzner_command(share, &standin.cloud_url, port, &check))?;
    ensure!(!events.iter().any(|e| e["event"] == "hetzner-server-created"), "a second server was made: {last_events}");
    let servers = standin.state().servers.len();
    ensure!(servers == 1, "{servers} servers were made");
    let resets = standin.state().cloud_resets;
    ensure!(resets == 1, "{resets} resets: the server found again was reset");
    let phases_seen: Vec<&str> =
        events.iter().filter(|e| e["event"] == "phase-finished").filter_map(|e| e["phase"].as_str()).collect();
    phases.push(format!(
        "{:6.1} s  second run done after {:.1} s: server found, {}",
        started.elapsed().as_secs_f64(),
        (started.elapsed() - again).as_secs_f64(),
        phases_seen.join(", ")
    ));
    let state = standin.state();
    let uploaded: usize = state.received.iter().filter_map(|r| r.body.as_ref()).map(|b| b.to_string().len()).sum();
    phases.push(format!("{} requests to the API, {uploaded} bytes of request bodies", state.received.len()));
    fs::write(out.join("hetzner-phases.txt"), phases.join("\n") + "\n")?;
    Ok(())
}

/// Waits (up to 300 s) until `key` finds in the stand-in's state the key root logs in with, and gives it to
/// the guest, whose first boot waits for it (`out/created`); `never` says what did not happen otherwise.
fn give_the_guest_its_key(
    state: &std::sync::Mutex<testkit::hetzner::State>,
    out: &Path,
    never: &str,
    key: impl Fn(&testkit::hetzner::State) -> Option<String>,
) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        if let Some(key) = state.lock().ok().and_then(|s| key(&s)) {
            fs::write(out.join("created"), format!("{key}\n"))?;
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_secs(300), "{never}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Marks, in a hetzner scenario's figures, when the command's own events and each finished phase came.
fn mark_phase(event: &Value, started: std::time::Instant, phases: &mut Vec<String>) {
    let name = event["event"].as_str().unwrap_or_default();
    if name.starts_with("hetzner-") || name == "phase-finished" {
        let what = event["phase"].as_str().unwrap_or(name);
        phases.push(format!("{:6.1} s  {what}", started.elapsed().as_secs_f64()));
    }
}

/// The second run of a hetzner scenario, after the first was killed during apply: its output kept as
/// `NAME-resumed.*`, the guest told it may end. It must have found its server again and finished apply,
/// install and reboot, with the post-install check seeing the pool. Returns its events and their text.
fn finish_after_kill(out: &Path, name: &str, mut command: std::process::Command) -> Result<(Vec<Value>, String)> {
    let last = command.output()?;
    let text = String::from_utf8_lossy(&last.stdout).into_owned();
    fs::write(out.join(format!("{name}-resumed.jsonl")), &text)?;
    fs::write(out.join(format!("{name}-resumed.stderr")), &last.stderr)?;
    let _ = fs::write(out.join("done"), "");
    ensure!(last.status.success(), "the second run failed: {}\n{text}", String::from_utf8_lossy(&last.stderr));
    let events = json_lines(&text);
    ensure!(events.iter().any(|e| e["event"] == "hetzner-server-found"), "the server was not found again: {text}");
    for phase in ["apply", "install", "reboot"] {
        ensure!(
            events.iter().any(|e| e["event"] == "phase-finished" && e["phase"] == phase),
            "phase {phase} did not finish: {text}"
        );
    }
    ensure!(
        events.iter().any(|e| e["event"] == "note" && e["text"].as_str().is_some_and(|t| t.contains("ONLINE"))),
        "the post-install check did not see the pool: {text}"
    );
    Ok((events, text))
}

/// The stand-in Robot's number for the guest.
const ROBOT_SERVER: u64 = 2_345_678;

/// `nix-dabei hetzner robot install` as the README has it, against the stand-in Robot on this host, with
/// the test's key and a plan file made here; the flake is the far side's, built there.
fn robot_command(share: &Path, robot: &str, port: u16, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(share.join("bin/nix-dabei"));
    command
        .args(["hetzner", "robot", "install", &ROBOT_SERVER.to_string(), "--ssh-key"])
        .arg(share.join("test_key.pub"))
        .args(["--robot-url", robot, "--json", "-p", &port.to_string(), "--plan"])
        .arg(share.join("plan.toml"))
        .arg("--kexec-tarball")
        .arg(share.join("kexec.tar.gz"))
        .arg("--passphrase-file")
        .arg(share.join("passphrase"))
        .args(["--flake", "path:/etc/nixos#vm", "--yes-wipe-all", "--boot-timeout", "300"])
        .args(extra)
        .env("HROBOT_USER", testkit::hetzner::ROBOT_USER)
        .env("HROBOT_PASSWORD", testkit::hetzner::ROBOT_PASSWORD)
        .env("XDG_CACHE_HOME", share.join("cache"))
        .stdin(std::process::Stdio::null());
    command
}

/// The host side of the hetzner-robot scenario: the stand-in Robot's dedicated server is the guest, which
/// comes up in its rescue system once Robot has its rescue activated and a reset asked for, with the key
/// rescue was given; the command is killed with its connections in the middle of apply and run again,
/// which finds the server in the first run's RAM OS (no second reset) and finishes the install.
fn drive_hetzner_robot(share: &Path, port: u16) -> Result<()> {
    let out = share.join("out");
    prepare_workstation(share, Some("bios"))?;
    let fingerprint = |line: &str| hetzner::PublicKey::parse(line).map(|k| k.fingerprint).unwrap_or_default();
    let standin = testkit::hetzner::StandIn::start(fingerprint);
    standin.add_dedicated(ROBOT_SERVER, "127.0.0.1");
    let state = standin.state.clone();
    let machine_out = out.clone();
    // The reset "reboots" the server into rescue with the keys rescue was activated with.
    let booting = std::thread::spawn(move || -> Result<()> {
        give_the_guest_its_key(&state, &machine_out, "no rescue and reset were asked for", |s| {
            let given = s.rescue.get(&ROBOT_SERVER).filter(|_| s.resets.contains(&ROBOT_SERVER))?.first()?.clone();
            s.robot_keys.iter().find(|k| k["fingerprint"] == given.as_str())?["data"].as_str().map(str::to_string)
        })?;
        Ok(())
    });
    let started = std::time::Instant::now();
    let mut phases = Vec::new();
    let first = robot_command(share, &standin.robot_url, port, &[]);
    let (seen, in_apply) = kill_during_apply(first, |event| mark_phase(event, started, &mut phases))?;
    fs::write(out.join("robot-killed.jsonl"), &seen)?;
    booting.join().map_err(|_| anyhow::anyhow!("the booting thread panicked"))??;
    ensure!(in_apply, "the run ended before apply: {seen}");
    {
        let state = standin.state();
        ensure!(state.resets == [ROBOT_SERVER], "resets: {:?}", state.resets);
        ensure!(state.robot_keys.len() == 1, "the key was not stored once: {:?}", state.robot_keys);
    }
    let made = standin.state().received.len();
    phases.push(format!("{:6.1} s  killed during apply ({made} requests so far)", started.elapsed().as_secs_f64()));

    let again = started.elapsed();
    let check = ["--post-install-check", "zpool list -H -o name,health"];
    let (events, last_events) =
        finish_after_kill(&out, "robot", robot_command(share, &standin.robot_url, port, &check))?;
    let resets = standin.state().resets.len();
    ensure!(resets == 1, "{resets} resets: the server in the middle of its install was reset");
    let skipped_plan = events.iter().find(|e| e["event"] == "phase-skipped" && e["phase"] == "plan");
    ensure!(
        skipped_plan.is_some_and(|e| e["reason"].as_str().is_some_and(|r| r.contains("reattaching"))),
        "the second run did not reattach to the running apply: {last_events}"
    );
    phases.push(format!(
        "{:6.1} s  second run done after {:.1} s",
        started.elapsed().as_secs_f64(),
        (started.elapsed() - again).as_secs_f64()
    ));
    phases.push(format!("{} requests to Robot", standin.state().received.len()));
    fs::write(out.join("robot-phases.txt"), phases.join("\n") + "\n")?;
    Ok(())
}
