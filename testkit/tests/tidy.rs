//! The architecture's invariants, checked on the source: the plan model does no I/O, one module runs
//! programs, and every line keeps the workspace's width. A failure names the file and line.

use std::path::{Path, PathBuf};

/// The crates that ship in the binary; test harnesses (vm-tests, testkit) may do what they like.
const SHIPPED: &[&str] = &["layouts", "partitioner", "installer", "handover", "tui", "remote", "nix-dabei"];

/// The one module allowed to start programs.
const COMMAND_MODULE: &str = "installer/src/command.rs";

/// Kept in step with rustfmt.toml's max_width.
const MAX_WIDTH: usize = 120;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" && name != "fuzz-target" {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn files_under(relative: &str) -> Vec<(String, String)> {
    let root = workspace();
    let mut found = Vec::new();
    rust_files(&root.join(relative), &mut found);
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            (path.strip_prefix(&root).expect("inside").display().to_string(), text)
        })
        .collect()
}

/// Lines of code that mention `needle`, outside comments.
fn offending(files: &[(String, String)], needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, text) in files {
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if let Some(needle) = needles.iter().find(|n| code.contains(*n)) {
                hits.push(format!("{name}:{}: {needle}", number + 1));
            }
        }
    }
    hits
}

#[test]
fn the_plan_model_does_no_io_and_runs_nothing() {
    let files = files_under("layouts/src");
    assert!(files.len() > 10, "layouts/src not found");
    let io = ["std::fs", "std::process", "std::net", "std::env", "File::", "OpenOptions", "Command::new"];
    let hits = offending(&files, &io);
    assert!(hits.is_empty(), "layouts must stay pure:\n{}", hits.join("\n"));
}

#[test]
fn only_the_command_module_starts_programs() {
    let mut files = Vec::new();
    for krate in SHIPPED {
        files.extend(files_under(&format!("{krate}/src")));
    }
    files.retain(|(name, _)| name != COMMAND_MODULE);
    assert!(files.iter().any(|(name, _)| name.starts_with("partitioner/")), "sources not found");
    let hits = offending(&files, &["process::Command", "Command::new(", "Stdio::", "process::Child"]);
    assert!(hits.is_empty(), "programs are run through {COMMAND_MODULE} only:\n{}", hits.join("\n"));
}

#[test]
fn every_line_fits_the_workspace_width() {
    let mut long = Vec::new();
    for (name, text) in files_under(".") {
        for (number, line) in text.lines().enumerate() {
            if line.chars().count() > MAX_WIDTH {
                long.push(format!("{name}:{}: {} columns", number + 1, line.chars().count()));
            }
        }
    }
    assert!(long.is_empty(), "lines over {MAX_WIDTH} columns:\n{}", long.join("\n"));
}

#[test]
fn the_width_is_the_one_rustfmt_keeps() {
    let config = std::fs::read_to_string(workspace().join("rustfmt.toml")).expect("rustfmt.toml");
    assert!(config.lines().any(|l| l.trim() == format!("max_width = {MAX_WIDTH}")), "{config}");
}

/// The newest Rust the code itself needs (`u64::is_multiple_of`).
const CODE_NEEDS: (u32, u32) = (1, 87);

fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_declared_rust_version_is_what_the_locked_dependencies_and_the_code_need() {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).expect("Cargo.toml");
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| version(v.trim_matches('"')))
        .expect("rust-version in the workspace manifest");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let (needed, by) = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        // Dependencies from a registry; the workspace's own packages inherit the declared version.
        .filter(|p| !p["source"].is_null())
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?.to_string())))
        .chain([(CODE_NEEDS, "nix-dabei's own code".to_string())])
        .max()
        .expect("some version");
    assert_eq!(declared, needed, "rust-version must be {}.{} ({by} needs it)", needed.0, needed.1);
}
