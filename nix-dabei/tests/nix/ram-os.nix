# Evaluates the RAM OS module, the flake's NixOS module and the kexec tarball's and runvm's scripts with
# nixpkgs' lib alone: nixpkgs' modules and packages are stand-ins (any option is accepted as a freeform
# value, packages are named placeholders), so that what this repository's Nix code decides can be checked
# without nixpkgs. Prints facts as JSON for nix-dabei/tests/ram_os.rs.
{ libPath, repo }:

let
  lib = import libPath;
  package = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  # Every attribute the program list names (nix/programs.json), and those the RAM OS adds.
  programAttributes = map (program: program.nixpkgs) (lib.importJSON (repo + "/nix/programs.json"));
  pkgsFor = system: lib.genAttrs (lib.unique (programAttributes ++ [
    "nix-dabei" "cryptsetup" "gptfdisk" "kexec-tools" "iproute2" "gitMinimal" "rsync" "qemu" "coreutils"
  ])) package // {
    stdenv.hostPlatform = { inherit system; isAarch64 = system == "aarch64-linux"; qemuArch = lib.head (lib.splitString "-" system); };
    # What nix/tests/boot.nix takes from nixpkgs: a NixOS test is the arguments it was given.
    testers.runNixOSTest = args: args;
    closureInfo = _: package "closure-info";
    OVMF = { firmware = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_CODE.fd"; variables = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_VARS.fd"; };
    qemu_test = package "qemu-test";
    # The few nixpkgs files the boot tests import (nixos/tests/ssh-keys.nix), as stand-ins.
    path = ./nixpkgs;
  };
  pkgs = pkgsFor "x86_64-linux";
  # Whatever nixpkgs' own modules would declare.
  anyOption = {
    config._module.freeformType = lib.types.lazyAttrsOf lib.types.anything;
    # Declared as nixpkgs does: lazily, since its attributes refer to each other.
    options.system.build = lib.mkOption { type = lib.types.lazyAttrsOf lib.types.unspecified; default = { }; };
    options.environment.systemPackages = lib.mkOption { type = lib.types.listOf lib.types.package; default = [ ]; };
    options.boot.kernelParams = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
  };
  nixpkgsSettings = {
    # What nixpkgs' modules choose: the kernel's ZFS, the system's systemd and Nix (named apart from the
    # package set's, so that the tests see which one the module took).
    boot.zfs.package = package "zfs-for-the-kernel";
    systemd.package = package "systemd-of-the-system";
    nix.package = package "nix-of-the-system";
    system.path = package "system-path";
    system.build.toplevel = "/nix/store/00000000000000000000000000000000-nixos-system-nix-dabei";
  };
  evaluate = modules: (lib.evalModules {
    modules = modules ++ [ anyOption nixpkgsSettings ];
    specialArgs = { inherit pkgs; modulesPath = ./modules; };
  }).config;

  # The flake's outputs with a stand-in nixpkgs input: only what needs no package set is read.
  flake = (import (repo + "/flake.nix")).outputs { self = flake; nixpkgs = stubNixpkgs; };
  stubNixpkgs = {
    # nixpkgs' flake adds nixosSystem to its lib; here it evaluates the modules with the stand-ins.
    lib = lib // { nixosSystem = args: { config = evaluate args.modules; }; };
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: pkgsFor system // {
      callPackage = _: _: package "nix-dabei-from-the-flake-${system}";
    });
  };

  ramOs = evaluate [ flake.nixosModules.ram-os { nix-dabei.ramOs.authorizedKeys = [ "ssh-ed25519 AAAA netboot" ]; } ];
  imported = evaluate [ flake.nixosModules.nix-dabei { programs.nix-dabei.enable = true; } ];
  names = map (p: p.name);

  tarballScript = import (repo + "/nix/kexec-tarball.nix") {
    inherit lib;
    runCommand = _name: _env: script: script;
    binutils-unwrapped = package "binutils";
    kernelImage = "/nix/store/kernel/Image";
    initrd = package "initrd";
    commandLine = ramOs.system.build.ramOsCommandLine;
    nix-dabei-static = package "nix-dabei-static";
    iproute2-static = package "iproute2-static";
    kexec-tools-static = package "kexec-tools-static";
  };
  sizesScript = (import (repo + "/nix/ram-os-sizes.nix") {
    writeShellApplication = args: args.text;
    coreutils = package "coreutils";
    findutils = package "findutils";
    closureInfo = _: package "closure-info";
    kexecTarball = package "kexec-tarball";
    initrd = package "initrd";
    squashfs = package "squashfs";
    toplevel = package "toplevel";
  });
  # The boot tests of the flake's checks (nix/tests/boot.nix), as far as they evaluate without nixpkgs.
  bootTests = lib.mapAttrs (name: test: {
    inherit (test) name testScript;
    nodes = lib.mapAttrs (node: module: let config = evaluate [ module ]; in {
      disks = builtins.length (config.virtualisation.emptyDiskImages or [ ]);
      memory = config.virtualisation.memorySize or null;
      plan = let etc = config.environment.etc or { }; in
        if etc ? "nix-dabei-test/plan.toml" then toString etc."nix-dabei-test/plan.toml".source else null;
      packages = names config.environment.systemPackages;
      etc = builtins.attrNames (config.environment.etc or { });
      authorizedKeys = config.users.users.root.openssh.authorizedKeys.keys or [ ];
      additionalPaths = map toString (config.virtualisation.additionalPaths or [ ]);
    }) test.nodes;
  }) (lib.filterAttrs (name: _: lib.hasPrefix "boot-" name) flake.checks.x86_64-linux);
  # Each plan's module of nix/tests/plans, as the installed systems of the boot tests import it.
  testPlans = map (file: lib.removeSuffix ".nix" file)
    (builtins.filter (lib.hasSuffix ".nix") (builtins.attrNames (builtins.readDir (repo + "/nix/tests/plans"))));
  bootSystems = lib.genAttrs testPlans (name:
    let installed = evaluate [
      (repo + "/nix/tests/plans/${name}.nix")
      ({ modulesPath, ... }: {
        imports = [ (modulesPath + "/testing/test-instrumentation.nix") (modulesPath + "/profiles/qemu-guest.nix") ];
      })
    ];
    in { mounts = builtins.attrNames installed.fileSystems; imported = builtins.attrNames installed.stub.imported; });
  runvm = system: (import (repo + "/nix/runvm.nix") {
    inherit lib;
    stdenv = (pkgsFor system).stdenv;
    writeShellApplication = args: args.text;
    qemu = package "qemu";
    kernelImage = "/nix/store/kernel/Image";
    initrd = package "initrd";
    commandLine = "init=/x/init";
  });
