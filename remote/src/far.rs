//! The far side: [`Far`] is everything the phases ask of it; [`Ssh`] reaches it through the system's
//! OpenSSH client (so ~/.ssh/config, keys, agents, jump hosts and known_hosts work as for `ssh`), over one
//! multiplexed connection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use installer::command::{self, CommandError};

use crate::script;
use crate::RemoteError;

/// Which host keys a new connection accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeys {
    /// Only the keys pinned at connect (the RAM OS after kexec carries them).
    Pinned,
    /// Whatever the machine presents (a newly installed system has new keys); recorded for the rest of
    /// the run.
    New,
}

/// The far side.
pub trait Far {
    /// Runs a shell script there, with `input` on its standard input; returns what it printed.
    fn run(&self, script: &str, input: Option<&[u8]>) -> Result<String, RemoteError>;
    /// Runs a shell script there with a local file on its standard input.
    fn run_with_file(&self, script: &str, file: &Path) -> Result<String, RemoteError>;
    /// Runs a shell script there, handing over each line it prints as it comes.
    fn stream(&self, script: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), RemoteError>;
    /// From now on, accept only these host keys (OpenSSH public key lines).
    fn pin_host_keys(&self, keys: &[String]) -> Result<(), RemoteError>;
    /// Waits until the machine answers from a boot other than `old_boot_id`, accepting `keys`; a
    /// different host key under [`HostKeys::Pinned`] fails at once with [`RemoteError::HostKeyChanged`].
    fn await_new_boot(&self, old_boot_id: &str, keys: HostKeys, limit: Duration) -> Result<(), RemoteError>;
    /// Copies `path` and everything it refers to from this machine's Nix store into the far side's store
    /// under `root` (`nix copy`), handing over each line nix prints; `bytes`, the closure's size, is
    /// counted as uploaded. With `substitute`, the far side first fetches what its binary caches have.
    fn copy_closure(
        &self,
        path: &str,
        bytes: u64,
        root: &str,
        substitute: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), RemoteError>;
    /// Bytes sent so far (uploads, plans, passphrases, store paths).
    fn uploaded_bytes(&self) -> u64;
}

/// The far side through OpenSSH.
#[derive(Debug)]
pub struct Ssh {
    destination: String,
    /// The user's own options (`-p`, `-i`, `-J`, `-o ...`), after ours: OpenSSH takes the first value
    /// given for an option, so the pinning and multiplexing options cannot be overridden by accident.
    user_options: Vec<String>,
    /// A private folder for the control socket and the pinned known_hosts file.
    folder: PathBuf,
    /// The connection's number: a new boot gets a new control socket.
    generation: AtomicU32,
    pinned: Mutex<Option<PathBuf>>,
    uploaded: AtomicU64,
}

/// The name pinned keys are recorded under, whatever the destination is called.
const HOST_KEY_ALIAS: &str = "nix-dabei-target";

