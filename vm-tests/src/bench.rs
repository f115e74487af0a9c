//! The benchmark against disko (`vm-tests bench`). For each layout, one boot makes it again and again on
//! the same two disks: disko's own `_create` and `_mount` scripts (evaluated on the host from disko's
//! lib with `nix-instantiate`, for the configuration `nix-dabei export-disko` writes of the same plan)
//! against `nix-dabei apply` and `nix-dabei mount`, alternating which side goes first, with everything
//! torn down, wiped and the page cache dropped before each run. Both sides derive keys the same way:
//! weakly in the timed runs (as the test builds do), then once each with production settings.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use vm_tests::vm::DiskSpec;

use crate::scenarios::{finished, BootScript, Scenario, GIB, PASSPHRASE};

/// Timed runs of each side per layout: 5, or `NIX_DABEI_BENCH_RUNS` (fewer for a quick look at one change,
/// whose medians are then not the benchmark's figures).
fn runs() -> usize {
    std::env::var("NIX_DABEI_BENCH_RUNS").ok().and_then(|runs| runs.parse().ok()).filter(|&runs| runs > 0).unwrap_or(5)
}

/// What strace records of the untimed mount: every program started (`execve`), or with
/// `NIX_DABEI_BENCH_TRACE=all` every system call of every thread, with times, for finding where mount's
/// own time goes (the file is left in the scenario's share, `out/<layout>/strace-mount.txt`).
fn trace_filter() -> &'static str {
    match std::env::var("NIX_DABEI_BENCH_TRACE").as_deref() {
        Ok("all") => "",
        _ => "-e trace=execve -e signal=none",
    }
}

/// What disko's prompts read from standard input.
#[derive(Clone, Copy, PartialEq)]
enum Secrets {
    None,
    /// `zpool create` and `zpool import -l` read the passphrase once.
    ZfsNative,
    /// Each LUKS device's passphrase: twice when formatting (typed and confirmed), once when opening.
    Luks {
        devices: usize,
    },
}

/// A layout of the benchmark: a plan in vm-tests/bench.
struct Layout {
    name: &'static str,
    disks: usize,
    secrets: Secrets,
    /// A mirror: the target for apply is 0.8 times disko's `_create` there, where disks work in parallel.
    mirror: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout { name: "zfs-native-mirror", disks: 2, secrets: Secrets::ZfsNative, mirror: true },
    Layout { name: "zfs-on-luks-mirror", disks: 2, secrets: Secrets::Luks { devices: 2 }, mirror: true },
    Layout { name: "ext4-single", disks: 1, secrets: Secrets::None, mirror: false },
    Layout { name: "lvm-single", disks: 1, secrets: Secrets::None, mirror: false },
];

/// The layouts to run: all, or those named in `NIX_DABEI_BENCH_LAYOUTS` (comma-separated), for measuring
/// one change on the layouts it concerns.
fn layouts() -> Vec<&'static Layout> {
    let chosen = std::env::var("NIX_DABEI_BENCH_LAYOUTS").unwrap_or_default();
    let chosen: Vec<&str> = chosen.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    LAYOUTS.iter().filter(|layout| chosen.is_empty() || chosen.contains(&layout.name)).collect()
}

/// The benchmark as a scenario of the harness: one boot per layout, figures printed by its check.
pub fn scenario() -> Scenario {
    Scenario {
        name: "bench".into(),
        folder: None,
        copy: Vec::new(),
        disks: vec![DiskSpec::virtio("b0", 3 * GIB), DiskSpec::virtio("b1", 3 * GIB)],
        boots: layouts()
            .into_iter()
            .map(|layout| BootScript {
                source: format!("vm-tests/src/bench.rs for {}", layout.name),
                script: format!(". /host/lib/common.sh\n{}", guest_script(layout)),
            })
            .collect(),
        verify: print_figures,
        power_loss_boots: vec![],
        driver: None,
        // Production LUKS settings take up to 1 GiB for argon2id, which cryptsetup caps at half the memory.
        memory_mib: Some(3072),
        prepare: Some(prepare),
        repeat: None,
        boot_limit: Some(Duration::from_secs(1800)),
    }
}

/// The folder holding a file of ../shared, found from this crate upwards.
fn shared(folder: &str) -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared").join(folder))
        .find(|dir| dir.is_dir())
        .with_context(|| format!("no shared/{folder} beside the checkout (disko's and nixpkgs' lib are read from it)"))
}

fn run(command: &mut Command) -> Result<Vec<u8>> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output.stdout)
}

