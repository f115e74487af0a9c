//! The simulated far side the phase tests run against: it answers each script by its tag, keeps jobs and
//! boots, and records what it was sent.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remote::{Far, HostKeys, Phase, PlanSource, RemoteError, RemoteEvent, Request, ReviewWipe};

pub const PASSPHRASE: &str = "correct horse battery staple";

#[derive(Default)]
pub struct SimFar {
    pub ram_os: RefCell<bool>,
    pub boots: RefCell<u32>,
    pub kexec_pending: RefCell<bool>,
    /// After kexec the machine shows another host key.
    pub key_changes: bool,
    /// Jobs: name -> exit status once ended (None: running).
    pub jobs: RefCell<HashMap<String, Option<i32>>>,
    /// The exit status a started apply job ends with.
    pub apply_status: i32,
    /// Every script's tag, in order, with what it received on stdin.
    pub log: RefCell<Vec<(String, Vec<u8>)>>,
    pub scripts: RefCell<Vec<String>>,
    /// The plan file there, as `read-plan` prints it.
    pub plan_text: Option<String>,
    /// The target is not mounted there.
    pub target_unmounted: bool,
    /// A store root standing for the far side's target store: `copy_closure` copies into it for real
    /// (`nix copy --to local?root=`); without it, copies are only recorded.
    pub store_root: Option<PathBuf>,
    /// Every closure copied: its path and size.
    pub copied: RefCell<Vec<(String, u64)>>,
    /// The plan id its review claims, where it lies about which plan it reviewed.
    pub review_plan_id: Option<String>,
    /// Whether the run's folder (/run/nix-dabei/remote) exists there: made by the scripts that write into
    /// it, gone after a kexec (the RAM OS's /run is new). `plan -o` into it fails without it.
    pub run_dir: RefCell<bool>,
}

impl SimFar {
    pub fn tags(&self) -> Vec<String> {
        self.log.borrow().iter().map(|(tag, _)| tag.clone()).collect()
    }
}

/// A plan the simulated far side receives and reviews.
pub const PLAN: &str = "hostname = \"web1\"\n[disks.disk0]\ndevice = \"/dev/disk/by-id/virtio-x0\"\n\
    size = 3221225472\n[disks.disk0.partitions.root]\nsize = \"rest\"\n\
    content.filesystem = { format = \"ext4\", mountpoint = \"/\" }\n";

/// The review of the plan with id `plan_id`, as `apply --review-only --json` prints it.
pub fn review_json(plan_id: &str) -> String {
    serde_json::json!({
        "event": "review", "plan_id": plan_id, "host": "web1", "needs_passphrase": true, "nothing_to_do": false,
        "steps": [{"id": "wipe:disk0", "description": "Wipe disk disk0", "state": "destroys", "detail": ""}],
        "wipes": [{"disk": "disk0", "device": "/dev/disk/by-id/virtio-x0", "kernel_path": "/dev/vda", "model": null,
                   "serial": "x0", "size": 3221225472u64, "confirm": "x0"}],
    })
    .to_string()
}

