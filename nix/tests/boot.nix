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
      degraded = true;
    };
    # A ZFS mirror on LUKS, the passphrase typed more than 60 s after the initrd asks for it: nixpkgs'
    # import service alone gives up on the pool's devices by then (the module orders it after the
    # containers).
    zfs-on-luks = {
      efi = true;
      disks = 2;
      encrypted = true;
      latePassphrase = true;
      checks = ''
        booted.succeed("zpool list -H -o health rpool | grep -qx ONLINE")
        booted.succeed("test -b /dev/mapper/crypt0 && test -b /dev/mapper/crypt1")
      '';
    };
  };

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
        ${lib.optionalString family.efi ''
        flags += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=${pkgs.OVMF.firmware}",
                  "-drive", "if=pflash,format=raw,unit=1,readonly=on,file=${pkgs.OVMF.variables}"]
        ''}
        ${machineName} = create_machine(start_command=" ".join(shlex.split("${qemuCommand}") + flags), name="${machineName}")
        driver.machines.append(${machineName})
        ${machineName}.start()
      '';
      qemuCommand = "${pkgs.qemu_test}/bin/qemu-system-${pkgs.stdenv.hostPlatform.qemuArch} -machine accel=kvm:tcg -cpu max";
      unlock = lib.optionalString family.encrypted (if family.latePassphrase or false then ''
        booted.wait_for_console_text("[Pp]assphrase")
        # Longer than nixpkgs' import service waits for the pool's devices.
        time.sleep(75)
        booted.send_console("${passphrase}\n")
        booted.send_console("${passphrase}\n")
      '' else ''
        booted.wait_for_console_text("[Pp]assphrase")
        booted.send_console("${passphrase}\n")
      '');
    in
    pkgs.testers.runNixOSTest {
      name = "nix-dabei-boot-${name}";
      nodes.installer = { ... }: {
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
        installer.succeed(f"nix-dabei install {plan} {key} --flake test#booted --system ${toplevel}")
        # Mounted again, a second apply finds everything done; then the disks are released for the boot.
        installer.succeed(f"nix-dabei mount {plan} {key}")
        installer.succeed(f"nix-dabei apply {plan} {key} --json | grep -q '\"applied\":0'")
        installer.succeed(f"nix-dabei unmount {plan}")
        installer.shutdown()

        ${bootFrom "booted" (lib.genList (i: i) family.disks)}
        ${unlock}
        booted.wait_for_unit("multi-user.target")
        booted.succeed("test \"$(readlink -f /run/current-system)\" = ${toplevel}")
        ${family.checks}
        booted.shutdown()
        ${lib.optionalString (family.degraded or false) ''

        # One disk pulled: the mirror boots from the other alone, degraded.
        ${bootFrom "degraded" [ 1 ]}
        booted = degraded
        ${unlock}
        degraded.wait_for_unit("multi-user.target")
        degraded.succeed("zpool list -H -o health rpool | grep -qx DEGRADED")
        degraded.shutdown()
        ''}
      '';
    };
in
lib.mapAttrs' (name: family: lib.nameValuePair "boot-${name}" (familyTest name family)) families