/// Writes, for each layout, the plan, disko's scripts for it and what disko's prompts read into
/// share/bench/<layout>/.
fn prepare(share: &Path) -> Result<()> {
    let sources = share.parent().context("no machine folder")?.join("nix-sources");
    fs::create_dir_all(&sources)?;
    let tarballs = shared("nix-sources")?;
    for tarball in ["nixpkgs-lib.tar.gz", "disko.tar.gz"] {
        run(Command::new("tar").arg("-xzf").arg(tarballs.join(tarball)).arg("-C").arg(&sources))?;
    }
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    let binary = share.join("bin/nix-dabei");
    for layout in layouts() {
        let folder = share.join("bench").join(layout.name);
        fs::create_dir_all(&folder)?;
        fs::copy(plans.join(format!("{}.toml", layout.name)), folder.join("plan.toml"))?;
        let config = folder.join("disko.nix");
        run(Command::new(&binary).arg("export-disko").arg(folder.join("plan.toml")).arg("-o").arg(&config))?;
        for (script, attr, weak) in [
            ("create.sh", "_create", true),
            ("create-production.sh", "_create", false),
            ("mount.sh", "_mount", true),
            ("unmount.sh", "_unmount", true),
        ] {
            let json = run(Command::new("nix-instantiate")
                .args(["--eval", "--strict", "--json"])
                .arg(plans.join("disko-scripts.nix"))
                .arg("--arg")
                .arg("nixpkgsLib")
                .arg(sources.join("nixpkgs-lib/lib"))
                .arg("--arg")
                .arg("disko")
                .arg(sources.join("disko"))
                .arg("--arg")
                .arg("config")
                .arg(&config)
                .args(["--argstr", "attr", attr, "--arg", "weak", if weak { "true" } else { "false" }]))?;
            let text: String = serde_json::from_slice(&json).context("disko's script is not a JSON string")?;
            fs::write(folder.join(script), text)?;
        }
        let (create, mount) = match layout.secrets {
            Secrets::None => (String::new(), String::new()),
            Secrets::ZfsNative => (PASSPHRASE.to_string(), PASSPHRASE.to_string()),
            Secrets::Luks { devices } => {
                (format!("{PASSPHRASE}\n").repeat(2 * devices), format!("{PASSPHRASE}\n").repeat(devices))
            }
        };
        fs::write(folder.join("create.stdin"), create)?;
        fs::write(folder.join("mount.stdin"), mount)?;
    }
    Ok(())
}

/// With `NIX_DABEI_BENCH_PARTS` set: after the traced mount, the parts of a mount timed on their own (each
/// from a cold page cache, medians of 5), written as "part <name> <seconds>" into the layout's `parts` file:
/// starting the program, compiling the plan, discovering the disks, the whole preview, and LVM's report
/// programs the probes run. The disks hold what the last apply made, unmounted.
const PARTS: &str = r#"
create_nix_dabei
unmount_nix_dabei
part() { # name command...
    name=$1; shift
    for i in 1 2 3 4 5; do
        sync; echo 3 > /proc/sys/vm/drop_caches
        t0=$(now); "$@" > /dev/null 2>&1; t1=$(now)
        echo "part $name $t0 $t1" >> "$out/parts"
    done
}
: > "$out/parts"
part version nix-dabei --version
part plan nix-dabei plan "$B/plan.toml"
part disks nix-dabei disks --json
part review nix-dabei apply "$B/plan.toml" --review-only --json
if [ -n "$(pvs --noheadings 2>/dev/null)" ]; then
    part pvs pvs --reportformat json -o pv_name,pv_uuid,vg_name,vg_uuid
    part lvs lvs --reportformat json -o vg_name,lv_name,lv_uuid,lv_size,segtype,pool_lv
fi
mount_and_unmount() { mount_nix_dabei; unmount_nix_dabei; }
part mount-and-unmount mount_and_unmount
"#;

