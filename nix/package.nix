# The nix-dabei command, built from this repository with the C libraries it links: libblkid
# (util-linux), libcryptsetup and libudev. `udev` is systemd's library, or libudev-zero where systemd
# does not build (static builds: pkgs/top-level/all-packages.nix maps it), which the kexec tarball uses.
{ lib
, stdenv
, rustPlatform
, pkg-config
, util-linux
, cryptsetup
, udev
}:

rustPlatform.buildRustPackage {
  pname = "nix-dabei";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  # The workspace as Cargo.toml names it (./source-paths.nix), and nothing else of the repository.
  # lib.fileset.unions of paths: nixpkgs lib/fileset/default.nix; each path must exist.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (map (path: ../. + "/${path}") (import ./source-paths.nix));
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--package" "nix-dabei" ];

  nativeBuildInputs = [ pkg-config rustPlatform.bindgenHook ];
  buildInputs = [ util-linux cryptsetup udev ];
  # A static build links libcryptsetup, libblkid and their dependencies statically too: each library
  # and the nixpkgs attribute of its archive are in ./static-libraries.json (checked against Cargo.lock
  # and pkg-config by nix-dabei/tests/nix_files.rs).
  env = lib.optionalAttrs stdenv.hostPlatform.isStatic { PKG_CONFIG_ALL_STATIC = "1"; };

  # The tests need root, loop devices and a VM; they run in this repository's CI instead.
  doCheck = false;

  meta = {
    description = "Install NixOS onto the disks of a machine reached by SSH or a console";
    mainProgram = "nix-dabei";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