impl Far for SimFar {
    fn run(&self, script: &str, input: Option<&[u8]>) -> Result<String, RemoteError> {
        let tag = remote::script::tag(script).to_string();
        self.log.borrow_mut().push((tag.clone(), input.map(<[u8]>::to_vec).unwrap_or_default()));
        self.scripts.borrow_mut().push(script.to_string());
        let ram_os = *self.ram_os.borrow();
        let boot = *self.boots.borrow();
        if ["make-dir", "receive-file", "receive-binary", "receive-tarball"].contains(&tag.as_str()) {
            *self.run_dir.borrow_mut() = true;
        }
        if tag == "plan" && !*self.run_dir.borrow() {
            return Err(RemoteError::Far("cannot write /run/nix-dabei/remote/plan.toml: No such file".into()));
        }
        Ok(match tag.as_str() {
            "connect" => format!("host-key ssh-ed25519 AAAAC3 root@rescue\nboot-id boot{boot}\n"),
            "inspect" => format!(
                "os=Test\nkernel=6.1\narch=x86_64\nmemory_total_kib=400000\nmemory_available_kib=200000\n\
                 firmware=bios\nkexec=available\nram_os={}\nboot_id=boot{boot}\n{}",
                if ram_os { "yes" } else { "no" },
                if ram_os { "nix_dabei=/run/current-system/sw/bin/nix-dabei\n" } else { "" }
            ),
            "receive-binary" => "nix-dabei 0.1.0\n".into(),
            "disks" => r#"{"disks": []}"#.into(),
            "kexec" => {
                *self.kexec_pending.borrow_mut() = true;
                "switching to the RAM OS in 6 s\n".into()
            }
            "job-states" => ["apply", "install"]
                .iter()
                .map(|name| match self.jobs.borrow().get(*name) {
                    Some(None) => format!("{name} running\n"),
                    Some(Some(code)) => format!("{name} ended {code}\n"),
                    None => format!("{name} none\n"),
                })
                .collect(),
            "review" => {
                // The plan it holds: the one received last, or the one it made.
                let received =
                    self.log.borrow().iter().rev().find(|(tag, _)| tag == "receive-file").map(|(_, b)| b.clone());
                let text =
                    received.map(|b| String::from_utf8_lossy(&b).into_owned()).or_else(|| self.plan_text.clone());
                let id = text.and_then(|t| layouts::Plan::from_toml(&t).ok()).map(|p| p.id()).unwrap_or_default();
                format!("{}\n", review_json(self.review_plan_id.as_deref().unwrap_or(&id)))
            }
            "read-plan" => self.plan_text.clone().unwrap_or_else(|| "[disks.disk0]\n".into()),
            "mounted" => if self.target_unmounted { "not-mounted\n" } else { "mounted\n" }.into(),
            "boot-id" => format!("boot{boot}\n"),
            t if t.starts_with("start-job ") => {
                let name = t.trim_start_matches("start-job ").to_string();
                let status = if name == "apply" { self.apply_status } else { 0 };
                self.jobs.borrow_mut().insert(name, Some(status));
                String::new()
            }
            _ => String::new(),
        })
    }

    fn run_with_file(&self, script: &str, _file: &Path) -> Result<String, RemoteError> {
        self.run(script, Some(b"tarball"))
    }

