//! `vm-tests`: builds the test image (cached) and runs the VM scenarios, printing the time of each and a
//! closing "N passed, N failed" line.
//!
//! Usage: `vm-tests [image | list | show SCENARIO... | bench | SCENARIO...]`. Logs are kept under
//! target/vm-tests/<scenario>/.

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
    let mut all = scenarios::all()?;
    // The benchmark runs only when named: it prints figures rather than testing.
    if args.first().map(String::as_str) == Some("bench") {
        all.push(bench::scenario());
        // The benchmark runs alone: its machine has every core of the host (as a server has several),
        // not the share of one of two scenarios running at once. NIX_DABEI_VM_CPUS still wins.
        if std::env::var_os("NIX_DABEI_VM_CPUS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            std::env::set_var("NIX_DABEI_VM_CPUS", cores.to_string());
        }
    }
    // The shell each boot of a scenario runs, as the guest gets it.
    if args.first().map(String::as_str) == Some("show") {
        for name in &args[1..] {
            let scenario = all.iter().find(|s| &s.name == name).with_context(|| format!("no scenario {name:?}"))?;
            for (index, boot) in scenario.boots.iter().enumerate() {
                println!("# {name}: boot {} (vm-tests/scenarios/{})\n{}", index + 1, boot.source, boot.script);
            }
        }
        return Ok(true);
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
                    .find(|s| &s.name == name)
                    .with_context(|| format!("no scenario {name:?} (see `vm-tests list`)"))?,
            );
        }
        chosen
    };
    let binary = nix_dabei_binary()?;
    let outcomes = run_all(&selected, &image, &binary);
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let passed = outcomes.len() - failed;
    let mut slowest: Vec<&Outcome> = outcomes.iter().collect();
    slowest.sort_by_key(|o| std::cmp::Reverse(o.elapsed));
    println!("vm-tests: the slowest scenarios:");
    for outcome in slowest.iter().take(5) {
        println!("vm-tests:   {:>7.1} s  {}", outcome.elapsed.as_secs_f64(), outcome.name);
    }
    let boots: Vec<f64> = outcomes.iter().flat_map(|o| o.boot_seconds.iter().copied()).collect();
    if !boots.is_empty() {
        let mut sorted = boots.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "vm-tests: {} boots, median {:.1} s, longest {:.1} s, {:.0} s of machine time in all",
            boots.len(),
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
            boots.iter().sum::<f64>()
        );
    }
    print_boot_stages(&outcomes);
    println!(
        "vm-tests: all scenarios took {:.1} s ({} at once, {} CPU each)",
        started.elapsed().as_secs_f64(),
        vm::jobs(),
        vm::cpus_per_machine()
    );
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// How one scenario ended.
struct Outcome {
    name: String,
    elapsed: std::time::Duration,
    boot_seconds: Vec<f64>,
    /// Each boot's stages as the init marked them.
    stages: Vec<Vec<(String, f64)>>,
    result: Result<()>,
}

/// Runs the scenarios, [`vm::jobs`] at a time, the longest first so that the last to finish is a short
/// one; prints each as it ends. Returns the outcomes in the order given.
fn run_all(selected: &[&scenarios::Scenario], image: &vm::Image, binary: &Path) -> Vec<Outcome> {
    let mut queue: Vec<(usize, &scenarios::Scenario)> = selected.iter().copied().enumerate().collect();
    // Popped from the end: the heaviest last in the list.
    queue.sort_by_key(|(_, scenario)| scenario.weight());
    let queue = std::sync::Mutex::new(queue);
    let done = std::sync::Mutex::new(Vec::new());
    let root = work_root();
    std::thread::scope(|scope| {
        for _ in 0..vm::jobs().min(selected.len()) {
            scope.spawn(|| loop {
                let Some((index, scenario)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                println!("vm-tests: {} starts", scenario.name);
                let started = Instant::now();
                let outcome = match scenarios::run(scenario, image, binary, &root) {
                    Ok(report) => {
                        println!(
                            "vm-tests: {} passed in {:.1} s ({})",
                            scenario.name,
                            report.total.as_secs_f64(),
                            report.boots_summary()
                        );
                        Outcome {
                            name: scenario.name.clone(),
                            elapsed: report.total,
                            boot_seconds: report.boots.iter().map(|b| b.as_secs_f64()).collect(),
                            stages: report.logs.iter().map(|log| vm::stages(log)).collect(),
                            result: Ok(()),
                        }
                    }
                    Err(error) => {
                        // The console holds the guest's messages; what it reported (plans, events,
                        // checks) is in its share.
                        println!(
                            "vm-tests: {} FAILED: {error:#}\nvm-tests: {} left what it reported in {}",
                            scenario.name,
                            scenario.name,
                            root.join(&scenario.name).join("share/out").display()
                        );
                        Outcome {
                            name: scenario.name.clone(),
                            elapsed: started.elapsed(),
                            boot_seconds: Vec::new(),
                            stages: Vec::new(),
                            result: Err(error),
                        }
                    }
                };
                done.lock().unwrap_or_else(|p| p.into_inner()).push((index, outcome));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

/// Where the boots' seconds went: the median of each stage over every boot that marked it, from the
/// kernel's start to the init, loading modules, udev, and from the share's mount to the script's start.
fn print_boot_stages(outcomes: &[Outcome]) {
    let mut spans: Vec<(String, Vec<f64>)> = Vec::new();
    for stages in outcomes.iter().flat_map(|o| o.stages.iter()) {
        let mut previous = 0.0;
        let mut previous_name = "kernel".to_string();
        for (name, at) in stages {
            let span = at - previous;
            match spans.iter_mut().find(|(n, _)| *n == previous_name) {
                Some((_, values)) => values.push(span),
                None => spans.push((previous_name.clone(), vec![span])),
            }
            previous = *at;
            previous_name = name.clone();
        }
    }
    if spans.is_empty() {
        return;
    }
    let medians: Vec<String> = spans
        .iter_mut()
        .map(|(name, values)| {
            values.sort_by(f64::total_cmp);
            format!("{name} {:.1} s", values[values.len() / 2])
        })
        .collect();
    println!("vm-tests: a boot's stages, medians of guest uptime: {}", medians.join(", "));
}
