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

/// The tree `nix/package.nix` builds from: the files git tracks under the paths `nix/source-paths.nix`
/// names (evaluated with this machine's Nix; `lib.fileset.toSource` of those paths keeps the same files
/// where the checkout is clean), copied into a folder of their own. Cargo must load that workspace
/// offline with the lock file as it is: a workspace member left out of the package, or a lock file that
/// does not match, fails here before `nix build` would.
#[test]
fn the_package_source_holds_the_whole_workspace_and_its_lock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(root.join("nix/source-paths.nix"))
        .output()
        .expect("nix-instantiate (scripts/setup installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let paths: Vec<String> = serde_json::from_slice(&output.stdout).expect("a list of paths");
    for member in ["layouts", "partitioner", "installer", "remote", "nix-dabei"] {
        assert!(paths.iter().any(|p| p == member), "{member} is not in the package's source: {paths:?}");
    }
    let listed =
        Command::new("git").arg("-C").arg(&root).args(["ls-files", "-z", "--"]).args(&paths).output().expect("git");
    assert!(listed.status.success(), "git ls-files: {}", String::from_utf8_lossy(&listed.stderr));
    let tree = std::env::temp_dir().join(format!("nix-dabei-package-source-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    let files: Vec<&[u8]> = listed.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()).collect();
    assert!(files.len() > 50, "only {} files", files.len());
    for file in files {
        let relative = Path::new(std::str::from_utf8(file).expect("UTF-8 path"));
        let target = tree.join(relative);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
        // A file git tracks but the work tree lacks (deleted, not committed) is not in the source either.
        if root.join(relative).exists() {
            std::fs::copy(root.join(relative), &target).expect("copy");
        }
    }
    // Offline, cargo resolves what this platform builds with (downloaded by the build before the tests);
    // --locked fails where the lock file would have to change.
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--locked", "--format-version", "1", "--filter-platform", &platform])
        .arg("--manifest-path")
        .arg(tree.join("Cargo.toml"))
        .output()
        .expect("cargo");
    let _ = std::fs::remove_dir_all(&tree);
    assert!(
        metadata.status.success(),
        "cargo cannot load the package's source: {}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("metadata JSON");
    let members = metadata["workspace_members"].as_array().map_or(0, Vec::len);
    assert_eq!(members, paths.len() - 2, "the workspace's members are the source's folders");
}
