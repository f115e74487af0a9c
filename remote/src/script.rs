//! The shell scripts the far side runs. They are plain POSIX sh (a rescue system may have only busybox),
//! carry no secret (secrets go on standard input), and quote every value they are given. Each starts with
//! a tag line naming what it does, which the simulated far side of the tests dispatches on.

/// Where everything of a run lives on the far side: in memory (/run is a tmpfs), readable by root alone.
pub const DIR: &str = "/run/nix-dabei/remote";
/// Where a dry run puts the one thing it uploads (nix-dabei, to read the disks and review the plan); it
/// is removed again at the end.
pub const DRY_RUN_DIR: &str = "/run/nix-dabei/remote-dry-run";

/// A value as one shell word.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The words of a command line, each quoted.
pub fn command_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// The tag a script starts with.
pub fn tag(script: &str) -> &str {
    script.lines().next().and_then(|l| l.strip_prefix("# nix-dabei-remote: ")).unwrap_or("")
}

/// The machine's host keys (every public key sshd may present) and its boot id.
pub fn connect() -> String {
    "# nix-dabei-remote: connect\n\
     cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null | sed 's/^/host-key /'\n\
     echo \"boot-id $(cat /proc/sys/kernel/random/boot_id)\"\n"
        .to_string()
}

/// What the machine is: key=value lines that [`crate::inspect::Inspection::parse`] reads.
pub fn inspect() -> String {
    r#"# nix-dabei-remote: inspect
( if [ -r /etc/os-release ]; then . /etc/os-release; fi; echo "os=${PRETTY_NAME:-${NAME:-unknown}}" )
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
sed -n -e 's/^MemTotal: *\([0-9]*\) kB/memory_total_kib=\1/p' \
    -e 's/^MemAvailable: *\([0-9]*\) kB/memory_available_kib=\1/p' /proc/meminfo
if [ -d /sys/firmware/efi ]; then echo firmware=uefi; else echo firmware=bios; fi
if [ ! -e /sys/kernel/kexec_loaded ]; then echo kexec=missing
elif [ "$(cat /proc/sys/kernel/kexec_load_disabled 2>/dev/null || echo 0)" != 0 ]; then echo kexec=disabled
else echo kexec=available; fi
if [ -f /etc/nix-dabei/ram-os ]; then echo ram_os=yes; else echo ram_os=no; fi
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
if command -v nix-dabei >/dev/null 2>&1; then echo "nix_dabei=$(command -v nix-dabei)"; fi
"#
    .to_string()
}

/// Receives nix-dabei on standard input into `dir`/bin and prints its version.
pub fn receive_binary(dir: &str) -> String {
    let bin = format!("{dir}/bin/nix-dabei");
    format!(
        "# nix-dabei-remote: receive-binary\n\
         set -e; umask 077; mkdir -p {dir}/bin && cat > {bin}.new && chmod 700 {bin}.new && mv {bin}.new {bin}\n\
         {bin} --version\n",
        dir = quote(dir),
        bin = quote(&bin)
    )
}

/// Prints `mounted` when `path` is a mount point.
pub fn mounted(path: &str) -> String {
    format!(
        "# nix-dabei-remote: mounted\n\
         awk -v m={} '$2 == m {{ found = 1 }} END {{ print found ? \"mounted\" : \"not-mounted\" }}' /proc/mounts\n",
        quote(path)
    )
}

/// Runs nix-dabei with these arguments.
pub fn nix_dabei(tag: &str, binary: &str, args: &[String]) -> String {
    format!("# nix-dabei-remote: {tag}\n{} {}\n", quote(binary), command_line(args))
}

/// Receives the kexec tarball on standard input, unpacked into `dir` as it arrives (a rescue system's
/// memory holds it once).
pub fn receive_tarball(dir: &str) -> String {
    format!(
        "# nix-dabei-remote: receive-tarball\n\
         set -e; umask 077; rm -rf {d}/kexec && mkdir -p {d} && tar -xzf - -C {d}\n\
         test -x {d}/kexec/run\n",
        d = quote(dir)
    )
}

/// Boots the RAM OS from the unpacked tarball; the session ends before the switch.
pub fn kexec(dir: &str) -> String {
    format!("# nix-dabei-remote: kexec\n{}/kexec/run\n", quote(dir))
}

/// Receives a file on standard input (a plan, a passphrase), readable by root alone.
pub fn receive_file(path: &str) -> String {
    format!(
        "# nix-dabei-remote: receive-file\n\
         set -e; umask 077; mkdir -p \"$(dirname {p})\"\n\
         cat > {p}.new && mv {p}.new {p}\n",
        p = quote(path)
    )
}

