# The paths, relative to the repository's root, that the package is built from: the workspace's
# manifest and lock file and every member the manifest names, so that a new member is never left out
# (cargo refuses to load a workspace with a member missing). Plain Nix without nixpkgs, so that the
# tests evaluate it with any Nix and build the tree it names (nix-dabei/tests/nix_files.rs).
let
  manifest = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
[ "Cargo.toml" "Cargo.lock" ] ++ manifest.workspace.members
