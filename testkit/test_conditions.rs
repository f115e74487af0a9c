//! The build script of the crates whose tests need what a machine may not have: reference material
//! beside the checkout (`../shared/disko-examples`: disko's example configurations as JSON;
//! `../shared/nix-sources`: nixpkgs' lib and disko's source; `../shared/reference`: the Hetzner Cloud API's
//! OpenAPI description) and root, for loop devices. Where one is
//! missing, the tests that need it are marked ignored with the reason (a `cfg` they test), so that the
//! test runner counts them as skipped instead of failing or passing; `.ci/run` fails on any skip.

use std::path::{Path, PathBuf};

fn main() {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for (folder, missing) in
        [("disko-examples", "no_disko_examples"), ("nix-sources", "no_nix_sources"), ("reference", "no_reference")]
    {
        println!("cargo::rustc-check-cfg=cfg({missing})");
        match here.ancestors().map(|dir| dir.join("shared").join(folder)).find(|dir| dir.is_dir()) {
            Some(found) => println!("cargo::rerun-if-changed={}", found.display()),
            None => {
                println!("cargo::rustc-cfg={missing}");
                // Looked for again once it is there.
                let expected: &Path = &here.join("../../shared").join(folder);
                println!("cargo::rerun-if-changed={}", expected.display());
            }
        }
    }
    // Loop-device tests run as root; without root, or with NIX_DABEI_SKIP_ROOT_TESTS set, they are
    // ignored. The tests still fail (never pass) when run as another user without the mark.
    println!("cargo::rustc-check-cfg=cfg(no_root_tests)");
    println!("cargo::rerun-if-env-changed=NIX_DABEI_SKIP_ROOT_TESTS");
    if std::env::var_os("NIX_DABEI_SKIP_ROOT_TESTS").is_some() || !is_root() {
        println!("cargo::rustc-cfg=no_root_tests");
    }
    // This script, as the manifests name it.
    println!("cargo::rerun-if-changed={}", here.join("../testkit/test_conditions.rs").display());
}

/// Whether the build runs as root: `cargo test` runs the tests as the user who built them.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
