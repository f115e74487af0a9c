//! The build script of the crates whose tests use reference material (`layouts`, `nix-dabei`): tells
//! those tests whether it sits beside the checkout (`../shared/disko-examples`: disko's example
//! configurations as JSON; `../shared/nix-sources`: nixpkgs' lib and disko's source). Without it those
//! tests are reported as ignored, with the reason, instead of failing or passing.

use std::path::{Path, PathBuf};

fn main() {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for (folder, missing) in [("disko-examples", "no_disko_examples"), ("nix-sources", "no_nix_sources")] {
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
    // This script, as both crates' manifests name it.
    println!("cargo::rerun-if-changed={}", here.join("../testkit/reference_material.rs").display());
}
