//! Every Nix file of the repository parses (Nix builds cannot run here; where Nix is available,
//! `nix flake check` builds the outputs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn nix_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && !name.starts_with('.') && name != "target" {
            nix_files(&path, found);
        } else if name.ends_with(".nix") {
            found.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    nix_files(&root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("flake.nix")), "{files:?}");
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let output = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .output()
            .expect("nix-instantiate (scripts/setup installs it)");
        assert!(output.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    }
}
