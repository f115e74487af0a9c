# The disk layout of booted, written by nix-dabei from its plan. Import it from the host's configuration.
{ config, lib, pkgs, ... }:
{
  networking.hostName = lib.mkDefault "booted";
  fileSystems."/" = {
    device = "/dev/disk/by-partuuid/5fecc267-aa36-4de1-a52a-bc3cef04c431";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-partuuid/32752bbe-108c-424f-9dd4-79bd5a0af6bf";
    fsType = "vfat";
    options = [ "umask=0077" ];
    neededForBoot = false;
  };
  boot.loader.grub = lib.mkIf (!config.boot.loader.systemd-boot.enable) {
    mirroredBoots = [
      { path = "/boot"; devices = [ "/dev/vdb" ]; }
    ];
  };
}
