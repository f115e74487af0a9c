# The RAM OS: a small NixOS that runs from memory. Stage 1 (systemd in the initrd) mounts a tmpfs as `/`
# and the Nix store from a squashfs image inside the initrd, as nixpkgs' netboot module sets up
# (nixos/modules/installer/netboot/netboot.nix), then switches root into a normal stage 2. Only there do
# `nixos-install` and Nix's sandboxed builds work: they call pivot_root, which the kernel refuses on the
# initial ramfs; and only there are PATH, nix.conf and the CA certificates those need.
#
# Lean by construction: netboot.nix alone (not netboot-minimal.nix, whose netboot-base.nix brings
# profiles/installation-device.nix: NetworkManager, ModemManager, documentation forced on, the nixpkgs
# channel, profiles/base.nix's tools) and profiles/minimal.nix, with the choices nixos-images makes for
# non-interactive installs (nix/noninteractive.nix there: no nixpkgs source in the closure, no base
# profile) and nixpkgs' profiles/perlless.nix makes for activation without Perl. Why the store is a
# squashfs and not plain files in the initrd: ARCHITECTURE.md, "The RAM OS's store".
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
    (modulesPath + "/installer/netboot/netboot.nix")
    (modulesPath + "/profiles/minimal.nix")
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
    # Stateless: nothing it keeps could depend on an older release's defaults.
    system.stateVersion = lib.mkDefault lib.trivial.release;

    boot.initrd.systemd.enable = true;
    # A failure in stage 1 gives a root shell on the console, not a locked one: the machine's console (a
    # hoster's KVM or serial console) is the only way in then (nixos/modules/system/boot/systemd/
    # initrd.nix, emergencyAccess; its default is false).
    boot.initrd.systemd.emergencyAccess = true;
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "nvme" "ahci" "sd_mod" ];
    boot.supportedFilesystems = [ "zfs" "vfat" "ext4" "xfs" "btrfs" "f2fs" ];
    boot.kernelParams = [
      "console=${serialConsole},115200"
      "console=tty1"
      "panic=30"
    ];
    # Compressed swap in memory: small rescue machines have little to spare, and Nix evaluating a flake
    # on the target is what needs it (zswap, set before, does nothing without a swap device to sit in
    # front of; nixos/modules/config/zram.nix makes one with zram-generator).
    zramSwap = {
      enable = true;
      algorithm = "zstd";
      memoryPercent = 50;
    };
    # md arrays get their /dev/md/NAME links from mdadm's udev rules, which this installs with mdadm.conf
    # (nixos/modules/tasks/swraid.nix; without MAILADDR or PROGRAM it warns on every build).
    boot.swraid = {
      enable = true;
      mdadmConf = "MAILADDR root";
    };

    # Activation without Perl, as nixpkgs' profiles/perlless.nix chooses: /etc an overlay mounted in stage
    # 1 (nixos/modules/system/etc/etc.nix mounts /sysroot/etc before initrd-fs.target, so the handover
    # below, ordered after that target, writes into its upper layer) and users made by userborn instead of
    # update-users-groups.pl; nothing here generates configurations (nixos-generate-config is Perl).
    system.etc.overlay.enable = true;
    system.etc.overlay.mutable = true;
    services.userborn.enable = true;
    # nixos/modules/installer/tools/tools.nix: each tool its own switch, on by default.
    system.tools.nixos-generate-config.enable = false;
    programs.less.lessopen = null;
    # nixos/modules/virtualisation/nixos-containers.nix: on by default, for nixos-container.
    boot.enableContainers = false;

    # Nothing of the nixpkgs source tree: no channel (nixos/modules/config/nix-channel.nix) and, since
    # nixpkgs' lib.nixosSystem sets nixpkgs.flake.source, neither its registry entry nor NIX_PATH, each of
    # which makes the closure depend on the whole tree (nixos/modules/misc/nixpkgs-flake.nix). Systems are
    # installed from the user's flake, which brings its own nixpkgs.
    nix.channel.enable = false;
    nixpkgs.flake.setFlakeRegistry = false;
    nixpkgs.flake.setNixPath = false;
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

    # networkd and resolved are the only network stack: DHCP on every wired interface (nixpkgs'
    # 99-ethernet-default-dhcp unit, which networking.useDHCP keeps: nixos/modules/tasks/network-interfaces-
    # systemd.nix), unless a carried unit, sorted first, matches the interface's MAC address. No
    # NetworkManager (it would fight networkd over the routes the handover restores) and no dhcpcd.
    networking.useNetworkd = true;
    networking.useDHCP = true;
    networking.dhcpcd.enable = false;
    networking.networkmanager.enable = lib.mkForce false;
    services.resolved.enable = true;
    # sshd is the only service listening, as nixos-images' kexec installer has it; the firewall's
    # packages and rules are left out.
    networking.firewall.enable = false;

    services.openssh = {
      enable = true;
      settings.PermitRootLogin = "prohibit-password";
      # Every type a rescue system may hand over, so that the client finds the key it pinned (NixOS's
      # default, in nixos/modules/services/networking/ssh/sshd.nix, has no ECDSA key; missing ones are
      # generated).
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
    # gitMinimal: git without its Perl and Python scripts (pkgs/top-level/all-packages.nix).
    environment.systemPackages = with pkgs; [
      cryptsetup
      gptfdisk
      kexec-tools
      gitMinimal
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

    # profiles/minimal.nix turns these off with mkDefault; nothing here turns them on again.
    documentation.enable = false;
    documentation.man.enable = false;
  };
}
