# The disk layout of booted, written by nix-dabei from its plan. Import it from the host's configuration.
{ config, lib, pkgs, ... }:
{
  networking.hostName = lib.mkDefault "booted";
  # The pools were created under this id; ZFS refuses pools last used by another.
  networking.hostId = lib.mkDefault "fa39a753";
  boot.supportedFilesystems = [ "zfs" ];
  # Imported once every member's LUKS container is open (or its disk given up on).
  boot.initrd.systemd.services."zfs-import-rpool" = {
    after = [ "systemd-cryptsetup@crypt0.service" "systemd-cryptsetup@crypt1.service" ];
    wants = [ "systemd-cryptsetup@crypt0.service" "systemd-cryptsetup@crypt1.service" ];
  };
  boot.initrd.luks.devices."crypt0" = {
    device = "/dev/disk/by-partuuid/4995498e-b0c7-4107-8241-42b6fcb9d717";
    allowDiscards = true;
    crypttabExtraOpts = [ "nofail" ];
  };
  boot.initrd.luks.devices."crypt1" = {
    device = "/dev/disk/by-partuuid/07177b24-5763-464a-aa19-74518c100e1a";
    allowDiscards = true;
    crypttabExtraOpts = [ "nofail" ];
  };
  fileSystems."/" = {
    device = "rpool/root";
    fsType = "zfs";
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
    device = "rpool/home";
    fsType = "zfs";
  };
  fileSystems."/nix" = {
    device = "rpool/nix";
    fsType = "zfs";
  };
  fileSystems."/var" = {
    device = "rpool/var";
    fsType = "zfs";
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
