# The RAM OS: a small NixOS that runs from memory. Stage 1 (systemd in the initrd) mounts a tmpfs as `/`
# and the Nix store from a squashfs image inside the initrd, as nixpkgs' netboot module sets up
# (nixos/modules/installer/netboot/netboot.nix), then switches root into a normal stage 2. Only there do
# `nixos-install` and Nix's sandboxed builds work: they call pivot_root, which the kernel refuses on the
# initial ramfs; and only there are PATH, nix.conf and the CA certificates those need.
#
# Booting needs `init=<toplevel>/init` on the kernel command line: initrd-find-nixos-closure, which
# initrd.target requires, reads it (nixos/modules/system/boot/systemd/initrd.nix). The kexec tarball's
# `run` and `nix run .#runvm` pass it; `system.build.ramOsCommandLine` is the whole line.
{ config, lib, pkgs, modulesPath, ... }:

let
  cfg = config.nix-dabei.ramOs;
  nix-dabei = config.programs.nix-dabei.package;
  # Where `nix-dabei kexec` puts what it carries (an extra cpio the kernel unpacks into the initrd's root).
  handover = "/etc/nix-dabei/kexec";
  serialConsole = if pkgs.stdenv.hostPlatform.isAarch64 then "ttyAMA0" else "ttyS0";
in
{
  imports = [
    (modulesPath + "/installer/netboot/netboot-minimal.nix")
    ./nix-dabei-module.nix
  ];

  options.nix-dabei.ramOs = {
    autoTui = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Start the installer (`nix-dabei tui`) on tty1.";
    };
    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        Public keys that may log in as root, for RAM OS images booted without `nix-dabei kexec` (netboot,
        a VM). After `nix-dabei kexec`, the rescue system's keys are carried over as well.
      '';
    };
  };

  config = {
    programs.nix-dabei.enable = true;
    system.nixos.variant_id = "installer";

    boot.initrd.systemd.enable = true;
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "nvme" "ahci" "sd_mod" ];
    boot.supportedFilesystems = [ "zfs" "vfat" "ext4" "xfs" "btrfs" ];
    boot.kernelParams = [
      "console=${serialConsole},115200"
      "console=tty1"
      "panic=30"
      # Compressed swap in memory: small rescue machines have little to spare.
      "zswap.enabled=1"
      "zswap.compressor=zstd"
      "zswap.max_pool_percent=40"
    ];
    boot.initrd.compressor = "zstd";
    networking.hostId = "8425e349";
    networking.hostName = "nix-dabei";

    system.build.ramOsCommandLine =
      lib.concatStringsSep " " ([ "init=${config.system.build.toplevel}/init" ] ++ config.boot.kernelParams);

    # Stage 1: move the handover into the real root before switching to it, and the machine id with it
    # (systemd reads /etc/machine-id once, as stage 2 starts).
    boot.initrd.systemd.services.nix-dabei-handover = {
      description = "Carry what nix-dabei kexec handed over into the system";
      wantedBy = [ "initrd.target" ];
      after = [ "initrd-fs.target" ];
      before = [ "initrd.target" "initrd-nixos-activation.service" ];
      unitConfig = {
        DefaultDependencies = false;
        RequiresMountsFor = "/sysroot";
        ConditionPathExists = handover;
      };
      serviceConfig.Type = "oneshot";
      script = ''
        mkdir -p /sysroot/etc/nix-dabei
        cp -a ${handover} /sysroot/etc/nix-dabei/
        if [ -f ${handover}/machine-id ]; then
          cp ${handover}/machine-id /sysroot/etc/machine-id
        fi
      '';
    };

    # Stage 2: keys, host keys, name servers and networkd units, before those services read them.
    systemd.services.nix-dabei-restore = {
      description = "Restore the SSH keys and network settings nix-dabei kexec carried over";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-pre.target" ];
      after = [ "local-fs.target" ];
      before = [
        "network-pre.target"
        "systemd-networkd.service"
        "systemd-resolved.service"
        "sshd.service"
        "sshd-keygen.service"
      ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathExists = handover;
      };
      # nix-dabei runs `ip`; a service's PATH holds only what `path` names.
      path = [ config.system.path ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${nix-dabei}/bin/nix-dabei restore-network ${handover}";
      };
    };

    # DHCP on every wired interface (nixpkgs' 99-ethernet-default-dhcp unit), unless a carried unit,
    # sorted first, matches the interface's MAC address.
    networking.useNetworkd = true;
    services.resolved.enable = true;

    services.openssh = {
      enable = true;
      settings.PermitRootLogin = "prohibit-password";
      # Every type a rescue system may hand over, so that the client finds the key it pinned (NixOS's
      # default has no ECDSA key; missing ones are generated).
      hostKeys = [
        { type = "ed25519"; path = "/etc/ssh/ssh_host_ed25519_key"; }
        { type = "ecdsa"; path = "/etc/ssh/ssh_host_ecdsa_key"; }
        { type = "rsa"; bits = 4096; path = "/etc/ssh/ssh_host_rsa_key"; }
      ];
    };
    users.users.root.openssh.authorizedKeys.keys = cfg.authorizedKeys;

    nix.settings = {
      experimental-features = [ "nix-command" "flakes" ];
      # Fail fast when a substituter is unreachable rather than stall the install.
      connect-timeout = 5;
    };

    # Tells `nix-dabei remote` that the machine runs the RAM OS already (no kexec needed).
    environment.etc."nix-dabei/ram-os".text = "nix-dabei RAM OS\n";

    # Besides the programs nix-dabei runs (nix-dabei-module.nix installs the one list): tools for a
    # person at the console, and git, which Nix fetches git flakes with.
    environment.systemPackages = with pkgs; [
      cryptsetup
      gptfdisk
      kexec-tools
      git
      rsync
    ];

    # The installer on the console, in place of the login prompt there.
    systemd.services.nix-dabei-tui = lib.mkIf cfg.autoTui {
      description = "nix-dabei installer on tty1";
      wantedBy = [ "multi-user.target" ];
      after = [ "nix-dabei-restore.service" "systemd-user-sessions.service" ];
      conflicts = [ "getty@tty1.service" "autovt@tty1.service" ];
      # The programs it runs (zpool, cryptsetup, mkfs.*, nix, nixos-install), as on a login shell.
      path = [ config.system.path "/run/wrappers" ];
      serviceConfig = {
        ExecStart = "${nix-dabei}/bin/nix-dabei tui";
        StandardInput = "tty";
        StandardOutput = "tty";
        TTYPath = "/dev/tty1";
        TTYReset = true;
        Restart = "always";
        Environment = [ "TERM=linux" ];
      };
    };

    documentation.enable = false;
  };
}
