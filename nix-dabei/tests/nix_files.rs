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

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `rust-version` must be a Rust the locked nixpkgs has: Rust ships a stable release every six weeks
/// since 1.0 (2015-05-15), and nixos-unstable takes each within weeks. So the locked nixpkgs (its
/// `lastModified`) holds at least the release of 12 weeks before it; rust-version may be no newer.
/// At today's lock (2026-06-16) that is 1.94 or newer, against rust-version 1.89.
#[test]
fn the_minimum_rust_is_one_the_locked_nixpkgs_builds_with() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml")).expect("toml");
    let rust_version = manifest["workspace"]["package"]["rust-version"].as_str().expect("rust-version");
    let minor: i64 = rust_version.split('.').nth(1).and_then(|m| m.parse().ok()).expect("1.N");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("flake.lock")).expect("flake.lock")).expect("json");
    let locked_at = lock["nodes"]["nixpkgs"]["locked"]["lastModified"].as_i64().expect("lastModified") / 86_400;
    // 1.0 came out on a Friday; every release since on a Thursday, six weeks apart.
    let release_of = |minor: i64| days_from_civil(2015, 5, 14) + minor * 42;
    // The train's dates are exact for recent releases (1.89: 2025-08-07).
    assert_eq!(release_of(89), days_from_civil(2025, 8, 7));
    let in_nixpkgs = (0..).take_while(|m| release_of(*m) + 84 <= locked_at).last().expect("a release");
    assert!(
        minor <= in_nixpkgs,
        "rust-version {rust_version} is newer than the 1.{in_nixpkgs} the locked nixpkgs is sure to have"
    );
}

/// nix/static-libraries.json names every C library the static build links, with the nixpkgs attribute
/// of its archive: every crate of nix-dabei's dependency graph that links a C library (Cargo's `links`,
/// or a -sys crate with a build script) is there with its pkg-config module, and every library the static
/// link line of those modules names
/// (pkg-config --static, as the -sys crates ask for it in a static build) is listed.
#[test]
fn the_static_build_lists_every_c_library_it_links() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("nix/static-libraries.json")).expect("nix/static-libraries.json"),
    )
    .expect("json");
    let metadata = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--locked", "--format-version", "1"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(metadata.status.success(), "{}", String::from_utf8_lossy(&metadata.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("metadata");
    // nix-dabei's normal dependencies, transitively.
    let nodes = metadata["resolve"]["nodes"].as_array().expect("nodes");
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).expect("a node");
    let start = metadata["packages"].as_array().expect("packages").iter().find(|p| p["name"] == "nix-dabei");
    let mut queue = vec![start.expect("nix-dabei")["id"].as_str().expect("id").to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        for dep in node(&id)["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"].as_array().expect("kinds").iter().any(|k| k["kind"].is_null());
            if normal {
                queue.push(dep["pkg"].as_str().expect("pkg").to_string());
            }
        }
    }
    let linking: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| seen.contains(p["id"].as_str().unwrap_or_default()))
        .filter(|p| {
            // A C library's binding: `links`, or a -sys crate with a build script (which probes it).
            let builds = p["targets"].as_array().is_some_and(|t| {
                t.iter().any(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "custom-build")))
            });
            p["links"].is_string() || (p["name"].as_str().is_some_and(|n| n.ends_with("-sys")) && builds)
        })
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let crates = listed["crates"].as_object().expect("crates");
    let bundled = listed["bundled"].as_object().expect("bundled");
    let mut names: Vec<&str> = crates.keys().chain(bundled.keys()).map(String::as_str).collect();
    names.sort_unstable();
    let mut linking_sorted = linking.clone();
    linking_sorted.sort_unstable();
    assert_eq!(names, linking_sorted, "the crates that link C libraries (or bundle their own C)");
    let modules: Vec<&str> = crates.values().map(|m| m.as_str().expect("module")).collect();
    let output = std::process::Command::new("pkg-config")
        .args(["--static", "--libs"])
        .args(&modules)
        .output()
        .expect("pkg-config (scripts/setup installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let libraries = listed["libraries"].as_object().expect("libraries");
    for flag in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        let library = flag.strip_prefix("-l").or_else(|| flag.strip_prefix("-")).unwrap_or(flag);
        assert!(libraries.contains_key(library), "{flag} ({modules:?}) has no nixpkgs attribute in the list");
    }
}
