//! `--build-on local` with this machine's real Nix: the flake is checked here before anything is written
//! there, built here, and its whole closure copied into a store standing for the far side's target; the
//! install there gets the built system. Only SSH is simulated.

mod common;

use std::path::Path;

use common::*;
use layouts::presets::{build, DiskFacts, PresetKind, PresetOptions};
use remote::{PlanSource, Request};

/// A flake whose system is two store paths (the system refers to its "etc"), built without nixpkgs; its
/// configuration has none of the plan's filesystems.
const FLAKE: &str = r#"{
  outputs = { self }: {
    nixosConfigurations.web1.config = {
      fileSystems = { };
      system.build.toplevel = let
        etc = derivation {
          name = "etc"; system = "x86_64-linux"; builder = "/bin/sh";
          args = [ "-c" "echo 'networking.hostName = web1' > $out" ];
        };
      in derivation {
        name = "nixos-system-web1"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo ${etc} > $out" ];
      };
    };
  };
}
"#;

fn plan_text(flake: &str) -> String {
    let mut options = PresetOptions::new(PresetKind::Single, vec![DiskFacts::offline("/dev/vda", 8 << 30)]);
    options.hostname = "web1".into();
    options.flake = Some(flake.into());
    build(&options).expect("preset").to_toml()
}

fn valid_in(store: &Path, path: &str) -> bool {
    std::process::Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "path-info", "--store"])
        .arg(format!("local?root={}", store.display()))
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
#[cfg_attr(no_root_tests, ignore = "needs root for loop devices (not root, or NIX_DABEI_SKIP_ROOT_TESTS)")]
fn the_system_is_checked_and_built_here_and_its_closure_copied_there() {
    testkit::loopdev::require_root();
    assert!(installer::command::available("nix"), "this test needs Nix (Debian's nix-bin; scripts/setup installs it)");
    // Debian's Nix as root without its daemon: no build users, no binary cache here, and a builder that is
    // the host's /bin/sh. This test's process runs this one test, so setting the environment is safe.
    std::env::set_var(
        "NIX_CONFIG",
        "build-users-group =\nsubstituters =\nsandbox = false\nexperimental-features = nix-command flakes",
    );
    let dir = std::env::temp_dir().join(format!("nix-dabei-build-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flake")).expect("folder");
    std::fs::write(dir.join("flake/flake.nix"), FLAKE).expect("flake");
    let flake = format!("path:{}#web1", dir.join("flake").display());
    let text = plan_text(&flake);
    let store = dir.join("far-target");
    let request = Request {
        plan: Some(PlanSource::File(text.clone())),
        flake: Some(flake.clone()),
        build_on_local: true,
        ..request()
    };

    // The configuration does not fit the plan: refused here, in the plan phase, before apply.
    let far = SimFar { ram_os: true.into(), plan_text: Some(text.clone()), ..SimFar::default() };
    let (result, _, _) = run(&far, &request);
    let error = result.expect_err("a configuration without the plan's filesystems").to_string();
    assert!(error.contains("does not fit the plan") && error.contains("Nothing was written"), "{error}");
    let tags = far.tags();
    assert!(!tags.iter().any(|t| t.starts_with("start-job") || t.starts_with("copy-closure")), "{tags:?}");
    let review = far.scripts.borrow().iter().find(|s| remote::script::tag(s) == "review").cloned().expect("review");
    assert!(review.contains("'--skip-flake-check'"), "the far side cannot see a local flake: {review}");

    // Unchecked: built here, copied with everything it refers to, installed there as built.
    let far =
        SimFar { ram_os: true.into(), plan_text: Some(text), store_root: Some(store.clone()), ..SimFar::default() };
    let (result, _, _) = run(&far, &Request { skip_flake_check: true, ..request });
    result.expect("the run");
    // The far side fetches from its caches what they have (none here: the copy brings everything).
    assert!(far.tags().iter().any(|t| t == "copy-closure substituting"), "{:?}", far.tags());
    let copied = far.copied.borrow().clone();
    assert_eq!(copied.len(), 1, "{copied:?}");
    let (system, bytes) = &copied[0];
    assert!(system.starts_with("/nix/store/") && system.ends_with("-nixos-system-web1"), "{system}");
    assert!(valid_in(&store, system), "{system} is not in the far side's target store");
    let etc = std::fs::read_to_string(system).expect("the system as built").trim().to_string();
    assert!(valid_in(&store, &etc), "the system's reference {etc} was not copied with it");
    assert!(*bytes > 0);
    let install = far.scripts.borrow().iter().find(|s| remote::script::tag(s) == "start-job install").cloned();
    let install = install.expect("the install job");
    assert!(install.contains(&format!("'--system' '{system}'")), "{install}");
    assert!(install.contains(&format!("'--flake' '{flake}'")), "{install}");

    // Built already (`--system`): copied and installed as it is; the flake is not built again (it is
    // gone here).
    std::fs::remove_dir_all(dir.join("flake")).expect("flake removed");
    let store = dir.join("far-target-2");
    let text = plan_text(&flake);
    let far = SimFar {
        ram_os: true.into(),
        plan_text: Some(text.clone()),
        store_root: Some(store.clone()),
        ..SimFar::default()
    };
    let built = Request {
        system: Some(system.clone()),
        skip_flake_check: true,
        plan: Some(PlanSource::File(text)),
        ..common::request()
    };
    let (result, _, _) = run(&far, &Request { build_on_local: true, flake: Some(flake.clone()), ..built });
    result.expect("the run with a built system");
    assert!(valid_in(&store, system), "{system} is not in the far side's target store");
    let install = far.scripts.borrow().iter().find(|s| remote::script::tag(s) == "start-job install").cloned();
    assert!(install.expect("the install job").contains(&format!("'--system' '{system}'")));
    let _ = std::fs::remove_dir_all(&dir);
}
