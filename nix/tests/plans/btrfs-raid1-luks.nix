# The disk layout of booted, written by nix-dabei from its plan. Import it from the host's configuration.
{ config, lib, pkgs, ... }:
{
  networking.hostName = lib.mkDefault "booted";
  # Boots with a member of btrfs 66857bf6 missing, after waiting for it.
  boot.initrd.systemd.services."nix-dabei-btrfs-degraded-66857bf6" = {
    description = "Let btrfs 66857bf6 mount degraded when a member is missing";
    wantedBy = [ "initrd.target" ];
    after = [ "systemd-udevd.service" "systemd-udev-trigger.service" ];
    unitConfig.DefaultDependencies = false;
    serviceConfig.Type = "oneshot";
    serviceConfig.TimeoutStartSec = "infinity";
    script = ''
      ready() { [ -e /dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec ] && ! udevadm info --query=property /dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec | grep -q '^SYSTEMD_READY=0$'; }
      until [ -e /dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec ]; do sleep 1; done
      for i in $(seq 30); do ready && exit 0; sleep 1; done
      echo "nix-dabei: btrfs 66857bf6-3e6d-4a3c-aa83-da740b1140ec is missing a member: mounting it degraded" >&2
      mkdir -p /run/udev/rules.d
      echo 'ENV{ID_FS_UUID}=="66857bf6-3e6d-4a3c-aa83-da740b1140ec", ENV{SYSTEMD_READY}="1"' > /run/udev/rules.d/99-nix-dabei-btrfs-66857bf6.rules
      udevadm control --reload
      udevadm trigger --action=change --property-match=ID_FS_UUID=66857bf6-3e6d-4a3c-aa83-da740b1140ec
    '';
  };
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
    device = "/dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec";
    fsType = "btrfs";
    options = [ "compress=zstd" "subvol=root" "degraded" ];
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-partuuid/125c01bb-ecb0-4f2a-899a-be71e07328da";
    fsType = "vfat";
    options = [ "umask=0077" "nofail" "x-systemd.device-timeout=5s" ];
    neededForBoot = false;
  };
  fileSystems."/boot-1" = {
    device = "/dev/disk/by-partuuid/e35222e5-2629-4e65-9a90-df9b19ecb815";
    fsType = "vfat";
    options = [ "umask=0077" "nofail" "x-systemd.device-timeout=5s" ];
    neededForBoot = false;
  };
  fileSystems."/home" = {
    device = "/dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec";
    fsType = "btrfs";
    options = [ "subvol=home" "degraded" ];
  };
  fileSystems."/nix" = {
    device = "/dev/disk/by-uuid/66857bf6-3e6d-4a3c-aa83-da740b1140ec";
    fsType = "btrfs";
    options = [ "compress=zstd" "noatime" "subvol=nix" "degraded" ];
  };
  boot.loader.grub = lib.mkIf (!config.boot.loader.systemd-boot.enable) {
    efiSupport = lib.mkDefault true;
    efiInstallAsRemovable = lib.mkDefault (!config.boot.loader.efi.canTouchEfiVariables);
    mirroredBoots = [
      { path = "/boot"; devices = [ "nodev" ]; }
      { path = "/boot-1"; devices = [ "nodev" ]; }
    ];
  };
  # systemd-boot installs on /boot only: copy it to the other ESPs after each install,
  # each only where it is mounted (a missing disk's is an empty directory on /).
  boot.loader.systemd-boot.extraInstallCommands = lib.mkIf config.boot.loader.systemd-boot.enable ''
    if ${pkgs.util-linux}/bin/mountpoint -q '/boot-1'; then
      ${pkgs.rsync}/bin/rsync -a --delete --exclude=/loader/random-seed '/boot'/ '/boot-1'/
    else
      echo "nix-dabei: "'/boot-1'" is not mounted (is its disk missing?): its boot loader is not updated" >&2
    fi
  '';
  # Each ESP that did not mount (its disk is missing) gets a mounted one bound onto it.
  systemd.services.nix-dabei-missing-esps = {
    description = "Stand in a mounted ESP for each missing one";
    wantedBy = [ "multi-user.target" ];
    after = [ "local-fs.target" ];
    serviceConfig.Type = "oneshot";
    script = ''
      mounted=
      for esp in '/boot' '/boot-1'; do
        if ${pkgs.util-linux}/bin/mountpoint -q "$esp"; then mounted=$esp; break; fi
      done
      if [ -z "$mounted" ]; then echo "nix-dabei: no ESP is mounted" >&2; exit 0; fi
      for esp in '/boot' '/boot-1'; do
        if ! ${pkgs.util-linux}/bin/mountpoint -q "$esp"; then
          echo "nix-dabei: $esp is not mounted (is its disk missing?): $mounted is bound there until the disk is replaced (then unmount it)" >&2
          mkdir -p "$esp"
          ${pkgs.util-linux}/bin/mount --bind "$mounted" "$esp"
        fi
      done
    '';
  };
}