/// The guest's part for one layout: the timed runs, then one run of each side with production key
/// derivation. Times are read from /proc/uptime and written as "<side> <phase> <run> <start> <end>".
fn guest_script(layout: &Layout) -> String {
    let disks: Vec<String> = (0..layout.disks).map(|i| format!("/dev/disk/by-id/virtio-b{i}")).collect();
    let production = if layout.secrets == Secrets::None {
        ""
    } else {
        "one disko production create-production.sh\n\
         (unset NIX_DABEI_WEAK_KDF; one nix-dabei production)\n"
    };
    format!(
        r#"
# bash's process substitution, which disko's LUKS steps use, needs /dev/fd.
ln -sfn /proc/self/fd /dev/fd
# As on the RAM OS, what either side runs is in memory, not on the share (slow under emulation); logs go
# to memory while timed and to the share after each run.
B=/tmp/bench/{name} DISKS="{disks}" out=/host/out/{name} logs=/tmp/bench-logs
mkdir -p "$out" "$logs" /tmp/bench /tmp/bin
cp -r /host/bench/{name} /tmp/bench/
cp /host/bin/nix-dabei /tmp/bin/
export PATH=/tmp/bin:$PATH
now() {{ cut -d' ' -f1 /proc/uptime; }}
# Everything either side made goes, then every signature, so that each run starts from blank disks and a
# cold page cache.
clean() {{
    umount -R /mnt 2>/dev/null || true
    swapoff -a
    zpool export -a || true
    vgchange -an >/dev/null 2>&1 || true
    for m in /dev/mapper/*; do [ "$m" = /dev/mapper/control ] || cryptsetup close "${{m##*/}}"; done
    for d in $DISKS; do
        for p in "$d"-part*; do
            [ -e "$p" ] || continue
            zpool labelclear -f "$p" 2>/dev/null || true
            wipefs -a -q "$p"
        done
        wipefs -a -q "$d"
        blockdev --rereadpt "$d"
    done
    udevadm settle
    rm -rf /var/lib/nix-dabei
    sync
    echo 3 > /proc/sys/vm/drop_caches
}}
# disko's scripts trace each command (set -x) with the time it started.
disko() {{ bash -c 'PS4="+ $EPOCHREALTIME "; . "$0"' "$B/$1" >> "$logs/disko.log" 2>&1; }}
create_disko() {{ disko "$1" < "$B/create.stdin"; }}
mount_disko() {{ disko mount.sh < "$B/mount.stdin"; }}
unmount_disko() {{ disko unmount.sh; }}
# apply's peak memory is sampled from /proc while it runs.
create_nix_dabei() {{
    nix-dabei apply "$B/plan.toml" --yes-wipe-all --passphrase-file /host/passphrase --json > "$logs/apply-$run.jsonl" &
    pid=$! peak=0
    while kill -0 $pid 2>/dev/null; do
        hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$pid/status 2>/dev/null || true)
        [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
        sleep 0.05
    done
    wait $pid
    echo "peak_rss_kib $run $peak" >> "$out/times"
}}
mount_nix_dabei() {{ nix-dabei mount "$B/plan.toml" --passphrase-file /host/passphrase > /dev/null; }}
unmount_nix_dabei() {{ nix-dabei unmount "$B/plan.toml" > /dev/null; }}
one() {{ # side run [script]
    side=$1 run=$2
    clean
    t0=$(now); create_$(echo $side | tr - _) "${{3:-create.sh}}"; t1=$(now)
    unmount_$(echo $side | tr - _)
    t2=$(now); mount_$(echo $side | tr - _); t3=$(now)
    findmnt -R -n -l -o TARGET,FSTYPE /mnt > "$out/mounts-$side-$run"
    awk 'NR > 1 {{ print "swap", $2 }}' /proc/swaps >> "$out/mounts-$side-$run"
    unmount_$(echo $side | tr - _)
    echo "$side create $run $t0 $t1" >> "$out/times"
    echo "$side mount $run $t2 $t3" >> "$out/times"
    cp "$logs"/* "$out/"
}}
: > "$out/times"
for run in $(seq 1 {runs}); do
    if [ $((run % 2)) = 1 ]; then one disko $run; one nix-dabei $run; else one nix-dabei $run; one disko $run; fi
done
{production}# Where mount's time goes: one more mount, untimed, under strace (every program it starts, and when
# each ends), after the same clean start as the timed runs.
clean
run=traced
create_nix_dabei
unmount_nix_dabei
sync
echo 3 > /proc/sys/vm/drop_caches
strace -f -ttt {trace} -o "$out/strace-mount.txt" \
    nix-dabei mount "$B/plan.toml" --passphrase-file /host/passphrase --json > "$out/mount-traced.jsonl"
unmount_nix_dabei
{parts}clean
"#,
        name = layout.name,
        disks = disks.join(" "),
        runs = runs(),
        trace = trace_filter(),
        parts = if std::env::var_os("NIX_DABEI_BENCH_PARTS").is_some() { PARTS } else { "" },
    )
}

/// The programs the traced mount started (strace -f -ttt -e trace=execve), each with how long it ran,
/// and the whole run: where mount's time goes.
fn traced_programs(out: &Path) -> Result<Option<String>> {
    let Ok(text) = fs::read_to_string(out.join("strace-mount.txt")) else { return Ok(None) };
    // pid -> (program, started, ended)
    let mut runs: BTreeMap<u32, (String, f64, Option<f64>)> = BTreeMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        // "PID  SECONDS.MICROS CALL...", the process id padded with spaces.
        let mut words = line.split_whitespace();
        let (Some(pid), Some(time)) = (words.next(), words.next()) else { continue };
        let rest = words.collect::<Vec<_>>().join(" ");
        let rest = rest.as_str();
        let (Ok(pid), Ok(time)) = (pid.parse::<u32>(), time.parse::<f64>()) else { continue };
        // A call another thread interrupts shows in two parts: "execve(... <unfinished ...>", then
        // "<... execve resumed>) = 0".
        fn program(call: &str) -> &str {
            call.split('"').next().unwrap_or_default().rsplit('/').next().unwrap_or_default()
        }
        if let Some(call) = rest.strip_prefix("execve(\"") {
            if rest.ends_with("= 0") || rest.ends_with("<unfinished ...>") {
                let started = runs.get(&pid).map_or(time, |run| run.1);
                runs.insert(pid, (program(call).to_string(), started, None));
                if !order.contains(&pid) {
                    order.push(pid);
                }
            }
        } else if rest.starts_with("<... execve resumed>") && !rest.ends_with("= 0") {
            runs.remove(&pid);
        } else if rest.starts_with("+++ exited") || rest.starts_with("+++ killed") {
            if let Some(run) = runs.get_mut(&pid) {
                run.2 = Some(time);
            }
        }
    }
    let Some((_, (_, first, Some(last)))) = runs.iter().find(|(_, run)| run.0 == "nix-dabei") else {
        return Ok(None);
    };
    let whole = last - first;
    let children: Vec<String> = order
        .iter()
        .filter_map(|pid| runs.get(pid))
        .filter(|run| run.0 != "nix-dabei")
        .map(|(program, started, ended)| match ended {
            Some(ended) => format!("{program} {:.3} s", ended - started),
            None => format!("{program} (no end)"),
        })
        .collect();
    Ok(Some(format!(
        "mount under strace (slower than untraced): {whole:.3} s; programs it started, in order: {}",
        if children.is_empty() { "none".to_string() } else { children.join(", ") }
    )))
}

/// The parts of a mount timed on their own (`NIX_DABEI_BENCH_PARTS`), each as its median.
fn parts(out: &Path) -> Result<Option<String>> {
    let Ok(text) = fs::read_to_string(out.join("parts")) else { return Ok(None) };
    let mut times: Vec<(String, Vec<f64>)> = Vec::new();
    for line in text.lines() {
        let ["part", name, start, end] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            bail!("unexpected line in {}: {line}", out.join("parts").display())
        };
        let seconds = end.parse::<f64>()? - start.parse::<f64>()?;
        match times.iter_mut().find(|(known, _)| known == name) {
            Some((_, values)) => values.push(seconds),
            None => times.push((name.to_string(), vec![seconds])),
        }
    }
    let listed: Vec<String> = times.iter().map(|(name, values)| format!("{name} {:.3} s", spread(values).0)).collect();
    Ok(Some(format!("parts of a mount on their own (medians, cold cache): {}", listed.join(", "))))
}

/// Median, minimum and maximum.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 };
    (median, sorted[0], sorted[sorted.len() - 1])
}

fn describe(values: &[f64]) -> String {
    let (median, min, max) = spread(values);
    format!("median {median:.2} s (min {min:.2}, max {max:.2})")
}

/// The times of one layout: (side, phase, run) to seconds, and apply's peak memory in KiB.
type Times = (BTreeMap<(String, String, String), f64>, u64);

fn read_times(out: &Path) -> Result<Times> {
    let text = fs::read_to_string(out.join("times")).with_context(|| format!("no times in {}", out.display()))?;
    let (mut times, mut peak) = (BTreeMap::new(), 0);
    for line in text.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [side, phase, run, start, end] => {
                let seconds = end.parse::<f64>()? - start.parse::<f64>()?;
                times.insert((side.to_string(), phase.to_string(), run.to_string()), seconds);
            }
            // With production settings, argon2id alone takes up to 1 GiB: the timed runs show apply's own.
            ["peak_rss_kib", "production", _] => {}
            ["peak_rss_kib", _, kib] => peak = peak.max(kib.parse()?),
            _ => bail!("unexpected line in {}: {line}", out.join("times").display()),
        }
    }
    Ok((times, peak))
}

/// Both sides must have made the same thing: the same mounts with the same filesystem types; and every
/// apply must have finished. Swap is left out: disko's `_mount` leaves it off (NixOS turns it on at boot),
/// nix-dabei's mount turns it on, for installing on a machine with little memory.
fn check_same_result(out: &Path) -> Result<()> {
    let listing = |side: &str, run: &str| fs::read_to_string(out.join(format!("mounts-{side}-{run}")));
    let reference = listing("nix-dabei", "1")?;
    ensure!(reference.lines().count() >= 2, "nix-dabei mounted almost nothing:\n{reference}");
    for entry in fs::read_dir(out)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("mounts-") {
            let sorted = |text: String| {
                let mut lines: Vec<String> =
                    text.lines().filter(|line| !line.starts_with("swap")).map(str::to_string).collect();
                lines.sort();
                lines
            };
            ensure!(
                sorted(fs::read_to_string(entry.path())?) == sorted(reference.clone()),
                "{rest} did not mount what nix-dabei's first run did:\n{}\nagainst\n{reference}",
                fs::read_to_string(entry.path())?
            );
        }
        if name.starts_with("apply-") {
            finished(&entry.path())?;
        }
    }
    Ok(())
}

fn print_figures(share: &Path) -> Result<()> {
    let runs = runs();
    let cpus = vm_tests::vm::cpus_per_machine();
    println!(
        "bench: each layout in one boot of a {cpus}-CPU VM under TCG emulation (no KVM), {runs} runs of each side \
         alternating which goes first, disks wiped and page cache dropped before each run; both sides with \
         the same weak key derivation (LUKS2 argon2id 4 iterations, 8 MiB, 1 thread; ZFS pbkdf2iters=100000), \
         then one run each with production settings (cryptsetup's argon2id benchmark to 2 s, up to 1 GiB \
         and 4 threads; ZFS's default pbkdf2iters=350000)"
    );
    for layout in layouts() {
        let out = share.join("out").join(layout.name);
        check_same_result(&out).with_context(|| format!("layout {}", layout.name))?;
        let (times, peak) = read_times(&out)?;
        let series = |side: &str, phase: &str| -> Vec<f64> {
            (1..=runs).filter_map(|run| times.get(&(side.into(), phase.into(), run.to_string())).copied()).collect()
        };
        let (disko_create, ours_create) = (series("disko", "create"), series("nix-dabei", "create"));
        let (disko_mount, ours_mount) = (series("disko", "mount"), series("nix-dabei", "mount"));
        ensure!(disko_create.len() == runs && ours_create.len() == runs, "{}: missing runs", layout.name);
        let both: Vec<f64> = disko_create.iter().zip(&disko_mount).map(|(c, m)| c + m).collect();
        let ratio = |ours: &[f64], theirs: &[f64]| spread(ours).0 / spread(theirs).0;
        let create_target = if layout.mirror { "target <= 0.8" } else { "no target" };
        println!("bench: {} ({} disk{}):", layout.name, layout.disks, if layout.disks > 1 { "s" } else { "" });
        println!(
            "bench:   create: disko _create {}; nix-dabei apply {}; ratio {:.2} ({create_target}); \
             against disko _create + _mount (apply also mounts) {:.2}",
            describe(&disko_create),
            describe(&ours_create),
            ratio(&ours_create, &disko_create),
            ratio(&ours_create, &both)
        );
        println!(
            "bench:   mount: disko _mount {}; nix-dabei mount {}; ratio {:.2} (target <= 1.0)",
            describe(&disko_mount),
            describe(&ours_mount),
            ratio(&ours_mount, &disko_mount)
        );
        let kdf = if layout.secrets == Secrets::None || layout.secrets == Secrets::ZfsNative {
            ""
        } else {
            ", with libcryptsetup's argon2id working memory"
        };
        println!("bench:   peak RSS of nix-dabei apply {:.1} MiB{kdf} (target < 20 MiB)", peak as f64 / 1024.0);
        if let Some(spans) = traced_programs(&out)? {
            println!("bench:   {spans}");
        }
        if let Some(parts) = parts(&out)? {
            println!("bench:   {parts}");
        }
        let production = |side: &str, phase: &str| times.get(&(side.into(), phase.into(), "production".into()));
        if let (Some(dc), Some(oc), Some(dm), Some(om)) = (
            production("disko", "create"),
            production("nix-dabei", "create"),
            production("disko", "mount"),
            production("nix-dabei", "mount"),
        ) {
            println!(
                "bench:   production key derivation, one run: create disko {dc:.2} s, nix-dabei {oc:.2} s \
                 (ratio {:.2}); mount disko {dm:.2} s, nix-dabei {om:.2} s (ratio {:.2})",
                oc / dc,
                om / dm
            );
        }
    }
    Ok(())
}
