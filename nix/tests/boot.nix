# The proof that the installed NixOS boots: one NixOS VM test per layout family, each booting the
# INSTALLED system from its disks and checking it. An installer VM (the nix-dabei NixOS module, the plan's
# disks as empty images) applies the plan from ./plans, copies a system the test built into the target's
# store and installs it with `nix-dabei install --system` (as `nix-dabei remote --build-on local` does);
# then a second VM, started from those disk images alone, boots it. The shape follows disko's own tests
# (disko's lib/tests.nix: an installer machine, then a machine created from its disk images with
# create_machine) and nixpkgs' nixos/tests/installer.nix.
#
# Run them where Nix and KVM are: `nix flake check -L`, or one with
# `nix build -L .#checks.x86_64-linux.boot-zfs-on-luks`. nix-dabei/tests/ram_os.rs evaluates this file with
# nixpkgs' lib and stand-ins for what `testers` gives, so that a missing attribute or a wrong option name is
# found without Nix; booting is Nix only.
{ lib
, pkgs
, nixosSystem
, nixDabeiModule
, kexecTarball
}:

let
  passphrase = "nix-dabei boot test";

  # Each family: its plan and the module `nix-dabei nixos-module` writes for it (both committed, and kept
  # equal to what the binary prints by nix-dabei/tests/ram_os.rs), the firmware, the disks, and what the
  # test checks once the installed system runs.
  families = {
    # One disk, BIOS GRUB in its BIOS boot partition, ext4.
    ext4-bios = {
      efi = false;
      disks = 1;
      encrypted = false;
      checks = ''
        booted.succeed("findmnt -n -o FSTYPE / | grep -qx ext4")
      '';
    };
    # A ZFS mirror with native encryption: both ESPs carry the boot loader, and it boots again with one
    # disk pulled (degraded).
    zfs-native-mirror = {
      efi = true;
      disks = 2;
      encrypted = true;
      checks = ''
        booted.succeed("zpool list -H -o health rpool | grep -qx ONLINE")
        booted.succeed("test -e /boot/EFI/BOOT/BOOTX64.EFI && test -e /boot-1/EFI/BOOT/BOOTX64.EFI")
      '';
      degraded = ''
        booted.succeed("zpool list -H -o health rpool | grep -qx DEGRADED")
      '';
    };
    # A ZFS mirror on LUKS, unlocked over the initrd's SSH more than 60 s after the initrd asks: nixpkgs'
    # import service alone gives up on the pool's devices by then (the module orders it after the
    # containers).
    zfs-on-luks = {
      efi = true;
      disks = 2;
      encrypted = true;
      remoteUnlock = true;
      checks = ''
        booted.succeed("zpool list -H -o health rpool | grep -qx ONLINE")
        booted.succeed("test -b /dev/mapper/crypt0 && test -b /dev/mapper/crypt1")
      '';
    };
    # mdadm RAID 1 over two disks: the ESP an array of metadata 1.0, the root in LUKS on a second array,
    # GRUB in both disks' BIOS boot partitions.
    mdadm-luks = {
      efi = false;
      disks = 2;
      encrypted = true;
      checks = ''
        booted.succeed("findmnt -n -o SOURCE / | grep -qx /dev/mapper/cryptroot")
        booted.succeed("mdadm --detail /dev/md/root | grep -q 'Raid Level : raid1'")
        booted.succeed("mdadm --detail /dev/md/boot | grep -q 'Active Devices : 2'")
        booted.succeed("findmnt -n -o SOURCE /boot | grep -q '^/dev/md'")
      '';
    };
    # LVM on LUKS over two disks: thin volumes for / and /home, a raid1 volume for /srv, swap.
    lvm-thin-luks = {
      efi = true;
      disks = 2;
      encrypted = true;
      checks = ''
        booted.succeed("lvs --noheadings -o lv_name,segtype main | grep -Eq 'root +thin$'")
        booted.succeed("lvs --noheadings -o lv_name,segtype main | grep -Eq 'srv +raid1$'")
        booted.succeed("findmnt -n -o FSTYPE /home | grep -qx xfs")
        booted.succeed("swapon --show=NAME --noheadings | grep -q .")
      '';
    };
    # One btrfs raid1 across two LUKS containers, booting degraded (as its plan decides) with a disk pulled.
    btrfs-raid1-luks = {
      efi = true;
      disks = 2;
      encrypted = true;
      checks = ''
        booted.succeed("btrfs filesystem show / | grep -c devid | grep -qx 2")
        booted.succeed("btrfs filesystem df / | grep -q 'Data, RAID1'")
        booted.succeed("test -e /boot/EFI/BOOT/BOOTX64.EFI && test -e /boot-1/EFI/BOOT/BOOTX64.EFI")
      '';
      degraded = ''
        booted.succeed("btrfs filesystem show / | grep -qi missing")
      '';
    };
  };

  # The unlock over SSH: the test's key pair is nixpkgs' own (nixos/tests/ssh-keys.nix); its public half is
  # in ./plans/zfs-on-luks.toml's remote_unlock. The booted machine's initrd answers on this address.
  sshKeys = import (pkgs.path + "/nixos/tests/ssh-keys.nix") pkgs;
  initrdAddress = "192.168.1.10";
  initrdMac = "52:54:00:12:01:0a";

  # The system installed onto the plan's disks: the layout's module and what a VM test needs to drive it.
  installedSystem = name: family: (nixosSystem {
    inherit (pkgs.stdenv.hostPlatform) system;
    modules = [
      ./plans/${name}.nix
      ({ modulesPath, ... }: {
        imports = [
          (modulesPath + "/testing/test-instrumentation.nix")
          (modulesPath + "/profiles/qemu-guest.nix")
        ];
        # The systemd initrd, whose unit ordering the ZFS-on-LUKS family checks.
        boot.initrd.systemd.enable = true;
        # The booted VM's firmware starts whatever EFI/BOOT/BOOTX64.EFI it finds on either disk.
        boot.loader.efi.canTouchEfiVariables = false;
        documentation.enable = false;
        system.stateVersion = lib.trivial.release;
      })
      (lib.optionalAttrs (family.remoteUnlock or false) {
        # The plan's `ip=dhcp` finds no DHCP server on the test's network: this file sorts before the
        # one systemd-network-generator writes for it, so networkd takes it for the test's interface.
        boot.initrd.systemd.network.networks."10-nix-dabei-test" = {
          matchConfig.MACAddress = initrdMac;
          address = [ "${initrdAddress}/24" ];
        };
      })
    ];
  }).config.system.build.toplevel;

  familyTest = name: family:
    let
      toplevel = installedSystem name family;
      closure = pkgs.closureInfo { rootPaths = [ toplevel ]; };
      devices = lib.genList (i: "/dev/vd${builtins.elemAt [ "b" "c" "d" ] i}") family.disks;
      wipe = lib.concatMapStringsSep " " (d: "--yes-wipe ${d}") devices;
      # Boots the installed system from disk images `disks` (indices into the installer's empty disks).
      bootFrom = machineName: disks: ''
        flags = ["-m", "1536"]
        for i in ${builtins.toJSON disks}:
            flags += ["-drive", f"file={installer.state_dir}/empty{i}.qcow2,id=drive{i},if=none,werror=report",
                      "-device", f"virtio-blk-pci,drive=drive{i}"]
        ${lib.optionalString (family.remoteUnlock or false) ''
        flags += ["-device", "virtio-net-pci,netdev=vlan1,mac=${initrdMac}",
                  "-netdev", "vde,id=vlan1,sock=$QEMU_VDE_SOCKET_1"]
        ''}
        ${lib.optionalString family.efi ''
        flags += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=${pkgs.OVMF.firmware}",
                  "-drive", "if=pflash,format=raw,unit=1,readonly=on,file=${pkgs.OVMF.variables}"]
        ''}
        ${machineName} = create_machine(start_command=" ".join(shlex.split("${qemuCommand}") + flags), name="${machineName}")
        driver.machines.append(${machineName})
        ${machineName}.start()
      '';
      unlock = lib.optionalString family.encrypted (if family.remoteUnlock or false then ''
        booted.wait_for_console_text("[Pp]assphrase")
        # Longer than nixpkgs' import service waits for the pool's devices (about 60 s).
        time.sleep(75)
        # As nixpkgs' nixos/tests/systemd-initrd-networkd-ssh.nix does: the password agent in the initrd,
        # its passphrase on standard input; a second round for a container that asked later.
        for _ in range(2):
            client.execute(
                "printf '%s\\n%s\\n' '${passphrase}' '${passphrase}' | ssh -i /etc/nix-dabei-test/id "
                + "-o UserKnownHostsFile=/root/initrd_known_hosts -o StrictHostKeyChecking=yes "
                + "root@${initrdAddress} systemd-tty-ask-password-agent --query"
            )
            time.sleep(2)
      '' else ''
        booted.wait_for_console_text("[Pp]assphrase")
        booted.send_console("${passphrase}\n")
      '');
    in
    pkgs.testers.runNixOSTest {
      name = "nix-dabei-boot-${name}";
      nodes = {
        installer = { ... }: {
          imports = [ nixDabeiModule ];
          programs.nix-dabei.enable = true;
          virtualisation.emptyDiskImages = lib.genList (_: 4096) family.disks;
          # The smallest machine the README promises `install --system` on.
          virtualisation.memorySize = 512;
          boot.supportedFilesystems = [ "zfs" ];
          networking.hostId = "00000001";
          environment.etc."nix-dabei-test/plan.toml".source = ./plans/${name}.toml;
          environment.etc."nix-dabei-test/passphrase".text = passphrase;
          nix.settings.substituters = lib.mkForce [ ];
        };
      } // lib.optionalAttrs (family.remoteUnlock or false) {
        # The machine that types the passphrase over the initrd's SSH.
        client = { ... }: {
          environment.etc."nix-dabei-test/id" = { source = sshKeys.snakeOilPrivateKey; mode = "0600"; };
        };
      };
      testScript = ''
        import shlex
        import time

        installer.start()
        installer.wait_for_unit("multi-user.target")
        # The system's closure is in the VM's store (shared with the host); register it so that it can be
        # copied into the target.
        installer.succeed("nix-store --load-db < ${closure}/registration")
        plan = "/etc/nix-dabei-test/plan.toml"
        key = "--passphrase-file /etc/nix-dabei-test/passphrase"
        installer.succeed(f"nix-dabei install {plan} ${wipe} {key} --disks-only --keep-mounted")
        installer.succeed("nix --extra-experimental-features nix-command copy --no-check-sigs --to 'local?root=/mnt' ${toplevel}")
        installer.succeed(f"nix-dabei install {plan} {key} --flake test#booted --system ${toplevel} --skip-flake-check")
        # Mounted again, a second apply finds everything done; then the disks are released for the boot.
        installer.succeed(f"nix-dabei mount {plan} {key}")
        installer.succeed(f"nix-dabei apply {plan} {key} --json | grep -q '\"applied\":0'")
        ${lib.optionalString (family.remoteUnlock or false) ''
        # The initrd's host key, generated during the install: the client checks it.
        initrd_key = installer.succeed("cat /mnt/etc/secrets/initrd/ssh_host_ed25519_key.pub").split()[0:2]
        ''}
        installer.succeed(f"nix-dabei unmount {plan}")
        installer.shutdown()

        ${lib.optionalString (family.remoteUnlock or false) ''
        client.start()
        client.wait_for_unit("multi-user.target")
        client.succeed(f"echo '${initrdAddress} {' '.join(initrd_key)}' > /root/initrd_known_hosts")
        ''}
        ${bootFrom "booted" (lib.genList (i: i) family.disks)}
        ${unlock}
        booted.wait_for_unit("multi-user.target")
        booted.succeed("test \"$(readlink -f /run/current-system)\" = ${toplevel}")
        ${family.checks}
        booted.shutdown()
        ${lib.optionalString (family ? degraded) ''

        # One disk pulled: it boots from the other alone, degraded.
        ${bootFrom "degraded" [ 1 ]}
        booted = degraded
        ${unlock}
        degraded.wait_for_unit("multi-user.target")
        ${family.degraded}
        degraded.shutdown()
        ''}
      '';
    };

  # The kexec path as a user takes it. A plain NixOS stands for a cloud's rescue system (static IPv4 and
  # IPv6 addresses, the user's key, its own host key); from a workstation, `nix-dabei remote` kexecs it
  # into the RAM OS from the real tarball, which must come up with those keys and addresses, then applies
  # ./plans/ext4-bios.toml there and installs the system built here (`--system`, as `--build-on local`
  # copies it). The installed system then boots from the disk. The reboot phase itself is left out: a
  # test VM restarts from the kernel it was given, not from its disks (it is proven in the VM suite's
  # `remote` scenario).
  kexecTest =
    let
      toplevel = installedSystem "ext4-bios" families.ext4-bios;
      # nixos/lib/testing/network.nix numbers the nodes in name order: rescue is 1, workstation 2.
      rescueIPv4 = "192.168.1.1";
      rescueIPv6 = "2001:db8:1::1";
      ssh = "ssh -i /etc/nix-dabei-test/id -o UserKnownHostsFile=/root/rescue_known_hosts -o StrictHostKeyChecking=yes";
    in
    pkgs.testers.runNixOSTest {
      name = "nix-dabei-kexec-remote";
      nodes = {
        rescue = { ... }: {
          services.openssh.enable = true;
          users.users.root.openssh.authorizedKeys.keys = [ sshKeys.snakeOilPublicKey ];
          virtualisation.emptyDiskImages = [ 4096 ];
          # What `install --system` is promised on: the RAM OS, unpacked, and the copied closure fit.
          virtualisation.memorySize = 512;
        };
        workstation = { ... }: {
          imports = [ nixDabeiModule ];
          programs.nix-dabei.enable = true;
          environment.etc."nix-dabei-test/id" = { source = sshKeys.snakeOilPrivateKey; mode = "0600"; };
          environment.etc."nix-dabei-test/plan.toml".source = ./plans/ext4-bios.toml;
          # Built by the test, so that nothing is fetched: the system and the tarball.
          virtualisation.additionalPaths = [ toplevel kexecTarball ];
          virtualisation.memorySize = 1024;
          nix.settings.substituters = lib.mkForce [ ];
        };
      };
      testScript = ''
        import shlex

        start_all()
        rescue.wait_for_unit("sshd.service")
        workstation.wait_for_unit("multi-user.target")
        host_key = rescue.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[0:2]
        workstation.succeed(
            f"echo '${rescueIPv4},${rescueIPv6} {' '.join(host_key)}' > /root/rescue_known_hosts"
        )
        workstation.succeed("${ssh} root@${rescueIPv4} true")

        workstation.succeed(
            "nix-dabei remote root@${rescueIPv4} -i /etc/nix-dabei-test/id "
            + "-o UserKnownHostsFile=/root/rescue_known_hosts -o StrictHostKeyChecking=yes "
            + "--kexec-tarball ${kexecTarball}/nix-dabei-kexec.tar.gz --plan /etc/nix-dabei-test/plan.toml "
            + "--flake test#booted --system ${toplevel} --skip-flake-check --yes-wipe-all "
            + "--phases kexec,plan,apply,install --json >&2"
        )
        # The RAM OS answers on both carried addresses, with the rescue system's host key (checked
        # strictly against it) and the carried authorized key.
        workstation.succeed("${ssh} root@${rescueIPv4} test -e /etc/nix-dabei/ram-os")
        workstation.succeed("${ssh} root@${rescueIPv6} test -e /etc/nix-dabei/ram-os")
        workstation.succeed("${ssh} root@${rescueIPv4} ip -6 addr show | grep -q ${rescueIPv6}")
        workstation.succeed("${ssh} root@${rescueIPv4} test -e /mnt/nix/var/nix/profiles/system")
        workstation.execute("${ssh} root@${rescueIPv4} 'sync; systemctl poweroff'")
        rescue.wait_for_shutdown()

        # The installed system, from the rescue machine's disk alone.
        flags = ["-m", "1024", "-drive", f"file={rescue.state_dir}/empty0.qcow2,id=drive0,if=none",
                 "-device", "virtio-blk-pci,drive=drive0"]
        installed = create_machine(start_command=" ".join(shlex.split("${qemuCommand}") + flags), name="installed")
        driver.machines.append(installed)
        installed.start()
        installed.wait_for_unit("multi-user.target")
        installed.succeed("test \"$(readlink -f /run/current-system)\" = ${toplevel}")
        installed.succeed("findmnt -n -o FSTYPE / | grep -qx ext4")
        installed.shutdown()
      '';
    };
  qemuCommand = "${pkgs.qemu_test}/bin/qemu-system-${pkgs.stdenv.hostPlatform.qemuArch} -machine accel=kvm:tcg -cpu max";
in
lib.mapAttrs' (name: family: lib.nameValuePair "boot-${name}" (familyTest name family)) families
// { boot-kexec-remote = kexecTest; }
