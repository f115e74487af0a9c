# The disk layout of booted, written by nix-dabei from its plan. Import it from the host's configuration.
{ config, lib, pkgs, ... }:
{
  networking.hostName = lib.mkDefault "booted";
  boot.initrd.services.lvm.enable = true;
  boot.initrd.kernelModules = [ "dm-raid" "dm-snapshot" "dm-thin-pool" "raid1" ];
  services.lvm.boot.thin.enable = true;
  boot.initrd.luks.devices."crypt0" = {
    device = "/dev/disk/by-partuuid/bf646cab-28ac-4eae-93cb-dc24d2dc11de";
    allowDiscards = true;
    crypttabExtraOpts = [ "nofail" ];
  };
  boot.initrd.luks.devices."crypt1" = {
    device = "/dev/disk/by-partuuid/e5dea458-643d-46f5-ba46-13d20e6d5a25";
    allowDiscards = true;
    crypttabExtraOpts = [ "nofail" ];
  };
  fileSystems."/" = {
    device = "/dev/main/root";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-partuuid/125c01bb-ecb0-4f2a-899a-be71e07328da";
    fsType = "vfat";
    options = [ "umask=0077" ];
    neededForBoot = false;
  };
  fileSystems."/home" = {
    device = "/dev/main/home";
    fsType = "xfs";
  };
  fileSystems."/srv" = {
    device = "/dev/main/srv";
    fsType = "ext4";
  };
  swapDevices = [
    { device = "/dev/main/swap"; options = [ "nofail" "x-systemd.device-timeout=5s" ]; }
  ];
  boot.loader.grub = lib.mkIf (!config.boot.loader.systemd-boot.enable) {
    efiSupport = lib.mkDefault true;
    efiInstallAsRemovable = lib.mkDefault (!config.boot.loader.efi.canTouchEfiVariables);
    mirroredBoots = [
      { path = "/boot"; devices = [ "nodev" ]; }
    ];
  };
}
