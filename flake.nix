{
  description = "nix-dabei: install NixOS onto the disks of a machine reached by SSH or a console";

  inputs.nixpkgs.url = "github:nixos/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      installerFor = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [ self.nixosModules.ram-os ];
      };
      # The flake's own build for the system a configuration is for: no overlay needed.
      withPackage = module: { lib, pkgs, ... }: {
        imports = [ module ];
        programs.nix-dabei.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.nix-dabei;
      };
    in
    {
      overlays.default = final: prev: {
        nix-dabei = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (system: pkgs:
        let
          nix-dabei = pkgs.callPackage ./nix/package.nix { };
          installer = installerFor system;
          build = installer.config.system.build;
          kernelImage = "${build.kernel}/${installer.config.system.boot.loader.kernelFile}";
          commandLine = build.ramOsCommandLine;
          kexec-tarball = pkgs.callPackage ./nix/kexec-tarball.nix {
            inherit kernelImage commandLine;
            initrd = build.netbootRamdisk;
            nix-dabei-static = pkgs.pkgsStatic.callPackage ./nix/package.nix { };
            # iproute2's iptables support does not link statically; `ip` needs none of it here.
            iproute2-static = pkgs.pkgsStatic.iproute2.override { iptables = null; };
            kexec-tools-static = pkgs.pkgsStatic.kexec-tools;
          };
        in
        {
          inherit nix-dabei kexec-tarball;
          default = nix-dabei;
          kernel = build.kernel;
          # The initrd with the Nix store inside: all the RAM OS there is.
          initrd = build.netbootRamdisk;
          # The sizes against their budgets: `nix run .#ram-os-sizes`.
          ram-os-sizes = pkgs.callPackage ./nix/ram-os-sizes.nix {
            kexecTarball = kexec-tarball;
            initrd = build.netbootRamdisk;
            squashfs = build.squashfsStore;
            inherit (build) toplevel;
          };
          runvm = pkgs.callPackage ./nix/runvm.nix {
            inherit kernelImage commandLine;
            initrd = build.netbootRamdisk;
          };
        });

      apps = forAllSystems (system: pkgs: {
        runvm = {
          type = "app";
          program = "${self.packages.${system}.runvm}/bin/nix-dabei-runvm";
        };
        ram-os-sizes = {
          type = "app";
          program = "${self.packages.${system}.ram-os-sizes}/bin/nix-dabei-ram-os-sizes";
        };
      });

      nixosModules = {
        ram-os = withPackage ./nix/ram-os.nix;
        nix-dabei = withPackage ./nix/nix-dabei-module.nix;
      };

      nixosConfigurations.installer = installerFor "x86_64-linux";

      # The package, the tarball and the RAM OS build; on x86_64, the installed system of each layout family
      # boots from its disks (nix/tests/boot.nix; Nix and KVM only).
      checks = forAllSystems (system: pkgs: {
        inherit (self.packages.${system}) nix-dabei kexec-tarball;
        toplevel = (installerFor system).config.system.build.toplevel;
      } // nixpkgs.lib.optionalAttrs (system == "x86_64-linux") (import ./nix/tests/boot.nix {
        inherit pkgs;
        inherit (nixpkgs) lib;
        inherit (nixpkgs.lib) nixosSystem;
        nixDabeiModule = self.nixosModules.nix-dabei;
        kexecTarball = self.packages.${system}.kexec-tarball;
      }));
    };
}