in
{
  commandLine = ramOs.system.build.ramOsCommandLine;
  initrdSystemd = ramOs.boot.initrd.systemd.enable;
  initrdNetwork = ramOs.boot.initrd.network or { };
  initrdServices = builtins.attrNames ramOs.boot.initrd.systemd.services;
  handover = ramOs.boot.initrd.systemd.services.nix-dabei-handover;
  restore = ramOs.systemd.services.nix-dabei-restore;
  tui = ramOs.systemd.services.nix-dabei-tui;
  openssh = ramOs.services.openssh;
  rootKeys = ramOs.users.users.root.openssh.authorizedKeys.keys;
  networkd = ramOs.networking.useNetworkd;
  resolved = ramOs.services.resolved.enable;
  nixSettings = ramOs.nix.settings;
  ramOsPackages = names ramOs.environment.systemPackages;
  ramOsMarker = ramOs.environment.etc."nix-dabei/ram-os".text;
  kernelParams = ramOs.boot.kernelParams;
  # What keeps it lean (nix/ram-os.nix): the nixpkgs modules it imports, the network stack, the store
  # and activation choices, and what they leave out.
  lean = {
    imported = builtins.attrNames ramOs.stub.imported;
    networkmanager = ramOs.networking.networkmanager.enable;
    dhcpcd = ramOs.networking.dhcpcd.enable;
    useDHCP = ramOs.networking.useDHCP;
    firewall = ramOs.networking.firewall.enable;
    documentation = ramOs.documentation.enable;
    channel = ramOs.nix.channel.enable;
    flakeRegistry = ramOs.nixpkgs.flake.setFlakeRegistry;
    nixPath = ramOs.nixpkgs.flake.setNixPath;
    etcOverlay = ramOs.system.etc.overlay.enable;
    userborn = ramOs.services.userborn.enable;
    generateConfig = ramOs.system.tools.nixos-generate-config.enable;
    zram = ramOs.zramSwap;
    emergencyAccess = ramOs.boot.initrd.systemd.emergencyAccess;
    swraid = ramOs.boot.swraid;
  };
  importedEnabledByDefault = (evaluate [ flake.nixosModules.nix-dabei ]).programs.nix-dabei.enable;
  importedEnabled = names imported.environment.systemPackages;
  programs = lib.importJSON (repo + "/nix/programs.json");
  inherit tarballScript sizesScript bootTests bootSystems;
  runvmX86 = runvm "x86_64-linux";
  runvmAarch64 = runvm "aarch64-linux";
}
