# nix-dabei as a NixOS module: the command, and the programs it calls, on any NixOS system. The flake's
# `nixosModules.nix-dabei` sets `package` to the flake's own build; importing this file directly, set it.
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.nix-dabei;
  # The one list of programs nix-dabei runs (`nix-dabei programs --json`, kept equal to this file by
  # nix-dabei/tests/ram_os.rs): those of the machine being installed, as nixpkgs attributes.
  programs = lib.filter (program: program.runs_on == "target") (lib.importJSON ./programs.json);
  # Attributes the running system already chooses: the kernel's ZFS (nixos/modules/tasks/filesystems/
  # zfs.nix sets boot.zfs.package to match the kernel), its systemd and its Nix.
  fromSystem = {
    zfs = config.boot.zfs.package;
    systemd = config.systemd.package;
    nix = config.nix.package;
  };
  packageOf = attribute: fromSystem.${attribute} or pkgs.${attribute};
in
{
  options.programs.nix-dabei = {
    enable = lib.mkEnableOption "the nix-dabei installer";
    package = lib.mkOption {
      type = lib.types.package;
      description = "The nix-dabei package.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages =
      [ cfg.package ] ++ map packageOf (lib.unique (map (program: program.nixpkgs) programs));
  };
}