    fn stream(&self, script: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), RemoteError> {
        let tag = remote::script::tag(script).to_string();
        self.log.borrow_mut().push((tag.clone(), Vec::new()));
        let name = tag.trim_start_matches("follow-job ");
        let status = self.jobs.borrow().get(name).copied().flatten().unwrap_or(0);
        on_line(r#"{"event":"started","host":"web1","steps":1}"#);
        on_line(r#"{"event":"step-finished","id":"wipe:disk0","description":"Wipe disk disk0","seconds":0.1}"#);
        on_line(&format!("nix-dabei-remote job-ended {status}"));
        if status != 0 {
            on_line("nix-dabei-remote stderr nix-dabei: zpool create failed");
        }
        self.jobs.borrow_mut().insert(name.to_string(), Some(status));
        Ok(())
    }

    fn pin_host_keys(&self, keys: &[String]) -> Result<(), RemoteError> {
        assert_eq!(keys, ["ssh-ed25519 AAAAC3 root@rescue"]);
        Ok(())
    }

    fn await_new_boot(&self, old: &str, keys: HostKeys, _limit: Duration) -> Result<(), RemoteError> {
        assert_eq!(old, format!("boot{}", self.boots.borrow()));
        if keys == HostKeys::Pinned && self.key_changes {
            return Err(RemoteError::HostKeyChanged("Host key verification failed.".into()));
        }
        *self.boots.borrow_mut() += 1;
        *self.run_dir.borrow_mut() = false;
        let kexec = std::mem::take(&mut *self.kexec_pending.borrow_mut());
        *self.ram_os.borrow_mut() = kexec;
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
        assert_eq!(root, "/mnt", "the far side's nix-dabei mounts the target there");
        let tag = if substitute { "copy-closure substituting" } else { "copy-closure" };
        self.log.borrow_mut().push((tag.into(), Vec::new()));
        self.copied.borrow_mut().push((path.to_string(), bytes));
        if let Some(store) = &self.store_root {
            let output = std::process::Command::new("nix")
                .args(["--extra-experimental-features", "nix-command", "copy", "--no-check-sigs", "--to"])
                .arg(format!("local?root={}", store.display()))
                .arg(path)
                .args(substitute.then_some("--substitute-on-destination"))
                .output()
                .map_err(|e| RemoteError::Local(e.to_string()))?;
            String::from_utf8_lossy(&output.stderr).lines().for_each(&mut *on_line);
            if !output.status.success() {
                return Err(RemoteError::Far("nix copy failed".into()));
            }
        }
        Ok(())
    }

    fn uploaded_bytes(&self) -> u64 {
        self.log.borrow().iter().map(|(_, input)| input.len() as u64).sum()
    }
}

pub fn request() -> Request {
    Request {
        phases: Phase::ALL.to_vec(),
        plan: Some(PlanSource::File(PLAN.into())),
        flake: Some("github:me/machines#web1".into()),
        kexec_tarball: Some(tarball().to_path_buf()),
        binary: None,
        dry_run: false,
        yes_wipe: Vec::new(),
        yes_wipe_all: false,
        passphrase: Some(installer::Secret::new(PASSPHRASE.as_bytes().to_vec())),
        skip_flake_check: false,
        build_on_local: false,
        system: None,
        substitute_on_destination: true,
        post_install_check: Some("nixos-version".into()),
        boot_limit: Duration::from_secs(1),
        plan_out: None,
        module_out: None,
    }
}

/// Runs the phases; returns the result, the events, and the disks the frontend was asked to confirm.
pub fn run(far: &SimFar, request: &Request) -> (Result<(), RemoteError>, Vec<RemoteEvent>, Vec<String>) {
    let events = RefCell::new(Vec::new());
    let asked = RefCell::new(Vec::new());
    let confirm = |wipes: &[&ReviewWipe]| {
        asked.borrow_mut().extend(wipes.iter().map(|w| w.target.disk.clone()));
        Ok(wipes.iter().map(|w| w.target.disk.clone()).collect())
    };
    let result = remote::run(far, request, &confirm, &|event| events.borrow_mut().push(event));
    (result.map(|_| ()), events.into_inner(), asked.into_inner())
}

/// A kexec tarball as the flake builds it (gzip-compressed tar of kexec/), with a stand-in nix-dabei.
pub fn tarball() -> &'static Path {
    static TARBALL: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    TARBALL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nix-dabei-remote-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kexec")).expect("folder");
        std::fs::write(dir.join("kexec/bzImage"), vec![7u8; 3000]).expect("kernel");
        std::fs::write(dir.join("kexec/nix-dabei"), STAND_IN_BINARY).expect("binary");
        std::fs::write(dir.join("kexec/run"), "#!/bin/sh\n").expect("run");
        let file = dir.join("nix-dabei-kexec.tar.gz");
        let status = std::process::Command::new("tar")
            .args(["-czf"])
            .arg(&file)
            .args(["-C"])
            .arg(&dir)
            .arg("kexec")
            .status()
            .expect("tar");
        assert!(status.success());
        file
    })
}

pub const STAND_IN_BINARY: &[u8] = b"#!/bin/sh\necho nix-dabei 0.1.0\n";

pub fn started(events: &[RemoteEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            RemoteEvent::PhaseStarted { phase } => Some(phase.name()),
            _ => None,
        })
        .collect()
}
