//! The phase machine against a simulated far side: which scripts run in which order, what a dry run, a
//! changed host key, a job left running by an earlier run and a failed apply do.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use remote::{Far, HostKeys, Phase, PlanSource, RemoteError, RemoteEvent, Request, ReviewWipe};

const PASSPHRASE: &str = "correct horse battery staple";

#[derive(Default)]
struct SimFar {
    ram_os: RefCell<bool>,
    boots: RefCell<u32>,
    kexec_pending: RefCell<bool>,
    /// After kexec the machine shows another host key.
    key_changes: bool,
    /// Jobs: name -> exit status once ended (None: running).
    jobs: RefCell<HashMap<String, Option<i32>>>,
    /// The exit status a started apply job ends with.
    apply_status: i32,
    /// Every script's tag, in order, with what it received on stdin.
    log: RefCell<Vec<(String, Vec<u8>)>>,
    scripts: RefCell<Vec<String>>,
}

impl SimFar {
    fn tags(&self) -> Vec<String> {
        self.log.borrow().iter().map(|(tag, _)| tag.clone()).collect()
    }
}

fn review_json() -> String {
    serde_json::json!({
        "event": "review", "host": "web1", "needs_passphrase": true, "nothing_to_do": false,
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
            "review" => format!("{}\n", review_json()),
            "read-plan" => "[disks.disk0]\n".into(),
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
        let kexec = std::mem::take(&mut *self.kexec_pending.borrow_mut());
        *self.ram_os.borrow_mut() = kexec;
        Ok(())
    }

    fn uploaded_bytes(&self) -> u64 {
        self.log.borrow().iter().map(|(_, input)| input.len() as u64).sum()
    }
}

fn request() -> Request {
    Request {
        phases: Phase::ALL.to_vec(),
        plan: Some(PlanSource::File("[disks.disk0]\n".into())),
        flake: Some("github:me/machines#web1".into()),
        kexec_tarball: Some(tarball().to_path_buf()),
        binary: None,
        dry_run: false,
        yes_wipe: Vec::new(),
        yes_wipe_all: false,
        passphrase: Some(installer::Secret::new(PASSPHRASE.as_bytes().to_vec())),
        skip_flake_check: false,
        post_install_check: Some("nixos-version".into()),
        boot_limit: Duration::from_secs(1),
    }
}

/// Runs the phases; returns the result, the events, and the disks the frontend was asked to confirm.
fn run(far: &SimFar, request: &Request) -> (Result<(), RemoteError>, Vec<RemoteEvent>, Vec<String>) {
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
fn tarball() -> &'static Path {
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

const STAND_IN_BINARY: &[u8] = b"#!/bin/sh\necho nix-dabei 0.1.0\n";

#[test]
fn the_binary_is_read_out_of_the_kexec_tarball() {
    assert_eq!(remote::tarball::member(tarball(), "kexec/nix-dabei").expect("member"), STAND_IN_BINARY);
    let error = remote::tarball::member(tarball(), "kexec/initrd").expect_err("absent");
    assert!(error.to_string().contains("has no kexec/initrd"), "{error}");
}

fn started(events: &[RemoteEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            RemoteEvent::PhaseStarted { phase } => Some(phase.name()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_phases_run_in_order_and_the_passphrase_travels_on_stdin_only() {
    let far = SimFar { ram_os: RefCell::new(true), ..SimFar::default() };
    let (result, events, asked) = run(&far, &request());
    result.expect("the run succeeds");
    assert_eq!(started(&events), ["connect", "inspect", "plan", "apply", "install", "reboot"]);
    assert!(events.iter().any(|e| matches!(e, RemoteEvent::PhaseSkipped { phase: Phase::Kexec, .. })));
    assert_eq!(asked, ["disk0"], "the wipe was confirmed by the frontend");
    let tags = far.tags();
    let position = |tag: &str| tags.iter().position(|t| t == tag).unwrap_or_else(|| panic!("{tag} in {tags:?}"));
    assert!(position("review") < position("start-job apply"));
    assert!(position("follow-job apply") < position("start-job install"));
    assert!(position("follow-job install") < position("reboot"));
    assert!(position("reboot") < position("post-install-check"));
    assert!(!tags.contains(&"receive-binary".to_string()), "the RAM OS's own nix-dabei is used");
    for script in far.scripts.borrow().iter() {
        assert!(!script.contains(PASSPHRASE), "the passphrase is in a script: {script}");
    }
    let received: Vec<Vec<u8>> =
        far.log.borrow().iter().filter(|(t, _)| t == "receive-file").map(|(_, i)| i.clone()).collect();
    assert!(received.contains(&PASSPHRASE.as_bytes().to_vec()), "the passphrase went on stdin");
    let apply = far.scripts.borrow().iter().find(|s| s.contains("start-job apply")).cloned().expect("apply job");
    assert!(apply.contains("'--yes-wipe' 'disk0'") && apply.contains("'--passphrase-file'"), "{apply}");
    let last = events.last().expect("events");
    assert!(matches!(last, RemoteEvent::RemoteFinished { ok: true, .. }), "{last:?}");
}

#[test]
fn from_a_rescue_system_the_ram_os_is_booted_first_and_the_host_key_checked() {
    let far = SimFar::default();
    let (result, events, _) = run(&far, &request());
    result.expect("the run succeeds");
    assert_eq!(started(&events), ["connect", "inspect", "kexec", "plan", "apply", "install", "reboot"]);
    let tags = far.tags();
    assert_eq!(tags.iter().filter(|t| *t == "inspect").count(), 2, "inspected again after kexec: {tags:?}");
    assert!(tags.iter().position(|t| t == "receive-binary") < tags.iter().position(|t| t == "disks"));
    let binary = far.log.borrow().iter().find(|(t, _)| t == "receive-binary").map(|(_, i)| i.clone());
    assert_eq!(binary.as_deref(), Some(STAND_IN_BINARY), "the tarball's nix-dabei was uploaded");

    let changed = SimFar { key_changes: true, ..SimFar::default() };
    let (result, events, _) = run(&changed, &request());
    let error = result.expect_err("a changed host key stops the run");
    assert!(matches!(error, RemoteError::HostKeyChanged(_)), "{error}");
    assert!(error.to_string().contains("refusing to go on"), "{error}");
    assert!(!changed.tags().iter().any(|t| t.starts_with("start-job")), "nothing was applied");
    let failed = events.iter().find_map(|e| match e {
        RemoteEvent::PhaseFailed { phase, error, .. } => Some((*phase, error.clone())),
        _ => None,
    });
    assert!(failed.is_some_and(|(phase, error)| phase == Phase::Kexec && error.contains("host key")), "{events:?}");
    assert!(matches!(events.last(), Some(RemoteEvent::RemoteFinished { ok: false, .. })));
}

#[test]
fn a_dry_run_reviews_and_writes_nothing() {
    let far = SimFar::default();
    let request = Request { dry_run: true, passphrase: None, ..request() };
    let (result, events, asked) = run(&far, &request);
    result.expect("the dry run succeeds");
    assert_eq!(started(&events), ["connect", "inspect", "plan"]);
    assert!(asked.is_empty(), "nothing to confirm in a dry run");
    let tags = far.tags();
    for writing in ["kexec", "receive-tarball", "start-job apply", "start-job install", "reboot", "job-states"] {
        assert!(!tags.iter().any(|t| t == writing), "{writing} ran in a dry run: {tags:?}");
    }
    assert!(far.scripts.borrow().iter().all(|s| !s.contains("/run/nix-dabei/remote/")), "only the dry run's folder");
    let last_script = far.scripts.borrow().last().cloned().unwrap_or_default();
    assert!(last_script.contains("rm -rf '/run/nix-dabei/remote-dry-run'"), "{last_script}");
}

#[test]
fn a_job_left_running_by_an_earlier_run_is_reattached_not_started_again() {
    let far = SimFar { ram_os: RefCell::new(true), ..SimFar::default() };
    far.jobs.borrow_mut().insert("apply".into(), None);
    let (result, events, asked) = run(&far, &request());
    result.expect("the run succeeds");
    let tags = far.tags();
    assert!(!tags.iter().any(|t| t == "review" || t == "start-job apply"), "{tags:?}");
    assert!(tags.iter().any(|t| t == "follow-job apply") && tags.iter().any(|t| t == "start-job install"));
    assert!(asked.is_empty(), "the running job was confirmed by the run that started it");
    assert!(events.iter().any(|e| matches!(e, RemoteEvent::Far(line) if line.contains(r#""event":"step-finished""#))));
}

#[test]
fn a_failed_apply_stops_before_the_install_and_the_reboot() {
    let far = SimFar { ram_os: RefCell::new(true), apply_status: 1, ..SimFar::default() };
    let (result, _, _) = run(&far, &request());
    let error = result.expect_err("the apply failed");
    assert!(error.to_string().contains("zpool create failed") && error.to_string().contains("resumes"), "{error}");
    let tags = far.tags();
    assert!(!tags.iter().any(|t| t == "start-job install" || t == "reboot"), "{tags:?}");
}

#[test]
fn phases_are_chosen_by_name() {
    assert_eq!(
        Phase::parse_list("connect, inspect,plan").expect("names"),
        [Phase::Connect, Phase::Inspect, Phase::Plan]
    );
    let error = Phase::parse_list("connect,format").expect_err("unknown");
    assert!(error.to_string().contains("\"format\"") && error.to_string().contains("kexec"), "{error}");
}
