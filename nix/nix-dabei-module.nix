# nix-dabei as a NixOS module: the command, and the programs it calls, on any NixOS system. The flake's
# `nixosModules.nix-dabei` sets `package` to the flake's own build; importing this file directly, set it.
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.nix-dabei;
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
    environment.systemPackages = [
      cfg.package
      config.boot.zfs.package
      pkgs.cryptsetup
      pkgs.dosfstools
      pkgs.e2fsprogs
      pkgs.xfsprogs
      pkgs.btrfs-progs
      pkgs.util-linux
    ];
  };
}
