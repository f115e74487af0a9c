# The RAM OS: a small NixOS that runs entirely from its initrd. systemd runs in stage 1 and never
# switches root: the initrd is the whole system (no squashfs, no root filesystem). It brings sshd, ZFS,
# cryptsetup, Nix with flakes and nix-dabei; the network comes up with networkd (DHCP), or with the
# addresses carried over by `nix-dabei kexec`; the installer runs on tty1.
{ config, lib, pkgs, modulesPath, ... }:

let
  cfg = config.nix-dabei.ramOs;
  tools = with pkgs; [
    nix-dabei
    config.boot.zfs.package
    cryptsetup
    util-linux
    gptfdisk
    dosfstools
    e2fsprogs
    xfsprogs
    btrfs-progs
    kexec-tools
    iproute2
    nix
    git
    openssh
    coreutils
    bashInteractive
    nixos-install-tools
  ];
in
{
  imports = [ (modulesPath + "/profiles/minimal.nix") ./nix-dabei-module.nix ];

  options.nix-dabei.ramOs = {
    autoTui = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Start the installer (`nix-dabei tui`) on tty1.";
    };
  };

  config = {
    system.nixos.variant_id = "installer";
    system.stateVersion = lib.trivial.release;

    boot.initrd.systemd.enable = true;
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "nvme" "ahci" "sd_mod" "e1000e" "igb" "ixgbe" "r8169" ];
    boot.initrd.kernelModules = [ "zfs" "dm_crypt" "dm_mod" ];
    boot.initrd.supportedFilesystems = [ "zfs" "vfat" "ext4" "xfs" "btrfs" ];
    boot.supportedFilesystems = [ "zfs" "vfat" "ext4" "xfs" "btrfs" ];
    boot.kernelParams = [ "console=ttyS0,115200" "console=tty1" "panic=30" ];
    boot.loader.grub.enable = false;
    networking.hostId = "8425e349";
    networking.hostName = "nix-dabei";

    # The initrd is the system: everything it needs is in its store paths, and stage 1 never ends.
    fileSystems."/" = { device = "none"; fsType = "tmpfs"; options = [ "mode=0755" ]; };
    boot.initrd.systemd.storePaths = tools;
    boot.initrd.systemd.extraBin = {
      nix-dabei = "${pkgs.nix-dabei}/bin/nix-dabei";
      zpool = "${config.boot.zfs.package}/bin/zpool";
      zfs = "${config.boot.zfs.package}/bin/zfs";
      ip = "${pkgs.iproute2}/bin/ip";
    };
    boot.initrd.systemd.targets.initrd-switch-root.enable = false;
    boot.initrd.systemd.services.initrd-switch-root.enable = false;
    boot.initrd.systemd.services.initrd-cleanup.enable = false;
    boot.initrd.systemd.services.initrd-parse-etc.enable = false;

    # Networking: DHCP on every wired interface, unless `nix-dabei kexec` carried addresses over.
    boot.initrd.systemd.network = {
      enable = true;
      networks."99-dhcp" = {
        matchConfig.Name = "en* eth*";
        networkConfig.DHCP = "yes";
      };
    };
    boot.initrd.network.enable = true;

    # Restore what the rescue system handed over (keys, addresses, routes, DNS) before sshd starts.
    boot.initrd.systemd.services.nix-dabei-restore = {
      description = "Restore SSH keys and network settings carried over by nix-dabei kexec";
      wantedBy = [ "initrd.target" ];
      before = [ "sshd.service" "systemd-networkd.service" ];
      after = [ "systemd-udev-settle.service" ];
      unitConfig.ConditionPathExists = "/etc/nix-dabei/kexec";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${pkgs.nix-dabei}/bin/nix-dabei restore-network /etc/nix-dabei/kexec";
      };
    };

    boot.initrd.network.ssh = {
      enable = true;
      port = 22;
      authorizedKeys = config.users.users.root.openssh.authorizedKeys.keys;
      hostKeys = [ ];
    };

    # The installer on the console.
    boot.initrd.systemd.services.nix-dabei-tui = lib.mkIf cfg.autoTui {
      description = "nix-dabei installer on tty1";
      wantedBy = [ "initrd.target" ];
      after = [ "nix-dabei-restore.service" ];
      serviceConfig = {
        ExecStart = "${pkgs.nix-dabei}/bin/nix-dabei tui";
        StandardInput = "tty";
        StandardOutput = "tty";
        TTYPath = "/dev/tty1";
        TTYReset = true;
        Restart = "always";
        Environment = [ "TERM=linux" ];
      };
    };

    nix.settings.experimental-features = [ "nix-command" "flakes" ];
    environment.systemPackages = tools;
    documentation.enable = false;
  };
}
