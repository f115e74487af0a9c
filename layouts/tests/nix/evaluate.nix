# Evaluates a NixOS module of nix-dabei's and disko's `_config` for the same layout with nixpkgs' lib,
# under stand-ins for the NixOS options they set, and returns what a NixOS system would get from each.
# Used by layouts/tests/nixos_module.rs; nothing here needs nixpkgs' packages.
{
  # nixpkgs' lib/ and disko's source, unpacked from ../shared/nix-sources.
  lib,
  disko,
  # nix-dabei's module (a file), and the disko configuration (a file evaluating to `{ disko.devices; }`).
  module,
  diskoConfig ? null,
  # A module of the host's own, evaluated beside nix-dabei's.
  hostModule ? null,
  # A file holding the function `nix-dabei install` applies to a flake's configuration before comparing.
  select ? null,
  # The host's own bootloader choice.
  systemdBoot ? false,
  canTouchEfiVariables ? false,
}:
let
  nixpkgsLib = import lib;
  inherit (nixpkgsLib) mkOption types;
  free = types.lazyAttrsOf types.anything;
  open = options: types.submodule { freeformType = free; inherit options; };
  group = options: mkOption { type = open options; default = { }; };
  list = mkOption { type = types.listOf types.anything; default = [ ]; };
  # The options both set, declared the way NixOS declares them where merging matters (lists concatenate,
  # attribute sets of submodules merge); everything else is free-form.
  nixosOptions = {
    freeformType = free;
    options = {
      fileSystems = mkOption {
        type = types.attrsOf (open { options = list; });
        default = { };
      };
      swapDevices = list;
      networking = group { };
      boot = group {
        initrd = group {
          availableKernelModules = list;
          luks = group {
            devices = mkOption {
              type = types.attrsOf (open { });
              default = { };
            };
          };
          network = group { };
        };
        kernelParams = list;
        zfs = group { };
        supportedFilesystems = list;
        loader = group {
          systemd-boot = group {
            enable = mkOption { default = systemdBoot; };
            extraInstallCommands = mkOption {
              type = types.lines;
              default = "";
            };
          };
          efi = group {
            canTouchEfiVariables = mkOption { default = canTouchEfiVariables; };
          };
          grub = group {
            devices = list;
            mirroredBoots = list;
          };
        };
      };
    };
  };
  pkgs = {
    rsync = "/nix/store/rsync";
    util-linux = "/nix/store/util-linux";
  };
  evaluate =
    modules:
    (nixpkgsLib.evalModules {
      modules = [ nixosOptions ] ++ modules;
      specialArgs = { inherit pkgs; };
    }).config;
  picked = config: {
    inherit (config) fileSystems swapDevices networking;
    luks = config.boot.initrd.luks.devices;
    inherit (config.boot.initrd) availableKernelModules network;
    inherit (config.boot) kernelParams;
    inherit (config.boot) zfs;
    grub = config.boot.loader.grub;
    systemdBoot = config.boot.loader.systemd-boot;
    initrdServices = config.boot.initrd.systemd.services or { };
    services = config.systemd.services or { };
    # nixos/modules/tasks/swraid.nix warns on every build, and mdmon crashes, where mdadm.conf has
    # neither MAILADDR nor PROGRAM: its own test of the text.
    swraidWarns =
      (config.boot.swraid.enable or false)
      && builtins.match ".*(MAILADDR|PROGRAM).*" (config.boot.swraid.mdadmConf or "") == null;
  };
  diskoLib = import (disko + "/lib") {
    lib = nixpkgsLib;
    makeTest = null;
    eval-config = null;
    qemu-common = null;
  };
  diskoEval = nixpkgsLib.evalModules {
    modules = [
      {
        options.disko.devices = mkOption { type = diskoLib.toplevel; };
        config.disko.devices = (import diskoConfig).disko.devices;
      }
    ];
  };
  devices = diskoEval.config.disko.devices;
  # Each partition's device as disko names it, by "disk/partition". The legacy `table` type has a list of
  # partitions, whose contents carry the device.
  partitionDevices = nixpkgsLib.concatMapAttrs (
    diskName: disk:
    let
      partitions = disk.content.partitions or { };
      named = builtins.filter (part: part.name != null && part.content != null) partitions;
    in
    if builtins.isList partitions then
      builtins.listToAttrs (
        map (part: nixpkgsLib.nameValuePair "${diskName}/${part.name}" part.content.device) named
      )
    else
      nixpkgsLib.mapAttrs' (partName: part: nixpkgsLib.nameValuePair "${diskName}/${partName}" part.device) (
        partitions
      )
  ) devices.disk
  # Partitions inside arrays, by "array/partition".
  // nixpkgsLib.concatMapAttrs (
    name: array:
    nixpkgsLib.mapAttrs' (partName: part: nixpkgsLib.nameValuePair "${name}/${partName}" part.device) (
      if array.content != null && array.content.type == "gpt" then array.content.partitions else { }
    )
  ) devices.mdadm;
in
let
  ours = evaluate ([ (import module) ] ++ nixpkgsLib.optional (hostModule != null) (import hostModule));
in
{
  ours = picked ours;
}
// nixpkgsLib.optionalAttrs (select != null) {
  selected = (import select) ours;
}
// nixpkgsLib.optionalAttrs (diskoConfig != null) {
  disko = picked (evaluate [ { config = devices._config; } ]);
  inherit partitionDevices;
}
