//! `vm-tests`: builds the test image (cached) and runs the VM scenarios, printing the time of each and a
//! closing "N passed, N failed" line.
//!
//! Usage: `vm-tests [image | list | bench | SCENARIO...]`. Logs are kept under target/vm-tests/<scenario>/.

mod bench;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use vm_tests::vm;

fn work_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("vm-tests")
}

/// The nix-dabei binary the scenarios run: NIX_DABEI_BIN, or the vm-test build beside this one.
fn nix_dabei_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NIX_DABEI_BIN") {
        return Ok(PathBuf::from(path));
    }
    // The build with the test hooks (weak key derivation, power cuts), beside this one's target folder.
    let me = std::env::current_exe()?;
    let candidate = me.parent().and_then(Path::parent).context("no folder")?.join("vm-test/nix-dabei");
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "no {}: build it (cargo build --profile vm-test -p nix-dabei --features test-hooks) or set NIX_DABEI_BIN",
        candidate.display()
    )
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("vm-tests: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut all = scenarios::all();
    // The benchmark runs only when named: it prints figures rather than testing.
    if args.first().map(String::as_str) == Some("bench") {
        all.push(bench::scenario());
    }
    if args.first().map(String::as_str) == Some("list") {
        for scenario in &all {
            println!("{}", scenario.name);
        }
        return Ok(true);
    }
    let started = Instant::now();
    let image = vm::build_image()?;
    println!("vm-tests: image ready in {:.1} s ({})", started.elapsed().as_secs_f64(), image.initrd.display());
    if args.first().map(String::as_str) == Some("image") {
        return Ok(true);
    }
    let selected: Vec<&scenarios::Scenario> = if args.is_empty() {
        all.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args {
            chosen.push(
                all.iter()
                    .find(|s| s.name == name)
                    .with_context(|| format!("no scenario {name:?} (see `vm-tests list`)"))?,
            );
        }
        chosen
    };
    let binary = nix_dabei_binary()?;
    let (mut passed, mut failed) = (0, 0);
    for scenario in selected {
        let outcome = scenarios::run(scenario, &image, &binary, &work_root());
        match outcome {
            Ok(report) => {
                passed += 1;
                println!(
                    "vm-tests: {} passed in {:.1} s ({})",
                    scenario.name,
                    report.total.as_secs_f64(),
                    report.boots_summary()
                );
            }
            Err(error) => {
                failed += 1;
                println!("vm-tests: {} FAILED: {error:#}", scenario.name);
                // The console holds the guest's messages; what it reported (plans, events, checks) is here.
                println!(
                    "vm-tests: {} left what it reported in {}",
                    scenario.name,
                    work_root().join(scenario.name).join("share/out").display()
                );
            }
        }
    }
    println!("vm-tests: all scenarios took {:.1} s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