/// Makes a folder readable by root alone (the run's folder, which a kexec leaves behind with the old /run).
pub fn make_dir(path: &str) -> String {
    format!("# nix-dabei-remote: make-dir\nset -e; umask 077; mkdir -p {}\n", quote(path))
}

/// Removes files and folders.
pub fn remove(paths: &[&str]) -> String {
    let words: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!("# nix-dabei-remote: remove\nrm -rf {}\n", words.join(" "))
}

/// Prints `NAME running`, `NAME ended STATUS` or `NAME none` for each job.
pub fn job_states(names: &[&str]) -> String {
    let mut script = String::from("# nix-dabei-remote: job-states\n");
    for name in names {
        let job = quote(&format!("{DIR}/jobs/{name}"));
        script.push_str(&format!(
            "if [ -f {job}/status ]; then echo \"{name} ended $(cat {job}/status)\"\n\
             elif [ -f {job}/pid ] && kill -0 \"$(cat {job}/pid)\" 2>/dev/null; then echo '{name} running'\n\
             else echo '{name} none'; fi\n"
        ));
    }
    script
}

/// Starts a job: `command` runs detached from the SSH session (its own session, no terminal, output
/// into files), so that a dropped connection does not stop it. Its JSON events go to `events.jsonl`.
pub fn start_job(name: &str, command: &str) -> String {
    let job = format!("{DIR}/jobs/{name}");
    format!(
        "# nix-dabei-remote: start-job {name}\n\
         set -e; umask 077; job={job}\n\
         rm -rf \"$job\" && mkdir -p \"$job\"\n\
         cat > \"$job/run\" <<'NIX_DABEI_JOB'\n\
         cd \"$(dirname \"$0\")\"\n\
         echo $$ > pid\n\
         {command} > events.jsonl 2> stderr.txt\n\
         echo $? > status.new && mv status.new status\n\
         NIX_DABEI_JOB\n\
         : > \"$job/events.jsonl\"\n\
         setsid sh \"$job/run\" < /dev/null > /dev/null 2>&1 &\n\
         echo $! > \"$job/pid\"\n",
        job = quote(&job)
    )
}

/// Follows a job's events from line `seen` + 1, once a second, until it ends; then prints
/// `nix-dabei-remote job-ended STATUS` and the end of its stderr.
pub fn follow_job(name: &str, seen: usize) -> String {
    let job = format!("{DIR}/jobs/{name}");
    format!(
        "# nix-dabei-remote: follow-job {name}\n\
         job={job}; seen={seen}\n\
         [ -d \"$job\" ] || {{ echo 'nix-dabei-remote job-lost'; exit 0; }}\n\
         while :; do\n\
         \x20 ended=no; [ -f \"$job/status\" ] && ended=yes\n\
         \x20 lines=$(wc -l < \"$job/events.jsonl\")\n\
         \x20 if [ \"$lines\" -gt \"$seen\" ]; then\n\
         \x20   sed -n \"$((seen + 1)),${{lines}}p\" \"$job/events.jsonl\"; seen=$lines\n\
         \x20 fi\n\
         \x20 if [ $ended = yes ]; then\n\
         \x20   echo \"nix-dabei-remote job-ended $(cat \"$job/status\")\"\n\
         \x20   tail -n 20 \"$job/stderr.txt\" | sed 's/^/nix-dabei-remote stderr /'\n\
         \x20   exit 0\n\
         \x20 fi\n\
         \x20 if ! kill -0 \"$(cat \"$job/pid\" 2>/dev/null)\" 2>/dev/null && [ ! -f \"$job/status\" ]; then\n\
         \x20   echo 'nix-dabei-remote job-lost'; exit 0\n\
         \x20 fi\n\
         \x20 sleep 1\n\
         done\n",
        job = quote(&job)
    )
}

/// Reboots in two seconds, after the SSH session that asked has ended.
pub fn reboot() -> String {
    "# nix-dabei-remote: reboot\n\
     (sleep 2; systemctl reboot 2>/dev/null || reboot) < /dev/null > /dev/null 2>&1 &\n\
     echo rebooting\n"
        .to_string()
}

/// The boot id, to tell a new boot from the old one.
pub fn boot_id() -> String {
    "# nix-dabei-remote: boot-id\ncat /proc/sys/kernel/random/boot_id\n".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_value_one_word() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(command_line(&["a b".into(), "$(x)".into()]), "'a b' '$(x)'");
        assert_eq!(tag(&start_job("apply", "true")), "start-job apply");
    }
}
