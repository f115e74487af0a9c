//! The phase machine against a simulated far side: which scripts run in which order, what a dry run, a
//! changed host key, a job left running by an earlier run and a failed apply do.

mod common;

use std::cell::RefCell;

use common::*;
use remote::{Phase, PlanSource, RemoteError, RemoteEvent, Request};

#[test]
fn the_binary_is_read_out_of_the_kexec_tarball() {
    assert_eq!(remote::tarball::member(tarball(), "kexec/nix-dabei").expect("member"), STAND_IN_BINARY);
    let error = remote::tarball::member(tarball(), "kexec/initrd").expect_err("absent");
    assert!(error.to_string().contains("has no kexec/initrd"), "{error}");
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

/// A preset planned on the far side after the kexec: the RAM OS's /run is new, so the run's folder is made
/// again before `plan -o` writes into it (found by the hetzner VM scenario: the plan phase failed).
#[test]
fn a_preset_is_planned_in_the_ram_os_after_kexec() {
    let far = SimFar { plan_text: Some(PLAN.into()), ..SimFar::default() };
    let words = ["--preset", "ext4", "--disk-select", "largest:1"].map(String::from).to_vec();
    let request = Request { plan: Some(PlanSource::Preset(words)), ..request() };
    let (result, events, _) = run(&far, &request);
    result.expect("planned after the kexec");
    assert_eq!(started(&events), ["connect", "inspect", "kexec", "plan", "apply", "install", "reboot"]);
    let tags = far.tags();
    let kexec = tags.iter().position(|t| t == "kexec").expect("a kexec");
    let made = tags.iter().rposition(|t| t == "make-dir").expect("the folder made");
    assert!(kexec < made && made < tags.iter().position(|t| t == "plan").expect("plan"), "{tags:?}");
}

#[test]
fn the_plan_made_there_and_its_module_are_written_here_before_the_review_is_acted_on() {
    let dir = std::env::temp_dir().join(format!("nix-dabei-plan-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("folder");
    let (plan_out, module_out) = (dir.join("web1.toml"), dir.join("disks.nix"));
    let far = SimFar { plan_text: Some(PLAN.into()), ..SimFar::default() };
    let words = ["--preset", "ext4", "--disk-select", "largest:1"].map(String::from).to_vec();
    // A dry run writes them too: the way to get the module into the flake before the install.
    let request = Request {
        plan: Some(PlanSource::Preset(words)),
        dry_run: true,
        passphrase: None,
        plan_out: Some(plan_out.clone()),
        module_out: Some(module_out.clone()),
        ..request()
    };
    let (result, events, _) = run(&far, &request);
    result.expect("the dry run succeeds");
    assert_eq!(std::fs::read_to_string(&plan_out).expect("the plan"), PLAN);
    let plan = layouts::Plan::from_toml(PLAN).expect("the plan reads");
    assert_eq!(std::fs::read_to_string(&module_out).expect("the module"), layouts::nixos::module(&plan));
    let noted = |text: &str| events.iter().any(|e| matches!(e, RemoteEvent::Note { text: t, .. } if t.contains(text)));
    assert!(noted("disks.nix") && noted("web1.toml"), "{events:?}");
    // Where it cannot be written, the run stops before anything is written there.
    let request = Request { module_out: Some(dir.join("no/such/folder/disks.nix")), dry_run: false, ..request };
    let far = SimFar { plan_text: Some(PLAN.into()), ram_os: RefCell::new(true), ..SimFar::default() };
    let (result, _, _) = run(&far, &request);
    let error = result.expect_err("no folder");
    assert!(error.to_string().contains("no/such/folder/disks.nix"), "{error}");
    assert!(!far.tags().iter().any(|t| t.starts_with("start-job")), "{:?}", far.tags());
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn a_system_built_here_needs_the_target_mounted_there_before_anything_is_built() {
    let far = SimFar { ram_os: RefCell::new(true), target_unmounted: true, ..SimFar::default() };
    let phases = vec![Phase::Connect, Phase::Inspect, Phase::Install];
    let request = Request { phases, build_on_local: true, skip_flake_check: true, ..request() };
    let (result, _, _) = run(&far, &request);
    let error = result.expect_err("nothing to copy into").to_string();
    assert!(error.contains("/mnt is not mounted") && error.contains("apply phase"), "{error}");
    let tags = far.tags();
    assert!(!tags.iter().any(|t| t.starts_with("copy-closure") || t.starts_with("start-job")), "{tags:?}");
}

/// The review is of the plan sent: its id is computed here from the plan's text, and a far side whose
/// review names another plan is refused before anything is written.
#[test]
fn a_review_of_another_plan_is_refused() {
    let far = SimFar { ram_os: RefCell::new(true), ..SimFar::default() };
    let (result, events, _) = run(&far, &request());
    result.expect("the run succeeds");
    let sent = layouts::Plan::from_toml(common::PLAN).expect("plan").id();
    let reviewed = events.iter().find_map(|e| match e {
        RemoteEvent::Reviewed { review } => Some(review.plan_id.clone()),
        _ => None,
    });
    assert_eq!(reviewed.as_deref(), Some(sent.as_str()));

    let lying = SimFar {
        ram_os: RefCell::new(true),
        review_plan_id: Some("0123456789abcdef\u{1b}[2J".into()),
        ..SimFar::default()
    };
    let (result, _, asked) = run(&lying, &request());
    let error = result.expect_err("another plan's review").to_string();
    assert!(error.contains("not the one sent") && error.contains(&sent), "{error}");
    assert!(!error.contains('\u{1b}'), "the far side's text reaches the terminal raw: {error:?}");
    assert!(asked.is_empty(), "nothing was asked");
    assert!(!lying.tags().iter().any(|t| t.starts_with("start-job")), "nothing was applied");
}
