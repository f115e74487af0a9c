# The disk layout of booted, written by nix-dabei from its plan. Import it from the host's configuration.
{ config, lib, pkgs, ... }:
{
  networking.hostName = lib.mkDefault "booted";
  boot.swraid.enable = true;
  boot.swraid.mdadmConf = "ARRAY /dev/md/boot metadata=1.0 UUID=ebdf41d9:35aa4d67:8b65ac43:954f4f77\nARRAY /dev/md/root metadata=1.2 UUID=14e02155:0adc4437:9efeccc7:bd3a0fa7\nMAILADDR root";
  boot.initrd.luks.devices."cryptroot" = {
    device = "/dev/md/root";
    allowDiscards = true;
    crypttabExtraOpts = [ "nofail" ];
  };
  fileSystems."/" = {
    device = "/dev/mapper/cryptroot";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/md/boot";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };
  boot.loader.grub = lib.mkIf (!config.boot.loader.systemd-boot.enable) {
    efiSupport = lib.mkDefault true;
    efiInstallAsRemovable = lib.mkDefault (!config.boot.loader.efi.canTouchEfiVariables);
    mirroredBoots = [
      { path = "/boot"; devices = [ "/dev/vdb" "/dev/vdc" ]; }
    ];
  };
}
