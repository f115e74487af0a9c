# nix-dabei as a NixOS module: the command, and the programs it calls, on any NixOS system.
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.nix-dabei;
in
{
  options.programs.nix-dabei = {
    enable = lib.mkEnableOption "the nix-dabei installer" // { default = true; };
    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.nix-dabei;
      defaultText = lib.literalExpression "pkgs.nix-dabei";
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
    ];
  };
}