impl Ssh {
    /// Prepares a connection to `destination` (`user@host` or a ~/.ssh/config alias).
    pub fn new(destination: &str, user_options: Vec<String>) -> Result<Ssh, RemoteError> {
        let folder = std::env::temp_dir().join(format!("nix-dabei-remote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&folder).map_err(|e| RemoteError::Local(format!("cannot create {}: {e}", folder.display())))?;
        Ok(Ssh {
            destination: destination.to_string(),
            user_options,
            folder,
            generation: AtomicU32::new(1),
            pinned: Mutex::new(None),
            uploaded: AtomicU64::new(0),
        })
    }

    fn control_path(&self) -> PathBuf {
        self.folder.join(format!("c{}", self.generation.load(Ordering::Relaxed)))
    }

    /// Our options: `keys` is a known_hosts file of our own to check the host key against, with
    /// `StrictHostKeyChecking` "yes" (pinned) or "accept-new" (recording a new system's key).
    fn options(&self, multiplex: bool, keys: Option<(&Path, &str)>) -> Vec<String> {
        let mut args = Vec::new();
        let mut option = |value: String| {
            args.push("-o".to_string());
            args.push(value);
        };
        if let Some((known, strict)) = keys {
            known_hosts_options(known, strict).into_iter().for_each(&mut option);
        }
        if multiplex {
            option("ControlMaster=auto".into());
            option(format!("ControlPath={}", self.control_path().display()));
            option("ControlPersist=300".into());
        } else {
            option("ControlPath=none".into());
        }
        option("BatchMode=yes".into());
        option("ServerAliveInterval=5".into());
        option("ServerAliveCountMax=4".into());
        option("ConnectTimeout=15".into());
        option("LogLevel=ERROR".into());
        args.extend(self.user_options.iter().cloned());
        args
    }

    fn args(&self, multiplex: bool, keys: Option<(&Path, &str)>, script: &str) -> Vec<String> {
        let mut args = self.options(multiplex, keys);
        args.push(self.destination.clone());
        args.push(script.to_string());
        args
    }

    fn pinned_file(&self) -> Option<PathBuf> {
        self.pinned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn classify(&self, error: CommandError) -> RemoteError {
        match &error {
            CommandError::Failed { stderr, code: Some(255), .. } => {
                if stderr.contains("Host key verification failed") || stderr.contains("IDENTIFICATION HAS CHANGED") {
                    RemoteError::HostKeyChanged(stderr.clone())
                } else {
                    RemoteError::Connection(stderr.clone())
                }
            }
            _ => RemoteError::Far(strip_script(&error.to_string())),
        }
    }

    /// Ends the multiplexed connection (the machine is about to become another system).
    fn close(&self) {
        let mut args = vec!["-o".to_string(), format!("ControlPath={}", self.control_path().display())];
        args.extend(["-O".to_string(), "exit".to_string(), self.destination.clone()]);
        let _ = command::run("ssh", &args, None);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// An error names the command line, which holds the whole script: people need its tag only.
fn strip_script(message: &str) -> String {
    match message.find("# nix-dabei-remote: ") {
        Some(start) => {
            let tag_end = message[start..].find('\n').map_or(message.len(), |n| start + n);
            let rest = message.find("` failed").map_or("", |n| &message[n + 1..]);
            format!("`{}` on the far side{}", &message[start + 20..tag_end], rest)
        }
        None => message.to_string(),
    }
}

impl Far for Ssh {
    fn run(&self, script: &str, input: Option<&[u8]>) -> Result<String, RemoteError> {
        let pinned = self.pinned_file();
        if let Some(input) = input {
            self.uploaded.fetch_add(input.len() as u64, Ordering::Relaxed);
        }
        command::run("ssh", &self.args(true, pinned.as_deref().map(|file| (file, "yes")), script), input)
            .map_err(|e| self.classify(e))
    }

    fn run_with_file(&self, script: &str, file: &Path) -> Result<String, RemoteError> {
        let pinned = self.pinned_file();
        let size = std::fs::metadata(file).map_err(|e| RemoteError::Local(format!("{}: {e}", file.display())))?.len();
        self.uploaded.fetch_add(size, Ordering::Relaxed);
        command::run_with_file_input("ssh", &self.args(true, pinned.as_deref().map(|file| (file, "yes")), script), file)
            .map_err(|e| self.classify(e))
    }

    fn stream(&self, script: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), RemoteError> {
        let pinned = self.pinned_file();
        command::stream("ssh", &self.args(true, pinned.as_deref().map(|file| (file, "yes")), script), on_line)
            .map_err(|e| self.classify(e))
    }

    fn pin_host_keys(&self, keys: &[String]) -> Result<(), RemoteError> {
        let file = self.folder.join("pinned_known_hosts");
        let lines: String = keys.iter().map(|key| format!("{HOST_KEY_ALIAS} {}\n", key.trim())).collect();
        std::fs::write(&file, lines)
            .map_err(|e| RemoteError::Local(format!("cannot write {}: {e}", file.display())))?;
        *self.pinned.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        Ok(())
    }

    fn await_new_boot(&self, old_boot_id: &str, keys: HostKeys, limit: Duration) -> Result<(), RemoteError> {
        self.close();
        let start = Instant::now();
        let new_keys = self.folder.join("new_known_hosts");
        let mut last;
        loop {
            // Without multiplexing: a master connection to the old system would outlive it.
            let pinned = self.pinned_file();
            let args = match keys {
                HostKeys::Pinned => self.args(false, pinned.as_deref().map(|file| (file, "yes")), &script::boot_id()),
                HostKeys::New => {
                    let _ = std::fs::remove_file(&new_keys);
                    self.args(false, Some((&new_keys, "accept-new")), &script::boot_id())
                }
            };
            match command::run("ssh", &args, None).map_err(|e| self.classify(e)) {
                Ok(id) if id.trim() != old_boot_id && !id.trim().is_empty() => break,
                Ok(_) => last = "the old system still answers".into(),
                Err(RemoteError::HostKeyChanged(message)) if keys == HostKeys::Pinned => {
                    return Err(RemoteError::HostKeyChanged(message))
                }
                Err(error) => last = error.to_string(),
            }
            if start.elapsed() > limit {
                return Err(RemoteError::Timeout(format!(
                    "the machine did not come back within {} s (last: {last})",
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        if keys == HostKeys::New {
            // The new system's key, as first seen, is what the rest of the run accepts.
            let seen = std::fs::read_to_string(&new_keys).unwrap_or_default();
            let pinned = self.folder.join("pinned_known_hosts");
            std::fs::write(&pinned, seen).map_err(|e| RemoteError::Local(format!("{}: {e}", pinned.display())))?;
            *self.pinned.lock().unwrap_or_else(|p| p.into_inner()) = Some(pinned);
        }
        Ok(())
    }

    fn copy_closure(
        &self,
        path: &str,
        bytes: u64,
        root: &str,
        substitute: bool,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), RemoteError> {
        // nix runs ssh itself, with NIX_SSHOPTS split at spaces. It rides on the multiplexed connection,
        // opened here and so checked against the pinned keys; should that connection be gone, a new one
        // is held to the same keys.
        self.run("# nix-dabei-remote: before-copy\ntrue\n", None)?;
        let pinned = self.pinned_file().ok_or_else(|| RemoteError::Refused("no host keys pinned".into()))?;
        let mut options =
            vec!["ControlMaster=no".to_string(), format!("ControlPath={}", self.control_path().display())];
        options.extend(known_hosts_options(&pinned, "yes"));
        options.push("BatchMode=yes".into());
        if options.iter().any(|o| o.contains(char::is_whitespace)) {
            return Err(RemoteError::Local(format!(
                "nix copy cannot be handed the SSH connection's files in {}: the path has a space (set TMPDIR to \
                 a folder without)",
                self.folder.display()
            )));
        }
        let sshopts = options.iter().map(|o| format!("-o {o}")).collect::<Vec<_>>().join(" ");
        let args = copy_arguments(&self.destination, root, path, substitute);
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
        command::stream_with_env("nix", &args, &[("NIX_SSHOPTS", &sshopts)], on_line).map_err(|error| match error {
            CommandError::Spawn { .. } => RemoteError::Local(format!("--build-on local needs Nix here: {error}")),
            other => RemoteError::Far(other.to_string()),
        })
    }

    fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

/// `nix copy`'s arguments for putting `path`'s closure into the store under `root` on `destination`.
fn copy_arguments(destination: &str, root: &str, path: &str, substitute: bool) -> Vec<String> {
    // A store URL's settings are percent-decoded: the far side's nix-store serves the store under
    // `root` (`--store local?root=ROOT`), where nixos-install --system looks for the system.
    let store = format!("ssh://{destination}?remote-store={}", percent_encoded(&format!("local?root={root}")));
    let mut args: Vec<String> =
        ["--extra-experimental-features", "nix-command", "copy", "--no-check-sigs", "--to", &store, path]
            .map(String::from)
            .to_vec();
    // As nixos-anywhere does by default (its `--no-substitute-on-destination` turns it off): the far
    // side's `nix-store --serve` substitutes the paths it is asked about from its own caches first, so
    // that a slow uplink carries only what no cache has.
    if substitute {
        args.push("--substitute-on-destination".into());
    }
    args
}

/// The options that check the host key against our own known_hosts file `known` only, under
/// [`HOST_KEY_ALIAS`], with `StrictHostKeyChecking` `strict` ("yes" or "accept-new").
fn known_hosts_options(known: &Path, strict: &str) -> [String; 4] {
    [
        format!("UserKnownHostsFile={}", known.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        format!("HostKeyAlias={HOST_KEY_ALIAS}"),
        format!("StrictHostKeyChecking={strict}"),
    ]
}

/// `value` with everything but unreserved URL characters percent-encoded.
fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Drop for Ssh {
    fn drop(&mut self) {
        self.close();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_goes_into_the_target_store_and_the_far_side_substitutes_unless_told_not_to() {
        let args = copy_arguments("root@host", "/mnt", "/nix/store/x-system", true);
        assert_eq!(
            args[3..],
            [
                "--no-check-sigs",
                "--to",
                "ssh://root@host?remote-store=local%3Froot%3D%2Fmnt",
                "/nix/store/x-system",
                "--substitute-on-destination"
            ]
        );
        let args = copy_arguments("root@host", "/mnt", "/nix/store/x-system", false);
        assert!(!args.iter().any(|a| a.contains("substitute")), "{args:?}");
    }

    #[test]
    fn our_options_come_before_the_users_so_that_they_hold() {
        let ssh = Ssh::new("root@host", vec!["-p".into(), "2222".into(), "-o".into(), "ControlPath=x".into()])
            .expect("folder");
        let args = ssh.args(true, Some((Path::new("/k"), "yes")), "true");
        let ours = args.iter().position(|a| a.starts_with("ControlPath=/")).expect("ours");
        let theirs = args.iter().position(|a| a == "ControlPath=x").expect("theirs");
        assert!(ours < theirs, "{args:?}");
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert_eq!(&args[args.len() - 2..], ["root@host", "true"]);
    }

    #[test]
    fn the_far_store_setting_is_encoded_as_one_url_parameter() {
        assert_eq!(percent_encoded("local?root=/mnt"), "local%3Froot%3D%2Fmnt");
    }

    #[test]
    fn an_error_names_the_script_by_its_tag() {
        let message = "`ssh -o x root@h # nix-dabei-remote: inspect\nuname -r\n` failed (exit status: 1): boom";
        assert_eq!(strip_script(message), "`inspect` on the far side failed (exit status: 1): boom");
    }
}
